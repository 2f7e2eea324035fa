//! `sagaplane bench` runs the workload end to end and reports what it measured.
//! (What the figures are is for BENCHMARKS.md; this only checks they are real.)

use std::process::Command;

use serde_json::Value;

use crate::helpers::server_url;

#[test]
fn bench_runs_the_workload_and_reports_its_figures() {
    let database = format!("sagaplane_test_{}", uuid::Uuid::new_v4().simple());
    let output = Command::new(env!("CARGO_BIN_EXE_sagaplane"))
        .args([
            "bench",
            "--sagas",
            "40",
            "--warmup",
            "5",
            "--concurrency",
            "4",
        ])
        .args(["--fail-pct", "25", "--json", "--database", &server_url()])
        .args(["--bench-database", &database])
        .output()
        .expect("bench runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["sagas"], 40);
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["sagas_per_second"].as_f64().unwrap() > 0.0);
    let p50 = report["latency_ms"]["p50"].as_f64().unwrap();
    let max = report["latency_ms"]["max"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{report}");
    // Each saga takes at least its four or five step commits.
    let commits = report["commits_per_saga"].as_f64().unwrap();
    assert!((3.0..40.0).contains(&commits), "{report}");
    assert!(
        report["rows_written_per_saga"].as_f64().unwrap() >= 10.0,
        "{report}"
    );
    assert!(report["server_rss_mib"].as_f64().unwrap() > 1.0, "{report}");
}
