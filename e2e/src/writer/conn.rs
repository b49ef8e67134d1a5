//! How the writer connects, as an application would: a cluster-aware client seeded from the
//! cluster's pods, or the master found through sentinel; the password read as the Secret says.

use std::sync::Arc;
use std::time::Duration;

use fred::prelude::{
    Builder, Client, ClientLike, Config, KeysInterface, ReconnectPolicy, ServerConfig,
};
use fred::types::RespVersion;
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Password, SentinelClient, Timeouts, Value};

use crate::error::{Error, Result};

/// How long one write may take before it counts as failed (and is retried).
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// The password an application reads from its mounted Secret: the test changes it when it
/// rotates the Secret, and the writer uses the new one from its next connection on.
#[derive(Clone, Debug, Default)]
pub struct SharedPassword(Arc<std::sync::RwLock<String>>);

impl SharedPassword {
    /// Starts with `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(password.into())))
    }

    /// The current password.
    pub fn get(&self) -> String {
        self.0.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Replaces it.
    pub fn set(&self, password: impl Into<String>) {
        if let Ok(mut p) = self.0.write() {
            *p = password.into();
        }
    }
}

/// Where a cluster client finds its first nodes: fixed addresses, or the current IPs of a set
/// of pods (what an application gets from the cluster's headless Service), looked up again when
/// every known node is gone (a roll gives every pod a new IP).
#[derive(Clone)]
pub enum Seeds {
    /// These addresses.
    Fixed(Vec<NodeAddr>),
    /// The IPs of the running pods matching `selector` in `namespace`, on `port`.
    Pods {
        /// A client of the API server.
        client: kube::Client,
        /// Their namespace.
        namespace: String,
        /// A label selector.
        selector: String,
        /// The kvrocks port.
        port: u16,
    },
}

impl std::fmt::Debug for Seeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(addrs) => f.debug_tuple("Fixed").field(addrs).finish(),
            Self::Pods {
                namespace,
                selector,
                ..
            } => write!(f, "Pods({namespace}/{selector})"),
        }
    }
}

impl Seeds {
    async fn resolve(&self) -> Vec<NodeAddr> {
        match self {
            Self::Fixed(addrs) => addrs.clone(),
            Self::Pods {
                client,
                namespace,
                selector,
                port,
            } => {
                let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
                    kube::Api::namespaced(client.clone(), namespace);
                let Ok(list) = pods
                    .list(&kube::api::ListParams::default().labels(selector))
                    .await
                else {
                    return Vec::new();
                };
                list.items
                    .iter()
                    .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
                    .filter(|ip| !ip.is_empty())
                    .map(|ip| NodeAddr::new(ip, *port))
                    .collect()
            }
        }
    }
}

/// Where the writer writes, found as an application finds it.
#[derive(Clone, Debug)]
pub enum Target {
    /// A KvrocksCluster, through a cluster-aware client seeded with these nodes (`ip:port`).
    Cluster {
        /// Nodes to learn the slot map from.
        seeds: Seeds,
        /// The cluster's password.
        password: SharedPassword,
    },
    /// A KvrocksStandard, through its sentinel group.
    Sentinel {
        /// The sentinels (`ip:26379`).
        sentinels: Vec<NodeAddr>,
        /// The monitored name, `standard_<cr>`.
        master_name: String,
        /// The instance's password.
        password: SharedPassword,
        /// The sentinel group's own password.
        sentinel_password: SharedPassword,
    },
}

/// A connection as the application keeps it.
pub(super) enum Conn {
    Cluster {
        client: Client,
        password: String,
        /// The seeds it was built from, and failed writes in a row since the last ack.
        seeds: Vec<NodeAddr>,
        failures: usize,
    },
    Sentinel {
        master: Option<NodeClient>,
        password: String,
    },
}

impl Conn {
    pub(super) async fn open(target: &Target) -> Result<Self> {
        match target {
            Target::Cluster { seeds, password } => {
                let password = password.get();
                let seeds = seeds.resolve().await;
                Ok(Self::Cluster {
                    client: cluster_client(&seeds, &password).await?,
                    password,
                    seeds,
                    failures: 0,
                })
            }
            Target::Sentinel {
                sentinels,
                master_name,
                password,
                sentinel_password,
            } => {
                let addr = discover(sentinels, master_name, &sentinel_password.get())
                    .await
                    .ok_or_else(|| {
                        Error::invalid(
                            format!("sentinel master {master_name}"),
                            "no sentinel names a master",
                        )
                    })?;
                let password = password.get();
                Ok(Self::Sentinel {
                    master: Some(node_client(&addr, &password)),
                    password,
                })
            }
        }
    }

