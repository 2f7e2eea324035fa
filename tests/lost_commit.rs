//! A batch's COMMIT reaches PostgreSQL but its answer never comes back: a
//! proxy between the server and PostgreSQL cuts the committer's connection
//! right after forwarding a COMMIT (the server has written the batch; the
//! committer cannot know). Every saga must still finish as its input
//! dictates, each command published once, and none waiting for a step's
//! timeout to be asked again. And connections PostgreSQL ends between steps
//! fail no step.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::StatusCode;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::helpers::{fresh_database_url, order, order_request, server_url, spawn_app};
use crate::server::{
    assert_effects_as_dictated, assert_histories_whole, assert_no_effect_twice,
    assert_settled_as_dictated, cases, start_retrying, timed_out_steps, Server,
};

const SAGAS: usize = 120;
const CLIENTS: usize = 20;
/// The committer's COMMITs whose answer is cut: every `CUT_EVERY`th, at most `CUTS`.
const CUT_EVERY: usize = 15;
const CUTS: usize = 4;

/// A TCP proxy in front of PostgreSQL that reads the frontend's messages:
/// on connections whose `application_name` ends in `/commit`, it forwards
/// every `CUT_EVERY`th simple-query `COMMIT` and then closes both sides
/// without forwarding the answer.
struct CommitCutter {
    port: u16,
    commits: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
}

impl CommitCutter {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let commits = Arc::new(AtomicUsize::new(0));
        let cut = Arc::new(AtomicUsize::new(0));
        let (c, k) = (commits.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let (c, k) = (c.clone(), k.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = relay(client, server, c, k).await;
                    }
                });
            }
        });
        Self { port, commits, cut }
    }
}

/// Reads one length-prefixed body (the length counts itself).
async fn body(from: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<Vec<u8>> {
    let len = from.read_u32().await? as usize;
    let mut body = vec![0; len.saturating_sub(4)];
    from.read_exact(&mut body).await?;
    Ok(body)
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    commits: Arc<AtomicUsize>,
    cut: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let answers = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    });
    // The startup message: no type byte; its parameters are name/value pairs.
    let startup = body(&mut from_client).await?;
    let params: Vec<&[u8]> = startup.get(4..).unwrap_or(&[]).split(|b| *b == 0).collect();
    let committer = params.chunks(2).any(|kv| {
        kv[0] == b"application_name" && kv.get(1).is_some_and(|v| v.ends_with(b"/commit"))
    });
    to_server.write_u32(startup.len() as u32 + 4).await?;
    to_server.write_all(&startup).await?;
    loop {
        let kind = from_client.read_u8().await?;
        let message = body(&mut from_client).await?;
        let is_commit = kind == b'Q' && message.to_ascii_uppercase().starts_with(b"COMMIT");
        let cutting = committer
            && is_commit
            && (commits.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(CUT_EVERY)
            && cut.fetch_add(1, Ordering::SeqCst) < CUTS;
        if cutting {
            // Its answer must not reach the client: stop forwarding first.
            answers.abort();
        }
        to_server.write_u8(kind).await?;
        to_server.write_u32(message.len() as u32 + 4).await?;
        to_server.write_all(&message).await?;
        if cutting {
            // Time for the server to commit, then both sides are closed.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Ok(());
        }
    }
}

