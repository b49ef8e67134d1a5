//! Slot strings as written in `spec.slotMigrations`: `"300"` or `"1-2"`.
//!
//! This module only says which strings are valid, in Rust and in CEL alike; the slot-range
//! type the controllers compute with is `kvrocks_client::SlotRange`.

use kube::core::{Message, Rule};

/// Number of hash slots in a kvrocks cluster.
pub const SLOT_COUNT: u16 = 16384;
/// The highest slot number.
pub const MAX_SLOT: u16 = SLOT_COUNT - 1;

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

/// Parses a slot string into its inclusive bounds (`"300"` gives `(300, 300)`).
pub fn parse_slot_string(s: &str) -> Result<(u16, u16), SlotParseError> {
    let err = || SlotParseError(s.to_string());
    match s.split_once('-') {
        None => parse_slot(s).map(|n| (n, n)).ok_or_else(err),
        Some((a, b)) => {
            let (a, b) = (
                parse_slot(a).ok_or_else(err)?,
                parse_slot(b).ok_or_else(err)?,
            );
            if a < b { Ok((a, b)) } else { Err(err()) }
        }
    }
}

/// The CEL expression that is true when the string variable `var` is a valid slot string; it
/// accepts exactly what [`parse_slot_string`] accepts.
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
    fn parses_single_slots_and_ranges() {
        assert_eq!(parse_slot_string("300"), Ok((300, 300)));
        assert_eq!(parse_slot_string("0-16383"), Ok((0, 16383)));
        for bad in [
            "", "16384", "5-5", "6-5", "-1", "1-", "a", "1-2-3", "00000016", "+1", " 1",
        ] {
            assert!(parse_slot_string(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,20}") {
            let _ = parse_slot_string(&s);
        }

        #[test]
        fn accepts_every_ordered_pair(a in 0u16..=MAX_SLOT, b in 0u16..=MAX_SLOT) {
            let text = if a == b { a.to_string() } else { format!("{}-{}", a.min(b), a.max(b)) };
            prop_assert_eq!(parse_slot_string(&text), Ok((a.min(b), a.max(b))));
        }
    }
}
