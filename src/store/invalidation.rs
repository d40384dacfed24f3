//! Cross-replica invalidation of the caches on PostgreSQL: a write sends
//! `NOTIFY castellan_access` inside its transaction (PostgreSQL delivers it
//! when, and only if, the write commits), saying which replica sent it and
//! what it changed (see [`Change`]); every other replica LISTENs and
//! outdates its cached entries likewise. The sender does not outdate its
//! entries again when its own notice comes back (it did when the write
//! committed, and again would only throw away what was read since: a
//! login's record, kept up to date in place, say), but the write waits for
//! it before it answers: PostgreSQL delivers a commit's notices to every
//! listener together, so the other replicas have theirs by then (see
//! [`Echoes`]).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use sea_orm::{
    ConnectionTrait, DbBackend,
    sqlx::{Executor, postgres::PgListener},
};
use tokio::sync::oneshot;
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

/// Who sent a notice: a replica, and the number it gave the commit (none
/// from a replica that did not number its commits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sender {
    replica: Uuid,
    commit: Option<u64>,
}

/// A notice's payload: the sending replica's id, a slash and the commit's
/// number, a space, then the change.
fn payload(replica: Uuid, commit: u64, change: Change) -> String {
    format!("{replica}/{commit} {}", change.describe())
}

/// Who sent a notice (`None` from a replica that does not say) and what it
/// changed.
fn parse_payload(payload: &str) -> (Option<Sender>, Change) {
    let Some((sender, change)) = payload.split_once(' ') else {
        return (None, Change::parse(payload));
    };
    let (replica, commit) = match sender.split_once('/') {
        Some((replica, commit)) => (replica, commit.parse().ok()),
        None => (sender, None),
    };
    let sender = replica.parse().ok().map(|replica| Sender { replica, commit });
    (sender, Change::parse(change))
}

/// What a notice tells `replica`: another's change, or its own commit's
/// notice come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum News {
    Changed(Change),
    Echo(u64),
    Nothing,
}

fn news_for(replica: Uuid, payload: &str) -> News {
    match parse_payload(payload) {
        (Some(sender), _) if sender.replica == replica => sender.commit.map_or(News::Nothing, News::Echo),
        (_, change) => News::Changed(change),
    }
}

/// The commits of this replica whose notice has not come back yet. A write
/// waits for its own notice before it answers: PostgreSQL delivers a
/// commit's notices to every listening session together, so once this
/// replica has its notice back the others have theirs, and a call made to
/// any replica after the write answered finds its cached entries outdated.
#[derive(Debug, Default)]
pub struct Echoes {
    next: AtomicU64,
    listening: AtomicBool,
    /// A wait ran out: writes wait no more until a notice comes back (a
    /// connection that died without a word is found within
    /// [`LISTENER_QUIET`] twice; meanwhile writes need not each lose
    /// [`ECHO_WAIT`]).
    deaf: AtomicBool,
    waiting: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    heard: AtomicU64,
    unheard: AtomicU64,
}

/// How long a write waits for its notice to come back.
pub const ECHO_WAIT: Duration = Duration::from_secs(1);

/// A commit's notice awaited: dropped unheard (the commit failed, or its
/// call was cancelled), it is forgotten.
#[derive(Debug)]
pub struct Echo {
    echoes: Arc<Echoes>,
    commit: u64,
    hears: Option<oneshot::Receiver<()>>,
}

impl Echo {
    /// Waits up to [`ECHO_WAIT`] for the notice.
    pub async fn wait(mut self) {
        let Some(hears) = self.hears.take() else { return };
        match tokio::time::timeout(ECHO_WAIT, hears).await {
            Ok(Ok(())) => {
                self.echoes.heard.fetch_add(1, Ordering::Relaxed);
            }
            // Not back in time, or the listener lost its connection.
            _ => {
                self.echoes.unheard.fetch_add(1, Ordering::Relaxed);
                self.echoes.deaf.store(true, Ordering::Release);
                ::metrics::counter!("castellan_change_notices_unheard_total").increment(1);
            }
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.echoes.waiting().remove(&self.commit);
    }
}

impl Echoes {
    fn waiting(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers a commit, with what awaits its notice while notices come
    /// back (`None` when they do not: nothing would come).
    pub fn register(self: &Arc<Self>) -> (u64, Option<Echo>) {
        let commit = self.next.fetch_add(1, Ordering::Relaxed);
        if !self.listening.load(Ordering::Acquire) || self.deaf.load(Ordering::Acquire) {
            return (commit, None);
        }
        let (heard, hears) = oneshot::channel();
        self.waiting().insert(commit, heard);
        let echo = Echo {
            echoes: self.clone(),
            commit,
            hears: Some(hears),
        };
        (commit, Some(echo))
    }

    /// How many commits had their notice back in time, and how many not.
    pub fn heard(&self) -> (u64, u64) {
        (self.heard.load(Ordering::Relaxed), self.unheard.load(Ordering::Relaxed))
    }

    fn arrived(&self, commit: u64) {
        self.deaf.store(false, Ordering::Release);
        if let Some(heard) = self.waiting().remove(&commit) {
            let _ = heard.send(());
        }
    }

    /// Whether notices come back; when they stop, none of those waited for
    /// will, and their waits end.
    fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
        self.deaf.store(false, Ordering::Release);
        if !listening {
            self.waiting().clear();
        }
    }

