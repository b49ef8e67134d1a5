//! Builders of the KvrocksSentinel objects: the ConfigMap with the base `sentinel.conf`, the
//! StatefulSet of redis-sentinel pods, their Service and their PodDisruptionBudget.
//!
//! - **Config.** redis-sentinel rewrites its configuration file (its id, the monitors, the peers
//!   it discovered), so the base file lives in the ConfigMap `<cr>-config` and the container copies
//!   it into its writable emptyDir `/data` on first start. A restarted container finds its
//!   rewritten file there and keeps its id and monitors; a new pod starts from the base and gets
//!   its monitors from the controller. The monitors are never in the ConfigMap: the controller
//!   adds them with `SENTINEL MONITOR`, so the auth-pass of a monitored instance never lands in
//!   a ConfigMap.
//! - **Service.** One headless Service `<cr>` is both the StatefulSet's governing Service and
//!   the clients' entry point (DESIGN: "Sentinel has `<cr>` for clients"): a sentinel-aware
//!   client wants the address of every sentinel, which a headless Service gives and a virtual IP
//!   would hide. Unlike the data StatefulSets' headless Services it publishes only Ready pods:
//!   sentinels find each other through the monitored masters' hello channel, not through DNS,
//!   so nothing needs the address of a sentinel that is not serving yet.
//! - **Pods.** Created in parallel (sentinels do not depend on each other), readiness is TCP on
//!   26379, and without an affinity of the user's own the pods prefer different nodes.
//! - **Password.** Every sentinel requires the group's password (`requirepass`, with
//!   `protected-mode yes`) and sends it to its peers (`sentinel sentinel-pass`). It comes from
//!   the group's Secret through [`PASSWORD_ENV`] and is written into the configuration at every
//!   start, replacing what a previous container left there, after the same check the operator
//!   makes (see `crate::auth::shell_guard`); the controller rotates it live with `ACL SETUSER`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, PodSpec,
    PodTemplateSpec, Probe, Service, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kvrocks_api::KvrocksSentinel;
use kvrocks_api::labels::{Component, SENTINEL_PORT, common_labels};

use super::{apply_scheduling, label_selector, owned_meta, pod_labels, port};
use crate::apply::content_hash;
use crate::error::Result;

/// Name of the sentinel container.
pub const CONTAINER: &str = "sentinel";
/// Name of the sentinel port (container and Service).
pub const PORT_NAME: &str = "sentinel";
/// Key of the base configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "sentinel.conf";
/// Where the ConfigMap is mounted (read-only).
pub const BASE_CONFIG_DIR: &str = "/etc/sentinel-base";
/// The writable emptyDir where sentinel keeps (and rewrites) its configuration.
pub const DATA_DIR: &str = "/data";
/// Pod-template annotation holding a hash of the base configuration, so a change of it rolls
/// the pods (a running sentinel never rereads the base file).
pub const CONFIG_HASH_ANNOTATION: &str = "kvrocks.io/config-hash";
/// Seconds a sentinel pod gets to stop; sentinel flushes its config on every change, so it
/// has nothing to save at exit.
const TERMINATION_GRACE_SECONDS: i64 = 10;
/// Readiness probe period.
const READINESS_PERIOD_SECONDS: i32 = 2;
/// The environment variable holding the group's password.
pub const PASSWORD_ENV: &str = "SENTINEL_PASSWORD";

/// Name of the ConfigMap holding the base configuration: `<cr>-config`.
pub fn config_map_name(cr: &str) -> String {
    format!("{cr}-config")
}

/// The labels of every object of the group (and the pod selector).
pub fn labels(cr: &KvrocksSentinel) -> BTreeMap<String, String> {
    common_labels(&cr.name_any(), Component::Sentinel)
}

/// The base `sentinel.conf`: where to listen and where to write. No monitor: the controller
/// adds them at run time; no password: the start script appends it. Addresses stay IPs (`resolve-hostnames no`): pod IPs are what the
/// controller monitors and what sentinel reports after a failover.
pub fn base_config() -> String {
    [
        format!("port {SENTINEL_PORT}"),
        "bind 0.0.0.0".to_owned(),
        "protected-mode yes".to_owned(),
        format!("dir {DATA_DIR}"),
        "sentinel resolve-hostnames no".to_owned(),
        "sentinel announce-hostnames no".to_owned(),
    ]
    .join("\n")
        + "\n"
}

