//! The shell script that runs first in a container's private mount and UTS namespaces: bind-mount
//! its volumes at their mount paths, set the hostname, change directory, then `exec` the program
//! (passed as `"$@"`, so no argument is ever re-parsed by the shell).
//!
//! The pod's root file system is the host's: a mount path that does not exist on the host is
//! created there (an empty directory, or an empty file when the source is a file) before the bind
//! mount hides it inside the container. The mounts themselves never leak to the host (the
//! namespace is private) and vanish with the container's processes.

use std::path::PathBuf;

use super::imagemap::shell_quote;

/// One bind mount of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindMount {
    /// Host path (a volume directory, a file in it, a PV directory).
    pub source: PathBuf,
    /// Path inside the container.
    pub target: PathBuf,
    /// Remounted read-only.
    pub read_only: bool,
}

/// The script for `sh -c <script> sh <program> <args...>`.
pub fn launch_script(mounts: &[BindMount], hostname: &str, workdir: Option<&str>) -> String {
    let mut ordered: Vec<&BindMount> = mounts.iter().collect();
    // Parents before children, so `/data/conf` lands inside the `/data` volume.
    ordered.sort_by_key(|m| m.target.components().count());
    let mut script = String::from("set -e\n");
    for m in ordered {
        let src = shell_quote(&m.source.to_string_lossy());
        let dst = shell_quote(&m.target.to_string_lossy());
        script.push_str(&format!(
            "if [ -d {src} ]; then mkdir -p {dst}; else mkdir -p \"$(dirname {dst})\"; [ -e {dst} ] || : > {dst}; fi\n"
        ));
        script.push_str(&format!("mount --bind {src} {dst}\n"));
        if m.read_only {
            script.push_str(&format!("mount -o remount,bind,ro {dst}\n"));
        }
    }
    script.push_str(&format!(
        "echo {} > /proc/sys/kernel/hostname\n",
        shell_quote(hostname)
    ));
    if let Some(dir) = workdir.filter(|d| !d.is_empty()) {
        let dir = shell_quote(dir);
        script.push_str(&format!("mkdir -p {dir}\ncd {dir}\n"));
    }
    script.push_str("exec \"$@\"\n");
    script
}

/// The `/etc/hosts` the kubelet writes for a pod.
pub fn hosts_file(ip: &str, hostname: &str, fqdn: Option<&str>) -> String {
    let names = match fqdn {
        Some(fqdn) => format!("{fqdn}\t{hostname}"),
        None => hostname.to_owned(),
    };
    format!(
        "# Kubernetes-managed hosts file (testbed node agent).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{names}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_mounts_parents_first_and_execs_args() {
        let mounts = vec![
            BindMount {
                source: "/r/cm".into(),
                target: "/data/conf".into(),
                read_only: true,
            },
            BindMount {
                source: "/r/pv x".into(),
                target: "/data".into(),
                read_only: false,
            },
        ];
        let s = launch_script(&mounts, "redis-0", Some("/data"));
        let pv = s.find("mount --bind '/r/pv x' /data").unwrap();
        let cm = s.find("mount --bind /r/cm /data/conf").unwrap();
        assert!(pv < cm, "{s}");
        assert!(s.contains("mount -o remount,bind,ro /data/conf"));
        assert!(!s.contains("remount,bind,ro /data\n"));
        assert!(s.contains("echo redis-0 > /proc/sys/kernel/hostname"));
        assert!(s.contains("cd /data"));
        assert!(s.ends_with("exec \"$@\"\n"));
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let h = hosts_file("10.1.0.5", "r-0", Some("r-0.r.ns.svc.cluster.local"));
        assert!(h.contains("10.1.0.5\tr-0.r.ns.svc.cluster.local\tr-0\n"));
    }
}
