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
    store::{self, entity::invitation},
};

/// The stored form of an invitation token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates an invitation for `user_id` into `tenant_id` and queues its mail.
pub async fn issue<C: ConnectionTrait>(
    db: &C,
    app: &App,
    user_id: Uuid,
    email: &str,
    tenant_id: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let ttl = chrono::Duration::from_std(app.config.invitation_ttl.into()).unwrap_or(chrono::Duration::days(7));
    let expires_at = now + ttl;
    store::credentials::insert_invitation(
        db,
        invitation::Model {
            id: Uuid::now_v7(),
            user_id,
            tenant_id,
            token_hash: token_hash(&token),
            expires_at,
            accepted_at: None,
            created_at: now,
        },
    )
    .await?;
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
    store::outbox::enqueue(db, email, "Complete your account setup", &body, now).await?;
    Ok(())
}
