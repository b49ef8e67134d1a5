//! `SentinelClient`: the `SENTINEL ...` commands the operator sends to a redis-sentinel.

use std::sync::Arc;
use std::time::Duration;

use fred::types::Value;

use crate::addr::{Endpoint, NodeAddr, Password, Timeouts};
use crate::conn::{Link, args};
use crate::error::{Error, Result};
use crate::events::{EventOptions, SentinelEvents};
use crate::parse::role::Role;
use crate::parse::sentinel::{QuorumStatus, SentinelMaster, SentinelPeer, SentinelReplica};
use crate::parse::{ParseError, value_i64, value_text};

/// A client for one redis-sentinel process; cheap to clone, connects lazily and reconnects on demand.
#[derive(Clone)]
pub struct SentinelClient {
    link: Arc<Link>,
    endpoint: Endpoint,
}

impl std::fmt::Debug for SentinelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelClient")
            .field("addr", self.link.addr())
            .finish()
    }
}

impl SentinelClient {
    /// A client for `endpoint`; no connection is opened until the first command.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            link: Arc::new(Link::new(endpoint.clone())),
            endpoint,
        }
    }

    /// A client for `addr` with an optional password (sentinel `requirepass`) and the given timeouts.
    pub fn with(addr: NodeAddr, password: Option<Password>, timeouts: Timeouts) -> Self {
        Self::new(
            Endpoint::new(addr)
                .with_optional_password(password)
                .with_timeouts(timeouts),
        )
    }

    /// Connects now, failing within the timeouts when the sentinel is unreachable.
    pub async fn connect(endpoint: Endpoint) -> Result<Self> {
        let client = Self::new(endpoint);
        client.ping().await?;
        Ok(client)
    }

    /// The sentinel's address.
    pub fn addr(&self) -> &NodeAddr {
        self.link.addr()
    }

    /// Closes the connection; a later command reconnects.
    pub async fn close(&self) {
        self.link.close().await;
    }

    /// Subscribes to this sentinel's failure events on a dedicated connection (needs a tokio runtime).
    pub fn events(&self, options: EventOptions) -> SentinelEvents {
        SentinelEvents::subscribe(self.endpoint.clone(), options)
    }

    fn parse_err(&self, command: &str, e: ParseError) -> Error {
        Error::reply(self.addr(), command, e)
    }

    async fn sentinel(
        &self,
        command: &str,
        arguments: Vec<Value>,
        secret: Option<&str>,
    ) -> Result<Value> {
        self.link.call(command, "SENTINEL", arguments, secret).await
    }

    async fn sentinel_ok(
        &self,
        command: &str,
        arguments: Vec<Value>,
        secret: Option<&str>,
    ) -> Result<()> {
        self.link
            .call_ok(command, "SENTINEL", arguments, secret)
            .await
    }

    /// `PING`.
    pub async fn ping(&self) -> Result<()> {
        let reply = self.link.call("PING", "PING", Vec::new(), None).await?;
        match value_text(&reply) {
            Some(t) if t.eq_ignore_ascii_case("PONG") => Ok(()),
            _ => Err(Error::reply(
                self.addr(),
                "PING",
                format!("expected PONG, got {reply:?}"),
            )),
        }
    }

    /// `ROLE` (a sentinel answers with the names of the masters it monitors).
    pub async fn role(&self) -> Result<Role> {
        let reply = self.link.call("ROLE", "ROLE", Vec::new(), None).await?;
        Role::parse(&reply).map_err(|e| self.parse_err("ROLE", e))
    }

    /// `SENTINEL MONITOR <name> <ip> <port> <quorum>`: start monitoring a master.
    pub async fn monitor(&self, name: &str, master: &NodeAddr, quorum: u32) -> Result<()> {
        let port = master.port.to_string();
        let quorum = quorum.to_string();
        self.sentinel_ok(
            "SENTINEL MONITOR",
            args([
                "MONITOR",
                name,
                master.host.as_str(),
                port.as_str(),
                quorum.as_str(),
            ]),
            None,
        )
        .await
    }

    /// `SENTINEL REMOVE <name>`: stop monitoring a master.
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.sentinel_ok("SENTINEL REMOVE", args(["REMOVE", name]), None)
            .await
    }

    /// `SENTINEL SET <name> <key> <value> [<key> <value> ...]`: change monitoring options in one call.
    pub async fn set(&self, name: &str, options: &[(&str, &str)]) -> Result<()> {
        let mut arguments = vec!["SET", name];
        for (k, v) in options {
            arguments.push(k);
            arguments.push(v);
        }
        let secret = options
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("auth-pass"))
            .map(|(_, v)| *v);
        self.sentinel_ok("SENTINEL SET", args(arguments), secret)
            .await
    }

    /// `SENTINEL SET <name> auth-pass <password>`: the password sentinel uses towards the master and replicas.
    pub async fn set_auth_pass(&self, name: &str, password: &Password) -> Result<()> {
        self.set(name, &[("auth-pass", password.expose())]).await
    }

    /// `SENTINEL SET <name> down-after-milliseconds <ms>`.
    pub async fn set_down_after(&self, name: &str, after: Duration) -> Result<()> {
        let ms = after.as_millis().to_string();
        self.set(name, &[("down-after-milliseconds", ms.as_str())])
            .await
    }

    /// `SENTINEL SET <name> failover-timeout <ms>`.
    pub async fn set_failover_timeout(&self, name: &str, timeout: Duration) -> Result<()> {
        let ms = timeout.as_millis().to_string();
        self.set(name, &[("failover-timeout", ms.as_str())]).await
    }

    /// `SENTINEL SET <name> parallel-syncs <n>`.
    pub async fn set_parallel_syncs(&self, name: &str, n: u32) -> Result<()> {
        let n = n.to_string();
        self.set(name, &[("parallel-syncs", n.as_str())]).await
    }

    /// `SENTINEL SET <name> quorum <n>`.
    pub async fn set_quorum(&self, name: &str, quorum: u32) -> Result<()> {
        let n = quorum.to_string();
        self.set(name, &[("quorum", n.as_str())]).await
    }

    /// `SENTINEL MASTERS`: every monitored master.
    pub async fn masters(&self) -> Result<Vec<SentinelMaster>> {
        let reply = self
            .sentinel("SENTINEL MASTERS", args(["MASTERS"]), None)
            .await?;
        SentinelMaster::parse_list(&reply).map_err(|e| self.parse_err("SENTINEL MASTERS", e))
    }

    /// `SENTINEL MASTER <name>`; `None` when the sentinel does not monitor `name`.
    pub async fn master(&self, name: &str) -> Result<Option<SentinelMaster>> {
        match self
            .sentinel("SENTINEL MASTER", args(["MASTER", name]), None)
            .await
        {
            Ok(reply) => SentinelMaster::parse(&reply)
                .map(Some)
                .map_err(|e| self.parse_err("SENTINEL MASTER", e)),
            Err(e) if e.is_unknown_master() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `SENTINEL REPLICAS <name>`: the replicas of a monitored master.
    pub async fn replicas(&self, name: &str) -> Result<Vec<SentinelReplica>> {
        let reply = self
            .sentinel("SENTINEL REPLICAS", args(["REPLICAS", name]), None)
            .await?;
        SentinelReplica::parse_list(&reply).map_err(|e| self.parse_err("SENTINEL REPLICAS", e))
    }

    /// `SENTINEL SENTINELS <name>`: the other sentinels monitoring a master.
    pub async fn sentinels(&self, name: &str) -> Result<Vec<SentinelPeer>> {
        let reply = self
            .sentinel("SENTINEL SENTINELS", args(["SENTINELS", name]), None)
            .await?;
        SentinelPeer::parse_list(&reply).map_err(|e| self.parse_err("SENTINEL SENTINELS", e))
    }

    /// `SENTINEL RESET <pattern>`: forget the state of matching masters; returns how many were reset.
    pub async fn reset(&self, pattern: &str) -> Result<u64> {
        let reply = self
            .sentinel("SENTINEL RESET", args(["RESET", pattern]), None)
            .await?;
        value_i64(&reply)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                Error::reply(
                    self.addr(),
                    "SENTINEL RESET",
                    format!("expected a count, got {reply:?}"),
                )
            })
    }

    /// `SENTINEL FAILOVER <name>`: force a failover now (errors with `NOGOODSLAVE` / `INPROG` messages).
    pub async fn failover(&self, name: &str) -> Result<()> {
        self.sentinel_ok("SENTINEL FAILOVER", args(["FAILOVER", name]), None)
            .await
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME <name>`; `None` when `name` is not monitored.
    pub async fn master_addr(&self, name: &str) -> Result<Option<NodeAddr>> {
        const CMD: &str = "SENTINEL GET-MASTER-ADDR-BY-NAME";
        let reply = self
            .sentinel(CMD, args(["GET-MASTER-ADDR-BY-NAME", name]), None)
            .await?;
        match &reply {
            Value::Null => Ok(None),
            Value::Array(items) if items.is_empty() => Ok(None),
            Value::Array(items) => {
                let host = items.first().and_then(value_text);
                let port = items
                    .get(1)
                    .and_then(value_i64)
                    .and_then(|p| u16::try_from(p).ok());
                match (host, port) {
                    (Some(h), Some(p)) => Ok(Some(NodeAddr::new(h.into_owned(), p))),
                    _ => Err(Error::reply(
                        self.addr(),
                        CMD,
                        format!("expected [ip, port], got {reply:?}"),
                    )),
                }
            }
            other => Err(Error::reply(
                self.addr(),
                CMD,
                format!("expected [ip, port], got {other:?}"),
            )),
        }
    }

    /// `ACL GETUSER default`: the hashes ([`Password::acl_hash`]) of the passwords this sentinel
    /// accepts (its `requirepass`, plus any added during a rotation).
    pub async fn accepted_password_hashes(&self) -> Result<Vec<String>> {
        let reply = self
            .link
            .call("ACL GETUSER", "ACL", args(["GETUSER", "default"]), None)
            .await?;
        crate::parse::acl::password_hashes(&reply).map_err(|e| self.parse_err("ACL GETUSER", e))
    }

    /// `ACL SETUSER default ><password>`: accept `password` too (the others stay accepted).
    pub async fn accept_password(&self, password: &Password) -> Result<()> {
        let rule = format!(">{}", password.expose());
        self.link
            .call_ok(
                "ACL SETUSER",
                "ACL",
                args(["SETUSER", "default", rule.as_str()]),
                Some(password.expose()),
            )
            .await
    }

    /// `ACL SETUSER default !<hash>`: stop accepting the password whose hash is `hash`.
    pub async fn refuse_password_hash(&self, hash: &str) -> Result<()> {
        let rule = format!("!{hash}");
        self.link
            .call_ok(
                "ACL SETUSER",
                "ACL",
                args(["SETUSER", "default", rule.as_str()]),
                None,
            )
            .await
    }

    /// `SENTINEL CONFIG GET sentinel-pass`: the password this sentinel sends to its peers, if any.
    pub async fn sentinel_pass(&self) -> Result<Option<Password>> {
        const CMD: &str = "SENTINEL CONFIG GET";
        let reply = self
            .sentinel(CMD, args(["CONFIG", "GET", "sentinel-pass"]), None)
            .await?;
        let fields = crate::parse::field_map(&reply, "SENTINEL CONFIG GET reply")
            .map_err(|e| self.parse_err(CMD, e))?;
        Ok(fields
            .get("sentinel-pass")
            .filter(|p| !p.is_empty())
            .map(|p| Password::new(p.as_str())))
    }

    /// `SENTINEL CONFIG SET sentinel-pass <password>`: the password sent to the other sentinels.
    pub async fn set_sentinel_pass(&self, password: &Password) -> Result<()> {
        self.sentinel_ok(
            "SENTINEL CONFIG SET",
            args(["CONFIG", "SET", "sentinel-pass", password.expose()]),
            Some(password.expose()),
        )
        .await
    }

    /// `SENTINEL CKQUORUM <name>`: whether this sentinel can reach the quorum and a failover majority.
    pub async fn ckquorum(&self, name: &str) -> Result<QuorumStatus> {
        match self
            .sentinel("SENTINEL CKQUORUM", args(["CKQUORUM", name]), None)
            .await
        {
            Ok(reply) => {
                let text = value_text(&reply).unwrap_or_default();
                Ok(QuorumStatus::from_message(&text))
            }
            Err(Error::Server { message, .. }) if message.trim_start().starts_with("NOQUORUM") => {
                Ok(QuorumStatus::from_message(&message))
            }
            Err(e) => Err(e),
        }
    }
}
