//! A minimal plain-HTTP client for loopback endpoints (etcd's `/health`, the operator's
//! `/metrics` and `/readyz`): one HTTP/1.0 request per connection, the body read to EOF, so no chunked decoding is needed.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The body as text.
    pub body: String,
}

impl Response {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Sends `method path` with an optional JSON body to `addr` and reads the whole response.
pub async fn request(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> Result<Response> {
    request_as(addr, method, path, json_body, None, timeout).await
}

/// `GET path` with `Authorization: Bearer <token>` when a token is given; any status.
pub async fn get_with_token(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Response> {
    request_as(addr, "GET", path, None, token, timeout).await
}

async fn request_as(
    addr: SocketAddr,
    method: &'static str,
    path: &str,
    json_body: Option<&str>,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Response> {
    let fail = |reason: String| Error::Http {
        method,
        addr: addr.to_string(),
        path: path.to_owned(),
        reason,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let body = json_body.unwrap_or("");
        let authorization = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\
             {authorization}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(raw)) => raw,
        Ok(Err(e)) => return Err(fail(e.to_string())),
        Err(_) => return Err(fail(format!("no response within {timeout:?}"))),
    };
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| fail(format!("malformed response: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| fail(format!("malformed status line: {head:?}")))?;
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

/// `GET path`, failing unless the status is 2xx.
pub async fn get_ok(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String> {
    expect_ok(
        addr,
        "GET",
        path,
        request(addr, "GET", path, None, timeout).await?,
    )
}

/// `POST path` with an optional JSON body, failing unless the status is 2xx.
pub async fn post_ok(
    addr: SocketAddr,
    path: &str,
    json_body: Option<&str>,
    timeout: Duration,
) -> Result<String> {
    expect_ok(
        addr,
        "POST",
        path,
        request(addr, "POST", path, json_body, timeout).await?,
    )
}

fn expect_ok(addr: SocketAddr, method: &'static str, path: &str, r: Response) -> Result<String> {
    if r.is_success() {
        Ok(r.body)
    } else {
        Err(Error::Http {
            method,
            addr: addr.to_string(),
            path: path.to_owned(),
            reason: format!("status {}: {}", r.status, r.body.trim()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::net::TcpListener;

    /// A one-shot server that answers `reply` and hands back the request it read.
    async fn serve_once(reply: &'static str) -> (SocketAddr, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            stream.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn reads_status_and_body() {
        let (addr, task) =
            serve_once("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\":1}").await;
        let body = get_ok(addr, "/pods/ns/p", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(body, "{\"a\":1}");
        assert!(
            task.await
                .unwrap()
                .starts_with("GET /pods/ns/p HTTP/1.0\r\n")
        );
    }

    #[tokio::test]
    async fn a_non_2xx_status_is_an_error_naming_the_request() {
        let (addr, _task) = serve_once("HTTP/1.1 404 Not Found\r\n\r\nno such pod").await;
        let err = post_ok(addr, "/nodes/x/stop", None, Duration::from_secs(5))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("POST") && err.contains("/nodes/x/stop"),
            "{err}"
        );
        assert!(err.contains("404") && err.contains("no such pod"), "{err}");
    }
}
