//! Group writes: concurrent callers' small writes of one kind (turns claiming their activities
//! and marking them done, turns reading their senders) go to the database together, one
//! statement for all of them, instead of one statement and one commit each.
//!
//! A caller that waits for its answer ([`Coalescer::submit`]) is never held back by a timer: the
//! first caller to find no write in flight writes at once, taking along whatever is already
//! queued; callers that arrive while a write is in flight queue, and the next write takes them
//! all. A single caller pays nothing but a lock; at 32 turns at once, most share a write with
//! several others (on SQLite the one writer connection is the queue anyway; on Postgres a commit
//! is an fsync).
//!
//! A write nobody waits for ([`Coalescer::defer`]: a turn's done mark, after its answer) starts
//! no write of its own: it rides with the next write a caller starts, or is written
//! [`DEFER_WINDOW`] after it was queued when no caller came, and by [`Coalescer::flush`] at
//! shutdown. Under load it costs no statement and no commit of its own.
//!
//! When a batch fails, each of its items is written again on its own, so one bad item cannot
//! fail the others and every caller gets its own error.

use crate::store::{StoreError, StoreResult};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// At most this many items per write (the store splits further as its statements need).
const MAX_BATCH: usize = 64;

/// How long a deferred item waits for a write to ride with before it is written on its own.
/// Short enough that a crash rarely falls between a turn's answer and its done mark; long enough
/// to span the gap between one turn and the next at one message a millisecond.
pub const DEFER_WINDOW: Duration = Duration::from_millis(5);

type Write<I, O> =
    dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Vec<StoreResult<O>>> + Send>> + Send + Sync;

/// Who hears an item's result: the caller waiting for it, or nobody (a deferred item, whose
/// failure is logged under the coalescer's name).
type Answer<O> = Option<oneshot::Sender<StoreResult<O>>>;

struct Queue<I, O> {
    waiting: Vec<(I, Answer<O>)>,
    /// A write is in flight (by a caller or by a drain task): new items queue for the next.
    writing: bool,
    /// A timer will write the deferred items if no caller's write has taken them by then.
    flush_due: bool,
}

impl<I, O> Queue<I, O> {
    /// Someone waits for an item in the queue (deferred items alone do not start a write).
    fn anyone_waiting(&self) -> bool {
        self.waiting.iter().any(|(_, answer)| answer.is_some())
    }

    /// Deferred items wait with no write in flight and no timer set for them: the caller must
    /// set one (this marks it set).
    fn needs_flush_timer(&mut self) -> bool {
        !self.writing && !self.waiting.is_empty() && !std::mem::replace(&mut self.flush_due, true)
    }
}

/// Coalesces concurrent writes of one kind. `write` gets a batch and answers one result per item,
/// in order.
pub struct Coalescer<I, O> {
    /// What the items are, for the log line of a deferred item that failed.
    name: &'static str,
    queue: Mutex<Queue<I, O>>,
    write: Box<Write<I, O>>,
}

