//! Waking one controller's reconcile from another task of the same process: the sentinel
//! controller's event tasks see `+switch-master` / `+odown` and wake the owning KvrocksStandard or
//! KvrocksCluster at once, through kube-runtime's `Controller::reconcile_on`.

use futures::Stream;
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kvrocks_api::labels::Component;
use tokio::sync::broadcast;

/// Which object to wake.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WakeTarget {
    /// `Standard` or `Cluster`.
    pub component: Component,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

/// A broadcast of [`WakeTarget`]s; every controller keeps the ones of its kind.
#[derive(Clone, Debug)]
pub struct WakeBus {
    tx: broadcast::Sender<WakeTarget>,
}

impl Default for WakeBus {
    fn default() -> Self {
        Self::new()
    }
}

impl WakeBus {
    /// A bus holding up to 1024 unread wake-ups per listener (older ones are dropped: the
    /// periodic requeue covers a listener that fell that far behind).
    pub fn new() -> Self {
        Self {
            tx: broadcast::Sender::new(1024),
        }
    }

    /// Wakes `target`'s reconcile (a no-op when no controller listens).
    pub fn wake(&self, target: WakeTarget) {
        let _ = self.tx.send(target);
    }

    /// The wake-ups of `component` as object references, for `Controller::reconcile_on`.
    pub fn stream<K>(
        &self,
        component: Component,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + use<K>
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        let rx = self.tx.subscribe();
        futures::stream::unfold(rx, move |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(t) if t.component == component => {
                        return Some((ObjectRef::new(&t.name).within(&t.namespace), rx));
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use futures::StreamExt;
    use kvrocks_api::KvrocksStandard;

    #[tokio::test]
    async fn listeners_get_only_their_kind() {
        let bus = WakeBus::new();
        let mut standards = Box::pin(bus.stream::<KvrocksStandard>(Component::Standard));
        bus.wake(WakeTarget {
            component: Component::Cluster,
            namespace: "ns".into(),
            name: "c".into(),
        });
        bus.wake(WakeTarget {
            component: Component::Standard,
            namespace: "ns".into(),
            name: "s".into(),
        });
        let got = standards.next().await.unwrap();
        assert_eq!(got.name, "s");
        assert_eq!(got.namespace.as_deref(), Some("ns"));
    }
}
