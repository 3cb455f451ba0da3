//! Prometheus metrics of the controller and its replicas, on one registry.
//!
//! Every metric lives under the `strata_` prefix. Handles are cheap to clone; clones
//! update the same series. A [`ControllerMetrics`] or [`ReplicaMetrics`] built with
//! `default()` is not registered anywhere, which suits components and tests that do not
//! export metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a command or response exchanged with one replica.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReplicaMessageLabels {
    /// The instance, such as `i1`.
    pub instance: String,
    /// The replica, such as `r1`.
    pub replica: String,
    /// The command or response kind, such as `run_ingestion` or `frontier_upper`.
    pub kind: String,
}

/// Labels of a per-instance series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// The instance, such as `i1`.
    pub instance: String,
}

/// Labels of a per-collection series.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectionLabels {
    /// The collection, such as `u7`.
    pub collection: String,
}

/// Labels of a persist operation.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    /// The operation, such as `compare_and_append` or `snapshot`.
    pub op: String,
}

/// Labels of a write by the collection manager.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// The collection.
    pub collection: String,
    /// `ok`, `upper_mismatch` or `error`.
    pub outcome: String,
}

/// Labels of a command a replica received.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The command kind.
    pub kind: String,
}

type LatencyFamily = Family<OpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The controller's metrics.
#[derive(Debug, Clone)]
pub struct ControllerMetrics {
    /// Commands sent to replicas, by instance, replica and kind.
    pub commands_sent: Family<ReplicaMessageLabels, Counter>,
    /// Responses received from replicas, by instance, replica and kind.
    pub responses: Family<ReplicaMessageLabels, Counter>,
    /// Commands in each instance's reduced command history.
    pub history_size: Family<InstanceLabels, Gauge>,
    /// Compare-and-append attempts that found another upper, per collection.
    pub cas_retries: Family<CollectionLabels, Counter>,
    /// Latency of persist operations, in seconds.
    pub persist_op_seconds: LatencyFamily,
    /// Wall-clock time minus the collection's upper, in milliseconds.
    pub frontier_lag_ms: Family<CollectionLabels, Gauge>,
    /// Writes of managed collections by outcome.
    pub managed_writes: Family<WriteLabels, Counter>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        ControllerMetrics {
            commands_sent: Family::default(),
            responses: Family::default(),
            history_size: Family::default(),
            cas_retries: Family::default(),
            persist_op_seconds: Family::new_with_constructor(latency_histogram),
            frontier_lag_ms: Family::default(),
            managed_writes: Family::default(),
        }
    }
}

