//! Access tokens (JWTs) of an identity provider, beside the static tokens:
//! the test is the identity provider, serving its JWKS and an OAuth token
//! endpoint (client credentials, as an EventBridge connection uses it) on
//! 127.0.0.1 and signing with the RSA keys in `fixtures/jwt`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use sagaplane_api::auth::{Role, TokenSettings};
use sagaplane_api::configuration::JwtSettings;
use serde_json::{json, Value};

use crate::helpers::{
    assert_problem, order, order_request, reservation_reply_event, spawn_app_with, TestApp,
};

const ISSUER: &str = "https://idp.test/realms/acme";
const AUDIENCE: &str = "sagaplane";
const CLIENT_ID: &str = "eventbridge-inventory";
const CLIENT_SECRET: &str = "client-secret-of-the-connection";
const STATIC_TOKEN: &str = "static-admin-token-0123";
const STATIC_PARTICIPANT: &str = "static-participant-token-0123";
const API_KEY: &str = "eventbridge-connection-key";

/// A fixture key's DER: the body of its PEM (PKCS#1 for RSA, PKCS#8 for EC).
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("the fixture is PEM")
}

fn key(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_der(&der(pem))
}

fn key_a() -> EncodingKey {
    key(include_str!("fixtures/jwt/key-a.pem"))
}

fn key_b() -> EncodingKey {
    key(include_str!("fixtures/jwt/key-b.pem"))
}

/// A key the identity provider never publishes.
fn key_c() -> EncodingKey {
    key(include_str!("fixtures/jwt/key-c.pem"))
}

/// An EC P-256 key (ES256).
fn key_e() -> EncodingKey {
    EncodingKey::from_ec_der(&der(include_str!("fixtures/jwt/key-e.pem")))
}

/// The public JWK of the RSA `key`, as `kid`.
fn jwk(key: &EncodingKey, kid: &str) -> Jwk {
    jwk_for(Algorithm::RS256, key, kid)
}

fn jwk_for(alg: Algorithm, key: &EncodingKey, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.into());
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token for `sub` holding the claim values `roles`.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": sub,
        "iat": now(), "nbf": now() - 5, "exp": now() + 300,
        "groups": roles,
    })
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    sign_with(Algorithm::RS256, key, kid, claims)
}

