//! `--metrics-auth`: /metrics served only to a bearer token that the apiserver authenticates
//! (`TokenReview`) and authorizes for `get` on the non-resource URL `/metrics`
//! (`SubjectAccessReview`), as kube-rbac-proxy does. Grant a scraper with a ClusterRole rule
//! `nonResourceURLs: ["/metrics"], verbs: ["get"]` (the chart makes `<release>-metrics-reader`).
//!
//! Verdicts are kept for [`CACHE_TTL`] by a hash of the token (never the token), at most
//! [`CACHE_ENTRIES`] of them, so a scrape every few seconds costs two API requests a minute; an
//! apiserver that cannot be asked gives 503 and is not cached.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};

/// How long a verdict is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Most verdicts kept; a full cache is emptied (tokens are few: the scrapers).
pub const CACHE_ENTRIES: usize = 256;
/// The path authorized.
pub const PATH: &str = "/metrics";

/// What a request to /metrics gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served.
    Allowed,
    /// 401: no bearer token, or one the apiserver does not accept.
    Unauthenticated(String),
    /// 403: a known user without `get` on /metrics.
    Forbidden(String),
    /// 503: the apiserver could not be asked.
    Unavailable(String),
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' '))
        .then_some(token)
}

/// The reviews, with their cache.
pub struct MetricsAuth {
    client: kube::Client,
    cache: Mutex<HashMap<String, (Instant, Verdict)>>,
}

impl MetricsAuth {
    /// Reviews through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The verdict for a request whose `Authorization` header is `header`.
    pub async fn check(&self, header: Option<&str>) -> Verdict {
        let Some(token) = bearer(header) else {
            return Verdict::Unauthenticated("a bearer token is required".to_owned());
        };
        let key = digest(token);
        let now = Instant::now();
        if let Some(verdict) = self.cached(&key, now) {
            return verdict;
        }
        let verdict = self.review(token).await;
        if !matches!(verdict, Verdict::Unavailable(_)) {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key, (now, verdict.clone()));
        }
        verdict
    }

    fn cached(&self, key: &str, now: Instant) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let (at, verdict) = cache.get(key)?;
        (now.duration_since(*at) < CACHE_TTL).then(|| verdict.clone())
    }

    async fn review(&self, token: &str) -> Verdict {
        let post = PostParams::default();
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = match Api::<TokenReview>::all(self.client.clone())
            .create(&post, &review)
            .await
        {
            Ok(r) => r.status.unwrap_or_default(),
            Err(e) => return Verdict::Unavailable(format!("TokenReview failed: {e}")),
        };
        let user = match (reviewed.authenticated, reviewed.user) {
            (Some(true), Some(user)) => user,
            _ => {
                return Verdict::Unauthenticated(
                    reviewed
                        .error
                        .unwrap_or_else(|| "the token is not valid".to_owned()),
                );
            }
        };
        let name = user.username.clone().unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(PATH.to_owned()),
                    verb: Some("get".to_owned()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&post, &access)
            .await
        {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Verdict::Allowed,
            Ok(_) => Verdict::Forbidden(format!("{name} may not get {PATH}")),
            Err(e) => Verdict::Unavailable(format!("SubjectAccessReview failed: {e}")),
        }
    }
}

/// The cache key of a token: its SHA-256, hex.
fn digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_header_carries_a_token() {
        assert_eq!(bearer(Some("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic dXNlcjpwYXNz")), None);
        assert_eq!(bearer(Some("Bearer")), None);
        assert_eq!(bearer(Some("Bearer a b")), None);
        assert_eq!(bearer(None), None);
        assert_ne!(digest("a"), digest("b"));
        assert!(!digest("secret-token").contains("secret"));
    }
}
