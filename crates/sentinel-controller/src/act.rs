//! Sending the planned commands: each pod's steps in order (a failure skips the rest of that
//! pod's steps), the pods in parallel. The only place that issues `SENTINEL MONITOR` / `REMOVE`.

use std::collections::BTreeMap;

use futures::future::join_all;
use kvrocks_client::SentinelClient;

use crate::model::{DesiredMonitor, ObservedPod};
use crate::plan::{Changes, Plan, Step};
use crate::state::{GroupKey, Shared};

/// What happened on one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodOutcome {
    /// How many of its steps succeeded (the first ones).
    pub done: usize,
    /// The error of the step that failed, if one did (never holds a password: the client
    /// redacts the auth-pass it sent).
    pub error: Option<String>,
}

/// Runs `plan`; returns the outcome per pod that had steps.
pub async fn run(
    plan: &Plan,
    clients: &BTreeMap<String, SentinelClient>,
    pods: &[ObservedPod],
    desired: &[DesiredMonitor],
    shared: &Shared,
    group: &GroupKey,
) -> BTreeMap<String, PodOutcome> {
    let runs = plan.pods.iter().map(|pod_plan| async move {
        let uid = pods
            .iter()
            .find(|p| p.name == pod_plan.pod)
            .map(|p| p.uid.clone())
            .unwrap_or_default();
        let Some(client) = clients.get(&pod_plan.pod) else {
            return (
                pod_plan.pod.clone(),
                PodOutcome {
                    done: 0,
                    error: Some("no connection to this sentinel".to_owned()),
                },
            );
        };
        let mut outcome = PodOutcome::default();
        for step in &pod_plan.steps {
            match send(client, step, desired).await {
                Ok(()) => {
                    outcome.done += 1;
                    remember(shared, group, &uid, step, desired);
                    tracing::info!(namespace = %group.namespace, sentinel = %group.name, pod = %pod_plan.pod, step = %describe(step), "sentinel command sent");
                }
                Err(e) => {
                    tracing::warn!(namespace = %group.namespace, sentinel = %group.name, pod = %pod_plan.pod, step = %describe(step), error = %e, "sentinel command failed");
                    outcome.error = Some(format!("{}: {e}", describe(step)));
                    break;
                }
            }
        }
        (pod_plan.pod.clone(), outcome)
    });
    join_all(runs).await.into_iter().collect()
}

async fn send(
    client: &SentinelClient,
    step: &Step,
    desired: &[DesiredMonitor],
) -> kvrocks_client::Result<()> {
    match step {
        Step::Remove { name, .. } => match client.remove(name).await {
            Err(e) if e.is_unknown_master() => Ok(()),
            other => other,
        },
        Step::Monitor {
            name,
            master,
            quorum,
        } => {
            client
                .monitor(
                    name,
                    &kvrocks_client::NodeAddr::new(master.ip.clone(), master.port),
                    *quorum,
                )
                .await
        }
        Step::Set { name, changes } => {
            let password = desired
                .iter()
                .find(|d| d.name.render() == *name)
                .map(|d| d.password.expose());
            let options = options(changes, password);
            let borrowed: Vec<(&str, &str)> =
                options.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if borrowed.is_empty() {
                return Ok(());
            }
            client.set(name, &borrowed).await
        }
        Step::Reset { name, .. } => client.reset(name).await.map(drop),
    }
}

/// The `SENTINEL SET` options of `changes`; auth-pass only when the password is known.
fn options(changes: &Changes, password: Option<&str>) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(q) = changes.quorum {
        out.push(("quorum", q.to_string()));
    }
    if let Some(ms) = changes.down_after_ms {
        out.push(("down-after-milliseconds", ms.to_string()));
    }
    if let Some(ms) = changes.failover_timeout_ms {
        out.push(("failover-timeout", ms.to_string()));
    }
    if let Some(n) = changes.parallel_syncs {
        out.push(("parallel-syncs", n.to_string()));
    }
    if changes.auth_pass
        && let Some(p) = password
    {
        out.push(("auth-pass", p.to_owned()));
    }
    out
}

fn remember(shared: &Shared, group: &GroupKey, uid: &str, step: &Step, desired: &[DesiredMonitor]) {
    match step {
        Step::Remove { name, .. } | Step::Monitor { name, .. } => {
            shared.forget_auth(group, uid, name);
        }
        Step::Set { name, changes } if changes.auth_pass => {
            if let Some(d) = desired.iter().find(|d| d.name.render() == *name) {
                shared.record_auth(group, uid, name, d.auth_fingerprint);
            }
        }
        Step::Set { .. } | Step::Reset { .. } => {}
    }
}

/// A step for logs and messages; never shows a password.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Remove { name, .. } => format!("SENTINEL REMOVE {name}"),
        Step::Monitor {
            name,
            master,
            quorum,
        } => format!(
            "SENTINEL MONITOR {name} {} {} {quorum}",
            master.ip, master.port
        ),
        Step::Set { name, changes } => {
            let shown: Vec<String> = options(changes, None)
                .into_iter()
                .map(|(k, v)| format!("{k} {v}"))
                .chain(changes.auth_pass.then(|| "auth-pass <redacted>".to_owned()))
                .collect();
            format!("SENTINEL SET {name} {}", shown.join(" "))
        }
        Step::Reset { name, .. } => format!("SENTINEL RESET {name}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn set_options_carry_the_password_but_descriptions_never_do() {
        let changes = Changes {
            quorum: Some(3),
            down_after_ms: Some(5000),
            failover_timeout_ms: None,
            parallel_syncs: Some(1),
            auth_pass: true,
        };
        let opts = options(&changes, Some("hunter2"));
        assert_eq!(
            opts,
            [
                ("quorum", "3".to_owned()),
                ("down-after-milliseconds", "5000".to_owned()),
                ("parallel-syncs", "1".to_owned()),
                ("auth-pass", "hunter2".to_owned()),
            ]
        );
        let text = describe(&Step::Set {
            name: "standard_a".into(),
            changes,
        });
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(
            text,
            "SENTINEL SET standard_a quorum 3 down-after-milliseconds 5000 parallel-syncs 1 auth-pass <redacted>"
        );
    }
}
