//! Parsers from raw replies (text or RESP values) to typed structs; none of them panics on any input.

pub mod acl;
pub mod cluster;
pub mod event;
pub mod info;
pub mod role;
pub mod sentinel;

use std::borrow::Cow;
use std::collections::BTreeMap;

use fred::types::Value;

/// A reply did not have the expected shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {what}: {reason}")]
pub struct ParseError {
    what: &'static str,
    reason: String,
}

impl ParseError {
    /// Builds an error about `what` (e.g. "ROLE reply") and why.
    pub fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            reason: reason.into(),
        }
    }

    /// What was being parsed.
    pub fn what(&self) -> &'static str {
        self.what
    }
}

/// A value as text: strings, bytes (lossily), numbers and booleans; `None` for nil, arrays and maps.
pub fn value_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(&**s)),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b)),
        Value::Integer(i) => Some(Cow::Owned(i.to_string())),
        Value::Double(d) => Some(Cow::Owned(d.to_string())),
        Value::Boolean(b) => Some(Cow::Owned(b.to_string())),
        Value::Null | Value::Queued | Value::Map(_) | Value::Array(_) => None,
    }
}

/// A value as a signed integer: integers, or text holding one.
pub fn value_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(i) => Some(*i),
        other => value_text(other).and_then(|t| t.trim().parse().ok()),
    }
}

/// The whole reply as one text (for INFO, CLUSTER INFO, CLUSTER NODES), or an error naming `what`.
pub fn reply_text(value: &Value, what: &'static str) -> Result<String, ParseError> {
    value_text(value)
        .map(Cow::into_owned)
        .ok_or_else(|| ParseError::new(what, format!("expected text, got {}", value.kind())))
}

/// A flat `[field, value, field, value, ...]` array (or a RESP3 map) as a field map.
///
/// Nested arrays and nils become empty strings; a trailing field without a value is dropped.
pub fn field_map(
    value: &Value,
    what: &'static str,
) -> Result<BTreeMap<String, String>, ParseError> {
    match value {
        Value::Array(items) => Ok(items
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((
                    value_text(k)?.into_owned(),
                    value_text(v).map(Cow::into_owned).unwrap_or_default(),
                )),
                _ => None,
            })
            .collect()),
        Value::Map(map) => Ok(map
            .iter()
            .filter_map(|(k, v)| {
                Some((
                    k.as_str()?.to_owned(),
                    value_text(v).map(Cow::into_owned).unwrap_or_default(),
                ))
            })
            .collect()),
        other => Err(ParseError::new(
            what,
            format!("expected a field/value array, got {}", other.kind()),
        )),
    }
}

/// Splits an INFO-style line `key:value` at the first colon, trimming both sides (kvrocks writes `key: value`).
pub fn split_kv(line: &str) -> Option<(&str, &str)> {
    let (k, v) = line.split_once(':')?;
    let k = k.trim();
    (!k.is_empty()).then(|| (k, v.trim()))
}

/// Parses a comma-separated `a=1,b=2` list (INFO `slave0:` and `db0:` values) into pairs.
pub fn split_pairs(text: &str) -> BTreeMap<&str, &str> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// Parses text as a number, tolerating surrounding spaces.
pub fn num<T: std::str::FromStr>(text: &str) -> Option<T> {
    text.trim().parse().ok()
}

#[cfg(test)]
pub(crate) mod strategies {
    //! proptest strategies producing arbitrary RESP values.
    use fred::types::Value;
    use proptest::prelude::*;

    /// Arbitrary values up to a few levels deep, biased towards strings that look like replies.
    pub fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            any::<bool>().prop_map(Value::Boolean),
            "\\PC{0,12}".prop_map(Value::from),
            prop::sample::select(vec![
                "master",
                "slave",
                "sentinel",
                "connected",
                "sync",
                "-1",
                "",
                "6379",
                "127.0.0.1",
                "name",
                "ip",
                "port",
                "flags",
                "s_down,o_down,master",
                "?",
                "99999999999999999999",
            ])
            .prop_map(Value::from),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::Bytes(b.into())),
        ];
        leaf.prop_recursive(3, 48, 8, |inner| {
            proptest::collection::vec(inner, 0..8).prop_map(Value::Array)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_lines_are_lenient() {
        assert_eq!(
            split_kv("migrating_state: success"),
            Some(("migrating_state", "success"))
        );
        assert_eq!(split_kv("role:master\r"), Some(("role", "master")));
        assert_eq!(
            split_kv("os:Linux 6.1 x86_64"),
            Some(("os", "Linux 6.1 x86_64"))
        );
        assert_eq!(split_kv("executable:/a:b"), Some(("executable", "/a:b")));
        assert_eq!(split_kv("no colon"), None);
        assert_eq!(split_kv(":x"), None);
    }

    #[test]
    fn field_maps_from_arrays() {
        let v = Value::Array(vec![
            "a".into(),
            "1".into(),
            "b".into(),
            Value::Null,
            "dangling".into(),
        ]);
        let m = field_map(&v, "test").unwrap();
        assert_eq!(m.get("a").map(String::as_str), Some("1"));
        assert_eq!(m.get("b").map(String::as_str), Some(""));
        assert!(!m.contains_key("dangling"));
        assert!(field_map(&Value::Null, "test").is_err());
    }
}
