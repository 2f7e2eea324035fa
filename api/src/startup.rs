//! The composition root: store, transport, orchestrator and HTTP server.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::error::{JsonPayloadError, QueryPayloadError};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;
use sagaplane_adapters::{
    route_of, EventBridgeTransport, EventGridTransport, GroupCommit, InProcessTransport,
    PgEventStore, RoutingTransport, ServiceBusReceiver, ServiceBusTransport, SimulatedParticipants,
};
use sagaplane_orchestrator::{load_catalog, Metrics, Orchestrator, Transport};
use sagaplane_sagas::Catalog;
use utoipa_swagger_ui::SwaggerUi;

use crate::auth::jwt::JwtVerifier;
use crate::auth::AccessTokens;
use crate::body;
use crate::configuration::Settings;
use crate::console;
use crate::exposition::Exposition;
use crate::problem::{self, ApiError};
use crate::routes;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
    orchestrator: Orchestrator,
    participants: SimulatedParticipants,
    /// The private PostgreSQL server, if `serve` runs one; stopped after the
    /// HTTP server and the orchestrator.
    #[cfg(unix)]
    database: Option<crate::private_postgres::PrivatePostgres>,
}

impl Application {
    /// Opens (creating and migrating) the database, starts the orchestrator and
    /// the simulated participants, and binds the HTTP listener. Must run inside
    /// an actix system; the server runs once [`Application::run_until_stopped`]
    /// is awaited.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings
            .auth
            .check()
            .map_err(|e| anyhow::anyhow!("Invalid configuration: {e}"))?;
        let offered = crate::definitions::offered(&settings.definitions.paths)?;
        let mut participants = SimulatedParticipants::new(settings.simulator.clone())
            .map_err(|e| anyhow::anyhow!("Invalid configuration: {e}"))?;
        let db = &settings.database;
        let metrics = Metrics::default();
        let batch_sizes = metrics.store_batch_size.clone();
        let group_commit = GroupCommit {
            on_batch: Some(Arc::new(move |n| batch_sizes.observe(n as f64))),
            ..settings.group_commit()
        };
        #[cfg(unix)]
        let (url, database) = crate::private_postgres::open(db).await?;
        #[cfg(not(unix))]
        let url = db
            .url
            .clone()
            .unwrap_or_else(|| crate::configuration::DEFAULT_URL.into());
        let store = PgEventStore::connect(&url, db.max_connections, group_commit)
            .await
            .context("Failed to open the database")?;
        let store = Arc::new(store);
        let catalog = load_catalog(store.as_ref(), offered)
            .await
            .context("Failed to load the saga definitions")?;
        let known: Vec<&str> = catalog.types().map(|t| t.saga_type.as_str()).collect();
        if let Some(t) = settings
            .saga_types
            .keys()
            .find(|t| !known.contains(&t.as_str()))
        {
            anyhow::bail!(
                "Invalid configuration: [saga_types.{t}] names no saga type; known: {}",
                known.join(", ")
            );
        }
        for t in catalog.types() {
            let versions: Vec<String> = t.versions.keys().map(u32::to_string).collect();
            tracing::info!(saga_type = %t.saga_type, versions = %versions.join(","), "saga type loaded");
        }
        if settings.simulator.durable_memory {
            participants = participants
                .with_durable_memory(store.pool().clone())
                .await
                .context("Failed to set up the simulated participants' tables")?;
        }
        let (in_process, commands) = InProcessTransport::new(&participants);
        let transport = routing(&settings, &catalog, Arc::new(in_process)).await?;
        let orchestrator =
            Orchestrator::builder(store.clone(), transport, settings.orchestrator_config())
                .metrics(metrics)
                .definitions(&catalog)
                .start();
        if settings.simulator.enabled {
            participants.spawn(commands, orchestrator.clone());
        }
        if let Some(receiver) = &settings.ingress.servicebus {
            let connection = settings.transports.servicebus.clone().unwrap_or_default();
            ServiceBusReceiver::new(&connection, receiver.clone(), orchestrator.clone())
                .map_err(|e| anyhow::anyhow!("Invalid configuration: {e}"))?
                .spawn();
        }

