//! Azure Event Grid custom topics on 127.0.0.1, publishing and push delivery
//! as the service does them, for tests and local runs (no emulator of Event
//! Grid's data plane runs locally).
//!
//! **Publishing.** `POST /{topic}/api/events?api-version=2018-01-01` stands
//! for `https://{topic}.{region}-1.eventgrid.azure.net/api/events`. A topic
//! takes the CloudEvents 1.0 schema: one event (`application/cloudevents+json`)
//! or a batch (`application/cloudevents-batch+json`, a JSON array). A request
//! must carry one of the topic's keys (`aeg-sas-key` header or query
//! parameter) or a shared access signature made from one (`aeg-sas-token`,
//! or `Authorization: SharedAccessSignature …`), signed over the topic's
//! endpoint and unexpired; otherwise `401`. A request is taken whole or
//! refused whole: `413` above 1 MB (here 2^20 bytes) or with an event above
//! it, `400` above 5,000 events or with an event that is not a CloudEvent
//! (`specversion` 1.0, `id`, `source`, `type`), `400` without an API version.
//! Errors come as the service words them: `{"error": {"code", "message"}}`.
//!
//! **Delivery.** A subscription pushes a topic's events (those of its event
//! types, or all) to a webhook. Creating one first runs the CloudEvents
//! validation handshake: `OPTIONS` with `WebHook-Request-Origin:
//! eventgrid.azure.net`, which the webhook must answer `200` with
//! `WebHook-Allowed-Origin` naming that origin (or `*`), else the
//! subscription is not made. Events go one per request
//! (`application/cloudevents+json`) or in batches of up to
//! `max_events_per_batch` (`application/cloudevents-batch+json`), with the
//! headers `aeg-subscription-name`, `aeg-delivery-count`, `aeg-event-type:
//! Notification` and `aeg-metadata-version`. `200`–`204` delivers; `400`,
//! `401`, `403` and `413` dead-letter at once (retrying cannot help); any other
//! answer, or none within the response timeout, is retried with exponential
//! back-off (scaled down from the service's 10 s, 30 s, 1 min… so tests run
//! in seconds) until `max_delivery_attempts`, then dead-lettered.
//!
//! Not spoken: the Event Grid event schema and its validation event, domains,
//! filters other than event types, event time-to-live, management operations.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

/// The origin delivery requests and the validation handshake name.
pub const ORIGIN: &str = "eventgrid.azure.net";
/// Bytes per publish request (and so per event), at most: the service's 1 MB.
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Events per publish request, at most.
pub const MAX_EVENTS: usize = 5_000;

/// The topics and how delivery behaves.
#[derive(Debug, Clone)]
pub struct Config {
    topics: BTreeMap<String, Vec<String>>,
    max_request_bytes: usize,
    first_retry: Duration,
    max_retry: Duration,
    response_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            topics: BTreeMap::new(),
            max_request_bytes: MAX_REQUEST_BYTES,
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(2),
            response_timeout: Duration::from_secs(30),
        }
    }
}

impl Config {
    pub fn new() -> Self {
        Self::default()
    }

    /// A custom topic with its access keys (base64, as the portal shows them).
    pub fn topic(mut self, name: impl Into<String>, keys: &[&str]) -> Self {
        self.topics
            .insert(name.into(), keys.iter().map(|k| (*k).to_owned()).collect());
        self
    }

    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// The delay before the first retry of a delivery; each next one doubles, up to `max`.
    pub fn retry(mut self, first: Duration, max: Duration) -> Self {
        self.first_retry = first;
        self.max_retry = max;
        self
    }

    /// How long a webhook has to answer a delivery (the service waits 30 s).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }
}

/// An event subscription with a webhook destination.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub name: String,
    /// The webhook's URL, query string (a key, say) included.
    pub endpoint: String,
    /// The event types delivered; empty: all.
    pub event_types: Vec<String>,
    pub max_events_per_batch: usize,
    pub max_delivery_attempts: u32,
    /// Static delivery properties: headers sent with every delivery.
    pub headers: Vec<(String, String)>,
}

