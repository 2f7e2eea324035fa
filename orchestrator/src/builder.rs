//! The composition of the core: registers saga types, then starts the lease
//! keeper, the outbox relay, the supervisor and the timer service, wired to
//! each other and to the store, the transport and the clock.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use actix::prelude::*;
use futures_util::FutureExt;
use sagaplane_sagas::{Catalog, DefinedSaga, Saga};

use crate::clock::{SharedClock, SystemClock};
use crate::config::OrchestratorConfig;
use crate::definitions::load_catalog;
use crate::kind::{Kind, Reload};
use crate::leases::{LeaseKeeper, Ownership};
use crate::metrics::Metrics;
use crate::notifier::SettledNotifier;
use crate::orchestrator::Orchestrator;
use crate::ports::{EventStore, Transport};
use crate::positions::Positions;
use crate::relay::{OutboxRelay, RelaySetup};
use crate::retention::RetentionService;
use crate::step::Deps;
use crate::supervisor::{Kinds, Supervisor};
use crate::timers::{TimerService, WakeFn};

/// Registers saga types, then starts the actors.
pub struct OrchestratorBuilder {
    store: Arc<dyn EventStore>,
    transport: Arc<dyn Transport>,
    config: OrchestratorConfig,
    kinds: Kinds,
    /// The definitions the defined types started with, if any.
    catalog: Option<Catalog>,
    metrics: Metrics,
    clock: SharedClock,
}

impl Orchestrator {
    pub fn builder(
        store: Arc<dyn EventStore>,
        transport: Arc<dyn Transport>,
        config: OrchestratorConfig,
    ) -> OrchestratorBuilder {
        OrchestratorBuilder {
            store,
            transport,
            config,
            kinds: Kinds::default(),
            catalog: None,
            metrics: Metrics::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl OrchestratorBuilder {
    /// Counts into `metrics` (e.g. shared with the store) instead of new ones.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Reads the time from `clock` instead of the wall clock.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs sagas of type `name` as `S`, each given `shared` (e.g. the
    /// versions of the type's definition).
    pub fn register<S: Saga>(self, name: impl Into<String>, shared: Arc<S::Kind>) -> Self {
        let name = name.into();
        let kind = Kind::<S>::new(name.clone(), shared);
        self.kinds
            .write()
            .expect("kinds lock poisoned")
            .insert(name, Arc::new(kind));
        self
    }

    /// Runs every type of `catalog` by its definitions. When a history, a
    /// start or a saga type names a version or a type this node has not
    /// loaded (another node stored it since), the stored definitions are read
    /// again (see [`Orchestrator::catalog`]).
    pub fn definitions(mut self, catalog: &Catalog) -> Self {
        add_types(&self.kinds, catalog);
        self.catalog = Some(catalog.clone());
        self
    }

    /// Starts the supervisor, outbox relay and timer service on the current
    /// arbiter. The relay publishes whatever was left unsent at once, and the
    /// timer service fires deadlines that fell due while the process was down.
    pub fn start(self) -> Orchestrator {
        let Self {
            store,
            transport,
            config,
            kinds,
            catalog,
            metrics,
            clock,
        } = self;
        let defined = catalog.is_some();
        let catalog = Arc::new(RwLock::new(Arc::new(catalog.unwrap_or_default())));
        let reload = defined.then(|| reloader(store.clone(), kinds.clone(), catalog.clone()));
        let recovered = Arc::new(AtomicBool::new(false));
        let ownership = Ownership::default();
        LeaseKeeper::new(
            store.clone(),
            config.node_id.clone(),
            config.lease_ttl,
            ownership.clone(),
            metrics.clone(),
        )
        .start();
        let positions = Arc::new(Positions::default());
        let relay = OutboxRelay::new(
            store.clone(),
            clock.clone(),
            transport,
            RelaySetup {
                node: config.node_id.clone(),
                sweep_interval: config.outbox_sweep_interval,
                lease_ttl: config.lease_ttl,
                policy: config.publish,
            },
            positions.clone(),
            ownership.clone(),
            metrics.clone(),
            recovered.clone(),
        )
        .start();
        let notifier = Arc::new(SettledNotifier::default());
        let supervisor = {
            let kinds = kinds.clone();
            let store = store.clone();
            let unsure = relay.clone().recipient();
            let relay = relay.clone().recipient();
            let notifier = notifier.clone();
            let metrics = metrics.clone();
            let config = config.clone();
            let clock = clock.clone();
            let reload = reload.clone();
            Supervisor::create(move |ctx| {
                let deps = Arc::new(Deps {
                    store,
                    relay,
                    unsure,
                    positions,
                    notifier,
                    supervisor: ctx.address().recipient(),
                    metrics,
                    config,
                    clock,
                    reload,
                });
                Supervisor::new(kinds, deps)
            })
        };
        let orchestrator = Orchestrator {
            supervisor,
            crash_limit: config.crash_limit.max(1),
            crash_window: config.crash_window,
            relay,
            store: store.clone(),
            notifier,
            metrics: metrics.clone(),
            recovered,
            kinds,
            clock: clock.clone(),
            catalog,
            reload,
        };
        let waker = orchestrator.clone();
        let wake: WakeFn = Arc::new(move |id, saga_type| {
            let waker = waker.clone();
            async move { waker.wake(id, saga_type).await }.boxed()
        });
        if let Some(retention) = config.retention {
            RetentionService::new(
                store.clone(),
                clock.clone(),
                retention,
                metrics.clone(),
                ownership.clone(),
            )
            .start();
        }
        TimerService::new(
            store,
            clock,
            wake,
            metrics,
            config.timer_interval,
            ownership,
        )
        .start();
        orchestrator
    }
}

/// Registers every type of `catalog` that is not registered yet, and gives
/// the registered defined types their versions from `catalog`; `true` if
/// anything was new.
fn add_types(kinds: &Kinds, catalog: &Catalog) -> bool {
    let mut kinds = kinds.write().expect("kinds lock poisoned");
    let mut new = false;
    for versions in catalog.types() {
        let name = &versions.saga_type;
        match kinds.get(name) {
            Some(kind) => {
                if let Some(defined) = kind.as_any().downcast_ref::<Kind<DefinedSaga>>() {
                    new |= defined.shared().versions.len() != versions.versions.len();
                    defined.set_shared(versions.clone());
                }
            }
            None => {
                let kind = Kind::<DefinedSaga>::new(name.clone(), versions.clone());
                kinds.insert(name.clone(), Arc::new(kind));
                new = true;
            }
        }
    }
    new
}

/// Reads the stored definitions again and takes in what is new: versions of
/// the defined types, new types, and [`Orchestrator::catalog`].
fn reloader(
    store: Arc<dyn EventStore>,
    kinds: Kinds,
    catalog: Arc<RwLock<Arc<Catalog>>>,
) -> Reload {
    Arc::new(move || {
        let (store, kinds, catalog) = (store.clone(), kinds.clone(), catalog.clone());
        async move {
            let fresh = match load_catalog(store.as_ref(), Vec::new()).await {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::warn!(error.message = %e, "saga definitions cannot be read again");
                    return false;
                }
            };
            if !add_types(&kinds, &fresh) {
                return false;
            }
            tracing::info!("saga definitions stored by another node taken in");
            *catalog.write().expect("catalog lock poisoned") = Arc::new(fresh);
            true
        }
        .boxed()
    })
}
