//! What an event loop's consumers read to pace themselves: how many of the loop's requests
//! wait for their destination (they hold no processing slot), and how many bytes of rendered
//! requests the loop's records hold (they count against the memory budget).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::deliver::Sender;

/// An event loop's backpressure, handed to its consumers.
#[derive(Clone)]
pub struct Backpressure {
    pub(super) sender: Arc<Sender>,
    pub(super) rendered: RenderedBytes,
}

impl Backpressure {
    /// Requests waiting for their destination's permit or rate (they hold no slot).
    pub fn waiting(&self) -> usize {
        self.sender.waiting()
    }

    /// Changes when more requests wait for their destination (see `Limits::watch_waiting`).
    pub fn watch_waiting(&self) -> tokio::sync::watch::Receiver<usize> {
        self.sender.watch_waiting()
    }

    /// Bytes of rendered requests held by records in progress.
    pub fn rendered_bytes(&self) -> usize {
        self.rendered.get()
    }

    /// Lets the requests in flight finish and starts no new ones (end of a drain).
    pub fn stop_sending(&self) {
        self.sender.close();
    }
}

/// A count of rendered request bytes alive in an event loop.
#[derive(Debug, Default, Clone)]
pub struct RenderedBytes(Arc<AtomicUsize>);

impl RenderedBytes {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts `bytes` until the guard drops (settled, abandoned or panicked).
    pub(super) fn hold(&self, bytes: usize) -> RenderedGuard {
        self.0.fetch_add(bytes, Ordering::Relaxed);
        RenderedGuard {
            count: self.clone(),
            bytes,
        }
    }
}

pub(super) struct RenderedGuard {
    count: RenderedBytes,
    bytes: usize,
}

impl Drop for RenderedGuard {
    fn drop(&mut self) {
        self.count.0.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}
