//! RFC 9457 problem details: every error the API returns has this body.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use sagaplane_sagas::FieldError;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An API error; the status and a human-readable detail, never internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the service is temporarily unavailable; try again")]
    Unavailable,
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(e) = self {
            tracing::error!(error.cause_chain = ?e, error.message = %e, "request failed");
        }
        let (errors, detail): (&[FieldError], String) = match self {
            ApiError::Invalid(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                (errors, format!("invalid fields: {}", fields.join(", ")))
            }
            other => (&[], other.to_string()),
        };
        let body = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            errors,
        };
        HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, CONTENT_TYPE))
            .json(body)
    }
}

impl From<sagaplane_orchestrator::StoreError> for ApiError {
    fn from(e: sagaplane_orchestrator::StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}
