//! `/v1/sagas`: start a saga, read it (optionally waiting until it settles) and
//! read its history.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{EventRecord, SagaRecord};
use sagaplane_orchestrator::{ActorError, StartError, StartOutcome, TraceParent};
use sagaplane_sagas::{FieldError, SagaId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::problem::ApiError;
use crate::startup::AppState;

const MAX_BUSINESS_KEY_LEN: usize = 200;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/sagas", web::post().to(start))
        .route("/v1/sagas/{id}", web::get().to(get))
        .route("/v1/sagas/{id}/events", web::get().to(events));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    saga_type: String,
    business_key: String,
    input: Value,
}

/// A saga as the API shows it.
#[derive(Debug, Serialize)]
struct SagaDto {
    id: SagaId,
    saga_type: String,
    business_key: String,
    status: String,
    current_step: Option<String>,
    attempt: Option<i32>,
    /// When the current attempt of the current step began.
    step_since: Option<DateTime<Utc>>,
    version: i64,
    input: Value,
    last_error: Option<String>,
    /// When the saga's next deadline or retry falls due.
    next_wake_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<SagaRecord> for SagaDto {
    fn from(r: SagaRecord) -> Self {
        Self {
            id: r.id,
            saga_type: r.saga_type,
            business_key: r.business_key,
            status: r.status,
            current_step: r.current_step,
            attempt: r.attempt,
            step_since: r.step_since,
            version: r.version,
            input: r.input,
            last_error: r.last_error,
            next_wake_at: r.wake_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct EventDto {
    seq: i64,
    #[serde(rename = "type")]
    event_type: String,
    recorded_at: DateTime<Utc>,
    data: Value,
}

impl From<EventRecord> for EventDto {
    fn from(e: EventRecord) -> Self {
        Self {
            seq: e.seq,
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            data: e.data,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GetQuery {
    /// Seconds to wait for the saga to settle (terminal or suspended).
    wait: Option<u64>,
}

/// `POST /v1/sagas`: 201 for a new saga, 200 for a repeat of a known start.
async fn start(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<Value>,
) -> Result<HttpResponse, ApiError> {
    // An invalid traceparent is ignored, as W3C Trace Context says: a new trace starts.
    let traceparent = http
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let request: StartRequest =
        serde_path_to_error::deserialize(body.into_inner()).map_err(|e| {
            let path = e.path().to_string();
            let field = if path == "." { "body".into() } else { path };
            ApiError::Invalid(vec![FieldError::new(field, e.inner().to_string())])
        })?;
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
                    state.saga_types.join(", ")
                ),
            )]),
            StartError::Invalid(errors) => ApiError::Invalid(errors),
            StartError::KeyConflict(id) => ApiError::Conflict(format!(
                "saga {id} was already started with business key `{}` and a different input",
                request.business_key
            )),
            StartError::Failed(e) => actor_error(e),
        })?;
    let (id, mut response) = match outcome {
        StartOutcome::Created(id) => (id, HttpResponse::Created()),
        StartOutcome::Existing(id) => (id, HttpResponse::Ok()),
    };
    let saga = find(&state, id).await?;
    Ok(response
        .insert_header((header::LOCATION, format!("/v1/sagas/{id}")))
        .json(saga))
}

/// `GET /v1/sagas/{id}[?wait=N]`.
async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = match query.wait {
        None | Some(0) => state.orchestrator.store().get(id).await?,
        Some(seconds) if seconds <= state.http.max_wait_seconds => {
            state
                .orchestrator
                .wait_settled(id, Duration::from_secs(seconds))
                .await?
        }
        Some(seconds) => {
            return Err(ApiError::BadRequest(format!(
                "wait must be at most {} seconds, got {seconds}",
                state.http.max_wait_seconds
            )))
        }
    };
    let record = record.ok_or_else(|| no_saga(&id.to_string()))?;
    Ok(HttpResponse::Ok().json(SagaDto::from(record)))
}

/// `GET /v1/sagas/{id}/events`: the history, oldest first.
async fn events(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let events = state.orchestrator.store().events(id).await?;
    if events.is_empty() {
        // Every saga has at least its start event.
        return Err(no_saga(&path));
    }
    let events: Vec<EventDto> = events.into_iter().map(Into::into).collect();
    Ok(HttpResponse::Ok().json(events))
}

async fn find(state: &AppState, id: SagaId) -> Result<SagaDto, ApiError> {
    let record = state.orchestrator.store().get(id).await?;
    record
        .map(Into::into)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("saga {id} vanished after its start")))
}

fn parse_id(raw: &str) -> Result<SagaId, ApiError> {
    raw.parse().map_err(|_| no_saga(raw))
}

fn no_saga(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no saga `{raw}`"))
}

fn actor_error(e: ActorError) -> ApiError {
    match e {
        ActorError::Unavailable | ActorError::Contended => ApiError::Unavailable,
        other => ApiError::Internal(other.into()),
    }
}
