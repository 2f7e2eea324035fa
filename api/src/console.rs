//! The operator console: a few static files (HTML, one stylesheet, small ES
//! modules) compiled into the binary and served under `/console/`, and the
//! landing page at `/` that links to it, to the API's docs and to the metrics. The console
//! runs in the browser and uses only the public HTTP API, with the token the
//! operator types in (kept in the tab's `sessionStorage`, never in a URL).
//!
//! Every response carries a strict Content-Security-Policy (only this origin,
//! no inline script or style), so nothing is fetched from anywhere else.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

/// `(name, content type, bytes)` of every console file.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../console/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/api.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/ui.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/overview.js"),
    ),
    (
        "saga.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/saga.js"),
    ),
    (
        "dead_letters.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/dead_letters.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../console/favicon.svg"),
    ),
];

const LANDING: &str = include_str!("../console/landing.html");

/// Only this origin; no inline script or style; no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; font-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// A strong ETag per file, from its bytes (FNV-1a), computed once.
static TAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, _, bytes)| {
            let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
            });
            format!("\"{hash:016x}\"")
        })
        .collect()
});

/// Every path served here, each with GET only: the landing page, the
/// redirect to the console, its index and its files. Another method on one
/// of them is a 405 naming GET (see `routes::not_found`).
pub(crate) const PATHS: [&str; 4] = ["/", "/console", "/console/", "/console/{file}"];

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    let [root, bare, console, files] = PATHS;
    cfg.route(root, web::get().to(landing))
        .route(bare, web::get().to(to_console))
        .route(console, web::get().to(index))
        .route(files, web::get().to(file))
        .route("/docs", web::get().to(to_docs));
}

fn secured(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    response
}

async fn landing() -> HttpResponse {
    secured(HttpResponse::Ok())
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .content_type("text/html; charset=utf-8")
        .body(LANDING)
}

async fn to_console() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/console/"))
        .finish()
}

async fn to_docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

async fn index(request: HttpRequest) -> HttpResponse {
    serve(&request, "index.html")
}

async fn file(request: HttpRequest, name: web::Path<String>) -> HttpResponse {
    serve(&request, &name)
}

/// The file, revalidated on every use (`no-cache` with its ETag: a `304`
/// costs nothing), so a new binary's console is never mixed with an old one.
fn serve(request: &HttpRequest, name: &str) -> HttpResponse {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name) else {
        return secured(HttpResponse::NotFound())
            .content_type("text/plain; charset=utf-8")
            .body("no such console file");
    };
    let (_, content_type, bytes) = FILES[i];
    let tag = &TAGS[i];
    let fresh = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if fresh {
        secured(HttpResponse::NotModified())
    } else {
        secured(HttpResponse::Ok())
    };
    response
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::ETAG, tag.as_str()));
    if fresh {
        return response.finish();
    }
    response.content_type(content_type).body(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_its_own_tag_and_no_remote_reference() {
        assert_eq!(TAGS.len(), FILES.len());
        for (name, _, bytes) in FILES {
            let text = String::from_utf8_lossy(bytes);
            for remote in ["http://", "https://", "//cdn", "@import", "fonts.g"] {
                assert!(
                    !text.contains(remote) || text.contains("http://www.w3.org/2000/svg"),
                    "{name} refers to {remote}"
                );
            }
        }
    }
}
