//! A container's environment (`env`, `envFrom`, `valueFrom`) and `$(VAR)` expansion with the
//! Kubernetes semantics: `$(NAME)` is replaced when NAME is defined and kept as written when it is
//! not, `$$` is a literal `$`, any other `$` stays as it is.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};

use super::downward::{PodFacts, field_value, resource_value};

/// Where ConfigMap and Secret data come from (the agent's watch caches; maps in tests).
pub trait Sources {
    /// The data of ConfigMap `namespace/name` (`binaryData` included, lossily), if it exists.
    fn config_map(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
    /// The data of Secret `namespace/name`, decoded, if it exists.
    fn secret(&self, namespace: &str, name: &str) -> Option<BTreeMap<String, String>>;
}

/// Why an environment could not be built: the kubelet's `CreateContainerConfigError`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EnvError(pub String);

/// Expands `$(VAR)` references in `input` through `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if after.is_empty() {
            out.push('$');
            rest = after;
            break;
        }
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Expands every word with the container's environment.
pub fn expand_all(words: &[String], env: &BTreeMap<String, String>) -> Vec<String> {
    words
        .iter()
        .map(|w| expand(w, |name| env.get(name).cloned()))
        .collect()
}

/// The container's environment: `envFrom` sources in order, then `env` in order (later entries
/// win; values may reference earlier ones with `$(VAR)`).
pub fn container_env(
    pod: &Pod,
    container: &Container,
    facts: &PodFacts,
    sources: &dyn Sources,
) -> Result<BTreeMap<String, String>, EnvError> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let data = if let Some(cm) = &from.config_map_ref {
            let found = sources.config_map(namespace, &cm.name);
            if found.is_none() && cm.optional != Some(true) {
                return Err(EnvError(format!("configmap \"{}\" not found", cm.name)));
            }
            found
        } else if let Some(secret) = &from.secret_ref {
            let found = sources.secret(namespace, &secret.name);
            if found.is_none() && secret.optional != Some(true) {
                return Err(EnvError(format!("secret \"{}\" not found", secret.name)));
            }
            found
        } else {
            None
        };
        for (key, value) in data.into_iter().flatten() {
            let name = format!("{prefix}{key}");
            if valid_env_name(&name) {
                env.insert(name, value);
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            let value = if let Some(field) = &source.field_ref {
                Some(field_value(pod, facts, &field.field_path).map_err(EnvError)?)
            } else if let Some(resource) = &source.resource_field_ref {
                Some(resource_value(pod, facts, Some(container), resource).map_err(EnvError)?)
            } else if let Some(key) = &source.config_map_key_ref {
                let data = sources.config_map(namespace, &key.name);
                let optional = key.optional == Some(true);
                match data {
                    Some(d) => match d.get(&key.key) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in ConfigMap {namespace}/{}",
                                key.key, key.name
                            )));
                        }
                    },
                    None if optional => None,
                    None => {
                        return Err(EnvError(format!("configmap \"{}\" not found", key.name)));
                    }
                }
            } else if let Some(key) = &source.secret_key_ref {
                let data = sources.secret(namespace, &key.name);
                let optional = key.optional == Some(true);
                match data {
                    Some(d) => match d.get(&key.key) {
                        Some(v) => Some(v.clone()),
                        None if optional => None,
                        None => {
                            return Err(EnvError(format!(
                                "couldn't find key {} in Secret {namespace}/{}",
                                key.key, key.name
                            )));
                        }
                    },
                    None if optional => None,
                    None => return Err(EnvError(format!("secret \"{}\" not found", key.name))),
                }
            } else {
                None
            };
            match value {
                Some(v) => v,
                None => continue,
            }
        } else {
            let raw = var.value.clone().unwrap_or_default();
            expand(&raw, |name| env.get(name).cloned())
        };
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

