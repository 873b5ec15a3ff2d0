//! The dashboard page (`GET /api/v1/jobs/ui`, with `app.js` and `app.css` beside it): three static
//! files compiled into the component (`src/console/page/`), plain HTML, CSS and JavaScript with
//! no build step and nothing fetched from elsewhere. They hold no data: the script asks for the
//! secret, keeps it in `sessionStorage` and reads the JSON routes with it, so serving the files
//! needs no secret.
//!
//! What the page shows comes from untrusted sources (Meta's error messages, the processor's
//! answers, stored in the database): the script inserts it as text only, and the
//! Content-Security-Policy lets scripts, styles and requests come from this origin alone, so no
//! inline or remote script runs even if some text were ever taken for markup.

use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use http::StatusCode;

use crate::api::{self, Response};
use crate::routes::Asset;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One of the page's files, with its security headers.
pub fn response(asset: Asset) -> Response {
    let (content_type, body) = match asset {
        Asset::Html => ("text/html; charset=utf-8", include_str!("page/index.html")),
        Asset::Script => ("text/javascript; charset=utf-8", include_str!("page/app.js")),
        Asset::Style => ("text/css; charset=utf-8", include_str!("page/app.css")),
    };
    let mut response = api::respond(StatusCode::OK, content_type, body.to_owned());
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
