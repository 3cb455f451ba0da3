//! [`StorageParameters`]: the controller's and replicas' tunables.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Tunables of the controller and its replicas, sent to every replica as configuration.
///
/// Every field is optional: `None` means "not set here, use the default". That makes a
/// value both a full configuration and a partial update, and
/// [`StorageParameters::update`] merges an update into the current configuration, so a
/// command history can keep one merged value however many updates it has seen. Read the
/// effective values through the methods of the same name.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use strata_controller_api::StorageParameters;
/// let mut params = StorageParameters::default();
/// assert_eq!(params.statistics_interval(), Duration::from_secs(1));
///
/// params.update(StorageParameters { statistics_interval: Some(Duration::from_millis(250)), ..Default::default() });
/// params.update(StorageParameters { status_history_retain_per_id: Some(10), ..Default::default() });
/// assert_eq!(params.statistics_interval(), Duration::from_millis(250));
/// assert_eq!(params.status_history_retain_per_id(), 10);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageParameters {
    /// How often replicas report source and sink statistics.
    pub statistics_interval: Option<Duration>,
    /// How long the controller batches writes to managed collections before it appends.
    pub user_batch_duration: Option<Duration>,
    /// The most updates an ingestion writes in one batch.
    pub ingestion_batch_max_updates: Option<usize>,
    /// The most updates a sink writes in one batch.
    pub sink_batch_max_updates: Option<usize>,
    /// How many status-history entries to keep per `(id, replica)`.
    pub status_history_retain_per_id: Option<usize>,
    /// How long replica metrics history is kept.
    pub metrics_history_retention: Option<Duration>,
}

impl StorageParameters {
    /// The default of [`StorageParameters::statistics_interval`].
    pub const DEFAULT_STATISTICS_INTERVAL: Duration = Duration::from_secs(1);
    /// The default of [`StorageParameters::user_batch_duration`].
    pub const DEFAULT_USER_BATCH_DURATION: Duration = Duration::from_secs(1);
    /// The default of [`StorageParameters::ingestion_batch_max_updates`].
    pub const DEFAULT_INGESTION_BATCH_MAX_UPDATES: usize = 8_192;
    /// The default of [`StorageParameters::sink_batch_max_updates`].
    pub const DEFAULT_SINK_BATCH_MAX_UPDATES: usize = 8_192;
    /// The default of [`StorageParameters::status_history_retain_per_id`].
    pub const DEFAULT_STATUS_HISTORY_RETAIN_PER_ID: usize = 5;
    /// The default of [`StorageParameters::metrics_history_retention`]: 30 days.
    pub const DEFAULT_METRICS_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

    /// Merges `other` into `self`: every field `other` sets replaces the one in `self`;
    /// fields `other` leaves unset keep their value.
    pub fn update(&mut self, other: StorageParameters) {
        let StorageParameters {
            statistics_interval,
            user_batch_duration,
            ingestion_batch_max_updates,
            sink_batch_max_updates,
            status_history_retain_per_id,
            metrics_history_retention,
        } = other;
        merge(&mut self.statistics_interval, statistics_interval);
        merge(&mut self.user_batch_duration, user_batch_duration);
        merge(
            &mut self.ingestion_batch_max_updates,
            ingestion_batch_max_updates,
        );
        merge(&mut self.sink_batch_max_updates, sink_batch_max_updates);
        merge(
            &mut self.status_history_retain_per_id,
            status_history_retain_per_id,
        );
        merge(
            &mut self.metrics_history_retention,
            metrics_history_retention,
        );
    }

    /// The effective statistics interval.
    pub fn statistics_interval(&self) -> Duration {
        self.statistics_interval
            .unwrap_or(Self::DEFAULT_STATISTICS_INTERVAL)
    }

    /// The effective batching duration for managed-collection writes.
    pub fn user_batch_duration(&self) -> Duration {
        self.user_batch_duration
            .unwrap_or(Self::DEFAULT_USER_BATCH_DURATION)
    }

