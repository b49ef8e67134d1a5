//! The reply parsers fed mutations of replies captured from kvrocks 2.10.1 and redis-sentinel 7
//! (bytes flipped, dropped, inserted and repeated, numbers replaced by huge or negative ones,
//! lines duplicated or cut) and arbitrary bytes: they may refuse, never panic, and never
//! allocate in proportion to a number read from the reply (a huge count would abort the test).

use fred::types::Value;
use kvrocks_client::parse::sentinel::{
    QuorumStatus, SentinelMaster, SentinelPeer, SentinelReplica,
};
use kvrocks_client::{
    ClusterInfo, ClusterNode, ClusterNodes, InfoSections, Keyspace, NodeAddr, ReplicationInfo,
    Role, SentinelEvent, SentinelEventKind, ServerInfo, Topology,
};
use proptest::prelude::*;

/// Text replies as kvrocks 2.10.1 and redis-sentinel 7 send them.
const CAPTURED_TEXT: &[&str] = &[
    "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.239.2.4,port=6379,offset=6094,lag=0\r\nmaster_repl_offset:6094\r\n",
    "# Replication\r\nrole:slave\r\nmaster_host:10.239.3.3\r\nmaster_port:6379\r\nmaster_link_status:up\r\nmaster_sync_unrecoverable_error:no\r\nmaster_sync_in_progress:0\r\nmaster_last_io_seconds_ago:1\r\nslave_repl_offset:6094\r\nslave_priority:100\r\n",
    "# Server\r\nversion:2.10.1\r\nkvrocks_version:2.10.1\r\nredis_version:4.0.0\r\ngit_sha1:8e4b9a1c\r\nkvrocks_git_sha1:8e4b9a1c\r\nredis_mode:cluster\r\nos:Linux 6.1.0 x86_64\r\narch_bits:64\r\nprocess_id:14700\r\ntcp_port:6379\r\nuptime_in_seconds:2\r\nuptime_in_days:0\r\n",
    "# Keyspace\r\n# Last DBSIZE SCAN time: Thu Nov 26 12:00:00 2026\r\ndb0:keys=5000,expires=0,avg_ttl=0,expired=0\r\nsequence:16527\r\nused_db_size:1048576\r\nmax_db_size:0\r\n",
    "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:4\r\ncluster_size:2\r\ncluster_current_epoch:3\r\ncluster_my_epoch:3\r\nmigrating_slot(s): 0-99\r\ndestination_node: abcdefabcdefabcdefabcdefabcdefabcdefabcd\r\nmigrating_state: success\r\n",
    "0123456789012345678901234567890123456789 10.239.2.2:6379@16379 myself,master - 0 0 3 connected 100-8191 16284-16383 [5->-abcdefabcdefabcdefabcdefabcdefabcdefabcd]\nabcdefabcdefabcdefabcdefabcdefabcdefabcd 10.239.1.4:6379@16379 master - 0 1764158400000 3 connected 0-99 8192-16283\n1111111111111111111111111111111111111111 10.239.3.3:6379@16379 slave 0123456789012345678901234567890123456789 0 1764158400000 3 connected\n",
    "0123456789012345678901234567890123456789 10.239.2.2 6379 master - 0-100 200 300-16383\nabcdefabcdefabcdefabcdefabcdefabcdefabcd 10.239.1.4 6379 master - 101-199\n1111111111111111111111111111111111111111 10.239.3.3 6379 slave 0123456789012345678901234567890123456789\n",
];

/// Sentinel events as published (channel, payload).
const CAPTURED_EVENTS: &[(&str, &str)] = &[
    ("+switch-master", "std 10.239.1.4 6379 10.239.2.5 6379"),
    ("+sdown", "master std 10.239.1.4 6379"),
    ("+odown", "master std 10.239.1.4 6379 #quorum 2/2"),
    (
        "+convert-to-slave",
        "slave 10.239.1.4:6379 10.239.1.4 6379 @ std 10.239.2.5 6379",
    ),
    (
        "+sentinel",
        "sentinel 9f3c 10.239.3.7 26379 @ std 10.239.1.4 6379",
    ),
    ("+try-failover", "master std 10.239.1.4 6379"),
];

/// Sentinel's quorum check replies.
const CAPTURED_MESSAGES: &[&str] = &[
    "OK 3 usable Sentinels. Quorum and failover authorization can be reached",
    "NOQUORUM 1 usable Sentinels. Not enough available Sentinels to reach the specified quorum for this master",
];

