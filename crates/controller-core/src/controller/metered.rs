//! Counting what crosses each replica connection: [`Metered`] is the
//! [`ConnectionObserver`] every instance gets, so `strata_commands_sent_total` and
//! `strata_responses_total` count each command sent and each response received, by
//! instance, replica and kind.
//!
//! Counting is on every response's path, so the series' handles are kept: a count is a
//! map lookup and an atomic add, not a label set built and hashed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use strata_controller_api::{InstanceId, ReplicaId};
use strata_instance_client::ConnectionObserver;
use strata_introspection::{ControllerMetrics, MessageCounter};

/// Which way a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    Sent,
    Received,
}

/// Puts one instance's connection traffic into the controller's metrics.
pub(crate) struct Metered {
    metrics: ControllerMetrics,
    instance: String,
    counters: Mutex<BTreeMap<(Direction, ReplicaId, &'static str), MessageCounter>>,
}

impl Metered {
    pub(crate) fn new(metrics: ControllerMetrics, instance: InstanceId) -> Self {
        Metered {
            metrics,
            instance: instance.to_string(),
            counters: Mutex::new(BTreeMap::new()),
        }
    }

    fn count(&self, direction: Direction, replica: ReplicaId, kind: &'static str) {
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        counters
            .entry((direction, replica, kind))
            .or_insert_with(|| {
                let replica = replica.to_string();
                match direction {
                    Direction::Sent => {
                        self.metrics
                            .commands_sent_counter(&self.instance, &replica, kind)
                    }
                    Direction::Received => {
                        self.metrics
                            .responses_counter(&self.instance, &replica, kind)
                    }
                }
            })
            .inc();
    }
}

impl ConnectionObserver for Metered {
    fn command_sent(&self, replica: ReplicaId, kind: &'static str) {
        self.count(Direction::Sent, replica, kind);
    }

    fn response_received(&self, replica: ReplicaId, kind: &'static str) {
        self.count(Direction::Received, replica, kind);
    }
}

#[cfg(test)]
mod tests {
    use strata_introspection::Metrics;

    use super::*;

    #[test]
    fn counts_reach_the_series_of_their_labels() {
        let metrics = Metrics::default();
        let metered = Metered::new(metrics.controller.clone(), InstanceId(7));
        for _ in 0..3 {
            metered.response_received(ReplicaId(2), "frontier_upper");
        }
        metered.response_received(ReplicaId(3), "frontier_upper");
        metered.command_sent(ReplicaId(2), "hello");
        let text = metrics.encode();
        let line = |name: &str, replica: &str, kind: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(name)
                        && l.contains(&format!("replica=\"{replica}\""))
                        && l.contains(&format!("kind=\"{kind}\""))
                })
                .map(|l| l.rsplit(' ').next().unwrap_or_default().to_owned())
        };
        assert_eq!(
            line(
                "strata_responses_total",
                &ReplicaId(2).to_string(),
                "frontier_upper"
            )
            .as_deref(),
            Some("3"),
            "{text}"
        );
        assert_eq!(
            line(
                "strata_responses_total",
                &ReplicaId(3).to_string(),
                "frontier_upper"
            )
            .as_deref(),
            Some("1")
        );
        assert_eq!(
            line(
                "strata_commands_sent_total",
                &ReplicaId(2).to_string(),
                "hello"
            )
            .as_deref(),
            Some("1")
        );
    }
}
