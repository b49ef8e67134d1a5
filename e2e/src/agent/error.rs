//! The node agent's error type: each variant names the file, command or object it is about.

use std::path::PathBuf;

/// What went wrong in the node agent outside a single pod (a pod's own trouble becomes a Waiting
/// reason in its status instead).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A helper command (`ip`, `nsenter`, ...) failed or could not run.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// A request to the Kubernetes API failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done, naming the object.
        action: String,
        /// The client error.
        source: kube::Error,
    },
    /// A configuration file or flag is wrong.
    #[error("{what}: {reason}")]
    Invalid {
        /// The file or flag.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl AgentError {
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

/// Result with the agent's [`AgentError`].
pub type AgentResult<T> = Result<T, AgentError>;
