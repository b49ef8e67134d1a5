//! Builders of the kvrocks objects of a KvrocksStandard (and the pieces a KvrocksCluster shares):
//! the kvrocks.conf ConfigMap, the StatefulSet and its pod template.
//!
//! The password never appears in any of them: the container reads it from the auth Secret through
//! an environment variable and appends `requirepass` / `masterauth` to its private copy of
//! kvrocks.conf at start (on a memory-backed volume, never on the data volume), together with `slaveof 127.0.0.1 6379`, so every pod (a new one, or an
//! old master coming back) starts as a read-only replica of itself until the operator points it
//! at the current master.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, Lifecycle, LifecycleHandler, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    TCPSocketAction, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kvrocks_api::common::KvrocksPodSpec;
use kvrocks_api::labels::KVROCKS_PORT;

use super::{apply_scheduling, container_security_context, label_selector, pod_security_context};

/// Key of kvrocks.conf in the config ConfigMap.
pub const CONF_KEY: &str = "kvrocks.conf";
/// Where the ConfigMap is mounted.
pub const CONF_DIR: &str = "/etc/kvrocks";
/// The data volume's mount path (kvrocks `dir`, and its private kvrocks.conf).
pub const DATA_DIR: &str = "/data";
/// The memory-backed volume holding the private kvrocks.conf (with the password) that kvrocks
/// runs with and rewrites on CONFIG SET.
pub const RUNTIME_DIR: &str = "/run/kvrocks";
/// How long a starting kvrocks may take to open its database (a large one replays its WAL)
/// before liveness applies: 2 s x 900 = 30 minutes.
const STARTUP_FAILURES: i32 = 900;
/// Env var carrying the password from the Secret.
pub const PASSWORD_ENV: &str = "KVROCKS_PASSWORD";
/// Pod template annotation with the hash of kvrocks.conf: a change marks pods outdated.
pub const CONFIG_HASH_ANNOTATION: &str = "kvrocks.io/config-hash";
/// Pod template annotation with the hash of everything in the template but kvrocks.conf: a
/// change needs a restart.
pub const TEMPLATE_HASH_ANNOTATION: &str = "kvrocks.io/template-hash";
/// Name of the kvrocks container.
pub const CONTAINER: &str = "kvrocks";
/// Name of the exporter sidecar.
pub const EXPORTER_CONTAINER: &str = "exporter";
/// Port of the exporter's metrics.
pub const EXPORTER_PORT: i32 = 9121;

/// The kvrocks.conf the operator renders: its own keys first, then `spec.config` in key order
/// (operator-owned keys are refused by CEL and skipped here too, and so are the `skip` keys the
/// running kvrocks does not know), one `key value` per line.
pub fn render_config(spec: &KvrocksPodSpec, cluster: bool, skip: &[String]) -> String {
    let mut conf = String::from("# Rendered by kvrocks-operator. Edit spec.config instead.\n");
    conf.push_str(&format!(
        "bind 0.0.0.0\nport {KVROCKS_PORT}\ndir {DATA_DIR}\n"
    ));
    conf.push_str("daemonize no\n");
    // A replica whose history diverged from its new master (it holds writes the master never
    // got) must resync in full: with kvrocks' default `no`, it resumes from its own sequence
    // number once the master's passes it and stays silently different.
    conf.push_str("use-rsid-psync yes\n");
    if cluster {
        conf.push_str("cluster-enabled yes\npersist-cluster-nodes-enabled yes\n");
    }
    for (key, value) in &spec.config {
        if kvrocks_api::config::OPERATOR_OWNED_KEYS.contains(&key.as_str())
            || skip.contains(key)
            || value.contains('\n')
            || value.contains('\r')
        {
            continue;
        }
        conf.push_str(&format!("{key} {value}\n"));
    }
    if cluster {
        // Sentinel (when it watches a cluster's shards) must never try to promote a cluster
        // replica: kvrocks refuses SLAVEOF in cluster mode; the operator promotes. Last, so it wins.
        conf.push_str("slave-priority 0\n");
    }
    conf
}

