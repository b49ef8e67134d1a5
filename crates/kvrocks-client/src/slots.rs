//! Hash slots, slot ranges and cluster node ids.

use std::fmt;
use std::str::FromStr;

use crate::parse::ParseError;

/// Number of hash slots in a redis / kvrocks cluster.
pub const SLOT_COUNT: u16 = 16384;

/// Length of a cluster node id (`CLUSTERX SETNODEID` refuses any other).
pub const NODE_ID_LEN: usize = 40;

/// An inclusive range of hash slots, `start..=end`, both below [`SLOT_COUNT`].
///
/// It is written `5` when it holds one slot (kvrocks refuses `5-5`) and `0-5460` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotRange {
    start: u16,
    end: u16,
}

impl SlotRange {
    /// The range `start..=end`, or `None` when `start > end` or `end >= SLOT_COUNT`.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start <= end && end < SLOT_COUNT).then_some(Self { start, end })
    }

    /// The range holding just `slot`, or `None` when `slot >= SLOT_COUNT`.
    pub fn single(slot: u16) -> Option<Self> {
        Self::new(slot, slot)
    }

    /// Every slot, `0-16383`.
    pub fn all() -> Self {
        Self {
            start: 0,
            end: SLOT_COUNT - 1,
        }
    }

    /// First slot of the range.
    pub fn start(&self) -> u16 {
        self.start
    }

    /// Last slot of the range (inclusive).
    pub fn end(&self) -> u16 {
        self.end
    }

    /// Number of slots in the range.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Always false: a range holds at least one slot (present for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// True when `slot` lies in the range.
    pub fn contains(&self, slot: u16) -> bool {
        self.start <= slot && slot <= self.end
    }

    /// True when the two ranges share at least one slot.
    pub fn overlaps(&self, other: &SlotRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Iterates the slots of the range.
    pub fn slots(&self) -> std::ops::RangeInclusive<u16> {
        self.start..=self.end
    }

    /// Sorts ranges and merges the overlapping or adjacent ones, e.g. `[3-5, 0-2, 9]` to `[0-5, 9]`.
    pub fn normalize(ranges: impl IntoIterator<Item = SlotRange>) -> Vec<SlotRange> {
        let mut sorted: Vec<SlotRange> = ranges.into_iter().collect();
        sorted.sort_unstable();
        let mut out: Vec<SlotRange> = Vec::with_capacity(sorted.len());
        for range in sorted {
            match out.last_mut() {
                Some(last) if u32::from(range.start) <= u32::from(last.end) + 1 => {
                    last.end = last.end.max(range.end);
                }
                _ => out.push(range),
            }
        }
        out
    }

    /// Compresses a set of slots into the fewest ranges, e.g. `[1, 2, 3, 7]` to `[1-3, 7]`.
    pub fn from_slots(slots: impl IntoIterator<Item = u16>) -> Vec<SlotRange> {
        Self::normalize(slots.into_iter().filter_map(SlotRange::single))
    }

    /// Splits the whole slot space into `shards` contiguous ranges of near-equal size (empty for 0 shards).
    pub fn split_evenly(shards: u16) -> Vec<SlotRange> {
        if shards == 0 {
            return Vec::new();
        }
        let shards = shards.min(SLOT_COUNT);
        let base = SLOT_COUNT / shards;
        let extra = SLOT_COUNT % shards;
        let mut out = Vec::with_capacity(usize::from(shards));
        let mut start = 0u16;
        for i in 0..shards {
            let size = base + u16::from(i < extra);
            let end = start + size - 1;
            out.push(SlotRange { start, end });
            start = end + 1;
        }
        out
    }
}

impl fmt::Display for SlotRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

impl FromStr for SlotRange {
    type Err = ParseError;

    /// Parses `5` or `0-5460`; `5-5` is accepted here (redis writes it that way) but never written.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| ParseError::new("slot range", format!("{s:?}: {reason}"));
        let parse_slot = |t: &str| {
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("not a number"));
            }
            t.parse::<u16>()
                .ok()
                .filter(|n| *n < SLOT_COUNT)
                .ok_or_else(|| err("slot out of range 0..16383"))
        };
        match s.split_once('-') {
            None => {
                let slot = parse_slot(s)?;
                Ok(Self {
                    start: slot,
                    end: slot,
                })
            }
            Some((a, b)) => {
                let (start, end) = (parse_slot(a)?, parse_slot(b)?);
                Self::new(start, end).ok_or_else(|| err("start is after end"))
            }
        }
    }
}

