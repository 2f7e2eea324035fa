//! Turns a document into a [`Definition`], or lists every problem in it.

use std::collections::HashMap;

use serde_json::Value;

use super::condition::Condition;
use super::document::{ActionDocument, Document, LateReply, RetryDocument};
use super::model::{Action, Definition, Problem, Step, DEFAULT_EVENT, RESERVED_EVENTS};
use super::schema::Schema;
use super::template::{expressions, Source};

const MAX_NAME_LEN: usize = 100;
/// Longer timeouts and back-offs are mistakes (and would overflow a date).
const MAX_DURATION_MS: u64 = 365 * 24 * 3600 * 1000;

pub(super) fn check(document: Document) -> Result<Definition, Vec<Problem>> {
    let mut c = Checker::default();
    c.storable(
        "",
        &serde_json::to_value(&document).expect("a document serialises"),
    );
    c.name("saga_type", &document.saga_type);
    if document.version == 0 {
        c.problem("version", "must be 1 or more");
    }
    if document.steps.is_empty() {
        c.problem(
            "steps",
            "the saga has no steps: give at least one [[steps]]",
        );
    }
    let business_key = document.business_key.as_ref().map(|key| {
        let path: Vec<String> = key.split('.').map(str::to_owned).collect();
        if path.iter().any(|s| s.trim().is_empty()) {
            c.problem(
                "business_key",
                "must be a dot path into the input such as `return_id`",
            );
        }
        path
    });
    let input_schema = document
        .input_schema
        .clone()
        .and_then(|s| c.schema("input_schema", s));
    let forward: Vec<&str> = document.steps.iter().map(|s| s.name.as_str()).collect();
    // Where each step's parallel group starts: a step reads only the results
    // of the steps before its group.
    let group_start: Vec<usize> = (0..document.steps.len())
        .map(|i| {
            let group = &document.steps[i].group;
            (0..=i)
                .rev()
                .take_while(|j| group.is_some() && document.steps[*j].group == *group)
                .last()
                .unwrap_or(i)
        })
        .collect();
    c.groups(&document);
    let mut steps = Vec::with_capacity(document.steps.len());
    for (i, s) in document.steps.iter().enumerate() {
        let at = format!("steps[{i}]");
        let action = c.action(
            &at,
            &ActionDocument {
                name: s.name.clone(),
                participant: Some(s.participant.clone()),
                command: s.command.clone(),
                event: s.event.clone(),
                data: s.data.clone(),
                timeout_ms: s.timeout_ms,
                max_attempts: None,
            },
            None,
            // A forward step reads the results of the steps before it (before
            // its group: the group's steps are sent together).
            (&forward[..group_start[i]], &forward[group_start[i]..]),
        );
        c.retry(&format!("{at}.retry"), s.retry.unwrap_or_default());
        let result_schema = s
            .result_schema
            .clone()
            .and_then(|r| c.schema(&format!("{at}.result_schema"), r));
        let undo = s.undo.as_ref().map(|u| {
            // An undo reads its own step's result, and those before it.
            let (before, after) = forward.split_at(i + 1);
            c.action(
                &format!("{at}.undo"),
                u,
                Some(&s.participant),
                (before, after),
            )
        });
        if s.late_reply == Some(LateReply::Undo) && s.undo.is_none() {
            c.problem(
                &format!("{at}.late_reply"),
                "`undo` needs the step's undo to run: give the step an `undo`",
            );
        }
        let when = s.when.as_ref().and_then(|w| {
            let at = format!("{at}.when");
            match Condition::parse(w) {
                Err(why) => {
                    c.problem(&format!("{at}.value"), why);
                    None
                }
                Ok(condition) => {
                    // The condition reads what the step's data may read.
                    let template = Value::String(w.value.clone());
                    c.readable(
                        &format!("{at}.value"),
                        &template,
                        &s.name,
                        (&forward[..group_start[i]], &forward[group_start[i]..]),
                    );
                    Some(condition)
                }
            }
        });
        steps.push(Step {
            action,
            retry: s.retry.unwrap_or_default(),
            pivot: s.pivot,
            group: s.group.clone(),
            when,
            late_reply: s.late_reply.unwrap_or_default(),
            result_schema,
            undo,
        });
    }
    let final_compensation = document
        .final_compensation
        .as_ref()
        .map(|f| c.action("final_compensation", f, None, (&forward, &[])));
    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let hash = Definition::hash_of(&document);
    Ok(Definition {
        saga_type: document.saga_type.clone(),
        version: document.version,
        description: document.description.clone(),
        hash,
        business_key,
        input_schema,
        steps,
        final_compensation,
        document,
    })
}

