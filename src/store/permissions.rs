//! Queries of the permission catalog's stored part (the permissions that
//! services registered), and of the grants that carry them.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, OnConflict, Query},
};

use crate::{
    error::Result,
    store::entity::{registered_permission, role, role_permission, user_permission},
};

/// Locks these registered permissions' rows against their unregistration
/// until the transaction ends (`FOR SHARE` on PostgreSQL; SQLite's one
/// writer orders them anyway): a grant written in it cannot carry a
/// permission unregistered meanwhile, since UnregisterPermissions deletes
/// the rows before it counts their carriers.
pub async fn hold<C: ConnectionTrait>(db: &C, names: &[String]) -> Result<()> {
    if !names.is_empty() {
        registered_permission::Entity::find()
            .filter(registered_permission::Column::Name.is_in(names.iter().map(String::as_str)))
            .lock_shared()
            .all(db)
            .await?;
    }
    Ok(())
}

/// Every registered permission, sorted by name.
pub async fn registered<C: ConnectionTrait>(db: &C) -> Result<Vec<registered_permission::Model>> {
    Ok(registered_permission::Entity::find()
        .order_by_asc(registered_permission::Column::Name)
        .all(db)
        .await?)
}

/// The registered permissions of one namespace, sorted by name.
pub async fn in_namespace<C: ConnectionTrait>(db: &C, namespace: &str) -> Result<Vec<registered_permission::Model>> {
    Ok(registered_permission::Entity::find()
        .filter(registered_permission::Column::Namespace.eq(namespace))
        .order_by_asc(registered_permission::Column::Name)
        .all(db)
        .await?)
}

/// Inserts the permissions; a name already registered keeps its
/// `created_at` and takes the new description.
pub async fn upsert<C: ConnectionTrait>(db: &C, permissions: Vec<registered_permission::Model>) -> Result<()> {
    if permissions.is_empty() {
        return Ok(());
    }
    registered_permission::Entity::insert_many(permissions.into_iter().map(registered_permission::ActiveModel::from))
        .on_conflict(
            OnConflict::column(registered_permission::Column::Name)
                .update_column(registered_permission::Column::Description)
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Removes the names from the catalog; how many were registered.
pub async fn unregister<C: ConnectionTrait>(db: &C, names: &[String]) -> Result<u64> {
    Ok(registered_permission::Entity::delete_many()
        .filter(registered_permission::Column::Name.is_in(names.iter().cloned()))
        .exec(db)
        .await?
        .rows_affected)
}

/// How many role permissions and direct grants carry one of the names
/// (exactly, not through a wildcard).
pub async fn carriers<C: ConnectionTrait>(db: &C, names: &[String]) -> Result<u64> {
    let in_roles = role_permission::Entity::find()
        .filter(role_permission::Column::Permission.is_in(names.iter().cloned()))
        .count(db)
        .await?;
    let direct = user_permission::Entity::find()
        .filter(user_permission::Column::Permission.is_in(names.iter().cloned()))
        .count(db)
        .await?;
    Ok(in_roles + direct)
}

/// Takes the names out of every role (bumping those roles' versions) and
/// every direct grant.
pub async fn revoke_everywhere<C: ConnectionTrait>(db: &C, names: &[String], now: DateTime<Utc>) -> Result<()> {
    let carrying_roles = Query::select()
        .column(role_permission::Column::RoleId)
        .from(role_permission::Entity)
        .and_where(Expr::col(role_permission::Column::Permission).is_in(names.iter().cloned()))
        .to_owned();
    role::Entity::update_many()
        .col_expr(role::Column::Version, Expr::col(role::Column::Version).add(1))
        .col_expr(role::Column::UpdatedAt, Expr::value(now))
        .filter(role::Column::Id.in_subquery(carrying_roles))
        .exec(db)
        .await?;
    role_permission::Entity::delete_many()
        .filter(role_permission::Column::Permission.is_in(names.iter().cloned()))
        .exec(db)
        .await?;
    user_permission::Entity::delete_many()
        .filter(user_permission::Column::Permission.is_in(names.iter().cloned()))
        .exec(db)
        .await?;
    Ok(())
}
