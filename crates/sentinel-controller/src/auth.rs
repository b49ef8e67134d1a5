//! The group's own password: which passwords each sentinel accepts and which one it sends its
//! peers, and the steps that bring them to what the Secret says, live.
//!
//! Two passwords matter: the one *in effect* (the operator's record, Secret `<cr>-auth-applied`,
//! which every sentinel accepts and every client of the operator uses) and the one *wanted* (the
//! group's Secret, `spec.auth.secretName` or `<cr>-auth`). When they differ a rotation runs:
//! 1. every sentinel accepts both (`ACL SETUSER default >wanted`);
//! 2. once all of them do, each sends the wanted one to its peers (`sentinel-pass`);
//! 3. once all of them do, the wanted password is recorded as in effect;
//! 4. the next pass has every sentinel stop accepting any other (`ACL SETUSER default !<hash>`).
//!
//! A sentinel is never restarted for it and no master is touched, so a rotation fails nothing
//! over. A pod that restarts meanwhile starts with the wanted password (its environment comes
//! from the Secret) and is brought to accept the one in effect in step 1. Passwords are compared
//! by their ACL hashes ([`Password::acl_hash`]); only `sentinel-pass` is read back as text.
//! [`plan`] is pure; [`act`] sends the steps in order.

use std::collections::{BTreeMap, BTreeSet};

use kvrocks_client::{Password, SentinelClient};

/// Which of the two passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Which {
    /// The one in effect (the operator's record).
    Applied,
    /// The one the group's Secret holds.
    Wanted,
}

/// The two passwords, as the plan sees them: their ACL hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashes {
    /// Hash of the password in effect.
    pub applied: String,
    /// Hash of the wanted password (equal to `applied` when no rotation runs).
    pub wanted: String,
}

impl Hashes {
    /// The hashes of `applied` and `wanted`.
    pub fn of(applied: &Password, wanted: &Password) -> Self {
        Self {
            applied: applied.acl_hash(),
            wanted: wanted.acl_hash(),
        }
    }

    fn rotating(&self) -> bool {
        self.applied != self.wanted
    }

    fn of_which(&self, which: Which) -> &str {
        match which {
            Which::Applied => &self.applied,
            Which::Wanted => &self.wanted,
        }
    }
}

/// What one sentinel pod showed about its password.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodAuth {
    /// Not asked (no IP, or going away) or did not answer: it waits for the next pass.
    Unknown,
    /// It refused every password the operator knows: nothing can be done from here.
    Refused,
    /// It answered.
    Known {
        /// ACL hashes of the passwords it accepts (none: it needs no password).
        accepts: BTreeSet<String>,
        /// Which password it sends its peers; `None` for another one, or none.
        peer_pass: Option<Which>,
    },
}

/// One step of a rotation on one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Accept this password too.
    Accept {
        /// Pod name.
        pod: String,
        /// Which password.
        which: Which,
    },
    /// Send this password to the peers.
    PeerPass {
        /// Pod name.
        pod: String,
        /// Which password.
        which: Which,
    },
    /// Stop accepting the password with this ACL hash.
    Refuse {
        /// Pod name.
        pod: String,
        /// The hash.
        hash: String,
    },
}

impl Step {
    /// The pod the step is for.
    pub fn pod(&self) -> &str {
        match self {
            Step::Accept { pod, .. } | Step::PeerPass { pod, .. } | Step::Refuse { pod, .. } => pod,
        }
    }
}

/// What to do about the group's password this pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps, in order: every `Accept` before any `PeerPass`, every `PeerPass` before any
    /// `Refuse`.
    pub steps: Vec<Step>,
    /// Record the wanted password as in effect once every step succeeded.
    pub record: bool,
    /// Pods that refuse both passwords.
    pub refused: Vec<String>,
    /// Why a rotation cannot finish this pass (pods not answering), for the status.
    pub waiting: Option<String>,
}

impl Plan {
    /// Whether a rotation is under way (or the group's pods still accept a retired password).
    pub fn busy(&self) -> bool {
        !self.steps.is_empty() || self.waiting.is_some()
    }
}

