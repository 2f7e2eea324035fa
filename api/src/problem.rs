//! RFC 9457 problem details: every error the API returns has this body.

use actix_web::body::{BodySize, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use sagaplane_orchestrator::{ActorError, RedriveError, StoreError};
use sagaplane_sagas::FieldError;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// An API error; the status and a human-readable detail, never internals.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("the request has invalid fields")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    NotFound(String),
    /// The path exists, with other methods.
    #[error("{method} is not allowed here; allowed: {}", allowed.join(", "))]
    MethodNotAllowed {
        method: String,
        allowed: Vec<&'static str>,
    },
    #[error("{0}")]
    Conflict(String),
    /// An action the saga's state does not allow: says which ones it does.
    #[error("{detail}")]
    NotAllowed {
        detail: String,
        saga_status: String,
        allowed_actions: Vec<&'static str>,
    },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// `If-Match` named another version.
    #[error("the saga is at version {current}; If-Match asked for {asked}")]
    PreconditionFailed { asked: String, current: u64 },
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body came too slowly; the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("the service is temporarily unavailable; try again")]
    Unavailable,
    #[error("not ready: {0}")]
    NotReady(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// Any other status, as a service not ours answered it.
    #[error("{}", .0.canonical_reason().unwrap_or("error").to_lowercase())]
    Other(StatusCode),
}

/// An RFC 9457 problem details body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Always `about:blank`: the status says what kind of problem it is.
    #[serde(rename = "type")]
    kind: &'static str,
    title: String,
    status: u16,
    /// What was wrong, for a person.
    detail: String,
    /// Each invalid field (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<InvalidField>)]
    errors: Vec<FieldError>,
    /// The saga's status, when an action is not allowed in it (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    saga_status: Option<String>,
    /// The actions allowed now, when an action is not allowed (409).
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_actions: Option<Vec<&'static str>>,
    /// The saga's current version, when `If-Match` did not match (412).
    #[serde(skip_serializing_if = "Option::is_none")]
    current_version: Option<u64>,
}

/// One invalid field of a request.
#[derive(Serialize, utoipa::ToSchema)]
pub struct InvalidField {
    /// Where: a field name or path such as `input.items[0].qty`.
    pub field: String,
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) | ApiError::NotAllowed { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Other(status) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if let ApiError::Internal(e) = self {
            tracing::error!(error.cause_chain = ?e, error.message = %e, "request failed");
        }
        let mut body = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            errors: Vec::new(),
            saga_status: None,
            allowed_actions: None,
            current_version: None,
        };
        match self {
            ApiError::Invalid(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                body.detail = format!("invalid fields: {}", fields.join(", "));
                body.errors = errors.clone();
            }
            ApiError::NotAllowed {
                saga_status,
                allowed_actions,
                ..
            } => {
                body.saga_status = Some(saga_status.clone());
                body.allowed_actions = Some(allowed_actions.clone());
            }
            ApiError::PreconditionFailed { current, .. } => body.current_version = Some(*current),
            _ => {}
        }
        // A detail may repeat what the client sent (a 60 KB saga type):
        // answer with the start of it.
        body.detail = capped(&body.detail);
        for e in &mut body.errors {
            e.field = capped(&e.field);
            e.message = capped(&e.message);
        }
        let mut response = HttpResponse::build(status);
        response.insert_header((header::CONTENT_TYPE, CONTENT_TYPE));
        if let ApiError::Unauthorized(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let ApiError::MethodNotAllowed { allowed, .. } = self {
            response.insert_header((header::ALLOW, allowed.join(", ")));
        }
        if let ApiError::RequestTimeout(_) = self {
            // The rest of the body may still come: the connection cannot be reused.
            response.force_close();
        }
        response.json(body)
    }
}

