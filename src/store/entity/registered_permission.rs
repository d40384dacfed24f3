//! The `registered_permissions` table.

use sea_orm::entity::prelude::*;

/// A permission that a service registered (such as `billing:invoices:read`),
/// part of the catalog next to the built-in ones.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registered_permissions")]
pub struct Model {
    /// The full permission name; the primary key.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The part before the first `:` (`billing`).
    pub namespace: String,
    /// What the permission allows.
    pub description: String,
    /// When the permission was registered.
    pub created_at: DateTimeUtc,
}

/// A registered permission relates to nothing else.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
