//! Settings: defaults, overridden by an optional TOML file, overridden by the
//! environment (`SAGAPLANE_LISTEN`, `DATABASE_URL`, and `SAGAPLANE_<SECTION>__<KEY>`
//! for every other key). Every key is documented in README.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use sagaplane_adapters::servicebus::serialize_redacted;
use sagaplane_adapters::{
    EventBridgeSettings, EventGridSettings, GroupCommit, ServiceBusReceiverSettings,
    ServiceBusSettings, SimulatorSettings,
};
use sagaplane_orchestrator::{OrchestratorConfig, Retention};
use sagaplane_sagas::{Policy, RetryPolicy};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address the HTTP API listens on; port 0 picks a free one.
    pub listen: String,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub saga: SagaSettings,
    pub orchestrator: RuntimeSettings,
    pub simulator: SimulatorSettings,
    pub auth: AuthSettings,
    pub cluster: ClusterSettings,
    /// Per saga type overrides of `[saga]`, e.g. `[saga_types.order]`.
    pub saga_types: BTreeMap<String, SagaTypeSettings>,
    /// Saga definition files to load besides the shipped ones.
    pub definitions: DefinitionSettings,
    /// Transports besides the in-process one.
    pub transports: TransportSettings,
    /// Command type or participant → transport (`in-process`, `eventbridge`,
    /// `servicebus`, `eventgrid`); a command type's entry wins over its participant's;
    /// commands named neither way use `in-process`.
    pub routing: BTreeMap<String, String>,
    pub ingress: IngressSettings,
    pub retention: RetentionSettings,
}

/// Deleting finished sagas (completed, compensated, cancelled) with their
/// history, commands and inbox rows; off unless `finished_after_seconds` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// A saga finished this long ago is deleted.
    pub finished_after_seconds: Option<u64>,
    /// Sagas deleted per transaction.
    pub batch: u32,
    /// Pause between two transactions of a node.
    pub interval_ms: u64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            finished_after_seconds: None,
            batch: 500,
            interval_ms: 1_000,
        }
    }
}

/// `[definitions]`: where the teams' saga definitions are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefinitionSettings {
    /// Definition files (TOML), or folders whose `*.toml` files are all
    /// definitions; read at start-up in the order given.
    pub paths: Vec<PathBuf>,
}

/// Inbound channels for replies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressSettings {
    /// `POST /v1/ingress/eventbridge`, for EventBridge API destinations.
    pub eventbridge: EventBridgeIngressSettings,
    /// `POST /v1/ingress/eventgrid`, for Event Grid subscriptions' webhooks.
    pub eventgrid: EventGridIngressSettings,
    /// `[ingress.servicebus]`: receive replies from a Service Bus queue or
    /// subscription (through `[transports.servicebus]`'s namespace); absent: off.
    pub servicebus: Option<ServiceBusReceiverSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventBridgeIngressSettings {
    /// The key the API destination's connection sends; empty: the ingress is off (404).
    pub api_key: ApiKey,
    /// The header it comes in.
    pub header: String,
    /// Largest reply taken (EventBridge's entries reach 256 KiB); a larger one
    /// is kept as a dead letter, cut to this size, and answered 413.
    pub max_body_bytes: usize,
}

