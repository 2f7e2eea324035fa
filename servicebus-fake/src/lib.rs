//! A Service Bus namespace on 127.0.0.1 that answers the REST protocol the
//! way the service does, for tests and local runs (no emulator of Service
//! Bus's REST surface runs locally).
//!
//! What it speaks (paths relative to `https://{namespace}.servicebus.windows.net/`):
//!
//! | request                                   | answer |
//! |-------------------------------------------|--------|
//! | `POST {queue or topic}/messages`          | `201`; to a topic, one copy per subscription |
//! | `POST {entity}/messages/head?timeout=N`   | peek-lock: `201` with the body, `BrokerProperties` and the lock's URL in `Location`; `204` when nothing came within N seconds |
//! | `DELETE {entity}/messages/head`           | receive-and-delete: `200` with the body, or `204` |
//! | `DELETE {entity}/messages/{seq}/{lock}`   | complete: `200`; `404` when the lock is not held |
//! | `PUT {entity}/messages/{seq}/{lock}`      | unlock (abandon): `200` |
//! | `POST {entity}/messages/{seq}/{lock}`     | renew the lock: `200` |
//!
//! `{entity}` is a queue, `{topic}/subscriptions/{name}`, or either followed by
//! `/$DeadLetterQueue`. A lock lasts the lock duration unless renewed; when it
//! lapses or is given up, the message is available again, and one delivered
//! `max_delivery_count` times moves to the dead-letter subqueue with the reason
//! `MaxDeliveryCountExceeded`. Every request must carry a shared access
//! signature (`Authorization: SharedAccessSignature sr=…&sig=…&se=…&skn=…`)
//! of a policy with the right (send or listen), signed over the resource URL,
//! unexpired, and for a prefix of the URL requested; otherwise `401`.
//! Messages larger than the namespace takes are refused with `413`.
//!
//! Not spoken: sessions, scheduled messages, deferral, custom properties,
//! message TTL expiry, management operations.

use std::collections::{BTreeMap, VecDeque};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::Notify;
use uuid::Uuid;

/// A shared access policy of the namespace.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub key: String,
    pub send: bool,
    pub listen: bool,
}

impl Policy {
    /// A policy that may send and listen.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key: key.into(),
            send: true,
            listen: true,
        }
    }
}

/// The namespace: its policies and entities, and the limits of its tier.
#[derive(Debug, Clone)]
pub struct Config {
    pub namespace: String,
    pub policies: Vec<Policy>,
    pub queues: Vec<String>,
    /// Topics with their subscriptions.
    pub topics: Vec<(String, Vec<String>)>,
    pub lock_duration: Duration,
    pub max_delivery_count: u32,
    pub max_message_bytes: usize,
    /// Added to every answer, as the way to Azure and back would be.
    pub latency: Duration,
}

impl Config {
    /// The service's defaults: 60 s locks, 10 deliveries, 256 KiB messages
    /// (the standard tier).
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            policies: Vec::new(),
            queues: Vec::new(),
            topics: Vec::new(),
            lock_duration: Duration::from_secs(60),
            max_delivery_count: 10,
            max_message_bytes: 256 * 1024,
            latency: Duration::ZERO,
        }
    }

    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.push(policy);
        self
    }

    pub fn queue(mut self, name: impl Into<String>) -> Self {
        self.queues.push(name.into());
        self
    }

    pub fn topic(mut self, name: impl Into<String>, subscriptions: &[&str]) -> Self {
        let subscriptions = subscriptions.iter().map(|s| s.to_string()).collect();
        self.topics.push((name.into(), subscriptions));
        self
    }

    pub fn lock_duration(mut self, lock_duration: Duration) -> Self {
        self.lock_duration = lock_duration;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn max_message_bytes(mut self, n: usize) -> Self {
        self.max_message_bytes = n;
        self
    }

    pub fn max_delivery_count(mut self, n: u32) -> Self {
        self.max_delivery_count = n;
        self
    }
}

