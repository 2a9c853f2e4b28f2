//! How a member goes: the drain on shutdown (records in progress finish, up to the drain
//! timeout), the final commit, leaving together with the process's other members of the
//! group, and the close, which always runs on a thread of its own, however the member goes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use super::{Done, Member};

/// How long a drained member waits for librdkafka to leave the group before stopping anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the final commit is tried again while the group rebalances.
const FINAL_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

impl Member {
    /// Stops fetching, lets the records in progress finish (up to the drain timeout), commits
    /// what is settled, and leaves the group. Records not started, or fetched and not yet
    /// received, stay uncommitted: they are consumed again after restart and were never
    /// sent.
    pub async fn drain(mut self, mut tasks: JoinSet<Done>, not_started: usize) {
        info!(role = self.role.name(), in_flight = tasks.len(), not_started, timeout = ?self.drain_timeout,
              "shutting down: finishing the records in progress; the others are consumed again after restart");
        self.draining = true;
        self.consumer().context().draining.store(true, Ordering::Relaxed);
        if let Ok(assignment) = self.consumer().assignment()
            && let Err(err) = self.consumer().pause(&assignment)
        {
            warn!(role = self.role.name(), error = %err, "cannot pause partitions for the drain");
        }
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    warn!(role = self.role.name(), abandoned = tasks.len(),
                          "drain timeout reached; unfinished records will be consumed again");
                    // Stop sending first: aborting thousands of tasks is not atomic, and
                    // permits freed by aborted requests must not start new ones meanwhile.
                    self.backpressure.stop_sending();
                    tasks.abort_all();
                    break;
                }
                joined = tasks.join_next_with_id() => match joined {
                    Some(joined) => {
                        self.settle(vec![joined]);
                    }
                    None => break,
                },
                // Keep serving the consumer's callbacks (rebalances) while draining.
                _ = self.consumer().recv() => {}
            }
        }
        self.finish_revocation(true);
        self.final_commit().await;
        self.wait_for_the_others().await;
        // Leave the group now, so the partitions move to the others at once.
        if let Some(closed) = self.close_in_background()
            && tokio::time::timeout(CLOSE_TIMEOUT, closed).await.is_err()
        {
            warn!(role = self.role.name(), timeout = ?CLOSE_TIMEOUT,
                  "the consumer is still closing; stopping anyway (its partitions move after the session timeout)");
        }
    }

    /// Commits what is settled. Another member leaving the group at the same moment (the
    /// other event loops, other replicas scaled down together) puts the group in a
    /// rebalance that refuses commits: the consumer is served until it is over, then the
    /// commit is made again, for up to [`FINAL_COMMIT_TIMEOUT`].
    async fn final_commit(&self) {
        let deadline = tokio::time::Instant::now() + FINAL_COMMIT_TIMEOUT;
        loop {
            let err = match self.consumer().commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {
                    info!(role = self.role.name(), "final offsets committed");
                    return;
                }
                Err(err) => err,
            };
            // A rebalance in progress, or just over with this member not yet rejoined.
            let rebalancing = matches!(
                err,
                KafkaError::ConsumerCommit(
                    RDKafkaErrorCode::RebalanceInProgress
                        | RDKafkaErrorCode::IllegalGeneration
                        | RDKafkaErrorCode::UnknownMemberId
                )
            );
            if !rebalancing || tokio::time::Instant::now() >= deadline {
                error!(role = self.role.name(), error = %err,
                       "final commit failed; settled records may be processed again");
                return;
            }
            debug!(
                role = self.role.name(),
                "final commit refused during a rebalance; trying again"
            );
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                // Rebalance callbacks run inside the consumer's poll.
                _ = self.consumer().recv() => {}
            }
        }
    }

    /// Waits until the process's other members of the group have committed too (they began
    /// draining at the same moment, so at most their drain and final commit: past that, a
    /// member is stuck or gone and this one leaves anyway), serving the consumer meanwhile: a rebalance the group is in (a member
    /// that joined late) completes only once every member polls, and until then it refuses
    /// the others' commits. Records fetched meanwhile are not processed (not tracked, so
    /// never committed).
    async fn wait_for_the_others(&self) {
        let Some(barrier) = &self.leave_together else {
            return;
        };
        let all_committed = tokio::time::timeout(self.drain_timeout + FINAL_COMMIT_TIMEOUT, barrier.wait());
        tokio::pin!(all_committed);
        loop {
            tokio::select! {
                waited = &mut all_committed => {
                    if waited.is_err() {
                        warn!(role = self.role.name(),
                              "another event loop has not committed yet; leaving the group anyway");
                    }
                    return;
                }
                _ = self.consumer().recv() => {}
            }
        }
    }

    fn close_in_background(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let consumer = self.consumer.take()?;
        consumer.context().closing.store(true, Ordering::Relaxed);
        let (done, closed) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = done.send(());
            });
        // Without a thread to be had, the consumer was dropped, and closed, right here.
        spawned.ok().map(|_| closed)
    }
}

/// However the member goes (after the drain, or dropped mid-run when its task is
/// cancelled), the close never runs on the async runtime.
impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.close_in_background();
    }
}
