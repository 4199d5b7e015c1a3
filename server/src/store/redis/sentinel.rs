//! [`SentinelLink`]: a connection to whichever server the sentinels call
//! the master right now.
//!
//! The `redis` crate's Sentinel client finds the master but keeps no
//! connection to it; a connection manager would reconnect to the *old*
//! master's address forever. So the link keeps one multiplexed connection
//! to the master it was last told of, and forgets it when a command fails in
//! a way that says the master is gone or is one no longer: the connection
//! broke, timed out or was refused, or the server answers `READONLY` (it was
//! demoted to a replica) or `MASTERDOWN`. The next call asks the sentinels
//! again. The failed command itself is not retried: a write whose answer was
//! lost may have been applied, and only the caller (through `UNAVAILABLE`)
//! can decide to try again.
//!
//! A planned failover (`SENTINEL FAILOVER`, or one a provider runs for
//! maintenance) leaves the old master up and accepting writes until the
//! sentinels turn it into a replica, seconds later; what it accepts in
//! between is thrown away at its demotion. So the link also listens on a
//! sentinel for `+switch-master` and forgets the old master as soon as the
//! switch is announced, which narrows that window to the announcement's
//! delay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionLike, MultiplexedConnection};
use ::redis::sentinel::SentinelClient;
use ::redis::{
    AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// The pause before listening on the next sentinel when one goes away: long
/// enough not to spin on a sentinel that is down, short next to the seconds
/// a failover takes.
const DEFAULT_WATCH_RETRY_DELAY: Duration = Duration::from_millis(500);

/// The channel on which sentinels announce a new master: `NAME OLD-IP
/// OLD-PORT NEW-IP NEW-PORT`.
const SWITCH_CHANNEL: &str = "+switch-master";

/// A cheap handle to the one connection to the current master.
#[derive(Clone)]
pub(super) struct SentinelLink(Arc<Shared>);

struct Shared {
    /// Held across the lookup (an `.await`), so it is tokio's mutex: calls
    /// that find no master wait for the one lookup in progress instead of
    /// each asking the sentinels.
    sentinel: tokio::sync::Mutex<SentinelClient>,
    master: Mutex<Option<Master>>,
    /// Numbers the connections, so that a failure on an old one never
    /// forgets a newer one.
    connections: AtomicU64,
    config: AsyncConnectionConfig,
    db: i64,
    /// Stops the task that listens for `+switch-master`.
    stop: CancellationToken,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The store was dropped without being closed: the task still stops.
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Master {
    number: u64,
    connection: MultiplexedConnection,
}

impl SentinelLink {
    /// Asks the sentinels for the master named `name` and connects to it,
    /// and starts listening on `sentinels` (clients of the same sentinels)
    /// for the announcement of a new one.
    pub(super) async fn connect(
        sentinel: SentinelClient,
        sentinels: Vec<Client>,
        name: String,
        config: AsyncConnectionConfig,
        timeout: Duration,
        db: i64,
    ) -> RedisResult<Self> {
        let link = Self(Arc::new(Shared {
            sentinel: tokio::sync::Mutex::new(sentinel),
            master: Mutex::new(None),
            connections: AtomicU64::new(0),
            config,
            db,
            stop: CancellationToken::new(),
            watcher: Mutex::new(None),
        }));
        link.master().await?;
        let task = tokio::spawn(watch_switches(
            Arc::downgrade(&link.0),
            sentinels,
            name,
            timeout,
            link.0.stop.clone(),
        ));
        *link
            .0
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(link)
    }

    /// Stops listening for new masters and waits until the listener is
    /// gone.
    pub(super) async fn stop_watching(&self) {
        self.0.stop.cancel();
        let task = self
            .0
            .watcher
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            // A listener that panicked has nothing left to stop.
            let _ = task.await;
        }
    }

    fn current(&self) -> Option<Master> {
        self.0
            .master
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn master(&self) -> RedisResult<Master> {
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let mut sentinel = self.0.sentinel.lock().await;
        // Another call may have found it while this one waited.
        if let Some(master) = self.current() {
            return Ok(master);
        }
        let client = sentinel.async_get_client().await?;
        let connection = client
            .get_multiplexed_async_connection_with_config(&self.0.config)
            .await?;
        let master = Master {
            number: self.0.connections.fetch_add(1, Ordering::Relaxed),
            connection,
        };
        *self.0.master.lock().unwrap_or_else(PoisonError::into_inner) = Some(master.clone());
        Ok(master)
    }

    /// Drops the connection numbered `number` if it is still the current
    /// one, so that the next call asks the sentinels again.
    fn forget(&self, number: u64) {
        let mut master = self.0.master.lock().unwrap_or_else(PoisonError::into_inner);
        if master
            .as_ref()
            .is_some_and(|master| master.number == number)
        {
            *master = None;
        }
    }

    /// Runs `send` on the master's connection, forgetting the master when
    /// the failure says it is gone.
    async fn on_master<T, F, Fut>(&self, send: F) -> RedisResult<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let master = self.master().await?;
        let result = send(master.connection).await;
        if let Err(err) = &result
            && master_is_gone(err)
        {
            self.forget(master.number);
        }
        result
    }
}

/// Listens for `+switch-master` on one sentinel after another until
/// `stop`, and forgets the master when the one named `name` changes.
async fn watch_switches(
    link: Weak<Shared>,
    sentinels: Vec<Client>,
    name: String,
    timeout: Duration,
    stop: CancellationToken,
) {
    for sentinel in sentinels.iter().cycle() {
        tokio::select! {
            () = stop.cancelled() => return,
            () = listen(&link, sentinel, &name, timeout) => {}
        }
        if link.strong_count() == 0 {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(DEFAULT_WATCH_RETRY_DELAY) => {}
        }
    }
}

/// Listens on one sentinel until it goes away; gives up on one that does
/// not answer within `timeout` (the store timeout).
async fn listen(link: &Weak<Shared>, sentinel: &Client, name: &str, timeout: Duration) {
    let subscribing = async {
        let mut pubsub = sentinel.get_async_pubsub().await?;
        pubsub.subscribe(SWITCH_CHANNEL).await?;
        RedisResult::Ok(pubsub)
    };
    let Ok(Ok(mut pubsub)) = tokio::time::timeout(timeout, subscribing).await else {
        return;
    };
    let mut messages = pubsub.on_message();
    while let Some(message) = messages.next().await {
        let Ok(payload) = message.get_payload::<String>() else {
            continue;
        };
        if payload.split(' ').next() != Some(name) {
            continue;
        }
        let Some(shared) = link.upgrade() else {
            return;
        };
        tracing::info!("the sentinels announced a new redis master; connecting to it");
        *shared.master.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Whether `err` says that the server is no longer (reachable as) the
/// master.
fn master_is_gone(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_timeout()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
            )
        )
}

impl ConnectionLike for SentinelLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(self.on_master(move |mut connection| async move {
            connection.req_packed_command(cmd).await
        }))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(self.on_master(move |mut connection| async move {
            connection
                .req_packed_commands(pipeline, offset, count)
                .await
        }))
    }

    fn get_db(&self) -> i64 {
        self.0.db
    }
}
