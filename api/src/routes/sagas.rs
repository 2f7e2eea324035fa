//! `/v1/sagas`: start a saga, find sagas, read one (optionally waiting until it
//! settles, with what it waits for) and read its history (optionally with the
//! state after every event).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{EventRecord, SagaFilter, SagaRecord, SUSPENDED_BY_SUPERVISOR};
use sagaplane_orchestrator::{ActorError, Snapshot, StartError, StartOutcome, TraceParent};
use sagaplane_sagas::{FieldError, SagaId, Status, WaitingOn};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::{Caller, Role};
use crate::problem::{no_nul, parse_body, ApiError, Problem};
use crate::state::AppState;

const MAX_BUSINESS_KEY_LEN: usize = 200;
pub(crate) const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 50;

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

/// A saga as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaDto {
    id: Uuid,
    saga_type: String,
    business_key: String,
    /// `running`, `compensating`, `completed`, `compensated`, `suspended` or `cancelled`.
    status: String,
    current_step: Option<String>,
    attempt: Option<i32>,
    /// When the current attempt of the current step began.
    step_since: Option<DateTime<Utc>>,
    /// Bumped by every event; also the `ETag`, for `If-Match` on actions.
    version: i64,
    #[schema(value_type = Object)]
    input: Value,
    last_error: Option<String>,
    /// When the saga's next timer (reply deadline or retry) fires.
    next_wake_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// What the saga waits for (single-saga reads only; absent once terminal).
    #[serde(skip_serializing_if = "Option::is_none")]
    waiting_for: Option<WaitingDto>,
    /// The operator actions allowed now (single-saga reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_actions: Option<Vec<String>>,
    /// Saga-specific progress: steps done, compensations left … (single-saga reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    progress: Option<Value>,
}

/// What a saga waits for: the answer to "why is it stuck".
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WaitingDto {
    step: String,
    /// The participant service that must answer.
    participant: String,
    attempt: u32,
    /// The step's attempt budget.
    max_attempts: u32,
    /// When this attempt began.
    since: DateTime<Utc>,
    /// `reply`: the command is out; `retry`: the next attempt is scheduled;
    /// `operator`: out of budget, only an intervention moves it.
    waiting_on: String,
    /// When the reply deadline passes or the retry is sent; none when waiting on an operator.
    fires_at: Option<DateTime<Utc>>,
    /// The outbox id of this attempt's command, and when it was handed to its transport.
    command_id: Option<Uuid>,
    command_sent_at: Option<DateTime<Utc>>,
}

impl SagaDto {
    fn from_record(r: SagaRecord) -> Self {
        Self {
            id: r.id.as_uuid(),
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
            waiting_for: None,
            allowed_actions: None,
            progress: None,
        }
    }
}

/// One page of sagas, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaPage {
    items: Vec<SagaDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventDto {
    seq: i64,
    #[serde(rename = "type")]
    event_type: String,
    recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    data: Value,
    /// The saga's state right after this event (with `with_state=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<StateDto>,
}

/// A saga's state at one point of its history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StateDto {
    status: String,
    current_step: Option<String>,
    attempt: Option<u32>,
    next_wake_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    allowed_actions: Vec<String>,
    waiting_for: Option<WaitingDto>,
    #[schema(value_type = Object)]
    progress: Value,
}

impl EventDto {
    fn new(e: EventRecord, state: Option<StateDto>) -> Self {
        Self {
            seq: e.seq,
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            data: e.data,
            state,
        }
    }
}

fn waiting_dto(s: &Snapshot) -> Option<WaitingDto> {
    let w = s.explanation.waiting.as_ref()?;
    let (waiting_on, fires_at) = match w.on {
        WaitingOn::Reply { deadline } => ("reply", Some(deadline)),
        WaitingOn::Retry { at } => ("retry", Some(at)),
        WaitingOn::Operator => ("operator", None),
    };
    Some(WaitingDto {
        step: w.step.into(),
        participant: w.participant.into(),
        attempt: w.attempt,
        max_attempts: w.max_attempts,
        since: w.since,
        waiting_on: waiting_on.into(),
        fires_at,
        command_id: None,
        command_sent_at: None,
    })
}

