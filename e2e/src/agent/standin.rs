//! `node-agent standin-kvrocks`: redis-server standing in for kvrocks when the machine has no
//! kvrocks binary.
//!
//! Containers of kvrocks images run `kvrocks -c /path/kvrocks.conf [--key value ...]`; the image
//! map turns that into `node-agent standin-kvrocks -c /path/kvrocks.conf [--key value ...]`. The
//! stand-in reads the kvrocks.conf (and the `--key value` overrides, which win over the file as
//! they do in kvrocks), keeps the keys redis 7 understands with the same meaning, and replaces
//! itself with `redis-server` and those keys as arguments. It always adds `--protected-mode no`,
//! `--save ""`, `--appendonly yes` (the data survives a restart in `dir`) and `--daemonize no`.
//! Cluster mode is refused: redis cluster and kvrocks cluster mode differ too much.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// kvrocks' default port (redis' would be 6379).
pub const KVROCKS_DEFAULT_PORT: &str = "6666";

/// What [`translate_conf`] makes of a kvrocks.conf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The redis-server arguments.
    pub args: Vec<String>,
    /// The kvrocks keys that were not passed on (lower-case, sorted, each once).
    pub dropped: Vec<String>,
    /// The data directory (`dir`), if the configuration sets one: redis-server needs it to exist.
    pub dir: Option<String>,
}

/// How a kvrocks key becomes redis-server arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One value, passed as a single argument (spaces included).
    Single,
    /// A whitespace-separated list, each item its own argument (`bind`).
    List,
    /// `slaveof host port`, or `slaveof no one` (no replication).
    ReplicaOf,
    /// kvrocks log levels, mapped onto redis' (`info` is redis' `notice`).
    LogLevel,
    /// `rename-command OLD NEW`: may occur several times, each kept.
    Repeated,
    /// Consumed here, never passed on: `cluster-enabled` (checked), `daemonize` and the keys the
    /// stand-in forces (`save`, `appendonly`, `protected-mode`).
    Forced,
}

/// The redis name and the kind of a kvrocks key that redis 7 understands with the same meaning.
fn known(key: &str) -> Option<(&'static str, Kind)> {
    use Kind::{Forced, List, LogLevel, Repeated, ReplicaOf, Single};
    let found = match key {
        "port" => ("port", Single),
        "bind" => ("bind", List),
        "requirepass" => ("requirepass", Single),
        "masterauth" => ("masterauth", Single),
        "masteruser" => ("masteruser", Single),
        "dir" => ("dir", Single),
        "slaveof" | "replicaof" => ("replicaof", ReplicaOf),
        "timeout" => ("timeout", Single),
        "maxclients" => ("maxclients", Single),
        "tcp-backlog" => ("tcp-backlog", Single),
        "tcp-keepalive" => ("tcp-keepalive", Single),
        "slave-read-only" | "replica-read-only" => ("replica-read-only", Single),
        "slave-priority" | "replica-priority" => ("replica-priority", Single),
        "slave-serve-stale-data" | "replica-serve-stale-data" => {
            ("replica-serve-stale-data", Single)
        }
        "slave-announce-ip" | "replica-announce-ip" => ("replica-announce-ip", Single),
        "slave-announce-port" | "replica-announce-port" => ("replica-announce-port", Single),
        "repl-timeout" => ("repl-timeout", Single),
        "repl-ping-slave-period" | "repl-ping-replica-period" => {
            ("repl-ping-replica-period", Single)
        }
        "pidfile" => ("pidfile", Single),
        "unixsocket" => ("unixsocket", Single),
        "unixsocketperm" => ("unixsocketperm", Single),
        "slowlog-log-slower-than" => ("slowlog-log-slower-than", Single),
        "slowlog-max-len" => ("slowlog-max-len", Single),
        "loglevel" => ("loglevel", LogLevel),
        "rename-command" => ("rename-command", Repeated),
        "tls-port" => ("tls-port", Single),
        "tls-cert-file" => ("tls-cert-file", Single),
        "tls-key-file" => ("tls-key-file", Single),
        "tls-key-file-pass" => ("tls-key-file-pass", Single),
        "tls-ca-cert-file" => ("tls-ca-cert-file", Single),
        "tls-ca-cert-dir" => ("tls-ca-cert-dir", Single),
        "tls-auth-clients" => ("tls-auth-clients", Single),
        "tls-protocols" => ("tls-protocols", Single),
        "tls-ciphers" => ("tls-ciphers", Single),
        "tls-ciphersuites" => ("tls-ciphersuites", Single),
        "tls-prefer-server-ciphers" => ("tls-prefer-server-ciphers", Single),
        "tls-session-caching" => ("tls-session-caching", Single),
        "tls-session-cache-size" => ("tls-session-cache-size", Single),
        "tls-session-cache-timeout" => ("tls-session-cache-timeout", Single),
        "tls-replication" => ("tls-replication", Single),
        "cluster-enabled" => ("cluster-enabled", Forced),
        "save" | "appendonly" | "protected-mode" | "daemonize" => ("", Forced),
        _ => return None,
    };
    Some(found)
}

