//! Invitations: a PENDING user receives a one-time link to set its password.
//! The token is 256 random bits, stored only as its SHA-256; the mail goes
//! through the outbox in the transaction that creates the user.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use sea_orm::ConnectionTrait;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    app::App,
    error::Result,
    store::{self, entity::invitation, outbox::NewMail},
};

/// The stored form of an invitation token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Who an invitation is for: a PENDING user, its address and the tenant the
/// invitation admits it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitee {
    pub user_id: Uuid,
    pub email: String,
    pub tenant_id: Uuid,
}

/// Creates the invitations of users and queues their mails: one multi-row
/// INSERT of invitations and one of mails (for up to 500 invitees).
pub async fn issue<C: ConnectionTrait>(db: &C, app: &App, invitees: &[Invitee], now: DateTime<Utc>) -> Result<()> {
    let (invitations, mails) = invitees.iter().map(|invitee| prepare(app, invitee, now)).unzip();
    store::credentials::insert_invitations(db, invitations).await?;
    store::outbox::enqueue(db, mails, now).await
}

/// One user's invitation (a fresh token, stored as its hash) and its mail
/// (carrying the token), not written yet.
fn prepare(app: &App, invitee: &Invitee, now: DateTime<Utc>) -> (invitation::Model, NewMail) {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let ttl = chrono::Duration::from_std(app.config.invitation_ttl.into()).unwrap_or(chrono::Duration::days(7));
    let expires_at = now + ttl;
    let invitation = invitation::Model {
        id: Uuid::now_v7(),
        user_id: invitee.user_id,
        tenant_id: invitee.tenant_id,
        token_hash: token_hash(&token),
        expires_at,
        accepted_at: None,
        created_at: now,
    };
    let link = format!(
        "{}/invitations/accept?token={token}",
        app.config.public_url.trim_end_matches('/')
    );
    let body = format!(
        "You have been invited to Castellan.\n\n\
         Open this link to complete your account setup:\n{link}\n\n\
         The link works once and expires on {}.\n",
        expires_at.format("%Y-%m-%d %H:%M UTC")
    );
    let mail = NewMail {
        recipient: invitee.email.clone(),
        subject: "Complete your account setup".to_owned(),
        body,
    };
    (invitation, mail)
}