fn state_dto(s: &Snapshot) -> StateDto {
    StateDto {
        status: s.view.status.as_str().into(),
        current_step: s.view.step.map(Into::into),
        attempt: s.view.attempt,
        next_wake_at: s.view.wake_at,
        last_error: s.view.last_error.clone(),
        allowed_actions: s.allowed_actions.iter().map(|a| a.to_string()).collect(),
        waiting_for: waiting_dto(s),
        progress: s.explanation.progress.clone(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct GetQuery {
    /// Seconds to wait for the saga to settle (terminal or suspended); at most
    /// the configured `http.max_wait_seconds`.
    wait: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Also return the saga's state right after every event (time travel).
    #[serde(default)]
    with_state: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Comma-separated statuses, e.g. `running,suspended`.
    status: Option<String>,
    saga_type: Option<String>,
    business_key: Option<String>,
    /// Created at or after (RFC 3339).
    created_from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    created_to: Option<DateTime<Utc>>,
    /// Not terminal and no progress for longer than this: `90s`, `15m`, `2h`, `1d`.
    stuck_for: Option<String>,
    /// 1 to 500; 50 when absent.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Counts of sagas per type and status.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StatsDto {
    counts: Vec<StatsCount>,
    suspended: i64,
    /// The running or compensating saga that started first.
    oldest_unsettled: Option<OldestDto>,
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
    let record =
        state.orchestrator.store().get(id).await?.ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("saga {id} vanished after its start"))
        })?;
    Ok(response
        .insert_header((header::LOCATION, format!("/v1/sagas/{id}")))
        .insert_header(etag(record.version))
        .json(SagaDto::from_record(record)))
}

/// Find sagas, newest first, with keyset pagination.
#[utoipa::path(
    get, path = "/v1/sagas", tag = "sagas",
    params(SearchQuery),
    responses(
        (status = 200, description = "One page", body = SagaPage),
        (status = 400, description = "Bad filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let q = query.into_inner();
    no_nul("saga_type", q.saga_type.as_deref())?;
    no_nul("business_key", q.business_key.as_deref())?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}, got {limit}"
        )));
    }
    let statuses = match q.status.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                Status::parse(s.trim())
                    .map(|s| s.as_str().to_owned())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "unknown status `{s}`; known: {}",
                            Status::ALL.map(Status::as_str).join(", ")
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let stuck_since = q
        .stuck_for
        .as_deref()
        .map(|d| parse_duration(d).map(|d| Utc::now() - d))
        .transpose()?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = SagaFilter {
        statuses,
        // A business key is indexed with its type: name every type when none is given.
        saga_types: match (q.saga_type, &q.business_key) {
            (Some(t), _) => vec![t],
            (None, Some(_)) => state.saga_types.iter().map(|t| t.to_string()).collect(),
            (None, None) => Vec::new(),
        },
        business_key: q.business_key,
        created_from: q.created_from,
        created_to: q.created_to,
        stuck_since,
        after,
        limit,
    };
    let records = state.queries.search(&filter).await?;
    let next_cursor = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| cursor(r.created_at, r.id)))
        .flatten();
    Ok(HttpResponse::Ok().json(SagaPage {
        items: records.into_iter().map(SagaDto::from_record).collect(),
        next_cursor,
    }))
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
pub(crate) async fn stats(
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
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
    }))
}

/// One saga, with what it waits for and the actions allowed now; `?wait=N`
/// long-polls until it settles.
#[utoipa::path(
    get, path = "/v1/sagas/{id}", tag = "sagas",
    params(("id" = Uuid, Path, description = "Saga id"), GetQuery),
    responses(
        (status = 200, description = "The saga", body = SagaDto,
         headers(("ETag" = String, description = "The saga's version, for If-Match"))),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such saga", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
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
    let version = record.version;
    let saga = detailed(&state, record).await?;
    Ok(HttpResponse::Ok().insert_header(etag(version)).json(saga))
}

/// The saga with what it waits for. A terminal saga waits for nothing and
/// allows nothing, so only an unsettled one has its history folded.
pub(crate) async fn detailed(state: &AppState, record: SagaRecord) -> Result<SagaDto, ApiError> {
    let terminal = Status::parse(&record.status).is_some_and(Status::is_terminal);
    let id = record.id;
    let mut saga = SagaDto::from_record(record);
    if terminal {
        saga.allowed_actions = Some(Vec::new());
        return Ok(saga);
    }
    let Some(snapshot) = state.orchestrator.inspect(id).await.map_err(actor_error)? else {
        return Err(no_saga(&id.to_string()));
    };
    let mut waiting = waiting_dto(&snapshot);
    if let Some(w) = &mut waiting {
        if let Some(c) = state.queries.command_for(id, &w.step, w.attempt).await? {
            w.command_id = Some(c.message_id);
            w.command_sent_at = c.sent_at;
        }
    }
    saga.waiting_for = waiting;
    saga.allowed_actions = Some(
        snapshot
            .allowed_actions
            .iter()
            .map(|a| a.to_string())
            .collect(),
    );
    saga.progress = Some(snapshot.explanation.progress);
    Ok(saga)
}

