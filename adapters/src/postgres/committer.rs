//! Group commit: steps waiting to be written are gathered into batches, and a
//! few batches are written at once, each in its own transaction. A step that
//! finds the committer idle is written at once by the caller's own runtime.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sagaplane_orchestrator::ports::{StepCommit, StoreError};
use sagaplane_orchestrator::task::detached;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use tokio::sync::{mpsc, oneshot, Mutex, OwnedMutexGuard, Semaphore};

use super::batch::{commit_batch, commit_one};
use super::connect::APPLICATION_NAME;
use super::rows::{db, StepOutcome};

/// The way to the committer's thread; the thread ends when this is dropped.
pub(super) struct Committer {
    jobs: mpsc::UnboundedSender<Job>,
    /// Steps handed to the thread and not yet answered.
    queued: AtomicUsize,
    /// The connection for a step that finds the committer idle, held while
    /// such a step is written; made when first needed, and again after a
    /// step failed on it.
    ///
    /// It is not in a pool: a pool tests every connection given back with a
    /// round trip of its own to PostgreSQL, which at one client doubled the
    /// messages of a step and kept the connection from the saga's next step
    /// until answered (BENCHMARKS.md).
    alone: Arc<Mutex<Option<PgConnection>>>,
    /// How `alone` and the thread's connections are made.
    options: Arc<PgConnectOptions>,
    /// Told of every step written alone, as a batch of one.
    on_batch: Option<BatchObserver>,
}

struct Job {
    step: Arc<StepCommit>,
    done: oneshot::Sender<StepOutcome>,
}

impl Committer {
    /// Starts the committer on a thread of its own, with connections of its
    /// own (made with `options`), so that the statements of a batch follow each
    /// other without waiting for the thread that runs the actors.
    pub(super) fn start(options: PgConnectOptions, config: GroupCommit) -> Self {
        let name = format!(
            "{}/commit",
            options.get_application_name().unwrap_or(APPLICATION_NAME)
        );
        let options = Arc::new(options.application_name(&name));
        let on_batch = config.on_batch.clone();
        let (jobs, queue) = mpsc::unbounded_channel();
        let thread_options = options.clone();
        std::thread::Builder::new()
            .name("sagaplane-commit".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the committer's runtime starts");
                runtime.block_on(run(thread_options, queue, config));
            })
            .expect("the committer's thread starts");
        Self {
            jobs,
            queued: AtomicUsize::new(0),
            alone: Arc::default(),
            options,
            on_batch,
        }
    }

    /// Writes `step` and returns its outcome: at once, on the caller's
    /// runtime, when nothing else is being written; else handed to the
    /// committer's thread, to join a batch.
    ///
    /// Alone, a step handed to the thread would cross from the caller's thread
    /// to it and back, two wake-ups that cost a quarter of a saga's time at one
    /// client on a small virtual machine (BENCHMARKS.md); under load the thread is always busy
    /// and every step joins a batch, as before.
    pub(super) async fn commit(&self, step: Arc<StepCommit>) -> StepOutcome {
        if let Some(mut alone) = self.alone() {
            if let Some(observe) = &self.on_batch {
                observe(1);
            }
            // A task of the runtime, not of the caller (an actor's arbiter),
            // holds the connection, and finishes the step even if the caller
            // stops waiting.
            let options = self.options.clone();
            return detached(async move {
                let outcome = write_one(&mut alone, &options, &step).await;
                // The caller takes its step back out of the `Arc`.
                drop(step);
                outcome
            })
            .await;
        }
        let closed = || StoreError::Database("the store's committer has stopped".into());
        let _queued = Held::new(&self.queued);
        let (done, outcome) = oneshot::channel();
        self.jobs.send(Job { step, done }).map_err(|_| closed())?;
        outcome.await.map_err(|_| closed())?
    }

    /// The connection for a step alone, if the thread has nothing queued or
    /// being written and the connection is free.
    fn alone(&self) -> Option<OwnedMutexGuard<Option<PgConnection>>> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return None;
        }
        self.alone.clone().try_lock_owned().ok()
    }
}

/// Counts a step handed to the thread until its caller has the outcome (or
/// stops waiting).
struct Held<'a>(&'a AtomicUsize);

impl<'a> Held<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Told the size of every batch written (for a histogram).
pub type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

/// How batches are formed.
#[derive(Clone)]
pub struct GroupCommit {
    /// Batches written at the same time.
    pub concurrency: usize,
    /// Steps in one batch at most.
    pub max_batch: usize,
    /// Told the size of every batch written.
    pub on_batch: Option<BatchObserver>,
}

