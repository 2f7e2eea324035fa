//! The kill test: the real binary under load, SIGKILLed at random moments and
//! started again, six times. Then every saga must have ended as its input
//! dictates, no participant may have applied an idempotency key twice, and no
//! saga's history may have a gap or a duplicate.
//!
//! The simulated participants run inside the killed process but keep what
//! they applied in PostgreSQL (`simulator.durable_memory`), as real
//! participants keep their own state; every application is a row in
//! `simulator_applications`, and every command received one in
//! `simulator_deliveries`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::time::Instant;

use crate::helpers::fresh_database_url;
use crate::server::{
    assert_effects_as_dictated, assert_histories_whole, assert_no_effect_twice,
    assert_settled_as_dictated, cases, redelivered_commands, restart_port, start_retrying,
    timed_out_steps, Case, Server, FAULT_ENV,
};

const SAGAS: usize = 300;
const CLIENTS: usize = 20;
const KILLS: usize = 6;

/// Starts `case` (retrying through outages) and waits a little for it; the
/// saga's id.
async fn drive(client: &reqwest::Client, base: &str, case: &Case, deadline: Instant) -> String {
    let id = start_retrying(client, &[base.to_owned()], || 0, case, deadline).await;
    // Like a client waiting for its order; a kill only cuts the wait short.
    let _ = client
        .get(format!("{base}/v1/sagas/{id}?wait=2"))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_and_applies_nothing_twice() {
    let db = fresh_database_url();
    let port = restart_port();
    let mut server = Server::start_on(port, &db, FAULT_ENV).await;
    let base = server.base.clone();
    let cases = Arc::new(cases(SAGAS));
    let deadline = Instant::now() + Duration::from_secs(90);

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let cases = cases.clone();
        let base = base.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            for i in (c..SAGAS).step_by(CLIENTS) {
                ids.push((i, drive(&client, &base, &cases[i], deadline).await));
            }
            ids
        }));
    }
    for k in 0..KILLS {
        // The first kill lands early, while the load is surely in flight
        // (on a fast day the whole load takes under a second).
        let wait = if k == 0 { 50..150 } else { 150..700 };
        tokio::time::sleep(Duration::from_millis(fastrand::u64(wait))).await;
        server.kill();
        server = Server::start_on(port, &db, FAULT_ENV).await;
    }
    let mut ids = HashMap::new();
    for client in clients {
        ids.extend(client.await.expect("a client finished"));
    }
    assert_eq!(ids.len(), SAGAS);

    // Every saga ends as its input dictates.
    assert_settled_as_dictated(&server, &cases, &ids, deadline).await;

    let pool = PgPool::connect(&db).await.unwrap();
    // No participant applied any idempotency key twice.
    assert_no_effect_twice(&pool).await;
    // Each saga's required effects were applied, and nothing else but undos.
    assert_effects_as_dictated(&pool, &cases, &ids).await;

    // No saga's history has a gap or a duplicate, and its row agrees.
    assert_histories_whole(&pool).await;
    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(sagas, SAGAS as i64, "one saga per business key");
    // The kills landed on work in flight: commands and replies were lost with
    // the process. Recovery published again what the relay had not recorded as
    // published; the rest the steps' deadlines asked again. Either way the
    // participant received such a command twice.
    let timed_out = timed_out_steps(&pool).await;
    let redelivered = redelivered_commands(&pool).await;
    eprintln!(
        "{KILLS} kills, {SAGAS} sagas: {timed_out} step attempts timed out and were retried, \
         {redelivered} commands delivered more than once"
    );
    assert!(redelivered > 0, "no kill interrupted a step");
    server.kill();
}
