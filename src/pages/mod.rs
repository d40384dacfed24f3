//! The pages a person meets in a browser: accepting an invitation and
//! changing a password. Server-rendered with askama (escaped by default,
//! checked at compile time), no script, one small stylesheet served from the
//! binary. Each handler decodes the form, calls the same domain operation as
//! its gRPC twin, and renders; domain errors become statuses through the one
//! mapping the REST gateway uses.
//!
//! Every answer carries a strict Content-Security-Policy, `no-store`,
//! `Referrer-Policy: same-origin` and `nosniff`; posts from another site are
//! refused (Sec-Fetch-Site, else Origin) and bodies are size-limited.

mod invitation;
mod password;

use std::{net::SocketAddr, sync::Arc};

use askama::Template;
use axum::{
    Extension, Router,
    body::Bytes,
    extract::{ConnectInfo, DefaultBodyLimit, rejection::BytesRejection},
    http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header},
    middleware::map_response,
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde::de::DeserializeOwned;

use crate::{
    app::App,
    domain::credentials::{MAX_PASSWORD_CHARS, min_password_chars},
    error::{Error, FieldViolation},
    grpc::status::classify,
    rest::error::http_status,
};

/// Largest form accepted: three passwords (the password page's current,
/// new and confirmation) of the longest length allowed in 4-byte
/// characters, percent-encoded (12 bytes each), and room for the rest.
pub const MAX_FORM_BYTES: usize = 3 * MAX_PASSWORD_CHARS * 12 + 8 * 1024;

/// The stylesheet, served at [`STYLESHEET_PATH`].
const STYLESHEET: &str = include_str!("castellan.css");
/// Where the stylesheet is served.
pub const STYLESHEET_PATH: &str = "/static/castellan.css";

/// The headers every page carries.
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    // The invitation token is in the URL: no other site may see it in a
    // Referer. Not `no-referrer`: under it a browser sends `Origin: null` on
    // the page's own form post, which [`same_origin`] must refuse when
    // `Sec-Fetch-Site` is missing.
    (header::REFERRER_POLICY, "same-origin"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// The pages' routes, with the security headers and the body limit.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/invitations/accept", get(invitation::show).post(invitation::accept))
        .route("/password/change", get(password::show).post(password::change))
        .route(STYLESHEET_PATH, get(stylesheet))
        // After the last route: it applies to the routes added before it.
        .method_not_allowed_fallback(|| async { method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(map_response(with_security_headers))
        .with_state(app)
}

async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// A page asked for with a method it does not have: a page saying so, not
/// an empty answer (axum keeps its `Allow` header).
fn method_not_allowed() -> Page {
    MessagePage {
        title: "Not available this way",
        paragraphs: vec!["This page cannot be requested like that. Open it from the link you received.".into()],
    }
    .page(StatusCode::METHOD_NOT_ALLOWED)
}

async fn stylesheet() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLESHEET)
}

/// The password policy in plain words, for the forms.
pub struct PasswordPolicy {
    pub min_chars: usize,
    pub max_chars: usize,
}

impl PasswordPolicy {
    fn of(app: &App) -> Self {
        Self {
            min_chars: min_password_chars(app.config.password_min_length),
            max_chars: MAX_PASSWORD_CHARS,
        }
    }

    /// The policy as a hint under the password field.
    pub fn describe(&self) -> String {
        format!(
            "At least {} characters (at most {}). Any characters count, spaces too: \
             a few unrelated words make a strong password. Very common passwords are refused.",
            self.min_chars, self.max_chars
        )
    }
}

/// The errors of a submitted form: per field (shown next to it and in the
/// summary) and for the whole form (summary only).
#[derive(Debug, Default)]
pub struct FormErrors {
    fields: Vec<FieldViolation>,
    form: Vec<String>,
}

