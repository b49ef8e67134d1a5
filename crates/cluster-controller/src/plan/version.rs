//! The topology version and the pushes: a changed layout (or a node that runs a higher version
//! than status knows) moves the version past every version seen; every reachable node that
//! lacks its id or the version gets `SETNODEID` / `SETNODES`.

use kvrocks_api::cluster::ShardStatus;
use kvrocks_client::Topology;

use super::{Action, Input, Wait};
use crate::topo;

/// The version, topology and pushes of a pass.
#[derive(Clone, Debug)]
pub struct Versioned {
    /// The version to record.
    pub version: u64,
    /// The topology of the layout.
    pub topology: Option<Topology>,
    /// [`Action::Push`]es.
    pub pushes: Vec<Action>,
    /// The layout is not a valid topology.
    pub wait: Option<Wait>,
}

/// The version to record and what to push, for `layout` (`changed`: it differs from the layout
/// the nodes run; `adopted`: the version of a newer layout taken over from a node).
pub fn plan(
    input: &Input<'_>,
    layout: &[ShardStatus],
    adopted: Option<u64>,
    changed: bool,
) -> Versioned {
    let mut version = adopted.unwrap_or(input.status_version());
    let max_seen = input
        .observed
        .nodes
        .values()
        .filter_map(|o| o.version)
        .max()
        .unwrap_or(0);
    if changed || max_seen > version {
        version = version.max(max_seen) + 1;
    }
    let mut out = Versioned {
        version,
        topology: None,
        pushes: Vec::new(),
        wait: None,
    };
    if layout.is_empty() {
        return out;
    }
    match topo::to_topology(layout) {
        Ok(topology) => out.topology = Some(topology),
        Err(e) => {
            out.wait = Some(Wait::InvalidTopology(e));
            return out;
        }
    }
    for node in layout.iter().flat_map(|s| &s.nodes) {
        let Some(obs) = input.observed.nodes.get(&node.pod).filter(|o| o.reachable) else {
            continue;
        };
        let fresh = obs.myid.as_ref().map(|id| id.as_str()) != Some(node.node_id.as_str());
        if fresh || obs.version != Some(version) {
            out.pushes.push(Action::Push {
                pod: node.pod.clone(),
                ip: node.ip.clone(),
                node_id: node.node_id.clone(),
                set_id: fresh,
                force: fresh || obs.version.is_some_and(|v| v >= version),
            });
        }
    }
    out
}