/// The saga's history, oldest first; `with_state=true` adds the state right
/// after every event.
#[utoipa::path(
    get, path = "/v1/sagas/{id}/events", tag = "sagas",
    params(("id" = Uuid, Path, description = "Saga id"), EventsQuery),
    responses(
        (status = 200, description = "The events", body = [EventDto]),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such saga", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require(Role::Viewer)?;
    let id = parse_id(&path)?;
    let events = state.orchestrator.store().events(id).await?;
    if events.is_empty() {
        // Every saga has at least its start event.
        return Err(no_saga(&path));
    }
    let events: Vec<EventDto> = if query.with_state {
        let snapshots = state
            .orchestrator
            .replay(id)
            .await
            .map_err(actor_error)?
            .unwrap_or_default();
        // One snapshot per event of the saga's own; the supervisor's have none.
        // An event appended between the two reads has none yet either.
        let mut snapshots = snapshots.iter();
        events
            .into_iter()
            .map(|e| {
                let own = e.event_type != SUSPENDED_BY_SUPERVISOR;
                let state = own.then(|| snapshots.next().map(state_dto)).flatten();
                EventDto::new(e, state)
            })
            .collect()
    } else {
        events.into_iter().map(|e| EventDto::new(e, None)).collect()
    };
    Ok(HttpResponse::Ok().json(events))
}

pub(crate) fn etag(version: i64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

pub(crate) fn parse_id(raw: &str) -> Result<SagaId, ApiError> {
    raw.parse().map_err(|_| no_saga(raw))
}

pub(crate) fn no_saga(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no saga `{raw}`"))
}

pub(crate) fn actor_error(e: ActorError) -> ApiError {
    match e {
        ActorError::Unavailable | ActorError::Contended => ApiError::Unavailable,
        ActorError::CrashLoop(reason) => ApiError::Conflict(format!(
            "the saga could not take this input and was suspended: {reason}"
        )),
        ActorError::UnknownSaga(id) => no_saga(&id.to_string()),
        other => ApiError::Internal(other.into()),
    }
}

/// `90s`, `15m`, `2h`, `1d` (a bare number is seconds).
fn parse_duration(raw: &str) -> Result<chrono::Duration, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "stuck_for must be a whole number with a unit s, m, h or d (e.g. `15m`), got `{raw}`"
        ))
    };
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    // Beyond ~100 years is certainly a mistake, and would overflow the clock.
    if n > 36_500 * 86_400 / seconds {
        return Err(bad());
    }
    Ok(chrono::Duration::seconds(n * seconds))
}

fn cursor(created_at: DateTime<Utc>, id: SagaId) -> String {
    format!(
        "{}_{}",
        created_at.timestamp_micros(),
        id.as_uuid().simple()
    )
}

fn parse_cursor(raw: &str) -> Result<(DateTime<Utc>, SagaId), ApiError> {
    let bad = || ApiError::BadRequest(format!("`{raw}` is not a cursor this API gave out"));
    let (micros, id) = raw.split_once('_').ok_or_else(bad)?;
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok((at, SagaId::from_uuid(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_refuse_nonsense() {
        assert_eq!(parse_duration("90s").unwrap().num_seconds(), 90);
        assert_eq!(parse_duration("15m").unwrap().num_seconds(), 900);
        assert_eq!(parse_duration("2h").unwrap().num_seconds(), 7_200);
        assert_eq!(parse_duration("1d").unwrap().num_seconds(), 86_400);
        assert_eq!(parse_duration("30").unwrap().num_seconds(), 30);
        for bad in [
            "",
            "m",
            "5w",
            "-5m",
            "1.5h",
            "99999999999999999999d",
            "400000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = SagaId::from_uuid(Uuid::now_v7());
        assert_eq!(parse_cursor(&cursor(at, id)).unwrap(), (at, id));
        for bad in ["", "x_y", "123", "123_notauuid", "99999999999999999999_0"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
