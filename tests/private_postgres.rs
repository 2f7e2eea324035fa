//! The real binary with no database configured and the private PostgreSQL
//! server forced on (`database.private = "always"`): it makes its cluster in
//! a temporary data folder, keeps the sagas across restarts, refuses a
//! second `serve` on the folder, and its server ends with it, whether it is
//! stopped (SIGTERM) or killed (SIGKILL).
//!
//! These need PostgreSQL's server programs; without them each test is
//! skipped, saying why, unless `SAGAPLANE_REQUIRE_INITDB` is set (`.ci/run`
//! sets it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::helpers::{order, TempDir};
use crate::server::{free_port, restart_port, Server};

/// Whether the server programs are installed; `false` (skip) only when
/// they may be missing.
fn server_programs() -> bool {
    if sagaplane_api::private_postgres::find_bin().is_some() {
        return true;
    }
    assert!(
        std::env::var_os("SAGAPLANE_REQUIRE_INITDB").is_none(),
        "PostgreSQL's initdb and postgres are required here (SAGAPLANE_REQUIRE_INITDB) but were \
         not found"
    );
    eprintln!("skipped: PostgreSQL's initdb and postgres were not found");
    false
}

fn private_env(data: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("SAGAPLANE_DATABASE__PRIVATE", "always".into()),
        (
            "SAGAPLANE_DATABASE__PRIVATE_DIR",
            data.to_str().unwrap().into(),
        ),
    ]
}

async fn start(port: u16, data: &Path) -> Server {
    let env = private_env(data);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Server::start_with(port, None, &env).await
}

/// The PID of the server running on `data`, from its `postmaster.pid`.
fn postmaster(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("pgdata/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether `pid` is a live process (a zombie waiting for its reaper is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        !state.starts_with('Z') && !state.starts_with('X')
    })
}

async fn gone_within(pid: u32, limit: Duration) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts an order on `server` and waits until it completed; its id.
async fn completed_order(server: &Server, key: &str, order_id: &str) -> String {
    let id = server
        .start_order(key, order(order_id, "c", "SKU-1", 100))
        .await;
    assert_eq!(
        server.get(&format!("/v1/sagas/{id}?wait=10")).await["status"],
        "completed"
    );
    id
}

fn data_folder(folder: &TempDir) -> PathBuf {
    folder.0.join("sagaplane")
}

#[tokio::test]
async fn the_private_server_keeps_the_sagas_across_restarts_and_ends_with_sagaplane() {
    if !server_programs() {
        return;
    }
    let folder = TempDir::new();
    let data = data_folder(&folder);
    let port = restart_port();

    let first = start(port, &data).await;
    let id = completed_order(&first, "p-1", "o-1").await;
    let before = first.snapshot(&id).await;
    let postgres = postmaster(&data).expect("the private server runs");
    assert!(alive(postgres));
    let status = first.terminate().await;
    assert!(status.success(), "SIGTERM ends sagaplane cleanly: {status}");
    assert!(
        !alive(postgres),
        "the server stopped before sagaplane exited"
    );
    assert_eq!(postmaster(&data), None, "a clean shutdown");

    let second = start(port, &data).await;
    assert_eq!(second.snapshot(&id).await, before, "kept across a restart");
    let postgres = postmaster(&data).expect("the private server runs again");
    second.kill();
    assert!(
        gone_within(postgres, Duration::from_secs(30)).await,
        "the server ends when sagaplane is killed"
    );

    let third = start(port, &data).await;
    assert_eq!(third.snapshot(&id).await, before, "kept across a kill");
    completed_order(&third, "p-2", "o-2").await;
    let postgres = postmaster(&data).expect("the private server runs again");
    assert!(third.terminate().await.success());
    assert!(!alive(postgres));
}