/// The container command: check the password, copy the base configuration into `/data` unless
/// a previous container of this pod left its rewritten one there, put the current password in
/// place of any earlier one (sentinel rewrites it as `requirepass` plus a `user default` line),
/// then run redis-sentinel on it.
pub fn start_command() -> Vec<String> {
    let conf = format!("{DATA_DIR}/{CONFIG_KEY}");
    let base = format!("{BASE_CONFIG_DIR}/{CONFIG_KEY}");
    vec![
        "sh".to_owned(),
        "-c".to_owned(),
        format!(
            "set -e\n\
             umask 077\n\
             {guard}\
             [ -s {conf} ] || cp {base} {conf}\n\
             sed -i -e '/^requirepass /d' -e '/^user default /d' -e '/^sentinel sentinel-user /d' -e '/^sentinel sentinel-pass /d' {conf}\n\
             printf 'requirepass \"%s\"\\nsentinel sentinel-pass \"%s\"\\n' \"${PASSWORD_ENV}\" \"${PASSWORD_ENV}\" >> {conf}\n\
             exec redis-sentinel {conf}\n",
            guard = crate::auth::shell_guard(PASSWORD_ENV),
        ),
    ]
}

/// The ConfigMap `<cr>-config` with the base configuration.
pub fn config_map(cr: &KvrocksSentinel) -> Result<ConfigMap> {
    Ok(ConfigMap {
        metadata: owned_meta(cr, &config_map_name(&cr.name_any()), labels(cr))?,
        data: Some([(CONFIG_KEY.to_owned(), base_config())].into()),
        ..Default::default()
    })
}

