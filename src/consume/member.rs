//! A consumer group member's handle on librdkafka, closed off the async runtime.
//!
//! Closing a group consumer revokes its partitions, commits, and leaves the group; with the
//! broker unreachable that takes as long as librdkafka's timeouts (minutes). Done inside an
//! async task, it would hold a runtime thread all that time, and when the task is dropped
//! (the runtime shutting down, a test that failed) the drop itself would block. So the
//! close always runs on a thread of its own: awaited for a bounded time after a drain,
//! left to finish in the background when the member is simply dropped.

use std::ops::Deref;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};

/// How long a drained member waits for librdkafka to leave the group before stopping anyway.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// A consumer context that must know when its consumer is closing: a synchronous commit in
/// the revocation that closing triggers can wait forever, so that one is asynchronous.
pub trait Closing: ConsumerContext + 'static {
    fn set_closing(&self);
}

pub struct Member<C: Closing> {
    consumer: Option<StreamConsumer<C>>,
}

impl<C: Closing> Member<C> {
    pub fn new(consumer: StreamConsumer<C>) -> Self {
        Member {
            consumer: Some(consumer),
        }
    }

    /// Closes the consumer (revocation commit, leave the group) and waits for it up to
    /// `within`. Returns whether it finished in time; if not, it goes on in the background.
    pub async fn close(mut self, within: Duration) -> bool {
        let Some(done) = self.close_in_background() else {
            return true;
        };
        tokio::time::timeout(within, done).await.is_ok()
    }

    fn close_in_background(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let consumer = self.consumer.take()?;
        consumer.context().set_closing();
        let (done, closed) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("kafka-close".into())
            .spawn(move || {
                drop(consumer);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => Some(closed),
            // No thread to be had: the consumer was dropped, and closed, right here.
            Err(_) => None,
        }
    }
}

impl<C: Closing> Deref for Member<C> {
    type Target = StreamConsumer<C>;

    fn deref(&self) -> &StreamConsumer<C> {
        self.consumer
            .as_ref()
            .expect("the consumer is only taken when the member goes")
    }
}

impl<C: Closing> Drop for Member<C> {
    fn drop(&mut self) {
        let _ = self.close_in_background();
    }
}
