//! `users.first_name_lower` and `users.last_name_lower`: the names folded to
//! lowercase by the application (Unicode, as Rust's `str::to_lowercase`),
//! which ListUsers' `search` matches. SQLite's `lower()` and `LIKE` fold
//! ASCII letters only, so "Élodie" did not match "élo" there while it did on
//! PostgreSQL. The application writes both columns with the names from now
//! on; this migration fills them for the existing users.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// In a transaction on SQLite too, as every migration here.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Users::FirstNameLower, Users::LastNameLower] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(string(column).default(""))
                        .to_owned(),
                )
                .await?;
        }
        // One UPDATE a distinct name: names repeat far more than users do.
        let db = manager.get_connection();
        let backend = db.get_database_backend();
        for (name, lower) in [
            (Users::FirstName, Users::FirstNameLower),
            (Users::LastName, Users::LastNameLower),
        ] {
            let distinct = Query::select()
                .distinct()
                .column(name)
                .from(Users::Table)
                .and_where(Expr::col(name).ne(""))
                .to_owned();
            for row in db.query_all(&distinct).await? {
                let value: String = row.try_get_by_index(0)?;
                let update = Query::update()
                    .table(Users::Table)
                    .value(lower, value.to_lowercase())
                    .and_where(Expr::col(name).eq(value))
                    .to_owned();
                db.execute_raw(backend.build(&update)).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Users::FirstNameLower, Users::LastNameLower] {
            manager
                .alter_table(Table::alter().table(Users::Table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Users {
    Table,
    FirstName,
    LastName,
    FirstNameLower,
    LastNameLower,
}
