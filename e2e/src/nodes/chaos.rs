//! Breaking real nodes on purpose: a container's process killed, a pod's network cut, a node
//! stopped (kubelet and containers frozen, pods cut off), and the path between two pods cut.
//! Pods are found through the CRI (crictl) of the node the API server placed them on.

use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal};

use super::{NodeLayout, NodesRecord};
use crate::error::{Error, Result};
use crate::process::{ProcRecord, run};

/// A pod's sandbox on a node.
#[derive(Clone, Debug)]
pub struct Sandbox {
    /// CRI pod sandbox id.
    pub id: String,
    /// The network namespace's path.
    pub netns: PathBuf,
}

fn crictl(record: &NodesRecord, node: &NodeLayout, args: &[&str]) -> Result<String> {
    let config = node.crictl_config();
    let mut all = vec!["--config", config.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    run(&record.crictl.to_string_lossy(), &all).map(|out| out.trim().to_owned())
}

/// The ready sandbox of `namespace/pod` on `node`.
pub fn sandbox(
    record: &NodesRecord,
    node: &NodeLayout,
    namespace: &str,
    pod: &str,
) -> Result<Sandbox> {
    let name = format!("^{pod}$");
    let ids = crictl(
        record,
        node,
        &[
            "pods",
            "--namespace",
            namespace,
            "--name",
            &name,
            "--state",
            "ready",
            "-q",
        ],
    )?;
    let id = ids
        .lines()
        .next()
        .ok_or_else(|| {
            Error::invalid(
                format!("pod {namespace}/{pod}"),
                format!("no ready sandbox on {}", node.name),
            )
        })?
        .to_owned();
    let template = r#"{{range .info.runtimeSpec.linux.namespaces}}{{if eq .type "network"}}{{.path}}{{end}}{{end}}"#;
    let netns = crictl(
        record,
        node,
        &["inspectp", "-o", "go-template", "--template", template, &id],
    )?;
    if netns.is_empty() {
        return Err(Error::invalid(
            format!("pod {namespace}/{pod}"),
            "its sandbox has no network namespace",
        ));
    }
    Ok(Sandbox {
        id,
        netns: PathBuf::from(netns),
    })
}

/// The host pid of a running container of a pod.
pub fn container_pid(
    record: &NodesRecord,
    node: &NodeLayout,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<u32> {
    let sandbox = sandbox(record, node, namespace, pod)?;
    let name = format!("^{container}$");
    let ids = crictl(
        record,
        node,
        &[
            "ps",
            "--pod",
            &sandbox.id,
            "--name",
            &name,
            "--state",
            "running",
            "-q",
        ],
    )?;
    let id = ids.lines().next().ok_or_else(|| {
        Error::invalid(
            format!("container {container} of {namespace}/{pod}"),
            "not running",
        )
    })?;
    let pid = crictl(
        record,
        node,
        &[
            "inspect",
            "-o",
            "go-template",
            "--template",
            "{{.info.pid}}",
            id,
        ],
    )?;
    pid.parse().map_err(|_| {
        Error::invalid(
            format!("container {container} of {namespace}/{pod}"),
            format!("pid {pid:?}"),
        )
    })
}

/// SIGKILLs a process by pid.
pub fn kill(pid: u32) -> Result<()> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| Error::invalid(format!("pid {pid}"), "not a valid pid"))?;
    rustix::process::kill_process(target, Signal::KILL)
        .map_err(|e| Error::invalid(format!("kill {pid}"), e.to_string()))
}

/// The host end of a pod's veth: the link on the testbed's `bridge` whose index is the peer of
/// the pod's eth0 (`eth0@if<index>` as `ip` shows it inside the pod's namespace; sysfs cannot
/// tell, it shows the host's namespace whatever the caller's). Refuses any link not on `bridge`,
/// so a wrong answer can never take a host link down.
pub fn host_veth(netns: &Path, bridge: &str) -> Result<String> {
    let ns = format!("--net={}", netns.display());
    let line = run("nsenter", &[&ns, "ip", "-o", "link", "show", "eth0"])?;
    let peer = line
        .split_whitespace()
        .nth(1)
        .and_then(|name| name.trim_end_matches(':').split_once("@if"))
        .map(|(_, index)| index.to_owned())
        .ok_or_else(|| {
            Error::invalid(
                format!("network namespace {}", netns.display()),
                format!("cannot read eth0's peer from {line:?}"),
            )
        })?;
    let links =
        std::fs::read_dir("/sys/class/net").map_err(|e| Error::io("read", "/sys/class/net", e))?;
    for link in links.flatten() {
        let index = std::fs::read_to_string(link.path().join("ifindex")).unwrap_or_default();
        if index.trim() != peer {
            continue;
        }
        let name = link.file_name().to_string_lossy().into_owned();
        let master = std::fs::read_link(link.path().join("master"))
            .ok()
            .and_then(|m| m.file_name().map(|n| n.to_string_lossy().into_owned()));
        if master.as_deref() != Some(bridge) {
            return Err(Error::invalid(
                format!("host link {name}"),
                format!("is not on the testbed bridge {bridge} (master {master:?})"),
            ));
        }
        return Ok(name);
    }
    Err(Error::invalid(
        format!("network namespace {}", netns.display()),
        format!("no host link has index {peer}"),
    ))
}

