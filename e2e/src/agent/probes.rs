//! Startup, liveness and readiness probes, and the handlers lifecycle hooks share with them:
//! exec (inside the container's namespaces), tcpSocket and httpGet (from the host to the pod IP,
//! as the kubelet does). The threshold logic ([`Tracker`], [`Settings`]) is pure.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, ExecAction, HTTPGetAction, Probe, TCPSocketAction,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::imagemap::ImageMap;
use super::node::NodeHandle;
use super::process::exec_in;

/// What the probes of one running container report to its supervisor.
#[derive(Debug, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The startup probe succeeded (or there is none).
    Started,
    /// Readiness changed.
    Ready(bool),
    /// The startup or liveness probe failed `failureThreshold` times: restart the container.
    Unhealthy {
        /// `Startup` or `Liveness`.
        probe: &'static str,
        /// The last failure.
        message: String,
    },
}

/// Timing and thresholds of a probe, with the Kubernetes defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// `initialDelaySeconds` (from the container's start).
    pub initial_delay: Duration,
    /// `periodSeconds` (default 10).
    pub period: Duration,
    /// `timeoutSeconds` (default 1).
    pub timeout: Duration,
    /// `successThreshold` (default 1; always 1 for liveness and startup).
    pub success_threshold: u32,
    /// `failureThreshold` (default 3).
    pub failure_threshold: u32,
}

impl Settings {
    /// The settings of `probe`; `single_success` for liveness and startup probes.
    pub fn of(probe: &Probe, single_success: bool) -> Self {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Self {
            initial_delay: secs(probe.initial_delay_seconds, 0, 0),
            period: secs(probe.period_seconds, 10, 1),
            timeout: secs(probe.timeout_seconds, 1, 1),
            success_threshold: if single_success {
                1
            } else {
                count(probe.success_threshold, 1)
            },
            failure_threshold: count(probe.failure_threshold, 3),
        }
    }
}

/// What one more probe result changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `successThreshold` consecutive successes were just reached.
    Success,
    /// `failureThreshold` consecutive failures were just reached.
    Failure,
    /// Nothing new.
    Unchanged,
}

/// Consecutive successes and failures of one probe.
#[derive(Clone, Debug)]
pub struct Tracker {
    settings: Settings,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// A tracker with no results yet.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            successes: 0,
            failures: 0,
        }
    }

    /// Records one result; reports a verdict only when a threshold is reached, not again while
    /// the streak goes on.
    pub fn observe(&mut self, ok: bool) -> Verdict {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if self.successes == self.settings.success_threshold {
                return Verdict::Success;
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.failures == self.settings.failure_threshold {
                return Verdict::Failure;
            }
        }
        Verdict::Unchanged
    }
}

/// What probes and hooks need to reach a running container.
#[derive(Debug)]
pub struct Target {
    /// The container's main process.
    pub pid: u32,
    /// The pod IP.
    pub ip: Ipv4Addr,
    /// The container's environment (exec runs with it).
    pub env: BTreeMap<String, String>,
    /// The container's image, for mapping exec commands.
    pub image: String,
    /// The image map.
    pub images: Arc<ImageMap>,
    /// The container's ports, for named ports.
    pub ports: Vec<ContainerPort>,
    /// The node, whose stop pauses probing.
    pub node: NodeHandle,
}

/// Runs an exec handler; exit code 0 is success.
pub async fn run_exec(
    target: &Target,
    action: &ExecAction,
    timeout: Duration,
) -> Result<(), String> {
    let command = action.command.clone().unwrap_or_default();
    let argv = target
        .images
        .resolve_exec(&target.image, &command)
        .map_err(|e| e.to_string())?;
    let result = exec_in(target.pid, &argv, &target.env, timeout).await;
    match result.code {
        Some(0) => Ok(()),
        Some(code) => Err(format!(
            "command {command:?} exited with {code}: {}",
            result.output
        )),
        None => Err(format!("command {command:?}: {}", result.output)),
    }
}

/// Runs a tcpSocket handler: a connection within the timeout is success.
pub async fn run_tcp(
    target: &Target,
    action: &TCPSocketAction,
    timeout: Duration,
) -> Result<(), String> {
    let addr = address(target, action.host.as_deref(), &action.port)?;
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: timeout after {timeout:?}")),
    }
}

/// Runs an httpGet handler: a status from 200 to 399 within the timeout is success.
pub async fn run_http(
    target: &Target,
    action: &HTTPGetAction,
    timeout: Duration,
) -> Result<(), String> {
    if action
        .scheme
        .as_deref()
        .is_some_and(|s| !s.eq_ignore_ascii_case("http"))
    {
        return Err("only HTTP probes are supported by the testbed".to_owned());
    }
    let addr = address(target, action.host.as_deref(), &action.port)?;
    let path = action.path.as_deref().unwrap_or("/");
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/testbed\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for header in action.http_headers.iter().flatten() {
        request.push_str(&format!("{}: {}\r\n", header.name, header.value));
    }
    request.push_str("\r\n");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut buf = vec![0u8; 256];
        let mut len = 0;
        while len < buf.len() && !buf[..len].contains(&b'\n') {
            let n = stream.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            len += n;
        }
        Ok::<String, std::io::Error>(String::from_utf8_lossy(&buf[..len]).into_owned())
    };
    let head = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return Err(format!("GET http://{addr}{path}: {e}")),
        Err(_) => {
            return Err(format!(
                "GET http://{addr}{path}: timeout after {timeout:?}"
            ));
        }
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if (200..400).contains(&c) => Ok(()),
        Some(c) => Err(format!(
            "GET http://{addr}{path}: HTTP probe failed with statuscode: {c}"
        )),
        None => Err(format!("GET http://{addr}{path}: malformed reply {head:?}")),
    }
}