/// A message as the namespace holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub message_id: String,
    pub sequence_number: i64,
    /// How many times it was handed to a receiver.
    pub delivery_count: u32,
    pub enqueued_at: DateTime<Utc>,
    pub label: Option<String>,
    pub correlation_id: Option<String>,
    /// Why it is in a dead-letter subqueue.
    pub dead_letter_reason: Option<String>,
}

impl Message {
    /// A message as sent with no properties: a fresh id, not yet numbered.
    fn new(body: Vec<u8>) -> Self {
        Self {
            body,
            content_type: None,
            message_id: Uuid::new_v4().simple().to_string(),
            sequence_number: 0,
            delivery_count: 0,
            enqueued_at: Utc::now(),
            label: None,
            correlation_id: None,
            dead_letter_reason: None,
        }
    }
}

/// What happened, counted since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub locked: u64,
    pub received_and_deleted: u64,
    pub completed: u64,
    pub abandoned: u64,
    pub renewed: u64,
    pub locks_expired: u64,
    pub dead_lettered: u64,
    /// Requests refused for their signature (401).
    pub unauthorized: u64,
    /// Requests answered with an injected failure.
    pub failed: u64,
    /// Completions refused because the lock was not held (404).
    pub lost_locks: u64,
    /// The most requests it was answering at one time.
    pub most_at_once: u64,
}

#[derive(Debug)]
enum Kind {
    Queue,
    Topic(Vec<String>),
    Subscription,
    DeadLetters,
}

#[derive(Debug)]
struct Lock {
    message: Message,
    token: Uuid,
    until: DateTime<Utc>,
}

#[derive(Debug)]
struct Entity {
    kind: Kind,
    available: VecDeque<Message>,
    locked: Vec<Lock>,
    completed: Vec<Message>,
}

impl Entity {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            available: VecDeque::new(),
            locked: Vec::new(),
            completed: Vec::new(),
        }
    }

    /// Back in line in sequence order, as the service keeps it.
    fn put_back(&mut self, message: Message) {
        let at = self
            .available
            .iter()
            .position(|m| m.sequence_number > message.sequence_number)
            .unwrap_or(self.available.len());
        self.available.insert(at, message);
    }
}

#[derive(Debug)]
struct State {
    entities: BTreeMap<String, Entity>,
    next_sequence: i64,
    stats: Stats,
    fail_with: Option<u16>,
    /// Entity → the status its completions are answered with.
    fail_completes: BTreeMap<String, u16>,
}

const DEAD_LETTER_QUEUE: &str = "$DeadLetterQueue";

impl State {
    /// Gives up a held lock: the message is available again, or dead-lettered
    /// once delivered as often as the namespace allows.
    fn release(&mut self, entity: &str, lock: Lock, max_deliveries: u32) {
        let mut message = lock.message;
        let dead = !entity.ends_with(DEAD_LETTER_QUEUE) && message.delivery_count >= max_deliveries;
        if dead {
            message.dead_letter_reason = Some("MaxDeliveryCountExceeded".into());
            self.stats.dead_lettered += 1;
            let dlq = format!("{entity}/{DEAD_LETTER_QUEUE}");
            self.entities
                .get_mut(&dlq)
                .expect("every receivable entity has a dead-letter subqueue")
                .put_back(message);
        } else {
            self.entities
                .get_mut(entity)
                .expect("a lock's entity exists")
                .put_back(message);
        }
    }

    /// Releases every lock that lapsed; whether any did.
    fn expire_locks(&mut self, now: DateTime<Utc>, max_deliveries: u32) -> bool {
        let mut lapsed = Vec::new();
        for (name, entity) in &mut self.entities {
            let mut i = 0;
            while i < entity.locked.len() {
                if entity.locked[i].until <= now {
                    lapsed.push((name.clone(), entity.locked.remove(i)));
                } else {
                    i += 1;
                }
            }
        }
        let any = !lapsed.is_empty();
        for (name, lock) in lapsed {
            self.stats.locks_expired += 1;
            self.release(&name, lock, max_deliveries);
        }
        any
    }
}

