//! The operator CLI, run as the real binary against a live server.

use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{order, spawn_app, TestApp};

async fn cli(app: &TestApp, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sagaplane"));
    command
        .args(args)
        .env("SAGAPLANE_URL", &app.address)
        .env_remove("SAGAPLANE_TOKEN");
    tokio::task::spawn_blocking(move || command.output().expect("the CLI runs"))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[actix_web::test]
async fn find_see_why_and_fix_a_stuck_saga_from_the_terminal() {
    let app = spawn_app().await;
    let done = app
        .start_order("cli-ok", order("cli-ok", "c-1", "SKU-1", 500))
        .await;
    app.settled(&done).await;
    let stuck = app
        .start_order("cli-hang", order("cli-hang", "c-1", "HANG-1", 500))
        .await;

    let out = cli(&app, &["sagas", "list", "--status", "running"]).await;
    assert!(out.status.success());
    let table = stdout(&out);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains(&stuck) && !table.contains(&done), "{table}");
    assert!(table.contains("reserve-inventory #1"), "{table}");

    let out = cli(&app, &["sagas", "list", "--json", "--limit", "1"]).await;
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(page["items"][0]["id"], stuck.as_str());
    assert!(page["next_cursor"].is_string());

    let out = cli(&app, &["sagas", "show", &stuck]).await;
    let text = stdout(&out);
    assert!(
        text.contains("inventory to answer reserve-inventory (attempt 1 of 3)"),
        "{text}"
    );
    assert!(text.contains("retry, skip, compensate, cancel"), "{text}");

    let out = cli(
        &app,
        &[
            "sagas",
            "skip",
            &stuck,
            "--assume",
            "succeeded",
            "--reason",
            "done by hand",
            "--dry-run",
        ],
    )
    .await;
    assert!(
        stdout(&out).contains("would append InventoryReserved"),
        "{}",
        stdout(&out)
    );
    assert_eq!(app.saga(&stuck).await["version"], 1);

    let out = cli(
        &app,
        &[
            "sagas",
            "skip",
            &stuck,
            "--assume",
            "succeeded",
            "--reason",
            "done by hand",
            "--if-version",
            "1",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(app.settled(&stuck).await["status"], "completed");

    // An API refusal is printed from its problem details, with exit status 1.
    let out = cli(&app, &["sagas", "cancel", &stuck, "--reason", "late"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: 409 Conflict"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");

    let out = cli(&app, &["sagas", "events", &stuck, "--with-state"]).await;
    assert!(
        stdout(&out).contains("OperatorIntervened"),
        "{}",
        stdout(&out)
    );
    let out = cli(&app, &["sagas", "stats", "--json"]).await;
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["counts"][0]["count"], 2);
    let out = cli(&app, &["dead-letters", "list"]).await;
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("ID"));
}
