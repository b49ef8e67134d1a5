//! Where a process listens, how to authenticate to it, and how long to wait for it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A host (IP address or name) and TCP port of a kvrocks, redis or sentinel process.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeAddr {
    /// IP address or host name, without brackets for IPv6.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Builds an address from a host and a port.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Why a `host:port` string is not a [`NodeAddr`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
pub struct AddrParseError {
    input: String,
    reason: &'static str,
}

impl FromStr for NodeAddr {
    type Err = AddrParseError;

    /// Parses `host:port`, `[v6]:port` or a bare IPv6 address followed by `:port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| AddrParseError {
            input: s.to_owned(),
            reason,
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| err("missing ':port'"))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(err("empty host"));
        }
        if host.chars().any(char::is_whitespace) {
            return Err(err("host contains whitespace"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| err("port is not a number in 0..=65535"))?;
        Ok(Self::new(host, port))
    }
}

/// A password for `requirepass` / `AUTH`; its `Debug` never shows the secret and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, to hand to a server; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password as a Redis ACL stores it (`ACL GETUSER` lists these): the SHA-256 of its
    /// bytes in lowercase hex. Comparing hashes tells which passwords a server accepts without
    /// ever reading one back.
    pub fn acl_hash(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl From<String> for Password {
    fn from(secret: String) -> Self {
        Self(secret)
    }
}

impl From<&str> for Password {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

/// How long a control-plane call may wait; a call fails with an error rather than hang.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Time to open the TCP connection and authenticate.
    pub connect: Duration,
    /// Time for one command's reply, once connected.
    pub command: Duration,
}

impl Timeouts {
    /// Connect timeout used by [`Timeouts::default`].
    pub const DEFAULT_CONNECT: Duration = Duration::from_secs(2);
    /// Command timeout used by [`Timeouts::default`].
    pub const DEFAULT_COMMAND: Duration = Duration::from_secs(3);

    /// Builds timeouts from a connect and a command duration.
    pub fn new(connect: Duration, command: Duration) -> Self {
        Self { connect, command }
    }

    /// Returns a copy with another connect timeout.
    pub fn with_connect(mut self, connect: Duration) -> Self {
        self.connect = connect;
        self
    }

    /// Returns a copy with another command timeout.
    pub fn with_command(mut self, command: Duration) -> Self {
        self.command = command;
        self
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self::new(Self::DEFAULT_CONNECT, Self::DEFAULT_COMMAND)
    }
}

/// Everything needed to reach one process: its address, an optional password and timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Where the process listens.
    pub addr: NodeAddr,
    /// Password sent with `AUTH` right after connecting, if any.
    pub password: Option<Password>,
    /// Connect and command timeouts.
    pub timeouts: Timeouts,
}

impl Endpoint {
    /// An endpoint without password and with default timeouts.
    pub fn new(addr: NodeAddr) -> Self {
        Self {
            addr,
            password: None,
            timeouts: Timeouts::default(),
        }
    }

    /// Returns a copy that authenticates with `password`.
    pub fn with_password(mut self, password: impl Into<Password>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Returns a copy that authenticates with `password` when it is `Some`.
    pub fn with_optional_password(mut self, password: Option<Password>) -> Self {
        self.password = password;
        self
    }

    /// Returns a copy with other timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_addresses() {
        let a: NodeAddr = "10.0.0.1:6379".parse().unwrap();
        assert_eq!(a, NodeAddr::new("10.0.0.1", 6379));
        assert_eq!(a.to_string(), "10.0.0.1:6379");
        let v6: NodeAddr = "[::1]:26379".parse().unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.to_string(), "[::1]:26379");
        let bare_v6: NodeAddr = "fe80::1:6379".parse().unwrap();
        assert_eq!(bare_v6, NodeAddr::new("fe80::1", 6379));
        let name: NodeAddr = "kv-0.kv.ns.svc:6379".parse().unwrap();
        assert_eq!(name.host, "kv-0.kv.ns.svc");
    }

    #[test]
    fn rejects_bad_addresses() {
        for bad in [
            "",
            "host",
            ":6379",
            "host:",
            "host:99999",
            "host:-1",
            "a b:1",
            "[]:1",
        ] {
            assert!(bad.parse::<NodeAddr>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn password_debug_hides_secret() {
        let p = Password::new("hunter2");
        assert_eq!(format!("{p:?}"), "Password(***)");
        let e = Endpoint::new(NodeAddr::new("h", 1)).with_password("hunter2");
        assert!(!format!("{e:?}").contains("hunter2"));
        assert_eq!(p.expose(), "hunter2");
    }

    #[test]
    fn default_timeouts_suit_a_control_plane() {
        let t = Timeouts::default();
        assert_eq!(t.connect, Duration::from_secs(2));
        assert_eq!(t.command, Duration::from_secs(3));
        let t = t.with_command(Duration::from_millis(500));
        assert_eq!(t.command, Duration::from_millis(500));
    }
}
