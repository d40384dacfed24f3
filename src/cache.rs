//! When a cached read of the directory may still be used, and the bounded
//! [`Cache`] that every cache of the server is.
//!
//! Every cache of directory data (effective access, user records) stores,
//! next to each entry, the [`Stamp`] it read *before* its database query, and
//! uses the entry only while the stamp is still current. A write bumps the
//! stamps it outdates *after* its commit: a reader racing a writer therefore
//! never keeps a stale entry, since whatever it stores carries the stamp from
//! before the bump.
//!
//! Four scopes: the whole directory (tenants, the permission catalog); one
//! role or group, which outdates the entries read from it (what its holders
//! may do, their records); what one user may do (its status, memberships
//! and grants), which also outdates its records; and one user's records
//! alone (a login's `last_connection`, the user's devices). Users, roles and
//! groups map onto fixed arrays of counters; two sharing one only cost each
//! other a cache miss.
//!
//! An entry learns which roles and groups it rests on only from its query,
//! after the stamp was taken. So roles and groups are not counted but
//! sequenced: every change to one takes the next number of one sequence and
//! leaves it on the role's or group's counter, and the stamp keeps the
//! sequence as it was before the query. An entry is current while none of
//! the roles and groups it was read from carries a later number: a change
//! that committed after the query began carries one.

use std::{
    hash::Hash,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use quick_cache::Equivalent;
use uuid::Uuid;

/// Counters for per-user invalidation (64 KiB): a user who changes often
/// (every login sets `last_connection`) costs the others on its counter a
/// miss each time, so there are many.
const USER_SHARDS: usize = 8192;

/// Counters of roles and groups (32 KiB): they change rarely, and an entry
/// rests on a few of them.
const ROLE_AND_GROUP_SHARDS: usize = 4096;

#[derive(Debug)]
pub struct Freshness {
    epoch: AtomicU64,
    /// Set while invalidations from other replicas may be missed (the
    /// PostgreSQL listener is disconnected): no stamp is current.
    bypass: AtomicBool,
    /// The number of the latest change to any role or group.
    role_and_group_changes: AtomicU64,
    /// Per role or group: the number of its latest change.
    roles_and_groups: Box<[AtomicU64]>,
    /// Per-user counters of records (what GetUser shows).
    users: Box<[AtomicU64]>,
    /// Per-user counters of access (what a user may do). Separate from the
    /// records' so that a login, which outdates the caller's record on every
    /// success, leaves its access entries current.
    access: Box<[AtomicU64]>,
}

/// What a cached entry is about, and so which changes outdate it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// Shared by every tenant (a tenant's id by its slug): only a change to
    /// the whole directory.
    Directory,
    /// A user's record (as seen from some tenant).
    Record(Uuid),
    /// What a user may do (in some tenant).
    Access(Uuid),
}

/// The counters an entry was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    role_and_group_changes: u64,
    user: u64,
}

fn counters(len: usize) -> Box<[AtomicU64]> {
    (0..len).map(|_| AtomicU64::new(0)).collect()
}

/// The counter of `id` among `counters`. UUIDv7 and v4 both end in random
/// bits.
fn counter_of(counters: &[AtomicU64], id: Uuid) -> &AtomicU64 {
    let (_, low) = id.as_u64_pair();
    &counters[(low % counters.len() as u64) as usize]
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            bypass: AtomicBool::new(false),
            role_and_group_changes: AtomicU64::new(0),
            roles_and_groups: counters(ROLE_AND_GROUP_SHARDS),
            users: counters(USER_SHARDS),
            access: counters(USER_SHARDS),
        }
    }
}

impl Freshness {
    /// The stamp to store with an entry about `subject`, read before the
    /// entry's query.
    pub fn stamp(&self, subject: Subject) -> Stamp {
        Stamp {
            epoch: self.epoch.load(Ordering::Acquire),
            role_and_group_changes: self.role_and_group_changes.load(Ordering::Acquire),
            user: self.user_counter(subject),
        }
    }

    fn user_counter(&self, subject: Subject) -> u64 {
        match subject {
            Subject::Directory => 0,
            Subject::Record(user_id) => counter_of(&self.users, user_id).load(Ordering::Acquire),
            Subject::Access(user_id) => counter_of(&self.access, user_id).load(Ordering::Acquire),
        }
    }

