//! Tenant queries.

use std::collections::{BTreeSet, HashMap};

use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, JoinType, PaginatorTrait, QueryFilter, QuerySelect,
    RelationTrait,
    sea_query::{Alias, Expr, ExprTrait, LockType, Order, Query, SelectStatement},
};
use uuid::Uuid;

use crate::{
    domain::paging::ListParams,
    error::Result,
    store::{
        entity::{role, tenant, tenant_membership, user, user_role},
        paging,
    },
};

/// Which tenant a key (an id or a slug) names.
fn named_by(key: &str) -> Condition {
    match Uuid::parse_str(key) {
        Ok(id) => Condition::all().add(tenant::Column::Id.eq(id)),
        Err(_) => Condition::all().add(tenant::Column::Slug.eq(key.to_ascii_lowercase())),
    }
}

/// Whether the key (an id or a slug) names this tenant.
fn is_named_by(tenant: &tenant::Model, key: &str) -> bool {
    match Uuid::parse_str(key) {
        Ok(id) => tenant.id == id,
        Err(_) => tenant.slug == key.to_ascii_lowercase(),
    }
}

/// The tenant named by id or slug.
pub async fn resolve<C: ConnectionTrait>(db: &C, id_or_slug: &str) -> Result<Option<tenant::Model>> {
    Ok(tenant::Entity::find().filter(named_by(id_or_slug)).one(db).await?)
}

/// The tenants named by ids or slugs: each key that names a tenant → its id
/// (unknown keys are absent). One query per 500 distinct keys, each an `IN`
/// list of ids and one of slugs (a chain of `OR`s would hit SQLite's limit
/// on expression depth at 1,000 keys).
pub async fn resolve_all<C: ConnectionTrait>(db: &C, keys: &[&str]) -> Result<HashMap<String, Uuid>> {
    const KEYS_PER_QUERY: usize = 500;
    let keys: Vec<&str> = keys.iter().copied().collect::<BTreeSet<_>>().into_iter().collect();
    let mut tenants = Vec::new();
    for chunk in keys.chunks(KEYS_PER_QUERY) {
        let (ids, slugs): (Vec<Uuid>, Vec<String>) =
            chunk
                .iter()
                .fold((Vec::new(), Vec::new()), |(mut ids, mut slugs), key| {
                    match Uuid::parse_str(key) {
                        Ok(id) => ids.push(id),
                        Err(_) => slugs.push(key.to_ascii_lowercase()),
                    }
                    (ids, slugs)
                });
        let any = Condition::any()
            .add(tenant::Column::Id.is_in(ids))
            .add(tenant::Column::Slug.is_in(slugs));
        tenants.extend(tenant::Entity::find().filter(any).all(db).await?);
    }
    Ok(keys
        .into_iter()
        .filter_map(|key| {
            let tenant = tenants.iter().find(|t| is_named_by(t, key))?;
            Some((key.to_owned(), tenant.id))
        })
        .collect())
}