/// The settings collected so far: redis key and value tokens, in first-seen order (a later
/// setting of the same key replaces the value in place).
#[derive(Default)]
struct Settings {
    values: Vec<(&'static str, Kind, Vec<String>)>,
    renames: Vec<Vec<String>>,
    dropped: BTreeSet<String>,
    cluster_enabled: bool,
}

impl Settings {
    /// Records one kvrocks setting (`key` lower-case, `tokens` non-empty).
    fn set(&mut self, key: &str, tokens: Vec<String>, origin: &str) -> Result<(), String> {
        let Some((name, kind)) = known(key) else {
            self.dropped.insert(key.to_owned());
            return Ok(());
        };
        match kind {
            Kind::Forced => {
                if key == "cluster-enabled" {
                    self.cluster_enabled = tokens.join(" ").eq_ignore_ascii_case("yes");
                } else if key == "daemonize" && tokens.join(" ").eq_ignore_ascii_case("yes") {
                    // Overridden by `--daemonize no`: say so.
                    self.dropped.insert(key.to_owned());
                }
                return Ok(());
            }
            Kind::Repeated => {
                if tokens.len() != 2 {
                    return Err(format!("{origin}: {key} takes two arguments"));
                }
                self.renames.push(tokens);
                return Ok(());
            }
            Kind::ReplicaOf => {
                let joined = tokens.join(" ");
                if !joined.eq_ignore_ascii_case("no one") && tokens.len() != 2 {
                    return Err(format!("{origin}: {key} takes `host port` or `no one`"));
                }
            }
            Kind::LogLevel => {
                let level = tokens.join(" ").to_ascii_lowercase();
                if !matches!(
                    level.as_str(),
                    "debug" | "info" | "notice" | "verbose" | "warning" | "error" | "fatal"
                ) {
                    return Err(format!("{origin}: unknown loglevel {level:?}"));
                }
            }
            Kind::Single | Kind::List => {}
        }
        match self.values.iter_mut().find(|(n, _, _)| *n == name) {
            Some(slot) => slot.2 = tokens,
            None => self.values.push((name, kind, tokens)),
        }
        Ok(())
    }

