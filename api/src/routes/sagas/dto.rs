//! How a saga, its history and its state are shown, and how a saga is named
//! in a path and an `ETag`.

use actix_web::http::header;
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::{CommandRecord, EventRecord, InboxRecord, SagaRecord};
use sagaplane_orchestrator::Snapshot;
use sagaplane_sagas::{SagaId, Status, WaitingOn};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::{no_saga, ApiError};

/// A saga as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaDto {
    id: Uuid,
    saga_type: String,
    business_key: String,
    /// `running`, `compensating`, `completed`, `compensated`, `suspended` or `cancelled`.
    status: String,
    /// The step in hand (one of them when a parallel group has several: an
    /// undo first, then one waiting for an operator); absent once terminal.
    current_step: Option<String>,
    /// The current step's attempt, from 1.
    attempt: Option<i32>,
    /// The current step's attempt budget.
    max_attempts: Option<i32>,
    /// The participant service that must answer the current step.
    participant: Option<String>,
    /// When the current attempt of the current step began.
    step_since: Option<DateTime<Utc>>,
    /// Bumped by every event; also the `ETag`, for `If-Match` on actions.
    version: i64,
    #[schema(value_type = Object)]
    input: Value,
    last_error: Option<String>,
    /// When the saga's next timer (reply deadline or retry) fires.
    next_wake_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The W3C trace id of the saga itself (from its start request); every
    /// command it sends carries it.
    trace_id: Option<String>,
    /// What the saga waits for (single-saga reads only; absent once terminal).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) waiting_for: Option<WaitingDto>,
    /// The operator actions allowed now (single-saga reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) allowed_actions: Option<Vec<String>>,
    /// Saga-specific progress: steps done, compensations left … (single-saga reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub(crate) progress: Option<Value>,
}

/// What a saga waits for: the answer to "why is it stuck".
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WaitingDto {
    pub(crate) step: String,
    /// The participant service that must answer.
    participant: String,
    pub(crate) attempt: u32,
    /// The step's attempt budget.
    max_attempts: u32,
    /// When this attempt began.
    since: DateTime<Utc>,
    /// `reply`: the command is out; `retry`: the next attempt is scheduled;
    /// `operator`: out of budget, only an intervention moves it.
    waiting_on: String,
    /// When the reply deadline passes or the retry is sent; none when waiting on an operator.
    fires_at: Option<DateTime<Utc>>,
    /// The outbox id of this attempt's command, and when it was recorded as sent.
    pub(crate) command_id: Option<Uuid>,
    pub(crate) command_sent_at: Option<DateTime<Utc>>,
}

impl SagaDto {
    pub(crate) fn from_record(r: SagaRecord) -> Self {
        Self {
            id: r.id.as_uuid(),
            saga_type: r.saga_type,
            business_key: r.business_key,
            status: r.status,
            current_step: r.current_step,
            attempt: r.attempt,
            max_attempts: r.max_attempts,
            participant: r.participant,
            step_since: r.step_since,
            version: r.version,
            input: r.input,
            last_error: r.last_error,
            next_wake_at: r.wake_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            trace_id: r.traceparent.as_deref().and_then(trace_id),
            waiting_for: None,
            allowed_actions: None,
            progress: None,
        }
    }

    pub(crate) fn saga_id(&self) -> SagaId {
        SagaId::from_uuid(self.id)
    }

    /// An unfinished saga with a step in hand but no participant: its row
    /// was written before the read model kept who must answer and the
    /// budget, and gets them only at the saga's next step.
    pub(crate) fn lacks_waiting(&self) -> bool {
        self.current_step.is_some()
            && self.participant.is_none()
            && Status::parse(&self.status).is_some_and(|s| !s.is_terminal())
    }

