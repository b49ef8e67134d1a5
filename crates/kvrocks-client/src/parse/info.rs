//! `INFO replication`, `INFO server` and `INFO keyspace`, for both redis and kvrocks.

use std::collections::BTreeMap;

use super::{ParseError, num, split_kv, split_pairs};
use crate::addr::NodeAddr;

/// Every `key:value` line of an INFO reply, by section (lowercase, e.g. `replication`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InfoSections {
    /// Section name to its fields, in reply order of keys.
    pub sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl InfoSections {
    /// Parses any INFO text; lines that are not `key:value` are skipped.
    pub fn parse(text: &str) -> Self {
        let mut out = InfoSections::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(header) = line.strip_prefix('#') {
                let header = header.trim();
                // kvrocks writes comments such as "# Last DBSIZE SCAN time: ..." inside a section.
                if !header.is_empty() && !header.contains(':') && !header.contains(' ') {
                    section = header.to_ascii_lowercase();
                }
                continue;
            }
            if let Some((k, v)) = split_kv(line) {
                out.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(k.to_owned(), v.to_owned());
            }
        }
        out
    }

    /// The value of `key` in any section.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.sections
            .values()
            .find_map(|fields| fields.get(key))
            .map(String::as_str)
    }
}

/// Replication role as reported by INFO or ROLE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationRole {
    /// Accepts writes and may have replicas.
    Master,
    /// Replicates from a master (`role:slave`).
    Replica,
    /// Anything else the server said.
    Other(String),
}

impl ReplicationRole {
    fn parse(text: &str) -> Self {
        match text {
            "master" => Self::Master,
            "slave" | "replica" => Self::Replica,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// `master_link_status` of a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkStatus {
    /// The replica is connected to its master and streaming.
    Up,
    /// The replica is not (yet) connected.
    Down,
    /// Anything else the server said.
    Other(String),
}

/// One `slaveN:` line of a master's INFO replication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectedReplica {
    /// IP the replica announced.
    pub ip: String,
    /// Port the replica announced.
    pub port: u16,
    /// `online`, `wait_bgsave`, `send_bulk`... (redis only; kvrocks has no state).
    pub state: Option<String>,
    /// Replication offset the replica acknowledged (kvrocks: sequence number).
    pub offset: i64,
    /// Seconds since the last ack (redis) or sequence numbers behind (kvrocks).
    pub lag: Option<i64>,
}

impl ConnectedReplica {
    /// The replica's announced address.
    pub fn addr(&self) -> NodeAddr {
        NodeAddr::new(self.ip.clone(), self.port)
    }
}

/// The typed `INFO replication` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationInfo {
    /// Master or replica.
    pub role: ReplicationRole,
    /// Master's host, on a replica.
    pub master_host: Option<String>,
    /// Master's port, on a replica.
    pub master_port: Option<u16>,
    /// Link to the master, on a replica.
    pub master_link_status: Option<LinkStatus>,
    /// Seconds since the last interaction with the master, on a replica (-1 when never).
    pub master_last_io_seconds_ago: Option<i64>,
    /// True while a full sync is running, on a replica.
    pub master_sync_in_progress: Option<bool>,
    /// Offset (redis) or sequence number (kvrocks) applied by this replica.
    pub slave_repl_offset: Option<i64>,
    /// Replica priority for promotion (lower is preferred, 0 never).
    pub slave_priority: Option<i64>,
    /// Number of replicas attached, as the server counts them.
    pub connected_slaves: u64,
    /// The replicas listed under `slaveN:`.
    pub replicas: Vec<ConnectedReplica>,
    /// This server's replication offset (kvrocks: its latest sequence number).
    pub master_repl_offset: Option<i64>,
    /// Replication id (redis only).
    pub master_replid: Option<String>,
    /// Every field of the section, raw.
    pub fields: BTreeMap<String, String>,
}

