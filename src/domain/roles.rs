//! Roles: named sets of catalog permissions, either of one tenant or global
//! (valid in every tenant). A tenant sees its own roles and the global ones;
//! another tenant's role is NOT_FOUND. Global roles are created, updated and
//! deleted only by global callers (for others they are read-only:
//! PERMISSION_DENIED). Updates carry the version read and bump it atomically.
//! Nobody grants a permission it does not hold, through a role or otherwise.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

use crate::{
    app::App,
    auth::Principal,
    domain::{
        audit::{self, Target},
        idempotency::{self, RequestKey},
        now,
        paging::{ListParams, MAX_LIMIT, Page, PageRequest, SortField},
        permissions, tenants,
        validate::{self, MAX_DESCRIPTION, MAX_NAME},
    },
    error::{Error, Result, Violations},
    store::{self, entity::role, invalidation::Change, roles::RoleFields, users::RoleWithPermissions},
};

const SORT_FIELDS: &[SortField] = &[
    SortField::time("createdAt"),
    SortField::time("updatedAt"),
    SortField::text("name"),
];

/// A role to create.
#[derive(Debug, Clone, Default)]
pub struct NewRole {
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    /// A global role instead of one of the tenant in context.
    pub global: bool,
    /// Optional idempotency key (see `domain::idempotency`).
    pub request_id: String,
}

/// Changes to a role at `version`; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct RolePatch {
    pub version: i32,
    pub name: Option<String>,
    pub description: Option<String>,
    pub add_permissions: Vec<String>,
    pub remove_permissions: Vec<String>,
}

pub async fn create(app: &App, caller: &Principal, new: NewRole) -> Result<RoleWithPermissions> {
    if new.global && !caller.holds_globally("roles:create") {
        return Err(Error::PermissionDenied(
            "only a caller holding roles:create through a global role may create global roles".into(),
        ));
    }
    let mut violations = Violations::new();
    let request_id = idempotency::request_id(&mut violations, &new.request_id);
    let name = validate::required_text(&mut violations, "name", &new.name, MAX_NAME);
    let description = validate::text(&mut violations, "description", &new.description, MAX_DESCRIPTION);
    let permissions = permissions::check_catalog(&app.db, &mut violations, "permissions", &new.permissions).await?;
    violations.finish()?;
    if new.global {
        caller.require_all_globally(&permissions)?;
    } else {
        caller.require_all(&permissions)?;
    }
    let joined = permissions.join(",");
    let scope: &[u8] = if new.global { b"global" } else { b"tenant" };
    let body = [name.as_bytes(), description.as_bytes(), joined.as_bytes(), scope];
    let key = RequestKey::new(caller, "CreateRole", &request_id, &body);
    let load = |response: Vec<u8>| async move {
        let id = idempotency::ids_from_bytes(&response)
            .first()
            .copied()
            .unwrap_or_default();
        let role = store::roles::find_valid_in(&app.db, caller.tenant_id, id)
            .await?
            .ok_or(Error::NotFound("role"))?;
        with_permissions(&app.db, role).await
    };
    let create = async {
        let now = now();
        let role = role::Model {
            id: Uuid::now_v7(),
            tenant_id: (!new.global).then_some(caller.tenant_id),
            name,
            description,
            version: 1,
            created_by: caller.user_id(),
            created_at: now,
            updated_at: now,
        };
        let txn = app.writer.begin().await?;
        refuse_shadowing(&txn, role.tenant_id, &role.name, None).await?;
        permissions::recheck_catalog(&txn, "permissions", &new.permissions).await?;
        store::roles::insert(&txn, &role, &permissions).await?;
        if let Some(key) = &key {
            key.record(&txn, idempotency::ids_to_bytes(&[role.id]), now).await?;
        }
        let mut fields = vec!["name"];
        if !role.description.is_empty() {
            fields.push("description");
        }
        if !permissions.is_empty() {
            fields.push("permissions");
        }
        if new.global {
            fields.push("global");
        }
        audit::record(&txn, caller, Target::Role(role.id), &fields).await?;
        txn.commit().await?;
        Ok(RoleWithPermissions { role, permissions })
    };
    idempotency::once(&app.db, key.as_ref(), load, create).await
}