/// The StatefulSet `<cr>` of `spec.replicas` redis-sentinel pods, whose password is the key
/// `password` of the Secret `secret`.
pub fn statefulset(cr: &KvrocksSentinel, secret: &str) -> Result<StatefulSet> {
    let name = cr.name_any();
    let ours = labels(cr);
    let spec = &cr.spec;

    let mut annotations = spec.pod_metadata.pod_annotations.clone();
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_owned(),
        content_hash(&serde_json::Value::String(base_config())),
    );

    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: Some("IfNotPresent".to_owned()),
        security_context: Some(super::container_security_context()),
        command: Some(start_command()),
        env: Some(vec![super::password_env(PASSWORD_ENV, secret)]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: SENTINEL_PORT,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(SENTINEL_PORT),
                ..Default::default()
            }),
            period_seconds: Some(READINESS_PERIOD_SECONDS),
            ..Default::default()
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "base-config".to_owned(),
                mount_path: BASE_CONFIG_DIR.to_owned(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "data".to_owned(),
                mount_path: DATA_DIR.to_owned(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    };

    let mut pod = PodSpec {
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "base-config".to_owned(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map_name(&name),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "data".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ]),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(super::pod_security_context(spec.security_context.as_ref())),
        // redis-sentinel never talks to the API server.
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    apply_scheduling(&mut pod, &spec.scheduling, &ours);

    Ok(StatefulSet {
        metadata: owned_meta(cr, &name, ours.clone())?,
        spec: Some(StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(name.clone()),
            pod_management_policy: Some("Parallel".to_owned()),
            selector: label_selector(&ours),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(&ours, &spec.pod_metadata)),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The headless Service `<cr>` over the Ready sentinel pods (see the module documentation).
pub fn service(cr: &KvrocksSentinel) -> Result<Service> {
    let ours = labels(cr);
    let mut svc = super::service(
        owned_meta(cr, &cr.name_any(), ours.clone())?,
        ours,
        vec![port(PORT_NAME, SENTINEL_PORT)],
        true,
    );
    if let Some(spec) = svc.spec.as_mut() {
        spec.publish_not_ready_addresses = None;
    }
    Ok(svc)
}

/// The PodDisruptionBudget `<cr>`: at most one sentinel down by a voluntary disruption.
pub fn pdb(cr: &KvrocksSentinel) -> Result<PodDisruptionBudget> {
    let ours = labels(cr);
    Ok(super::pdb(
        owned_meta(cr, &cr.name_any(), ours.clone())?,
        &ours,
        1,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use kvrocks_api::labels::{COMPONENT, INSTANCE, MANAGED_BY, NAME};
    use serde_json::json;

    fn group(extra: serde_json::Value) -> KvrocksSentinel {
        let mut value = json!({
            "apiVersion": "kvrocks.io/v1alpha1",
            "kind": "KvrocksSentinel",
            "metadata": {"name": "s", "namespace": "ns", "uid": "u-1"},
            "spec": {},
        });
        if let (Some(spec), Some(extra)) = (value["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn base_config_has_what_sentinel_needs() {
        let conf = base_config();
        for line in [
            "port 26379",
            "bind 0.0.0.0",
            "protected-mode yes",
            "dir /data",
            "sentinel resolve-hostnames no",
        ] {
            assert!(conf.lines().any(|l| l == line), "{line:?} in {conf}");
        }
        assert!(!conf.contains("monitor"), "monitors are added at run time");
        assert!(
            !conf.contains("requirepass"),
            "the password is added at start"
        );
    }

    #[test]
    fn the_statefulset_runs_sentinel_on_a_writable_copy() {
        let cr = group(json!({"replicas": 5, "podLabels": {"team": "a", NAME: "mine"}}));
        let sts = statefulset(&cr, "s-auth").unwrap();
        assert_eq!(sts.metadata.name.as_deref(), Some("s"));
        assert_eq!(sts.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            sts.metadata.owner_references.as_ref().unwrap()[0].uid,
            "u-1"
        );
        let spec = sts.spec.unwrap();
        assert_eq!(spec.replicas, Some(5));
        assert_eq!(spec.service_name.as_deref(), Some("s"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(selector[COMPONENT], "sentinel");
        assert_eq!(selector[INSTANCE], "s");
        assert_eq!(selector[MANAGED_BY], "kvrocks-operator");
        let meta = spec.template.metadata.unwrap();
        let pod_labels = meta.labels.unwrap();
        assert_eq!(pod_labels[NAME], "kvrocks", "our labels win");
        assert_eq!(pod_labels["team"], "a");
        assert!(
            meta.annotations
                .unwrap()
                .contains_key(CONFIG_HASH_ANNOTATION)
        );
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("redis:7.2"));
        let command = c.command.as_ref().unwrap();
        assert_eq!(command[0], "sh");
        assert!(command[2].contains("cp /etc/sentinel-base/sentinel.conf /data/sentinel.conf"));
        assert!(command[2].ends_with("exec redis-sentinel /data/sentinel.conf\n"));
        let env = c.env.as_ref().unwrap();
        assert_eq!(env[0].name, PASSWORD_ENV);
        let from = env[0].value_from.as_ref().unwrap();
        assert_eq!(from.secret_key_ref.as_ref().unwrap().name, "s-auth");
        assert!(!command[2].contains("s-auth"), "never the password itself");
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            probe.tcp_socket.as_ref().unwrap().port,
            IntOrString::Int(26379)
        );
        assert_eq!(probe.period_seconds, Some(2));
        let volumes = pod.volumes.unwrap();
        assert_eq!(
            volumes[0].config_map.as_ref().unwrap().name,
            "s-config".to_owned()
        );
        assert!(volumes[1].empty_dir.is_some());
        assert!(pod.affinity.unwrap().pod_anti_affinity.is_some());
    }

    #[test]
    fn service_and_pdb_select_the_pods() {
        let cr = group(json!({}));
        let svc = service(&cr).unwrap();
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, None);
        assert_eq!(spec.ports.unwrap()[0].port, 26379);
        assert_eq!(spec.selector.unwrap(), labels(&cr));
        let pdb = pdb(&cr).unwrap();
        assert_eq!(
            pdb.spec.as_ref().unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );
        let cm = config_map(&cr).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("s-config"));
        assert_eq!(cm.data.unwrap()[CONFIG_KEY], base_config());
    }
    /// The start script, run by the real `sh` on a rewritten configuration a previous container
    /// left: the old password lines go, the current one is written once, quoted.
    #[test]
    fn the_start_script_replaces_the_password_of_a_previous_container() {
        let dir = tempfile::tempdir().unwrap();
        let (data, base) = (dir.path().join("data"), dir.path().join("base"));
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join(CONFIG_KEY), base_config()).unwrap();
        std::fs::write(
            data.join(CONFIG_KEY),
            "port 26379\nrequirepass \"old-password\"\nsentinel sentinel-pass old-password\nsentinel myid abc\nuser default on #0123 ~* &* +@all\n",
        )
        .unwrap();
        let script = start_command()[2]
            .replace(DATA_DIR, &data.display().to_string())
            .replace(BASE_CONFIG_DIR, &base.display().to_string())
            .replace("exec redis-sentinel", "cat");
        let run = |password: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(&script)
                .env(PASSWORD_ENV, password)
                .output()
                .unwrap()
        };
        let out = run("new-Pa55word#1");
        assert!(out.status.success(), "{out:?}");
        let conf = String::from_utf8(out.stdout).unwrap();
        assert!(!conf.contains("old-password"), "{conf}");
        assert!(!conf.contains("user default"), "{conf}");
        assert!(
            conf.contains("sentinel myid abc"),
            "the rest is kept: {conf}"
        );
        assert!(
            conf.ends_with(
                "requirepass \"new-Pa55word#1\"\nsentinel sentinel-pass \"new-Pa55word#1\"\n"
            ),
            "{conf}"
        );
        let refused = run("two\nlines-password");
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to start"));
        std::fs::remove_file(data.join(CONFIG_KEY)).unwrap();
        let fresh = String::from_utf8(run("first-Pa55word").stdout).unwrap();
        assert!(fresh.starts_with(&base_config()), "{fresh}");
        assert_eq!(fresh.matches("requirepass").count(), 1);
    }
}
