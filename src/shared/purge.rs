//! The subscriber that hears fleet-wide purges.
//!
//! One dedicated pub/sub connection (a subscribed connection can do nothing
//! else). It pings the server every [`PING_EVERY`] so a connection that died
//! silently is noticed, and reconnects with a growing pause (up to
//! [`MAX_BACKOFF`]) after any failure. With Sentinel it follows the current
//! master; in a cluster it subscribes on one node at a time, rotating over
//! the seed nodes (a cluster delivers each PUBLISH to every node's
//! subscribers).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use super::Inner;
use super::seal::FleetDigest;

/// How often the idle subscription is checked with a PING.
pub const PING_EVERY: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

type OnPurge = Arc<dyn Fn(FleetDigest) + Send + Sync>;

/// The running subscriber; stops when dropped.
pub struct PurgeSubscription {
    task: JoinHandle<()>,
    subscribed: watch::Receiver<bool>,
}

impl std::fmt::Debug for PurgeSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeSubscription")
            .field("subscribed", &self.is_subscribed())
            .finish()
    }
}

impl PurgeSubscription {
    /// Whether the subscription is connected now.
    pub fn is_subscribed(&self) -> bool {
        *self.subscribed.borrow()
    }

    /// Waits until the subscription is connected, at most `max_wait`;
    /// returns whether it is.
    pub async fn wait_subscribed(&mut self, max_wait: Duration) -> bool {
        tokio::time::timeout(max_wait, self.subscribed.wait_for(|up| *up))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for PurgeSubscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(super) fn start(inner: Arc<Inner>, on_purge: OnPurge) -> PurgeSubscription {
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(run(inner, on_purge, tx));
    PurgeSubscription {
        task,
        subscribed: rx,
    }
}

async fn run(inner: Arc<Inner>, on_purge: OnPurge, subscribed: watch::Sender<bool>) {
    let mut backoff = MIN_BACKOFF;
    let mut attempt = 0usize;
    let mut was_up = false;
    loop {
        let ended = session(&inner, attempt, &on_purge, &subscribed).await;
        let reached = *subscribed.borrow();
        subscribed.send_replace(false);
        inner.stats.subscribed(false);
        if reached {
            // It worked until now: try again soon.
            backoff = MIN_BACKOFF;
            was_up = true;
        }
        if was_up {
            warn!(error = %ended, "Purge subscription lost; reconnecting");
            was_up = false;
        } else {
            debug!(error = %ended, "Purge subscription not connected; retrying");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        attempt = attempt.wrapping_add(1);
    }
}

/// Why a session ended (for the log line; never holds a secret).
#[derive(Debug, thiserror::Error)]
enum Ended {
    #[error("{0}")]
    Redis(#[from] redis::RedisError),
    #[error("timed out")]
    Timeout,
    #[error("connection closed")]
    Closed,
}

async fn within<T>(
    limit: Duration,
    f: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, Ended> {
    match tokio::time::timeout(limit, f).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Ended::Timeout),
    }
}

/// One connection's life: connect, subscribe, deliver until it fails.
async fn session(
    inner: &Inner,
    attempt: usize,
    on_purge: &OnPurge,
    subscribed: &watch::Sender<bool>,
) -> Ended {
    let limit = inner.connect_timeout;
    let connected = async {
        let client = within(limit, inner.backend.pubsub_client(attempt)).await?;
        let mut pubsub = within(limit, client.get_async_pubsub()).await?;
        within(limit, pubsub.subscribe(&inner.channel)).await?;
        Ok::<_, Ended>(pubsub)
    };
    let pubsub = match connected.await {
        Ok(pubsub) => pubsub,
        Err(e) => return e,
    };
    subscribed.send_replace(true);
    inner.stats.subscribed(true);
    info!("Purge subscription connected");
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => {
                let Some(message) = message else {
                    return Ended::Closed;
                };
                if message.get_channel_name() != inner.channel {
                    continue;
                }
                match FleetDigest::from_hex(message.get_payload_bytes()) {
                    Some(digest) => {
                        inner.stats.purge_received();
                        on_purge(digest);
                    }
                    None => debug!("Ignored a malformed purge message"),
                }
            }
            _ = ping.tick() => {
                if let Err(e) = within(limit, sink.ping::<redis::Value>()).await {
                    return e;
                }
            }
        }
    }
}
