//! The one error type of this crate: every variant names the address and the command, never a password.

use std::time::Duration;

use crate::addr::NodeAddr;

/// Result of every call that talks to a process.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A call to a kvrocks, redis or sentinel process failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The TCP connection (or the handshake right after it) could not be made.
    #[error("{command} on {addr}: cannot connect: {reason}")]
    Connect {
        /// Process that could not be reached.
        addr: NodeAddr,
        /// Command that needed the connection.
        command: String,
        /// What went wrong, from the transport.
        reason: String,
    },
    /// The server refused the password (or needs one that was not given).
    #[error("{command} on {addr}: authentication failed: {message}")]
    Auth {
        /// Process that refused.
        addr: NodeAddr,
        /// Command that was refused.
        command: String,
        /// The server's message, with any secret removed.
        message: String,
    },
    /// No reply within the timeout.
    #[error("{command} on {addr}: no reply within {timeout:?}")]
    Timeout {
        /// Process that did not answer.
        addr: NodeAddr,
        /// Command that timed out.
        command: String,
        /// How long the call waited.
        timeout: Duration,
    },
    /// The connection broke while the command was in flight or queued.
    #[error("{command} on {addr}: connection lost: {reason}")]
    Connection {
        /// Process whose connection broke.
        addr: NodeAddr,
        /// Command that was in flight.
        command: String,
        /// What went wrong, from the transport.
        reason: String,
    },
    /// The server answered with an error reply.
    #[error("{command} on {addr}: server error: {message}")]
    Server {
        /// Process that answered.
        addr: NodeAddr,
        /// Command that was refused.
        command: String,
        /// The server's error message (e.g. `ERR Invalid cluster version`), with any secret removed.
        message: String,
    },
    /// The server answered, but not in the shape this crate expects.
    #[error("{command} on {addr}: unexpected reply: {reason}")]
    Reply {
        /// Process that answered.
        addr: NodeAddr,
        /// Command whose reply could not be understood.
        command: String,
        /// Why the reply could not be parsed.
        reason: String,
    },
}

impl Error {
    /// The process the failed call went to.
    pub fn addr(&self) -> &NodeAddr {
        match self {
            Error::Connect { addr, .. }
            | Error::Auth { addr, .. }
            | Error::Timeout { addr, .. }
            | Error::Connection { addr, .. }
            | Error::Server { addr, .. }
            | Error::Reply { addr, .. } => addr,
        }
    }

    /// The command that failed, e.g. `CLUSTERX SETNODES` (never its arguments).
    pub fn command(&self) -> &str {
        match self {
            Error::Connect { command, .. }
            | Error::Auth { command, .. }
            | Error::Timeout { command, .. }
            | Error::Connection { command, .. }
            | Error::Server { command, .. }
            | Error::Reply { command, .. } => command,
        }
    }

