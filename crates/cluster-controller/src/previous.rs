//! A cluster created over kept claims (a KvrocksCluster deleted with its claims retained, then
//! created again): the nodes' volumes hold data laid out by the topology they last ran. Every
//! node starts as a stranger and prints the topology it persisted to its log (see
//! `builders::kvrocks::start_script`); the first layout takes each shard's master and slots from
//! the newest of those topologies instead of an even split with ordinal 0 as master, which would
//! route keys to shards that do not hold them, and could make an empty or lagging node a master.

use std::collections::BTreeMap;

use kvrocks_client::{NodeId, Topology, TopologyRole};
use kvrocks_operator_core::builders::kvrocks::{PREVIOUS_TOPOLOGY_BEGIN, PREVIOUS_TOPOLOGY_END};

use crate::topo::{PlacedPod, Seed};

/// The topology a node persisted, as its log printed it.
#[derive(Clone, Debug, PartialEq)]
pub struct Previous {
    /// Its topology version.
    pub version: u64,
    /// The node's own id in it.
    pub myid: NodeId,
    /// The topology.
    pub topology: Topology,
}

/// Reads the last block a node's log printed at a start: None when it printed none (a new
/// volume), an error when the block is not a topology.
pub fn parse_log(log: &str) -> Option<Result<Previous, String>> {
    let start = log.rfind(PREVIOUS_TOPOLOGY_BEGIN)? + PREVIOUS_TOPOLOGY_BEGIN.len();
    let Some(len) = log[start..].find(PREVIOUS_TOPOLOGY_END) else {
        return Some(Err(
            "the persisted topology in its log is cut short".to_owned()
        ));
    };
    Some(parse_nodes_conf(&log[start..start + len]))
}

/// kvrocks' `nodes.conf`: `version <n>`, `id <own id>`, then `node <SETNODES line>` per node.
fn parse_nodes_conf(text: &str) -> Result<Previous, String> {
    let (mut version, mut myid, mut lines) = (None, None, Vec::new());
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "version" => version = rest.trim().parse::<u64>().ok(),
            "id" => myid = NodeId::new(rest.trim().to_owned()).ok(),
            "node" => lines.push(rest),
            _ => {
                return Err(format!(
                    "unexpected line {line:?} in its persisted topology"
                ));
            }
        }
    }
    let version = version.ok_or("its persisted topology has no version")?;
    let myid = myid.ok_or("its persisted topology has no node id")?;
    let topology = Topology::parse_setnodes(&lines.join("\n"))
        .map_err(|e| format!("its persisted topology: {e}"))?;
    Ok(Previous {
        version,
        myid,
        topology,
    })
}

