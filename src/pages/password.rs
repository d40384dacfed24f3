//! `GET|POST /password/change`: a person changes its password, e.g. the
//! temporary one an administrator gave it. The same operation as
//! AuthService.ChangePassword: a wrong current password answers and counts
//! exactly as a failed login does.

use std::{net::SocketAddr, sync::Arc};

use askama::Template;
use axum::{
    Extension,
    body::Bytes,
    extract::{ConnectInfo, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;

use super::{FormErrors, MessagePage, Page, PasswordPolicy, client_address, decode_form, error_page, status_of};
use crate::{app::App, auth::Call, domain::auth, error::Error};

/// The form's fields under their domain names, with their labels.
const LABELS: &[(&str, &str)] = &[
    ("username", "Username"),
    ("current_password", "Current password"),
    ("new_password", "New password"),
    ("new_password_confirmation", "New password confirmation"),
];

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct ChangeForm {
    username: String,
    current_password: String,
    new_password: String,
    new_password_confirmation: String,
}

debug_without_secrets!(ChangeForm { username });

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    username: &'a str,
    policy: PasswordPolicy,
    errors: FormErrors,
}

/// The empty form.
pub async fn show(State(app): State<Arc<App>>) -> Page {
    Page::new(
        StatusCode::OK,
        &PasswordPage {
            username: "",
            policy: PasswordPolicy::of(&app),
            errors: FormErrors::default(),
        },
    )
}

/// Changes the password; errors re-render the form with the username kept
/// (never a password).
pub async fn change(
    State(app): State<Arc<App>>,
    connect_info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Page {
    let form: ChangeForm = match decode_form(&app, &headers, body) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let outcome = if form.new_password != form.new_password_confirmation {
        Err(Error::invalid(
            "new_password_confirmation",
            "does not match the new password",
        ))
    } else {
        auth::change_password_of(
            &app,
            &form.username,
            &form.current_password,
            &form.new_password,
            client_address(connect_info),
            // The same operation as the RPC, so the same audit action.
            Call::new("/identity.v1.AuthService/ChangePassword", &headers),
        )
        .await
    };
    let error = match outcome {
        Ok(()) => return changed_page(),
        Err(error) => error,
    };
    let errors = match &error {
        Error::Invalid(violations) => FormErrors::from_violations(violations.clone(), LABELS),
        Error::InvalidCredentials => FormErrors::form_error("The username or the current password is wrong."),
        Error::Throttled { retry_after } => FormErrors::form_error(format!(
            "Too many attempts. Wait {} seconds, then try again.",
            retry_after.as_secs().max(1)
        )),
        _ => return error_page(&error),
    };
    Page::new(
        status_of(&error),
        &PasswordPage {
            username: &form.username,
            policy: PasswordPolicy::of(&app),
            errors,
        },
    )
    .with_retry_after(&error)
}

fn changed_page() -> Page {
    MessagePage {
        title: "Your password is changed",
        paragraphs: vec!["Sign in with your new password from now on.".into()],
    }
    .page(StatusCode::OK)
}
