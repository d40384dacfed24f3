//! `tenants.user_count` becomes the exact number of members: the
//! application maintains it in the transactions that add or remove
//! memberships from now on, and this migration counts the existing ones.
//! ListUsers answers its unfiltered `total` from it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too (sea-orm-migration wraps only
    /// PostgreSQL's by default): a migration that fails part-way, or a
    /// process killed during one, leaves the schema as it was, and the next
    /// start applies the migration whole.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Valid verbatim on SQLite and PostgreSQL.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE tenants SET user_count = \
                 (SELECT COUNT(*) FROM tenant_memberships m WHERE m.tenant_id = tenants.id)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, _manager: &SchemaManager) -> Result<(), DbErr> {
        // The column stays; its values are simply no longer trusted.
        Ok(())
    }
}
