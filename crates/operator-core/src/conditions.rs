//! Status conditions: small builders for `Ready`, `Progressing` and `Degraded`, and a merge
//! that keeps `lastTransitionTime` while a condition's status stays the same.
//!
//! A reconcile computes the full set of conditions it knows about with the builders, then
//! [`merge`]s them into the conditions currently in the status. The result is in a fixed order,
//! so writing it back is a no-op whenever nothing changed.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Type of the condition saying the resource serves clients as specified.
pub const READY: &str = "Ready";
/// Type of the condition saying the operator is moving the resource towards its spec.
pub const PROGRESSING: &str = "Progressing";
/// Type of the condition saying the resource works, but with less redundancy or capacity than asked.
pub const DEGRADED: &str = "Degraded";

/// Reason used when a caller passes a reason that is empty after sanitizing.
pub const UNKNOWN_REASON: &str = "Unknown";

/// Longest `reason` the API server accepts.
const MAX_REASON_LEN: usize = 1024;
/// Longest `message` the API server accepts.
const MAX_MESSAGE_LEN: usize = 32768;

/// The order of the well-known types in a merged list; other types follow, sorted by name.
const ORDER: [&str; 3] = [READY, PROGRESSING, DEGRADED];

/// The status of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// The operator cannot tell (yet).
    Unknown,
}

impl ConditionStatus {
    /// The value of `Condition.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }
}

/// A condition of type `type_`, stamped with the current time as `lastTransitionTime`
/// (which [`merge`] replaces with the previous one when the status did not change).
///
/// `reason` should be CamelCase (`AllReplicasReady`); characters the API server would refuse are
/// dropped, and an empty reason becomes [`UNKNOWN_REASON`]. `message` is for a person: say what
/// is wrong and what to do. Both are truncated to the API server's limits.
pub fn new_condition(
    type_: &str,
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: status.as_str().to_string(),
        reason: sanitize_reason(reason),
        message: truncate(message.into(), MAX_MESSAGE_LEN),
        observed_generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// A `Ready` condition; see [`new_condition`].
pub fn ready(
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    new_condition(READY, status, reason, message, observed_generation)
}

/// A `Progressing` condition; see [`new_condition`].
pub fn progressing(
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    new_condition(PROGRESSING, status, reason, message, observed_generation)
}

/// The three conditions every resource reports each reconcile: `Ready` (with `reason` and
/// `message`), `Progressing` (its opposite, same words) and `Degraded` (`degraded` = whether,
/// reason, message).
pub fn health(
    ready: bool,
    reason: &str,
    message: &str,
    degraded: (bool, &str, &str),
    observed_generation: Option<i64>,
) -> [Condition; 3] {
    let status = |b: bool| {
        if b {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    };
    [
        self::ready(status(ready), reason, message, observed_generation),
        progressing(status(!ready), reason, message, observed_generation),
        self::degraded(
            status(degraded.0),
            degraded.1,
            degraded.2,
            observed_generation,
        ),
    ]
}

/// A `Degraded` condition; see [`new_condition`].
pub fn degraded(
    status: ConditionStatus,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
) -> Condition {
    new_condition(DEGRADED, status, reason, message, observed_generation)
}

/// Merges `updates` into `existing` with the current time; see [`merge_at`].
pub fn merge(
    existing: &[Condition],
    updates: impl IntoIterator<Item = Condition>,
) -> Vec<Condition> {
    merge_at(existing, updates, Timestamp::now())
}

/// Merges `updates` into `existing`, as of `now`.
///
/// - A condition in `updates` replaces the existing one of the same type. If the status is the
///   same, the existing `lastTransitionTime` is kept; otherwise (or when the type is new) it
///   becomes `now`.
/// - Existing conditions of types not in `updates` are kept unchanged (another step may own them).
/// - When `updates` holds a type twice, the last one wins.
/// - The result is ordered `Ready`, `Progressing`, `Degraded`, then other types by name.
pub fn merge_at(
    existing: &[Condition],
    updates: impl IntoIterator<Item = Condition>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut merged: Vec<Condition> = Vec::with_capacity(existing.len() + ORDER.len());
    for condition in existing {
        // Keep the last one of a type if the stored status somehow holds duplicates.
        merged.retain(|c| c.type_ != condition.type_);
        merged.push(condition.clone());
    }
    for mut update in updates {
        let previous = merged.iter().position(|c| c.type_ == update.type_);
        update.last_transition_time = match previous.map(|i| &merged[i]) {
            Some(prev) if prev.status == update.status => prev.last_transition_time.clone(),
            _ => Time(now),
        };
        match previous {
            Some(i) => merged[i] = update,
            None => merged.push(update),
        }
    }
    merged.sort_by(|a, b| sort_key(&a.type_).cmp(&sort_key(&b.type_)));
    merged
}

fn sort_key(type_: &str) -> (usize, &str) {
    let rank = ORDER
        .iter()
        .position(|t| *t == type_)
        .unwrap_or(ORDER.len());
    (rank, type_)
}

/// The condition of type `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of type `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
}

/// Whether `reason` is one the API server accepts: a letter, then letters, digits, `_`, `,`
/// or `:`, not ending in `,` or `:`, at most 1024 characters.
pub fn is_valid_reason(reason: &str) -> bool {
    let mut chars = reason.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    reason.len() <= MAX_REASON_LEN
        && first.is_ascii_alphabetic()
        && reason
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':'))
        && !reason.ends_with([',', ':'])
}

