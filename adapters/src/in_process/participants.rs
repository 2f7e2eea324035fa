//! Simulated participants answering by configurable rules (see
//! [`super::rules`]), so that every path of a saga can be driven from the
//! outside; each applies a command once per idempotency key, as a real
//! participant must.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sagaplane_orchestrator::ports::OutboxMessage;
use sagaplane_orchestrator::{codec, Orchestrator};
use sagaplane_sagas::{Outcome, Reply};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::rules::{Answer, Rules};
use super::settings::{InvalidRule, SimulatorSettings};

/// The channel name the simulated participants' replies carry.
pub const CHANNEL: &str = "in-process";

/// The participants' memory: the answer applied for each idempotency key.
#[derive(Clone)]
pub struct SimulatedParticipants {
    settings: Arc<SimulatorSettings>,
    rules: Arc<Rules>,
    applied: Arc<Mutex<HashMap<String, Answer>>>,
    effects: Arc<Mutex<HashMap<String, u32>>>,
    /// Set once the participants have been "fixed" (see [`Self::repair`]).
    repaired: Arc<AtomicBool>,
    /// Cleared to simulate an outage: the transport cannot reach them.
    reachable: Arc<AtomicBool>,
    /// Where what was applied is kept when `durable_memory` is on.
    durable: Option<PgPool>,
}

impl SimulatedParticipants {
    /// Participants answering by `settings`' rules; an invalid rule is refused.
    pub fn new(settings: SimulatorSettings) -> Result<Self, InvalidRule> {
        Ok(Self {
            rules: Arc::new(Rules::new(&settings)?),
            settings: Arc::new(settings),
            applied: Arc::default(),
            effects: Arc::default(),
            repaired: Arc::default(),
            reachable: Arc::new(AtomicBool::new(true)),
            durable: None,
        })
    }

    /// Keeps what the participants applied in `pool`'s database (creating their
    /// tables if missing) instead of in memory.
    pub async fn with_durable_memory(mut self, pool: PgPool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS simulator_effects (
                 idempotency_key text PRIMARY KEY,
                 outcome jsonb NOT NULL,
                 -- A success's result, given again on redelivery.
                 result jsonb,
                 applied_at timestamptz NOT NULL DEFAULT now());
             -- A table made before results were kept has no such column.
             ALTER TABLE simulator_effects ADD COLUMN IF NOT EXISTS result jsonb;
             -- One row per application of an effect: the audit a test reads.
             CREATE TABLE IF NOT EXISTS simulator_applications (
                 idempotency_key text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             -- One row per command received, applied or not: redeliveries show.
             CREATE TABLE IF NOT EXISTS simulator_deliveries (
                 idempotency_key text NOT NULL,
                 received_at timestamptz NOT NULL DEFAULT now());",
        )
        .execute(&pool)
        .await?;
        self.durable = Some(pool);
        Ok(self)
    }

    /// The participants' teams fixed their faults: rules marked
    /// `until_repaired` apply no more (so an operator's `resume` can be shown
    /// to work).
    pub fn repair(&self) {
        self.repaired.store(true, Ordering::Relaxed);
    }

    /// Simulates an outage (`false`) of the participants, or its end: while
    /// unreachable, the in-process transport refuses every command.
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    pub(super) fn reachability(&self) -> Arc<AtomicBool> {
        self.reachable.clone()
    }

