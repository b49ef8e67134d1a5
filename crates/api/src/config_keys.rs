//! The kvrocks.conf keys of kvrocks 2.10.1 that `spec.config` may set, each with the type of its
//! value, and the keys refused because they name a path of the pod or carry a credential.
//!
//! The list is what `CONFIG GET *` answers on kvrocks 2.10.1, less the keys the operator owns
//! ([`crate::config::OPERATOR_OWNED_KEYS`]); the types and ranges are kvrocks' own for those
//! keys. A key that is not listed is not refused here: the operator asks the running kvrocks
//! whether it knows it (a newer version may) and names it in a condition when it does not.

use crate::config::{CREDENTIAL_PREFIXES, OPERATOR_OWNED_KEYS};

/// What a key's value must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    /// `yes` or `no`.
    YesNo,
    /// A decimal integer within the bounds.
    Int(i64, i64),
    /// An integer with an optional unit (`K`, `M`, `G`, `T`), at least the bound, in bytes.
    Size(u64),
    /// One of the words.
    Enum(&'static [&'static str]),
    /// A cron line (five fields of digits, `*`, `,`, `-`, `/`), or empty.
    Cron,
    /// Any single line.
    Text,
}

const INT_MAX: i64 = i32::MAX as i64;
const INT_MIN: i64 = i32::MIN as i64;