/// `SENTINEL MASTER std` from redis-sentinel 7 (a flat field/value array).
fn sentinel_master() -> Value {
    flat(&[
        ("name", "std"),
        ("ip", "10.239.1.4"),
        ("port", "6379"),
        ("runid", "6f1c2a"),
        ("flags", "master"),
        ("link-pending-commands", "0"),
        ("last-ping-reply", "120"),
        ("down-after-milliseconds", "5000"),
        ("config-epoch", "2"),
        ("num-slaves", "2"),
        ("num-other-sentinels", "2"),
        ("quorum", "2"),
        ("failover-timeout", "10000"),
        ("parallel-syncs", "1"),
    ])
}

fn flat(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .flat_map(|(k, v)| [Value::from(*k), Value::from(*v)])
            .collect(),
    )
}

/// `ROLE` of a kvrocks master and of a replica.
fn roles() -> Vec<Value> {
    vec![
        Value::Array(vec![
            "master".into(),
            Value::Integer(6094),
            Value::Array(vec![Value::Array(vec![
                "10.239.2.4".into(),
                "6379".into(),
                "6094".into(),
            ])]),
        ]),
        Value::Array(vec![
            "slave".into(),
            "10.239.3.3".into(),
            Value::Integer(6379),
            "connected".into(),
            Value::Integer(6094),
        ]),
    ]
}

/// One mutation of a reply's bytes.
#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Drop(usize, usize),
    Insert(usize, Vec<u8>),
    Repeat(usize, usize, u8),
    HugeNumbers(String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 0usize..16).prop_map(|(i, n)| Mutation::Drop(i, n)),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 0..12)
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 1usize..24, 1u8..6).prop_map(|(i, n, k)| Mutation::Repeat(i, n, k)),
        prop::sample::select(vec![
            "18446744073709551616",
            "99999999999999999999999",
            "-1",
            "-9223372036854775808",
            "4294967295",
            "16384",
            "0",
        ])
        .prop_map(|n| Mutation::HugeNumbers(n.to_owned())),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(text: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut out = text.to_vec();
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % (len + 1) };
    match mutation {
        Mutation::Flip(i, b) if !out.is_empty() => {
            let i = i % out.len();
            out[i] ^= b.max(&1);
        }
        Mutation::Flip(..) => {}
        Mutation::Drop(i, n) => {
            let start = at(*i, out.len());
            let end = (start + n).min(out.len());
            out.drain(start..end);
        }
        Mutation::Insert(i, bytes) => {
            let start = at(*i, out.len());
            out.splice(start..start, bytes.iter().copied());
        }
        Mutation::Repeat(i, n, times) => {
            let start = at(*i, out.len());
            let end = (start + n).min(out.len());
            let piece: Vec<u8> = out[start..end].to_vec();
            for _ in 0..*times {
                out.splice(end..end, piece.iter().copied());
            }
        }
        Mutation::HugeNumbers(n) => {
            // Every run of digits becomes `n`.
            let text = String::from_utf8_lossy(&out).into_owned();
            let mut replaced = String::new();
            let mut in_digits = false;
            for c in text.chars() {
                if c.is_ascii_digit() {
                    if !in_digits {
                        replaced.push_str(n);
                    }
                    in_digits = true;
                } else {
                    in_digits = false;
                    replaced.push(c);
                }
            }
            out = replaced.into_bytes();
        }
        Mutation::Truncate(i) => out.truncate(at(*i, out.len())),
    }
    out
}

