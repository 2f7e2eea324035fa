//! Reaching the database: creating it if missing, the pool, the schema's
//! migrations, and whether all of them are applied (readiness).

use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

/// The schema, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not create database: {0}")]
    Create(#[source] sqlx::Error),
    #[error("could not connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("could not migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// A pool on `url`, the database created if it is missing and every migration
/// not yet applied applied.
pub(super) async fn pool(url: &str, max_connections: u32) -> Result<PgPool, ConnectError> {
    if !Postgres::database_exists(url)
        .await
        .map_err(ConnectError::Create)?
    {
        // Another process may create it at the same moment; that is fine.
        if let Err(e) = Postgres::create_database(url).await {
            if !Postgres::database_exists(url)
                .await
                .map_err(ConnectError::Create)?
            {
                return Err(ConnectError::Create(e));
            }
        }
    }
    let options: PgConnectOptions = url.parse().map_err(ConnectError::Connect)?;
    // Plan each statement once per connection instead of on every execution:
    // the set-based statements take arrays, whose custom plans cost more to
    // make than to run. No JIT: a generic plan's estimates can pass its cost
    // threshold, and compiling then takes seconds for a statement that runs
    // in a millisecond.
    let options = options.options([("plan_cache_mode", "force_generic_plan"), ("jit", "off")]);
    // Named in `pg_stat_activity` (the committer's connections add `/commit`).
    let name = options
        .get_application_name()
        .unwrap_or(APPLICATION_NAME)
        .to_owned();
    let options = options.application_name(&name);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A broken connection fails its statement, and the step is retried;
        // a ping before every transaction would cost a round trip each.
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .map_err(ConnectError::Connect)?;
    MIGRATOR.run(&pool).await.map_err(ConnectError::Migrate)?;
    Ok(pool)
}

/// A fresh database for one test, created and migrated, on the server
/// `SAGAPLANE_TEST_DATABASE_URL` names (else the local one).
#[cfg(test)]
pub(super) async fn test_pool(max_connections: u32) -> PgPool {
    let server = std::env::var("SAGAPLANE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = format!("{server}/sagaplane_test_{}", uuid::Uuid::new_v4().simple());
    pool(&url, max_connections)
        .await
        .expect("the test database opens")
}

/// The connections' `application_name`, unless the URL gives one.
pub(super) const APPLICATION_NAME: &str = "sagaplane";

/// `Ok` when the database answers and has every migration of [`MIGRATOR`].
pub(super) async fn ready(pool: &PgPool) -> Result<(), String> {
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
            .map_err(|e| format!("the database cannot be queried: {e}"))?;
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| m.version.to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("migrations not applied: {}", missing.join(", ")))
    }
}
