//! The OpenAPI document of the API, generated from the handlers (`utoipa`)
//! as the router is built, so a route cannot exist without its entry: each
//! module registers its handlers with `utoipa_axum::routes!`, which adds
//! the route and its `#[utoipa::path]` together. Served at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The document's fixed parts; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hookline",
        description = "Webhook and chat-notification delivery: CloudEvents in, signed requests out. Every /v1 call takes `Authorization: Bearer <API key>`; errors share one JSON shape.",
    ),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "apps", description = "Tenants"),
        (name = "endpoints", description = "Where an app's events go"),
        (name = "events", description = "CloudEvents in"),
        (name = "deliveries", description = "What was sent where, and every attempt"),
        (name = "recovery", description = "Retries, recoveries, replays and their operations"),
        (name = "keys", description = "API keys"),
        (name = "plugins", description = "Plugins in service and their quarantines"),
        (name = "health", description = "Probes and metrics, without a key"),
    )
)]
pub struct ApiDoc;

/// The API key scheme.
struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("hlk_…")
                    .build(),
            ),
        );
    }
}

/// Every error answer: `{"error": {"code", "message", "field"?}}`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong, and the field it concerns when there is one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// `bad_request`, `invalid`, `not_found`, `conflict`, `too_large`,
    /// `unauthorized`, `forbidden`, `unavailable`, …
    code: String,
    message: String,
    /// The field or query parameter at fault.
    field: Option<String>,
}

#[cfg(test)]
mod tests {
    /// Every route is registered with `routes!`, so it is in the document:
    /// a plain `.route(` outside tests would serve a path the document
    /// lacks. (Only `/openapi.json` itself is left out.) The other direction,
    /// every documented operation served, is checked end to end in
    /// `tests/tests/e2e/openapi.rs`.
    #[test]
    fn no_route_bypasses_the_document() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut files = vec![std::path::PathBuf::from(format!("{dir}/api.rs"))];
        for entry in std::fs::read_dir(format!("{dir}/api")).unwrap() {
            files.push(entry.unwrap().path());
        }
        let mut bypasses = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                if line.contains(".route(")
                    && !code
                        .lines()
                        .nth(n + 1)
                        .is_some_and(|l| l.contains("\"/openapi.json\""))
                {
                    bypasses.push(format!("{}:{}", file.display(), n + 1));
                }
            }
        }
        assert!(
            bypasses.is_empty(),
            "routes outside the OpenAPI document: {bypasses:?}"
        );
    }
}
