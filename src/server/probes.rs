//! Cached probes for `/health/ready` and `/metrics`, which need no token: the connector probes of
//! [`crate::diagnostics`] (SQL Server login, Databricks workspace) and the events-table statements
//! behind them run at most once per [`PROBE_TTL`] whatever the request rate, and callers arriving
//! while a probe runs wait for it and share its answer.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::diagnostics::{Check, Mode, Options};
use crate::sync::EventStore;

/// How long a probe's answer is reused.
pub const PROBE_TTL: Duration = Duration::from_secs(5);

/// How long a readiness probe waits for each answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// One cached answer per key; a new key (e.g. another project version) probes again.
pub struct Cached<K, T> {
    ttl: Duration,
    slot: tokio::sync::Mutex<Option<(Instant, K, T)>>,
}

impl<K: PartialEq, T: Clone> Cached<K, T> {
    pub fn new(ttl: Duration) -> Self {
        Cached {
            ttl,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The answer for `key` if one younger than the TTL is cached, else `probe`'s (run by one
    /// caller at a time: the others wait on the slot and then find the fresh answer).
    pub async fn get<F: Future<Output = T>>(&self, key: K, probe: impl FnOnce() -> F) -> T {
        let mut slot = self.slot.lock().await;
        if let Some((at, cached_key, value)) = slot.as_ref()
            && *cached_key == key
            && at.elapsed() < self.ttl
        {
            return value.clone();
        }
        let value = probe().await;
        *slot = Some((Instant::now(), key, value.clone()));
        value
    }
}

/// The events table could not be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("events table unreachable: {0}")]
pub struct EventsUnreachable(#[source] Arc<crate::sync::SyncError>);

/// What the events table said.
#[derive(Debug, Clone)]
pub struct EventsProbe {
    /// Events waiting to be claimed, or why the table could not be read.
    pub pending: Result<u64, EventsUnreachable>,
    /// When the oldest pending event was created (`None` when none is pending or unknown).
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The probes of one server.
pub struct Probes {
    /// The connectors' checks, keyed by the project version the settings come from.
    connectors: Cached<String, Arc<Vec<Check>>>,
    events: Cached<(), EventsProbe>,
}

impl Default for Probes {
    fn default() -> Self {
        Probes::new(PROBE_TTL)
    }
}

impl Probes {
    pub fn new(ttl: Duration) -> Probes {
        Probes {
            connectors: Cached::new(ttl),
            events: Cached::new(ttl),
        }
    }

    /// The connector checks of `/health/ready` for the project files of `version`: what the
    /// project configures, each probe given [`READY_TIMEOUT`] per answer.
    pub async fn connectors(
        &self,
        version: &str,
        project: &crate::pipeline::Project,
    ) -> Arc<Vec<Check>> {
        self.connectors
            .get(version.to_string(), || async {
                let options = Options {
                    mode: Mode::Readiness,
                    volume: None,
                    timeout: Some(READY_TIMEOUT),
                };
                Arc::new(crate::diagnostics::run(project, &options).await)
            })
            .await
    }

    /// The pending count and oldest pending event of the events table.
    pub async fn events(&self, store: &dyn EventStore) -> EventsProbe {
        self.events
            .get((), || async {
                let pending = store
                    .pending_count()
                    .await
                    .map_err(|e| EventsUnreachable(Arc::new(e)));
                let oldest_pending = match pending {
                    Ok(0) | Err(_) => None,
                    Ok(_) => store.oldest_pending().await.ok().flatten(),
                };
                EventsProbe {
                    pending,
                    oldest_pending,
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_probe_until_the_ttl() {
        let cache = Arc::new(Cached::<u8, usize>::new(Duration::from_millis(300)));
        let runs = Arc::new(AtomicUsize::new(0));
        let probe = |runs: Arc<AtomicUsize>| {
            move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                runs.fetch_add(1, Ordering::SeqCst) + 1
            }
        };
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let (cache, runs) = (Arc::clone(&cache), Arc::clone(&runs));
                tokio::spawn(async move { cache.get(1, probe(runs)).await })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Another key probes again; so does the first once its answer is too old.
        assert_eq!(cache.get(2, probe(Arc::clone(&runs))).await, 2);
        assert_eq!(cache.get(2, probe(Arc::clone(&runs))).await, 2);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(cache.get(2, probe(Arc::clone(&runs))).await, 3);
    }
}
