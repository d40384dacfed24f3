//! Storage: the sea-orm entities and every query. The only code that talks
//! SQL; the domain calls these functions inside its transactions.

pub mod access;
pub mod audit;
pub mod credentials;
pub mod devices;
pub mod entity;
pub mod groups;
pub mod idempotency;
pub mod invalidation;
pub mod outbox;
pub mod paging;
pub mod permissions;
pub mod roles;
pub mod tenants;
pub mod users;

use std::time::Duration;

use migrations::{Migrator, sea_orm_migration::MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Insert,
    IntoActiveModel, TransactionTrait,
};

use crate::error::{Error, Result};

/// Rows per multi-row INSERT. Bound parameters are limited per statement
/// (SQLite 32766, PostgreSQL 65535): 500 rows of our widest table (12
/// columns) stay far below both.
const ROWS_PER_INSERT: usize = 500;

/// Inserts rows with multi-row INSERTs of at most [`ROWS_PER_INSERT`] rows
/// each (no RETURNING): the statements a batch costs do not grow with its
/// size below that. Nothing is sent for no rows.
pub(crate) async fn insert_rows<C, M, A>(db: &C, rows: Vec<M>) -> Result<()>
where
    C: ConnectionTrait,
    M: IntoActiveModel<A> + Send,
    A: ActiveModelTrait + Send,
{
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<M> = rows.by_ref().take(ROWS_PER_INSERT).collect();
        Insert::<A>::many(chunk).exec_without_returning(db).await?;
    }
    Ok(())
}

/// How the connection pool behaves under load.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// Most connections open at once; 0 = 8 on SQLite, 32 on PostgreSQL.
    pub max_connections: u32,
    /// How long a call waits for a free connection before UNAVAILABLE.
    pub acquire_timeout: Duration,
}

impl From<&crate::config::Config> for PoolSettings {
    fn from(config: &crate::config::Config) -> Self {
        Self {
            max_connections: config.database_max_connections,
            acquire_timeout: config.database_acquire_timeout.into(),
        }
    }
}

/// Opens the connection pool. SQLite gets WAL and a busy timeout so
/// concurrent writers (another process's too) queue instead of failing.
pub async fn connect(url: &str, pool: PoolSettings) -> Result<DatabaseConnection> {
    open(url, pool, None).await
}

/// WAL pages past which a SQLite commit checkpoints inline (SQLite's own
/// default is 1,000). [`checkpoint_continuously`] keeps the WAL far below
/// this; the bound only holds should it fall behind.
const INLINE_CHECKPOINT_PAGES: u32 = 10_000;

/// A pooled connection idle this long is pinged before it is handed out
/// (a server, proxy or firewall may have dropped it). Busier connections are
/// not: sqlx's default pings on every checkout, a round trip per query on
/// PostgreSQL and a wake-up of the connection's thread on SQLite.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// How often the SQLite WAL is checkpointed in the background.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Opens a pool; `inline_checkpoint_pages` sets SQLite's
/// `wal_autocheckpoint` on each of its connections.
async fn open(url: &str, pool: PoolSettings, inline_checkpoint_pages: Option<u32>) -> Result<DatabaseConnection> {
    if let Some(path) = url.strip_prefix("sqlite://").and_then(|rest| rest.split('?').next())
        && let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| Error::internal(format!("creating {}: {e}", parent.display())))?;
    }
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(match pool.max_connections {
            0 if url.starts_with("sqlite") => 8,
            0 => 32,
            n => n,
        })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(pool.acquire_timeout)
        .test_before_acquire_if_idle_for(PING_WHEN_IDLE_FOR)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(move |opts| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            let opts = opts
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            match inline_checkpoint_pages {
                Some(pages) => opts.pragma("wal_autocheckpoint", pages.to_string()),
                None => opts,
            }
        });
    let db = Database::connect(options).await.map_err(|e| {
        tracing::error!(error = %e, "cannot connect to the database");
        Error::Unavailable
    })?;
    Ok(db)
}

/// The connection write transactions begin on. On SQLite it is a pool of
/// one connection of its own: SQLite lets one writer in at a time, and
/// writers that contend for its lock wait in its busy handler (sleeps of up
/// to 100 ms, in no order), each holding a pooled connection that reads then
/// lack; queued here instead, writers go in the order they came and reads
/// keep the whole pool. Its commits leave checkpoints to
/// [`checkpoint_continuously`]. On PostgreSQL, and for an in-memory SQLite
/// database (which a second pool would not share), it is `db` itself.
pub async fn connect_writer(url: &str, db: &DatabaseConnection, pool: PoolSettings) -> Result<DatabaseConnection> {
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    if db.get_database_backend() != DbBackend::Sqlite || in_memory {
        return Ok(db.clone());
    }
    let pool = PoolSettings {
        max_connections: 1,
        ..pool
    };
    open(url, pool, Some(INLINE_CHECKPOINT_PAGES)).await
}

/// On SQLite, copies the WAL into the database file every
/// [`CHECKPOINT_INTERVAL`], on a pooled connection: a PASSIVE checkpoint
/// neither waits for nor blocks readers and the writer, so no commit on a
/// caller's path does that copy (and its fsync). Returns at once on
/// PostgreSQL.
pub async fn checkpoint_continuously(db: DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let mut interval = tokio::time::interval(CHECKPOINT_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if let Err(error) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
            tracing::debug!(%error, "WAL checkpoint failed; the next one retries");
        }
    }
}

/// Any number the replicas agree on: the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x0CA5_7E11A;

/// Applies pending migrations. On PostgreSQL they run in one transaction
/// holding an advisory lock, so replicas starting at once migrate one after
/// the other (the later ones find nothing to do).
pub async fn migrate(db: &DatabaseConnection) -> Result<()> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Migrator::up(db, None).await.map_err(Error::from);
    }
    let txn = db.begin().await?;
    txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
        .await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(())
}

/// Connections of the pool: (open, idle).
pub fn pool_stats(db: &DatabaseConnection) -> (usize, usize) {
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let pool = db.get_postgres_connection_pool();
            (pool.size() as usize, pool.num_idle())
        }
        _ => {
            let pool = db.get_sqlite_connection_pool();
            (pool.size() as usize, pool.num_idle())
        }
    }
}

/// Whether the database answers.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

#[cfg(test)]
mod tests {
    use sea_orm::Statement;

    use super::*;

    /// The build sets SQLite's query planner stability guarantee
    /// (`.cargo/config.toml`): without it, every statement ending in
    /// `LIMIT ?` is parsed and planned again on each execution.
    #[tokio::test]
    async fn sqlite_is_built_with_the_query_planner_stability_guarantee() {
        let pool = PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        };
        let db = connect("sqlite::memory:", pool).await.unwrap();
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT sqlite_compileoption_used('ENABLE_QPSG') AS used",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get::<i32>("", "used").unwrap(), 1);
    }
}
