//! `GET /v1/sagas/{id}` (optionally waiting until it settles, with what it
//! waits for) and `GET /v1/sagas/{id}/events` (optionally with the state
//! after every event).

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use sagaplane_orchestrator::ports::{SagaRecord, StoreError, SUSPENDED_BY_SUPERVISOR};
use sagaplane_sagas::{SagaId, Status};
use serde::Deserialize;
use utoipa::IntoParams;

use super::dto::{
    etag, parse_id, state_dto, waiting_dto, EventDto, ReplyDto, SagaDto, SentCommandDto,
};
use crate::problem::{no_saga, ApiError, Problem};
use crate::state::AppState;

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
    /// Also return, on the last event of each step, the commands it sent
    /// (to whom, over which transport, when published, attempts) and, on the
    /// first event of a step a reply caused, that reply.
    #[serde(default)]
    with_messages: bool,
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
    http: HttpRequest,
    path: web::Path<String>,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let record = match query.wait {
        None | Some(0) => state.orchestrator.saga(id).await?,
        Some(seconds) if seconds <= state.http.max_wait_seconds => {
            settled(&state, &http, id, seconds).await?
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

/// The saga once it is terminal or suspended, or as it is after `seconds`, or
/// as it is when the client goes away (noticed once the wait has run 0.2 s;
/// one that only closed its sending side then gets its answer).
pub(crate) async fn settled(
    state: &AppState,
    http: &HttpRequest,
    id: SagaId,
    seconds: u64,
) -> Result<Option<SagaRecord>, ApiError> {
    let settled = state
        .orchestrator
        .wait_settled(id, Duration::from_secs(seconds));
    unless_gone(state, http, id, settled).await
}

/// `settled`'s outcome, or the saga as it is once the client goes away.
pub(crate) async fn unless_gone(
    state: &AppState,
    http: &HttpRequest,
    id: SagaId,
    settled: impl std::future::Future<Output = Result<Option<SagaRecord>, StoreError>>,
) -> Result<Option<SagaRecord>, ApiError> {
    Ok(tokio::select! {
        record = settled => record?,
        () = crate::connection::gone(http) => state.orchestrator.saga(id).await?,
    })
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
    let Some(snapshot) = state.orchestrator.inspect(id).await? else {
        return Err(no_saga(&id.to_string()));
    };
    saga.complete_from(&snapshot);
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
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let events = state.orchestrator.events(id).await?;
    if events.is_empty() {
        // Every saga has at least its start event.
        return Err(no_saga(&path));
    }
    let events: Vec<EventDto> = if query.with_state {
        let snapshots = state.orchestrator.replay(id).await?.unwrap_or_default();
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
    let events = if query.with_messages {
        let (commands, inbox) = state.queries.saga_messages(id).await?;
        let commands = commands
            .into_iter()
            .map(|c| {
                let transport = state
                    .transport_of(&c.participant, &c.command_type)
                    .to_owned();
                SentCommandDto::new(c, &transport)
            })
            .collect();
        let replies = inbox.into_iter().filter(|r| r.outcome == "applied");
        with_messages(events, commands, replies.map(ReplyDto::from).collect())
    } else {
        events
    };
    Ok(HttpResponse::Ok().json(events))
}

/// Puts each command on the last event committed with it (one step commits
/// its events and commands at one instant) and each applied reply on the
/// first event it caused. A command recorded between two steps' instants
/// (none is) would go to the step before it.
fn with_messages(
    mut events: Vec<EventDto>,
    commands: Vec<SentCommandDto>,
    replies: Vec<ReplyDto>,
) -> Vec<EventDto> {
    for command in commands {
        let at = command.created_at();
        if let Some(e) = events.iter_mut().rev().find(|e| e.recorded_at() <= at) {
            e.commands.get_or_insert_with(Vec::new).push(command);
        }
    }
    for reply in replies {
        if let Some(e) = events
            .iter_mut()
            .find(|e| e.recorded_at() == reply.received_at)
        {
            e.caused_by.get_or_insert(reply);
        }
    }
    for e in &mut events {
        e.commands.get_or_insert_with(Vec::new);
    }
    events
}
