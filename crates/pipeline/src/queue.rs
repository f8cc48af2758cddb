//! A consumer's inbox: bounded in items and in bytes, never blocks the producer unless asked
//! to, and says what it did when full.
//!
//! tokio's mpsc cannot drop its oldest item from the sending side, so this is a small
//! `Mutex<VecDeque>` plus a `Notify`: the lock is held only to push or to swap the contents out,
//! never across an `.await`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// slows the socket, which TCP passes back to the platform). Only what is pushed with
    /// [`Inbox::push_or_wait`] (audio) is owed; what is pushed with [`Inbox::push`] (events,
    /// which come from places that cannot wait) may be dropped, but never evicts what is owed.
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
    /// The queue was full of what is owed under [`OverflowPolicy::Wait`]: this item (pushed
    /// without waiting) was dropped instead, and counted in [`InboxStats::events_dropped`].
    DroppedNew,
}

/// Counters of one inbox, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct InboxStats {
    /// Items accepted into the queue.
    pub queued: AtomicU64,
    /// Items dropped to make room.
    pub dropped: AtomicU64,
    /// Under [`OverflowPolicy::Wait`]: items pushed without waiting (events) that were dropped,
    /// the oldest queued one or the incoming one, so that what is owed (audio) never is.
    pub events_dropped: AtomicU64,
    /// The most items ever waiting at once.
    pub high_water: AtomicU64,
}

/// A queued item, and whether it is owed: pushed with [`Inbox::push_or_wait`] under
/// [`OverflowPolicy::Wait`], so never dropped to make room.
struct Slot<T> {
    item: T,
    owed: bool,
}

/// The queued items and the bytes they hold.
struct Queue<T> {
    items: VecDeque<Slot<T>>,
    bytes: usize,
    /// The consumer is letting items gather ([`Outbox::recv_gathered`]): a push wakes it only
    /// when the queue reaches half full (its timer wakes it otherwise), not for every item.
    gathering: bool,
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    ready: Notify,
    /// Signalled when the consumer takes items out (for [`OverflowPolicy::Wait`]).
    room: Notify,
    closed: AtomicBool,
    capacity: usize,
    max_bytes: usize,
    /// What one item holds, for the byte budget.
    cost: fn(&T) -> usize,
    policy: OverflowPolicy,
    stats: Arc<InboxStats>,
}

impl<T> Shared<T> {
    /// Whether `queue` has no room for an item of `cost` bytes. An item larger than the whole
    /// byte budget still fits an empty queue, so it waits for the queue to drain, not forever.
    fn full(&self, queue: &Queue<T>, cost: usize) -> bool {
        self.full_by(queue, cost, 1)
    }

    /// [`Shared::full`] with the bounds multiplied by `headroom`.
    fn full_by(&self, queue: &Queue<T>, cost: usize, headroom: usize) -> bool {
        queue.items.len() >= self.capacity.saturating_mul(headroom)
            || (!queue.items.is_empty()
                && queue.bytes.saturating_add(cost) > self.max_bytes.saturating_mul(headroom))
    }

    /// Whether a push that left `queue` like this must wake the consumer.
    fn should_wake(&self, queue: &Queue<T>) -> bool {
        !queue.gathering || self.half_full(queue)
    }

    /// Whether `queue` is at least half full, by items or by bytes.
    fn half_full(&self, queue: &Queue<T>) -> bool {
        queue.items.len() >= self.capacity.div_ceil(2) || queue.bytes >= self.max_bytes / 2
    }
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
    byte_bounded_inbox(capacity, usize::MAX, |_| 0, policy)
}