impl<I: Clone + Send + 'static, O: Send + 'static> Coalescer<I, O> {
    pub fn new<F, Fut>(name: &'static str, write: F) -> Arc<Self>
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<StoreResult<O>>> + Send + 'static,
    {
        Arc::new(Coalescer {
            name,
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                writing: false,
                flush_due: false,
            }),
            write: Box::new(move |items| Box::pin(write(items))),
        })
    }

    /// Writes `item`, together with whatever other callers have queued, and answers its result.
    pub async fn submit(self: &Arc<Self>, item: I) -> StoreResult<O> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            queue.waiting.push((item, Some(tx)));
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            // This caller writes the first batch itself (its own item is in it); if more queued
            // meanwhile, a task writes on until the queue is empty. The guard hands the queue
            // to such a task even if this future is dropped mid-write.
            Lead(self.clone()).write().await;
        }
        rx.await.unwrap_or_else(|_| {
            // The write carrying this item was dropped before it answered (its caller went
            // away mid-write): the item may or may not have been written. Unavailable, so a
            // turn answers 503 and Teams delivers the activity again.
            Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed))
        })
    }

    /// Takes up to [`MAX_BATCH`] queued items, writes them, and answers their callers.
    async fn write_batch(self: &Arc<Self>) {
        let batch: Vec<_> = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let (items, answers): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
        // Nobody would write the deferred items again were this write dropped half-way (its
        // caller cancelled): they go back to the queue then, to be written (again: a deferred
        // write must be one that can be repeated).
        let mut requeue = Requeue {
            coalescer: self,
            items: items
                .iter()
                .zip(&answers)
                .filter(|(_, answer)| answer.is_none())
                .map(|(item, _)| item.clone())
                .collect(),
        };
        let results = (self.write)(items).await;
        requeue.items.clear();
        for (answer, result) in answers.into_iter().zip(results) {
            match (answer, result) {
                // A caller that went away no longer needs its answer.
                (Some(answer), result) => drop(answer.send(result)),
                (None, Ok(_)) => {}
                (None, Err(error)) => {
                    tracing::warn!(%error, what = self.name, "a deferred write failed")
                }
            }
        }
    }

    /// Queues `item` without waiting for it: it is written with the next write a caller starts,
    /// or within [`DEFER_WINDOW`], or by [`flush`](Self::flush). A failure is logged. The write
    /// must be one that can be repeated (a write dropped half-way is queued again).
    pub fn defer(self: &Arc<Self>, item: I) {
        let timer = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            queue.waiting.push((item, None));
            queue.needs_flush_timer()
        };
        if timer {
            self.flush_later();
        }
    }

    /// Writes the deferred items [`DEFER_WINDOW`] from now, unless a write has taken them by then.
    fn flush_later(self: &Arc<Self>) {
        // Outside a runtime (a write dropped as the process ends) there is nothing to run it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let me = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(DEFER_WINDOW).await;
            me.queue.lock().expect("coalescer queue").flush_due = false;
            me.write_if_idle().await;
        });
    }

    /// Leads a write of whatever is queued, unless one is in flight (its end hands the queue on).
    async fn write_if_idle(self: &Arc<Self>) {
        let lead = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            !queue.waiting.is_empty() && !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            Lead(self.clone()).write().await;
        }
    }

    /// Writes everything queued, deferred items included, and returns once the queue is empty
    /// and no write is in flight (at shutdown: nothing deferred is left behind).
    pub async fn flush(self: &Arc<Self>) {
        loop {
            self.write_if_idle().await;
            let done = {
                let queue = self.queue.lock().expect("coalescer queue");
                queue.waiting.is_empty() && !queue.writing
            };
            if done {
                return;
            }
            // Another task's write is in flight; its end writes on what is queued.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// After a write: the queue is handed on (a task writes what callers queued meanwhile) or
    /// closed; deferred items left alone get their timer.
    fn hand_on(self: &Arc<Self>) {
        let (more, timer) = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            if !queue.anyone_waiting() {
                queue.writing = false;
            }
            (queue.writing, queue.needs_flush_timer())
        };
        if timer {
            self.flush_later();
        }
        if more {
            // The guard hands the queue on even if the write panics, so it is never left
            // marked as writing with nobody writing.
            tokio::spawn(Lead(self.clone()).write());
        }
    }
}

/// The deferred items of a write in flight, queued again if the write is dropped before it ends.
struct Requeue<'c, I: Clone + Send + 'static, O: Send + 'static> {
    coalescer: &'c Arc<Coalescer<I, O>>,
    items: Vec<I>,
}

impl<I: Clone + Send + 'static, O: Send + 'static> Drop for Requeue<'_, I, O> {
    fn drop(&mut self) {
        if self.items.is_empty() {
            return;
        }
        // First in the queue, where they were. Whichever of this and the write's guard is
        // dropped second sets their timer (the guard's `hand_on`, or this when it ran first).
        let timer = {
            let mut queue = self.coalescer.queue.lock().expect("coalescer queue");
            let items = std::mem::take(&mut self.items);
            queue
                .waiting
                .splice(0..0, items.into_iter().map(|item| (item, None)));
            queue.needs_flush_timer()
        };
        if timer {
            self.coalescer.flush_later();
        }
    }
}

