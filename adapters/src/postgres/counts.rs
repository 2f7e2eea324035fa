//! The finished sagas, counted by type and status for `GET /v1/stats`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::StoreError;
use sqlx::PgPool;

use super::rows::db;

type Counts = Vec<(String, String, i64)>;

/// Terminal sagas by type and status. Counting them reads every one, and
/// they only grow in number (until retention removes them), so a count is
/// kept for a hundred times as long as it took (a minute at most), and counted again in the
/// background meanwhile answering with the one kept. A count of fewer than
/// 100,000 sagas is not kept: a smaller store is counted on every call,
/// exactly. (How long a count took depends on the machine's load, so it does
/// not do as the rule: a loaded machine kept an empty store's count while
/// its first sagas finished.)
#[derive(Default)]
pub(crate) struct TerminalCounts(Arc<Mutex<Option<Kept>>>);

struct Kept {
    counts: Counts,
    at: DateTime<Utc>,
    fresh_until: Instant,
    recounting: bool,
}

impl TerminalCounts {
    const KEPT_FOR_TIMES_TAKEN: u32 = 100;
    const WORTH_KEEPING: i64 = 100_000;
    /// A count that was slow for another reason (a lock, a cold cache) is
    /// not kept for hours.
    const KEPT_AT_MOST: Duration = Duration::from_secs(60);

    pub(crate) async fn read(&self, pool: &PgPool) -> Result<(Counts, DateTime<Utc>), StoreError> {
        let kept = {
            let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match guard.as_mut() {
                None => None,
                Some(k) => {
                    let stale = Instant::now() >= k.fresh_until;
                    let recount = stale && !k.recounting;
                    k.recounting |= recount;
                    Some((k.counts.clone(), k.at, recount))
                }
            }
        };
        match kept {
            None => Self::count(pool, &self.0).await,
            Some((counts, at, recount)) => {
                if recount {
                    let (pool, kept) = (pool.clone(), self.0.clone());
                    tokio::spawn(async move {
                        if let Err(e) = Self::count(&pool, &kept).await {
                            tracing::warn!(error = %e, "counting the terminal sagas failed");
                            if let Some(k) = kept.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                            {
                                k.recounting = false;
                            }
                        }
                    });
                }
                Ok((counts, at))
            }
        }
    }

    async fn count(
        pool: &PgPool,
        kept: &Mutex<Option<Kept>>,
    ) -> Result<(Counts, DateTime<Utc>), StoreError> {
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
        *kept.lock().unwrap_or_else(|e| e.into_inner()) =
            (counted >= Self::WORTH_KEEPING).then(|| Kept {
                counts: counts.clone(),
                at,
                fresh_until: Instant::now()
                    + (took * Self::KEPT_FOR_TIMES_TAKEN).min(Self::KEPT_AT_MOST),
                recounting: false,
            });
        Ok((counts, at))
    }
}