    fn get(&self, name: &str) -> Option<&[String]> {
        self.values
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, v)| v.as_slice())
    }

    fn into_translation(self) -> Translation {
        let mut args = Vec::new();
        if self.get("port").is_none() {
            args.extend(["--port".to_owned(), KVROCKS_DEFAULT_PORT.to_owned()]);
        }
        let dir = self.get("dir").map(|v| v.join(" "));
        for (name, kind, tokens) in self.values {
            match kind {
                Kind::Single => args.extend([format!("--{name}"), tokens.join(" ")]),
                Kind::List => {
                    args.push(format!("--{name}"));
                    args.extend(tokens);
                }
                Kind::ReplicaOf => {
                    if !tokens.join(" ").eq_ignore_ascii_case("no one") {
                        args.push(format!("--{name}"));
                        args.extend(tokens);
                    }
                }
                Kind::LogLevel => {
                    let level = match tokens.join(" ").to_ascii_lowercase().as_str() {
                        "debug" => "debug",
                        "verbose" => "verbose",
                        "info" | "notice" => "notice",
                        _ => "warning",
                    };
                    args.extend([format!("--{name}"), level.to_owned()]);
                }
                Kind::Repeated | Kind::Forced => {}
            }
        }
        for rename in self.renames {
            args.push("--rename-command".to_owned());
            args.extend(rename);
        }
        for (key, value) in [
            ("--protected-mode", "no"),
            ("--save", ""),
            ("--appendonly", "yes"),
            ("--daemonize", "no"),
        ] {
            args.extend([key.to_owned(), value.to_owned()]);
        }
        Translation {
            args,
            dropped: self.dropped.into_iter().collect(),
            dir,
        }
    }
}

/// Splits one kvrocks.conf line into its key (lower-case) and value tokens. `None` for blank and
/// comment lines and for keys without a value (kvrocks ignores those). Tokens may be double- or
/// single-quoted; an unquoted `#` starting a token begins a comment.
fn parse_line(line: &str, number: usize) -> Result<Option<(String, Vec<String>)>, String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut token = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == first {
                    closed = true;
                    break;
                }
                if c != '\\' {
                    token.push(c);
                    continue;
                }
                let Some(escaped) = chars.next() else { break };
                match (first, escaped) {
                    ('"', 'n') => token.push('\n'),
                    ('"', 't') => token.push('\t'),
                    ('"', 'r') => token.push('\r'),
                    ('"', '\\' | '"') | ('\'', '\'') => token.push(escaped),
                    _ => {
                        token.push('\\');
                        token.push(escaped);
                    }
                }
            }
            if !closed {
                return Err(format!("line {number}: unterminated quoted value"));
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!(
                    "line {number}: a closing quote must be followed by a space"
                ));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                token.push(c);
            }
        }
        tokens.push(token);
    }
    let mut tokens = tokens.into_iter();
    let Some(key) = tokens.next() else {
        return Ok(None);
    };
    let values: Vec<String> = tokens.collect();
    if values.iter().all(String::is_empty) {
        return Ok(None);
    }
    Ok(Some((key.to_ascii_lowercase(), values)))
}

/// Translates a kvrocks.conf (`conf`, the file's text) and kvrocks' `--key value` overrides
/// (`extra`, which win over the file) into redis-server arguments, listing the keys it drops.
///
/// Fails on a malformed line or override and on `cluster-enabled yes`. Error messages never
/// contain values (they may be passwords).
pub fn translate_conf(conf: &str, extra: &[String]) -> Result<Translation, String> {
    let mut settings = Settings::default();
    for (index, line) in conf.lines().enumerate() {
        let number = index + 1;
        if let Some((key, values)) = parse_line(line, number)? {
            settings.set(&key, values, &format!("line {number}"))?;
        }
    }
    let mut extra = extra.iter();
    while let Some(flag) = extra.next() {
        let Some(key) = flag.strip_prefix("--").filter(|k| !k.is_empty()) else {
            return Err(format!(
                "unexpected argument {flag:?}: expected --key value"
            ));
        };
        let key = key.to_ascii_lowercase();
        let Some(value) = extra.next() else {
            return Err(format!("--{key} needs a value"));
        };
        let tokens: Vec<String> = match known(&key) {
            Some((_, Kind::Single)) => vec![value.clone()],
            _ => value.split_whitespace().map(str::to_owned).collect(),
        };
        if tokens.iter().all(String::is_empty) {
            continue;
        }
        settings.set(&key, tokens, &format!("--{key}"))?;
    }
    if settings.cluster_enabled {
        return Err(
            "cluster mode is not supported by the redis-server stand-in; set KVROCKS_BIN to a \
             real kvrocks binary"
                .to_owned(),
        );
    }
    Ok(settings.into_translation())
}

