//! `sagaplane bench` runs the workload end to end and reports what it measured.
//! (What the figures are is for BENCHMARKS.md; this only checks they are real.)

use std::process::Command;

use serde_json::Value;

use crate::helpers::server_url;

fn bench(database: &str, extra: &[&str]) -> Value {
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
        .args(["--bench-database", database])
        .args(extra)
        .output()
        .expect("bench runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[actix_web::test]
async fn bench_runs_the_workload_and_reports_its_figures() {
    // Each run waits for PostgreSQL's statistics twice (22 s): both at once.
    let runs =
        [(&["--preload", "300"][..], 1), (&["--two-requests"][..], 2)].map(|(extra, requests)| {
            let database = format!("sagaplane_test_{}", uuid::Uuid::new_v4().simple());
            let run = std::thread::spawn({
                let database = database.clone();
                move || bench(&database, extra)
            });
            (database, run, requests)
        });
    for (database, run, requests) in runs {
        let report = run.join().expect("bench ran");
        assert_eq!(report["sagas"], 40);
        assert_eq!(report["requests_per_saga"], requests);
        assert_eq!(report["errors"], 0, "{report}");
        assert!(report["sagas_per_second"].as_f64().unwrap() > 0.0);
        let p50 = report["latency_ms"]["p50"].as_f64().unwrap();
        let max = report["latency_ms"]["max"].as_f64().unwrap();
        assert!(p50 > 0.0 && p50 <= max, "{report}");
        let cost = &report["cost"];
        // Each saga takes at least its four or five step commits.
        let commits = cost["commits_per_saga"].as_f64().unwrap();
        assert!((3.0..40.0).contains(&commits), "{report}");
        let rows = cost["rows_written_per_saga"].as_f64().unwrap();
        assert!(rows >= 10.0, "{report}");
        // A completed saga has four events, a compensated one more.
        let events = &cost["rows_by_table"]["saga_events"];
        assert!(events["inserted"].as_f64().unwrap() >= 4.0, "{report}");
        assert_eq!(
            events["updated"], 0.0,
            "the history is append-only: {report}"
        );
        assert!(
            cost["index_entries_per_saga"].as_f64().unwrap() >= rows,
            "{report}"
        );
        // A step that keeps its deadline's slot and status rewrites the saga's
        // row in place: no index changes.
        let sagas = &cost["rows_by_table"]["sagas"];
        assert!(sagas["hot_updated"].as_f64().unwrap() > 0.0, "{report}");
        assert!(
            cost["wal_bytes_per_saga"].as_f64().unwrap() > 1_000.0,
            "{report}"
        );
        // The server and PostgreSQL both run on this machine, so /proc knows both.
        let cpu = &cost["cpu_ms_per_saga"];
        let server = cpu["server"].as_f64().unwrap();
        let postgres = cpu["postgres"].as_f64().unwrap();
        assert!(server > 0.0 && postgres > 0.0, "{report}");
        assert!((cpu["total"].as_f64().unwrap() - server - postgres).abs() < 1e-9);
        assert!(report["server_rss_mib"].as_f64().unwrap() > 1.0, "{report}");
        for read in ["stats", "newest_page", "stuck_page", "by_business_key"] {
            let median = report["queries_ms"][read]["median"].as_f64().unwrap();
            assert!(median > 0.0, "{read}: {report}");
        }

        let pool = sqlx::PgPool::connect(&format!("{}/{database}", server_url()))
            .await
            .unwrap();
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool);
        assert_eq!(report["analyzed"], true);
        let analyzed = count(
            "SELECT count(*) FROM pg_stat_user_tables \
             WHERE relname IN ('sagas', 'saga_events') AND last_analyze IS NOT NULL",
        )
        .await
        .unwrap();
        assert_eq!(analyzed, 2, "analyzed after the warm-up: {report}");
        let copies = count("SELECT count(*) FROM sagas WHERE business_key LIKE 'preload-%'")
            .await
            .unwrap();
        let preloaded = report["preloaded"].as_i64().unwrap();
        assert_eq!(copies, preloaded, "{report}");
        // Warmup, measured sagas, and the template when there are copies.
        let total = count("SELECT count(*) FROM sagas").await.unwrap();
        assert_eq!(total, preloaded + 45 + i64::from(preloaded > 0));
        if preloaded > 0 {
            // Each copy is whole: its history, its commands and its replies.
            let events = count(
                "SELECT count(*) FROM saga_events e JOIN sagas s ON s.id = e.saga_id \
                 WHERE s.business_key LIKE 'preload-%'",
            );
            assert_eq!(events.await.unwrap(), 4 * preloaded);
            let commands = count(
                "SELECT count(*) FROM commands o JOIN sagas s ON s.id = o.saga_id \
                 WHERE s.business_key LIKE 'preload-%' AND o.sent_at IS NOT NULL",
            );
            assert_eq!(commands.await.unwrap(), 3 * preloaded);
            let span = count(
                "SELECT extract(day FROM max(created_at) - min(created_at))::bigint FROM sagas \
                 WHERE business_key LIKE 'preload-%'",
            );
            assert_eq!(span.await.unwrap(), 29, "spread over the past 30 days");
        }
        pool.close().await;
    }
}

#[test]
fn bench_kills_a_node_with_sagas_in_flight_and_times_its_recovery() {
    let database = format!("sagaplane_test_{}", uuid::Uuid::new_v4().simple());
    let report = bench(
        &database,
        &[
            "--park",
            "60",
            "--kill-and-recover",
            "--kill-after-ms",
            "300",
        ],
    );
    assert_eq!(report["parked"], 60);
    assert!(
        report["in_flight_at_kill"].as_i64().unwrap() >= 60,
        "{report}"
    );
    assert!(report["healthy_ms"].as_f64().unwrap() > 0.0, "{report}");
    let recovered = report["recovered_ms"].as_f64().expect("recovered");
    for part in ["leases_ms", "timers_ms", "outbox_ms"] {
        let ms = report[part].as_f64().unwrap();
        assert!(ms <= recovered, "{part}: {report}");
    }
    assert!(recovered < 60_000.0, "{report}");
}
