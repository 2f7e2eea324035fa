//! Writes the steps of many sagas in one transaction (group commit).
//!
//! Each kind of row is written for the whole batch with one set-based statement,
//! and each statement says, through `RETURNING`, which steps it could apply: a
//! business key already taken or a saga whose version moved on leaves only that
//! step out, and a message received before (read first) is a duplicate. Steps
//! left out write nothing, so every step is all or nothing.
//!
//! A reply's message id is written on the first event of its step, under a
//! unique index. Should another node record the same message between the read
//! and the insert, the insert fails the whole batch, and the committer writes
//! its steps one by one, where that step alone is found a duplicate.

use std::collections::HashSet;
use std::sync::Arc;

use sagaplane_orchestrator::ports::{CommitOutcome, StepCommit, StoreError};
use sqlx::{Connection, PgConnection};

use super::rows::{db, StepOutcome};

mod one;
mod statements;

pub(super) use one::commit_one;
use statements::{append_events, insert_outbox, insert_sagas, received_before, update_sagas};

/// Commits `steps` together. `Err` means the transaction failed: nothing was
/// written, or, if it failed on its commit, perhaps everything. The caller may
/// then try the steps one by one; a step written already then reads as a
/// conflict or a duplicate.
pub(super) async fn commit_batch(
    conn: &mut PgConnection,
    steps: &[Arc<StepCommit>],
) -> Result<Vec<StepOutcome>, StoreError> {
    let mut outcomes: Vec<Option<StepOutcome>> = steps.iter().map(|_| None).collect();
    let mut tx = conn.begin().await.map_err(db)?;

    // 1. Inbox: a message received before (or twice in this batch) is a duplicate.
    let mut seen = HashSet::new();
    let mut inbox: Vec<(usize, &str)> = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if let Some(id) = step.inbox.as_deref() {
            if seen.insert(id) {
                inbox.push((i, id));
            } else {
                outcomes[i] = Some(Ok(CommitOutcome::DuplicateInbox));
            }
        }
    }
    let before = received_before(&mut tx, &inbox).await?;
    for (i, id) in &inbox {
        if before.contains(*id) {
            outcomes[*i] = Some(Ok(CommitOutcome::DuplicateInbox));
        }
    }

    // 2. New sagas: a business key already taken leaves the step out.
    let created = insert_sagas(&mut tx, steps, &outcomes).await?;
    // 3. Existing sagas: only from the version the step was decided on.
    let updated = update_sagas(&mut tx, steps, &outcomes).await?;
    for (i, step) in steps.iter().enumerate() {
        if outcomes[i].is_some() {
            continue;
        }
        let id = step.saga_id.as_uuid();
        outcomes[i] = match &step.new_saga {
            Some(_) if !created.contains(&id) => Some(Ok(CommitOutcome::BusinessKeyTaken)),
            None if !updated.contains(&id) => Some(Err(StoreError::Conflict)),
            _ => None,
        };
    }

    // 4. Events (with the message ids) and commands of the steps that stay.
    let kept: Vec<&StepCommit> = steps
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.is_none())
        .map(|(s, _)| s.as_ref())
        .collect();
    append_events(&mut tx, &kept).await?;
    insert_outbox(&mut tx, &kept).await?;
    tx.commit().await.map_err(db)?;
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or(Ok(CommitOutcome::Committed)))
        .collect())
}

#[cfg(test)]
mod tests;
