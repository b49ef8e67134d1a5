//! Which program runs kvrocks containers, and the image map the node agent resolves container
//! images with.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::{Error, Result};

/// The program behind `apache/kvrocks` images.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataPlane {
    /// The real kvrocks binary from `$KVROCKS_BIN`.
    KvrocksBin {
        /// The binary.
        path: PathBuf,
        /// What `--version` printed (first line).
        version: String,
    },
    /// redis-server reading the kvrocks.conf keys it understands (`node-agent standin-kvrocks`).
    StandIn,
}

impl DataPlane {
    /// From `$KVROCKS_BIN`: set and executable means the real thing; set and missing is an error.
    pub fn detect() -> Result<Self> {
        let Some(path) = std::env::var_os("KVROCKS_BIN").filter(|p| !p.is_empty()) else {
            return Ok(Self::StandIn);
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(Error::invalid(
                format!("KVROCKS_BIN={}", path.display()),
                "not a file; unset it to run on the redis-server stand-in",
            ));
        }
        let version = crate::process::run(&path.to_string_lossy(), &["--version"])
            .map(|out| out.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        Ok(Self::KvrocksBin { path, version })
    }

    /// Whether cluster-mode scenarios can run (they need real kvrocks).
    pub fn is_real(&self) -> bool {
        matches!(self, Self::KvrocksBin { .. })
    }

    /// The line every e2e run prints.
    pub fn describe(&self) -> String {
        match self {
            Self::KvrocksBin { path, version } => {
                format!("data plane: kvrocks {} (version {version})", path.display())
            }
            Self::StandIn => {
                "data plane: redis-server STAND-IN for kvrocks (KVROCKS_BIN is not set)".to_owned()
            }
        }
    }
}

/// Writes `<root>/image-map.json`: which local program runs each image prefix.
pub fn write_image_map(
    root: &Path,
    data_plane: &DataPlane,
    agent_bin: &Path,
    operator_bin: &Path,
) -> Result<PathBuf> {
    let kvrocks = match data_plane {
        DataPlane::KvrocksBin { path, .. } => path.display().to_string(),
        DataPlane::StandIn => format!("{} standin-kvrocks", agent_bin.display()),
    };
    let map = json!({
        "images": [
            {
                "prefix": "apache/kvrocks",
                "binaries": {"kvrocks": kvrocks},
                "default": ["kvrocks"],
            },
            {
                "prefix": "redis",
                "binaries": {
                    "redis-server": which("redis-server"),
                    "redis-sentinel": which("redis-sentinel"),
                    "redis-cli": which("redis-cli"),
                },
                "default": ["redis-server"],
            },
            {
                // The exporter sidecar (spec.exporter): always the redis_exporter stand-in.
                "prefix": "kvrocks/kvrocks-exporter",
                "binaries": {
                    "kvrocks_exporter": format!("{} standin-exporter", agent_bin.display()),
                },
                "default": ["kvrocks_exporter"],
            },
            {
                "prefix": "kvrocks-operator",
                "binaries": {"kvrocks-operator": operator_bin.display().to_string()},
                "default": ["kvrocks-operator"],
            },
        ],
        "shell": "/bin/sh",
    });
    let path = root.join("image-map.json");
    let text = serde_json::to_string_pretty(&map)
        .map_err(|e| Error::invalid("image map", e.to_string()))?;
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
    Ok(path)
}

/// The absolute path of a program on `PATH`, or `/usr/bin/<name>`.
fn which(name: &str) -> String {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| Path::new("/usr/bin").join(name))
        .display()
        .to_string()
}