impl Subscription {
    pub fn new(name: impl Into<String>, endpoint: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            endpoint: endpoint.into(),
            event_types: Vec::new(),
            max_events_per_batch: 1,
            max_delivery_attempts: 30,
            headers: Vec::new(),
        }
    }

    pub fn event_types(mut self, types: &[&str]) -> Self {
        self.event_types = types.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    pub fn batch(mut self, max_events: usize) -> Self {
        self.max_events_per_batch = max_events.max(1);
        self
    }

    pub fn max_delivery_attempts(mut self, n: u32) -> Self {
        self.max_delivery_attempts = n.max(1);
        self
    }

    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// An event a subscription gave up on, with why.
#[derive(Debug, Clone)]
pub struct DeadLettered {
    /// The event's bytes as published.
    pub raw: Vec<u8>,
    /// `UndeliverableDueToHttp…` or `MaxDeliveryAttemptsExceeded`.
    pub reason: String,
    pub attempts: u32,
    /// The webhook's last answer; `None`: none came.
    pub last_status: Option<u16>,
}

impl DeadLettered {
    pub fn event(&self) -> Value {
        serde_json::from_slice(&self.raw).unwrap_or(Value::Null)
    }
}

/// Counts of what the topics were asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub publish_requests: u64,
    pub published_events: u64,
    /// Publish requests refused for their credentials.
    pub unauthorized: u64,
    pub deliveries: u64,
}

struct Pending {
    raw: Arc<Vec<u8>>,
    attempts: u32,
    due: Instant,
    last_status: Option<u16>,
}

struct SubscriptionState {
    subscription: Subscription,
    queue: VecDeque<Pending>,
    delivered: Vec<Arc<Vec<u8>>>,
    dead: Vec<DeadLettered>,
}

#[derive(Default)]
struct TopicState {
    keys: Vec<String>,
    published: Vec<Arc<Vec<u8>>>,
    subscriptions: Vec<SubscriptionState>,
}

struct State {
    topics: BTreeMap<String, TopicState>,
    stats: Stats,
    fail_with: Option<u16>,
    /// Off while the fake is stopped: nothing is delivered either.
    running: bool,
}

struct Shared {
    config: Config,
    port: u16,
    state: Mutex<State>,
    shutdown: AtomicBool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn endpoint(&self, topic: &str) -> String {
        format!("http://127.0.0.1:{}/{topic}/api/events", self.port)
    }
}

/// Running topics. Their events outlive [`FakeEventGrid::stop`]: a stopped
/// Event Grid comes back with what it had not delivered.
pub struct FakeEventGrid {
    shared: Arc<Shared>,
    server: Option<(ServerHandle, std::thread::JoinHandle<()>)>,
    /// Runs the validation handshakes and deliveries, beside any runtime of
    /// the caller's.
    delivery: Option<tokio::runtime::Runtime>,
}