    /// Follows the listener: its state, and the notices of this replica's
    /// own commits coming back.
    pub fn follow(&self, event: ListenerEvent) {
        match event {
            ListenerEvent::Listening => self.set_listening(true),
            ListenerEvent::Lost => self.set_listening(false),
            ListenerEvent::Echo(commit) => self.arrived(commit),
            ListenerEvent::Changed(_) => {}
        }
    }
}

/// Tells the other replicas, inside the write's transaction: PostgreSQL
/// delivers the notice when, and only if, it commits. `sender` is this
/// replica's id, `commit` the number [`Echoes::register`] gave the write. A
/// no-op on SQLite, which has one process.
pub async fn notify<C: ConnectionTrait>(txn: &C, sender: Uuid, commit: u64, change: Change) -> Result<()> {
    if txn.get_database_backend() == DbBackend::Postgres {
        // A UUID's text form, the number, the slash, the space and the
        // prefixes need no quoting beyond the literal's quotes.
        txn.execute_unprepared(&format!("NOTIFY {CHANNEL}, '{}'", payload(sender, commit, change)))
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
    /// This replica's own notice of its commit numbered so came back.
    Echo(u64),
    /// The connection was lost: notifications may have been missed until the
    /// next `Listening`.
    Lost,
}

/// How long the listener waits in silence before it proves its connection
/// still answers, and how long it gives the proof.
pub const LISTENER_QUIET: Duration = Duration::from_secs(10);

/// Listens forever, reconnecting with a bounded backoff; reports the
/// notices of `replica`, this one, as echoes. The connection is reported `Lost` as soon as it
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
                        Ok(Ok(Some(notification))) => match news_for(replica, notification.payload()) {
                            News::Changed(change) => on_event(ListenerEvent::Changed(change)),
                            News::Echo(commit) => on_event(ListenerEvent::Echo(commit)),
                            News::Nothing => {}
                        },
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
        let (replica, role, group, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let numbered = Sender {
            replica,
            commit: Some(7),
        };
        for change in [
            Change::Directory,
            Change::Role(role),
            Change::Group(group),
            Change::Access(user),
            Change::Record(user),
        ] {
            assert_eq!(parse_payload(&payload(replica, 7, change)), (Some(numbered), change));
            // As a replica that does not number its commits sends it.
            let unnumbered = Sender { replica, commit: None };
            assert_eq!(
                parse_payload(&format!("{replica} {}", change.describe())),
                (Some(unnumbered), change)
            );
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
                parse_payload(&format!("{replica}/7 {unknown}")),
                (Some(numbered), Change::Directory),
                "{unknown}"
            );
        }
        assert_eq!(parse_payload(&format!("x {user}")), (None, Change::Access(user)));
    }

    #[test]
    fn a_replica_hears_its_own_notices_as_echoes_and_the_others_as_changes() {
        let (this, other, user) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let change = Change::Record(user);
        assert_eq!(news_for(this, &payload(this, 3, change)), News::Echo(3));
        assert_eq!(news_for(this, &format!("{this} {}", change.describe())), News::Nothing);
        assert_eq!(news_for(this, &payload(other, 3, change)), News::Changed(change));
        assert_eq!(news_for(this, &change.describe()), News::Changed(change));
    }

    #[tokio::test]
    async fn a_commit_waits_for_its_echo_while_the_replica_listens_and_never_once_it_stops() {
        let echoes = Arc::new(Echoes::default());
        assert!(echoes.register().1.is_none(), "not listening: nothing will come back");

        echoes.follow(ListenerEvent::Listening);
        let (first, first_echo) = echoes.register();
        let (second, second_echo) = echoes.register();
        assert_ne!(first, second);
        echoes.follow(ListenerEvent::Echo(second));
        second_echo.expect("listening").wait().await;
        assert_eq!(echoes.heard(), (1, 0));
        // A commit that failed, or whose call was cancelled, is forgotten.
        drop(first_echo);
        assert!(echoes.waiting().is_empty());

        let (_, lost_echo) = echoes.register();
        echoes.follow(ListenerEvent::Lost);
        lost_echo.expect("listening").wait().await;
        assert_eq!(echoes.heard(), (1, 1), "the loss ends the wait");
        assert!(echoes.register().1.is_none(), "lost: nothing will come back");
    }

    #[tokio::test]
    async fn after_a_wait_runs_out_writes_wait_no_more_until_a_notice_comes_back() {
        let echoes = Arc::new(Echoes::default());
        echoes.follow(ListenerEvent::Listening);
        let (_, unheard) = echoes.register();
        unheard.expect("listening").wait().await;
        assert_eq!(echoes.heard(), (0, 1));
        let (late, none) = echoes.register();
        assert!(none.is_none(), "deaf: no write waits");
        echoes.follow(ListenerEvent::Echo(late));
        assert!(echoes.register().1.is_some(), "a notice came back: writes wait again");
    }
}