struct Shared {
    config: Config,
    /// Requests being answered now.
    in_flight: AtomicU64,
    state: Mutex<State>,
    arrived: Notify,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues a message sent to `entity` (to each subscription of a topic),
    /// numbering it in the namespace's sequence.
    fn accept(&self, entity: &str, mut message: Message) {
        let mut state = self.state();
        message.sequence_number = state.next_sequence;
        state.next_sequence += 1;
        let targets = match &state.entities[entity].kind {
            Kind::Topic(subscriptions) => subscriptions.clone(),
            _ => vec![entity.to_owned()],
        };
        for target in targets {
            let e = state.entities.get_mut(&target).expect("a known entity");
            e.available.push_back(message.clone());
        }
        state.stats.sent += 1;
        drop(state);
        self.arrived.notify_waiters();
    }

    fn host(&self) -> String {
        format!("https://{}.servicebus.windows.net", self.config.namespace)
    }
}

/// A running fake namespace. Its state outlives [`FakeServiceBus::stop`], so a
/// stopped broker comes back with its messages.
pub struct FakeServiceBus {
    shared: Arc<Shared>,
    port: u16,
    running: Option<(ServerHandle, std::thread::JoinHandle<()>)>,
}

impl FakeServiceBus {
    /// Starts the namespace on a free port of 127.0.0.1.
    pub fn start(config: Config) -> Self {
        let mut entities = BTreeMap::new();
        let mut receivable = Vec::new();
        for queue in &config.queues {
            entities.insert(queue.clone(), Entity::new(Kind::Queue));
            receivable.push(queue.clone());
        }
        for (topic, subscriptions) in &config.topics {
            let paths: Vec<String> = subscriptions
                .iter()
                .map(|s| format!("{topic}/subscriptions/{s}"))
                .collect();
            for path in &paths {
                entities.insert(path.clone(), Entity::new(Kind::Subscription));
                receivable.push(path.clone());
            }
            entities.insert(topic.clone(), Entity::new(Kind::Topic(paths)));
        }
        for path in receivable {
            entities.insert(
                format!("{path}/{DEAD_LETTER_QUEUE}"),
                Entity::new(Kind::DeadLetters),
            );
        }
        let shared = Arc::new(Shared {
            config,
            in_flight: AtomicU64::new(0),
            state: Mutex::new(State {
                entities,
                next_sequence: 1,
                stats: Stats::default(),
                fail_with: None,
                fail_completes: BTreeMap::new(),
            }),
            arrived: Notify::new(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = listener.local_addr().expect("a bound port").port();
        let mut fake = Self {
            shared,
            port,
            running: None,
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
                        .default_service(web::to(handle))
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
        self.running = Some((handle, thread));
    }

    /// `http://127.0.0.1:{port}`: where to send what was meant for the namespace.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn namespace(&self) -> &str {
        &self.shared.config.namespace
    }

    /// Stops answering: connections are refused until [`FakeServiceBus::restart`].
    pub async fn stop(&mut self) {
        if let Some((handle, thread)) = self.running.take() {
            handle.stop(false).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Listens again on the same port, with the messages it held.
    pub fn restart(&mut self) {
        assert!(self.running.is_none(), "restart a stopped fake only");
        let listener =
            TcpListener::bind(("127.0.0.1", self.port)).expect("the fake's port is free again");
        self.serve(listener);
    }

    /// Answers every request with `status` (after checking its signature)
    /// until called with `None`.
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared.state().fail_with = status;
    }

    /// Answers completions (`DELETE` of a lock) on `entity` with `status`
    /// until called with `None`; the lock stays held until it lapses.
    pub fn fail_completes(&self, entity: &str, status: Option<u16>) {
        let mut state = self.shared.state();
        match status {
            Some(status) => state.fail_completes.insert(entity.to_owned(), status),
            None => state.fail_completes.remove(entity),
        };
    }

    /// Puts a message on a queue as a sender would, bytes as they are (a
    /// client in another language may send what no UTF-8 string holds).
    pub fn enqueue(&self, queue: &str, body: Vec<u8>) {
        self.shared.accept(queue, Message::new(body));
    }

    pub fn stats(&self) -> Stats {
        self.shared.state().stats
    }

    /// The messages in an entity, available or locked, in sequence order.
    pub fn active(&self, entity: &str) -> Vec<Message> {
        let state = self.shared.state();
        let Some(e) = state.entities.get(entity) else {
            return Vec::new();
        };
        let mut all: Vec<Message> = e.available.iter().cloned().collect();
        all.extend(e.locked.iter().map(|l| l.message.clone()));
        all.sort_by_key(|m| m.sequence_number);
        all
    }

    /// The messages in an entity's dead-letter subqueue.
    pub fn dead_lettered(&self, entity: &str) -> Vec<Message> {
        self.active(&format!("{entity}/{DEAD_LETTER_QUEUE}"))
    }

    /// The messages receivers completed from an entity, in the order they did.
    pub fn completed(&self, entity: &str) -> Vec<Message> {
        let state = self.shared.state();
        state
            .entities
            .get(entity)
            .map(|e| e.completed.clone())
            .unwrap_or_default()
    }
}

impl Drop for FakeServiceBus {
    fn drop(&mut self) {
        if let Some((handle, _thread)) = self.running.take() {
            // Stops the fake's system; its thread ends with it.
            drop(handle.stop(false));
        }
    }
}

/// What a request asks for.
enum Operation {
    Send,
    PeekLock,
    ReceiveAndDelete,
    Complete { id: String, lock: String },
    Unlock { id: String, lock: String },
    Renew { id: String, lock: String },
}

fn operation(method: &Method, path: &str) -> Option<(String, Operation)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let n = segments.len();
    let entity = |k: usize| segments[..n - k].join("/");
    if n >= 2 && segments[n - 1] == "messages" && method == Method::POST {
        return Some((entity(1), Operation::Send));
    }
    if n >= 3 && segments[n - 2] == "messages" && segments[n - 1] == "head" {
        return match *method {
            Method::POST => Some((entity(2), Operation::PeekLock)),
            Method::DELETE => Some((entity(2), Operation::ReceiveAndDelete)),
            _ => None,
        };
    }
    if n >= 4 && segments[n - 3] == "messages" {
        let id = segments[n - 2].to_owned();
        let lock = segments[n - 1].to_owned();
        return match *method {
            Method::DELETE => Some((entity(3), Operation::Complete { id, lock })),
            Method::PUT => Some((entity(3), Operation::Unlock { id, lock })),
            Method::POST => Some((entity(3), Operation::Renew { id, lock })),
            _ => None,
        };
    }
    None
}

/// An error as the service words it.
fn error(status: StatusCode, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/xml; charset=utf-8")
        .body(format!(
            "<Error><Code>{}</Code><Detail>{}</Detail></Error>",
            status.as_u16(),
            detail.replace('&', "&amp;").replace('<', "&lt;")
        ))
}

fn percent_decode(raw: &str) -> String {
    form_urlencoded::parse(format!("v={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Checks the request's shared access signature; the policy's name if valid.
fn authorize(shared: &Shared, req: &HttpRequest, listen: bool) -> Result<(), String> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let token = header
        .strip_prefix("SharedAccessSignature ")
        .ok_or("the Authorization header is not a SharedAccessSignature")?;
    let mut fields = BTreeMap::new();
    for pair in token.split('&') {
        let (k, v) = pair.split_once('=').ok_or("a malformed token field")?;
        fields.insert(k, v);
    }
    let field = |k: &str| {
        fields
            .get(k)
            .copied()
            .ok_or(format!("the token has no `{k}`"))
    };
    let (sr, sig, se, skn) = (field("sr")?, field("sig")?, field("se")?, field("skn")?);
    let policy = shared
        .config
        .policies
        .iter()
        .find(|p| p.name == skn)
        .ok_or(format!("no policy `{skn}`"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(policy.key.as_bytes()).expect("any key length");
    mac.update(format!("{sr}\n{se}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD
        .decode(percent_decode(sig))
        .map_err(|_| "the signature is not base64")?;
    mac.verify_slice(&signature)
        .map_err(|_| "the signature does not match")?;
    let expiry: i64 = se.parse().map_err(|_| "the expiry is not a number")?;
    if expiry < Utc::now().timestamp() {
        return Err("ExpiredToken: the token has expired".into());
    }
    let requested = format!(
        "{}{}",
        shared.host(),
        req.uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let resource = percent_decode(sr);
    if !requested
        .to_lowercase()
        .starts_with(&resource.to_lowercase())
    {
        return Err(format!("the token is for {resource}, not for {requested}"));
    }
    let allowed = if listen { policy.listen } else { policy.send };
    if !allowed {
        return Err(format!(
            "policy `{}` lacks the {} right",
            policy.name,
            if listen { "Listen" } else { "Send" }
        ));
    }
    Ok(())
}

async fn handle(shared: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let _counted = InFlight::enter(&shared);
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    answer(&shared, &req, body).await
}

/// Counts a request as being answered until dropped (also when the client
/// goes away mid-request).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let mut state = shared.state();
        state.stats.most_at_once = state.stats.most_at_once.max(now);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(shared: &Shared, req: &HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some((entity, op)) = operation(req.method(), req.uri().path()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "not a Service Bus message operation",
        );
    };
    let listen = !matches!(op, Operation::Send);
    if let Err(why) = authorize(shared, req, listen) {
        shared.state().stats.unauthorized += 1;
        return error(StatusCode::UNAUTHORIZED, &why);
    }
    {
        let mut state = shared.state();
        if let Some(status) = state.fail_with {
            state.stats.failed += 1;
            return error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected failure",
            );
        }
        let kind = state.entities.get(&entity).map(|e| &e.kind);
        match (&op, kind) {
            (_, None) => {
                return error(StatusCode::GONE, &format!("no entity `{entity}`"));
            }
            (Operation::Send, Some(Kind::Subscription | Kind::DeadLetters)) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot send to `{entity}`"),
                );
            }
            (Operation::Send, _) => {}
            (_, Some(Kind::Topic(_))) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("receive from a subscription of `{entity}`, not the topic"),
                );
            }
            _ => {}
        }
    }
    match op {
        Operation::Send => send(shared, req, &entity, body),
        Operation::PeekLock => receive(shared, req, &entity, true).await,
        Operation::ReceiveAndDelete => receive(shared, req, &entity, false).await,
        Operation::Complete { id, lock } => settle(shared, &entity, &id, &lock, Settle::Complete),
        Operation::Unlock { id, lock } => settle(shared, &entity, &id, &lock, Settle::Unlock),
        Operation::Renew { id, lock } => settle(shared, &entity, &id, &lock, Settle::Renew),
    }
}

fn send(shared: &Shared, req: &HttpRequest, entity: &str, body: web::Bytes) -> HttpResponse {
    if body.len() > shared.config.max_message_bytes {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!(
                "the message is {} bytes; the limit is {}",
                body.len(),
                shared.config.max_message_bytes
            ),
        );
    }
    let properties: Value = match req.headers().get("brokerproperties") {
        None => json!({}),
        Some(v) => match v.to_str().ok().and_then(|s| serde_json::from_str(s).ok()) {
            Some(p @ Value::Object(_)) => p,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BrokerProperties is not a JSON object",
                )
            }
        },
    };
    let text = |k: &str| properties.get(k).and_then(Value::as_str).map(str::to_owned);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut message = Message {
        content_type,
        label: text("Label"),
        correlation_id: text("CorrelationId"),
        ..Message::new(body.to_vec())
    };
    if let Some(id) = text("MessageId") {
        message.message_id = id;
    }
    shared.accept(entity, message);
    HttpResponse::Created().finish()
}

fn rfc1123(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

fn broker_properties(m: &Message, lock: Option<(Uuid, DateTime<Utc>)>) -> String {
    let mut p = json!({
        "DeliveryCount": m.delivery_count,
        "EnqueuedSequenceNumber": 0,
        "EnqueuedTimeUtc": rfc1123(m.enqueued_at),
        "MessageId": m.message_id,
        "SequenceNumber": m.sequence_number,
        "State": "Active",
        "TimeToLive": 922337203685.4775_f64,
        "LockedUntilUtc": rfc1123(lock.map(|l| l.1).unwrap_or_else(Utc::now)),
    });
    if let Some((token, _)) = lock {
        p["LockToken"] = json!(token.to_string());
    }
    if let Some(label) = &m.label {
        p["Label"] = json!(label);
    }
    if let Some(c) = &m.correlation_id {
        p["CorrelationId"] = json!(c);
    }
    p.to_string()
}

async fn receive(shared: &Shared, req: &HttpRequest, entity: &str, lock: bool) -> HttpResponse {
    let wait = web::Query::<BTreeMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("timeout").and_then(|t| t.parse::<u64>().ok()))
        .unwrap_or(60);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let max_deliveries = shared.config.max_delivery_count;
    loop {
        let arrived = shared.arrived.notified();
        {
            let mut state = shared.state();
            let now = Utc::now();
            state.expire_locks(now, max_deliveries);
            let e = state.entities.get_mut(entity).expect("checked before");
            if let Some(mut message) = e.available.pop_front() {
                message.delivery_count += 1;
                let held = lock.then(|| {
                    let token = Uuid::new_v4();
                    let until = now
                        + chrono::Duration::from_std(shared.config.lock_duration)
                            .expect("a lock duration in range");
                    e.locked.push(Lock {
                        message: message.clone(),
                        token,
                        until,
                    });
                    (token, until)
                });
                let mut response = match held {
                    Some((token, _)) => {
                        state.stats.locked += 1;
                        let mut r = HttpResponse::Created();
                        r.insert_header((
                            "Location",
                            format!(
                                "{}/{entity}/messages/{}/{token}",
                                shared.host(),
                                message.sequence_number
                            ),
                        ));
                        r
                    }
                    None => {
                        e.completed.push(message.clone());
                        state.stats.received_and_deleted += 1;
                        HttpResponse::Ok()
                    }
                };
                response.insert_header(("BrokerProperties", broker_properties(&message, held)));
                if let Some(reason) = &message.dead_letter_reason {
                    response.insert_header(("DeadLetterReason", format!("\"{reason}\"")));
                }
                if let Some(ct) = &message.content_type {
                    response.insert_header(("Content-Type", ct.as_str()));
                }
                return response.body(message.body);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return HttpResponse::NoContent().finish();
        }
        // New messages wake the wait; lapsed locks are looked for every 20 ms.
        tokio::select! {
            _ = arrived => {}
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

enum Settle {
    Complete,
    Unlock,
    Renew,
}

fn settle(shared: &Shared, entity: &str, id: &str, lock: &str, how: Settle) -> HttpResponse {
    let max_deliveries = shared.config.max_delivery_count;
    let mut state = shared.state();
    if matches!(how, Settle::Complete) {
        if let Some(&status) = state.fail_completes.get(entity) {
            state.stats.failed += 1;
            return error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "injected failure",
            );
        }
    }
    state.expire_locks(Utc::now(), max_deliveries);
    let e = state.entities.get_mut(entity).expect("checked before");
    let held = e.locked.iter().position(|l| {
        l.token.to_string() == lock.to_lowercase()
            && (l.message.sequence_number.to_string() == id || l.message.message_id == id)
    });
    let Some(i) = held else {
        state.stats.lost_locks += 1;
        return error(
            StatusCode::NOT_FOUND,
            "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.",
        );
    };
    match how {
        Settle::Complete => {
            let l = e.locked.remove(i);
            e.completed.push(l.message);
            state.stats.completed += 1;
            HttpResponse::Ok().finish()
        }
        Settle::Unlock => {
            let l = e.locked.remove(i);
            state.stats.abandoned += 1;
            state.release(entity, l, max_deliveries);
            drop(state);
            shared.arrived.notify_waiters();
            HttpResponse::Ok().finish()
        }
        Settle::Renew => {
            let until = Utc::now()
                + chrono::Duration::from_std(shared.config.lock_duration)
                    .expect("a lock duration in range");
            e.locked[i].until = until;
            let properties =
                broker_properties(&e.locked[i].message, Some((e.locked[i].token, until)));
            state.stats.renewed += 1;
            HttpResponse::Ok()
                .insert_header(("BrokerProperties", properties))
                .finish()
        }
    }
}
