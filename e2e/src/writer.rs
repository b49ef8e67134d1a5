//! The writer every data-plane scenario runs under: a background client that connects as a
//! user's application would, writes unique keys one after another, retries each until it is
//! acknowledged, and records every acknowledged write with its time. At the end every
//! acknowledged key is read back; a key that is missing or holds another value is a lost write.
//!
//! - [`Target::Cluster`]: a cluster-aware client (fred, RESP2) seeded with some nodes; it follows
//!   `MOVED`/`ASK` itself.
//! - [`Target::Sentinel`]: the master found through sentinel (`SENTINEL GET-MASTER-ADDR-BY-NAME`),
//!   asked again after every failed write, as a sentinel-aware client does.
//!
//! The assertions say what the project promises: a planned operation loses no acknowledged
//! write ([`Verdict::assert_none_lost`]); an unplanned failure may lose only what the old master
//! acknowledged in the last second before the fault ([`Verdict::assert_lost_only_before`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fred::prelude::{
    Builder, Client, ClientLike, Config, KeysInterface, ReconnectPolicy, ServerConfig,
};
use fred::types::RespVersion;
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Password, SentinelClient, Timeouts, Value};

use crate::error::{Error, Result};

/// How long one write may take before it counts as failed (and is retried).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed write, so a writer facing a dead master does not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Concurrent reads while checking the acknowledged keys.
const READ_BATCH: usize = 256;
/// The window before a fault in which an asynchronous replica may not have received an
/// acknowledged write yet: losing such a write to an unplanned failure is allowed.
pub const UNPLANNED_WINDOW: Duration = Duration::from_secs(1);

/// The password an application reads from its mounted Secret: the test changes it when it
/// rotates the Secret, and the writer uses the new one from its next connection on.
#[derive(Clone, Debug, Default)]
pub struct SharedPassword(Arc<std::sync::RwLock<String>>);

impl SharedPassword {
    /// Starts with `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(password.into())))
    }

    /// The current password.
    pub fn get(&self) -> String {
        self.0.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Replaces it.
    pub fn set(&self, password: impl Into<String>) {
        if let Ok(mut p) = self.0.write() {
            *p = password.into();
        }
    }
}

/// Where a cluster client finds its first nodes: fixed addresses, or the current IPs of a set
/// of pods (what an application gets from the cluster's headless Service), looked up again when
/// every known node is gone (a roll gives every pod a new IP).
#[derive(Clone)]
pub enum Seeds {
    /// These addresses.
    Fixed(Vec<NodeAddr>),
    /// The IPs of the running pods matching `selector` in `namespace`, on `port`.
    Pods {
        /// A client of the API server.
        client: kube::Client,
        /// Their namespace.
        namespace: String,
        /// A label selector.
        selector: String,
        /// The kvrocks port.
        port: u16,
    },
}

impl std::fmt::Debug for Seeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(addrs) => f.debug_tuple("Fixed").field(addrs).finish(),
            Self::Pods {
                namespace,
                selector,
                ..
            } => write!(f, "Pods({namespace}/{selector})"),
        }
    }
}

impl Seeds {
    async fn resolve(&self) -> Vec<NodeAddr> {
        match self {
            Self::Fixed(addrs) => addrs.clone(),
            Self::Pods {
                client,
                namespace,
                selector,
                port,
            } => {
                let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                    kube::Api::namespaced(client.clone(), namespace);
                let Ok(list) = pods
                    .list(&kube::api::ListParams::default().labels(selector))
                    .await
                else {
                    return Vec::new();
                };
                list.items
                    .iter()
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| NodeAddr::new(ip, *port))
                    .collect()
            }
        }
    }
}

