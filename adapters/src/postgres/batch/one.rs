//! A batch of one step in a single statement: one round trip instead of a
//! transaction's six, which is what a step costs when it is written alone
//! (light load). Data-modifying CTEs that all hang on the saga row's insert or
//! update, so the step is still all or nothing.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{CommitOutcome, OutboxMessage, StepCommit, StoreError};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryAs;
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres};

use super::statements::commands_json;
use crate::postgres::rows::{db, StepOutcome};

/// The relay's row, locked until the step commits when the step has a relay
/// position (`$18`): its takeover (which deletes the row) waits for the step,
/// and a step after the takeover finds no row and writes nothing.
const RELAY: &str = "relay AS MATERIALIZED (
            SELECT epoch FROM relays WHERE epoch = $18::bigint >> 40 FOR KEY SHARE
        )";

/// Whether the step may be written: it has no relay position, or its relay's row.
const RELAY_HELD: &str = "($18::bigint IS NULL OR EXISTS (SELECT 1 FROM relay))";

/// Events, appended only when `$step` (the saga row's CTE) wrote a row;
/// `message` is what the first event's `message_id` is. The first event keeps
/// the step's commands and relay position (`$17`, `$18`) when it has them;
/// otherwise, `with_outbox`, the commands (`$19`) become outbox rows. Returns
/// whether the step was written, and whether its relay (if it has one) was
/// still there.
///
/// A step without outbox rows (the usual one) gets a statement without the
/// outbox's insert: even inserting nothing, that part opens and locks the
/// table and its three indexes at every execution (BENCHMARKS.md).
fn append(message: &str, with_outbox: bool) -> String {
    let outbox = if with_outbox { OUTBOX } else { "" };
    format!(
        "
ev AS (
    INSERT INTO saga_events (saga_id, seq, event_type, data, recorded_at, message_id,
                             commands, relay_pos)
    SELECT step.id, x.q, x.ty, x.d, x.t, CASE WHEN x.q = $13[1] THEN {message} END,
           CASE WHEN x.q = $13[1] THEN $17::jsonb END,
           CASE WHEN x.q = $13[1] THEN $18::bigint END
    FROM step, UNNEST($13::bigint[], $14::text[], $15::jsonb[], $16::timestamptz[]) AS x(q, ty, d, t)
)\
{outbox}
SELECT (SELECT count(*) FROM step), {RELAY_HELD}"
    )
}

/// The outbox rows of a step whose commands are not kept on its event.
const OUTBOX: &str = ",
ob AS (
    INSERT INTO outbox (message_id, saga_id, saga_type, step, attempt, participant,
                        command_type, idempotency_key, data, created_at, traceparent)
    SELECT c.message_id, c.saga_id, c.saga_type, c.step, c.attempt, c.participant,
           c.command_type, c.idempotency_key, c.data, c.created_at, c.traceparent
    FROM step, jsonb_populate_recordset(NULL::outbox, $19::jsonb) AS c
)";

/// A step's statements without outbox rows (`[0]`) and with (`[1]`).
type Pair = LazyLock<[String; 2]>;

// $12 is the message the step consumed, kept on its first event. Only the
// inbox (the replies a saga ignored) is read for it: a message applied before
// is on an event, whose unique index fails the statement (`MESSAGE_INDEX`),
// and reading `saga_events` as well cost every reply's step another index.
static UPDATE: Pair = LazyLock::new(|| {
    [false, true].map(|with_outbox| {
        format!(
            "WITH {RELAY},
        step AS (
            UPDATE sagas SET status = $4, current_step = $5, attempt = $6, version = $7,
                   last_error = $8, wake_at = $9, updated_at = $10, step_since = $11,
                   participant = $20, max_attempts = $21
            WHERE id = $1 AND saga_type = $2 AND version = $3
              AND ($12::text IS NULL
                   OR NOT EXISTS (SELECT 1 FROM inbox WHERE message_id = $12))
              AND {RELAY_HELD}
            RETURNING id
        ),
        {}",
            append("$12::text", with_outbox)
        )
    })
});

// $3 is the business key, $12 the input and $20 the saga's trace context.
static INSERT: Pair = LazyLock::new(|| {
    [false, true].map(|with_outbox| {
        format!(
            "WITH {RELAY},
        step AS (
            INSERT INTO sagas (id, saga_type, business_key, status, current_step, attempt,
                               version, last_error, wake_at, created_at, updated_at, input,
                               step_since, traceparent, participant, max_attempts)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $12, $11, $20, $21, $22
            WHERE {RELAY_HELD}
            ON CONFLICT (saga_type, business_key) DO NOTHING
            RETURNING id
        ),
        {}",
            append("NULL", with_outbox)
        )
    })
});

