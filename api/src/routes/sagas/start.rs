//! `POST /v1/sagas`: start a saga; `(saga_type, business_key)` is the
//! idempotency key of the start.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sagaplane_orchestrator::{StartError, StartOutcome, TraceParent};
use sagaplane_sagas::FieldError;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::dto::{etag, SagaDto};
use crate::auth::{Caller, Role};
use crate::problem::{parse_body, ApiError, Problem};
use crate::state::AppState;

const MAX_BUSINESS_KEY_LEN: usize = 200;

/// A request to start a saga.
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
    /// A registered saga type: `order`.
    saga_type: String,
    /// With the type, the idempotency key of the start (1–200 bytes, not blank).
    #[schema(min_length = 1, max_length = 200)]
    business_key: String,
    /// The saga type's start input.
    #[schema(value_type = OrderInputDoc)]
    input: Value,
}

/// The `order` saga's start input. SKUs and ids with certain prefixes drive the
/// simulated participants (see README.md).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only describes the JSON; the saga crate parses it.
pub(crate) struct OrderInputDoc {
    #[schema(min_length = 1, max_length = 200)]
    order_id: String,
    #[schema(min_length = 1, max_length = 200)]
    customer_id: String,
    #[schema(min_items = 1, max_items = 1000)]
    items: Vec<LineItemDoc>,
    /// The total, in the currency's minor unit.
    #[schema(minimum = 1)]
    amount_cents: i64,
    /// ISO 4217, e.g. `EUR`.
    #[schema(pattern = "^[A-Z]{3}$")]
    currency: String,
}

#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub(crate) struct LineItemDoc {
    #[schema(min_length = 1, max_length = 200)]
    sku: String,
    #[schema(minimum = 1)]
    qty: i64,
}

/// Start a saga. `(saga_type, business_key)` is the idempotency key: the same
/// key with the same input answers 200 with the existing saga.
#[utoipa::path(
    post, path = "/v1/sagas", tag = "sagas",
    request_body = StartRequest,
    params(("traceparent" = Option<String>, Header, description = "W3C trace context")),
    responses(
        (status = 201, description = "Started", body = SagaDto,
         headers(("Location" = String, description = "The saga's URL"))),
        (status = 200, description = "Already started with the same input", body = SagaDto),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Key taken with another input", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded or stopping", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn start(
    state: web::Data<AppState>,
    caller: Caller,
    http: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Starter)?;
    // An invalid traceparent is ignored, as W3C Trace Context says: a new trace starts.
    let traceparent = http
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let request: StartRequest = parse_body(body.into_inner())?;
    let key = request.business_key.trim();
    if key.is_empty() || request.business_key.len() > MAX_BUSINESS_KEY_LEN {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "business_key",
            format!("must be 1 to {MAX_BUSINESS_KEY_LEN} bytes, not blank"),
        )]));
    }
    let outcome = state
        .orchestrator
        .start(
            &request.saga_type,
            &request.business_key,
            request.input,
            traceparent,
        )
        .await
        .map_err(|e| match e {
            StartError::UnknownType(t) => ApiError::Invalid(vec![FieldError::new(
                "saga_type",
                format!(
                    "unknown saga type `{t}`; known: {}",
                    state.orchestrator.saga_types().join(", ")
                ),
            )]),
            StartError::Invalid(errors) => ApiError::Invalid(errors),
            StartError::KeyConflict(id) => ApiError::Conflict(format!(
                "saga {id} was already started with business key `{}` and a different input",
                request.business_key
            )),
            StartError::Failed(e) => e.into(),
        })?;
    let (mut response, record) = match outcome {
        StartOutcome::Created(record) => (HttpResponse::Created(), record),
        StartOutcome::Existing(record) => (HttpResponse::Ok(), record),
    };
    Ok(response
        .insert_header((header::LOCATION, format!("/v1/sagas/{}", record.id)))
        .insert_header(etag(record.version))
        .json(SagaDto::from_record(record)))
}
