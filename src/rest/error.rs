//! The one mapping from the domain [`Error`] to an HTTP answer: the status of
//! API.md's table and a JSON body `{ "code", "message", "details" }`, where
//! `code` is the `identity.v1.ErrorReason` name without its prefix
//! ([`reason_code`]) and `details` lists the field violations. The classification itself is shared with gRPC
//! ([`classify`]), so both edges say the same thing.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tonic::Code;
use utoipa::ToSchema;

use crate::{
    error::{AuthFailure, Error, FieldViolation, MAX_DETAILED_VIOLATIONS},
    grpc::status::{classify, reason_code},
    pb::ErrorReason,
};

/// The body of every REST error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Why, as an UPPER_SNAKE `ErrorReason` (`FIELD_INVALID`, `RESOURCE_NOT_FOUND`...).
    pub code: String,
    /// A human-readable message; never SQL, hashes or tokens.
    pub message: String,
    /// The invalid fields, for 400 (and 413, 415) answers (the first 100; the
    /// message counts the rest); empty otherwise.
    pub details: Vec<FieldViolationBody>,
}

/// One invalid field: its JSON path (`[3].email`, `firstName`) and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldViolationBody {
    pub field: String,
    pub description: String,
}

/// A domain error on its way out of a REST handler.
#[derive(Debug)]
pub struct RestError {
    error: Error,
    status: Option<StatusCode>,
}

impl From<Error> for RestError {
    fn from(error: Error) -> Self {
        Self { error, status: None }
    }
}

impl RestError {
    /// A request body over the size limit: 413, naming `body`.
    pub fn too_large(limit: usize) -> Self {
        Self {
            error: Error::invalid("body", format!("larger than {limit} bytes")),
            status: Some(StatusCode::PAYLOAD_TOO_LARGE),
        }
    }

    /// A body that is not JSON by its `Content-Type`: 415, naming the header.
    pub fn unsupported_media_type() -> Self {
        Self {
            error: Error::invalid("content-type", "must be application/json (or a +json type)"),
            status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE),
        }
    }

    /// A body that could not be read for another reason than its size (the
    /// client broke off mid-body): `status` is the one axum gives, naming
    /// `body`.
    pub fn unreadable_body(status: StatusCode) -> Self {
        Self {
            error: Error::invalid("body", "could not be read"),
            status: Some(status),
        }
    }

    /// A method the path does not have (`PUT /tenants/users`): 405, with
    /// the `Allow` header axum adds. The reason is RESOURCE_NOT_FOUND, as for
    /// an unknown path: the route asked for does not exist (what gRPC
    /// answers for an unknown method), and `ErrorReason` has no reason of
    /// its own for it; FIELD_INVALID would promise field violations.
    pub fn method_not_allowed() -> Self {
        Self {
            error: Error::NotFound("method for this path"),
            status: Some(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// The domain error inside.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// Renames the fields an error names (domain names → a dialect's JSON
    /// names): the violated ones, and the one whose value is taken.
    pub fn rename_fields(mut self, rename: impl Fn(&str) -> String) -> Self {
        match &mut self.error {
            Error::Invalid(violations) => {
                for violation in violations.iter_mut() {
                    violation.field = rename(&violation.field);
                }
            }
            Error::AlreadyExists { field } => *field = rename(field),
            _ => {}
        }
        self
    }
}

/// The gRPC code of an error answer, kept in the response's extensions so
/// the gateway can record a refused mutation with the code its gRPC twin
/// would have answered (see `rest::record_refusals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub Code);

/// The HTTP status of a gRPC code, as API.md's error table says.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let (code, reason, message) = classify(&self.error);
        let status = self.status.unwrap_or_else(|| http_status(code));
        let retry_after = match &self.error {
            Error::Throttled { retry_after } => Some(retry_after.as_secs().max(1)),
            _ => None,
        };
        let challenge = (status == StatusCode::UNAUTHORIZED).then(|| bearer_challenge(&self.error));
        let details = match self.error {
            Error::Invalid(violations) => violations
                .into_iter()
                .take(MAX_DETAILED_VIOLATIONS)
                .map(|FieldViolation { field, description }| FieldViolationBody { field, description })
                .collect(),
            _ => Vec::new(),
        };
        let body = ErrorBody {
            code: reason_code(reason).to_owned(),
            message,
            details,
        };
        let mut response = (status, Json(body)).into_response();
        response.extensions_mut().insert(ErrorCode(code));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}

/// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3): the scheme, and
/// `error="invalid_token"` when a token was sent and refused (malformed,
/// expired, badly signed, revoked, or its subject no longer active); no error code
/// when none was sent.
fn bearer_challenge(error: &Error) -> &'static str {
    match error {
        Error::Unauthenticated(AuthFailure::Invalid | AuthFailure::SubjectInactive | AuthFailure::Revoked) => {
            r#"Bearer error="invalid_token""#
        }
        _ => "Bearer",
    }
}