/// Held by the caller writing a batch; hands the queue on when that write ends or is dropped.
struct Lead<I: Clone + Send + 'static, O: Send + 'static>(Arc<Coalescer<I, O>>);

impl<I: Clone + Send + 'static, O: Send + 'static> Lead<I, O> {
    /// Writes one batch; the guard, dropped at the end (or on a drop or panic half-way), hands
    /// the queue on.
    async fn write(self) {
        self.0.write_batch().await;
    }
}

impl<I: Clone + Send + 'static, O: Send + 'static> Drop for Lead<I, O> {
    fn drop(&mut self) {
        self.0.hand_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A write that records its batch sizes and answers each item doubled (odd items fail),
    /// after yielding so that other callers can queue meanwhile.
    fn doubling(batches: Arc<Mutex<Vec<usize>>>) -> Arc<Coalescer<u32, u32>> {
        Coalescer::new("numbers", move |items: Vec<u32>| {
            let batches = batches.clone();
            async move {
                batches.lock().unwrap().push(items.len());
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                items
                    .into_iter()
                    .map(|i| {
                        if i % 2 == 1 {
                            Err(StoreError::Invalid(format!("odd {i}")))
                        } else {
                            Ok(i * 2)
                        }
                    })
                    .collect()
            }
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_writes_and_each_gets_its_own_answer() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let coalescer = doubling(batches.clone());
        let callers: Vec<_> = (0..200u32)
            .map(|i| {
                let c = coalescer.clone();
                tokio::spawn(async move { (i, c.submit(i).await) })
            })
            .collect();
        for caller in callers {
            let (i, answer) = caller.await.unwrap();
            match answer {
                Ok(v) => assert_eq!(v, i * 2),
                Err(e) => {
                    assert_eq!(i % 2, 1);
                    assert_eq!(e.to_string(), format!("invalid data: odd {i}"));
                }
            }
        }
        let batches = batches.lock().unwrap();
        assert_eq!(
            batches.iter().sum::<usize>(),
            200,
            "every item written once"
        );
        assert!(
            batches.len() < 200,
            "callers arriving during a write share the next one: {batches:?}"
        );
        assert!(batches.iter().all(|&n| n <= MAX_BATCH));
    }

    #[tokio::test]
    async fn a_lone_caller_writes_at_once() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let coalescer = doubling(batches.clone());
        assert_eq!(coalescer.submit(4).await.unwrap(), 8);
        assert_eq!(coalescer.submit(6).await.unwrap(), 12);
        assert_eq!(*batches.lock().unwrap(), vec![1, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_dropped_mid_write_does_not_wedge_the_queue() {
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let coalescer: Arc<Coalescer<u32, u32>> =
            Coalescer::new("numbers", move |items: Vec<u32>| {
                let first = s.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        // The first write hangs until its caller is dropped.
                        std::future::pending::<()>().await;
                    }
                    items.into_iter().map(Ok).collect()
                }
            });
        let leader = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.submit(1).await })
        };
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // Queued behind the hanging write.
        let follower = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.submit(2).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), follower)
            .await
            .expect("the queued caller is written by the handed-on queue")
            .unwrap();
        assert_eq!(answer.unwrap(), 2);
        assert_eq!(coalescer.submit(3).await.unwrap(), 3, "later callers too");
    }

    /// A write that records each batch's items, answering each item unchanged.
    fn recording(batches: Arc<Mutex<Vec<Vec<u32>>>>) -> Arc<Coalescer<u32, u32>> {
        Coalescer::new("numbers", move |items: Vec<u32>| {
            batches.lock().unwrap().push(items.clone());
            async move { items.into_iter().map(Ok).collect() }
        })
    }

    #[tokio::test]
    async fn a_deferred_item_rides_with_the_next_callers_write() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let coalescer = recording(batches.clone());
        coalescer.defer(1);
        coalescer.defer(2);
        assert!(
            batches.lock().unwrap().is_empty(),
            "deferring starts no write"
        );
        assert_eq!(coalescer.submit(3).await.unwrap(), 3);
        assert_eq!(
            *batches.lock().unwrap(),
            vec![vec![1, 2, 3]],
            "one write, in order"
        );
        // The window passes: its timer finds nothing left to write.
        tokio::time::sleep(DEFER_WINDOW * 2).await;
        assert_eq!(batches.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_deferred_item_with_no_write_to_ride_is_written_once_the_window_passes() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let coalescer = recording(batches.clone());
        let started = std::time::Instant::now();
        // On this one-thread runtime the timer cannot fire before the test awaits.
        coalescer.defer(7);
        coalescer.defer(8);
        assert!(
            batches.lock().unwrap().is_empty(),
            "still waiting for a ride"
        );
        while batches.lock().unwrap().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(5), "never written");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(started.elapsed() >= DEFER_WINDOW, "not before the window");
        assert_eq!(
            *batches.lock().unwrap(),
            vec![vec![7, 8]],
            "one timer for the window, not one per item"
        );
    }

    #[tokio::test]
    async fn flush_writes_what_is_deferred_at_once() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let coalescer = recording(batches.clone());
        coalescer.defer(4);
        coalescer.flush().await;
        assert_eq!(*batches.lock().unwrap(), vec![vec![4]]);
        coalescer.flush().await;
        assert_eq!(batches.lock().unwrap().len(), 1, "nothing left to write");
    }

    #[tokio::test]
    async fn a_failed_deferred_item_fails_no_caller_riding_with_it() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let coalescer = doubling(batches.clone());
        coalescer.defer(1); // odd: fails
        assert_eq!(coalescer.submit(2).await.unwrap(), 4);
        assert_eq!(*batches.lock().unwrap(), vec![2], "written together");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_items_of_a_write_dropped_half_way_are_written_later() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let b = batches.clone();
        let coalescer: Arc<Coalescer<u32, u32>> =
            Coalescer::new("numbers", move |items: Vec<u32>| {
                b.lock().unwrap().push(items.clone());
                async move {
                    if items.contains(&1) {
                        // The leader's write hangs until its caller is dropped.
                        std::future::pending::<()>().await;
                    }
                    items.into_iter().map(Ok).collect()
                }
            });
        coalescer.defer(5);
        let leader = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.submit(1).await })
        };
        while batches.lock().unwrap().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            batches.lock().unwrap()[0],
            vec![5, 1],
            "5 rides with the leader"
        );
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let started = std::time::Instant::now();
        while !batches
            .lock()
            .unwrap()
            .iter()
            .skip(1)
            .any(|b| b.contains(&5))
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the deferred item of the dropped write was never written again: {:?}",
                batches.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_that_panics_in_the_drain_does_not_wedge_the_queue() {
        let release = Arc::new(tokio::sync::Notify::new());
        let r = release.clone();
        let coalescer: Arc<Coalescer<u32, u32>> =
            Coalescer::new("numbers", move |items: Vec<u32>| {
                let r = r.clone();
                async move {
                    if items.contains(&1) {
                        r.notified().await;
                    }
                    assert!(!items.contains(&99), "a bug in the write");
                    items.into_iter().map(Ok).collect()
                }
            });
        let leader = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.submit(1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Queued behind the leader's write: the drain task writes it, and panics.
        let doomed = {
            let c = coalescer.clone();
            tokio::spawn(async move { c.submit(99).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        release.notify_one();
        assert_eq!(leader.await.unwrap().unwrap(), 1);
        assert!(doomed.await.unwrap().is_err(), "its caller hears of it");
        let later = tokio::time::timeout(Duration::from_secs(5), coalescer.submit(3)).await;
        assert_eq!(later.expect("the queue is not wedged").unwrap(), 3);
    }
}
