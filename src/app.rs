//! The composition root: the database, the token keys and the caches, wired
//! once and shared by the gRPC services, the auth layer and the HTTP server.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    auth::{access::AccessCache, token::TokenKeys},
    cache::Freshness,
    config::Config,
    domain::{tenants, users::UserRecordCache},
    error::{Error, Result},
    mail::Mailer,
    store::{
        self, PoolSettings,
        invalidation::{Change, Echoes, ListenerEvent},
    },
};

pub struct App {
    /// Reads, and statements outside a write.
    pub db: DatabaseConnection,
    /// Every write begins here (see [`store::connect_writer`]).
    pub writer: DatabaseConnection,
    pub keys: TokenKeys,
    /// When the two caches below stop being usable.
    freshness: Arc<Freshness>,
    pub access: AccessCache,
    pub user_records: Arc<UserRecordCache>,
    pub mailer: Mailer,
    pub config: Config,
    /// This replica's commits whose notice has not come back yet.
    pub echoes: Arc<Echoes>,
    /// This process's id in the change notices it sends to the other
    /// replicas (PostgreSQL), so that it knows them when they come back.
    replica: Uuid,
}

impl App {
    /// Connects, migrates (unless turned off), loads or generates the
    /// signing key, and bootstraps an empty database.
    pub async fn build(config: Config) -> Result<Arc<Self>> {
        let pool = PoolSettings::from(&config);
        let db = store::connect(&config.database_url(), pool).await?;
        if !config.no_migrate {
            store::migrate(&db).await?;
        } else {
            // Serving on an older schema would fail calls one by one (a
            // column the code reads, missing): a rollout whose migration
            // job has not finished yet is refused at start instead.
            let pending = store::pending_migrations(&db).await?;
            if pending > 0 {
                return Err(Error::FailedPrecondition(format!(
                    "the database lacks {pending} migration(s) and --no-migrate is set: run `castellan migrate` first"
                )));
            }
        }
        let writer = store::connect_writer(&config.database_url(), &db, pool).await?;
        let keys = TokenKeys::load_or_generate(&config.signing_key_path(), &config.issuer, &config.audience)?
            .with_verification_keys(&config.verification_key_files)?;
        let freshness = Arc::new(Freshness::default());
        let app = Arc::new(Self {
            db,
            writer,
            keys,
            access: AccessCache::new(freshness.clone()),
            user_records: Arc::new(UserRecordCache::new(freshness.clone())),
            freshness,
            mailer: Mailer::from_config(&config)?,
            config,
            echoes: Arc::default(),
            replica: Uuid::new_v4(),
        });
        tenants::bootstrap(&app).await?;
        Ok(app)
    }

    /// Commits a write and outdates the cached entries it changed, here
    /// and on every replica. On PostgreSQL the replicas' notice is sent in
    /// the transaction, so it goes out exactly when the write commits, and
    /// the write answers once its own notice has come back (at most
    /// [`store::invalidation::ECHO_WAIT`] later): the others have it then. The
    /// commit and the outdating run to their end even when the call that
    /// asked for them is cancelled meanwhile (its client went away or its
    /// deadline passed): no committed change leaves a stale entry behind.
    pub async fn commit(&self, txn: DatabaseTransaction, change: Change) -> Result<()> {
        let freshness = self.freshness.clone();
        self.commit_then(txn, change, move || outdate(&freshness, change)).await
    }

    /// Commits a login, which set only the user's `last_connection`, as
    /// [`Self::commit`] with [`Change::Record`] does, except that the user's
    /// cached record as seen from `tenant_id` stays, with the new value.
    pub async fn commit_connection(
        &self,
        txn: DatabaseTransaction,
        tenant_id: Uuid,
        user_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let records = self.user_records.clone();
        self.commit_then(txn, Change::Record(user_id), move || {
            records.connected(tenant_id, user_id, at)
        })
        .await
    }

    /// Notifies the replicas in the transaction, commits, then runs
    /// `committed` (this replica's outdating), all in a task of its own. A
    /// commit that failed on a lost PostgreSQL connection may have taken
    /// effect: it outdates what `change` names instead.
    async fn commit_then(
        &self,
        txn: DatabaseTransaction,
        change: Change,
        committed: impl FnOnce() + Send + 'static,
    ) -> Result<()> {
        let freshness = self.freshness.clone();
        let replica = self.replica;
        let (commit, echo) = self.echoes.register();
        let outcome = uncancelled(async move {
            store::invalidation::notify(&txn, replica, commit, change).await?;
            let outcome = txn.commit().await;
            match outcome {
                Ok(()) => committed(),
                Err(_) => outdate(&freshness, change),
            }
            Ok(outcome?)
        })
        .await;
        // Answered once the notice is back (PostgreSQL, while listening):
        // the other replicas have it too, so a call to any of them after
        // this one finds what it outdates outdated.
        if let (Ok(()), Some(echo)) = (&outcome, echo) {
            echo.wait().await;
        }
        outcome
    }

    /// On PostgreSQL: listens for other replicas' changes (run as a
    /// background task).
    pub async fn listen_for_changes(self: Arc<Self>) {
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let freshness = self.freshness.clone();
        freshness.set_bypass(true);
        let echoes = self.echoes.clone();
        let quiet = store::invalidation::LISTENER_QUIET;
        store::invalidation::listen(self.config.database_url(), self.replica, quiet, move |event| {
            match event {
                ListenerEvent::Listening => freshness.set_bypass(false),
                ListenerEvent::Changed(change) => outdate(&freshness, change),
                ListenerEvent::Lost => freshness.set_bypass(true),
                ListenerEvent::Echo(_) => {}
            }
            echoes.follow(event);
        })
        .await;
    }
}

/// Outdates the cached entries a change outdates.
fn outdate(freshness: &Freshness, change: Change) {
    match change {
        Change::Directory => freshness.invalidate_all(),
        Change::Role(id) | Change::Group(id) => freshness.invalidate_role_or_group(id),
        Change::Access(user_id) => freshness.invalidate_access(user_id),
        Change::Record(user_id) => freshness.invalidate_user(user_id),
    }
}

/// Runs `work` in a task of its own (in the caller's span, so its logs keep
/// the request's fields) and waits for it: dropping the wait leaves the
/// work running to its end.
async fn uncancelled<T: Send + 'static>(work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
    tokio::spawn(work.in_current_span())
        .await
        .map_err(|error| Error::Internal(format!("a commit's task failed: {error}")))?
}