    /// Answers every command from `commands` through `orchestrator`.
    pub fn spawn(
        &self,
        mut commands: mpsc::UnboundedReceiver<OutboxMessage>,
        orchestrator: Orchestrator,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(command) = commands.recv().await {
                let this = this.clone();
                let orchestrator = orchestrator.clone();
                tokio::spawn(async move { this.handle(command, &orchestrator).await });
            }
        })
    }

    /// How many times the effect of an idempotency key was applied (0 or 1,
    /// unless something is badly wrong).
    pub fn effects(&self, idempotency_key: &str) -> u32 {
        let effects = self.effects.lock().expect("effects lock poisoned");
        effects.get(idempotency_key).copied().unwrap_or(0)
    }

    async fn handle(&self, command: OutboxMessage, orchestrator: &Orchestrator) {
        if let Some(pool) = &self.durable {
            let received =
                sqlx::query("INSERT INTO simulator_deliveries (idempotency_key) VALUES ($1)")
                    .bind(command.idempotency_key.as_str())
                    .execute(pool)
                    .await;
            if let Err(e) = received {
                tracing::warn!(error.message = %e, "simulated participant cannot record a delivery");
            }
        }
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.latency_ms)).await;
        }
        let Some(answer) = self.answer(&command).await else {
            tracing::debug!(saga_id = %command.saga_id, step = %command.step, "simulated participant stays silent");
            return;
        };
        let reply = Reply {
            step: command.step.clone(),
            attempt: command.attempt,
            outcome: answer.outcome,
            at: Utc::now(),
            result: answer.result,
        };
        // The reply travels as a CloudEvent, as from any real participant; the
        // same command redelivered yields the same reply id.
        let event = codec::reply_to(
            &command,
            format!("{}:reply", command.message_id),
            command.participant.as_str(),
            &reply,
        );
        let raw = serde_json::to_vec(&event).expect("a reply serialises");
        // Like a broker, redeliver a few times when the orchestrator fails.
        for attempt in 1..=5u64 {
            match orchestrator
                .receive_raw(CHANNEL, raw.clone(), Value::Object(Default::default()))
                .await
            {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error.message = %e, attempt, "simulated reply not accepted");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
            }
        }
    }

    /// The answer to `command`, applied once per idempotency key and kept
    /// where `durable_memory` says; `None`: no answer.
    pub(super) async fn answer(&self, command: &OutboxMessage) -> Option<Answer> {
        match &self.durable {
            Some(pool) => self.durable_answer(pool, command).await,
            None => self.remembered_answer(command),
        }
    }

    /// As [`Self::remembered_answer`], with what was applied kept in
    /// PostgreSQL: the effect and its record are one transaction, and the
    /// first of two concurrent deliveries wins. A database error means no
    /// answer (the saga's timeout asks again).
    async fn durable_answer(&self, pool: &PgPool, command: &OutboxMessage) -> Option<Answer> {
        let key = command.idempotency_key.as_str();
        let recorded = || {
            sqlx::query_as::<_, (Value, Option<Value>)>(
                "SELECT outcome, result FROM simulator_effects WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(pool)
        };
        let from_row = |(outcome, result): (Value, Option<Value>)| {
            Some(Answer {
                outcome: serde_json::from_value(outcome).ok()?,
                result,
            })
        };
        match recorded().await {
            Ok(Some(row)) => return from_row(row),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, "simulated participant cannot read its memory");
                return None;
            }
        }
        let answer = match self.fresh_answer(command)? {
            Fresh::Transient(failed) => return Some(failed),
            Fresh::Final(answer) => answer,
        };
        let applied = async {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO simulator_effects (idempotency_key, outcome, result) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(key)
            .bind(serde_json::to_value(&answer.outcome).expect("an outcome serialises"))
            .bind(&answer.result)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 && answer.outcome == Outcome::Succeeded {
                sqlx::query("INSERT INTO simulator_applications (idempotency_key) VALUES ($1)")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(inserted == 1)
        };
        match applied.await {
            Ok(true) => Some(answer),
            // Another delivery of the same command applied it first.
            Ok(false) => recorded().await.ok().flatten().and_then(from_row),
            Err(e) => {
                tracing::warn!(error.message = %e, "simulated participant cannot record an effect");
                None
            }
        }
    }

    /// What the participant makes of a command it has not applied before;
    /// `None`: it stays silent.
    fn fresh_answer(&self, command: &OutboxMessage) -> Option<Fresh> {
        if self.settings.failure_rate > 0.0 && fastrand::f64() < self.settings.failure_rate {
            return Some(Fresh::Transient(Answer {
                outcome: Outcome::Failed {
                    reason: "simulated transient failure".into(),
                },
                result: None,
            }));
        }
        let repaired = self.repaired.load(Ordering::Relaxed);
        let answer = self.rules.answer(command, repaired)?;
        Some(match answer.outcome {
            Outcome::Failed { .. } => Fresh::Transient(answer),
            _ => Fresh::Final(answer),
        })
    }

    /// Applies the command once per idempotency key, in memory.
    fn remembered_answer(&self, command: &OutboxMessage) -> Option<Answer> {
        let mut applied = self.applied.lock().expect("applied lock poisoned");
        if let Some(previous) = applied.get(&command.idempotency_key) {
            return Some(previous.clone());
        }
        let answer = match self.fresh_answer(command)? {
            Fresh::Transient(failed) => return Some(failed),
            Fresh::Final(answer) => answer,
        };
        if answer.outcome == Outcome::Succeeded {
            let mut effects = self.effects.lock().expect("effects lock poisoned");
            *effects.entry(command.idempotency_key.clone()).or_default() += 1;
        }
        applied.insert(command.idempotency_key.clone(), answer.clone());
        Some(answer)
    }
}

/// A first answer: a transient failure is not remembered, anything else is.
enum Fresh {
    Transient(Answer),
    Final(Answer),
}

#[cfg(test)]
mod tests;
