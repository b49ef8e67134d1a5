//! The kvrocks.conf keys the operator owns, and the checks that keep users from setting them.
//!
//! One list serves both the CRD's CEL rule (the apiserver refuses the object) and the Rust-side
//! check (a CR written before a rule existed still gets `InvalidSpec` instead of a broken pod).

use std::collections::BTreeMap;

use kube::core::{Message, Rule};

use crate::config_keys;

/// Keys of kvrocks.conf that the operator sets itself and `spec.config` may not set.
///
/// - `bind`, `port`, `dir`, `pidfile`, `daemonize`, `supervised`, `unixsocket`, `unixsocketperm`:
///   the pod's network and filesystem layout, which probes and Services depend on.
/// - `requirepass`, `masterauth`: come from the auth Secret, never from the CR.
/// - `slaveof`: replication is driven by the operator (and sentinel), never by static config.
/// - `cluster-enabled`, `persist-cluster-nodes-enabled`: decided by the kind of resource.
/// - `log-dir`: logs go to stdout so `kubectl logs` works.
/// - `rename-command`: renaming CLUSTERX, SLAVEOF or CONFIG would blind the operator.
/// - `backup-dir`: a path of the pod's filesystem (backups are the operator's to place).
/// - `slave-read-only`: a writable replica takes writes its master never sees.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "bind",
    "port",
    "dir",
    "pidfile",
    "daemonize",
    "supervised",
    "unixsocket",
    "unixsocketperm",
    "requirepass",
    "masterauth",
    "slaveof",
    "cluster-enabled",
    "persist-cluster-nodes-enabled",
    "use-rsid-psync",
    "log-dir",
    "rename-command",
    "backup-dir",
    "slave-read-only",
];

/// Prefixes of keys that carry credentials (`namespace.<name> <token>`: a namespace's token, which
/// would end up in a ConfigMap).
pub const CREDENTIAL_PREFIXES: &[&str] = &["namespace."];

/// Largest number of entries `spec.config` may hold (bounds the CEL cost).
pub const MAX_CONFIG_ENTRIES: u32 = 128;
/// Longest config key accepted.
pub const MAX_CONFIG_KEY_LEN: usize = 64;
/// Longest config value accepted.
pub const MAX_CONFIG_VALUE_LEN: u32 = 1024;

fn owned_list_literal() -> String {
    let quoted: Vec<String> = OPERATOR_OWNED_KEYS
        .iter()
        .map(|k| format!("'{k}'"))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// The CEL rules placed on `spec.config`.
pub fn config_rules() -> Vec<Rule> {
    vec![
        Rule::new(format!("self.all(k, !(k in {}))", owned_list_literal())).message(Message::Message(format!(
            "config may not set keys the operator owns: {}",
            OPERATOR_OWNED_KEYS.join(", ")
        ))),
        Rule::new(format!(
            "self.all(k, size(k) <= {MAX_CONFIG_KEY_LEN} && k.matches('^[a-z0-9][a-z0-9._-]*$'))"
        ))
        .message("config keys are lower-case kvrocks.conf keys (letters, digits, '.', '_', '-')"),
        Rule::new(format!(
            "self.all(k, size(self[k]) <= {MAX_CONFIG_VALUE_LEN} && !self[k].contains('\\n') && !self[k].contains('\\r'))"
        ))
        .message(Message::Message(format!(
            "config values are single lines of at most {MAX_CONFIG_VALUE_LEN} characters"
        ))),
        Rule::new(format!(
            "self.all(k, {})",
            CREDENTIAL_PREFIXES
                .iter()
                .map(|p| format!("!k.startsWith('{p}')"))
                .collect::<Vec<_>>()
                .join(" && ")
        ))
        .message(Message::Message(format!(
            "config may not carry credentials: keys starting with {} hold tokens that would end up in a ConfigMap",
            CREDENTIAL_PREFIXES.join(", ")
        ))),
    ]
    .into_iter()
    .chain(crate::config_keys::typed_rules())
    .collect()
}

/// Every CEL rule of `spec.config` ([`config_rules`]) as the schema's `x-kubernetes-validations`.
pub fn config_validations() -> serde_json::Value {
    serde_json::Value::Array(
        config_rules()
            .into_iter()
            .map(|r| {
                let mut v = serde_json::json!({"rule": r.rule});
                if let Some(Message::Message(m)) = r.message {
                    v["message"] = serde_json::Value::String(m);
                }
                v
            })
            .collect(),
    )
}

/// Why a `spec.config` map is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The key is one the operator sets itself.
    #[error("config key {0:?} is owned by the operator and cannot be set")]
    Owned(String),
    /// The key is not a plain lower-case kvrocks.conf key.
    #[error("config key {0:?} is not a lower-case kvrocks.conf key")]
    BadKey(String),
    /// The value would not stay on one line of kvrocks.conf.
    #[error(
        "config value of {0:?} must be a single line of at most {MAX_CONFIG_VALUE_LEN} characters"
    )]
    BadValue(String),
    /// The key carries a credential.
    #[error("config key {0:?} carries a credential (a namespace token) and cannot be set")]
    Credential(String),
    /// Too many entries.
    #[error("config has {0} entries, at most {MAX_CONFIG_ENTRIES} are allowed")]
    TooMany(usize),
    /// The key names a path of the pod's filesystem.
    #[error("config key {0:?} names a path of the pod's filesystem and cannot be set")]
    Path(String),
    /// The value does not have the key's type.
    #[error("config value of {key:?} is {value:?}: kvrocks expects {expected}")]
    Value {
        /// The key.
        key: String,
        /// The value given (config values carry no secret: credential keys are refused).
        value: String,
        /// What kvrocks expects.
        expected: String,
    },
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && key.len() <= MAX_CONFIG_KEY_LEN
        && chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-' || c == '_'
        })
}

