//! Graceful drain. On SIGTERM/SIGINT the node stops being ready, refuses new
//! upgrades, tells every client to reconnect elsewhere and waits, bounded by
//! the drain timeout, for the connections to close.
//!
//! axum's graceful shutdown does not track upgraded WebSockets, so the node
//! counts them itself: each session holds a [`ConnectionGuard`], and the last
//! one dropped wakes [`Drain::wait_idle`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};

/// Drain state and the count of open connections.
pub struct Drain {
    draining: watch::Sender<bool>,
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    pub fn new() -> Self {
        Self {
            draining: watch::channel(false).0,
            active: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
        }
    }

    /// Starts draining (idempotent).
    pub fn start(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// A receiver that sessions watch for the start of the drain.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.draining.subscribe()
    }

    /// Open connections.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Reserves a connection slot if fewer than `max` are in use.
    pub fn try_track(&self, max: usize) -> Option<ConnectionGuard> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionGuard {
                active: self.active.clone(),
                idle: self.idle.clone(),
            })
    }

    /// Waits until no connection is open.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One open connection; dropping it releases the slot.
pub struct ConnectionGuard {
    active: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slots_are_bounded_and_released() {
        let d = Drain::new();
        let a = d.try_track(2).unwrap();
        let b = d.try_track(2).unwrap();
        assert!(d.try_track(2).is_none());
        drop(a);
        let waiter = tokio::spawn(async move {
            d.wait_idle().await;
            d.active()
        });
        drop(b);
        assert_eq!(
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .unwrap()
                .unwrap(),
            0
        );
    }
}
