//! The /metrics, /healthz and /readyz endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{Context as _, Result};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kvrocks_operator_core::metrics::Metrics;
use tokio_util::sync::CancellationToken;

use crate::metrics_auth::{MetricsAuth, Verdict};

/// What this replica is doing, as /readyz reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Checking the CRDs and joining the election.
    Starting = 0,
    /// Healthy and waiting for the Lease.
    Standby = 1,
    /// Holding the Lease and running the controllers.
    Leading = 2,
    /// Shutting down.
    Stopping = 3,
}

/// Shared readiness state.
#[derive(Clone, Default)]
pub struct Health(Arc<AtomicU8>);

impl Health {
    /// Records the current phase.
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.0.load(Ordering::Relaxed) {
            1 => Phase::Standby,
            2 => Phase::Leading,
            3 => Phase::Stopping,
            _ => Phase::Starting,
        }
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Health,
    auth: Option<Arc<MetricsAuth>>,
}

/// The router, separate from the listener so tests can call it directly.
fn router(metrics: Arc<Metrics>, health: Health, auth: Option<Arc<MetricsAuth>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(AppState {
            metrics,
            health,
            auth,
        })
}

async fn metrics_handler(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &state.auth {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match auth.check(header).await {
            Verdict::Allowed => {}
            Verdict::Unauthenticated(why) => {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    why,
                )
                    .into_response();
            }
            Verdict::Forbidden(why) => return (StatusCode::FORBIDDEN, why).into_response(),
            Verdict::Unavailable(why) => {
                tracing::warn!(error = %why, "cannot review a /metrics request");
                return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
            }
        }
    }
    match state.metrics.encode() {
        Ok(body) => ([(header::CONTENT_TYPE, state.metrics.content_type())], body).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}"),
        )
            .into_response(),
    }
}

/// Ready while standing by or leading: a standby replica is healthy and ready to take over.
async fn readyz(State(state): State<AppState>) -> Response {
    match state.health.phase() {
        Phase::Standby => (StatusCode::OK, "standby").into_response(),
        Phase::Leading => (StatusCode::OK, "leading").into_response(),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response(),
        Phase::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response(),
    }
}

/// Binds `addr` and serves until `shutdown` is cancelled; /metrics only to reviewed tokens when
/// `auth` is set (see [`crate::metrics_auth`]).
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Health,
    auth: Option<Arc<MetricsAuth>>,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics address {addr}"))?;
    tracing::info!(address = %addr, authenticated = auth.is_some(), "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(metrics, health, auth))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("metrics server failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("writes");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("reads");
        response
    }

    #[tokio::test]
    async fn endpoints_answer() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        metrics.reconcile_succeeded("sentinel");
        let health = Health::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let (metrics, health, shutdown) = (metrics.clone(), health.clone(), shutdown.clone());
            async move {
                axum::serve(listener, router(metrics, health, None))
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await
            }
        });

        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set(Phase::Standby);
        assert!(get(addr, "/readyz").await.ends_with("standby"));
        health.set(Phase::Leading);
        assert!(get(addr, "/readyz").await.ends_with("leading"));
        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains(
                "kvrocks_operator_reconcile_total{controller=\"sentinel\",result=\"success\"} 1"
            ),
            "{body}"
        );

        shutdown.cancel();
        server.await.expect("joins").expect("serves");
    }
}