/// App middleware: an error answer made without a body by a service that is
/// not ours (the documentation pages' 404s) gets a problem body like every
/// other. (The HTTP server's own refusals of a malformed request — `400`,
/// `431`, `408` for slow headers — are written before any app code runs and
/// stay without a body.)
pub(crate) async fn explain_bare_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let bare = (status.is_client_error() || status.is_server_error())
        && !res.headers().contains_key(header::CONTENT_TYPE)
        && matches!(
            res.response().body().size(),
            BodySize::None | BodySize::Sized(0)
        );
    if !bare {
        return Ok(res.map_into_left_body());
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("no such resource".into()),
        other => ApiError::Other(other),
    };
    Ok(res
        .into_response(error.error_response())
        .map_into_right_body())
}

/// The longest text a problem echoes, in characters.
const MAX_ECHO: usize = 1_000;

fn capped(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO) {
        Some((end, _)) => format!(
            "{}… ({} characters in all)",
            &text[..end],
            text.chars().count()
        ),
        None => text.to_owned(),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Internal(e.into())
    }
}

/// What any input to a saga can fail with, as HTTP says it; a handler maps
/// the refusals particular to it (an action not allowed, invalid fields, a
/// stale `If-Match`) before falling back on this.
impl From<ActorError> for ApiError {
    fn from(e: ActorError) -> Self {
        match e {
            ActorError::Unavailable | ActorError::Contended => ApiError::Unavailable,
            ActorError::CrashLoop(reason) => ApiError::Conflict(format!(
                "the saga could not take this input and was suspended: {reason}"
            )),
            ActorError::UnknownSaga(id) => no_saga(&id.to_string()),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<RedriveError> for ApiError {
    fn from(e: RedriveError) -> Self {
        match e {
            RedriveError::NotFound(id) => {
                ApiError::NotFound(format!("there is no dead letter `{id}`"))
            }
            RedriveError::Vanished(id) => {
                ApiError::Internal(anyhow::anyhow!("dead letter {id} vanished"))
            }
            RedriveError::Actor(e) => e.into(),
            conflict => ApiError::Conflict(conflict.to_string()),
        }
    }
}

/// A saga id that names no saga (or is no id at all).
pub fn no_saga(raw: &str) -> ApiError {
    ApiError::NotFound(format!("there is no saga `{raw}`"))
}

/// Reads a JSON body as `T`; a mismatch names the field that is wrong (422).
pub fn parse_body<T: DeserializeOwned>(body: serde_json::Value) -> Result<T, ApiError> {
    if let Some(path) = nul_at(&body, String::new()) {
        return Err(ApiError::Invalid(vec![FieldError::new(
            if path.is_empty() { "body".into() } else { path },
            "must not contain the NUL character",
        )]));
    }
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".into() } else { path };
        ApiError::Invalid(vec![FieldError::new(field, e.inner().to_string())])
    })
}

/// Where a string (or key) holds U+0000, which PostgreSQL cannot store.
fn nul_at(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains('\0') => Some(path),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_at(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            if k.contains('\0') {
                Some(here)
            } else {
                nul_at(v, here)
            }
        }),
        _ => None,
    }
}

/// The longest reason an operator may give for an action, in bytes.
pub const MAX_REASON_BYTES: usize = 2_000;

/// An operator's reason for an action: at most [`MAX_REASON_BYTES`].
pub fn reason_within_limit(reason: &str) -> Result<(), ApiError> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::Invalid(vec![FieldError::new(
            "reason",
            format!("must be at most {MAX_REASON_BYTES} bytes"),
        )]));
    }
    Ok(())
}

/// A query parameter PostgreSQL can store: no U+0000.
pub fn no_nul(name: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.contains('\0') => Err(ApiError::BadRequest(format!(
            "{name} must not contain the NUL character"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_nul_anywhere_in_a_body_is_named() {
        let body = json!({"a": {"b": ["ok", "x\u{0}y"]}});
        assert_eq!(nul_at(&body, String::new()).as_deref(), Some("a.b[1]"));
        assert_eq!(
            nul_at(&json!({"k\u{0}": 1}), String::new()).as_deref(),
            Some("k\u{0}")
        );
        assert_eq!(nul_at(&json!({"a": ["fine"]}), String::new()), None);
    }
}