        {
            // Counting the finished sagas reads them all (half a second at a
            // million): started now, the first operator to ask for the
            // counts finds them made.
            let store = store.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    sagaplane_orchestrator::ports::OperatorQueries::stats(store.as_ref()).await
                {
                    tracing::warn!(error.message = %e, "the saga counts could not be read");
                }
            });
        }
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("Failed to listen on {}", settings.listen))?;
        let address = listener.local_addr()?;
        let openapi = routes::openapi(&catalog);
        let state = web::Data::new(AppState {
            orchestrator: orchestrator.clone(),
            queries: store,
            ingress: settings.ingress.clone(),
            http: settings.http.clone(),
            exposition: Exposition::new(orchestrator.metrics()),
            routing: settings.routing.clone(),
        });
        let jwt = match &settings.auth.jwt {
            None => None,
            Some(jwt) => {
                Some(Arc::new(JwtVerifier::new(jwt.clone()).map_err(|e| {
                    anyhow::anyhow!("Invalid configuration: {e}")
                })?))
            }
        };
        if let Some(verifier) = &jwt {
            // Not fatal: the identity provider may be down while sagas must
            // go on; the keys are fetched again on the first token.
            match verifier.refresh().await {
                Ok(keys) => tracing::info!(keys, "the identity provider's signing keys are loaded"),
                Err(_) => tracing::warn!(
                    "JWTs cannot be checked until the identity provider's keys can be fetched"
                ),
            }
            verifier.spawn_refresher();
        }
        let tokens = web::Data::new(AccessTokens {
            tokens: settings.auth.tokens.clone(),
            jwt,
        });
        let max_body = settings.http.max_body_bytes;
        let body_timeout = Duration::from_millis(settings.http.body_timeout_ms);
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(move |req, next| {
                    body::deadline(body_timeout, req, next)
                }))
                .wrap(from_fn(problem::explain_bare_errors))
                .app_data(state.clone())
                .app_data(tokens.clone())
                .app_data(
                    web::JsonConfig::default()
                        .limit(max_body)
                        .error_handler(move |e, _req| json_error(e, max_body).into()),
                )
                .app_data(
                    web::QueryConfig::default().error_handler(|e, _req| query_error(e).into()),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _req| {
                    ApiError::NotFound(format!("no such resource: {e}")).into()
                }))
                .configure(routes::configure)
                .configure(console::configure)
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .external_url_unchecked("/openapi.json", openapi.clone()),
                )
                .default_service(web::to(routes::not_found))
        });
        server = server.on_connect(crate::connection::remember);
        server = server.workers(http_workers(settings.http.workers));
        let server = server.listen(listener)?.run();
        tracing::info!(%address, "sagaplane listening");
        if !settings.auth.access_control() {
            tracing::warn!(%address, "no access tokens are configured (auth.tokens, auth.jwt): the API is open to anyone who can reach it");
        }
        Ok(Self {
            port: address.port(),
            server,
            orchestrator,
            participants,
            #[cfg(unix)]
            database,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn orchestrator(&self) -> Orchestrator {
        self.orchestrator.clone()
    }

    pub fn participants(&self) -> SimulatedParticipants {
        self.participants.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        #[cfg(unix)]
        {
            drop(self.orchestrator);
            drop(self.participants);
            if let Some(mut database) = self.database {
                database.stop();
            }
        }
        result
    }
}

/// The HTTP worker threads for `configured` (`http.workers`): that many, or
/// for 0 half the cores, at least one. A worker only parses, hands over and
/// waits; the actors and the committer have threads of their own, and on a
/// small machine PostgreSQL shares the cores: with one worker instead of two,
/// a 2-core machine did 5 % more sagas at 50 clients (BENCHMARKS.md).
fn http_workers(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

fn json_error(e: JsonPayloadError, limit: usize) -> ApiError {
    match e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(limit)
        }
        JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
        JsonPayloadError::Deserialize(e) => {
            ApiError::BadRequest(format!("the request body is not valid JSON: {e}"))
        }
        JsonPayloadError::Payload(e) => body::read_error(e),
        other => ApiError::BadRequest(format!("the request body could not be read: {other}")),
    }
}

