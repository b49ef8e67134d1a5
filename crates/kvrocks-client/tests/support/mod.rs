//! Real redis-server / redis-sentinel / kvrocks processes for integration tests.
//!
//! Each process gets an ephemeral port on 127.0.0.1 and a temp dir, and is SIGKILLed when its guard
//! drops. Missing redis binaries fail the test loudly (the Makefile installs them); kvrocks is
//! optional and only used when `KVROCKS_BIN` is set.
// Test helpers panic with a message on setup failures: that is how a test reports them.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kvrocks_client::{Endpoint, NodeAddr, Password, Timeouts};

/// A password used by the tests that exercise `requirepass`.
pub const PASSWORD: &str = "s3cret-test-pass";

/// Which program a [`Proc`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// redis-server.
    Redis,
    /// redis-sentinel.
    Sentinel,
    /// kvrocks.
    Kvrocks,
}

/// Finds a binary from an env override or a default path; panics with a clear hint when absent.
pub fn require_bin(env: &str, default: &str, install_hint: &str) -> PathBuf {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    assert!(
        path.is_file(),
        "{} not found at {} (set {env} or {install_hint}); these integration tests need real servers",
        path.file_name().and_then(|n| n.to_str()).unwrap_or(default),
        path.display(),
    );
    path
}

/// The redis-server binary (fails the test when missing).
pub fn redis_server_bin() -> PathBuf {
    require_bin(
        "REDIS_SERVER_BIN",
        "/usr/bin/redis-server",
        "run `make test`, which installs it, or `apt-get install redis-server`",
    )
}

/// The redis-sentinel binary (fails the test when missing).
pub fn redis_sentinel_bin() -> PathBuf {
    require_bin(
        "REDIS_SENTINEL_BIN",
        "/usr/bin/redis-sentinel",
        "run `make test`, which installs it, or `apt-get install redis-sentinel`",
    )
}

