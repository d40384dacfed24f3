//! Credentials, login throttling counters and invitations.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use uuid::Uuid;

use crate::{
    error::Result,
    store::{
        self,
        entity::{credential, invitation, login_failure, tenant_membership, user},
    },
};

/// A user by username (usernames are unique across tenants), with its password hash.
pub async fn user_with_credential<C: ConnectionTrait>(
    db: &C,
    username: &str,
) -> Result<Option<(user::Model, Option<credential::Model>)>> {
    Ok(user::Entity::find()
        .filter(user::Column::Username.eq(username.trim().to_lowercase()))
        .find_also_related(credential::Entity)
        .one(db)
        .await?)
}

pub async fn credential_of<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<credential::Model>> {
    Ok(credential::Entity::find_by_id(user_id).one(db).await?)
}

/// Sets (or replaces) a user's password hash.
pub async fn set_password_hash<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    hash: String,
    now: DateTime<Utc>,
) -> Result<()> {
    credential::Entity::insert(credential::ActiveModel {
        user_id: Set(user_id),
        password_hash: Set(hash),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(credential::Column::UserId)
            .update_columns([credential::Column::PasswordHash, credential::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// The tenant a login lands in by default: the user's oldest membership.
pub async fn first_tenant<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<Uuid>> {
    Ok(tenant_membership::Entity::find()
        .filter(tenant_membership::Column::UserId.eq(user_id))
        .order_by_asc(tenant_membership::Column::CreatedAt)
        .order_by_asc(tenant_membership::Column::TenantId)
        .one(db)
        .await?
        .map(|m| m.tenant_id))
}

/// Throttling settings for one counter.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    pub max_failures: i32,
    pub window: chrono::Duration,
    pub lockout: chrono::Duration,
    pub max_lockout: chrono::Duration,
}

fn not_locked(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(login_failure::Column::LockedUntil.is_null())
        .add(login_failure::Column::LockedUntil.lte(now))
}

/// Reserves one attempt under `key`, atomically: `Ok(None)` when the attempt
/// may be evaluated, `Ok(Some(until))` when the key is locked until then.
/// Attempts are counted before they are evaluated, so concurrent attempts can
/// never evaluate more than `max_failures` passwords in a window.
pub async fn reserve_attempt<C: ConnectionTrait>(
    db: &C,
    key: &str,
    limits: ThrottleLimits,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    // One statement (it was three): the first attempt under a key inserts
    // its counter with itself counted; a later one counts itself, in a fresh
    // window when the last one has passed, unless the key is locked or has
    // used up its window's attempts: then nothing is written, and what
    // follows decides the lock.
    let window_passed = login_failure::Column::WindowStartedAt.lt(now - limits.window);
    let failures = Expr::col((login_failure::Entity, login_failure::Column::Failures));
    let window_started_at = Expr::col((login_failure::Entity, login_failure::Column::WindowStartedAt));
    let reserved = login_failure::Entity::insert(login_failure::ActiveModel {
        key: Set(key.to_owned()),
        failures: Set(1),
        window_started_at: Set(now),
        locked_until: Set(None),
        lockouts: Set(0),
    })
    .on_conflict(
        OnConflict::column(login_failure::Column::Key)
            .value(
                login_failure::Column::Failures,
                Expr::case(window_passed.clone(), 1).finally(failures.add(1)),
            )
            .value(
                login_failure::Column::WindowStartedAt,
                Expr::case(window_passed.clone(), now).finally(window_started_at),
            )
            .action_cond_where(
                sea_orm::Condition::all().add(not_locked(now)).add(
                    sea_orm::Condition::any()
                        .add(window_passed)
                        .add(login_failure::Column::Failures.lt(limits.max_failures)),
                ),
            )
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    if reserved == 1 {
        return Ok(None);
    }
    let Some(row) = login_failure::Entity::find_by_id(key).one(db).await? else {
        return Ok(None);
    };
    if let Some(until) = row.locked_until
        && until > now
    {
        return Ok(Some(until));
    }
    // The limit is reached: lock, for twice as long as the previous lockout.
    let wait = limits
        .lockout
        .checked_mul(1 << row.lockouts.clamp(0, 20))
        .unwrap_or(limits.max_lockout)
        .min(limits.max_lockout);
    let until = now + wait;
    login_failure::Entity::update_many()
        .col_expr(login_failure::Column::LockedUntil, Expr::value(until))
        .col_expr(
            login_failure::Column::Lockouts,
            Expr::col(login_failure::Column::Lockouts).add(1),
        )
        .col_expr(login_failure::Column::Failures, Expr::value(0))
        .col_expr(login_failure::Column::WindowStartedAt, Expr::value(until))
        .filter(login_failure::Column::Key.eq(key))
        .filter(not_locked(now))
        .exec(db)
        .await?;
    // Whoever won the race to lock, the row now says until when.
    Ok(login_failure::Entity::find_by_id(key)
        .one(db)
        .await?
        .and_then(|row| row.locked_until)
        .or(Some(until)))
}

/// Forgets the failures under `key` (after a successful login).
/// Gives back one attempt reserved under `key` that turned out to succeed,
/// so that successes never add up to a lockout (a busy address logging in
/// its users is not an attack); a lockout in force stays.
pub async fn release_attempt<C: ConnectionTrait>(db: &C, key: &str, now: DateTime<Utc>) -> Result<()> {
    login_failure::Entity::update_many()
        .col_expr(
            login_failure::Column::Failures,
            Expr::col(login_failure::Column::Failures).sub(1),
        )
        .filter(login_failure::Column::Key.eq(key))
        .filter(login_failure::Column::Failures.gt(0))
        .filter(not_locked(now))
        .exec(db)
        .await?;
    Ok(())
}

pub async fn clear_attempts<C: ConnectionTrait>(db: &C, key: &str) -> Result<()> {
    login_failure::Entity::delete_by_id(key).exec(db).await?;
    Ok(())
}

/// Records new invitations (only the tokens' hashes are stored) with
/// multi-row INSERTs (one for up to 500 invitations).
pub async fn insert_invitations<C: ConnectionTrait>(db: &C, invitations: Vec<invitation::Model>) -> Result<()> {
    store::insert_rows::<_, _, invitation::ActiveModel>(db, invitations).await
}

/// The open (unused, unexpired) invitation with this token hash.
pub async fn open_invitation<C: ConnectionTrait>(
    db: &C,
    token_hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<invitation::Model>> {
    Ok(invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(token_hash))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .one(db)
        .await?)
}

/// Marks the invitation used; `false` when another request used it first.
pub async fn use_invitation<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
    let result = invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedAt, Expr::value(now))
        .filter(invitation::Column::Id.eq(id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
