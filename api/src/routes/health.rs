//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub(crate) struct HealthDto {
    /// `ok` or `ready`.
    status: String,
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Up", body = HealthDto)))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthDto {
        status: "ok".into(),
    })
}

/// The database answers, its schema is current, and the commands left unsent
/// by an earlier run have been published.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = HealthDto),
        (status = 503, description = "Not ready, and why", body = Problem, content_type = "application/problem+json"),
    ))]
pub(crate) async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut problems = Vec::new();
    if let Err(reason) = state.orchestrator.store().ready().await {
        problems.push(reason);
    }
    if !state.orchestrator.recovered() {
        problems.push("start-up recovery has not yet tried every command left unsent".into());
    }
    if problems.is_empty() {
        Ok(HttpResponse::Ok().json(HealthDto {
            status: "ready".into(),
        }))
    } else {
        Err(ApiError::NotReady(problems.join("; ")))
    }
}