/// `host:port` of the test server's PostgreSQL.
fn upstream() -> String {
    let url = server_url();
    let rest = url.split("://").nth(1).unwrap_or(&url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_commit_answer_is_lost_loses_no_command() {
    let db = fresh_database_url();
    let name = db.rsplit('/').next().unwrap().to_owned();
    let cutter = CommitCutter::start(upstream()).await;
    let through = format!(
        "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
        cutter.port
    );
    let env = [
        ("SAGAPLANE_SIMULATOR__DURABLE_MEMORY", "true"),
        ("SAGAPLANE_SIMULATOR__LATENCY_MS", "15"),
        // A lost command would be asked again only after this: none may be.
        ("SAGAPLANE_SAGA__STEP_TIMEOUT_MS", "60000"),
        ("SAGAPLANE_ORCHESTRATOR__OUTBOX_SWEEP_INTERVAL_MS", "300"),
    ];
    let server = Server::start(&through, &env).await;
    let cases = Arc::new(cases(SAGAS));
    let deadline = Instant::now() + Duration::from_secs(50);

    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let cases = cases.clone();
        let base = server.base.clone();
        clients.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            for i in (c..SAGAS).step_by(CLIENTS) {
                let id = start_retrying(
                    &client,
                    std::slice::from_ref(&base),
                    || 0,
                    &cases[i],
                    deadline,
                )
                .await;
                ids.push((i, id));
            }
            ids
        }));
    }
    let mut ids = HashMap::new();
    for client in clients {
        ids.extend(client.await.expect("a client finished"));
    }
    assert_settled_as_dictated(&server, &cases, &ids, deadline).await;
    let cut = cutter.cut.load(Ordering::SeqCst).min(CUTS);
    let commits = cutter.commits.load(Ordering::SeqCst);
    assert!(
        cut > 0,
        "no batch's answer was cut ({commits} batches committed)"
    );

    let pool = PgPool::connect(&db).await.unwrap();
    assert_no_effect_twice(&pool).await;
    assert_effects_as_dictated(&pool, &cases, &ids).await;
    assert_histories_whole(&pool).await;
    let timed_out = timed_out_steps(&pool).await;
    assert_eq!(timed_out, 0, "a command was lost and asked again");
    // The written batches' commands were looked up and published from the
    // outbox (nothing else puts rows there in this run).
    let recovered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    let unsent: i64 = sqlx::query_scalar("SELECT count(*) FROM commands WHERE sent_at IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    eprintln!("{commits} batches, {cut} answers cut: {recovered} commands recovered");
    assert!(recovered > 0, "no written batch was looked up");
    assert_eq!(unsent, 0);
    server.kill();
}

/// PostgreSQL ends every connection of the committer between steps (an
/// administrator's `pg_terminate_backend`, a failover): every step, alone or
/// in a batch, is written on a new connection, and none fails for it.
#[actix_web::test]
async fn steps_after_the_committers_connections_end_are_written_on_new_ones() {
    let app = spawn_app().await;
    // Twenty clients at once: the committer writes batches as well as steps
    // alone, so it has connections of both kinds.
    let burst = |round: &'static str| {
        let app = &app;
        async move {
            let starts = (0..20).map(|n| {
                let key = format!("{round}-{n}");
                async move {
                    let body = order_request(&key, order(&key, "c-1", "SKU-1", 500));
                    app.post_saga(&body).await
                }
            });
            let mut created = Vec::new();
            let mut failed = Vec::new();
            for response in join_all(starts).await {
                match response.status() {
                    StatusCode::CREATED => {
                        let body: serde_json::Value = response.json().await.unwrap();
                        created.push(body["id"].as_str().unwrap().to_owned());
                    }
                    status => failed.push((status, response.text().await.unwrap())),
                }
            }
            (created, failed)
        }
    };
    let (before, failed) = burst("before").await;
    assert_eq!((before.len(), failed.len()), (20, 0), "{failed:?}");
    for id in &before {
        assert_eq!(app.settled(id).await["status"], "completed");
    }

    let ended = app
        .count(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name LIKE '%/commit'",
        )
        .await;
    assert!(ended >= 1, "the committer has connections to end");

    // A step or batch that fails on an ended connection is written again on
    // a new one: no start fails.
    let (after, failed) = burst("after").await;
    assert_eq!(
        (after.len(), failed.len()),
        (20, 0),
        "{ended} ended: {failed:?}"
    );
    for id in &after {
        assert_eq!(app.settled(id).await["status"], "completed");
    }
    // And the committer carries on: one client, one saga.
    let last = app
        .start_order("last", order("last", "c-1", "SKU-1", 500))
        .await;
    assert_eq!(app.settled(&last).await["status"], "completed");
}
