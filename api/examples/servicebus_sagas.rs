//! Order sagas whose payment service is behind Service Bus: how many complete
//! per second when every request to the namespace takes a given latency.
//! Commands go out through `ServiceBusTransport`, replies come back through
//! the receivers; the namespace is the project's stand-in on 127.0.0.1, the
//! payment service a set of peek-lock consumers in this process, inventory and
//! order confirmation the simulated participants. Needs PostgreSQL on
//! 127.0.0.1:5432 (database `sagaplane_bench_servicebus`, made anew).
//!
//! ```sh
//! cargo run --release -p sagaplane-api --example servicebus_sagas -- \
//!     --sagas 2000 --concurrency 50 --latency-ms 10 --receivers 8
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_messaging_servicebus::service_bus::QueueClient;
use sagaplane_adapters::{ServiceBusReceiverSettings, ServiceBusSettings};
use sagaplane_api::{Application, Settings};
use sagaplane_orchestrator::codec::{self, CloudEvent};
use sagaplane_orchestrator::StartOutcome;
use sagaplane_sagas::{Outcome, Reply};
use sagaplane_servicebus_fake::{Config, FakeServiceBus, Policy};
use serde_json::json;

const KEY: &str = "bench-key";
const DATABASE: &str = "sagaplane_bench_servicebus";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// One consumer of the payment service: peek-lock, answer, complete.
async fn payment_service(commands: QueueClient, replies: QueueClient) {
    loop {
        let Ok(m) = commands
            .peek_lock_message2(Some(Duration::from_secs(1)))
            .await
        else {
            continue;
        };
        if u16::from(*m.status()) != 201 {
            continue;
        }
        let command: CloudEvent = serde_json::from_str(&m.body()).expect("a command");
        let reply = Reply {
            step: command.sagastep.clone().expect("sagastep"),
            attempt: command.sagaattempt.expect("sagaattempt"),
            outcome: Outcome::Succeeded,
            at: chrono::Utc::now(),
            result: None,
        };
        let answer = codec::reply_event(&command, format!("r-{}", command.id), "payment", &reply);
        let body = serde_json::to_string(&answer).expect("a reply serialises");
        if replies.send_message(&body, None).await.is_ok() {
            let _ = m.delete_message().await;
        }
    }
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let sagas = arg("--sagas", 2000) as usize;
    let concurrency = arg("--concurrency", 50) as usize;
    let latency = Duration::from_millis(arg("--latency-ms", 10));
    let receivers = arg("--receivers", 8) as usize;
    let consumers = arg("--consumers", 32) as usize;
    let warmup = arg("--warmup", 200) as usize;

    let server = std::env::var("SAGAPLANE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let admin = sqlx::PgPool::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&admin)
        .await?;

    let fake = FakeServiceBus::start(
        Config::new("bench")
            .policy(Policy::new("bench", KEY))
            .queue("payment-commands")
            .queue("sagaplane-commands")
            .queue("sagaplane-replies")
            .latency(latency),
    );
    let connection = ServiceBusSettings {
        namespace: "bench".into(),
        policy: "bench".into(),
        key: KEY.into(),
        endpoint: fake.endpoint(),
        entities: [("payment".to_owned(), "payment-commands".to_owned())].into(),
        ..ServiceBusSettings::default()
    };
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        ..Settings::default()
    };
    settings.database.url = Some(format!("{server}/{DATABASE}"));
    settings.transports.servicebus = Some(connection.clone());
    settings
        .routing
        .insert("payment".into(), "servicebus".into());
    settings.ingress.servicebus = Some(ServiceBusReceiverSettings {
        receivers,
        wait_ms: 1_000,
        ..ServiceBusReceiverSettings::default()
    });
    let app = Application::build(settings).await?;
    let orchestrator = app.orchestrator();
    actix_web::rt::spawn(app.run_until_stopped());
    for _ in 0..consumers {
        let commands = connection
            .queue_client("payment-commands")
            .expect("a client");
        let replies = connection
            .queue_client("sagaplane-replies")
            .expect("a client");
        tokio::spawn(payment_service(commands, replies));
    }

    let next = Arc::new(AtomicUsize::new(0));
    let total = warmup + sagas;
    let run = |from: usize, to: usize| {
        let next = next.clone();
        let orchestrator = orchestrator.clone();
        async move {
            next.store(from, Ordering::SeqCst);
            let clients = (0..concurrency).map(|_| {
                let next = next.clone();
                let orchestrator = orchestrator.clone();
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= to {
                            return;
                        }
                        let order = json!({
                            "order_id": format!("o-{i}"), "customer_id": "c-1", "currency": "EUR",
                            "items": [{"sku": "SKU-1", "qty": 1}], "amount_cents": 1000,
                        });
                        let id = match orchestrator
                            .start("order", &format!("sb-{i}"), order, None, None)
                            .await
                            .expect("started")
                        {
                            StartOutcome::Created(saga) | StartOutcome::Existing(saga) => saga.id,
                        };
                        let saga = orchestrator
                            .wait_settled(id, Duration::from_secs(60))
                            .await
                            .expect("read")
                            .expect("exists");
                        assert_eq!(saga.status, "completed", "saga {i}");
                    }
                })
            });
            for client in clients.collect::<Vec<_>>() {
                client.await.expect("a client finished");
            }
        }
    };
    run(0, warmup).await;
    let started = Instant::now();
    run(warmup, total).await;
    let elapsed = started.elapsed();
    println!(
        "{sagas} sagas in {:.2} s = {:.0} sagas/s (concurrency {concurrency}, latency {} ms, \
         {receivers} receivers, {consumers} payment consumers)",
        elapsed.as_secs_f64(),
        sagas as f64 / elapsed.as_secs_f64(),
        latency.as_millis()
    );
    admin.close().await;
    // The server, the receivers and the consumers run until the process ends.
    std::process::exit(0)
}
