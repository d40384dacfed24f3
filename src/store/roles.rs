//! Role queries: lookups and the list of the roles valid in a tenant (its own
//! and global ones), their permissions, the versioned update (one statement,
//! so two writers holding the same version cannot both win), and the delete
//! that refuses, in the same statement, a role that is still granted.

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, LockType, Query, SelectStatement},
};
use uuid::Uuid;

use crate::{
    domain::paging::ListParams,
    error::Result,
    store::{
        access::role_valid_in,
        entity::{group_role, role, role_permission, user_role},
        paging,
        users::{RoleWithPermissions, permissions_of_roles},
    },
};

/// The role with this id if it is valid in the tenant.
pub async fn find_valid_in<C: ConnectionTrait>(db: &C, tenant_id: Uuid, id: Uuid) -> Result<Option<role::Model>> {
    Ok(role::Entity::find_by_id(id)
        .filter(role_valid_in(tenant_id))
        .one(db)
        .await?)
}

/// The ids among `ids` of the roles valid in the tenant, each row held
/// against its deletion until the transaction ends: `FOR KEY SHARE` on
/// PostgreSQL, the lock the grant's foreign key check would take anyway
/// (only a deletion or a rename waits for it, not an UpdateRole that keeps
/// the name); SQLite's one writer orders the deletion anyway. A role
/// deleted by a transaction still open is waited for, then left out.
pub async fn hold_valid_in<C: ConnectionTrait>(db: &C, tenant_id: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    crate::store::find_by_ids(ids, |chunk| {
        role::Entity::find()
            .select_only()
            .column(role::Column::Id)
            .filter(role::Column::Id.is_in(chunk))
            .filter(role_valid_in(tenant_id))
            .lock(LockType::KeyShare)
            .into_tuple()
            .all(db)
    })
    .await
}

/// The first key of the advisory locks on role names (any number the
/// replicas agree on; the second key is the name's hash).
const ROLE_NAME_LOCK: i32 = 0x0CA5_7E12;

/// Whether another role holds `name` where it would shadow a role of
/// `tenant_id` (`None`: a global role) or be shadowed by it: for a tenant's
/// role, a global role of that name (the tenant's own are refused by the
/// unique index); for a global role, a role of that name in any tenant.
/// `except` is the role being renamed.
///
/// Call it in the transaction that writes the name. On PostgreSQL it first
/// takes a lock on the name held to the transaction's end, so a global role
/// and a tenant's given one name at once are checked one after the other
/// and the second sees the first (no index spans the two: a global role's
/// name is unique against every tenant's). SQLite's one writer orders them
/// already.
pub async fn name_shadowed<C: ConnectionTrait>(
    db: &C,
    tenant_id: Option<Uuid>,
    name: &str,
    except: Option<Uuid>,
) -> Result<bool> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            [ROLE_NAME_LOCK.into(), name.into()],
        ))
        .await?;
    }
    let mut find = role::Entity::find().filter(role::Column::Name.eq(name));
    find = match tenant_id {
        Some(_) => find.filter(role::Column::TenantId.is_null()),
        None => find.filter(role::Column::TenantId.is_not_null()),
    };
    if let Some(id) = except {
        find = find.filter(role::Column::Id.ne(id));
    }
    Ok(find.one(db).await?.is_some())
}

/// The roles with their sorted permissions, in the same order. A role may
/// come more than once (a page of groups sharing one): each copy gets its
/// permissions.
pub async fn with_permissions<C: ConnectionTrait>(db: &C, roles: Vec<role::Model>) -> Result<Vec<RoleWithPermissions>> {
    let mut ids: Vec<Uuid> = roles.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    let permissions = permissions_of_roles(db, &ids).await?;
    Ok(roles
        .into_iter()
        .map(|role| RoleWithPermissions {
            permissions: permissions.get(&role.id).cloned().unwrap_or_default(),
            role,
        })
        .collect())
}

fn column_of(field: &str) -> role::Column {
    match field {
        "updatedAt" => role::Column::UpdatedAt,
        "name" => role::Column::Name,
        _ => role::Column::CreatedAt,
    }
}

