//! `users.token_generation`: which of a user's access tokens still work. A
//! token carries the generation its user had when it was issued (the `gen`
//! claim, absent for 0), and the auth layer refuses one whose generation is
//! no longer the user's. ResetUserPassword and DeactivateUser move it on,
//! so the tokens issued before them stop working, and stay refused after a
//! ReactivateUser. Every existing user starts at 0, which the tokens issued
//! before this migration (without the claim) carry.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too, as every migration here.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .add_column(integer(Users::TokenGeneration).default(0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Users::Table)
                    .drop_column(Users::TokenGeneration)
                    .to_owned(),
            )
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    TokenGeneration,
}
