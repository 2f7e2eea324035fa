//! Saga definitions: a row per version, inserted once, never updated.

use sagaplane_orchestrator::ports::{StoreError, StoredDefinition};
use sqlx::PgPool;

use crate::postgres::rows::db;

pub(super) async fn publish(
    pool: &PgPool,
    offered: &[StoredDefinition],
) -> Result<Vec<StoredDefinition>, StoreError> {
    let mut tx = pool.begin().await.map_err(db)?;
    // One order for every node starting at once: no deadlock between them.
    let mut offered: Vec<&StoredDefinition> = offered.iter().collect();
    offered.sort_by(|a, b| (&a.saga_type, a.version).cmp(&(&b.saga_type, b.version)));
    for d in &offered {
        sqlx::query(
            "INSERT INTO saga_definitions (saga_type, version, hash, source, document) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (saga_type, version) DO NOTHING",
        )
        .bind(&d.saga_type)
        .bind(d.version as i32)
        .bind(&d.hash)
        .bind(&d.source)
        .bind(&d.document)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    let rows: Vec<(String, i32, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT saga_type, version, hash, source, document FROM saga_definitions \
         ORDER BY saga_type, version",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let stored: Vec<StoredDefinition> = rows
        .into_iter()
        .map(
            |(saga_type, version, hash, source, document)| StoredDefinition {
                saga_type,
                version: version as u32,
                hash,
                source,
                document,
            },
        )
        .collect();
    let changed = offered
        .iter()
        .any(|d| stored.iter().any(|s| s.conflicts_with(d)));
    if changed {
        // The caller refuses to start: store none of the new versions either.
        tx.rollback().await.map_err(db)?;
    } else {
        tx.commit().await.map_err(db)?;
    }
    Ok(stored)
}
