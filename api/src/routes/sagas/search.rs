//! `GET /v1/sagas`: find sagas by status, type, business key, age and how
//! long they have been stuck, newest first, a page at a time.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use sagaplane_orchestrator::ports::SagaFilter;
use sagaplane_sagas::{SagaId, Status};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::dto::SagaDto;
use crate::problem::{no_nul, ApiError, Problem};
use crate::state::AppState;

/// The largest page any listing gives.
pub(crate) const MAX_PAGE: i64 = 500;
const DEFAULT_PAGE: i64 = 50;

/// One page of sagas, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SagaPage {
    items: Vec<SagaDto>,
    /// Pass as `cursor` for the next page; absent on the last page.
    next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct SearchQuery {
    /// Comma-separated statuses, e.g. `running,suspended`.
    status: Option<String>,
    saga_type: Option<String>,
    business_key: Option<String>,
    /// Created at or after (RFC 3339).
    created_from: Option<DateTime<Utc>>,
    /// Created before (RFC 3339).
    created_to: Option<DateTime<Utc>>,
    /// Not terminal and no progress for longer than this: `90s`, `15m`, `2h`, `1d`.
    stuck_for: Option<String>,
    /// 1 to 500; 50 when absent.
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Find sagas, newest first, with keyset pagination.
#[utoipa::path(
    get, path = "/v1/sagas", tag = "sagas",
    params(SearchQuery),
    responses(
        (status = 200, description = "One page", body = SagaPage),
        (status = 400, description = "Bad filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Token lacks the role", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn search(
    state: web::Data<AppState>,
    query: web::Query<SearchQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    no_nul("saga_type", q.saga_type.as_deref())?;
    no_nul("business_key", q.business_key.as_deref())?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(format!(
            "limit must be 1 to {MAX_PAGE}, got {limit}"
        )));
    }
    let statuses = match q.status.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                Status::parse(s.trim())
                    .map(|s| s.as_str().to_owned())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "unknown status `{s}`; known: {}",
                            Status::ALL.map(Status::as_str).join(", ")
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let stuck_since = q
        .stuck_for
        .as_deref()
        .map(|d| parse_duration(d).map(|d| Utc::now() - d))
        .transpose()?;
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = SagaFilter {
        statuses,
        // A business key is indexed with its type: name every type when none is given.
        saga_types: match (q.saga_type, &q.business_key) {
            (Some(t), _) => vec![t],
            (None, Some(_)) => state.orchestrator.saga_types(),
            (None, None) => Vec::new(),
        },
        business_key: q.business_key,
        created_from: q.created_from,
        created_to: q.created_to,
        stuck_since,
        after,
        limit,
    };
    let records = state.queries.search(&filter).await?;
    let next_cursor = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| cursor(r.created_at, r.id)))
        .flatten();
    let mut items: Vec<SagaDto> = records.into_iter().map(SagaDto::from_record).collect();
    // Only rows from before the read model kept these need a fold; one that
    // cannot be folded is shown without them rather than failing the page.
    for saga in items.iter_mut().filter(|s| s.lacks_waiting()) {
        if let Ok(Some(snapshot)) = state.orchestrator.inspect(saga.saga_id()).await {
            saga.complete_from(&snapshot);
        }
    }
    Ok(HttpResponse::Ok().json(SagaPage { items, next_cursor }))
}

/// `90s`, `15m`, `2h`, `1d` (a bare number is seconds).
fn parse_duration(raw: &str) -> Result<chrono::Duration, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "stuck_for must be a whole number with a unit s, m, h or d (e.g. `15m`), got `{raw}`"
        ))
    };
    let raw = raw.trim();
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => raw.split_at(i),
        None => (raw, "s"),
    };
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    // Beyond ~100 years is certainly a mistake, and would overflow the clock.
    if n > 36_500 * 86_400 / seconds {
        return Err(bad());
    }
    Ok(chrono::Duration::seconds(n * seconds))
}

fn cursor(created_at: DateTime<Utc>, id: SagaId) -> String {
    format!(
        "{}_{}",
        created_at.timestamp_micros(),
        id.as_uuid().simple()
    )
}

fn parse_cursor(raw: &str) -> Result<(DateTime<Utc>, SagaId), ApiError> {
    let bad = || ApiError::BadRequest(format!("`{raw}` is not a cursor this API gave out"));
    let (micros, id) = raw.split_once('_').ok_or_else(bad)?;
    let at = micros
        .parse()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::try_parse(id).map_err(|_| bad())?;
    Ok((at, SagaId::from_uuid(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit_and_refuse_nonsense() {
        assert_eq!(parse_duration("90s").unwrap().num_seconds(), 90);
        assert_eq!(parse_duration("15m").unwrap().num_seconds(), 900);
        assert_eq!(parse_duration("2h").unwrap().num_seconds(), 7_200);
        assert_eq!(parse_duration("1d").unwrap().num_seconds(), 86_400);
        assert_eq!(parse_duration("30").unwrap().num_seconds(), 30);
        for bad in [
            "",
            "m",
            "5w",
            "-5m",
            "1.5h",
            "99999999999999999999d",
            "400000d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let id = SagaId::from_uuid(Uuid::now_v7());
        assert_eq!(parse_cursor(&cursor(at, id)).unwrap(), (at, id));
        for bad in ["", "x_y", "123", "123_notauuid", "99999999999999999999_0"] {
            assert!(parse_cursor(bad).is_err(), "{bad}");
        }
    }
}
