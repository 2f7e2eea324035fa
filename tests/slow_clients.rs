//! Clients that are slow or go away: a body that does not arrive is cut at
//! `http.body_timeout_ms`, a token without the route's role is refused before
//! the body is read, and a long poll ends when its client leaves.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sagaplane_api::auth::{Role, TokenSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{order, order_request, spawn_app, spawn_app_with, TestApp};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port())).await.unwrap()
}

/// The head of a `POST /v1/sagas` announcing a body of 100 bytes.
fn post_head(token: Option<&str>) -> String {
    let authorization = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/sagas HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         {authorization}content-length: 100\r\n\r\n"
    )
}

/// Everything the server sends until it closes the connection, or what came
/// within `limit` (then `closed` is false).
async fn read_all(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(limit, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[actix_web::test]
async fn a_body_that_stops_arriving_gets_408_and_its_connection_is_closed() {
    let app = spawn_app_with(|s| s.http.body_timeout_ms = 500).await;
    let mut stream = connect(&app).await;
    let began = Instant::now();
    stream.write_all(post_head(None).as_bytes()).await.unwrap();
    stream.write_all(b"{").await.unwrap();
    let (answer, closed) = read_all(&mut stream, Duration::from_secs(10)).await;
    let took = began.elapsed();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("500 ms"), "{answer}");
    assert!(closed, "the connection stays open after the 408");
    assert!(
        took >= Duration::from_millis(450),
        "answered after {took:?}"
    );
    assert_eq!(app.count("SELECT count(*) FROM sagas").await, 0);
}

#[actix_web::test]
async fn a_body_trickling_in_is_cut_at_the_deadline_not_kept_alive_by_each_byte() {
    let app = spawn_app_with(|s| s.http.body_timeout_ms = 500).await;
    let (mut read, mut write) = connect(&app).await.into_split();
    write.write_all(post_head(None).as_bytes()).await.unwrap();
    let began = Instant::now();
    // A byte every 100 ms: the 100 announced would take 10 s.
    let trickle = async {
        for _ in 0..100 {
            if write.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let mut head = [0u8; 12];
    tokio::select! {
        () = trickle => panic!("the whole body was taken, slowly"),
        () = tokio::time::sleep(Duration::from_secs(5)) => panic!("no answer within 5 s"),
        read = read.read_exact(&mut head) => { read.unwrap(); }
    }
    assert_eq!(&head, b"HTTP/1.1 408", "{}", String::from_utf8_lossy(&head));
    let took = began.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
}

/// An app with a token for each role and a long body timeout, so that an
/// early answer can only come from the role check.
async fn secured_app() -> TestApp {
    spawn_app_with(|s| {
        s.http.body_timeout_ms = 30_000;
        s.auth.tokens = [
            ("viewer-token-01234", Role::Viewer),
            ("starter-token-0123", Role::Starter),
        ]
        .into_iter()
        .map(|(token, role)| TokenSettings {
            name: role.as_str().into(),
            token: token.into(),
            roles: vec![role],
        })
        .collect();
    })
    .await
}

#[actix_web::test]
async fn a_token_without_the_role_is_refused_before_the_body_is_read() {
    let app = secured_app().await;
    for (token, status) in [
        (Some("viewer-token-01234"), "403"),
        (Some("not-a-token-at-all"), "401"),
        (None, "401"),
    ] {
        let mut stream = connect(&app).await;
        stream.write_all(post_head(token).as_bytes()).await.unwrap();
        stream.write_all(b"{").await.unwrap();
        let mut head = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut head))
            .await
            .unwrap_or_else(|_| panic!("{token:?}: no answer before the body"))
            .unwrap();
        let head = String::from_utf8_lossy(&head);
        assert_eq!(head, format!("HTTP/1.1 {status}"), "{token:?}");
    }
    // The starter's token is let through to the body, and the saga starts.
    let response = app
        .client
        .post(format!("{}/v1/sagas", app.address))
        .bearer_auth("starter-token-0123")
        .json(&order_request("slow-1", order("slow-1", "c", "BOOK-1", 5)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// The sockets of `port`'s side in each TCP state, from `/proc/net/tcp`
/// (`01` established, `08` CLOSE_WAIT: the client closed, the server not yet).
fn server_sockets(port: u16, state: &str) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1].ends_with(&local) && fields[3] == state
        })
        .count()
}

fn long_poll(id: &str) -> String {
    format!("GET /v1/sagas/{id}?wait=30 HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
}

#[actix_web::test]
async fn a_long_poll_ends_when_its_client_goes_away() {
    let app = spawn_app().await;
    // Never answered: its waits would run their whole 30 s.
    let id = app
        .start_order("slow-poll", order("slow-poll", "c", "HANG-1", 5))
        .await;
    let port = app.port();
    // The test's own client keeps a connection or two.
    let before = server_sockets(port, "01");
    let mut clients = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&app).await;
        stream.write_all(long_poll(&id).as_bytes()).await.unwrap();
        clients.push(stream);
    }
    assert!(
        app.eventually(Duration::from_secs(5), || async {
            server_sockets(port, "01") >= before + 20
        })
        .await,
        "the 20 long polls are not all established"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(clients);
    let ended = app
        .eventually(Duration::from_secs(5), || async {
            server_sockets(port, "08") == 0 && server_sockets(port, "01") <= before
        })
        .await;
    assert!(
        ended,
        "{} sockets still in CLOSE_WAIT, {} established",
        server_sockets(port, "08"),
        server_sockets(port, "01")
    );
}

#[actix_web::test]
async fn a_client_that_only_stops_sending_gets_the_saga_long_before_its_wait_ends() {
    let app = spawn_app().await;
    let id = app
        .start_order("slow-half", order("slow-half", "c", "HANG-1", 5))
        .await;
    let mut stream = connect(&app).await;
    stream.write_all(long_poll(&id).as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let began = Instant::now();
    let (answer, _) = read_all(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(&id) && answer.contains("\"running\""),
        "{answer}"
    );
    let took = began.elapsed();
    // The client is watched once the wait has run 0.2 s (`connection.rs`).
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
}
