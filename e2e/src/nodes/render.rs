//! The configuration files of a real node (containerd, CNI, kubelet, crictl) and of kube-proxy:
//! pure functions of the node's [`NodeLayout`] and the testbed's network.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::network::Network;

/// The sandbox image every node's containerd runs pods in (built locally, never pulled).
pub const PAUSE_IMAGE: &str = "docker.io/kvrocks-testbed/pause:1";
/// Where Debian's containernetworking-plugins put the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";
/// The cgroup v1 controllers a node's cgroup root is made in.
pub const CGROUP_CONTROLLERS: [&str; 9] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
];
/// Where a node leaves cgroups behind: its controllers, and the hybrid host's cgroup v2 mount
/// (`unified`), where runc makes a twin of each container's cgroup.
pub const CGROUP_MOUNTS: [&str; 10] = [
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
    "unified",
];

/// Where one node keeps everything, and the host resources it owns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLayout {
    /// Node name (`testbed-node-<n>`).
    pub name: String,
    /// 1-based node number: its pods get `10.X.<n>.2` to `10.X.<n>.254`.
    pub number: u8,
    /// `<root>/nodes/<name>`.
    pub dir: PathBuf,
    /// The node's cgroup root (`/<prefix>-<n>`), below every controller's mount.
    pub cgroup_root: String,
    /// kubelet's API port (apiserver -> kubelet: logs, exec).
    pub kubelet_port: u16,
    /// kubelet's healthz port (loopback).
    pub healthz_port: u16,
}

impl NodeLayout {
    /// containerd's gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// containerd's config file.
    pub fn containerd_config(&self) -> PathBuf {
        self.dir.join("containerd.toml")
    }

    /// crictl's config file (the node's endpoints).
    pub fn crictl_config(&self) -> PathBuf {
        self.dir.join("crictl.yaml")
    }

    /// kubelet's config file.
    pub fn kubelet_config(&self) -> PathBuf {
        self.dir.join("kubelet.yaml")
    }

    /// kubelet's root directory (pod volumes).
    pub fn kubelet_dir(&self) -> PathBuf {
        self.dir.join("kubelet")
    }

    /// The CNI config directory.
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.dir.join("cni")
    }

    /// The directory of this node's cgroup root under one controller's mount.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(self.cgroup_root.trim_start_matches('/'))
    }

    /// The first and last pod address of this node.
    pub fn pod_range(&self, network: &Network) -> (Ipv4Addr, Ipv4Addr) {
        let [a, b, _, _] = network.network.octets();
        (
            Ipv4Addr::new(a, b, self.number, 2),
            Ipv4Addr::new(a, b, self.number, 254),
        )
    }
}

/// containerd 1.6's config: its own root, state and socket, the CRI plugin with runc under
/// cgroupfs, `restrict_oom_score_adj` (this host drops CAP_SYS_RESOURCE, so a container may not
/// lower its OOM score), the local pause image, and the node's CNI config.
pub fn containerd_config(node: &NodeLayout) -> String {
    let dir = node.dir.display();
    format!(
        r#"version = 2
root = "{dir}/containerd/root"
state = "{dir}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni}"
"#,
        socket = node.socket().display(),
        cni = node.cni_conf_dir().display(),
    )
}

/// The node's CNI network: the testbed's bridge (shared by all nodes, holding the gateway), pod
/// addresses from the node's own /24 of the testbed's /16, no masquerading (pods are reached
/// and reach each other by their own addresses), and port mappings.
pub fn cni_conflist(node: &NodeLayout, network: &Network) -> String {
    let (first, last) = node.pod_range(network);
    let config = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "testbed",
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": node.dir.join("cni-ipam"),
                    "ranges": [[{
                        "subnet": network.cidr(),
                        "rangeStart": first.to_string(),
                        "rangeEnd": last.to_string(),
                        "gateway": network.gateway().to_string(),
                    }]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    });
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

/// crictl's config for the node.
pub fn crictl_config(node: &NodeLayout) -> String {
    let socket = node.socket();
    format!(
        "runtime-endpoint: unix://{s}\nimage-endpoint: unix://{s}\ntimeout: 30\n",
        s = socket.display()
    )
}

