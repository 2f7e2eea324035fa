//! One module per resource; [`ROUTES`] lists every route the API serves, from
//! the same table that registers them.

mod actions;
mod dead_letters;
mod health;
mod ingress;
mod me;
mod metrics;
mod saga_types;
mod sagas;
mod stats;

use actix_web::web;
use utoipa::OpenApi;

use crate::auth::Role;
use crate::problem::ApiError;

/// Registers each route, with the role it needs (`[]`: none; the ingress
/// checks its own key or a `participant` token), and lists it in [`ROUTES`],
/// from one table.
macro_rules! routes {
    ($($method:ident $path:literal [$($role:ident)?] => $handler:path),* $(,)?) => {
        pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
            $( cfg.route($path, guarded(method::$method().to($handler), None $(.or(Some(Role::$role)))?)); )*
        }

        /// Every route the API serves, as `(method, path)`.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];
    };
}

routes! {
    get "/healthz" [] => health::healthz,
    get "/readyz" [] => health::readyz,
    get "/metrics" [Viewer] => metrics::metrics,
    post "/v1/sagas" [Starter] => sagas::start::start,
    get "/v1/sagas" [Viewer] => sagas::search::search,
    get "/v1/stats" [Viewer] => stats::stats,
    get "/v1/me" [] => me::me,
    get "/v1/saga-types" [Viewer] => saga_types::list,
    get "/v1/saga-types/{saga_type}/versions/{version}" [Viewer] => saga_types::get,
    get "/v1/sagas/{id}" [Viewer] => sagas::read::get,
    get "/v1/sagas/{id}/events" [Viewer] => sagas::read::events,
    post "/v1/sagas/{id}/actions/{action}" [Operator] => actions::act,
    get "/v1/dead-letters" [Admin] => dead_letters::list,
    get "/v1/dead-letters/{id}" [Admin] => dead_letters::get,
    post "/v1/dead-letters/{id}/redrive" [Admin] => dead_letters::redrive,
    post "/v1/dead-letters/{id}/discard" [Admin] => dead_letters::discard,
    post "/v1/ingress/eventbridge" [] => ingress::eventbridge,
    post "/v1/ingress/eventgrid" [] => ingress::eventgrid,
    options "/v1/ingress/eventgrid" [] => ingress::eventgrid_validation,
}

/// The routes of each method the table uses.
mod method {
    pub(super) use actix_web::web::{get, post};

    pub(super) fn options() -> actix_web::Route {
        actix_web::web::method(actix_web::http::Method::OPTIONS)
    }
}

/// `route`, admitting only tokens with `role` when it names one.
fn guarded(route: actix_web::Route, role: Option<Role>) -> actix_web::Route {
    match role {
        None => route,
        Some(role) => route.wrap(actix_web::middleware::from_fn(move |req, next| {
            crate::auth::admit(role, req, next)
        })),
    }
}

/// The OpenAPI document: every route above, its schemas and the security scheme.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "sagaplane",
        description = "Saga orchestrator: start sagas, find and inspect them, intervene, handle dead letters."
    ),
    paths(
        health::healthz, health::readyz, metrics::metrics,
        sagas::start::start, sagas::search::search, stats::stats, me::me, sagas::read::get,
        saga_types::list, saga_types::get,
        sagas::read::events,
        actions::act,
        dead_letters::list, dead_letters::get, dead_letters::redrive, dead_letters::discard,
        ingress::eventbridge, ingress::eventgrid, ingress::eventgrid_validation,
    ),
    // Named only in a path parameter, which utoipa does not collect.
    components(schemas(actions::ActionName)),
    modifiers(&BearerAuth),
    tags(
        (name = "sagas", description = "Start, find and read sagas"),
        (name = "operators", description = "Interventions, recorded in the saga's history"),
        (name = "dead letters", description = "Inbound messages that could not be used"),
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "ingress", description = "Replies from participants, as their channels deliver them"),
    )
)]
pub struct ApiDoc;

/// The OpenAPI document of a node running `catalog`: the start request's
/// `input` is described for every loaded saga type (`oneOf` by `saga_type`).
pub(crate) fn openapi(catalog: &sagaplane_sagas::Catalog) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serialises");
    let Some(start) = doc.pointer_mut("/components/schemas/StartRequest") else {
        return doc;
    };
    let base = start.clone();
    // One entry per loaded version; a start naming no version gets the newest.
    let variants: Vec<Value> = catalog
        .types()
        .flat_map(|t| t.versions.values().map(move |d| (t, d)))
        .map(|(t, d)| {
            let newest = t.newest().version == d.version;
            let mut variant = base.clone();
            variant["properties"]["saga_type"] = json!({"type": "string", "enum": [t.saga_type]});
            let mut versions = vec![json!(d.version)];
            if newest {
                versions.push(Value::Null);
            }
            variant["properties"]["version"] = json!({
                "type": if newest { json!(["integer", "null"]) } else { json!("integer") },
                "enum": versions,
                "description": "The definition version to run under, to its end; default: the newest."
            });
            variant["properties"]["input"] = d
                .input_schema
                .as_ref()
                .map_or(json!({"type": "object"}), |s| s.document().clone());
            let mut required = vec!["saga_type", "input"];
            if d.business_key.is_none() {
                required.push("business_key");
            }
            if !newest {
                required.push("version");
            }
            variant["required"] = json!(required);
            variant["title"] = json!(format!("Start a `{}` saga (version {})", t.saga_type, d.version));
            variant
        })
        .collect();
    *start = json!({
        "description": base.get("description").cloned().unwrap_or(Value::Null),
        "oneOf": variants,
        "example": base.get("example").cloned().unwrap_or(Value::Null),
    });
    doc
}

/// The security schemes: bearer tokens for people and services (and
/// participants at the ingress), API keys for the EventBridge and Event Grid
/// ingresses.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from the configuration (auth.tokens) or an access token (JWT) \
                         of the identity provider (auth.jwt); its roles decide what it may do",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "eventbridge_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The key of the EventBridge connection (ingress.eventbridge; the header name is configurable)",
            ))),
        );
        components.add_security_scheme(
            "eventgrid_key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "code",
                "The Event Grid ingress key in the subscription's webhook URL (ingress.eventgrid; the parameter's name is configurable)",
            ))),
        );
        components.add_security_scheme(
            "eventgrid_key_header",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "The Event Grid ingress key as a delivery header (ingress.eventgrid; the header name is configurable)",
            ))),
        );
    }
}

/// Any path or method the API does not have: 405 with `Allow` when the path
/// is served with other methods (the console's pages included), else 404.
pub(crate) async fn not_found(
    request: actix_web::HttpRequest,
) -> Result<actix_web::HttpResponse, ApiError> {
    let path = request.path();
    let console = crate::console::PATHS.iter().map(|p| ("get", *p));
    let mut allowed: Vec<&'static str> = ROUTES
        .iter()
        .copied()
        .chain(console)
        .filter(|(_, pattern)| actix_web::dev::ResourceDef::new(*pattern).is_match(path))
        .map(|(method, _)| match method {
            "get" => "GET",
            "post" => "POST",
            "put" => "PUT",
            "delete" => "DELETE",
            "options" => "OPTIONS",
            _ => "PATCH",
        })
        .collect();
    if allowed.is_empty() {
        return Err(ApiError::NotFound("no such resource".into()));
    }
    allowed.sort_unstable();
    allowed.dedup();
    Err(ApiError::MethodNotAllowed {
        method: request.method().to_string(),
        allowed,
    })
}