/// The kvrocks binary from `KVROCKS_BIN`, or `None` after printing why the caller skips.
pub fn kvrocks_bin_or_skip(what: &str) -> Option<PathBuf> {
    match std::env::var_os("KVROCKS_BIN").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        Some(p) => panic!("KVROCKS_BIN={} is not a file", p.display()),
        None => {
            // Written to the real stderr (not eprintln!, which the test harness captures) so it shows.
            let _ = writeln!(
                std::io::stderr(),
                "\nSKIPPED kvrocks cluster tests ({what}): KVROCKS_BIN is not set (need a kvrocks binary)"
            );
            None
        }
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// A running server process, killed (SIGKILL) on drop.
pub struct Proc {
    kind: Kind,
    bin: PathBuf,
    dir: tempfile::TempDir,
    config: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Proc {
    /// Starts `bin` with a config produced by `config(port, dir)`, retrying on port races.
    pub fn start(kind: Kind, bin: &Path, config: impl Fn(u16, &Path) -> String) -> Proc {
        let dir = tempfile::Builder::new()
            .prefix(&format!("kvc-{kind:?}-").to_lowercase())
            .tempdir()
            .expect("temp dir");
        let config_path = dir.path().join(match kind {
            Kind::Redis => "redis.conf",
            Kind::Sentinel => "sentinel.conf",
            Kind::Kvrocks => "kvrocks.conf",
        });
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(&config_path, config(port, dir.path())).expect("writing config");
            match spawn_and_wait(kind, bin, &config_path, dir.path(), port) {
                Ok(child) => {
                    return Proc {
                        kind,
                        bin: bin.to_owned(),
                        dir,
                        config: config_path,
                        port,
                        child: Some(child),
                    };
                }
                Err(log) => last_log = log,
            }
        }
        panic!("{kind:?} did not start after 5 attempts; last log:\n{last_log}");
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// The process's address.
    pub fn addr(&self) -> NodeAddr {
        NodeAddr::new("127.0.0.1", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// An endpoint with short timeouts (tests run on loopback).
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.addr()).with_timeouts(Timeouts::new(
            Duration::from_secs(2),
            Duration::from_secs(3),
        ))
    }

    /// An endpoint with the test password.
    pub fn endpoint_with_password(&self) -> Endpoint {
        self.endpoint().with_password(Password::new(PASSWORD))
    }

    /// SIGKILLs the process and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the process again on the same port, config and data dir.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match spawn_and_wait(
                self.kind,
                &self.bin,
                &self.config,
                self.dir.path(),
                self.port,
            ) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(log) if Instant::now() < deadline => {
                    eprintln!(
                        "restart of {:?} on {} failed, retrying: {log}",
                        self.kind, self.port
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!("restart of {:?} on {} failed:\n{log}", self.kind, self.port),
            }
        }
    }

    /// Path of the config file the process runs with.
    pub fn config_path(&self) -> &Path {
        &self.config
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

/// Spawns the server and waits until it answers on `port`; on failure kills it and returns its log.
fn spawn_and_wait(
    kind: Kind,
    bin: &Path,
    config: &Path,
    dir: &Path,
    port: u16,
) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    let mut cmd = Command::new(bin);
    match kind {
        Kind::Kvrocks => cmd.arg("-c").arg(config),
        Kind::Redis | Kind::Sentinel => cmd.arg(config),
    };
    let mut child = cmd
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
    let deadline = Instant::now() + Duration::from_secs(20);
    let failure = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break format!("exited with {status}:\n{}", read_log(dir));
        }
        if answers_as(port, child.id()) {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            break format!("not answering on port {port} after 20s:\n{}", read_log(dir));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(failure)
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when the process with `pid` answers on `port` (checked through `INFO server`'s `process_id`,
/// so a port grabbed by another server in a race is not mistaken for ours).
fn answers_as(port: u16, pid: u32) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    // AUTH fails harmlessly on servers without a password; INFO then answers either way.
    let request = format!("AUTH {PASSWORD}\r\nINFO server\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let wanted = format!("process_id:{pid}\r\n");
    while seen.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
        let text = String::from_utf8_lossy(&seen);
        if text.contains(&wanted) {
            return true;
        }
        if text.contains("process_id:") && text.contains("uptime_in_seconds:") {
            return false;
        }
    }
    false
}

/// A redis-server config; `extra` lines are appended.
pub fn redis_config(port: u16, dir: &Path, extra: &[String]) -> String {
    let mut lines = vec![
        format!("port {port}"),
        "bind 127.0.0.1".to_owned(),
        format!("dir {}", dir.display()),
        "save \"\"".to_owned(),
        "appendonly no".to_owned(),
        "daemonize no".to_owned(),
        "repl-diskless-sync-delay 0".to_owned(),
        "repl-ping-replica-period 1".to_owned(),
    ];
    lines.extend(extra.iter().cloned());
    lines.join("\n") + "\n"
}

/// Starts a redis-server; `extra` config lines are appended.
pub fn start_redis(extra: &[String]) -> Proc {
    let bin = redis_server_bin();
    let extra = extra.to_vec();
    Proc::start(Kind::Redis, &bin, move |port, dir| {
        redis_config(port, dir, &extra)
    })
}

/// Starts a redis-sentinel with an empty monitoring set.
pub fn start_sentinel() -> Proc {
    start_sentinel_with(&[])
}

/// Starts a redis-sentinel with an empty monitoring set; `extra` config lines are appended.
pub fn start_sentinel_with(extra: &[String]) -> Proc {
    let bin = redis_sentinel_bin();
    let extra = extra.to_vec();
    Proc::start(Kind::Sentinel, &bin, move |port, dir| {
        let mut lines = vec![
            format!("port {port}"),
            "bind 127.0.0.1".to_owned(),
            format!("dir {}", dir.display()),
            "daemonize no".to_owned(),
            "sentinel resolve-hostnames no".to_owned(),
        ];
        lines.extend(extra.iter().cloned());
        lines.join("\n") + "\n"
    })
}

/// Starts kvrocks in cluster mode with the test password (requirepass and masterauth).
pub fn start_kvrocks_cluster_node(bin: &Path) -> Proc {
    Proc::start(Kind::Kvrocks, bin, |port, dir| {
        [
            "bind 127.0.0.1".to_owned(),
            format!("port {port}"),
            format!("dir {}", dir.display()),
            "daemonize no".to_owned(),
            "cluster-enabled yes".to_owned(),
            "workers 2".to_owned(),
            "log-dir stdout".to_owned(),
            format!("requirepass {PASSWORD}"),
            format!("masterauth {PASSWORD}"),
            "migrate-speed 0".to_owned(),
        ]
        .join("\n")
            + "\n"
    })
}

/// Polls `check` every 50 ms until it yields `Some`, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A password-protected redis master and a replica already pointed at it.
pub fn start_master_and_replica() -> (Proc, Proc) {
    let auth = vec![
        format!("requirepass {PASSWORD}"),
        format!("masterauth {PASSWORD}"),
    ];
    let master = start_redis(&auth);
    let mut replica_conf = auth;
    replica_conf.push(format!("replicaof 127.0.0.1 {}", master.port()));
    let replica = start_redis(&replica_conf);
    (master, replica)
}

/// Makes every sentinel monitor `master` as `name` with fast failure detection.
pub async fn monitor_fast(
    sentinels: &[kvrocks_client::SentinelClient],
    name: &str,
    master: &NodeAddr,
    quorum: u32,
) {
    for s in sentinels {
        s.monitor(name, master, quorum).await.unwrap();
        s.set_auth_pass(name, &Password::new(PASSWORD))
            .await
            .unwrap();
        s.set(
            name,
            &[
                ("down-after-milliseconds", "1000"),
                ("failover-timeout", "3000"),
            ],
        )
        .await
        .unwrap();
    }
}

/// Waits until `sentinel` sees `replica` linked to the master and `peers` other sentinels.
pub async fn wait_sentinel_ready(
    sentinel: &kvrocks_client::SentinelClient,
    name: &str,
    replica: &NodeAddr,
    peers: usize,
) {
    eventually(
        "sentinel discovers the replica",
        Duration::from_secs(30),
        || async {
            let replicas = sentinel.replicas(name).await.ok()?;
            replicas
                .iter()
                .any(|r| &r.addr == replica && r.master_link_ok && !r.is_down())
                .then_some(())
        },
    )
    .await;
    eventually(
        "sentinel discovers its peers",
        Duration::from_secs(30),
        || async { (sentinel.sentinels(name).await.ok()?.len() == peers).then_some(()) },
    )
    .await;
}