/// Locks the tenants' rows until the transaction ends, one by one in id
/// order (so two transactions locking overlapping sets cannot deadlock):
/// membership rules that read other members (the last owner) then hold on
/// PostgreSQL as on SQLite's single writer.
pub async fn lock<C: ConnectionTrait>(db: &C, tenant_ids: &[Uuid]) -> Result<()> {
    let mut ids = tenant_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        tenant::Entity::update_many()
            .col_expr(tenant::Column::UserCount, Expr::col(tenant::Column::UserCount))
            .filter(tenant::Column::Id.eq(id))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// The tenant, its row held against changes (a suspension, its deletion)
/// until the transaction ends (`FOR SHARE` on PostgreSQL; SQLite's one
/// writer orders them anyway); `None` when there is no such tenant.
pub async fn hold<C: ConnectionTrait>(db: &C, tenant_id: Uuid) -> Result<Option<tenant::Model>> {
    Ok(tenant::Entity::find_by_id(tenant_id).lock_shared().one(db).await?)
}

/// Whether the tenant exists, its row then held against its deletion until
/// the transaction ends: `FOR KEY SHARE` on PostgreSQL, which waits only for
/// a deletion (not for a suspension or a member count's update); SQLite's
/// one writer orders them anyway.
pub async fn hold_against_deletion<C: ConnectionTrait>(db: &C, tenant_id: Uuid) -> Result<bool> {
    Ok(tenant::Entity::find_by_id(tenant_id)
        .select_only()
        .column(tenant::Column::Id)
        .lock(LockType::KeyShare)
        .into_tuple::<Uuid>()
        .one(db)
        .await?
        .is_some())
}

/// Adds `delta` (negative to subtract) to the tenant's member count. Call it
/// in the transaction that adds or removes the memberships, so the count
/// stays exact: ListUsers answers its unfiltered `total` from it instead of
/// counting every member on every call.
pub async fn add_to_user_count<C: ConnectionTrait>(db: &C, tenant_id: Uuid, delta: i64) -> Result<()> {
    if delta == 0 {
        return Ok(());
    }
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::UserCount,
            Expr::col(tenant::Column::UserCount).add(delta),
        )
        .filter(tenant::Column::Id.eq(tenant_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A tenant's member count (0 for an unknown tenant), and the memberships
/// of every tenant together (a user in two tenants counts twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberCounts {
    pub members: u64,
    pub all_memberships: u64,
}

/// The tenant's [`MemberCounts`], in one statement (the sum over every
/// tenant as a subquery, cast back to BIGINT since PostgreSQL sums BIGINTs
/// into NUMERIC).
pub async fn member_counts<C: ConnectionTrait>(db: &C, tenant_id: Uuid) -> Result<MemberCounts> {
    let every_tenant = Query::select()
        .expr(Expr::col(tenant::Column::UserCount).sum().cast_as("BIGINT"))
        .from(tenant::Entity)
        .to_owned();
    let counts: Option<(i64, Option<i64>)> = tenant::Entity::find_by_id(tenant_id)
        .select_only()
        .column(tenant::Column::UserCount)
        .column_as(Expr::SubQuery(None, Box::new(every_tenant.into())), "all_memberships")
        .into_tuple()
        .one(db)
        .await?;
    let (members, all_memberships) = counts.unwrap_or((0, None));
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(MemberCounts {
        members: count(members),
        all_memberships: count(all_memberships.unwrap_or(0)),
    })
}

/// The ids of the tenant's members who belong to no other tenant.
fn sole_members(tenant_id: Uuid) -> SelectStatement {
    let other = Alias::new("other_membership");
    let elsewhere = Query::select()
        .expr(Expr::val(1))
        .from_as(tenant_membership::Entity, other.clone())
        .and_where(
            Expr::col((other.clone(), tenant_membership::Column::UserId))
                .equals((tenant_membership::Entity, tenant_membership::Column::UserId)),
        )
        .and_where(Expr::col((other, tenant_membership::Column::TenantId)).ne(tenant_id))
        .to_owned();
    Query::select()
        .column((tenant_membership::Entity, tenant_membership::Column::UserId))
        .from(tenant_membership::Entity)
        .and_where(Expr::col((tenant_membership::Entity, tenant_membership::Column::TenantId)).eq(tenant_id))
        .and_where(Expr::not_exists(elsewhere))
        .to_owned()
}

/// What [`delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// The tenant is gone, with this many users who belonged to it alone.
    Deleted { users: u64 },
    /// Nothing was deleted: a user who belongs to this tenant alone holds a
    /// global role.
    SoleMemberHoldsGlobalRole,
    /// Nothing was deleted: the tenant was deleted meanwhile.
    Gone,
}

/// Deletes the tenant with the users who belong to it alone (their grants,
/// devices, credentials and invitations go with them) and its memberships,
/// roles, groups and direct grants (foreign keys cascade). Deletes nothing
/// when one of those users holds a global role: a platform operator is not
/// removed as a tenant's side effect.
///
/// On PostgreSQL it locks its members' rows first (in id order, as another
/// deletion sharing members does), then its own, as every writer of a user
/// locks the user before its tenants: its own row, locked `FOR UPDATE`,
/// waits for the calls adding members to it (they hold its key) to end, and
/// the members those added are locked then, so who belongs to it alone and
/// who holds a global role are read once no call can change them (a member
/// added meanwhile, left unlocked, could otherwise leave its other tenant
/// as this one goes, and belong to none). A write that locked such a member
/// and then waits for this tenant's key deadlocks with it, and PostgreSQL
/// aborts one of the two (ABORTED, retryable). SQLite's one writer orders
/// them all anyway.
pub async fn delete<C: ConnectionTrait>(db: &C, tenant_id: Uuid) -> Result<Deletion> {
    let members = Query::select()
        .column(user::Column::Id)
        .from(user::Entity)
        .and_where(
            user::Column::Id.in_subquery(
                Query::select()
                    .column(tenant_membership::Column::UserId)
                    .from(tenant_membership::Entity)
                    .and_where(tenant_membership::Column::TenantId.eq(tenant_id))
                    .to_owned(),
            ),
        )
        .order_by(user::Column::Id, Order::Asc)
        .lock(LockType::Update)
        .to_owned();
    db.execute(&members).await?;
    if tenant::Entity::find_by_id(tenant_id)
        .lock_exclusive()
        .one(db)
        .await?
        .is_none()
    {
        return Ok(Deletion::Gone);
    }
    db.execute(&members).await?;
    let operator = user_role::Entity::find()
        .join(JoinType::InnerJoin, user_role::Relation::Role.def())
        .filter(role::Column::TenantId.is_null())
        .filter(user_role::Column::UserId.in_subquery(sole_members(tenant_id)))
        .one(db)
        .await?;
    if operator.is_some() {
        return Ok(Deletion::SoleMemberHoldsGlobalRole);
    }
    let users = user::Entity::delete_many()
        .filter(user::Column::Id.in_subquery(sole_members(tenant_id)))
        .exec(db)
        .await?
        .rows_affected;
    tenant::Entity::delete_by_id(tenant_id).exec(db).await?;
    Ok(Deletion::Deleted { users })
}

fn column_of(field: &str) -> tenant::Column {
    match field {
        "updatedAt" => tenant::Column::UpdatedAt,
        "name" => tenant::Column::Name,
        "slug" => tenant::Column::Slug,
        _ => tenant::Column::CreatedAt,
    }
}

/// One page of tenants (up to `limit + 1` rows) and the total: every
/// tenant, or with `only` that one alone.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    params: &ListParams,
    only: Option<Uuid>,
) -> Result<(Vec<tenant::Model>, u64)> {
    let find = || match only {
        Some(id) => tenant::Entity::find().filter(tenant::Column::Id.eq(id)),
        None => tenant::Entity::find(),
    };
    let total = find().count(db).await?;
    let rows = paging::apply(find(), params, column_of, tenant::Column::Id)
        .all(db)
        .await?;
    Ok((rows, total))
}
