//! Pod networking on the host: the bridge, one network namespace per pod with a veth whose host
//! end sits on the bridge, and cutting or restoring that veth.
//!
//! Names carry a 4-hex-digit tag derived from the agent's root, so `cleanup` of one root never
//! touches another testbed's pods: namespaces are `kvpod-<tag>-<ns>.<name>-<uid8>`, host veths
//! `kvp<tag><uid8>` (15 characters, the kernel's limit).

use std::net::Ipv4Addr;
use std::path::Path;

use super::cmd::{run, tool};
use super::error::AgentResult;
use super::ipam::Cidr;

/// Longest network namespace name we make (a file name under /run/netns).
const MAX_NETNS: usize = 200;

/// The host-side names of one pod's network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetNames {
    /// Network namespace name (`ip netns`).
    pub netns: String,
    /// Host end of the veth pair, on the bridge.
    pub host_veth: String,
    /// Pod end, before it is moved into the namespace and renamed `eth0`.
    pub peer_veth: String,
}

/// The 4-hex-digit tag of an agent root.
pub fn root_tag(root: &Path) -> String {
    let hash = root
        .to_string_lossy()
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    format!("{:04x}", (hash ^ (hash >> 16)) & 0xffff)
}

/// Prefix of every namespace made under the root with this tag.
pub fn netns_prefix(tag: &str) -> String {
    format!("kvpod-{tag}-")
}

/// Prefix of every host veth made under the root with this tag.
pub fn veth_prefix(tag: &str) -> String {
    format!("kvp{tag}")
}

/// The names for pod `namespace/name` with `uid`.
pub fn names(tag: &str, namespace: &str, name: &str, uid: &str) -> NetNames {
    let short: String = uid
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    let mut netns = format!("{}{namespace}.{name}", netns_prefix(tag));
    netns.truncate(MAX_NETNS);
    netns.push('-');
    netns.push_str(&short);
    NetNames {
        netns,
        host_veth: format!("{}{short}", veth_prefix(tag)),
        peer_veth: format!("kvq{tag}{short}"),
    }
}

/// Whether a network link of that name exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Creates the bridge with the gateway address unless it exists; true when it was created.
pub async fn ensure_bridge(bridge: &str, cidr: Cidr) -> AgentResult<bool> {
    let ip = tool("ip");
    let created = if link_exists(bridge) {
        false
    } else {
        run(&ip, &["link", "add", "name", bridge, "type", "bridge"]).await?;
        true
    };
    let addr = format!("{}/{}", cidr.gateway(), cidr.prefix);
    let shown = run(&ip, &["-4", "-o", "addr", "show", "dev", bridge]).await?;
    if !shown.contains(&addr) {
        run(&ip, &["addr", "add", &addr, "dev", bridge]).await?;
    }
    run(&ip, &["link", "set", bridge, "up"]).await?;
    Ok(created)
}

/// Creates the pod's namespace and veth, gives it `ip`, loopback up, default route via the
/// gateway. Leftovers of the same names are removed first.
pub async fn create_sandbox(
    names: &NetNames,
    bridge: &str,
    cidr: Cidr,
    ip_addr: Ipv4Addr,
) -> AgentResult<()> {
    delete_sandbox(names).await;
    let ip = tool("ip");
    let ns = names.netns.as_str();
    let addr = format!("{ip_addr}/{}", cidr.prefix);
    let gateway = cidr.gateway().to_string();
    run(&ip, &["netns", "add", ns]).await?;
    run(
        &ip,
        &[
            "link",
            "add",
            &names.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            &names.peer_veth,
        ],
    )
    .await?;
    run(&ip, &["link", "set", &names.peer_veth, "netns", ns]).await?;
    run(&ip, &["link", "set", &names.host_veth, "master", bridge]).await?;
    run(&ip, &["link", "set", &names.host_veth, "up"]).await?;
    run(
        &ip,
        &["-n", ns, "link", "set", &names.peer_veth, "name", "eth0"],
    )
    .await?;
    run(&ip, &["-n", ns, "addr", "add", &addr, "dev", "eth0"]).await?;
    run(&ip, &["-n", ns, "link", "set", "eth0", "up"]).await?;
    run(&ip, &["-n", ns, "link", "set", "lo", "up"]).await?;
    run(&ip, &["-n", ns, "route", "add", "default", "via", &gateway]).await?;
    Ok(())
}

/// Removes the pod's namespace (its veth goes with it) and a stray host veth; missing is fine.
pub async fn delete_sandbox(names: &NetNames) {
    let ip = tool("ip");
    if Path::new("/run/netns").join(&names.netns).exists() {
        kill_members(&names.netns).await;
        if let Err(e) = run(&ip, &["netns", "del", &names.netns]).await {
            tracing::warn!(netns = %names.netns, error = %e, "cannot delete network namespace");
        }
    }
    for link in [&names.host_veth, &names.peer_veth] {
        if link_exists(link) {
            let _ = run(&ip, &["link", "del", link]).await;
        }
    }
}

/// SIGKILLs every process still inside the namespace.
pub async fn kill_members(netns: &str) {
    let Ok(pids) = run(&tool("ip"), &["netns", "pids", netns]).await else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
    {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Sets a host veth up or down.
pub async fn set_link(link: &str, up: bool) -> AgentResult<()> {
    let state = if up { "up" } else { "down" };
    run(&tool("ip"), &["link", "set", link, state])
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limits() {
        let tag = root_tag(Path::new("/tmp/x/agent"));
        assert_eq!(tag.len(), 4);
        let n = names(
            &tag,
            "default",
            "redis-0",
            "0f3c9a2e-1111-2222-3333-444455556666",
        );
        assert_eq!(n.host_veth.len(), 15);
        assert_eq!(n.peer_veth.len(), 15);
        assert!(n.netns.starts_with(&netns_prefix(&tag)));
        assert!(n.netns.ends_with("default.redis-0-0f3c9a2e"));
        let long = names(&tag, &"n".repeat(63), &"p".repeat(253), "abcdef01");
        assert!(long.netns.len() <= MAX_NETNS + 9);
        assert_ne!(root_tag(Path::new("/a")), root_tag(Path::new("/b")));
    }
}