fn mutate(text: &str, mutations: &[Mutation]) -> String {
    let bytes = mutations
        .iter()
        .fold(text.as_bytes().to_vec(), |acc, m| apply(&acc, m));
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every text parser on `text`.
fn parse_text(text: &str) {
    let _ = InfoSections::parse(text);
    let _ = ReplicationInfo::parse(text);
    let _ = ServerInfo::parse(text);
    let _ = Keyspace::parse(text);
    let _ = ClusterInfo::parse(text).map(|i| i.migration_state());
    let _ = ClusterNodes::parse(text);
    for line in text.lines() {
        let _ = ClusterNode::parse_line(line);
        let _ = line.trim().parse::<NodeAddr>();
    }
    let _ = Topology::parse_setnodes(text);
    let _ = QuorumStatus::from_message(text);
    let _ = SentinelEventKind::from_channel(text);
}

/// Every value parser on `value`.
fn parse_value(value: &Value) {
    let _ = Role::parse(value);
    let _ = SentinelMaster::parse(value);
    let _ = SentinelMaster::parse_list(value);
    let _ = SentinelReplica::parse(value);
    let _ = SentinelReplica::parse_list(value);
    let _ = SentinelPeer::parse(value);
    let _ = SentinelPeer::parse_list(value);
}

/// A captured array reply with its string leaves mutated.
fn mutate_value(value: &Value, mutations: &[Mutation], seed: &mut usize) -> Value {
    match value {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| mutate_value(v, mutations, seed))
                .collect(),
        ),
        Value::String(s) => {
            *seed += 1;
            let chosen: Vec<Mutation> = mutations
                .iter()
                .skip(*seed % mutations.len().max(1))
                .take(1)
                .cloned()
                .collect();
            Value::from(mutate(s, &chosen))
        }
        Value::Integer(i) => {
            *seed += 1;
            match mutations.get(*seed % mutations.len().max(1)) {
                Some(Mutation::HugeNumbers(_)) => Value::Integer(i64::MAX - i.rem_euclid(3)),
                Some(Mutation::Truncate(_)) => Value::Null,
                _ => Value::Integer(*i),
            }
        }
        other => other.clone(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn mutated_captured_text_replies_never_panic(
        which in 0..CAPTURED_TEXT.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        parse_text(&mutate(CAPTURED_TEXT[which], &mutations));
    }

    #[test]
    fn mutated_captured_events_never_panic(
        which in 0..CAPTURED_EVENTS.len(),
        channel_mutations in proptest::collection::vec(mutation(), 0..3),
        payload_mutations in proptest::collection::vec(mutation(), 1..6),
        message in 0..CAPTURED_MESSAGES.len(),
    ) {
        let (channel, payload) = CAPTURED_EVENTS[which];
        let channel = mutate(channel, &channel_mutations);
        let payload = mutate(payload, &payload_mutations);
        let _ = SentinelEvent::parse(&channel, &payload);
        let _ = QuorumStatus::from_message(&mutate(CAPTURED_MESSAGES[message], &payload_mutations));
    }

    #[test]
    fn mutated_captured_array_replies_never_panic(
        mutations in proptest::collection::vec(mutation(), 1..6),
        drop_at in any::<usize>(),
    ) {
        let mut seed = 0;
        let mut replies = roles();
        replies.push(sentinel_master());
        replies.push(Value::Array(vec![sentinel_master(), sentinel_master()]));
        for reply in &replies {
            let mutated = mutate_value(reply, &mutations, &mut seed);
            parse_value(&mutated);
            // An element dropped (a field without its value, a shorter ROLE).
            if let Value::Array(items) = &mutated && !items.is_empty() {
                let mut shorter = items.clone();
                shorter.remove(drop_at % items.len());
                parse_value(&Value::Array(shorter));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        parse_text(&text);
        let _ = SentinelEvent::parse(&text, &text);
        parse_value(&Value::Bytes(bytes.clone().into()));
        parse_value(&Value::Array(bytes.chunks(7).map(|c| Value::Bytes(c.to_vec().into())).collect()));
    }
}

#[test]
fn the_captured_replies_parse_as_they_are() {
    assert!(ReplicationInfo::parse(CAPTURED_TEXT[0]).is_ok());
    assert!(
        ReplicationInfo::parse(CAPTURED_TEXT[1])
            .unwrap()
            .is_link_up()
    );
    assert!(ServerInfo::parse(CAPTURED_TEXT[2]).is_ok());
    assert_eq!(
        Keyspace::parse(CAPTURED_TEXT[3]).unwrap().total_keys(),
        5000
    );
    assert!(
        ClusterInfo::parse(CAPTURED_TEXT[4])
            .unwrap()
            .migration
            .is_some()
    );
    assert_eq!(
        ClusterNodes::parse(CAPTURED_TEXT[5]).unwrap().nodes.len(),
        3
    );
    assert_eq!(
        Topology::parse_setnodes(CAPTURED_TEXT[6])
            .unwrap()
            .nodes()
            .len(),
        3
    );
    assert!(SentinelMaster::parse(&sentinel_master()).is_ok());
    for role in roles() {
        assert!(Role::parse(&role).is_ok(), "{role:?}");
    }
    for (channel, payload) in CAPTURED_EVENTS {
        assert!(
            SentinelEvent::parse(channel, payload).is_ok(),
            "{channel} {payload}"
        );
    }
}