impl FakeEventGrid {
    /// Starts the topics on a free port of 127.0.0.1.
    pub fn start(config: Config) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = listener.local_addr().expect("a bound port").port();
        let topics = config
            .topics
            .iter()
            .map(|(name, keys)| {
                let topic = TopicState {
                    keys: keys.clone(),
                    ..TopicState::default()
                };
                (name.clone(), topic)
            })
            .collect();
        let shared = Arc::new(Shared {
            config,
            port,
            state: Mutex::new(State {
                topics,
                stats: Stats::default(),
                fail_with: None,
                running: true,
            }),
            shutdown: AtomicBool::new(false),
        });
        let delivery = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("eventgrid-delivery")
            .enable_all()
            .build()
            .expect("the delivery runtime");
        let mut fake = Self {
            shared,
            server: None,
            delivery: Some(delivery),
        };
        fake.serve(listener);
        fake
    }

    fn serve(&mut self, listener: TcpListener) {
        let shared = self.shared.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let data = web::Data::from(shared);
                let server = HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                        .default_service(web::to(publish))
                })
                .workers(1)
                .disable_signals()
                .listen(listener)
                .expect("the fake listens")
                .run();
                tx.send(server.handle()).expect("the starter waits");
                let _ = server.await;
            })
        });
        let handle = rx.recv().expect("the fake starts");
        self.server = Some((handle, thread));
        self.shared.state().running = true;
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.delivery
            .as_ref()
            .expect("the runtime lives until drop")
    }

    /// Where commands for `topic` are published: its stand-in endpoint.
    pub fn endpoint(&self, topic: &str) -> String {
        self.shared.endpoint(topic)
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// Makes a subscription to `topic` once its webhook passes the validation
    /// handshake; from then on, the topic's events go to it.
    pub async fn subscribe(&self, topic: &str, subscription: Subscription) -> Result<(), String> {
        if !self.shared.state().topics.contains_key(topic) {
            return Err(format!("no topic `{topic}`"));
        }
        let endpoint = subscription.endpoint.clone();
        let validated = self
            .runtime()
            .spawn(async move { validate(&endpoint).await })
            .await
            .map_err(|e| e.to_string())?;
        validated?;
        let index = {
            let mut state = self.shared.state();
            let topic_state = state.topics.get_mut(topic).expect("checked above");
            topic_state.subscriptions.push(SubscriptionState {
                subscription,
                queue: VecDeque::new(),
                delivered: Vec::new(),
                dead: Vec::new(),
            });
            topic_state.subscriptions.len() - 1
        };
        self.runtime()
            .spawn(deliver(self.shared.clone(), topic.to_owned(), index));
        Ok(())
    }

    /// Stops answering and delivering: connections are refused until
    /// [`FakeEventGrid::restart`]; undelivered events wait.
    pub async fn stop(&mut self) {
        self.shared.state().running = false;
        if let Some((handle, thread)) = self.server.take() {
            handle.stop(false).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Listens again on the same port and delivers what waited.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "restart a stopped fake only");
        let listener = TcpListener::bind(("127.0.0.1", self.shared.port))
            .expect("the fake's port is free again");
        self.serve(listener);
    }

    /// Answers every authorised publish request with `status` until called with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.state().fail_with = status;
    }

    pub fn stats(&self) -> Stats {
        self.shared.state().stats
    }

    /// The events a topic took, in the order it took them.
    pub fn published(&self, topic: &str) -> Vec<Value> {
        let state = self.shared.state();
        state.topics.get(topic).map_or_else(Vec::new, |t| {
            t.published.iter().map(|raw| parse(raw)).collect()
        })
    }

    /// The events a subscription's webhook took, in the order it took them.
    pub fn delivered(&self, topic: &str, subscription: &str) -> Vec<Value> {
        self.with_subscription(topic, subscription, |s| {
            s.delivered.iter().map(|raw| parse(raw)).collect()
        })
    }

    /// The events a subscription gave up on.
    pub fn dead_lettered(&self, topic: &str, subscription: &str) -> Vec<DeadLettered> {
        self.with_subscription(topic, subscription, |s| s.dead.clone())
    }

    /// How many events wait for delivery (or a retry) to a subscription.
    pub fn pending(&self, topic: &str, subscription: &str) -> usize {
        self.with_subscription(topic, subscription, |s| s.queue.len())
    }

    fn with_subscription<T: Default>(
        &self,
        topic: &str,
        subscription: &str,
        f: impl FnOnce(&SubscriptionState) -> T,
    ) -> T {
        let state = self.shared.state();
        state
            .topics
            .get(topic)
            .and_then(|t| {
                t.subscriptions
                    .iter()
                    .find(|s| s.subscription.name == subscription)
            })
            .map(f)
            .unwrap_or_default()
    }
}

impl Drop for FakeEventGrid {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(runtime) = self.delivery.take() {
            // Dropping a runtime blocks, which a caller's runtime forbids.
            runtime.shutdown_background();
        }
        if let Some((handle, _thread)) = self.server.take() {
            // Stops the fake's system; its thread ends with it.
            drop(handle.stop(false));
        }
    }
}