fn sign_with(alg: Algorithm, key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The identity provider: `GET /jwks` and `POST /token`.
struct Idp {
    base: String,
    jwks: Arc<Mutex<JwkSet>>,
    /// While set, `/jwks` answers 500.
    down: Arc<AtomicBool>,
    /// Requests to `/jwks`.
    fetches: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct IdpState {
    jwks: Arc<Mutex<JwkSet>>,
    down: Arc<AtomicBool>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks(state: web::Data<IdpState>) -> HttpResponse {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.down.load(Ordering::SeqCst) {
        return HttpResponse::InternalServerError().finish();
    }
    let set = state.jwks.lock().unwrap().clone();
    HttpResponse::Ok().json(set)
}

/// OAuth 2.0 client credentials (RFC 6749, 4.4), the client authenticated
/// with HTTP Basic as EventBridge sends it: a token with the
/// `saga-participants` group for the connection's client.
async fn token(request: HttpRequest, body: String) -> HttpResponse {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    );
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if authorization != Some(expected.as_str()) {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    if !body
        .split('&')
        .any(|p| p == "grant_type=client_credentials")
    {
        return HttpResponse::BadRequest().json(json!({"error": "unsupported_grant_type"}));
    }
    let access_token = sign(&key_a(), "a", &claims(CLIENT_ID, &["saga-participants"]));
    HttpResponse::Ok().json(json!({
        "access_token": access_token, "token_type": "Bearer", "expires_in": 300
    }))
}

impl Idp {
    async fn start(keys: Vec<Jwk>) -> Idp {
        let state = IdpState {
            jwks: Arc::new(Mutex::new(JwkSet { keys })),
            down: Arc::new(AtomicBool::new(false)),
            fetches: Arc::new(AtomicUsize::new(0)),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/jwks", web::get().to(jwks))
                .route("/token", web::post().to(token))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Idp {
            base: format!("http://127.0.0.1:{port}"),
            jwks: state.jwks,
            down: state.down,
            fetches: state.fetches,
        }
    }

    fn publish(&self, keys: Vec<Jwk>) {
        *self.jwks.lock().unwrap() = JwkSet { keys };
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The `[auth.jwt]` of a sagaplane trusting this provider.
    fn settings(&self) -> JwtSettings {
        let roles = [
            ("saga-starters", Role::Starter),
            ("saga-viewers", Role::Viewer),
            ("saga-operators", Role::Operator),
            ("saga-admins", Role::Admin),
            ("saga-participants", Role::Participant),
        ];
        JwtSettings {
            issuer: ISSUER.into(),
            audience: vec![AUDIENCE.into()],
            jwks_url: format!("{}/jwks", self.base),
            roles_claim: "groups".into(),
            roles: roles
                .iter()
                .map(|(value, role)| (value.to_string(), *role))
                .collect::<BTreeMap<_, _>>(),
            leeway_seconds: 5,
            jwks_min_refetch_ms: 0,
            ..JwtSettings::default()
        }
    }
}

/// sagaplane trusting `idp` (with `configure` applied to its `[auth.jwt]`),
/// static admin and participant tokens beside it, an EventBridge ingress key, and
/// inventory commands for `AWS-` SKUs left unanswered (their replies come
/// through the ingress).
async fn app(idp: &Idp, configure: impl FnOnce(&mut JwtSettings)) -> TestApp {
    let mut jwt = idp.settings();
    configure(&mut jwt);
    spawn_app_with(move |s| {
        s.auth.jwt = Some(jwt);
        s.auth.tokens = vec![
            TokenSettings {
                name: "static-admin".into(),
                token: STATIC_TOKEN.into(),
                roles: vec![Role::Admin],
            },
            TokenSettings {
                name: "static-participant".into(),
                token: STATIC_PARTICIPANT.into(),
                roles: vec![Role::Participant],
            },
        ];
        s.ingress.eventbridge.api_key = API_KEY.into();
        s.simulator
            .rules
            .push(crate::helpers::inventory_answers_through_eventbridge());
    })
    .await
}

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    token: &str,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn start_saga(app: &TestApp, token: &str, key: &str) -> reqwest::Response {
    let body = order_request(key, order(key, "c", "AWS-1", 500));
    call(app, reqwest::Method::POST, "/v1/sagas", Some(body), token).await
}

/// An EventBridge event carrying `saga`'s reservation reply.
fn envelope(saga: &str, reply_id: &str) -> Value {
    json!({
        "version": "0", "id": "eb-envelope-id", "detail-type": "sagaplane.reply.v1",
        "source": "inventory-service", "account": "123456789012",
        "time": "2026-11-23T12:00:00Z", "region": "eu-west-1", "resources": [],
        "detail": reservation_reply_event(saga, reply_id)
    })
}

async fn ingress(app: &TestApp, authorization: Option<String>, body: &Value) -> reqwest::Response {
    let mut request = app
        .client
        .post(format!("{}/v1/ingress/eventbridge", app.address))
        .json(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

#[actix_web::test]
async fn each_role_from_the_token_and_the_subject_recorded_as_the_operator() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    let app = app(&idp, |_| {}).await;
    let token = |sub: &str, group: &str| sign(&key_a(), "a", &claims(sub, &[group]));
    let starter = token("checkout-service", "saga-starters");
    let viewer = token("vera", "saga-viewers");
    let operator = token("otto", "saga-operators");
    let admin = token("ada", "saga-admins");

    let r = start_saga(&app, &starter, "jwt-1").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for other in [&viewer, &operator, &admin] {
        let r = start_saga(&app, other, "jwt-2").await;
        assert_problem(r, StatusCode::FORBIDDEN).await;
    }
    let get = reqwest::Method::GET;
    for (token, may_read, may_handle_dead_letters) in [
        (&starter, false, false),
        (&viewer, true, false),
        (&operator, true, false),
        (&admin, true, true),
    ] {
        let r = call(&app, get.clone(), &format!("/v1/sagas/{id}"), None, token).await;
        assert_eq!(r.status().is_success(), may_read, "{}", r.status());
        let r = call(&app, get.clone(), "/v1/dead-letters", None, token).await;
        assert_eq!(r.status().is_success(), may_handle_dead_letters);
    }
    let me: Value = call(&app, get.clone(), "/v1/me", None, &operator)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        me,
        json!({"name": "otto", "access_control": true, "roles": ["operator"]})
    );
    // A token whose groups map to no role is someone, allowed nothing.
    let nobody = token("nobody", "other-group");
    let me: Value = call(&app, get.clone(), "/v1/me", None, &nobody)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["roles"], json!([]));
    let r = call(&app, get.clone(), "/v1/sagas", None, &nobody).await;
    assert_problem(r, StatusCode::FORBIDDEN).await;

    // The operator is the token's subject, whatever the body says.
    let r = call(
        &app,
        reqwest::Method::POST,
        &format!("/v1/sagas/{id}/actions/cancel"),
        Some(json!({"reason": "jwt test", "operator": "someone-else"})),
        &operator,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let result: Value = r.json().await.unwrap();
    assert_eq!(result["events"][0]["data"]["operator"], "otto");

    // The static tokens work beside the JWTs.
    let r = call(&app, get, "/v1/dead-letters", None, STATIC_TOKEN).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[actix_web::test]
async fn bad_tokens_are_refused_with_401_naming_why_and_nothing_is_stored() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    let app = app(&idp, |_| {}).await;
    let groups = ["saga-starters", "saga-participants"];
    let valid = claims("svc", &groups);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = valid.clone();
        change(&mut c);
        sign(&key_a(), "a", &c)
    };
    let good = sign(&key_a(), "a", &valid);
    let head = good.split('.').next().unwrap().to_owned();
    let signature = good.rsplit('.').next().unwrap().to_owned();

    // An unsigned token, an HS256 one whose secret is the public key (the
    // algorithm-confusion attack), and a valid token with a changed payload.
    let unsigned = {
        let header = b64(br#"{"alg":"none","typ":"JWT","kid":"a"}"#);
        format!("{header}.{}.", b64(valid.to_string().as_bytes()))
    };
    let hs256 = {
        let public_pem = include_str!("fixtures/jwt/key-a.pub.pem");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("a".into());
        let secret = EncodingKey::from_secret(public_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &valid, &secret).unwrap()
    };
    let tampered = {
        let mut c = valid.clone();
        c["groups"] = json!(["saga-admins", "saga-starters", "saga-participants"]);
        format!("{head}.{}.{signature}", b64(c.to_string().as_bytes()))
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            with(&|c| {
                c["exp"] = json!(now() - 600);
                c["nbf"] = json!(now() - 900);
            }),
            "has expired",
        ),
        (
            "not yet valid",
            with(&|c| {
                c["nbf"] = json!(now() + 600);
            }),
            "not valid yet",
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.test")),
            "another issuer",
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("another-api")),
            "another audience",
        ),
        (
            "no expiry",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            "`exp`",
        ),
        (
            "unknown key",
            sign(&key_c(), "c", &valid),
            "key the identity provider does not publish",
        ),
        (
            "a known kid, another key",
            sign(&key_c(), "a", &valid),
            "signature does not verify",
        ),
        ("alg none", unsigned, "`alg: none`"),
        ("HS256 with the public key", hs256, "algorithm not accepted"),
        ("tampered payload", tampered, "signature does not verify"),
        ("not a JWT", "not-a-jwt-at-all-0123".into(), "not valid"),
    ];
    for (case, token, why) in &cases {
        let r = start_saga(&app, token, &format!("bad-{case}")).await;
        assert_eq!(r.headers()["www-authenticate"], "Bearer", "{case}");
        let problem = assert_problem(r, StatusCode::UNAUTHORIZED).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{case}: {detail}");
        let shown = problem.to_string();
        for part in token.split('.').filter(|p| p.len() > 8) {
            assert!(
                !shown.contains(part),
                "{case}: the token is echoed: {shown}"
            );
        }
        // The same token at the ingress: refused too.
        let body = envelope("00000000-0000-0000-0000-000000000000", "r-1");
        let r = ingress(&app, Some(format!("Bearer {token}")), &body).await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
    }
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM dead_letters").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM received_messages").await, 0);
    // And the valid token is accepted.
    let r = start_saga(&app, &good, "good").await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn a_rotated_key_is_picked_up_without_a_restart() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    let app = app(&idp, |j| j.jwks_refresh_seconds = 1).await;
    let starter = |key: &EncodingKey, kid: &str| sign(key, kid, &claims("svc", &["saga-starters"]));
    let r = start_saga(&app, &starter(&key_a(), "a"), "rot-a").await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = start_saga(&app, &starter(&key_b(), "b"), "rot-b0").await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;

    // The provider publishes key B beside A: a token signed with B makes
    // sagaplane fetch the keys again, and is accepted.
    idp.publish(vec![jwk(&key_a(), "a"), jwk(&key_b(), "b")]);
    let r = start_saga(&app, &starter(&key_b(), "b"), "rot-b1").await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Then it retires A: the periodic refresh forgets it, though no token
    // asked for an unknown key.
    idp.publish(vec![jwk(&key_b(), "b")]);
    let fetched = idp.fetches();
    let viewer_a = sign(&key_a(), "a", &claims("vera", &["saga-viewers"]));
    let forgotten = app
        .eventually(Duration::from_secs(5), || async {
            let r = call(&app, reqwest::Method::GET, "/v1/stats", None, &viewer_a).await;
            r.status() == StatusCode::UNAUTHORIZED
        })
        .await;
    assert!(forgotten, "the retired key is still accepted");
    assert!(idp.fetches() > fetched);
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 2);
}

