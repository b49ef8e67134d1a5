//! One lazily (re)connected fred client per process, failing fast instead of retrying forever.
//!
//! fred runs without a reconnect policy here: when the connection breaks, in-flight commands fail at
//! once and the next call opens a fresh connection (bounded by the connect timeout). A control plane
//! prefers a quick, clear error and a retry on its next reconcile to a call that hangs.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use fred::clients::Client;
use fred::interfaces::ClientLike;
use fred::types::config::{Config, ConnectionConfig, PerformanceConfig, ServerConfig};
use fred::types::{Builder, ClusterHash, ConnectHandle, CustomCommand, RespVersion, Value};
use tokio::sync::Mutex;

use crate::addr::{Endpoint, NodeAddr, Password, Timeouts};
use crate::error::{Error, Result};

/// Grace added on top of fred's own timeouts before our outer timeout fires.
const GRACE: Duration = Duration::from_millis(250);

/// A connected fred client and the task that drives its connection (aborted on drop).
struct Live {
    client: Client,
    task: ConnectHandle,
}

impl Live {
    fn usable(&self) -> bool {
        self.client.is_connected() && !self.task.is_finished()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // Aborting the routing task drops its sockets; nothing else holds them.
        self.task.abort();
    }
}

/// A lazily connected link to one process.
pub(crate) struct Link {
    addr: NodeAddr,
    timeouts: Timeouts,
    password: StdMutex<Option<Password>>,
    live: Mutex<Option<Live>>,
}

impl Link {
    /// A link to `endpoint`; nothing is opened until the first command.
    pub(crate) fn new(endpoint: Endpoint) -> Self {
        Self {
            addr: endpoint.addr,
            timeouts: endpoint.timeouts,
            password: StdMutex::new(endpoint.password),
            live: Mutex::new(None),
        }
    }

    pub(crate) fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    pub(crate) fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    pub(crate) fn password(&self) -> Option<Password> {
        self.password.lock().ok().and_then(|p| p.clone())
    }

    pub(crate) fn set_password(&self, password: Option<Password>) {
        if let Ok(mut p) = self.password.lock() {
            *p = password;
        }
    }

    /// The fred configuration: RESP2, fail-fast connect, no reconnect policy, bounded timeouts.
    pub(crate) fn builder(&self) -> Builder {
        let config = Config {
            server: ServerConfig::new_centralized(self.addr.host.clone(), self.addr.port),
            password: self.password().map(|p| p.expose().to_owned()),
            version: RespVersion::RESP2,
            fail_fast: true,
            ..Config::default()
        };
        let connection = ConnectionConfig {
            connection_timeout: self.timeouts.connect,
            internal_command_timeout: self.timeouts.command,
            max_command_attempts: 1,
            max_redirections: 0,
            ..ConnectionConfig::default()
        };
        let performance = PerformanceConfig {
            default_command_timeout: self.timeouts.command,
            ..PerformanceConfig::default()
        };
        let mut builder = Builder::from_config(config);
        builder
            .set_connection_config(connection)
            .set_performance_config(performance);
        builder
    }

    /// Opens a connection to the process now, outside any command.
    pub(crate) async fn connect(&self, command: &str) -> Result<(Client, ConnectHandle)> {
        let client = self
            .builder()
            .build()
            .map_err(|e| self.connect_error(command, &e))?;
        // The connect timeout covers TCP; AUTH and the setup PING run under the command timeout.
        let budget = self.timeouts.connect + self.timeouts.command + GRACE;
        match tokio::time::timeout(budget, client.init()).await {
            Ok(Ok(task)) => Ok((client, task)),
            Ok(Err(e)) => Err(self.connect_error(command, &e)),
            Err(_) => Err(Error::Connect {
                addr: self.addr.clone(),
                command: command.to_owned(),
                reason: format!("no connection within {budget:?}"),
            }),
        }
    }

    fn connect_error(&self, command: &str, err: &fred::error::Error) -> Error {
        let secret = self.password();
        let mapped = Error::from_fred(
            &self.addr,
            command,
            err,
            secret.as_ref().map(Password::expose),
            self.timeouts.connect,
        );
        match mapped {
            Error::Auth { .. } => mapped,
            other => Error::Connect {
                addr: self.addr.clone(),
                command: command.to_owned(),
                reason: match &other {
                    Error::Timeout { timeout, .. } => format!("timed out after {timeout:?}"),
                    _ => crate::error::scrub(err.details(), secret.as_ref().map(Password::expose)),
                },
            },
        }
    }

