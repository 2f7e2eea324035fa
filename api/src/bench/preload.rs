//! `--preload N`: a store that already holds N finished sagas, written
//! quickly. One real order saga is run to its end; its rows (the saga, its
//! events, commands and inbox rows) are copied N times under new ids in a few
//! large statements, their times spread over the 30 days before now.

use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use sqlx::PgPool;
use uuid::Uuid;

/// Sagas written per statement.
const BATCH: i64 = 50_000;
/// The span the copies' creation times are spread over.
const SPREAD_SECONDS: f64 = 30.0 * 24.0 * 3600.0;

/// Copies the finished saga `template` `n` times; then vacuums and analyses
/// the tables, as a store that has been running a while would be. The
/// seconds it took.
pub(super) async fn preload(
    pool: &PgPool,
    template: Uuid,
    n: i64,
    bar: Option<&ProgressBar>,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    // The template's last command is known published just after its reply
    // may have finished the saga: copies of one not yet known would all be
    // published again.
    loop {
        let (status, unsent): (String, i64) = sqlx::query_as(
            "SELECT s.status, (SELECT count(*) FROM commands o \
                               WHERE o.saga_id = s.id AND o.sent_at IS NULL) \
             FROM sagas s WHERE s.id = $1",
        )
        .bind(template)
        .fetch_one(pool)
        .await
        .context("Failed to read the template saga")?;
        if status != "completed" {
            anyhow::bail!("the template saga ended {status}, not completed");
        }
        if unsent == 0 {
            break;
        }
        if started.elapsed() > std::time::Duration::from_secs(10) {
            anyhow::bail!("the template saga's commands were not all known published within 10 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let statement = copies_statement(pool).await?;
    let run = Uuid::new_v4().simple().to_string();
    let step = SPREAD_SECONDS / n.max(1) as f64;
    let mut from = 0;
    while from < n {
        let to = (from + BATCH).min(n);
        sqlx::query(&statement)
            .bind(from)
            .bind(to - 1)
            .bind(template)
            .bind(format!("preload-{run}-"))
            .bind(n)
            .bind(step)
            .execute(pool)
            .await
            .context("Failed to copy the template saga")?;
        if let Some(bar) = bar {
            bar.inc((to - from) as u64);
        }
        from = to;
    }
    for table in ["sagas", "saga_events", "outbox", "inbox"] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(pool)
            .await
            .with_context(|| format!("Failed to vacuum {table}"))?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// One statement that copies the template's rows for copies `$1..=$2`
/// (`$3` the template, `$4` the business-key prefix, `$5` the number of
/// copies, `$6` the seconds between two copies' creation). Columns are read
/// from the catalog, so that a column a later migration adds is copied too.
async fn copies_statement(pool: &PgPool) -> anyhow::Result<String> {
    // A copy is `$5 - g` steps older than now, as its template is.
    let shift = "make_interval(secs => ($5 - c.g) * $6)";
    let saga = columns(pool, "sagas", |c| match c {
        "id" => Some("c.id".into()),
        "business_key" => Some("$4 || c.g".into()),
        "created_at" | "updated_at" | "step_since" => Some(format!("t.{c} - {shift}")),
        _ => None,
    })
    .await?;
    let event = columns(pool, "saga_events", |c| match c {
        "saga_id" => Some("c.id".into()),
        // Unique: a copy's replies are messages of their own.
        "message_id" => {
            Some("CASE WHEN t.message_id IS NOT NULL THEN gen_random_uuid()::text END".into())
        }
        "recorded_at" => Some(format!("t.recorded_at - {shift}")),
        // The commands kept on an event, each under an id of its own, and its
        // saga and time where the command has them (see `event_commands`); a
        // copy has no relay position, so its commands count as published.
        "commands" => Some(format!(
            "(SELECT jsonb_agg(x || jsonb_build_object('message_id', gen_random_uuid()) \
                     || jsonb_strip_nulls(jsonb_build_object( \
                          'saga_id', CASE WHEN x ? 'saga_id' THEN c.id END, \
                          'created_at', (x->>'created_at')::timestamptz - {shift}))) \
              FROM jsonb_array_elements(t.commands) x)"
        )),
        "relay_pos" => Some("NULL".into()),
        _ => None,
    })
    .await?;
    let command = columns(pool, "outbox", |c| match c {
        "message_id" => Some("gen_random_uuid()".into()),
        "saga_id" => Some("c.id".into()),
        "created_at" | "sent_at" => Some(format!("t.{c} - {shift}")),
        _ => None,
    })
    .await?;
    let inbox = columns(pool, "inbox", |c| match c {
        "message_id" => Some("gen_random_uuid()::text".into()),
        "saga_id" => Some("c.id".into()),
        "received_at" => Some(format!("t.received_at - {shift}")),
        _ => None,
    })
    .await?;
    let copy = |table: &str, key: &str, (names, values): &(String, String)| {
        format!(
            "INSERT INTO {table} ({names}) SELECT {values} FROM copies c, {table} t \
             WHERE t.{key} = $3"
        )
    };
    Ok(format!(
        "WITH copies AS (SELECT g, gen_random_uuid() AS id FROM generate_series($1::bigint, $2::bigint) g), \
         s AS ({}), e AS ({}), o AS ({}) {}",
        copy("sagas", "id", &saga),
        copy("saga_events", "saga_id", &event),
        copy("outbox", "saga_id", &command),
        copy("inbox", "saga_id", &inbox),
    ))
}

/// A table's stored columns (generated ones left out) and, for each, what a
/// copy takes: `changed` says, or else the template's value.
async fn columns(
    pool: &PgPool,
    table: &str,
    changed: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, String)> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' \
         ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .with_context(|| format!("Failed to read the columns of {table}"))?;
    let values: Vec<String> = names
        .iter()
        .map(|c| changed(c).unwrap_or_else(|| format!("t.{c}")))
        .collect();
    Ok((names.join(", "), values.join(", ")))
}