impl Default for EventBridgeIngressSettings {
    fn default() -> Self {
        Self {
            api_key: ApiKey::default(),
            header: "x-api-key".into(),
            max_body_bytes: sagaplane_orchestrator::codec::MAX_REPLY_BYTES,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventGridIngressSettings {
    /// The key a subscription's webhook URL carries (`?code=…`) or its
    /// delivery properties send as a header; empty: only bearer tokens with
    /// the `participant` role are taken, and with access control off the
    /// ingress is off (404).
    pub key: ApiKey,
    /// The query parameter the key may come in.
    pub query_parameter: String,
    /// The header the key may come in.
    pub header: String,
    /// The origins whose validation handshake is allowed (`*`: any).
    pub allowed_origins: Vec<String>,
    /// Largest delivery taken (Event Grid's batches reach 1 MB); a larger one
    /// is kept as a dead letter, cut to this size, and answered 413. Each
    /// reply in it is still held to 256 KiB.
    pub max_body_bytes: usize,
}

impl Default for EventGridIngressSettings {
    fn default() -> Self {
        Self {
            key: ApiKey::default(),
            query_parameter: "code".into(),
            header: "x-api-key".into(),
            allowed_origins: vec!["eventgrid.azure.net".into()],
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// An ingress key: a [`SecretString`] (redacted in `Debug`,
/// wiped on drop) that can say whether it is set without being exposed.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// No key: the ingress is off.
    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }
}

impl ExposeSecret<str> for ApiKey {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for ApiKey {
    fn from(key: &str) -> Self {
        Self(key.into())
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        Self(key.into())
    }
}

impl Serialize for ApiKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_redacted(&self.0, serializer)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// `[transports.eventbridge]`: commands to AWS participants.
    pub eventbridge: Option<EventBridgeSettings>,
    /// `[transports.servicebus]`: commands to Azure participants.
    pub servicebus: Option<ServiceBusSettings>,
    /// `[transports.eventgrid]`: commands to participants behind an Event
    /// Grid topic.
    pub eventgrid: Option<EventGridSettings>,
}

/// Several nodes on one database share the saga partitions through leases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// This node's name in the leases; empty: `<hostname>/<listen address>`.
    pub node_id: String,
    /// How long a partition lease lasts unless renewed; a dead node's
    /// partitions are taken over after at most this long.
    pub lease_ttl_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            node_id: String::new(),
            lease_ttl_ms: OrchestratorConfig::default().lease_ttl.as_millis() as u64,
        }
    }
}

/// Access control; with no tokens and no `[auth.jwt]` the API is open (and
/// the server says so at start).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub tokens: Vec<TokenSettings>,
    /// `[auth.jwt]`: access tokens (JWTs) of an identity provider, beside
    /// the static tokens; absent: off.
    pub jwt: Option<JwtSettings>,
}

/// `[auth.jwt]`: which JWTs are accepted and what their claims grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// The `iss` every token must carry, exactly.
    pub issuer: String,
    /// The values the audience claim must hold one of.
    #[serde(deserialize_with = "one_or_many")]
    pub audience: Vec<String>,
    /// The claim holding the audience: `aud`, or e.g. `client_id` for
    /// Cognito's access tokens, which have no `aud`.
    pub audience_claim: String,
    /// Where the identity provider publishes its signing keys (a JWK Set).
    pub jwks_url: String,
    /// The signature algorithms accepted; asymmetric ones only.
    #[serde(deserialize_with = "one_or_many")]
    pub algorithms: Vec<String>,
    /// The claim that names the caller (recorded as the operator of an
    /// intervention).
    pub subject_claim: String,
    /// The claim carrying the caller's roles, groups or scopes: an array of
    /// strings or a space-separated string; a dotted path reaches into
    /// objects (`realm_access.roles`).
    pub roles_claim: String,
    /// A value of `roles_claim` → the role it grants; other values grant nothing.
    pub roles: BTreeMap<String, Role>,
    /// Clock difference allowed when checking `exp` and `nbf`.
    pub leeway_seconds: u64,
    /// How often the keys are fetched again anyway.
    pub jwks_refresh_seconds: u64,
    /// A token signed with a key not (yet) known fetches the keys again, at
    /// most this often.
    pub jwks_min_refetch_ms: u64,
    /// How long one fetch of the keys may take.
    pub jwks_timeout_ms: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: Vec::new(),
            audience_claim: "aud".into(),
            jwks_url: String::new(),
            algorithms: vec!["RS256".into()],
            subject_claim: "sub".into(),
            roles_claim: "roles".into(),
            roles: BTreeMap::new(),
            leeway_seconds: 30,
            jwks_refresh_seconds: 3600,
            jwks_min_refetch_ms: 10_000,
            jwks_timeout_ms: 5_000,
        }
    }
}

impl JwtSettings {
    /// The accepted algorithms, parsed: each one asymmetric (an `HS256`
    /// token would be checked against a public key anyone can read).
    pub fn parsed_algorithms(&self) -> Result<Vec<jsonwebtoken::Algorithm>, String> {
        use jsonwebtoken::{Algorithm, AlgorithmFamily};
        if self.algorithms.is_empty() {
            return Err("auth.jwt.algorithms names no algorithm".into());
        }
        self.algorithms
            .iter()
            .map(|name| {
                let alg: Algorithm = name.parse().map_err(|_| {
                    format!(
                        "auth.jwt.algorithms: `{name}` is not a JWS algorithm (e.g. RS256, ES256)"
                    )
                })?;
                if alg.family() == AlgorithmFamily::Hmac {
                    return Err(format!(
                        "auth.jwt.algorithms: `{name}` is symmetric; only public-key algorithms \
                         (RS*, PS*, ES*, EdDSA) can be checked against a JWKS"
                    ));
                }
                Ok(alg)
            })
            .collect()
    }