    /// A usable client, connecting first when there is none or the last one broke.
    async fn client(&self, command: &str) -> Result<Client> {
        let mut live = self.live.lock().await;
        if let Some(current) = live.as_ref()
            && current.usable()
        {
            return Ok(current.client.clone());
        }
        *live = None;
        tracing::debug!(addr = %self.addr, command, "opening a connection");
        let (client, task) = self.connect(command).await?;
        *live = Some(Live {
            client: client.clone(),
            task,
        });
        Ok(client)
    }

    /// Drops the connection `client` came from, if it is still the current one.
    async fn discard(&self, client: &Client) {
        let mut live = self.live.lock().await;
        if live.as_ref().is_some_and(|l| l.client.id() == client.id()) {
            *live = None;
        }
    }

    /// Closes the connection; the next command opens a new one.
    pub(crate) async fn close(&self) {
        let taken = self.live.lock().await.take();
        if let Some(live) = taken {
            let _ = tokio::time::timeout(self.timeouts.command, live.client.quit()).await;
        }
    }

    /// Drops the connection at once, without QUIT: a peer that stopped answering would hold a
    /// QUIT for the whole command timeout. The next command opens a new one.
    pub(crate) async fn abandon(&self) {
        if let Some(live) = self.live.lock().await.take() {
            live.task.abort();
        }
    }

    /// Runs `name args...` and returns the raw reply; `command` names it in errors (e.g. `CLUSTERX SETNODES`).
    ///
    /// `secret` is removed from any error message (for AUTH, CONFIG SET requirepass, SENTINEL SET auth-pass).
    pub(crate) async fn call(
        &self,
        command: &str,
        name: &'static str,
        args: Vec<Value>,
        secret: Option<&str>,
    ) -> Result<Value> {
        let client = self.client(command).await?;
        let cmd = CustomCommand::new_static(name, ClusterHash::FirstKey, false);
        let budget = self.timeouts.command + GRACE;
        let outcome = tokio::time::timeout(budget, client.custom::<Value, Value>(cmd, args)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                let err = Error::from_fred(&self.addr, command, &e, secret, self.timeouts.command);
                if err.is_unreachable() {
                    self.discard(&client).await;
                }
                Err(err)
            }
            Err(_) => {
                self.discard(&client).await;
                Err(Error::Timeout {
                    addr: self.addr.clone(),
                    command: command.to_owned(),
                    timeout: self.timeouts.command,
                })
            }
        }
    }

    /// Runs a command whose reply must be `OK`.
    pub(crate) async fn call_ok(
        &self,
        command: &str,
        name: &'static str,
        args: Vec<Value>,
        secret: Option<&str>,
    ) -> Result<()> {
        let reply = self.call(command, name, args, secret).await?;
        match crate::parse::value_text(&reply) {
            Some(text) if text.eq_ignore_ascii_case("OK") => Ok(()),
            _ => Err(Error::reply(
                &self.addr,
                command,
                format!("expected OK, got {reply:?}"),
            )),
        }
    }
}

/// Turns string-ish arguments into fred values.
pub(crate) fn args<I, S>(items: I) -> Vec<Value>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    items.into_iter().map(|s| Value::from(s.into())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_fails_fast_and_speaks_resp2() {
        let timeouts = Timeouts::new(Duration::from_millis(1500), Duration::from_millis(2500));
        let link = Link::new(
            Endpoint::new(NodeAddr::new("10.0.0.9", 6379))
                .with_password("pw")
                .with_timeouts(timeouts),
        );
        let builder = link.builder();
        let config = builder.get_config().unwrap();
        assert_eq!(config.version, RespVersion::RESP2);
        assert!(config.fail_fast);
        assert_eq!(config.password.as_deref(), Some("pw"));
        assert_eq!(
            config.server,
            ServerConfig::new_centralized("10.0.0.9", 6379)
        );
        // No reconnect policy: a broken connection fails its commands instead of retrying forever.
        assert!(builder.get_policy().is_none());
        let connection = builder.get_connection_config();
        assert_eq!(connection.connection_timeout, timeouts.connect);
        assert_eq!(connection.internal_command_timeout, timeouts.command);
        assert_eq!(connection.max_command_attempts, 1);
        assert_eq!(
            builder.get_performance_config().default_command_timeout,
            timeouts.command
        );
    }

    #[test]
    fn password_can_be_rotated() {
        let link = Link::new(Endpoint::new(NodeAddr::new("h", 1)));
        assert_eq!(link.password(), None);
        link.set_password(Some(Password::new("new")));
        assert_eq!(
            link.builder().get_config().unwrap().password.as_deref(),
            Some("new")
        );
    }

    #[test]
    fn args_are_strings() {
        let v = args(["SET", "k"]);
        assert_eq!(v.len(), 2);
        assert_eq!(crate::parse::value_text(&v[0]).as_deref(), Some("SET"));
    }
}
