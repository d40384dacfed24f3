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
//! Four scopes: the whole directory (global roles, tenants, the permission
//! catalog); one tenant's roles and groups, which outdates what every user
//! may do in that tenant and their records as seen from it; what one user
//! may do (its status, memberships and grants), which also outdates its
//! records; and one user's records alone (a login's `last_connection`, the
//! user's devices). Users and tenants map onto fixed arrays of counters; two
//! sharing one only cost each other a cache miss.

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

/// Counters for per-tenant invalidation (8 KiB): a tenant's roles and groups
/// change rarely.
const TENANT_SHARDS: usize = 1024;

#[derive(Debug)]
pub struct Freshness {
    epoch: AtomicU64,
    /// Set while invalidations from other replicas may be missed (the
    /// PostgreSQL listener is disconnected): no stamp is current.
    bypass: AtomicBool,
    /// Per-tenant counters of roles and groups.
    tenants: Box<[AtomicU64]>,
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
    /// A user's record as seen from a tenant.
    Record { tenant_id: Uuid, user_id: Uuid },
    /// What a user may do in a tenant.
    Access { tenant_id: Uuid, user_id: Uuid },
}

/// The counters an entry was read under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    epoch: u64,
    tenant: u64,
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
            tenants: counters(TENANT_SHARDS),
            users: counters(USER_SHARDS),
            access: counters(USER_SHARDS),
        }
    }
}

impl Freshness {
    /// The stamp to store with an entry about `subject`, read before the
    /// entry's query.
    pub fn stamp(&self, subject: Subject) -> Stamp {
        let load = |counters: &[AtomicU64], id| counter_of(counters, id).load(Ordering::Acquire);
        let epoch = self.epoch.load(Ordering::Acquire);
        match subject {
            Subject::Directory => Stamp {
                epoch,
                tenant: 0,
                user: 0,
            },
            Subject::Record { tenant_id, user_id } => Stamp {
                epoch,
                tenant: load(&self.tenants, tenant_id),
                user: load(&self.users, user_id),
            },
            Subject::Access { tenant_id, user_id } => Stamp {
                epoch,
                tenant: load(&self.tenants, tenant_id),
                user: load(&self.access, user_id),
            },
        }
    }

    /// Whether an entry about `subject` read under `stamp` may still be used.
    pub fn is_current(&self, stamp: Stamp, subject: Subject) -> bool {
        !self.bypass.load(Ordering::Acquire) && stamp == self.stamp(subject)
    }