/// The redis-server arguments for a kvrocks.conf and kvrocks' `--key value` overrides (see
/// [`translate_conf`], which also lists the dropped keys).
pub fn translate(conf: &str, extra: &[String]) -> Result<Vec<String>, String> {
    translate_conf(conf, extra).map(|t| t.args)
}

/// kvrocks' command line: the configuration file and the `--key value` overrides.
fn parse_args(args: &[String]) -> Result<(Option<PathBuf>, Vec<String>), String> {
    let mut file: Option<PathBuf> = None;
    let mut extra = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "-c" || arg == "--config" {
            let Some(path) = args.next() else {
                return Err(format!("{arg} needs a file"));
            };
            file = Some(PathBuf::from(path));
        } else if let Some(path) = arg.strip_prefix("--config=") {
            file = Some(PathBuf::from(path));
        } else if arg.starts_with("--") {
            let Some(value) = args.next() else {
                return Err(format!("{arg} needs a value"));
            };
            extra.push(arg.clone());
            extra.push(value.clone());
        } else if arg.starts_with('-') {
            return Err(format!("unsupported option {arg}"));
        } else if file.is_none() {
            file = Some(PathBuf::from(arg));
        } else {
            return Err(format!("unexpected argument {arg:?}"));
        }
    }
    Ok((file, extra))
}

