//! `sagaplane sagas …` and `sagaplane dead-letters …`: the operator API from a
//! terminal. Tables for people, the API's JSON with `--json`; an API error is
//! printed from its problem details and the exit status is non-zero.

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode};
use sagaplane_sagas::ActionName;
use serde_json::{json, Value};

/// Where the API is and who is calling.
#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// Base URL of a running `sagaplane serve`.
    #[arg(
        long,
        global = true,
        env = "SAGAPLANE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// Bearer token (needed once the server has tokens configured).
    #[arg(long, global = true, env = "SAGAPLANE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SagasCommand {
    /// Find sagas, newest first.
    List(ListArgs),
    /// One saga: status, what it waits for, allowed actions.
    Show { id: String },
    /// A saga's history; `--with-state` adds the state after every event.
    Events {
        id: String,
        #[arg(long)]
        with_state: bool,
    },
    /// Counts per saga type and status.
    Stats,
    /// Send the current step again now.
    Retry(ActionArgs),
    /// Take the current step as done with an assumed result.
    Skip {
        #[command(flatten)]
        action: ActionArgs,
        #[arg(long, value_enum)]
        assume: Assume,
    },
    /// Stop going forward and compensate now.
    Compensate(ActionArgs),
    /// Continue a suspended saga.
    Resume(ActionArgs),
    /// Stop the saga without compensation.
    Cancel(ActionArgs),
    /// Run the saga on under another version of its definition.
    Migrate {
        #[command(flatten)]
        action: ActionArgs,
        #[arg(long)]
        to_version: u32,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Comma-separated statuses, e.g. `running,suspended`.
    #[arg(long)]
    status: Option<String>,
    #[arg(long)]
    saga_type: Option<String>,
    #[arg(long)]
    business_key: Option<String>,
    /// No progress for longer than this: `90s`, `15m`, `2h`, `1d`.
    #[arg(long)]
    stuck_for: Option<String>,
    /// Created at or after (RFC 3339).
    #[arg(long)]
    created_from: Option<String>,
    /// Created before (RFC 3339).
    #[arg(long)]
    created_to: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// `next_cursor` of a previous page.
    #[arg(long)]
    cursor: Option<String>,
}

#[derive(Args, Debug)]
pub struct ActionArgs {
    pub id: String,
    /// Why; recorded in the saga's history.
    #[arg(long)]
    pub reason: String,
    /// Act only if the saga is still at this version (from `show`).
    #[arg(long)]
    pub if_version: Option<u64>,
    /// Show what would happen; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Assume {
    Succeeded,
    Failed,
}

#[derive(Subcommand, Debug)]
pub enum DeadLettersCommand {
    /// Dead letters, oldest first (open ones unless `--all`).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Only ids greater than this.
        #[arg(long)]
        after: Option<i64>,
    },
    /// One dead letter with its raw bytes.
    Show { id: i64 },
    /// Apply it once more.
    Redrive {
        id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Close it without applying it.
    Discard {
        id: i64,
        #[arg(long)]
        reason: String,
    },
}

struct Client {
    http: reqwest::Client,
    remote: Remote,
}

impl Client {
    fn new(remote: Remote) -> Self {
        Self {
            http: reqwest::Client::new(),
            remote,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.remote.url.trim_end_matches('/'));
        let mut request = self.http.request(method, &url).query(query);
        if let Some(token) = &self.remote.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        bail!(problem(status, &body))
    }
}

/// One line (two with the allowed actions) from a problem+json body.
fn problem(status: StatusCode, body: &Value) -> String {
    let detail = body["detail"].as_str().unwrap_or("no detail");
    let mut text = format!("{} {}: {detail}", status.as_u16(), text(&body["title"]));
    for e in body["errors"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "\n  {}: {}",
            text_of(e, "field"),
            text_of(e, "message")
        ));
    }
    if let Some(version) = body["current_version"].as_u64() {
        text.push_str(&format!("\n  the saga is now at version {version}"));
    }
    text
}