/// The keys `spec.config` may set, by name, for kvrocks 2.10.1.
pub const KNOWN_KEYS: &[(&str, ValueType)] = {
    use ValueType::*;
    &[
        ("auto-resize-block-and-sst", YesNo),
        ("bgsave-cron", Cron),
        ("compact-cron", Cron),
        ("compaction-checker-cron", Cron),
        ("compaction-checker-range", Text),
        ("db-name", Text),
        ("dbsize-scan-cron", Cron),
        ("force-compact-file-age", Int(60, i64::MAX)),
        ("force-compact-file-min-deleted-percentage", Int(1, 100)),
        ("fullsync-recv-file-delay", Int(0, INT_MAX)),
        ("json-max-nesting-depth", Int(0, INT_MAX)),
        ("json-storage-format", Enum(&["json", "cbor"])),
        (
            "log-level",
            Enum(&["debug", "info", "warning", "error", "fatal"]),
        ),
        ("log-retention-days", Int(-1, INT_MAX)),
        ("master-use-repl-port", YesNo),
        ("max-backup-keep-hours", Int(0, INT_MAX)),
        ("max-backup-to-keep", Int(0, 1)),
        ("max-bitmap-to-string-mb", Int(0, INT_MAX)),
        ("max-db-size", Int(0, INT_MAX)),
        ("max-io-mb", Int(0, INT_MAX)),
        ("max-replication-mb", Int(0, INT_MAX)),
        ("maxclients", Int(0, INT_MAX)),
        ("migrate-batch-rate-limit-mb", Int(1, INT_MAX)),
        ("migrate-batch-size-kb", Int(1, INT_MAX)),
        ("migrate-pipeline-size", Int(1, INT_MAX)),
        ("migrate-sequence-gap", Int(1, INT_MAX)),
        ("migrate-speed", Int(0, INT_MAX)),
        ("migrate-type", Enum(&["redis-command", "raw-key-value"])),
        ("profiling-sample-commands", Text),
        ("profiling-sample-ratio", Int(0, 100)),
        ("profiling-sample-record-max-len", Int(0, INT_MAX)),
        ("profiling-sample-record-threshold-ms", Int(0, INT_MAX)),
        ("proto-max-bulk-len", Size(1 << 20)),
        ("purge-backup-on-fullsync", YesNo),
        ("redis-cursor-compatible", YesNo),
        ("repl-namespace-enabled", YesNo),
        ("replica-announce-ip", Text),
        ("replica-announce-port", Int(0, 65535)),
        ("resp3-enabled", YesNo),
        ("rocksdb.avoid_unnecessary_blocking_io", YesNo),
        ("rocksdb.blob_file_size", Int(0, INT_MAX)),
        ("rocksdb.blob_garbage_collection_age_cutoff", Int(0, 100)),
        ("rocksdb.block_cache_size", Int(0, INT_MAX)),
        ("rocksdb.block_cache_type", Enum(&["lru", "hcc"])),
        ("rocksdb.block_size", Int(0, INT_MAX)),
        ("rocksdb.cache_index_and_filter_blocks", YesNo),
        ("rocksdb.compaction_readahead_size", Int(0, 64 << 20)),
        (
            "rocksdb.compression",
            Enum(&["no", "snappy", "lz4", "zstd", "zlib"]),
        ),
        ("rocksdb.compression_level", Int(INT_MIN, INT_MAX)),
        ("rocksdb.delayed_write_rate", Int(0, i64::MAX)),
        ("rocksdb.disable_auto_compactions", YesNo),
        ("rocksdb.enable_blob_files", YesNo),
        ("rocksdb.enable_blob_garbage_collection", YesNo),
        ("rocksdb.enable_pipelined_write", YesNo),
        ("rocksdb.level0_file_num_compaction_trigger", Int(1, 1024)),
        ("rocksdb.level0_slowdown_writes_trigger", Int(0, 1024)),
        ("rocksdb.level0_stop_writes_trigger", Int(1, 1024)),
        ("rocksdb.level_compaction_dynamic_level_bytes", YesNo),
        ("rocksdb.max_background_compactions", Int(-1, 32)),
        ("rocksdb.max_background_flushes", Int(-1, 32)),
        ("rocksdb.max_background_jobs", Int(0, 32)),
        ("rocksdb.max_bytes_for_level_base", Int(0, i64::MAX)),
        ("rocksdb.max_bytes_for_level_multiplier", Int(1, 100)),
        ("rocksdb.max_open_files", Int(-1, INT_MAX)),
        ("rocksdb.max_subcompactions", Int(0, 16)),
        ("rocksdb.max_total_wal_size", Int(0, INT_MAX)),
        ("rocksdb.max_write_buffer_number", Int(0, 256)),
        ("rocksdb.metadata_block_cache_size", Int(0, INT_MAX)),
        ("rocksdb.min_blob_size", Int(0, INT_MAX)),
        ("rocksdb.rate_limiter_auto_tuned", YesNo),
        ("rocksdb.read_options.async_io", YesNo),
        ("rocksdb.row_cache_size", Int(0, INT_MAX)),
        ("rocksdb.share_metadata_and_subkey_block_cache", YesNo),
        ("rocksdb.stats_dump_period_sec", Int(0, INT_MAX)),
        ("rocksdb.subkey_block_cache_size", Int(0, INT_MAX)),
        ("rocksdb.target_file_size_base", Int(1, 1024)),
        ("rocksdb.wal_size_limit_mb", Int(0, INT_MAX)),
        ("rocksdb.wal_ttl_seconds", Int(0, INT_MAX)),
        ("rocksdb.write_buffer_size", Int(0, 4096)),
        ("rocksdb.write_options.disable_wal", YesNo),
        ("rocksdb.write_options.low_pri", YesNo),
        (
            "rocksdb.write_options.memtable_insert_hint_per_batch",
            YesNo,
        ),
        ("rocksdb.write_options.no_slowdown", YesNo),
        ("rocksdb.write_options.sync", YesNo),
        (
            "rocksdb.write_options.write_batch_max_bytes",
            Int(0, i64::MAX),
        ),
        ("slave-empty-db-before-fullsync", YesNo),
        ("slave-priority", Int(0, INT_MAX)),
        ("slave-serve-stale-data", YesNo),
        ("slowlog-log-slower-than", Int(-1, INT_MAX)),
        ("slowlog-max-len", Int(0, INT_MAX)),
        ("tcp-backlog", Int(0, INT_MAX)),
        ("timeout", Int(0, INT_MAX)),
        ("tls-auth-clients", Enum(&["yes", "no", "optional"])),
        ("tls-ciphers", Text),
        ("tls-ciphersuites", Text),
        ("tls-port", Int(0, 65535)),
        ("tls-prefer-server-ciphers", YesNo),
        ("tls-protocols", Text),
        ("tls-replication", YesNo),
        ("tls-session-cache-size", Int(0, INT_MAX)),
        ("tls-session-cache-timeout", Int(0, INT_MAX)),
        ("tls-session-caching", YesNo),
        ("txn-context-enabled", YesNo),
        ("workers", Int(1, 256)),
    ]
};

