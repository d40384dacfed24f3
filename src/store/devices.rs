//! Device queries: lookups scoped to the tenant in context (through the
//! owner's membership), the paged list of a user's devices, the active count
//! that `max_devices` limits, and the conditional writes of updates,
//! connection state and revocation.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    sea_query::Query,
};
use uuid::Uuid;

use crate::{
    domain::{
        devices::{STATUS_ACTIVE, STATUS_REVOKED},
        paging::ListParams,
    },
    error::Result,
    store::{
        entity::{device, tenant_membership},
        paging,
    },
};

/// The device if its owner is a member of the tenant (and, with `owner`, is
/// that user).
pub async fn find_in_tenant<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    device_id: Uuid,
    owner: Option<Uuid>,
) -> Result<Option<device::Model>> {
    let mut select = device::Entity::find_by_id(device_id).filter(
        device::Column::UserId.in_subquery(
            Query::select()
                .column(tenant_membership::Column::UserId)
                .from(tenant_membership::Entity)
                .and_where(tenant_membership::Column::TenantId.eq(tenant_id))
                .to_owned(),
        ),
    );
    if let Some(owner) = owner {
        select = select.filter(device::Column::UserId.eq(owner));
    }
    Ok(select.one(db).await?)
}

/// The device, wherever its owner belongs.
pub async fn find<C: ConnectionTrait>(db: &C, device_id: Uuid) -> Result<Option<device::Model>> {
    Ok(device::Entity::find_by_id(device_id).one(db).await?)
}

/// How many active devices the user has.
pub async fn count_active<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<u64> {
    Ok(device::Entity::find()
        .filter(device::Column::UserId.eq(user_id))
        .filter(device::Column::Status.eq(STATUS_ACTIVE))
        .count(db)
        .await?)
}

fn column_of(field: &str) -> device::Column {
    match field {
        "name" => device::Column::Name,
        _ => device::Column::RegisteredAt,
    }
}

/// One page (up to `limit + 1` rows) of the user's devices, and the total.
pub async fn list<C: ConnectionTrait>(db: &C, user_id: Uuid, params: &ListParams) -> Result<(Vec<device::Model>, u64)> {
    let select = device::Entity::find().filter(device::Column::UserId.eq(user_id));
    let total = select.clone().count(db).await?;
    let rows = paging::apply(select, params, column_of, device::Column::Id)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// Writes the fields set in `changes` (and nothing else) to the device:
/// the device as written, or `None` when there is no such device (deleted
/// since it was read), decided by the same statement.
pub async fn update<C: ConnectionTrait>(
    db: &C,
    device_id: Uuid,
    changes: device::ActiveModel,
) -> Result<Option<device::Model>> {
    Ok(device::Entity::update_many()
        .set(changes)
        .filter(device::Column::Id.eq(device_id))
        .exec_with_returning(db)
        .await?
        .pop())
}

/// Sets the connection state of an active device; `false` when the device is
/// revoked (or gone), checked in the same statement so a concurrent
/// revocation cannot be overwritten.
pub async fn record_connection<C: ConnectionTrait>(
    db: &C,
    device_id: Uuid,
    connected: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let result = device::Entity::update_many()
        .set(device::ActiveModel {
            connected: Set(connected),
            last_connection: Set(Some(now)),
            updated_at: Set(now),
            ..Default::default()
        })
        .filter(device::Column::Id.eq(device_id))
        .filter(device::Column::Status.eq(STATUS_ACTIVE))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Revokes and disconnects the active devices matching `condition`; returns
/// how many were revoked.
async fn revoke_where<C: ConnectionTrait>(
    db: &C,
    condition: Condition,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    let result = device::Entity::update_many()
        .set(device::ActiveModel {
            status: Set(STATUS_REVOKED.to_owned()),
            connected: Set(false),
            updated_at: Set(now),
            ..Default::default()
        })
        .filter(condition)
        .filter(device::Column::Status.eq(STATUS_ACTIVE))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Revokes one device (nothing when it is not active).
pub async fn revoke<C: ConnectionTrait>(db: &C, device_id: Uuid, now: chrono::DateTime<chrono::Utc>) -> Result<()> {
    revoke_where(db, Condition::all().add(device::Column::Id.eq(device_id)), now).await?;
    Ok(())
}

/// Revokes every active device of the user.
pub async fn revoke_all_of_user<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    revoke_where(db, Condition::all().add(device::Column::UserId.eq(user_id)), now).await
}
