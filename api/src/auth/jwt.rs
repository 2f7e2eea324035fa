//! Access tokens (JWTs) of an identity provider: signature checked against
//! the keys it publishes (a JWK Set, fetched and cached), then issuer,
//! audience, expiry and not-before; the subject names the caller and a
//! claim's values map to roles.
//!
//! The keys are fetched at start, again every `jwks_refresh_seconds`, and
//! when a token names a key not known (at most every `jwks_min_refetch_ms`,
//! so tokens with made-up key ids cannot make the server hammer the identity
//! provider). A fetch that fails keeps the keys already known: tokens signed
//! with them are still accepted.
//!
//! Nothing here depends on HTTP routes: [`JwtVerifier::verify`] is the one
//! check every entry point (the API's routes, an ingress) makes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::configuration::{JwtSettings, Role};

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The subject claim (`subject_claim`).
    pub subject: String,
    /// The roles its `roles_claim` values map to, each once.
    pub roles: Vec<Role>,
}

/// Why a token was not accepted. `Display` is the detail a client is shown:
/// it names the reason, never the token or any of its contents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("unsigned tokens (`alg: none`) are not accepted")]
    Unsigned,
    #[error("the token is signed with an algorithm not accepted here (accepted: {0})")]
    Algorithm(String),
    #[error("the token names no signing key (`kid`)")]
    NoKeyId,
    #[error("the token is signed with a key the identity provider does not publish")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    Issuer,
    #[error("the token is meant for another audience")]
    Audience,
    #[error("the token lacks the `{0}` claim")]
    MissingClaim(String),
    #[error("the token's `{0}` claim is malformed")]
    MalformedClaim(String),
    /// Not the token's fault: no key could be had to check it.
    #[error("the identity provider's signing keys could not be fetched; try again")]
    KeysUnavailable,
}

/// One signing key of the identity provider.
struct Key {
    key: DecodingKey,
    /// The algorithm the JWK is restricted to, if it says.
    algorithm: Option<Algorithm>,
}

/// The keys known, by key id.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<Key>>,
}

/// When the keys were last fetched, and whether that worked.
#[derive(Default)]
struct Fetches {
    last_attempt: Option<Instant>,
    failed: bool,
}

pub struct JwtVerifier {
    settings: JwtSettings,
    algorithms: Vec<Algorithm>,
    keys: RwLock<Arc<KeySet>>,
    /// Held while fetching, so concurrent misses make one fetch.
    fetches: tokio::sync::Mutex<Fetches>,
}

impl JwtVerifier {
    /// A verifier with no keys yet; `Err` if the settings are incomplete.
    pub fn new(settings: JwtSettings) -> Result<Self, String> {
        settings.check()?;
        let algorithms = settings.parsed_algorithms()?;
        Ok(Self {
            settings,
            algorithms,
            keys: RwLock::new(Arc::default()),
            fetches: tokio::sync::Mutex::new(Fetches::default()),
        })
    }

