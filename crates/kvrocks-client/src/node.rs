//! `NodeClient`: what the operator says to one kvrocks (or redis-server) process.

use std::collections::BTreeMap;
use std::sync::Arc;

use fred::types::Value;

use crate::addr::{Endpoint, NodeAddr, Password, Timeouts};
use crate::conn::{Link, args};
use crate::error::{Error, Result};
use crate::parse::info::{Keyspace, ReplicationInfo, ServerInfo};
use crate::parse::role::Role;
use crate::parse::{ParseError, field_map, reply_text, value_i64, value_text};

/// Config keys whose values are secrets and must never appear in an error.
const SECRET_CONFIG_KEYS: [&str; 3] = ["requirepass", "masterauth", "auth-pass"];

/// A client for one kvrocks or redis-server node; cheap to clone, connects lazily and reconnects on demand.
#[derive(Clone)]
pub struct NodeClient {
    pub(crate) link: Arc<Link>,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient")
            .field("addr", self.link.addr())
            .finish()
    }
}

impl NodeClient {
    /// A client for `endpoint`; no connection is opened until the first command.
    pub fn new(endpoint: Endpoint) -> Self {
        Self {
            link: Arc::new(Link::new(endpoint)),
        }
    }

    /// A client for `addr` with an optional password and the given timeouts.
    pub fn with(addr: NodeAddr, password: Option<Password>, timeouts: Timeouts) -> Self {
        Self::new(
            Endpoint::new(addr)
                .with_optional_password(password)
                .with_timeouts(timeouts),
        )
    }

    /// Connects (and authenticates) now, failing within the timeouts when the node is unreachable.
    pub async fn connect(endpoint: Endpoint) -> Result<Self> {
        let client = Self::new(endpoint);
        client.ping().await?;
        Ok(client)
    }

    /// The node's address.
    pub fn addr(&self) -> &NodeAddr {
        self.link.addr()
    }

    /// Closes the connection; a later command reconnects.
    pub async fn close(&self) {
        self.link.close().await;
    }

    /// Drops the connection at once, without QUIT (for a node that stopped answering); a later
    /// command reconnects.
    pub async fn abandon(&self) {
        self.link.abandon().await;
    }

    /// Sends any command and returns the raw reply (escape hatch; prefer the typed methods).
    pub async fn raw(&self, name: &'static str, arguments: &[&str]) -> Result<Value> {
        self.link
            .call(name, name, args(arguments.iter().copied()), None)
            .await
    }

    pub(crate) fn parse_err(&self, command: &str, e: ParseError) -> Error {
        Error::reply(self.addr(), command, e)
    }

    pub(crate) async fn text(
        &self,
        command: &str,
        name: &'static str,
        arguments: Vec<Value>,
    ) -> Result<String> {
        let reply = self.link.call(command, name, arguments, None).await?;
        reply_text(&reply, "reply").map_err(|e| self.parse_err(command, e))
    }

    /// `PING`; succeeds on `PONG`.
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

    /// `AUTH <password>`; on success the password is also used for every later reconnect.
    pub async fn auth(&self, password: &Password) -> Result<()> {
        self.link
            .call_ok(
                "AUTH",
                "AUTH",
                args([password.expose()]),
                Some(password.expose()),
            )
            .await?;
        self.link.set_password(Some(password.clone()));
        Ok(())
    }

    /// `INFO <section>` as raw text.
    pub async fn info_raw(&self, section: &str) -> Result<String> {
        self.text("INFO", "INFO", args([section])).await
    }

    /// `INFO replication`, typed.
    pub async fn info_replication(&self) -> Result<ReplicationInfo> {
        let text = self.info_raw("replication").await?;
        ReplicationInfo::parse(&text).map_err(|e| self.parse_err("INFO replication", e))
    }

    /// `INFO server`, typed.
    pub async fn info_server(&self) -> Result<ServerInfo> {
        let text = self.info_raw("server").await?;
        ServerInfo::parse(&text).map_err(|e| self.parse_err("INFO server", e))
    }

