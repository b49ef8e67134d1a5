//! The sentinel event stream against real sentinels: a real failover, and a sentinel restart.

mod support;

use std::time::Duration;

use futures::StreamExt;
use kvrocks_client::{
    EventOptions, InstanceKind, NodeClient, SentinelClient, SentinelEvent, SentinelEventKind,
    SentinelEvents,
};
use support::{
    eventually, monitor_fast, start_master_and_replica, start_sentinel, wait_sentinel_ready,
};

/// Waits until the subscription has been established `n` times and is connected.
async fn wait_subscribed(events: &SentinelEvents, n: u64) {
    let mut link = events.link();
    let waited = tokio::time::timeout(
        Duration::from_secs(20),
        link.wait_for(|l| l.connected && l.subscriptions >= n),
    )
    .await;
    assert!(
        matches!(waited, Ok(Ok(_))),
        "not subscribed {n} time(s) within 20s: {events:?}"
    );
}

/// Receives events until `pred` matches one, failing after `timeout` with everything seen.
async fn wait_event(
    events: &mut SentinelEvents,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&SentinelEvent) -> bool,
) -> SentinelEvent {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(e)) if pred(&e) => return e,
            Ok(Some(e)) => seen.push(e),
            Ok(None) => panic!("event stream ended while waiting for {what}; seen {seen:#?}"),
            Err(_) => panic!("no {what} within {timeout:?}; seen {seen:#?}"),
        }
    }
}

#[tokio::test]
async fn real_failover_delivers_odown_and_switch_master() {
    const NAME: &str = "cluster_demo_0";
    let (mut master, replica) = start_master_and_replica();
    let procs = [start_sentinel(), start_sentinel(), start_sentinel()];
    let sentinels: Vec<SentinelClient> = procs
        .iter()
        .map(|p| SentinelClient::new(p.endpoint()))
        .collect();
    monitor_fast(&sentinels, NAME, &master.addr(), 2).await;
    for s in &sentinels {
        wait_sentinel_ready(s, NAME, &replica.addr(), 2).await;
    }

    let mut events = sentinels[0].events(EventOptions::default());
    assert_eq!(events.addr(), &procs[0].addr());
    wait_subscribed(&events, 1).await;

    master.kill();
    let odown = wait_event(&mut events, Duration::from_secs(30), "+odown", |e| {
        e.kind == SentinelEventKind::Odown
    })
    .await;
    assert_eq!(odown.master_name, NAME);
    assert_eq!(odown.instance, InstanceKind::Master);
    assert_eq!(odown.addr, master.addr());
    assert!(odown.payload.contains("#quorum"), "{odown:?}");

    let switch = wait_event(
        &mut events,
        Duration::from_secs(30),
        "+switch-master",
        |e| e.kind == SentinelEventKind::SwitchMaster,
    )
    .await;
    assert_eq!(switch.master_name, NAME);
    assert_eq!(switch.old_addr, Some(master.addr()));
    assert_eq!(switch.addr, replica.addr());
    assert_eq!(
        sentinels[0].master_addr(NAME).await.unwrap(),
        Some(replica.addr())
    );
}

#[tokio::test]
async fn event_stream_resubscribes_after_sentinel_restart_and_stops_when_dropped() {
    const NAME: &str = "standard_restart";
    let (master, mut replica) = start_master_and_replica();
    let mut sentinel = start_sentinel();
    let client = SentinelClient::new(sentinel.endpoint());
    monitor_fast(std::slice::from_ref(&client), NAME, &master.addr(), 1).await;
    wait_sentinel_ready(&client, NAME, &replica.addr(), 0).await;

    let options = EventOptions::default()
        .with_heartbeat(Duration::from_millis(500))
        .with_reconnect_delays(Duration::from_millis(50), Duration::from_millis(500));
    let mut events = client.events(options);
    wait_subscribed(&events, 1).await;

    sentinel.kill();
    let mut link = events.link();
    tokio::time::timeout(Duration::from_secs(10), link.wait_for(|l| !l.connected))
        .await
        .expect("the stream notices the sentinel went away")
        .unwrap();
    assert!(!events.is_connected());
    assert!(link.borrow().last_error.is_some());

    sentinel.restart();
    wait_subscribed(&events, 2).await;
    // The restarted sentinel reloads its rewritten config; make sure it tracks the replica again.
    wait_sentinel_ready(&client, NAME, &replica.addr(), 0).await;

    // A real event through the new subscription: the replica goes subjectively down.
    replica.kill();
    let sdown = wait_event(
        &mut events,
        Duration::from_secs(30),
        "+sdown of the replica",
        |e| e.kind == SentinelEventKind::Sdown && e.instance == InstanceKind::Replica,
    )
    .await;
    assert_eq!(sdown.addr, replica.addr());
    assert_eq!(sdown.master_name, NAME);

    // Dropping the stream closes its subscription on the sentinel.
    let probe = NodeClient::new(sentinel.endpoint());
    let subscribed_clients = || async {
        let list = probe.raw("CLIENT", &["LIST"]).await.ok()?;
        let text = kvrocks_client::parse::value_text(&list)?.into_owned();
        Some(text.lines().filter(|l| l.contains(" sub=5 ")).count())
    };
    assert_eq!(subscribed_clients().await, Some(1));
    drop(events);
    eventually(
        "subscription closed after drop",
        Duration::from_secs(10),
        || async { (subscribed_clients().await? == 0).then_some(()) },
    )
    .await;
}