    /// Fetches the keys now; `Err` says why not (the keys known are kept).
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut fetches = self.fetches.lock().await;
        self.fetch(&mut fetches).await
    }

    async fn fetch(&self, fetches: &mut Fetches) -> Result<usize, String> {
        fetches.last_attempt = Some(Instant::now());
        let fetched = fetch_jwks(
            &self.settings.jwks_url,
            Duration::from_millis(self.settings.jwks_timeout_ms.max(1)),
        )
        .await;
        fetches.failed = fetched.is_err();
        let set = match fetched {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(url = %self.settings.jwks_url, error.message = %e, "the JWKS could not be fetched; the keys known are kept");
                return Err(e);
            }
        };
        let count = set.keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        tracing::debug!(url = %self.settings.jwks_url, keys = count, "JWKS fetched");
        Ok(count)
    }

    /// Fetches the keys every `jwks_refresh_seconds` while the verifier lives.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let every = Duration::from_secs(self.settings.jwks_refresh_seconds.max(1));
        let verifier: Weak<Self> = Arc::downgrade(self);
        actix_web::rt::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(verifier) = verifier.upgrade() else {
                    return;
                };
                let _ = verifier.refresh().await;
            }
        });
    }

    fn cached(&self, kid: &str) -> Option<Arc<Key>> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        keys.keys.get(kid).cloned()
    }

    /// The key `kid`, fetching the keys again if it is not known and the
    /// last fetch is old enough.
    async fn key(&self, kid: &str) -> Result<Arc<Key>, Refusal> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let mut fetches = self.fetches.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let min = Duration::from_millis(self.settings.jwks_min_refetch_ms);
        if fetches.last_attempt.is_some_and(|at| at.elapsed() < min) {
            // Whether the key exists cannot be known while the keys cannot be had.
            return Err(if fetches.failed {
                Refusal::KeysUnavailable
            } else {
                Refusal::UnknownKey
            });
        }
        let fetched = self.fetch(&mut fetches).await;
        match (self.cached(kid), fetched) {
            (Some(key), _) => Ok(key),
            (None, Ok(_)) => Err(Refusal::UnknownKey),
            (None, Err(_)) => Err(Refusal::KeysUnavailable),
        }
    }

    /// Checks `token`; the caller it names, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        let header = raw_header(token)?;
        let alg = match header.get("alg").and_then(Value::as_str) {
            None => return Err(Refusal::Malformed),
            Some(a) if a.eq_ignore_ascii_case("none") => return Err(Refusal::Unsigned),
            Some(a) => a,
        };
        let accepted = || {
            let names: Vec<String> = self.algorithms.iter().map(|a| format!("{a:?}")).collect();
            Refusal::Algorithm(names.join(", "))
        };
        let alg: Algorithm = alg.parse().map_err(|_| accepted())?;
        if !self.algorithms.contains(&alg) {
            return Err(accepted());
        }
        let kid = header
            .get("kid")
            .and_then(Value::as_str)
            .ok_or(Refusal::NoKeyId)?;
        let key = self.key(kid).await?;
        if key.algorithm.is_some_and(|a| a != alg) || key.key.family() != alg.family() {
            // The key is published for another algorithm than the token claims.
            return Err(Refusal::Signature);
        }
        let claims = jsonwebtoken::decode::<Value>(token, &key.key, &self.validation(alg))
            .map_err(|e| refusal(e.kind()))?
            .claims;
        if self.settings.audience_claim != "aud" {
            self.check_audience(&claims)?;
        }
        let subject = match claim(&claims, &self.settings.subject_claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(_) => return Err(Refusal::MalformedClaim(self.settings.subject_claim.clone())),
            None => return Err(Refusal::MissingClaim(self.settings.subject_claim.clone())),
        };
        Ok(Verified {
            subject,
            roles: self.roles(&claims)?,
        })
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.settings.leeway_seconds;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.settings.issuer]);
        let mut required = vec!["exp", "iss"];
        if self.settings.audience_claim == "aud" {
            v.set_audience(&self.settings.audience);
            required.push("aud");
        } else {
            v.validate_aud = false;
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// The audience in a claim other than `aud` (checked by hand).
    fn check_audience(&self, claims: &Value) -> Result<(), Refusal> {
        let name = &self.settings.audience_claim;
        let held: Vec<&str> = match claim(claims, name) {
            None => return Err(Refusal::MissingClaim(name.clone())),
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(Refusal::MalformedClaim(name.clone())),
        };
        if held
            .iter()
            .any(|h| self.settings.audience.iter().any(|a| a == h))
        {
            Ok(())
        } else {
            Err(Refusal::Audience)
        }
    }

    /// The roles granted by the values of `roles_claim`: none when the
    /// token lacks the claim (it may still ask who it is).
    fn roles(&self, claims: &Value) -> Result<Vec<Role>, Refusal> {
        let values: Vec<&str> = match claim(claims, &self.settings.roles_claim) {
            None => Vec::new(),
            Some(Value::String(s)) => s.split_whitespace().collect(),
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(Refusal::MalformedClaim(self.settings.roles_claim.clone())),
        };
        let mut roles = Vec::new();
        for value in values {
            if let Some(role) = self.settings.roles.get(value) {
                if !roles.contains(role) {
                    roles.push(*role);
                }
            }
        }
        Ok(roles)
    }
}

/// The claim `name`: a top-level claim of that name, else a dotted path
/// into nested objects (`realm_access.roles`).
fn claim<'a>(claims: &'a Value, name: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    name.split('.')
        .try_fold(claims, |value, part| value.get(part))
}

/// The token's header as JSON, before anything trusts it.
fn raw_header(token: &str) -> Result<serde_json::Map<String, Value>, Refusal> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refusal::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| Refusal::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidIssuer => Refusal::Issuer,
        ErrorKind::InvalidAudience => Refusal::Audience,
        ErrorKind::MissingRequiredClaim(c) => Refusal::MissingClaim(c.clone()),
        ErrorKind::InvalidClaimFormat(c) => Refusal::MalformedClaim(c.clone()),
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidKeyFormat => Refusal::Signature,
        _ => Refusal::Malformed,
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

