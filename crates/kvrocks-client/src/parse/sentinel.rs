//! Sentinel replies (MASTERS, MASTER, REPLICAS, SENTINELS) and sentinel pub/sub event payloads.

use std::collections::BTreeMap;

use fred::types::Value;

use super::{ParseError, field_map, num};
use crate::addr::NodeAddr;

fn flags_of(fields: &BTreeMap<String, String>) -> Vec<String> {
    fields
        .get("flags")
        .map(|f| {
            f.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn addr_of(fields: &BTreeMap<String, String>, what: &'static str) -> Result<NodeAddr, ParseError> {
    let ip = fields
        .get("ip")
        .ok_or_else(|| ParseError::new(what, "no ip field"))?;
    let port = fields
        .get("port")
        .and_then(|p| num::<u16>(p))
        .ok_or_else(|| ParseError::new(what, "no valid port field"))?;
    Ok(NodeAddr::new(ip.clone(), port))
}

fn list_of<T>(
    value: &Value,
    what: &'static str,
    each: fn(&Value) -> Result<T, ParseError>,
) -> Result<Vec<T>, ParseError> {
    match value {
        Value::Array(items) => items.iter().map(each).collect(),
        Value::Null => Ok(Vec::new()),
        other => Err(ParseError::new(
            what,
            format!("expected an array, got {}", other.kind()),
        )),
    }
}

/// A monitored master as `SENTINEL MASTER(S)` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelMaster {
    /// The name it is monitored under.
    pub name: String,
    /// Its current address.
    pub addr: NodeAddr,
    /// Run id (empty until the sentinel reached it).
    pub run_id: String,
    /// Flags such as `master`, `s_down`, `o_down`, `disconnected`, `failover_in_progress`.
    pub flags: Vec<String>,
    /// Sentinels needed to agree it is down.
    pub quorum: Option<u32>,
    /// Replicas the sentinel knows.
    pub num_slaves: Option<u32>,
    /// Other sentinels monitoring it.
    pub num_other_sentinels: Option<u32>,
    /// `down-after-milliseconds`.
    pub down_after_ms: Option<u64>,
    /// `failover-timeout` in ms.
    pub failover_timeout_ms: Option<u64>,
    /// `parallel-syncs`.
    pub parallel_syncs: Option<u32>,
    /// Configuration epoch (bumps on every failover).
    pub config_epoch: Option<u64>,
    /// Every field, raw.
    pub fields: BTreeMap<String, String>,
}

impl SentinelMaster {
    /// Parses one master's flat field/value array.
    pub fn parse(value: &Value) -> Result<Self, ParseError> {
        const WHAT: &str = "SENTINEL MASTER reply";
        let fields = field_map(value, WHAT)?;
        let name = fields
            .get("name")
            .cloned()
            .ok_or_else(|| ParseError::new(WHAT, "no name field"))?;
        let get = |k: &str| fields.get(k).map(String::as_str);
        Ok(Self {
            addr: addr_of(&fields, WHAT)?,
            run_id: get("runid").unwrap_or_default().to_owned(),
            flags: flags_of(&fields),
            quorum: get("quorum").and_then(num),
            num_slaves: get("num-slaves").and_then(num),
            num_other_sentinels: get("num-other-sentinels").and_then(num),
            down_after_ms: get("down-after-milliseconds").and_then(num),
            failover_timeout_ms: get("failover-timeout").and_then(num),
            parallel_syncs: get("parallel-syncs").and_then(num),
            config_epoch: get("config-epoch").and_then(num),
            name,
            fields,
        })
    }

    /// Parses the `SENTINEL MASTERS` array.
    pub fn parse_list(value: &Value) -> Result<Vec<Self>, ParseError> {
        list_of(value, "SENTINEL MASTERS reply", Self::parse)
    }

    /// True when `flag` is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// True when this sentinel alone considers the master down.
    pub fn is_sdown(&self) -> bool {
        self.has_flag("s_down")
    }

    /// True when a quorum considers the master down.
    pub fn is_odown(&self) -> bool {
        self.has_flag("o_down")
    }

    /// True while a failover is running.
    pub fn is_failover_in_progress(&self) -> bool {
        self.has_flag("failover_in_progress")
    }
}

/// A replica as `SENTINEL REPLICAS` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelReplica {
    /// Sentinel's name for it (`ip:port`).
    pub name: String,
    /// Its address.
    pub addr: NodeAddr,
    /// Run id (empty when never reached).
    pub run_id: String,
    /// Flags such as `slave`, `s_down`, `disconnected`.
    pub flags: Vec<String>,
    /// True when its link to the master is `ok`.
    pub master_link_ok: bool,
    /// The master it reports, unless unknown (`?` / port 0).
    pub master_addr: Option<NodeAddr>,
    /// `slave-priority`.
    pub priority: Option<i64>,
    /// `slave-repl-offset`.
    pub repl_offset: Option<i64>,
    /// Every field, raw.
    pub fields: BTreeMap<String, String>,
}

impl SentinelReplica {
    /// Parses one replica's flat field/value array.
    pub fn parse(value: &Value) -> Result<Self, ParseError> {
        const WHAT: &str = "SENTINEL REPLICAS entry";
        let fields = field_map(value, WHAT)?;
        let get = |k: &str| fields.get(k).map(String::as_str);
        let master_addr = match (get("master-host"), get("master-port").and_then(num::<u16>)) {
            (Some(h), Some(p)) if !h.is_empty() && h != "?" && p != 0 => Some(NodeAddr::new(h, p)),
            _ => None,
        };
        Ok(Self {
            addr: addr_of(&fields, WHAT)?,
            name: get("name").unwrap_or_default().to_owned(),
            run_id: get("runid").unwrap_or_default().to_owned(),
            flags: flags_of(&fields),
            master_link_ok: get("master-link-status") == Some("ok"),
            master_addr,
            priority: get("slave-priority").and_then(num),
            repl_offset: get("slave-repl-offset").and_then(num),
            fields,
        })
    }

    /// Parses the `SENTINEL REPLICAS` array.
    pub fn parse_list(value: &Value) -> Result<Vec<Self>, ParseError> {
        list_of(value, "SENTINEL REPLICAS reply", Self::parse)
    }

    /// True when `flag` is set.
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// True when the sentinel considers it down or disconnected.
    pub fn is_down(&self) -> bool {
        self.has_flag("s_down") || self.has_flag("o_down") || self.has_flag("disconnected")
    }
}

/// Another sentinel as `SENTINEL SENTINELS` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelPeer {
    /// Its address.
    pub addr: NodeAddr,
    /// Its run id (also its name).
    pub run_id: String,
    /// Flags such as `sentinel`, `s_down`, `disconnected`.
    pub flags: Vec<String>,
    /// Milliseconds since its last hello message.
    pub last_hello_message_ms: Option<u64>,
    /// Leader it voted for (`?` when none).
    pub voted_leader: Option<String>,
    /// Every field, raw.
    pub fields: BTreeMap<String, String>,
}