/// Where the writer writes, found as an application finds it.
#[derive(Clone, Debug)]
pub enum Target {
    /// A KvrocksCluster, through a cluster-aware client seeded with these nodes (`ip:port`).
    Cluster {
        /// Nodes to learn the slot map from.
        seeds: Seeds,
        /// The cluster's password.
        password: SharedPassword,
    },
    /// A KvrocksStandard, through its sentinel group.
    Sentinel {
        /// The sentinels (`ip:26379`).
        sentinels: Vec<NodeAddr>,
        /// The monitored name, `standard_<cr>`.
        master_name: String,
        /// The instance's password.
        password: SharedPassword,
    },
}

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The key (unique per write).
    pub key: String,
    /// The value written.
    pub value: String,
    /// When the acknowledgement arrived.
    pub at: Instant,
}

/// What a writer did, once stopped.
#[derive(Debug)]
pub struct Log {
    /// The writer's name (key prefix and report label).
    pub name: String,
    /// Every acknowledged write, in order.
    pub acked: Vec<Ack>,
    /// Failed attempts by kind (each was retried).
    pub errors: BTreeMap<String, usize>,
    /// The longest stretch without an acknowledgement while the writer ran.
    pub longest_gap: Duration,
    /// When that stretch ended.
    pub longest_gap_end: Option<Instant>,
    /// How long the writer ran.
    pub ran: Duration,
}

/// A running writer; stop it with [`Writer::stop`].
pub struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Log>,
}

impl Writer {
    /// Starts writing `<name>:<n>` keys to `target` (values are unique per run).
    pub async fn start(name: &str, target: Target) -> Result<Self> {
        let mut conn = Conn::open(&target).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let run_id = rand_suffix();
        let task = {
            let stop = stop.clone();
            let count = acked.clone();
            let name = name.to_owned();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut log = Log {
                    name: name.clone(),
                    acked: Vec::new(),
                    errors: BTreeMap::new(),
                    longest_gap: Duration::ZERO,
                    longest_gap_end: None,
                    ran: Duration::ZERO,
                };
                let mut last_ack = started;
                let mut n = 0usize;
                while !stop.load(Ordering::SeqCst) {
                    let key = format!("{name}:{n}");
                    let value = format!("{run_id}-{n}");
                    match conn.set(&key, &value).await {
                        Ok(()) => {
                            let at = Instant::now();
                            let gap = at - last_ack;
                            if gap > log.longest_gap {
                                log.longest_gap = gap;
                                log.longest_gap_end = Some(at);
                            }
                            last_ack = at;
                            log.acked.push(Ack { key, value, at });
                            count.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                        }
                        Err(kind) => {
                            *log.errors.entry(kind).or_default() += 1;
                            tokio::time::sleep(RETRY_PAUSE).await;
                            conn.recover(&target).await;
                        }
                    }
                }
                let gap = last_ack.elapsed();
                if gap > log.longest_gap {
                    log.longest_gap = gap;
                    log.longest_gap_end = Some(Instant::now());
                }
                log.ran = started.elapsed();
                conn.close().await;
                log
            })
        };
        Ok(Self { stop, acked, task })
    }

    /// Starts a writer and returns once it has `acks` writes acknowledged (it really writes).
    pub async fn start_writing(name: &str, target: Target, acks: usize) -> Result<Self> {
        let writer = Self::start(name, target).await?;
        writer.wait_for_acks(acks, Duration::from_secs(30)).await?;
        Ok(writer)
    }

    /// Waits for `acks` more acknowledged writes (writing goes on after the operation), then
    /// stops.
    pub async fn finish(self, acks: usize) -> Result<Log> {
        self.wait_for_acks(acks, Duration::from_secs(60)).await?;
        self.stop().await
    }

    /// How many writes have been acknowledged so far.
    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more writes are acknowledged (the writer is making progress).
    pub async fn wait_for_acks(&self, n: usize, timeout: Duration) -> Result<()> {
        let target = self.acked() + n;
        crate::wait::until("the writer's acknowledged writes", timeout, async || {
            if self.acked() >= target {
                Ok(())
            } else {
                Err(format!("{} of {target} acknowledged", self.acked()))
            }
        })
        .await
    }

    /// Stops writing and returns the log.
    pub async fn stop(self) -> Result<Log> {
        self.stop.store(true, Ordering::SeqCst);
        self.task
            .await
            .map_err(|e| Error::invalid("the writer task", e.to_string()))
    }
}

