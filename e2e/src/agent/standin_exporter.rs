//! `node-agent standin-exporter`: the testbed's stand-in for the kvrocks exporter sidecar image
//! (`kvrocks/kvrocks-exporter`, kvrocks_exporter). kvrocks_exporter is a fork of redis_exporter
//! with the same flags under `KVROCKS_*` names, and its module is not on the Go module proxy, so
//! the stand-in runs Debian's redis_exporter (`prometheus-redis-exporter`) with the sidecar's
//! settings translated and the metric prefix `kvrocks`. It exports the Redis-level families under
//! kvrocks_exporter's names (`kvrocks_up`, `kvrocks_instance_info`, `kvrocks_db_keys`,
//! `kvrocks_connected_slaves`, ...) but none of kvrocks_exporter's RocksDB families, and says so
//! on stderr.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

/// The redis_exporter binary the stand-in runs.
pub fn exporter_binary() -> PathBuf {
    std::env::var_os("KVROCKS_E2E_REDIS_EXPORTER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-redis-exporter"))
}

/// redis_exporter's arguments for kvrocks_exporter's environment (`KVROCKS_ADDR`,
/// `KVROCKS_EXPORTER_WEB_LISTEN_ADDRESS`, `KVROCKS_EXPORTER_NAMESPACE`). The password is passed
/// on through the environment (`REDIS_PASSWORD`), never on the command line.
pub fn translate(env: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let addr = env("KVROCKS_ADDR").unwrap_or_else(|| "localhost:6666".to_owned());
    let addr = match addr.split_once("://") {
        Some((_, rest)) => format!("redis://{rest}"),
        None => format!("redis://{addr}"),
    };
    let listen = env("KVROCKS_EXPORTER_WEB_LISTEN_ADDRESS").unwrap_or_else(|| ":9121".to_owned());
    let namespace = env("KVROCKS_EXPORTER_NAMESPACE").unwrap_or_else(|| "kvrocks".to_owned());
    vec![
        "-redis.addr".into(),
        addr,
        "-web.listen-address".into(),
        listen,
        "-namespace".into(),
        namespace,
    ]
}

/// Replaces the process with redis_exporter; returns only on failure (1).
pub fn main() -> i32 {
    let args = translate(&|k| std::env::var(k).ok());
    let program = exporter_binary();
    eprintln!(
        "standin-exporter: redis_exporter STAND-IN for kvrocks_exporter ({}): Redis-level metrics only, no RocksDB families",
        program.display()
    );
    let mut command = std::process::Command::new(&program);
    command.args(&args);
    if let Ok(password) = std::env::var("KVROCKS_PASSWORD") {
        command.env("REDIS_PASSWORD", password);
    }
    let error = command.exec();
    eprintln!(
        "standin-exporter: cannot run {}: {error} (install the Debian package prometheus-redis-exporter: make deps)",
        program.display()
    );
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_the_sidecar_environment() {
        let env = |k: &str| match k {
            "KVROCKS_ADDR" => Some("localhost:6379".to_owned()),
            "KVROCKS_PASSWORD" => Some("secret".to_owned()),
            _ => None,
        };
        let args = translate(&env);
        assert_eq!(
            args,
            [
                "-redis.addr",
                "redis://localhost:6379",
                "-web.listen-address",
                ":9121",
                "-namespace",
                "kvrocks"
            ]
        );
        assert!(!args.iter().any(|a| a.contains("secret")));
        let env = |k: &str| (k == "KVROCKS_ADDR").then(|| "kvrocks://db:6666".to_owned());
        assert_eq!(translate(&env)[1], "redis://db:6666");
    }
}
