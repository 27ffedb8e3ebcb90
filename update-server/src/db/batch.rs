//! Group commit: the writes of concurrent requests share one transaction, so one fsync.
//!
//! On SQLite every commit is an fsync on the one writer (`synchronous = FULL`), 1–3 ms
//! each; a 100,000-device rollout is ~500,000 writes (registrations, offers, reports),
//! beyond ten minutes one commit at a time. So these writes are operations handed to a
//! [`WriteBatcher`]: a request queues its operation and awaits its own outcome, and one
//! writer task runs what is queued as one transaction.
//!
//! # The commit rule
//!
//! ```text
//!   requests ──try_send──▶ queue (bounded: --write-queue-max) ──▶ writer task
//!                          full: 503 + Retry-After at once
//!   writer: take up to --write-batch-max queued operations (what queued while the
//!           previous commit ran; no waiting for more), sort them by WriteKey, then
//!     BEGIN
//!       SAVEPOINT; op 1; RELEASE (ok) | ROLLBACK TO (error, panic)
//!       SAVEPOINT; op 2; …
//!     COMMIT                                   ← the one fsync
//!   answer every caller: its own result if COMMIT succeeded, else the failure
//! ```
//!
//! - **Durability is unchanged**: a caller hears its result only after the transaction
//!   that holds its change committed, so a device is never told "stored" for something a
//!   power cut can still take away. A failed commit fails every operation of the batch;
//!   none of them was stored, and each caller says so.
//! - **Isolation between operations**: each runs in its own savepoint, so one that fails
//!   (or panics) rolls back only its own changes and its caller alone gets the error; its
//!   neighbours commit. Operations in one batch run one after another, each seeing what
//!   the earlier ones wrote, exactly as if they had committed one by one in that order.
//! - **Lock order across replicas**: on PostgreSQL a batch holds every row lock its
//!   operations took until it commits. Operations are run in [`WriteKey`] order (device
//!   rows; rollout locks by rollout; then the rollout rows of operations that take no
//!   rollout lock), so two replicas' batches, and the periodic tick (a rollout's lock,
//!   then its rows), take locks in one order and cannot deadlock on them.
//! - **Backpressure, never a hang**: a full queue refuses at once with the error a busy
//!   database gives (`sqlx::Error::PoolTimedOut`: 503 with `Retry-After`, see
//!   `crate::error`); nothing was changed. A batch that gets no connection within the
//!   acquire timeout is refused the same way.
//! - **Load**: [`WriteBatcher::load`] (0 to 1) says how far behind the writer is; the
//!   check-in lengthens its poll hint with it.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool, Connection};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};

/// The default of `--write-batch-max`: operations per transaction.
pub const DEFAULT_BATCH_MAX: usize = 256;

/// The default of `--write-queue-max`: operations waiting for the writer at most.
pub const DEFAULT_QUEUE_MAX: usize = 4096;

/// What an operation locks, which orders it within its batch: first the operations on a
/// device's own rows, then those behind a rollout's lock (by rollout), then those on a
/// device's row in a rollout that take no rollout lock; each group by device.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct WriteKey {
    order: LockOrder,
    rollout: String,
    device: String,
}

/// The groups of [`WriteKey`], in the order a batch runs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
enum LockOrder {
    #[default]
    Device,
    RolloutLock,
    RolloutRow,
}

impl WriteKey {
    /// An operation that takes `rollout_id`'s lock ([`crate::rollout`]) for `device_id`.
    pub fn rollout(rollout_id: &str, device_id: &str) -> WriteKey {
        WriteKey {
            order: LockOrder::RolloutLock,
            rollout: rollout_id.to_string(),
            device: device_id.to_string(),
        }
    }

    /// An operation on `device_id`'s row in `rollout_id` that takes no rollout lock. It
    /// runs after the batch's rollout locks, the order the periodic tick takes them in
    /// (the rollout's lock, then its device rows), so the two cannot deadlock.
    pub fn rollout_row(rollout_id: &str, device_id: &str) -> WriteKey {
        WriteKey {
            order: LockOrder::RolloutRow,
            rollout: rollout_id.to_string(),
            device: device_id.to_string(),
        }
    }

    /// An operation on `device_id`'s own rows only.
    pub fn device(device_id: &str) -> WriteKey {
        WriteKey {
            order: LockOrder::Device,
            rollout: String::new(),
            device: device_id.to_string(),
        }
    }
}

/// How many transactions and operations the writer committed so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions that committed.
    pub commits: u64,
    /// Operations that ran in them (including those that failed and rolled back alone).
    pub operations: u64,
}