fn query_error(e: QueryPayloadError) -> ApiError {
    ApiError::BadRequest(format!("invalid query string: {e}"))
}

/// The transport of each command, from `[routing]`.
async fn routing(
    settings: &Settings,
    catalog: &Catalog,
    in_process: Arc<dyn Transport>,
) -> anyhow::Result<Arc<dyn Transport>> {
    let mut transports: HashMap<&str, Arc<dyn Transport>> = HashMap::new();
    if settings.simulator.enabled {
        transports.insert("in-process", in_process.clone());
    }
    if let Some(eventbridge) = &settings.transports.eventbridge {
        let t = EventBridgeTransport::new(eventbridge.clone()).await;
        transports.insert("eventbridge", Arc::new(t));
    }
    if let Some(servicebus) = &settings.transports.servicebus {
        let t = ServiceBusTransport::new(servicebus.clone())
            .map_err(|e| anyhow::anyhow!("Invalid configuration: {e}"))?;
        transports.insert("servicebus", Arc::new(t));
    }
    if let Some(eventgrid) = &settings.transports.eventgrid {
        let t = EventGridTransport::new(eventgrid.clone())
            .map_err(|e| anyhow::anyhow!("Invalid configuration: {e}"))?;
        transports.insert("eventgrid", Arc::new(t));
    }
    let mut routing = RoutingTransport::new(in_process);
    for (key, name) in &settings.routing {
        let transport = transports.get(name.as_str()).ok_or_else(|| {
            let mut known: Vec<&str> = transports.keys().copied().collect();
            known.sort_unstable();
            anyhow::anyhow!(
                "Invalid configuration: [routing] sends `{key}` to `{name}`, \
                 which is not a configured transport; configured: {}",
                known.join(", ")
            )
        })?;
        routing = routing.route(key, transport.clone());
    }
    check_destinations(settings, catalog)?;
    Ok(Arc::new(routing))
}

/// Refuses a routing key that names no participant and no command type (it
/// would route nothing, leaving those commands with the simulated
/// participants) and, with the simulated participants off, a command routed
/// nowhere.
fn check_destinations(settings: &Settings, catalog: &Catalog) -> anyhow::Result<()> {
    let destinations = catalog.destinations();
    let mut known: Vec<&str> = destinations
        .iter()
        .flat_map(|(participant, command_type)| [participant.as_str(), command_type.as_str()])
        .collect();
    known.sort_unstable();
    known.dedup();
    let entities = settings.transports.servicebus.iter().flat_map(|sb| {
        sb.entities
            .keys()
            .map(|k| ("[transports.servicebus.entities]", k))
    });
    let routing = settings.routing.keys().map(|k| ("[routing]", k));
    for (table, key) in routing.chain(entities) {
        if !known.contains(&key.as_str()) {
            anyhow::bail!(
                "Invalid configuration: {table} names `{key}`, which is neither a participant \
                 nor a command type of any saga; known: {}",
                known.join(", ")
            );
        }
    }
    if !settings.simulator.enabled {
        let unrouted: Vec<&str> = destinations
            .iter()
            .filter(|(participant, command_type)| {
                route_of(|key| settings.routing.get(key), participant, command_type).is_none()
            })
            .map(|(_, command_type)| command_type.as_str())
            .collect();
        if !unrouted.is_empty() {
            anyhow::bail!(
                "Invalid configuration: the simulated participants are off \
                 (simulator.enabled = false) and [routing] sends these commands nowhere: {}",
                unrouted.join(", ")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::http_workers;

    #[test]
    fn http_workers_are_the_configured_number_or_half_the_cores() {
        assert_eq!(http_workers(3), 3);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let default = http_workers(0);
        assert!(default >= 1);
        assert_eq!(default, (cores / 2).max(1));
        assert!(default <= cores);
    }
}