    /// Every key needed is there and makes sense; `Err` names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.issuer.trim().is_empty() {
            return Err("auth.jwt.issuer is required".into());
        }
        if self.audience.iter().all(|a| a.trim().is_empty()) {
            return Err("auth.jwt.audience is required".into());
        }
        if !(self.jwks_url.starts_with("https://") || self.jwks_url.starts_with("http://")) {
            return Err("auth.jwt.jwks_url must be an http(s) URL".into());
        }
        for (key, value) in [
            ("audience_claim", &self.audience_claim),
            ("subject_claim", &self.subject_claim),
            ("roles_claim", &self.roles_claim),
        ] {
            if value.trim().is_empty() {
                return Err(format!("auth.jwt.{key} must name a claim"));
            }
        }
        if self.roles.is_empty() {
            return Err(
                "auth.jwt.roles maps no claim value to a role, so no token would be allowed anything"
                    .into(),
            );
        }
        if self.jwks_refresh_seconds == 0 {
            return Err("auth.jwt.jwks_refresh_seconds must be at least 1".into());
        }
        self.parsed_algorithms().map(drop)
    }
}

/// A string or a list of strings, as a list.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// The shortest token accepted: a guessable token is no access control.
pub const MIN_TOKEN_LEN: usize = 16;

impl AuthSettings {
    /// Whether any bearer token is accepted, so that access control is on.
    pub fn access_control(&self) -> bool {
        !self.tokens.is_empty() || self.jwt.is_some()
    }

    /// Every token long enough, no two entries sharing one (which would
    /// make the recorded operator a guess), and `[auth.jwt]` complete; `Err`
    /// names the entries.
    pub fn check(&self) -> Result<(), String> {
        if let Some(jwt) = &self.jwt {
            jwt.check()?;
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let token = t.token.expose_secret();
            if token.trim().chars().count() < MIN_TOKEN_LEN {
                return Err(format!(
                    "auth.tokens[{i}] (`{}`): a token must be at least {MIN_TOKEN_LEN} characters",
                    t.name
                ));
            }
            if let Some(j) = self.tokens[..i]
                .iter()
                .position(|o| o.token.expose_secret() == token)
            {
                return Err(format!(
                    "auth.tokens[{i}] (`{}`) has the same token as auth.tokens[{j}] (`{}`)",
                    t.name, self.tokens[j].name
                ));
            }
        }
        Ok(())
    }
}

/// One configured access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Who holds it; recorded as the actor of every intervention made with it.
    pub name: String,
    #[serde(serialize_with = "serialize_redacted")]
    pub token: SecretString,
    pub roles: Vec<Role>,
}

/// What a token may do. `operator` includes `viewer`, `admin` includes
/// `operator`; `starter` only starts sagas, `participant` only delivers replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Start sagas (`POST /v1/sagas`): participant-facing services.
    Starter,
    /// Read sagas, their history, stats and metrics.
    Viewer,
    /// Viewer, and act on sagas.
    Operator,
    /// Operator, and handle dead letters.
    Admin,
    /// Deliver replies through an ingress (`POST /v1/ingress/eventbridge`,
    /// `POST /v1/ingress/eventgrid`)
    /// with a bearer token instead of the ingress's API key.
    Participant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Created and migrated at start-up if missing. Absent: [`DEFAULT_URL`]
    /// if a server answers there, else a private server (see `private`).
    pub url: Option<String>,
    /// Whether `serve` runs a private PostgreSQL server of its own.
    pub private: PrivateMode,
    /// The private server's data; absent: `sagaplane` in the user's data
    /// directory (`$XDG_DATA_HOME`, `~/.local/share`), `/var/lib/sagaplane`
    /// for root.
    pub private_dir: Option<PathBuf>,
    /// The folder holding PostgreSQL's `initdb` and `postgres`; absent:
    /// searched for (`pg_config --bindir`, the usual install folders, `PATH`).
    pub postgres_bin: Option<PathBuf>,
    pub max_connections: u32,
    /// Group commit: batches of saga steps written at the same time.
    pub commit_concurrency: usize,
    /// Group commit: saga steps in one transaction at most.
    pub commit_max_batch: usize,
}

/// The address used when `database.url` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/sagaplane";

/// `database.private`: when `serve` runs a private PostgreSQL server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivateMode {
    /// When `database.url` is not set and nothing answers at [`DEFAULT_URL`].
    #[default]
    Auto,
    /// Always (then `database.url` must not be set).
    Always,
    /// Never: without `database.url`, [`DEFAULT_URL`].
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// A request body must have arrived this long after its headers, or
    /// the request gets `408` and its connection is closed.
    pub body_timeout_ms: u64,
    /// Longest `?wait=` a client may ask for.
    pub max_wait_seconds: u64,
    /// HTTP worker threads; 0 means half the cores, at least one (the
    /// actors and the committer have threads of their own).
    pub workers: usize,
}

