//! The one mapping from the domain [`Error`] to `tonic::Status` (AIP-193):
//! every status carries an `ErrorInfo` (domain `castellan`, an UPPER_SNAKE
//! reason: an `identity.v1.ErrorReason` name without its prefix, see
//! [`reason_code`]); validation errors add `BadRequest`
//! field violations, throttling adds `RetryInfo`. Internal errors are logged
//! here, in the request's span, and answered with a generic message.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::{
    error::{AuthFailure, Error, MAX_DETAILED_VIOLATIONS},
    pb::ErrorReason,
};

/// `ErrorInfo.domain` of every Castellan error.
pub const ERROR_DOMAIN: &str = "castellan";

/// The reason a client reads, in `ErrorInfo` and as the REST gateway's
/// `code`: the value's name without the enum's prefix (`TOKEN_MISSING`).
pub fn reason_code(reason: ErrorReason) -> &'static str {
    let name = reason.as_str_name();
    name.strip_prefix("ERROR_REASON_").unwrap_or(name)
}

/// The gRPC code, the `ErrorReason` and the client-facing message of an
/// error: the one classification both edges use (the REST gateway maps the
/// code to an HTTP status). Internal errors are logged here.
pub fn classify(error: &Error) -> (Code, ErrorReason, String) {
    match error {
        Error::Invalid(_) => (Code::InvalidArgument, ErrorReason::FieldInvalid, error.to_string()),
        Error::NotFound(what) => (
            Code::NotFound,
            ErrorReason::ResourceNotFound,
            format!("{what} not found"),
        ),
        Error::AlreadyExists { field } => (
            Code::AlreadyExists,
            ErrorReason::ResourceExists,
            format!("{field} already exists"),
        ),
        Error::VersionMismatch(message) => (Code::Aborted, ErrorReason::VersionMismatch, message.clone()),
        Error::ConcurrentChange => (Code::Aborted, ErrorReason::ConcurrentChange, error.to_string()),
        Error::FailedPrecondition(message) => (
            Code::FailedPrecondition,
            ErrorReason::PreconditionFailed,
            message.clone(),
        ),
        Error::RequestIdReused => (
            Code::FailedPrecondition,
            ErrorReason::RequestIdReused,
            error.to_string(),
        ),
        Error::PermissionDenied(message) => (Code::PermissionDenied, ErrorReason::PermissionMissing, message.clone()),
        Error::Unauthenticated(failure) => {
            let (reason, message) = match failure {
                AuthFailure::Missing => (ErrorReason::TokenMissing, "missing bearer token"),
                AuthFailure::Invalid => (ErrorReason::TokenInvalid, "invalid token"),
                AuthFailure::SubjectInactive => {
                    (ErrorReason::SubjectInactive, "the token's subject is no longer active")
                }
                AuthFailure::Revoked => (ErrorReason::TokenRevoked, "the token was revoked; log in again"),
            };
            (Code::Unauthenticated, reason, message.to_owned())
        }
        Error::Unavailable => (
            Code::Unavailable,
            ErrorReason::StorageUnavailable,
            "storage unavailable, retry later".to_owned(),
        ),
        Error::InvalidCredentials => (
            Code::Unauthenticated,
            ErrorReason::InvalidCredentials,
            "invalid credentials".to_owned(),
        ),
        Error::PasswordChangeRequired => (
            Code::PermissionDenied,
            ErrorReason::PasswordChangeRequired,
            "password change required: call AuthService/ChangePassword first".to_owned(),
        ),
        Error::Throttled { .. } => (
            Code::ResourceExhausted,
            ErrorReason::LoginThrottled,
            "too many attempts".to_owned(),
        ),
        Error::Internal(detail) => {
            tracing::error!(error = %detail, "internal error");
            (Code::Internal, ErrorReason::InternalError, "internal error".to_owned())
        }
    }
}

/// How many bytes of field paths and descriptions a status lists in its
/// `BadRequest` at most (base64 makes them a third longer in the trailer),
/// besides [`MAX_DETAILED_VIOLATIONS`].
const MAX_DETAILED_VIOLATION_BYTES: usize = 6 * 1024;

pub fn to_status(error: Error) -> Status {
    let (code, reason, message) = classify(&error);
    let mut details = ErrorDetails::new();
    details.set_error_info(reason_code(reason), ERROR_DOMAIN, HashMap::new());
    match error {
        Error::Invalid(violations) => {
            // The details travel in a trailer, so they list the first
            // violations that fit (the message names ten and counts the
            // rest): a batch of 100 drafts can break many rules, and a
            // trailer over HTTP/2's header limits would end the whole
            // connection, not just this call.
            let mut bytes = 0;
            for violation in violations.into_iter().take(MAX_DETAILED_VIOLATIONS) {
                bytes += violation.field.len() + violation.description.len();
                if bytes > MAX_DETAILED_VIOLATION_BYTES {
                    break;
                }
                details.add_bad_request_violation(violation.field, violation.description);
            }
        }
        Error::Throttled { retry_after } => {
            details.set_retry_info(Some(retry_after));
        }
        _ => {}
    }
    Status::with_error_details(code, message, details)
}
