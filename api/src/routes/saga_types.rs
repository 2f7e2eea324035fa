//! `GET /v1/saga-types` and `GET /v1/saga-types/{type}/versions/{version}`:
//! the saga types this node runs, every stored version of each, its steps
//! and its start input's schema.

use actix_web::{web, HttpResponse};
use sagaplane_sagas::definition::{Action, Definition, LateReply};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// A saga type and its versions, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaTypeDto {
    saga_type: String,
    /// What a start that names no version runs under.
    newest_version: u32,
    versions: Vec<VersionDto>,
}

/// One version of a saga type.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionDto {
    version: u32,
    /// SHA-256 of the definition's content.
    hash: String,
    description: String,
    /// The start input's field that is the business key when a start gives none.
    business_key: Option<String>,
    /// JSON Schema of the start input.
    #[schema(value_type = Option<Object>)]
    input_schema: Option<Value>,
    /// The forward steps, in order.
    steps: Vec<StepDto>,
    /// Runs last whenever the saga compensates.
    final_compensation: Option<CommandDto>,
}

/// A forward step.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StepDto {
    #[serde(flatten)]
    command: CommandDto,
    /// Once it succeeded, failures are retried forward, never compensated.
    pivot: bool,
    /// The parallel group it is sent and awaited with, if any.
    group: Option<String>,
    /// The condition under which it runs (else it is skipped), as written.
    #[schema(value_type = Option<Object>)]
    when: Option<Value>,
    /// What a success arriving after the saga compensated without it does:
    /// `ignore` or `undo`.
    late_reply: String,
    /// JSON Schema of the result its reply carries.
    #[schema(value_type = Option<Object>)]
    result_schema: Option<Value>,
    undo: Option<CommandDto>,
}

/// What a step sends, to whom, and the event recording its success.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CommandDto {
    name: String,
    participant: String,
    command_type: String,
    event: String,
}

/// One version with its whole definition document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DefinitionDto {
    saga_type: String,
    #[serde(flatten)]
    version: VersionDto,
    /// The definition as loaded, as JSON.
    #[schema(value_type = Object)]
    document: Value,
}

fn command(a: &Action) -> CommandDto {
    CommandDto {
        name: a.name.clone(),
        participant: a.participant.clone(),
        command_type: a.command_type.clone(),
        event: a.event.clone(),
    }
}

fn version(d: &Definition) -> VersionDto {
    VersionDto {
        version: d.version,
        hash: d.hash.clone(),
        description: d.description.clone(),
        business_key: d.business_key.as_ref().map(|p| p.join(".")),
        input_schema: d.input_schema.as_ref().map(|s| s.document().clone()),
        steps: d
            .steps
            .iter()
            .zip(&d.document.steps)
            .map(|(s, written)| StepDto {
                command: command(&s.action),
                pivot: s.pivot,
                group: s.group.clone(),
                when: written
                    .when
                    .as_ref()
                    .map(|w| serde_json::to_value(w).expect("a condition serialises")),
                late_reply: match s.late_reply {
                    LateReply::Ignore => "ignore",
                    LateReply::Undo => "undo",
                }
                .to_owned(),
                result_schema: s.result_schema.as_ref().map(|r| r.document().clone()),
                undo: s.undo.as_ref().map(command),
            })
            .collect(),
        final_compensation: d.final_compensation.as_ref().map(command),
    }
}

/// The saga types and their versions.
#[utoipa::path(
    get, path = "/v1/saga-types", tag = "sagas",
    responses(
        (status = 200, description = "Every saga type, by name", body = Vec<SagaTypeDto>),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let catalog = state.orchestrator.catalog();
    let types: Vec<SagaTypeDto> = catalog
        .types()
        .map(|t| SagaTypeDto {
            saga_type: t.saga_type.clone(),
            newest_version: t.newest().version,
            versions: t.versions.values().map(|d| version(d)).collect(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(types))
}

/// One version of a saga type, with its definition.
#[utoipa::path(
    get, path = "/v1/saga-types/{saga_type}/versions/{version}", tag = "sagas",
    params(
        ("saga_type" = String, Path, description = "e.g. `order`"),
        ("version" = u32, Path, description = "e.g. 1"),
    ),
    responses(
        (status = 200, description = "The definition", body = DefinitionDto),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such type or version", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    state: web::Data<AppState>,
    path: web::Path<(String, u32)>,
) -> Result<HttpResponse, ApiError> {
    let (saga_type, number) = path.into_inner();
    let catalog = state.orchestrator.catalog();
    let definition = catalog
        .get(&saga_type)
        .and_then(|t| t.get(number))
        .ok_or_else(|| {
            ApiError::NotFound(format!("saga type `{saga_type}` has no version {number}"))
        })?;
    Ok(HttpResponse::Ok().json(DefinitionDto {
        saga_type: definition.saga_type.clone(),
        version: version(definition),
        document: serde_json::to_value(&definition.document).expect("a document serialises"),
    }))
}
