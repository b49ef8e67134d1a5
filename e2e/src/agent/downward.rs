//! The downward API: values of `fieldRef` and `resourceFieldRef`, shared by env vars and
//! downwardAPI volume files.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What the agent knows about a pod that its API object may not show yet.
#[derive(Clone, Debug)]
pub struct PodFacts {
    /// The pod's IP (known before the status carrying it has been written).
    pub ip: Option<Ipv4Addr>,
    /// The node's IP.
    pub host_ip: Ipv4Addr,
    /// The node's allocatable cpu (cores) and memory (bytes): the value of an unset limit.
    pub node_cpu: f64,
    /// See `node_cpu`.
    pub node_memory: f64,
}

/// The value of a `fieldRef.fieldPath`.
pub fn field_value(pod: &Pod, facts: &PodFacts, path: &str) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let ip = facts.ip.map(|ip| ip.to_string()).unwrap_or_default();
    let value = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => facts.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => ip,
        _ => {
            let pick = |prefix: &str, map: Option<&BTreeMap<String, String>>| {
                let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
                Some(map.and_then(|m| m.get(key)).cloned().unwrap_or_default())
            };
            return pick("metadata.labels['", meta.labels.as_ref())
                .or_else(|| pick("metadata.annotations['", meta.annotations.as_ref()))
                .ok_or_else(|| format!("unsupported fieldPath {path:?}"));
        }
    };
    Ok(value)
}

/// `key="value"` lines, sorted by key, as the kubelet writes labels and annotations.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn go_quote(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a `resourceFieldRef` for `container` (rounded up in units of `divisor`).
pub fn resource_value(
    pod: &Pod,
    facts: &PodFacts,
    default_container: Option<&Container>,
    selector: &ResourceFieldSelector,
) -> Result<String, String> {
    let container = match selector.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name)),
        None => default_container,
    }
    .ok_or_else(|| format!("resourceFieldRef {}: no such container", selector.resource))?;
    let resources = container.resources.as_ref();
    let (section, name) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported resource {:?}", selector.resource))?;
    let map = match section {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("unsupported resource {:?}", selector.resource)),
    };
    let fallback = match name {
        "cpu" => facts.node_cpu,
        "memory" => facts.node_memory,
        "ephemeral-storage" => 0.0,
        _ => return Err(format!("unsupported resource {:?}", selector.resource)),
    };
    let value = match map.and_then(|m| m.get(name)) {
        Some(q) => parse_quantity(&q.0).ok_or_else(|| format!("bad quantity {:?}", q.0))?,
        // An unset cpu request counts as 0 (the kubelet reports that), an unset limit as the node.
        None if section == "requests" && name == "cpu" => 0.0,
        None => fallback,
    };
    let divisor = match &selector.divisor {
        Some(Quantity(d)) => parse_quantity(d).ok_or_else(|| format!("bad divisor {d:?}"))?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err("divisor must be positive".to_owned());
    }
    Ok(format!("{}", (value / divisor).ceil() as i64))
}

/// A Kubernetes quantity (`500m`, `2`, `1Gi`, `128M`, `1e3`) as a number.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};

    fn pod() -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.namespace = Some("ns".into());
        pod.metadata.labels = Some([("app".to_owned(), "x\"y".to_owned())].into());
        let mut container = Container {
            name: "c".into(),
            ..Default::default()
        };
        container.resources = Some(ResourceRequirements {
            limits: Some([("memory".to_owned(), Quantity("1Gi".into()))].into()),
            requests: Some([("cpu".to_owned(), Quantity("250m".into()))].into()),
            ..Default::default()
        });
        pod.spec = Some(PodSpec {
            containers: vec![container],
            node_name: Some("testbed-node-1".into()),
            ..Default::default()
        });
        pod
    }

    fn facts() -> PodFacts {
        PodFacts {
            ip: Some(Ipv4Addr::new(10, 244, 0, 7)),
            host_ip: Ipv4Addr::new(10, 244, 0, 1),
            node_cpu: 16.0,
            node_memory: 64.0 * 1024.0 * 1024.0 * 1024.0,
        }
    }

    #[test]
    fn field_paths() {
        let (p, f) = (pod(), facts());
        assert_eq!(field_value(&p, &f, "metadata.name").unwrap(), "p");
        assert_eq!(field_value(&p, &f, "status.podIP").unwrap(), "10.244.0.7");
        assert_eq!(
            field_value(&p, &f, "spec.nodeName").unwrap(),
            "testbed-node-1"
        );
        assert_eq!(
            field_value(&p, &f, "metadata.labels['app']").unwrap(),
            "x\"y"
        );
        assert_eq!(
            field_value(&p, &f, "metadata.labels").unwrap(),
            "app=\"x\\\"y\""
        );
        assert!(field_value(&p, &f, "spec.bogus").is_err());
    }

    #[test]
    fn resource_fields_round_up_in_divisor_units() {
        let (p, f) = (pod(), facts());
        let c = p.spec.as_ref().map(|s| &s.containers[0]);
        let sel = |r: &str, d: Option<&str>| ResourceFieldSelector {
            resource: r.into(),
            divisor: d.map(|d| Quantity(d.into())),
            container_name: None,
        };
        assert_eq!(
            resource_value(&p, &f, c, &sel("requests.cpu", None)).unwrap(),
            "1"
        );
        assert_eq!(
            resource_value(&p, &f, c, &sel("requests.cpu", Some("1m"))).unwrap(),
            "250"
        );
        assert_eq!(
            resource_value(&p, &f, c, &sel("limits.memory", Some("1Mi"))).unwrap(),
            "1024"
        );
        assert_eq!(
            resource_value(&p, &f, c, &sel("limits.cpu", None)).unwrap(),
            "16"
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2Ki"), Some(2048.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(
            parse_quantity("10Gi"),
            Some(10.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_quantity("x"), None);
    }
}
