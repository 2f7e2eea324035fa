//! A defined saga's state and how each event changes it.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Duration, Utc};
use serde_json::Value;

use super::events::{DefinitionRef, Event, EventKind, FailureCause, Then};
use super::text::{JsonText, Results};
use crate::definition::{Action, Definition, Role, TypeVersions};
use crate::{Policy, SagaId, Status};

/// The state of one saga of a defined type, rebuilt by folding its events.
#[derive(Debug, Clone, PartialEq)]
pub struct DefinedSaga {
    pub(super) id: SagaId,
    pub(super) kind: Arc<TypeVersions>,
    pub(super) started: Option<Started>,
    /// Set when the history names a definition this process has not loaded.
    pub(super) missing: Option<Box<DefinitionRef>>,
    pub(super) status: Status,
    /// Forward steps that succeeded (their indexes), in order.
    pub(super) done: Vec<usize>,
    /// Forward steps skipped because their `when` did not hold.
    pub(super) skipped: Vec<usize>,
    /// One past the last forward step ever sent: the ones before it were
    /// sent, unless skipped.
    pub(super) reached: usize,
    /// What the forward steps' replies returned, by step name.
    pub(super) results: Results,
    /// Compensation steps that succeeded, in order.
    pub(super) undone: Vec<String>,
    /// Compensation steps still to run, in order; the first is in hand once
    /// no member of a failed group is awaited any more.
    pub(super) plan: Vec<String>,
    /// The steps in hand: one, or the members of a parallel group (while
    /// compensating, group members still in flight are awaited first).
    pub(super) pending: Vec<Pending>,
    pub(super) last_error: Option<String>,
}

/// What a saga started with.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    pub definition: Arc<Definition>,
    pub input: JsonText,
    pub policy: Policy,
    /// Its overall deadline counts from here.
    pub at: DateTime<Utc>,
}

/// A step the saga is in the middle of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub step: String,
    pub role: Role,
    pub attempt: u32,
    /// When this attempt began.
    pub since: DateTime<Utc>,
    pub wait: Wait,
    /// An attempt of this step timed out, so it may have been applied.
    pub uncertain: bool,
    /// The last event began this attempt: its command goes out.
    pub(super) began: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The command is out; without a reply by `deadline` the attempt times out.
    Reply { deadline: DateTime<Utc> },
    /// The last attempt failed; the next is sent at `at`.
    Retry { at: DateTime<Utc> },
    /// Out of budget: only an operator moves the saga on.
    Operator,
}

impl DefinedSaga {
    pub(super) fn empty(kind: Arc<TypeVersions>, id: SagaId) -> Self {
        Self {
            id,
            kind,
            started: None,
            missing: None,
            status: Status::Running,
            done: Vec::new(),
            skipped: Vec::new(),
            reached: 0,
            results: Results::default(),
            undone: Vec::new(),
            plan: Vec::new(),
            pending: Vec::new(),
            last_error: None,
        }
    }