impl SentinelPeer {
    /// Parses one sentinel's flat field/value array.
    pub fn parse(value: &Value) -> Result<Self, ParseError> {
        const WHAT: &str = "SENTINEL SENTINELS entry";
        let fields = field_map(value, WHAT)?;
        let get = |k: &str| fields.get(k).map(String::as_str);
        Ok(Self {
            addr: addr_of(&fields, WHAT)?,
            run_id: get("runid")
                .or_else(|| get("name"))
                .unwrap_or_default()
                .to_owned(),
            flags: flags_of(&fields),
            last_hello_message_ms: get("last-hello-message").and_then(num),
            voted_leader: get("voted-leader").filter(|v| *v != "?").map(str::to_owned),
            fields,
        })
    }

    /// Parses the `SENTINEL SENTINELS` array.
    pub fn parse_list(value: &Value) -> Result<Vec<Self>, ParseError> {
        list_of(value, "SENTINEL SENTINELS reply", Self::parse)
    }
}

/// Result of `SENTINEL CKQUORUM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumStatus {
    /// True when the quorum and a failover majority can be reached.
    pub ok: bool,
    /// Usable sentinels, when the message says.
    pub usable_sentinels: Option<u32>,
    /// The sentinel's message.
    pub message: String,
}

impl QuorumStatus {
    /// Builds the status from an OK reply (`OK 3 usable Sentinels...`) or a `NOQUORUM ...` error text.
    pub fn from_message(message: &str) -> Self {
        let trimmed = message.trim();
        let ok = !trimmed.starts_with("NOQUORUM");
        let usable_sentinels = trimmed.split_whitespace().nth(1).and_then(num);
        Self {
            ok,
            usable_sentinels,
            message: trimmed.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::strategies::any_value;
    use proptest::prelude::*;

    fn flat(pairs: &[(&str, &str)]) -> Value {
        Value::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [Value::from(*k), Value::from(*v)])
                .collect(),
        )
    }

    /// Captured from redis-sentinel 7.0.15 (`SENTINEL MASTERS`, one entry).
    fn captured_master() -> Value {
        flat(&[
            ("name", "mymaster"),
            ("ip", "127.0.0.1"),
            ("port", "17001"),
            ("runid", "05f003f58fe83d324d13876187fc27216bd34fe9"),
            ("flags", "master"),
            ("link-pending-commands", "0"),
            ("link-refcount", "1"),
            ("last-ping-sent", "0"),
            ("last-ok-ping-reply", "959"),
            ("last-ping-reply", "959"),
            ("down-after-milliseconds", "1000"),
            ("info-refresh", "4052"),
            ("role-reported", "master"),
            ("role-reported-time", "4065"),
            ("config-epoch", "0"),
            ("num-slaves", "1"),
            ("num-other-sentinels", "2"),
            ("quorum", "2"),
            ("failover-timeout", "5000"),
            ("parallel-syncs", "1"),
        ])
    }