    /// Outdates every entry. Call after committing a change that can affect
    /// users in more than one tenant.
    pub fn invalidate_all(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Outdates what every user may do in one tenant and their records as
    /// seen from it. Call after committing a change to the tenant's own
    /// roles or groups.
    pub fn invalidate_tenant(&self, tenant_id: Uuid) {
        counter_of(&self.tenants, tenant_id).fetch_add(1, Ordering::AcqRel);
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
    /// after a commit whose change to its record as seen from `tenant_id` the
    /// writer knows: returns the stamp under which that record, read under
    /// `read`, may be stored again with the change applied. `None` when there
    /// is no such entry or another write outdated it since it was read. (A
    /// write that has committed but not yet invalidated outdates the stored
    /// entry when it does.)
    pub fn invalidate_user_after(&self, tenant_id: Uuid, user_id: Uuid, read: Option<Stamp>) -> Option<Stamp> {
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
        self.is_current(updated, Subject::Record { tenant_id, user_id })
            .then_some(updated)
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

    fn record(tenant_id: Uuid, user_id: Uuid) -> Subject {
        Subject::Record { tenant_id, user_id }
    }

    fn access(tenant_id: Uuid, user_id: Uuid) -> Subject {
        Subject::Access { tenant_id, user_id }
    }

    #[test]
    fn stamps_expire_by_scope() {
        let freshness = Freshness::default();
        let tenant = Uuid::now_v7();
        let alice_id = Uuid::now_v7();
        let (alice, bob) = (record(tenant, alice_id), record(tenant, Uuid::now_v7()));
        let of_alice = freshness.stamp(alice);
        let shared = freshness.stamp(Subject::Directory);
        assert!(freshness.is_current(of_alice, alice));

        freshness.invalidate_user(alice_id);
        assert!(!freshness.is_current(of_alice, alice));
        assert!(freshness.is_current(shared, Subject::Directory));
        let of_bob = freshness.stamp(bob);
        assert!(freshness.is_current(of_bob, bob));

        freshness.invalidate_all();
        assert!(!freshness.is_current(of_bob, bob));
        assert!(!freshness.is_current(shared, Subject::Directory));

        let now = freshness.stamp(bob);
        freshness.set_bypass(true);
        assert!(!freshness.is_current(freshness.stamp(bob), bob));
        freshness.set_bypass(false);
        assert!(
            !freshness.is_current(now, bob),
            "a bypass outdates what was read before it"
        );
        assert!(freshness.is_current(freshness.stamp(bob), bob));
    }

    #[test]
    fn access_is_outdated_by_its_user_its_tenant_or_the_directory_not_by_a_record_change() {
        let freshness = Freshness::default();
        let tenant = Uuid::now_v7();
        let (alice, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let access_of_alice = freshness.stamp(access(tenant, alice));
        let access_of_bob = freshness.stamp(access(tenant, bob));
        let record_of_alice = freshness.stamp(record(tenant, alice));

        // A login or a device: the record only.
        freshness.invalidate_user(alice);
        assert!(freshness.is_current(access_of_alice, access(tenant, alice)));
        assert!(!freshness.is_current(record_of_alice, record(tenant, alice)));

        // Alice's status or grants: her access and her record, not Bob's.
        let record_of_alice = freshness.stamp(record(tenant, alice));
        let record_of_bob = freshness.stamp(record(tenant, bob));
        freshness.invalidate_access(alice);
        assert!(!freshness.is_current(access_of_alice, access(tenant, alice)));
        assert!(!freshness.is_current(record_of_alice, record(tenant, alice)));
        assert!(freshness.is_current(access_of_bob, access(tenant, bob)));
        assert!(freshness.is_current(record_of_bob, record(tenant, bob)));

        // The directory: everyone's.
        freshness.invalidate_all();
        assert!(!freshness.is_current(access_of_bob, access(tenant, bob)));
        let access_of_bob = freshness.stamp(access(tenant, bob));
        freshness.set_bypass(true);
        assert!(!freshness.is_current(freshness.stamp(access(tenant, bob)), access(tenant, bob)));
        freshness.set_bypass(false);
        assert!(
            !freshness.is_current(access_of_bob, access(tenant, bob)),
            "a bypass outdates it too"
        );
    }

    #[test]
    fn a_tenants_roles_outdate_its_entries_only() {
        let freshness = Freshness::default();
        let (changed, other) = (Uuid::now_v7(), Uuid::now_v7());
        let user = Uuid::now_v7();
        let subjects = [
            access(changed, user),
            record(changed, user),
            access(other, user),
            record(other, user),
            Subject::Directory,
        ];
        let stamps = subjects.map(|subject| freshness.stamp(subject));
        freshness.invalidate_tenant(changed);
        let current = std::array::from_fn::<_, 5, _>(|i| freshness.is_current(stamps[i], subjects[i]));
        assert_eq!(
            current,
            [false, false, true, true, true],
            "the user's access and record in the changed tenant, nothing else"
        );
    }

    #[test]
    fn a_writer_keeps_an_entry_only_if_nothing_else_outdated_it() {
        let freshness = Freshness::default();
        let (tenant, alice) = (Uuid::now_v7(), Uuid::now_v7());
        let subject = record(tenant, alice);
        let read = freshness.stamp(subject);
        let kept = freshness.invalidate_user_after(tenant, alice, Some(read));
        assert!(!freshness.is_current(read, subject), "the old stamp is outdated");
        let kept = kept.expect("nothing else wrote since the read");
        assert!(freshness.is_current(kept, subject));

        freshness.invalidate_user(alice);
        assert_eq!(
            freshness.invalidate_user_after(tenant, alice, Some(kept)),
            None,
            "another write came between"
        );
        assert!(!freshness.is_current(kept, subject));

        for wider in [
            |f: &Freshness, _| f.invalidate_all(),
            |f: &Freshness, t| f.invalidate_tenant(t),
        ] {
            let read = freshness.stamp(subject);
            wider(&freshness, tenant);
            assert_eq!(
                freshness.invalidate_user_after(tenant, alice, Some(read)),
                None,
                "outdated by a wider write"
            );
        }
        let read = freshness.stamp(subject);
        assert_eq!(
            freshness.invalidate_user_after(tenant, alice, None),
            None,
            "no entry to keep"
        );
        assert!(
            !freshness.is_current(read, subject),
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