    /// Whether an entry about `subject`, read under `stamp` from these roles
    /// and groups (by id: every one the query came across, including those
    /// that grant nothing), may still be used.
    pub fn is_current(&self, stamp: Stamp, subject: Subject, read_from: impl IntoIterator<Item = Uuid>) -> bool {
        !self.bypass.load(Ordering::Acquire)
            && stamp.epoch == self.epoch.load(Ordering::Acquire)
            && stamp.user == self.user_counter(subject)
            && read_from.into_iter().all(|id| {
                counter_of(&self.roles_and_groups, id).load(Ordering::Acquire) <= stamp.role_and_group_changes
            })
    }

    /// Outdates every entry. Call after committing a change that can affect
    /// users in more than one tenant.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Outdates the entries read from one role or group: what its holders
    /// may do, and their records. Call after committing a change to it (its
    /// fields, its permissions or roles, its deletion).
    pub fn invalidate_role_or_group(&self, id: Uuid) {
        let change = self.role_and_group_changes.fetch_add(1, Ordering::AcqRel) + 1;
        counter_of(&self.roles_and_groups, id).fetch_max(change, Ordering::AcqRel);
    }

    /// Outdates the records of one user.
    pub fn invalidate_user(&self, user_id: Uuid) {
        counter_of(&self.users, user_id).fetch_add(1, Ordering::AcqRel);
    }

    /// Outdates what one user may do and its records. Call after committing
    /// a change to the user's status, memberships, grants or password state
    /// (or its deletion).
    pub fn invalidate_access(&self, user_id: Uuid) {
        counter_of(&self.access, user_id).fetch_add(1, Ordering::AcqRel);
        self.invalidate_user(user_id);
    }

    /// Outdates the records of one user, as [`Self::invalidate_user`] does,
    /// after a commit whose change to one of its records the writer knows:
    /// returns the stamp under which that record, read under `read` from
    /// the roles and groups `read_from`, may be stored again with the change
    /// applied. `None` when there is no such entry or another write outdated
    /// it since it was read. (A write that has committed but not yet
    /// invalidated outdates the stored entry when it does.)
    pub fn invalidate_user_after(
        &self,
        user_id: Uuid,
        read: Option<Stamp>,
        read_from: impl IntoIterator<Item = Uuid>,
    ) -> Option<Stamp> {
        let counter = counter_of(&self.users, user_id);
        let advance = |read: &Stamp| {
            counter
                .compare_exchange(read.user, read.user + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        let Some(read) = read.filter(advance) else {
            counter.fetch_add(1, Ordering::AcqRel);
            return None;
        };
        let updated = Stamp {
            user: read.user + 1,
            ..read
        };
        self.is_current(updated, Subject::Record(user_id), read_from)
            .then_some(updated)
    }

    /// Turns the caches off (`true`) while other replicas' invalidations may
    /// be missed, and back on once they are heard again. Everything is
    /// outdated first: a reader that sees the caches on again finds no entry
    /// read while notices were missed.
    pub fn set_bypass(&self, bypass: bool) {
        self.invalidate_all();
        self.bypass.store(bypass, Ordering::Release);
    }
}

/// A bounded concurrent map whose entries are used for at most `ttl` after
/// they were stored: every cache of the server. quick_cache evicts (S3-FIFO)
/// without background work, and a read is one shard's read lock, which
/// matters on the auth layer's path (three reads a call).
#[derive(Debug)]
pub struct Cache<K, V> {
    entries: quick_cache::sync::Cache<K, (Instant, V)>,
    ttl: Duration,
}

impl<K: Eq + Hash + Clone, V: Clone> Cache<K, V> {
    /// A cache of about `capacity` entries.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
            ttl,
        }
    }

