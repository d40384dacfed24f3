//! Storage: the sea-orm entities and every query. The only code that talks
//! SQL; the domain calls these functions inside its transactions.

pub mod access;
pub mod devices;
pub mod entity;
pub mod idempotency;
pub mod paging;
pub mod tenants;
pub mod users;

use std::time::Duration;

use migrations::{Migrator, sea_orm_migration::MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::error::{Error, Result};

/// Opens the connection pool. SQLite gets WAL and a busy timeout so
/// concurrent writers queue instead of failing.
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    if let Some(path) = url.strip_prefix("sqlite://").and_then(|rest| rest.split('?').next())
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| Error::internal(format!("creating {}: {e}", parent.display())))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(if url.starts_with("sqlite") { 8 } else { 32 })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|opts| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            opts.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
        });
    let db = Database::connect(options).await.map_err(|e| {
        tracing::error!(error = %e, "cannot connect to the database");
        Error::Unavailable
    })?;
    Ok(db)
}

/// Applies pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    Migrator::up(db, None).await.map_err(Error::from)
}

/// Whether the database answers.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}
