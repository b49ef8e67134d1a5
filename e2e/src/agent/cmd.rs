//! Running short host commands (`ip`, `nsenter`) with a deadline, and finding host tools.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::error::{AgentError, AgentResult};

/// How long a helper command may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs `program args...`, returning stdout; a non-zero exit is an error carrying stderr.
pub async fn run(program: &str, args: &[&str]) -> AgentResult<String> {
    let line = format!("{program} {}", args.join(" "));
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(AgentError::Command {
                command: line,
                detail: format!("cannot run it: {e}"),
            });
        }
        Err(_) => {
            return Err(AgentError::Command {
                command: line,
                detail: format!("no result within {TIMEOUT:?}"),
            });
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(AgentError::Command {
            command: line,
            detail: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        })
    }
}

/// The absolute path of a host tool (`ip`, `nsenter`, `unshare`), or its bare name.
pub fn tool(name: &str) -> String {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_owned())
}
