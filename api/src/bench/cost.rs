//! What a run costs: the database's counters (commits, rows and index entries
//! written per table, WAL) and the CPU time of the server and of PostgreSQL,
//! read before and after the measured sagas.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use sqlx::PgPool;

use crate::procfs::{postgres_cpu_seconds, Process};

/// The counters at one instant.
pub(super) struct Counters {
    commits: i64,
    tables: BTreeMap<String, TableCounters>,
    wal_bytes: Option<f64>,
}

#[derive(Clone, Copy, Default)]
struct TableCounters {
    inserted: i64,
    updated: i64,
    hot_updated: i64,
    deleted: i64,
    indexes: i64,
}

/// The CPU seconds used so far by the server, PostgreSQL and bench itself.
#[derive(Clone, Copy)]
pub(super) struct Cpu {
    server: Option<f64>,
    postgres: Option<f64>,
    client: Option<f64>,
}

/// Rows one saga writes to one table, on average.
#[derive(Debug, Serialize)]
pub(super) struct TableCost {
    pub(super) inserted: f64,
    pub(super) updated: f64,
    /// Updates that wrote no index entry (heap-only tuples).
    pub(super) hot_updated: f64,
    pub(super) deleted: f64,
}

/// What one saga cost, on average over the measured ones.
#[derive(Debug, Serialize)]
pub(super) struct Cost {
    pub(super) commits_per_saga: f64,
    pub(super) rows_written_per_saga: f64,
    /// Index entries written per saga: each insert and each update that is not
    /// heap-only writes one into every index of its table. An upper bound: a
    /// partial index whose condition a row fails gets none.
    pub(super) index_entries_per_saga: f64,
    pub(super) wal_bytes_per_saga: Option<f64>,
    pub(super) rows_by_table: BTreeMap<String, TableCost>,
    pub(super) cpu_ms_per_saga: CpuCost,
}

/// CPU milliseconds per saga.
#[derive(Debug, Serialize)]
pub(super) struct CpuCost {
    /// The orchestrator's process (with `--url`, as its `/metrics` says).
    pub(super) server: Option<f64>,
    /// Every process of the PostgreSQL server on this machine: backends,
    /// WAL writer, checkpointer, autovacuum (and ended ones, once reaped).
    pub(super) postgres: Option<f64>,
    /// The two together.
    pub(super) total: Option<f64>,
    /// bench itself, as the HTTP client.
    pub(super) client: Option<f64>,
}

impl Counters {
    pub(super) async fn read(pool: &PgPool) -> anyhow::Result<Counters> {
        let commits: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(pool)
        .await
        .context("Failed to read pg_stat_database")?;
        let rows: Vec<(String, i64, i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT t.relname::text, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd, t.n_tup_del, \
                    (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid) \
             FROM pg_stat_user_tables t",
        )
        .fetch_all(pool)
        .await
        .context("Failed to read pg_stat_user_tables")?;
        let tables = rows
            .into_iter()
            .map(|(name, inserted, updated, hot_updated, deleted, indexes)| {
                let counters = TableCounters {
                    inserted,
                    updated,
                    hot_updated,
                    deleted,
                    indexes,
                };
                (name, counters)
            })
            .collect();
        // pg_stat_wal is PostgreSQL 14 and later.
        let wal_bytes = sqlx::query_scalar("SELECT wal_bytes::float8 FROM pg_stat_wal")
            .fetch_one(pool)
            .await
            .ok();
        Ok(Counters {
            commits,
            tables,
            wal_bytes,
        })
    }
}

impl Cpu {
    /// `server`: the server's CPU seconds now, however they are known.
    pub(super) async fn read(pool: &PgPool, server: Option<f64>) -> Cpu {
        let backend: Option<i32> = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await
            .ok();
        Cpu {
            server,
            postgres: backend.and_then(|pid| postgres_cpu_seconds(pid as u32)),
            client: Process::Own.cpu_seconds(),
        }
    }
}

/// What `sagas` sagas cost between two readings.
pub(super) fn cost(
    sagas: usize,
    (before, after): (&Counters, &Counters),
    (cpu_before, cpu_after): (Cpu, Cpu),
) -> Cost {
    let n = sagas.max(1) as f64;
    let per = |v: i64| v as f64 / n;
    let mut rows_by_table = BTreeMap::new();
    let (mut rows, mut index_entries) = (0, 0);
    for (name, a) in &after.tables {
        let b = before.tables.get(name).copied().unwrap_or_default();
        let (ins, upd, hot, del) = (
            a.inserted - b.inserted,
            a.updated - b.updated,
            a.hot_updated - b.hot_updated,
            a.deleted - b.deleted,
        );
        if ins + upd + del == 0 {
            continue;
        }
        rows += ins + upd + del;
        index_entries += (ins + upd - hot) * a.indexes;
        rows_by_table.insert(
            name.clone(),
            TableCost {
                inserted: per(ins),
                updated: per(upd),
                hot_updated: per(hot),
                deleted: per(del),
            },
        );
    }
    let ms = |a: Option<f64>, b: Option<f64>| Some((a? - b?) * 1_000.0 / n);
    let server = ms(cpu_after.server, cpu_before.server);
    let postgres = ms(cpu_after.postgres, cpu_before.postgres);
    Cost {
        commits_per_saga: per(after.commits - before.commits),
        rows_written_per_saga: per(rows),
        index_entries_per_saga: per(index_entries),
        wal_bytes_per_saga: after
            .wal_bytes
            .zip(before.wal_bytes)
            .map(|(a, b)| (a - b) / n),
        rows_by_table,
        cpu_ms_per_saga: CpuCost {
            server,
            postgres,
            total: server.zip(postgres).map(|(s, p)| s + p),
            client: ms(cpu_after.client, cpu_before.client),
        },
    }
}
