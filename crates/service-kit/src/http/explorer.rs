//! `GET /docs`: an interactive explorer (Scalar) of the service's API.

use actix_web::{HttpResponse, web};
use utoipa::openapi::OpenApi;
use utoipa_scalar::Scalar;

use super::problem::Problem;

/// Scalar's standalone script, pinned: a new major version may change how it
/// is called.
const SCALAR_SCRIPT: &str = "https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.76.0";

/// The explorer's page, made once at start-up. The OpenAPI document is
/// embedded in it - the one `/openapi.json` serves - so the page needs no
/// second request to the service. The browser loads Scalar's script from its
/// CDN (jsDelivr); nothing is fetched when building. (The services' documents
/// contain no `</script`, which would end the embedding early; their `/docs`
/// tests compare the embedded document with `/openapi.json`.)
pub struct DocsPage(String);

impl DocsPage {
    pub fn new(openapi: OpenApi) -> Self {
        let title = html_escape(&openapi.info.title);
        let page = Scalar::new(openapi)
            .custom_html(format!(
                r#"<!doctype html>
<html>
<head>
    <title>{title} API</title>
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1"/>
</head>
<body>
<div id="app"></div>
<script id="openapi-document" type="application/json">
$spec
</script>
<script src="{SCALAR_SCRIPT}"></script>
<script>
    Scalar.createApiReference('#app', {{
        content: JSON.parse(document.getElementById('openapi-document').textContent),
    }});
</script>
</body>
</html>
"#
            ))
            .to_html();
        Self(page)
    }

    /// The OpenAPI document embedded in an explorer page (what a page made by
    /// [`DocsPage::new`] shows), for the services' tests to compare with
    /// `/openapi.json`.
    pub fn embedded_document(page: &str) -> Option<&str> {
        page.split_once(r#"<script id="openapi-document" type="application/json">"#)
            .and_then(|(_, rest)| rest.split_once("</script>"))
            .map(|(document, _)| document)
    }
}

/// An interactive explorer of this API, over its OpenAPI document. Open
/// without a token.
#[utoipa::path(get, path = "/docs", tag = "meta",
    responses(
        (status = 200, description = "The API explorer (Scalar), with the OpenAPI document embedded", body = String, content_type = "text/html"),
        (status = 431, description = "Request head over 16 KiB", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn docs(page: web::Data<DocsPage>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(page.0.clone())
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
