//! SentinelClient against three real redis-sentinel processes monitoring a real master and replica.

mod support;

use std::time::Duration;

use kvrocks_client::{Error, NodeAddr, Role, SentinelClient};
use support::{
    eventually, monitor_fast, start_master_and_replica, start_sentinel, wait_sentinel_ready,
};

const NAME: &str = "standard_demo";

#[tokio::test]
async fn every_sentinel_command() {
    let (master, replica) = start_master_and_replica();
    let procs = [start_sentinel(), start_sentinel(), start_sentinel()];
    let sentinels: Vec<SentinelClient> = procs
        .iter()
        .map(|p| SentinelClient::new(p.endpoint()))
        .collect();
    let s = &sentinels[0];

    s.ping().await.unwrap();
    assert_eq!(s.role().await.unwrap(), Role::Sentinel { masters: vec![] });
    assert!(s.masters().await.unwrap().is_empty());
    assert_eq!(s.master(NAME).await.unwrap(), None);
    assert_eq!(s.master_addr(NAME).await.unwrap(), None);

    monitor_fast(&sentinels, NAME, &master.addr(), 2).await;
    let err = s.monitor(NAME, &master.addr(), 2).await.unwrap_err();
    assert!(
        matches!(err, Error::Server { .. }),
        "duplicate MONITOR: {err:?}"
    );
    assert_eq!(err.command(), "SENTINEL MONITOR");
    assert_eq!(
        s.role().await.unwrap(),
        Role::Sentinel {
            masters: vec![NAME.to_owned()]
        }
    );

    s.set_down_after(NAME, Duration::from_millis(1000))
        .await
        .unwrap();
    s.set_failover_timeout(NAME, Duration::from_millis(3000))
        .await
        .unwrap();
    s.set_parallel_syncs(NAME, 1).await.unwrap();
    s.set_quorum(NAME, 2).await.unwrap();
    let err = s.set(NAME, &[("no-such-option", "1")]).await.unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err:?}");

    let masters = s.masters().await.unwrap();
    assert_eq!(masters.len(), 1);
    let m = &masters[0];
    assert_eq!(m.name, NAME);
    assert_eq!(m.addr, master.addr());
    assert_eq!(m.quorum, Some(2));
    assert_eq!(m.down_after_ms, Some(1000));
    assert_eq!(m.failover_timeout_ms, Some(3000));
    assert_eq!(m.parallel_syncs, Some(1));
    assert!(m.has_flag("master"));
    assert!(!m.is_odown());

    let one = s.master(NAME).await.unwrap().unwrap();
    assert_eq!(one.addr, master.addr());
    assert_eq!(s.master_addr(NAME).await.unwrap(), Some(master.addr()));

    wait_sentinel_ready(s, NAME, &replica.addr(), 2).await;
    let replicas = s.replicas(NAME).await.unwrap();
    assert_eq!(replicas.len(), 1);
    assert_eq!(replicas[0].master_addr, Some(master.addr()));
    let peers = s.sentinels(NAME).await.unwrap();
    let mut peer_ports: Vec<u16> = peers.iter().map(|p| p.addr.port).collect();
    peer_ports.sort_unstable();
    let mut expected: Vec<u16> = procs[1..].iter().map(|p| p.port()).collect();
    expected.sort_unstable();
    assert_eq!(peer_ports, expected);
    assert!(peers.iter().all(|p| p.run_id.len() == 40));

    let quorum = s.ckquorum(NAME).await.unwrap();
    assert!(quorum.ok, "{quorum:?}");
    assert_eq!(quorum.usable_sentinels, Some(3));
    s.set_quorum(NAME, 5).await.unwrap();
    let quorum = s.ckquorum(NAME).await.unwrap();
    assert!(!quorum.ok, "{quorum:?}");
    assert!(quorum.message.starts_with("NOQUORUM"), "{quorum:?}");
    s.set_quorum(NAME, 2).await.unwrap();
    let err = s.ckquorum("not-monitored").await.unwrap_err();
    assert!(err.is_unknown_master(), "{err:?}");
    let err = s.replicas("not-monitored").await.unwrap_err();
    assert!(err.is_unknown_master(), "{err:?}");

    // A forced failover promotes the replica.
    s.failover(NAME).await.unwrap();
    // Sentinel takes at least one INFO round (a second) to see the promotion: right after the
    // command, the failover is under way, and a second one is refused as such.
    assert!(
        s.master(NAME)
            .await
            .unwrap()
            .unwrap()
            .is_failover_in_progress()
    );
    let err = s.failover(NAME).await.unwrap_err();
    assert!(err.is_failover_in_progress(), "{err:?}");
    eventually(
        "failover to the replica",
        Duration::from_secs(30),
        || async { (s.master_addr(NAME).await.ok()?? == replica.addr()).then_some(()) },
    )
    .await;

    assert_eq!(s.reset(NAME).await.unwrap(), 1);
    assert_eq!(s.reset("nothing-matches-*").await.unwrap(), 0);

    for sentinel in &sentinels {
        sentinel.remove(NAME).await.unwrap();
    }
    assert!(s.masters().await.unwrap().is_empty());
    let err = s.remove(NAME).await.unwrap_err();
    assert!(err.is_unknown_master(), "{err:?}");
}

