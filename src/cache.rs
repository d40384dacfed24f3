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
//! Three scopes: the whole directory (roles, groups, tenants, permissions,
//! anything shared between users); what one user may do (its status,
//! memberships and grants), which also outdates its record; and one user's
//! record alone (a login's `last_connection`, the user's devices). Users map
//! onto fixed arrays of counters; two users sharing one only cost each other
//! a cache miss.

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

#[derive(Debug)]
pub struct Freshness {
    epoch: AtomicU64,
    /// Set while invalidations from other replicas may be missed (the
    /// PostgreSQL listener is disconnected): no stamp is current.
    bypass: AtomicBool,
    /// Per-user counters of records (what GetUser shows).
    users: Box<[AtomicU64]>,
    /// Per-user counters of access (what a user may do). Separate from the
    /// records' so that a login, which outdates the caller's record on every
    /// success, leaves its access entries current.
    access: Box<[AtomicU64]>,
}

/// The counters an entry was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    user: u64,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            bypass: AtomicBool::new(false),
            users: (0..USER_SHARDS).map(|_| AtomicU64::new(0)).collect(),
            access: (0..USER_SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Freshness {
    fn shard(user_id: Uuid) -> usize {
        // UUIDv7 and v4 both end in random bits.
        let (_, low) = user_id.as_u64_pair();
        (low % USER_SHARDS as u64) as usize
    }

    fn user_counter(&self, user_id: Uuid) -> &AtomicU64 {
        &self.users[Self::shard(user_id)]
    }

    fn access_counter(&self, user_id: Uuid) -> &AtomicU64 {
        &self.access[Self::shard(user_id)]
    }

    /// The stamp to store with an entry about `user_id` (or about no user in
    /// particular), read before the entry's query.
    pub fn stamp(&self, user_id: Option<Uuid>) -> Stamp {
        Stamp {
            epoch: self.epoch.load(Ordering::Acquire),
            user: user_id.map_or(0, |id| self.user_counter(id).load(Ordering::Acquire)),
        }
    }

    /// Whether an entry read under `stamp` may still be used.
    pub fn is_current(&self, stamp: Stamp, user_id: Option<Uuid>) -> bool {
        !self.bypass.load(Ordering::Acquire) && stamp == self.stamp(user_id)
    }

    /// The stamp to store with an entry about what `user_id` may do, read
    /// before the entry's query.
    pub fn access_stamp(&self, user_id: Uuid) -> Stamp {
        Stamp {
            epoch: self.epoch.load(Ordering::Acquire),
            user: self.access_counter(user_id).load(Ordering::Acquire),
        }
    }

    /// Whether an access entry read under `stamp` may still be used.
    pub fn is_access_current(&self, stamp: Stamp, user_id: Uuid) -> bool {
        !self.bypass.load(Ordering::Acquire) && stamp == self.access_stamp(user_id)
    }

    /// Outdates every entry. Call after committing a change that can affect
    /// more than one user.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Outdates the records of one user.
    pub fn invalidate_user(&self, user_id: Uuid) {
        self.user_counter(user_id).fetch_add(1, Ordering::AcqRel);
    }

    /// Outdates what one user may do and its records. Call after committing
    /// a change to the user's status, memberships, grants or password state
    /// (or its deletion).
    pub fn invalidate_access(&self, user_id: Uuid) {
        self.access_counter(user_id).fetch_add(1, Ordering::AcqRel);
        self.invalidate_user(user_id);
    }

    /// Outdates the entries about one user, as [`Self::invalidate_user`]
    /// does, after a commit whose change to one of them the writer knows:
    /// returns the stamp under which that entry, read under `read`, may be
    /// stored again with the change applied. `None` when there is no such
    /// entry or another write outdated it since it was read. (A write that
    /// has committed but not yet invalidated outdates the stored entry when
    /// it does.)
    pub fn invalidate_user_after(&self, user_id: Uuid, read: Option<Stamp>) -> Option<Stamp> {
        let counter = self.user_counter(user_id);
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
        self.is_current(updated, Some(user_id)).then_some(updated)
    }

    /// Turns the caches off (`true`) while other replicas' invalidations may
    /// be missed, and back on once they are heard again.
    pub fn set_bypass(&self, bypass: bool) {
        self.bypass.store(bypass, Ordering::Release);
        self.invalidate_all();
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

    #[test]
    fn stamps_expire_by_scope() {
        let freshness = Freshness::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let of_alice = freshness.stamp(Some(alice));
        let shared = freshness.stamp(None);
        assert!(freshness.is_current(of_alice, Some(alice)));

        freshness.invalidate_user(alice);
        assert!(!freshness.is_current(of_alice, Some(alice)));
        assert!(freshness.is_current(shared, None));
        let of_bob = freshness.stamp(Some(bob));
        assert!(freshness.is_current(of_bob, Some(bob)));

        freshness.invalidate_all();
        assert!(!freshness.is_current(of_bob, Some(bob)));
        assert!(!freshness.is_current(shared, None));

        let now = freshness.stamp(Some(bob));
        freshness.set_bypass(true);
        assert!(!freshness.is_current(freshness.stamp(Some(bob)), Some(bob)));
        freshness.set_bypass(false);
        assert!(
            !freshness.is_current(now, Some(bob)),
            "a bypass outdates what was read before it"
        );
        assert!(freshness.is_current(freshness.stamp(Some(bob)), Some(bob)));
    }

    #[test]
    fn access_is_outdated_by_its_user_or_the_directory_not_by_a_record_change() {
        let freshness = Freshness::default();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let access_of_alice = freshness.access_stamp(alice);
        let access_of_bob = freshness.access_stamp(bob);
        let record_of_alice = freshness.stamp(Some(alice));

        // A login or a device: the record only.
        freshness.invalidate_user(alice);
        assert!(freshness.is_access_current(access_of_alice, alice));
        assert!(!freshness.is_current(record_of_alice, Some(alice)));

        // Alice's status or grants: her access and her record, not Bob's.
        let record_of_alice = freshness.stamp(Some(alice));
        let record_of_bob = freshness.stamp(Some(bob));
        freshness.invalidate_access(alice);
        assert!(!freshness.is_access_current(access_of_alice, alice));
        assert!(!freshness.is_current(record_of_alice, Some(alice)));
        assert!(freshness.is_access_current(access_of_bob, bob));
        assert!(freshness.is_current(record_of_bob, Some(bob)));

        // The directory: everyone's.
        freshness.invalidate_all();
        assert!(!freshness.is_access_current(access_of_bob, bob));
        let access_of_bob = freshness.access_stamp(bob);
        freshness.set_bypass(true);
        assert!(!freshness.is_access_current(freshness.access_stamp(bob), bob));
        freshness.set_bypass(false);
        assert!(
            !freshness.is_access_current(access_of_bob, bob),
            "a bypass outdates it too"
        );
    }

    #[test]
    fn a_writer_keeps_an_entry_only_if_nothing_else_outdated_it() {
        let freshness = Freshness::default();
        let alice = Uuid::now_v7();
        let read = freshness.stamp(Some(alice));
        let kept = freshness.invalidate_user_after(alice, Some(read));
        assert!(!freshness.is_current(read, Some(alice)), "the old stamp is outdated");
        let kept = kept.expect("nothing else wrote since the read");
        assert!(freshness.is_current(kept, Some(alice)));

        freshness.invalidate_user(alice);
        assert_eq!(
            freshness.invalidate_user_after(alice, Some(kept)),
            None,
            "another write came between"
        );
        assert!(!freshness.is_current(kept, Some(alice)));

        let read = freshness.stamp(Some(alice));
        freshness.invalidate_all();
        assert_eq!(
            freshness.invalidate_user_after(alice, Some(read)),
            None,
            "outdated by a wider write"
        );
        let read = freshness.stamp(Some(alice));
        assert_eq!(freshness.invalidate_user_after(alice, None), None, "no entry to keep");
        assert!(
            !freshness.is_current(read, Some(alice)),
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
        cache.remove("removed");
        assert_eq!(cache.get("removed"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get("kept"), None, "past its time to live, replaced or not");
        cache.insert("kept".to_owned(), 3);
        assert_eq!(cache.get("kept"), Some(3), "stored again, used again");
    }
}