/// The steps that bring every pod to what `hashes` asks (see the module documentation).
/// `pods` are the pods that count, by name; `replicas` is how many should.
pub fn plan(hashes: &Hashes, pods: &BTreeMap<String, PodAuth>, replicas: usize) -> Plan {
    let mut out = Plan::default();
    let mut wanted_set: Vec<(Which, &str)> = vec![(Which::Applied, hashes.applied.as_str())];
    if hashes.rotating() {
        wanted_set.push((Which::Wanted, hashes.wanted.as_str()));
    }
    let mut missing = Vec::new();
    let mut known = Vec::new();
    for (pod, auth) in pods {
        match auth {
            PodAuth::Unknown => missing.push(pod.clone()),
            PodAuth::Refused => {
                missing.push(pod.clone());
                out.refused.push(pod.clone());
            }
            PodAuth::Known { accepts, peer_pass } => {
                for (which, hash) in &wanted_set {
                    if !accepts.contains(*hash) {
                        out.steps.push(Step::Accept {
                            pod: pod.clone(),
                            which: *which,
                        });
                    }
                }
                known.push((pod, accepts, *peer_pass));
            }
        }
    }
    // Every pod accepts the wanted password once the steps above are done; the peers are sent
    // it only when every pod of the group is among them.
    let everyone = missing.is_empty() && known.len() >= replicas;
    let peer_target = if everyone {
        Which::Wanted
    } else {
        Which::Applied
    };
    let mut refuse = Vec::new();
    for (pod, accepts, peer_pass) in known {
        let sends = peer_pass.map(|w| hashes.of_which(w));
        if sends != Some(hashes.of_which(peer_target)) {
            out.steps.push(Step::PeerPass {
                pod: pod.clone(),
                which: peer_target,
            });
        }
        // Nothing is retired while a rotation runs: the password in effect stays accepted.
        if !hashes.rotating() {
            refuse.extend(
                accepts
                    .iter()
                    .filter(|h| **h != hashes.applied)
                    .map(|hash| Step::Refuse {
                        pod: pod.clone(),
                        hash: hash.clone(),
                    }),
            );
        }
    }
    out.steps.extend(refuse);
    out.record = hashes.rotating() && everyone;
    if hashes.rotating() && !everyone {
        out.waiting = Some(if missing.is_empty() {
            format!(
                "the new sentinel password waits for {} more of {replicas} sentinel pods",
                replicas.saturating_sub(pods.len())
            )
        } else {
            format!(
                "the new sentinel password waits for {} (not answering, or refusing both passwords)",
                missing.join(", ")
            )
        });
    }
    out
}

/// The result of [`act`]: whether every step succeeded, else the first error (never a password:
/// the client removes it from errors).
pub async fn act(
    plan: &Plan,
    clients: &BTreeMap<String, SentinelClient>,
    applied: &Password,
    wanted: &Password,
) -> Result<(), String> {
    for step in &plan.steps {
        let Some(client) = clients.get(step.pod()) else {
            return Err(format!("no connection to {}", step.pod()));
        };
        let password = |which: Which| match which {
            Which::Applied => applied,
            Which::Wanted => wanted,
        };
        let sent = match step {
            Step::Accept { which, .. } => client.accept_password(password(*which)).await,
            Step::PeerPass { which, .. } => client.set_sentinel_pass(password(*which)).await,
            Step::Refuse { hash, .. } => client.refuse_password_hash(hash).await,
        };
        if let Err(e) = sent {
            return Err(format!("{}: {e}", describe(step)));
        }
    }
    Ok(())
}

/// A step for logs; never shows a password.
pub fn describe(step: &Step) -> String {
    match step {
        Step::Accept { pod, which } => format!("{pod}: accept the {} password", name(*which)),
        Step::PeerPass { pod, which } => {
            format!("{pod}: send the {} password to peers", name(*which))
        }
        Step::Refuse { pod, .. } => format!("{pod}: retire a former password"),
    }
}

fn name(which: Which) -> &'static str {
    match which {
        Which::Applied => "current",
        Which::Wanted => "new",
    }
}

