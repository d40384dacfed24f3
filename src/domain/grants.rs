//! What users hold in the tenant in context: direct role grants, group
//! memberships, and the effective permissions that follow from them and from
//! direct permission grants.
//!
//! Granting follows two rules. No escalation: a caller grants only roles (and
//! joins users only to groups) whose permissions it holds. Global roles are
//! valid in every tenant and make their holder global, so only a global
//! caller grants or revokes them directly. Every change invalidates the
//! access cache after its commit, so it holds from the next call on.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

use crate::{
    app::App,
    auth::Principal,
    domain::{
        audit::{self, Target},
        groups, now, roles,
        users::{self, UserRecord},
        validate,
    },
    error::{Error, Result, Violations},
    store::{
        self,
        access::GrantSource,
        entity::{group, role, user},
        invalidation::Change,
    },
};

/// A checked change of a user's direct roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleChange {
    pub add: Vec<Uuid>,
    pub remove: Vec<Uuid>,
}

/// One effective permission of a user and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectivePermission {
    /// As granted (may be a wildcard).
    pub permission: String,
    /// Sorted: direct first, then roles, then groups.
    pub sources: Vec<GrantSource>,
}

/// Global roles among `roles` are granted or revoked only by a global caller
/// holding each of their permissions through a global role of its own: a
/// global role acts in every tenant, so what the caller holds in the tenant
/// in context is not enough.
async fn require_global_for<C: ConnectionTrait>(db: &C, caller: &Principal, roles: &[role::Model]) -> Result<()> {
    let global: Vec<Uuid> = roles.iter().filter(|r| r.tenant_id.is_none()).map(|r| r.id).collect();
    if global.is_empty() {
        return Ok(());
    }
    if !caller.global {
        return Err(Error::PermissionDenied(
            "only a caller with a global role may grant or revoke global roles".into(),
        ));
    }
    let permissions: Vec<String> = store::users::permissions_of_roles(db, &global)
        .await?
        .into_values()
        .flatten()
        .collect();
    caller.require_all_globally(&permissions)
}

/// Roles to grant a user: valid in the tenant in context (else
/// INVALID_ARGUMENT naming `field`), no permission the caller lacks, and
/// global ones only by a global caller.
pub async fn check_role_grants<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    field: &str,
    role_ids: &[Uuid],
) -> Result<()> {
    let granted = roles::require_grantable(db, caller, field, role_ids).await?;
    require_global_for(db, caller, &granted).await
}

/// Checks a change of a user's direct roles. Removals are limited to roles
/// valid in the tenant in context; unknown ones are ignored.
pub async fn check_role_change<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    add_field: &str,
    add: Vec<Uuid>,
    remove: &[Uuid],
) -> Result<RoleChange> {
    check_role_grants(db, caller, add_field, &add).await?;
    let revoked = if remove.is_empty() {
        Vec::new()
    } else {
        store::users::roles_valid_in(db, caller.tenant_id, remove).await?
    };
    require_global_for(db, caller, &revoked).await?;
    Ok(RoleChange {
        add,
        remove: revoked.into_iter().map(|r| r.id).collect(),
    })
}

/// The checked change that leaves the user exactly the roles `wanted` among
/// those valid in the tenant in context (UpdateUser `role_ids`). Only roles
/// not held yet are granted, so a list that keeps a role the caller could not
/// grant is accepted.
///
/// Call it in the transaction that applies the change, after locking the
/// user's row ([`store::users::lock`]): the roles it compares with are then
/// those the user holds when the change is written, so concurrent
/// replacements run one after the other, each leaving exactly its list, and
/// the checks apply to what this one really grants and revokes.
pub async fn plan_role_replacement<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    user_id: Uuid,
    wanted: &[Uuid],
) -> Result<RoleChange> {
    let current: Vec<Uuid> = store::users::load_details(db, caller.tenant_id, &[user_id])
        .await?
        .remove(&user_id)
        .map(|d| d.roles.into_iter().map(|r| r.role.id).collect())
        .unwrap_or_default();
    let add: Vec<Uuid> = wanted.iter().filter(|r| !current.contains(r)).copied().collect();
    let remove: Vec<Uuid> = current.iter().filter(|r| !wanted.contains(r)).copied().collect();
    // Held first, so none is deleted between the checks and the write.
    roles::hold_granted(db, caller, "role_ids", &add).await?;
    check_role_change(db, caller, "role_ids", add, &remove).await
}

/// Writes a checked change (inside the caller's transaction).
pub async fn apply_role_change<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    change: &RoleChange,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    store::users::revoke_roles(db, user_id, &change.remove).await?;
    store::users::grant_roles(db, user_id, &change.add, now).await
}

