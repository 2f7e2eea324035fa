//! Bearer tokens with roles: static tokens from the configuration and, with
//! `[auth.jwt]`, access tokens (JWTs) of an identity provider ([`jwt`]).
//! With neither configured the API is open (the local default, warned about
//! at start); once either is, every route but health, `/openapi.json` and
//! `/docs` needs a token with the right role. An app that was not given its
//! tokens ([`AccessTokens`]) refuses every request that needs a [`Caller`]
//! (500): authentication fails closed.
//!
//! The role a route needs is stated once, in the route table; [`admit`]
//! checks it from the headers alone, before anything reads the body. An
//! ingress checks its own way in with [`admit_participant`].

pub mod jwt;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

pub use crate::configuration::{Role, TokenSettings};
use crate::problem::ApiError;
use jwt::{JwtVerifier, Refusal};

/// What each role grants; [`Role`] itself is a configuration type.
impl Role {
    fn grants(self, needed: Role) -> bool {
        use Role::*;
        matches!(
            (self, needed),
            (Starter, Starter)
                | (Viewer, Viewer)
                | (Operator, Viewer | Operator)
                | (Admin, Viewer | Operator | Admin)
                | (Participant, Participant)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Starter => "starter",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Participant => "participant",
        }
    }
}

/// The accepted tokens, registered as app data (beside `AppState`) by the
/// composition root; [`Caller`] reads them. Neither static tokens nor a JWT
/// verifier: access control is off.
#[derive(Default)]
pub(crate) struct AccessTokens {
    pub tokens: Vec<TokenSettings>,
    pub jwt: Option<Arc<JwtVerifier>>,
}

impl AccessTokens {
    /// Whether any token is accepted (else the API is open).
    pub fn access_control(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }
}

/// Who made a request. Taking it as a handler argument authenticates the
/// request; [`Caller::require`] then authorises it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    /// `None` when access control is off: everything is allowed.
    roles: Option<Vec<Role>>,
}

impl Caller {
    pub fn require(&self, needed: Role) -> Result<(), ApiError> {
        match &self.roles {
            None => Ok(()),
            Some(roles) if roles.iter().any(|r| r.grants(needed)) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(format!(
                "this token lacks the `{}` role",
                needed.as_str()
            ))),
        }
    }

    /// The roles the caller holds: every role when access control is off.
    pub fn roles(&self) -> Vec<Role> {
        match &self.roles {
            Some(roles) => roles.clone(),
            None => vec![
                Role::Starter,
                Role::Viewer,
                Role::Operator,
                Role::Admin,
                Role::Participant,
            ],
        }
    }

    /// Whether access control is on (so `name` is a verified identity: a
    /// static token's name or a JWT's subject).
    pub fn authenticated(&self) -> bool {
        self.roles.is_some()
    }
}

/// The token of an `Authorization: Bearer` header; the scheme's name is
/// case-insensitive (RFC 9110, 11.1).
fn bearer(presented: Option<&str>) -> Result<&str, ApiError> {
    presented
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("an `Authorization: Bearer` token is required".into())
        })
}

/// The static token presented, compared against every configured one in
/// constant time so the comparison leaks nothing about near misses.
fn static_token(tokens: &[TokenSettings], presented: &str) -> Option<Caller> {
    let mut found = None;
    for t in tokens {
        let token = t.token.expose_secret().as_bytes();
        if bool::from(token.ct_eq(presented.as_bytes())) && found.is_none() {
            found = Some(t);
        }
    }
    found.map(|t| Caller {
        name: t.name.clone(),
        roles: Some(t.roles.clone()),
    })
}

/// Finds the static token presented (the API's only way in without `[auth.jwt]`).
pub fn authenticate(tokens: &[TokenSettings], presented: Option<&str>) -> Result<Caller, ApiError> {
    if tokens.is_empty() {
        return Ok(Caller {
            name: "anonymous".into(),
            roles: None,
        });
    }
    let presented = bearer(presented)?;
    static_token(tokens, presented)
        .ok_or_else(|| ApiError::Unauthorized("the token is not valid".into()))
}

