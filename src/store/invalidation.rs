//! Cross-replica invalidation of the caches on PostgreSQL: a write sends
//! `NOTIFY castellan_access` after its commit, with a user id as payload when
//! it changed only that user's record, empty when it changed more; every
//! replica LISTENs and outdates its cached entries likewise.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, sqlx::postgres::PgListener};
use uuid::Uuid;

use crate::error::Result;

const CHANNEL: &str = "castellan_access";

/// Tells the other replicas (no-op on SQLite, which has one process).
pub async fn notify(db: &DatabaseConnection, user_id: Option<Uuid>) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        // A UUID's text form needs no quoting beyond the literal's quotes.
        let payload = user_id.map(|id| id.to_string()).unwrap_or_default();
        db.execute_unprepared(&format!("NOTIFY {CHANNEL}, '{payload}'")).await?;
    }
    Ok(())
}

/// What the listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Subscribed: notifications arrive from now on.
    Listening,
    /// Another replica (or this one) changed one user's record (`Some`) or
    /// more (`None`).
    Changed(Option<Uuid>),
    /// The connection was lost: notifications may have been missed until the
    /// next `Listening`.
    Lost,
}

/// Listens forever, reconnecting with a bounded backoff.
pub async fn listen(url: String, on_event: impl Fn(ListenerEvent) + Send + 'static) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                on_event(ListenerEvent::Listening);
                // `try_recv` answers `None` when the connection drops.
                while let Ok(Some(notification)) = listener.try_recv().await {
                    // Anything but one user's id outdates everything.
                    on_event(ListenerEvent::Changed(notification.payload().parse().ok()));
                }
                tracing::warn!("access invalidation listener lost its connection; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "access invalidation listener cannot connect"),
        }
        on_event(ListenerEvent::Lost);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