impl ReplicationInfo {
    /// Parses the text of `INFO replication` (other sections in the text are ignored).
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let info = InfoSections::parse(text);
        let fields = info
            .sections
            .get("replication")
            .or_else(|| info.sections.get(""))
            .cloned()
            .unwrap_or_default();
        let get = |k: &str| fields.get(k).map(String::as_str);
        let role = get("role")
            .map(ReplicationRole::parse)
            .ok_or_else(|| ParseError::new("INFO replication", "no role field"))?;
        let mut replicas: Vec<(u32, ConnectedReplica)> = fields
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix("slave")?.parse::<u32>().ok()?;
                Some((index, parse_replica_line(v)?))
            })
            .collect();
        replicas.sort_by_key(|(i, _)| *i);
        Ok(Self {
            role,
            master_host: get("master_host").map(str::to_owned),
            master_port: get("master_port").and_then(num),
            master_link_status: get("master_link_status").map(|s| match s {
                "up" => LinkStatus::Up,
                "down" => LinkStatus::Down,
                other => LinkStatus::Other(other.to_owned()),
            }),
            master_last_io_seconds_ago: get("master_last_io_seconds_ago").and_then(num),
            master_sync_in_progress: get("master_sync_in_progress").map(|s| s == "1" || s == "yes"),
            slave_repl_offset: get("slave_repl_offset").and_then(num),
            slave_priority: get("slave_priority")
                .or_else(|| get("replica_priority"))
                .and_then(num),
            connected_slaves: get("connected_slaves").and_then(num).unwrap_or(0),
            replicas: replicas.into_iter().map(|(_, r)| r).collect(),
            master_repl_offset: get("master_repl_offset").and_then(num),
            master_replid: get("master_replid").map(str::to_owned),
            fields,
        })
    }

    /// True when this is a replica whose link to the master is up.
    pub fn is_link_up(&self) -> bool {
        self.role == ReplicationRole::Replica && self.master_link_status == Some(LinkStatus::Up)
    }

    /// The master's address, on a replica that knows it.
    pub fn master_addr(&self) -> Option<NodeAddr> {
        Some(NodeAddr::new(self.master_host.clone()?, self.master_port?))
    }
}

fn parse_replica_line(value: &str) -> Option<ConnectedReplica> {
    let pairs = split_pairs(value);
    Some(ConnectedReplica {
        ip: (*pairs.get("ip")?).to_owned(),
        port: num(pairs.get("port")?)?,
        state: pairs.get("state").map(|s| (*s).to_owned()),
        offset: pairs.get("offset").and_then(|s| num(s)).unwrap_or(0),
        lag: pairs.get("lag").and_then(|s| num(s)),
    })
}

/// The typed `INFO server` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    /// The product version: kvrocks' own version on kvrocks, `redis_version` on redis.
    pub version: String,
    /// `redis_version` (on kvrocks: the redis version it is compatible with).
    pub redis_version: Option<String>,
    /// `kvrocks_version`, present only on kvrocks.
    pub kvrocks_version: Option<String>,
    /// `run_id` (redis only).
    pub run_id: Option<String>,
    /// `standalone`, `cluster` or `sentinel`.
    pub mode: Option<String>,
    /// Process id of the server.
    pub process_id: Option<u32>,
    /// Port the server listens on.
    pub tcp_port: Option<u16>,
    /// Seconds since the server started.
    pub uptime_in_seconds: Option<u64>,
    /// Git commit of the build.
    pub git_sha1: Option<String>,
    /// Operating system line.
    pub os: Option<String>,
    /// Every field of the section, raw.
    pub fields: BTreeMap<String, String>,
}

impl ServerInfo {
    /// Parses the text of `INFO server`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let info = InfoSections::parse(text);
        let fields = info
            .sections
            .get("server")
            .or_else(|| info.sections.get(""))
            .cloned()
            .unwrap_or_default();
        let get = |k: &str| fields.get(k).map(String::as_str);
        let kvrocks_version = get("kvrocks_version").map(str::to_owned);
        let redis_version = get("redis_version").map(str::to_owned);
        let version = kvrocks_version
            .clone()
            .or_else(|| get("version").map(str::to_owned))
            .or_else(|| redis_version.clone())
            .ok_or_else(|| ParseError::new("INFO server", "no version field"))?;
        Ok(Self {
            version,
            redis_version,
            kvrocks_version,
            run_id: get("run_id").map(str::to_owned),
            mode: get("kvrocks_mode")
                .or_else(|| get("redis_mode"))
                .map(str::to_owned),
            process_id: get("process_id").and_then(num),
            tcp_port: get("tcp_port").and_then(num),
            uptime_in_seconds: get("uptime_in_seconds").and_then(num),
            git_sha1: get("kvrocks_git_sha1")
                .or_else(|| get("git_sha1"))
                .or_else(|| get("redis_git_sha1"))
                .map(str::to_owned),
            os: get("os").map(str::to_owned),
            fields,
        })
    }

    /// True when the server is kvrocks rather than redis.
    pub fn is_kvrocks(&self) -> bool {
        self.kvrocks_version.is_some()
    }
}