#[actix_web::test]
async fn a_failed_fetch_keeps_the_keys_known_and_unknown_keys_are_fetched_at_most_so_often() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    let app = app(&idp, |j| {
        j.jwks_refresh_seconds = 1;
        j.jwks_min_refetch_ms = 60_000;
    })
    .await;
    let viewer = sign(&key_a(), "a", &claims("vera", &["saga-viewers"]));
    let get = reqwest::Method::GET;
    assert_eq!(
        call(&app, get.clone(), "/v1/stats", None, &viewer)
            .await
            .status(),
        StatusCode::OK
    );

    // The provider fails; the periodic refreshes fail and key A still works.
    idp.down.store(true, Ordering::SeqCst);
    let before = idp.fetches();
    let failed = app
        .eventually(Duration::from_secs(5), || async { idp.fetches() > before })
        .await;
    assert!(failed, "no refresh was tried");
    let r = call(&app, get.clone(), "/v1/stats", None, &viewer).await;
    assert_eq!(r.status(), StatusCode::OK);

    // Back up. Tokens naming made-up keys make at most one fetch per
    // `jwks_min_refetch_ms` (here: none, the refresh just fetched).
    idp.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = idp.fetches();
    for i in 0..20 {
        let forged = sign(
            &key_c(),
            &format!("made-up-{i}"),
            &claims("x", &["saga-admins"]),
        );
        let r = call(&app, get.clone(), "/v1/stats", None, &forged).await;
        assert_problem(r, StatusCode::UNAUTHORIZED).await;
    }
    // Only the periodic refresh (once a second) fetched meanwhile.
    let fetched = idp.fetches() - before;
    assert!(fetched <= 3, "{fetched} fetches for 20 unknown keys");
}