    pub fn id(&self) -> SagaId {
        self.id
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// The definition the saga runs under, once started.
    pub fn definition(&self) -> Option<&Arc<Definition>> {
        self.started.as_ref().map(|s| &s.definition)
    }

    /// The start input, parsed again from its text.
    pub fn input(&self) -> Option<Value> {
        self.started.as_ref().map(|s| s.input.value())
    }

    /// The step in hand that operators see and act on: a compensation step
    /// first, then one waiting for an operator, then the first in flight.
    pub fn pending(&self) -> Option<&Pending> {
        let forward = |p: &&Pending| matches!(p.role, Role::Forward(_));
        self.pending
            .iter()
            .find(|p| !forward(p))
            .or_else(|| self.pending.iter().find(|p| p.wait == Wait::Operator))
            .or_else(|| self.pending.first())
    }

    /// Every step in hand (more than one in a parallel group).
    pub fn in_hand(&self) -> &[Pending] {
        &self.pending
    }

    pub(super) fn pending_of(&self, step: &str) -> Option<&Pending> {
        self.pending.iter().find(|p| p.step == step)
    }

    /// Forward steps still in hand while compensating: a failed group's
    /// members, awaited before the compensation begins.
    pub(super) fn draining(&self, p: &Pending) -> bool {
        self.status == Status::Compensating && matches!(p.role, Role::Forward(_))
    }

    /// Names of the forward steps that succeeded, in order.
    pub fn done(&self) -> Vec<&str> {
        let Some(def) = self.definition() else {
            return Vec::new();
        };
        self.done
            .iter()
            .map(|i| def.steps[*i].action.name.as_str())
            .collect()
    }

    /// Compensation steps that succeeded, in order.
    pub fn undone(&self) -> &[String] {
        &self.undone
    }

    /// What a forward step's reply returned, parsed again from its text.
    pub fn result(&self, step: &str) -> Option<Value> {
        self.results.get(step).map(JsonText::value)
    }

    /// The start input and the results, parsed, for a template or a
    /// condition to read.
    pub(super) fn scope(&self) -> (Value, BTreeMap<String, Value>) {
        let input = self
            .started
            .as_ref()
            .map_or(Value::Null, |s| s.input.value());
        (input, self.results.parsed())
    }

    /// A pivot step succeeded: there is no going back any more.
    pub fn past_pivot(&self) -> bool {
        self.definition()
            .is_some_and(|d| self.done.iter().any(|i| d.steps[*i].pivot))
    }

    /// The step definition of `name` in the saga's definition.
    pub(super) fn action(&self, name: &str) -> Option<(&Action, Role)> {
        self.definition()?.find(name)
    }

    /// When the saga must have gone forward to its end, while it still goes
    /// forward; `None` without a deadline, once compensating or past the pivot.
    pub(super) fn saga_deadline(&self) -> Option<DateTime<Utc>> {
        let started = self.started.as_ref()?;
        let ms = started.policy.saga_deadline_ms;
        let running = self.status == Status::Running && !self.past_pivot();
        (ms > 0 && running).then(|| started.at + Duration::milliseconds(ms as i64))
    }

    pub(super) fn policy(&self) -> &Policy {
        static DEFAULT: LazyLock<Policy> = LazyLock::new(Policy::default);
        self.started.as_ref().map_or(&DEFAULT, |s| &s.policy)
    }

    /// The timeout of one attempt of `step`: the settings' own entry for the
    /// step, else the definition's, else the settings' default.
    pub(super) fn timeout_ms(&self, step: &str) -> u64 {
        let policy = self.policy();
        if let Some(ms) = policy.step_timeouts_ms.get(step) {
            return *ms;
        }
        self.action(step)
            .and_then(|(a, _)| a.timeout_ms)
            .unwrap_or(policy.step_timeout_ms)
    }

    pub(super) fn apply(self, event: &Event) -> Self {
        let mut state = self.change(event);
        state.shrink();
        state
    }

    /// Gives back what the lists grew by beyond their length: a live saga's
    /// state is kept for as long as its actor lives.
    fn shrink(&mut self) {
        self.done.shrink_to_fit();
        self.skipped.shrink_to_fit();
        self.undone.shrink_to_fit();
        self.plan.shrink_to_fit();
        self.pending.shrink_to_fit();
        if let Some(e) = &mut self.last_error {
            e.shrink_to_fit();
        }
    }

    fn change(mut self, event: &Event) -> Self {
        let at = event.at;
        for p in &mut self.pending {
            p.began = false;
        }
        match &event.kind {
            EventKind::SagaStarted {
                input,
                definition,
                policy,
            } => {
                let Some(def) = self.resolve(definition) else {
                    self.missing = Some(Box::new(definition.clone()));
                    return self;
                };
                self.started = Some(Started {
                    definition: def,
                    input: JsonText::new(input),
                    policy: policy.clone(),
                    at,
                });
                self.status = Status::Running;
                self.go_forward(0, at);
            }
            EventKind::StepFailed {
                step,
                cause,
                reason,
                then,
                ..
            } => {
                self.last_error = Some(format!("{step}: {reason}"));
                match then {
                    Then::Retry { at: retry_at } => {
                        if let Some(p) = self.pending.iter_mut().find(|p| p.step == *step) {
                            p.wait = Wait::Retry { at: *retry_at };
                            p.uncertain |= *cause == FailureCause::TimedOut;
                        }
                    }
                    Then::Compensate { plan } => {
                        self.status = Status::Compensating;
                        self.plan = plan.clone();
                        // Group members whose command is out are awaited (their
                        // undo, planned, must not overtake them); the others
                        // are dropped (their undo is planned if in doubt).
                        self.pending.retain(|p| {
                            p.step != *step
                                && matches!(p.role, Role::Forward(_))
                                && matches!(p.wait, Wait::Reply { .. })
                        });
                        if self.pending.is_empty() {
                            self.begin_next_compensation(at);
                        }
                    }
                    Then::Suspend => {
                        self.status = Status::Suspended;
                        if let Some(p) = self.pending.iter_mut().find(|p| p.step == *step) {
                            p.wait = Wait::Operator;
                            p.uncertain |= *cause == FailureCause::TimedOut;
                        }
                    }
                }
            }
            EventKind::StepRetried { step, attempt } => {
                let uncertain = self.pending_of(step).is_some_and(|p| p.uncertain);
                self.begin(step, *attempt, at, uncertain);
                self.settle();
            }
            EventKind::StepSucceeded { step, result, .. } => self.succeed(step, result, at),
            // The audit record; its effect is the event that follows it.
            EventKind::OperatorIntervened { .. } => {}
            EventKind::SagaCancelled => self.finish(Status::Cancelled),
            EventKind::SagaMigrated { to, .. } => self.migrate(to),
            EventKind::LateSuccess {
                step, result, undo, ..
            } => {
                if let Some(r) = result {
                    self.results.insert(step, r);
                }
                // After the compensation step in hand, if there is one.
                let busy = self
                    .pending
                    .iter()
                    .any(|p| !matches!(p.role, Role::Forward(_)));
                let at_index = usize::from(busy).min(self.plan.len());
                self.plan.insert(at_index, undo.clone());
                if self.status.is_terminal() {
                    self.status = Status::Compensating;
                    self.begin_next_compensation(at);
                }
            }
        }
        self
    }

    /// Runs on under `to`: the steps done, skipped and in hand keep their
    /// names and take their places in the new definition.
    fn migrate(&mut self, to: &DefinitionRef) {
        let Some(target) = self.resolve(to) else {
            self.missing = Some(Box::new(to.clone()));
            return;
        };
        let Some(started) = &mut self.started else {
            return;
        };
        let old = std::mem::replace(&mut started.definition, target.clone());
        let place = |i: &usize| match target.find(&old.steps[*i].action.name) {
            Some((_, Role::Forward(j))) => Some(j),
            _ => None,
        };
        self.done = self.done.iter().filter_map(place).collect();
        self.skipped = self.skipped.iter().filter_map(place).collect();
        for p in &mut self.pending {
            if let Some((_, role)) = target.find(&p.step) {
                p.role = role;
            }
        }
    }

    /// The loaded definition a history names, if this process has it.
    fn resolve(&self, wanted: &DefinitionRef) -> Option<Arc<Definition>> {
        self.kind
            .get(wanted.version)
            .filter(|d| d.saga_type == wanted.saga_type)
            .filter(|d| wanted.hash.as_ref().is_none_or(|h| *h == d.hash))
            .cloned()
    }

    fn succeed(&mut self, step: &str, result: &Option<Value>, at: DateTime<Utc>) {
        let Some(def) = self.definition().cloned() else {
            return;
        };
        match def.find(step).map(|(_, role)| role) {
            Some(Role::Forward(i)) => {
                if let Some(r) = result {
                    self.results.insert(step, r);
                }
                self.pending.retain(|p| p.step != step);
                if self.status == Status::Compensating {
                    // A failed group's member that was awaited: its undo is
                    // planned; the compensation begins once none is left.
                    if self.pending.is_empty() {
                        self.begin_next_compensation(at);
                    }
                    return;
                }
                self.done.push(i);
                // A late success (or a skip) of a suspended step moves the saga on.
                self.settle();
                // The rest of its parallel group is awaited first.
                if self.pending.is_empty() {
                    self.go_forward(def.group_of(i).end, at);
                }
            }
            Some(Role::Undo(_) | Role::Final) => {
                self.pending.retain(|p| p.step != step);
                self.undone.push(step.to_owned());
                if let Some(i) = self.plan.iter().position(|s| s == step) {
                    self.plan.remove(i);
                }
                // A late success of a suspended compensation moves the saga on.
                self.status = Status::Compensating;
                self.begin_next_compensation(at);
            }
            None => {}
        }
    }

    /// A saga that is not finished is suspended while a step in hand waits
    /// for an operator; once none does, it runs on — compensating when a
    /// compensation step is in hand or planned.
    fn settle(&mut self) {
        if self.status.is_terminal() {
            return;
        }
        if self.pending.iter().any(|p| p.wait == Wait::Operator) {
            self.status = Status::Suspended;
        } else if self.status == Status::Suspended {
            let compensating = !self.plan.is_empty()
                || self
                    .pending
                    .iter()
                    .any(|p| !matches!(p.role, Role::Forward(_)));
            self.status = if compensating {
                Status::Compensating
            } else {
                Status::Running
            };
        }
    }

    /// Begins the forward steps from index `from` on: the next one whose
    /// `when` holds — or every such member of its parallel group — skipping
    /// the others; completes when none is left.
    fn go_forward(&mut self, from: usize, at: DateTime<Utc>) {
        let Some(started) = &self.started else {
            return;
        };
        let def = started.definition.clone();
        // Parsed only if a step's `when` reads it.
        let mut scope = None;
        let mut next = from;
        while next < def.steps.len() {
            let group = def.group_of(next);
            for i in group.clone() {
                let step = &def.steps[i];
                let runs = step.when.as_ref().is_none_or(|c| {
                    let (input, results) = scope.get_or_insert_with(|| self.scope());
                    c.holds(input, results)
                });
                if runs {
                    self.begin(&step.action.name, 1, at, false);
                } else {
                    self.skipped.push(i);
                }
            }
            if !self.pending.is_empty() {
                return;
            }
            next = group.end;
        }
        self.finish(Status::Completed);
    }

    /// Names of the forward steps skipped because their `when` did not hold.
    pub fn skipped(&self) -> Vec<&str> {
        let Some(def) = self.definition() else {
            return Vec::new();
        };
        self.skipped
            .iter()
            .map(|i| def.steps[*i].action.name.as_str())
            .collect()
    }

    fn begin_next_compensation(&mut self, at: DateTime<Utc>) {
        match self.plan.first().cloned() {
            Some(next) => self.begin(&next, 1, at, false),
            None => self.finish(Status::Compensated),
        }
    }

    fn begin(&mut self, step: &str, attempt: u32, at: DateTime<Utc>, uncertain: bool) {
        let Some((_, role)) = self.action(step) else {
            return;
        };
        let timeout = Duration::milliseconds(self.timeout_ms(step) as i64);
        if let Role::Forward(i) = role {
            self.reached = self.reached.max(i + 1);
        }
        self.pending.retain(|p| p.step != step);
        self.pending.push(Pending {
            step: step.to_owned(),
            role,
            attempt,
            since: at,
            wait: Wait::Reply {
                deadline: at + timeout,
            },
            uncertain,
            began: true,
        });
        // In definition order, so "the step in hand" operators see and act on
        // does not depend on which member was sent again last.
        self.pending.sort_by_key(|p| match p.role {
            Role::Forward(i) => (0, i),
            Role::Undo(i) => (1, i),
            Role::Final => (2, 0),
        });
    }

    fn finish(&mut self, status: Status) {
        self.status = status;
        self.pending.clear();
    }
}
