//! What an operator does with a dead letter: redrive it (apply an inbound
//! message once more, or put a command back in line with a fresh publish
//! budget) or discard it; either is recorded with who and why.

use sagaplane_sagas::SagaId;

use crate::codec::{self, DecodeError};
use crate::input::{ActorError, Handled};
use crate::orchestrator::Orchestrator;
use crate::ports::{DeadLetterRecord, Resolution, StoreError};

/// What a redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveOutcome {
    /// The reply was applied.
    Applied,
    /// The reply had been applied before.
    Duplicate,
    /// The saga had moved on: recorded, not applied.
    Ignored,
    /// The command goes out again with a fresh publish budget.
    Requeued,
}

impl RedriveOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RedriveOutcome::Applied => "applied",
            RedriveOutcome::Duplicate => "duplicate",
            RedriveOutcome::Ignored => "ignored",
            RedriveOutcome::Requeued => "requeued",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("there is no dead letter {0}")]
    NotFound(i64),
    #[error("dead letter {id} was already {} by {by}", resolution.as_str())]
    AlreadyResolved {
        id: i64,
        resolution: Resolution,
        by: String,
    },
    #[error("dead letter {0} was resolved by someone else meanwhile")]
    ResolvedMeanwhile(i64),
    #[error("the message is still unusable: {0}")]
    StillUnusable(DecodeError),
    #[error("the message is still unusable: there is still no saga {0}")]
    StillNoSaga(SagaId),
    /// The saga still cannot take the reply (its result breaks the step's schema).
    #[error("the message is still unusable: {0}")]
    StillRefused(String),
    #[error("command {0} is no longer dead-lettered")]
    NotDeadLettered(uuid::Uuid),
    /// Resolved, then not found: the store lost it.
    #[error("dead letter {0} vanished")]
    Vanished(i64),
    #[error(transparent)]
    Actor(#[from] ActorError),
}

impl From<StoreError> for RedriveError {
    fn from(e: StoreError) -> Self {
        RedriveError::Actor(e.into())
    }
}

impl Orchestrator {
    /// Redrives an open dead letter for `by`, who says why; the letter is
    /// resolved (with the outcome in its note) only if the redrive worked, so
    /// a message that is still unusable stays open.
    pub async fn redrive(
        &self,
        id: i64,
        by: &str,
        reason: &str,
    ) -> Result<(RedriveOutcome, DeadLetterRecord), RedriveError> {
        let letter = self.open_dead_letter(id).await?;
        let outcome = match letter.outbox_message_id {
            Some(message_id) => {
                if !self.requeue(message_id).await? {
                    return Err(RedriveError::NotDeadLettered(message_id));
                }
                RedriveOutcome::Requeued
            }
            None => {
                let inbound = codec::decode_for(&letter.channel, &letter.raw)
                    .map_err(RedriveError::StillUnusable)?;
                match self.apply_reply(inbound).await {
                    Ok(Handled::Applied { .. }) => RedriveOutcome::Applied,
                    Ok(Handled::Duplicate) => RedriveOutcome::Duplicate,
                    Ok(_) => RedriveOutcome::Ignored,
                    Err(ActorError::UnknownSaga(saga)) => {
                        return Err(RedriveError::StillNoSaga(saga))
                    }
                    Err(ActorError::BadReply(reason)) => {
                        return Err(RedriveError::StillRefused(reason))
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let note = format!("{reason} (outcome: {})", outcome.as_str());
        let letter = self.resolve(id, Resolution::Redriven, by, &note).await?;
        Ok((outcome, letter))
    }

    /// Closes an open dead letter without applying it.
    pub async fn discard(
        &self,
        id: i64,
        by: &str,
        reason: &str,
    ) -> Result<DeadLetterRecord, RedriveError> {
        self.open_dead_letter(id).await?;
        self.resolve(id, Resolution::Discarded, by, reason).await
    }

    async fn open_dead_letter(&self, id: i64) -> Result<DeadLetterRecord, RedriveError> {
        let letter = self
            .store
            .find_dead_letter(id)
            .await?
            .ok_or(RedriveError::NotFound(id))?;
        match letter.resolution {
            None => Ok(letter),
            Some(resolution) => Err(RedriveError::AlreadyResolved {
                id,
                resolution,
                by: letter.resolved_by.unwrap_or_else(|| "someone".into()),
            }),
        }
    }

    async fn resolve(
        &self,
        id: i64,
        resolution: Resolution,
        by: &str,
        note: &str,
    ) -> Result<DeadLetterRecord, RedriveError> {
        if !self
            .store
            .resolve_dead_letter(id, resolution, by, note)
            .await?
        {
            return Err(RedriveError::ResolvedMeanwhile(id));
        }
        tracing::info!(
            dead_letter = id,
            resolution = resolution.as_str(),
            by,
            note,
            "dead letter resolved"
        );
        self.store
            .find_dead_letter(id)
            .await?
            .ok_or(RedriveError::Vanished(id))
    }
}