/// The seeds of the first layout from what the pods persisted (`previous`, by pod): per shard
/// (`by_shard`, the pods placed in each), the pod the newest topology made master, with its
/// slots; a shard none of whose pods was a master there starts empty, ordinal 0 its master.
/// None when no pod persisted anything; an error, naming what does not fit, when the newest
/// topology cannot be laid on these pods (a master whose volume is not among them, two in one
/// shard): nothing is pushed then, so nothing the volumes hold is routed away.
pub fn seeds(
    by_shard: &[Vec<PlacedPod>],
    previous: &BTreeMap<String, Previous>,
) -> Result<Option<Vec<Seed>>, String> {
    let Some(newest) = previous.values().max_by_key(|p| p.version) else {
        return Ok(None);
    };
    let pod_of: BTreeMap<&NodeId, &str> = previous
        .iter()
        .map(|(pod, p)| (&p.myid, pod.as_str()))
        .collect();
    let shard_of = |pod: &str| {
        by_shard
            .iter()
            .position(|pods| pods.iter().any(|p| p.pod == pod))
    };
    let mut seeds: Vec<Option<Seed>> = vec![None; by_shard.len()];
    for node in newest.topology.nodes() {
        let TopologyRole::Master { slots } = &node.role else {
            continue;
        };
        let held = format!(
            "the volumes' topology (version {}) has master {} at {} with slots [{}]",
            newest.version,
            node.id,
            node.addr,
            kvrocks_client::format_ranges(slots)
        );
        let Some(pod) = pod_of.get(&node.id) else {
            return Err(format!(
                "{held}, but no pod of this cluster holds its volume"
            ));
        };
        let Some(shard) = shard_of(pod) else {
            return Err(format!(
                "{held}: its volume is {pod}'s, a pod outside spec.shards"
            ));
        };
        if let Some(other) = &seeds[shard] {
            return Err(format!(
                "{held} on {pod}, and {} too, in the same shard {shard}",
                other.master
            ));
        }
        seeds[shard] = Some(Seed {
            master: (*pod).to_owned(),
            slots: slots.clone(),
        });
    }
    by_shard
        .iter()
        .zip(seeds)
        .map(|(pods, seed)| match seed {
            Some(seed) => Ok(seed),
            None => pods
                .iter()
                .find(|p| p.ordinal == 0)
                .map(|p| Seed {
                    master: p.pod.clone(),
                    slots: Vec::new(),
                })
                .ok_or_else(|| "a shard has no pod of ordinal 0".to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789012345678901234567890123456789";
    const B: &str = "abcdefabcdefabcdefabcdefabcdefabcdefabcd";
    const C: &str = "1111111111111111111111111111111111111111";

    /// What kvrocks 2.10.1 writes (two spaces after `-`, as seen).
    fn nodes_conf(version: u64, myid: &str) -> String {
        format!(
            "version {version}\nid {myid}\n\
             node {C} 10.0.0.3 6379 slave {A} \n\
             node {B} 10.0.0.2 6379 master -  101-199\n\
             node {A} 10.0.0.1 6379 master -  0-100 200 300-16383\n"
        )
    }

    fn log(block: &str) -> String {
        format!(
            "starting\n{PREVIOUS_TOPOLOGY_BEGIN}\n{block}\n{PREVIOUS_TOPOLOGY_END}\nkvrocks says hello\n"
        )
    }

    fn placed(shard: u32, ordinal: u32) -> PlacedPod {
        PlacedPod {
            shard,
            ordinal,
            pod: format!("c-{shard}-{ordinal}"),
            ip: Some(format!("10.1.{shard}.{ordinal}")),
        }
    }

    #[test]
    fn reads_the_last_block_of_a_log() {
        assert_eq!(parse_log("kvrocks says hello\n"), None);
        let two = format!("{}{}", log(&nodes_conf(3, A)), log(&nodes_conf(5, B)));
        let previous = parse_log(&two).unwrap().unwrap();
        assert_eq!((previous.version, previous.myid.as_str()), (5, B));
        assert_eq!(previous.topology.nodes().len(), 3);
        assert!(
            parse_log(&format!("{PREVIOUS_TOPOLOGY_BEGIN}\nversion 1\n"))
                .unwrap()
                .is_err()
        );
        assert!(
            parse_log(&log("version 1\nid nonsense\n"))
                .unwrap()
                .is_err()
        );
        assert!(parse_log(&log("garbage here\n")).unwrap().is_err());
    }

    #[test]
    fn each_shard_gets_the_master_and_slots_its_volumes_held() {
        // Shard 0's master was ordinal 1 (a failover), shard 1's ordinal 0; replica c-0-0.
        let by_shard = vec![
            vec![placed(0, 0), placed(0, 1)],
            vec![placed(1, 0), placed(1, 1)],
            vec![placed(2, 0)],
        ];
        let previous: BTreeMap<String, Previous> = [("c-0-1", A), ("c-1-0", B), ("c-0-0", C)]
            .into_iter()
            .map(|(pod, id)| {
                let p = parse_log(&log(&nodes_conf(5, id))).unwrap().unwrap();
                (pod.to_owned(), p)
            })
            .collect();
        let seeds = seeds(&by_shard, &previous).unwrap().unwrap();
        assert_eq!(seeds[0].master, "c-0-1");
        assert_eq!(
            kvrocks_client::format_ranges(&seeds[0].slots),
            "0-100 200 300-16383"
        );
        assert_eq!(seeds[1].master, "c-1-0");
        assert_eq!(kvrocks_client::format_ranges(&seeds[1].slots), "101-199");
        // A shard the volumes knew nothing of starts empty.
        assert_eq!(
            (seeds[2].master.as_str(), seeds[2].slots.len()),
            ("c-2-0", 0)
        );
        // Nothing persisted: the first split as usual.
        assert_eq!(super::seeds(&by_shard, &BTreeMap::new()), Ok(None));
    }

    #[test]
    fn a_topology_that_does_not_fit_the_pods_is_refused() {
        let one_shard = vec![vec![placed(0, 0), placed(0, 1)]];
        let previous: BTreeMap<String, Previous> = [("c-0-0", A), ("c-0-1", B)]
            .into_iter()
            .map(|(pod, id)| {
                let p = parse_log(&log(&nodes_conf(5, id))).unwrap().unwrap();
                (pod.to_owned(), p)
            })
            .collect();
        let err = seeds(&one_shard, &previous).unwrap_err();
        assert!(err.contains("same shard 0"), "{err}");
        // Shard 1's master volume is not here (spec.shards shrank, or its claim was lost).
        let only_a: BTreeMap<String, Previous> = previous
            .into_iter()
            .filter(|(pod, _)| pod == "c-0-0")
            .collect();
        let err = seeds(&one_shard, &only_a).unwrap_err();
        assert!(
            err.contains("no pod of this cluster holds its volume"),
            "{err}"
        );
    }
}