/// ALREADY_EXISTS naming `name` when a global role and a tenant's role would
/// share it: a tenant lists both, and a grant by name would be ambiguous.
/// Checked in the writing transaction, under a lock on the name
/// (`store::roles::name_shadowed`).
async fn refuse_shadowing<C: ConnectionTrait>(
    db: &C,
    tenant_id: Option<Uuid>,
    name: &str,
    except: Option<Uuid>,
) -> Result<()> {
    if store::roles::name_shadowed(db, tenant_id, name, except).await? {
        return Err(Error::AlreadyExists { field: "name".into() });
    }
    Ok(())
}

/// The role if it is valid in the tenant in context, else NOT_FOUND.
async fn visible(app: &App, caller: &Principal, id: Uuid) -> Result<role::Model> {
    store::roles::find_valid_in(&app.db, caller.tenant_id, id)
        .await?
        .ok_or(Error::NotFound("role"))
}

/// A role the caller may change with `permission`: visible, and not global
/// unless the caller holds `permission` through a global role.
async fn writable(app: &App, caller: &Principal, id: Uuid, permission: &str) -> Result<role::Model> {
    let role = visible(app, caller, id).await?;
    if role.tenant_id.is_none() && !caller.holds_globally(permission) {
        return Err(Error::PermissionDenied(format!(
            "global roles are read-only for callers without {permission} through a global role"
        )));
    }
    Ok(role)
}

async fn with_permissions<C: ConnectionTrait>(db: &C, role: role::Model) -> Result<RoleWithPermissions> {
    let mut roles = store::roles::with_permissions(db, vec![role]).await?;
    roles.pop().ok_or(Error::NotFound("role"))
}

pub async fn get(app: &App, caller: &Principal, id: &str) -> Result<RoleWithPermissions> {
    let id = validate::id("id", id)?;
    let role = visible(app, caller, id).await?;
    with_permissions(&app.db, role).await
}

/// The roles valid in the tenant in context: its own and the global ones.
pub async fn list(app: &App, caller: &Principal, page: &PageRequest) -> Result<Page<RoleWithPermissions>> {
    let params = ListParams::parse(page, SORT_FIELDS, MAX_LIMIT, &format!("roles|{}", caller.tenant_id))?;
    let (rows, total) = store::roles::list(&app.db, caller.tenant_id, &params).await?;
    let page = params.page(
        rows,
        total,
        |r| r.id,
        |r, field| match field {
            "updatedAt" => r.updated_at.into(),
            "name" => r.name.clone().into(),
            _ => r.created_at.into(),
        },
    );
    let ids: Vec<Uuid> = page.items.iter().map(|r| r.id).collect();
    let mut permissions = store::users::permissions_of_roles(&app.db, &ids).await?;
    Ok(page.map(|role| RoleWithPermissions {
        permissions: permissions.remove(&role.id).unwrap_or_default(),
        role,
    }))
}

/// Applies a patch if `version` is still the role's version (else ABORTED);
/// the version goes up by one on every update.
pub async fn update(app: &App, caller: &Principal, id: &str, patch: RolePatch) -> Result<RoleWithPermissions> {
    let id = validate::id("id", id)?;
    let mut violations = Violations::new();
    if patch.version < 1 {
        violations.add("version", "is required: the version of the role as read");
    }
    let name = patch
        .name
        .map(|n| validate::required_text(&mut violations, "name", &n, MAX_NAME));
    let description = patch
        .description
        .map(|d| validate::text(&mut violations, "description", &d, MAX_DESCRIPTION));
    let add = permissions::check_catalog(&app.db, &mut violations, "add_permissions", &patch.add_permissions).await?;
    // Only the format: a permission no longer in the catalog can still be removed.
    let remove = permissions::check_format(&mut violations, "remove_permissions", &patch.remove_permissions);
    if let Some(both) = add.iter().find(|p| remove.contains(p)) {
        violations.add("remove_permissions", format!("{both} is both added and removed"));
    }
    violations.finish()?;
    let role = writable(app, caller, id, "roles:update").await?;
    if role.tenant_id.is_none() {
        caller.require_all_globally(&add)?;
    } else {
        caller.require_all(&add)?;
    }
    let mut fields = vec!["version"];
    if name.is_some() {
        fields.push("name");
    }
    if description.is_some() {
        fields.push("description");
    }
    if !add.is_empty() || !remove.is_empty() {
        fields.push("permissions");
    }

    let txn = app.writer.begin().await?;
    // The permissions added are held first, in UnregisterPermissions' order
    // (the catalog's rows, then the roles carrying them): on PostgreSQL
    // holding the role and then waiting for a row an unregistration deletes
    // would deadlock with it.
    permissions::recheck_catalog(&txn, "add_permissions", &patch.add_permissions).await?;
    // Then the versioned UPDATE: it takes the role's row lock, so a
    // concurrent update with the same version waits and then matches no row.
    let Some(updated) =
        store::roles::update_versioned(&txn, id, patch.version, RoleFields { name, description }, now()).await?
    else {
        // No row at that version: a role deleted meanwhile is NOT_FOUND.
        if store::roles::find_valid_in(&txn, caller.tenant_id, id).await?.is_none() {
            return Err(Error::NotFound("role"));
        }
        return Err(Error::VersionMismatch(format!(
            "version {} is not the role's current version: read it again",
            patch.version
        )));
    };
    if fields.contains(&"name") {
        refuse_shadowing(&txn, updated.tenant_id, &updated.name, Some(id)).await?;
    }
    store::roles::change_permissions(&txn, id, &add, &remove).await?;
    audit::record(&txn, caller, Target::Role(id), &fields).await?;
    // The answer is what this transaction wrote, read on its connection.
    let answer = with_permissions(&txn, updated).await?;
    // Holders' records show the role's name, description and permissions.
    app.commit(txn, Change::Role(id)).await?;
    Ok(answer)
}