/// A short stable hash of a text (FNV-1a, hex).
pub fn text_hash(text: &str) -> String {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// The ConfigMap holding kvrocks.conf.
pub fn config_map(meta: ObjectMeta, conf: String) -> ConfigMap {
    ConfigMap {
        metadata: meta,
        data: Some([(CONF_KEY.to_owned(), conf)].into()),
        ..Default::default()
    }
}

/// The line before the topology a cluster node persisted, in its log (see [`start_script`]).
pub const PREVIOUS_TOPOLOGY_BEGIN: &str = "kvrocks-operator: previous topology begin";
/// The line after it.
pub const PREVIOUS_TOPOLOGY_END: &str = "kvrocks-operator: previous topology end";

/// The start script: a private kvrocks.conf with the password and `slaveof` itself appended.
/// `cluster` nodes get no `slaveof` (kvrocks refuses replication commands in cluster mode);
/// instead a node starts as a stranger until the operator has looked at it: the topology it
/// persisted (`nodes.conf`) is set aside as `nodes.conf.last`, so it serves no slot, and it starts
/// fenced (`requirepass` is the fence password, see `crate::fence`; the operator lifts it once it
/// pushed the current topology), so no replica resyncs from it: a master that comes back on an
/// emptied volume at its old address would otherwise make its replicas copy the empty database
/// before anyone could decide. The topology set aside is printed to the log between
/// [`PREVIOUS_TOPOLOGY_BEGIN`] and [`PREVIOUS_TOPOLOGY_END`], for the operator to adopt when it
/// creates a cluster over volumes that hold one. Without `sha256sum` in the image a node starts unfenced.
pub fn start_script(cluster: bool) -> String {
    let (slaveof, prepare, requirepass): (&str, String, String) = if cluster {
        (
            "",
            format!(
                "if [ -f {DATA_DIR}/nodes.conf ]; then mv -f {DATA_DIR}/nodes.conf {DATA_DIR}/nodes.conf.last; fi\n\
                 if [ -f {DATA_DIR}/nodes.conf.last ]; then\n\
                 \x20 echo '{PREVIOUS_TOPOLOGY_BEGIN}'; cat {DATA_DIR}/nodes.conf.last; echo; echo '{PREVIOUS_TOPOLOGY_END}'\n\
                 fi\n\
                 requirepass=\"${PASSWORD_ENV}\"\n\
                 if command -v sha256sum >/dev/null 2>&1; then\n\
                 \x20 requirepass=\"fenced-$(printf '{prefix}%s' \"${PASSWORD_ENV}\" | sha256sum | cut -c1-32)\"\n\
                 fi\n",
                prefix = crate::fence::DERIVATION_PREFIX,
            ),
            "$requirepass".to_owned(),
        )
    } else {
        (
            "slaveof 127.0.0.1 6379\\n",
            String::new(),
            format!("${{{PASSWORD_ENV}}}"),
        )
    };
    format!(
        "set -e\n\
         umask 077\n\
         {guard}\
         {prepare}\
         cp {CONF_DIR}/{CONF_KEY} {RUNTIME_DIR}/kvrocks.conf\n\
         printf 'requirepass %s\\nmasterauth %s\\n{slaveof}' \"{requirepass}\" \"${PASSWORD_ENV}\" >> {RUNTIME_DIR}/kvrocks.conf\n\
         exec kvrocks -c {RUNTIME_DIR}/kvrocks.conf\n",
        guard = crate::auth::shell_guard(PASSWORD_ENV),
    )
}

/// How long the preStop hook holds a master's stop at most, waiting for its handover.
pub const PRE_STOP_HOLD_SECS: u32 = 10;

/// The preStop hook: a pod being deleted (drain, eviction, `kubectl delete pod`, a rolling
/// update) that is a master with replicas keeps running until the operator has handed its role to
/// a replica, at most [`PRE_STOP_HOLD_SECS`]. It goes at once when it is a replica, has no
/// replica, none of its replicas answers a `PING` (within a second: no handover can happen, and
/// the operator stops a master it fails over before promoting its replica, so holding it would
/// only delay the failover), or it does not answer (or the image has no `redis-cli`); a fenced
/// master (it refuses the password while the switchover runs) is waited for.
pub fn pre_stop_script() -> String {
    let rounds = PRE_STOP_HOLD_SECS * 5;
    format!(
        "ask() {{ REDISCLI_AUTH=\"${PASSWORD_ENV}\" redis-cli \"$@\" 2>/dev/null | tr -d '\\r'; }}\n\
         if command -v timeout >/dev/null 2>&1; then bounded='timeout 1'; else bounded=''; fi\n\
         i=0\n\
         while [ $i -lt {rounds} ]; do\n\
         \x20 info=$(ask -p {KVROCKS_PORT} INFO replication)\n\
         \x20 case \"$info\" in\n\
         \x20   *role:slave*|'') exit 0 ;;\n\
         \x20   *role:master*connected_slaves:0*) exit 0 ;;\n\
         \x20 esac\n\
         \x20 if [ $i -eq 0 ]; then\n\
         \x20   reached=no\n\
         \x20   for r in $(echo \"$info\" | sed -n 's/^slave[0-9]*:ip=\\([^,]*\\),port=\\([0-9]*\\).*/\\1:\\2/p'); do\n\
         \x20     if [ \"$(REDISCLI_AUTH=\"${PASSWORD_ENV}\" $bounded redis-cli -h \"${{r%:*}}\" -p \"${{r##*:}}\" PING 2>/dev/null | tr -d '\\r')\" = PONG ]; then reached=yes; break; fi\n\
         \x20   done\n\
         \x20   [ $reached = no ] && exit 0\n\
         \x20 fi\n\
         \x20 sleep 0.2\n\
         \x20 i=$((i+1))\n\
         done\n"
    )
}

/// What a kvrocks StatefulSet is made of.
#[derive(Clone, Debug)]
pub struct KvrocksSet<'a> {
    /// Metadata of the StatefulSet (name, namespace, labels, owner).
    pub meta: ObjectMeta,
    /// Pod labels (selector labels plus user labels and `kvrocks.io/sentinel`).
    pub pod_labels: BTreeMap<String, String>,
    /// The selector (a subset of `pod_labels`, immutable once created).
    pub selector: BTreeMap<String, String>,
    /// Pod annotations (user annotations plus the config hash).
    pub pod_annotations: BTreeMap<String, String>,
    /// The headless Service name.
    pub service_name: String,
    /// Number of pods.
    pub replicas: i32,
    /// The spec.
    pub spec: &'a KvrocksPodSpec,
    /// The ConfigMap with kvrocks.conf.
    pub config_map: String,
    /// The Secret with the password.
    pub secret: String,
    /// Cluster mode.
    pub cluster: bool,
}