    /// The server's error message when the server answered with an error.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            Error::Server { message, .. } | Error::Auth { message, .. } => Some(message),
            _ => None,
        }
    }

    /// True when the process could not be reached or stopped answering (worth a retry later).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Timeout { .. } | Error::Connection { .. }
        )
    }

    /// True when a sentinel says it does not monitor the named master.
    pub fn is_unknown_master(&self) -> bool {
        self.server_message()
            .is_some_and(|m| m.contains("No such master with that name"))
    }

    /// True when a sentinel refused `SENTINEL FAILOVER` because it is failing that master over
    /// already (`INPROG Failover already in progress`).
    pub fn is_failover_in_progress(&self) -> bool {
        self.server_message()
            .is_some_and(|m| m.starts_with("INPROG"))
    }

    /// True when a kvrocks node refused a topology version (lower than its own, or not exactly +1 for SETSLOT).
    pub fn is_invalid_cluster_version(&self) -> bool {
        self.server_message()
            .is_some_and(|m| m.contains("Invalid cluster version"))
    }

    /// True when kvrocks says its cluster topology was never set (`CLUSTERDOWN The cluster is not initialized`).
    pub fn is_cluster_not_initialized(&self) -> bool {
        self.server_message()
            .is_some_and(|m| m.contains("not initialized"))
    }

    /// Builds the error for a reply this crate could not parse.
    pub(crate) fn reply(addr: &NodeAddr, command: &str, reason: impl ToString) -> Self {
        Error::Reply {
            addr: addr.clone(),
            command: command.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Maps a fred error to ours, naming the address and command and scrubbing `secret` from messages.
    pub(crate) fn from_fred(
        addr: &NodeAddr,
        command: &str,
        err: &fred::error::Error,
        secret: Option<&str>,
        timeout: Duration,
    ) -> Self {
        use fred::error::ErrorKind as K;
        let addr = addr.clone();
        let command = command.to_owned();
        let message = scrub(err.details(), secret);
        match err.kind() {
            K::Auth => Error::Auth {
                addr,
                command,
                message,
            },
            K::Timeout => Error::Timeout {
                addr,
                command,
                timeout,
            },
            K::IO | K::Canceled | K::Backpressure => Error::Connection {
                addr,
                command,
                reason: message,
            },
            K::Protocol | K::Parse => Error::Reply {
                addr,
                command,
                reason: message,
            },
            _ if is_client_side(&message) => Error::Connection {
                addr,
                command,
                reason: message,
            },
            _ if is_auth_message(&message) => Error::Auth {
                addr,
                command,
                message,
            },
            _ => Error::Server {
                addr,
                command,
                message,
            },
        }
    }
}

/// fred reports a few client-side conditions with the `Unknown` kind; they mean "no usable connection".
fn is_client_side(message: &str) -> bool {
    const CLIENT_SIDE: [&str; 4] = [
        "Client is not initialized",
        "Failed to send command to router",
        "Connection closed",
        "Max reconnection attempts",
    ];
    CLIENT_SIDE.iter().any(|m| message.contains(m))
}

fn is_auth_message(message: &str) -> bool {
    let text = message.trim_start();
    let lower = text.to_ascii_lowercase();
    text.starts_with("NOAUTH")
        || text.starts_with("WRONGPASS")
        // kvrocks 2.10.1 answers a wrong AUTH with "ERR Invalid password".
        || lower.contains("invalid password")
        || lower.contains("authentication required")
        // redis 6+ when a password is sent to a server that needs none.
        || lower.contains("without any password configured")
}

/// Removes every occurrence of `secret` from `message`.
pub(crate) fn scrub(message: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => message.replace(s, "***"),
        _ => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fred::error::{Error as FredError, ErrorKind};

    fn addr() -> NodeAddr {
        NodeAddr::new("10.1.2.3", 6379)
    }

    #[test]
    fn messages_name_address_and_command() {
        let e = Error::from_fred(
            &addr(),
            "CLUSTERX SETNODES",
            &FredError::new(ErrorKind::Unknown, "ERR Invalid cluster version"),
            None,
            Duration::from_secs(3),
        );
        let text = e.to_string();
        assert!(text.contains("10.1.2.3:6379"), "{text}");
        assert!(text.contains("CLUSTERX SETNODES"), "{text}");
        assert!(e.is_invalid_cluster_version());
        assert!(!e.is_unreachable());
        assert_eq!(e.command(), "CLUSTERX SETNODES");
        assert_eq!(e.addr(), &addr());
    }

    #[test]
    fn secrets_are_scrubbed() {
        let e = Error::from_fred(
            &addr(),
            "CONFIG SET",
            &FredError::new(
                ErrorKind::Unknown,
                "ERR bad value 'hunter2' for requirepass",
            ),
            Some("hunter2"),
            Duration::from_secs(3),
        );
        assert!(!e.to_string().contains("hunter2"));
        assert!(e.to_string().contains("***"));
    }

    #[test]
    fn kinds_map_to_variants() {
        let t = Duration::from_secs(1);
        let map = |k, m: &str| {
            Error::from_fred(&addr(), "PING", &FredError::new(k, m.to_owned()), None, t)
        };
        assert!(matches!(
            map(ErrorKind::Auth, "WRONGPASS"),
            Error::Auth { .. }
        ));
        assert!(matches!(
            map(ErrorKind::Unknown, "NOAUTH Authentication required."),
            Error::Auth { .. }
        ));
        // kvrocks 2.10.1's answer to a wrong AUTH.
        assert!(matches!(
            map(ErrorKind::Unknown, "ERR Invalid password"),
            Error::Auth { .. }
        ));
        assert!(matches!(
            map(ErrorKind::Timeout, "x"),
            Error::Timeout { .. }
        ));
        assert!(matches!(
            map(ErrorKind::IO, "reset"),
            Error::Connection { .. }
        ));
        assert!(matches!(
            map(ErrorKind::Canceled, "x"),
            Error::Connection { .. }
        ));
        assert!(matches!(
            map(ErrorKind::Unknown, "Client is not initialized."),
            Error::Connection { .. }
        ));
        assert!(matches!(
            map(ErrorKind::Protocol, "bad frame"),
            Error::Reply { .. }
        ));
        assert!(matches!(
            map(ErrorKind::Unknown, "ERR No such master with that name"),
            Error::Server { .. }
        ));
        assert!(map(ErrorKind::Unknown, "ERR No such master with that name").is_unknown_master());
        assert!(
            map(
                ErrorKind::Cluster,
                "CLUSTERDOWN The cluster is not initialized"
            )
            .is_cluster_not_initialized()
        );
        assert!(map(ErrorKind::IO, "reset").is_unreachable());
    }
}