#[actix_web::test]
async fn keys_that_cannot_be_fetched_at_all_make_a_jwt_503_not_a_static_token() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    idp.down.store(true, Ordering::SeqCst);
    // The server starts though the provider is down.
    let app = app(&idp, |_| {}).await;
    let token = sign(&key_a(), "a", &claims("svc", &["saga-starters"]));
    let r = start_saga(&app, &token, "down-1").await;
    assert_problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
    let r = call(&app, reqwest::Method::GET, "/v1/stats", None, STATIC_TOKEN).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 0);
    // Once it is back, the next token fetches the keys.
    idp.down.store(false, Ordering::SeqCst);
    let r = start_saga(&app, &token, "down-2").await;
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn an_eventbridge_connection_with_oauth_client_credentials_delivers_replies() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    let app = app(&idp, |_| {}).await;
    let starter = sign(&key_a(), "a", &claims("checkout", &["saga-starters"]));
    let r = start_saga(&app, &starter, "eb-1").await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // What the connection does: client credentials at the token endpoint,
    // then the access token as `Authorization: Bearer`.
    let answer: Value = app
        .client
        .post(format!("{}/token", idp.base))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=sagaplane%2Fingress")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access_token = answer["access_token"].as_str().unwrap();

    // A token without the `participant` role may not deliver replies.
    let r = ingress(
        &app,
        Some(format!("Bearer {starter}")),
        &envelope(&id, "r-1"),
    )
    .await;
    assert_problem(r, StatusCode::FORBIDDEN).await;
    let r = ingress(&app, None, &envelope(&id, "r-1")).await;
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.count("SELECT count(*) FROM received_messages").await, 0);

    let r = ingress(
        &app,
        Some(format!("Bearer {access_token}")),
        &envelope(&id, "r-1"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "applied");
    let saga: Value = call(
        &app,
        reqwest::Method::GET,
        &format!("/v1/sagas/{id}?wait=10"),
        None,
        STATIC_TOKEN,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(saga["status"], "completed");

    // The API key type of connection still works beside it.
    let r = app
        .client
        .post(format!("{}/v1/ingress/eventbridge", app.address))
        .header("x-api-key", API_KEY)
        .json(&envelope(&id, "r-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    // And so does a static token with the participant role; the static
    // admin's may not deliver replies.
    let r = ingress(
        &app,
        Some(format!("Bearer {STATIC_PARTICIPANT}")),
        &envelope(&id, "r-1"),
    )
    .await;
    assert_eq!(r.json::<Value>().await.unwrap()["outcome"], "duplicate");
    let r = ingress(
        &app,
        Some(format!("Bearer {STATIC_TOKEN}")),
        &envelope(&id, "r-1"),
    )
    .await;
    assert_problem(r, StatusCode::FORBIDDEN).await;
}

/// Event Grid's webhook authentication with Microsoft Entra ID: each delivery
/// carries an access token of the identity provider, here with the
/// `participant` role, and no ingress key is configured at all.
#[actix_web::test]
async fn an_event_grid_subscription_with_an_access_token_delivers_replies() {
    let idp = Idp::start(vec![jwk(&key_a(), "a")]).await;
    let app = app(&idp, |_| {}).await;
    let starter = sign(&key_a(), "a", &claims("checkout", &["saga-starters"]));
    let r = start_saga(&app, &starter, "eg-1").await;
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliver = |authorization: Option<String>| {
        let mut request = app
            .client
            .post(format!("{}/v1/ingress/eventgrid", app.address))
            .header("content-type", "application/cloudevents+json")
            .json(&reservation_reply_event(&id, "r-eg-1"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send()
    };
    // The validation handshake asks for no token; deliveries do.
    let r = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/ingress/eventgrid", app.address),
        )
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = deliver(None).await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let r = deliver(Some(format!("Bearer {starter}"))).await.unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
    let expired = sign(
        &key_a(),
        "a",
        &json!({"iss": ISSUER, "aud": AUDIENCE, "sub": CLIENT_ID,
                "groups": ["saga-participants"], "iat": now() - 7200, "exp": now() - 3600}),
    );
    let r = deliver(Some(format!("Bearer {expired}"))).await.unwrap();
    assert_problem(r, StatusCode::UNAUTHORIZED).await;
    assert_eq!(app.count("SELECT count(*) FROM received_messages").await, 0);

    let participant = sign(&key_a(), "a", &claims(CLIENT_ID, &["saga-participants"]));
    let r = deliver(Some(format!("Bearer {participant}")))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["events"][0]["outcome"], "applied");
    assert_eq!(body["events"][0]["id"], "r-eg-1");
    let taken = "SELECT count(*) FROM received_messages WHERE message_id = 'r-eg-1'";
    assert_eq!(app.count(taken).await, 1);
}

#[actix_web::test]
async fn es256_is_accepted_when_configured_and_a_key_serves_only_its_own_algorithm() {
    let keys = vec![jwk(&key_a(), "a"), jwk_for(Algorithm::ES256, &key_e(), "e")];
    let idp = Idp::start(keys).await;
    let app = app(&idp, |j| {
        j.algorithms = vec!["RS256".into(), "ES256".into()]
    })
    .await;
    let viewer = claims("vera", &["saga-viewers"]);
    let stats = |token: String| {
        let app = &app;
        async move { call(app, reqwest::Method::GET, "/v1/stats", None, &token).await }
    };
    let r = stats(sign_with(Algorithm::ES256, &key_e(), "e", &viewer)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = stats(sign(&key_a(), "a", &viewer)).await;
    assert_eq!(r.status(), StatusCode::OK);
    // An ES256 token naming the RSA key, an RS256 one naming the EC key.
    for token in [
        sign_with(Algorithm::ES256, &key_e(), "a", &viewer),
        sign(&key_a(), "e", &viewer),
    ] {
        let problem = assert_problem(stats(token).await, StatusCode::UNAUTHORIZED).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("signature does not verify"), "{detail}");
    }

    // Where only RS256 is accepted (the default), an ES256 token is refused.
    let rs256_only = self::app(&idp, |_| {}).await;
    let token = sign_with(Algorithm::ES256, &key_e(), "e", &viewer);
    let r = call(&rs256_only, reqwest::Method::GET, "/v1/stats", None, &token).await;
    let problem = assert_problem(r, StatusCode::UNAUTHORIZED).await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("algorithm not accepted"), "{detail}");
}
