//! Opening a Redis limiter: [`RedisBuilder`] (the per-call timeout, the outage policy, a
//! Cluster), the limiter's keys, the rates stored beside an existing one, and the URL as it
//! may be shown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::limiter::{Limiter, path_for, rules_for};
use crate::rate::Rate;

use super::connection::Link;
use super::{DEFAULT_TIMEOUT, OnOutage, RedisLimiter};

/// Options for a Redis limiter, from [`Limiter::redis`]: the per-call timeout and the
/// outage policy.
#[derive(Debug, Clone)]
pub struct RedisBuilder {
    url: String,
    name: String,
    rates: Vec<Rate>,
    timeout: Duration,
    on_outage: OnOutage,
    fallback: Option<PathBuf>,
    cluster: bool,
}

impl RedisBuilder {
    pub(crate) fn new(url: &str, name: &str, rates: &[Rate]) -> RedisBuilder {
        RedisBuilder {
            url: url.to_string(),
            name: name.to_string(),
            rates: rates.to_vec(),
            timeout: DEFAULT_TIMEOUT,
            on_outage: OnOutage::default(),
            fallback: None,
            cluster: false,
        }
    }

    /// The URL names a node of a Redis Cluster: the client learns the cluster's slots from
    /// it and sends each call to the node that holds the limiter's slot (both keys carry the
    /// name as a hash tag, so they are in one slot).
    pub fn cluster(mut self, cluster: bool) -> RedisBuilder {
        self.cluster = cluster;
        self
    }

    /// The longest one call may wait for the server (connecting, sending, the reply) before
    /// the outage policy decides; [`DEFAULT_TIMEOUT`] unless set.
    pub fn timeout(mut self, timeout: Duration) -> RedisBuilder {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// What to do when the server is unreachable; [`OnOutage::Deny`] unless set.
    pub fn on_outage(mut self, policy: OnOutage) -> RedisBuilder {
        self.on_outage = policy;
        self
    }

    /// The host-wide file [`OnOutage::FallBack`] falls back to; the limiter of the same
    /// name in [`default_dir`](crate::default_dir) unless set.
    pub fn fallback_path(mut self, path: impl Into<PathBuf>) -> RedisBuilder {
        self.fallback = Some(path.into());
        self
    }

    /// Connects and checks the rates stored beside the log against ours (storing ours if
    /// the limiter is new).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidName`], [`Error::InvalidRate`], [`Error::InvalidRates`] for bad
    /// arguments; [`Error::RedisMismatch`] if the limiter exists with other rates;
    /// [`Error::Redis`] if the URL cannot be parsed, the server cannot be reached within
    /// the timeout, or the keys hold something else; with [`OnOutage::FallBack`], what
    /// opening the host-wide file gives.
    pub fn connect(mut self) -> Result<Limiter, Error> {
        path_for(Path::new("/"), &self.name)?;
        let target = format!("{}#{}", without_credentials(&self.url), self.name);
        let link = Link::new(&self.url, self.timeout, self.cluster).map_err(|e| Error::Redis {
            target: target.clone(),
            reason: e.to_string(),
        })?;
        if self.rates.is_empty() {
            self.rates = stored_rates(&link, &self.name, &target)?;
        }
        let rules = rules_for(&self.rates)?;
        let fallback = match self.on_outage {
            OnOutage::FallBack => Some(Box::new(match &self.fallback {
                Some(path) => Limiter::open(path, &self.rates)?,
                None => Limiter::named(&self.name, &self.rates)?,
            })),
            _ => None,
        };
        let limiter = RedisLimiter::new(
            target,
            &self.name,
            self.rates,
            rules,
            link,
            self.on_outage,
            fallback,
        );
        limiter.check()?;
        Ok(Limiter::redis_backend(limiter))
    }
}

/// The limiter's keys, its log and its head: the name in a hash tag, so one Cluster slot.
pub(super) fn keys_for(name: &str) -> [String; 2] {
    [
        format!("hostlimit:{{{name}}}:log"),
        format!("hostlimit:{{{name}}}:head"),
    ]
}

/// The rates stored beside an existing limiter's log, for [`Limiter::redis`] without rates.
fn stored_rates(link: &Link, name: &str, target: &str) -> Result<Vec<Rate>, Error> {
    let failed = |reason: String| Error::Redis {
        target: target.to_string(),
        reason,
    };
    let text: Option<String> = link
        .call(|connection| {
            redis::cmd("HGET")
                .arg(&keys_for(name)[1])
                .arg("rates")
                .query(connection)
        })
        .map_err(|e| failed(e.to_string()))?;
    let text = text.ok_or_else(|| {
        failed("no such limiter on the server (or it expired): give its rates to create it".into())
    })?;
    text.split(", ")
        .map(|rate| {
            rate.parse::<Rate>()
                .map_err(|e| failed(format!("the stored rates {text:?} do not parse: {e}")))
        })
        .collect()
}

/// The URL as it may be shown: without a password.
pub(super) fn without_credentials(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
