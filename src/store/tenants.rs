//! Tenant queries.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use crate::{
    domain::paging::ListParams,
    error::Result,
    store::{entity::tenant, paging},
};

/// The tenant named by id or slug.
pub async fn resolve<C: ConnectionTrait>(db: &C, id_or_slug: &str) -> Result<Option<tenant::Model>> {
    let query = match Uuid::parse_str(id_or_slug) {
        Ok(id) => tenant::Entity::find_by_id(id),
        Err(_) => tenant::Entity::find().filter(tenant::Column::Slug.eq(id_or_slug.to_ascii_lowercase())),
    };
    Ok(query.one(db).await?)
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

/// The tenant's member count (0 for an unknown tenant).
pub async fn user_count<C: ConnectionTrait>(db: &C, tenant_id: Uuid) -> Result<u64> {
    let count: Option<i64> = tenant::Entity::find_by_id(tenant_id)
        .select_only()
        .column(tenant::Column::UserCount)
        .into_tuple()
        .one(db)
        .await?;
    Ok(u64::try_from(count.unwrap_or(0)).unwrap_or(0))
}

fn column_of(field: &str) -> tenant::Column {
    match field {
        "updatedAt" => tenant::Column::UpdatedAt,
        "name" => tenant::Column::Name,
        "slug" => tenant::Column::Slug,
        _ => tenant::Column::CreatedAt,
    }
}

/// One page of tenants (up to `limit + 1` rows) and the total.
pub async fn list<C: ConnectionTrait>(db: &C, params: &ListParams) -> Result<(Vec<tenant::Model>, u64)> {
    let total = tenant::Entity::find().count(db).await?;
    let rows = paging::apply(tenant::Entity::find(), params, column_of, tenant::Column::Id)
        .all(db)
        .await?;
    Ok((rows, total))
}
