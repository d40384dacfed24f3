//! Tenant queries.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter};
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
