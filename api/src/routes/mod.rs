//! One module per resource.

mod health;
mod metrics;
mod sagas;

pub(crate) use metrics::Exposition;

use actix_web::web;

use crate::problem::ApiError;

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.configure(health::configure)
        .configure(metrics::configure)
        .configure(sagas::configure);
}

/// Any path or method the API does not have.
pub(crate) async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such resource".into()))
}
