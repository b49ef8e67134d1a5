//! Talking to one kvrocks data pod the same way from every controller: its endpoint (port,
//! password, timeouts) and `spec.config` set live.

use std::collections::BTreeMap;
use std::time::Duration;

use kvrocks_api::labels::KVROCKS_PORT;
use kvrocks_client::{Endpoint, NodeAddr, NodeClient, Password, Timeouts};

/// Connect timeout of every command connection to a data pod.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reply timeout of every command to a data pod.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The kvrocks port of the pod at `ip`, with the instance's password.
pub fn endpoint(ip: &str, password: &Password) -> Endpoint {
    Endpoint::new(NodeAddr::new(ip, KVROCKS_PORT as u16))
        .with_password(password.clone())
        .with_timeouts(Timeouts::new(CONNECT_TIMEOUT, REPLY_TIMEOUT))
}

/// What setting `spec.config` live on one pod came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiveConfig {
    /// Something differed and kvrocks took every change: the pod runs the new kvrocks.conf.
    Applied,
    /// kvrocks refused a change, nothing differed (a removed key cannot be unset live), or the
    /// pod did not answer: only a restart brings the new kvrocks.conf.
    NeedsRestart(String),
}

/// `CONFIG SET` of every key of `config` that differs on the pod at `ip`.
pub async fn apply_config_live(
    ip: &str,
    config: &BTreeMap<String, String>,
    password: &Password,
) -> LiveConfig {
    let client = match NodeClient::connect(endpoint(ip, password)).await {
        Ok(client) => client,
        Err(e) => return LiveConfig::NeedsRestart(e.to_string()),
    };
    let result = client.config_set_all(config).await;
    client.close().await;
    match result {
        Ok(n) if n > 0 => LiveConfig::Applied,
        Ok(_) => LiveConfig::NeedsRestart("no key differs (a key was removed)".to_owned()),
        Err(e) => LiveConfig::NeedsRestart(e.to_string()),
    }
}
