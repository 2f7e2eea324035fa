//! A node stopped while one of its actors waits on the database ends quietly:
//! the connection that call holds goes back to its pool as the system ends,
//! instead of panicking outside the runtime.

use std::time::Duration;

use crate::helpers::{eventually, fresh_database_url, start_node};

#[actix_web::test]
async fn a_node_stopped_during_a_store_call_stops_cleanly() {
    let db = fresh_database_url();
    // Leases are renewed every 100 ms.
    let node = start_node(&db, |s| s.cluster.lease_ttl_ms = 300).await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    // Hold the table a lease renewal writes, so the next renewal waits.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE cluster_nodes IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let waiting = eventually(Duration::from_secs(10), || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock' \
               AND query LIKE '%cluster_nodes%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        n > 0
    })
    .await;
    assert!(waiting, "a lease renewal waits on the lock");
    // Its system ends with the renewal in flight; `stop` joins the node's
    // thread and fails if anything panicked on the way out.
    node.stop().await;
    lock.rollback().await.unwrap();
}
