//! NodeClient against real redis-server processes.

mod support;

use std::time::{Duration, Instant};

use kvrocks_client::{
    Endpoint, Error, LinkStatus, NodeAddr, NodeClient, Password, ReplicaState, ReplicationRole,
    Role, Timeouts,
};
use support::{PASSWORD, eventually, free_port, start_redis};

fn password_config() -> Vec<String> {
    vec![
        format!("requirepass {PASSWORD}"),
        format!("masterauth {PASSWORD}"),
    ]
}

#[tokio::test]
async fn ping_info_config_and_dbsize() {
    let server = start_redis(&[]);
    let node = NodeClient::connect(server.endpoint()).await.unwrap();
    assert_eq!(node.addr(), &server.addr());
    node.ping().await.unwrap();

    let info = node.info_server().await.unwrap();
    assert!(!info.version.is_empty());
    assert!(!info.is_kvrocks());
    assert_eq!(info.tcp_port, Some(server.port()));
    assert_eq!(info.mode.as_deref(), Some("standalone"));
    assert_eq!(info.run_id.as_ref().map(String::len), Some(40));

    for i in 0..5 {
        node.raw("SET", &[&format!("key:{i}"), "v"]).await.unwrap();
    }
    node.raw("SET", &["ttl-key", "v", "EX", "1000"])
        .await
        .unwrap();
    assert_eq!(node.dbsize().await.unwrap(), 6);
    let keyspace = node.info_keyspace().await.unwrap();
    assert_eq!(keyspace.total_keys(), 6);
    assert_eq!(keyspace.dbs.get(&0).map(|d| d.expires), Some(1));

    node.config_set("maxmemory-policy", "allkeys-lru")
        .await
        .unwrap();
    assert_eq!(
        node.config_get_one("maxmemory-policy")
            .await
            .unwrap()
            .as_deref(),
        Some("allkeys-lru")
    );
    let many = node.config_get("maxmemory*").await.unwrap();
    assert!(many.len() >= 3, "{many:?}");
    assert_eq!(node.config_get_one("no-such-setting").await.unwrap(), None);

    let err = node.config_set("no-such-setting", "1").await.unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&server.addr().to_string()) && text.contains("CONFIG SET"),
        "{text}"
    );

    // DBSIZE SCAN is kvrocks-only: redis refuses it with a server error naming the command.
    let err = node.dbsize_scan().await.unwrap_err();
    assert_eq!(err.command(), "DBSIZE SCAN");
    assert!(err.server_message().is_some(), "{err:?}");

    let role = node.role().await.unwrap();
    assert!(
        matches!(role, Role::Master { ref replicas, .. } if replicas.is_empty()),
        "{role:?}"
    );
    let repl = node.info_replication().await.unwrap();
    assert_eq!(repl.role, ReplicationRole::Master);
    assert_eq!(repl.connected_slaves, 0);
    node.close().await;
    // A closed client reconnects on the next call.
    node.ping().await.unwrap();
}

#[tokio::test]
async fn auth_with_requirepass() {
    let server = start_redis(&password_config());

    let err = NodeClient::connect(server.endpoint()).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "no password: {err:?}");
    assert!(err.to_string().contains(&server.addr().to_string()));

    let wrong = "definitely-wrong-password";
    let err = NodeClient::connect(server.endpoint().with_password(wrong))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "wrong password: {err:?}");
    assert!(!err.to_string().contains(wrong), "{err}");
    assert!(!format!("{err:?}").contains(wrong), "{err:?}");

    let node = NodeClient::connect(server.endpoint_with_password())
        .await
        .unwrap();
    node.ping().await.unwrap();
    node.auth(&Password::new(PASSWORD)).await.unwrap();
    let err = node.auth(&Password::new(wrong)).await.unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err:?}");
    assert_eq!(err.command(), "AUTH");
    assert!(!err.to_string().contains(wrong));

    // Rotate the password: AUTH with the new one is remembered for later reconnects.
    let rotated = Password::new("rotated-pass-2");
    node.config_set("requirepass", rotated.expose())
        .await
        .unwrap();
    node.auth(&rotated).await.unwrap();
    node.close().await;
    node.ping().await.unwrap();
    assert_eq!(
        node.config_get_one("requirepass").await.unwrap().as_deref(),
        Some(rotated.expose())
    );
}