/// `redis-server` on `PATH`, else `/usr/bin/redis-server`.
fn redis_server() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// `node-agent standin-kvrocks <kvrocks args>`: replaces the process with redis-server configured
/// from the kvrocks.conf (`-c FILE`, `--config FILE` or the first positional argument) and the
/// `--key value` overrides. Returns only on failure: 2 for a configuration the stand-in refuses or
/// cannot read, 1 when redis-server cannot be started.
pub fn main(args: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;

    let (file, extra) = match parse_args(args) {
        Ok(parsed) => parsed,
        Err(reason) => {
            eprintln!("standin-kvrocks: {reason}");
            return 2;
        }
    };
    let conf = match &file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("standin-kvrocks: cannot read {}: {e}", path.display());
                return 2;
            }
        },
        None => String::new(),
    };
    let translation = match translate_conf(&conf, &extra) {
        Ok(t) => t,
        Err(reason) => {
            match &file {
                Some(path) => eprintln!("standin-kvrocks: {}: {reason}", path.display()),
                None => eprintln!("standin-kvrocks: {reason}"),
            }
            return 2;
        }
    };
    let dropped = if translation.dropped.is_empty() {
        "none".to_owned()
    } else {
        translation.dropped.join(", ")
    };
    eprintln!("standin-kvrocks: redis-server STAND-IN for kvrocks (dropped keys: {dropped})");
    if let Some(dir) = &translation.dir
        && let Err(e) = std::fs::create_dir_all(Path::new(dir))
    {
        eprintln!("standin-kvrocks: cannot create the data directory {dir}: {e}");
        return 2;
    }
    let program = redis_server();
    let error = std::process::Command::new(&program)
        .args(&translation.args)
        .exec();
    eprintln!("standin-kvrocks: cannot run {}: {error}", program.display());
    1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The value(s) following `--key` in `args`, up to the next `--` flag.
    fn values_of<'a>(args: &'a [String], key: &str) -> Option<Vec<&'a str>> {
        let at = args.iter().position(|a| a == key)?;
        Some(
            args[at + 1..]
                .iter()
                .take_while(|a| !a.starts_with("--"))
                .map(String::as_str)
                .collect(),
        )
    }

    const FORCED: [&str; 8] = [
        "--protected-mode",
        "no",
        "--save",
        "",
        "--appendonly",
        "yes",
        "--daemonize",
        "no",
    ];

    #[test]
    fn empty_conf_uses_kvrocks_default_port_and_forced_keys() {
        let args = translate("", &[]).unwrap();
        let mut expected = strings(&["--port", "6666"]);
        expected.extend(strings(&FORCED));
        assert_eq!(args, expected);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_keys_are_case_insensitive() {
        let conf = "# a comment\n\n   # indented comment\nPORT 6667   # trailing comment\n\
                    Timeout 30\n";
        let args = translate(conf, &[]).unwrap();
        assert_eq!(values_of(&args, "--port").unwrap(), ["6667"]);
        assert_eq!(values_of(&args, "--timeout").unwrap(), ["30"]);
        assert_eq!(args.iter().filter(|a| *a == "--port").count(), 1);
    }

    #[test]
    fn quoted_values_are_unquoted() {
        let conf = "requirepass \"p@ss word\\\"x\"\nmasterauth 'single # quoted'\n";
        let args = translate(conf, &[]).unwrap();
        let at = args.iter().position(|a| a == "--requirepass").unwrap();
        assert_eq!(args[at + 1], "p@ss word\"x");
        let at = args.iter().position(|a| a == "--masterauth").unwrap();
        assert_eq!(args[at + 1], "single # quoted");
    }

    #[test]
    fn unterminated_quote_is_an_error_without_the_value() {
        let err = translate("requirepass \"secret", &[]).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn bind_lists_every_address() {
        let args = translate("bind 0.0.0.0 10.0.0.1 ::1\n", &[]).unwrap();
        assert_eq!(
            values_of(&args, "--bind").unwrap(),
            ["0.0.0.0", "10.0.0.1", "::1"]
        );
    }

    #[test]
    fn requirepass_and_masterauth_pass_through() {
        let args = translate("requirepass s3cret\nmasterauth other#1\n", &[]).unwrap();
        assert_eq!(values_of(&args, "--requirepass").unwrap(), ["s3cret"]);
        assert_eq!(values_of(&args, "--masterauth").unwrap(), ["other#1"]);
    }

    #[test]
    fn slaveof_becomes_replicaof_and_no_one_means_nothing() {
        let args = translate("slaveof 10.1.2.3 6666\n", &[]).unwrap();
        assert_eq!(
            values_of(&args, "--replicaof").unwrap(),
            ["10.1.2.3", "6666"]
        );
        let args = translate("slaveof no one\n", &[]).unwrap();
        assert!(!args.iter().any(|a| a == "--replicaof" || a == "--slaveof"));
        let args = translate("slaveof 10.1.2.3 6666\nslaveof NO ONE\n", &[]).unwrap();
        assert!(!args.iter().any(|a| a == "--replicaof"));
        assert!(translate("slaveof 10.1.2.3\n", &[]).is_err());
    }

    #[test]
    fn replica_keys_get_their_redis_names() {
        let conf = "slave-read-only yes\nslave-priority 50\nslave-serve-stale-data no\n";
        let args = translate(conf, &[]).unwrap();
        assert_eq!(values_of(&args, "--replica-read-only").unwrap(), ["yes"]);
        assert_eq!(values_of(&args, "--replica-priority").unwrap(), ["50"]);
        assert_eq!(
            values_of(&args, "--replica-serve-stale-data").unwrap(),
            ["no"]
        );
    }

    #[test]
    fn cluster_mode_is_refused() {
        let err = translate("cluster-enabled yes\n", &[]).unwrap_err();
        assert_eq!(
            err,
            "cluster mode is not supported by the redis-server stand-in; set KVROCKS_BIN to a \
             real kvrocks binary"
        );
        assert!(translate("cluster-enabled no\n", &[]).is_ok());
        assert!(
            translate(
                "cluster-enabled yes\n",
                &strings(&["--cluster-enabled", "no"])
            )
            .is_ok()
        );
    }

    #[test]
    fn unknown_keys_are_dropped_and_listed() {
        let conf = "workers 8\nrocksdb.block_size 16384\ndb-name change.me.db\nlog-dir stdout\n\
                    daemonize yes\nport 7000\n";
        let t = translate_conf(conf, &[]).unwrap();
        assert_eq!(
            t.dropped,
            [
                "daemonize",
                "db-name",
                "log-dir",
                "rocksdb.block_size",
                "workers"
            ]
        );
        for key in [
            "--workers",
            "--rocksdb.block_size",
            "--db-name",
            "--log-dir",
        ] {
            assert!(!t.args.iter().any(|a| a == key), "{key} passed on");
        }
        assert_eq!(values_of(&t.args, "--daemonize").unwrap(), ["no"]);
        assert_eq!(values_of(&t.args, "--port").unwrap(), ["7000"]);
        let t = translate_conf("daemonize no\n", &[]).unwrap();
        assert!(t.dropped.is_empty(), "{:?}", t.dropped);
    }

    #[test]
    fn extra_args_override_the_file() {
        let conf = "port 6666\nbind 127.0.0.1\ndir /data/a\n";
        let extra = strings(&[
            "--port",
            "7001",
            "--bind",
            "0.0.0.0 10.0.0.2",
            "--workers",
            "4",
        ]);
        let t = translate_conf(conf, &extra).unwrap();
        assert_eq!(values_of(&t.args, "--port").unwrap(), ["7001"]);
        assert_eq!(t.args.iter().filter(|a| *a == "--port").count(), 1);
        assert_eq!(
            values_of(&t.args, "--bind").unwrap(),
            ["0.0.0.0", "10.0.0.2"]
        );
        assert_eq!(values_of(&t.args, "--dir").unwrap(), ["/data/a"]);
        assert_eq!(t.dir.as_deref(), Some("/data/a"));
        assert_eq!(t.dropped, ["workers"]);
        assert!(translate(conf, &strings(&["--port"])).is_err());
        assert!(translate(conf, &strings(&["port", "1"])).is_err());
    }

    #[test]
    fn forced_keys_win_over_the_file() {
        let args = translate("appendonly no\nsave 900 1\nprotected-mode yes\n", &[]).unwrap();
        assert_eq!(&args[2..], strings(&FORCED).as_slice());
    }

    #[test]
    fn loglevel_is_mapped() {
        let args = translate("loglevel info\n", &[]).unwrap();
        assert_eq!(values_of(&args, "--loglevel").unwrap(), ["notice"]);
        let args = translate("loglevel error\n", &[]).unwrap();
        assert_eq!(values_of(&args, "--loglevel").unwrap(), ["warning"]);
    }

    #[test]
    fn rename_command_is_kept_each_time() {
        let args = translate(
            "rename-command KEYS \"\"\nrename-command FLUSHALL f2\n",
            &[],
        )
        .unwrap();
        let renames: Vec<&[String]> = args
            .windows(3)
            .filter(|w| w[0] == "--rename-command")
            .map(|w| &w[1..])
            .collect();
        assert_eq!(
            renames,
            [strings(&["KEYS", ""]), strings(&["FLUSHALL", "f2"])]
        );
    }

    #[test]
    fn command_line_finds_the_file_and_overrides() {
        let (file, extra) = parse_args(&strings(&["-c", "/c.conf", "--port", "1"])).unwrap();
        assert_eq!(file, Some(PathBuf::from("/c.conf")));
        assert_eq!(extra, strings(&["--port", "1"]));
        let (file, extra) = parse_args(&strings(&["--config", "/d.conf"])).unwrap();
        assert_eq!(file, Some(PathBuf::from("/d.conf")));
        assert!(extra.is_empty());
        let (file, _) = parse_args(&strings(&["/e.conf"])).unwrap();
        assert_eq!(file, Some(PathBuf::from("/e.conf")));
        assert!(parse_args(&strings(&["-c"])).is_err());
    }

    #[test]
    fn unreadable_file_returns_2() {
        assert_eq!(main(&strings(&["-c", "/nonexistent/kvrocks.conf"])), 2);
    }

    #[test]
    fn cluster_conf_returns_2() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kvrocks.conf");
        std::fs::write(&path, "cluster-enabled yes\n").unwrap();
        assert_eq!(main(&strings(&["-c", path.to_str().unwrap()])), 2);
    }
}
