//! Replies pushed by a participant's channel, each answered only after what
//! it carried is stored, so a failure makes the channel retry (and the inbox
//! de-duplicates what was applied before). Both take their own API key or an
//! OAuth access token (a bearer token with the `participant` role; see
//! [`crate::auth::admit_participant`]).
//!
//! - `POST /v1/ingress/eventbridge`: replies from AWS participants, as an
//!   EventBridge API destination delivers them.
//! - `POST /v1/ingress/eventgrid`: replies an Event Grid subscription pushes
//!   in the CloudEvents schema, one or a batch; `OPTIONS` answers its
//!   validation handshake.

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use sagaplane_orchestrator::codec::{self, EVENTBRIDGE_CHANNEL, EVENTGRID_CHANNEL};
use sagaplane_orchestrator::ports::DeadLetter;
use sagaplane_orchestrator::{ActorError, Handled, Ingested};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::KeyPlaces;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// How much past its limit an oversized body is read to learn its length.
const OVERSIZE_READ_FACTOR: usize = 16;

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IngressResult {
    /// `applied`, `duplicate` (handled before), `ignored` (the saga had moved
    /// on; recorded) or `dead_lettered` (no such saga; kept for an operator).
    outcome: String,
}

/// A reply from an AWS participant: the EventBridge event whose `detail` is
/// the reply CloudEvent (or that CloudEvent alone).
#[utoipa::path(
    post, path = "/v1/ingress/eventbridge", tag = "ingress",
    request_body(content = Object, description = "An EventBridge event with the reply CloudEvent as `detail`"),
    responses(
        (status = 200, description = "Handled (after commit)", body = IngressResult),
        (status = 400, description = "Not a reply CloudEvent; kept as a dead letter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key or bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token lacks the `participant` role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The EventBridge ingress is not configured: no API key, and no bearer tokens are accepted", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within http.body_timeout_ms", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Not handled now (or the identity provider's keys could not be fetched); send it again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("eventbridge_api_key" = []), ("bearer" = []))
)]
pub(crate) async fn eventbridge(
    state: web::Data<AppState>,
    http: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.ingress.eventbridge;
    let places = KeyPlaces {
        header: &settings.header,
        query: None,
    };
    let off = || {
        ApiError::NotFound(
            "the EventBridge ingress is not configured (ingress.eventbridge.api_key, \
             or bearer tokens with the `participant` role)"
                .into(),
        )
    };
    admit(&http, settings.api_key.expose_secret(), places, off).await?;
    let raw = read_delivery(
        &state,
        &mut payload,
        settings.max_body_bytes,
        EVENTBRIDGE_CHANNEL,
    )
    .await?;
    let outcome = match state
        .orchestrator
        .ingest(EVENTBRIDGE_CHANNEL, raw, json!({}))
        .await
    {
        Ok(Ingested::Unusable(reason)) => {
            return Err(ApiError::BadRequest(format!(
                "{reason}; the message was kept as a dead letter"
            )))
        }
        Ok(Ingested::Handled(handled)) => handled_outcome(&handled),
        Err(e) => return Err(unavailable(e)),
    };
    Ok(HttpResponse::Ok().json(IngressResult {
        outcome: outcome.into(),
    }))
}

/// Lets in a caller with the ingress's key or a token with the `participant`
/// role; `off` is the answer when the ingress can let in no one.
async fn admit(
    http: &HttpRequest,
    key: &str,
    places: KeyPlaces<'_>,
    off: impl FnOnce() -> ApiError,
) -> Result<(), ApiError> {
    match crate::auth::admit_participant(http, key, places).await {
        None => Err(off()),
        Some(caller) => caller.map(drop),
    }
}

/// Anything that kept the reply from being applied now: the channel retries.
fn unavailable(e: ActorError) -> ApiError {
    match ApiError::from(e) {
        ApiError::Internal(e) => {
            tracing::error!(error.message = %e, "reply not applied");
            ApiError::Unavailable
        }
        other => other,
    }
}

