//! Group queries: lookups and the list scoped to a tenant, the details a
//! group shows (its roles and member count, loaded for a whole page at once),
//! and the writes of the group aggregate.

use std::collections::HashMap;

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait, LockType},
};
use uuid::Uuid;

use crate::{
    domain::paging::ListParams,
    error::Result,
    store::{
        entity::{group, group_member, group_role, role},
        paging, roles,
        users::RoleWithPermissions,
    },
};

/// The group with this id if it belongs to the tenant.
pub async fn find_in<C: ConnectionTrait>(db: &C, tenant_id: Uuid, id: Uuid) -> Result<Option<group::Model>> {
    Ok(group::Entity::find_by_id(id)
        .filter(group::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?)
}

/// The ids among `ids` of the tenant's groups, each row held against its
/// deletion until the transaction ends: `FOR KEY SHARE` on PostgreSQL, the
/// lock a membership's foreign key check would take anyway (only a deletion
/// or a rename waits for it); SQLite's one writer orders the deletion
/// anyway. A group deleted by a transaction still open is waited for, then
/// left out.
pub async fn hold_in<C: ConnectionTrait>(db: &C, tenant_id: Uuid, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    crate::store::find_by_ids(ids, |chunk| {
        group::Entity::find()
            .select_only()
            .column(group::Column::Id)
            .filter(group::Column::Id.is_in(chunk))
            .filter(group::Column::TenantId.eq(tenant_id))
            .lock(LockType::KeyShare)
            .into_tuple()
            .all(db)
    })
    .await
}

fn column_of(field: &str) -> group::Column {
    match field {
        "updatedAt" => group::Column::UpdatedAt,
        "name" => group::Column::Name,
        _ => group::Column::CreatedAt,
    }
}

/// One page (up to `limit + 1` rows) of the tenant's groups, and the total.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    params: &ListParams,
) -> Result<(Vec<group::Model>, u64)> {
    let select = group::Entity::find().filter(group::Column::TenantId.eq(tenant_id));
    let total = select.clone().count(db).await?;
    let rows = paging::apply(select, params, column_of, group::Column::Id)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// What a group shows besides its row.
#[derive(Debug, Clone, Default)]
pub struct GroupDetails {
    /// Sorted by name.
    pub roles: Vec<RoleWithPermissions>,
    pub member_count: u64,
}

/// The details of many groups, with a fixed number of queries.
pub async fn load_details<C: ConnectionTrait>(db: &C, group_ids: &[Uuid]) -> Result<HashMap<Uuid, GroupDetails>> {
    let mut details: HashMap<Uuid, GroupDetails> = group_ids.iter().map(|id| (*id, GroupDetails::default())).collect();
    if group_ids.is_empty() {
        return Ok(details);
    }
    let assigned: Vec<(group_role::Model, Option<role::Model>)> = group_role::Entity::find()
        .filter(group_role::Column::GroupId.is_in(group_ids.to_vec()))
        .find_also_related(role::Entity)
        .all(db)
        .await?;
    let (group_of, roles): (Vec<Uuid>, Vec<role::Model>) = assigned
        .into_iter()
        .filter_map(|(assignment, role)| role.map(|r| (assignment.group_id, r)))
        .unzip();
    for (group_id, role) in group_of.into_iter().zip(roles::with_permissions(db, roles).await?) {
        if let Some(d) = details.get_mut(&group_id) {
            d.roles.push(role);
        }
    }
    let counts: Vec<(Uuid, i64)> = group_member::Entity::find()
        .select_only()
        .column(group_member::Column::GroupId)
        .column_as(Expr::col(group_member::Column::UserId).count(), "members")
        .filter(group_member::Column::GroupId.is_in(group_ids.to_vec()))
        .group_by(group_member::Column::GroupId)
        .into_tuple()
        .all(db)
        .await?;
    for (group_id, count) in counts {
        if let Some(d) = details.get_mut(&group_id) {
            d.member_count = u64::try_from(count).unwrap_or_default();
        }
    }
    for d in details.values_mut() {
        d.roles
            .sort_by(|a, b| a.role.name.cmp(&b.role.name).then(a.role.id.cmp(&b.role.id)));
    }
    Ok(details)
}

/// The ids of the roles of these groups.
pub async fn role_ids_of<C: ConnectionTrait>(db: &C, group_ids: &[Uuid]) -> Result<Vec<Uuid>> {
    if group_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<Uuid> = group_role::Entity::find()
        .filter(group_role::Column::GroupId.is_in(group_ids.to_vec()))
        .all(db)
        .await?
        .into_iter()
        .map(|assignment| assignment.role_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// Inserts a group with its roles.
pub async fn insert<C: ConnectionTrait>(db: &C, group: &group::Model, role_ids: &[Uuid]) -> Result<()> {
    group::Entity::insert(group::ActiveModel {
        id: Set(group.id),
        tenant_id: Set(group.tenant_id),
        name: Set(group.name.clone()),
        description: Set(group.description.clone()),
        created_at: Set(group.created_at),
        updated_at: Set(group.updated_at),
    })
    .exec(db)
    .await?;
    change_roles(db, group.id, role_ids, &[]).await
}

/// Sets the name and description (when given) and `updated_at`.
pub async fn update<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    name: Option<String>,
    description: Option<String>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<group::Model>> {
    let mut update = group::Entity::update_many()
        .col_expr(group::Column::UpdatedAt, Expr::value(now))
        .filter(group::Column::Id.eq(id));
    if let Some(name) = name {
        update = update.col_expr(group::Column::Name, Expr::value(name));
    }
    if let Some(description) = description {
        update = update.col_expr(group::Column::Description, Expr::value(description));
    }
    Ok(update.exec_with_returning(db).await?.pop())
}

/// Assigns roles to a group and takes others away.
pub async fn change_roles<C: ConnectionTrait>(db: &C, group_id: Uuid, add: &[Uuid], remove: &[Uuid]) -> Result<()> {
    if !remove.is_empty() {
        group_role::Entity::delete_many()
            .filter(group_role::Column::GroupId.eq(group_id))
            .filter(group_role::Column::RoleId.is_in(remove.to_vec()))
            .exec(db)
            .await?;
    }
    if !add.is_empty() {
        group_role::Entity::insert_many(add.iter().map(|role_id| group_role::ActiveModel {
            group_id: Set(group_id),
            role_id: Set(*role_id),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// Deletes the group; its memberships and role assignments cascade.
pub async fn delete<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<()> {
    group::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}

/// Removes one membership; whether there was one.
pub async fn remove_member<C: ConnectionTrait>(db: &C, group_id: Uuid, user_id: Uuid) -> Result<bool> {
    let result = group_member::Entity::delete_many()
        .filter(group_member::Column::GroupId.eq(group_id))
        .filter(group_member::Column::UserId.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}
