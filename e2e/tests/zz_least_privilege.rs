//! Least privilege, proven by what the operator did. Every scenario runs the operator as a user
//! that holds exactly the ClusterRole of `config/rbac/role.yaml` (the chart's scenario: as the
//! chart's ServiceAccount, whose rules the chart test holds equal to that file), and the
//! apiserver audits its requests. This test runs after the other suites (cargo runs the test
//! targets by name, and this one is named to come last), reads the audit log each suite left,
//! and fails on any verb the ClusterRole grants that no request used, and on any request the
//! apiserver refused (403). It prints the requests it counted, by verb and resource. A patch
//! answered 201 (a server-side apply that created its object) counts as a create as well: the
//! apiserver authorizes it as one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::SystemTime;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kvrocks_e2e::controlplane::{DEFAULT_AUDITED, audit_log_path};
use kvrocks_e2e::operator::cluster_role_file;

/// The suites that run the operator (each leaves its testbed's root, audit log included).
const SUITES: [&str; 4] = ["chart", "cluster", "sentinel", "standard"];

/// Granted permissions no request shows, each with why it is granted: `update` on the custom
/// resources' finalizers is what the OwnerReferencesPermissionEnforcement admission plugin checks
/// when the operator creates an object whose owner reference sets `blockOwnerDeletion` (kube's
/// controller owner reference does); it is an admission check, never a request of its own.
const NOT_A_REQUEST: [&str; 3] = [
    "update kvrocks.io/kvrocksclusters/finalizers",
    "update kvrocks.io/kvrocksstandards/finalizers",
    "update kvrocks.io/kvrockssentinels/finalizers",
];

/// `verb group/resource[/subresource]`, the way RBAC names a permission.
fn permission(verb: &str, group: &str, resource: &str) -> String {
    format!("{verb} {group}/{resource}")
}

/// Every permission the ClusterRole grants.
fn granted() -> BTreeSet<String> {
    let text = std::fs::read_to_string(cluster_role_file()).unwrap();
    let role: ClusterRole = serde_saphyr::from_str(&text).unwrap();
    let mut out = BTreeSet::new();
    for rule in role.rules.unwrap_or_default() {
        for group in rule.api_groups.unwrap_or_default() {
            for resource in rule.resources.clone().unwrap_or_default() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "a wildcard verb");
                    out.insert(permission(verb, &group, &resource));
                }
            }
        }
    }
    out
}

/// What one suite's audit log says the operator did.
#[derive(Default)]
struct Seen {
    used: BTreeMap<String, u64>,
    refused: BTreeSet<String>,
}

fn read(suite: &str, log: &PathBuf, seen: &mut Seen) -> u64 {
    let text = std::fs::read_to_string(log).unwrap();
    let mut requests = 0;
    for line in text.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let field = |p: &str| event.pointer(p).and_then(|v| v.as_str()).unwrap_or("");
        if !DEFAULT_AUDITED.contains(&field("/user/username")) {
            continue;
        }
        let verb = field("/verb");
        let counted = match field("/stage") {
            "ResponseStarted" => verb == "watch",
            "ResponseComplete" => verb != "watch",
            _ => false,
        };
        if !counted || event.pointer("/objectRef/resource").is_none() {
            continue;
        }
        requests += 1;
        let mut resource = field("/objectRef/resource").to_owned();
        if !field("/objectRef/subresource").is_empty() {
            resource = format!("{resource}/{}", field("/objectRef/subresource"));
        }
        let what = permission(verb, field("/objectRef/apiGroup"), &resource);
        let code = event
            .pointer("/responseStatus/code")
            .and_then(|c| c.as_u64());
        // A server-side apply that creates its object is audited as a patch answered 201, and
        // authorized as a create too.
        if verb == "patch" && code == Some(201) {
            let create = permission("create", field("/objectRef/apiGroup"), &resource);
            *seen.used.entry(create).or_default() += 1;
        }
        if code == Some(403) {
            seen.refused.insert(format!(
                "{what} in {:?} ({suite})",
                field("/objectRef/namespace")
            ));
        }
        *seen.used.entry(what).or_default() += 1;
    }
    requests
}

#[test]
fn the_operator_uses_every_permission_it_is_granted_and_is_refused_none() {
    // A log older than this test binary is another run's.
    let built = std::env::current_exe()
        .and_then(std::fs::metadata)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut seen = Seen::default();
    let mut missing = Vec::new();
    for suite in SUITES {
        let root = std::env::temp_dir().join(format!("kvrocks-e2e-{suite}"));
        let log = audit_log_path(&root);
        let fresh = std::fs::metadata(&log)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= built);
        if !fresh {
            missing.push(format!("{suite} ({})", log.display()));
            continue;
        }
        let requests = read(suite, &log, &mut seen);
        kvrocks_e2e::say!("least privilege: {requests} operator requests in the {suite} suite");
        assert!(
            requests > 0,
            "the {suite} suite's audit log holds no operator request"
        );
    }
    if !missing.is_empty() {
        kvrocks_e2e::say!(
            "\nSKIPPED least privilege: no audit log of this run from {}; run every e2e suite (make test) first",
            missing.join(", ")
        );
        return;
    }
    for (what, n) in &seen.used {
        kvrocks_e2e::say!("  {n:>7}  {what}");
    }
    let granted = granted();
    let unused: Vec<&String> = granted
        .iter()
        .filter(|p| !seen.used.contains_key(*p) && !NOT_A_REQUEST.contains(&p.as_str()))
        .collect();
    assert!(
        seen.refused.is_empty(),
        "the apiserver refused the operator: {:?}",
        seen.refused
    );
    assert!(
        unused.is_empty(),
        "granted in {} but used by no request of any suite: {unused:?}",
        cluster_role_file().display()
    );
}