/// An inbox bounded by `capacity` items and by `max_bytes`, where `cost` says how many bytes an
/// item holds: a few huge items cannot hold more memory than many small ones.
pub fn byte_bounded_inbox<T>(
    capacity: usize,
    max_bytes: usize,
    cost: fn(&T) -> usize,
    policy: OverflowPolicy,
) -> (Inbox<T>, Outbox<T>) {
    let capacity = capacity.max(1);
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::with_capacity(capacity.min(1024)),
            bytes: 0,
            gathering: false,
        }),
        ready: Notify::new(),
        room: Notify::new(),
        closed: AtomicBool::new(false),
        capacity,
        max_bytes: max_bytes.max(1),
        cost,
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
        let cost = (shared.cost)(&item);
        let (depth, wake) = {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            if shared.full(&queue, cost) {
                return Err(item);
            }
            queue.bytes += cost;
            let owed = shared.policy == OverflowPolicy::Wait;
            queue.items.push_back(Slot { item, owed });
            (queue.items.len() as u64, shared.should_wake(&queue))
        };
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        shared.stats.high_water.fetch_max(depth, Ordering::Relaxed);
        if wake {
            shared.ready.notify_one();
        }
        Ok(Pushed::Queued)
    }

    /// Queues `item` without ever waiting (events: they come from places that cannot wait).
    ///
    /// Under [`OverflowPolicy::Wait`] such an item is not owed, and it must never cost the
    /// consumer audio it is owed: it may go past the inbox's bounds, up to twice them (a burst
    /// of events beside a full queue of audio is normal: a transcript and a tone while the disk
    /// is slow); past that, the oldest queued item that is not owed is dropped to make room,
    /// and if there is none, this one is (both counted in [`InboxStats::events_dropped`]). So
    /// the queue stays within twice its bounds and loses no audio. Under
    /// [`OverflowPolicy::DropOldest`] the oldest item goes at once.
    pub fn push(&self, item: T) -> Pushed {
        let shared = &*self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Pushed::Closed;
        }
        let cost = (shared.cost)(&item);
        let mut outcome = Pushed::Queued;
        let (depth, wake);
        {
            let mut queue = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            match shared.policy {
                OverflowPolicy::DropOldest => {
                    while shared.full(&queue, cost) {
                        if let Some(oldest) = queue.items.pop_front() {
                            queue.bytes -= (shared.cost)(&oldest.item);
                        }
                        shared.stats.dropped.fetch_add(1, Ordering::Relaxed);
                        outcome = Pushed::DroppedOldest;
                    }
                }
                OverflowPolicy::Wait => {
                    while shared.full_by(&queue, cost, 2) {
                        shared.stats.events_dropped.fetch_add(1, Ordering::Relaxed);
                        // Only the overflowing case scans (at most twice the capacity).
                        let Some(at) = queue.items.iter().position(|slot| !slot.owed) else {
                            return Pushed::DroppedNew;
                        };
                        if let Some(oldest) = queue.items.remove(at) {
                            queue.bytes -= (shared.cost)(&oldest.item);
                        }
                        outcome = Pushed::DroppedOldest;
                    }
                }
                OverflowPolicy::Detach => {
                    if shared.full(&queue, cost) {
                        queue.items.clear();
                        queue.bytes = 0;
                        drop(queue);
                        shared.closed.store(true, Ordering::Release);
                        shared.ready.notify_one();
                        return Pushed::Detached;
                    }
                }
            }
            queue.bytes += cost;
            queue.items.push_back(Slot { item, owed: false });
            depth = queue.items.len() as u64;
            wake = shared.should_wake(&queue);
        }
        shared.stats.queued.fetch_add(1, Ordering::Relaxed);
        shared.stats.high_water.fetch_max(depth, Ordering::Relaxed);
        if wake {
            shared.ready.notify_one();
        }
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

