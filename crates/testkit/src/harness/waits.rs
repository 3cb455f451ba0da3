//! Waiting for the controller: [`Harness::wait_until`] and [`Harness::wait_for_upper`].

use std::time::{Duration, Instant};

use strata_controller_api::{Antichain, Collections, GlobalId, Lifecycle, Timestamp};
use strata_controller_core::Controller;

use super::{Harness, HarnessError, Result, storage};

/// How long one round waits for the controller to have work.
const ROUND: Duration = Duration::from_millis(10);

impl Harness {
    /// Drives the controller (`apply_pending`, then `ready`/`process` for at most one
    /// round) until `check` returns `Ok`, and returns its value.
    ///
    /// `check` returns `Err(observation)` while the condition does not hold yet; the
    /// last observation goes into the timeout error with `description`, so a failing
    /// test says what it waited for and what it saw.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] after the harness timeout, or
    /// [`HarnessError::Storage`] if processing the controller's responses fails.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use strata_controller_api::Instances;
    /// # use strata_testkit::harness::{Harness, HarnessError};
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), HarnessError> {
    /// let mut harness = Harness::builder()
    ///     .replicas(0)
    ///     .timeout(Duration::from_millis(50))
    ///     .build()
    ///     .await?;
    /// let epoch = harness
    ///     .wait_until("a positive epoch", |ctl| {
    ///         let epoch = ctl.epoch();
    ///         if epoch > 0 { Ok(epoch) } else { Err(format!("epoch {epoch}")) }
    ///     })
    ///     .await?;
    /// assert!(epoch > 0);
    ///
    /// let never = harness
    ///     .wait_until("the impossible", |_| Err::<(), _>("still impossible".to_string()))
    ///     .await
    ///     .unwrap_err();
    /// assert!(never.to_string().contains("waiting for the impossible; last saw still impossible"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_until<R>(
        &mut self,
        description: &str,
        mut check: impl FnMut(&Controller<Timestamp>) -> std::result::Result<R, String>,
    ) -> Result<R> {
        let started = Instant::now();
        let deadline = started + self.settings.timeout;
        loop {
            self.controller.apply_pending();
            let last_seen = match check(&self.controller) {
                Ok(value) => return Ok(value),
                Err(seen) => seen,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(HarnessError::Timeout {
                    waiting_for: description.to_string(),
                    last_seen,
                    after: now - started,
                });
            }
            let round = ROUND.min(deadline - now);
            if tokio::time::timeout(round, self.controller.ready())
                .await
                .is_ok()
            {
                // Responses are applied by `process`; the harness drops what it returns.
                while self
                    .controller
                    .process()
                    .map_err(storage("processing controller responses"))?
                    .is_some()
                {}
            }
        }
    }

    /// Waits until the upper of `id` passes `t` (so a read as of `t` is complete) and
    /// returns the upper.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Timeout`] naming `id`, `t` and the last upper (or error) seen.
    ///
    /// # Examples
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use strata_controller_api::{Datum, GlobalId, RelationDesc, Row, ScalarType, Timestamp};
    /// # use strata_testkit::harness::{Harness, HarnessError};
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), HarnessError> {
    /// let mut harness = Harness::builder()
    ///     .replicas(0)
    ///     .timeout(Duration::from_millis(100))
    ///     .build()
    ///     .await?;
    /// let table = GlobalId::User(1);
    /// let desc = RelationDesc::builder().with_column("x", ScalarType::Int64.nullable(false)).finish();
    /// harness.create_table(table, desc).await?;
    /// let at = harness.append(table, vec![(Row::pack(&[Datum::Int64(1)]), 1)]).await?;
    /// harness.wait_for_upper(table, at).await?;
    /// // Nothing writes at u64::MAX - 1: the wait times out and says so.
    /// let late = harness.wait_for_upper(table, Timestamp::new(u64::MAX - 1)).await.unwrap_err();
    /// assert!(late.to_string().contains("u1"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_upper(
        &mut self,
        id: GlobalId,
        t: Timestamp,
    ) -> Result<Antichain<Timestamp>> {
        let description = format!("the upper of {id} to pass {t}");
        self.wait_until(&description, |ctl| match ctl.collection_frontiers(id) {
            Ok(frontiers) if !frontiers.upper.less_equal(&t) => Ok(frontiers.upper),
            Ok(frontiers) => Err(format!("upper {}", render(&frontiers.upper))),
            Err(e) => Err(format!("error {e}")),
        })
        .await
    }
}

/// A frontier as `[t1, t2]` with times in milliseconds.
fn render(frontier: &Antichain<Timestamp>) -> String {
    let times: Vec<String> = frontier.elements().iter().map(|t| t.to_string()).collect();
    format!("[{}]", times.join(", "))
}

impl Harness {
    /// Waits until replica `index` serves the current controller: its connection
    /// passed the replica's epoch fence at the controller's epoch. Use it after
    /// [`restart_replica`](Self::restart_replica) or
    /// [`restart_controller`](Self::restart_controller).
    ///
    /// # Examples
    ///
    /// ```
    /// # use strata_testkit::harness::{Harness, HarnessError};
    /// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
    /// # async fn main() -> Result<(), HarnessError> {
    /// let mut harness = Harness::builder().replicas(1).build().await?;
    /// harness.wait_for_replica(0).await?;
    /// harness.kill_replica(0).await?;
    /// harness.restart_replica(0).await?;
    /// harness.wait_for_replica(0).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_replica(&mut self, index: usize) -> Result<()> {
        let connector = std::sync::Arc::clone(&self.slot(index)?.connector);
        let description = format!("replica {index} to serve the controller");
        self.wait_until(&description, |ctl| match connector.fence_epoch() {
            Some(epoch) if epoch == ctl.epoch() => Ok(()),
            Some(epoch) => Err(format!(
                "replica fenced at epoch {epoch}, controller at {}",
                ctl.epoch()
            )),
            None => Err("replica killed".to_string()),
        })
        .await
    }
}
