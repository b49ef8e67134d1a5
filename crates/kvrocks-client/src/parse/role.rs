//! The `ROLE` reply of redis, kvrocks and sentinel.

use fred::types::Value;

use super::{ParseError, value_i64, value_text};
use crate::addr::NodeAddr;

/// A replica as listed in a master's ROLE reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleReplica {
    /// Replica IP.
    pub ip: String,
    /// Replica listening port.
    pub port: u16,
    /// Offset (redis) or sequence number (kvrocks) the replica acknowledged.
    pub offset: i64,
}

impl RoleReplica {
    /// The replica's address.
    pub fn addr(&self) -> NodeAddr {
        NodeAddr::new(self.ip.clone(), self.port)
    }
}

/// State of a replica's link, from its ROLE reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaState {
    /// Must connect to the master (`connect`).
    Connect,
    /// Connecting to the master (`connecting`).
    Connecting,
    /// Handshake in progress (`handshake`, redis).
    Handshake,
    /// Full sync in progress (`sync`).
    Sync,
    /// Streaming from the master (`connected`).
    Connected,
    /// Anything else the server said.
    Other(String),
}

impl ReplicaState {
    fn parse(text: &str) -> Self {
        match text {
            "connect" => Self::Connect,
            "connecting" => Self::Connecting,
            "handshake" => Self::Handshake,
            "sync" => Self::Sync,
            "connected" => Self::Connected,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// The typed `ROLE` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A master, with its offset and the replicas it streams to.
    Master {
        /// Replication offset (kvrocks: latest sequence number).
        offset: i64,
        /// Connected replicas.
        replicas: Vec<RoleReplica>,
    },
    /// A replica of `master`.
    Replica {
        /// The master's address.
        master: NodeAddr,
        /// Link state.
        state: ReplicaState,
        /// Offset applied (-1 before the first sync on redis).
        offset: i64,
    },
    /// A sentinel, with the names of the masters it monitors.
    Sentinel {
        /// Monitored master names.
        masters: Vec<String>,
    },
}

impl Role {
    /// Parses a ROLE reply.
    pub fn parse(value: &Value) -> Result<Self, ParseError> {
        let err = |reason: &str| ParseError::new("ROLE reply", reason.to_owned());
        let Value::Array(items) = value else {
            return Err(err("not an array"));
        };
        let kind = items
            .first()
            .and_then(value_text)
            .ok_or_else(|| err("empty or without a role name"))?;
        match &*kind {
            "master" => {
                let offset = items
                    .get(1)
                    .and_then(value_i64)
                    .ok_or_else(|| err("master without offset"))?;
                let replicas = match items.get(2) {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(list)) => list
                        .iter()
                        .map(parse_role_replica)
                        .collect::<Result<_, _>>()?,
                    Some(_) => return Err(err("master replica list is not an array")),
                };
                Ok(Role::Master { offset, replicas })
            }
            "slave" | "replica" => {
                let host = items
                    .get(1)
                    .and_then(value_text)
                    .ok_or_else(|| err("replica without master host"))?;
                let port = items
                    .get(2)
                    .and_then(value_i64)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| err("replica without a valid master port"))?;
                let state = items
                    .get(3)
                    .and_then(value_text)
                    .map(|s| ReplicaState::parse(&s))
                    .ok_or_else(|| err("replica without link state"))?;
                let offset = items.get(4).and_then(value_i64).unwrap_or(-1);
                Ok(Role::Replica {
                    master: NodeAddr::new(host.into_owned(), port),
                    state,
                    offset,
                })
            }
            "sentinel" => {
                let masters = match items.get(1) {
                    Some(Value::Array(names)) => names
                        .iter()
                        .filter_map(|n| value_text(n).map(|t| t.into_owned()))
                        .collect(),
                    _ => Vec::new(),
                };
                Ok(Role::Sentinel { masters })
            }
            other => Err(err(&format!("unknown role {other:?}"))),
        }
    }

    /// True for a master.
    pub fn is_master(&self) -> bool {
        matches!(self, Role::Master { .. })
    }

    /// The master's address, for a replica.
    pub fn master_addr(&self) -> Option<&NodeAddr> {
        match self {
            Role::Replica { master, .. } => Some(master),
            _ => None,
        }
    }

    /// The offset: the master's own, or the one a replica applied; `None` for a sentinel.
    pub fn offset(&self) -> Option<i64> {
        match self {
            Role::Master { offset, .. } | Role::Replica { offset, .. } => Some(*offset),
            Role::Sentinel { .. } => None,
        }
    }
}

