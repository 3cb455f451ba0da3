//! Counting what crosses each replica connection: [`Metered`] is the
//! [`ConnectionObserver`] every instance gets, so `strata_commands_sent_total` and
//! `strata_responses_total` count each command sent and each response received, by
//! instance, replica and kind.

use strata_controller_api::{InstanceId, ReplicaId};
use strata_instance_client::ConnectionObserver;
use strata_introspection::ControllerMetrics;

/// Puts one instance's connection traffic into the controller's metrics.
pub(crate) struct Metered {
    pub(crate) metrics: ControllerMetrics,
    pub(crate) instance: String,
}

impl Metered {
    pub(crate) fn new(metrics: ControllerMetrics, instance: InstanceId) -> Self {
        Metered {
            metrics,
            instance: instance.to_string(),
        }
    }
}

impl ConnectionObserver for Metered {
    fn command_sent(&self, replica: ReplicaId, kind: &'static str) {
        self.metrics
            .command_sent(&self.instance, &replica.to_string(), kind);
    }

    fn response_received(&self, replica: ReplicaId, kind: &'static str) {
        self.metrics
            .response_received(&self.instance, &replica.to_string(), kind);
    }
}
