//! The demo page at `/demo` and its script at `/demo/app.js`, embedded in the
//! binary so a node serves them with no build step at run time. The page is
//! hand-written (`static/demo.html`); the script is the JavaScript client
//! SDK, its WebRTC helper and the demo app bundled into one ESM file from
//! `clients/js` and committed (`static/demo.js`), so building the server
//! needs no Node. The JavaScript check rebuilds it and fails when the
//! committed copy and its sources disagree.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

/// Path of the page.
pub const PAGE_PATH: &str = "/demo";
/// Path of its script, as the page's `<script src>` names it.
pub const SCRIPT_PATH: &str = "/demo/app.js";

const PAGE: &str = include_str!("../../static/demo.html");
const SCRIPT: &str = include_str!("../../static/demo.js");

pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The bundle changes with the binary, under the same URL.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_the_script_the_router_serves() {
        assert!(PAGE.contains(&format!("<script type=\"module\" src=\"{SCRIPT_PATH}\">")));
    }

    #[test]
    fn the_script_is_the_generated_bundle() {
        assert!(SCRIPT.starts_with("// Generated from clients/js/demo/app.ts"));
        assert!(
            SCRIPT.contains("var Client = class"),
            "the bundle carries the SDK"
        );
    }
}
