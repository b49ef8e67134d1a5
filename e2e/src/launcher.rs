//! Starts the testbed's long-running processes one by one, records each in `state.json` at once,
//! and waits for each to become healthy, failing with the tail of its log when it exits or stays
//! unhealthy past its deadline.

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{self, Mode, ProcRecord, Spec};
use crate::state::State;

/// How often a health probe is repeated.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Log lines shown when a component fails.
const TAIL_LINES: usize = 40;

/// The processes of one testbed being started, and its recorded state.
pub struct Launcher {
    /// The recorded state, saved after every change.
    pub state: State,
    children: Vec<(String, Child)>,
}

impl Launcher {
    /// A launcher for a fresh state.
    pub fn new(state: State) -> Self {
        Self {
            state,
            children: Vec::new(),
        }
    }

    /// The state root.
    pub fn root(&self) -> PathBuf {
        self.state.root.clone()
    }

    /// Whether processes are tied to this process or detached.
    pub fn mode(&self) -> Mode {
        self.state.mode
    }

    /// Starts a process and records it.
    pub fn start(&mut self, spec: Spec<'_>) -> Result<ProcRecord> {
        let name = spec.name.to_owned();
        let (child, record) = process::start(self.state.mode, spec)?;
        self.state.record(record.clone())?;
        self.children.push((name, child));
        Ok(record)
    }

    /// The exit status of a started process, if it has exited.
    fn exited(&mut self, name: &str) -> Option<String> {
        let (_, child) = self.children.iter_mut().find(|(n, _)| n == name)?;
        match child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown status ({e})")),
        }
    }

    /// Polls `probe` until it succeeds; fails as soon as the process exits, or at the deadline.
    pub async fn wait_healthy(
        &mut self,
        name: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut() -> std::result::Result<(), String>,
    ) -> Result<Duration> {
        let started = Instant::now();
        loop {
            let last = match probe().await {
                Ok(()) => return Ok(started.elapsed()),
                Err(e) => e,
            };
            if let Some(status) = self.exited(name) {
                return Err(self.failure(
                    name,
                    format!("exited ({status}) before it was healthy; last probe: {last}"),
                ));
            }
            if started.elapsed() >= timeout {
                return Err(self.failure(
                    name,
                    format!("not healthy within {timeout:?}; last probe: {last}"),
                ));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// A [`Error::Component`] for `name` with the tail of its log.
    pub fn failure(&self, name: &str, reason: String) -> Error {
        let log = self
            .state
            .process(name)
            .map(|p| p.log.clone())
            .unwrap_or_else(|| self.state.root.join("logs").join(format!("{name}.log")));
        Error::Component {
            component: name.to_owned(),
            reason,
            tail: process::log_tail(&log, TAIL_LINES),
            log,
        }
    }

    /// Hands over the child handles (kept so they can be reaped; dropping one does not kill it).
    pub fn into_parts(self) -> (State, Vec<(String, Child)>) {
        (self.state, self.children)
    }
}