    #[test]
    fn masters() {
        let list = SentinelMaster::parse_list(&Value::Array(vec![captured_master()])).unwrap();
        let m = &list[0];
        assert_eq!(m.name, "mymaster");
        assert_eq!(m.addr, NodeAddr::new("127.0.0.1", 17001));
        assert_eq!(m.quorum, Some(2));
        assert_eq!(m.num_slaves, Some(1));
        assert_eq!(m.num_other_sentinels, Some(2));
        assert_eq!(m.down_after_ms, Some(1000));
        assert_eq!(m.failover_timeout_ms, Some(5000));
        assert_eq!(m.parallel_syncs, Some(1));
        assert_eq!(m.config_epoch, Some(0));
        assert!(!m.is_sdown() && !m.is_odown() && !m.is_failover_in_progress());
        let down = flat(&[
            ("name", "m"),
            ("ip", "1.2.3.4"),
            ("port", "1"),
            ("flags", "s_down,o_down,master"),
        ]);
        let d = SentinelMaster::parse(&down).unwrap();
        assert!(d.is_sdown() && d.is_odown());
        assert_eq!(d.quorum, None);
        assert!(
            SentinelMaster::parse_list(&Value::Array(vec![]))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn replicas() {
        // Captured: a healthy replica, then the old master after failover (s_down, master-host "?").
        let ok = flat(&[
            ("name", "127.0.0.1:17002"),
            ("ip", "127.0.0.1"),
            ("port", "17002"),
            ("runid", "309c773ac5295c9d343c522eed5bb469cacae91b"),
            ("flags", "slave"),
            ("master-link-down-time", "0"),
            ("master-link-status", "ok"),
            ("master-host", "127.0.0.1"),
            ("master-port", "17001"),
            ("slave-priority", "100"),
            ("slave-repl-offset", "129"),
            ("replica-announced", "1"),
        ]);
        let down = flat(&[
            ("name", "127.0.0.1:17001"),
            ("ip", "127.0.0.1"),
            ("port", "17001"),
            ("runid", ""),
            ("flags", "s_down,slave,disconnected"),
            ("master-link-status", "err"),
            ("master-host", "?"),
            ("master-port", "0"),
            ("slave-priority", "100"),
            ("slave-repl-offset", "0"),
        ]);
        let list = SentinelReplica::parse_list(&Value::Array(vec![ok, down])).unwrap();
        assert!(list[0].master_link_ok);
        assert_eq!(list[0].master_addr, Some(NodeAddr::new("127.0.0.1", 17001)));
        assert_eq!(list[0].repl_offset, Some(129));
        assert!(!list[0].is_down());
        assert!(!list[1].master_link_ok);
        assert_eq!(list[1].master_addr, None);
        assert!(list[1].is_down());
    }

    #[test]
    fn peers() {
        let p = flat(&[
            ("name", "9b8f68b18f908d47efd92d60af966fe0acda848e"),
            ("ip", "127.0.0.1"),
            ("port", "17102"),
            ("runid", "9b8f68b18f908d47efd92d60af966fe0acda848e"),
            ("flags", "sentinel"),
            ("last-hello-message", "50"),
            ("voted-leader", "?"),
            ("voted-leader-epoch", "0"),
        ]);
        let peers = SentinelPeer::parse_list(&Value::Array(vec![p])).unwrap();
        assert_eq!(peers[0].addr.port, 17102);
        assert_eq!(peers[0].voted_leader, None);
        assert_eq!(peers[0].last_hello_message_ms, Some(50));
    }

    #[test]
    fn missing_fields_are_errors_not_panics() {
        assert!(SentinelMaster::parse(&flat(&[("ip", "1.2.3.4"), ("port", "1")])).is_err());
        assert!(
            SentinelMaster::parse(&flat(&[("name", "m"), ("ip", "1.2.3.4"), ("port", "x")]))
                .is_err()
        );
        assert!(SentinelReplica::parse(&flat(&[("name", "m")])).is_err());
        assert!(SentinelPeer::parse(&Value::Integer(3)).is_err());
        assert!(SentinelMaster::parse_list(&Value::Integer(3)).is_err());
    }

    #[test]
    fn quorum_messages() {
        let ok = QuorumStatus::from_message(
            "OK 3 usable Sentinels. Quorum and failover authorization can be reached",
        );
        assert!(ok.ok);
        assert_eq!(ok.usable_sentinels, Some(3));
        let no = QuorumStatus::from_message(
            "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master",
        );
        assert!(!no.ok);
        assert_eq!(no.usable_sentinels, Some(1));
    }

    proptest! {
        #[test]
        fn sentinel_parsers_never_panic(v in any_value()) {
            let _ = SentinelMaster::parse(&v);
            let _ = SentinelMaster::parse_list(&v);
            let _ = SentinelReplica::parse_list(&v);
            let _ = SentinelPeer::parse_list(&v);
        }

        #[test]
        fn quorum_parser_never_panics(message in "\\PC*") {
            let _ = QuorumStatus::from_message(&message);
        }
    }
}