/// The answer to a panicking handler (the server stays up); the panic's
/// message goes to the log, in the call's span with its request id.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    tracing::error!(panic = message, "a REST handler panicked");
    let body = ErrorBody {
        code: reason_code(ErrorReason::InternalError).to_owned(),
        message: "internal error".to_owned(),
        details: Vec::new(),
    };
    (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
}

/// `first_name` → `firstName`, segment by segment (`users[3].first_name` →
/// `users[3].firstName`): the proto3 JSON names of domain field paths.
pub fn camel_case_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// A domain field path in a dialect's JSON names: the first segment through
/// `names` (`role_ids` → `roles`), every other one camel-cased. A create's
/// `request_id` comes in the `Idempotency-Key` header in every dialect, and
/// is named so.
pub fn rename_path(path: &str, names: &[(&str, &str)]) -> String {
    if path == "request_id" {
        return super::IDEMPOTENCY_KEY.to_owned();
    }
    let end = path.find(['[', '.']).unwrap_or(path.len());
    let (head, rest) = path.split_at(end);
    let head = names
        .iter()
        .find(|(from, _)| *from == head)
        .map_or_else(|| camel_case_path(head), |(_, to)| (*to).to_owned());
    head + &camel_case_path(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_camel_case() {
        assert_eq!(camel_case_path("users[3].first_name"), "users[3].firstName");
        assert_eq!(camel_case_path("max_devices"), "maxDevices");
        assert_eq!(camel_case_path("email"), "email");
    }

    #[test]
    fn dialect_names_replace_the_first_segment() {
        let names = [("role_ids", "roles"), ("id", "locator")];
        assert_eq!(rename_path("role_ids[2]", &names), "roles[2]");
        assert_eq!(rename_path("id", &names), "locator");
        assert_eq!(rename_path("request_id", &names), "idempotency-key");
        assert_eq!(rename_path("first_name", &names), "firstName");
    }

    #[test]
    fn every_status_of_the_table() {
        for (code, status) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::FailedPrecondition, 412),
            (Code::ResourceExhausted, 429),
            (Code::Unavailable, 503),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn a_401_challenges_for_a_bearer_token() {
        for (failure, challenge) in [
            (AuthFailure::Missing, "Bearer"),
            (AuthFailure::Invalid, r#"Bearer error="invalid_token""#),
            (AuthFailure::SubjectInactive, r#"Bearer error="invalid_token""#),
            (AuthFailure::Revoked, r#"Bearer error="invalid_token""#),
        ] {
            let response = RestError::from(Error::Unauthenticated(failure)).into_response();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(response.headers()[header::WWW_AUTHENTICATE], challenge, "{failure:?}");
        }
        let response = RestError::from(Error::PermissionDenied("no".into())).into_response();
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    }

    #[test]
    fn throttling_sets_retry_after() {
        let response = RestError::from(Error::Throttled {
            retry_after: std::time::Duration::from_secs(30),
        })
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
    }
}
