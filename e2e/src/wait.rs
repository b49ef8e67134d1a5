//! Waiting for conditions with a deadline, by polling: every wait names what it waits for and
//! reports the last thing it saw when it gives up.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// How often conditions are polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Polls `check` until it yields `Ok(value)`; `Err(observation)` means "not yet" and is reported
/// when `timeout` passes.
pub async fn until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> std::result::Result<T, String>,
) -> Result<T> {
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(value) => return Ok(value),
            Err(observation) => observation,
        };
        if started.elapsed() >= timeout {
            return Err(Error::Timeout {
                what: what.to_owned(),
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until `ip:port` takes TCP connections (`answers`) or stops taking them (each attempt
/// given half a second).
pub async fn tcp(ip: &str, port: u16, answers: bool, timeout: Duration) -> Result<()> {
    let what = if answers {
        format!("{ip}:{port} to answer")
    } else {
        format!("{ip}:{port} to stop answering")
    };
    until(&what, timeout, async || {
        let reachable = crate::Testbed::tcp_reachable(ip, port, Duration::from_millis(500)).await;
        if reachable == answers {
            Ok(())
        } else if reachable {
            Err("it still takes connections".to_owned())
        } else {
            Err("it takes no connections".to_owned())
        }
    })
    .await
}

/// Waits until the object `name` exists and satisfies `condition`; returns it.
pub async fn for_object<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Fn(&K) -> bool,
) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + serde::Serialize,
    K::DynamicType: Default,
{
    let description = format!("{} {name}: {what}", K::kind(&Default::default()));
    until(&description, timeout, async || {
        match api.get_opt(name).await {
            Ok(Some(object)) if condition(&object) => Ok(object),
            Ok(Some(object)) => Err(format!(
                "exists, condition not met yet{}",
                ready_condition(&object)
                    .map(|c| format!("; Ready: {c}"))
                    .unwrap_or_default()
            )),
            Ok(None) => Err("does not exist".to_owned()),
            Err(e) => Err(format!("get failed: {e}")),
        }
    })
    .await
}

/// The object's `Ready` condition as `status reason: message`, when it has one: what a failed
/// wait reports, so a timeout says why the operator was stuck.
fn ready_condition(object: &impl serde::Serialize) -> Option<String> {
    let value = serde_json::to_value(object).ok()?;
    let ready = value
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(|t| t.as_str()) == Some("Ready"))?;
    let field = |k: &str| {
        ready
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    Some(format!(
        "{} {}: {}",
        field("status"),
        field("reason"),
        field("message")
    ))
}

/// Waits until the object `name` is gone (deleted and finalized).
pub async fn for_deletion<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let description = format!("{} {name} to be deleted", K::kind(&Default::default()));
    until(&description, timeout, async || {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still exists".to_owned()),
            Err(e) => Err(format!("get failed: {e}")),
        }
    })
    .await
}