fn parse(raw: &[u8]) -> Value {
    serde_json::from_slice(raw).unwrap_or(Value::Null)
}

/// An error as the service words it.
fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": {
            "code": code,
            "message": message,
            "timestamp": Utc::now().to_rfc3339(),
        }
    }))
}

async fn publish(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let path = req.uri().path().trim_matches('/');
    let Some(topic) = path
        .strip_suffix("/api/events")
        .filter(|t| !t.contains('/'))
    else {
        return error(StatusCode::NOT_FOUND, "NotFound", "no such resource");
    };
    if req.method() != actix_web::http::Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "events are published with POST",
        );
    }
    shared.state().stats.publish_requests += 1;
    let query: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let keys = match shared.state().topics.get(topic) {
        Some(t) => t.keys.clone(),
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the topic `{topic}` does not exist"),
            )
        }
    };
    if !query
        .iter()
        .any(|(k, v)| k == "api-version" && !v.is_empty())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the api-version query parameter (?api-version=) is required",
        );
    }
    if let Err(why) = authorize(&req, &query, &keys, &shared.endpoint(topic)) {
        shared.state().stats.unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, "Unauthorized", &why);
    }
    if let Some(status) = shared.state().fail_with {
        let status = StatusCode::from_u16(status).expect("a valid status");
        return error(status, "Failing", "told to fail");
    }
    if body.len() > shared.config.max_request_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!(
                "the request is {} bytes, more than the {} allowed",
                body.len(),
                shared.config.max_request_bytes
            ),
        );
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let events = match content_type.as_str() {
        "application/cloudevents-batch+json" => {
            serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&body)
                .map_err(|e| format!("the batch is not a JSON array: {e}"))
        }
        "application/cloudevents+json" => {
            serde_json::from_slice::<&serde_json::value::RawValue>(&body)
                .map(|e| vec![e])
                .map_err(|e| format!("the event is not JSON: {e}"))
        }
        other => Err(format!(
            "the content type `{other}` is not taken by a CloudEvents topic \
             (application/cloudevents+json or application/cloudevents-batch+json)"
        )),
    };
    let events = match events {
        Ok(events) => events,
        Err(why) => return error(StatusCode::BAD_REQUEST, "BadRequest", &why),
    };
    if events.is_empty() || events.len() > MAX_EVENTS {
        return error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!(
                "a batch holds 1 to {MAX_EVENTS} events, not {}",
                events.len()
            ),
        );
    }
    for (i, event) in events.iter().enumerate() {
        if let Err(why) = check_cloudevent(event.get()) {
            return error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("event {i}: {why}"),
            );
        }
    }
    let mut state = shared.state();
    state.stats.published_events += events.len() as u64;
    let topic_state = state.topics.get_mut(topic).expect("looked up above");
    for event in events {
        let raw = Arc::new(event.get().as_bytes().to_vec());
        let event_type = parse(&raw)["type"].as_str().unwrap_or_default().to_owned();
        topic_state.published.push(raw.clone());
        for s in &mut topic_state.subscriptions {
            let types = &s.subscription.event_types;
            if types.is_empty() || types.contains(&event_type) {
                s.queue.push_back(Pending {
                    raw: raw.clone(),
                    attempts: 0,
                    due: Instant::now(),
                    last_status: None,
                });
            }
        }
    }
    HttpResponse::Ok().finish()
}

/// The attributes every CloudEvent 1.0 must have.
fn check_cloudevent(raw: &str) -> Result<(), String> {
    let event: Value = serde_json::from_str(raw).map_err(|e| e.to_string())?;
    let Some(object) = event.as_object() else {
        return Err("not a JSON object".into());
    };
    if object.get("specversion").and_then(Value::as_str) != Some("1.0") {
        return Err("`specversion` must be \"1.0\"".into());
    }
    for attribute in ["id", "source", "type"] {
        let present = object
            .get(attribute)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty());
        if !present {
            return Err(format!(
                "the required attribute `{attribute}` is missing or empty"
            ));
        }
    }
    Ok(())
}