pub async fn sagas(remote: Remote, command: SagasCommand) -> anyhow::Result<()> {
    let json = remote.json;
    let client = Client::new(remote);
    let mut to_version = None;
    let (action, args, assume) = match command {
        SagasCommand::List(a) => {
            let mut q = vec![("limit", a.limit.to_string())];
            let optional = [
                ("status", a.status),
                ("saga_type", a.saga_type),
                ("business_key", a.business_key),
                ("stuck_for", a.stuck_for),
                ("created_from", a.created_from),
                ("created_to", a.created_to),
                ("cursor", a.cursor),
            ];
            q.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
            let page = client.call(Method::GET, "/v1/sagas", &q, None, &[]).await?;
            return print(json, &page, print_saga_page);
        }
        SagasCommand::Show { id } => {
            let saga = client
                .call(Method::GET, &format!("/v1/sagas/{id}"), &[], None, &[])
                .await?;
            return print(json, &saga, print_saga);
        }
        SagasCommand::Events { id, with_state } => {
            let q = [("with_state", with_state.to_string())];
            let events = client
                .call(
                    Method::GET,
                    &format!("/v1/sagas/{id}/events"),
                    &q,
                    None,
                    &[],
                )
                .await?;
            return print(json, &events, print_events);
        }
        SagasCommand::Stats => {
            let stats = client
                .call(Method::GET, "/v1/stats", &[], None, &[])
                .await?;
            return print(json, &stats, print_stats);
        }
        SagasCommand::Retry(a) => (ActionName::Retry, a, None),
        SagasCommand::Skip { action, assume } => (ActionName::Skip, action, Some(assume)),
        SagasCommand::Compensate(a) => (ActionName::Compensate, a, None),
        SagasCommand::Resume(a) => (ActionName::Resume, a, None),
        SagasCommand::Cancel(a) => (ActionName::Cancel, a, None),
        SagasCommand::Migrate {
            action,
            to_version: v,
        } => {
            to_version = Some(v);
            (ActionName::Migrate, action, None)
        }
    };
    let mut body = json!({ "reason": args.reason });
    if let Some(v) = to_version {
        body["to_version"] = json!(v);
    }
    if let Some(assume) = assume {
        body["assume"] = json!(match assume {
            Assume::Succeeded => "succeeded",
            Assume::Failed => "failed",
        });
    }
    let headers: Vec<(&str, String)> = args
        .if_version
        .map(|v| ("If-Match", format!("\"{v}\"")))
        .into_iter()
        .collect();
    let result = client
        .call(
            Method::POST,
            &format!("/v1/sagas/{}/actions/{action}", args.id),
            &[("dry_run", args.dry_run.to_string())],
            Some(body),
            &headers,
        )
        .await?;
    print(json, &result, print_action)
}

pub async fn dead_letters(remote: Remote, command: DeadLettersCommand) -> anyhow::Result<()> {
    let json = remote.json;
    let client = Client::new(remote);
    let (path, resolution, reason) = match command {
        DeadLettersCommand::List { all, limit, after } => {
            let mut q = vec![
                ("open_only", (!all).to_string()),
                ("limit", limit.to_string()),
            ];
            if let Some(after) = after {
                q.push(("after", after.to_string()));
            }
            let page = client
                .call(Method::GET, "/v1/dead-letters", &q, None, &[])
                .await?;
            return print(json, &page, print_dead_letter_page);
        }
        DeadLettersCommand::Show { id } => {
            let letter = client
                .call(
                    Method::GET,
                    &format!("/v1/dead-letters/{id}"),
                    &[],
                    None,
                    &[],
                )
                .await?;
            return print(json, &letter, print_dead_letter);
        }
        DeadLettersCommand::Redrive { id, reason } => (id, "redrive", reason),
        DeadLettersCommand::Discard { id, reason } => (id, "discard", reason),
    };
    let result = client
        .call(
            Method::POST,
            &format!("/v1/dead-letters/{path}/{resolution}"),
            &[],
            Some(json!({ "reason": reason })),
            &[],
        )
        .await?;
    print(json, &result, |v| {
        if let Some(outcome) = v["outcome"].as_str() {
            println!("outcome: {outcome}");
            print_dead_letter(&v["dead_letter"]);
        } else {
            print_dead_letter(v);
        }
    })
}

fn print(json: bool, value: &Value, table: impl Fn(&Value)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        table(value);
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn text_of(v: &Value, field: &str) -> String {
    text(&v[field])
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn print_saga_page(page: &Value) {
    let rows: Vec<Vec<String>> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let step = match (s["current_step"].as_str(), s["attempt"].as_u64()) {
                (Some(step), Some(n)) => format!("{step} #{n}"),
                _ => "-".into(),
            };
            vec![
                text_of(s, "id"),
                text_of(s, "saga_type"),
                text_of(s, "business_key"),
                text_of(s, "status"),
                step,
                text_of(s, "updated_at"),
            ]
        })
        .collect();
    table(&["ID", "TYPE", "KEY", "STATUS", "STEP", "UPDATED"], &rows);
    if let Some(cursor) = page["next_cursor"].as_str() {
        println!("more: --cursor {cursor}");
    }
}

