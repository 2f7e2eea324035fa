//! Supervision: a saga type whose code panics on an input. Each panic fails
//! that input only and the actor is rebuilt from the events; past the crash
//! limit the saga is suspended instead of crash-looping, and the process and
//! every other saga carry on.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sagaplane_adapters::{GroupCommit, PgEventStore};
use sagaplane_orchestrator::ports::SUSPENDED_BY_SUPERVISOR;
use sagaplane_orchestrator::testing::{Fragile, RecordingTransport};
use sagaplane_orchestrator::{
    ActorError, EventStore, Handled, Inbound, Orchestrator, OrchestratorConfig, StartOutcome,
    SystemClock,
};
use sagaplane_sagas::{Outcome, Reply, SagaId};
use serde_json::json;

use crate::helpers::fresh_database_url;

fn reply(saga: SagaId, message: &str) -> Inbound {
    Inbound {
        channel: "test".into(),
        message_id: message.into(),
        saga_id: saga,
        reply: Reply {
            step: "wait".into(),
            attempt: 1,
            outcome: Outcome::Succeeded,
            at: Utc::now(),
            result: None,
        },
        raw: b"{}".to_vec(),
        traceparent: None,
    }
}

#[actix_web::test]
async fn a_saga_that_keeps_panicking_is_suspended_and_the_rest_carries_on() {
    let store = PgEventStore::connect(&fresh_database_url(), 4, GroupCommit::default())
        .await
        .unwrap();
    let store: Arc<dyn EventStore> = Arc::new(store);
    let config = OrchestratorConfig {
        crash_limit: 3,
        crash_window: Duration::from_secs(60),
        ..OrchestratorConfig::default()
    };
    let transport = RecordingTransport::new(Arc::new(SystemClock));
    let orchestrator = Orchestrator::builder(store.clone(), Arc::new(transport), config)
        .register::<Fragile>("fragile", std::sync::Arc::new(()))
        .start();
    let start = |key: &'static str| {
        let orchestrator = orchestrator.clone();
        async move {
            match orchestrator
                .start("fragile", key, json!({}), None, None)
                .await
            {
                Ok(StartOutcome::Created(saga)) => saga.id,
                other => panic!("not started: {other:?}"),
            }
        }
    };
    let id = start("f-1").await;

    for n in 1..=2 {
        let failed = orchestrator.receive(reply(id, &format!("r-{n}"))).await;
        assert!(
            matches!(&failed, Err(ActorError::Panicked(m)) if m.contains("cannot handle")),
            "{failed:?}"
        );
        let row = store.get(id).await.unwrap().unwrap();
        assert_eq!(row.status, "running", "one crash does not suspend");
    }
    let third = orchestrator.receive(reply(id, "r-3")).await;
    assert!(matches!(third, Err(ActorError::CrashLoop(_))), "{third:?}");
    let row = store.get(id).await.unwrap().unwrap();
    assert_eq!(row.status, "suspended");
    let reason = row.last_error.unwrap();
    assert!(reason.contains("panicked 3 times"), "{reason}");
    assert!(reason.contains("cannot handle a reply"), "{reason}");
    assert_eq!(row.wake_at, None, "its timer is disarmed");
    let events = store.events(id).await.unwrap();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["Started", SUSPENDED_BY_SUPERVISOR]);
    assert_eq!(row.version, 2);
    // Nothing was recorded for the replies that crashed: a redelivery is
    // still a first delivery, not a duplicate.
    let again = orchestrator.receive(reply(id, "r-1")).await;
    assert!(!matches!(again, Ok(Handled::Duplicate)), "{again:?}");
    assert_eq!(store.events(id).await.unwrap().len(), 2, "suspended once");

    // The process and the other sagas carry on; the suspended saga's history
    // still folds (the supervisor's event is skipped) for an operator.
    let other = start("f-2").await;
    assert_eq!(store.get(other).await.unwrap().unwrap().status, "running");
    let snapshot = orchestrator.inspect(id).await.unwrap().unwrap();
    assert_eq!(snapshot.allowed_actions, ["cancel"]);
    assert_eq!(orchestrator.metrics().actor_panics.get(), 4);
}
