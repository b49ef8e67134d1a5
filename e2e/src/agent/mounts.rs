//! The shell script that runs first in a container's private mount and UTS namespaces. It gives
//! the container a root of its own, as a runtime's writable layer would: an overlay of the host's
//! root (read through) on a tmpfs upper layer, with /proc, /sys and /dev bound in. Volumes are
//! bind-mounted at their mount paths inside that root, so a mount path that does not exist on the
//! host is created in the tmpfs layer, never on the host. Then the hostname is set, the script
//! chroots, changes directory and `exec`s the program (passed as `"$@"`, so no argument is ever
//! re-parsed by the shell). Everything mounted lives in the private namespace and vanishes with
//! the container's processes.

use std::path::{Path, PathBuf};

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

/// The script for `sh -c <script> sh <program> <args...>`; `layer` is a directory of the pod
/// (on the host) where the container's tmpfs layer and root are mounted.
pub fn launch_script(
    mounts: &[BindMount],
    layer: &Path,
    hostname: &str,
    workdir: Option<&str>,
) -> String {
    let mut ordered: Vec<&BindMount> = mounts.iter().collect();
    // Parents before children, so `/data/conf` lands inside the `/data` volume.
    ordered.sort_by_key(|m| m.target.components().count());
    let layer = shell_quote(&layer.to_string_lossy());
    let mut script = String::from("set -e\n");
    script.push_str(&format!(
        "L={layer}\nmkdir -p \"$L\"\nmount -t tmpfs -o mode=0755 container-layer \"$L\"\n\
         mkdir -p \"$L/upper\" \"$L/work\" \"$L/root\"\n\
         mount -t overlay overlay -o lowerdir=/,upperdir=\"$L/upper\",workdir=\"$L/work\" \"$L/root\"\n\
         for d in /proc /sys /dev; do mount --rbind \"$d\" \"$L/root$d\"; done\n"
    ));
    // Mount points are made and resolved inside the new root (`chroot ... mkdir`, `readlink -f`),
    // so a symlink on the way (Debian's /var/run -> /run) leads to the container's /run, never
    // out to the host's.
    for m in ordered {
        let src = shell_quote(&m.source.to_string_lossy());
        let target = shell_quote(&m.target.to_string_lossy());
        script.push_str(&format!(
            "if [ -d {src} ]; then chroot \"$L/root\" mkdir -p {target}; \
             else chroot \"$L/root\" /bin/sh -c 'mkdir -p \"$(dirname \"$0\")\" && {{ [ -e \"$0\" ] || : > \"$0\"; }}' {target}; fi\n\
             D=\"$L/root$(chroot \"$L/root\" readlink -f {target})\"\n"
        ));
        script.push_str(&format!("mount --bind {src} \"$D\"\n"));
        if m.read_only {
            script.push_str("mount -o remount,bind,ro \"$D\"\n");
        }
    }
    script.push_str(&format!(
        "echo {} > /proc/sys/kernel/hostname\n",
        shell_quote(hostname)
    ));
    let dir = shell_quote(workdir.filter(|d| !d.is_empty()).unwrap_or("/"));
    script.push_str(&format!(
        "exec chroot \"$L/root\" /bin/sh -c 'mkdir -p \"$0\" && cd \"$0\" && exec \"$@\"' {dir} \"$@\"\n"
    ));
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
        let s = launch_script(&mounts, Path::new("/p/layer"), "redis-0", Some("/data"));
        let pv = s
            .find("readlink -f '/data'")
            .or(s.find("readlink -f /data)"))
            .unwrap();
        let cm = s.find("readlink -f /data/conf)").unwrap();
        assert!(pv < cm, "{s}");
        assert!(s.contains("mount --bind '/r/pv x' \"$D\"\n"), "{s}");
        // Only the config volume is remounted read-only, right after its bind.
        assert!(s.contains("mount --bind /r/cm \"$D\"\nmount -o remount,bind,ro \"$D\"\n"));
        assert_eq!(s.matches("remount,bind,ro").count(), 1, "{s}");
        // Mount points are made inside the new root, never through a host path.
        assert!(s.contains("chroot \"$L/root\" mkdir -p"), "{s}");
        assert!(s.contains("lowerdir=/,upperdir="));
        assert!(s.contains("echo redis-0 > /proc/sys/kernel/hostname"));
        assert!(s.contains("exec chroot \"$L/root\""));
        assert!(s.ends_with("/data \"$@\"\n"), "{s}");
    }

    #[test]
    fn hosts_file_names_the_pod() {
        let h = hosts_file("10.1.0.5", "r-0", Some("r-0.r.ns.svc.cluster.local"));
        assert!(h.contains("10.1.0.5\tr-0.r.ns.svc.cluster.local\tr-0\n"));
    }
}