/// Timeouts and retry budgets, fixed into each saga when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagaSettings {
    pub step_timeout_ms: u64,
    pub step_max_attempts: u32,
    pub compensation_max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// The whole saga must have gone forward to its end within this long of
    /// its start, or it compensates; 0: no deadline.
    pub deadline_ms: u64,
    /// Step name → its own timeout, instead of `step_timeout_ms`.
    pub step_timeouts_ms: BTreeMap<String, u64>,
}

/// `[saga_types.<type>]`: the `[saga]` keys for one saga type; each one given
/// replaces the `[saga]` value (`step_timeouts_ms` entries are added to it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SagaTypeSettings {
    pub step_timeout_ms: Option<u64>,
    pub step_max_attempts: Option<u32>,
    pub compensation_max_attempts: Option<u32>,
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub step_timeouts_ms: BTreeMap<String, u64>,
}

impl SagaSettings {
    /// These settings with a saga type's overrides.
    fn with(&self, t: &SagaTypeSettings) -> SagaSettings {
        let mut step_timeouts_ms = self.step_timeouts_ms.clone();
        step_timeouts_ms.extend(t.step_timeouts_ms.clone());
        SagaSettings {
            step_timeout_ms: t.step_timeout_ms.unwrap_or(self.step_timeout_ms),
            step_max_attempts: t.step_max_attempts.unwrap_or(self.step_max_attempts),
            compensation_max_attempts: t
                .compensation_max_attempts
                .unwrap_or(self.compensation_max_attempts),
            backoff_initial_ms: t.backoff_initial_ms.unwrap_or(self.backoff_initial_ms),
            backoff_max_ms: t.backoff_max_ms.unwrap_or(self.backoff_max_ms),
            deadline_ms: t.deadline_ms.unwrap_or(self.deadline_ms),
            step_timeouts_ms,
        }
    }

    fn policy(&self) -> Policy {
        let retry = |max_attempts: u32| RetryPolicy {
            max_attempts: max_attempts.max(1),
            backoff_initial_ms: self.backoff_initial_ms,
            backoff_max_ms: self.backoff_max_ms,
            jitter: true,
        };
        Policy {
            step_timeout_ms: self.step_timeout_ms,
            step_timeouts_ms: self.step_timeouts_ms.clone(),
            forward: retry(self.step_max_attempts),
            compensation: retry(self.compensation_max_attempts),
            saga_deadline_ms: self.deadline_ms,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// A saga actor with no input for this long is stopped (rebuilt on demand).
    pub idle_timeout_ms: u64,
    /// How often due timers are polled.
    pub timer_interval_ms: u64,
    /// How often the outbox is swept for rows left unsent.
    pub outbox_sweep_interval_ms: u64,
    /// Attempts to hand a command to its transport before it is dead-lettered.
    pub publish_max_attempts: u32,
    /// First delay before publishing again; doubles per attempt, jittered.
    pub publish_backoff_initial_ms: u64,
    /// Cap on that delay.
    pub publish_backoff_max_ms: u64,
    /// A saga whose actor panics this often within `crash_window_ms` is suspended.
    pub crash_limit: u32,
    pub crash_window_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            saga: SagaSettings::default(),
            orchestrator: RuntimeSettings::default(),
            simulator: SimulatorSettings::default(),
            auth: AuthSettings::default(),
            cluster: ClusterSettings::default(),
            saga_types: BTreeMap::new(),
            definitions: DefinitionSettings::default(),
            transports: TransportSettings::default(),
            routing: BTreeMap::new(),
            ingress: IngressSettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: None,
            private: PrivateMode::Auto,
            private_dir: None,
            postgres_bin: None,
            max_connections: 16,
            commit_concurrency: GroupCommit::default().concurrency,
            commit_max_batch: GroupCommit::default().max_batch,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            body_timeout_ms: 10_000,
            max_wait_seconds: 60,
            workers: 0,
        }
    }
}

impl Default for SagaSettings {
    fn default() -> Self {
        let p = Policy::default();
        Self {
            step_timeout_ms: p.step_timeout_ms,
            step_max_attempts: p.forward.max_attempts,
            compensation_max_attempts: p.compensation.max_attempts,
            backoff_initial_ms: p.forward.backoff_initial_ms,
            backoff_max_ms: p.forward.backoff_max_ms,
            deadline_ms: p.saga_deadline_ms,
            step_timeouts_ms: BTreeMap::new(),
        }
    }
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        let c = OrchestratorConfig::default();
        Self {
            idle_timeout_ms: c.idle_timeout.as_millis() as u64,
            timer_interval_ms: c.timer_interval.as_millis() as u64,
            outbox_sweep_interval_ms: c.outbox_sweep_interval.as_millis() as u64,
            publish_max_attempts: c.publish.max_attempts,
            publish_backoff_initial_ms: c.publish.backoff_initial_ms,
            publish_backoff_max_ms: c.publish.backoff_max_ms,
            crash_limit: c.crash_limit,
            crash_window_ms: c.crash_window.as_millis() as u64,
        }
    }
}