/// The signing keys at `url`. Keys that are not for signatures, have no
/// `kid` or cannot be read are left out (an identity provider may list keys
/// of kinds this server does not use).
async fn fetch_jwks(url: &str, timeout: Duration) -> Result<KeySet, String> {
    // A client per fetch: fetches are rare, and a client is tied to the
    // runtime it first connected on, while verifiers serve every worker's.
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| format!("no HTTP client: {e}"))?;
    let response = client
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("the request failed: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    let raw: RawSet = response
        .json()
        .await
        .map_err(|e| format!("not a JWK Set: {e}"))?;
    let mut set = KeySet::default();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if !matches!(
            jwk.common.public_key_use,
            None | Some(PublicKeyUse::Signature)
        ) {
            continue;
        }
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let algorithm = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match Algorithm::try_from(a) {
                Ok(a) => Some(a),
                // An encryption algorithm: not a signing key.
                Err(_) => continue,
            },
        };
        if key.family() == jsonwebtoken::AlgorithmFamily::Hmac {
            // A shared secret in a public document signs nothing we trust.
            continue;
        }
        set.keys.insert(kid, Arc::new(Key { key, algorithm }));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn verifier(configure: impl FnOnce(&mut JwtSettings)) -> JwtVerifier {
        let mut s = JwtSettings {
            issuer: "https://idp.example".into(),
            audience: vec!["sagaplane".into()],
            jwks_url: "http://127.0.0.1:9/keys".into(),
            ..JwtSettings::default()
        };
        s.roles.insert("ops".into(), Role::Operator);
        s.roles.insert("sagaplane/admin".into(), Role::Admin);
        s.roles.insert("ops-leads".into(), Role::Operator);
        configure(&mut s);
        JwtVerifier::new(s).unwrap()
    }

    #[test]
    fn roles_come_from_an_array_a_string_or_a_path_and_unknown_values_grant_nothing() {
        let v = verifier(|_| {});
        let claims = json!({"roles": ["ops", "ops-leads", "other"]});
        assert_eq!(v.roles(&claims), Ok(vec![Role::Operator]));
        let v = verifier(|s| s.roles_claim = "scope".into());
        let claims = json!({"scope": "openid sagaplane/admin ops"});
        assert_eq!(v.roles(&claims), Ok(vec![Role::Admin, Role::Operator]));
        assert_eq!(v.roles(&json!({})), Ok(vec![]));
        assert!(v.roles(&json!({"scope": 3})).is_err());
        let v = verifier(|s| s.roles_claim = "realm_access.roles".into());
        let claims = json!({"realm_access": {"roles": ["sagaplane/admin"]}});
        assert_eq!(v.roles(&claims), Ok(vec![Role::Admin]));
        let v = verifier(|s| s.roles_claim = "cognito:groups".into());
        let claims = json!({"cognito:groups": ["ops"]});
        assert_eq!(v.roles(&claims), Ok(vec![Role::Operator]));
    }

    #[test]
    fn an_audience_in_another_claim_is_checked_by_hand() {
        let v = verifier(|s| s.audience_claim = "client_id".into());
        assert_eq!(v.check_audience(&json!({"client_id": "sagaplane"})), Ok(()));
        assert_eq!(
            v.check_audience(&json!({"client_id": "other"})),
            Err(Refusal::Audience)
        );
        assert_eq!(
            v.check_audience(&json!({"aud": "sagaplane"})),
            Err(Refusal::MissingClaim("client_id".into()))
        );
    }

    #[actix_web::test]
    async fn malformed_unsigned_and_symmetric_tokens_are_refused_before_any_key_is_sought() {
        let v = verifier(|_| {});
        let b64 = |v: Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let body = b64(json!({"sub": "x"}));
        for (token, refusal) in [
            ("not-a-jwt".to_owned(), Refusal::Malformed),
            ("a.b".to_owned(), Refusal::Malformed),
            (
                format!("{}.{body}.", b64(json!({"alg": "none"}))),
                Refusal::Unsigned,
            ),
            (
                format!("{}.{body}.", b64(json!({"alg": "None"}))),
                Refusal::Unsigned,
            ),
            (
                format!("{}.{body}.sig", b64(json!({"alg": "HS256", "kid": "k"}))),
                Refusal::Algorithm("RS256".into()),
            ),
            (
                format!("{}.{body}.sig", b64(json!({"alg": "RS256"}))),
                Refusal::NoKeyId,
            ),
        ] {
            assert_eq!(v.verify(&token).await, Err(refusal), "{token}");
        }
    }

    #[test]
    fn symmetric_or_unknown_algorithms_and_incomplete_settings_are_refused() {
        let base = || {
            let mut s = JwtSettings {
                issuer: "https://idp.example".into(),
                audience: vec!["sagaplane".into()],
                jwks_url: "https://idp.example/keys".into(),
                ..JwtSettings::default()
            };
            s.roles.insert("ops".into(), Role::Operator);
            s
        };
        assert_eq!(base().check(), Ok(()));
        for (change, expected) in [
            (
                Box::new(|s: &mut JwtSettings| s.algorithms = vec!["HS256".into()])
                    as Box<dyn Fn(&mut JwtSettings)>,
                "symmetric",
            ),
            (
                Box::new(|s: &mut JwtSettings| s.algorithms = vec!["none".into()]),
                "not a JWS algorithm",
            ),
            (
                Box::new(|s: &mut JwtSettings| s.algorithms.clear()),
                "no algorithm",
            ),
            (Box::new(|s: &mut JwtSettings| s.issuer.clear()), "issuer"),
            (
                Box::new(|s: &mut JwtSettings| s.audience.clear()),
                "audience",
            ),
            (
                Box::new(|s: &mut JwtSettings| s.jwks_url = "idp.example".into()),
                "jwks_url",
            ),
            (Box::new(|s: &mut JwtSettings| s.roles.clear()), "roles"),
        ] {
            let mut s = base();
            change(&mut s);
            let e = s.check().unwrap_err();
            assert!(e.contains(expected), "{e}");
        }
    }
}
