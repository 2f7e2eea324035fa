//! The composition of the core: registers saga types, then starts the lease
//! keeper, the outbox relay, the supervisor and the timer service, wired to
//! each other and to the store, the transport and the clock.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use actix::prelude::*;
use futures_util::FutureExt;
use sagaplane_sagas::{Catalog, DefinedSaga, Saga};

use crate::clock::{SharedClock, SystemClock};
use crate::config::OrchestratorConfig;
use crate::definitions::load_catalog;
use crate::kind::{Kind, Refresh};
use crate::leases::{LeaseKeeper, Ownership};
use crate::metrics::Metrics;
use crate::notifier::SettledNotifier;
use crate::orchestrator::Orchestrator;
use crate::ports::{EventStore, Transport};
use crate::relay::OutboxRelay;
use crate::step::Deps;
use crate::supervisor::{Kinds, SagaKind, Supervisor};
use crate::timers::{TimerService, WakeFn};

/// Registers saga types, then starts the actors.
pub struct OrchestratorBuilder {
    store: Arc<dyn EventStore>,
    transport: Arc<dyn Transport>,
    config: OrchestratorConfig,
    kinds: HashMap<String, Box<dyn SagaKind>>,
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
            kinds: HashMap::new(),
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
    pub fn register<S: Saga>(mut self, name: impl Into<String>, shared: Arc<S::Kind>) -> Self {
        let name = name.into();
        let kind = Kind::<S>::new(name.clone(), shared, None);
        self.kinds.insert(name, Box::new(kind));
        self
    }

    /// Runs every type of `catalog` by its definitions. A history naming a
    /// version this node has not loaded (stored by another node since this
    /// one started) makes it read the stored versions again.
    pub fn definitions(mut self, catalog: &Catalog) -> Self {
        for versions in catalog.types() {
            let name = versions.saga_type.clone();
            let store = self.store.clone();
            let saga_type = name.clone();
            let refresh: Refresh<DefinedSaga> = Arc::new(move || {
                let store = store.clone();
                let saga_type = saga_type.clone();
                async move {
                    match load_catalog(store.as_ref(), Vec::new()).await {
                        Ok(catalog) => catalog.get(&saga_type).cloned(),
                        Err(e) => {
                            tracing::warn!(error.message = %e, "saga definitions cannot be read again");
                            None
                        }
                    }
                }
                .boxed()
            });
            let kind = Kind::<DefinedSaga>::new(name.clone(), versions.clone(), Some(refresh));
            self.kinds.insert(name, Box::new(kind));
        }
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
            metrics,
            clock,
        } = self;
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
        let relay = OutboxRelay::new(
            store.clone(),
            clock.clone(),
            transport,
            config.outbox_sweep_interval,
            config.publish,
            ownership.clone(),
            metrics.clone(),
            recovered.clone(),
        )
        .start();
        let notifier = Arc::new(SettledNotifier::default());
        let kinds: Kinds = Arc::new(kinds);
        let supervisor = {
            let kinds = kinds.clone();
            let store = store.clone();
            let relay = relay.clone().recipient();
            let notifier = notifier.clone();
            let metrics = metrics.clone();
            let config = config.clone();
            let clock = clock.clone();
            Supervisor::create(move |ctx| {
                let deps = Arc::new(Deps {
                    store,
                    relay,
                    notifier,
                    supervisor: ctx.address().recipient(),
                    metrics,
                    config,
                    clock,
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
        };
        let waker = orchestrator.clone();
        let wake: WakeFn = Arc::new(move |id, saga_type| {
            let waker = waker.clone();
            async move { waker.wake(id, saga_type).await }.boxed()
        });
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
