//! The testbed's pod network on the host side: one Linux bridge and one private IPv4 /16 per
//! testbed, both chosen so that two testbeds (a test binary and a `make demo`) can run side by side.
//! The bridge holds the gateway (`.1`), so the host routes to pods through it; the nodes' CNI (the bridge plugin) adds
//! one veth per pod to it.

use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::process::run;

/// First and last second octet of the candidate pod CIDRs `10.X.0.0/16`.
const OCTETS: std::ops::RangeInclusive<u8> = 200..=254;

/// The bridge and pod CIDR of one testbed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Bridge name (`kvtb` + 8 hex digits, within the kernel's 15 characters).
    pub bridge: String,
    /// Network address of the pod CIDR.
    pub network: Ipv4Addr,
    /// Prefix length of the pod CIDR.
    pub prefix: u8,
}

impl Network {
    /// Picks a bridge name derived from `root` and a /16 no route or address on this host overlaps.
    pub fn choose(root: &Path) -> Result<Self> {
        let hash = fnv1a(root.to_string_lossy().as_bytes());
        let bridge = format!("kvtb{:08x}", hash);
        let taken = host_networks()?;
        let count = OCTETS.count() as u32;
        let first = hash % count;
        for i in 0..count {
            let octet = *OCTETS.start() as u32 + (first + i) % count;
            let network = Ipv4Addr::new(10, octet as u8, 0, 0);
            if !taken.iter().any(|&(n, p)| overlaps((network, 16), (n, p))) {
                return Ok(Self {
                    bridge,
                    network,
                    prefix: 16,
                });
            }
        }
        Err(Error::invalid(
            "host routes",
            "every candidate pod CIDR 10.200.0.0/16 .. 10.254.0.0/16 overlaps a route of this host",
        ))
    }

    /// `10.X.0.0/16`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    /// The bridge's own address, the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// Creates the bridge with the gateway address and brings it up (replacing a stale one).
    pub fn create_bridge(&self) -> Result<()> {
        if bridge_exists(&self.bridge) {
            remove_bridge(&self.bridge)?;
        }
        let addr = format!("{}/{}", self.gateway(), self.prefix);
        run(
            "ip",
            &["link", "add", "name", &self.bridge, "type", "bridge"],
        )?;
        run("ip", &["addr", "add", &addr, "dev", &self.bridge])?;
        run("ip", &["link", "set", &self.bridge, "up"])?;
        Ok(())
    }
}

/// Whether a link of that name exists.
pub fn bridge_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Deletes the bridge (its veths go with their pods' namespaces); a missing bridge is fine.
pub fn remove_bridge(name: &str) -> Result<()> {
    if bridge_exists(name) {
        run("ip", &["link", "del", name])?;
    }
    Ok(())
}

/// Every IPv4 network this host has an address or a route for, in any routing table.
fn host_networks() -> Result<Vec<(Ipv4Addr, u8)>> {
    let mut out = Vec::new();
    let routes = run("ip", &["-4", "-o", "route", "show", "table", "all"])?;
    let addrs = run("ip", &["-4", "-o", "addr", "show"])?;
    for line in routes.lines() {
        // `[type] <dest> ...`: the type keyword is optional; `default` covers everything but is
        // not a conflict (a more specific route wins).
        let dest = line
            .split_whitespace()
            .find(|t| t.chars().next().is_some_and(|c| c.is_ascii_digit()));
        if let Some(net) = dest.and_then(parse_net) {
            out.push(net);
        }
    }
    for line in addrs.lines() {
        let mut tokens = line.split_whitespace();
        if tokens.any(|t| t == "inet")
            && let Some(net) = tokens.next().and_then(parse_net)
        {
            out.push(net);
        }
    }
    Ok(out)
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32).
fn parse_net(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, p.parse().ok()?),
        None => (text, 32),
    };
    Some((addr.parse().ok()?, prefix))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let prefix = a.1.min(b.1).min(32);
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(a.0) & mask == u32::from(b.0) & mask
}

fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_symmetric_and_prefix_aware() {
        let a = (Ipv4Addr::new(10, 200, 0, 0), 16);
        assert!(overlaps(a, (Ipv4Addr::new(10, 200, 3, 4), 32)));
        assert!(overlaps((Ipv4Addr::new(10, 0, 0, 0), 8), a));
        assert!(!overlaps(a, (Ipv4Addr::new(10, 201, 0, 0), 16)));
        assert!(!overlaps(a, (Ipv4Addr::new(192, 0, 2, 0), 24)));
    }

    #[test]
    fn parses_networks() {
        assert_eq!(
            parse_net("10.1.0.0/16"),
            Some((Ipv4Addr::new(10, 1, 0, 0), 16))
        );
        assert_eq!(parse_net("127.0.0.1"), Some((Ipv4Addr::LOCALHOST, 32)));
        assert_eq!(parse_net("default"), None);
    }
}
