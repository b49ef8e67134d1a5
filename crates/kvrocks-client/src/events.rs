//! A self-healing subscription to a sentinel's failure events, as a stream of [`SentinelEvent`]s.
//!
//! A background task owns a dedicated connection: it subscribes, forwards parsed events, pings to
//! notice a silent peer, and when the connection breaks it reconnects with capped backoff and
//! subscribes again. Events published while disconnected are lost (sentinel does not replay them),
//! so a consumer should re-read sentinel state whenever [`EventLink::subscriptions`] grows.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::types::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::addr::{Endpoint, NodeAddr};
use crate::conn::Link;
use crate::parse::event::{SentinelEvent, SentinelEventKind};
use crate::parse::value_text;

/// The channels subscribed by default: `+sdown`, `-sdown`, `+odown`, `-odown`, `+switch-master`.
pub const DEFAULT_CHANNELS: [&str; 5] = ["+sdown", "-sdown", "+odown", "-odown", "+switch-master"];

/// How the event subscription behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventOptions {
    /// Channels to subscribe to (sentinel event names).
    pub channels: Vec<String>,
    /// First delay before reconnecting after a failure.
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts.
    pub reconnect_max: Duration,
    /// Interval of the PING that detects a silently dead connection.
    pub heartbeat: Duration,
    /// Events buffered for a slow consumer before the subscription waits for it.
    pub buffer: usize,
}

impl Default for EventOptions {
    fn default() -> Self {
        Self {
            channels: DEFAULT_CHANNELS.iter().map(|c| (*c).to_owned()).collect(),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            heartbeat: Duration::from_secs(2),
            buffer: 256,
        }
    }
}

impl EventOptions {
    /// Returns a copy that subscribes to `channels` instead.
    pub fn with_channels<I, S>(mut self, channels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.channels = channels.into_iter().map(Into::into).collect();
        self
    }

    /// Returns a copy with another heartbeat interval.
    pub fn with_heartbeat(mut self, heartbeat: Duration) -> Self {
        self.heartbeat = heartbeat;
        self
    }

    /// Returns a copy with other reconnect delays.
    pub fn with_reconnect_delays(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }
}

/// State of the subscription's connection, observable through [`SentinelEvents::link`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventLink {
    /// True while subscribed.
    pub connected: bool,
    /// How many times the subscription was (re)established; grows by one per reconnect.
    pub subscriptions: u64,
    /// Why the last connection attempt or connection failed.
    pub last_error: Option<String>,
}

/// A stream of typed events from one sentinel; stops when dropped.
pub struct SentinelEvents {
    addr: NodeAddr,
    rx: mpsc::Receiver<SentinelEvent>,
    link: watch::Receiver<EventLink>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for SentinelEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelEvents")
            .field("addr", &self.addr)
            .field("link", &*self.link.borrow())
            .finish()
    }
}

impl SentinelEvents {
    /// Starts subscribing to `endpoint` in the background (needs a tokio runtime).
    pub fn subscribe(endpoint: Endpoint, options: EventOptions) -> Self {
        let addr = endpoint.addr.clone();
        let (tx, rx) = mpsc::channel(options.buffer.max(1));
        let (link_tx, link) = watch::channel(EventLink::default());
        let task = tokio::spawn(run(Link::new(endpoint), options, tx, link_tx));
        Self {
            addr,
            rx,
            link,
            task,
        }
    }

    /// The sentinel this subscription listens to.
    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// The next event; `None` only after [`SentinelEvents::close`] or if the task died.
    pub async fn recv(&mut self) -> Option<SentinelEvent> {
        self.rx.recv().await
    }

    /// A watch on the connection state, e.g. to wait until subscribed or to notice a reconnect.
    pub fn link(&self) -> watch::Receiver<EventLink> {
        self.link.clone()
    }

    /// True while subscribed.
    pub fn is_connected(&self) -> bool {
        self.link.borrow().connected
    }

    /// Stops the subscription; buffered events can still be received.
    pub fn close(&mut self) {
        self.task.abort();
        self.rx.close();
    }
}