    /// The effective ingestion batch size.
    pub fn ingestion_batch_max_updates(&self) -> usize {
        self.ingestion_batch_max_updates
            .unwrap_or(Self::DEFAULT_INGESTION_BATCH_MAX_UPDATES)
    }

    /// The effective sink batch size.
    pub fn sink_batch_max_updates(&self) -> usize {
        self.sink_batch_max_updates
            .unwrap_or(Self::DEFAULT_SINK_BATCH_MAX_UPDATES)
    }

    /// The effective number of status-history entries kept per `(id, replica)`.
    pub fn status_history_retain_per_id(&self) -> usize {
        self.status_history_retain_per_id
            .unwrap_or(Self::DEFAULT_STATUS_HISTORY_RETAIN_PER_ID)
    }

    /// The effective retention of replica metrics history.
    pub fn metrics_history_retention(&self) -> Duration {
        self.metrics_history_retention
            .unwrap_or(Self::DEFAULT_METRICS_HISTORY_RETENTION)
    }
}

fn merge<V>(current: &mut Option<V>, update: Option<V>) {
    if update.is_some() {
        *current = update;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> impl Strategy<Value = StorageParameters> {
        let ms = || proptest::option::of((0u64..10_000).prop_map(Duration::from_millis));
        let n = || proptest::option::of(0usize..10_000);
        (ms(), ms(), n(), n(), n(), ms()).prop_map(|(a, b, c, d, e, f)| StorageParameters {
            statistics_interval: a,
            user_batch_duration: b,
            ingestion_batch_max_updates: c,
            sink_batch_max_updates: d,
            status_history_retain_per_id: e,
            metrics_history_retention: f,
        })
    }

    #[test]
    fn defaults_apply_when_unset() {
        let p = StorageParameters::default();
        assert_eq!(
            p.statistics_interval(),
            StorageParameters::DEFAULT_STATISTICS_INTERVAL
        );
        assert_eq!(
            p.user_batch_duration(),
            StorageParameters::DEFAULT_USER_BATCH_DURATION
        );
        assert_eq!(
            p.ingestion_batch_max_updates(),
            StorageParameters::DEFAULT_INGESTION_BATCH_MAX_UPDATES
        );
        assert_eq!(
            p.sink_batch_max_updates(),
            StorageParameters::DEFAULT_SINK_BATCH_MAX_UPDATES
        );
        assert_eq!(
            p.status_history_retain_per_id(),
            StorageParameters::DEFAULT_STATUS_HISTORY_RETAIN_PER_ID
        );
        assert_eq!(
            p.metrics_history_retention(),
            StorageParameters::DEFAULT_METRICS_HISTORY_RETENTION
        );
    }

    proptest! {
        #[test]
        fn update_is_last_writer_wins_per_field(a in params(), b in params(), c in params()) {
            let mut merged = a.clone();
            merged.update(b.clone());
            merged.update(c.clone());
            // Merging is associative: merging (b then c) into a gives the same.
            let mut bc = b.clone();
            bc.update(c.clone());
            let mut other = a.clone();
            other.update(bc);
            prop_assert_eq!(&merged, &other);
            // Each field is the last one set, else unset.
            prop_assert_eq!(merged.statistics_interval, c.statistics_interval.or(b.statistics_interval).or(a.statistics_interval));
            prop_assert_eq!(merged.sink_batch_max_updates, c.sink_batch_max_updates.or(b.sink_batch_max_updates).or(a.sink_batch_max_updates));
            // Merging with an empty update changes nothing.
            let mut same = merged.clone();
            same.update(StorageParameters::default());
            prop_assert_eq!(same, merged);
        }

        #[test]
        fn serde_round_trips(p in params()) {
            let back: StorageParameters = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            prop_assert_eq!(back, p);
        }
    }
}