/// Keys whose value is a path of the pod's filesystem, where the operator mounts nothing a user
/// could point them at (besides the owned `dir`, `log-dir`, `backup-dir`, `pidfile`,
/// `unixsocket`).
pub const PATH_KEYS: &[&str] = &[
    "tls-ca-cert-dir",
    "tls-ca-cert-file",
    "tls-cert-file",
    "tls-key-file",
];

/// Keys that carry a credential (besides [`CREDENTIAL_PREFIXES`] and the owned passwords).
pub const CREDENTIAL_KEYS: &[&str] = &["tls-key-file-pass"];

/// The type of a known key's value.
pub fn value_type(key: &str) -> Option<ValueType> {
    KNOWN_KEYS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
}

/// Whether `value` fits `ty`.
pub fn fits(ty: ValueType, value: &str) -> bool {
    match ty {
        ValueType::YesNo => matches!(value, "yes" | "no"),
        ValueType::Int(min, max) => value.parse::<i64>().is_ok_and(|n| (min..=max).contains(&n)),
        ValueType::Size(min) => size_bytes(value).is_some_and(|n| n >= min),
        ValueType::Enum(words) => words.contains(&value),
        ValueType::Cron => {
            let fields: Vec<&str> = value.split_whitespace().collect();
            fields.is_empty()
                || (fields.len() == 5
                    && fields.iter().all(|f| {
                        f.chars()
                            .all(|c| c.is_ascii_digit() || matches!(c, '*' | ',' | '-' | '/'))
                    }))
        }
        ValueType::Text => true,
    }
}

/// What `ty` asks, for messages.
pub fn expected(ty: ValueType) -> String {
    match ty {
        ValueType::YesNo => "yes or no".to_owned(),
        ValueType::Int(min, max) => format!("an integer from {min} to {max}"),
        ValueType::Size(min) => {
            format!("a size in bytes with an optional unit K, M, G or T, at least {min}")
        }
        ValueType::Enum(words) => format!("one of {}", words.join(", ")),
        ValueType::Cron => "a cron line of five fields, or empty".to_owned(),
        ValueType::Text => "a single line".to_owned(),
    }
}

