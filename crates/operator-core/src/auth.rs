//! The password of a KvrocksStandard or KvrocksCluster: read from the Secret the spec names, or
//! from `<cr>-auth`, which the operator creates (owned by the resource) with a random password.
//! The value is only ever handed to the caller, never logged.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Resource, ResourceExt};
use kvrocks_api::labels::{self, Component, PASSWORD_KEY, names};

use kvrocks_client::{NodeClient, Password};

use crate::error::{Error, Result};
use crate::{builders, node};

/// Length of a generated password (alphanumeric).
pub const GENERATED_LEN: usize = 32;

/// The name of the password Secret: `spec.auth.secretName`, else `<cr>-auth`.
pub fn secret_name(cr: &str, named: Option<&str>) -> String {
    named
        .map(str::to_owned)
        .unwrap_or_else(|| names::auth_secret(cr))
}

/// Shortest password taken from a Secret.
pub const MIN_LEN: usize = 8;
/// Longest password taken from a Secret.
pub const MAX_LEN: usize = 512;

/// Characters a password may not hold even though printable: they quote or escape in
/// kvrocks.conf and sentinel.conf lines.
pub const QUOTING: [char; 3] = ['"', '\'', '\\'];

/// A usable password: 8 to 512 printable ASCII characters, none of them a space or one of
/// [`QUOTING`] (it goes into kvrocks.conf and sentinel.conf lines). The pods' start scripts
/// check the same with [`shell_guard`], so a Secret edited behind the operator's back cannot
/// inject configuration either.
pub fn usable(value: &str) -> bool {
    (MIN_LEN..=MAX_LEN).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && !QUOTING.contains(&c))
}

/// What [`usable`] asks of a password, for messages.
pub fn rule() -> String {
    format!("{MIN_LEN} to {MAX_LEN} printable ASCII characters, with no space, quote or backslash")
}

/// A shell snippet for a start script: exits 1, saying why, unless the variable `var` holds a
/// [`usable`] password.
pub fn shell_guard(var: &str) -> String {
    let refuse = format!(
        "{{ echo \"kvrocks-operator: the password in {var} is not {}: refusing to start\" >&2; exit 1; }}",
        rule()
    );
    format!(
        "case \"${var}\" in *[![:graph:]]*|*[\\\"\\'\\\\]*) {refuse} ;; esac\n\
         if [ ${{#{var}}} -lt {MIN_LEN} ] || [ ${{#{var}}} -gt {MAX_LEN} ]; then {refuse}; fi\n"
    )
}

/// Whether the operator may use the Secret's password: it created it (an owner reference to a
/// kvrocks.io resource), or someone allowed to edit Secrets labelled it [`labels::AUTH_LABEL`]
/// `"true"`.
pub fn trusted(secret: &Secret) -> bool {
    let labelled = secret.labels().get(labels::AUTH_LABEL).map(String::as_str) == Some("true");
    let owned = secret
        .owner_references()
        .iter()
        .any(|o| o.api_version.starts_with("kvrocks.io/"));
    labelled || owned
}

/// The password a Secret holds under [`PASSWORD_KEY`], or a message for a person saying what is
/// wrong with it (never the value).
pub fn password_from(
    namespace: &str,
    name: &str,
    secret: &Secret,
) -> std::result::Result<String, String> {
    if !trusted(secret) {
        return Err(format!(
            "the Secret {namespace}/{name} was not created by the operator and is not labelled {}=true; label it if it is meant for this instance: kubectl label secret -n {namespace} {name} {}=true",
            labels::AUTH_LABEL,
            labels::AUTH_LABEL
        ));
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PASSWORD_KEY))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(PASSWORD_KEY))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| format!("the Secret {namespace}/{name} has no key {PASSWORD_KEY:?}"))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        format!("the {PASSWORD_KEY:?} of Secret {namespace}/{name} is not UTF-8 text")
    })?;
    if usable(&text) {
        Ok(text)
    } else {
        Err(format!(
            "the {PASSWORD_KEY:?} of Secret {namespace}/{name} is not usable: it must be {}",
            rule()
        ))
    }
}

fn generate() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..GENERATED_LEN)
        .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
        .collect()
}