/// C identifiers plus `-` and `.`, as the API server accepts for env names.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
        SecretKeySelector,
    };
    use std::net::Ipv4Addr;

    struct Fixed;
    impl Sources for Fixed {
        fn config_map(&self, _: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "cm").then(|| [("A".to_owned(), "from-cm".to_owned())].into())
        }
        fn secret(&self, _: &str, name: &str) -> Option<BTreeMap<String, String>> {
            (name == "s").then(|| [("password".to_owned(), "hunter2".to_owned())].into())
        }
    }

    fn lookup(name: &str) -> Option<String> {
        match name {
            "VAR" => Some("value".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_kubernetes() {
        assert_eq!(expand("$(VAR)", lookup), "value");
        assert_eq!(expand("a$(VAR)b$(VAR)", lookup), "avaluebvalue");
        assert_eq!(expand("$(UNSET)", lookup), "$(UNSET)");
        assert_eq!(expand("$$(VAR)", lookup), "$(VAR)");
        assert_eq!(expand("$$$(VAR)", lookup), "$value");
        assert_eq!(expand("$VAR", lookup), "$VAR");
        assert_eq!(expand("$(VAR", lookup), "$(VAR");
        assert_eq!(expand("x$", lookup), "x$");
        assert_eq!(expand("$(EMPTY)x", lookup), "x");
        assert_eq!(expand("ü$(VAR)ß", lookup), "üvalueß");
        assert_eq!(expand("$ü", lookup), "$ü");
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn env_from_value_from_and_references() {
        let mut pod = Pod::default();
        pod.metadata.name = Some("p-0".into());
        pod.metadata.namespace = Some("ns".into());
        let container = Container {
            name: "c".into(),
            env_from: Some(vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "cm".into(),
                    optional: None,
                }),
                prefix: Some("P_".into()),
                secret_ref: None,
            }]),
            env: Some(vec![
                EnvVar {
                    name: "POD_NAME".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            field_path: "metadata.name".into(),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                },
                EnvVar {
                    name: "PASS".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "s".into(),
                            key: "password".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                },
                var("GREETING", "hi $(POD_NAME) $(P_A) $(LATER)"),
                var("LATER", "x"),
            ]),
            ..Default::default()
        };
        let facts = PodFacts {
            ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
            host_ip: Ipv4Addr::new(10, 0, 0, 1),
            node_cpu: 1.0,
            node_memory: 1.0,
        };
        let env = container_env(&pod, &container, &facts, &Fixed).unwrap();
        assert_eq!(env["P_A"], "from-cm");
        assert_eq!(env["POD_NAME"], "p-0");
        assert_eq!(env["PASS"], "hunter2");
        assert_eq!(env["GREETING"], "hi p-0 from-cm $(LATER)");
        let args = expand_all(
            &["--name=$(POD_NAME)".to_owned(), "$$(PASS)".to_owned()],
            &env,
        );
        assert_eq!(args, ["--name=p-0", "$(PASS)"]);
    }

    #[test]
    fn missing_sources_are_errors_unless_optional() {
        let pod = Pod::default();
        let facts = PodFacts {
            ip: None,
            host_ip: Ipv4Addr::LOCALHOST,
            node_cpu: 1.0,
            node_memory: 1.0,
        };
        let mut container = Container {
            name: "c".into(),
            env: Some(vec![EnvVar {
                name: "X".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: "s".into(),
                        key: "nope".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }),
            }]),
            ..Default::default()
        };
        let err = container_env(&pod, &container, &facts, &Fixed).unwrap_err();
        assert!(err.0.contains("couldn't find key nope"), "{err}");
        if let Some(EnvVarSource {
            secret_key_ref: Some(sel),
            ..
        }) = container
            .env
            .as_mut()
            .and_then(|e| e[0].value_from.as_mut())
        {
            sel.optional = Some(true);
        }
        let env = container_env(&pod, &container, &facts, &Fixed).unwrap();
        assert!(!env.contains_key("X"));
    }
}
