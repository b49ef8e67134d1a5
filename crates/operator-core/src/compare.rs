//! Pure JSON comparisons that decide whether a write can be skipped.
//!
//! The API server fills in defaults, drops zero values of `omitempty` fields and normalizes
//! resource quantities, so "is the live object what we asked for" is a subset test, not an
//! equality test. A false "different" costs one apply the server treats as a no-op; a false
//! "same" would hide a needed change, so the rules below only forgive what the server itself
//! does.

use serde_json::{Map, Value};

/// Keys whose values (directly, or as map values) are resource quantities such as `500m`/`0.5`.
const QUANTITY_KEYS: &[&str] = &["limits", "requests", "sizeLimit", "capacity", "hard"];

/// Whether every field set in `desired` has the same value in `live`.
///
/// - Objects: each key of `desired` must match in `live`; a key missing from `live` matches
///   only when the desired value is empty (`null`, `false`, `0`, `""`, `[]`, or an object of
///   empty values), because the server drops those.
/// - Arrays: same length, element by element.
/// - Numbers compare by value (`1` equals `1.0`); quantities under resource keys compare by
///   amount (`1000m` equals `1`).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    subset(desired, live, false)
}

/// `quantity`: string values here (or in this object) are resource quantities.
fn subset(desired: &Value, live: &Value, quantity: bool) -> bool {
    match (desired, live) {
        (Value::Null, _) => true,
        (Value::Object(d), Value::Object(l)) => object_subset(d, l, quantity),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(d, l)| subset(d, l, false))
        }
        (Value::Number(d), Value::Number(l)) => match (d.as_f64(), l.as_f64()) {
            (Some(d), Some(l)) => d == l,
            _ => d == l,
        },
        (Value::String(d), Value::String(l)) if quantity && d != l => {
            match (parse_quantity(d), parse_quantity(l)) {
                (Some(d), Some(l)) => approx_eq(d, l),
                _ => false,
            }
        }
        _ => desired == live,
    }
}

/// `quantities`: this object is (inside) a map of quantities such as `limits`.
fn object_subset(
    desired: &Map<String, Value>,
    live: &Map<String, Value>,
    quantities: bool,
) -> bool {
    desired.iter().all(|(key, d)| match live.get(key) {
        Some(l) => subset(d, l, quantities || QUANTITY_KEYS.contains(&key.as_str())),
        None => is_empty(d),
    })
}

/// Whether `value` is what Go's `omitempty` leaves out.
pub fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
    }
}

/// Whether `a` and `b` hold the same data once empty values are ignored on both sides.
///
/// For objects the operator owns entirely, such as the status it writes: a field it stopped
/// setting must be removed, so the test runs both ways.
pub fn same_ignoring_empty(a: &Value, b: &Value) -> bool {
    is_subset(a, b) && is_subset(b, a)
}

/// Removes `null` fields from objects, recursively (arrays keep their length).
pub fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn approx_eq(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The amount of a Kubernetes quantity (`500m`, `1Gi`, `1e3`, `2k`), or `None` if `s` is not one.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    if number.is_empty() || number == "+" || number == "-" {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let exponent: i32 = exp.get(1..)?.parse().ok()?;
            10f64.powi(exponent)
        }
        _ => return None,
    };
    let amount = value * multiplier;
    amount.is_finite().then_some(amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn live_may_hold_more_fields() {
        let desired = json!({"spec": {"replicas": 3, "selector": {"app": "a"}}});
        let live = json!({"spec": {"replicas": 3, "selector": {"app": "a"}, "revisionHistoryLimit": 10}, "status": {}});
        assert!(is_subset(&desired, &live));
        assert!(!is_subset(&live, &desired));
    }

    #[test]
    fn changed_values_and_lengths_differ() {
        assert!(!is_subset(&json!({"replicas": 3}), &json!({"replicas": 5})));
        assert!(!is_subset(&json!({"a": [1, 2]}), &json!({"a": [1]})));
        assert!(!is_subset(&json!({"a": [1]}), &json!({"a": [1, 2]})));
        assert!(!is_subset(
            &json!({"image": "kvrocks:2.10"}),
            &json!({"image": "kvrocks:2.11"})
        ));
        assert!(!is_subset(&json!({"a": "x"}), &json!({})));
        assert!(!is_subset(&json!({"a": true}), &json!({})));
    }

    #[test]
    fn omitted_empty_values_match() {
        let desired = json!({"hostNetwork": false, "port": 0, "name": "", "env": [], "sc": {"x": null}, "n": null});
        assert!(is_subset(&desired, &json!({})));
        assert!(is_subset(&json!({"n": null}), &json!({"n": 5})));
        assert!(is_subset(&json!({"a": 1}), &json!({"a": 1.0})));
    }

    #[test]
    fn quantities_compare_by_amount_only_under_resource_keys() {
        let desired = json!({"resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}, "requests": {"cpu": "0.5"}}});
        let live = json!({"resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}});
        assert!(is_subset(&desired, &live));
        let bigger = json!({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "500m"}}});
        assert!(!is_subset(&desired, &bigger));
        assert!(is_subset(
            &json!({"emptyDir": {"sizeLimit": "1024Mi"}}),
            &json!({"emptyDir": {"sizeLimit": "1Gi"}})
        ));
        // An env value that looks like a quantity is still compared as text.
        assert!(!is_subset(
            &json!({"env": [{"value": "1000m"}]}),
            &json!({"env": [{"value": "1"}]})
        ));
    }

    #[test]
    fn parses_quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2Ki"), Some(2048.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1.5G"), Some(1.5e9));
        assert_eq!(parse_quantity("10Gi"), Some(10.0 * 1024f64.powi(3)));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("5Q"), None);
        assert_eq!(parse_quantity(""), None);
        assert_eq!(parse_quantity("-"), None);
    }

    #[test]
    fn status_comparison_sees_removed_fields() {
        let live = json!({"observedGeneration": 2, "migration": {"slots": "1-5"}});
        let desired = json!({"observedGeneration": 2});
        assert!(!same_ignoring_empty(&desired, &live));
        assert!(same_ignoring_empty(
            &json!({"a": 1, "b": []}),
            &json!({"a": 1})
        ));
    }

    #[test]
    fn strips_nulls_recursively() {
        let mut v = json!({"a": null, "b": {"c": null, "d": 1}, "e": [null, {"f": null}]});
        strip_nulls(&mut v);
        assert_eq!(v, json!({"b": {"d": 1}, "e": [null, {}]}));
    }
}
