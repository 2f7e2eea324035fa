//! Group commit: steps waiting to be written are gathered into batches, and a
//! few batches are written at once, each in its own transaction.

use std::collections::HashSet;
use std::sync::Arc;

use sagaplane_orchestrator::ports::{StepCommit, StoreError};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::batch::{commit_batch, commit_one};
use super::rows::StepOutcome;

pub(super) struct Job {
    pub step: Arc<StepCommit>,
    pub done: oneshot::Sender<StepOutcome>,
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
    pub on_batch: Option<BatchObserver>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            concurrency: 4,
            max_batch: 256,
            on_batch: None,
        }
    }
}

/// Runs until every sender is gone. Under load, steps queue while all
/// `concurrency` batches are in flight, so batches grow with the load; alone, a
/// step is written at once in a batch of one.
pub(super) async fn run(pool: PgPool, mut jobs: mpsc::UnboundedReceiver<Job>, config: GroupCommit) {
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

async fn write(pool: &PgPool, mut batch: Vec<Job>) {
    if batch.len() == 1 {
        // Alone: one statement, one round trip.
        let Job { step, done } = batch.pop().expect("a batch of one");
        let outcome = commit_one(pool, &step).await;
        drop(step);
        let _ = done.send(outcome);
        return;
    }
    let steps: Vec<Arc<StepCommit>> = batch.iter().map(|j| j.step.clone()).collect();
    let outcomes = match commit_batch(pool, &steps).await {
        Ok(outcomes) => outcomes,
        Err(e) if steps.len() > 1 => {
            // One bad step must not fail the others: write each alone.
            tracing::warn!(error.message = %e, size = steps.len(), "batch failed; writing its steps one by one");
            let mut outcomes = Vec::with_capacity(steps.len());
            for step in &steps {
                outcomes.push(match commit_batch(pool, std::slice::from_ref(step)).await {
                    Ok(mut one) => one.pop().unwrap_or_else(|| {
                        Err(StoreError::Corrupt("a batch of one gave no outcome".into()))
                    }),
                    Err(e) => Err(e),
                });
            }
            outcomes
        }
        Err(e) => vec![Err(e)],
    };
    drop(steps);
    for (job, outcome) in batch.into_iter().zip(outcomes) {
        let Job { step, done } = job;
        drop(step);
        let _ = done.send(outcome);
    }
}