/// Writes `keys` keys `<name>:<n>` with values of `value_bytes` bytes as fast as the target
/// takes them (many in flight), each retried until acknowledged; returns them as a log to check
/// later like a writer's.
pub async fn load(name: &str, target: &Target, keys: usize, value_bytes: usize) -> Result<Log> {
    let conn = Conn::open(target).await?;
    let started = Instant::now();
    let run_id = rand_suffix();
    let mut acked = Vec::with_capacity(keys);
    let indices: Vec<usize> = (0..keys).collect();
    for chunk in indices.chunks(READ_BATCH) {
        let writes = chunk.iter().map(|n| {
            let conn = &conn;
            let key = format!("{name}:{n}");
            let mut value = format!("{run_id}-{n}-");
            while value.len() < value_bytes {
                value.push('x');
            }
            async move {
                let mut last = String::new();
                for _ in 0..20 {
                    match conn.set_shared(&key, &value).await {
                        Ok(()) => {
                            return Ok(Ack {
                                key,
                                value,
                                at: Instant::now(),
                            });
                        }
                        Err(e) => last = e,
                    }
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(Error::invalid(format!("writing {key}"), last))
            }
        });
        for result in futures::future::join_all(writes).await {
            acked.push(result?);
        }
    }
    conn.close().await;
    Ok(Log {
        name: name.to_owned(),
        acked,
        errors: BTreeMap::new(),
        longest_gap: Duration::ZERO,
        longest_gap_end: None,
        ran: started.elapsed(),
    })
}

impl Log {
    /// Reads every acknowledged key back through `target`; returns what was lost.
    pub async fn verify(&self, target: &Target) -> Result<Verdict> {
        let conn = Conn::open(target).await?;
        let lost = lost_writes(&self.acked, async |key: &str| conn.get(key).await).await?;
        conn.close().await;
        Ok(self.verdict(lost))
    }

    /// Reads every acknowledged key on one process directly (not through the cluster or
    /// sentinel): what that process holds.
    pub async fn verify_on(&self, node: &NodeAddr, password: &str) -> Result<Verdict> {
        let client = node_client(node, password);
        let lost = lost_writes(&self.acked, async |key: &str| get_on(&client, key).await).await?;
        client.close().await;
        Ok(self.verdict(lost))
    }

    fn verdict(&self, lost: Vec<Ack>) -> Verdict {
        Verdict {
            name: self.name.clone(),
            acked: self.acked.len(),
            lost,
            errors: self.errors.clone(),
            longest_gap: self.longest_gap,
            ran: self.ran,
        }
    }
}

/// The acknowledged writes that a reader does not return with their value.
async fn lost_writes(
    acked: &[Ack],
    read: impl AsyncFn(&str) -> std::result::Result<Option<String>, String>,
) -> Result<Vec<Ack>> {
    let mut lost = Vec::new();
    for chunk in acked.chunks(READ_BATCH) {
        let reads = chunk.iter().map(|ack| {
            let read = &read;
            async move {
                // A read is retried a few times: the check must not blame the data for a
                // connection that dropped while reading.
                let mut last = String::new();
                for _ in 0..5 {
                    match read(&ack.key).await {
                        Ok(value) => return Ok((ack, value)),
                        Err(e) => last = e,
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(Error::invalid(format!("reading {} back", ack.key), last))
            }
        });
        for result in futures::future::join_all(reads).await {
            let (ack, value) = result?;
            if value.as_deref() != Some(ack.value.as_str()) {
                lost.push(ack.clone());
            }
        }
    }
    Ok(lost)
}

/// The outcome of reading a writer's acknowledged keys back.
#[derive(Debug)]
pub struct Verdict {
    /// The writer's name.
    pub name: String,
    /// Writes acknowledged.
    pub acked: usize,
    /// Acknowledged writes not read back with their value.
    pub lost: Vec<Ack>,
    /// Failed attempts by kind.
    pub errors: BTreeMap<String, usize>,
    /// The longest stretch without an acknowledgement (the write outage).
    pub longest_gap: Duration,
    /// How long the writer ran.
    pub ran: Duration,
}

impl Verdict {
    /// One line for the test output: counts, outage and errors.
    pub fn summary(&self) -> String {
        format!(
            "writer {}: {} acked, {} lost, longest gap {:.2} s over {:.1} s, errors {:?}",
            self.name,
            self.acked,
            self.lost.len(),
            self.longest_gap.as_secs_f64(),
            self.ran.as_secs_f64(),
            self.errors
        )
    }

    /// Prints the summary line (with `what` in front).
    pub fn report(&self, what: &str) {
        crate::say!("{what}: {}", self.summary());
    }

    /// A planned operation: no acknowledged write may be lost.
    pub fn assert_none_lost(&self, what: &str) {
        self.report(what);
        assert!(
            self.acked > 0,
            "{what}: the writer got no write acknowledged"
        );
        assert!(
            self.lost.is_empty(),
            "{what}: {} acknowledged writes lost (first: {:?}); {}",
            self.lost.len(),
            self.lost.iter().take(5).map(|a| &a.key).collect::<Vec<_>>(),
            self.summary()
        );
    }

    /// An unplanned failure that started at `fault_start` and was in effect at `fault_done`:
    /// every lost write must have been acknowledged in the last [`UNPLANNED_WINDOW`] before the
    /// fault (an older one means stale data was promoted), and none after it.
    pub fn assert_lost_only_before(&self, what: &str, fault_start: Instant, fault_done: Instant) {
        self.report(what);
        assert!(
            self.acked > 0,
            "{what}: the writer got no write acknowledged"
        );
        let window_start = fault_start
            .checked_sub(UNPLANNED_WINDOW)
            .unwrap_or(fault_start);
        let outside: Vec<String> = self
            .lost
            .iter()
            .filter(|a| a.at < window_start || a.at > fault_done)
            .map(|a| describe_ack(a, fault_start))
            .collect();
        let inside = self.lost.len() - outside.len();
        crate::say!(
            "{what}: {inside} writes lost from the last {:.1} s before the fault (allowed), {} outside it",
            UNPLANNED_WINDOW.as_secs_f64(),
            outside.len()
        );
        assert!(
            outside.is_empty(),
            "{what}: {} lost writes were acknowledged outside the {:.1} s before the fault: {:?}; {}",
            outside.len(),
            UNPLANNED_WINDOW.as_secs_f64(),
            outside.iter().take(5).collect::<Vec<_>>(),
            self.summary()
        );
    }
}

fn describe_ack(ack: &Ack, fault: Instant) -> String {
    if ack.at >= fault {
        format!("{} (+{:.3} s)", ack.key, (ack.at - fault).as_secs_f64())
    } else {
        format!("{} (-{:.3} s)", ack.key, (fault - ack.at).as_secs_f64())
    }
}

/// A connection as the application keeps it.
enum Conn {
    Cluster {
        client: Client,
        password: String,
        /// The seeds it was built from, and failed writes in a row since the last ack.
        seeds: Vec<NodeAddr>,
        failures: usize,
    },
    Sentinel {
        master: Option<NodeClient>,
        password: String,
    },
}

impl Conn {
    async fn open(target: &Target) -> Result<Self> {
        match target {
            Target::Cluster { seeds, password } => {
                let password = password.get();
                let seeds = seeds.resolve().await;
                Ok(Self::Cluster {
                    client: cluster_client(&seeds, &password).await?,
                    password,
                    seeds,
                    failures: 0,
                })
            }
            Target::Sentinel {
                sentinels,
                master_name,
                password,
            } => {
                let addr = discover(sentinels, master_name).await.ok_or_else(|| {
                    Error::invalid(
                        format!("sentinel master {master_name}"),
                        "no sentinel names a master",
                    )
                })?;
                let password = password.get();
                Ok(Self::Sentinel {
                    master: Some(node_client(&addr, &password)),
                    password,
                })
            }
        }
    }

    /// One `SET`; the error's kind on failure.
    async fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        self.set_shared(key, value).await.inspect(|()| {
            if let Self::Cluster { failures, .. } = self {
                *failures = 0;
            }
        })
    }

    /// One `SET` through a shared connection (many in flight).
    async fn set_shared(&self, key: &str, value: &str) -> std::result::Result<(), String> {
        match self {
            Self::Cluster { client, .. } => client
                .set::<(), _, _>(key, value, None, None, false)
                .await
                .map_err(|e| error_kind(e.details())),
            Self::Sentinel { master, .. } => {
                let Some(master) = master else {
                    return Err("no master known".to_owned());
                };
                match master.raw("SET", &[key, value]).await {
                    Ok(reply) if value_text(&reply).as_deref() == Some("OK") => Ok(()),
                    Ok(reply) => Err(error_kind(&format!("{reply:?}"))),
                    Err(e) => Err(error_kind(&e.to_string())),
                }
            }
        }
    }

    async fn get(&self, key: &str) -> std::result::Result<Option<String>, String> {
        match self {
            Self::Cluster { client, .. } => client
                .get::<Option<String>, _>(key)
                .await
                .map_err(|e| e.to_string()),
            Self::Sentinel { master, .. } => match master {
                Some(master) => get_on(master, key).await,
                None => Err("no master known".to_owned()),
            },
        }
    }

    /// After a failed write: a sentinel client asks sentinel again (the master may have moved);
    /// either kind reconnects when the password changed.
    async fn recover(&mut self, target: &Target) {
        match (self, target) {
            (
                Self::Sentinel { master, password },
                Target::Sentinel {
                    sentinels,
                    master_name,
                    password: current,
                },
            ) => {
                let Some(addr) = discover(sentinels, master_name).await else {
                    return;
                };
                let current = current.get();
                if master.as_ref().map(NodeClient::addr) != Some(&addr) || *password != current {
                    if let Some(old) = master.take() {
                        old.close().await;
                    }
                    *master = Some(node_client(&addr, &current));
                    *password = current;
                }
            }
            (
                Self::Cluster {
                    client,
                    password,
                    seeds,
                    failures,
                },
                Target::Cluster {
                    seeds: source,
                    password: current,
                },
            ) => {
                *failures += 1;
                let current = current.get();
                // Rebuilt when the password changed, or when writes keep failing and the nodes
                // it knows are not the nodes there are (every pod restarted with a new IP).
                let fresh_seeds = if *failures >= 3 {
                    source.resolve().await
                } else {
                    seeds.clone()
                };
                let moved = !fresh_seeds.is_empty()
                    && fresh_seeds
                        .iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        != seeds.iter().collect();
                if (*password != current || moved)
                    && let Ok(fresh) = cluster_client(&fresh_seeds, &current).await
                {
                    let _ = client.quit().await;
                    *client = fresh;
                    *password = current;
                    *seeds = fresh_seeds;
                    *failures = 0;
                }
            }
            _ => {}
        }
    }

    async fn close(&self) {
        match self {
            Self::Cluster { client, .. } => {
                let _ = client.quit().await;
            }
            Self::Sentinel { master, .. } => {
                if let Some(master) = master {
                    master.close().await;
                }
            }
        }
    }
}

/// The master address the first answering sentinel gives.
async fn discover(sentinels: &[NodeAddr], name: &str) -> Option<NodeAddr> {
    for addr in sentinels {
        let sentinel = SentinelClient::new(Endpoint::new(addr.clone()).with_timeouts(
            Timeouts::new(Duration::from_millis(300), Duration::from_millis(500)),
        ));
        let found = sentinel.master_addr(name).await;
        sentinel.close().await;
        if let Ok(Some(master)) = found {
            return Some(master);
        }
    }
    None
}

fn node_client(addr: &NodeAddr, password: &str) -> NodeClient {
    NodeClient::new(
        Endpoint::new(addr.clone())
            .with_password(Password::new(password))
            .with_timeouts(Timeouts::new(Duration::from_millis(500), WRITE_TIMEOUT)),
    )
}

async fn get_on(client: &NodeClient, key: &str) -> std::result::Result<Option<String>, String> {
    match client.raw("GET", &[key]).await {
        Ok(Value::Null) => Ok(None),
        Ok(reply) => value_text(&reply)
            .map(Some)
            .ok_or_else(|| format!("GET {key}: unexpected reply {reply:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn cluster_client(seeds: &[NodeAddr], password: &str) -> Result<Client> {
    let config = Config {
        server: ServerConfig::new_clustered(
            seeds
                .iter()
                .map(|a| (a.host.clone(), a.port))
                .collect::<Vec<_>>(),
        ),
        password: Some(password.to_owned()),
        // kvrocks 2.10 and RESP3 cluster clients do not get along (see the design notes).
        version: RespVersion::RESP2,
        ..Default::default()
    };
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = WRITE_TIMEOUT * 2)
        .set_policy(ReconnectPolicy::new_constant(0, 200))
        // fred follows MOVED and ASK itself; while nodes take a new topology a slot can bounce
        // a few times, so allow more redirections than the default. What still fails reaches the
        // writer as an error and is retried.
        .with_connection_config(|c| {
            c.max_command_attempts = 20;
            c.max_redirections = 20;
        })
        .build()
        .map_err(|e| Error::invalid("the cluster client", e.to_string()))?;
    client
        .init()
        .await
        .map_err(|e| Error::invalid("connecting the cluster client", e.to_string()))?;
    Ok(client)
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// A short label for an error: its first words, redirections folded into one kind.
fn error_kind(details: &str) -> String {
    if details.contains("redirections") || details.contains("Too many failed write attempts") {
        return "MOVED (too many redirections)".to_owned();
    }
    details
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A per-run suffix, so a value written by an earlier run never reads as this run's.
fn rand_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", std::process::id(), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(key: &str, at: Instant) -> Ack {
        Ack {
            key: key.into(),
            value: "v".into(),
            at,
        }
    }

    fn verdict(lost: Vec<Ack>) -> Verdict {
        Verdict {
            name: "w".into(),
            acked: 10,
            lost,
            errors: BTreeMap::new(),
            longest_gap: Duration::ZERO,
            ran: Duration::ZERO,
        }
    }

    #[tokio::test]
    async fn lost_writes_are_the_missing_and_the_changed() {
        let now = Instant::now();
        let acked = vec![ack("a", now), ack("b", now), ack("c", now)];
        let lost = lost_writes(&acked, async |key: &str| match key {
            "a" => Ok(Some("v".to_owned())),
            "b" => Ok(None),
            _ => Ok(Some("other".to_owned())),
        })
        .await
        .unwrap();
        let keys: Vec<&str> = lost.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["b", "c"]);
    }

    #[tokio::test]
    async fn a_read_that_keeps_failing_is_an_error_not_a_loss() {
        let acked = vec![ack("a", Instant::now())];
        let result = lost_writes(&acked, async |_: &str| Err("refused".to_owned())).await;
        assert!(result.is_err());
    }

    #[test]
    fn an_unplanned_fault_may_lose_only_the_last_second() {
        let fault = Instant::now() + Duration::from_secs(10);
        let done = fault + Duration::from_millis(5);
        verdict(vec![ack("recent", fault - Duration::from_millis(300))])
            .assert_lost_only_before("ok", fault, done);
        let old = std::panic::catch_unwind(|| {
            verdict(vec![ack("old", fault - Duration::from_secs(3))])
                .assert_lost_only_before("old", fault, done);
        });
        assert!(old.is_err(), "a write 3 s before the fault may not be lost");
        let later = std::panic::catch_unwind(|| {
            verdict(vec![ack("later", done + Duration::from_secs(2))])
                .assert_lost_only_before("later", fault, done);
        });
        assert!(later.is_err(), "a write after the fault may not be lost");
    }

    #[test]
    fn a_planned_operation_may_lose_nothing() {
        verdict(vec![]).assert_none_lost("ok");
        let one = std::panic::catch_unwind(|| {
            verdict(vec![ack("x", Instant::now())]).assert_none_lost("one");
        });
        assert!(one.is_err());
    }
}