#[tokio::test]
async fn slaveof_and_back() {
    let master = start_redis(&password_config());
    let replica = start_redis(&password_config());
    let m = NodeClient::connect(master.endpoint_with_password())
        .await
        .unwrap();
    let r = NodeClient::connect(replica.endpoint_with_password())
        .await
        .unwrap();
    m.raw("SET", &["before", "1"]).await.unwrap();

    r.slaveof(&master.addr()).await.unwrap();
    let info = eventually("replica link up", Duration::from_secs(20), || async {
        r.info_replication().await.ok().filter(|i| i.is_link_up())
    })
    .await;
    assert_eq!(info.role, ReplicationRole::Replica);
    assert_eq!(info.master_addr(), Some(master.addr()));
    assert_eq!(info.master_link_status, Some(LinkStatus::Up));

    match r.role().await.unwrap() {
        Role::Replica {
            master: addr,
            state,
            offset,
        } => {
            assert_eq!(addr, master.addr());
            assert_eq!(state, ReplicaState::Connected);
            assert!(offset >= 0);
        }
        other => panic!("expected a replica, got {other:?}"),
    }
    let listed = eventually(
        "master lists the replica online",
        Duration::from_secs(10),
        || async {
            let info = m.info_replication().await.ok()?;
            info.replicas
                .into_iter()
                .find(|c| c.port == replica.port() && c.state.as_deref() == Some("online"))
        },
    )
    .await;
    assert_eq!(listed.ip, "127.0.0.1");
    let Role::Master { replicas, .. } = m.role().await.unwrap() else {
        panic!("master role expected");
    };
    assert_eq!(
        replicas.iter().map(|x| x.port).collect::<Vec<_>>(),
        [replica.port()]
    );

    m.raw("SET", &["after", "2"]).await.unwrap();
    eventually("writes replicated", Duration::from_secs(10), || async {
        (r.dbsize().await.ok()? == 2).then_some(())
    })
    .await;

    r.slaveof_no_one().await.unwrap();
    assert!(r.role().await.unwrap().is_master());
    assert_eq!(
        r.info_replication().await.unwrap().role,
        ReplicationRole::Master
    );
}

#[tokio::test]
async fn fails_fast_when_nothing_listens() {
    let addr = NodeAddr::new("127.0.0.1", free_port());
    let node = NodeClient::with(addr.clone(), None, Timeouts::default());
    let started = Instant::now();
    let err = node.ping().await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(err.is_unreachable());
    assert_eq!(err.addr(), &addr);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn times_out_when_the_server_never_answers() {
    // A socket that accepts connections (kernel backlog) but never replies.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = NodeAddr::new("127.0.0.1", listener.local_addr().unwrap().port());
    let timeouts = Timeouts::new(Duration::from_millis(300), Duration::from_millis(500));
    let started = Instant::now();
    let err = NodeClient::connect(Endpoint::new(addr).with_timeouts(timeouts))
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    drop(listener);
}

#[tokio::test]
async fn command_timeout_then_recovery() {
    let server = start_redis(&["enable-debug-command yes".to_owned()]);
    let timeouts = Timeouts::new(Duration::from_secs(1), Duration::from_millis(400));
    let node = NodeClient::connect(server.endpoint().with_timeouts(timeouts))
        .await
        .unwrap();
    let started = Instant::now();
    let err = node.raw("DEBUG", &["SLEEP", "2"]).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );
    // The next call gets a fresh connection (once the server is done sleeping).
    eventually("server answers again", Duration::from_secs(10), || async {
        node.ping().await.ok()
    })
    .await;
}

#[tokio::test]
async fn reconnects_after_server_restart() {
    let mut server = start_redis(&[]);
    let node = NodeClient::connect(server.endpoint()).await.unwrap();
    node.ping().await.unwrap();
    server.kill();
    let err = node.ping().await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    server.restart();
    node.ping().await.unwrap();
    assert!(
        node.info_server()
            .await
            .unwrap()
            .uptime_in_seconds
            .is_some()
    );
}
