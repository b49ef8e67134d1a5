//! The one error type of the testbed library: every variant names the process, file, port or
//! object it is about, so a failed test says what broke without a debugger.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while building, starting, using or tearing down the testbed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`write`, `read`, `create directory`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A helper command (`openssl`, `ip`, `kubectl`, the build script, ...) failed or could not run.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line, abbreviated.
        command: String,
        /// Exit status and the tail of its output.
        detail: String,
    },
    /// A component of the testbed exited or never became healthy.
    #[error("{component}: {reason}\n--- last lines of {log} ---\n{tail}")]
    Component {
        /// `etcd`, `kube-apiserver`, `kubelet-testbed-node-1`, ...
        component: String,
        /// Why it is considered failed.
        reason: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// A condition was not reached before its deadline.
    #[error("timed out after {after:?} waiting for {what}; last observation: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline.
        after: Duration,
        /// The last thing seen while polling.
        last: String,
    },
    /// A request to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The client error.
        source: kube::Error,
    },
    /// A plain HTTP request (etcd's health, the operator's metrics) failed.
    #[error("HTTP {method} http://{addr}{path}: {reason}")]
    Http {
        /// GET or POST.
        method: &'static str,
        /// host:port.
        addr: String,
        /// The request path.
        path: String,
        /// Status and body, or the transport error.
        reason: String,
    },
    /// A file or reply did not have the expected content.
    #[error("{what}: {reason}")]
    Invalid {
        /// The file or reply.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Result with the testbed's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            action: action.into(),
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }
}