/// Sets a host link down or up.
pub fn set_link(link: &str, up: bool) -> Result<()> {
    run("ip", &["link", "set", link, if up { "up" } else { "down" }]).map(drop)
}

/// Drops (or, with `cut == false`, allows again) every packet between the pod whose namespace is
/// `netns` and `peer`, in that pod's own namespace: nothing else is affected.
pub fn cut_path(netns: &Path, peer: &str, cut: bool) -> Result<()> {
    let ns = format!("--net={}", netns.display());
    let op = if cut { "-I" } else { "-D" };
    run(
        "nsenter",
        &[&ns, "iptables", op, "INPUT", "-s", peer, "-j", "DROP"],
    )?;
    run(
        "nsenter",
        &[&ns, "iptables", op, "OUTPUT", "-d", peer, "-j", "DROP"],
    )?;
    Ok(())
}

/// Drops (or, with `cut == false`, allows again) every packet between the pod whose namespace is
/// `netns` and the other pods (`cidr`), in that pod's own namespace: the host (`gateway`, the
/// address the operator, kubelet and the tests' clients come from) still reaches it.
pub fn cut_from_pods(netns: &Path, cidr: &str, gateway: &str, cut: bool) -> Result<()> {
    let ns = format!("--net={}", netns.display());
    // Inserted in this order, the gateway's ACCEPT comes first in each chain.
    let rules: [[&str; 4]; 4] = [
        ["INPUT", "-s", cidr, "DROP"],
        ["OUTPUT", "-d", cidr, "DROP"],
        ["INPUT", "-s", gateway, "ACCEPT"],
        ["OUTPUT", "-d", gateway, "ACCEPT"],
    ];
    for [chain, dir, addr, target] in rules {
        let op = if cut { "-I" } else { "-D" };
        run(
            "nsenter",
            &[&ns, "iptables", op, chain, dir, addr, "-j", target],
        )?;
    }
    Ok(())
}

/// Freezes (or thaws) every process in the node's cgroup root: its containers and shims' children.
pub fn freeze(node: &NodeLayout, frozen: bool) -> Result<()> {
    let file = node.cgroup_dir("freezer").join("freezer.state");
    std::fs::write(&file, if frozen { "FROZEN" } else { "THAWED" })
        .map_err(|e| Error::io("write", &file, e))
}

/// Stops (SIGSTOP) or continues (SIGCONT) a recorded process.
pub fn pause_process(process: &ProcRecord, paused: bool) {
    process.signal(if paused { Signal::STOP } else { Signal::CONT });
}

/// The ready sandboxes on a node.
pub fn sandboxes_on(record: &NodesRecord, node: &NodeLayout) -> Result<Vec<Sandbox>> {
    let listing = crictl(record, node, &["pods", "--state", "ready", "-o", "json"])?;
    let value: serde_json::Value = serde_json::from_str(&listing)
        .map_err(|e| Error::invalid("crictl pods -o json", e.to_string()))?;
    let mut out = Vec::new();
    for item in value["items"].as_array().into_iter().flatten() {
        let (Some(ns), Some(name)) = (
            item["metadata"]["namespace"].as_str(),
            item["metadata"]["name"].as_str(),
        ) else {
            continue;
        };
        out.push(sandbox(record, node, ns, name)?);
    }
    Ok(out)
}

/// SIGKILLs every process in a cgroup tree (`cgroup.procs` of each directory).
pub fn kill_cgroup(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_cgroup(&entry.path());
        }
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
        let _ = kill(pid);
    }
}
