//! Which kvrocks server this machine has: the `apache/kvrocks` image is built from it.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The program behind the `apache/kvrocks` image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataPlane {
    /// The real kvrocks binary from `$KVROCKS_BIN`.
    KvrocksBin {
        /// The binary.
        path: PathBuf,
        /// What `--version` printed (first line).
        version: String,
    },
    /// No kvrocks binary: no kvrocks image, so no kvrocks pod can start (never a stand-in).
    Missing,
}

impl DataPlane {
    /// From `$KVROCKS_BIN`: set and executable means the real thing; set and missing is an error.
    pub fn detect() -> Result<Self> {
        let Some(path) = std::env::var_os("KVROCKS_BIN").filter(|p| !p.is_empty()) else {
            return Ok(Self::Missing);
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(Error::invalid(
                format!("KVROCKS_BIN={}", path.display()),
                "not a file; point it at a kvrocks server binary (or unset it: the kvrocks \
                 scenarios are then skipped)",
            ));
        }
        let version = crate::process::run(&path.to_string_lossy(), &["--version"])
            .map(|out| out.lines().next().unwrap_or("").trim().to_owned())
            .unwrap_or_else(|e| format!("unknown ({e})"));
        Ok(Self::KvrocksBin { path, version })
    }

    /// Whether there is a kvrocks to run (every kvrocks scenario needs it).
    pub fn is_real(&self) -> bool {
        matches!(self, Self::KvrocksBin { .. })
    }

    /// The line every e2e run prints.
    pub fn describe(&self) -> String {
        match self {
            Self::KvrocksBin { path, version } => {
                format!("data plane: kvrocks {} (version {version})", path.display())
            }
            Self::Missing => {
                "data plane: NO kvrocks binary (KVROCKS_BIN is not set): no apache/kvrocks image, \
                 the kvrocks scenarios are skipped"
                    .to_owned()
            }
        }
    }
}