#[tokio::test]
async fn a_second_serve_on_the_same_data_folder_is_refused() {
    if !server_programs() {
        return;
    }
    let folder = TempDir::new();
    let data = data_folder(&folder);
    let first = start(free_port(), &data).await;
    let second = Command::new(env!("CARGO_BIN_EXE_sagaplane"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "0")
        .env("SAGAPLANE_LISTEN", format!("127.0.0.1:{}", free_port()))
        .envs(private_env(&data))
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    let expected = format!(
        "Another sagaplane (PID {}) is running a private PostgreSQL server on {}",
        first.pid(),
        data.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("database.private_dir"), "{stderr}");
    // The first one goes on undisturbed: it is (or, just started, becomes)
    // ready, its private server untouched.
    let mut ready = false;
    for _ in 0..300 {
        let answer = first
            .client
            .get(format!("{}/readyz", first.base))
            .send()
            .await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the first sagaplane did not become ready");
    assert_eq!(first.get("/readyz").await["status"], "ready");
    assert!(first.terminate().await.success());
}

/// No silent fallback: a database URL that is set but does not answer
/// stops `serve`, and no private server is made.
#[tokio::test]
async fn a_configured_database_that_does_not_answer_is_an_error() {
    let folder = TempDir::new();
    let data = data_folder(&folder);
    let unused = free_port();
    let run = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_sagaplane"))
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env("RUST_BACKTRACE", "0")
            .env("SAGAPLANE_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("SAGAPLANE_DATABASE__PRIVATE_DIR", &data)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("the binary runs")
    };
    let url = format!("postgres://postgres@127.0.0.1:{unused}/sagaplane");
    let out = run(&[("DATABASE_URL", &url)]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Failed to open the database"), "{stderr}");
    assert!(!data.exists(), "no private server was made");

    let out = run(&[
        ("DATABASE_URL", &url),
        ("SAGAPLANE_DATABASE__PRIVATE", "always"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("database.private = \"always\" runs a private server, so database.url"),
        "{stderr}"
    );
    assert!(!data.exists());
}

/// What a sagaplane that died without stopping its server would leave (on
/// Linux the server is told to stop then; elsewhere it may go on): a server
/// still running on the folder, or a `postmaster.pid` naming a PID that now
/// belongs to another program. The next start copes with both.
#[tokio::test]
async fn a_server_left_running_or_a_stale_pid_file_does_not_stop_the_next_start() {
    if !server_programs() {
        return;
    }
    let folder = TempDir::new();
    let data = data_folder(&folder);
    let port = restart_port();
    let first = start(port, &data).await;
    let id = completed_order(&first, "l-1", "o-1").await;
    assert!(first.terminate().await.success());

    // The leftover: the same server, started by hand on the folder.
    let bin = sagaplane_api::private_postgres::find_bin().unwrap();
    let pgdata = data.join("pgdata");
    // SAFETY: geteuid has no preconditions.
    let mut command = if unsafe { libc::geteuid() } == 0 {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join("postgres"));
        c
    } else {
        Command::new(bin.join("postgres"))
    };
    let mut leftover = command
        .arg("-D")
        .arg(&pgdata)
        .args(["-c", "listen_addresses=", "-c"])
        .arg(format!("unix_socket_directories={}", pgdata.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("postgres starts");
    let mut ready = false;
    for _ in 0..600 {
        let pid_file = std::fs::read_to_string(pgdata.join("postmaster.pid")).unwrap_or_default();
        if pid_file.lines().nth(7).is_some_and(|l| l.trim() == "ready") {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !ready {
        let _ = leftover.kill();
        let _ = leftover.wait();
        panic!("the leftover server did not become ready");
    }
    let left = postmaster(&data).unwrap();

    let second = start(port, &data).await;
    let mut stopped = None;
    for _ in 0..100 {
        stopped = leftover.try_wait().unwrap();
        if stopped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stopped.is_some(), "the leftover server was stopped");
    assert!(!alive(left));
    assert_ne!(postmaster(&data), Some(left));
    assert_eq!(
        second.get(&format!("/v1/sagas/{id}")).await["status"],
        "completed"
    );
    assert!(second.terminate().await.success());

    // A stale PID file whose PID is a living program, not PostgreSQL.
    std::fs::write(
        pgdata.join("postmaster.pid"),
        format!("{}\n{}\n", std::process::id(), pgdata.display()),
    )
    .unwrap();
    let third = start(port, &data).await;
    assert_eq!(
        third.get(&format!("/v1/sagas/{id}")).await["status"],
        "completed"
    );
    assert!(third.terminate().await.success());
}
