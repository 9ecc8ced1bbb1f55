//! Group writes: concurrent callers' small writes of one kind (turns claiming their activities
//! and marking them done, turns reading their senders) go to the database together, one
//! statement for all of them, instead of one statement and one commit each.
//!
//! There is no timer and no background task waiting for a batch to fill: the first caller to
//! find no write in flight writes at once, taking along whatever is already queued; callers that
//! arrive while a write is in flight queue, and the next write takes them all. A single caller
//! pays nothing but a lock; at 32 turns at once, most share a write with several others (on
//! SQLite the one writer connection is the queue anyway; on Postgres a commit is an fsync).
//!
//! When a batch fails, each of its items is written again on its own, so one bad item cannot
//! fail the others and every caller gets its own error.

use crate::store::{StoreError, StoreResult};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// At most this many items per write (the store splits further as its statements need).
const MAX_BATCH: usize = 64;

type Write<I, O> =
    dyn Fn(Vec<I>) -> Pin<Box<dyn Future<Output = Vec<StoreResult<O>>> + Send>> + Send + Sync;

struct Queue<I, O> {
    waiting: Vec<(I, oneshot::Sender<StoreResult<O>>)>,
    /// A write is in flight (by a caller or by a drain task): new items queue for the next.
    writing: bool,
}

/// Coalesces concurrent writes of one kind. `write` gets a batch and answers one result per item,
/// in order.
pub struct Coalescer<I, O> {
    queue: Mutex<Queue<I, O>>,
    write: Box<Write<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    pub fn new<F, Fut>(write: F) -> Arc<Self>
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<StoreResult<O>>> + Send + 'static,
    {
        Arc::new(Coalescer {
            queue: Mutex::new(Queue {
                waiting: Vec::new(),
                writing: false,
            }),
            write: Box::new(move |items| Box::pin(write(items))),
        })
    }

    /// Writes `item`, together with whatever other callers have queued, and answers its result.
    pub async fn submit(self: &Arc<Self>, item: I) -> StoreResult<O> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            queue.waiting.push((item, tx));
            !std::mem::replace(&mut queue.writing, true)
        };
        if lead {
            // This caller writes the first batch itself (its own item is in it); if more queued
            // meanwhile, a task writes on until the queue is empty. The guard hands the queue
            // to such a task even if this future is dropped mid-write.
            let guard = Lead(self.clone());
            guard.0.write_batch().await;
            drop(guard);
        }
        rx.await.unwrap_or_else(|_| {
            // The write carrying this item was dropped before it answered (its caller went
            // away mid-write): the item may or may not have been written. Unavailable, so a
            // turn answers 503 and Teams delivers the activity again.
            Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed))
        })
    }

    /// Takes up to [`MAX_BATCH`] queued items, writes them, and answers their callers.
    async fn write_batch(&self) {
        let batch: Vec<_> = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            let n = queue.waiting.len().min(MAX_BATCH);
            queue.waiting.drain(..n).collect()
        };
        if batch.is_empty() {
            return;
        }
        let (items, answers): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
        let results = (self.write)(items).await;
        for (answer, result) in answers.into_iter().zip(results) {
            // A caller that went away no longer needs its answer.
            let _ = answer.send(result);
        }
    }

    /// After a write: the queue is handed on (a task writes what queued meanwhile) or closed.
    fn hand_on(self: &Arc<Self>) {
        let more = {
            let mut queue = self.queue.lock().expect("coalescer queue");
            if queue.waiting.is_empty() {
                queue.writing = false;
            }
            queue.writing
        };
        if more {
            let me = self.clone();
            tokio::spawn(async move {
                me.write_batch().await;
                me.hand_on();
            });
        }
    }
}

/// Held by the caller writing a batch; hands the queue on when that write ends or is dropped.
struct Lead<I: Send + 'static, O: Send + 'static>(Arc<Coalescer<I, O>>);

impl<I: Send + 'static, O: Send + 'static> Drop for Lead<I, O> {
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
        Coalescer::new(move |items: Vec<u32>| {
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
        let coalescer: Arc<Coalescer<u32, u32>> = Coalescer::new(move |items: Vec<u32>| {
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
}
