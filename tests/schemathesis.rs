//! schemathesis generates requests from `/openapi.json` against a live server:
//! no 5xx, and every response fits the document (status, content type, schema).
//!
//! `.ci/run` installs schemathesis into a virtualenv and sets
//! `SAGAPLANE_SCHEMATHESIS` to it, with `SAGAPLANE_REQUIRE_SCHEMATHESIS=1`, so in
//! CI this test cannot be skipped. Elsewhere it runs when schemathesis is found
//! there or in `$HOME/.cache/sagaplane-venv`, and says so when it is not.

use std::path::PathBuf;
use std::process::Command;

use sagaplane_api::auth::{Role, TokenSettings};

use crate::helpers::spawn_app_with;

const TOKEN: &str = "schemathesis-token";
/// Requests generated at least, as the operator-API issue asks.
const MIN_CASES: u64 = 1_000;

fn schemathesis() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("SAGAPLANE_SCHEMATHESIS").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/sagaplane-venv/bin/schemathesis")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_file())
}

#[actix_web::test]
async fn generated_requests_get_no_5xx_and_fit_the_document() {
    let Some(binary) = schemathesis() else {
        assert!(
            std::env::var_os("SAGAPLANE_REQUIRE_SCHEMATHESIS").is_none(),
            "schemathesis is required here but was not found"
        );
        eprintln!(
            "SKIPPED: schemathesis not found; `bash .ci/run` installs it \
             (python3 -m venv ~/.cache/sagaplane-venv && ~/.cache/sagaplane-venv/bin/pip install schemathesis)"
        );
        return;
    };
    let app = spawn_app_with(|s| {
        s.auth.tokens = vec![TokenSettings {
            name: "schemathesis".into(),
            token: TOKEN.into(),
            roles: vec![Role::Starter, Role::Admin],
        }];
        // Generated `?wait=` values must not hold the run up.
        s.http.max_wait_seconds = 1;
    })
    .await;
    let url = format!("{}/openapi.json", app.address);
    let run = || {
        let (binary, url) = (binary.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            Command::new(binary)
                // It keeps a cache where it runs: not in the source tree.
                .current_dir(std::env::temp_dir())
                .args(["run", &url])
                .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,\
                     response_schema_conformance,response_headers_conformance",
                ])
                .args([
                    "--max-examples",
                    "60",
                    "--request-timeout",
                    "10",
                    // One worker: hypothesis parses source with `ast`, which is
                    // not thread-safe before Python 3.11.8 (CPython gh-106905).
                    "--workers",
                    "1",
                ])
                .env("NO_COLOR", "1")
                .output()
                .expect("schemathesis runs")
        })
    };
    let mut output = run().await.unwrap();
    let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    // Python before 3.11.8 can still fail to parse source inside hypothesis
    // (CPython gh-106905): an error of the tool, not a finding. Run again, at
    // most twice; a real finding ("FAILURES") is never retried.
    for attempt in 2..=3 {
        if output.status.success()
            || !stdout.contains("AST constructor recursion depth mismatch")
            || stdout.contains("FAILURES")
        {
            break;
        }
        eprintln!("schemathesis hit CPython's AST recursion bug; attempt {attempt}");
        output = run().await.unwrap();
        stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{stderr}"
    );
    // "Test cases:\n  1270 generated, 1270 passed"
    let generated: u64 = stdout
        .split_once("Test cases:")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no test case count in:\n{stdout}"));
    assert!(
        generated >= MIN_CASES,
        "only {generated} requests generated:\n{stdout}"
    );
    eprintln!("schemathesis: {generated} generated requests, all passed");
}
