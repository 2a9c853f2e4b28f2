//! One event loop per thread (`worker_threads`): the service's biggest design decision, in
//! one place. Every loop is a current-thread runtime with its own trigger-topic group
//! member (so its own share of the partitions), its own pipeline and its own HTTP
//! connections, and no delivery ever crosses threads: a task that wakes another on a
//! different thread costs more CPU than the delivery itself (docs/performance.md).
//!
//! What the process shares is built once and handed in ([`Loops::new`]): templates,
//! parking, stats, metrics and health ([`pipeline::Shared`]); the senders' per-host limits
//! and rates, circuit breakers, OAuth 2.0 tokens, SSRF policy and TLS settings
//! ([`Sending`]). What each loop owns is built from them here: its sender (connections and
//! its share of `max_inflight`), its pipeline (with its count of rendered bytes) and its
//! trigger consumer (its share of the memory budget). [`share`] is the one rule that
//! divides a limit between the loops. Loop 0 runs on the main thread, with the retry
//! tiers' member beside its trigger member; the others run on threads of their own
//! ([`threads`]).

mod threads;

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Barrier;

pub use threads::OtherLoops;

use crate::config::Config;
use crate::consume::{Budget, RetryConsumer, TriggerConsumer};
use crate::deliver::{Sender, Sending};
use crate::health::Health;
use crate::pipeline::{self, Pipeline};

/// Event loop `number`'s share of `total` over `loops` loops: the shares add up to `total`
/// (the first `total % loops` loops take one more).
pub fn share(total: usize, loops: usize, number: usize) -> usize {
    let loops = loops.max(1);
    total / loops + usize::from(number < total % loops)
}

/// What every event loop is built from.
pub struct Loops {
    config: Config,
    pipeline: pipeline::Shared,
    sending: Sending,
    health: Arc<Health>,
    /// The trigger members of every loop commit before any leaves the group (a member
    /// leaving starts a rebalance that refuses the others' commits).
    leave_together: Arc<Barrier>,
}

impl Loops {
    pub fn new(config: &Config, pipeline: pipeline::Shared, sending: Sending, health: Arc<Health>) -> Loops {
        Loops {
            config: config.clone(),
            pipeline,
            sending,
            health,
            leave_together: Arc::new(Barrier::new(config.worker_threads)),
        }
    }

    /// How many loops there are (`worker_threads`).
    pub fn count(&self) -> usize {
        self.config.worker_threads
    }

    /// Loop `number`'s share of the requests in flight and of the memory budget.
    pub fn budget(&self, number: usize) -> Budget {
        let loops = self.count();
        Budget {
            max_inflight: share(self.config.max_inflight, loops, number),
            max_pending_bytes: share(self.config.max_pending_bytes, loops, number),
        }
    }

    /// Loop `number`'s sender: its own connections and its share of the requests in flight.
    pub fn sender(&self, number: usize) -> Arc<Sender> {
        Arc::new(self.sending.sender(self.budget(number).max_inflight))
    }

    /// Loop `number`'s pipeline, sending through `sender` (the loop's).
    pub fn pipeline(&self, sender: Arc<Sender>) -> Arc<Pipeline> {
        Arc::new(Pipeline::new(&self.pipeline, sender))
    }

    /// Loop `number`'s trigger-topic member, feeding `pipeline` (the loop's). Made on the
    /// loop's own runtime: the consumer's timer task lives there.
    pub fn trigger_consumer(
        &self,
        number: usize,
        pipeline: Arc<Pipeline>,
    ) -> anyhow::Result<TriggerConsumer> {
        TriggerConsumer::new(
            &self.config,
            self.budget(number),
            pipeline,
            self.health.clone(),
            self.leave_together.clone(),
        )
        .context("cannot create the Kafka consumer (check kafka.brokers / kafka.properties)")
    }

    /// The retry tiers' member, on loop 0 beside its trigger member, sending through
    /// `pipeline` (loop 0's): within that loop's share of the requests in flight; its memory
    /// budget is the whole `max_pending_bytes`.
    pub fn retry_consumer(&self, pipeline: Arc<Pipeline>) -> anyhow::Result<RetryConsumer> {
        let budget = Budget {
            max_inflight: self.budget(0).max_inflight,
            max_pending_bytes: self.config.max_pending_bytes,
        };
        RetryConsumer::new(&self.config, budget, pipeline)
            .context("cannot create the Kafka retry consumer (check kafka.brokers / kafka.properties)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total_and_differ_by_one_at_most() {
        for total in 0..40 {
            for loops in 1..=8 {
                let shares: Vec<usize> = (0..loops).map(|n| share(total, loops, n)).collect();
                assert_eq!(shares.iter().sum::<usize>(), total, "{total} over {loops}");
                let (min, max) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(max - min <= 1, "{shares:?}");
            }
        }
        assert_eq!(share(10, 0, 0), 10, "no loops count as one");
    }
}
