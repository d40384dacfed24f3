//! `GET|POST /invitations/accept`: the page an invitation mail links to.

use std::sync::Arc;

use askama::Template;
use axum::{
    body::Bytes,
    extract::{RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
};
use serde::Deserialize;

use super::{FormErrors, MessagePage, Page, PasswordPolicy, decode_form, error_page};
use crate::{
    app::App,
    auth::Call,
    domain::auth::{self, AcceptInvitation, InvitationDetails},
    error::Error,
};

/// The form's fields under their domain names, with their labels.
const LABELS: &[(&str, &str)] = &[
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("password", "Password"),
    ("password_confirmation", "Password confirmation"),
];

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct TokenQuery {
    token: String,
}

debug_without_secrets!(TokenQuery {});

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct AcceptForm {
    token: String,
    first_name: String,
    last_name: String,
    password: String,
    password_confirmation: String,
}

debug_without_secrets!(AcceptForm { first_name, last_name });

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage<'a> {
    token: &'a str,
    invitation: &'a InvitationDetails,
    first_name: &'a str,
    last_name: &'a str,
    policy: PasswordPolicy,
    errors: FormErrors,
}

/// Shows the form for an open invitation, or that the link is no longer valid.
pub async fn show(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Page {
    let query: TokenQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).unwrap_or_default();
    match auth::describe_invitation(&app, &query.token).await {
        Ok(invitation) => Page::new(
            StatusCode::OK,
            &InvitationPage {
                token: &query.token,
                first_name: &invitation.first_name,
                last_name: &invitation.last_name,
                invitation: &invitation,
                policy: PasswordPolicy::of(&app),
                errors: FormErrors::default(),
            },
        ),
        Err(error) => failure(&error),
    }
}

/// Accepts the invitation (AuthService.AcceptInvitation's operation); a
/// refused password re-renders the form with the names typed.
pub async fn accept(State(app): State<Arc<App>>, headers: HeaderMap, body: Result<Bytes, BytesRejection>) -> Page {
    let form: AcceptForm = match decode_form(&app, &headers, body) {
        Ok(form) => form,
        Err(page) => return page,
    };
    let invitation = match auth::describe_invitation(&app, &form.token).await {
        Ok(invitation) => invitation,
        Err(error) => return failure(&error),
    };
    let outcome = if form.password != form.password_confirmation {
        Err(Error::invalid("password_confirmation", "does not match the password"))
    } else {
        auth::accept_invitation(
            &app,
            AcceptInvitation {
                token: form.token.clone(),
                password: form.password,
                first_name: Some(form.first_name.clone()),
                last_name: Some(form.last_name.clone()),
                // The same operation as the RPC, so the same audit action.
                call: Call::new("/identity.v1.AuthService/AcceptInvitation", &headers),
            },
        )
        .await
    };
    let violations = match outcome {
        Ok(record) => return ready(&record.user.username, &invitation.tenant_name),
        Err(Error::Invalid(violations)) => violations,
        Err(error) => return failure(&error),
    };
    Page::new(
        StatusCode::BAD_REQUEST,
        &InvitationPage {
            token: &form.token,
            invitation: &invitation,
            first_name: &form.first_name,
            last_name: &form.last_name,
            policy: PasswordPolicy::of(&app),
            errors: FormErrors::from_violations(violations, LABELS),
        },
    )
}

fn ready(username: &str, tenant_name: &str) -> Page {
    MessagePage {
        title: "Your account is ready",
        paragraphs: vec![
            format!("Your account in {tenant_name} is set up."),
            format!("Sign in with the username {username} and the password you just chose."),
        ],
    }
    .page(StatusCode::OK)
}

/// Unknown, used and expired links look alike: no form, nothing about users.
fn failure(error: &Error) -> Page {
    match error {
        Error::NotFound(_) => MessagePage {
            title: "This link is no longer valid",
            paragraphs: vec![
                "The invitation link is unknown, has expired, or was already used.".into(),
                "Ask your administrator to send a new invitation.".into(),
            ],
        }
        .page(StatusCode::NOT_FOUND),
        other => error_page(other),
    }
}
