//! The other event loops (`worker_threads` above 1). The main thread's loop runs the whole
//! service; each other loop is a thread running a current-thread runtime of its own with a
//! trigger-topic group member of its own (so its own share of the partitions), its own
//! pipeline and its own HTTP connections. They share the limits, circuit breakers, OAuth 2.0
//! tokens, templates, producer, stats and metrics, but no delivery ever crosses threads:
//! a task that wakes another on a different thread costs more CPU than the delivery itself
//! (docs/performance.md).

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::{Barrier, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::error;

use crate::config::Config;
use crate::consume::TriggerConsumer;
use crate::health::Health;
use crate::pipeline::Pipeline;

/// What one loop's trigger-topic member is made of.
struct Member {
    config: Config,
    pipeline: Arc<Pipeline>,
    health: Arc<Health>,
    leave_together: Arc<Barrier>,
}

/// One loop's thread: its runtime runs its trigger consumer until `shutdown` and the drain
/// (then says so on `done`), and keeps running whatever else lives on it until `release`.
fn run_loop(
    member: Member,
    started: oneshot::Sender<anyhow::Result<()>>,
    done: oneshot::Sender<()>,
    shutdown: CancellationToken,
    release: CancellationToken,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = started.send(Err(err.into()));
            return;
        }
    };
    runtime.block_on(async move {
        let Member {
            config,
            pipeline,
            health,
            leave_together,
        } = member;
        // Made on its own loop: the consumer's own timer task lives there.
        let consumer = match TriggerConsumer::new(&config, pipeline, health, leave_together) {
            Ok(consumer) => consumer,
            Err(err) => {
                let _ = started.send(Err(err.into()));
                return;
            }
        };
        let _ = started.send(Ok(()));
        consumer.run(shutdown).await;
        let _ = done.send(());
        release.cancelled().await;
    });
}

/// The loops started besides the main thread's.
pub struct OtherLoops {
    finished: Vec<oneshot::Receiver<()>>,
    /// The service's shutdown: a loop that ends before it (a bug: it panicked) stops the
    /// whole service, so the pod is restarted rather than left running with a member less.
    shutdown: CancellationToken,
    /// Cancelled last: each loop keeps running the tasks that live on it (pooled
    /// connections, a Redis connection it re-opened) until the whole service has stopped.
    release: CancellationToken,
}

impl OtherLoops {
    /// Starts `worker_threads - 1` loops, each consuming the trigger topic with `config`
    /// (whose memory budget is already one loop's share) through a pipeline like
    /// `pipeline`, until `shutdown`. Fails if any cannot start its runtime, client or
    /// consumer; the ones started then stop.
    pub async fn start(
        config: &Config,
        pipeline: &Pipeline,
        health: &Arc<Health>,
        leave_together: &Arc<Barrier>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<OtherLoops> {
        let count = config.worker_threads - 1;
        let stop = shutdown.child_token();
        let mut loops = OtherLoops {
            finished: Vec::with_capacity(count),
            shutdown: shutdown.clone(),
            release: CancellationToken::new(),
        };
        for number in 1..=count {
            let started = async {
                let sender = pipeline.sender.for_another_loop(number);
                let member = Member {
                    config: config.clone(),
                    pipeline: Arc::new(pipeline.for_another_loop(sender)),
                    health: health.clone(),
                    leave_together: leave_together.clone(),
                };
                loops.start_one(number, member, &stop).await
            };
            if let Err(err) = started.await {
                // The loops started drain and commit before the error stops the service.
                stop.cancel();
                loops.finished().await;
                loops.release.cancel();
                return Err(err);
            }
        }
        Ok(loops)
    }

    async fn start_one(
        &mut self,
        number: usize,
        member: Member,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (started, start) = oneshot::channel();
        let (done, finish) = oneshot::channel();
        let (shutdown, release) = (shutdown.clone(), self.release.clone());
        std::thread::Builder::new()
            .name(format!("event-loop-{number}"))
            .spawn(move || run_loop(member, started, done, shutdown, release))
            .context("cannot start an event loop thread")?;
        start
            .await
            .context("an event loop stopped while starting")?
            .context("cannot create the Kafka consumer (check kafka.brokers / kafka.properties)")?;
        self.finished.push(finish);
        Ok(())
    }

    /// Waits until every loop's consumer has drained and committed. A loop that ends
    /// otherwise (it panicked) stops the service at once; `false` then.
    pub async fn finished(&mut self) -> bool {
        use futures::StreamExt;
        let mut all: futures::stream::FuturesUnordered<_> = self.finished.drain(..).collect();
        let mut clean = true;
        while let Some(finish) = all.next().await {
            if finish.is_err() {
                error!("an event loop ended without draining (a bug: it panicked); stopping the service");
                self.shutdown.cancel();
                clean = false;
            }
        }
        clean
    }

    /// Cancel it to let the loops' runtimes go, once nothing of the service runs any more.
    pub fn release(&self) -> CancellationToken {
        self.release.clone()
    }
}
