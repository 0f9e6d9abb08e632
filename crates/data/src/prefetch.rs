//! Running a batch stream on a background thread so decoding and augmentation overlap training.

use std::sync::mpsc::{Receiver, sync_channel};
use std::thread::JoinHandle;

/// An iterator whose items are produced ahead of time on a background thread.
///
/// Up to `depth` items wait in a bounded channel (plus one being built), so memory stays
/// bounded. Dropping the `Prefetch` stops the producer at its next item. Items arrive in the
/// order the inner iterator yields them. A panic in the producer is re-raised in the consumer
/// (never mistaken for the end of the stream).
pub struct Prefetch<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Thread {
        rx: Option<Receiver<T>>,
        handle: Option<JoinHandle<()>>,
    },
    /// The OS refused a thread: produce on the caller's thread instead (slower, same items).
    Inline(Box<dyn Iterator<Item = T> + Send>),
}

impl<T> std::fmt::Debug for Prefetch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.inner {
            Inner::Thread { .. } => "background thread",
            Inner::Inline(_) => "inline",
        };
        f.debug_struct("Prefetch").field("mode", &mode).finish()
    }
}

impl<T: Send + 'static> Prefetch<T> {
    /// Starts producing the items of `iter` on a new thread, keeping at most `depth` ready
    /// (a `depth` of 0 is treated as 1).
    pub fn new<I>(iter: I, depth: usize) -> Self
    where
        I: Iterator<Item = T> + Send + 'static,
    {
        let (tx, rx) = sync_channel(depth.max(1));
        // The iterator moves into the thread only if the spawn succeeds; keep it reachable
        // otherwise through a shared slot.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(iter)));
        let theirs = std::sync::Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("sparsedp-prefetch".into())
            .spawn(move || {
                let taken = theirs.lock().ok().and_then(|mut g| g.take());
                if let Some(iter) = taken {
                    for item in iter {
                        if tx.send(item).is_err() {
                            return; // the consumer is gone
                        }
                    }
                }
            });
        match spawned {
            Ok(handle) => Self {
                inner: Inner::Thread {
                    rx: Some(rx),
                    handle: Some(handle),
                },
            },
            Err(_) => {
                let iter = slot.lock().ok().and_then(|mut g| g.take());
                match iter {
                    Some(iter) => Self {
                        inner: Inner::Inline(Box::new(iter)),
                    },
                    None => Self {
                        inner: Inner::Inline(Box::new(std::iter::empty())),
                    },
                }
            }
        }
    }
}

impl<T> Iterator for Prefetch<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match &mut self.inner {
            Inner::Thread { rx, handle } => match rx.as_ref()?.recv() {
                Ok(item) => Some(item),
                Err(_) => {
                    // The producer is done. If it panicked, re-raise the panic here rather than
                    // ending the stream early as if the data had run out.
                    rx.take();
                    if let Some(Err(payload)) = handle.take().map(JoinHandle::join) {
                        std::panic::resume_unwind(payload);
                    }
                    None
                }
            },
            Inner::Inline(iter) => iter.next(),
        }
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        if let Inner::Thread { rx, handle } = &mut self.inner {
            // Closing the channel makes the producer's next send fail, so it exits promptly.
            drop(rx.take());
            if let Some(h) = handle.take() {
                let _ = h.join();
            }
        }
    }
}
