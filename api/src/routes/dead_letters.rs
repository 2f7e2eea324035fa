//! `/v1/dead-letters`: inbound messages that could not be used and commands
//! that could not be delivered, kept whole. An admin redrives one (applies an
//! inbound message once more, e.g. after the saga it names appeared; puts a
//! command back in line with a fresh publish budget) or discards it, and
//! either is recorded with who and why.

use actix_web::{web, HttpResponse};
use base64::Engine;
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::DeadLetterRecord;
use sagaplane_orchestrator::RedriveError;
use sagaplane_sagas::FieldError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::sagas::MAX_PAGE;
use crate::auth::Caller;
use crate::json::Strict;
use crate::problem::{parse_body, reason_within_limit, ApiError, Problem};
use crate::state::AppState;

/// A message that could not be used, as received.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterDto {
    id: i64,
    /// `inbound` (a message that could not be used) or `outbox` (a command
    /// that could not be delivered).
    kind: String,
    /// Where it came from (e.g. `in-process`), or for a command `outbox:<participant>`.
    channel: String,
    /// Why it could not be used.
    reason: String,
    /// The raw bytes, base64.
    raw_base64: String,
    /// The raw bytes as text, where they are UTF-8.
    raw_text: Option<String>,
    #[schema(value_type = Object)]
    headers: Value,
    received_at: DateTime<Utc>,
    /// `redriven` or `discarded`; absent while open.
    resolution: Option<String>,
    resolved_by: Option<String>,
    resolved_note: Option<String>,
    resolved_at: Option<DateTime<Utc>>,
    /// For a command: its outbox id.
    outbox_message_id: Option<Uuid>,
}

impl From<DeadLetterRecord> for DeadLetterDto {
    fn from(d: DeadLetterRecord) -> Self {
        Self {
            id: d.id,
            kind: if d.outbox_message_id.is_some() {
                "outbox"
            } else {
                "inbound"
            }
            .into(),
            channel: d.channel,
            reason: d.reason,
            raw_base64: base64::engine::general_purpose::STANDARD.encode(&d.raw),
            raw_text: String::from_utf8(d.raw).ok(),
            headers: d.headers,
            received_at: d.received_at,
            resolution: d.resolution.map(|r| r.as_str().to_owned()),
            resolved_by: d.resolved_by,
            resolved_note: d.resolved_note,
            resolved_at: d.resolved_at,
            outbox_message_id: d.outbox_message_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterPage {
    items: Vec<DeadLetterDto>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only those not yet redriven or discarded (the default).
    open_only: Option<bool>,
    /// Only ids greater than this.
    after: Option<i64>,
    /// 1 to 500; 50 when absent.
    limit: Option<i64>,
}

/// Why an admin redrives or discards a dead letter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveRequest {
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RedriveResult {
    /// For a reply: `applied`, `duplicate` (it had been applied before) or
    /// `ignored` (the saga had moved on; recorded, not applied). For a command:
    /// `requeued` (it goes out again with a fresh publish budget).
    outcome: String,
    dead_letter: DeadLetterDto,
}

/// Dead letters, oldest first.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "dead letters",
    params(ListQuery),
    responses(
        (status = 200, description = "One page", body = DeadLetterPage),
        (status = 400, description = "Bad query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}, got {limit}"
        )));
    }
    let rows = state
        .queries
        .dead_letters(query.open_only.unwrap_or(true), query.after, limit)
        .await?;
    let next_after = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|d| d.id))
        .flatten();
    Ok(HttpResponse::Ok().json(DeadLetterPage {
        items: rows.into_iter().map(Into::into).collect(),
        next_after,
    }))
}

/// One dead letter.
#[utoipa::path(
    get, path = "/v1/dead-letters/{id}", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses(
        (status = 200, description = "The dead letter", body = DeadLetterDto),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let letter = find(&state, &path).await?;
    Ok(HttpResponse::Ok().json(DeadLetterDto::from(letter)))
}

/// Redrive a dead letter: apply an inbound message once more (still unusable →
/// 409, and it stays open), or send a command again with a fresh publish budget.
#[utoipa::path(
    post, path = "/v1/dead-letters/{id}/redrive", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Redriven", body = RedriveResult),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already resolved, or still unusable", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within http.body_timeout_ms", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded or stopping", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn redrive(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<Strict>,
) -> Result<HttpResponse, ApiError> {
    let reason = reason(body.into_inner().0)?;
    let id = parse_id(&path)?;
    let (outcome, letter) = state
        .orchestrator
        .redrive(id, &caller.name, &reason)
        .await
        .map_err(|e| not_found_as_asked(e, &path))?;
    Ok(HttpResponse::Ok().json(RedriveResult {
        outcome: outcome.as_str().into(),
        dead_letter: letter.into(),
    }))
}

/// Close a dead letter without applying it.
#[utoipa::path(
    post, path = "/v1/dead-letters/{id}/discard", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Discarded", body = DeadLetterDto),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already resolved", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within http.body_timeout_ms", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn discard(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
    body: web::Json<Strict>,
) -> Result<HttpResponse, ApiError> {
    let reason = reason(body.into_inner().0)?;
    let id = parse_id(&path)?;
    let letter = state
        .orchestrator
        .discard(id, &caller.name, &reason)
        .await
        .map_err(|e| not_found_as_asked(e, &path))?;
    Ok(HttpResponse::Ok().json(DeadLetterDto::from(letter)))
}

fn reason(body: Value) -> Result<String, ApiError> {
    let request: ResolveRequest = parse_body(body)?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "reason",
            "must say why",
        )]));
    }
    reason_within_limit(&request.reason)?;
    Ok(request.reason)
}

/// A dead letter's id; anything else names none.
fn parse_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| no_dead_letter(raw))
}

fn no_dead_letter(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no dead letter `{raw}`"))
}

/// A dead letter that is not there is named as the caller wrote it.
fn not_found_as_asked(e: RedriveError, raw: &str) -> ApiError {
    match e {
        RedriveError::NotFound(_) => no_dead_letter(raw),
        other => other.into(),
    }
}

async fn find(state: &AppState, raw_id: &str) -> Result<DeadLetterRecord, ApiError> {
    let id = parse_id(raw_id)?;
    state
        .queries
        .find_dead_letter(id)
        .await?
        .ok_or_else(|| no_dead_letter(raw_id))
}