/// Reads a delivery's body up to `limit` bytes. A larger one is kept as a
/// dead letter of `channel`, cut to `limit`, before the `413`: a channel
/// gives up on a 4xx, so that row is all there is of it.
async fn read_delivery(
    state: &AppState,
    payload: &mut web::Payload,
    limit: usize,
    channel: &str,
) -> Result<Vec<u8>, ApiError> {
    let mut raw = Vec::new();
    let mut length = 0usize;
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(crate::body::read_error)?;
        length += chunk.len();
        let room = limit.saturating_sub(raw.len());
        raw.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if length > limit.saturating_mul(OVERSIZE_READ_FACTOR) {
            break;
        }
    }
    if length <= limit {
        return Ok(raw);
    }
    let at_least = if length > limit.saturating_mul(OVERSIZE_READ_FACTOR) {
        "at least "
    } else {
        ""
    };
    let reason = format!(
        "the message is {at_least}{length} bytes, more than the {limit} allowed; \
         kept cut to its first {limit} bytes"
    );
    state
        .orchestrator
        .dead_letter(DeadLetter {
            channel: channel.to_owned(),
            reason,
            raw,
            headers: json!({"length": length, "truncated_to": limit}),
            outbox_message_id: None,
        })
        .await
        .map_err(|_| ApiError::Unavailable)?;
    Err(ApiError::PayloadTooLarge(limit))
}

/// What became of each event of an Event Grid delivery, in its order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventGridResult {
    events: Vec<EventOutcome>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventOutcome {
    /// The event's `id`, when it has one.
    id: Option<String>,
    /// `applied`, `duplicate`, `ignored`, `dead_lettered` (as for
    /// EventBridge), `unusable` (not a reply; kept as a dead letter with its
    /// bytes) or `not_stored` (the whole delivery is answered 503 and retried).
    outcome: String,
    /// Why it was unusable.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// The `aeg-` headers of a delivery, kept with each of its dead letters.
fn delivery_headers(http: &HttpRequest, index: Option<usize>) -> serde_json::Value {
    let header = |name: &str| {
        http.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    json!({
        "subscription": header("aeg-subscription-name"),
        "delivery_count": header("aeg-delivery-count"),
        "batch_index": index,
    })
}

/// Replies pushed by an Event Grid subscription with the CloudEvents 1.0
/// schema: one reply CloudEvent, or a batch of them. Each event is applied
/// through the inbox on its own; one that is not a usable reply is kept as a
/// dead letter with its own bytes. Answered 200 when every event is stored
/// (applied, a duplicate, or kept as a dead letter), so Event Grid retries a
/// delivery only when something in it was not.
#[utoipa::path(
    post, path = "/v1/ingress/eventgrid", tag = "ingress",
    request_body(content = Object, description = "A reply CloudEvent (`application/cloudevents+json`) or a JSON array of them (`application/cloudevents-batch+json`)"),
    params(("code" = Option<String>, Query, description = "The ingress key, when the subscription's webhook URL carries it (the parameter's name is configurable)")),
    responses(
        (status = 200, description = "Every event stored (after commit)", body = EventGridResult),
        (status = 400, description = "Not a CloudEvent or an array of them, a lone event that is not a usable reply, or a delivery in the Event Grid schema; kept as a dead letter (except the last)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong key or bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The bearer token lacks the `participant` role", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The Event Grid ingress is not configured: no key, and no bearer tokens are accepted", body = Problem, content_type = "application/problem+json"),
        (status = 408, description = "The body did not arrive within http.body_timeout_ms", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large; kept as a dead letter, cut", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Something was not stored now (or the identity provider's keys could not be fetched); send it all again", body = Problem, content_type = "application/problem+json"),
    ),
    security(("eventgrid_key" = []), ("eventgrid_key_header" = []), ("bearer" = []))
)]
pub(crate) async fn eventgrid(
    state: web::Data<AppState>,
    http: HttpRequest,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.ingress.eventgrid;
    let places = KeyPlaces {
        header: &settings.header,
        query: Some(&settings.query_parameter),
    };
    admit(&http, settings.key.expose_secret(), places, eventgrid_off).await?;
    let event_type = http.headers().get("aeg-event-type");
    if event_type.is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"SubscriptionValidation")) {
        return Err(ApiError::BadRequest(
            "this is a delivery in the Event Grid event schema; sagaplane takes the \
             CloudEvents 1.0 schema: set the subscription's event delivery schema to \
             CloudEventSchemaV1_0"
                .into(),
        ));
    }
    let raw = read_delivery(
        &state,
        &mut payload,
        settings.max_body_bytes,
        EVENTGRID_CHANNEL,
    )
    .await?;
    let events = match codec::split_eventgrid_delivery(&raw) {
        Ok(events) => events,
        Err(e) => {
            let reason = codec::printable(&e.to_string());
            state
                .orchestrator
                .dead_letter(DeadLetter {
                    channel: EVENTGRID_CHANNEL.to_owned(),
                    reason: reason.clone(),
                    raw: raw.clone(),
                    headers: delivery_headers(&http, None),
                    outbox_message_id: None,
                })
                .await
                .map_err(|_| ApiError::Unavailable)?;
            return Err(ApiError::BadRequest(format!(
                "{reason}; the delivery was kept as a dead letter"
            )));
        }
    };
    let batch = events.batch;
    let mut outcomes = Vec::with_capacity(events.events.len());
    let mut stored = true;
    for (i, event) in events.events.into_iter().enumerate() {
        let id = serde_json::from_slice::<EventId>(event)
            .ok()
            .and_then(|e| e.id);
        let headers = delivery_headers(&http, batch.then_some(i));
        let (outcome, reason) = match state
            .orchestrator
            .ingest(EVENTGRID_CHANNEL, event.to_vec(), headers)
            .await
        {
            Ok(Ingested::Unusable(reason)) => ("unusable", Some(reason)),
            Ok(Ingested::Handled(handled)) => (handled_outcome(&handled), None),
            Err(e) => {
                // The others are still applied, and Event Grid sends them
                // all again (duplicates the second time).
                tracing::error!(error.message = %e, "Event Grid reply not stored");
                stored = false;
                ("not_stored", None)
            }
        };
        outcomes.push(EventOutcome {
            id,
            outcome: outcome.into(),
            reason,
        });
    }
    if !stored {
        return Err(ApiError::Unavailable);
    }
    if let [EventOutcome {
        reason: Some(reason),
        ..
    }] = outcomes.as_slice()
    {
        if !batch {
            return Err(ApiError::BadRequest(format!(
                "{reason}; the message was kept as a dead letter"
            )));
        }
    }
    Ok(HttpResponse::Ok().json(EventGridResult { events: outcomes }))
}

