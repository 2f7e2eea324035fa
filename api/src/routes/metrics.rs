//! `/metrics`: Prometheus (OpenMetrics) text.

use actix_web::{web, HttpResponse};
use chrono::Utc;

use crate::problem::{ApiError, Problem};
use crate::state::AppState;

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Metrics", body = String,
         content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub(crate) async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let backlog = state.orchestrator.store().backlog().await?;
    let body = state
        .exposition
        .render(&backlog, Utc::now())
        .map_err(|err| ApiError::Internal(err.into()))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(body))
}