/// `512`, `512K`, `1m`, `2G`... in bytes (kvrocks' units are powers of 1024).
fn size_bytes(value: &str) -> Option<u64> {
    let (digits, unit) = match value.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&value[..i], c.to_ascii_uppercase()),
        _ => (value, ' '),
    };
    let shift = match unit {
        ' ' => 0,
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn quoted(keys: impl Iterator<Item = &'static str>) -> String {
    let keys: Vec<String> = keys.map(|k| format!("'{k}'")).collect();
    format!("[{}]", keys.join(", "))
}

/// The CEL rules over `spec.config` for the value types CEL can check cheaply, one per key so
/// each message names its key: yes/no keys, integer keys (the digits; the ranges are checked by
/// the operator), the enumerations; and one refusing the path and credential keys.
pub fn typed_rules() -> Vec<kube::core::Rule> {
    use kube::core::{Message, Rule};
    let mut rules: Vec<Rule> = KNOWN_KEYS
        .iter()
        .filter_map(|(key, ty)| {
            let (test, what) = match ty {
                ValueType::YesNo => ("in ['yes', 'no']".to_owned(), "yes or no".to_owned()),
                ValueType::Int(..) => (
                    ".matches('^-?[0-9]{1,19}$')".to_owned(),
                    "an integer".to_owned(),
                ),
                ValueType::Enum(words) => (
                    format!("in {}", quoted(words.iter().copied())),
                    format!("one of {}", words.join(", ")),
                ),
                _ => return None,
            };
            let check = if test.starts_with('.') {
                format!("self['{key}']{test}")
            } else {
                format!("self['{key}'] {test}")
            };
            Some(
                Rule::new(format!("!('{key}' in self) || {check}"))
                    .message(Message::Message(format!("config {key} must be {what}"))),
            )
        })
        .collect();
    let refused = quoted(PATH_KEYS.iter().chain(CREDENTIAL_KEYS).copied());
    rules.push(
        Rule::new(format!("self.all(k, !(k in {refused}))")).message(Message::Message(format!(
            "config may not set {}: paths in the pod filesystem, or a credential that would end up in a ConfigMap",
            PATH_KEYS.iter().chain(CREDENTIAL_KEYS).copied().collect::<Vec<_>>().join(", ")
        ))),
    );
    rules
}

/// Every key the checks know of is either settable, owned, a path or a credential; none twice.
pub fn all_keys_are_classified_once() -> bool {
    let mut seen = std::collections::BTreeSet::new();
    KNOWN_KEYS
        .iter()
        .map(|(k, _)| *k)
        .chain(OPERATOR_OWNED_KEYS.iter().copied())
        .chain(PATH_KEYS.iter().copied())
        .chain(CREDENTIAL_KEYS.iter().copied())
        .all(|k| seen.insert(k) && !CREDENTIAL_PREFIXES.iter().any(|p| k.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_by_type() {
        assert!(fits(ValueType::YesNo, "yes"));
        assert!(!fits(ValueType::YesNo, "true"));
        assert!(fits(value_type("workers").unwrap(), "8"));
        assert!(!fits(value_type("workers").unwrap(), "0"));
        assert!(!fits(value_type("workers").unwrap(), "lots"));
        assert!(fits(value_type("slowlog-log-slower-than").unwrap(), "-1"));
        assert!(fits(value_type("proto-max-bulk-len").unwrap(), "512M"));
        assert!(fits(value_type("proto-max-bulk-len").unwrap(), "1048576"));
        assert!(!fits(value_type("proto-max-bulk-len").unwrap(), "1K"));
        assert!(!fits(value_type("proto-max-bulk-len").unwrap(), "M"));
        assert!(!fits(
            value_type("proto-max-bulk-len").unwrap(),
            "99999999999999999999G"
        ));
        assert!(fits(value_type("rocksdb.compression").unwrap(), "zstd"));
        assert!(!fits(value_type("rocksdb.compression").unwrap(), "brotli"));
        assert!(fits(ValueType::Cron, "0 3 * * *"));
        assert!(fits(ValueType::Cron, ""));
        assert!(!fits(ValueType::Cron, "every night"));
        assert!(!fits(ValueType::Cron, "0 3 * *"));
    }

    #[test]
    fn every_key_is_classified_once() {
        assert!(all_keys_are_classified_once());
        assert!(value_type("dir").is_none());
    }

    #[test]
    fn the_cel_rules_cover_every_typed_key() {
        let rules = typed_rules();
        for (key, ty) in KNOWN_KEYS {
            let covered = rules.iter().any(|r| r.rule.contains(&format!("'{key}'")));
            let checkable = !matches!(ty, ValueType::Text | ValueType::Cron | ValueType::Size(_));
            assert_eq!(covered, checkable, "{key}");
        }
        for key in PATH_KEYS.iter().chain(CREDENTIAL_KEYS) {
            assert!(rules.last().unwrap().rule.contains(&format!("'{key}'")));
        }
    }
}
