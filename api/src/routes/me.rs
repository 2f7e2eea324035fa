//! `GET /v1/me`: who the presented token is and what it may do, so a client
//! (the console) offers only what the API would allow.

use actix_web::HttpResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::problem::{ApiError, Problem};

/// The caller as the API sees it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MeDto {
    /// The token's name, or a JWT's subject (recorded as the actor of what
    /// it does); `anonymous` when access control is off.
    name: String,
    /// Whether tokens (static or JWT) are accepted. When not, every role is
    /// granted.
    access_control: bool,
    /// `starter`, `viewer`, `operator`, `admin`, `participant`: each role
    /// held (an operator may also do what a viewer may, an admin what an
    /// operator may).
    roles: Vec<String>,
}

/// The caller: its name and roles. Any valid token may ask.
#[utoipa::path(
    get, path = "/v1/me", tag = "sagas",
    responses(
        (status = 200, description = "The caller", body = MeDto),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn me(caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(MeDto {
        access_control: caller.authenticated(),
        roles: caller
            .roles()
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        name: caller.name,
    }))
}
