//! `<root>/state.json`: everything a later `testbed down` (or the next start on the same root)
//! needs to remove what a run left behind, written as soon as each piece exists.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::network::Network;
use crate::process::{Mode, ProcRecord};

/// The loopback ports of the control plane.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// etcd client URL port.
    pub etcd_client: u16,
    /// etcd peer URL port.
    pub etcd_peer: u16,
    /// kube-apiserver secure port.
    pub apiserver: u16,
    /// kube-controller-manager secure port (/healthz).
    pub controller_manager: u16,
    /// kube-scheduler secure port (/healthz).
    pub scheduler: u16,
}

/// The recorded state of one testbed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The state root.
    pub root: PathBuf,
    /// Attached (test binary) or detached (`testbed up`).
    pub mode: Mode,
    /// Every long-running process started, in start order.
    pub processes: Vec<ProcRecord>,
    /// Control-plane ports.
    pub ports: Ports,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Bridge and pod CIDR.
    pub network: Option<Network>,
    /// What runs kvrocks containers, in words.
    pub data_plane: Option<String>,
    /// The kubectl of the pinned release.
    #[serde(default)]
    pub kubectl: Option<PathBuf>,
    /// The real nodes (containerd + kubelet), when the testbed runs them.
    #[serde(default)]
    pub nodes: Option<crate::nodes::NodesRecord>,
}

impl State {
    /// A fresh state for `root`.
    pub fn new(root: &Path, mode: Mode) -> Self {
        Self {
            root: root.to_path_buf(),
            mode,
            processes: Vec::new(),
            ports: Ports::default(),
            kubeconfig: root.join("admin.kubeconfig"),
            network: None,
            data_plane: None,
            kubectl: None,
            nodes: None,
        }
    }

    /// `<root>/state.json`.
    pub fn path(root: &Path) -> PathBuf {
        root.join("state.json")
    }

    /// Reads `<root>/state.json`; `None` when there is none.
    pub fn load(root: &Path) -> Result<Option<Self>> {
        let path = Self::path(root);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| Error::invalid(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Writes `<root>/state.json` atomically (a crash never leaves half a file).
    pub fn save(&self) -> Result<()> {
        let path = Self::path(&self.root);
        let tmp = self.root.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("state.json", e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename into place", &path, e))
    }

    /// Records a started process and saves.
    pub fn record(&mut self, process: ProcRecord) -> Result<()> {
        self.processes.push(process);
        self.save()
    }

    /// The record of a process by name.
    pub fn process(&self, name: &str) -> Option<&ProcRecord> {
        self.processes.iter().find(|p| p.name == name)
    }
}
