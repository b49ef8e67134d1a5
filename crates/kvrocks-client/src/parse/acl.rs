//! `ACL GETUSER` replies (redis-sentinel 6.2+): the hashes of the passwords a user accepts.

use fred::types::Value;

use super::{ParseError, value_text};

const WHAT: &str = "ACL GETUSER reply";

/// The `passwords` field of an `ACL GETUSER` reply (a flat array or a map of field -> value):
/// the SHA-256 hex of every password the user accepts, lowercased.
pub fn password_hashes(reply: &Value) -> Result<Vec<String>, ParseError> {
    let field = match reply {
        Value::Array(items) => items
            .chunks(2)
            .find(|kv| kv.first().and_then(value_text).as_deref() == Some("passwords"))
            .and_then(|kv| kv.get(1)),
        Value::Map(map) => map
            .iter()
            .find(|(k, _)| k.as_str() == Some("passwords"))
            .map(|(_, v)| v),
        Value::Null => return Err(ParseError::new(WHAT, "no such user")),
        other => {
            return Err(ParseError::new(
                WHAT,
                format!("expected an array, got {}", other.kind()),
            ));
        }
    };
    let Some(Value::Array(hashes)) = field else {
        return Err(ParseError::new(WHAT, "no \"passwords\" array"));
    };
    hashes
        .iter()
        .map(|h| match value_text(h) {
            Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(t.to_ascii_lowercase())
            }
            _ => Err(ParseError::new(WHAT, "a password hash is not SHA-256 hex")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: &str) -> Value {
        Value::String(t.into())
    }

    #[test]
    fn reads_the_hashes_of_a_flat_reply() {
        let h = "9d39d2e98507122f31346379e9b915abc4fbe9af936d4dabbacba45a702590bc";
        let reply = Value::Array(vec![
            s("flags"),
            Value::Array(vec![s("on")]),
            s("passwords"),
            Value::Array(vec![s(&h.to_uppercase())]),
            s("commands"),
            s("+@all"),
        ]);
        assert_eq!(password_hashes(&reply).unwrap(), vec![h.to_owned()]);
    }

    #[test]
    fn refuses_what_is_not_a_user() {
        assert!(password_hashes(&Value::Null).is_err());
        assert!(password_hashes(&Value::Array(vec![s("flags")])).is_err());
        let bad = Value::Array(vec![s("passwords"), Value::Array(vec![s("short")])]);
        assert!(password_hashes(&bad).is_err());
    }
}