/// Checks a `spec.config` map with the same rules as the CRD's CEL; returns every problem.
pub fn check_config(config: &BTreeMap<String, String>) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    if config.len() > MAX_CONFIG_ENTRIES as usize {
        problems.push(ConfigError::TooMany(config.len()));
    }
    for (key, value) in config {
        if OPERATOR_OWNED_KEYS.contains(&key.as_str()) {
            problems.push(ConfigError::Owned(key.clone()));
        } else if CREDENTIAL_PREFIXES.iter().any(|p| key.starts_with(p))
            || config_keys::CREDENTIAL_KEYS.contains(&key.as_str())
        {
            problems.push(ConfigError::Credential(key.clone()));
        } else if config_keys::PATH_KEYS.contains(&key.as_str()) {
            problems.push(ConfigError::Path(key.clone()));
        } else if !is_plain_key(key) {
            problems.push(ConfigError::BadKey(key.clone()));
        } else if let Some(ty) = config_keys::value_type(key)
            && !config_keys::fits(ty, value)
            && !value.contains(['\n', '\r'])
        {
            problems.push(ConfigError::Value {
                key: key.clone(),
                value: value.chars().take(64).collect(),
                expected: config_keys::expected(ty),
            });
        }
        if value.len() > MAX_CONFIG_VALUE_LEN as usize
            || value.contains('\n')
            || value.contains('\r')
        {
            problems.push(ConfigError::BadValue(key.clone()));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_owned_key_is_refused() {
        for key in OPERATOR_OWNED_KEYS {
            assert_eq!(
                check_config(&map(&[(key, "x")])),
                vec![ConfigError::Owned(key.to_string())]
            );
        }
    }

    #[test]
    fn credential_keys_are_refused() {
        assert_eq!(
            check_config(&map(&[("namespace.tenant1", "token")])),
            vec![ConfigError::Credential("namespace.tenant1".into())]
        );
        assert!(
            config_rules()[3]
                .rule
                .contains("!k.startsWith('namespace.')")
        );
    }

    #[test]
    fn typed_values_paths_and_tls_passwords_are_refused() {
        assert_eq!(
            check_config(&map(&[("workers", "lots")])),
            vec![ConfigError::Value {
                key: "workers".into(),
                value: "lots".into(),
                expected: "an integer from 1 to 256".into()
            }]
        );
        assert_eq!(
            check_config(&map(&[("tls-cert-file", "/etc/passwd")])),
            vec![ConfigError::Path("tls-cert-file".into())]
        );
        assert_eq!(
            check_config(&map(&[("tls-key-file-pass", "x")])),
            vec![ConfigError::Credential("tls-key-file-pass".into())]
        );
        assert!(
            check_config(&map(&[("no-such-key", "1")])).is_empty(),
            "left to the running kvrocks"
        );
    }

    #[test]
    fn ordinary_keys_pass() {
        assert!(
            check_config(&map(&[("workers", "8"), ("rocksdb.block_size", "16384")])).is_empty()
        );
    }

    #[test]
    fn upper_case_and_multi_line_are_refused() {
        assert_eq!(
            check_config(&map(&[("Requirepass", "x")])),
            vec![ConfigError::BadKey("Requirepass".into())]
        );
        assert_eq!(
            check_config(&map(&[("workers", "8\nrequirepass x")])),
            vec![ConfigError::BadValue("workers".into())]
        );
    }

    #[test]
    fn the_cel_rule_names_every_owned_key() {
        let rules = config_rules();
        for key in OPERATOR_OWNED_KEYS {
            assert!(
                rules[0].rule.contains(&format!("'{key}'")),
                "{key} missing from CEL rule"
            );
        }
    }
}
