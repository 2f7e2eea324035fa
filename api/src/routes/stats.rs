//! `GET /v1/stats`: counts of sagas per type and status.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// Counts of sagas per type and status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsDto {
    counts: Vec<StatsCount>,
    suspended: i64,
    /// The running or compensating saga that started first.
    oldest_unsettled: Option<OldestDto>,
    /// When the terminal sagas (completed, compensated, cancelled) were
    /// counted. From 100,000 of them on, that count is kept for a while (a
    /// hundred times as long as it took; at one million sagas, about 30 s);
    /// the running, compensating and suspended ones are counted on every call.
    /// A call does not wait for a whole count of a large store: `null` means
    /// the terminal sagas are being counted for the first time since the
    /// server started and are not in `counts` yet; ask again in a second.
    terminal_counted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsCount {
    saga_type: String,
    status: String,
    count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OldestDto {
    id: Uuid,
    created_at: DateTime<Utc>,
}

/// Counts of sagas per type and status, the suspended count and the oldest
/// unsettled saga.
#[utoipa::path(
    get, path = "/v1/stats", tag = "sagas",
    responses(
        (status = 200, description = "Counts", body = StatsDto),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn stats(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let s = state.queries.stats().await?;
    Ok(HttpResponse::Ok().json(StatsDto {
        counts: s
            .counts
            .into_iter()
            .map(|(saga_type, status, count)| StatsCount {
                saga_type,
                status,
                count,
            })
            .collect(),
        suspended: s.suspended,
        oldest_unsettled: s.oldest_unsettled.map(|(id, created_at)| OldestDto {
            id: id.as_uuid(),
            created_at,
        }),
        terminal_counted_at: s.terminal_counted_at,
    }))
}
