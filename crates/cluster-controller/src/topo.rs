//! The cluster's topology as the operator keeps it (in status) and as it is pushed to kvrocks:
//! node identities, the first layout, following pods that moved, adding replicas, promoting a
//! replica. Pure functions.

use kvrocks_api::labels::{Role, ordinal};

use kvrocks_api::cluster::{ClusterNodeStatus, ShardStatus};
use kvrocks_client::{NodeAddr, NodeId, SlotRange, Topology, TopologyNode};

/// The stable 40-hex-digit node id of a pod: derived from the resource's UID and the pod name,
/// so it survives a lost status and never collides between clusters.
pub fn node_id(cr_uid: &str, pod: &str) -> NodeId {
    let mut hex = String::with_capacity(48);
    for seed in 0u64..3 {
        let hash = format!("{cr_uid}/{pod}").bytes().fold(
            0xcbf2_9ce4_8422_2325_u64 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3),
        );
        hex.push_str(&format!("{hash:016x}"));
    }
    hex.truncate(kvrocks_client::NODE_ID_LEN);
    // 40 lowercase hex digits always make a valid id.
    NodeId::new(hex).unwrap_or_else(|_| NodeId::random())
}

/// A pod the layout can place: its shard, name, and current IP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlacedPod {
    /// Shard index.
    pub shard: u32,
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Pod name.
    pub pod: String,
    /// Current IP (None while it has none).
    pub ip: Option<String>,
}

/// Slot strings of status (`"0-5460"`, `"7"`) to ranges; malformed ones are skipped.
pub fn parse_slots(slots: &[String]) -> Vec<SlotRange> {
    SlotRange::normalize(slots.iter().filter_map(|s| s.parse::<SlotRange>().ok()))
}

/// Ranges to status strings (a single slot is `"5"`, never `"5-5"`).
pub fn render_slots(ranges: &[SlotRange]) -> Vec<String> {
    ranges.iter().map(SlotRange::to_string).collect()
}

