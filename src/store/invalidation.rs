//! Cross-replica invalidation of the caches on PostgreSQL: a write sends
//! `NOTIFY castellan_access` inside its transaction (PostgreSQL delivers it
//! when, and only if, the write commits), saying which replica sent it and
//! what it changed (see [`Change`]); every other replica LISTENs and
//! outdates its cached entries likewise. The sender skips its own notices:
//! it outdated its entries when the write committed, and outdating them
//! again when the notice comes back would only throw away what was read
//! since (a login's record, kept up to date in place, say).

use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DbBackend,
    sqlx::{Executor, postgres::PgListener},
};
use uuid::Uuid;

use crate::error::Result;

const CHANNEL: &str = "castellan_access";

const ROLE_PREFIX: &str = "role:";
const GROUP_PREFIX: &str = "group:";
const RECORD_PREFIX: &str = "record:";

/// What a write changed, and so which cached entries it outdates; the
/// replicas tell each other as much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Anything shared between tenants: a tenant, the permission catalog
    /// (payload: empty).
    Directory,
    /// One role, global or a tenant's: its fields, its permissions, its
    /// deletion (payload: `role:` and its id).
    Role(Uuid),
    /// One group: its fields, its roles, its deletion (payload: `group:`
    /// and its id).
    Group(Uuid),
    /// What one user may do, and nothing any other user may do or shows:
    /// its status, tenant memberships, roles, groups or direct grants, its
    /// password's state, its deletion (payload: its id).
    Access(Uuid),
    /// One user's own record alone: its devices, its last connection
    /// (payload: `record:` and its id).
    Record(Uuid),
}

impl Change {
    fn describe(self) -> String {
        match self {
            Self::Directory => String::new(),
            Self::Role(id) => format!("{ROLE_PREFIX}{id}"),
            Self::Group(id) => format!("{GROUP_PREFIX}{id}"),
            Self::Access(id) => id.to_string(),
            Self::Record(id) => format!("{RECORD_PREFIX}{id}"),
        }
    }

    /// Anything not understood (a newer replica's payload, or an older
    /// one's `tenant:` change, say) outdates everything.
    fn parse(payload: &str) -> Self {
        let parsed = if let Some(role) = payload.strip_prefix(ROLE_PREFIX) {
            role.parse().map(Self::Role)
        } else if let Some(group) = payload.strip_prefix(GROUP_PREFIX) {
            group.parse().map(Self::Group)
        } else if let Some(user) = payload.strip_prefix(RECORD_PREFIX) {
            user.parse().map(Self::Record)
        } else {
            payload.parse().map(Self::Access)
        };
        parsed.unwrap_or(Self::Directory)
    }
}

/// A notice's payload: the sending replica's id, a space, then the change.
fn payload(sender: Uuid, change: Change) -> String {
    format!("{sender} {}", change.describe())
}

/// Who sent a notice (`None` from a replica that does not say) and what it
/// changed.
fn parse_payload(payload: &str) -> (Option<Uuid>, Change) {
    match payload.split_once(' ') {
        Some((sender, change)) => (sender.parse().ok(), Change::parse(change)),
        None => (None, Change::parse(payload)),
    }
}

/// What a notice tells `replica`: nothing when it sent the notice itself.
fn news_for(replica: Uuid, payload: &str) -> Option<Change> {
    match parse_payload(payload) {
        (Some(sender), _) if sender == replica => None,
        (_, change) => Some(change),
    }
}

/// Tells the other replicas, inside the write's transaction: PostgreSQL
/// delivers the notice when, and only if, it commits. `sender` is this
/// replica's id. A no-op on SQLite, which has one process.
pub async fn notify<C: ConnectionTrait>(txn: &C, sender: Uuid, change: Change) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        // A UUID's text form, the space and the prefixes need no quoting
        // beyond the literal's quotes.
        txn.execute_unprepared(&format!("NOTIFY {CHANNEL}, '{}'", payload(sender, change)))
            .await?;
    }
    Ok(())
}

/// What the listener reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerEvent {
    /// Subscribed: notifications arrive from now on.
    Listening,
    /// Another replica made a change.
    Changed(Change),
    /// The connection was lost: notifications may have been missed until the
    /// next `Listening`.
    Lost,
}

/// How long the listener waits in silence before it proves its connection
/// still answers, and how long it gives the proof.
pub const LISTENER_QUIET: Duration = Duration::from_secs(10);

/// Listens forever, reconnecting with a bounded backoff; skips the notices
/// of `replica`, this one. The connection is reported `Lost` as soon as it
/// is found dead: when a read fails, and when after `quiet` without a
/// notice a query on it gets no answer within `quiet` (a connection a NAT
/// or a partition dropped without a word would otherwise keep the caches
/// answering, unwarned, for their whole lifetime).
pub async fn listen(url: String, replica: Uuid, quiet: Duration, on_event: impl Fn(ListenerEvent) + Send + 'static) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut listener = PgListener::connect(&url).await?;
            // A dropped connection answers `None` at once; by default sqlx
            // would first reconnect, for as long as that takes (and without
            // end while the server refuses), with the caches trusted meanwhile.
            listener.eager_reconnect(false);
            listener.listen(CHANNEL).await?;
            Ok::<_, sea_orm::sqlx::Error>(listener)
        };
        match listener.await {
            Ok(mut listener) => {
                backoff = Duration::from_millis(100);
                on_event(ListenerEvent::Listening);
                loop {
                    // `try_recv` is cancel-safe: a timeout loses no notice.
                    match tokio::time::timeout(quiet, listener.try_recv()).await {
                        Ok(Ok(Some(notification))) => {
                            if let Some(change) = news_for(replica, notification.payload()) {
                                on_event(ListenerEvent::Changed(change));
                            }
                        }
                        Ok(_) => break,
                        Err(_quiet) => {
                            let ping = tokio::time::timeout(quiet, listener.execute("SELECT 1")).await;
                            if !matches!(ping, Ok(Ok(_))) {
                                break;
                            }
                        }
                    }
                }
                tracing::warn!("access invalidation listener lost its connection; reconnecting");
            }
            Err(error) => tracing::warn!(
                error = %super::database_url::scrub(&error.to_string(), &url),
                "access invalidation listener cannot connect"
            ),
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
    fn payloads_say_who_sent_them_and_what_changed_and_anything_else_outdates_everything() {
        let (sender, role, group, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        for change in [
            Change::Directory,
            Change::Role(role),
            Change::Group(group),
            Change::Access(user),
            Change::Record(user),
        ] {
            assert_eq!(parse_payload(&payload(sender, change)), (Some(sender), change));
            // As a replica that does not say who it is sends it.
            assert_eq!(parse_payload(&change.describe()), (None, change));
        }
        // The second: a change to a tenant's roles from a replica that
        // counted them by tenant.
        for unknown in [
            "role:",
            "tenant:0190c3a4-0000-7000-8000-000000000000",
            "record:x",
            "group:x",
            "?",
        ] {
            assert_eq!(parse_payload(unknown), (None, Change::Directory), "{unknown}");
            assert_eq!(
                parse_payload(&format!("{sender} {unknown}")),
                (Some(sender), Change::Directory),
                "{unknown}"
            );
        }
        assert_eq!(parse_payload(&format!("x {user}")), (None, Change::Access(user)));
    }

    #[test]
    fn a_replica_skips_its_own_notices_only() {
        let (this, other, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let change = Change::Record(user);
        assert_eq!(news_for(this, &payload(this, change)), None);
        assert_eq!(news_for(this, &payload(other, change)), Some(change));
        assert_eq!(news_for(this, &change.describe()), Some(change));
    }
}