#[derive(Default)]
struct Checker {
    problems: Vec<Problem>,
    /// Step name → where it was first given.
    names: HashMap<String, String>,
    events: HashMap<String, String>,
}

impl Checker {
    fn problem(&mut self, at: &str, message: impl Into<String>) {
        self.problems.push(Problem::new(at, &message.into()));
    }

    /// The document is stored as `jsonb`, whose strings and keys hold no U+0000.
    fn storable(&mut self, at: &str, value: &Value) {
        const NUL: &str = "holds a NUL character (U+0000), which cannot be stored";
        match value {
            Value::String(s) if s.contains('\0') => self.problem(at, NUL),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.storable(&format!("{at}[{i}]"), item);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let at = if at.is_empty() {
                        key.clone()
                    } else {
                        format!("{at}.{key}")
                    };
                    if key.contains('\0') {
                        self.problem(&at, format!("the key {NUL}"));
                    }
                    self.storable(&at, item);
                }
            }
            _ => {}
        }
    }

    fn name(&mut self, at: &str, name: &str) {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid {
            self.problem(
                at,
                format!("`{name}` must be 1 to {MAX_NAME_LEN} letters, digits, `-` or `_`"),
            );
        }
    }

    fn schema(&mut self, at: &str, document: Value) -> Option<Schema> {
        match Schema::compile(document) {
            Ok(s) => Some(s),
            Err((path, why)) => {
                let at = if path.is_empty() {
                    at.to_owned()
                } else {
                    format!("{at}.{path}")
                };
                self.problem(&at, format!("not a valid JSON Schema: {why}"));
                None
            }
        }
    }

    /// A parallel group's steps are consecutive, and none is a pivot (the
    /// others may still fail after it succeeded).
    fn groups(&mut self, document: &Document) {
        let mut closed: Vec<&str> = Vec::new();
        let mut previous: Option<&str> = None;
        for (i, s) in document.steps.iter().enumerate() {
            let group = s.group.as_deref();
            if let Some(g) = group {
                self.name(&format!("steps[{i}].group"), g);
                if closed.contains(&g) {
                    self.problem(
                        &format!("steps[{i}].group"),
                        format!("the steps of group `{g}` must follow one another"),
                    );
                }
                if s.pivot {
                    self.problem(
                        &format!("steps[{i}].pivot"),
                        format!(
                            "a parallel group cannot hold a pivot (step `{}` in group `{g}`)",
                            s.name
                        ),
                    );
                }
            }
            if let Some(p) = previous.filter(|p| Some(*p) != group) {
                closed.push(p);
            }
            previous = group;
        }
    }

    /// A time in milliseconds: at least 1, at most a year.
    fn duration(&mut self, at: &str, ms: Option<u64>) {
        match ms {
            Some(0) => self.problem(at, "must be 1 or more"),
            Some(ms) if ms > MAX_DURATION_MS => self.problem(
                at,
                format!("{ms} is more than a year ({MAX_DURATION_MS} ms)"),
            ),
            _ => {}
        }
    }

    fn retry(&mut self, at: &str, retry: RetryDocument) {
        self.duration(
            &format!("{at}.initial_backoff_ms"),
            retry.initial_backoff_ms,
        );
        self.duration(&format!("{at}.max_backoff_ms"), retry.max_backoff_ms);
        if retry.max_attempts == Some(0) {
            self.problem(&format!("{at}.max_attempts"), "must be 1 or more");
        }
        if let (Some(initial), Some(max)) = (retry.initial_backoff_ms, retry.max_backoff_ms) {
            if initial > max {
                self.problem(
                    &format!("{at}.initial_backoff_ms"),
                    format!("{initial} is more than max_backoff_ms ({max})"),
                );
            }
        }
    }

    /// Checks one step that sends a command; `readable` are the forward steps
    /// whose results its data may read, `later` those it may not.
    fn action(
        &mut self,
        at: &str,
        a: &ActionDocument,
        default_participant: Option<&str>,
        (readable, later): (&[&str], &[&str]),
    ) -> Action {
        self.name(&format!("{at}.name"), &a.name);
        if a.name == "input" {
            self.problem(
                &format!("{at}.name"),
                "`input` is reserved for the start input",
            );
        }
        if let Some(first) = self.names.insert(a.name.clone(), format!("{at}.name")) {
            self.problem(
                &format!("{at}.name"),
                format!("duplicate step name `{}` (first at {first})", a.name),
            );
        }
        let participant = a
            .participant
            .clone()
            .or_else(|| default_participant.map(str::to_owned));
        let participant = match participant {
            Some(p) => {
                self.name(&format!("{at}.participant"), &p);
                p
            }
            None => {
                self.problem(
                    &format!("{at}.participant"),
                    "missing: which service handles it",
                );
                String::new()
            }
        };
        let versioned = a.command.rsplit_once(".v").is_some_and(|(head, v)| {
            !head.is_empty() && !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())
        });
        if !versioned || a.command.len() > 200 || a.command.contains(char::is_whitespace) {
            self.problem(
                &format!("{at}.command"),
                "must be a versioned command type such as `order.payment.charge.v1`",
            );
        }
        let event = a.event.clone().unwrap_or_else(|| DEFAULT_EVENT.to_owned());
        self.name(&format!("{at}.event"), &event);
        if RESERVED_EVENTS.contains(&event.as_str()) {
            self.problem(
                &format!("{at}.event"),
                format!("`{event}` is an event of the engine's own"),
            );
        }
        if event != DEFAULT_EVENT {
            if let Some(first) = self.events.insert(event.clone(), format!("{at}.event")) {
                self.problem(
                    &format!("{at}.event"),
                    format!("duplicate event name `{event}` (first at {first})"),
                );
            }
        }
        self.duration(&format!("{at}.timeout_ms"), a.timeout_ms);
        if a.max_attempts == Some(0) {
            self.problem(&format!("{at}.max_attempts"), "must be 1 or more");
        }
        let data = a.data.clone().unwrap_or(Value::Object(Default::default()));
        self.readable(&format!("{at}.data"), &data, &a.name, (readable, later));
        Action {
            name: a.name.clone(),
            participant,
            command_type: a.command.clone(),
            event,
            data,
            timeout_ms: a.timeout_ms,
            max_attempts: a.max_attempts,
        }
    }

    /// Checks that every `${…}` in `template` (at `at`, in step `own`) reads
    /// the input or the result of a step in `readable`.
    fn readable(
        &mut self,
        at: &str,
        template: &Value,
        own: &str,
        (readable, later): (&[&str], &[&str]),
    ) {
        let mut found = Vec::new();
        expressions(template, at, &mut found);
        for (place, expression) in found {
            match expression {
                Err(e) => self.problem(&place, e.0),
                Ok(e) => match e.source {
                    Source::Input => {}
                    Source::Result(step) if readable.contains(&step.as_str()) => {}
                    Source::Result(step) if step == own => self.problem(
                        &place,
                        "reads its own result: a step reads only the results of the steps before it",
                    ),
                    Source::Result(step) if later.contains(&step.as_str()) => self.problem(
                        &place,
                        format!("reads the result of `{step}`, which runs after this step"),
                    ),
                    Source::Result(step) => self.problem(
                        &place,
                        format!(
                            "unknown step `{step}`; results can be read of: {}",
                            if readable.is_empty() { "none".to_owned() } else { readable.join(", ") }
                        ),
                    ),
                },
            }
        }
    }
}
