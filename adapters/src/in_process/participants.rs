//! Simulated inventory, payment and order services with deterministic rules,
//! so that every path of the order saga can be driven from the outside.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use sagaplane_orchestrator::ports::OutboxMessage;
use sagaplane_orchestrator::{codec, Orchestrator};
use sagaplane_sagas::{Outcome, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::mpsc;

/// The channel name the simulated participants' replies carry.
pub const CHANNEL: &str = "in-process";

/// How the simulated participants behave; every rule is a prefix or a bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Whether the simulated participants exist at all (the `in-process`
    /// transport). Off, every participant must be routed elsewhere.
    pub enabled: bool,
    /// Delay before each reply.
    pub latency_ms: u64,
    /// Share of commands (0.0–1.0) answered with a transient failure.
    pub failure_rate: f64,
    /// Inventory refuses an order with a SKU starting with this.
    pub out_of_stock_prefix: String,
    /// Inventory never answers for a SKU starting with this.
    pub hang_sku_prefix: String,
    /// Inventory fails to release (compensation) a SKU starting with this.
    pub stuck_sku_prefix: String,
    /// Payment declines amounts above this.
    pub decline_above_cents: i64,
    /// Payment never answers for a customer id starting with this.
    pub hang_customer_prefix: String,
    /// Order service fails to confirm an order id starting with this.
    pub no_confirm_prefix: String,
    /// Keep what was applied in PostgreSQL (tables `simulator_effects` and
    /// `simulator_applications` in the orchestrator's database), as a real
    /// participant keeps its own state, so it survives a restart; otherwise in
    /// memory.
    pub durable_memory: bool,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            latency_ms: 0,
            failure_rate: 0.0,
            out_of_stock_prefix: "OOS-".into(),
            hang_sku_prefix: "HANG-".into(),
            stuck_sku_prefix: "STUCK-".into(),
            decline_above_cents: 1_000_000,
            hang_customer_prefix: "HANG-".into(),
            no_confirm_prefix: "NOCONFIRM-".into(),
            durable_memory: false,
        }
    }
}

/// The participants' memory: the outcome applied for each idempotency key.
#[derive(Clone)]
pub struct SimulatedParticipants {
    settings: Arc<SimulatorSettings>,
    applied: Arc<Mutex<HashMap<String, Outcome>>>,
    effects: Arc<Mutex<HashMap<String, u32>>>,
    /// Set once the stuck inventory has been "fixed" (see [`Self::repair`]).
    repaired: Arc<AtomicBool>,
    /// Cleared to simulate an outage: the transport cannot reach them.
    reachable: Arc<AtomicBool>,
    /// Where what was applied is kept when `durable_memory` is on.
    durable: Option<PgPool>,
}

impl SimulatedParticipants {
    pub fn new(settings: SimulatorSettings) -> Self {
        Self {
            settings: Arc::new(settings),
            applied: Arc::default(),
            effects: Arc::default(),
            repaired: Arc::default(),
            reachable: Arc::new(AtomicBool::new(true)),
            durable: None,
        }
    }

    /// Keeps what the participants applied in `pool`'s database (creating their
    /// tables if missing) instead of in memory.
    pub async fn with_durable_memory(mut self, pool: PgPool) -> Result<Self, sqlx::Error> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS simulator_effects (
                 idempotency_key text PRIMARY KEY,
                 outcome jsonb NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());
             -- One row per application of an effect: the audit a test reads.
             CREATE TABLE IF NOT EXISTS simulator_applications (
                 idempotency_key text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .execute(&pool)
        .await?;
        self.durable = Some(pool);
        Ok(self)
    }