/// Deletes a role. While it is granted to a user or a group this is
/// FAILED_PRECONDITION unless `force`; with `force` the grants go with it.
pub async fn delete(app: &App, caller: &Principal, id: &str, force: bool) -> Result<()> {
    let id = validate::id("id", id)?;
    writable(app, caller, id, "roles:delete").await?;
    let txn = app.writer.begin().await?;
    tenants::hold_context(&txn, caller).await?;
    if !store::roles::delete(&txn, id, force).await? {
        // Nothing deleted: gone meanwhile (NOT_FOUND), or still granted.
        if store::roles::find_valid_in(&txn, caller.tenant_id, id).await?.is_none() {
            return Err(Error::NotFound("role"));
        }
        return Err(Error::FailedPrecondition(
            "the role is granted to users or groups: revoke it first, or delete with force".into(),
        ));
    }
    audit::record(&txn, caller, Target::Role(id), &[]).await?;
    app.commit(txn, Change::Role(id)).await?;
    Ok(())
}

/// The caller holds every permission of these roles (granting them is no escalation).
pub async fn require_held<C: ConnectionTrait>(db: &C, caller: &Principal, role_ids: &[Uuid]) -> Result<()> {
    let permissions: Vec<String> = store::users::permissions_of_roles(db, role_ids)
        .await?
        .into_values()
        .flatten()
        .collect();
    caller.require_all(&permissions)
}

/// Roles the caller may grant (to a user or a group): valid in the tenant in
/// context (else INVALID_ARGUMENT naming `field`), carrying only permissions
/// the caller holds (else PERMISSION_DENIED). Returns them.
pub async fn require_grantable<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    field: &str,
    role_ids: &[Uuid],
) -> Result<Vec<role::Model>> {
    if role_ids.is_empty() {
        return Ok(Vec::new());
    }
    let roles = store::users::roles_valid_in(db, caller.tenant_id, role_ids).await?;
    if let Some(missing) = role_ids.iter().find(|id| !roles.iter().any(|r| r.id == **id)) {
        return Err(unknown_role(field, *missing));
    }
    require_held(db, caller, role_ids).await?;
    Ok(roles)
}

fn unknown_role(field: &str, id: Uuid) -> Error {
    Error::invalid(field, format!("unknown role {id}"))
}

/// Holds the roles a transaction is about to grant (to a user or a group)
/// against their deletion until it ends: a role deleted since the call
/// checked it is INVALID_ARGUMENT naming `field`, the
/// answer a retry gets, rather than a foreign key that fails at the write.
pub async fn hold_granted<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    field: &str,
    role_ids: &[Uuid],
) -> Result<()> {
    if role_ids.is_empty() {
        return Ok(());
    }
    let held: HashSet<Uuid> = store::roles::hold_valid_in(db, caller.tenant_id, role_ids)
        .await?
        .into_iter()
        .collect();
    match role_ids.iter().find(|id| !held.contains(id)) {
        Some(missing) => Err(unknown_role(field, *missing)),
        None => Ok(()),
    }
}