fn parse_role_replica(value: &Value) -> Result<RoleReplica, ParseError> {
    let err = |reason: &str| ParseError::new("ROLE replica entry", reason.to_owned());
    let Value::Array(fields) = value else {
        return Err(err("not an array"));
    };
    let ip = fields
        .first()
        .and_then(value_text)
        .ok_or_else(|| err("no ip"))?;
    let port = fields
        .get(1)
        .and_then(value_i64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| err("no valid port"))?;
    let offset = fields.get(2).and_then(value_i64).unwrap_or(0);
    Ok(RoleReplica {
        ip: ip.into_owned(),
        port,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::strategies::any_value;
    use proptest::prelude::*;

    fn arr(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    #[test]
    fn redis_master_role() {
        // Captured from redis-server 7.0.15: 1) "master" 2) (integer) 129 3) 1) 1) "127.0.0.1" 2) "17002" 3) "129"
        let v = arr(vec![
            "master".into(),
            Value::Integer(129),
            arr(vec![arr(vec![
                "127.0.0.1".into(),
                "17002".into(),
                "129".into(),
            ])]),
        ]);
        let role = Role::parse(&v).unwrap();
        assert_eq!(
            role,
            Role::Master {
                offset: 129,
                replicas: vec![RoleReplica {
                    ip: "127.0.0.1".into(),
                    port: 17002,
                    offset: 129
                }],
            }
        );
        assert!(role.is_master());
        assert_eq!(role.offset(), Some(129));
    }

    #[test]
    fn redis_replica_role() {
        // Captured: 1) "slave" 2) "127.0.0.1" 3) (integer) 17001 4) "connected" 5) (integer) 129
        let v = arr(vec![
            "slave".into(),
            "127.0.0.1".into(),
            Value::Integer(17001),
            "connected".into(),
            Value::Integer(129),
        ]);
        let role = Role::parse(&v).unwrap();
        assert_eq!(role.master_addr(), Some(&NodeAddr::new("127.0.0.1", 17001)));
        assert_eq!(role.offset(), Some(129));
        // Captured right after SLAVEOF: state "handshake", offset -1.
        let v = arr(vec![
            "slave".into(),
            "127.0.0.1".into(),
            Value::Integer(17001),
            "handshake".into(),
            Value::Integer(-1),
        ]);
        assert!(matches!(
            Role::parse(&v).unwrap(),
            Role::Replica {
                state: ReplicaState::Handshake,
                offset: -1,
                ..
            }
        ));
    }

    #[test]
    fn kvrocks_roles() {
        // kvrocks writes every field as a bulk string, and omits the replica list when empty.
        let master = arr(vec!["master".into(), "4242".into()]);
        assert_eq!(
            Role::parse(&master).unwrap(),
            Role::Master {
                offset: 4242,
                replicas: vec![]
            }
        );
        let replica = arr(vec![
            "slave".into(),
            "10.0.0.1".into(),
            "6379".into(),
            "sync".into(),
            "17".into(),
        ]);
        assert!(matches!(
            Role::parse(&replica).unwrap(),
            Role::Replica {
                state: ReplicaState::Sync,
                offset: 17,
                ..
            }
        ));
    }

    #[test]
    fn sentinel_role() {
        // Captured from redis-sentinel 7.0.15: 1) "sentinel" 2) 1) "mymaster"
        let v = arr(vec!["sentinel".into(), arr(vec!["mymaster".into()])]);
        assert_eq!(
            Role::parse(&v).unwrap(),
            Role::Sentinel {
                masters: vec!["mymaster".into()]
            }
        );
    }

    #[test]
    fn bad_roles_are_errors() {
        for v in [
            Value::Null,
            arr(vec![]),
            arr(vec!["leader".into()]),
            arr(vec!["master".into()]),
            arr(vec!["master".into(), "1".into(), "x".into()]),
            arr(vec![
                "slave".into(),
                "h".into(),
                "99999".into(),
                "connected".into(),
            ]),
            arr(vec!["slave".into(), "h".into()]),
        ] {
            assert!(Role::parse(&v).is_err(), "{v:?}");
        }
    }

    proptest! {
        #[test]
        fn role_parser_never_panics(v in any_value()) {
            let _ = Role::parse(&v);
        }

        #[test]
        fn role_parser_never_panics_on_role_like_arrays(
            head in prop::sample::select(vec!["master", "slave", "sentinel"]),
            rest in proptest::collection::vec(any_value(), 0..6),
        ) {
            let mut items = vec![Value::from(head)];
            items.extend(rest);
            let _ = Role::parse(&Value::Array(items));
        }
    }
}
