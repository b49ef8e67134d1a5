//! Starting, checking and stopping the testbed's long-running processes, and running short helper
//! commands.
//!
//! A process started for a test binary ([`Mode::Attached`]) gets `PR_SET_PDEATHSIG=SIGKILL`
//! through `setpriv --pdeathsig KILL`, so a panicking or aborted test leaves nothing running. The
//! kernel sends that signal when the *thread* that forked the child exits, not the process, and
//! every `#[tokio::test]` has its own runtime whose threads come and go; so attached children are
//! forked by one dedicated thread that lives as long as the test binary. A process started for
//! `testbed up` ([`Mode::Detached`]) runs in its own session (`setsid`) and outlives the CLI.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a long-running process is tied to the process that starts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Killed by the kernel when the starting process dies (tests).
    Attached,
    /// Its own session; lives until `testbed down` (the CLI).
    Detached,
}

/// A started process as recorded in `state.json`: the pid and its start time, so a pid reused by
/// an unrelated process after a reboot or a long pause is never signalled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRecord {
    /// `etcd`, `kube-apiserver`, `kubelet-testbed-node-1`, `kvrocks-operator`, ...
    pub name: String,
    /// Process id.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (clock ticks since boot).
    pub start_time: u64,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

/// What to start.
#[derive(Debug)]
pub struct Spec<'a> {
    /// Name used in records, logs and errors.
    pub name: &'a str,
    /// The executable.
    pub program: &'a Path,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Log file (stdout and stderr, appended).
    pub log: PathBuf,
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// The long-lived thread that forks attached children (see the module comment).
fn spawner() -> &'static mpsc::Sender<SpawnJob> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnJob>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let spawned = std::thread::Builder::new()
            .name("testbed-spawner".into())
            .spawn(move || {
                while let Ok((mut command, reply)) = rx.recv() {
                    let _ = reply.send(command.spawn());
                }
            });
        if let Err(e) = spawned {
            crate::say!("testbed: cannot start the spawner thread: {e}");
        }
        tx
    })
}

/// Starts a long-running process with its output in `spec.log`; returns its handle and record.
pub fn start(mode: Mode, spec: Spec<'_>) -> Result<(Child, ProcRecord)> {
    if let Some(dir) = spec.log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    }
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| Error::io("open log", &spec.log, e))
    };
    let (stdout, stderr) = (open()?, open()?);
    let mut command = match mode {
        Mode::Attached => {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(spec.program);
            c
        }
        Mode::Detached => {
            let mut c = Command::new("setsid");
            c.arg(spec.program);
            c
        }
    };
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    let spawn_error = |e: std::io::Error| Error::Command {
        command: format!("{} {}", spec.program.display(), join(&spec.args)),
        detail: format!("cannot start {}: {e}", spec.name),
    };
    let child = match mode {
        Mode::Attached => {
            let (reply_tx, reply_rx) = mpsc::channel();
            spawner()
                .send((command, reply_tx))
                .map_err(|_| spawn_error(std::io::Error::other("the spawner thread is gone")))?;
            reply_rx
                .recv()
                .map_err(|_| spawn_error(std::io::Error::other("the spawner thread is gone")))?
        }
        Mode::Detached => command.spawn(),
    }
    .map_err(spawn_error)?;
    let pid = child.id();
    let record = ProcRecord {
        name: spec.name.to_owned(),
        pid,
        start_time: start_time(pid).unwrap_or(0),
        log: spec.log,
    };
    Ok((child, record))
}

fn join(args: &[OsString]) -> String {
    let text: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    text.join(" ")
}

/// The start time of `pid` (field 22 of `/proc/<pid>/stat`), and whether it is a zombie.
fn stat(pid: u32) -> Option<(u64, bool)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); field 22 is at index 22 - 3.
    let state = *fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state == "Z" || state == "X"))
}

fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|(t, _)| t)
}

impl ProcRecord {
    /// Whether this very process (same pid and start time) is still running (not a zombie).
    pub fn is_alive(&self) -> bool {
        matches!(stat(self.pid), Some((t, false)) if self.start_time == 0 || t == self.start_time)
    }

    /// Sends `signal` if the process is still the one recorded.
    pub fn signal(&self, signal: Signal) {
        if self.is_alive()
            && let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, signal);
        }
    }
}

/// Stops `records`: SIGTERM, then SIGKILL for those still running after `grace`.
pub fn stop_all(records: &[ProcRecord], grace: Duration) {
    for r in records {
        r.signal(Signal::TERM);
    }
    wait_gone(records, grace);
    for r in records.iter().filter(|r| r.is_alive()) {
        crate::say!(
            "testbed: {} (pid {}) ignored SIGTERM, sending SIGKILL",
            r.name,
            r.pid
        );
        r.signal(Signal::KILL);
    }
}

/// Waits until none of `records` runs any more, for at most `timeout`.
pub fn wait_gone(records: &[ProcRecord], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while records.iter().any(ProcRecord::is_alive) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Runs a short helper command to completion; returns its stdout, or an error with its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let line = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Command {
            command: line.clone(),
            detail: format!("cannot run it: {e}"),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        Err(Error::Command {
            command: line,
            detail: format!("{}: {}{}", output.status, stderr.trim(), stdout.trim()),
        })
    }
}

/// A record of a running process found by pid (its start time read now), e.g. one to outlive.
pub fn observe(name: &str, pid: u32) -> Option<ProcRecord> {
    let (start_time, zombie) = stat(pid)?;
    (!zombie).then(|| ProcRecord {
        name: name.to_owned(),
        pid,
        start_time,
        log: PathBuf::new(),
    })
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A binary of this package by name, from `env_override` or next to the current executable
/// (cargo puts bins in `target/<profile>/` and test binaries in `target/<profile>/deps/`).
pub fn sibling_binary(env_override: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