impl Default for GroupCommit {
    /// Two batches in flight: one being written while the next forms. More
    /// make smaller batches, each with its statements and commit, and cost
    /// more per step (BENCHMARKS.md, "A takeover waits…").
    fn default() -> Self {
        Self {
            concurrency: 2,
            max_batch: 256,
            on_batch: None,
        }
    }
}

/// Runs until every sender is gone. Under load, steps queue while all
/// `concurrency` batches are in flight, so batches grow with the load; alone, a
/// step is written at once in a batch of one.
///
/// Each batch in flight has a connection of its own, kept for the next batch
/// unless the database failed a step on it; made with `options` when none is
/// kept. Not a pool, for the reason given at [`Committer::alone`].
async fn run(
    options: Arc<PgConnectOptions>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    config: GroupCommit,
) {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let kept: Kept = Arc::default();
    let mut held_back: Option<Job> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let first = match held_back.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut sagas = HashSet::from([first.step.saga_id]);
        let mut batch = vec![first];
        while batch.len() < config.max_batch.max(1) {
            let Ok(job) = jobs.try_recv() else { break };
            // Two steps of one saga never share a batch: the second waits.
            if !sagas.insert(job.step.saga_id) {
                held_back = Some(job);
                break;
            }
            batch.push(job);
        }
        if let Some(observe) = &config.on_batch {
            observe(batch.len());
        }
        let (kept, options) = (kept.clone(), options.clone());
        tokio::spawn(async move {
            let mut conn = kept.lock().expect("kept connections").pop();
            write(&mut conn, &options, batch).await;
            if let Some(conn) = conn {
                kept.lock().expect("kept connections").push(conn);
            }
            drop(slot);
        });
    }
}

/// The connections of batches not in flight.
type Kept = Arc<std::sync::Mutex<Vec<PgConnection>>>;

/// Writes `batch` and answers its steps, on `conn` or, if it has none, on a
/// connection made with `options`; leaves `conn` empty if the database
/// failed a step on it, so that the next write connects anew.
async fn write(conn: &mut Option<PgConnection>, options: &PgConnectOptions, batch: Vec<Job>) {
    let outcomes = if let [job] = &batch[..] {
        // Alone: one statement, one round trip.
        vec![write_one(conn, options, &job.step).await]
    } else {
        let steps: Vec<Arc<StepCommit>> = batch.iter().map(|j| j.step.clone()).collect();
        let outcomes = match connected(conn, options).await {
            Ok(c) => commit_batch(c, &steps).await,
            Err(e) => Err(e),
        };
        drop(steps);
        match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // One bad step must not fail the others: write each alone.
                tracing::warn!(error.message = %e, size = batch.len(), "batch failed; writing its steps one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for job in &batch {
                    outcomes.push(write_one(conn, options, &job.step).await);
                }
                outcomes
            }
        }
    };
    for (Job { step, done }, outcome) in batch.into_iter().zip(outcomes) {
        // The caller takes its step back out of the `Arc` once it has the
        // outcome, so no copy of ours may outlive the send.
        drop(step);
        let _ = done.send(outcome);
    }
}

/// Writes `step` alone, as [`write`] writes a batch. A step the database
/// fails on a connection kept from before is written once more on a new
/// one: PostgreSQL may have ended the kept one since (a restart, a failover,
/// `pg_terminate_backend`). If the first try was written after all (its
/// answer lost), the second reads as a duplicate or a conflict, as in a
/// batch written again step by step.
async fn write_one(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    step: &StepCommit,
) -> StepOutcome {
    let mut again = conn.is_some();
    loop {
        let outcome = match connected(conn, options).await {
            Ok(c) => commit_one(c, step).await,
            Err(e) => Err(e),
        };
        if !matches!(outcome, Err(StoreError::Database(_))) {
            return outcome;
        }
        *conn = None;
        if !std::mem::take(&mut again) {
            return outcome;
        }
    }
}

/// The connection in `conn`, made with `options` if there is none.
async fn connected<'c>(
    conn: &'c mut Option<PgConnection>,
    options: &PgConnectOptions,
) -> Result<&'c mut PgConnection, StoreError> {
    if conn.is_none() {
        *conn = Some(options.connect().await.map_err(db)?);
    }
    Ok(conn.as_mut().expect("just made"))
}
