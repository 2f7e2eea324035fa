//! `POST /v1/ingress/eventbridge`: replies from AWS participants, as an
//! EventBridge API destination delivers them, with its connection's API key
//! or an OAuth access token (a bearer token with the `participant` role; see
//! [`crate::auth::admit_participant`]). Answered only after the reply's
//! step committed, so a failure makes EventBridge retry (and the inbox
//! de-duplicates what was applied before).

use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use sagaplane_orchestrator::codec::EVENTBRIDGE_CHANNEL;
use sagaplane_orchestrator::ports::DeadLetter;
use sagaplane_orchestrator::{ActorError, Handled, Ingested};
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem};

/// How much past its limit an oversized body is read to learn its length.
const OVERSIZE_READ_FACTOR: usize = 16;
use crate::state::AppState;

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
    let admitted =
        crate::auth::admit_participant(&http, settings.api_key.expose_secret(), &settings.header)
            .await;
    match admitted {
        None => {
            return Err(ApiError::NotFound(
                "the EventBridge ingress is not configured (ingress.eventbridge.api_key, \
                 or bearer tokens with the `participant` role)"
                    .into(),
            ))
        }
        Some(caller) => drop(caller?),
    }
    let limit = settings.max_body_bytes;
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
    if length > limit {
        // Kept before answering: EventBridge gives up on a 4xx, so this row
        // is all there is of the reply.
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
                channel: EVENTBRIDGE_CHANNEL.to_owned(),
                reason,
                raw,
                headers: json!({"length": length, "truncated_to": limit}),
                outbox_message_id: None,
            })
            .await
            .map_err(|_| ApiError::Unavailable)?;
        return Err(ApiError::PayloadTooLarge(limit));
    }
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
        Ok(Ingested::Handled(Handled::Applied { .. })) => "applied",
        Ok(Ingested::Handled(Handled::Duplicate)) => "duplicate",
        Ok(Ingested::Handled(Handled::DeadLettered)) => "dead_lettered",
        Ok(Ingested::Handled(_)) => "ignored",
        Err(e) => return Err(unavailable(e)),
    };
    Ok(HttpResponse::Ok().json(IngressResult {
        outcome: outcome.into(),
    }))
}

/// Anything that kept the reply from being applied now: EventBridge retries.
fn unavailable(e: ActorError) -> ApiError {
    match ApiError::from(e) {
        ApiError::Internal(e) => {
            tracing::error!(error.message = %e, "eventbridge reply not applied");
            ApiError::Unavailable
        }
        other => other,
    }
}