#[derive(serde::Deserialize)]
struct EventId {
    id: Option<String>,
}

fn handled_outcome(handled: &Handled) -> &'static str {
    match handled {
        Handled::Applied { .. } => "applied",
        Handled::Duplicate => "duplicate",
        Handled::DeadLettered => "dead_lettered",
        _ => "ignored",
    }
}

fn eventgrid_off() -> ApiError {
    ApiError::NotFound(
        "the Event Grid ingress is not configured (ingress.eventgrid.key, \
         or bearer tokens with the `participant` role)"
            .into(),
    )
}

/// The CloudEvents webhook validation handshake, which Event Grid runs when a
/// subscription is made: an allowed `WebHook-Request-Origin` is answered with
/// `WebHook-Allowed-Origin`. It stores nothing, so it asks for no key (Event
/// Grid does not send a subscription's delivery headers with it).
#[utoipa::path(
    options, path = "/v1/ingress/eventgrid", tag = "ingress",
    params(("WebHook-Request-Origin" = Option<String>, Header, description = "The sender asking to deliver, `eventgrid.azure.net` for Event Grid")),
    responses(
        (status = 200, description = "Delivery from this origin is allowed (`WebHook-Allowed-Origin`, `WebHook-Allowed-Rate`)"),
        (status = 204, description = "No origin asked about; `Allow` lists the methods"),
        (status = 403, description = "The origin is not in ingress.eventgrid.allowed_origins", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The Event Grid ingress is not configured", body = Problem, content_type = "application/problem+json"),
    ),
    security(())
)]
pub(crate) async fn eventgrid_validation(
    state: web::Data<AppState>,
    http: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let settings = &state.ingress.eventgrid;
    if !crate::auth::participant_ingress_on(&http, settings.key.expose_secret()) {
        return Err(eventgrid_off());
    }
    let origin = http
        .headers()
        .get("webhook-request-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some(origin) = origin.filter(|o| !o.is_empty()) else {
        return Ok(HttpResponse::NoContent()
            .insert_header(("Allow", "OPTIONS, POST"))
            .finish());
    };
    let allowed = settings
        .allowed_origins
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin));
    if !allowed {
        return Err(ApiError::Forbidden(format!(
            "deliveries from `{}` are not allowed (ingress.eventgrid.allowed_origins)",
            codec::printable(origin)
        )));
    }
    Ok(HttpResponse::Ok()
        .insert_header(("WebHook-Allowed-Origin", origin))
        .insert_header(("WebHook-Allowed-Rate", "*"))
        .insert_header(("Allow", "OPTIONS, POST"))
        .finish())
}