/// Checks the request's key or signature against the topic's keys.
fn authorize(
    req: &HttpRequest,
    query: &[(String, String)],
    keys: &[String],
    endpoint: &str,
) -> Result<(), String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let key = header("aeg-sas-key").map(str::to_owned).or_else(|| {
        query
            .iter()
            .find(|(k, _)| k == "aeg-sas-key")
            .map(|(_, v)| v.clone())
    });
    if let Some(key) = key {
        return if keys.contains(&key) {
            Ok(())
        } else {
            Err("the access key is not valid for this topic".into())
        };
    }
    let token = header("aeg-sas-token")
        .or_else(|| header("authorization").and_then(|v| v.strip_prefix("SharedAccessSignature ")));
    let Some(token) = token else {
        return Err("the request carries no aeg-sas-key and no shared access signature".into());
    };
    check_signature(token, keys, endpoint)
}

fn check_signature(token: &str, keys: &[String], endpoint: &str) -> Result<(), String> {
    let (unsigned, signature) = token
        .rsplit_once("&s=")
        .ok_or("the signature has no `s=`")?;
    let fields: BTreeMap<String, String> = form_urlencoded::parse(unsigned.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let (Some(resource), Some(expiry)) = (fields.get("r"), fields.get("e")) else {
        return Err("the signature lacks `r=` or `e=`".into());
    };
    let signature: String = form_urlencoded::parse(format!("s={signature}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let presented = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| "the signature is not base64")?;
    let signed_by_a_key = keys.iter().any(|key| {
        let secret = base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap_or_else(|_| key.as_bytes().to_vec());
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).expect("any key length");
        mac.update(unsigned.as_bytes());
        mac.verify_slice(&presented).is_ok()
    });
    if !signed_by_a_key {
        return Err("the signature was not made with a key of this topic".into());
    }
    let resource = resource.split('?').next().unwrap_or_default();
    if !resource
        .trim_end_matches('/')
        .eq_ignore_ascii_case(endpoint.trim_end_matches('/'))
    {
        return Err(format!("the signature is for `{resource}`, not this topic"));
    }
    let expires =
        parse_expiry(expiry).ok_or_else(|| format!("the expiry `{expiry}` is not a time"))?;
    if expires <= Utc::now() {
        return Err(format!("the signature expired at {expires}"));
    }
    Ok(())
}

/// An expiry as clients write it: `12/3/2026 4:05:00 PM` (the service's
/// examples), RFC 3339, or `2026-12-03 16:05:00[.ffffff][+00:00]`; UTC.
fn parse_expiry(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(t.with_timezone(&Utc));
    }
    ["%m/%d/%Y %I:%M:%S %p", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc())
}

/// The CloudEvents validation handshake with a webhook.
async fn validate(endpoint: &str) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client
        .request(reqwest::Method::OPTIONS, endpoint)
        .header("WebHook-Request-Origin", ORIGIN)
        .header("WebHook-Request-Rate", "120")
        .send()
        .await
        .map_err(|e| format!("the webhook did not answer the validation handshake: {e}"))?;
    let status = response.status().as_u16();
    let allowed = response
        .headers()
        .get("webhook-allowed-origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status != 200 {
        return Err(format!(
            "the webhook answered the validation handshake with {status}"
        ));
    }
    if allowed != "*" && !allowed.eq_ignore_ascii_case(ORIGIN) {
        return Err(format!(
            "the webhook allowed the origin `{allowed}`, not `{ORIGIN}`"
        ));
    }
    Ok(())
}

