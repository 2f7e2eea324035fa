//! `POST /v1/sagas/{id}/actions/{action}`: an operator's intervention, applied
//! through the saga's actor and recorded as an event with who and why.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use sagaplane_orchestrator::{ActionReport, ActorError};
// `ActionName` below is the OpenAPI description of the path segment.
use sagaplane_sagas::ActionName as Verb;
use sagaplane_sagas::{Action, ActionKind, Assume, FieldError, Rejection};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::sagas::{detailed, etag, parse_id, SagaDto};
use crate::auth::Caller;
use crate::json::Strict;
use crate::problem::{no_saga, parse_body, reason_within_limit, ApiError, Problem};
use crate::state::AppState;

/// Why the operator acts, and for `skip` the result to assume.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionRequest {
    /// Why; recorded in the saga's history.
    #[schema(min_length = 1, max_length = 2000, pattern = "\\S")]
    reason: String,
    /// `skip` only: take the step as `succeeded` or `failed`.
    assume: Option<AssumeDto>,
    /// `migrate` only: the version of the saga's definition to run on under.
    #[schema(minimum = 1)]
    to_version: Option<u32>,
    /// Who acts, when access control is off; with tokens, the token's name is recorded.
    operator: Option<String>,
}

/// The operator actions.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only describes the path; `action_kind` parses it.
pub(crate) enum ActionName {
    /// Send the current step again now, as one more attempt.
    Retry,
    /// Take the current step as done with the `assume`d result.
    Skip,
    /// Stop going forward and compensate now.
    Compensate,
    /// Continue a suspended saga: send its failed step once more.
    Resume,
    /// Stop where it is, without compensation.
    Cancel,
    /// Run on under another version (`to_version`) of the saga's definition.
    Migrate,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AssumeDto {
    Succeeded,
    Failed,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActionQuery {
    /// Decide and report what would happen, commit nothing.
    #[serde(default)]
    dry_run: bool,
}

/// What an action did (or, on a dry run, would do).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ActionResult {
    dry_run: bool,
    /// The saga's version after the action (unchanged by a dry run).
    version: u64,
    /// The saga's status after the action.
    status: String,
    /// The events appended (or that would be).
    events: Vec<PlannedEvent>,
    /// The commands sent (or that would be).
    commands: Vec<PlannedCommand>,
    /// The saga after the action; absent on a dry run.
    saga: Option<SagaDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlannedEvent {
    #[serde(rename = "type")]
    event_type: String,
    #[schema(value_type = Object)]
    data: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlannedCommand {
    /// The outbox id (a dry run's is never used).
    message_id: Uuid,
    step: String,
    attempt: u32,
    participant: String,
    command_type: String,
    idempotency_key: String,
    #[schema(value_type = Object)]
    data: Value,
}

/// Act on a saga: `retry` the current step, `skip` it with an assumed result,
/// `compensate` now, `resume` a suspended saga, `cancel` it without
/// compensation, or `migrate` it to another version of its definition (409
/// naming the steps the target version lacks).
#[utoipa::path(
    post, path = "/v1/sagas/{id}/actions/{action}", tag = "operators",
    params(
        ("id" = Uuid, Path, description = "Saga id"),
        ("action" = ActionName, Path, description = "What to do"),
        ("If-Match" = Option<String>, Header, description = "The saga's ETag: refused with 412 if it moved on"),
        ActionQuery,
    ),
    request_body = ActionRequest,
    responses(
        (status = 200, description = "Applied, or predicted on a dry run", body = ActionResult,
         headers(("ETag" = String, description = "The saga's version after the action (not on a dry run)"))),
        (status = 400, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such saga or action", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not allowed in the saga's state; says which actions are", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "If-Match did not match the saga's version", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within http.body_timeout_ms", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Overloaded or stopping", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn act(
    state: web::Data<AppState>,
    caller: Caller,
    http: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<ActionQuery>,
    body: web::Json<Strict>,
) -> Result<HttpResponse, ApiError> {
    let (raw_id, name) = path.into_inner();
    let id = parse_id(&raw_id)?;
    let request: ActionRequest = parse_body(body.into_inner().0)?;
    let kind = action_kind(&name, request.assume, request.to_version)?;
    reason_within_limit(&request.reason)?;
    let operator = match (caller.authenticated(), request.operator) {
        (false, Some(o)) if !o.trim().is_empty() => o,
        _ => caller.name.clone(),
    };
    let expected = if_match(&http, &state, id).await?;
    let action = Action {
        kind,
        operator,
        reason: request.reason,
    };
    let report = state
        .orchestrator
        .act(id, action, expected, query.dry_run)
        .await
        .map_err(|e| match e {
            ActorError::Rejected(Rejection::NotAllowed {
                action,
                status,
                allowed,
            }) => ApiError::NotAllowed {
                // The saga's own words: action, status and what is allowed now.
                detail: Rejection::NotAllowed {
                    action,
                    status,
                    allowed: allowed.clone(),
                }
                .to_string(),
                saga_status: status.as_str().to_owned(),
                allowed_actions: allowed,
            },
            ActorError::Rejected(Rejection::Terminal(status)) => ApiError::NotAllowed {
                detail: format!("the saga is {status} and accepts no action"),
                saga_status: status.as_str().to_owned(),
                allowed_actions: Vec::new(),
            },
            ActorError::Invalid(errors) | ActorError::Rejected(Rejection::Invalid(errors)) => {
                ApiError::Invalid(errors)
            }
            ActorError::Rejected(rejection @ Rejection::NotMigratable { .. }) => {
                ApiError::Conflict(rejection.to_string())
            }
            ActorError::VersionMismatch { expected, current } => ApiError::PreconditionFailed {
                asked: expected.to_string(),
                current,
            },
            other => other.into(),
        })?;
    let saga = if report.dry_run {
        None
    } else {
        match state.orchestrator.saga(id).await? {
            Some(r) => Some(detailed(&state, r).await?),
            None => None,
        }
    };
    let mut response = HttpResponse::Ok();
    if !report.dry_run {
        // A dry run leaves the saga's version, so it gives out no new ETag.
        response.insert_header(etag(report.version as i64));
    }
    Ok(response.json(result(report, saga)))
}

fn result(report: ActionReport, saga: Option<SagaDto>) -> ActionResult {
    ActionResult {
        dry_run: report.dry_run,
        version: report.version,
        status: report.status.as_str().to_owned(),
        events: report
            .events
            .into_iter()
            .map(|e| PlannedEvent {
                event_type: e.event_type.to_owned(),
                data: e.data,
            })
            .collect(),
        commands: report
            .commands
            .into_iter()
            .map(|c| PlannedCommand {
                message_id: c.message_id,
                step: c.step,
                attempt: c.attempt,
                participant: c.participant,
                command_type: c.command_type,
                idempotency_key: c.idempotency_key,
                data: c.data,
            })
            .collect(),
        saga,
    }
}

fn action_kind(
    name: &str,
    assume: Option<AssumeDto>,
    to_version: Option<u32>,
) -> Result<ActionKind, ApiError> {
    let Some(name) = Verb::parse(name) else {
        let names: Vec<&str> = Verb::ALL.iter().map(|a| a.as_str()).collect();
        return Err(ApiError::NotFound(format!(
            "there is no action `{name}`; actions: {}",
            names.join(", ")
        )));
    };
    let invalid = |field: &str, why: &str| ApiError::Invalid(vec![FieldError::new(field, why)]);
    if assume.is_some() && name != Verb::Skip {
        return Err(invalid("assume", "only `skip` takes a result to assume"));
    }
    if to_version.is_some() && name != Verb::Migrate {
        return Err(invalid("to_version", "only `migrate` takes a version"));
    }
    Ok(match name {
        Verb::Skip => ActionKind::Skip {
            assume: match assume {
                Some(AssumeDto::Succeeded) => Assume::Succeeded,
                Some(AssumeDto::Failed) => Assume::Failed,
                None => {
                    return Err(invalid(
                        "assume",
                        "skip needs the result to assume: `succeeded` or `failed`",
                    ))
                }
            },
        },
        Verb::Migrate => ActionKind::Migrate {
            to_version: to_version.ok_or_else(|| {
                invalid(
                    "to_version",
                    "migrate needs the version to move the saga to",
                )
            })?,
        },
        Verb::Retry => ActionKind::Retry,
        Verb::Compensate => ActionKind::Compensate,
        Verb::Resume => ActionKind::Resume,
        Verb::Cancel => ActionKind::Cancel,
    })
}

/// The version `If-Match` asks for: `None` without the header or with `*`.
/// Anything but one strong ETag this API gave out can never match: 412.
async fn if_match(
    http: &HttpRequest,
    state: &AppState,
    id: sagaplane_sagas::SagaId,
) -> Result<Option<u64>, ApiError> {
    let Some(value) = http.headers().get(header::IF_MATCH) else {
        return Ok(None);
    };
    let raw = value.to_str().unwrap_or("").trim();
    if raw == "*" {
        return Ok(None);
    }
    let parsed = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .and_then(|v| v.parse::<u64>().ok());
    match parsed {
        Some(v) => Ok(Some(v)),
        None => {
            let current = state
                .orchestrator
                .saga(id)
                .await?
                .map(|r| r.version as u64)
                .ok_or_else(|| no_saga(&id.to_string()))?;
            Err(ApiError::PreconditionFailed {
                asked: raw.chars().take(100).collect(),
                current,
            })
        }
    }
}