    /// `INFO keyspace`, typed (on kvrocks the counts are from the last `DBSIZE SCAN`).
    pub async fn info_keyspace(&self) -> Result<Keyspace> {
        let text = self.info_raw("keyspace").await?;
        Keyspace::parse(&text).map_err(|e| self.parse_err("INFO keyspace", e))
    }

    /// `ROLE`, typed.
    pub async fn role(&self) -> Result<Role> {
        let reply = self.link.call("ROLE", "ROLE", Vec::new(), None).await?;
        Role::parse(&reply).map_err(|e| self.parse_err("ROLE", e))
    }

    /// `SLAVEOF <host> <port>`: make this node a replica of `master` (refused by kvrocks in cluster mode).
    pub async fn slaveof(&self, master: &NodeAddr) -> Result<()> {
        let port = master.port.to_string();
        self.link
            .call_ok(
                "SLAVEOF",
                "SLAVEOF",
                args([master.host.as_str(), port.as_str()]),
                None,
            )
            .await
    }

    /// `SLAVEOF NO ONE`: promote this node to master.
    pub async fn slaveof_no_one(&self) -> Result<()> {
        self.link
            .call_ok("SLAVEOF NO ONE", "SLAVEOF", args(["NO", "ONE"]), None)
            .await
    }

    /// `CONFIG GET <pattern>`: every matching key and value.
    pub async fn config_get(&self, pattern: &str) -> Result<BTreeMap<String, String>> {
        let reply = self
            .link
            .call("CONFIG GET", "CONFIG", args(["GET", pattern]), None)
            .await?;
        field_map(&reply, "CONFIG GET reply").map_err(|e| self.parse_err("CONFIG GET", e))
    }

    /// `CONFIG GET <key>` for one key; `None` when the server does not know it.
    pub async fn config_get_one(&self, key: &str) -> Result<Option<String>> {
        let mut all = self.config_get(key).await?;
        Ok(all.remove(key).or_else(|| {
            // Servers may answer with a differently cased key.
            all.into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        }))
    }

    /// `CONFIG SET <key> <value>`; values of secret keys never appear in errors.
    pub async fn config_set(&self, key: &str, value: &str) -> Result<()> {
        let secret = SECRET_CONFIG_KEYS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key))
            .then_some(value);
        self.link
            .call_ok("CONFIG SET", "CONFIG", args(["SET", key, value]), secret)
            .await
    }

    /// Makes the running configuration match `config`: CONFIG GET each key, CONFIG SET those
    /// that differ. Returns how many were changed; the first refusal (a key the server cannot
    /// change live) is the error.
    pub async fn config_set_all(
        &self,
        config: &std::collections::BTreeMap<String, String>,
    ) -> Result<usize> {
        let mut changed = 0;
        for (key, value) in config {
            if self.config_get_one(key).await?.as_deref() == Some(value.as_str()) {
                continue;
            }
            self.config_set(key, value).await?;
            changed += 1;
        }
        Ok(changed)
    }

    /// `CONFIG REWRITE`: persist the running configuration to the config file.
    pub async fn config_rewrite(&self) -> Result<()> {
        self.link
            .call_ok("CONFIG REWRITE", "CONFIG", args(["REWRITE"]), None)
            .await
    }

    /// `DBSIZE`: on kvrocks, the key count from the last `DBSIZE SCAN`.
    pub async fn dbsize(&self) -> Result<u64> {
        let reply = self.link.call("DBSIZE", "DBSIZE", Vec::new(), None).await?;
        value_i64(&reply)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                Error::reply(
                    self.addr(),
                    "DBSIZE",
                    format!("expected a count, got {reply:?}"),
                )
            })
    }

    /// `DBSIZE SCAN` (kvrocks only): start recounting keys in the background.
    pub async fn dbsize_scan(&self) -> Result<()> {
        self.link
            .call_ok("DBSIZE SCAN", "DBSIZE", args(["SCAN"]), None)
            .await
    }
}