/// Pushes a subscription's events to its webhook until the fake is dropped.
async fn deliver(shared: Arc<Shared>, topic: String, index: usize) {
    let client = reqwest::Client::builder()
        .timeout(shared.config.response_timeout)
        .build()
        .expect("an HTTP client");
    while !shared.shutdown.load(Ordering::SeqCst) {
        let Some((subscription, batch)) = take_due(&shared, &topic, index) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let single = subscription.max_events_per_batch == 1;
        let mut body = Vec::new();
        if single {
            body.extend_from_slice(&batch[0].raw);
        } else {
            body.push(b'[');
            for (i, p) in batch.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&p.raw);
            }
            body.push(b']');
        }
        let content_type = if single {
            "application/cloudevents+json; charset=utf-8"
        } else {
            "application/cloudevents-batch+json; charset=utf-8"
        };
        let mut request = client
            .post(&subscription.endpoint)
            .header("content-type", content_type)
            .header("aeg-subscription-name", subscription.name.to_uppercase())
            .header("aeg-delivery-count", batch[0].attempts.to_string())
            .header("aeg-event-type", "Notification")
            .header("aeg-metadata-version", "1")
            .body(body);
        for (name, value) in &subscription.headers {
            request = request.header(name, value);
        }
        let status = request.send().await.ok().map(|r| r.status().as_u16());
        let mut state = shared.state();
        state.stats.deliveries += 1;
        let config = &shared.config;
        let s = &mut state.topics.get_mut(&topic).expect("a topic").subscriptions[index];
        for mut pending in batch {
            pending.attempts += 1;
            pending.last_status = status;
            match status {
                Some(200..=204) => s.delivered.push(pending.raw),
                Some(code @ (400 | 401 | 403 | 413)) => s.dead.push(DeadLettered {
                    raw: pending.raw.to_vec(),
                    reason: format!("UndeliverableDueToHttp{code}"),
                    attempts: pending.attempts,
                    last_status: status,
                }),
                _ if pending.attempts >= s.subscription.max_delivery_attempts => {
                    s.dead.push(DeadLettered {
                        raw: pending.raw.to_vec(),
                        reason: "MaxDeliveryAttemptsExceeded".into(),
                        attempts: pending.attempts,
                        last_status: status,
                    })
                }
                _ => {
                    let doublings = (pending.attempts - 1).min(16);
                    let delay = config
                        .first_retry
                        .saturating_mul(1 << doublings)
                        .min(config.max_retry);
                    pending.due = Instant::now() + delay;
                    s.queue.push_back(pending);
                }
            }
        }
    }
}

/// The next batch of a subscription's events that are due, taken off its
/// queue; `None` when none is due or the fake is stopped.
fn take_due(shared: &Shared, topic: &str, index: usize) -> Option<(Subscription, Vec<Pending>)> {
    let mut state = shared.state();
    if !state.running {
        return None;
    }
    let s = &mut state.topics.get_mut(topic)?.subscriptions[index];
    let now = Instant::now();
    let mut batch = Vec::new();
    let mut waiting = VecDeque::new();
    while let Some(p) = s.queue.pop_front() {
        if p.due <= now && batch.len() < s.subscription.max_events_per_batch {
            batch.push(p);
        } else {
            waiting.push_back(p);
        }
    }
    s.queue = waiting;
    (!batch.is_empty()).then(|| (s.subscription.clone(), batch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiries_are_read_as_clients_write_them() {
        let at = |t: &str| parse_expiry(t).map(|t| t.to_rfc3339());
        let expected = Some("2026-12-03T16:05:00+00:00".to_owned());
        assert_eq!(at("12/3/2026 4:05:00 PM"), expected);
        assert_eq!(at("2026-12-03T16:05:00Z"), expected);
        assert_eq!(at("2026-12-03 16:05:00"), expected);
        assert_eq!(at("2026-12-03 16:05:00+00:00"), expected);
        assert_eq!(at("soon"), None);
    }

    #[test]
    fn a_cloudevent_needs_its_required_attributes() {
        let ok = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
        assert!(check_cloudevent(ok).is_ok());
        for bad in [
            r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#,
            r#"{"specversion":"1.0","source":"s","type":"t"}"#,
            r#"{"specversion":"1.0","id":"1","source":"","type":"t"}"#,
            r#"{"specversion":"1.0","id":"1","source":"s"}"#,
            r#"[1]"#,
        ] {
            assert!(check_cloudevent(bad).is_err(), "{bad}");
        }
    }
}
