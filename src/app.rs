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
    store,
};

pub struct App {
    pub db: DatabaseConnection,
    pub keys: TokenKeys,
    pub access: AccessCache,
    pub config: Config,
}

impl App {
    /// Connects, migrates (unless turned off), loads or generates the
    /// signing key, and bootstraps an empty database.
    pub async fn build(config: Config) -> Result<Arc<Self>> {
        let db = store::connect(&config.database_url()).await?;
        if !config.no_migrate {
            store::migrate(&db).await?;
        }
        let keys = TokenKeys::load_or_generate(&config.signing_key_path(), &config.issuer, &config.audience)?;
        let app = Arc::new(Self {
            db,
            keys,
            access: AccessCache::default(),
            config,
        });
        let admin = match (&app.config.bootstrap_admin_email, &app.config.bootstrap_admin_password) {
            (Some(email), Some(password)) => Some(BootstrapAdmin {
                email: email.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        tenants::bootstrap(&app, admin).await?;
        Ok(app)
    }
}
