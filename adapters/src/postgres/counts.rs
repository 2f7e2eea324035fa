//! The finished sagas, counted by type and status for `GET /v1/stats`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::StoreError;
use sqlx::PgPool;
use tokio::sync::Notify;

use super::rows::db;

type Counts = Vec<(String, String, i64)>;

/// Terminal sagas by type and status. Counting them reads every one, and
/// they only grow in number (until retention removes them), so:
///
/// * a count of 100,000 or more is kept for a hundred times as long as it
///   took (a minute at most), then counted again in the background while the
///   kept one answers;
/// * with no count kept, a store whose `sagas` table the planner estimates
///   at fewer than 100,000 rows is counted on the call, exactly;
/// * a larger one is counted in the background, and the call waits for that
///   count at most [`Self::WAIT`]: then it answers with the newest count
///   there is (`None` if there is none yet). A caller is never held for a
///   whole count of a large store (half a second at a million), be it
///   the first call after a restart or after the store grew behind the
///   server's back.
///
/// (How long a count took depends on the machine's load, so it does not
/// decide what is kept: a loaded machine kept an empty store's count while
/// its first sagas finished.)
#[derive(Default)]
pub(crate) struct TerminalCounts {
    state: Arc<Mutex<State>>,
    counted: Arc<Notify>,
}

#[derive(Default)]
struct State {
    newest: Option<Count>,
    counting: bool,
}

struct Count {
    counts: Counts,
    at: DateTime<Utc>,
    /// `None`: too small a count to keep.
    kept_until: Option<Instant>,
}

impl TerminalCounts {
    const KEPT_FOR_TIMES_TAKEN: u32 = 100;
    const WORTH_KEEPING: i64 = 100_000;
    /// A count that was slow for another reason (a lock, a cold cache) is
    /// not kept for hours.
    const KEPT_AT_MOST: Duration = Duration::from_secs(60);
    /// How long a call waits for a count of a large store.
    const WAIT: Duration = Duration::from_millis(20);

    /// The counts and when they were taken; `None` while the first count of
    /// a large store is still being made.
    pub(crate) async fn read(
        &self,
        pool: &PgPool,
    ) -> Result<Option<(Counts, DateTime<Utc>)>, StoreError> {
        if let Some(kept) = self.kept(pool) {
            return Ok(Some(kept));
        }
        if estimated_sagas(pool).await? < Self::WORTH_KEEPING {
            return count(pool, &self.state).await.map(Some);
        }
        let counted = self.counted.notified();
        tokio::pin!(counted);
        counted.as_mut().enable();
        self.count_in_background(pool);
        let _ = tokio::time::timeout(Self::WAIT, counted).await;
        Ok(lock(&self.state)
            .newest
            .as_ref()
            .map(|c| (c.counts.clone(), c.at)))
    }

    /// The count kept, if there is one; once stale, counted again in the
    /// background.
    fn kept(&self, pool: &PgPool) -> Option<(Counts, DateTime<Utc>)> {
        let (counts, at, stale) = {
            let state = lock(&self.state);
            let c = state.newest.as_ref()?;
            (c.counts.clone(), c.at, Instant::now() >= c.kept_until?)
        };
        if stale {
            self.count_in_background(pool);
        }
        Some((counts, at))
    }

