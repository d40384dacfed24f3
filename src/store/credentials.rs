//! Credentials, login throttling counters and invitations.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, IdenStatic, QueryFilter, QueryOrder,
    QueryTrait, TransactionTrait,
    sea_query::{CaseStatement, Expr, ExprTrait, InsertStatement, OnConflict},
};
use uuid::Uuid;

use crate::{
    error::Result,
    store::{
        self,
        entity::{credential, invitation, login_failure, tenant, tenant_membership, user},
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

/// Replaces a user's password hash with another of the same password, if
/// it is still `old` (a password set meanwhile stands); whether it did.
pub async fn rehash_password<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    old: &str,
    fresh: String,
    now: DateTime<Utc>,
) -> Result<bool> {
    let replaced = credential::Entity::update_many()
        .col_expr(credential::Column::PasswordHash, Expr::value(fresh))
        .col_expr(credential::Column::UpdatedAt, Expr::value(now))
        .filter(credential::Column::UserId.eq(user_id))
        .filter(credential::Column::PasswordHash.eq(old))
        .exec(db)
        .await?
        .rows_affected;
    Ok(replaced == 1)
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

/// The user's first tenant that is not SUSPENDED (in the order of
/// [`first_tenant`]).
pub async fn first_active_tenant<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Option<Uuid>> {
    Ok(tenant_membership::Entity::find()
        .inner_join(tenant::Entity)
        .filter(tenant_membership::Column::UserId.eq(user_id))
        .filter(tenant::Column::Status.ne(crate::domain::tenants::STATUS_SUSPENDED))
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

/// Reserves one attempt under each of `counters` (a key and its limits):
/// `Ok(None)` when the attempt may be evaluated, `Ok(Some(until))` when a
/// key is locked until then (the latest such time). The usual case, no key
/// locked or used up, is one statement that counts them all. A key it did
/// not count goes through [`reserve_attempt`] in a transaction of its own,
/// which counts it if it has freed up meanwhile and otherwise decides its
/// lock.
pub async fn reserve_attempts(
    db: &DatabaseConnection,
    counters: &[(&str, ThrottleLimits)],
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let counted = count_attempts(db, counters, now).await?;
    let mut locked_until = None;
    for (key, limits) in counters.iter().filter(|(key, _)| !counted.iter().any(|c| c == key)) {
        let txn = db.begin().await?;
        let lock = reserve_attempt(&txn, key, *limits, now).await?;
        txn.commit().await?;
        locked_until = std::cmp::max(locked_until, lock);
    }
    Ok(locked_until)
}

/// Counts one attempt under each of `counters` that is neither locked nor
/// used up, in one statement, and names the keys it counted.
async fn count_attempts<C: ConnectionTrait>(
    db: &C,
    counters: &[(&str, ThrottleLimits)],
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    let Some(statement) = count_statement(counters, now) else {
        return Ok(Vec::new());
    };
    Ok(db
        .query_all(&statement)
        .await?
        .iter()
        .map(|row| row.try_get("", login_failure::Column::Key.as_str()))
        .collect::<Result<_, _>>()?)
}

/// The upsert of [`count_attempts`] (`None` for no counters): each
/// counter's first attempt inserts it with itself counted; a later one counts
/// itself, in a fresh window when the last one has passed, unless the key is
/// locked or has used up its window's attempts (its own limits, chosen by
/// key). `RETURNING key` names the counters it counted.
fn count_statement(counters: &[(&str, ThrottleLimits)], now: DateTime<Utc>) -> Option<InsertStatement> {
    if counters.is_empty() {
        return None;
    }
    let by_key = |value: &dyn Fn(&ThrottleLimits) -> Expr| {
        let mut case = CaseStatement::new();
        for (key, limits) in counters {
            case = case.case(
                Expr::col((login_failure::Entity, login_failure::Column::Key)).eq(*key),
                value(limits),
            );
        }
        case
    };
    let window_started_at = Expr::col((login_failure::Entity, login_failure::Column::WindowStartedAt));
    let failures = Expr::col((login_failure::Entity, login_failure::Column::Failures));
    let window_passed = window_started_at
        .clone()
        .lt(by_key(&|limits| Expr::val(now - limits.window)));
    let rows = counters.iter().map(|(key, _)| login_failure::ActiveModel {
        key: Set((*key).to_owned()),
        failures: Set(1),
        window_started_at: Set(now),
        locked_until: Set(None),
        lockouts: Set(0),
    });
    let mut insert = login_failure::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::column(login_failure::Column::Key)
                .value(
                    login_failure::Column::Failures,
                    Expr::case(window_passed.clone(), 1).finally(failures.clone().add(1)),
                )
                .value(
                    login_failure::Column::WindowStartedAt,
                    Expr::case(window_passed.clone(), now).finally(window_started_at),
                )
                .action_cond_where(
                    Condition::all().add(not_locked(now)).add(
                        Condition::any()
                            .add(window_passed)
                            .add(failures.lt(by_key(&|limits| Expr::val(limits.max_failures)))),
                    ),
                )
                .to_owned(),
        )
        .into_query();
    insert.returning_col(login_failure::Column::Key);
    Some(insert)
}

/// Reserves one attempt under `key`, atomically: `Ok(None)` when the attempt
/// may be evaluated, `Ok(Some(until))` when the key is locked until then.
/// Attempts are counted before they are evaluated, so concurrent attempts can
/// never evaluate more than `max_failures` passwords in a window.
async fn reserve_attempt<C: ConnectionTrait>(
    db: &C,
    key: &str,
    limits: ThrottleLimits,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    if !count_attempts(db, &[(key, limits)], now).await?.is_empty() {
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

/// Deletes the throttling counters whose window started before `before`
/// and that are not locked at `now`; returns how many.
pub async fn forget_attempts<C: ConnectionTrait>(db: &C, before: DateTime<Utc>, now: DateTime<Utc>) -> Result<u64> {
    Ok(login_failure::Entity::delete_many()
        .filter(login_failure::Column::WindowStartedAt.lt(before))
        .filter(not_locked(now))
        .exec(db)
        .await?
        .rows_affected)
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

/// Ends the user's open invitations now (their links stop working).
pub async fn withdraw_invitations<C: ConnectionTrait>(db: &C, user_id: Uuid, now: DateTime<Utc>) -> Result<()> {
    invitation::Entity::update_many()
        .col_expr(invitation::Column::ExpiresAt, Expr::value(now))
        .filter(invitation::Column::UserId.eq(user_id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(())
}

/// Ends the user's open invitations to these tenants now (when it leaves
/// them: their links would admit it to a tenant it no longer belongs to);
/// how many it ended.
pub async fn withdraw_invitations_to<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    tenant_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64> {
    let withdrawn = invitation::Entity::update_many()
        .col_expr(invitation::Column::ExpiresAt, Expr::value(now))
        .filter(invitation::Column::UserId.eq(user_id))
        .filter(invitation::Column::TenantId.is_in(tenant_ids.to_vec()))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?
        .rows_affected;
    Ok(withdrawn)
}

/// Marks the invitation used if it is still open; `false` when another
/// request used it first, or it expired or was withdrawn
/// ([`withdraw_invitations`]) since it was read.
pub async fn use_invitation<C: ConnectionTrait>(db: &C, id: Uuid, now: DateTime<Utc>) -> Result<bool> {
    let result = invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedAt, Expr::value(now))
        .filter(invitation::Column::Id.eq(id))
        .filter(invitation::Column::AcceptedAt.is_null())
        .filter(invitation::Column::ExpiresAt.gt(now))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
