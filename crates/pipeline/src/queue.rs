//! A consumer's inbox: bounded, never blocks the producer, and says what it did when full.
//!
//! tokio's mpsc cannot drop its oldest item from the sending side, so this is a small
//! `Mutex<VecDeque>` plus a `Notify`: the lock is held only to push or to swap the contents out,
//! never across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What happens to a consumer whose inbox is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OverflowPolicy {
    /// Drop the oldest queued item to make room, and count it (right for live analysis: the
    /// newest audio matters most).
    #[default]
    DropOldest,
    /// Stop feeding the consumer, and say so with an event (right for a consumer that must see
    /// every frame or none).
    Detach,
    /// Make the producer wait for room: lossless, at the price of coupling the socket to this
    /// consumer (right for recorders, whose whole point is to lose nothing; a stuck disk then
    /// slows the socket, which TCP passes back to the platform).
    Wait,
}

/// What [`Inbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued after dropping the oldest item.
    DroppedOldest,
    /// The queue was full and the policy is [`OverflowPolicy::Detach`]: the consumer is now
    /// detached and gets nothing more.
    Detached,
    /// The consumer was detached or closed before: nothing was queued.
    Closed,
}

/// Counters of one inbox, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct InboxStats {
    /// Items accepted into the queue.
    pub queued: AtomicU64,
    /// Items dropped to make room.
    pub dropped: AtomicU64,
    /// The most items ever waiting at once.
    pub high_water: AtomicU64,
}

struct Shared<T> {
    items: Mutex<VecDeque<T>>,
    ready: Notify,
    /// Signalled when the consumer takes items out (for [`OverflowPolicy::Wait`]).
    room: Notify,
    closed: AtomicBool,
    capacity: usize,
    policy: OverflowPolicy,
    stats: Arc<InboxStats>,
}

/// The producer's side.
pub struct Inbox<T> {
    shared: Arc<Shared<T>>,
}

/// The consumer's side.
pub struct Outbox<T> {
    shared: Arc<Shared<T>>,
}

/// A bounded inbox of `capacity` items (at least 1) with `policy` for when it is full.
pub fn inbox<T>(capacity: usize, policy: OverflowPolicy) -> (Inbox<T>, Outbox<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        items: Mutex::new(VecDeque::with_capacity(capacity)),
        ready: Notify::new(),
        room: Notify::new(),
        closed: AtomicBool::new(false),
        capacity,
        policy,
        stats: Arc::new(InboxStats::default()),
    });
    (
        Inbox {
            shared: Arc::clone(&shared),
        },
        Outbox { shared },
    )
}

impl<T> Inbox<T> {
    /// Queues `item`, waiting for room only under [`OverflowPolicy::Wait`].
    pub async fn push_or_wait(&self, mut item: T) -> Pushed {
        if self.shared.policy != OverflowPolicy::Wait {
            return self.push(item);
        }
        loop {
            let room = self.shared.room.notified();
            match self.try_push(item) {
                Ok(pushed) => return pushed,
                Err(back) => item = back,
            }
            room.await;
        }
    }