/// The password. `Ok(Err(message))` when the named Secret is missing or holds no usable
/// `password` key: the caller reports it in a condition and waits.
pub async fn ensure_password<K>(
    client: &kube::Client,
    owner: &K,
    component: Component,
    named: Option<&str>,
) -> Result<std::result::Result<String, String>>
where
    K: Resource<DynamicType = ()>,
{
    let ns = owner.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let name = secret_name(&owner.name_any(), named);
    let get_err = |source: kube::Error| Error::Get {
        kind: "Secret".into(),
        object: format!("{ns}/{name}"),
        source: Box::new(source),
    };
    let secret = match secrets.get_opt(&name).await.map_err(get_err)? {
        Some(s) => s,
        None if named.is_none() => {
            let secret = password_secret(owner, &name, component, &generate())?;
            match secrets.create(&PostParams::default(), &secret).await {
                Ok(s) => s,
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    secrets.get(&name).await.map_err(get_err)?
                }
                Err(source) => {
                    return Err(Error::Apply {
                        kind: "Secret".into(),
                        object: format!("{ns}/{name}"),
                        source: Box::new(source),
                    });
                }
            }
        }
        None => {
            return Ok(Err(format!(
                "the Secret {name} named in spec.auth.secretName does not exist; create it with a key \"{PASSWORD_KEY}\""
            )));
        }
    };
    Ok(password_from(&ns, &name, &secret))
}

