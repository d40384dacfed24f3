//! Stored outcomes of requests that carry a `request_id` (the
//! `idempotency_keys` table).

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};

use crate::{error::Result, store::entity::idempotency_key};

/// The stored outcome of `request_id` in `scope`, if any.
pub async fn find<C: ConnectionTrait>(db: &C, scope: &str, request_id: &str) -> Result<Option<idempotency_key::Model>> {
    Ok(
        idempotency_key::Entity::find_by_id((scope.to_owned(), request_id.to_owned()))
            .one(db)
            .await?,
    )
}

/// Stores the outcome of `request_id` in `scope`. The primary key (scope,
/// request id) refuses a second outcome for the same request.
pub async fn save<C: ConnectionTrait>(
    db: &C,
    scope: &str,
    request_id: &str,
    request_hash: &str,
    response: Vec<u8>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    idempotency_key::Entity::insert(idempotency_key::ActiveModel {
        scope: Set(scope.to_owned()),
        request_id: Set(request_id.to_owned()),
        request_hash: Set(request_hash.to_owned()),
        response: Set(response),
        created_at: Set(now),
    })
    .exec(db)
    .await?;
    Ok(())
}
