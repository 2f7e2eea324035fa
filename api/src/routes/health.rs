//! Liveness and readiness.

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::problem::ApiError;
use crate::startup::AppState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// The process is up and serving HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database answers, its schema is current, and the commands left unsent
/// by an earlier run have been published.
async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut problems = Vec::new();
    if let Err(reason) = state.orchestrator.store().ready().await {
        problems.push(reason);
    }
    if !state.orchestrator.recovered() {
        problems.push("start-up recovery has not finished publishing unsent commands".into());
    }
    if problems.is_empty() {
        Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
    } else {
        Err(ApiError::NotReady(problems.join("; ")))
    }
}