    /// Starts a count unless one is under way.
    fn count_in_background(&self, pool: &PgPool) {
        if std::mem::replace(&mut lock(&self.state).counting, true) {
            return;
        }
        let (pool, state, counted) = (pool.clone(), self.state.clone(), self.counted.clone());
        tokio::spawn(async move {
            if let Err(e) = count(&pool, &state).await {
                tracing::warn!(error = %e, "counting the terminal sagas failed");
            }
            lock(&state).counting = false;
            counted.notify_waiters();
        });
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The planner's estimate of the rows in `sagas` (kept by `ANALYZE` and
/// autovacuum; 0 before the first).
async fn estimated_sagas(pool: &PgPool) -> Result<i64, StoreError> {
    sqlx::query_scalar(
        "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = 'sagas'::regclass",
    )
    .fetch_one(pool)
    .await
    .map_err(db)
}

async fn count(pool: &PgPool, state: &Mutex<State>) -> Result<(Counts, DateTime<Utc>), StoreError> {
    let (at, started) = (Utc::now(), Instant::now());
    let counts: Counts = sqlx::query_as(
        "SELECT saga_type, status, count(*) FROM sagas \
         WHERE status NOT IN ('running', 'compensating', 'suspended') \
         GROUP BY saga_type, status",
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    let took = started.elapsed();
    let counted: i64 = counts.iter().map(|(_, _, n)| n).sum();
    let mut state = lock(state);
    // Two counts may overlap (one on a call, one in the background): the
    // one begun last is kept.
    if state.newest.as_ref().is_none_or(|c| c.at <= at) {
        state.newest = Some(Count {
            counts: counts.clone(),
            at,
            kept_until: (counted >= TerminalCounts::WORTH_KEEPING).then(|| {
                Instant::now()
                    + (took * TerminalCounts::KEPT_FOR_TIMES_TAKEN)
                        .min(TerminalCounts::KEPT_AT_MOST)
            }),
        });
    }
    Ok((counts, at))
}

#[cfg(test)]
mod tests {
    use super::super::connect::test_pool;
    use super::*;

    async fn finish(pool: &PgPool, n: i64, status: &str) {
        sqlx::query(
            "INSERT INTO sagas (id, saga_type, business_key, status, version, input, \
                                created_at, updated_at) \
             SELECT gen_random_uuid(), 'order', gen_random_uuid()::text, $2, 3, '{}', now(), now() \
             FROM generate_series(1, $1)",
        )
        .bind(n)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
    }

    /// Makes `sagas` look large to the planner, as `ANALYZE` would after a
    /// million rows.
    async fn seem_large(pool: &PgPool) {
        sqlx::query("UPDATE pg_class SET reltuples = 1000000 WHERE oid = 'sagas'::regclass")
            .execute(pool)
            .await
            .unwrap();
    }

    /// A transaction holding a lock on `sagas` that no count can pass.
    async fn hold_the_table(pool: &PgPool) -> sqlx::Transaction<'static, sqlx::Postgres> {
        let mut holder = pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE sagas IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *holder)
            .await
            .unwrap();
        holder
    }

    /// A call, which must not wait for the whole count.
    async fn read_soon(counts: &TerminalCounts, pool: &PgPool) -> Option<(Counts, DateTime<Utc>)> {
        tokio::time::timeout(Duration::from_secs(2), counts.read(pool))
            .await
            .expect("the call is not held for the count")
            .unwrap()
    }

    /// The counts, sorted (a count comes in no order).
    fn of(read: Option<(Counts, DateTime<Utc>)>) -> Option<Counts> {
        read.map(|(mut counts, _)| {
            counts.sort();
            counts
        })
    }

    fn order(status: &str, n: i64) -> (String, String, i64) {
        ("order".into(), status.into(), n)
    }

    #[tokio::test]
    async fn a_small_store_is_counted_exactly_on_every_call() {
        let pool = test_pool(4).await;
        let counts = TerminalCounts::default();
        finish(&pool, 2, "completed").await;
        finish(&pool, 1, "running").await;
        assert_eq!(
            of(counts.read(&pool).await.unwrap()),
            Some(vec![order("completed", 2)])
        );
        finish(&pool, 1, "compensated").await;
        assert_eq!(
            of(counts.read(&pool).await.unwrap()),
            Some(vec![order("compensated", 1), order("completed", 2)])
        );
    }

    /// A large store (by the planner's estimate, set here as `ANALYZE`
    /// would) whose count cannot finish: a lock on the table holds it.
    #[tokio::test]
    async fn a_call_on_a_large_store_waits_for_its_count_only_a_moment() {
        let pool = test_pool(4).await;
        let counts = TerminalCounts::default();
        finish(&pool, 2, "completed").await;
        let counted_small = counts.read(&pool).await.unwrap().unwrap();
        seem_large(&pool).await;
        finish(&pool, 1, "cancelled").await;

        let holder = hold_the_table(&pool).await;
        assert_eq!(
            read_soon(&counts, &pool).await,
            Some(counted_small.clone()),
            "the newest count there is, with when it was taken"
        );
        // A second call does not start a second count.
        read_soon(&counts, &pool).await;
        let waiting = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while waiting().await == 0 {
            assert!(Instant::now() < deadline, "no count waits for the lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(waiting().await, 1, "one count waits for the lock");
        holder.rollback().await.unwrap();

        // Once the count is made, the calls have it.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = counts.read(&pool).await.unwrap();
            if of(read.clone()) == Some(vec![order("cancelled", 1), order("completed", 2)]) {
                assert!(read.unwrap().1 > counted_small.1);
                break;
            }
            assert!(Instant::now() < deadline, "never counted: {read:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn the_first_call_on_a_large_store_may_have_no_count_yet() {
        let pool = test_pool(4).await;
        let counts = TerminalCounts::default();
        finish(&pool, 1, "completed").await;
        seem_large(&pool).await;
        let holder = hold_the_table(&pool).await;
        assert_eq!(read_soon(&counts, &pool).await, None);
        holder.rollback().await.unwrap();
    }
}
