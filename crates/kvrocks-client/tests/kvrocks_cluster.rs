//! Cluster commands against real kvrocks processes; runs only when `KVROCKS_BIN` points at a binary.
//!
//! Without it each test prints `SKIPPED kvrocks cluster tests ...` to stderr and returns.

mod support;

use std::time::Duration;

use kvrocks_client::{
    ClusterRole, MigrationState, NodeClient, NodeId, ReplicationRole, Role, SlotRange, Topology,
    TopologyNode,
};
use support::{eventually, kvrocks_bin_or_skip, start_kvrocks_cluster_node};

/// A key hashing to a slot below 8192 (owned by the first master), and that slot.
fn key_in_first_half() -> Option<(String, u16)> {
    (0..10_000)
        .map(|i| format!("{{tag{i}}}"))
        .map(|tag| {
            let slot = fred::util::redis_keyslot(tag.as_bytes());
            (tag, slot)
        })
        .find(|(_, slot)| *slot < 8192)
}

#[tokio::test]
async fn cluster_topology_migration_and_promotion() {
    let Some(bin) = kvrocks_bin_or_skip("cluster_topology_migration_and_promotion") else {
        return;
    };
    let procs = [
        start_kvrocks_cluster_node(&bin),
        start_kvrocks_cluster_node(&bin),
        start_kvrocks_cluster_node(&bin),
    ];
    let nodes: Vec<NodeClient> = procs
        .iter()
        .map(|p| NodeClient::new(p.endpoint_with_password()))
        .collect();
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let ids: Vec<NodeId> = (0..3).map(|_| NodeId::random()).collect();
    let (a_id, b_id, c_id) = (&ids[0], &ids[1], &ids[2]);

    // Before any topology: no version, no id, CLUSTER INFO refused.
    assert_eq!(a.clusterx_version().await.unwrap(), None);
    assert_eq!(a.clusterx_myid().await.unwrap(), None);
    let err = a.cluster_info().await.unwrap_err();
    assert!(err.is_cluster_not_initialized(), "{err:?}");

    for (node, id) in nodes.iter().zip(&ids) {
        node.clusterx_setnodeid(id).await.unwrap();
        assert_eq!(node.clusterx_myid().await.unwrap().as_ref(), Some(id));
    }

    let first_half = SlotRange::new(0, 8191).unwrap();
    let second_half = SlotRange::new(8192, 16383).unwrap();
    let v1 = Topology::new([
        TopologyNode::master(a_id.clone(), procs[0].addr(), [first_half]),
        TopologyNode::master(b_id.clone(), procs[1].addr(), [second_half]),
        TopologyNode::replica(c_id.clone(), procs[2].addr(), a_id.clone()),
    ])
    .unwrap();
    for node in &nodes {
        node.clusterx_setnodes(&v1, 1).await.unwrap();
        assert_eq!(node.clusterx_version().await.unwrap(), Some(1));
    }
    // Equal version: a no-op; lower version: refused.
    a.clusterx_setnodes(&v1, 1).await.unwrap();
    let err = a.clusterx_setnodes(&v1, 0).await.unwrap_err();
    assert!(err.is_invalid_cluster_version(), "{err:?}");
    assert_eq!(err.command(), "CLUSTERX SETNODES");

    let view = a.cluster_nodes().await.unwrap();
    assert_eq!(view.nodes.len(), 3);
    let me = view.myself().expect("a myself line");
    assert_eq!(&me.id, a_id);
    assert_eq!(me.addr, procs[0].addr());
    assert_eq!(
        me.cport,
        u16::try_from(u32::from(procs[0].port()) + 10000).ok()
    );
    assert_eq!(me.role, ClusterRole::Master);
    assert_eq!(me.slots, vec![first_half]);
    assert_eq!(me.config_epoch, 1);
    let replica_line = view.get(c_id).unwrap();
    assert_eq!(replica_line.role, ClusterRole::Replica);
    assert_eq!(replica_line.master_id.as_ref(), Some(a_id));
    assert_eq!(view.owner_of(9000).map(|n| &n.id), Some(b_id));
    assert_eq!(Topology::from_cluster_nodes(&view).unwrap(), v1);

    let info = a.cluster_info().await.unwrap();
    assert_eq!(info.state, "ok");
    assert_eq!(info.slots_assigned, 16384);
    assert_eq!(info.known_nodes, 3);
    assert_eq!(info.size, 2);
    assert_eq!(info.current_epoch, 1);
    assert_eq!(info.my_epoch, 1);
    assert_eq!(info.migration_state(), MigrationState::None);

    // SETNODES made C a replica of A.
    eventually("C replicates A", Duration::from_secs(30), || async {
        c.info_replication().await.ok().filter(|i| i.is_link_up())
    })
    .await;
    assert_eq!(
        c.role().await.unwrap().master_addr(),
        Some(&procs[0].addr())
    );

    // Migrate one slot with keys from A to B, then hand it over with SETSLOT (version + 1).
    let (tag, slot) = key_in_first_half().unwrap();
    for i in 0..20 {
        a.raw("SET", &[&format!("{tag}:{i}"), "value"])
            .await
            .unwrap();
    }
    let moved = SlotRange::single(slot).unwrap();
    a.clusterx_migrate(moved, b_id).await.unwrap();
    let done = eventually("migration finished", Duration::from_secs(60), || async {
        let info = a.cluster_info().await.ok()?;
        match info.migration_state() {
            MigrationState::Success => Some(info),
            MigrationState::Fail => panic!("migration failed: {info:?}"),
            _ => None,
        }
    })
    .await;
    let migration = done.migration.unwrap();
    assert_eq!(migration.slots, Some(moved));
    assert_eq!(migration.destination_node, b_id.as_str());
    // Before any new topology, A already sends the migrated slot's requests to B, and serves
    // every other slot it owns.
    assert_eq!(a.redirect_for(slot).await.unwrap(), Some(procs[1].addr()));
    let other = (0..8192).find(|s| *s != slot).unwrap();
    assert_eq!(a.redirect_for(other).await.unwrap(), None);

    for node in &nodes {
        node.clusterx_setslot(moved, b_id, 2).await.unwrap();
        assert_eq!(node.clusterx_version().await.unwrap(), Some(2));
    }
    let err = a.clusterx_setslot(moved, b_id, 2).await.unwrap_err();
    assert!(
        err.is_invalid_cluster_version(),
        "SETSLOT needs exactly version + 1: {err:?}"
    );

    let view = b.cluster_nodes().await.unwrap();
    assert_eq!(view.owner_of(slot).map(|n| &n.id), Some(b_id));
    // After it, A still reports its last migration as a success, whatever came since.
    assert_eq!(
        a.cluster_info().await.unwrap().migration_state(),
        MigrationState::Success
    );
    let a_slots = SlotRange::from_slots((0..8192).filter(|s| *s != slot));
    assert_eq!(view.get(a_id).unwrap().slots, a_slots);
    let value = b.raw("GET", &[&format!("{tag}:7")]).await.unwrap();
    assert_eq!(
        kvrocks_client::parse::value_text(&value).as_deref(),
        Some("value")
    );
    eventually(
        "DBSIZE on B counts the moved keys",
        Duration::from_secs(30),
        || async {
            let _ = b.dbsize_scan().await;
            (b.dbsize().await.ok()? == 20).then_some(())
        },
    )
    .await;

    // Promote C in place of A (what the operator does when A's master dies), version 3.
    let b_slots: Vec<SlotRange> = [second_half, moved].into();
    let v3 = Topology::new([
        TopologyNode::master(c_id.clone(), procs[2].addr(), a_slots),
        TopologyNode::master(b_id.clone(), procs[1].addr(), b_slots),
        TopologyNode::replica(a_id.clone(), procs[0].addr(), c_id.clone()),
    ])
    .unwrap();
    for node in &nodes {
        node.clusterx_setnodes(&v3, 3).await.unwrap();
    }
    eventually("A replicates C", Duration::from_secs(30), || async {
        let info = a.info_replication().await.ok()?;
        (info.is_link_up() && info.master_addr() == Some(procs[2].addr())).then_some(())
    })
    .await;
    assert!(c.role().await.unwrap().is_master());
    let view = c.cluster_nodes().await.unwrap();
    assert_eq!(
        view.myself().map(|n| n.role.clone()),
        Some(ClusterRole::Master)
    );
    assert_eq!(Topology::from_cluster_nodes(&view).unwrap(), v3);

    // `force` replaces the topology even with a lower version.
    b.clusterx_setnodes_force(&v3, 1).await.unwrap();
    assert_eq!(b.clusterx_version().await.unwrap(), Some(1));
}

