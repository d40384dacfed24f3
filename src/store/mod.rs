//! Storage: the sea-orm entities and every query. The only code that talks
//! SQL; the domain calls these functions inside its transactions.

pub mod access;
pub mod audit;
pub mod credentials;
pub mod database_url;
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

use std::{collections::HashSet, time::Duration};

use migrations::{
    Migrator,
    sea_orm_migration::{MigratorTrait, SchemaManager, seaql_migrations},
};
use sea_orm::{
    ActiveModelTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, EntityName,
    EntityTrait, Insert, IntoActiveModel, TransactionTrait,
};

use crate::error::{Error, Result};

/// Rows per multi-row INSERT. Bound parameters are limited per statement
/// (SQLite 32766, PostgreSQL 65535): 500 rows of our widest table (17
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

/// Ids per statement of a lookup by many ids: a request may name up to
/// 100 drafts × 1,000 ids, and a page of groups 100,000 roles, more than a
/// statement binds (SQLite 32766, PostgreSQL 65535).
const IDS_PER_QUERY: usize = 1000;

/// The rows `query` finds for `ids`, asked [`IDS_PER_QUERY`] ids at a time.
pub(crate) async fn find_by_ids<K, T, F, Fut>(ids: &[K], mut query: F) -> Result<Vec<T>>
where
    K: Clone,
    F: FnMut(Vec<K>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Vec<T>, sea_orm::DbErr>>,
{
    let mut rows = Vec::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        rows.extend(query(chunk.to_vec()).await?);
    }
    Ok(rows)
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

/// How often the SQLite WAL is checkpointed in the background while writes
/// are light.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// How often it is checkpointed while the WAL grows by
/// [`BUSY_WAL_FRAMES_PER_SECOND`] or more (bulk writes such as CreateUsers
/// batches, some 500 frames each): the background then keeps pace, so the
/// commit that reaches [`INLINE_CHECKPOINT_PAGES`] copies only what the last
/// few commits wrote.
const BUSY_CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// WAL growth past which checkpoints run every [`BUSY_CHECKPOINT_INTERVAL`]:
/// about 8 MB a second of 4 KiB pages.
const BUSY_WAL_FRAMES_PER_SECOND: f64 = 2_000.0;

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
    // The error may quote the URL, password included (sea-orm does for a URL
    // it cannot parse): logged scrubbed, and not passed on.
    let db = Database::connect(options).await.map_err(|e| {
        tracing::error!(
            url = %database_url::redact(url),
            error = %database_url::scrub(&e.to_string(), url),
            "cannot connect to the database"
        );
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

/// On SQLite, copies the WAL into the database file in the background, every
/// [`CHECKPOINT_INTERVAL`] or, while the WAL grows fast, every
/// [`BUSY_CHECKPOINT_INTERVAL`], on a pooled connection: a PASSIVE checkpoint
/// neither waits for nor blocks readers and the writer, so commits on a
/// caller's path rarely do that copy (and its fsync). Returns at once on
/// PostgreSQL.
pub async fn checkpoint_continuously(db: DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let mut frames_before = 0;
    let mut previous_start = tokio::time::Instant::now();
    loop {
        let start = tokio::time::Instant::now();
        let frames = match checkpoint(&db).await {
            Ok(frames) => frames,
            Err(error) => {
                tracing::debug!(%error, "WAL checkpoint failed; the next one retries");
                frames_before
            }
        };
        // Counted from this checkpoint's start: while the WAL grows fast, the
        // next one follows as soon as this one has taken its interval.
        let interval = next_checkpoint_in(frames_before, frames, start - previous_start);
        (frames_before, previous_start) = (frames, start);
        tokio::time::sleep_until(start + interval).await;
    }
}

/// One PASSIVE checkpoint; returns the frames in the WAL. The statement is
/// not kept prepared: run as a cached prepared statement (sea-orm's
/// `query_all_raw`), the same cadence no longer let the WAL restart from its
/// first frame before the writer's own checkpoint, and CreateUsers' p99 was
/// back at 51–64 ms (BENCHMARKS.md, "WAL checkpoints in the background").
async fn checkpoint(db: &DatabaseConnection) -> Result<u64> {
    use sea_orm::sqlx::{self, Row};
    let row = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
        .persistent(false)
        .fetch_one(db.get_sqlite_connection_pool())
        .await
        .map_err(|e| Error::internal(format!("WAL checkpoint: {e}")))?;
    let frames: i64 = row
        .try_get("log")
        .map_err(|e| Error::internal(format!("WAL checkpoint: {e}")))?;
    Ok(u64::try_from(frames).unwrap_or(0))
}

/// The interval to the next checkpoint, from the frames in the WAL at the
/// last two checkpoints, started `elapsed` apart. A WAL that holds fewer
/// frames than before has restarted from its first frame: it was written to
/// since, past a complete checkpoint, so writes go on.
fn next_checkpoint_in(frames_before: u64, frames: u64, elapsed: Duration) -> Duration {
    let restarted = frames < frames_before;
    let per_second = frames.saturating_sub(frames_before) as f64 / elapsed.as_secs_f64().max(0.001);
    if restarted || per_second >= BUSY_WAL_FRAMES_PER_SECOND {
        BUSY_CHECKPOINT_INTERVAL
    } else {
        CHECKPOINT_INTERVAL
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

/// How many of this release's migrations the database lacks (all of them
/// for an empty one), found without applying any or creating the
/// migrations table. Migrations applied by a newer release are no concern
/// of this one (each keeps the release before it working), so unlike
/// sea-orm's own status check this counts only what this release knows.
pub async fn pending_migrations(db: &DatabaseConnection) -> Result<usize> {
    let known = Migrator::migrations();
    if !SchemaManager::new(db)
        .has_table(seaql_migrations::Entity.table_name())
        .await?
    {
        return Ok(known.len());
    }
    let applied: HashSet<String> = seaql_migrations::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|migration| migration.version)
        .collect();
    Ok(known
        .iter()
        .filter(|migration| !applied.contains(migration.name()))
        .count())
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

    /// What a test's subscriber wrote.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A URL sea-orm cannot parse, or has no driver for, is quoted whole in
    /// its error: neither what is logged nor what is returned holds the
    /// password.
    #[tokio::test]
    async fn a_connection_error_never_shows_the_password() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // This test's thread only (the runtime is single-threaded).
        let _subscriber = tracing::subscriber::set_default(subscriber);
        let pool = PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
        };
        for url in [
            "postgres://castellan:hunter2@db host/castellan",
            "mysqlx://castellan:hunter2@db/castellan",
        ] {
            let error = connect(url, pool).await.unwrap_err();
            assert!(!error.to_string().contains("hunter2"), "{error}");
        }
        let logged = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(logged.matches("cannot connect to the database").count(), 2, "{logged}");
        assert!(logged.contains("castellan:***@db"), "{logged}");
        assert!(!logged.contains("hunter2"), "{logged}");
    }

    #[test]
    fn checkpoints_follow_a_fast_growing_wal_and_slow_down_when_it_stops() {
        let (slow, busy) = (CHECKPOINT_INTERVAL, BUSY_CHECKPOINT_INTERVAL);
        // (frames before, frames now, time between the two, next interval)
        let cases = [
            // Idle: nothing new since the last checkpoint.
            (700, 700, slow, slow),
            // A login's few frames.
            (700, 760, slow, slow),
            // Bulk writes: 2,500 frames in 500 ms, then 150 in the next 50 ms.
            (700, 3_200, slow, busy),
            (3_200, 3_350, busy, busy),
            // The WAL restarted, and holds 400 or no new frames 50 ms later.
            (9_000, 400, busy, busy),
            (9_000, 0, busy, busy),
            // The writes stopped.
            (3_350, 3_350, busy, slow),
        ];
        for (before, frames, elapsed, expected) in cases {
            assert_eq!(
                next_checkpoint_in(before, frames, elapsed),
                expected,
                "{before} → {frames} frames in {elapsed:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_checkpoint_reports_the_frames_in_the_wal() {
        let dir = std::env::temp_dir().join(format!("castellan-checkpoint-{}", uuid::Uuid::now_v7()));
        let url = format!("sqlite://{}/c.db?mode=rwc", dir.display());
        let pool = PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        };
        let db = connect(&url, pool).await.unwrap();
        db.execute_unprepared("CREATE TABLE t (v BLOB)").await.unwrap();
        // 100 rows of 3,000 bytes: a page each at least.
        db.execute_unprepared(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
             INSERT INTO t SELECT randomblob(3000) FROM n",
        )
        .await
        .unwrap();
        let frames = checkpoint(&db).await.unwrap();
        // Nothing written since: the WAL holds the same frames.
        let again = checkpoint(&db).await.unwrap();
        db.close().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(frames >= 100, "{frames} frames in the WAL");
        assert_eq!(again, frames);
    }
}
