//! Container processes: started as `ip netns exec <netns> unshare --mount --uts --propagation
//! private /bin/sh -c <launch script> sh <argv...>`. Each step `exec`s the next, so the pid we spawn
//! is the container's main process; it leads its own process group, which is what node stop/start
//! (SIGSTOP/SIGCONT) and the final SIGKILL address. Exec probes and hooks enter the running
//! container's namespaces with `nsenter --target <pid>`.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use super::cmd::tool;

/// How a container process is started.
#[derive(Debug)]
pub struct Launch<'a> {
    /// The pod's network namespace.
    pub netns: &'a str,
    /// The script from [`super::mounts::launch_script`].
    pub script: &'a str,
    /// Host argv of the program.
    pub argv: &'a [String],
    /// Its whole environment.
    pub env: &'a BTreeMap<String, String>,
    /// Log file, appended (stdout and stderr).
    pub log: &'a Path,
}

/// Starts the process.
pub fn spawn(launch: &Launch<'_>) -> std::io::Result<tokio::process::Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log)?;
    let err = log.try_clone()?;
    let mut command = tokio::process::Command::new(tool("ip"));
    command
        .args(["netns", "exec", launch.netns])
        .arg(tool("unshare"))
        .args([
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "/bin/sh",
            "-c",
        ])
        .arg(launch.script)
        .arg("sh")
        .args(launch.argv)
        .env_clear()
        .envs(launch.env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    command.spawn()
}

/// Sends `signal` to one process; a process already gone is fine.
pub fn signal(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Sends `signal` to a container's process group (its main process and its children).
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// A Kubernetes exit code: the process's, or 128 + the signal that killed it.
pub fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (255, None),
    }
}

/// What an exec in a container returned.
#[derive(Debug)]
pub struct ExecResult {
    /// Exit code (128+signal when killed); `None` on timeout or when it could not run.
    pub code: Option<i32>,
    /// The tail of its combined output, for messages.
    pub output: String,
}

/// Runs `argv` inside the namespaces of the container whose main process is `pid`, with the
/// container's environment, killed after `timeout`.
pub async fn exec_in(
    pid: u32,
    argv: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> ExecResult {
    let mut command = tokio::process::Command::new(tool("nsenter"));
    command
        .args([
            "--target",
            &pid.to_string(),
            "--net",
            "--mount",
            "--uts",
            // The container's own root (it runs chrooted in its layer) and directory.
            "--root",
            "--wd",
            "--",
        ])
        .args(argv)
        .env_clear()
        .envs(env)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return ExecResult {
                code: None,
                output: format!("cannot run nsenter: {e}"),
            };
        }
        Err(_) => {
            return ExecResult {
                code: None,
                output: format!("command timed out after {timeout:?}"),
            };
        }
    };
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let text = text.trim();
    let tail = text
        .char_indices()
        .rev()
        .nth(511)
        .map_or(text, |(i, _)| &text[i..]);
    ExecResult {
        code: Some(exit_code(output.status).0),
        output: tail.to_owned(),
    }
}