/// The caller a bearer header names: a static token, else a JWT the
/// identity provider signed.
pub(crate) async fn authenticate_any(
    access: &AccessTokens,
    presented: Option<&str>,
) -> Result<Caller, ApiError> {
    let Some(verifier) = &access.jwt else {
        return authenticate(&access.tokens, presented);
    };
    let presented = bearer(presented)?;
    if let Some(caller) = static_token(&access.tokens, presented) {
        return Ok(caller);
    }
    match verifier.verify(presented).await {
        Ok(verified) => Ok(Caller {
            name: verified.subject,
            roles: Some(verified.roles),
        }),
        Err(Refusal::KeysUnavailable) => {
            tracing::warn!("a JWT could not be checked: no signing keys could be fetched");
            Err(ApiError::Unavailable)
        }
        // Neither a configured token nor a JWT: say only that.
        Err(Refusal::Malformed) if !access.tokens.is_empty() => {
            Err(ApiError::Unauthorized("the token is not valid".into()))
        }
        Err(refusal) => Err(ApiError::Unauthorized(format!(
            "the token is not valid: {refusal}"
        ))),
    }
}

/// The caller of `req`, from its `Authorization` header.
async fn caller_of(req: &HttpRequest) -> Result<Caller, ApiError> {
    // No tokens registered is a broken set-up, not an open API.
    let Some(access) = req.app_data::<web::Data<AccessTokens>>() else {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "the app has no access tokens registered, so no request is let through"
        )));
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    authenticate_any(access, presented).await
}

/// Route middleware for a route that needs `role`: a request without a
/// token granting it is refused before its body is read (a client without
/// the role cannot hold a worker with a slow body), and the handler finds
/// the [`Caller`] already made.
pub(crate) async fn admit(
    role: Role,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let caller = caller_of(req.request()).await?;
    caller.require(role)?;
    req.extensions_mut().insert(caller);
    next.call(req).await
}

/// Whether an ingress with the key `api_key` can admit anyone: it has a key,
/// or bearer tokens are checked. Off, it answers 404.
pub(crate) fn participant_ingress_on(req: &HttpRequest, api_key: &str) -> bool {
    !api_key.is_empty() || bearer_tokens_checked(req)
}

fn bearer_tokens_checked(req: &HttpRequest) -> bool {
    req.app_data::<web::Data<AccessTokens>>()
        .is_some_and(|a| a.access_control())
}

/// Where an ingress's key may come: a header, and perhaps a query parameter.
pub(crate) struct KeyPlaces<'a> {
    pub header: &'a str,
    pub query: Option<&'a str>,
}

impl KeyPlaces<'_> {
    /// The key `req` presents, if any: its header first.
    fn presented(&self, req: &HttpRequest) -> Option<Vec<u8>> {
        if let Some(value) = req.headers().get(self.header) {
            return Some(value.as_bytes().to_vec());
        }
        let name = self.query?;
        form_urlencoded::parse(req.query_string().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned().into_bytes())
    }

    fn describe(&self) -> String {
        match self.query {
            Some(query) => format!(
                "in the `{}` header or the `{query}` query parameter",
                self.header
            ),
            None => format!("in the `{}` header", self.header),
        }
    }
}