fn sanitize_reason(reason: &str) -> String {
    if is_valid_reason(reason) {
        return reason.to_string();
    }
    let kept: String = reason
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .skip_while(|c| !c.is_ascii_alphabetic())
        .take(MAX_REASON_LEN)
        .collect();
    if kept.is_empty() {
        UNKNOWN_REASON.to_string()
    } else {
        kept
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn at(mut c: Condition, seconds: i64) -> Condition {
        c.last_transition_time = Time(ts(seconds));
        c
    }

    #[test]
    fn builders_fill_every_field() {
        let c = ready(
            ConditionStatus::False,
            "InvalidSpec",
            "replicas must be odd",
            Some(3),
        );
        assert_eq!(c.type_, "Ready");
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "InvalidSpec");
        assert_eq!(c.message, "replicas must be odd");
        assert_eq!(c.observed_generation, Some(3));
        assert_eq!(
            progressing(ConditionStatus::True, "Scaling", "", None).type_,
            "Progressing"
        );
        let d = degraded(ConditionStatus::Unknown, "Probing", "", None);
        assert_eq!(
            (d.type_.as_str(), d.status.as_str()),
            ("Degraded", "Unknown")
        );
        assert_eq!(ConditionStatus::from(true), ConditionStatus::True);
        assert_eq!(ConditionStatus::from(false), ConditionStatus::False);
    }

    #[test]
    fn keeps_transition_time_when_status_is_unchanged() {
        let existing = vec![at(
            ready(ConditionStatus::True, "AllReady", "old", Some(1)),
            100,
        )];
        let merged = merge_at(
            &existing,
            [ready(
                ConditionStatus::True,
                "AllReady",
                "new message",
                Some(2),
            )],
            ts(500),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].last_transition_time, Time(ts(100)));
        assert_eq!(merged[0].message, "new message");
        assert_eq!(merged[0].observed_generation, Some(2));
    }

    #[test]
    fn sets_transition_time_when_status_changes_or_type_is_new() {
        let existing = vec![at(
            ready(ConditionStatus::True, "AllReady", "", Some(1)),
            100,
        )];
        let merged = merge_at(
            &existing,
            [
                ready(ConditionStatus::False, "MasterDown", "no master", Some(1)),
                degraded(ConditionStatus::True, "ReplicaDown", "1 of 3 down", Some(1)),
            ],
            ts(500),
        );
        assert_eq!(merged[0].type_, "Ready");
        assert_eq!(merged[0].last_transition_time, Time(ts(500)));
        assert_eq!(merged[1].type_, "Degraded");
        assert_eq!(merged[1].last_transition_time, Time(ts(500)));
    }

    #[test]
    fn keeps_untouched_types_and_orders_deterministically() {
        let existing = vec![
            at(
                new_condition("Zeta", ConditionStatus::True, "Z", "", None),
                1,
            ),
            at(degraded(ConditionStatus::False, "Healthy", "", None), 2),
            at(
                new_condition("Alpha", ConditionStatus::True, "A", "", None),
                3,
            ),
        ];
        let merged = merge_at(
            &existing,
            [
                progressing(ConditionStatus::False, "Idle", "", None),
                ready(ConditionStatus::True, "AllReady", "", None),
            ],
            ts(10),
        );
        let types: Vec<_> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Progressing", "Degraded", "Alpha", "Zeta"]);
        assert_eq!(merged[2].last_transition_time, Time(ts(2)));
        assert_eq!(merged[4].last_transition_time, Time(ts(1)));
    }

    #[test]
    fn merging_the_same_updates_twice_is_stable() {
        let updates = || {
            vec![
                ready(ConditionStatus::True, "AllReady", "3/3 ready", Some(4)),
                progressing(ConditionStatus::False, "Idle", "", Some(4)),
                degraded(ConditionStatus::False, "Healthy", "", Some(4)),
            ]
        };
        let first = merge_at(&[], updates(), ts(10));
        let second = merge_at(&first, updates(), ts(20));
        assert_eq!(first, second);
    }

    #[test]
    fn reasons_are_made_valid() {
        assert!(is_valid_reason("AllReplicasReady"));
        assert!(is_valid_reason("Failover_2:Done"));
        assert!(!is_valid_reason(""));
        assert!(!is_valid_reason("1Bad"));
        assert!(!is_valid_reason("Bad Reason"));
        assert!(!is_valid_reason("Trailing:"));
        assert_eq!(
            ready(ConditionStatus::True, "Bad Reason!", "", None).reason,
            "BadReason"
        );
        assert_eq!(ready(ConditionStatus::True, "12 ok", "", None).reason, "ok");
        assert_eq!(
            ready(ConditionStatus::True, "!!", "", None).reason,
            UNKNOWN_REASON
        );
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let msg = "é".repeat(MAX_MESSAGE_LEN);
        let c = ready(ConditionStatus::True, "Ok", msg, None);
        assert!(c.message.len() <= MAX_MESSAGE_LEN);
        assert!(c.message.chars().all(|ch| ch == 'é'));
        assert_eq!(find(std::slice::from_ref(&c), READY), Some(&c));
        assert!(is_true(&[c], READY));
        assert!(!is_true(&[], READY));
    }

    proptest! {
        #[test]
        fn sanitized_reasons_are_always_valid(reason in ".{0,40}") {
            prop_assert!(is_valid_reason(&sanitize_reason(&reason)));
        }

        #[test]
        fn merge_has_one_condition_per_type(
            statuses in proptest::collection::vec((0usize..4, 0usize..3), 0..12),
        ) {
            let types = ["Ready", "Progressing", "Degraded", "Other"];
            let all = [ConditionStatus::True, ConditionStatus::False, ConditionStatus::Unknown];
            let updates: Vec<_> = statuses
                .iter()
                .map(|(t, s)| new_condition(types[*t], all[*s], "R", "", None))
                .collect();
            let (first, second) = updates.split_at(updates.len() / 2);
            let merged = merge_at(&merge_at(&[], first.to_vec(), ts(1)), second.to_vec(), ts(2));
            let mut seen: Vec<_> = merged.iter().map(|c| c.type_.clone()).collect();
            let before = seen.len();
            seen.dedup();
            prop_assert_eq!(before, seen.len());
            let mut keys: Vec<_> = merged.iter().map(|c| sort_key(&c.type_)).collect();
            let unsorted = keys.clone();
            keys.sort();
            prop_assert_eq!(keys, unsorted);
        }
    }

    #[test]
    fn health_reports_ready_its_opposite_and_degraded() {
        let [r, p, d] = health(
            false,
            "Syncing",
            "1 of 2",
            (true, "NoMaster", "none"),
            Some(3),
        );
        assert_eq!((r.type_.as_str(), r.status.as_str()), ("Ready", "False"));
        assert_eq!(
            (p.type_.as_str(), p.status.as_str()),
            ("Progressing", "True")
        );
        assert_eq!(
            (d.type_.as_str(), d.status.as_str(), d.reason.as_str()),
            ("Degraded", "True", "NoMaster")
        );
        assert_eq!(r.observed_generation, Some(3));
    }
}
