//! The OpenAPI 3.1 document of the Server API. The committed copy
//! (`docs/openapi.json`) is the one served, built in, so they cannot
//! differ; the tests check that it describes exactly [`super::CALLS`] (plus
//! [`super::DOCUMENTED_NOT_SERVED`]).

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// The document, as committed.
pub const DOCUMENT: &str = include_str!("../../../docs/openapi.json");

/// `GET /api/v1/openapi.json` (behind the API key like every other call).
pub async fn document() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::{CALLS, DOCUMENTED_NOT_SERVED};
    use super::*;

    #[test]
    fn the_document_describes_exactly_the_calls() {
        let doc: serde_json::Value =
            serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                let id = op["operationId"]
                    .as_str()
                    .expect("every operation has an operationId");
                documented.insert((method.to_uppercase(), path.clone(), id.to_owned()));
            }
        }
        let routed: BTreeSet<_> = CALLS
            .iter()
            .chain(DOCUMENTED_NOT_SERVED.iter())
            .map(|c| (c.method.to_owned(), c.path.to_owned(), c.name.to_owned()))
            .collect();
        assert_eq!(
            documented, routed,
            "docs/openapi.json and api::CALLS differ"
        );
    }
}
