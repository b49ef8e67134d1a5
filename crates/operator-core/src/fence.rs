//! Fencing a master for a planned switchover. kvrocks 2.10.1 has no `CLIENT PAUSE` (it arrives in
//! 2.16), so the fence is a password: the master's `requirepass` is swapped for one derived from
//! the instance's ([`password`]) and every normal client connection is killed (`CLIENT KILL TYPE
//! normal SKIPME yes`). No client can write to it any more, while replication links (type slave)
//! stay up, so a replica catches up with every write the master acknowledged
//! ([`Fenced::caught_up`]) before it is promoted. The fence is lifted ([`Fenced::lift`], [`lift`])
//! once the node follows the new master, or when the switchover is given up.
//!
//! The fence outlives the operator: a restarted operator finds a fenced node by the derived
//! password ([`connect_fenced`]) and lifts it once it is safe; a restarted kvrocks process starts
//! with the instance's password from its kvrocks.conf again (as a replica of itself).

use std::time::{Duration, Instant};

use kvrocks_client::{NodeClient, Password, ReplicationRole};
use sha2::{Digest, Sha256};

use crate::node;

/// How long a fenced master waits for a replica to catch up before the switchover is given up
/// (and the fence lifted): clients see refused writes for at most this long.
pub const CATCH_UP_WITHIN: Duration = Duration::from_secs(2);

/// How often the offsets are compared while waiting.
const POLL: Duration = Duration::from_millis(10);

/// What the fence password is derived from, before the instance's password.
pub const DERIVATION_PREFIX: &str = "kvrocks-operator fence:";

/// The password a fenced node of the instance answers to: derived from the instance's, so the
/// operator never has to store it and finds it again after a restart: `fenced-` and the first 32
/// hex digits of SHA-256(`kvrocks-operator fence:<password>`) (a cluster pod's start script
/// derives the same with `sha256sum`, see `builders::kvrocks::start_script`).
pub fn password(of: &Password) -> Password {
    let digest = Sha256::new()
        .chain_update(DERIVATION_PREFIX.as_bytes())
        .chain_update(of.expose().as_bytes())
        .finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    Password::new(format!("fenced-{hex}"))
}

/// A client of the node at `ip` when it is fenced (it takes the fence password); None when it is
/// not, or does not answer.
pub async fn connect_fenced(ip: &str, password: &Password) -> Option<NodeClient> {
    NodeClient::connect(node::endpoint(ip, &self::password(password)))
        .await
        .ok()
}

/// Lifts the fence of the node at `ip` (its `requirepass` back to `password`); Ok when it was
/// not fenced.
pub async fn lift(ip: &str, password: &Password) -> Result<(), String> {
    match connect_fenced(ip, password).await {
        Some(client) => {
            Fenced {
                client,
                ip: ip.to_owned(),
            }
            .lift(password)
            .await
        }
        None => Ok(()),
    }
}

/// A master no client can write to; dropped without [`Fenced::lift`] it stays fenced (the
/// controllers lift a fence they find on a later pass).
#[derive(Debug)]
pub struct Fenced {
    client: NodeClient,
    ip: String,
}

impl Fenced {
    /// Fences the master at `ip`: `requirepass` swapped, normal clients disconnected.
    pub async fn fence(ip: &str, password: &Password) -> Result<Self, String> {
        let failed = |e: kvrocks_client::Error| format!("fence {ip}: {e}");
        let client = NodeClient::connect(node::endpoint(ip, password))
            .await
            .map_err(failed)?;
        let fence = self::password(password);
        client
            .config_set("requirepass", fence.expose())
            .await
            .map_err(failed)?;
        let fenced = Fenced {
            client,
            ip: ip.to_owned(),
        };
        // This connection stays authenticated; a reconnect must use the fence password.
        let killed = match fenced.client.auth(&fence).await {
            Ok(()) => {
                fenced
                    .client
                    .raw("CLIENT", &["KILL", "TYPE", "normal", "SKIPME", "yes"])
                    .await
            }
            Err(e) => Err(e),
        };
        match killed {
            Ok(_) => {
                tracing::info!(%ip, "master fenced: clients disconnected, writes refused");
                Ok(fenced)
            }
            Err(e) => {
                let why = failed(e);
                let lifted = fenced.lift(password).await;
                Err(match lifted {
                    Ok(()) => why,
                    Err(l) => format!("{why}; {l}"),
                })
            }
        }
    }

    /// The fenced node's address.
    pub fn ip(&self) -> &str {
        &self.ip
    }

    /// A client of the fenced node (it takes the fence password).
    pub fn client(&self) -> &NodeClient {
        &self.client
    }

    /// Waits until the replica at `replica_ip` has applied everything the fenced master holds,
    /// at most `within`; its offset when it has, else why not.
    pub async fn caught_up(
        &self,
        replica_ip: &str,
        password: &Password,
        within: Duration,
    ) -> Result<i64, String> {
        let replica = NodeClient::connect(node::endpoint(replica_ip, password))
            .await
            .map_err(|e| format!("replica {replica_ip}: {e}"))?;
        let started = Instant::now();
        let result = loop {
            let master = match self.client.info_replication().await {
                Ok(info) => info.master_repl_offset.unwrap_or(0),
                Err(e) => break Err(format!("fenced master {}: {e}", self.ip)),
            };
            let applied = match replica.info_replication().await {
                Ok(info) if info.role == ReplicationRole::Master => {
                    break Err(format!("replica {replica_ip} is a master"));
                }
                Ok(info) => info.slave_repl_offset.unwrap_or(0),
                Err(e) => break Err(format!("replica {replica_ip}: {e}")),
            };
            if applied >= master {
                break Ok(applied);
            }
            if started.elapsed() >= within {
                break Err(format!(
                    "replica {replica_ip} at offset {applied}, the fenced master at {master} after {:.1} s",
                    within.as_secs_f64()
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        replica.close().await;
        result
    }

    /// Lifts the fence: `requirepass` back to the instance's password.
    pub async fn lift(self, password: &Password) -> Result<(), String> {
        let result = self
            .client
            .config_set("requirepass", password.expose())
            .await
            .map_err(|e| format!("lift the fence of {}: {e}", self.ip));
        self.client.close().await;
        if result.is_ok() {
            tracing::info!(ip = %self.ip, "fence lifted");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fence_password_is_derived_and_differs_per_password() {
        let a = password(&Password::new("secret"));
        assert_eq!(a.expose(), password(&Password::new("secret")).expose());
        assert_ne!(a.expose(), password(&Password::new("secret2")).expose());
        assert_ne!(a.expose(), "secret");
        assert_eq!(a.expose().len(), "fenced-".len() + 32);
        assert!(a.expose().chars().all(|c| !c.is_whitespace()));
    }
}
