//! The limiter's connections to the Redis server. Blocking calls take a connection from a
//! small pool (made when none is idle), so threads of one limiter do not wait for each
//! other's round trips; async calls (feature `tokio`) share one multiplexed connection.
//! Every call is bounded by the same timeout; a connection that failed other than by the
//! script's own answer is dropped, and the next call makes a new one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{
    Cmd, ConnectionLike, ErrorKind, FromRedisValue, RedisError, RedisResult, Script,
    ServerErrorKind,
};

/// Idle blocking connections kept for the next calls; more threads at once make more, and
/// those beyond this are closed after their call.
const POOL: usize = 8;

/// A server, or a Redis Cluster (the client follows its slots: both keys of a limiter are
/// in one).
enum Client {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A blocking connection to either.
enum Connection {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

impl Connection {
    fn get(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Connection::Single(connection) => connection,
            Connection::Cluster(connection) => &mut **connection,
        }
    }
}

/// An async connection to either: multiplexed (one connection carries the calls of every
/// task, each answered in order), cheap to clone.
#[cfg(feature = "tokio")]
#[derive(Clone)]
enum AsyncConnection {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// The connections and how to make them again.
pub(super) struct Link {
    client: Client,
    idle: Mutex<Vec<Connection>>,
    #[cfg(feature = "tokio")]
    shared: Mutex<Option<AsyncConnection>>,
    timeout: Duration,
    /// Connections made after the first (each after a failure).
    reconnects: AtomicU64,
    made_one: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("timeout", &self.timeout)
            .field("reconnects", &self.reconnects.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A lock that a panic elsewhere did not make unusable (what it guards stays valid).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link {
    /// A link to the server `url` names (with `cluster`, a node of a Redis Cluster);
    /// connects at the first call.
    pub(super) fn new(url: &str, timeout: Duration, cluster: bool) -> RedisResult<Link> {
        let client = if cluster {
            Client::Cluster(Box::new(
                ClusterClient::builder([url])
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?,
            ))
        } else {
            Client::Single(redis::Client::open(url)?)
        };
        Ok(Link {
            client,
            idle: Mutex::new(Vec::new()),
            #[cfg(feature = "tokio")]
            shared: Mutex::new(None),
            timeout,
            reconnects: AtomicU64::new(0),
            made_one: AtomicBool::new(false),
        })
    }

    /// Connections made again after a failure.
    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Counts a connection made: the first is not a reconnection.
    fn made(&self) {
        if self.made_one.swap(true, Ordering::Relaxed) {
            self.reconnects.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn connect(&self) -> RedisResult<Connection> {
        let connection = match &self.client {
            Client::Single(client) => {
                let connection = client.get_connection_with_timeout(self.timeout)?;
                connection.set_read_timeout(Some(self.timeout))?;
                connection.set_write_timeout(Some(self.timeout))?;
                Connection::Single(connection)
            }
            Client::Cluster(client) => Connection::Cluster(Box::new(client.get_connection()?)),
        };
        self.made();
        Ok(connection)
    }

    /// Runs `call` on an idle connection (made first if there is none), which no other
    /// thread uses meanwhile. A failure other than an error reply of the script drops the
    /// connection: after a timeout its stream may still hold the late reply, so nothing may
    /// read from it again.
    pub(super) fn call<T>(
        &self,
        call: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let idle = lock(&self.idle).pop();
        let mut connection = match idle {
            Some(connection) => connection,
            None => self.connect()?,
        };
        let result = call(connection.get());
        let in_step = match &result {
            Ok(_) => true,
            Err(error) => is_answer(error),
        };
        if in_step {
            let mut idle = lock(&self.idle);
            if idle.len() < POOL {
                idle.push(connection);
            }
        }
        result
    }

    /// The shared async connection, made first if there is none (or the last failed).
    #[cfg(feature = "tokio")]
    async fn shared(&self) -> RedisResult<AsyncConnection> {
        if let Some(connection) = lock(&self.shared).clone() {
            return Ok(connection);
        }
        let connection = match &self.client {
            Client::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                AsyncConnection::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Client::Cluster(client) => {
                AsyncConnection::Cluster(client.get_async_connection().await?)
            }
        };
        self.made();
        // Two tasks that both found none both made one; the later replaces the earlier,
        // which closes when its last clone is dropped.
        *lock(&self.shared) = Some(connection.clone());
        Ok(connection)
    }

    /// Runs the script's call `command` (an `EVALSHA`, see [`eval`]) on the shared async
    /// connection, the whole call (connecting, a reload of a flushed script) bounded by the
    /// timeout. The task yields while it waits; no thread is blocked.
    ///
    /// Dropping the future before the reply leaves the connection in step (the multiplexed
    /// connection matches replies to requests), but a request already sent may have been
    /// executed. So a call given an `undo` sends it when dropped before the reply (by its
    /// caller, or by the timeout), on the same connection and so after the request, if the
    /// request was sent at all ([`UndoOnDrop`]).
    #[cfg(feature = "tokio")]
    pub(super) async fn eval_async<T: FromRedisValue>(
        &self,
        script: &Script,
        command: &Cmd,
        undo: Option<&(dyn Fn() -> Cmd + Sync)>,
    ) -> RedisResult<T> {
        let timeout = self.timeout;
        let call = async {
            let connection = self.shared().await?;
            let mut guard = UndoOnDrop {
                armed: undo.map(|undo| (connection.clone(), undo)),
                timeout,
            };
            let result = match connection {
                AsyncConnection::Single(connection) => on(connection, script, command).await,
                AsyncConnection::Cluster(connection) => on(connection, script, command).await,
            };
            // A reply (or an error reply) came: the caller learns the outcome, nothing to
            // take back. A timeout of the connection's own is no reply: the acquire may
            // still run, and the undo follows it.
            if !matches!(&result, Err(error) if error.is_timeout()) {
                guard.armed = None;
            }
            result
        };
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no reply within {:?}", self.timeout),
            ))),
        };
        if let Err(error) = &result
            && !is_answer(error)
        {
            *lock(&self.shared) = None;
        }
        result
    }
}

/// Runs `command` on `connection`, loading `script` first if the server lost it.
#[cfg(feature = "tokio")]
async fn on<C: redis::aio::ConnectionLike, T: FromRedisValue>(
    mut connection: C,
    script: &Script,
    command: &Cmd,
) -> RedisResult<T> {
    match command.query_async(&mut connection).await {
        Err(error) if is_no_script(&error) => {
            script.load_async(&mut connection).await?;
            command.query_async(&mut connection).await
        }
        result => result,
    }
}

/// The undo of an async acquire, sent if the call is dropped while armed (before its
/// reply). It goes on the connection the acquire used, queued there at once, in the drop
/// (its request's first poll hands it to the connection): a multiplexed connection sends
/// requests in the order they were queued, so the server runs the undo right after the
/// acquire if the acquire was sent at all. The script takes back only the newest admission,
/// and only if it carries the acquire's nonce: the undo of an acquire never run undoes
/// nothing, and one whose admission another client's followed in between keeps both
/// (counted under `kept` in the head). The reply is awaited in a task of its own, bounded by
/// the same timeout: a drop cannot wait. Outside a tokio runtime (a future dropped after its
/// runtime) nothing is sent.
#[cfg(feature = "tokio")]
struct UndoOnDrop<'a> {
    armed: Option<(AsyncConnection, &'a (dyn Fn() -> Cmd + Sync))>,
    timeout: Duration,
}

#[cfg(feature = "tokio")]
impl Drop for UndoOnDrop<'_> {
    fn drop(&mut self) {
        let Some((connection, undo)) = self.armed.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let command = undo();
        let timeout = self.timeout;
        // The script is loaded: the acquire before it ran it, or was not run.
        let mut sent = Box::pin(async move {
            let reply = async {
                match connection {
                    AsyncConnection::Single(mut connection) => {
                        command.query_async::<redis::Value>(&mut connection).await
                    }
                    AsyncConnection::Cluster(mut connection) => {
                        command.query_async::<redis::Value>(&mut connection).await
                    }
                }
            };
            // Best effort: a server that does not answer the undo in time keeps the
            // admission (as it would a reply lost on the way).
            let _ = tokio::time::timeout(timeout, reply).await;
        });
        let _entered = runtime.enter();
        // One poll queues the request on the connection (its channel has room unless
        // hundreds of calls are queued; then the task queues it a little later).
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        if sent.as_mut().poll(&mut context).is_pending() {
            runtime.spawn(sent);
        }
    }
}

/// Runs `command`, an `EVALSHA` of `script` built by the caller in one buffer (cheaper than
/// the redis crate's `ScriptInvocation`, which copies each argument twice), loading the
/// script first if the server does not have it (a restart, `SCRIPT FLUSH`).
pub(super) fn eval<T: FromRedisValue>(
    connection: &mut dyn ConnectionLike,
    script: &Script,
    command: &Cmd,
) -> RedisResult<T> {
    match command.query(connection) {
        Err(error) if is_no_script(&error) => {
            script.load(connection)?;
            command.query(connection)
        }
        result => result,
    }
}

/// The server does not have the script.
fn is_no_script(error: &RedisError) -> bool {
    error.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// An error reply the script gave on purpose (`HL...`), or another plain error reply: the
/// connection is still in step.
fn is_answer(error: &RedisError) -> bool {
    matches!(
        error.kind(),
        ErrorKind::Extension | ErrorKind::Server(ServerErrorKind::ResponseError)
    )
}

/// Whether `error` means the server is out of reach (down, slow, loading, failing over)
/// rather than an answer: what the outage policy decides about.
pub(super) fn is_outage(error: &RedisError) -> bool {
    // BUSY: another script is running past its time limit; the server answers nothing else.
    if error.code() == Some("BUSY") {
        return true;
    }
    if is_answer(error) {
        return false;
    }
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.kind() == ErrorKind::ClusterConnectionNotFound
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
            )
        )
}
