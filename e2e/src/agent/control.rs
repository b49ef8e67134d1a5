//! The agent's control API on 127.0.0.1 (a random port, written to `<root>/control.addr`), used
//! by tests and the `testbed` CLI:
//!
//! - `GET /healthz`
//! - `GET /pods/{ns}/{name}`: uid, node, ip, netns, containers {name: {pid, restartCount, running}}
//! - `POST /pods/{ns}/{name}/containers/{container}/kill`: SIGKILL (the restart policy applies)
//! - `POST /pods/{ns}/{name}/network/down|up`: the pod's host veth down or up
//! - `POST /nodes/{node}/stop|start`: no heartbeats, pods frozen (SIGSTOP) and cut off; and back

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::error::{AgentError, AgentResult};
use super::network;
use crate::agentctl::{ContainerInfo, PodInfo};

/// Binds the API and serves it until `shutdown`; returns the address.
pub async fn serve(shared: Arc<Shared>, shutdown: CancellationToken) -> AgentResult<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| AgentError::io("bind", "127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| AgentError::io("local address of", "127.0.0.1:0", e))?;
    let app = router(shared);
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "control API stopped");
        }
    });
    Ok(addr)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods/{ns}/{name}", get(pod_info))
        .route("/pods/{ns}/{name}/containers/{container}/kill", post(kill))
        .route("/pods/{ns}/{name}/network/{state}", post(set_network))
        .route("/nodes/{node}/{action}", post(set_node))
        .with_state(shared)
}

fn reply(code: StatusCode, text: impl Into<String>) -> Response {
    (code, text.into()).into_response()
}

async fn pod_info(
    State(shared): State<Arc<Shared>>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let Some(pod) = shared.find(&ns, &name) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{name} does not run here"),
        );
    };
    let info = PodInfo {
        uid: pod.uid.clone(),
        node: pod.node.name().to_owned(),
        ip: pod.ip.to_string(),
        netns: format!("/run/netns/{}", pod.net.netns),
        containers: pod
            .report()
            .into_iter()
            .map(|(name, c)| {
                (
                    name,
                    ContainerInfo {
                        pid: c.pid,
                        restart_count: c.restarts,
                        running: c.pid.is_some(),
                    },
                )
            })
            .collect(),
    };
    match serde_json::to_string(&info) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn kill(
    State(shared): State<Arc<Shared>>,
    Path((ns, name, container)): Path<(String, String, String)>,
) -> Response {
    let Some(pod) = shared.find(&ns, &name) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{name} does not run here"),
        );
    };
    if pod.kill(&container) {
        tracing::info!(pod = %name, namespace = %ns, %container, "killed through the control API");
        reply(StatusCode::OK, "killed")
    } else {
        reply(
            StatusCode::CONFLICT,
            format!("container {container} of pod {ns}/{name} does not run"),
        )
    }
}

async fn set_network(
    State(shared): State<Arc<Shared>>,
    Path((ns, name, state)): Path<(String, String, String)>,
) -> Response {
    let up = match state.as_str() {
        "up" => true,
        "down" => false,
        other => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("unknown network state {other}"),
            );
        }
    };
    let Some(pod) = shared.find(&ns, &name) else {
        return reply(
            StatusCode::NOT_FOUND,
            format!("pod {ns}/{name} does not run here"),
        );
    };
    pod.cut.store(!up, Ordering::SeqCst);
    let link_up = up && pod.node.is_running();
    match network::set_link(&pod.net.host_veth, link_up).await {
        Ok(()) => {
            tracing::info!(pod = %name, namespace = %ns, up, "network set through the control API");
            reply(StatusCode::OK, state)
        }
        Err(e) => reply(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn set_node(
    State(shared): State<Arc<Shared>>,
    Path((node, action)): Path<(String, String)>,
) -> Response {
    let running = match action.as_str() {
        "start" => true,
        "stop" => false,
        other => {
            return reply(
                StatusCode::NOT_FOUND,
                format!("unknown node action {other}"),
            );
        }
    };
    let Some(handle) = shared.node(&node) else {
        return reply(StatusCode::NOT_FOUND, format!("no virtual node {node}"));
    };
    let changed = handle.set_running(running);
    // Done here too, so the reply comes once the node's pods are frozen or thawed.
    let pods = shared.pods_on(&node);
    for pod in &pods {
        pod.follow_node_state(running).await;
    }
    tracing::info!(%node, running, changed, pods = pods.len(), "node switched through the control API");
    reply(StatusCode::OK, action)
}
