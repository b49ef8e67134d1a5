//! Removing what a testbed left on the host: the real nodes' pods (through the CRI), processes (by
//! recorded pid and start time), shims, cgroups and iptables chains of the nodes, mounts under the
//! root, the bridge, and the root itself. Safe to run on a half-started or long-dead testbed, and twice.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;

use crate::error::{Error, Result};
use crate::network::remove_bridge;
use crate::process::{ProcRecord, run, stop_all, wait_gone};
use crate::state::State;

/// How long an operator started with `testbed spawn` gets to stop after SIGTERM.
const OPERATOR_GRACE: Duration = Duration::from_secs(15);

/// Processes stopped first, with a longer grace.
const STOPPED_FIRST: [&str; 1] = ["kvrocks-operator"];

/// Tears down the testbed at `root`: its processes, namespaces, mounts, bridge, then the directory.
pub fn teardown(root: &Path) -> Result<()> {
    stop(root)?;
    match std::fs::remove_dir_all(root) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove", root, e)),
    }
}

/// Everything [`teardown`] does except removing the directory: the logs stay for a post-mortem.
pub fn stop(root: &Path) -> Result<()> {
    let state = State::load(root)?;
    if let Some(record) = state.as_ref().and_then(|s| s.nodes.as_ref()) {
        // Kubelets first (they would restart what is removed), then every pod through the CRI
        // while containerd still runs.
        let kubelets: Vec<ProcRecord> = state
            .iter()
            .flat_map(|s| s.processes.iter())
            .filter(|p| p.name.starts_with("kubelet-") || p.name == "kube-proxy")
            .cloned()
            .collect();
        for p in &kubelets {
            p.signal(Signal::KILL);
        }
        wait_gone(&kubelets, Duration::from_secs(5));
        crate::nodes::remove_pods(record);
    }
    if let Some(state) = &state {
        let (first, rest): (Vec<ProcRecord>, Vec<ProcRecord>) = state
            .processes
            .iter()
            .cloned()
            .partition(|p| STOPPED_FIRST.contains(&p.name.as_str()));
        stop_all(&first, OPERATOR_GRACE);
        // The control plane holds nothing worth a graceful stop (etcd's store is thrown away), and
        // a graceful one is slow: etcd waits for the apiserver's watch streams to end.
        for p in &rest {
            p.signal(Signal::KILL);
        }
        wait_gone(&rest, Duration::from_secs(5));
    }
    if let Some(record) = state.as_ref().and_then(|s| s.nodes.as_ref()) {
        crate::nodes::after_processes(record);
    }
    remove_empty_operator_cgroups();
    let mounts = mounts_under(root)?;
    unmount(&mounts)?;
    if let Some(network) = state.as_ref().and_then(|s| s.network.as_ref()) {
        remove_bridge(&network.bridge)?;
    }
    let left = mounts_under(root)?;
    if !left.is_empty() {
        return Err(Error::invalid(
            root.display().to_string(),
            format!("still mounted after unmounting: {left:?}"),
        ));
    }
    Ok(())
}

/// Removes the cgroups of operators that are gone (a test binary killed before it removed them);
/// one with a process left is kept (removing a cgroup that holds one fails anyway).
fn remove_empty_operator_cgroups() {
    let Some(root) = crate::operator::cgroup2_root() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let empty = std::fs::read_to_string(entry.path().join("cgroup.procs"))
            .is_ok_and(|procs| procs.trim().is_empty());
        if name.starts_with(crate::operator::CGROUP_PREFIX) && empty {
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// A mount point.
#[derive(Debug)]
struct Mount {
    point: PathBuf,
}

/// Mounts at or below `root` in this mount namespace, deepest first.
fn mounts_under(root: &Path) -> Result<Vec<Mount>> {
    let path = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    let mut mounts: Vec<Mount> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let point = PathBuf::from(unescape(fields.get(4)?));
            point.starts_with(root).then_some(Mount { point })
        })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.point.components().count()));
    Ok(mounts)
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Lazily unmounts each mount (deepest first); a mount already gone is fine.
fn unmount(mounts: &[Mount]) -> Result<()> {
    for m in mounts {
        let point = m.point.to_string_lossy();
        if let Err(e) = run("umount", &["-l", &point]) {
            let still = std::fs::read_to_string("/proc/self/mountinfo")
                .map(|t| t.contains(point.as_ref()))
                .unwrap_or(true);
            if still {
                return Err(e);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