impl<T> Drop for Outbox<T> {
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
            if self.take_all(into) {
                return true;
            }
            if self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            notified.await;
        }
    }

    /// Like [`Outbox::recv_all`], but once the first item is there, lets more gather for up to
    /// `window` (or until the inbox is half full, or closed) before taking them all: a consumer
    /// that pays per batch (a trip to a blocking thread) pays once per window, not per item.
    /// Items wait in the inbox meanwhile, so its bounds hold.
    pub async fn recv_gathered(&mut self, into: &mut Vec<T>, window: Duration) -> bool {
        if window.is_zero() {
            return self.recv_all(into).await;
        }
        into.clear();
        let mut deadline = None;
        loop {
            let notified = self.shared.ready.notified();
            let (queued, ready) = {
                let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
                let queued = !queue.items.is_empty();
                let ready = self.shared.half_full(&queue);
                queue.gathering = queued && !ready;
                (queued, ready)
            };
            let closed = self.shared.closed.load(Ordering::Acquire);
            if queued && (ready || closed) {
                return self.take_all(into);
            }
            if !queued && closed {
                return false;
            }
            if !queued {
                notified.await;
                continue;
            }
            let until = *deadline.get_or_insert_with(|| tokio::time::Instant::now() + window);
            tokio::select! {
                () = tokio::time::sleep_until(until) => return self.take_all(into),
                () = notified => {}
            }
        }
    }

    /// The consumer stops: what is queued is dropped, and producers (waiting ones too) see
    /// [`Pushed::Closed`] from now on.
    pub fn close(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        queue.items.clear();
        queue.bytes = 0;
        drop(queue);
        self.shared.room.notify_waiters();
    }

    /// Moves everything queued into `into`; false if nothing was.
    fn take_all(&self, into: &mut Vec<T>) -> bool {
        let mut queue = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.items.is_empty() {
            return false;
        }
        into.extend(queue.items.drain(..).map(|slot| slot.item));
        queue.bytes = 0;
        queue.gathering = false;
        drop(queue);
        self.shared.room.notify_waiters();
        true
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
    async fn the_byte_budget_bounds_big_items_and_a_huge_one_still_passes() {
        let (tx, mut rx) =
            byte_bounded_inbox(100, 10, |s: &Vec<u8>| s.len(), OverflowPolicy::DropOldest);
        tx.push(vec![1; 4]);
        tx.push(vec![2; 4]);
        // 12 bytes would break the budget: the oldest goes.
        assert_eq!(tx.push(vec![3; 4]), Pushed::DroppedOldest);
        let mut got = Vec::new();
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, [vec![2; 4], vec![3; 4]]);
        // Larger than the whole budget: it passes alone.
        tx.push(vec![4; 4]);
        assert_eq!(tx.push(vec![5; 50]), Pushed::DroppedOldest);
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, [vec![5; 50]]);
        assert_eq!(tx.stats().dropped.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn gathering_waits_for_the_window_or_half_a_queue() {
        let (tx, mut rx) = inbox(8, OverflowPolicy::Wait);
        let window = Duration::from_millis(200);
        tx.push(1);
        let started = tokio::time::Instant::now();
        let mut got = Vec::new();
        let producer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.push(2);
        };
        let (received, ()) = tokio::join!(rx.recv_gathered(&mut got, window), producer);
        assert!(received);
        assert_eq!(got, [1, 2]);
        assert_eq!(started.elapsed(), window);
        // Half full (4 of 8) ends the wait at once.
        for i in 0..4 {
            tx.push(i);
        }
        let started = tokio::time::Instant::now();
        assert!(rx.recv_gathered(&mut got, window).await);
        assert_eq!(got.len(), 4);
        assert_eq!(started.elapsed(), Duration::ZERO);
        // Reaching half full while gathering ends the wait then, not at the window's end.
        tx.push(1);
        let started = tokio::time::Instant::now();
        let producer = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            for i in 2..5 {
                tx.push(i);
            }
        };
        let (received, ()) = tokio::join!(rx.recv_gathered(&mut got, window), producer);
        assert!(received);
        assert_eq!(got, [1, 2, 3, 4]);
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        // Closing ends it too, and then the end is seen.
        tx.push(9);
        drop(tx);
        assert!(rx.recv_gathered(&mut got, window).await);
        assert_eq!(got, [9]);
        assert!(!rx.recv_gathered(&mut got, window).await);
    }

    #[tokio::test]
    async fn under_wait_an_event_never_evicts_what_is_owed() {
        let (tx, mut rx) = inbox(2, OverflowPolicy::Wait);
        assert_eq!(tx.push_or_wait(1).await, Pushed::Queued);
        assert_eq!(tx.push_or_wait(2).await, Pushed::Queued);
        // Full for waiting pushes; a non-waiting one (an event) still fits, up to twice the bound.
        assert_eq!(tx.push(3), Pushed::Queued);
        assert_eq!(tx.push(4), Pushed::Queued);
        // Past that, the oldest event goes, never the audio.
        assert_eq!(tx.push(5), Pushed::DroppedOldest);
        let mut got = Vec::new();
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got, [1, 2, 4, 5]);
        let stats = tx.stats();
        assert_eq!(stats.events_dropped.load(Ordering::Relaxed), 1);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn under_wait_a_flood_of_events_beside_full_audio_loses_only_events() {
        // 4 items of audio (10 bytes each) fill the inbox; the consumer is stuck.
        let (tx, mut rx) = byte_bounded_inbox(4, 40, |s: &Vec<u8>| s.len(), OverflowPolicy::Wait);
        for i in 0..4 {
            assert_eq!(tx.push_or_wait(vec![i; 10]).await, Pushed::Queued);
        }
        // The next frame waits; it is owed too.
        let frame = std::pin::pin!(tx.push_or_wait(vec![4; 10]));
        let waiting = tokio::time::timeout(Duration::from_secs(1), frame).await;
        assert!(
            waiting.is_err(),
            "a full Wait inbox makes the producer wait"
        );
        // A flood of big events: only events are dropped, the queue stays within twice its
        // bounds (8 items, 80 bytes), and every frame is still there.
        for i in 0..1_000u32 {
            let outcome = tx.push(vec![100 + (i % 100) as u8; 15]);
            assert_ne!(outcome, Pushed::Closed);
        }
        let stats = tx.stats();
        assert!(stats.high_water.load(Ordering::Relaxed) <= 8);
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 0);
        let mut got = Vec::new();
        assert!(rx.recv_all(&mut got).await);
        let frames: Vec<u8> = got.iter().filter(|v| v.len() == 10).map(|v| v[0]).collect();
        assert_eq!(frames, [0, 1, 2, 3]);
        let events = got.len() - frames.len();
        assert!(got.iter().map(Vec::len).sum::<usize>() <= 80);
        // The newest events are kept: the oldest ones went first.
        assert_eq!(got.last().map(|v| v[0]), Some(100 + 99));
        assert_eq!(
            stats.events_dropped.load(Ordering::Relaxed),
            1_000 - events as u64
        );
        // An event that cannot fit beside audio alone is dropped itself.
        for i in 0..4 {
            assert_eq!(tx.push_or_wait(vec![i; 10]).await, Pushed::Queued);
        }
        assert_eq!(tx.push(vec![9; 100]), Pushed::DroppedNew);
        assert!(rx.recv_all(&mut got).await);
        assert_eq!(got.len(), 4);
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