/// A Secret `name` owned by `owner` holding `password` under [`PASSWORD_KEY`].
fn password_secret<K>(owner: &K, name: &str, component: Component, password: &str) -> Result<Secret>
where
    K: Resource<DynamicType = ()>,
{
    Ok(Secret {
        metadata: builders::owned_meta(
            owner,
            name,
            labels::common_labels(&owner.name_any(), component),
        )?,
        data: Some(
            [(
                PASSWORD_KEY.to_owned(),
                ByteString(password.as_bytes().to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    })
}

/// The password in effect on the pods of `owner`, as its controller recorded it
/// (`<cr>-auth-applied`); None before anything was recorded.
pub async fn applied_password<K>(client: &kube::Client, owner: &K) -> Result<Option<Password>>
where
    K: Resource<DynamicType = ()>,
{
    applied_password_of(
        client,
        &owner.namespace().unwrap_or_default(),
        &owner.name_any(),
    )
    .await
}

/// The password in effect on the pods of the resource `name` in `ns` (see [`applied_password`]):
/// how a Standard's controller finds its sentinel group's password.
pub async fn applied_password_of(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<Option<Password>> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let name = names::applied_auth_secret(name);
    let found = secrets.get_opt(&name).await.map_err(|source| Error::Get {
        kind: "Secret".into(),
        object: format!("{ns}/{name}"),
        source: Box::new(source),
    })?;
    Ok(found
        .as_ref()
        .and_then(|s| s.data.as_ref())
        .and_then(|d| d.get(PASSWORD_KEY))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .filter(|p| !p.is_empty())
        .map(Password::new))
}

/// Records `password` as the one in effect on the pods of `owner` (Secret `<cr>-auth-applied`,
/// owned by it).
pub async fn record_password<K>(
    client: &kube::Client,
    owner: &K,
    component: Component,
    password: &Password,
) -> Result<()>
where
    K: Resource<DynamicType = ()>,
{
    let ns = owner.namespace().unwrap_or_default();
    let name = names::applied_auth_secret(&owner.name_any());
    let secret = password_secret(owner, &name, component, password.expose())?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    crate::apply::get_and_apply_if_changed(&secrets, &secret).await?;
    Ok(())
}

/// Rolls a new password out to the kvrocks nodes at `ips` without breaking replication:
/// `masterauth` on every node, then `requirepass` on every node. A node that refuses `old` but
/// takes `new` (it started after the change) is left as it is; a node that takes neither stops
/// the rotation (nothing was changed yet: it is checked before any change).
pub async fn rotate(
    ips: &[String],
    old: &Password,
    new: &Password,
) -> std::result::Result<(), String> {
    let mut clients = Vec::new();
    for ip in ips {
        match NodeClient::connect(node::endpoint(ip, old)).await {
            Ok(c) => clients.push(c),
            Err(_) => {
                if let Err(e) = NodeClient::connect(node::endpoint(ip, new)).await {
                    return Err(format!("password rotation waits for {ip}: {e}"));
                }
            }
        }
    }
    let mut result = Ok(());
    for key in ["masterauth", "requirepass"] {
        for client in &clients {
            if let Err(e) = client.config_set(key, new.expose()).await {
                result = Err(format!("password rotation: {e}"));
                break;
            }
        }
        if result.is_err() {
            break;
        }
    }
    for client in &clients {
        client.close().await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(labels: &[(&str, &str)], owner: Option<&str>, password: &[u8]) -> Secret {
        let mut s = Secret {
            data: Some([(PASSWORD_KEY.to_owned(), ByteString(password.to_vec()))].into()),
            ..Secret::default()
        };
        s.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        if let Some(api_version) = owner {
            s.metadata.owner_references = Some(vec![
                k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                    api_version: api_version.to_owned(),
                    kind: "KvrocksStandard".into(),
                    name: "db".into(),
                    uid: "u".into(),
                    ..Default::default()
                },
            ]);
        }
        s
    }

    #[test]
    fn only_a_labelled_or_operator_made_secret_with_a_sound_password_is_used() {
        let good = b"a-Sound-passw0rd";
        let read = |s: &Secret| password_from("ns", "s", s);
        assert!(
            read(&secret(&[], None, good))
                .unwrap_err()
                .contains("kvrocks.io/auth=true")
        );
        assert!(read(&secret(&[(labels::AUTH_LABEL, "yes")], None, good)).is_err());
        assert!(read(&secret(&[], Some("v1"), good)).is_err());
        assert_eq!(
            read(&secret(&[(labels::AUTH_LABEL, "true")], None, good)).unwrap(),
            "a-Sound-passw0rd"
        );
        assert!(read(&secret(&[], Some("kvrocks.io/v1alpha1"), good)).is_ok());
        let bad = read(&secret(
            &[(labels::AUTH_LABEL, "true")],
            None,
            b"two\nlines-of-config",
        ));
        assert!(bad.unwrap_err().contains("not usable"));
        assert!(
            read(&secret(
                &[(labels::AUTH_LABEL, "true")],
                None,
                &[0xff, 0xfe, 0x41, 0x41, 0x41, 0x41, 0x41, 0x41]
            ))
            .unwrap_err()
            .contains("UTF-8")
        );
        let mut none = secret(&[(labels::AUTH_LABEL, "true")], None, good);
        none.data = None;
        assert!(read(&none).unwrap_err().contains("no key"));
    }

    #[test]
    fn generated_passwords_are_usable_and_differ() {
        let a = generate();
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(usable(&a));
        assert_ne!(a, generate());
        assert!(!usable("with space"));
        assert!(!usable("line\nbreak"));
        assert!(!usable(""));
        assert!(!usable("short"));
        assert!(!usable("tab\tinside-it"));
        assert!(!usable("escape\u{1b}[0m-sequence"));
        assert!(!usable(&"x".repeat(MAX_LEN + 1)));
        assert!(usable("rotated-Pa55word-2026"));
        assert!(!usable("quote\"inside"));
        assert!(!usable("apostrophe'inside"));
        assert!(!usable("back\\slash-inside"));
        assert!(!usable("n\u{e4}her-an-umlaut"));
        assert_eq!(secret_name("c", None), "c-auth");
        assert_eq!(secret_name("c", Some("mine")), "mine");
    }
    /// The start scripts' guard, run by the real `sh`, agrees with [`usable`].
    fn guard_accepts(password: &str) -> bool {
        let script = format!("{}echo ok", shell_guard("PW"));
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .env("PW", password)
            .output()
            .expect("sh runs");
        out.status.success() && out.stdout == b"ok\n"
    }

    #[test]
    fn the_shell_guard_agrees_with_usable() {
        for p in [
            "rotated-Pa55word-2026",
            "with space-inside",
            "line\nbreak-inside",
            "tab\tinside-it",
            "quote\"inside",
            "apostrophe'inside",
            "back\\slash-inside",
            "n\u{e4}her-an-umlaut",
            "short",
            "[x]*?$(id)`id`;|&<>~#{}!%^",
        ] {
            assert_eq!(guard_accepts(p), usable(p), "{p:?}");
        }
        assert!(guard_accepts(&"x".repeat(MAX_LEN)));
        assert!(!guard_accepts(&"x".repeat(MAX_LEN + 1)));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn the_shell_guard_agrees_with_usable_on_any_text(p in "[ -~\t\n\u{e4}]{0,24}") {
            proptest::prop_assert_eq!(guard_accepts(&p), usable(&p));
        }
    }
}