impl ControllerMetrics {
    /// Registers every series in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "commands_sent",
            "Commands sent to replicas",
            self.commands_sent.clone(),
        );
        r.register(
            "responses",
            "Responses received from replicas",
            self.responses.clone(),
        );
        r.register(
            "command_history_size",
            "Commands in an instance's reduced history",
            self.history_size.clone(),
        );
        r.register(
            "cas_retries",
            "Compare-and-append attempts that met another upper",
            self.cas_retries.clone(),
        );
        r.register(
            "persist_op_seconds",
            "Latency of persist operations in seconds",
            self.persist_op_seconds.clone(),
        );
        r.register(
            "frontier_lag_ms",
            "Wall clock minus a collection's upper in milliseconds",
            self.frontier_lag_ms.clone(),
        );
        r.register(
            "managed_writes",
            "Writes of managed collections by outcome",
            self.managed_writes.clone(),
        );
    }

    /// The counter of commands of `kind` sent to `replica`: a handle to the same series
    /// as [`ControllerMetrics::command_sent`] counts, for a caller that counts often
    /// and keeps it (no label is built or hashed per count).
    pub fn commands_sent_counter(
        &self,
        instance: &str,
        replica: &str,
        kind: &str,
    ) -> MessageCounter {
        MessageCounter(
            self.commands_sent
                .get_or_create(&message(instance, replica, kind))
                .clone(),
        )
    }

    /// The counter of responses of `kind` received from `replica` (see
    /// [`ControllerMetrics::commands_sent_counter`]).
    pub fn responses_counter(&self, instance: &str, replica: &str, kind: &str) -> MessageCounter {
        MessageCounter(
            self.responses
                .get_or_create(&message(instance, replica, kind))
                .clone(),
        )
    }

    /// Counts one command sent to a replica.
    pub fn command_sent(&self, instance: &str, replica: &str, kind: &str) {
        self.commands_sent
            .get_or_create(&message(instance, replica, kind))
            .inc();
    }

    /// Counts one response received from a replica.
    pub fn response_received(&self, instance: &str, replica: &str, kind: &str) {
        self.responses
            .get_or_create(&message(instance, replica, kind))
            .inc();
    }

    /// Sets the size of an instance's command history.
    pub fn set_history_size(&self, instance: &str, size: usize) {
        let labels = InstanceLabels {
            instance: instance.to_owned(),
        };
        self.history_size
            .get_or_create(&labels)
            .set(i64::try_from(size).unwrap_or(i64::MAX));
    }

    /// Counts one upper mismatch of a compare-and-append to `collection`.
    pub fn cas_retry(&self, collection: &str) {
        self.cas_retries
            .get_or_create(&collection_labels(collection))
            .inc();
    }

    /// Records how long a persist operation took.
    pub fn observe_persist_op(&self, op: &str, elapsed: Duration) {
        let labels = OpLabels { op: op.to_owned() };
        self.persist_op_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Sets the frontier lag of `collection`: `now_ms - upper_ms`, or zero when the
    /// upper is ahead of the clock.
    pub fn set_frontier_lag(&self, collection: &str, now_ms: u64, upper_ms: u64) {
        let lag = i64::try_from(now_ms.saturating_sub(upper_ms)).unwrap_or(i64::MAX);
        self.frontier_lag_ms
            .get_or_create(&collection_labels(collection))
            .set(lag);
    }

    /// Starts serving the per-collection counters of `collection` at zero, so that a
    /// scrape shows them before their first event.
    pub fn track_collection(&self, collection: &str) {
        let _created = self
            .cas_retries
            .get_or_create(&collection_labels(collection));
    }

    /// Forgets the per-collection series of a dropped collection.
    pub fn remove_collection(&self, collection: &str) {
        let labels = collection_labels(collection);
        self.frontier_lag_ms.remove(&labels);
        self.cas_retries.remove(&labels);
    }

    /// Counts one managed write with its outcome (`ok`, `upper_mismatch`, `error`).
    pub fn managed_write(&self, collection: &str, outcome: &str) {
        let labels = WriteLabels {
            collection: collection.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.managed_writes.get_or_create(&labels).inc();
    }
}

/// A replica's metrics.
#[derive(Debug, Clone, Default)]
pub struct ReplicaMetrics {
    /// Commands received from the controller, by kind.
    pub commands_received: Family<KindLabels, Counter>,
    /// Updates written to each collection's shard.
    pub updates_written: Family<CollectionLabels, Counter>,
    /// Batches committed to each collection's shard.
    pub batches_committed: Family<CollectionLabels, Counter>,
    /// Messages read from upstream by each source.
    pub messages_received: Family<CollectionLabels, Counter>,
    /// Dataflows running on the replica.
    pub dataflows: Gauge,
}

impl ReplicaMetrics {
    /// Registers every series in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "replica_commands_received",
            "Commands a replica received",
            self.commands_received.clone(),
        );
        r.register(
            "replica_updates_written",
            "Updates a replica wrote to a shard",
            self.updates_written.clone(),
        );
        r.register(
            "replica_batches_committed",
            "Batches a replica committed to a shard",
            self.batches_committed.clone(),
        );
        r.register(
            "replica_messages_received",
            "Messages a source read from upstream",
            self.messages_received.clone(),
        );
        r.register(
            "replica_dataflows",
            "Dataflows running on the replica",
            self.dataflows.clone(),
        );
    }

    /// Counts one command of `kind`.
    pub fn command_received(&self, kind: &str) {
        self.commands_received
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .inc();
    }

    /// Counts `messages` more messages that `source` read from upstream.
    pub fn messages_received(&self, source: &str, messages: u64) {
        self.messages_received
            .get_or_create(&collection_labels(source))
            .inc_by(messages);
    }

    /// Sets how many dataflows run on the replica.
    pub fn set_dataflows(&self, count: usize) {
        self.dataflows.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// How many updates were committed to `collection` so far.
    pub fn updates_written(&self, collection: &str) -> u64 {
        self.updates_written
            .get(&collection_labels(collection))
            .map_or(0, |c| c.get())
    }

    /// Counts a committed batch of `updates` updates to `collection`.
    pub fn batch_committed(&self, collection: &str, updates: u64) {
        let labels = collection_labels(collection);
        self.batches_committed.get_or_create(&labels).inc();
        self.updates_written.get_or_create(&labels).inc_by(updates);
    }
}

/// A handle to one series of replica messages: counting through it builds and hashes
/// no labels.
#[derive(Debug, Clone)]
pub struct MessageCounter(Counter);

impl MessageCounter {
    /// Counts one message.
    pub fn inc(&self) {
        self.0.inc();
    }
}

fn message(instance: &str, replica: &str, kind: &str) -> ReplicaMessageLabels {
    ReplicaMessageLabels {
        instance: instance.to_owned(),
        replica: replica.to_owned(),
        kind: kind.to_owned(),
    }
}

fn collection_labels(collection: &str) -> CollectionLabels {
    CollectionLabels {
        collection: collection.to_owned(),
    }
}

/// The controller's and replicas' metrics on one registry, with the `strata` prefix.
///
/// # Examples
///
/// ```
/// use strata_introspection::Metrics;
/// let metrics = Metrics::new();
/// metrics.controller.command_sent("i1", "r1", "run_ingestion");
/// let text = metrics.encode();
/// assert!(text.contains("strata_commands_sent_total{instance=\"i1\",replica=\"r1\",kind=\"run_ingestion\"} 1"));
/// assert!(text.ends_with("# EOF\n"));
/// ```
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The controller's series.
    pub controller: ControllerMetrics,
    /// The replicas' series.
    pub replica: ReplicaMetrics,
    registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every controller and replica series registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("strata");
        let controller = ControllerMetrics::default();
        let replica = ReplicaMetrics::default();
        controller.register(&mut registry);
        replica.register(&mut registry);
        Metrics {
            controller,
            replica,
            registry: Arc::new(registry),
        }
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registry in the OpenMetrics text format, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Writing to a `String` cannot fail; a metric's own encoder might.
            tracing::warn!(%error, "encoding metrics failed");
        }
        out
    }
}
