//! Sentinel pub/sub event payloads (`+sdown`, `+odown`, `+switch-master`, ...) as typed events.

use super::{ParseError, num};
use crate::addr::NodeAddr;

/// Which sentinel event a message reports (its pub/sub channel).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SentinelEventKind {
    /// `+sdown`: this sentinel considers the instance down.
    Sdown,
    /// `-sdown`: no longer subjectively down.
    SdownCleared,
    /// `+odown`: a quorum considers the master down.
    Odown,
    /// `-odown`: no longer objectively down.
    OdownCleared,
    /// `+switch-master`: the master moved to a new address.
    SwitchMaster,
    /// Any other channel, kept verbatim.
    Other(String),
}

impl SentinelEventKind {
    /// The event for a channel name.
    pub fn from_channel(channel: &str) -> Self {
        match channel {
            "+sdown" => Self::Sdown,
            "-sdown" => Self::SdownCleared,
            "+odown" => Self::Odown,
            "-odown" => Self::OdownCleared,
            "+switch-master" => Self::SwitchMaster,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The pub/sub channel of the event.
    pub fn channel(&self) -> &str {
        match self {
            Self::Sdown => "+sdown",
            Self::SdownCleared => "-sdown",
            Self::Odown => "+odown",
            Self::OdownCleared => "-odown",
            Self::SwitchMaster => "+switch-master",
            Self::Other(c) => c,
        }
    }
}

/// Kind of instance an event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceKind {
    /// A monitored master.
    Master,
    /// A replica of a monitored master.
    Replica,
    /// Another sentinel.
    Sentinel,
    /// Anything else.
    Other(String),
}

/// A typed sentinel event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelEvent {
    /// What happened.
    pub kind: SentinelEventKind,
    /// Kind of instance it happened to (`Master` for switch-master).
    pub instance: InstanceKind,
    /// Sentinel's name for the instance (the master name for masters, `ip:port` for replicas).
    pub instance_name: String,
    /// Name of the monitored master concerned.
    pub master_name: String,
    /// Address of the instance; for switch-master, the new master.
    pub addr: NodeAddr,
    /// For switch-master, the old master's address.
    pub old_addr: Option<NodeAddr>,
    /// The raw payload.
    pub payload: String,
}