/// The StatefulSet. `OnDelete` updates: the operator rolls pods itself (replicas first, the
/// master after a switchover); `Parallel` pod management, so a missing pod never blocks others.
pub fn statefulset(set: &KvrocksSet<'_>) -> StatefulSet {
    let spec = set.spec;
    let mut containers = vec![kvrocks_container(spec)];
    if spec.exporter.enabled {
        containers.push(exporter_container(spec));
    }
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: set.config_map.clone(),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "runtime".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: Some(Quantity("16Mi".into())),
            }),
            ..Default::default()
        },
    ];
    let mut claims = None;
    match &spec.storage {
        Some(storage) => {
            claims = Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    ..Default::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_owned(), storage.size.clone())].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]);
        }
        None => volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        }),
    }
    let mut pod = PodSpec {
        containers,
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(30),
        security_context: Some(pod_security_context(spec.security_context.as_ref())),
        // kvrocks never talks to the API server.
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    apply_scheduling(&mut pod, &spec.scheduling, &set.selector);
    let mut container_env = pod.containers[0].env.take().unwrap_or_default();
    container_env.push(super::password_env(PASSWORD_ENV, &set.secret));
    pod.containers[0].env = Some(container_env);
    pod.containers[0].command = Some(vec!["sh".into(), "-c".into(), start_script(set.cluster)]);
    pod.containers[0].lifecycle = Some(Lifecycle {
        pre_stop: Some(LifecycleHandler {
            exec: Some(ExecAction {
                command: Some(vec!["sh".into(), "-c".into(), pre_stop_script()]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    if spec.exporter.enabled
        && let Some(exporter) = pod.containers.get_mut(1)
    {
        exporter.env = Some(vec![
            EnvVar {
                name: "KVROCKS_ADDR".into(),
                value: Some(format!("localhost:{KVROCKS_PORT}")),
                ..Default::default()
            },
            super::password_env("KVROCKS_PASSWORD", &set.secret),
        ]);
    }
    let retention = spec.storage.as_ref().map(|s| {
        let when_deleted = if s.delete_claims_on_delete {
            "Delete"
        } else {
            "Retain"
        };
        StatefulSetPersistentVolumeClaimRetentionPolicy {
            when_deleted: Some(when_deleted.into()),
            when_scaled: Some("Retain".into()),
        }
    });
    StatefulSet {
        metadata: set.meta.clone(),
        spec: Some(StatefulSetSpec {
            replicas: Some(set.replicas),
            service_name: Some(set.service_name.clone()),
            selector: label_selector(&set.selector),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..Default::default()
            }),
            persistent_volume_claim_retention_policy: retention,
            volume_claim_templates: claims,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(set.pod_labels.clone()),
                    annotations: Some(set.pod_annotations.clone()),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn tcp_probe(port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(port),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

fn kvrocks_container(spec: &KvrocksPodSpec) -> Container {
    Container {
        name: CONTAINER.into(),
        image: Some(spec.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("kvrocks".into()),
            container_port: KVROCKS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(vec![EnvVar {
            name: "POD_IP".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: Some(container_security_context()),
        // Liveness and readiness start once kvrocks first answers.
        // Every 2 s, so readiness (which waits for it) is not held back long.
        startup_probe: Some(tcp_probe(KVROCKS_PORT, 2, STARTUP_FAILURES)),
        readiness_probe: Some(tcp_probe(KVROCKS_PORT, 2, 3)),
        liveness_probe: Some(tcp_probe(KVROCKS_PORT, 5, 6)),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: CONF_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "runtime".into(),
                mount_path: RUNTIME_DIR.into(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// A Service on the kvrocks port (6379) of the pods `selector` picks; headless for a
/// StatefulSet's own Service.
pub fn service(
    meta: ObjectMeta,
    selector: BTreeMap<String, String>,
    headless: bool,
) -> k8s_openapi::api::core::v1::Service {
    super::service(
        meta,
        selector,
        vec![super::port("kvrocks", KVROCKS_PORT)],
        headless,
    )
}

fn exporter_container(spec: &KvrocksPodSpec) -> Container {
    Container {
        name: EXPORTER_CONTAINER.into(),
        image: Some(spec.exporter.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        security_context: Some(container_security_context()),
        ports: Some(vec![ContainerPort {
            name: Some("metrics".into()),
            container_port: EXPORTER_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        resources: spec.exporter.resources.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Runs the preStop script under `sh` with a stand-in `redis-cli` that answers `replies` in
    /// turn (the last one from then on); how many times it was asked, and how long it took.
    fn hold(replies: &[&str], replicas_answer: bool) -> (usize, std::time::Duration) {
        let dir = std::env::temp_dir().join(format!(
            "prestop-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (i, reply) in replies.iter().enumerate() {
            std::fs::write(dir.join(format!("reply{i}")), reply).unwrap();
        }
        let last = replies.len() - 1;
        // `PING` to a replica answers from `ping` (PONG when its replicas answer).
        std::fs::write(
            dir.join("ping"),
            if replicas_answer { "PONG\r\n" } else { "" },
        )
        .unwrap();
        let fake = format!(
            "#!/bin/sh\n[ \"$REDISCLI_AUTH\" = secret ] || exit 1\ncase \"$*\" in *PING*) cat {d}/ping; exit 0 ;; esac\nn=$(cat {d}/count 2>/dev/null || echo 0)\necho $((n+1)) > {d}/count\n[ $n -gt {last} ] && n={last}\ncat {d}/reply$n\n",
            d = dir.display()
        );
        std::fs::write(dir.join("redis-cli"), fake).unwrap();
        std::process::Command::new("chmod")
            .args(["+x", &dir.join("redis-cli").display().to_string()])
            .status()
            .unwrap();
        let started = std::time::Instant::now();
        let status = std::process::Command::new("sh")
            .args(["-c", &pre_stop_script()])
            .env("PATH", format!("{}:/usr/bin:/bin", dir.display()))
            .env(PASSWORD_ENV, "secret")
            .status()
            .unwrap();
        assert!(status.success());
        let asked =
            std::fs::read_to_string(dir.join("count")).map_or(0, |c| c.trim().parse().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
        (asked, started.elapsed())
    }

    /// Runs the start script under `sh` up to (not including) `exec kvrocks`, with its paths in
    /// a temporary directory; the kvrocks.conf it wrote.
    fn started_conf(cluster: bool, password: &str) -> String {
        let dir = std::env::temp_dir().join(format!(
            "start-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        for sub in ["conf", "run", "data"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join("conf").join(CONF_KEY), "port 6379\n").unwrap();
        std::fs::write(dir.join("data/nodes.conf"), "persisted\n").unwrap();
        let script = start_script(cluster)
            .replace(CONF_DIR, &dir.join("conf").display().to_string())
            .replace(RUNTIME_DIR, &dir.join("run").display().to_string())
            .replace(DATA_DIR, &dir.join("data").display().to_string())
            .replace("exec kvrocks", "true");
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .env(PASSWORD_ENV, password)
            .output()
            .unwrap();
        assert!(out.status.success());
        if cluster {
            // The persisted topology is in the log, between the markers.
            let log = String::from_utf8_lossy(&out.stdout);
            let block = format!("{PREVIOUS_TOPOLOGY_BEGIN}\npersisted\n\n{PREVIOUS_TOPOLOGY_END}");
            assert!(log.contains(&block), "{log:?}");
        }
        let conf = std::fs::read_to_string(dir.join("run/kvrocks.conf")).unwrap();
        if cluster {
            assert!(!dir.join("data/nodes.conf").exists());
            assert!(dir.join("data/nodes.conf.last").exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        conf
    }

    #[test]
    fn a_cluster_node_starts_fenced_with_the_operators_fence_password() {
        let password = "s3cret-Pass";
        let fence = crate::fence::password(&kvrocks_client::Password::new(password));
        let conf = started_conf(true, password);
        assert!(
            conf.contains(&format!("requirepass {}\n", fence.expose())),
            "{conf}"
        );
        assert!(conf.contains(&format!("masterauth {password}\n")), "{conf}");
        // A Standard pod starts with the password, as a replica of itself.
        let conf = started_conf(false, password);
        assert!(
            conf.contains(&format!(
                "requirepass {password}\nmasterauth {password}\nslaveof 127.0.0.1 6379\n"
            )),
            "{conf}"
        );
    }

    #[test]
    fn the_pre_stop_hook_holds_a_master_with_replicas_until_it_is_a_replica() {
        let master = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\nslave0:ip=10.0.0.2,port=6379,offset=5,lag=0\r\n";
        let replica = "# Replication\r\nrole:slave\r\nmaster_host:10.0.0.2\r\n";
        let fenced = "NOAUTH Authentication required.\n";
        // A replica, a master without replicas, or no answer: it goes at once.
        assert_eq!(hold(&[replica], true).0, 1);
        assert_eq!(
            hold(
                &["# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"],
                true
            )
            .0,
            1
        );
        assert_eq!(hold(&[""], true).0, 1);
        // A master, then fenced while it hands over, then a replica: held until then.
        let (asked, took) = hold(&[master, fenced, fenced, replica], true);
        assert_eq!(asked, 4);
        assert!(took < std::time::Duration::from_secs(PRE_STOP_HOLD_SECS.into()));
        // A master none of whose replicas answers cannot hand over: it goes at once.
        assert_eq!(hold(&[master, fenced, replica], false).0, 1);
    }

    fn spec() -> KvrocksPodSpec {
        serde_json::from_value(serde_json::json!({
            "config": {"workers": "4", "requirepass": "leak", "rocksdb.block_size": "16384"}
        }))
        .unwrap()
    }

    #[test]
    fn config_has_no_password_and_no_owned_keys_from_the_spec() {
        let conf = render_config(&spec(), false, &[]);
        assert!(conf.contains("workers 4\n"));
        assert!(conf.contains("rocksdb.block_size 16384\n"));
        assert!(!conf.contains("leak"));
        assert!(conf.contains("port 6379\n"));
        assert!(!conf.contains("cluster-enabled"));
        assert!(render_config(&spec(), true, &[]).contains("cluster-enabled yes\n"));
        assert!(render_config(&spec(), true, &[]).ends_with("slave-priority 0\n"));
        for cluster in [false, true] {
            assert!(render_config(&spec(), cluster, &[]).contains("use-rsid-psync yes\n"));
        }
        assert_ne!(text_hash("a"), text_hash("b"));
    }

    #[test]
    fn the_password_comes_from_the_secret_never_from_args() {
        let spec = spec();
        let set = KvrocksSet {
            meta: ObjectMeta::default(),
            pod_labels: BTreeMap::new(),
            selector: BTreeMap::new(),
            pod_annotations: BTreeMap::new(),
            service_name: "s".into(),
            replicas: 3,
            spec: &spec,
            config_map: "s-config".into(),
            secret: "s-auth".into(),
            cluster: false,
        };
        let sts = statefulset(&set);
        let pod = sts.spec.unwrap().template.spec.unwrap();
        let c = &pod.containers[0];
        let env = c.env.as_ref().unwrap();
        let password = env.iter().find(|e| e.name == PASSWORD_ENV).unwrap();
        let key = password
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(key.name, "s-auth");
        let script = &c.command.as_ref().unwrap()[2];
        assert!(script.contains("slaveof 127.0.0.1 6379"));
        assert!(!start_script(true).contains("slaveof"));
        // A cluster node starts without the topology it persisted (the operator pushes it).
        assert!(start_script(true).contains("mv -f /data/nodes.conf /data/nodes.conf.last"));
        assert!(!start_script(false).contains("nodes.conf"));
        // no storage: an emptyDir
        assert!(
            pod.volumes
                .unwrap()
                .iter()
                .any(|v| v.name == "data" && v.empty_dir.is_some())
        );
    }
}