fn address(target: &Target, host: Option<&str>, port: &IntOrString) -> Result<SocketAddr, String> {
    let port = match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("bad port {p}"))?,
        IntOrString::String(name) => target
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("no container port named {name:?}"))?,
    };
    let ip = match host.filter(|h| !h.is_empty()) {
        Some(h) => h
            .parse()
            .map_err(|_| format!("host {h:?} is not an IPv4 address"))?,
        None => target.ip,
    };
    Ok(SocketAddr::from((ip, port)))
}

/// One probe attempt.
async fn check(probe: &Probe, target: &Target, timeout: Duration) -> Result<(), String> {
    if let Some(exec) = &probe.exec {
        run_exec(target, exec, timeout).await
    } else if let Some(tcp) = &probe.tcp_socket {
        run_tcp(target, tcp, timeout).await
    } else if let Some(http) = &probe.http_get {
        run_http(target, http, timeout).await
    } else {
        Err("probe type not supported by the testbed (only exec, tcpSocket, httpGet)".to_owned())
    }
}

/// Probes one probe until it reaches a verdict that `stop_on` accepts; returns that verdict's
/// last failure message (for a failure verdict).
async fn until_verdict(
    probe: &Probe,
    settings: Settings,
    target: &Target,
    started_at: Instant,
    mut on_verdict: impl FnMut(Verdict, Option<&str>) -> bool,
) {
    let mut tracker = Tracker::new(settings);
    tokio::time::sleep_until(started_at + settings.initial_delay).await;
    loop {
        target.node.wait_running().await;
        let result = check(probe, target, settings.timeout).await;
        let verdict = tracker.observe(result.is_ok());
        if let Err(message) = &result {
            tracing::debug!(pid = target.pid, %message, "probe failed");
        }
        if verdict != Verdict::Unchanged && on_verdict(verdict, result.err().as_deref()) {
            return;
        }
        tokio::time::sleep(settings.period).await;
    }
}

/// Probes a running container until the task is dropped, reporting through `events`.
pub async fn run(
    container: Container,
    target: Arc<Target>,
    started_at: Instant,
    events: mpsc::Sender<ProbeEvent>,
) {
    if let Some(probe) = &container.startup_probe {
        let mut failed = None;
        until_verdict(
            probe,
            Settings::of(probe, true),
            &target,
            started_at,
            |v, msg| {
                if v == Verdict::Failure {
                    failed = Some(msg.unwrap_or("failed").to_owned());
                }
                true
            },
        )
        .await;
        if let Some(message) = failed {
            let _ = events
                .send(ProbeEvent::Unhealthy {
                    probe: "Startup",
                    message,
                })
                .await;
            return;
        }
    }
    if events.send(ProbeEvent::Started).await.is_err() {
        return;
    }
    let readiness = async {
        let Some(probe) = &container.readiness_probe else {
            let _ = events.send(ProbeEvent::Ready(true)).await;
            return;
        };
        let mut changes = Vec::new();
        let settings = Settings::of(probe, false);
        // Readiness never stops by itself: each verdict is forwarded as it comes.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let probing = until_verdict(probe, settings, &target, started_at, |v, _| {
            let _ = tx.send(v == Verdict::Success);
            false
        });
        let forward = async {
            while let Some(ready) = rx.recv().await {
                changes.push(ready);
                if events.send(ProbeEvent::Ready(ready)).await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            () = probing => {}
            () = forward => {}
        }
    };
    let liveness = async {
        let Some(probe) = &container.liveness_probe else {
            return;
        };
        let mut message = String::new();
        until_verdict(
            probe,
            Settings::of(probe, true),
            &target,
            started_at,
            |v, msg| {
                message = msg.unwrap_or("failed").to_owned();
                v == Verdict::Failure
            },
        )
        .await;
        let _ = events
            .send(ProbeEvent::Unhealthy {
                probe: "Liveness",
                message,
            })
            .await;
    };
    tokio::join!(readiness, liveness);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_minimums() {
        let s = Settings::of(&Probe::default(), false);
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        let p = Probe {
            period_seconds: Some(0),
            success_threshold: Some(3),
            failure_threshold: Some(0),
            initial_delay_seconds: Some(5),
            ..Default::default()
        };
        let s = Settings::of(&p, false);
        assert_eq!(s.period, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (3, 1));
        assert_eq!(s.initial_delay, Duration::from_secs(5));
        assert_eq!(Settings::of(&p, true).success_threshold, 1);
    }

    #[test]
    fn thresholds_report_once_per_streak() {
        let settings = Settings {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: 2,
            failure_threshold: 3,
        };
        let mut t = Tracker::new(settings);
        let results = [
            true, true, true, false, false, true, false, false, false, false, true, true,
        ];
        let seen: Vec<Verdict> = results.into_iter().map(|ok| t.observe(ok)).collect();
        use Verdict::*;
        assert_eq!(
            seen,
            [
                Unchanged, Success, Unchanged, Unchanged, Unchanged, Unchanged, Unchanged,
                Unchanged, Failure, Unchanged, Unchanged, Success
            ]
        );
    }
}
