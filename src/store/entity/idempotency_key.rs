//! The `idempotency_keys` table.

use sea_orm::entity::prelude::*;

/// The stored outcome of a request carrying a request id, so that a retry
/// with the same id in the same scope gets the same answer.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    /// The namespace the request id is unique within.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    /// The client's request id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub request_id: String,
    /// A hash of the request, to refuse a reused id with a different body.
    pub request_hash: String,
    /// The encoded response (BLOB on SQLite, BYTEA on PostgreSQL).
    #[sea_orm(column_type = "Blob")]
    pub response: Vec<u8>,
    /// When the response was stored.
    pub created_at: DateTimeUtc,
}

/// An idempotency key relates to nothing else.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
