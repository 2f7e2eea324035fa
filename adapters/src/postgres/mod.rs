//! The PostgreSQL store.

mod batch;
mod committer;
mod operator;
mod queries;
mod rows;

use std::time::Duration;

use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Postgres;

pub use committer::GroupCommit;
pub use queries::PgEventStore;

/// The schema, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not create database: {0}")]
    Create(#[source] sqlx::Error),
    #[error("could not connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("could not migrate the database: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl PgEventStore {
    /// Connects to `url`, creating the database if it is missing and applying
    /// any migration not yet applied.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        group_commit: GroupCommit,
    ) -> Result<Self, ConnectError> {
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
        // make than to run.
        let options = options.options([("plan_cache_mode", "force_generic_plan")]);
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
        Ok(Self::new(pool, group_commit))
    }
}
