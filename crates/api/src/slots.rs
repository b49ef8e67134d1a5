//! Slot ranges as written in `spec.slotMigrations`: `"300"` or `"1-2"`.

use std::fmt;
use std::str::FromStr;

use kube::core::{Message, Rule};

/// Number of hash slots in a kvrocks cluster.
pub const SLOT_COUNT: u16 = 16384;
/// The highest slot number.
pub const MAX_SLOT: u16 = SLOT_COUNT - 1;

/// An inclusive range of slots; a single slot has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotRange {
    /// First slot of the range.
    pub start: u16,
    /// Last slot of the range (inclusive).
    pub end: u16,
}

impl SlotRange {
    /// A range from `start` to `end` inclusive, if it is ordered and inside 0..=16383.
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start <= end && end <= MAX_SLOT).then_some(Self { start, end })
    }

    /// Number of slots in the range.
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Always false: a range holds at least one slot.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether the range contains `slot`.
    pub fn contains(&self, slot: u16) -> bool {
        self.start <= slot && slot <= self.end
    }
}

impl fmt::Display for SlotRange {
    /// A single slot is written `5`, never `5-5` (kvrocks refuses the latter).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Why a slot string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("slot {0:?} must be N or A-B with 0 <= A < B <= 16383")]
pub struct SlotParseError(pub String);

fn parse_slot(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|n| *n <= MAX_SLOT)
}

impl FromStr for SlotRange {
    type Err = SlotParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || SlotParseError(s.to_string());
        match s.split_once('-') {
            None => parse_slot(s)
                .map(|n| SlotRange { start: n, end: n })
                .ok_or_else(err),
            Some((a, b)) => {
                let (a, b) = (
                    parse_slot(a).ok_or_else(err)?,
                    parse_slot(b).ok_or_else(err)?,
                );
                if a < b {
                    Ok(SlotRange { start: a, end: b })
                } else {
                    Err(err())
                }
            }
        }
    }
}

/// The CEL expression that is true when the string variable `var` is a valid slot string; it
/// says exactly what [`SlotRange::from_str`] accepts.
pub fn slot_string_expression(var: &str) -> String {
    format!(
        "{var}.matches('^[0-9]{{1,5}}(-[0-9]{{1,5}})?$') && \
         ({var}.contains('-') ? \
           (int({var}.split('-')[0]) < int({var}.split('-')[1]) && int({var}.split('-')[1]) <= {MAX_SLOT}) : \
           int({var}) <= {MAX_SLOT})"
    )
}

/// The CEL rule on a list of slot strings.
pub fn slot_list_rule() -> Rule {
    Rule::new(format!("self.all(s, {})", slot_string_expression("s"))).message(Message::Message(
        "every slot is N or A-B with 0 <= A < B <= 16383".to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_single_and_ranges() {
        assert_eq!(
            "300".parse(),
            Ok(SlotRange {
                start: 300,
                end: 300
            })
        );
        assert_eq!(
            "0-16383".parse(),
            Ok(SlotRange {
                start: 0,
                end: 16383
            })
        );
        for bad in [
            "", "16384", "5-5", "6-5", "-1", "1-", "a", "1-2-3", "00000016", "+1", " 1",
        ] {
            assert!(bad.parse::<SlotRange>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_single_slot_is_written_without_a_dash() {
        assert_eq!(SlotRange { start: 5, end: 5 }.to_string(), "5");
        assert_eq!(SlotRange { start: 5, end: 9 }.to_string(), "5-9");
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,20}") {
            let _ = s.parse::<SlotRange>();
        }

        #[test]
        fn display_round_trips(a in 0u16..=MAX_SLOT, b in 0u16..=MAX_SLOT) {
            let r = SlotRange::new(a.min(b), a.max(b)).unwrap();
            prop_assert_eq!(r.to_string().parse::<SlotRange>(), Ok(r));
            let doubled = format!("{}-{}", r.start, r.start);
            prop_assert!(r.start != r.end || r.to_string() != doubled);
        }
    }
}