/// The first layout: shard `i` gets the i-th even share of the slots, ordinal 0 is its master,
/// the others replicate it. None until every pod has an IP.
pub fn initial(cr_uid: &str, shards: &[Vec<PlacedPod>], port: u16) -> Option<Vec<ShardStatus>> {
    let split = SlotRange::split_evenly(u16::try_from(shards.len()).ok()?);
    let seeds = shards
        .iter()
        .enumerate()
        .map(|(index, pods)| {
            Some(Seed {
                master: pods.iter().find(|p| p.ordinal == 0)?.pod.clone(),
                slots: split.get(index).copied().into_iter().collect(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    seeded(cr_uid, shards, port, &seeds)
}

/// What the first layout gives one shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    /// The master's pod.
    pub master: String,
    /// Its slots.
    pub slots: Vec<SlotRange>,
}

/// The first layout from one seed per shard (its master's pod and slots); every other pod of
/// the shard a replica of that master.
pub fn seeded(
    cr_uid: &str,
    shards: &[Vec<PlacedPod>],
    port: u16,
    seeds: &[Seed],
) -> Option<Vec<ShardStatus>> {
    let mut out = Vec::new();
    for (index, pods) in shards.iter().enumerate() {
        let seed = seeds.get(index)?;
        let master = pods.iter().find(|p| p.pod == seed.master)?;
        let master_id = node_id(cr_uid, &master.pod);
        let mut nodes = Vec::new();
        for pod in pods {
            let id = node_id(cr_uid, &pod.pod);
            let is_master = pod.pod == master.pod;
            nodes.push(ClusterNodeStatus {
                pod: pod.pod.clone(),
                ip: pod.ip.clone()?,
                port: i32::from(port),
                node_id: id.as_str().to_owned(),
                role: if is_master {
                    Role::Master
                } else {
                    Role::Replica
                },
                master_id: (!is_master).then(|| master_id.as_str().to_owned()),
            });
        }
        out.push(ShardStatus {
            index: i32::try_from(index).ok()?,
            slots: seed.slots.iter().map(ToString::to_string).collect(),
            nodes,
            master_unreachable_since: None,
            last_failover: None,
        });
    }
    Some(out)
}

/// Follows pods that got a new IP, adds pods that joined a shard as replicas of its master, and
/// drops pods beyond `keep` ordinals per shard (never a master). Returns whether anything changed.
pub fn refresh(
    shards: &mut [ShardStatus],
    cr_uid: &str,
    pods: &[PlacedPod],
    keep_per_shard: u32,
    port: u16,
) -> bool {
    let mut changed = false;
    for shard in shards.iter_mut() {
        let index = u32::try_from(shard.index).unwrap_or(u32::MAX);
        let master_id = shard
            .nodes
            .iter()
            .find(|n| n.role == Role::Master)
            .map(|n| n.node_id.clone());
        for pod in pods.iter().filter(|p| p.shard == index) {
            let Some(ip) = &pod.ip else { continue };
            match shard.nodes.iter_mut().find(|n| n.pod == pod.pod) {
                Some(node) if &node.ip != ip => {
                    node.ip = ip.clone();
                    changed = true;
                }
                Some(_) => {}
                None if pod.ordinal < keep_per_shard => {
                    if let Some(master_id) = &master_id {
                        shard.nodes.push(ClusterNodeStatus {
                            pod: pod.pod.clone(),
                            ip: ip.clone(),
                            port: i32::from(port),
                            node_id: node_id(cr_uid, &pod.pod).as_str().to_owned(),
                            role: Role::Replica,
                            master_id: Some(master_id.clone()),
                        });
                        changed = true;
                    }
                }
                None => {}
            }
        }
        let before = shard.nodes.len();
        shard.nodes.retain(|n| {
            n.role == Role::Master || ordinal(&n.pod).is_none_or(|o| o < keep_per_shard)
        });
        changed |= shard.nodes.len() != before;
        shard.nodes.sort_by_key(|n| ordinal(&n.pod));
    }
    changed
}

/// Makes `new_master` (a replica of the shard) the master: it takes the slots' ownership (slots
/// belong to the shard, so they stay), every other node replicates it. False when it is not in
/// the shard.
pub fn promote(shard: &mut ShardStatus, new_master: &str) -> bool {
    let Some(id) = shard
        .nodes
        .iter()
        .find(|n| n.pod == new_master)
        .map(|n| n.node_id.clone())
    else {
        return false;
    };
    for node in &mut shard.nodes {
        if node.pod == new_master {
            node.role = Role::Master;
            node.master_id = None;
        } else {
            node.role = Role::Replica;
            node.master_id = Some(id.clone());
        }
    }
    true
}

/// The topology kvrocks is given (validated: each slot once, replicas of known masters).
pub fn to_topology(shards: &[ShardStatus]) -> Result<Topology, String> {
    let mut nodes = Vec::new();
    for shard in shards {
        for node in &shard.nodes {
            let id = NodeId::new(node.node_id.clone()).map_err(|e| e.to_string())?;
            let port = u16::try_from(node.port).map_err(|_| format!("bad port {}", node.port))?;
            let addr = NodeAddr::new(node.ip.clone(), port);
            if node.role == Role::Master {
                nodes.push(TopologyNode::master(id, addr, parse_slots(&shard.slots)));
            } else {
                let master = node
                    .master_id
                    .clone()
                    .ok_or_else(|| format!("replica {} has no master", node.pod))?;
                let master = NodeId::new(master).map_err(|e| e.to_string())?;
                nodes.push(TopologyNode::replica(id, addr, master));
            }
        }
    }
    Topology::new(nodes).map_err(|e| e.to_string())
}

/// The master node of a shard.
pub fn master_of(shard: &ShardStatus) -> Option<&ClusterNodeStatus> {
    shard.nodes.iter().find(|n| n.role == Role::Master)
}

/// Takes the layout a node already runs at a higher version than status (the operator pushed
/// it and stopped before recording it): masters, replicas and slots follow `topology`. Only a
/// consistent one is taken: every node of it known in `shards`, every known node in it.
/// Returns whether the layout was adopted.
pub fn adopt(shards: &mut [ShardStatus], topology: &Topology) -> bool {
    let known = shards.iter().flat_map(|s| &s.nodes).count();
    if topology.nodes().len() != known {
        return false;
    }
    let mut adopted: Vec<ShardStatus> = shards.to_vec();
    for shard in &mut adopted {
        let mut slots: Vec<SlotRange> = Vec::new();
        for node in &mut shard.nodes {
            let Some(t) = topology
                .nodes()
                .iter()
                .find(|t| t.id.as_str() == node.node_id)
            else {
                return false;
            };
            match &t.role {
                kvrocks_client::TopologyRole::Master { slots: owned } => {
                    node.role = Role::Master;
                    node.master_id = None;
                    slots.extend(owned.iter().copied());
                }
                kvrocks_client::TopologyRole::Replica { master_id } => {
                    node.role = Role::Replica;
                    node.master_id = Some(master_id.as_str().to_owned());
                }
            }
        }
        shard.slots = render_slots(&SlotRange::normalize(slots));
    }
    // A replica must follow a master of its own shard.
    let consistent = adopted.iter().all(|s| {
        let masters: Vec<&str> = s
            .nodes
            .iter()
            .filter(|n| n.role == Role::Master)
            .map(|n| n.node_id.as_str())
            .collect();
        masters.len() == 1
            && s.nodes
                .iter()
                .filter_map(|n| n.master_id.as_deref())
                .all(|m| masters.contains(&m))
    });
    if !consistent || to_topology(&adopted).is_err() {
        return false;
    }
    shards.clone_from_slice(&adopted);
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn pods(shards: u32, per: u32) -> Vec<Vec<PlacedPod>> {
        (0..shards)
            .map(|s| {
                (0..per)
                    .map(|o| PlacedPod {
                        shard: s,
                        ordinal: o,
                        pod: format!("c-{s}-{o}"),
                        ip: Some(format!("10.0.{s}.{o}")),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn ids_are_stable_valid_and_distinct() {
        let a = node_id("uid-1", "c-0-0");
        assert_eq!(a, node_id("uid-1", "c-0-0"));
        assert_eq!(a.as_str().len(), 40);
        assert_ne!(a, node_id("uid-1", "c-0-1"));
        assert_ne!(a, node_id("uid-2", "c-0-0"));
    }

    #[test]
    fn the_first_layout_covers_every_slot_once_with_ordinal_0_masters() {
        let layout = initial("u", &pods(3, 2), 6379).unwrap();
        let topology = to_topology(&layout).unwrap();
        assert_eq!(topology.assigned_slots(), 16384);
        assert_eq!(layout[0].slots, vec!["0-5461"]);
        assert!(
            layout
                .iter()
                .all(|s| master_of(s).unwrap().pod.ends_with("-0"))
        );
        assert!(!topology.to_setnodes().contains("5461-5461"));
        let mut missing_ip = pods(2, 1);
        missing_ip[1][0].ip = None;
        assert!(initial("u", &missing_ip, 6379).is_none());
    }

    #[test]
    fn promotion_moves_the_master_role_and_keeps_the_slots() {
        let mut layout = initial("u", &pods(1, 3), 6379).unwrap();
        assert!(promote(&mut layout[0], "c-0-2"));
        let master = master_of(&layout[0]).unwrap();
        assert_eq!(master.pod, "c-0-2");
        assert!(
            layout[0]
                .nodes
                .iter()
                .filter(|n| n.role == Role::Replica)
                .all(|n| n.master_id.as_deref() == Some(master.node_id.as_str()))
        );
        assert_eq!(to_topology(&layout).unwrap().assigned_slots(), 16384);
        assert!(!promote(&mut layout[0], "nope"));
    }

    #[test]
    fn refresh_follows_ips_adds_replicas_and_never_drops_a_master() {
        let mut layout = initial("u", &pods(1, 2), 6379).unwrap();
        let mut now: Vec<PlacedPod> = pods(1, 3).into_iter().flatten().collect();
        now[0].ip = Some("10.9.9.9".into());
        assert!(refresh(&mut layout, "u", &now, 3, 6379));
        assert_eq!(layout[0].nodes.len(), 3);
        assert_eq!(master_of(&layout[0]).unwrap().ip, "10.9.9.9");
        assert!(!refresh(&mut layout, "u", &now, 3, 6379));
        // Shrinking to 1 keeps the master even when it is not ordinal 0.
        promote(&mut layout[0], "c-0-2");
        assert!(refresh(&mut layout, "u", &now, 1, 6379));
        let names: Vec<&str> = layout[0].nodes.iter().map(|n| n.pod.as_str()).collect();
        assert_eq!(names, ["c-0-0", "c-0-2"]);
    }

    #[test]
    fn a_newer_layout_a_node_runs_is_adopted_when_consistent() {
        let mut status = initial("u", &pods(2, 2), 6379).unwrap();
        let mut newer = status.clone();
        promote(&mut newer[1], "c-1-1");
        newer[0].slots = vec!["0-99".into(), "8192-16383".into()];
        newer[1].slots = vec!["100-8191".into()];
        let topology = to_topology(&newer).unwrap();
        assert!(adopt(&mut status, &topology));
        assert_eq!(status, newer);
        // A topology with a node the status does not know is refused.
        let other = initial("other-uid", &pods(2, 2), 6379).unwrap();
        let mut unchanged = initial("u", &pods(2, 2), 6379).unwrap();
        assert!(!adopt(&mut unchanged, &to_topology(&other).unwrap()));
        assert_eq!(unchanged, initial("u", &pods(2, 2), 6379).unwrap());
    }
}