impl FormErrors {
    /// The message shown next to `field`, or "" when it is fine.
    pub fn get(&self, field: &str) -> &str {
        self.fields
            .iter()
            .find(|v| v.field == field)
            .map_or("", |v| v.description.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.form.is_empty()
    }

    pub fn fields(&self) -> &[FieldViolation] {
        &self.fields
    }

    pub fn form(&self) -> &[String] {
        &self.form
    }

    /// An error about the whole form, shown in the summary.
    fn form_error(message: impl Into<String>) -> Self {
        Self {
            fields: Vec::new(),
            form: vec![message.into()],
        }
    }

    /// The violations of a domain error, as sentences under each field's label;
    /// a violation of a field the form does not show goes to the summary.
    fn from_violations(violations: Vec<FieldViolation>, labels: &[(&str, &str)]) -> Self {
        let mut errors = Self::default();
        for FieldViolation { field, description } in violations {
            match labels.iter().find(|(name, _)| *name == field) {
                Some((_, label)) => errors.fields.push(FieldViolation {
                    field,
                    description: format!("{label} {description}."),
                }),
                None => errors.form.push(format!("{field} {description}.")),
            }
        }
        errors
    }
}

/// A page with its status (and a Retry-After when throttled).
pub struct Page {
    status: StatusCode,
    html: Result<String, askama::Error>,
    retry_after: Option<u64>,
}

impl Page {
    fn new(status: StatusCode, template: &impl Template) -> Self {
        Self {
            status,
            html: template.render(),
            retry_after: None,
        }
    }

    /// Adds a Retry-After when `error` is a throttling refusal.
    fn with_retry_after(mut self, error: &Error) -> Self {
        if let Error::Throttled { retry_after } = error {
            self.retry_after = Some(retry_after.as_secs().max(1));
        }
        self
    }
}

/// The HTTP status of a domain error: the one mapping the REST gateway uses.
fn status_of(error: &Error) -> StatusCode {
    http_status(classify(error).0)
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self.html {
            Ok(html) => {
                let mut response = (self.status, Html(html)).into_response();
                if let Some(seconds) = self.retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            Err(error) => {
                tracing::error!(%error, "rendering a page");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
            }
        }
    }
}

/// A page that only says something: a title and paragraphs.
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    pub title: &'a str,
    pub paragraphs: Vec<String>,
}

impl MessagePage<'_> {
    fn page(&self, status: StatusCode) -> Page {
        Page::new(status, self)
    }
}

/// The page for an error no form can show (storage down, an internal error,
/// a refused post): the status of the one error mapping, a generic message.
fn error_page(error: &Error) -> Page {
    match error {
        Error::Unavailable => MessagePage {
            title: "Please try again shortly",
            paragraphs: vec!["The service is briefly unavailable. Nothing was changed.".into()],
        },
        _ => MessagePage {
            title: "Something went wrong",
            paragraphs: vec!["The request could not be completed. Nothing was changed.".into()],
        },
    }
    .page(status_of(error))
    .with_retry_after(error)
}

/// Refuses a form posted from another site (CSRF): modern browsers send
/// `Sec-Fetch-Site` on every request; older ones send `Origin` on posts,
/// which must then be this server's (the `Host` it was sent to, or the
/// configured public URL); `Origin: null` (an opaque origin: a sandboxed
/// frame, a redirect from elsewhere) is not. A request with neither did not
/// come from a browser that would carry a victim's session, and the forms
/// have none.
fn same_origin(app: &App, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site == "same-origin";
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let public = app.config.public_url.trim_end_matches('/');
    if origin.eq_ignore_ascii_case(public) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

/// Decodes a posted form after the cross-site check; the error is the page
/// to answer with (403 cross-site, 413 too large, 400 undecodable).
fn decode_form<T: DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Page> {
    if !same_origin(app, headers) {
        return Err(MessagePage {
            title: "Form refused",
            paragraphs: vec![
                "This form was sent from another site, so it was not accepted. \
                 Open the page again and send the form from there."
                    .into(),
            ],
        }
        .page(StatusCode::FORBIDDEN));
    }
    let body = body.map_err(|rejection| {
        MessagePage {
            title: "Form refused",
            paragraphs: vec!["The form could not be read; it may be too large.".into()],
        }
        .page(rejection.status())
    })?;
    serde_urlencoded::from_bytes(&body).map_err(|_| {
        MessagePage {
            title: "Form refused",
            paragraphs: vec!["The form could not be read.".into()],
        }
        .page(StatusCode::BAD_REQUEST)
    })
}

/// The client's address, for per-address login throttling, as gRPC uses
/// the peer address.
fn client_address(connect_info: Option<Extension<ConnectInfo<SocketAddr>>>) -> Option<std::net::IpAddr> {
    connect_info.map(|Extension(ConnectInfo(addr))| addr.ip())
}