/// Grants and revokes direct roles in one transaction (UpdateUserRoles).
pub async fn update_user_roles(
    app: &App,
    caller: &Principal,
    id: &str,
    add: &[String],
    remove: &[String],
) -> Result<UserRecord> {
    let id = validate::id("id", id)?;
    let mut violations = Violations::new();
    let add = validate::bounded_uuids(&mut violations, "add_role_ids", add, users::MAX_ROLES);
    let remove = validate::bounded_uuids(&mut violations, "remove_role_ids", remove, users::MAX_ROLES);
    if let Some(both) = add.iter().find(|r| remove.contains(r)) {
        violations.add("remove_role_ids", format!("role {both} is both added and removed"));
    }
    violations.finish()?;
    users::member(app, caller, id).await?;
    let change = check_role_change(&app.db, caller, "add_role_ids", add, &remove).await?;
    let txn = app.writer.begin().await?;
    // The user's row first: concurrent changes of its roles then run one
    // after the other, each seeing the grants the previous one wrote (on
    // PostgreSQL two grants of one role would both find none to keep, and
    // the second insert would fail as ALREADY_EXISTS). Then whether it is a
    // member still: one removed from the tenant meanwhile (its roles there
    // went with it) is granted none of them.
    users::lock_member(&txn, caller.tenant_id, id).await?;
    // The roles checked before the transaction may have been deleted since:
    // held now, they stay until the grants are written.
    roles::hold_granted(&txn, caller, "add_role_ids", &change.add).await?;
    apply_role_change(&txn, id, &change, now()).await?;
    audit::record(&txn, caller, Target::User(id), &["role_ids"]).await?;
    let record = users::written_record(app, &txn, caller.tenant_id, id).await?;
    app.commit(txn, Change::Access(id)).await?;
    Ok(record)
}

/// The user (a member of the tenant in context) and the group (of that
/// tenant) of a membership request; NOT_FOUND for either.
async fn membership_parties(
    app: &App,
    caller: &Principal,
    user_id: &str,
    group_id: &str,
) -> Result<(user::Model, group::Model)> {
    let mut violations = Violations::new();
    let user_id = validate::uuid(&mut violations, "user_id", user_id);
    let group_id = validate::uuid(&mut violations, "group_id", group_id);
    violations.finish()?;
    let (user_id, group_id) = user_id
        .zip(group_id)
        .ok_or_else(|| Error::invalid("user_id", "must be a UUID"))?;
    let user = users::member(app, caller, user_id).await?;
    let group = groups::find(app, caller, group_id).await?;
    Ok((user, group))
}

/// Makes a member of the tenant in context a member of one of its groups
/// (already a member: unchanged). The caller must hold the permissions of
/// the group's roles.
pub async fn add_user_to_group(app: &App, caller: &Principal, user_id: &str, group_id: &str) -> Result<UserRecord> {
    let (user, group) = membership_parties(app, caller, user_id, group_id).await?;
    groups::require_joinable(&app.db, caller, &[group.id]).await?;
    let txn = app.writer.begin().await?;
    // The user's row first, then whether it is a member still: one removed
    // from the tenant meanwhile (its groups there went with it) joins none
    // of them. Then the group, held until the membership is written: one
    // deleted since it was found is NOT_FOUND, as a retry would answer. A
    // membership another call adds meanwhile is left as it is.
    users::lock_member(&txn, caller.tenant_id, user.id).await?;
    if store::groups::hold_in(&txn, caller.tenant_id, &[group.id])
        .await?
        .is_empty()
    {
        return Err(Error::NotFound("group"));
    }
    store::users::join_groups(&txn, user.id, &[group.id], now()).await?;
    audit::record(&txn, caller, Target::User(user.id), &["group_ids"]).await?;
    let record = users::written_record(app, &txn, caller.tenant_id, user.id).await?;
    app.commit(txn, Change::Access(user.id)).await?;
    Ok(record)
}

/// Ends a group membership; NOT_FOUND when the user is not a member.
pub async fn remove_user_from_group(app: &App, caller: &Principal, user_id: &str, group_id: &str) -> Result<()> {
    let (user, group) = membership_parties(app, caller, user_id, group_id).await?;
    let txn = app.writer.begin().await?;
    if !store::groups::remove_member(&txn, group.id, user.id).await? {
        return Err(Error::NotFound("group membership"));
    }
    audit::record(&txn, caller, Target::User(user.id), &["group_ids"]).await?;
    app.commit(txn, Change::Access(user.id)).await?;
    Ok(())
}

/// A user's effective permissions in one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPermissions {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    /// Sorted by permission.
    pub permissions: Vec<EffectivePermission>,
}

/// The user's effective permissions in the tenant in context, sorted, each
/// with its sources.
pub async fn user_permissions(app: &App, caller: &Principal, id: &str) -> Result<UserPermissions> {
    let id = validate::id("id", id)?;
    caller.require_target(id)?;
    users::member(app, caller, id).await?;
    let mut by_permission: BTreeMap<String, BTreeSet<GrantSource>> = BTreeMap::new();
    for grant in store::access::effective_grants(&app.db, id, caller.tenant_id)
        .await?
        .grants
    {
        by_permission.entry(grant.permission).or_default().insert(grant.source);
    }
    let permissions = by_permission
        .into_iter()
        .map(|(permission, sources)| EffectivePermission {
            permission,
            sources: sources.into_iter().collect(),
        })
        .collect();
    Ok(UserPermissions {
        user_id: id,
        tenant_id: caller.tenant_id,
        permissions,
    })
}