/// The unique index that keeps a message from being applied twice.
const MESSAGE_INDEX: &str = "saga_events_message";

/// Writes one step, with the outcome and rows it would have in a batch of its
/// own, except that a step creating its saga has its `inbox` ignored: such a
/// step is a start, which consumes no message.
pub(in crate::postgres) async fn commit_one(
    conn: &mut PgConnection,
    step: &StepCommit,
) -> StepOutcome {
    let with_outbox = usize::from(to_outbox(step).is_some());
    let query = match &step.new_saga {
        Some(new) => sqlx::query_as(INSERT[with_outbox].as_str())
            .bind(step.saga_id.as_uuid())
            .bind(&step.saga_type)
            .bind(&new.business_key),
        None => sqlx::query_as(UPDATE[with_outbox].as_str())
            .bind(step.saga_id.as_uuid())
            .bind(&step.saga_type)
            .bind(step.expected_version as i64),
    };
    let query = bind_rest(query, step);
    let query = match &step.new_saga {
        Some(new) => query.bind(new.traceparent.as_deref()),
        None => query,
    };
    // Last, after the trace context of a new saga: who must answer, and the budget.
    let query = query
        .bind(step.view.participant.as_deref())
        .bind(step.view.max_attempts.map(|a| a as i32));
    let (written, relay_held): (i64, bool) = match query.fetch_one(&mut *conn).await {
        Ok(row) => row,
        // Applied before, here or by another node.
        Err(sqlx::Error::Database(e)) if e.constraint() == Some(MESSAGE_INDEX) => {
            return Ok(CommitOutcome::DuplicateInbox)
        }
        Err(e) => return Err(db(e)),
    };
    if written == 1 {
        return Ok(CommitOutcome::Committed);
    }
    if !relay_held {
        return Err(StoreError::RelayGone);
    }
    if step.new_saga.is_some() {
        return Ok(CommitOutcome::BusinessKeyTaken);
    }
    // Not written: the message was handled before, or the saga moved on.
    let seen = match step.inbox.as_deref() {
        Some(id) => sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM received_messages WHERE message_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await
        .map_err(db)?,
        None => false,
    };
    if seen {
        Ok(CommitOutcome::DuplicateInbox)
    } else {
        Err(StoreError::Conflict)
    }
}

/// The statement of one step, returning whether it was written and whether
/// its relay was held.
type Written<'q> = QueryAs<'q, Postgres, (i64, bool), PgArguments>;

/// Binds `$4` to `$19`: the read model, the inbox id (or the input), the
/// events and the commands.
fn bind_rest<'q>(query: Written<'q>, step: &'q StepCommit) -> Written<'q> {
    let view = &step.view;
    let version = step.version() as i64;
    let query = query
        .bind(view.status.as_str())
        .bind(view.step.as_deref())
        .bind(view.attempt.map(|a| a as i32))
        .bind(version)
        .bind(view.last_error.as_deref())
        .bind(view.wake_at)
        .bind(step.at)
        .bind(view.step_since);
    let query = match &step.new_saga {
        Some(new) => query.bind(&new.input),
        None => query.bind(step.inbox.as_deref()),
    };
    let seqs: Vec<i64> = (1..=step.events.len() as i64)
        .map(|n| step.expected_version as i64 + n)
        .collect();
    let types: Vec<&str> = step.events.iter().map(|e| e.event_type.as_str()).collect();
    let data: Vec<&serde_json::Value> = step.events.iter().map(|e| &e.data).collect();
    let times: Vec<DateTime<Utc>> = step.events.iter().map(|e| e.at).collect();
    let logged = step.kept_on_event();
    query
        .bind(seqs)
        .bind(types)
        .bind(data)
        .bind(times)
        .bind(logged.map(|_| commands_json(step)))
        .bind(logged.map(|pos| pos as i64))
        .bind(to_outbox(step))
}

/// The step's commands as outbox rows, if it has commands not kept on its event.
fn to_outbox(step: &StepCommit) -> Option<Json<&[OutboxMessage]>> {
    (step.kept_on_event().is_none() && !step.outbox.is_empty()).then_some(Json(&step.outbox[..]))
}