/// Key counts of one database (`db0:keys=..,expires=..,avg_ttl=..`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbKeyspace {
    /// Number of keys (on kvrocks: as of the last `DBSIZE SCAN`).
    pub keys: u64,
    /// Number of keys with an expiry.
    pub expires: u64,
    /// Average time to live in ms.
    pub avg_ttl: u64,
    /// Expired keys not yet purged (kvrocks only).
    pub expired: Option<u64>,
}

/// The typed `INFO keyspace` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyspace {
    /// Database index to its counts (kvrocks only has db 0).
    pub dbs: BTreeMap<u32, DbKeyspace>,
    /// kvrocks: false when it reports that `DBSIZE SCAN` never ran, so counts are not meaningful.
    pub scanned: Option<bool>,
    /// kvrocks: bytes used by the database.
    pub used_db_size: Option<u64>,
    /// Every field of the section, raw.
    pub fields: BTreeMap<String, String>,
}

impl Keyspace {
    /// Parses the text of `INFO keyspace`; an empty keyspace is valid.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut out = Keyspace::default();
        for line in text.lines().map(str::trim) {
            if line.starts_with("# WARN: DBSIZE SCAN never performed") {
                out.scanned = Some(false);
            } else if line.starts_with("# Last DBSIZE SCAN time") {
                out.scanned = Some(true);
            }
        }
        let info = InfoSections::parse(text);
        out.fields = info
            .sections
            .get("keyspace")
            .or_else(|| info.sections.get(""))
            .cloned()
            .unwrap_or_default();
        for (k, v) in &out.fields {
            let Some(index) = k.strip_prefix("db").and_then(|i| i.parse::<u32>().ok()) else {
                continue;
            };
            let pairs = split_pairs(v);
            let Some(keys) = pairs.get("keys").and_then(|s| num(s)) else {
                continue;
            };
            let field = |name: &str| pairs.get(name).and_then(|s| num(s));
            out.dbs.insert(
                index,
                DbKeyspace {
                    keys,
                    expires: field("expires").unwrap_or(0),
                    avg_ttl: field("avg_ttl").unwrap_or(0),
                    expired: field("expired"),
                },
            );
        }
        out.used_db_size = out.fields.get("used_db_size").and_then(|s| num(s));
        Ok(out)
    }

    /// Keys summed over all databases.
    pub fn total_keys(&self) -> u64 {
        self.dbs.values().map(|d| d.keys).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Captured from redis-server 7.0.15 (master with one online replica).
    const REDIS_MASTER: &str = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=127.0.0.1,port=17002,state=online,offset=129,lag=0\r\nmaster_failover_state:no-failover\r\nmaster_replid:640b36cc5f1f5209aef7543e4db93c956fb6d385\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:129\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:1\r\nrepl_backlog_histlen:129\r\n";

    /// Captured from redis-server 7.0.15 (replica, link up).
    const REDIS_REPLICA: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:17001\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:0\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:129\r\nslave_repl_offset:129\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\nmaster_failover_state:no-failover\r\nmaster_replid:640b36cc5f1f5209aef7543e4db93c956fb6d385\r\nmaster_replid2:0000000000000000000000000000000000000000\r\nmaster_repl_offset:129\r\nsecond_repl_offset:-1\r\nrepl_backlog_active:1\r\nrepl_backlog_size:1048576\r\nrepl_backlog_first_byte_offset:116\r\nrepl_backlog_histlen:14\r\n";

    /// Captured from redis-server 7.0.15 (replica right after SLAVEOF, before the handshake).
    const REDIS_REPLICA_DOWN: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:17001\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\nslave_read_repl_offset:1\r\nslave_repl_offset:1\r\nmaster_link_down_since_seconds:-1\r\nslave_priority:100\r\nslave_read_only:1\r\nreplica_announced:1\r\nconnected_slaves:0\r\n";

    /// Written the way kvrocks' Server::GetReplicationInfo writes it (master with two replicas).
    const KVROCKS_MASTER: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\nslave0:ip=10.0.0.2,port=6379,offset=1200,lag=0\r\nslave1:ip=10.0.0.3,port=6379,offset=1100,lag=100\r\nmaster_repl_offset:1200\r\n";

    /// Written the way kvrocks writes a replica's section.
    const KVROCKS_REPLICA: &str = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_sync_unrecoverable_error:no\r\nmaster_sync_in_progress:0\r\nmaster_last_io_seconds_ago:1\r\nslave_repl_offset:1100\r\nslave_priority:100\r\nconnected_slaves:0\r\nmaster_repl_offset:1100\r\n";

    /// Captured from redis-server 7.0.15 (INFO server, abridged).
    const REDIS_SERVER: &str = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\nredis_git_dirty:0\r\nredis_build_id:ae4d7c971a948f0\r\nredis_mode:standalone\r\nos:Linux 6.18.44-fc-v445 x86_64\r\narch_bits:64\r\nprocess_id:10443\r\nrun_id:05f003f58fe83d324d13876187fc27216bd34fe9\r\ntcp_port:17001\r\nuptime_in_seconds:2\r\nuptime_in_days:0\r\nexecutable:/tmp/cap/redis-server\r\nconfig_file:\r\n";

    /// Written the way kvrocks' Server::GetServerInfo writes it.
    const KVROCKS_SERVER: &str = "# Server\r\nversion:2.10.1\r\nkvrocks_version:2.10.1\r\nredis_version:4.0.0\r\ngit_sha1:1a2b3c4d\r\nkvrocks_git_sha1:1a2b3c4d\r\nredis_mode:cluster\r\nkvrocks_mode:cluster\r\nos:Linux 6.1.0 x86_64\r\ngcc_version:12.2.0\r\narch_bits:64\r\nprocess_id:4242\r\ntcp_port:6379\r\nuptime_in_seconds:3600\r\nuptime_in_days:0\r\n";

    /// Captured from redis-server 7.0.15.
    const REDIS_KEYSPACE: &str =
        "# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\ndb3:keys=5,expires=0,avg_ttl=0\r\n";

    /// Written the way kvrocks' Server::GetInfo writes the keyspace section.
    const KVROCKS_KEYSPACE: &str = "# Keyspace\r\n# Last DBSIZE SCAN time: Mon Jan  6 10:00:00 2025\r\ndb0:keys=100,expires=3,avg_ttl=2000,expired=1\r\nsequence:12345\r\nused_db_size:65536\r\nmax_db_size:0\r\nused_percent: 0%\r\ndisk_capacity:1000000\r\nused_disk_size:5000\r\nused_disk_percent: 0.5%\r\n";

    #[test]
    fn redis_master_replication() {
        let info = ReplicationInfo::parse(REDIS_MASTER).unwrap();
        assert_eq!(info.role, ReplicationRole::Master);
        assert_eq!(info.connected_slaves, 1);
        assert_eq!(
            info.replicas,
            vec![ConnectedReplica {
                ip: "127.0.0.1".into(),
                port: 17002,
                state: Some("online".into()),
                offset: 129,
                lag: Some(0),
            }]
        );
        assert_eq!(info.master_repl_offset, Some(129));
        assert_eq!(
            info.master_replid.as_deref(),
            Some("640b36cc5f1f5209aef7543e4db93c956fb6d385")
        );
        assert!(!info.is_link_up());
        assert_eq!(info.master_addr(), None);
    }

    #[test]
    fn redis_replica_replication() {
        let info = ReplicationInfo::parse(REDIS_REPLICA).unwrap();
        assert_eq!(info.role, ReplicationRole::Replica);
        assert_eq!(info.master_addr(), Some(NodeAddr::new("127.0.0.1", 17001)));
        assert_eq!(info.master_link_status, Some(LinkStatus::Up));
        assert!(info.is_link_up());
        assert_eq!(info.slave_repl_offset, Some(129));
        assert_eq!(info.slave_priority, Some(100));
        assert_eq!(info.master_sync_in_progress, Some(false));
        let down = ReplicationInfo::parse(REDIS_REPLICA_DOWN).unwrap();
        assert_eq!(down.master_link_status, Some(LinkStatus::Down));
        assert_eq!(down.master_last_io_seconds_ago, Some(-1));
        assert!(!down.is_link_up());
    }

    #[test]
    fn kvrocks_replication() {
        let m = ReplicationInfo::parse(KVROCKS_MASTER).unwrap();
        assert_eq!(m.replicas.len(), 2);
        assert_eq!(m.replicas[1].addr(), NodeAddr::new("10.0.0.3", 6379));
        assert_eq!(m.replicas[1].state, None);
        assert_eq!(m.replicas[1].lag, Some(100));
        let r = ReplicationInfo::parse(KVROCKS_REPLICA).unwrap();
        assert!(r.is_link_up());
        assert_eq!(r.slave_repl_offset, Some(1100));
    }

    #[test]
    fn replication_needs_a_role() {
        assert!(ReplicationInfo::parse("").is_err());
        assert!(ReplicationInfo::parse("# Replication\r\nconnected_slaves:0\r\n").is_err());
    }

    #[test]
    fn server_info() {
        let r = ServerInfo::parse(REDIS_SERVER).unwrap();
        assert_eq!(r.version, "7.0.15");
        assert!(!r.is_kvrocks());
        assert_eq!(
            r.run_id.as_deref(),
            Some("05f003f58fe83d324d13876187fc27216bd34fe9")
        );
        assert_eq!(r.mode.as_deref(), Some("standalone"));
        assert_eq!(r.tcp_port, Some(17001));
        assert_eq!(r.process_id, Some(10443));
        assert_eq!(r.fields.get("config_file").map(String::as_str), Some(""));
        let k = ServerInfo::parse(KVROCKS_SERVER).unwrap();
        assert_eq!(k.version, "2.10.1");
        assert!(k.is_kvrocks());
        assert_eq!(k.redis_version.as_deref(), Some("4.0.0"));
        assert_eq!(k.mode.as_deref(), Some("cluster"));
        assert_eq!(k.uptime_in_seconds, Some(3600));
        assert!(ServerInfo::parse("# Server\r\n").is_err());
    }

    #[test]
    fn keyspace() {
        let r = Keyspace::parse(REDIS_KEYSPACE).unwrap();
        assert_eq!(r.total_keys(), 7);
        assert_eq!(r.dbs.get(&0).map(|d| d.expires), Some(1));
        assert_eq!(r.scanned, None);
        let k = Keyspace::parse(KVROCKS_KEYSPACE).unwrap();
        assert_eq!(k.total_keys(), 100);
        assert_eq!(k.dbs.get(&0).and_then(|d| d.expired), Some(1));
        assert_eq!(k.scanned, Some(true));
        assert_eq!(k.used_db_size, Some(65536));
        assert_eq!(k.fields.get("used_percent").map(String::as_str), Some("0%"));
        let never = Keyspace::parse("# Keyspace\r\n# WARN: DBSIZE SCAN never performed yet\r\ndb0:keys=0,expires=0,avg_ttl=0,expired=0\r\n").unwrap();
        assert_eq!(never.scanned, Some(false));
        assert_eq!(Keyspace::parse("# Keyspace\r\n").unwrap().total_keys(), 0);
    }

    #[test]
    fn sections_are_split() {
        let all = format!("{REDIS_SERVER}\r\n{REDIS_MASTER}\r\n{REDIS_KEYSPACE}");
        let s = InfoSections::parse(&all);
        assert_eq!(s.sections.len(), 3);
        assert_eq!(s.get("role"), Some("master"));
        assert_eq!(
            ReplicationInfo::parse(&all).unwrap().role,
            ReplicationRole::Master
        );
        assert_eq!(Keyspace::parse(&all).unwrap().total_keys(), 7);
    }

    proptest! {
        #[test]
        fn info_parsers_never_panic(s in "\\PC*") {
            let _ = InfoSections::parse(&s);
            let _ = ReplicationInfo::parse(&s);
            let _ = ServerInfo::parse(&s);
            let _ = Keyspace::parse(&s);
        }

        #[test]
        fn info_parsers_never_panic_on_info_like_text(
            lines in proptest::collection::vec(
                prop_oneof![
                    Just("# Replication".to_owned()),
                    Just("role:slave".to_owned()),
                    "slave[0-9]{1,3}:[a-z=,0-9.\\-]{0,40}",
                    "db[0-9]{0,12}:[a-z=,0-9\\-]{0,40}",
                    "[a-z_]{1,20}: ?[0-9\\-]{0,25}",
                    "\\PC{0,30}",
                ],
                0..20,
            )
        ) {
            let text = lines.join("\r\n");
            let _ = ReplicationInfo::parse(&text);
            let _ = ServerInfo::parse(&text);
            let _ = Keyspace::parse(&text);
        }
    }
}
