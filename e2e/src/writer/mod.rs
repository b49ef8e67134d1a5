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
mod conn;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kvrocks_client::NodeAddr;

use crate::error::{Error, Result};
use conn::{Conn, get_on, node_client};
pub use conn::{Seeds, SharedPassword, Target};

/// Pause after a failed write, so a writer facing a dead master does not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// Concurrent reads while checking the acknowledged keys.
const READ_BATCH: usize = 256;
/// The window before a fault in which an asynchronous replica may not have received an
/// acknowledged write yet: losing such a write to an unplanned failure is allowed.
pub const UNPLANNED_WINDOW: Duration = Duration::from_secs(1);

/// One acknowledged write.
#[derive(Clone, Debug)]
pub struct Ack {
    /// The key (unique per write).
    pub key: String,
    /// The value written.
    pub value: String,
    /// When the request was sent: the server handled it at or after this.
    pub sent: Instant,
    /// When the writer saw the acknowledgement (on a busy runtime, later than the server sent
    /// it: the server handled the write between `sent` and `at`).
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
                    let sent = Instant::now();
                    match conn.set(&key, &value).await {
                        Ok(()) => {
                            let at = Instant::now();
                            let gap = at - last_ack;
                            if gap > log.longest_gap {
                                log.longest_gap = gap;
                                log.longest_gap_end = Some(at);
                            }
                            last_ack = at;
                            log.acked.push(Ack {
                                key,
                                value,
                                sent,
                                at,
                            });
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
                    let sent = Instant::now();
                    match conn.set_shared(&key, &value).await {
                        Ok(()) => {
                            return Ok(Ack {
                                key,
                                value,
                                sent,
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
    /// fault (an older one means stale data was promoted), and none sent after it was in effect
    /// (the failed server cannot have acknowledged that one). A write is judged by the times the
    /// server may have handled it: sent no later than `fault_done`, acknowledged no earlier than
    /// the window's start.
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
            .filter(|a| a.at < window_start || a.sent > fault_done)
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
    format!(
        "{} (sent {}, acknowledged {})",
        ack.key,
        relative(ack.sent, fault),
        relative(ack.at, fault)
    )
}

/// `at` as seconds after (+) or before (-) `fault`.
fn relative(at: Instant, fault: Instant) -> String {
    if at >= fault {
        format!("+{:.3} s", (at - fault).as_secs_f64())
    } else {
        format!("-{:.3} s", (fault - at).as_secs_f64())
    }
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
            sent: at - Duration::from_millis(1),
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
        // Sent before the fault was in effect, its acknowledgement seen late by a busy writer:
        // the failed server handled it in time.
        let mut seen_late = ack("seen late", done + Duration::from_millis(8));
        seen_late.sent = done - Duration::from_millis(1);
        verdict(vec![seen_late]).assert_lost_only_before("seen late", fault, done);
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
