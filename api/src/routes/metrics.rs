//! `/metrics`: Prometheus (OpenMetrics) text.

use std::sync::atomic::AtomicU64;

use actix_web::{web, HttpResponse};
use chrono::Utc;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sagaplane_orchestrator::Metrics;

use crate::auth::{Caller, Role};
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry, with the gauges that are read when scraped.
pub(crate) struct Exposition {
    registry: Registry,
    outbox_unsent: Gauge,
    outbox_oldest_age: Gauge<f64, AtomicU64>,
    dead_letters_stored: Gauge,
    resident_memory: Gauge,
}

impl Exposition {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let mut registry = Registry::default();
        let resident_memory = Gauge::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            resident_memory.clone(),
        );
        let ours = registry.sub_registry_with_prefix("sagaplane");
        metrics.register(ours);
        let outbox_unsent = Gauge::default();
        let outbox_oldest_age = Gauge::<f64, AtomicU64>::default();
        let dead_letters_stored = Gauge::default();
        ours.register(
            "outbox_unsent",
            "Commands committed but not yet published",
            outbox_unsent.clone(),
        );
        ours.register(
            "outbox_oldest_unsent_age_seconds",
            "Age of the oldest command not yet published (0 when none)",
            outbox_oldest_age.clone(),
        );
        ours.register(
            "dead_letters_stored",
            "Dead letters in the store",
            dead_letters_stored.clone(),
        );
        Self {
            registry,
            outbox_unsent,
            outbox_oldest_age,
            dead_letters_stored,
            resident_memory,
        }
    }
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Metrics", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn metrics(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let e = &state.exposition;
    let backlog = state.orchestrator.store().backlog().await?;
    e.outbox_unsent.set(backlog.outbox_unsent);
    let age = backlog.oldest_unsent_at.map_or(0.0, |t| {
        (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0
    });
    e.outbox_oldest_age.set(age);
    e.dead_letters_stored.set(backlog.dead_letters);
    e.resident_memory.set(resident_memory_bytes().unwrap_or(0));
    let mut body = String::new();
    encode(&mut body, &e.registry).map_err(|err| ApiError::Internal(err.into()))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}

/// VmRSS of this process, from /proc (Linux).
fn resident_memory_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: i64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
