//! Pod IP allocation from the pod CIDR: one address per pod UID, handed out round-robin so a
//! recreated pod (new UID) gets a new address, as on a real cluster.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network such as `10.244.0.0/16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a CIDR (a.b.c.d/len)"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|e| format!("{text:?}: {e}"))?;
        let prefix: u8 = prefix.parse().map_err(|e| format!("{text:?}: {e}"))?;
        if !(8..=30).contains(&prefix) {
            return Err(format!("{text:?}: the prefix must be between /8 and /30"));
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Self {
            network: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    /// The first address: the bridge's, the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.at(1)
    }

    /// Number of addresses in the network.
    fn size(&self) -> u32 {
        1 << (32 - self.prefix)
    }

    fn at(&self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + offset)
    }

    /// Offset of `ip` in the network, if inside.
    fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        let offset = u32::from(ip).checked_sub(u32::from(self.network))?;
        (offset < self.size()).then_some(offset)
    }
}

/// The allocator. Pure; the agent persists [`Ipam::cursor`] so a restarted agent does not hand
/// out the addresses of pods it just deleted.
#[derive(Debug)]
pub struct Ipam {
    cidr: Cidr,
    cursor: u32,
    by_uid: HashMap<String, Ipv4Addr>,
    taken: HashSet<u32>,
}

impl Ipam {
    /// An allocator whose next candidate is at `cursor` (offsets 0, 1 and the broadcast address
    /// are never handed out).
    pub fn new(cidr: Cidr, cursor: u32) -> Self {
        Self {
            cidr,
            cursor,
            by_uid: HashMap::new(),
            taken: HashSet::new(),
        }
    }

    /// The next offset to try (to persist).
    pub fn cursor(&self) -> u32 {
        self.cursor
    }

    /// The address of pod `uid`, allocating the next free one; `None` when the CIDR is full.
    pub fn allocate(&mut self, uid: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.by_uid.get(uid) {
            return Some(*ip);
        }
        let usable = self.cidr.size() - 3;
        for _ in 0..usable {
            let offset = 2 + self.cursor % usable;
            self.cursor = (self.cursor + 1) % usable;
            if self.taken.insert(offset) {
                let ip = self.cidr.at(offset);
                self.by_uid.insert(uid.to_owned(), ip);
                return Some(ip);
            }
        }
        None
    }

    /// Gives pod `uid` the address it already had (an agent restart); false when that address is
    /// outside the CIDR or held by another pod.
    pub fn reserve(&mut self, uid: &str, ip: Ipv4Addr) -> bool {
        let Some(offset) = self.cidr.offset(ip) else {
            return false;
        };
        if offset < 2 || offset == self.cidr.size() - 1 {
            return false;
        }
        if self.by_uid.get(uid) == Some(&ip) {
            return true;
        }
        if self.by_uid.contains_key(uid) || !self.taken.insert(offset) {
            return false;
        }
        self.by_uid.insert(uid.to_owned(), ip);
        true
    }

    /// Frees pod `uid`'s address.
    pub fn release(&mut self, uid: &str) {
        if let Some(ip) = self.by_uid.remove(uid)
            && let Some(offset) = self.cidr.offset(ip)
        {
            self.taken.remove(&offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let c: Cidr = "10.244.3.7/16".parse().unwrap();
        assert_eq!(c.network, Ipv4Addr::new(10, 244, 0, 0));
        assert_eq!(c.gateway(), Ipv4Addr::new(10, 244, 0, 1));
        assert_eq!(c.to_string(), "10.244.0.0/16");
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert!("10.0.0.0/31".parse::<Cidr>().is_err());
    }

    #[test]
    fn same_uid_same_ip_new_uid_new_ip() {
        let mut ipam = Ipam::new("10.1.0.0/16".parse().unwrap(), 0);
        let a = ipam.allocate("a").unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(ipam.allocate("a"), Some(a));
        ipam.release("a");
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b, "a recreated pod gets a new address");
        assert_eq!(b, Ipv4Addr::new(10, 1, 0, 3));
    }

    #[test]
    fn wraps_skips_taken_and_fills_up() {
        let mut ipam = Ipam::new("10.1.0.0/29".parse().unwrap(), 0);
        // .2 .. .6 are usable (.0 network, .1 gateway, .7 broadcast).
        assert!(ipam.reserve("old", Ipv4Addr::new(10, 1, 0, 3)));
        let got: Vec<_> = (0..4).map(|i| ipam.allocate(&i.to_string())).collect();
        assert_eq!(
            got,
            [2, 4, 5, 6]
                .map(|o| Some(Ipv4Addr::new(10, 1, 0, o)))
                .to_vec()
        );
        assert_eq!(ipam.allocate("full"), None);
        ipam.release("1");
        assert_eq!(ipam.allocate("x"), Some(Ipv4Addr::new(10, 1, 0, 4)));
    }

    #[test]
    fn reserve_refuses_foreign_or_taken_addresses() {
        let mut ipam = Ipam::new("10.1.0.0/24".parse().unwrap(), 0);
        assert!(!ipam.reserve("a", Ipv4Addr::new(10, 2, 0, 5)));
        assert!(!ipam.reserve("a", Ipv4Addr::new(10, 1, 0, 1)));
        assert!(ipam.reserve("a", Ipv4Addr::new(10, 1, 0, 5)));
        assert!(ipam.reserve("a", Ipv4Addr::new(10, 1, 0, 5)));
        assert!(!ipam.reserve("b", Ipv4Addr::new(10, 1, 0, 5)));
    }
}
