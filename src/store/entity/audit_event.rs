//! The `audit_events` table.

use sea_orm::entity::prelude::*;

/// One entry of the audit trail: who did what to which target, and how it
/// ended. It has no foreign keys, so it outlives the tenant it describes.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    /// The primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// When it happened.
    pub occurred_at: DateTimeUtc,
    /// The tenant in context, if any (no foreign key).
    pub tenant_id: Option<Uuid>,
    /// Who acted.
    pub actor: String,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: String,
    /// The request id, to correlate with logs.
    pub request_id: String,
    /// How it ended.
    pub outcome: String,
    /// The names of the changed fields, as a JSON array of strings.
    #[sea_orm(column_type = "Text")]
    pub changed_fields: String,
}

/// An audit event relates to nothing else.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
