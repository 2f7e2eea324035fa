//! Group commit: steps waiting to be written are gathered into batches, and a
//! few batches are written at once, each in its own transaction. A step that
//! finds the committer idle is written at once by the caller's own runtime.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use sagaplane_orchestrator::ports::{StepCommit, StoreError};
use sagaplane_orchestrator::task::detached;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::batch::{commit_batch, commit_one};
use super::connect::APPLICATION_NAME;
use super::rows::StepOutcome;

/// The way to the committer's thread; the thread ends when this is dropped.
pub(super) struct Committer {
    jobs: mpsc::UnboundedSender<Job>,
    /// Steps handed to the thread and not yet answered.
    queued: AtomicUsize,
    /// One connection for a step that finds the committer idle.
    alone: PgPool,
    /// Whether a step is being written on `alone`.
    alone_busy: AtomicBool,
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
        let options = options.application_name(&name);
        let alone = PgPoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_lazy_with(options.clone());
        let on_batch = config.on_batch.clone();
        let (jobs, queue) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sagaplane-commit".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the committer's runtime starts");
                runtime.block_on(async move {
                    let pool = PgPoolOptions::new()
                        .max_connections(config.concurrency.max(1) as u32)
                        .test_before_acquire(false)
                        .connect_lazy_with(options);
                    run(pool, queue, config).await;
                });
            })
            .expect("the committer's thread starts");
        Self {
            jobs,
            queued: AtomicUsize::new(0),
            alone,
            alone_busy: AtomicBool::new(false),
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
        if let Some(_alone) = self.alone() {
            if let Some(observe) = &self.on_batch {
                observe(1);
            }
            // A task of the runtime, not of the caller (an actor's arbiter),
            // holds the connection.
            let pool = self.alone.clone();
            return detached(async move {
                let outcome = commit_one(&pool, &step).await;
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
    fn alone(&self) -> Option<Busy<'_>> {
        if self.queued.load(Ordering::Acquire) != 0 {
            return None;
        }
        self.alone_busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Busy(&self.alone_busy))
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

/// The connection for a step alone taken, until dropped.
struct Busy<'a>(&'a AtomicBool);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
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
async fn run(pool: PgPool, mut jobs: mpsc::UnboundedReceiver<Job>, config: GroupCommit) {
    let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
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
        let pool = pool.clone();
        tokio::spawn(async move {
            write(&pool, batch).await;
            drop(slot);
        });
    }
}

async fn write(pool: &PgPool, batch: Vec<Job>) {
    let outcomes = if let [job] = &batch[..] {
        // Alone: one statement, one round trip.
        vec![commit_one(pool, &job.step).await]
    } else {
        let steps: Vec<Arc<StepCommit>> = batch.iter().map(|j| j.step.clone()).collect();
        let outcomes = commit_batch(pool, &steps).await;
        drop(steps);
        match outcomes {
            Ok(outcomes) => outcomes,
            Err(e) => {
                // One bad step must not fail the others: write each alone.
                tracing::warn!(error.message = %e, size = batch.len(), "batch failed; writing its steps one by one");
                let mut outcomes = Vec::with_capacity(batch.len());
                for job in &batch {
                    outcomes.push(commit_one(pool, &job.step).await);
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
