//! Bad definition files are refused at start-up, naming the file and the
//! place of each problem; `sagaplane definitions check` says the same offline.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sagaplane_api::Application;

use crate::definitions::fraud_definition;
use crate::helpers::{fresh_database_url, spawn_app_on, test_settings, TempDir};

fn bad(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/bad")
        .join(name)
}

/// Each bad file and what its refusal must say: the place, then the problem.
const CASES: [(&str, &str, &str); 6] = [
    (
        "unknown-step.toml",
        "steps[1].data.reservation",
        "unknown step `reserv`; results can be read of: reserve",
    ),
    (
        "duplicate-step.toml",
        "steps[1].name",
        "duplicate step name `reserve` (first at steps[0].name)",
    ),
    (
        "invalid-schema.toml",
        "input_schema.type",
        "not a valid JSON Schema",
    ),
    (
        "unknown-field.toml",
        "line 9, column 1",
        "unknown field `retries`",
    ),
    ("no-steps.toml", "steps", "the saga has no steps"),
    (
        "several-problems.toml",
        "steps[0].data.charge",
        "reads the result of `charge`, which runs after this step",
    ),
];

/// Why the application refuses to start with `paths`, on `database_url`.
async fn refusal(database_url: &str, paths: Vec<PathBuf>) -> String {
    let settings = test_settings(database_url, |s| s.definitions.paths = paths);
    match Application::build(settings).await {
        Ok(_) => panic!("the application started"),
        Err(e) => format!("{e:#}"),
    }
}

#[actix_web::test]
async fn each_bad_file_stops_the_start_naming_the_file_and_the_place() {
    for (file, at, problem) in CASES {
        let path = bad(file);
        let message = refusal(&fresh_database_url(), vec![path.clone()]).await;
        let expected = format!("{}: {at}: {problem}", path.display());
        assert!(message.contains(&expected), "{file}: {message}");
    }
    // Every problem of a file, not only the first.
    let path = bad("several-problems.toml");
    let message = refusal(&fresh_database_url(), vec![path.clone()]).await;
    for (at, problem) in [
        ("version", "must be 1 or more"),
        ("steps[0].command", "must be a versioned command type"),
        ("steps[0].data.charge", "reads the result of `charge`"),
    ] {
        let expected = format!("{}: {at}: {problem}", path.display());
        assert!(message.contains(&expected), "{expected}\n{message}");
    }
}

#[actix_web::test]
async fn one_bad_file_among_good_ones_stops_the_start_and_stores_nothing() {
    let db = fresh_database_url();
    let message = refusal(&db, vec![fraud_definition(), bad("no-steps.toml")]).await;
    assert!(message.contains("no-steps.toml: steps:"), "{message}");
    // The good file given with it was not stored either.
    let app = spawn_app_on(&db, |_| {}).await;
    let stored = app
        .count("SELECT count(*) FROM saga_definitions WHERE saga_type = 'order-fraud'")
        .await;
    assert_eq!(stored, 0);
}

#[actix_web::test]
async fn a_file_changing_a_stored_version_is_refused_naming_the_file() {
    let folder = TempDir::new();
    let shipped = sagaplane_sagas::definition::SHIPPED[0].1;
    assert!(shipped.contains("saga_type = \"order\""));
    // The shipped order version 1, with one more step and the same version.
    let changed = folder.write(
        "order.v1.toml",
        &shipped.replace(
            "\n[final_compensation]",
            "\n[[steps]]\nname = \"notify\"\nparticipant = \"mail\"\n\
             command = \"order.mail.send.v1\"\n\n[final_compensation]",
        ),
    );
    let db = fresh_database_url();
    let message = refusal(&db, vec![changed.clone()]).await;
    assert!(
        message.contains(&changed.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("version 1 of saga type `order`"),
        "{message}"
    );

    // A team's version stored by an earlier start, changed since: refused.
    let fraud = folder.write(
        "order-fraud.v1.toml",
        &std::fs::read_to_string(fraud_definition()).unwrap(),
    );
    let app = spawn_app_on(&db, |s| s.definitions.paths = vec![fraud.clone()]).await;
    let text = std::fs::read_to_string(&fraud).unwrap();
    std::fs::write(&fraud, text.replace("Reserve inventory,", "Reserve stock,")).unwrap();
    // A new type offered beside it is not stored either: all or nothing.
    let newcomer = folder.write(
        "order-newcomer.v1.toml",
        &std::fs::read_to_string(fraud_definition())
            .unwrap()
            .replace(
                "saga_type = \"order-fraud\"",
                "saga_type = \"order-newcomer\"",
            ),
    );
    let message = refusal(&db, vec![newcomer, fraud.clone()]).await;
    assert!(
        message.contains(&format!(
            "{}: version 1 of saga type `order-fraud` is already stored",
            fraud.display()
        )),
        "{message}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM saga_definitions WHERE saga_type = 'order-newcomer'")
            .await,
        0
    );
    // What was stored is unchanged, and the same content again is accepted.
    let description: String = sqlx::query_scalar(
        "SELECT document->>'description' FROM saga_definitions WHERE saga_type = 'order-fraud'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        description.starts_with("Reserve inventory,"),
        "{description}"
    );
    std::fs::write(&fraud, text).unwrap();
    spawn_app_on(&db, |s| s.definitions.paths = vec![fraud]).await;
}

fn check(files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sagaplane"))
        .args(["definitions", "check"])
        .args(files)
        .output()
        .expect("the CLI runs")
}

#[test]
fn definitions_check_prints_every_problem_of_every_file_and_exits_1() {
    let mut files: Vec<PathBuf> = CASES.iter().map(|(file, ..)| bad(file)).collect();
    files.push(fraud_definition());
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let out = check(&paths);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (file, at, problem) in CASES {
        let expected = format!("{}: {at}: {problem}", bad(file).display());
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
    }
    assert!(stderr.contains("version: must be 1 or more"), "{stderr}");
    assert!(
        stderr.contains("error: 6 of 7 definition files refused"),
        "{stderr}"
    );
    // The good file among them is reported good.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("order-fraud.v1.toml: ok: saga type `order-fraud` version 1, 4 steps"),
        "{stdout}"
    );
    assert!(!stdout.contains("bad"), "{stdout}");
}

#[test]
fn definitions_check_exits_0_when_every_file_is_good() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../definitions");
    let out = check(&[&fraud_definition(), &shipped]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "order-fraud.v1.toml: ok: saga type `order-fraud` version 1",
        "order.v1.toml: ok: saga type `order` version 1, 3 steps",
        "return.v1.toml: ok: saga type `return` version 1, 3 steps",
    ] {
        assert!(stdout.contains(expected), "{expected}\n{stdout}");
    }
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
}