impl Drop for SentinelEvents {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl futures::Stream for SentinelEvents {
    type Item = SentinelEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// How one connected session ended.
enum SessionEnd {
    /// Nobody listens any more: stop for good.
    ReceiverGone,
    /// The connection failed or broke; `subscribed` tells whether it had been working.
    Broken { reason: String, subscribed: bool },
}

/// Aborts the fred routing task (and so closes its socket) when a session ends.
struct AbortOnDrop(JoinHandle<Result<(), fred::error::Error>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run(
    link: Link,
    options: EventOptions,
    tx: mpsc::Sender<SentinelEvent>,
    state: watch::Sender<EventLink>,
) {
    let mut delay = options.reconnect_min;
    loop {
        match session(&link, &options, &tx, &state).await {
            SessionEnd::ReceiverGone => return,
            SessionEnd::Broken { reason, subscribed } => {
                tracing::debug!(sentinel = %link.addr(), %reason, "sentinel event subscription lost");
                state.send_modify(|s| {
                    s.connected = false;
                    s.last_error = Some(reason);
                });
                if subscribed {
                    delay = options.reconnect_min;
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = tx.closed() => return,
        }
        delay = (delay * 2).min(options.reconnect_max.max(options.reconnect_min));
    }
}

async fn session(
    link: &Link,
    options: &EventOptions,
    tx: &mpsc::Sender<SentinelEvent>,
    state: &watch::Sender<EventLink>,
) -> SessionEnd {
    let broken = |reason: String, subscribed| SessionEnd::Broken { reason, subscribed };
    let (client, task) = match link.connect("SUBSCRIBE").await {
        Ok(pair) => pair,
        Err(e) => return broken(e.to_string(), false),
    };
    let mut task = AbortOnDrop(task);
    let mut messages = client.message_rx();
    let command_timeout = link.timeouts().command;
    match tokio::time::timeout(command_timeout, client.subscribe(options.channels.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            return broken(
                format!("SUBSCRIBE on {} failed: {}", link.addr(), e.details()),
                false,
            );
        }
        Err(_) => return broken(format!("SUBSCRIBE on {} timed out", link.addr()), false),
    }
    state.send_modify(|s| {
        s.connected = true;
        s.subscriptions += 1;
        s.last_error = None;
    });
    tracing::debug!(sentinel = %link.addr(), channels = ?options.channels, "subscribed to sentinel events");
    let mut heartbeat = tokio::time::interval(options.heartbeat.max(Duration::from_millis(10)));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let Some(event) = to_event(link.addr(), &message.channel, &message.value) else {
                        continue;
                    };
                    tokio::select! {
                        sent = tx.send(event) => if sent.is_err() { return SessionEnd::ReceiverGone },
                        _ = &mut task.0 => return broken("connection closed".into(), true),
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(sentinel = %link.addr(), missed, "sentinel events dropped: consumer too slow");
                }
                Err(RecvError::Closed) => return broken("message stream closed".into(), true),
            },
            _ = &mut task.0 => return broken("connection closed".into(), true),
            _ = heartbeat.tick() => {
                match tokio::time::timeout(command_timeout, client.ping::<Value>(None)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return broken(format!("heartbeat PING failed: {}", e.details()), true),
                    Err(_) => return broken("heartbeat PING timed out".into(), true),
                }
            }
            () = tx.closed() => return SessionEnd::ReceiverGone,
        }
    }
}

fn to_event(sentinel: &NodeAddr, channel: &str, value: &Value) -> Option<SentinelEvent> {
    let payload = value_text(value)?;
    match SentinelEvent::parse(channel, &payload) {
        Ok(event) => Some(event),
        Err(e) => {
            // Unknown channels with odd payloads are expected when callers subscribe to extra events.
            if !matches!(
                SentinelEventKind::from_channel(channel),
                SentinelEventKind::Other(_)
            ) {
                tracing::warn!(sentinel = %sentinel, channel, error = %e, "unparseable sentinel event");
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_options_subscribe_to_failure_events() {
        let o = EventOptions::default();
        assert_eq!(o.channels, DEFAULT_CHANNELS.map(str::to_owned).to_vec());
        let o = o
            .with_channels(["+odown"])
            .with_reconnect_delays(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(o.channels, vec!["+odown".to_owned()]);
        assert_eq!(
            o.reconnect_max,
            Duration::from_secs(2),
            "max is never below min"
        );
    }

    #[test]
    fn messages_become_events_or_are_skipped() {
        let addr = NodeAddr::new("127.0.0.1", 26379);
        let e = to_event(
            &addr,
            "+switch-master",
            &Value::from("m 10.0.0.1 6379 10.0.0.2 6379"),
        )
        .unwrap();
        assert_eq!(e.addr, NodeAddr::new("10.0.0.2", 6379));
        assert!(to_event(&addr, "+odown", &Value::from("garbage")).is_none());
        assert!(to_event(&addr, "+odown", &Value::Null).is_none());
        assert!(to_event(&addr, "+new-epoch", &Value::from("7")).is_none());
    }
}
