//! The composition root: the database, the token keys and the caches, wired
//! once and shared by the gRPC services, the auth layer and the HTTP server.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::{
    auth::{access::AccessCache, token::TokenKeys},
    cache::Freshness,
    config::Config,
    domain::{
        tenants::{self, BootstrapAdmin},
        users::UserRecordCache,
    },
    error::Result,
    mail::Mailer,
    store::{
        self, PoolSettings,
        invalidation::{Change, ListenerEvent},
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
    pub user_records: UserRecordCache,
    pub mailer: Mailer,
    pub config: Config,
}

impl App {
    /// Connects, migrates (unless turned off), loads or generates the
    /// signing key, and bootstraps an empty database.
    pub async fn build(config: Config) -> Result<Arc<Self>> {
        let pool = PoolSettings::from(&config);
        let db = store::connect(&config.database_url(), pool).await?;
        if !config.no_migrate {
            store::migrate(&db).await?;
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
            user_records: UserRecordCache::new(freshness.clone()),
            freshness,
            mailer: Mailer::from_config(&config)?,
            config,
        });
        let set = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
        let admin = match (
            set(&app.config.bootstrap_admin_email),
            set(&app.config.bootstrap_admin_password),
        ) {
            (Some(email), Some(password)) => Some(BootstrapAdmin { email, password }),
            _ => None,
        };
        tenants::bootstrap(&app, admin).await?;
        Ok(app)
    }

    /// After a commit that can change what users of more than one tenant
    /// may do or show (a global role, a tenant, the permission catalog):
    /// outdates every cached entry on this replica and tells the other
    /// replicas to do the same, before the call answers.
    pub async fn directory_changed(&self) {
        self.changed(Change::Directory).await;
    }

    /// After a commit that changes one tenant's own roles or groups: outdates
    /// what every user may do in that tenant and their records as seen from
    /// it, here and on the other replicas, before the call answers.
    pub async fn tenant_roles_changed(&self, tenant_id: Uuid) {
        self.changed(Change::Tenant(tenant_id)).await;
    }

    /// After a commit that changes what one user may do, and nothing any
    /// other user may do or shows: its status, tenant memberships, roles,
    /// groups or direct grants, its password's state, its deletion. Outdates
    /// the user's access and records here and on the other replicas, before
    /// the call answers.
    pub async fn access_changed(&self, user_id: Uuid) {
        self.changed(Change::User(user_id)).await;
    }

    /// After a commit that changes only one user's own record (its row, its
    /// devices) and nothing it may do.
    pub async fn user_changed(&self, user_id: Uuid) {
        self.freshness.invalidate_user(user_id);
        self.notify_replicas(Change::User(user_id)).await;
    }

    /// After a login's commit, which set only the user's `last_connection`:
    /// as [`Self::user_changed`], but the user's cached record as seen from
    /// `tenant_id` stays, with the new value.
    pub async fn user_connected(&self, tenant_id: Uuid, user_id: Uuid, at: DateTime<Utc>) {
        self.user_records.connected(tenant_id, user_id, at);
        self.notify_replicas(Change::User(user_id)).await;
    }

    async fn changed(&self, change: Change) {
        outdate(&self.freshness, change);
        self.notify_replicas(change).await;
    }

    async fn notify_replicas(&self, change: Change) {
        if let Err(error) = store::invalidation::notify(&self.db, change).await {
            // The listeners' reconnect logic covers a lost notification only
            // when their connection drops; a failed NOTIFY means ours is down,
            // and the other replicas will see the same outage.
            tracing::warn!(%error, "could not notify other replicas of a change");
        }
    }

    /// On PostgreSQL: listens for other replicas' changes (run as a
    /// background task).
    pub async fn listen_for_changes(self: Arc<Self>) {
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let freshness = self.freshness.clone();
        freshness.set_bypass(true);
        store::invalidation::listen(self.config.database_url(), move |event| match event {
            ListenerEvent::Listening => freshness.set_bypass(false),
            ListenerEvent::Changed(change) => outdate(&freshness, change),
            ListenerEvent::Lost => freshness.set_bypass(true),
        })
        .await;
    }
}

/// Outdates the cached entries a change outdates. A change to one user
/// outdates its access too: another replica's notice does not say whether
/// it changed only the user's record.
fn outdate(freshness: &Freshness, change: Change) {
    match change {
        Change::Directory => freshness.invalidate_all(),
        Change::Tenant(tenant_id) => freshness.invalidate_tenant(tenant_id),
        Change::User(user_id) => freshness.invalidate_access(user_id),
    }
}
