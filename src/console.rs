//! The web console (docs/console.md): a campaign manager's pages for webhooks, campaign
//! stats and dead letters, served at `/console/` on the admin address. The pages are static
//! files compiled into the binary; the script in them talks only to `/v1` with the admin
//! token the user signs in with (kept in the browser session, never in a URL). Every answer
//! forbids inline script and style, framing and sniffing, so an injected string can only
//! ever be text.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("console/index.html");

/// Every file of the console but the page: name, type, contents.
const FILES: &[(&str, &str, &str)] = &[
    ("app.js", JS, include_str!("console/app.js")),
    ("api.js", JS, include_str!("console/api.js")),
    ("dom.js", JS, include_str!("console/dom.js")),
    ("page.js", JS, include_str!("console/page.js")),
    ("webhooks.js", JS, include_str!("console/webhooks.js")),
    ("template-form.js", JS, include_str!("console/template-form.js")),
    ("body-editor.js", JS, include_str!("console/body-editor.js")),
    ("campaigns.js", JS, include_str!("console/campaigns.js")),
    (
        "campaign-control.js",
        JS,
        include_str!("console/campaign-control.js"),
    ),
    ("delivery-log.js", JS, include_str!("console/delivery-log.js")),
    ("dead-letters.js", JS, include_str!("console/dead-letters.js")),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("console/style.css"),
    ),
    ("icon.svg", "image/svg+xml", include_str!("console/icon.svg")),
];
const JS: &str = "text/javascript; charset=utf-8";

/// Scripts, styles and images from the service itself, requests only to it; no framing, no
/// form posts elsewhere, no `<base>` tricks.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `/console` and its files; no fallback, so it merges with the API's router.
pub fn router() -> Router {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route(
            "/console/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route("/console/{file}", get(file))
}

async fn file(name: Path<String>) -> Response {
    match FILES.iter().find(|(file, ..)| *file == name.as_str()) {
        Some((_, content_type, body)) => page(content_type, body),
        None => {
            let mut response = (StatusCode::NOT_FOUND, "no such file\n").into_response();
            response.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            );
            response
        }
    }
}

fn page(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // The files change with the binary; a browser must not keep an old script.
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files_and_nothing_inline() {
        assert!(INDEX.contains(r#"<script type="module" src="app.js"></script>"#));
        let script = |name: &str| {
            FILES
                .iter()
                .find(|f| f.0 == name)
                .map(|f| f.2)
                .unwrap_or_default()
        };
        assert!(INDEX.contains(r#"<link rel="stylesheet" href="style.css">"#));
        assert!(!INDEX.contains(" style=") && !INDEX.contains("<style"));
        let handler = |w: &str| w.starts_with("on") && w.contains("=\"");
        assert!(!INDEX.split_whitespace().any(handler), "no inline event handlers");
        let files = FILES.iter().map(|(n, t, b)| (*n, *t, *b));
        for (name, _, text) in files
            .chain([("index.html", "", INDEX)])
            .filter(|f| f.1 != "image/svg+xml")
        {
            for remote in [
                "from 'http",
                "src=\"http",
                "href=\"http",
                "url(http",
                "@import",
                "fetch('http",
            ] {
                assert!(
                    !text.contains(remote),
                    "nothing from elsewhere: {remote} in {name}"
                );
            }
            // No way to run a string as code or to write markup from one.
            for risky in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "eval(",
                "new Function",
                "document.write",
            ] {
                assert!(!text.contains(risky), "{risky} in {name}");
            }
        }
        // Every module a script imports is served.
        for (name, content_type, text) in FILES {
            if *content_type != JS {
                continue;
            }
            for import in text.lines().filter_map(|l| l.split("from './").nth(1)) {
                let imported = import.trim_end_matches("';");
                assert!(
                    !script(imported).is_empty(),
                    "{name} imports {imported}, not served"
                );
            }
        }
    }
}