/// Joins ranges with single spaces, the way SETNODES and CLUSTER NODES write them.
pub fn format_ranges(ranges: &[SlotRange]) -> String {
    ranges
        .iter()
        .map(SlotRange::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A cluster node id: exactly 40 ASCII letters or digits (redis and the operator use lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    /// Validates `id` as a node id.
    pub fn new(id: impl Into<String>) -> Result<Self, ParseError> {
        let id = id.into();
        if id.len() != NODE_ID_LEN {
            return Err(ParseError::new(
                "node id",
                format!("{id:?} has {} characters, not {NODE_ID_LEN}", id.len()),
            ));
        }
        if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ParseError::new(
                "node id",
                format!("{id:?} has characters other than letters and digits"),
            ));
        }
        Ok(Self(id))
    }

    /// A fresh random id of 40 lowercase hex digits.
    pub fn random() -> Self {
        use rand::Rng;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut rng = rand::rng();
        let id: String = (0..NODE_ID_LEN)
            .map(|_| char::from(HEX[rng.random_range(0..HEX.len())]))
            .collect();
        Self(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for NodeId {
    type Err = ParseError;

    /// Same as [`NodeId::new`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn single_slot_is_written_without_dash() {
        assert_eq!(SlotRange::single(5).unwrap().to_string(), "5");
        assert_eq!(SlotRange::new(0, 5460).unwrap().to_string(), "0-5460");
        assert_eq!("5-5".parse::<SlotRange>().unwrap().to_string(), "5");
    }

    #[test]
    fn rejects_invalid_ranges() {
        for bad in [
            "",
            "-",
            "-5",
            "5-",
            "16384",
            "3-1",
            "a",
            "1-2-3",
            "+5",
            " 5",
            "0x10",
            "99999999999",
        ] {
            assert!(bad.parse::<SlotRange>().is_err(), "{bad:?}");
        }
        assert!(SlotRange::new(2, 1).is_none());
        assert!(SlotRange::single(SLOT_COUNT).is_none());
    }

    #[test]
    fn normalize_merges_adjacent_and_overlapping() {
        let r = |a, b| SlotRange::new(a, b).unwrap();
        assert_eq!(
            SlotRange::normalize([r(3, 5), r(0, 2), r(9, 9), r(4, 6)]),
            vec![r(0, 6), r(9, 9)]
        );
        assert_eq!(SlotRange::from_slots([7, 1, 2, 3]), vec![r(1, 3), r(7, 7)]);
        assert_eq!(format_ranges(&[r(0, 6), r(9, 9)]), "0-6 9");
    }

    #[test]
    fn split_evenly_covers_everything() {
        let three = SlotRange::split_evenly(3);
        assert_eq!(
            three.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["0-5461", "5462-10922", "10923-16383"]
        );
        assert!(SlotRange::split_evenly(0).is_empty());
        let all = SlotRange::split_evenly(SLOT_COUNT);
        assert_eq!(all.len(), usize::from(SLOT_COUNT));
        assert_eq!(all.last().unwrap().to_string(), "16383");
    }

    #[test]
    fn node_ids() {
        let id = NodeId::random();
        assert_eq!(id.as_str().len(), 40);
        assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(NodeId::new("a".repeat(40)).is_ok());
        assert!(NodeId::new("a".repeat(39)).is_err());
        assert!(NodeId::new(format!("{} ", "a".repeat(39))).is_err());
        assert!(NodeId::new("é".repeat(20)).is_err());
    }

    proptest! {
        #[test]
        fn range_text_round_trips(a in 0u16..SLOT_COUNT, b in 0u16..SLOT_COUNT) {
            let r = SlotRange::new(a.min(b), a.max(b)).unwrap();
            let text = r.to_string();
            prop_assert_eq!(text.parse::<SlotRange>().unwrap(), r);
            if let Some((x, y)) = text.split_once('-') {
                prop_assert_ne!(x, y);
            }
        }

        #[test]
        fn range_parser_never_panics(s in "\\PC*") {
            let _ = s.parse::<SlotRange>();
            let _ = NodeId::new(s);
        }

        #[test]
        fn normalize_keeps_the_same_slots(slots in proptest::collection::btree_set(0u16..SLOT_COUNT, 0..200)) {
            let ranges = SlotRange::from_slots(slots.iter().copied());
            let back: std::collections::BTreeSet<u16> = ranges.iter().flat_map(|r| r.slots()).collect();
            prop_assert_eq!(back, slots);
            for w in ranges.windows(2) {
                prop_assert!(u32::from(w[0].end()) + 1 < u32::from(w[1].start()));
            }
        }
    }
}
