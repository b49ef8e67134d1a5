//! Service names for containers. The testbed runs neither a cluster DNS nor kube-proxy, so the
//! agent does what a client needs from them in the `/etc/hosts` it gives each container: every
//! Service's names (`<svc>`, in the pod's own namespace, `<svc>.<ns>`, `<svc>.<ns>.svc` and
//! `<svc>.<ns>.svc.cluster.local`) map to the IP of one ready endpoint, and the names of pods
//! behind a headless Service (`<hostname>.<svc>.<ns>.svc.cluster.local`) to the pod's IP.
//! The file is written when the container starts: a Service whose endpoints move later keeps its
//! old address in that container (the price of having no resolver).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

/// Cluster domain of the names.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `(ip, names)` lines for every Service with a ready endpoint, as seen from a pod in
/// `namespace`. A failed list gives no lines (the container still starts; names do not resolve).
pub async fn host_entries(client: &kube::Client, namespace: &str) -> Vec<(String, Vec<String>)> {
    let services: Api<Service> = Api::all(client.clone());
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let (Ok(services), Ok(slices)) = (
        services.list(&ListParams::default()).await,
        slices.list(&ListParams::default()).await,
    ) else {
        return Vec::new();
    };
    entries(&services.items, &slices.items, namespace)
}

/// A ready endpoint: its IP and, behind a headless Service, its hostname.
type Endpoint = (String, Option<String>);

/// The pure part of [`host_entries`].
pub fn entries(
    services: &[Service],
    slices: &[EndpointSlice],
    namespace: &str,
) -> Vec<(String, Vec<String>)> {
    // Ready endpoint addresses (and hostnames) by (namespace, service).
    let mut ready: BTreeMap<(String, String), Vec<Endpoint>> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice.labels().get("kubernetes.io/service-name") else {
            continue;
        };
        let ns = slice.namespace().unwrap_or_default();
        for endpoint in &slice.endpoints {
            let is_ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true);
            if let (true, Some(ip)) = (is_ready, endpoint.addresses.first()) {
                ready
                    .entry((ns.clone(), service.clone()))
                    .or_default()
                    .push((ip.clone(), endpoint.hostname.clone()));
            }
        }
    }
    let mut lines = Vec::new();
    for service in services {
        let (ns, name) = (service.namespace().unwrap_or_default(), service.name_any());
        let Some(endpoints) = ready.get_mut(&(ns.clone(), name.clone())) else {
            continue;
        };
        endpoints.sort();
        let fqdn = format!("{name}.{ns}.svc.{CLUSTER_DOMAIN}");
        let mut names = vec![
            fqdn.clone(),
            format!("{name}.{ns}.svc"),
            format!("{name}.{ns}"),
        ];
        if ns == namespace {
            names.push(name.clone());
        }
        lines.push((endpoints[0].0.clone(), names));
        for (ip, hostname) in endpoints.iter() {
            if let Some(hostname) = hostname {
                lines.push((ip.clone(), vec![format!("{hostname}.{fqdn}")]));
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn service(ns: &str, name: &str) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name}
        }))
        .unwrap()
    }

    fn slice(ns: &str, service: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": format!("{service}-x"),
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    #[test]
    fn a_service_resolves_to_a_ready_endpoint_and_short_names_only_in_its_namespace() {
        let services = [
            service("db", "std-master"),
            service("db", "std"),
            service("db", "none"),
        ];
        let slices = [
            slice(
                "db",
                "std-master",
                serde_json::json!([
                    {"addresses": ["10.1.0.9"], "conditions": {"ready": false}},
                    {"addresses": ["10.1.0.7"], "conditions": {"ready": true}},
                ]),
            ),
            slice(
                "db",
                "std",
                serde_json::json!([
                    {"addresses": ["10.1.0.7"], "hostname": "std-0", "conditions": {"ready": true}},
                ]),
            ),
        ];
        let here = entries(&services, &slices, "db");
        assert_eq!(here[0].0, "10.1.0.7");
        assert!(here[0].1.contains(&"std-master".to_owned()));
        assert!(
            here[0]
                .1
                .contains(&"std-master.db.svc.cluster.local".to_owned())
        );
        assert!(
            here.iter().any(|(ip, n)| ip == "10.1.0.7"
                && n == &vec!["std-0.std.db.svc.cluster.local".to_owned()])
        );
        assert!(
            !here
                .iter()
                .any(|(_, n)| n.iter().any(|n| n.starts_with("none")))
        );
        let elsewhere = entries(&services, &slices, "other");
        assert!(!elsewhere[0].1.contains(&"std-master".to_owned()));
        assert!(elsewhere[0].1.contains(&"std-master.db".to_owned()));
    }
}
