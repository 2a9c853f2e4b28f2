//! The event loops besides the main thread's (`worker_threads` above 1): each a thread
//! running a current-thread runtime of its own, with the parts [`Loops`] builds for it.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::error;

use super::Loops;

/// One loop's thread: its runtime runs its trigger consumer until `shutdown` and the drain
/// (then says so on `done`), and keeps running whatever else lives on it until `release`.
fn run_loop(
    number: usize,
    loops: Arc<Loops>,
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
        let pipeline = loops.pipeline(loops.sender(number));
        let consumer = match loops.trigger_consumer(number, pipeline) {
            Ok(consumer) => consumer,
            Err(err) => {
                let _ = started.send(Err(err));
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
    /// Starts loops 1, 2, … (all but the main thread's), each consuming the trigger topic
    /// until `shutdown`. Fails if any cannot start its runtime, client or consumer; the ones
    /// started then stop.
    pub async fn start(loops: &Arc<Loops>, shutdown: &CancellationToken) -> anyhow::Result<OtherLoops> {
        let stop = shutdown.child_token();
        let mut others = OtherLoops {
            finished: Vec::with_capacity(loops.count()),
            shutdown: shutdown.clone(),
            release: CancellationToken::new(),
        };
        for number in 1..loops.count() {
            if let Err(err) = others.start_one(number, loops.clone(), &stop).await {
                // The loops started drain and commit before the error stops the service.
                stop.cancel();
                others.finished().await;
                others.release.cancel();
                return Err(err);
            }
        }
        Ok(others)
    }

    async fn start_one(
        &mut self,
        number: usize,
        loops: Arc<Loops>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let (started, start) = oneshot::channel();
        let (done, finish) = oneshot::channel();
        let (shutdown, release) = (shutdown.clone(), self.release.clone());
        std::thread::Builder::new()
            .name(format!("event-loop-{number}"))
            .spawn(move || run_loop(number, loops, started, done, shutdown, release))
            .context("cannot start an event loop thread")?;
        start.await.context("an event loop stopped while starting")??;
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
