//! Cross-replica invalidation of the caches on PostgreSQL: a write sends
//! `NOTIFY castellan_access` inside its transaction (PostgreSQL delivers it
//! when, and only if, the write commits), saying what it changed (see
//! [`Change`]); every replica LISTENs and outdates its cached entries
//! likewise.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, sqlx::postgres::PgListener};
use uuid::Uuid;

use crate::error::Result;

const CHANNEL: &str = "castellan_access";

const TENANT_PREFIX: &str = "tenant:";
const RECORD_PREFIX: &str = "record:";

/// What a write changed, and so which cached entries it outdates; the
/// replicas tell each other as much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Anything shared between tenants: a global role, a tenant, the
    /// permission catalog (payload: empty).
    Directory,
    /// One tenant's own roles or groups (payload: `tenant:` and its id).
    Tenant(Uuid),
    /// What one user may do, and nothing any other user may do or shows:
    /// its status, tenant memberships, roles, groups or direct grants, its
    /// password's state, its deletion (payload: its id).
    Access(Uuid),
    /// One user's own record alone: its devices, its last connection
    /// (payload: `record:` and its id).
    Record(Uuid),
}

impl Change {
    fn payload(self) -> String {
        match self {
            Self::Directory => String::new(),
            Self::Tenant(id) => format!("{TENANT_PREFIX}{id}"),
            Self::Access(id) => id.to_string(),
            Self::Record(id) => format!("{RECORD_PREFIX}{id}"),
        }
    }

    /// Anything not understood (a newer replica's payload, say) outdates
    /// everything.
    fn from_payload(payload: &str) -> Self {
        let parsed = if let Some(tenant) = payload.strip_prefix(TENANT_PREFIX) {
            tenant.parse().map(Self::Tenant)
        } else if let Some(user) = payload.strip_prefix(RECORD_PREFIX) {
            user.parse().map(Self::Record)
        } else {
            payload.parse().map(Self::Access)
        };
        parsed.unwrap_or(Self::Directory)
    }
}

/// Tells the other replicas, inside the write's transaction: PostgreSQL
/// delivers the notice when, and only if, it commits. A no-op on SQLite,
/// which has one process.
pub async fn notify<C: ConnectionTrait>(txn: &C, change: Change) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        // A UUID's text form and the prefixes need no quoting beyond the
        // literal's quotes.
        txn.execute_unprepared(&format!("NOTIFY {CHANNEL}, '{}'", change.payload()))
            .await?;
    }
    Ok(())
}

/// What the listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Subscribed: notifications arrive from now on.
    Listening,
    /// Another replica (or this one) made a change.
    Changed(Change),
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
                    on_event(ListenerEvent::Changed(Change::from_payload(notification.payload())));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_say_what_changed_and_anything_else_outdates_everything() {
        let (tenant, user) = (Uuid::now_v7(), Uuid::now_v7());
        for change in [
            Change::Directory,
            Change::Tenant(tenant),
            Change::Access(user),
            Change::Record(user),
        ] {
            assert_eq!(Change::from_payload(&change.payload()), change);
        }
        for unknown in ["tenant:", "record:x", "group:0190c3a4-0000-7000-8000-000000000000", "?"] {
            assert_eq!(Change::from_payload(unknown), Change::Directory, "{unknown}");
        }
    }
}