    /// The value stored under `key`, unless it is older than the cache's `ttl`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let (stored, value) = self.entries.get(key)?;
        (stored.elapsed() < self.ttl).then_some(value)
    }

    pub fn insert(&self, key: K, value: V) {
        self.entries.insert(key, (Instant::now(), value));
    }

    /// Replaces the value stored under `key`, if one is and it is not older
    /// than the cache's `ttl`, keeping the time it was stored: what a writer
    /// patches into an entry was not read anew.
    pub fn replace(&self, key: K, value: V) {
        if let Some((stored, _)) = self.entries.get(&key)
            && stored.elapsed() < self.ttl
        {
            self.entries.insert(key, (stored, value));
        }
    }

    /// How many entries are stored, outdated ones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn remove<Q>(&self, key: &Q)
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.entries.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTHING: [Uuid; 0] = [];

    #[test]
    fn stamps_expire_by_scope() {
        let freshness = Freshness::default();
        let alice_id = Uuid::now_v7();
        let (alice, bob) = (Subject::Record(alice_id), Subject::Record(Uuid::now_v7()));
        let of_alice = freshness.stamp(alice);
        let shared = freshness.stamp(Subject::Directory);
        assert!(freshness.is_current(of_alice, alice, NOTHING));

        freshness.invalidate_user(alice_id);
        assert!(!freshness.is_current(of_alice, alice, NOTHING));
        assert!(freshness.is_current(shared, Subject::Directory, NOTHING));
        let of_bob = freshness.stamp(bob);
        assert!(freshness.is_current(of_bob, bob, NOTHING));

        freshness.invalidate_all();
        assert!(!freshness.is_current(of_bob, bob, NOTHING));
        assert!(!freshness.is_current(shared, Subject::Directory, NOTHING));

        let now = freshness.stamp(bob);
        freshness.set_bypass(true);
        assert!(!freshness.is_current(freshness.stamp(bob), bob, NOTHING));
        freshness.set_bypass(false);
        assert!(
            !freshness.is_current(now, bob, NOTHING),
            "a bypass outdates what was read before it"
        );
        assert!(freshness.is_current(freshness.stamp(bob), bob, NOTHING));
    }

    #[test]
    fn access_is_outdated_by_its_user_or_the_directory_not_by_a_record_change() {
        let freshness = Freshness::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let access_of_alice = freshness.stamp(Subject::Access(alice));
        let access_of_bob = freshness.stamp(Subject::Access(bob));
        let record_of_alice = freshness.stamp(Subject::Record(alice));

        // A login or a device: the record only.
        freshness.invalidate_user(alice);
        assert!(freshness.is_current(access_of_alice, Subject::Access(alice), NOTHING));
        assert!(!freshness.is_current(record_of_alice, Subject::Record(alice), NOTHING));

        // Alice's status or grants: her access and her record, not Bob's.
        let record_of_alice = freshness.stamp(Subject::Record(alice));
        let record_of_bob = freshness.stamp(Subject::Record(bob));
        freshness.invalidate_access(alice);
        assert!(!freshness.is_current(access_of_alice, Subject::Access(alice), NOTHING));
        assert!(!freshness.is_current(record_of_alice, Subject::Record(alice), NOTHING));
        assert!(freshness.is_current(access_of_bob, Subject::Access(bob), NOTHING));
        assert!(freshness.is_current(record_of_bob, Subject::Record(bob), NOTHING));

        // The directory: everyone's.
        freshness.invalidate_all();
        assert!(!freshness.is_current(access_of_bob, Subject::Access(bob), NOTHING));
        let access_of_bob = freshness.stamp(Subject::Access(bob));
        freshness.set_bypass(true);
        assert!(!freshness.is_current(freshness.stamp(Subject::Access(bob)), Subject::Access(bob), NOTHING));
        freshness.set_bypass(false);
        assert!(
            !freshness.is_current(access_of_bob, Subject::Access(bob), NOTHING),
            "a bypass outdates it too"
        );
    }

    #[test]
    fn a_role_or_group_outdates_the_entries_read_from_it_only() {
        let freshness = Freshness::default();
        let (changed, other, group) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let user = Uuid::now_v7();
        let entries = [
            (Subject::Access(user), vec![changed, group]),
            (Subject::Record(user), vec![group, changed]),
            (Subject::Access(user), vec![other, group]),
            (Subject::Record(user), vec![]),
            (Subject::Directory, vec![]),
        ];
        let stamps = entries.each_ref().map(|(subject, _)| freshness.stamp(*subject));
        freshness.invalidate_role_or_group(changed);
        let current = |stamps: &[Stamp; 5]| {
            std::array::from_fn::<_, 5, _>(|i| {
                let (subject, read_from) = &entries[i];
                freshness.is_current(stamps[i], *subject, read_from.iter().copied())
            })
        };
        assert_eq!(
            current(&stamps),
            [false, false, true, true, true],
            "the entries read from the changed role, nothing else"
        );

        // Read again after the change: current, until the next change.
        let stamps = entries.each_ref().map(|(subject, _)| freshness.stamp(*subject));
        assert_eq!(current(&stamps), [true; 5]);
        freshness.invalidate_role_or_group(group);
        assert_eq!(current(&stamps), [false, false, false, true, true]);
    }

    /// A change that commits while an entry is read carries a later number
    /// than the entry's stamp, whichever roles it touched before: the
    /// sequence, not a per-role count, is what the stamp keeps.
    #[test]
    fn a_change_during_the_read_outdates_the_entry_whatever_came_before() {
        let freshness = Freshness::default();
        let (role, elsewhere) = (Uuid::now_v7(), Uuid::now_v7());
        freshness.invalidate_role_or_group(role);
        freshness.invalidate_role_or_group(elsewhere);
        freshness.invalidate_role_or_group(elsewhere);
        // The reader takes its stamp, then its query races a change to the
        // role it will find.
        let stamp = freshness.stamp(Subject::Access(Uuid::nil()));
        freshness.invalidate_role_or_group(role);
        assert!(!freshness.is_current(stamp, Subject::Access(Uuid::nil()), [role]));
        assert!(freshness.is_current(stamp, Subject::Access(Uuid::nil()), [elsewhere]));
    }

    #[test]
    fn a_writer_keeps_an_entry_only_if_nothing_else_outdated_it() {
        let freshness = Freshness::default();
        let (alice, role) = (Uuid::now_v7(), Uuid::now_v7());
        let subject = Subject::Record(alice);
        let read = freshness.stamp(subject);
        let kept = freshness.invalidate_user_after(alice, Some(read), [role]);
        assert!(
            !freshness.is_current(read, subject, [role]),
            "the old stamp is outdated"
        );
        let kept = kept.expect("nothing else wrote since the read");
        assert!(freshness.is_current(kept, subject, [role]));

        freshness.invalidate_user(alice);
        assert_eq!(
            freshness.invalidate_user_after(alice, Some(kept), [role]),
            None,
            "another write came between"
        );
        assert!(!freshness.is_current(kept, subject, [role]));

        for wider in [
            |f: &Freshness, _| f.invalidate_all(),
            |f: &Freshness, role| f.invalidate_role_or_group(role),
        ] {
            let read = freshness.stamp(subject);
            wider(&freshness, role);
            assert_eq!(
                freshness.invalidate_user_after(alice, Some(read), [role]),
                None,
                "outdated by a wider write"
            );
        }
        let read = freshness.stamp(subject);
        assert_eq!(
            freshness.invalidate_user_after(alice, None, [role]),
            None,
            "no entry to keep"
        );
        assert!(
            !freshness.is_current(read, subject, [role]),
            "yet the user's entries are outdated"
        );
    }

    #[test]
    fn entries_are_used_until_their_time_to_live_ends() {
        let cache = Cache::new(10, Duration::from_millis(50));
        cache.insert("kept".to_owned(), 1);
        assert_eq!(cache.get("kept"), Some(1));
        assert_eq!(cache.get("never stored"), None);
        cache.replace("kept".to_owned(), 4);
        assert_eq!(cache.get("kept"), Some(4));
        cache.replace("absent".to_owned(), 5);
        assert_eq!(cache.get("absent"), None, "replace stores nothing new");
        cache.insert("removed".to_owned(), 2);
        assert_eq!(cache.len(), 2);
        cache.remove("removed");
        assert_eq!(cache.get("removed"), None);
        assert_eq!(cache.len(), 1);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("kept"), None, "past its time to live, replaced or not");
        cache.insert("kept".to_owned(), 3);
        assert_eq!(cache.get("kept"), Some(3), "stored again, used again");
    }
}