    /// The inventory team fixed its fault: SKUs with the stuck prefix release
    /// from now on (so an operator's `resume` can be shown to work).
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
        if self.settings.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.settings.latency_ms)).await;
        }
        let outcome = match &self.durable {
            Some(pool) => self.durable_outcome(pool, &command).await,
            None => self.outcome(&command),
        };
        let Some(outcome) = outcome else {
            tracing::debug!(saga_id = %command.saga_id, step = %command.step, "simulated participant stays silent");
            return;
        };
        let reply = Reply {
            step: command.step.clone(),
            attempt: command.attempt,
            outcome,
            at: Utc::now(),
            result: None,
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

    /// As [`Self::outcome`], with what was applied kept in PostgreSQL: the
    /// effect and its record are one transaction, and the first of two
    /// concurrent deliveries wins. A database error means no answer (the
    /// saga's timeout asks again).
    async fn durable_outcome(&self, pool: &PgPool, command: &OutboxMessage) -> Option<Outcome> {
        let key = command.idempotency_key.as_str();
        let recorded = || {
            sqlx::query_scalar::<_, serde_json::Value>(
                "SELECT outcome FROM simulator_effects WHERE idempotency_key = $1",
            )
            .bind(key)
            .fetch_optional(pool)
        };
        let previous = recorded().await;
        match previous {
            Ok(Some(outcome)) => return serde_json::from_value(outcome).ok(),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error.message = %e, "simulated participant cannot read its memory");
                return None;
            }
        }
        let outcome = match self.fresh_outcome(command)? {
            Fresh::Transient(failed) => return Some(failed),
            Fresh::Final(outcome) => outcome,
        };
        let applied = async {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO simulator_effects (idempotency_key, outcome) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(key)
            .bind(serde_json::to_value(&outcome).expect("an outcome serialises"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 && outcome == Outcome::Succeeded {
                sqlx::query("INSERT INTO simulator_applications (idempotency_key) VALUES ($1)")
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(inserted == 1)
        };
        match applied.await {
            Ok(true) => Some(outcome),
            // Another delivery of the same command applied it first.
            Ok(false) => recorded()
                .await
                .ok()
                .flatten()
                .and_then(|o| serde_json::from_value(o).ok()),
            Err(e) => {
                tracing::warn!(error.message = %e, "simulated participant cannot record an effect");
                None
            }
        }
    }

    /// What the participant makes of a command it has not applied before;
    /// `None`: it stays silent.
    fn fresh_outcome(&self, command: &OutboxMessage) -> Option<Fresh> {
        if self.settings.failure_rate > 0.0 && fastrand::f64() < self.settings.failure_rate {
            return Some(Fresh::Transient(Outcome::Failed {
                reason: "simulated transient failure".into(),
            }));
        }
        Some(match self.rule(command.step.as_str(), &command.data)? {
            failed @ Outcome::Failed { .. } => Fresh::Transient(failed),
            outcome => Fresh::Final(outcome),
        })
    }

    /// Applies the command once per idempotency key; `None` means no answer.
    fn outcome(&self, command: &OutboxMessage) -> Option<Outcome> {
        let mut applied = self.applied.lock().expect("applied lock poisoned");
        if let Some(previous) = applied.get(&command.idempotency_key) {
            return Some(previous.clone());
        }
        let outcome = match self.fresh_outcome(command)? {
            Fresh::Transient(failed) => return Some(failed),
            Fresh::Final(outcome) => outcome,
        };
        if outcome == Outcome::Succeeded {
            let mut effects = self.effects.lock().expect("effects lock poisoned");
            *effects.entry(command.idempotency_key.clone()).or_default() += 1;
        }
        applied.insert(command.idempotency_key.clone(), outcome.clone());
        Some(outcome)
    }

    fn rule(&self, step: &str, data: &Value) -> Option<Outcome> {
        let s = &self.settings;
        let text = |field: &str| data[field].as_str().unwrap_or_default().to_owned();
        let skus: Vec<String> = data["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["sku"].as_str().map(str::to_owned))
            .collect();
        let sku_with = |prefix: &str| skus.iter().find(|sku| sku.starts_with(prefix)).cloned();
        let refused = |reason: String| Some(Outcome::Refused { reason });
        match step {
            "reserve-inventory" => {
                if sku_with(&s.hang_sku_prefix).is_some() {
                    return None;
                }
                if let Some(sku) = sku_with(&s.out_of_stock_prefix) {
                    return refused(format!("out of stock: {sku}"));
                }
            }
            "release-inventory" => {
                let stuck = sku_with(&s.stuck_sku_prefix)
                    .filter(|_| !self.repaired.load(Ordering::Relaxed));
                if let Some(sku) = stuck {
                    return Some(Outcome::Failed {
                        reason: format!("cannot release {sku}"),
                    });
                }
            }
            "charge-payment" => {
                if text("customer_id").starts_with(&s.hang_customer_prefix) {
                    return None;
                }
                let amount = data["amount_cents"].as_i64().unwrap_or_default();
                if amount > s.decline_above_cents {
                    return refused(format!(
                        "declined: {amount} cents is above the limit of {}",
                        s.decline_above_cents
                    ));
                }
            }
            "confirm-order" if text("order_id").starts_with(&s.no_confirm_prefix) => {
                return refused("the order cannot be confirmed".into());
            }
            _ => {}
        }
        Some(Outcome::Succeeded)
    }
}

/// A first answer: a transient failure is not remembered, anything else is.
enum Fresh {
    Transient(Outcome),
    Final(Outcome),
}