fn print_saga(s: &Value) {
    for field in ["id", "saga_type", "business_key", "status", "version"] {
        println!("{field:<14} {}", text_of(s, field));
    }
    println!("{:<14} {}", "created_at", text_of(s, "created_at"));
    println!("{:<14} {}", "updated_at", text_of(s, "updated_at"));
    println!("{:<14} {}", "last_error", text_of(s, "last_error"));
    let w = &s["waiting_for"];
    if w.is_object() {
        println!(
            "waiting for    {} to answer {} (attempt {} of {}) since {}",
            text_of(w, "participant"),
            text_of(w, "step"),
            text_of(w, "attempt"),
            text_of(w, "max_attempts"),
            text_of(w, "since"),
        );
        let on = match w["waiting_on"].as_str() {
            Some("reply") => format!("a reply; times out at {}", text_of(w, "fires_at")),
            Some("retry") => format!("the next attempt, sent at {}", text_of(w, "fires_at")),
            Some("operator") => "an operator: out of attempts".into(),
            _ => text_of(w, "waiting_on"),
        };
        println!("               on {on}");
        if w["command_id"].is_string() {
            println!(
                "               command {} (sent {})",
                text_of(w, "command_id"),
                text_of(w, "command_sent_at")
            );
        }
    }
    let allowed: Vec<String> = s["allowed_actions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let allowed = if allowed.is_empty() {
        "none".to_owned()
    } else {
        allowed.join(", ")
    };
    println!("{:<14} {allowed}", "actions");
}

fn print_events(events: &Value) {
    let rows: Vec<Vec<String>> = events
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let mut row = vec![
                text_of(e, "seq"),
                text_of(e, "type"),
                text_of(e, "recorded_at"),
            ];
            if e["state"].is_object() {
                row.push(text_of(&e["state"], "status"));
                row.push(text_of(&e["state"], "current_step"));
            }
            row
        })
        .collect();
    if rows.first().is_some_and(|r| r.len() > 3) {
        table(&["SEQ", "EVENT", "AT", "STATUS AFTER", "STEP AFTER"], &rows);
    } else {
        table(&["SEQ", "EVENT", "AT"], &rows);
    }
}

fn print_stats(stats: &Value) {
    let rows: Vec<Vec<String>> = stats["counts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                text_of(c, "saga_type"),
                text_of(c, "status"),
                text_of(c, "count"),
            ]
        })
        .collect();
    table(&["TYPE", "STATUS", "COUNT"], &rows);
    println!("suspended: {}", text_of(stats, "suspended"));
    let oldest = &stats["oldest_unsettled"];
    if oldest.is_object() {
        println!(
            "oldest unsettled: {} (since {})",
            text_of(oldest, "id"),
            text_of(oldest, "created_at")
        );
    }
    if stats["terminal_counted_at"].is_null() {
        println!("finished sagas: still being counted, not listed (ask again in a moment)");
    }
}

fn print_action(r: &Value) {
    let verb = if r["dry_run"] == json!(true) {
        "would append"
    } else {
        "appended"
    };
    println!(
        "status {} at version {}",
        text_of(r, "status"),
        text_of(r, "version")
    );
    for e in r["events"].as_array().into_iter().flatten() {
        println!("{verb} {}", text_of(e, "type"));
    }
    for c in r["commands"].as_array().into_iter().flatten() {
        println!(
            "{} {} #{} to {}",
            if r["dry_run"] == json!(true) {
                "would send"
            } else {
                "sends"
            },
            text_of(c, "step"),
            text_of(c, "attempt"),
            text_of(c, "participant")
        );
    }
}

fn print_dead_letter_page(page: &Value) {
    let rows: Vec<Vec<String>> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            vec![
                text_of(d, "id"),
                text_of(d, "channel"),
                text_of(d, "received_at"),
                text_of(d, "resolution"),
                text_of(d, "reason"),
            ]
        })
        .collect();
    table(
        &["ID", "CHANNEL", "RECEIVED", "RESOLUTION", "REASON"],
        &rows,
    );
    if let Some(after) = page["next_after"].as_i64() {
        println!("more: --after {after}");
    }
}

fn print_dead_letter(d: &Value) {
    for field in [
        "id",
        "channel",
        "reason",
        "received_at",
        "resolution",
        "resolved_by",
        "resolved_note",
        "resolved_at",
    ] {
        println!("{field:<14} {}", text_of(d, field));
    }
    match d["raw_text"].as_str() {
        Some(raw) => println!("raw (text)     {raw}"),
        None => println!("raw (base64)   {}", text_of(d, "raw_base64")),
    }
}