/// The queue in front of the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct WriteBatcher {
    queue: mpsc::Sender<Box<dyn Job>>,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    batch_max: usize,
    queue_max: usize,
    acquire_timeout: Duration,
    /// Queued or running operations whose callers have no answer yet.
    in_flight: AtomicUsize,
    /// How long the latest batch's oldest operation waited before it ran (ms); 0 once the
    /// queue is empty.
    wait_ms: AtomicU64,
    commits: AtomicU64,
    operations: AtomicU64,
}

impl WriteBatcher {
    /// Starts the writer task on `pool` (the write pool) and returns its queue. The task
    /// ends when the last clone of the batcher is dropped.
    pub fn start(
        pool: AnyPool,
        batch_max: usize,
        queue_max: usize,
        acquire_timeout: Duration,
    ) -> WriteBatcher {
        let batch_max = batch_max.max(1);
        let queue_max = queue_max.max(1);
        let (queue, receiver) = mpsc::channel(queue_max);
        let shared = Arc::new(Shared {
            batch_max,
            queue_max,
            acquire_timeout,
            in_flight: AtomicUsize::new(0),
            wait_ms: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            operations: AtomicU64::new(0),
        });
        tokio::spawn(write_loop(pool, receiver, shared.clone()));
        WriteBatcher { queue, shared }
    }

    /// Runs `op` in the next group commit and returns its outcome once that transaction
    /// committed. `op` runs in its own savepoint on the writer's connection and must not
    /// commit or roll back itself. A full queue is `sqlx::Error::PoolTimedOut` at once (a
    /// 503 with `Retry-After`), with nothing changed.
    pub async fn run<T, E, F>(&self, key: WriteKey, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(Pending {
            op: Some(Box::new(op)),
            outcome: None,
            reply,
            key,
            queued_at: Instant::now(),
        });
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = self.queue.try_send(job) {
            self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            return Err(E::from(match refused {
                TrySendError::Full(_) => {
                    metrics::counter!("rota_write_queue_full_total").increment(1);
                    tracing::warn!(
                        queue = self.shared.queue_max,
                        "refused a write: the write queue is full"
                    );
                    sqlx::Error::PoolTimedOut
                }
                TrySendError::Closed(_) => sqlx::Error::PoolClosed,
            }));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(E::from(sqlx::Error::WorkerCrashed)))
    }

    /// How far behind the writer is: 0 when no write waits longer than one batch, 1 when
    /// the queue is full or the oldest write of the latest batch waited the whole acquire
    /// timeout (after which requests are refused). The larger of the two measures.
    pub fn load(&self) -> f64 {
        let s = &*self.shared;
        let waiting = s
            .in_flight
            .load(Ordering::Relaxed)
            .saturating_sub(s.batch_max);
        let depth = waiting as f64 / s.queue_max as f64;
        let timeout_ms = s.acquire_timeout.as_millis().max(1) as f64;
        let wait = s.wait_ms.load(Ordering::Relaxed) as f64 / timeout_ms;
        depth.max(wait).clamp(0.0, 1.0)
    }

    /// Operations queued or running whose callers have no answer yet.
    pub fn pending(&self) -> usize {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Commits and operations so far.
    pub fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.shared.commits.load(Ordering::Relaxed),
            operations: self.shared.operations.load(Ordering::Relaxed),
        }
    }
}

/// A queued operation with its caller's reply channel, its type erased.
trait Job: Send {
    fn key(&self) -> &WriteKey;
    fn queued_at(&self) -> Instant;
    /// Runs the operation on `conn`; whether it succeeded (its savepoint is kept).
    fn run<'c>(&'c mut self, conn: &'c mut AnyConnection) -> BoxFuture<'c, bool>;
    /// Answers the caller: its own outcome if the batch committed, else `failure`.
    fn answer(self: Box<Self>, failure: Option<&Failure>);
}

type Op<T, E> =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, E>> + Send>;

struct Pending<T, E> {
    op: Option<Op<T, E>>,
    outcome: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
    key: WriteKey,
    queued_at: Instant,
}