impl Settings {
    /// Defaults, then `file` if given, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, Box<figment::Error>> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(Box::new(figment::Error::from(format!(
                    "configuration file {} does not exist",
                    file.display()
                ))));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment
            .merge(
                Env::prefixed("SAGAPLANE_")
                    // Only settings: `SAGAPLANE_URL` and `SAGAPLANE_TOKEN` are the
                    // operator CLI's, and tools may have their own.
                    .filter(|key| key == "listen" || key.as_str().contains("__"))
                    .split("__"),
            )
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database.url".into()),
            )
            .extract()
            .map_err(Box::new)
    }

    pub fn group_commit(&self) -> GroupCommit {
        GroupCommit {
            concurrency: self.database.commit_concurrency.max(1),
            max_batch: self.database.commit_max_batch.max(1),
            on_batch: None,
        }
    }

    pub fn orchestrator_config(&self) -> OrchestratorConfig {
        let o = &self.orchestrator;
        OrchestratorConfig {
            policy: self.saga.policy(),
            type_policies: self
                .saga_types
                .iter()
                .map(|(t, overrides)| (t.clone(), self.saga.with(overrides).policy()))
                .collect(),
            idle_timeout: Duration::from_millis(o.idle_timeout_ms),
            timer_interval: Duration::from_millis(o.timer_interval_ms.max(1)),
            outbox_sweep_interval: Duration::from_millis(o.outbox_sweep_interval_ms.max(1)),
            publish: RetryPolicy {
                max_attempts: o.publish_max_attempts.max(1),
                backoff_initial_ms: o.publish_backoff_initial_ms,
                backoff_max_ms: o.publish_backoff_max_ms,
                jitter: true,
            },
            crash_limit: o.crash_limit.max(1),
            crash_window: Duration::from_millis(o.crash_window_ms),
            node_id: if self.cluster.node_id.trim().is_empty() {
                // Stable across restarts (a restarted node renews its own
                // leases at once) and unique among nodes on one host.
                format!("{}/{}", hostname(), self.listen)
            } else {
                self.cluster.node_id.clone()
            },
            lease_ttl: Duration::from_millis(self.cluster.lease_ttl_ms.max(300)),
            retention: self
                .retention
                .finished_after_seconds
                .map(|seconds| Retention {
                    finished_for: Duration::from_secs(seconds),
                    batch: self.retention.batch.max(1),
                    interval: Duration::from_millis(self.retention.interval_ms.max(10)),
                }),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
// figment::Jail's closures must return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment_override_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "sagaplane.toml",
                "listen = \"127.0.0.1:9000\"\n[simulator]\nlatency_ms = 5\n",
            )?;
            jail.set_env("DATABASE_URL", "postgres://db/x");
            jail.set_env("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", "1500");
            let s = Settings::load(Some(Path::new("sagaplane.toml"))).map_err(|e| *e)?;
            assert_eq!(s.listen, "127.0.0.1:9000");
            assert_eq!(s.simulator.latency_ms, 5);
            assert_eq!(s.database.url.as_deref(), Some("postgres://db/x"));
            assert_eq!(s.saga.step_timeout_ms, 1500);
            assert_eq!(s.http, HttpSettings::default());
            // The CLI's variables and other tools' are not settings.
            jail.set_env("SAGAPLANE_URL", "http://127.0.0.1:1");
            jail.set_env("SAGAPLANE_TOKEN", "t");
            jail.set_env("SAGAPLANE_SCHEMATHESIS", "/x");
            jail.set_env("SAGAPLANE_LISTEN", "0.0.0.0:1");
            assert_eq!(Settings::load(None).map_err(|e| *e)?.listen, "0.0.0.0:1");
            Ok(())
        });
    }

    #[test]
    fn retention_is_off_unless_an_age_is_set() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| *e)?;
            assert!(s.orchestrator_config().retention.is_none());
            jail.set_env("SAGAPLANE_RETENTION__FINISHED_AFTER_SECONDS", "86400");
            jail.set_env("SAGAPLANE_RETENTION__BATCH", "0");
            let s = Settings::load(None).map_err(|e| *e)?;
            let r = s.orchestrator_config().retention.expect("on");
            assert_eq!(r.finished_for, Duration::from_secs(86_400));
            // A batch of none would never delete anything: at least one.
            assert_eq!(r.batch, 1);
            assert_eq!(r.interval, Duration::from_millis(1_000));
            Ok(())
        });
    }

    #[test]
    fn the_database_is_unset_by_default_and_the_private_server_configurable() {
        figment::Jail::expect_with(|jail| {
            let s = Settings::load(None).map_err(|e| *e)?;
            assert_eq!(s.database.url, None);
            assert_eq!(s.database.private, PrivateMode::Auto);
            assert_eq!(s.database.private_dir, None);
            jail.create_file(
                "private.toml",
                "[database]\nprivate = \"always\"\nprivate_dir = \"/srv/sagaplane\"\n\
                 postgres_bin = \"/opt/pg/bin\"\n",
            )?;
            let s = Settings::load(Some(Path::new("private.toml"))).map_err(|e| *e)?;
            assert_eq!(s.database.private, PrivateMode::Always);
            assert_eq!(
                s.database.private_dir.as_deref(),
                Some(Path::new("/srv/sagaplane"))
            );
            assert_eq!(
                s.database.postgres_bin.as_deref(),
                Some(Path::new("/opt/pg/bin"))
            );
            jail.set_env("SAGAPLANE_DATABASE__PRIVATE", "never");
            let s = Settings::load(None).map_err(|e| *e)?;
            assert_eq!(s.database.private, PrivateMode::Never);
            jail.set_env("SAGAPLANE_DATABASE__PRIVATE", "sometimes");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("sometimes"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_saga_type_and_a_step_can_have_their_own_timeouts() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "types.toml",
                "[saga]\nstep_timeout_ms = 1000\n[saga.step_timeouts_ms]\n\"confirm-order\" = 3000\n\
                 [saga_types.order]\ndeadline_ms = 60000\nstep_max_attempts = 7\n\
                 [saga_types.order.step_timeouts_ms]\n\"charge-payment\" = 5000\n",
            )?;
            let s = Settings::load(Some(Path::new("types.toml"))).map_err(|e| *e)?;
            let c = s.orchestrator_config();
            assert_eq!(c.policy.step_timeout_ms("charge-payment"), 1_000);
            assert_eq!(c.policy.saga_deadline_ms, 0);
            let order = &c.type_policies["order"];
            assert_eq!(order.step_timeout_ms("charge-payment"), 5_000);
            assert_eq!(order.step_timeout_ms("confirm-order"), 3_000);
            assert_eq!(order.step_timeout_ms("reserve-inventory"), 1_000);
            assert_eq!(order.saga_deadline_ms, 60_000);
            assert_eq!(order.forward.max_attempts, 7);
            assert_eq!(
                order.compensation.max_attempts,
                c.policy.compensation.max_attempts
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_missing_files_are_errors() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("bad.toml", "[saga]\nstep_timout_ms = 1\n")?;
            let err = Settings::load(Some(Path::new("bad.toml"))).unwrap_err();
            assert!(err.to_string().contains("step_timout_ms"), "{err}");
            assert!(Settings::load(Some(Path::new("nope.toml"))).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_readme_cross_cloud_example_is_a_valid_configuration() {
        let readme = include_str!("../../README.md");
        let example = readme
            .split("**Routing, one AWS and one Azure participant.**")
            .nth(1)
            .and_then(|rest| rest.split("```toml\n").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("README.md has the cross-cloud example");
        figment::Jail::expect_with(|jail| {
            jail.create_file("cross-cloud.toml", example)?;
            jail.set_env(
                "SAGAPLANE_TRANSPORTS__SERVICEBUS__KEY",
                "from-the-environment",
            );
            let s = Settings::load(Some(Path::new("cross-cloud.toml"))).map_err(|e| *e)?;
            assert_eq!(s.routing["inventory"], "eventbridge");
            assert_eq!(s.routing["payment"], "servicebus");
            assert_eq!(s.transports.eventbridge.as_ref().unwrap().bus, "orders");
            let sb = s.transports.servicebus.as_ref().unwrap();
            assert_eq!(sb.namespace, "acme-orders");
            assert_eq!(sb.key.expose_secret(), "from-the-environment");
            assert_eq!(sb.entities["payment"], "payment-commands");
            let ingress = s.ingress.servicebus.as_ref().unwrap();
            assert_eq!(ingress.entity, "sagaplane-replies");
            assert!(ingress.subscription.is_empty());
            assert_eq!(
                s.ingress.eventbridge.api_key.expose_secret(),
                "a-long-random-secret"
            );
            assert!(
                !format!("{s:?}").contains("from-the-environment"),
                "the key is not logged"
            );
            Ok(())
        });
    }

    #[test]
    fn the_readme_simulator_rule_is_a_valid_configuration() {
        let readme = include_str!("../../README.md");
        let example = readme
            .split("### Simulated participants (the default)")
            .nth(1)
            .and_then(|rest| rest.split("```toml\n").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("README.md has the simulator rule example");
        figment::Jail::expect_with(|jail| {
            jail.create_file("rule.toml", example)?;
            let s = Settings::load(Some(Path::new("rule.toml"))).map_err(|e| *e)?;
            let rule = &s.simulator.rules[0];
            assert_eq!(rule.participant, "payment");
            assert_eq!(rule.equals, Some(serde_json::json!("USD")));
            assert_eq!(rule.answer, "refuse");
            assert!(s.simulator.default_rules);
            assert_eq!(s.simulator.validate(), Ok(()));
            Ok(())
        });
    }

    #[test]
    fn the_readme_jwt_example_is_a_valid_configuration() {
        let readme = include_str!("../../README.md");
        let example = readme
            .split("**Access tokens of an identity provider (JWT).**")
            .nth(1)
            .and_then(|rest| rest.split("```toml\n").nth(1))
            .and_then(|block| block.split("```").next())
            .expect("README.md has the [auth.jwt] example");
        figment::Jail::expect_with(|jail| {
            jail.create_file("jwt.toml", example)?;
            // One audience from the environment is a list of one.
            jail.set_env("SAGAPLANE_AUTH__JWT__AUDIENCE", "api://sagaplane");
            let s = Settings::load(Some(Path::new("jwt.toml"))).map_err(|e| *e)?;
            assert_eq!(s.auth.check(), Ok(()));
            assert!(s.auth.access_control());
            let jwt = s.auth.jwt.as_ref().unwrap();
            assert_eq!(jwt.audience, ["api://sagaplane"]);
            assert_eq!(jwt.roles["Sagas.Reply"], Role::Participant);
            assert_eq!(jwt.roles["Sagas.Admin"], Role::Admin);
            assert_eq!(jwt.algorithms, ["RS256"]);
            assert_eq!(jwt.audience_claim, "aud");
            Ok(())
        });
    }

    #[test]
    fn a_rule_with_an_unknown_key_or_answer_is_refused_with_its_index() {
        figment::Jail::expect_with(|jail| {
            let rule =
                |extra: &str| format!("[[simulator.rules]]\nparticipant = \"payment\"\n{extra}\n");
            jail.create_file(
                "typo.toml",
                &(rule("answer = \"never\"") + &rule("answer = \"never\"\ncolour = \"red\"")),
            )?;
            let err = Settings::load(Some(Path::new("typo.toml"))).unwrap_err();
            assert!(err.to_string().contains("colour"), "{err}");
            assert!(err.to_string().contains("simulator.rules.1"), "{err}");

            jail.create_file(
                "answer.toml",
                &(rule("answer = \"never\"") + &rule("answer = \"hang\"")),
            )?;
            let s = Settings::load(Some(Path::new("answer.toml"))).map_err(|e| *e)?;
            let err = s.simulator.validate().unwrap_err().to_string();
            assert!(err.starts_with("simulator.rules[1]: "), "{err}");
            assert!(err.contains("unknown answer `hang`"), "{err}");
            Ok(())
        });
    }

    const SECRETS: [&str; 7] = [
        "token-from-the-file",
        "token-from-the-environment",
        "api-key-from-the-environment",
        "aws-secret-from-the-file",
        "servicebus-key-from-the-file",
        "eventgrid-topic-key-from-the-file",
        "eventgrid-ingress-key-from-the-environment",
    ];

    #[test]
    fn secrets_load_from_the_file_and_the_environment_and_never_show() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "secrets.toml",
                "[[auth.tokens]]\nname = \"ops\"\ntoken = \"token-from-the-file\"\nroles = [\"admin\"]\n\
                 [ingress.eventbridge]\napi_key = \"api-key-from-the-file\"\n\
                 [transports.eventbridge]\naccess_key_id = \"AKID\"\n\
                 secret_access_key = \"aws-secret-from-the-file\"\n\
                 [transports.servicebus]\nnamespace = \"ns\"\nkey = \"servicebus-key-from-the-file\"\n\
                 [transports.eventgrid]\nendpoint = \"https://t.example/api/events\"\n\
                 key = \"eventgrid-topic-key-from-the-file\"\n",
            )?;
            jail.set_env(
                "SAGAPLANE_INGRESS__EVENTBRIDGE__API_KEY",
                "api-key-from-the-environment",
            );
            jail.set_env(
                "SAGAPLANE_INGRESS__EVENTGRID__KEY",
                "eventgrid-ingress-key-from-the-environment",
            );
            let mut s = Settings::load(Some(Path::new("secrets.toml"))).map_err(|e| *e)?;
            assert_eq!(s.auth.tokens[0].token.expose_secret(), SECRETS[0]);
            assert_eq!(s.ingress.eventbridge.api_key.expose_secret(), SECRETS[2]);
            let eventbridge = s.transports.eventbridge.as_ref().unwrap();
            assert_eq!(eventbridge.secret_access_key.expose_secret(), SECRETS[3]);
            let servicebus = s.transports.servicebus.as_ref().unwrap();
            assert_eq!(servicebus.key.expose_secret(), SECRETS[4]);
            let eventgrid = s.transports.eventgrid.as_ref().unwrap();
            assert_eq!(eventgrid.key.expose_secret(), SECRETS[5]);
            assert_eq!(s.ingress.eventgrid.key.expose_secret(), SECRETS[6]);
            s.auth.tokens.push(TokenSettings {
                name: "svc".into(),
                token: SECRETS[1].into(),
                roles: vec![Role::Starter],
            });

            let shown = [
                format!("{s:?}"),
                format!("{s:#?}"),
                serde_json::to_string(&s).unwrap(),
            ];
            for shown in &shown {
                for secret in SECRETS {
                    assert!(!shown.contains(secret), "{secret} shows in {shown}");
                }
                // What is not secret still shows.
                assert!(shown.contains("AKID") && shown.contains("ops"), "{shown}");
            }
            let json: serde_json::Value = serde_json::from_str(&shown[2]).unwrap();
            assert_eq!(json["auth"]["tokens"][1]["token"], "<redacted>");
            assert_eq!(json["ingress"]["eventbridge"]["api_key"], "<redacted>");
            assert_eq!(
                json["transports"]["eventbridge"]["secret_access_key"],
                "<redacted>"
            );
            assert_eq!(json["transports"]["servicebus"]["key"], "<redacted>");
            Ok(())
        });
    }

    #[test]
    fn the_defaults_leave_every_secret_empty() {
        // figment reads the defaults serialized: an empty secret must stay
        // empty there, or the EventBridge ingress would be on with a known key.
        let json = serde_json::to_value(Settings::default()).unwrap();
        assert_eq!(json["ingress"]["eventbridge"]["api_key"], "");
        assert_eq!(json["ingress"]["eventgrid"]["key"], "");
        let transports = TransportSettings {
            eventbridge: Some(EventBridgeSettings::default()),
            servicebus: Some(ServiceBusSettings::default()),
            eventgrid: Some(EventGridSettings::default()),
        };
        let json = serde_json::to_value(transports).unwrap();
        assert_eq!(json["eventbridge"]["secret_access_key"], "");
        assert_eq!(json["servicebus"]["key"], "");
        assert_eq!(json["eventgrid"]["key"], "");
        figment::Jail::expect_with(|_| {
            let s = Settings::load(None).map_err(|e| *e)?;
            assert!(s.ingress.eventbridge.api_key.is_empty());
            assert!(s.ingress.eventgrid.key.is_empty());
            assert!(s.auth.tokens.is_empty());
            Ok(())
        });
    }
}

#[cfg(test)]
mod token_checks {
    use super::*;

    fn token(name: &str, token: &str) -> TokenSettings {
        TokenSettings {
            name: name.into(),
            token: token.into(),
            roles: vec![Role::Viewer],
        }
    }

    #[test]
    fn empty_short_and_shared_tokens_are_refused() {
        let long = "a-long-random-secret";
        let ok = AuthSettings {
            tokens: vec![token("a", long), token("b", "another-long-secret")],
            jwt: None,
        };
        assert_eq!(ok.check(), Ok(()));
        for short in ["", "x", "fifteen-chars-x"] {
            let s = AuthSettings {
                tokens: vec![token("a", long), token("b", short)],
                jwt: None,
            };
            let e = s.check().unwrap_err();
            assert!(
                e.contains("auth.tokens[1] (`b`)") && e.contains("16"),
                "{e}"
            );
        }
        let shared = AuthSettings {
            tokens: vec![token("a", long), token("b", long)],
            jwt: None,
        };
        let e = shared.check().unwrap_err();
        assert!(e.contains("same token as auth.tokens[0] (`a`)"), "{e}");
        assert!(!e.contains(long), "the token never appears: {e}");
    }
}