/// What a sentinel sends its peers, as one of the two passwords.
pub fn peer_pass_of(
    sent: Option<&Password>,
    applied: &Password,
    wanted: &Password,
) -> Option<Which> {
    let sent = sent?.expose();
    if sent == applied.expose() {
        Some(Which::Applied)
    } else if sent == wanted.expose() {
        Some(Which::Wanted)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn h(n: u8) -> String {
        Password::new(format!("password-{n}")).acl_hash()
    }

    fn known(accepts: &[u8], peer_pass: Option<Which>) -> PodAuth {
        PodAuth::Known {
            accepts: accepts.iter().map(|n| h(*n)).collect(),
            peer_pass,
        }
    }

    fn pods(list: Vec<PodAuth>) -> BTreeMap<String, PodAuth> {
        list.into_iter()
            .enumerate()
            .map(|(i, a)| (format!("s-{i}"), a))
            .collect()
    }

    /// Applies the steps of a pass to the pods, as the sentinels would.
    fn apply(hashes: &Hashes, plan: &Plan, pods: &mut BTreeMap<String, PodAuth>) {
        for step in &plan.steps {
            let Some(PodAuth::Known { accepts, peer_pass }) = pods.get_mut(step.pod()) else {
                panic!("a step for a pod that did not answer: {step:?}");
            };
            match step {
                Step::Accept { which, .. } => {
                    accepts.insert(hashes.of_which(*which).to_owned());
                }
                Step::PeerPass { which, .. } => *peer_pass = Some(*which),
                Step::Refuse { hash, .. } => {
                    accepts.remove(hash);
                }
            }
        }
    }

    fn accepts(pod: &PodAuth, hash: &str) -> bool {
        matches!(pod, PodAuth::Known { accepts, .. } if accepts.contains(hash))
    }

    #[test]
    fn a_steady_group_needs_nothing() {
        let hashes = Hashes {
            applied: h(1),
            wanted: h(1),
        };
        let group = pods(vec![known(&[1], Some(Which::Applied)); 3]);
        assert_eq!(plan(&hashes, &group, 3), Plan::default());
    }

    #[test]
    fn a_rotation_waits_for_a_pod_that_does_not_answer() {
        let hashes = Hashes {
            applied: h(1),
            wanted: h(2),
        };
        let mut group = pods(vec![known(&[1], Some(Which::Applied)); 3]);
        group.insert("s-2".into(), PodAuth::Unknown);
        let p = plan(&hashes, &group, 3);
        assert!(!p.record);
        assert!(p.waiting.as_deref().unwrap().contains("s-2"));
        assert!(
            p.steps.iter().all(|s| matches!(
                s,
                Step::Accept {
                    which: Which::Wanted,
                    ..
                }
            )),
            "only accepting the new one: {:?}",
            p.steps
        );
        assert_eq!(p.steps.len(), 2);
    }

    #[test]
    fn a_pod_that_refuses_both_is_named() {
        let hashes = Hashes {
            applied: h(1),
            wanted: h(1),
        };
        let mut group = pods(vec![known(&[1], Some(Which::Applied)); 3]);
        group.insert("s-1".into(), PodAuth::Refused);
        let p = plan(&hashes, &group, 3);
        assert_eq!(p.refused, vec!["s-1".to_owned()]);
        assert!(p.steps.is_empty());
    }

    fn arbitrary_pod() -> impl Strategy<Value = PodAuth> {
        prop_oneof![
            1 => Just(PodAuth::Unknown),
            6 => (
                proptest::collection::btree_set(0u8..4, 0..3),
                proptest::option::of(prop_oneof![Just(Which::Applied), Just(Which::Wanted)])
            )
                .prop_map(|(accepts, peer_pass)| PodAuth::Known {
                    accepts: accepts.into_iter().map(h).collect(),
                    peer_pass,
                }),
        ]
    }

    proptest! {
        /// Whatever the pods hold: steps come in order, nothing the operator uses is retired,
        /// peers get the new password only when every pod accepts it, and once every pod
        /// answers the rotation finishes within three passes with every pod accepting exactly
        /// the new password and sending it to its peers.
        #[test]
        fn a_rotation_is_safe_and_finishes(
            group in proptest::collection::vec(arbitrary_pod(), 1..6),
            applied in 0u8..3,
            wanted in 0u8..3,
        ) {
            let replicas = group.len();
            let mut group = pods(group);
            let mut hashes = Hashes { applied: h(applied), wanted: h(wanted) };
            let p = plan(&hashes, &group, replicas);
            let rank = |s: &Step| match s { Step::Accept { .. } => 0, Step::PeerPass { .. } => 1, Step::Refuse { .. } => 2 };
            prop_assert!(p.steps.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])), "{:?}", p.steps);
            for s in &p.steps {
                if let Step::Refuse { hash, .. } = s {
                    prop_assert_ne!(hash, &hashes.applied);
                    prop_assert_eq!(&hashes.applied, &hashes.wanted, "nothing retired mid-rotation");
                }
            }
            if p.record {
                let all_known = group.values().all(|a| matches!(a, PodAuth::Known { .. }));
                prop_assert!(all_known);
            }
            // Every pod answers from now on.
            for a in group.values_mut() {
                if *a == PodAuth::Unknown {
                    *a = PodAuth::Known { accepts: BTreeSet::new(), peer_pass: None };
                }
            }
            for _ in 0..3 {
                let p = plan(&hashes, &group, replicas);
                apply(&hashes, &p, &mut group);
                prop_assert!(group.values().all(|a| accepts(a, &hashes.applied)), "the password in effect is always accepted");
                let all_accept_wanted = group.values().all(|a| accepts(a, &hashes.wanted));
                for s in &p.steps {
                    if matches!(s, Step::PeerPass { which: Which::Wanted, .. }) {
                        prop_assert!(all_accept_wanted);
                    }
                }
                if p.record {
                    hashes.applied = hashes.wanted.clone();
                }
            }
            prop_assert_eq!(&hashes.applied, &hashes.wanted);
            prop_assert_eq!(plan(&hashes, &group, replicas), Plan::default());
            for a in group.values() {
                let PodAuth::Known { accepts, peer_pass } = a else { unreachable!() };
                prop_assert_eq!(accepts, &BTreeSet::from([hashes.wanted.clone()]));
                prop_assert!(peer_pass.is_some());
            }
        }
    }
}