impl<T, E> Job for Pending<T, E>
where
    T: Send + 'static,
    E: From<sqlx::Error> + Send + 'static,
{
    fn key(&self) -> &WriteKey {
        &self.key
    }

    fn queued_at(&self) -> Instant {
        self.queued_at
    }

    fn run<'c>(&'c mut self, conn: &'c mut AnyConnection) -> BoxFuture<'c, bool> {
        Box::pin(async move {
            let Some(op) = self.op.take() else {
                return false;
            };
            let outcome = match AssertUnwindSafe(op(conn)).catch_unwind().await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::error!(key = ?self.key, "a write operation panicked; rolled back");
                    Err(E::from(sqlx::Error::WorkerCrashed))
                }
            };
            let ok = outcome.is_ok();
            self.outcome = Some(outcome);
            ok
        })
    }

    fn answer(self: Box<Self>, failure: Option<&Failure>) {
        let outcome = match (self.outcome, failure) {
            (Some(Ok(value)), None) => Ok(value),
            // Its own error says more than the batch's, and is as true: nothing stored.
            (Some(Err(err)), _) => Err(err),
            (_, failure) => Err(E::from(
                failure.map_or(sqlx::Error::WorkerCrashed, Failure::to_sqlx),
            )),
        };
        // A caller that went away (its request was cancelled) needs no answer.
        let _ = self.reply.send(outcome);
    }
}

/// Why a batch did not commit.
#[derive(Debug)]
enum Failure {
    /// No connection within the acquire timeout: the database is behind.
    Busy,
    Database(String),
}

impl Failure {
    fn to_sqlx(&self) -> sqlx::Error {
        match self {
            Failure::Busy => sqlx::Error::PoolTimedOut,
            Failure::Database(why) => sqlx::Error::Io(std::io::Error::other(format!(
                "the group commit failed: {why}"
            ))),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Failure {
        match err {
            sqlx::Error::PoolTimedOut => Failure::Busy,
            err => Failure::Database(err.to_string()),
        }
    }
}

async fn write_loop(pool: AnyPool, mut queue: mpsc::Receiver<Box<dyn Job>>, shared: Arc<Shared>) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(shared.batch_max);
    // What queued while the previous batch committed forms the next one: no delay.
    while queue.recv_many(&mut batch, shared.batch_max).await > 0 {
        let started = Instant::now();
        let oldest = batch.iter().map(|j| j.queued_at()).min().unwrap_or(started);
        shared.wait_ms.store(
            started.duration_since(oldest).as_millis() as u64,
            Ordering::Relaxed,
        );
        metrics::gauge!("rota_write_queue_depth").set(queue.len() as f64);
        // Stable: operations on the same rows keep their arrival order.
        batch.sort_by(|a, b| a.key().cmp(b.key()));
        let failure = commit(&pool, &mut batch).await.err();
        let ran = batch.len() as u64;
        match &failure {
            None => {
                shared.commits.fetch_add(1, Ordering::Relaxed);
                shared.operations.fetch_add(ran, Ordering::Relaxed);
                metrics::counter!("rota_write_commits_total").increment(1);
                metrics::histogram!("rota_write_batch_operations").record(ran as f64);
            }
            Some(failure) => {
                metrics::counter!("rota_write_batch_failures_total").increment(1);
                tracing::error!(operations = ran, error = ?failure, "a group commit failed");
            }
        }
        metrics::histogram!("rota_write_batch_seconds").record(started.elapsed().as_secs_f64());
        // The load falls before the answers go out: a caller that hears its answer and
        // checks in at once sees the writer as it is now.
        if queue.is_empty() {
            shared.wait_ms.store(0, Ordering::Relaxed);
        }
        shared.in_flight.fetch_sub(batch.len(), Ordering::Relaxed);
        for job in batch.drain(..) {
            job.answer(failure.as_ref());
        }
    }
}

/// Runs `jobs` in one transaction, each in its own savepoint, and commits.
async fn commit(pool: &AnyPool, jobs: &mut [Box<dyn Job>]) -> Result<(), Failure> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    for job in jobs.iter_mut() {
        let mut savepoint = tx.begin().await?;
        if job.run(&mut savepoint).await {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_rows_then_rollout_locks_by_rollout_then_unlocked_rollout_rows() {
        let mut keys = vec![
            WriteKey::rollout_row("a", "d0"),
            WriteKey::rollout("b", "d1"),
            WriteKey::device("d9"),
            WriteKey::rollout("a", "d2"),
            WriteKey::rollout("a", "d1"),
        ];
        keys.sort();
        assert_eq!(
            keys,
            vec![
                WriteKey::device("d9"),
                WriteKey::rollout("a", "d1"),
                WriteKey::rollout("a", "d2"),
                WriteKey::rollout("b", "d1"),
                WriteKey::rollout_row("a", "d0"),
            ]
        );
    }
}