impl SentinelEvent {
    /// Parses the payload of a message on `channel`.
    ///
    /// Instance events: `<type> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>] [extra...]`,
    /// e.g. `master mymaster 127.0.0.1 6379 #quorum 2/2`. Switch-master: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
    pub fn parse(channel: &str, payload: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "sentinel event";
        let err = |reason: &str| ParseError::new(WHAT, format!("{channel} {payload:?}: {reason}"));
        let kind = SentinelEventKind::from_channel(channel);
        let tokens: Vec<&str> = payload.split_whitespace().collect();
        let port = |t: &str| num::<u16>(t).ok_or_else(|| err("bad port"));
        if kind == SentinelEventKind::SwitchMaster {
            let [name, old_ip, old_port, new_ip, new_port, ..] = tokens.as_slice() else {
                return Err(err("switch-master needs 5 fields"));
            };
            return Ok(Self {
                kind,
                instance: InstanceKind::Master,
                instance_name: (*name).to_owned(),
                master_name: (*name).to_owned(),
                addr: NodeAddr::new(*new_ip, port(new_port)?),
                old_addr: Some(NodeAddr::new(*old_ip, port(old_port)?)),
                payload: payload.to_owned(),
            });
        }
        let [kind_text, name, ip, port_text, rest @ ..] = tokens.as_slice() else {
            return Err(err("instance events need at least 4 fields"));
        };
        let instance = match *kind_text {
            "master" => InstanceKind::Master,
            "slave" | "replica" => InstanceKind::Replica,
            "sentinel" => InstanceKind::Sentinel,
            other => InstanceKind::Other(other.to_owned()),
        };
        let master_name = match rest {
            ["@", master, ..] => (*master).to_owned(),
            _ if instance == InstanceKind::Master => (*name).to_owned(),
            _ => return Err(err("event about a non-master without '@ <master>'")),
        };
        Ok(Self {
            kind,
            instance,
            instance_name: (*name).to_owned(),
            master_name,
            addr: NodeAddr::new(*ip, port(port_text)?),
            old_addr: None,
            payload: payload.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn events_captured_from_a_real_failover() {
        let e = SentinelEvent::parse("+sdown", "master mymaster 127.0.0.1 17001").unwrap();
        assert_eq!(e.kind, SentinelEventKind::Sdown);
        assert_eq!(e.instance, InstanceKind::Master);
        assert_eq!(e.master_name, "mymaster");
        assert_eq!(e.addr, NodeAddr::new("127.0.0.1", 17001));
        let e =
            SentinelEvent::parse("+odown", "master mymaster 127.0.0.1 17001 #quorum 3/2").unwrap();
        assert_eq!(e.kind, SentinelEventKind::Odown);
        assert_eq!(e.master_name, "mymaster");
        let e = SentinelEvent::parse("+switch-master", "mymaster 127.0.0.1 17001 127.0.0.1 17002")
            .unwrap();
        assert_eq!(e.kind, SentinelEventKind::SwitchMaster);
        assert_eq!(e.old_addr, Some(NodeAddr::new("127.0.0.1", 17001)));
        assert_eq!(e.addr, NodeAddr::new("127.0.0.1", 17002));
        let e = SentinelEvent::parse(
            "+sdown",
            "slave 127.0.0.1:17001 127.0.0.1 17001 @ mymaster 127.0.0.1 17002",
        )
        .unwrap();
        assert_eq!(e.instance, InstanceKind::Replica);
        assert_eq!(e.instance_name, "127.0.0.1:17001");
        assert_eq!(e.master_name, "mymaster");
        let e = SentinelEvent::parse(
            "-sdown",
            "sentinel 42b3f187df8ace3eaeab8d91d50a034d93f69d90 127.0.0.1 17103 @ mymaster 127.0.0.1 17001",
        )
        .unwrap();
        assert_eq!(e.kind, SentinelEventKind::SdownCleared);
        assert_eq!(e.instance, InstanceKind::Sentinel);
        assert_eq!(
            SentinelEventKind::from_channel("-odown").channel(),
            "-odown"
        );
        assert_eq!(
            SentinelEventKind::from_channel("+new-epoch"),
            SentinelEventKind::Other("+new-epoch".into())
        );
    }

    #[test]
    fn bad_events_are_errors() {
        for (c, p) in [
            ("+switch-master", "mymaster 127.0.0.1 17001 127.0.0.1"),
            ("+switch-master", "mymaster 127.0.0.1 x 127.0.0.1 1"),
            ("+odown", "master mymaster 127.0.0.1"),
            ("+sdown", "slave 127.0.0.1:1 127.0.0.1 1"),
            ("+sdown", ""),
        ] {
            assert!(SentinelEvent::parse(c, p).is_err(), "{c} {p}");
        }
    }

    proptest! {
        #[test]
        fn event_parser_never_panics(channel in "\\PC{0,16}", payload in "\\PC*") {
            let _ = SentinelEvent::parse(&channel, &payload);
            let _ = SentinelEvent::parse("+switch-master", &payload);
            let _ = SentinelEvent::parse("+odown", &payload);
        }

        #[test]
        fn event_parser_never_panics_on_event_like_payloads(
            tokens in proptest::collection::vec(
                prop_oneof![
                    Just("master".to_owned()), Just("slave".to_owned()), Just("@".to_owned()),
                    "[a-z]{1,8}", "[0-9]{1,6}", "[0-9.]{1,15}", "#quorum [0-9]/[0-9]",
                ],
                0..10,
            )
        ) {
            let payload = tokens.join(" ");
            for channel in ["+sdown", "-sdown", "+odown", "-odown", "+switch-master"] {
                let _ = SentinelEvent::parse(channel, &payload);
            }
        }
    }
}