/// One page (up to `limit + 1` rows) of the roles valid in the tenant, and the total.
pub async fn list<C: ConnectionTrait>(db: &C, tenant_id: Uuid, params: &ListParams) -> Result<(Vec<role::Model>, u64)> {
    let select = role::Entity::find().filter(role_valid_in(tenant_id));
    let total = select.clone().count(db).await?;
    let rows = paging::apply(select, params, column_of, role::Column::Id)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Inserts a role with its permissions.
pub async fn insert<C: ConnectionTrait>(db: &C, role: &role::Model, permissions: &[String]) -> Result<()> {
    role::Entity::insert(role::ActiveModel {
        id: Set(role.id),
        tenant_id: Set(role.tenant_id),
        name: Set(role.name.clone()),
        description: Set(role.description.clone()),
        version: Set(role.version),
        created_by: Set(role.created_by),
        created_at: Set(role.created_at),
        updated_at: Set(role.updated_at),
    })
    .exec(db)
    .await?;
    insert_permissions(db, role.id, permissions).await
}

async fn insert_permissions<C: ConnectionTrait>(db: &C, role_id: Uuid, permissions: &[String]) -> Result<()> {
    if permissions.is_empty() {
        return Ok(());
    }
    role_permission::Entity::insert_many(permissions.iter().map(|permission| role_permission::ActiveModel {
        role_id: Set(role_id),
        permission: Set(permission.clone()),
    }))
    .exec(db)
    .await?;
    Ok(())
}

/// New name and description of a role; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct RoleFields {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// `UPDATE roles SET version = version + 1, ... WHERE id = ? AND version = ?
/// RETURNING *`: the role at `version + 1`, or `None` when the row was not at
/// `version`.
pub async fn update_versioned<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    version: i32,
    fields: RoleFields,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<role::Model>> {
    let mut update = role::Entity::update_many()
        .col_expr(role::Column::Version, Expr::col(role::Column::Version).add(1))
        .col_expr(role::Column::UpdatedAt, Expr::value(now))
        .filter(role::Column::Id.eq(id))
        .filter(role::Column::Version.eq(version));
    if let Some(name) = fields.name {
        update = update.col_expr(role::Column::Name, Expr::value(name));
    }
    if let Some(description) = fields.description {
        update = update.col_expr(role::Column::Description, Expr::value(description));
    }
    Ok(update.exec_with_returning(db).await?.pop())
}

/// Adds and removes permissions of a role (adding one it has is a no-op).
pub async fn change_permissions<C: ConnectionTrait>(
    db: &C,
    role_id: Uuid,
    add: &[String],
    remove: &[String],
) -> Result<()> {
    let touched: Vec<String> = add.iter().chain(remove).cloned().collect();
    if touched.is_empty() {
        return Ok(());
    }
    role_permission::Entity::delete_many()
        .filter(role_permission::Column::RoleId.eq(role_id))
        .filter(role_permission::Column::Permission.is_in(touched))
        .exec(db)
        .await?;
    insert_permissions(db, role_id, add).await
}

fn grants_of(role_id: Uuid) -> [SelectStatement; 2] {
    [
        Query::select()
            .expr(Expr::val(1))
            .from(user_role::Entity)
            .and_where(Expr::col((user_role::Entity, user_role::Column::RoleId)).eq(role_id))
            .to_owned(),
        Query::select()
            .expr(Expr::val(1))
            .from(group_role::Entity)
            .and_where(Expr::col((group_role::Entity, group_role::Column::RoleId)).eq(role_id))
            .to_owned(),
    ]
}

/// Deletes the role (its permissions and grants cascade). Unless `force`, only
/// while nobody holds it, checked in the same statement. Whether it was deleted.
///
/// The role's row is locked first (`FOR UPDATE` on PostgreSQL; SQLite's one
/// writer orders the calls anyway): a grant under way holds the row `FOR
/// KEY SHARE` until it commits, so the deletion waits for it and then sees
/// the grant (each statement reads the commits before it). Without the lock
/// the deletion read "not granted" before it waited, and deleted the role
/// with its new grant.
pub async fn delete<C: ConnectionTrait>(db: &C, id: Uuid, force: bool) -> Result<bool> {
    role::Entity::find_by_id(id).lock(LockType::Update).one(db).await?;
    let mut delete = role::Entity::delete_many().filter(role::Column::Id.eq(id));
    if !force {
        for grants in grants_of(id) {
            delete = delete.filter(Expr::not_exists(grants));
        }
    }
    Ok(delete.exec(db).await?.rows_affected == 1)
}
