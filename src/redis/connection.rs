//! One connection to the Redis server, shared by the limiter's threads: opened lazily with a
//! timeout, every call bounded by the same timeout, dropped after any failure that is not
//! the script's own answer, and opened again by the next call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{ConnectionLike, ErrorKind, RedisError, RedisResult, ServerErrorKind};

/// A server, or a Redis Cluster (the client follows its slots: both keys of a limiter are
/// in one).
enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

/// A connection to either.
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

/// The connection and how to make it again.
pub(super) struct Link {
    client: Client,
    connection: Mutex<Option<Connection>>,
    timeout: Duration,
    /// Connections made after the first (each after a failure).
    reconnects: AtomicU64,
    made_one: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("timeout", &self.timeout)
            .field("reconnects", &self.reconnects.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to the server `url` names (with `cluster`, a node of a Redis Cluster);
    /// connects at the first call.
    pub(super) fn new(url: &str, timeout: Duration, cluster: bool) -> RedisResult<Link> {
        let client = if cluster {
            Client::Cluster(
                ClusterClient::builder([url])
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    .build()?,
            )
        } else {
            Client::Single(redis::Client::open(url)?)
        };
        Ok(Link {
            client,
            connection: Mutex::new(None),
            timeout,
            reconnects: AtomicU64::new(0),
            made_one: Default::default(),
        })
    }

    /// Connections made again after a failure.
    pub(super) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Runs `call` on the connection (made first if there is none). A failure other than an
    /// error reply of the script drops the connection: after a timeout its stream may still
    /// hold the late reply, so nothing may read from it again.
    pub(super) fn call<T>(
        &self,
        call: impl FnOnce(&mut dyn ConnectionLike) -> RedisResult<T>,
    ) -> RedisResult<T> {
        let mut guard = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            let connection = match &self.client {
                Client::Single(client) => {
                    let connection = client.get_connection_with_timeout(self.timeout)?;
                    connection.set_read_timeout(Some(self.timeout))?;
                    connection.set_write_timeout(Some(self.timeout))?;
                    Connection::Single(connection)
                }
                Client::Cluster(client) => Connection::Cluster(Box::new(client.get_connection()?)),
            };
            if self.made_one.swap(true, Ordering::Relaxed) {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            *guard = Some(connection);
        }
        let Some(connection) = guard.as_mut() else {
            unreachable!("a connection was just made")
        };
        let result = call(connection.get());
        if let Err(error) = &result
            && !is_answer(error)
        {
            *guard = None;
        }
        result
    }
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
