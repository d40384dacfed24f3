//! Cross-replica invalidation of the access cache on PostgreSQL: a write that
//! can change someone's permissions sends `NOTIFY castellan_access` after its
//! commit; every replica LISTENs and drops its cached entries.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, sqlx::postgres::PgListener};

use crate::error::Result;

const CHANNEL: &str = "castellan_access";

/// Tells the other replicas (no-op on SQLite, which has one process).
pub async fn notify(db: &DatabaseConnection) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await?;
    }
    Ok(())
}

/// What the listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Subscribed: notifications arrive from now on.
    Listening,
    /// Another replica (or this one) changed access.
    Changed,
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
                while let Ok(Some(_)) = listener.try_recv().await {
                    on_event(ListenerEvent::Changed);
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