#[tokio::test]
async fn failover_without_replica_is_refused() {
    let master = support::start_redis(&[]);
    let sentinel = start_sentinel();
    let s = SentinelClient::connect(sentinel.endpoint()).await.unwrap();
    s.monitor("lonely", &master.addr(), 1).await.unwrap();
    let err = s.failover("lonely").await.unwrap_err();
    assert_eq!(err.command(), "SENTINEL FAILOVER");
    assert!(
        err.server_message()
            .is_some_and(|m| m.contains("NOGOODSLAVE")),
        "{err:?}"
    );
    assert!(err.to_string().contains(&sentinel.addr().to_string()));
}

#[tokio::test]
async fn unreachable_sentinel_fails_fast() {
    let s = SentinelClient::with(
        NodeAddr::new("127.0.0.1", support::free_port()),
        None,
        Default::default(),
    );
    let started = std::time::Instant::now();
    let err = s.masters().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(err.command(), "SENTINEL MASTERS");
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// A sentinel with a password of its own: the passwords it accepts are read as hashes, a second
/// one is accepted and the first retired without a restart, and `sentinel-pass` is read and set.
#[tokio::test]
async fn a_sentinel_password_is_rotated_live() {
    use kvrocks_client::{Endpoint, Password};
    // The support starts a process only once it answers with its test password.
    let old = Password::new(support::PASSWORD);
    let new = Password::new("new-sentinel-pass");
    let proc = support::start_sentinel_with(&[
        format!("requirepass {}", old.expose()),
        format!("sentinel sentinel-pass {}", old.expose()),
    ]);
    let as_old = SentinelClient::new(Endpoint::new(proc.addr()).with_password(old.clone()));
    let as_new = SentinelClient::new(Endpoint::new(proc.addr()).with_password(new.clone()));
    let anonymous = SentinelClient::new(proc.endpoint());

    let err = anonymous.failover(NAME).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "no password: {err:?}");
    assert_eq!(
        as_old.accepted_password_hashes().await.unwrap(),
        vec![old.acl_hash()]
    );
    assert_eq!(
        as_old
            .sentinel_pass()
            .await
            .unwrap()
            .map(|p| p.expose().to_owned()),
        Some(old.expose().to_owned())
    );

    as_old.accept_password(&new).await.unwrap();
    as_new.ping().await.unwrap();
    let mut both = as_old.accepted_password_hashes().await.unwrap();
    both.sort();
    let mut wanted = vec![old.acl_hash(), new.acl_hash()];
    wanted.sort();
    assert_eq!(both, wanted);

    as_new.set_sentinel_pass(&new).await.unwrap();
    assert_eq!(
        as_new
            .sentinel_pass()
            .await
            .unwrap()
            .map(|p| p.expose().to_owned()),
        Some(new.expose().to_owned())
    );
    as_new.refuse_password_hash(&old.acl_hash()).await.unwrap();
    assert_eq!(
        as_new.accepted_password_hashes().await.unwrap(),
        vec![new.acl_hash()]
    );
    let fresh = SentinelClient::new(Endpoint::new(proc.addr()).with_password(old.clone()));
    let err = fresh.ping().await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "old password: {err:?}");
    assert!(
        !err.to_string().contains(old.expose()),
        "the error shows the password: {err}"
    );
}