    /// Fills in who must answer and the budget from the saga's fold, where
    /// its row lacks them.
    pub(crate) fn complete_from(&mut self, s: &Snapshot) {
        if let Some(w) = &s.explanation.waiting {
            self.participant
                .get_or_insert_with(|| w.participant.clone());
            self.max_attempts.get_or_insert(w.max_attempts as i32);
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct EventDto {
    seq: i64,
    #[serde(rename = "type")]
    event_type: String,
    recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    data: Value,
    /// The saga's state right after this event (with `with_state=true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<StateDto>,
    /// With `with_messages=true`, on the last event of each step: the
    /// commands that step sent (committed with it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) commands: Option<Vec<SentCommandDto>>,
    /// With `with_messages=true`, on the first event of a step a reply
    /// caused: that reply, as the inbox recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) caused_by: Option<ReplyDto>,
}

/// A command a saga sent, and what became of it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct SentCommandDto {
    /// The command's id (its CloudEvent `id`).
    message_id: Uuid,
    step: String,
    attempt: u32,
    /// The service it went to.
    participant: String,
    command_type: String,
    /// The transport that carries it: `in-process`, `eventbridge`, `servicebus` or `eventgrid`.
    transport: String,
    /// When the step that decided it committed.
    created_at: DateTime<Utc>,
    /// When it was known taken by its transport: for a command published
    /// right after its step, the step's time, once its relay's watermark
    /// (written every 50 ms) has passed it; for one retried, when that
    /// succeeded. Absent until then.
    sent_at: Option<DateTime<Utc>>,
    /// Failed attempts to hand it to its transport.
    publish_attempts: u32,
    /// The transport's last error.
    last_error: Option<String>,
    /// Its publish budget ran out: it is kept as a dead letter.
    dead_lettered: bool,
    /// The W3C trace id it carries.
    trace_id: Option<String>,
}

/// A reply (or other inbound message) as the saga's inbox recorded it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ReplyDto {
    /// The message's id (a reply CloudEvent's `id`).
    message_id: String,
    /// `applied`, or `ignored` (late or stale: recorded, not applied).
    outcome: String,
    /// Why it was ignored.
    detail: Option<String>,
    pub(crate) received_at: DateTime<Utc>,
}

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> Option<String> {
    traceparent.split('-').nth(1).map(str::to_owned)
}

impl SentCommandDto {
    pub(crate) fn new(c: CommandRecord, transport: &str) -> Self {
        Self {
            trace_id: c.traceparent.as_deref().and_then(trace_id),
            message_id: c.message_id,
            step: c.step,
            attempt: c.attempt,
            participant: c.participant,
            command_type: c.command_type,
            transport: transport.to_owned(),
            created_at: c.created_at,
            sent_at: c.sent_at,
            publish_attempts: c.publish_attempts,
            last_error: c.last_error,
            dead_lettered: c.dead_lettered,
        }
    }

    pub(crate) fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
}

impl From<InboxRecord> for ReplyDto {
    fn from(r: InboxRecord) -> Self {
        Self {
            message_id: r.message_id,
            outcome: r.outcome,
            detail: r.detail,
            received_at: r.received_at,
        }
    }
}

/// A saga's state at one point of its history.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct StateDto {
    status: String,
    current_step: Option<String>,
    attempt: Option<u32>,
    next_wake_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    allowed_actions: Vec<String>,
    waiting_for: Option<WaitingDto>,
    #[schema(value_type = Object)]
    progress: Value,
}

impl EventDto {
    pub(crate) fn new(e: EventRecord, state: Option<StateDto>) -> Self {
        Self {
            seq: e.seq,
            event_type: e.event_type,
            recorded_at: e.recorded_at,
            data: e.data,
            state,
            commands: None,
            caused_by: None,
        }
    }

    pub(crate) fn recorded_at(&self) -> DateTime<Utc> {
        self.recorded_at
    }
}

pub(crate) fn waiting_dto(s: &Snapshot) -> Option<WaitingDto> {
    let w = s.explanation.waiting.as_ref()?;
    let (waiting_on, fires_at) = match w.on {
        WaitingOn::Reply { deadline } => ("reply", Some(deadline)),
        WaitingOn::Retry { at } => ("retry", Some(at)),
        WaitingOn::Operator => ("operator", None),
    };
    Some(WaitingDto {
        step: w.step.clone(),
        participant: w.participant.clone(),
        attempt: w.attempt,
        max_attempts: w.max_attempts,
        since: w.since,
        waiting_on: waiting_on.into(),
        fires_at,
        command_id: None,
        command_sent_at: None,
    })
}

pub(crate) fn state_dto(s: &Snapshot) -> StateDto {
    StateDto {
        status: s.view.status.as_str().into(),
        current_step: s.view.step.clone(),
        attempt: s.view.attempt,
        next_wake_at: s.view.wake_at,
        last_error: s.view.last_error.clone(),
        allowed_actions: s.allowed_actions.iter().map(|a| a.to_string()).collect(),
        waiting_for: waiting_dto(s),
        progress: s.explanation.progress.clone(),
    }
}

pub(crate) fn etag(version: i64) -> (header::HeaderName, String) {
    (header::ETAG, format!("\"{version}\""))
}

pub(crate) fn parse_id(raw: &str) -> Result<SagaId, ApiError> {
    raw.parse().map_err(|_| no_saga(raw))
}
