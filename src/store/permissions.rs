//! Queries of the permission catalog's stored part: the permissions that
//! services registered.

use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder};

use crate::{error::Result, store::entity::registered_permission};

/// Every registered permission, sorted by name.
pub async fn registered<C: ConnectionTrait>(db: &C) -> Result<Vec<registered_permission::Model>> {
    Ok(registered_permission::Entity::find()
        .order_by_asc(registered_permission::Column::Name)
        .all(db)
        .await?)
}
