//! The composition root: the database, the token keys and the access cache,
//! wired once and shared by the gRPC services, the auth layer and the HTTP
//! server.

use std::sync::Arc;

use sea_orm::DatabaseConnection;

use crate::{
    auth::{access::AccessCache, token::TokenKeys},
    config::Config,
    domain::tenants::{self, BootstrapAdmin},
    error::Result,
    mail::Mailer,
    store::{self, PoolSettings, invalidation::ListenerEvent},
};

pub struct App {
    pub db: DatabaseConnection,
    pub keys: TokenKeys,
    pub access: AccessCache,
    pub mailer: Mailer,
    pub config: Config,
}

impl App {
    /// Connects, migrates (unless turned off), loads or generates the
    /// signing key, and bootstraps an empty database.
    pub async fn build(config: Config) -> Result<Arc<Self>> {
        let db = store::connect(&config.database_url(), PoolSettings::from(&config)).await?;
        if !config.no_migrate {
            store::migrate(&db).await?;
        }
        let keys = TokenKeys::load_or_generate(&config.signing_key_path(), &config.issuer, &config.audience)?
            .with_verification_keys(&config.verification_key_files)?;
        let app = Arc::new(Self {
            db,
            keys,
            access: AccessCache::default(),
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

    /// After a commit that can change what someone may do: drops this
    /// replica's cached access and tells the other replicas to do the same,
    /// before the call answers.
    pub async fn invalidate_access(&self) {
        self.access.invalidate();
        if let Err(error) = store::invalidation::notify(&self.db).await {
            // The listeners' reconnect logic covers a lost notification only
            // when their connection drops; a failed NOTIFY means ours is down,
            // and the other replicas will see the same outage.
            tracing::warn!(%error, "could not notify other replicas of an access change");
        }
    }

    /// On PostgreSQL: listens for other replicas' access changes (run as a
    /// background task).
    pub async fn listen_for_access_changes(self: Arc<Self>) {
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let app = self.clone();
        self.access.set_bypass(true);
        store::invalidation::listen(self.config.database_url(), move |event| match event {
            ListenerEvent::Listening => app.access.set_bypass(false),
            ListenerEvent::Changed => app.access.invalidate(),
            ListenerEvent::Lost => app.access.set_bypass(true),
        })
        .await;
    }
}
