//! `POST /v1/sagas`: start a saga; `(saga_type, business_key)` is the
//! idempotency key of the start.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sagaplane_orchestrator::{StartError, StartOutcome, TraceParent};
use sagaplane_sagas::FieldError;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::dto::{etag, SagaDto};
use super::read;
use crate::json::Strict;
use crate::prefer;
use crate::problem::{parse_body, ApiError, Problem};
use crate::state::AppState;

const MAX_BUSINESS_KEY_LEN: usize = 200;

/// A request to start a saga. The OpenAPI document served by a running
/// node describes `input` for each loaded saga type (`oneOf` by `saga_type`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "saga_type": "order",
    "business_key": "order-1001",
    "input": {
        "order_id": "1001", "customer_id": "c-42",
        "items": [{"sku": "SKU-1", "qty": 2}],
        "amount_cents": 1999, "currency": "EUR"
    }
}))]
pub(crate) struct StartRequest {
    /// A loaded saga type, e.g. `order` (see `GET /v1/saga-types`).
    saga_type: String,
    /// With the type, the idempotency key of the start (1–200 bytes, not
    /// blank). May be left out where the saga type names the input field
    /// that is its business key (e.g. `return_id` for `return`).
    #[schema(min_length = 1, max_length = 200)]
    business_key: Option<String>,
    /// The definition version to run under, to its end; default: the newest.
    #[schema(minimum = 1)]
    version: Option<u32>,
    /// The saga type's start input, checked against its JSON Schema.
    #[schema(value_type = Object)]
    input: Value,
}

/// Start a saga. `(saga_type, business_key)` is the idempotency key: the same
/// key with the same input answers 200 with the existing saga.
#[utoipa::path(
    post, path = "/v1/sagas", tag = "sagas",
    request_body = StartRequest,
    params(
        ("traceparent" = Option<String>, Header, description = "W3C trace context"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (RFC 7240): answer once the saga is terminal or suspended, or with its state after N seconds (at most `http.max_wait_seconds`); the answer then says `Preference-Applied: wait` and shows what the saga waits for"),
    ),
    responses(
        (status = 201, description = "Started", body = SagaDto,
         headers(("Location" = String, description = "The saga's URL"),
                 ("Preference-Applied" = Option<String>, description = "`wait` when the answer waited"))),
        (status = 200, description = "Already started with the same input", body = SagaDto),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Key taken with another input", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within http.body_timeout_ms", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded or stopping", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn start(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<Strict>,
) -> Result<HttpResponse, ApiError> {
    // An invalid traceparent is ignored, as W3C Trace Context says: a new trace starts.
    let traceparent = http
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let request: StartRequest = parse_body(body.into_inner().0)?;
    let unknown_type = |t: &str| {
        ApiError::Invalid(vec![FieldError::new(
            "saga_type",
            format!(
                "unknown saga type `{t}`; known: {}",
                state.orchestrator.saga_types().join(", ")
            ),
        )])
    };
    let business_key = match request.business_key {
        Some(key) => key,
        None => {
            let catalog = state.orchestrator.catalog();
            let versions = catalog
                .get(&request.saga_type)
                .ok_or_else(|| unknown_type(&request.saga_type))?;
            let definition = request
                .version
                .and_then(|v| versions.get(v))
                .unwrap_or_else(|| versions.newest());
            definition.business_key_of(&request.input).ok_or_else(|| {
                let why = match &definition.business_key {
                    Some(path) => format!(
                        "is required: none given, and the input has no `{}`",
                        path.join(".")
                    ),
                    None => format!(
                        "is required: saga type `{}` names no input field to take it from",
                        definition.saga_type
                    ),
                };
                ApiError::Invalid(vec![FieldError::new("business_key", why)])
            })?
        }
    };
    if business_key.trim().is_empty() || business_key.len() > MAX_BUSINESS_KEY_LEN {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "business_key",
            format!("must be 1 to {MAX_BUSINESS_KEY_LEN} bytes, not blank"),
        )]));
    }
    let wait = prefer::wait_seconds(http.headers()).filter(|&s| s > 0);
    let (outcome, watch) = state
        .orchestrator
        .start_watching(
            &request.saga_type,
            &business_key,
            request.input,
            request.version,
            traceparent,
            wait.is_some(),
        )
        .await
        .map_err(|e| match e {
            StartError::UnknownType(t) => unknown_type(&t),
            StartError::Invalid(errors) => ApiError::Invalid(errors),
            StartError::KeyConflict(id) => ApiError::Conflict(format!(
                "saga {id} was already started with business key `{business_key}` and a different input"
            )),
            StartError::Failed(e) => e.into(),
        })?;
    let (mut response, record) = match outcome {
        StartOutcome::Created(record) => (HttpResponse::Created(), record),
        StartOutcome::Existing(record) => (HttpResponse::Ok(), record),
    };
    response.insert_header((header::LOCATION, format!("/v1/sagas/{}", record.id)));
    let Some(wait) = wait else {
        return Ok(response
            .insert_header(etag(record.version))
            .json(SagaDto::from_record(record)));
    };
    // `Prefer: wait=N`: answer once the saga has settled, or with its state
    // after N seconds (at most the longest long poll). It exists: it was
    // just started or found.
    let seconds = Duration::from_secs(wait.min(state.http.max_wait_seconds));
    let id = record.id;
    let settled = state
        .orchestrator
        .wait_settled_from(record.clone(), watch, seconds);
    let record = read::unless_gone(&state, &http, id, settled)
        .await?
        .unwrap_or(record);
    Ok(response
        .insert_header(etag(record.version))
        .insert_header(("Preference-Applied", "wait"))
        .json(read::detailed(&state, record).await?))
}