#[tokio::test]
async fn kvrocks_node_commands() {
    let Some(bin) = kvrocks_bin_or_skip("kvrocks_node_commands") else {
        return;
    };
    let proc = start_kvrocks_cluster_node(&bin);
    let node = NodeClient::connect(proc.endpoint_with_password())
        .await
        .unwrap();
    let server = node.info_server().await.unwrap();
    assert!(server.is_kvrocks(), "{server:?}");
    assert_eq!(server.mode.as_deref(), Some("cluster"));
    assert_eq!(server.tcp_port, Some(proc.port()));

    let repl = node.info_replication().await.unwrap();
    assert_eq!(repl.role, ReplicationRole::Master);
    assert!(matches!(node.role().await.unwrap(), Role::Master { .. }));

    node.dbsize_scan().await.unwrap();
    eventually("DBSIZE SCAN completes", Duration::from_secs(10), || async {
        node.info_keyspace().await.ok()?.scanned.filter(|s| *s)
    })
    .await;
    assert_eq!(node.dbsize().await.unwrap(), 0);

    node.config_set("migrate-speed", "4096").await.unwrap();
    assert_eq!(
        node.config_get_one("migrate-speed")
            .await
            .unwrap()
            .as_deref(),
        Some("4096")
    );

    // kvrocks refuses SLAVEOF in cluster mode: the operator must promote with SETNODES.
    let err = node
        .slaveof(&kvrocks_client::NodeAddr::new("127.0.0.1", 1))
        .await
        .unwrap_err();
    assert!(
        err.server_message()
            .is_some_and(|m| m.contains("cluster mode")),
        "{err:?}"
    );
}
