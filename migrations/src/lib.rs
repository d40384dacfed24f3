//! The database schema of Castellan, as sea-orm migrations.
//!
//! Every migration is written with SeaQuery so that the same code creates the
//! same schema on SQLite and PostgreSQL. The application runs [`Migrator`] at
//! startup and the tests run it on every fresh database; nothing creates tables
//! from the entities.
//!
//! Every migration runs in a transaction on both databases
//! (`use_transaction` answers `Some(true)`): SQLite's DDL is transactional,
//! so a migration is applied whole or not at all there too.

pub use sea_orm_migration;
use sea_orm_migration::prelude::*;

mod m20261125_000001_create_schema;
mod m20261125_000002_mail_outbox_and_lockouts;
mod m20261125_000003_tenant_user_counts;
mod m20261207_000004_user_names_lowercase;
mod m20261208_000005_user_token_generation;

/// The ordered list of Castellan's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_schema::Migration),
            Box::new(m20261125_000002_mail_outbox_and_lockouts::Migration),
            Box::new(m20261125_000003_tenant_user_counts::Migration),
            Box::new(m20261207_000004_user_names_lowercase::Migration),
            Box::new(m20261208_000005_user_token_generation::Migration),
        ]
    }
}
