//! Test support: a mock API server that hands each request to the test, which asserts it and
//! answers (the controller-rs "ApiServerVerifier" pattern).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::Value;
use tower_test::mock::{self, Handle, SendResponse};

/// The test's side of a mock API server.
pub struct ApiServerVerifier(Handle<Request<Body>, Response<Body>>);

/// A client talking to a mock API server, and the mock.
pub fn mock_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServerVerifier(handle))
}

/// One request the code under test sent.
pub struct Received {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Query parameters (empty keys from kube's leading `?&` dropped).
    pub query: BTreeMap<String, String>,
    /// Body as JSON (`Null` when empty).
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

impl Received {
    /// Asserts method and path.
    pub fn assert(&self, method: Method, path: &str) {
        assert_eq!(self.method, method, "method of {}", self.path);
        assert_eq!(self.path, path);
    }

    /// Asserts the query holds `key=value`.
    pub fn assert_query(&self, key: &str, value: &str) {
        assert_eq!(
            self.query.get(key).map(String::as_str),
            Some(value),
            "query {key} of {} {}: {:?}",
            self.method,
            self.path,
            self.query
        );
    }

    /// Asserts this is a forced server-side apply by the operator.
    pub fn assert_apply(&self, path: &str) {
        self.assert(Method::PATCH, path);
        self.assert_query("fieldManager", "kvrocks-operator");
        self.assert_query("force", "true");
    }

    /// Answers 200 with `body`.
    pub fn respond(self, body: &Value) {
        self.respond_with(StatusCode::OK, body);
    }

    /// Answers with `status` and `body`.
    pub fn respond_with(self, status: StatusCode, body: &Value) {
        let response = Response::builder()
            .status(status)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.send.send_response(response);
    }
}

impl ApiServerVerifier {
    /// The next request; panics when the client went away without sending one.
    pub async fn next(&mut self) -> Received {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("expected another request");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect();
        Received {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            body,
            send,
        }
    }

    /// Asserts the client sends nothing more (call after every client clone was dropped).
    pub async fn assert_done(mut self) {
        if let Some((request, _)) = self.0.next_request().await {
            panic!("unexpected request {} {}", request.method(), request.uri());
        }
    }
}

/// Percent-decoding of a query component (`+` is a space in form encoding).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A Kubernetes `Status` answer for errors.
pub fn status_error(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    })
}
