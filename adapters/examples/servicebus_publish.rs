//! How fast `ServiceBusTransport` hands commands to a namespace that answers
//! after a given latency (the round trip to Azure), batch by batch as the
//! outbox relay does. The namespace is the project's stand-in on 127.0.0.1.
//!
//! ```sh
//! cargo run --release -p sagaplane-adapters --example servicebus_publish -- \
//!     --commands 2000 --latency-ms 10 --in-flight 32 --runs 3
//! ```

use std::time::{Duration, Instant};

use chrono::Utc;
use sagaplane_adapters::{ServiceBusSettings, ServiceBusTransport};
use sagaplane_orchestrator::ports::{OutboxMessage, Transport};
use sagaplane_sagas::SagaId;
use sagaplane_servicebus_fake::{Config, FakeServiceBus, Policy};
use serde_json::json;
use uuid::Uuid;

/// The relay's batch size.
const BATCH: usize = 256;

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

fn command(i: usize) -> OutboxMessage {
    let saga = SagaId::from_uuid(Uuid::now_v7());
    OutboxMessage {
        message_id: Uuid::now_v7(),
        saga_id: saga,
        saga_type: "order".into(),
        step: "charge-payment".into(),
        attempt: 1,
        participant: "payment".into(),
        command_type: "order.payment.charge.v1".into(),
        idempotency_key: format!("{saga}:charge-payment"),
        data: json!({ "order_id": format!("o-{i}"), "amount_cents": 1000 }),
        created_at: Utc::now(),
        traceparent: None,
        publish_attempts: 0,
    }
}

#[tokio::main]
async fn main() {
    let commands = arg("--commands", 2000) as usize;
    let latency = Duration::from_millis(arg("--latency-ms", 10));
    let in_flight = arg("--in-flight", 32) as usize;
    let runs = arg("--runs", 3);
    let mut rates = Vec::new();
    for run in 1..=runs {
        let fake = FakeServiceBus::start(
            Config::new("bench")
                .policy(Policy::new("bench", "bench-key"))
                .queue("commands")
                .latency(latency),
        );
        let transport = ServiceBusTransport::new(ServiceBusSettings {
            namespace: "bench".into(),
            policy: "bench".into(),
            key: "bench-key".into(),
            endpoint: fake.endpoint(),
            entity: "commands".into(),
            max_in_flight: in_flight,
            ..ServiceBusSettings::default()
        })
        .expect("settings are valid");
        let messages: Vec<OutboxMessage> = (0..commands).map(command).collect();
        let started = Instant::now();
        for batch in messages.chunks(BATCH) {
            transport.publish(batch).await.expect("every command sent");
        }
        let elapsed = started.elapsed();
        assert_eq!(fake.active("commands").len(), commands);
        let rate = commands as f64 / elapsed.as_secs_f64();
        println!(
            "run {run}: {commands} commands in {:.2} s = {rate:.0}/s (broker answered up to {} at once)",
            elapsed.as_secs_f64(),
            fake.stats().most_at_once
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "median {:.0} commands/s ({} runs, latency {} ms, {} in flight)",
        rates[rates.len() / 2],
        runs,
        latency.as_millis(),
        in_flight
    );
}