/// kubelet's KubeletConfiguration: cgroupfs under the node's own cgroup root (three kubelets
/// share one host), cgroup v1 allowed (`failCgroupV1: false`; v1.37 still runs on it), the API
/// on the gateway address at the node's port, client certificates of the testbed CA accepted,
/// its own pod log directory (a kubelet removes the logs of pods it does not know), eviction
/// thresholds a shared test machine does not trip, and up to 200 pods (the node's /24 holds 253
/// pod addresses; the default 110 leaves the bench's scale steps short of slots).
pub fn kubelet_config(node: &NodeLayout, network: &Network, ca: &Path, dns: Ipv4Addr) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {gateway}
port: {port}
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
readOnlyPort: 0
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: AlwaysAllow}}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
clusterDomain: cluster.local
clusterDNS: [{dns}]
resolvConf: /etc/resolv.conf
podLogsDir: {logs}
maxPods: 200
evictionHard: {{memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
localStorageCapacityIsolation: false
protectKernelDefaults: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
"#,
        gateway = network.gateway(),
        port = node.kubelet_port,
        healthz = node.healthz_port,
        ca = ca.display(),
        cgroup_root = node.cgroup_root,
        socket = node.socket().display(),
        logs = node.dir.join("pod-logs").display(),
    )
}

/// kube-proxy's config: iptables mode for the testbed's pod CIDR, its ports on loopback, and no
/// conntrack sysctl changes (the host's are left alone).
pub fn kube_proxy_config(
    kubeconfig: &Path,
    network: &Network,
    node: &str,
    healthz_port: u16,
    metrics_port: u16,
) -> String {
    format!(
        r#"apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: {kubeconfig}
mode: iptables
clusterCIDR: {cidr}
hostnameOverride: {node}
healthzBindAddress: 127.0.0.1:{healthz_port}
metricsBindAddress: 127.0.0.1:{metrics_port}
conntrack:
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
"#,
        kubeconfig = kubeconfig.display(),
        cidr = network.cidr(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn network() -> Network {
        Network {
            bridge: "kvtb00000001".into(),
            network: Ipv4Addr::new(10, 227, 0, 0),
            prefix: 16,
        }
    }

    fn node(number: u8) -> NodeLayout {
        NodeLayout {
            name: format!("testbed-node-{number}"),
            number,
            dir: PathBuf::from(format!("/r/nodes/testbed-node-{number}")),
            cgroup_root: format!("/kvtb-1-{number}"),
            kubelet_port: 20000,
            healthz_port: 20001,
        }
    }

    #[test]
    fn each_node_hands_out_its_own_slice_of_the_pod_cidr() {
        let net = network();
        let ranges: Vec<_> = (1..=3).map(|n| node(n).pod_range(&net)).collect();
        assert_eq!(ranges[0].0, Ipv4Addr::new(10, 227, 1, 2));
        assert_eq!(ranges[2].1, Ipv4Addr::new(10, 227, 3, 254));
        let conf: serde_json::Value = serde_json::from_str(&cni_conflist(&node(2), &net)).unwrap();
        let range = &conf["plugins"][0]["ipam"]["ranges"][0][0];
        assert_eq!(range["rangeStart"], "10.227.2.2");
        assert_eq!(range["gateway"], "10.227.0.1");
        assert_eq!(conf["plugins"][0]["bridge"], "kvtb00000001");
        assert_eq!(conf["plugins"][0]["ipMasq"], false);
    }

    #[test]
    fn containerd_restricts_oom_scores_and_uses_the_local_pause_image() {
        let conf = containerd_config(&node(1));
        assert!(conf.contains("restrict_oom_score_adj = true"));
        assert!(conf.contains(&format!("sandbox_image = \"{PAUSE_IMAGE}\"")));
        assert!(conf.contains("address = \"/r/nodes/testbed-node-1/containerd.sock\""));
        assert!(conf.contains("SystemdCgroup = false"));
    }

    #[test]
    fn kubelets_share_the_host_without_sharing_cgroups() {
        let a = kubelet_config(
            &node(1),
            &network(),
            Path::new("/ca"),
            Ipv4Addr::new(10, 96, 0, 10),
        );
        let b = kubelet_config(
            &node(2),
            &network(),
            Path::new("/ca"),
            Ipv4Addr::new(10, 96, 0, 10),
        );
        assert!(a.contains("cgroupRoot: /kvtb-1-1") && b.contains("cgroupRoot: /kvtb-1-2"));
        assert!(a.contains("failCgroupV1: false"));
        assert!(a.contains("address: 10.227.0.1"));
        assert_eq!(
            node(3).cgroup_dir("memory"),
            PathBuf::from("/sys/fs/cgroup/memory/kvtb-1-3")
        );
    }
}