    /// One `SET`; the error's kind on failure.
    pub(super) async fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        self.set_shared(key, value).await.inspect(|()| {
            if let Self::Cluster { failures, .. } = self {
                *failures = 0;
            }
        })
    }

    /// One `SET` through a shared connection (many in flight).
    pub(super) async fn set_shared(
        &self,
        key: &str,
        value: &str,
    ) -> std::result::Result<(), String> {
        match self {
            Self::Cluster { client, .. } => client
                .set::<(), _, _>(key, value, None, None, false)
                .await
                .map_err(|e| error_kind(e.details())),
            Self::Sentinel { master, .. } => {
                let Some(master) = master else {
                    return Err("no master known".to_owned());
                };
                match master.raw("SET", &[key, value]).await {
                    Ok(reply) if value_text(&reply).as_deref() == Some("OK") => Ok(()),
                    Ok(reply) => Err(error_kind(&format!("{reply:?}"))),
                    Err(e) => Err(error_kind(&e.to_string())),
                }
            }
        }
    }

    pub(super) async fn get(&self, key: &str) -> std::result::Result<Option<String>, String> {
        match self {
            Self::Cluster { client, .. } => client
                .get::<Option<String>, _>(key)
                .await
                .map_err(|e| e.to_string()),
            Self::Sentinel { master, .. } => match master {
                Some(master) => get_on(master, key).await,
                None => Err("no master known".to_owned()),
            },
        }
    }

    /// After a failed write: a sentinel client asks sentinel again (the master may have moved);
    /// either kind reconnects when the password changed.
    pub(super) async fn recover(&mut self, target: &Target) {
        match (self, target) {
            (
                Self::Sentinel { master, password },
                Target::Sentinel {
                    sentinels,
                    master_name,
                    password: current,
                    sentinel_password,
                },
            ) => {
                let Some(addr) = discover(sentinels, master_name, &sentinel_password.get()).await
                else {
                    return;
                };
                let current = current.get();
                if master.as_ref().map(NodeClient::addr) != Some(&addr) || *password != current {
                    if let Some(old) = master.take() {
                        old.close().await;
                    }
                    *master = Some(node_client(&addr, &current));
                    *password = current;
                }
            }
            (
                Self::Cluster {
                    client,
                    password,
                    seeds,
                    failures,
                },
                Target::Cluster {
                    seeds: source,
                    password: current,
                },
            ) => {
                *failures += 1;
                let current = current.get();
                // Rebuilt when the password changed, or when writes keep failing and the nodes
                // it knows are not the nodes there are (every pod restarted with a new IP).
                let fresh_seeds = if *failures >= 3 {
                    source.resolve().await
                } else {
                    seeds.clone()
                };
                let moved = !fresh_seeds.is_empty()
                    && fresh_seeds
                        .iter()
                        .collect::<std::collections::BTreeSet<_>>()
                        != seeds.iter().collect();
                if (*password != current || moved)
                    && let Ok(fresh) = cluster_client(&fresh_seeds, &current).await
                {
                    let _ = client.quit().await;
                    *client = fresh;
                    *password = current;
                    *seeds = fresh_seeds;
                    *failures = 0;
                }
            }
            _ => {}
        }
    }

    pub(super) async fn close(&self) {
        match self {
            Self::Cluster { client, .. } => {
                let _ = client.quit().await;
            }
            Self::Sentinel { master, .. } => {
                if let Some(master) = master {
                    master.close().await;
                }
            }
        }
    }
}

/// The master address the first answering sentinel gives.
async fn discover(sentinels: &[NodeAddr], name: &str, password: &str) -> Option<NodeAddr> {
    for addr in sentinels {
        let sentinel = SentinelClient::new(
            Endpoint::new(addr.clone())
                .with_password(Password::new(password))
                .with_timeouts(Timeouts::new(
                    Duration::from_millis(300),
                    Duration::from_millis(500),
                )),
        );
        let found = sentinel.master_addr(name).await;
        sentinel.close().await;
        if let Ok(Some(master)) = found {
            return Some(master);
        }
    }
    None
}

pub(super) fn node_client(addr: &NodeAddr, password: &str) -> NodeClient {
    NodeClient::new(
        Endpoint::new(addr.clone())
            .with_password(Password::new(password))
            .with_timeouts(Timeouts::new(Duration::from_millis(500), WRITE_TIMEOUT)),
    )
}

pub(super) async fn get_on(
    client: &NodeClient,
    key: &str,
) -> std::result::Result<Option<String>, String> {
    match client.raw("GET", &[key]).await {
        Ok(Value::Null) => Ok(None),
        Ok(reply) => value_text(&reply)
            .map(Some)
            .ok_or_else(|| format!("GET {key}: unexpected reply {reply:?}")),
        Err(e) => Err(e.to_string()),
    }
}

async fn cluster_client(seeds: &[NodeAddr], password: &str) -> Result<Client> {
    let config = Config {
        server: ServerConfig::new_clustered(
            seeds
                .iter()
                .map(|a| (a.host.clone(), a.port))
                .collect::<Vec<_>>(),
        ),
        password: Some(password.to_owned()),
        // kvrocks 2.10 and RESP3 cluster clients do not get along (see the design notes).
        version: RespVersion::RESP2,
        ..Default::default()
    };
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = WRITE_TIMEOUT * 2)
        .set_policy(ReconnectPolicy::new_constant(0, 200))
        // fred follows MOVED and ASK itself; while nodes take a new topology a slot can bounce
        // a few times, so allow more redirections than the default. What still fails reaches the
        // writer as an error and is retried.
        .with_connection_config(|c| {
            c.max_command_attempts = 20;
            c.max_redirections = 20;
        })
        .build()
        .map_err(|e| Error::invalid("the cluster client", e.to_string()))?;
    client
        .init()
        .await
        .map_err(|e| Error::invalid("connecting the cluster client", e.to_string()))?;
    Ok(client)
}

fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.to_string()),
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// A short label for an error: its first words, redirections folded into one kind.
fn error_kind(details: &str) -> String {
    if details.contains("redirections") || details.contains("Too many failed write attempts") {
        return "MOVED (too many redirections)".to_owned();
    }
    details
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ")
}