/// The way into an ingress: its own API key (`api_key`, presented in one of
/// `places`) when the request presents one, else a bearer token (static or
/// JWT) with the `participant` role. `None` when neither can succeed, so
/// the ingress is off: no key and access control off.
pub(crate) async fn admit_participant(
    req: &HttpRequest,
    api_key: &str,
    places: KeyPlaces<'_>,
) -> Option<Result<Caller, ApiError>> {
    if !participant_ingress_on(req, api_key) {
        return None;
    }
    let bearer_on = bearer_tokens_checked(req);
    let key_refused = || {
        ApiError::Unauthorized(format!(
            "a valid API key is required {}{}",
            places.describe(),
            if bearer_on {
                ", or a bearer token with the `participant` role"
            } else {
                ""
            }
        ))
    };
    if let Some(presented) = places.presented(req) {
        let matches = !api_key.is_empty() && bool::from(presented.ct_eq(api_key.as_bytes()));
        return Some(if matches {
            Ok(Caller {
                name: "api key".into(),
                roles: Some(vec![Role::Participant]),
            })
        } else {
            Err(key_refused())
        });
    }
    if !bearer_on || !req.headers().contains_key(header::AUTHORIZATION) {
        return Some(Err(key_refused()));
    }
    Some(caller_of(req).await.and_then(|caller| {
        caller.require(Role::Participant)?;
        Ok(caller)
    }))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admitted = req.extensions().get::<Caller>().cloned();
        let req = req.clone();
        Box::pin(async move {
            match admitted {
                Some(caller) => Ok(caller),
                None => caller_of(&req).await,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::StatusCode;
    use actix_web::{test as http, App};

    use super::*;

    fn tokens() -> Vec<TokenSettings> {
        vec![
            TokenSettings {
                name: "ops".into(),
                token: "op-secret".into(),
                roles: vec![Role::Operator],
            },
            TokenSettings {
                name: "svc".into(),
                token: "start-secret".into(),
                roles: vec![Role::Starter],
            },
        ]
    }

    #[test]
    fn roles_nest_as_documented() {
        let ops = authenticate(&tokens(), Some("Bearer op-secret")).unwrap();
        assert_eq!(ops.name, "ops");
        assert!(ops.require(Role::Viewer).is_ok());
        assert!(ops.require(Role::Operator).is_ok());
        assert!(matches!(
            ops.require(Role::Admin),
            Err(ApiError::Forbidden(_))
        ));
        assert!(matches!(
            ops.require(Role::Starter),
            Err(ApiError::Forbidden(_))
        ));
        let svc = authenticate(&tokens(), Some("Bearer start-secret")).unwrap();
        assert!(svc.require(Role::Starter).is_ok());
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let caller = authenticate(&tokens(), Some(&format!("{scheme} start-secret")));
            assert_eq!(caller.unwrap().name, svc.name, "{scheme}");
        }
        assert!(svc.require(Role::Viewer).is_err());
    }

    #[test]
    fn missing_or_wrong_tokens_are_unauthorized_and_no_tokens_means_open() {
        for presented in [
            None,
            Some("op-secret"),
            Some("Bearer op-secre"),
            Some("Bearer "),
            Some("Basic op-secret"),
            Some("Bearerop-secret"),
        ] {
            assert!(matches!(
                authenticate(&tokens(), presented),
                Err(ApiError::Unauthorized(_))
            ));
        }
        let open = authenticate(&[], None).unwrap();
        assert!(!open.authenticated());
        assert!(open.require(Role::Admin).is_ok());
    }

    /// A `GET /` answering with the caller's name, on an app with `tokens`
    /// registered (or none at all).
    async fn call(
        tokens: Option<Vec<TokenSettings>>,
        authorization: Option<&str>,
    ) -> (StatusCode, String) {
        let mut app = App::new();
        if let Some(tokens) = tokens {
            app = app.app_data(web::Data::new(AccessTokens { tokens, jwt: None }));
        }
        let app = http::init_service(app.route(
            "/",
            web::get().to(|caller: Caller| async move { caller.name }),
        ))
        .await;
        let mut request = http::TestRequest::get().uri("/");
        if let Some(value) = authorization {
            request = request.insert_header((header::AUTHORIZATION, value));
        }
        let response = http::call_service(&app, request.to_request()).await;
        let status = response.status();
        let body = http::read_body(response).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[actix_web::test]
    async fn an_app_without_its_tokens_refuses_every_request() {
        for authorization in [None, Some("Bearer op-secret")] {
            let (status, body) = call(None, authorization).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert!(!body.contains("anonymous"), "{body}");
        }
    }

    #[actix_web::test]
    async fn no_tokens_is_open_and_configured_tokens_are_required() {
        assert_eq!(
            call(Some(vec![]), None).await,
            (StatusCode::OK, "anonymous".into())
        );
        assert_eq!(call(Some(tokens()), None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(
            call(Some(tokens()), Some("Bearer wrong")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(Some(tokens()), Some("Bearer op-secret")).await,
            (StatusCode::OK, "ops".into())
        );
    }
}