    /// Queues `item` if there is room (or the closed outcome); gives it back when full.
    fn try_push(&self, item: T) -> Result<Pushed, T> {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Ok(Pushed::Closed);
        }
        let depth = {
            let mut items = shared.items.lock().unwrap_or_else(|p| p.into_inner());
            if items.len() >= shared.capacity {
                return Err(item);
            }
            items.push_back(item);
            items.len() as u64
        };
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        shared.stats.high_water.fetch_max(depth, Ordering::Relaxed);
        shared.ready.notify_one();
        Ok(Pushed::Queued)
    }

    /// Queues `item` without ever waiting. Under [`OverflowPolicy::Wait`] a full inbox drops the
    /// oldest like [`OverflowPolicy::DropOldest`]: use [`Inbox::push_or_wait`] there.
    pub fn push(&self, item: T) -> Pushed {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        let outcome;
        let depth;
        {
            let mut items = shared.items.lock().unwrap_or_else(|p| p.into_inner());
            if items.len() >= shared.capacity {
                match shared.policy {
                    OverflowPolicy::DropOldest | OverflowPolicy::Wait => {
                        items.pop_front();
                        shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        outcome = Pushed::DroppedOldest;
                    }
                    OverflowPolicy::Detach => {
                        items.clear();
                        drop(items);
                        shared.closed.store(true, Ordering::Release);
                        shared.ready.notify_one();
                        return Pushed::Detached;
                    }
                }
            } else {
                outcome = Pushed::Queued;
            }
            items.push_back(item);
            depth = items.len() as u64;
        }
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        shared.stats.high_water.fetch_max(depth, Ordering::Relaxed);
        shared.ready.notify_one();
        outcome
    }

    /// No more items: the consumer drains what is queued, then sees the end.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.ready.notify_one();
    }

    /// The inbox's counters.
    pub fn stats(&self) -> Arc<InboxStats> {
        Arc::clone(&self.shared.stats)
    }
}

impl<T> Drop for Inbox<T> {
    fn drop(&mut self) {
        self.close();
    }
}

impl<T> Outbox<T> {
    /// Waits for items and moves all that are queued into `into` (which it clears first).
    /// Returns false once the inbox is closed and empty.
    pub async fn recv_all(&mut self, into: &mut Vec<T>) -> bool {
        into.clear();
        loop {
            let notified = self.shared.ready.notified();
            {
                let mut items = self.shared.items.lock().unwrap_or_else(|p| p.into_inner());
                if !items.is_empty() {
                    into.extend(items.drain(..));
                    drop(items);
                    self.shared.room.notify_waiters();
                    return true;
                }
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drop_oldest_keeps_the_newest_and_counts() {
        let (tx, mut rx) = inbox(3, OverflowPolicy::DropOldest);
        for i in 0..5 {
            tx.push(i);
        }
        let mut got = Vec::new();
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, [2, 3, 4]);
        let stats = tx.stats();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.high_water.load(Ordering::Relaxed), 3);
        drop(tx);
        assert!(!rx.recv_all(&mut got).await);
    }

    #[tokio::test]
    async fn wait_loses_nothing_the_producer_waits_instead() {
        let (tx, mut rx) = inbox(2, OverflowPolicy::Wait);
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut all = Vec::new();
            while rx.recv_all(&mut got).await {
                all.append(&mut got);
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            all
        });
        for i in 0..50 {
            assert_eq!(tx.push_or_wait(i).await, Pushed::Queued);
        }
        let stats = tx.stats();
        drop(tx);
        assert_eq!(consumer.await.unwrap(), (0..50).collect::<Vec<_>>());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        assert!(stats.high_water.load(Ordering::Relaxed) <= 2);
    }

    #[tokio::test]
    async fn detach_stops_feeding_at_once() {
        let (tx, mut rx) = inbox(2, OverflowPolicy::Detach);
        assert_eq!(tx.push(1), Pushed::Queued);
        assert_eq!(tx.push(2), Pushed::Queued);
        assert_eq!(tx.push(3), Pushed::Detached);
        assert_eq!(tx.push(4), Pushed::Closed);
        let mut got = Vec::new();
        assert!(!rx.recv_all(&mut got).await);
    }

    #[tokio::test]
    async fn a_waiting_consumer_wakes_for_a_push() {
        let (tx, mut rx) = inbox(4, OverflowPolicy::DropOldest);
        let consumer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut all = Vec::new();
            while rx.recv_all(&mut got).await {
                all.append(&mut got);
            }
            all
        });
        for i in 0..3 {
            tokio::task::yield_now().await;
            tx.push(i);
        }
        drop(tx);
        assert_eq!(consumer.await.unwrap(), [0, 1, 2]);
    }
}
