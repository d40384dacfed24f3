//! Effective permissions of user subjects, resolved live from the database
//! through a cache. Every write that can change what a user may do commits
//! through `App::commit`, which outdates the entries its
//! `store::invalidation::Change` names: one user's (`Access`: its status,
//! deletion, tenant memberships, roles, groups and direct grants, a
//! password change or reset, an accepted invitation), those read from one
//! role or group (`Role`, `Group`: a role's permissions, a group's roles,
//! a deleted role or group), or every entry (`Directory`: a tenant, the
//! permission catalog). Tenants, by id or slug, are cached likewise with
//! what the auth layer needs of them (their slug and whether they are
//! suspended); every change to a tenant is a `Directory` change. See
//! [`crate::cache`] for why this is race-free.

use std::{collections::HashMap, sync::Arc, time::Duration};

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use uuid::Uuid;

use crate::{
    auth::principal::PermissionSet,
    cache::{Cache, Freshness, Stamp, Subject},
    error::Result,
    store::{
        self,
        access::{Grant, GrantSource, UserGrants},
    },
};

/// What a user may do in one tenant, as last read from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAccess {
    /// The user exists and is ACTIVE.
    pub active: bool,
    /// The user is a member of the tenant.
    pub member: bool,
    /// The user holds at least one global role (may act in any tenant).
    pub global: bool,
    /// The permissions of those global roles: all it may do beyond the
    /// tenant (see [`crate::auth::Principal::holds_globally`]).
    pub global_permissions: Arc<PermissionSet>,
    /// The user's password is temporary: only ChangePassword and WhoAmI work.
    pub password_change_required: bool,
    /// The generation the user's tokens must carry (their `gen` claim).
    pub token_generation: i32,
    pub permissions: Arc<PermissionSet>,
    /// The same grants with their sources, for CheckPermission.
    pub grants: Arc<EffectiveGrants>,
    /// The roles and groups the grants were read from (see
    /// [`store::access::UserGrants::read_from`]).
    pub read_from: Vec<Uuid>,
}

/// A user's grants in one tenant with their sources, indexed so that the
/// grants covering a permission are found with a few hash lookups (the
/// permission itself, each `prefix:*` above it, and `*`) rather than a scan.
/// It matches exactly as [`PermissionSet::allows`] does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EffectiveGrants {
    /// The sources of `*`.
    everything: Vec<GrantSource>,
    /// `prefix:` (without the `*`) → the sources of `prefix:*`.
    prefixes: HashMap<String, Vec<GrantSource>>,
    /// Any other grant → its sources.
    exact: HashMap<String, Vec<GrantSource>>,
}

impl EffectiveGrants {
    pub fn new(grants: impl IntoIterator<Item = Grant>) -> Self {
        let mut index = Self::default();
        for Grant { permission, source } in grants {
            let sources = if permission == "*" {
                &mut index.everything
            } else if permission.ends_with(":*") {
                let mut prefix = permission;
                prefix.pop();
                index.prefixes.entry(prefix).or_default()
            } else {
                index.exact.entry(permission).or_default()
            };
            sources.push(source);
        }
        index
    }

    /// The sources of every grant covering `permission`, sorted (direct,
    /// roles, groups) and without duplicates; empty when nothing covers it.
    pub fn sources(&self, permission: &str) -> Vec<GrantSource> {
        let prefixes = permission
            .match_indices(':')
            .filter_map(|(i, _)| self.prefixes.get(&permission[..=i]));
        let mut sources: Vec<GrantSource> = self
            .exact
            .get(permission)
            .into_iter()
            .chain(prefixes)
            .chain(Some(&self.everything))
            .flatten()
            .copied()
            .collect();
        sources.sort_unstable();
        sources.dedup();
        sources
    }
}

/// A tenant as the auth layer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownTenant {
    pub id: Uuid,
    pub slug: String,
    /// SUSPENDED: only callers with a global role may act in it.
    pub suspended: bool,
}

impl KnownTenant {
    /// Whether `key`, an id or a slug, names this tenant (a slug in any
    /// case, as [`store::tenants::resolve`] reads it).
    pub fn is_named_by(&self, key: TenantKey<'_>) -> bool {
        match key {
            TenantKey::Id(id) => self.id == id,
            TenantKey::Slug(slug) => self.slug.eq_ignore_ascii_case(slug),
        }
    }
}

/// A key that may name a tenant: an id, or a well-formed slug. Only such a
/// key is looked up, so a lookup's key (the cache's, the query's) is at
/// most 63 bytes whatever a caller sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantKey<'a> {
    Id(Uuid),
    Slug(&'a str),
}

impl<'a> TenantKey<'a> {
    /// The key `text` is, if it may name a tenant: a UUID, or a slug as
    /// `domain::tenants` accepts them (`[a-z0-9-]{2,63}`; letters in either
    /// case, since slugs are matched case-insensitively).
    pub fn parse(text: &'a str) -> Option<Self> {
        if let Ok(id) = Uuid::parse_str(text) {
            return Some(Self::Id(id));
        }
        let slug = (2..=63).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        slug.then_some(Self::Slug(text))
    }
}

/// The per-(user, tenant) cache of [`UserAccess`], and tenants by id or
/// slug.
#[derive(Debug)]
pub struct AccessCache {
    freshness: Arc<Freshness>,
    entries: Cache<(Uuid, Uuid), (Stamp, Arc<UserAccess>)>,
    tenants: Cache<String, (Stamp, Option<Arc<KnownTenant>>)>,
}

impl AccessCache {
    pub fn new(freshness: Arc<Freshness>) -> Self {
        Self {
            freshness,
            entries: Cache::new(100_000, Duration::from_secs(300)),
            tenants: Cache::new(10_000, Duration::from_secs(300)),
        }
    }

    /// The user's access in the tenant, from the cache or the database.
    pub async fn user_access(
        &self,
        db: &DatabaseConnection,
        user_id: Uuid,
        tenant_id: Uuid,
    ) -> Result<Arc<UserAccess>> {
        // A change to what this user may do, to a role or group it was
        // read from, or to the whole directory, outdates the entry; a change
        // to its record alone (a login, a device) leaves it current.
        let subject = Subject::Access(user_id);
        if let Some((stamp, access)) = self.entries.get(&(user_id, tenant_id))
            && self
                .freshness
                .is_current(stamp, subject, access.read_from.iter().copied())
        {
            return Ok(access);
        }
        self.reload_user_access(db, user_id, tenant_id).await
    }

    /// The user's access read from the database (and kept), whatever the
    /// cache holds: for a token newer than the cached entry (its `gen` past
    /// the entry's), which on another replica can predate the reset that
    /// issued the token while its change notice is on its way.
    pub async fn reload_user_access(
        &self,
        db: &DatabaseConnection,
        user_id: Uuid,
        tenant_id: Uuid,
    ) -> Result<Arc<UserAccess>> {
        let stamp = self.freshness.stamp(Subject::Access(user_id));
        let access = Arc::new(load(db, user_id, tenant_id).await?);
        self.entries.insert((user_id, tenant_id), (stamp, access.clone()));
        Ok(access)
    }

    /// The id of the tenant named by id or slug, if it exists.
    pub async fn tenant_id(&self, db: &DatabaseConnection, id_or_slug: &str) -> Result<Option<Uuid>> {
        Ok(match TenantKey::parse(id_or_slug) {
            Some(key) => self.tenant(db, key).await?.map(|tenant| tenant.id),
            None => None,
        })
    }

    /// The tenant `key` names, if it exists, from the cache or the
    /// database. An id is cached under its hyphenated lower-case form (a
    /// token's `tid`), whatever form it came in.
    pub async fn tenant(&self, db: &DatabaseConnection, key: TenantKey<'_>) -> Result<Option<Arc<KnownTenant>>> {
        let mut buffer = Uuid::encode_buffer();
        let text = match key {
            TenantKey::Id(id) => &*id.hyphenated().encode_lower(&mut buffer),
            TenantKey::Slug(slug) => slug,
        };
        if let Some((stamp, tenant)) = self.tenants.get(text)
            && self.freshness.is_current(stamp, Subject::Directory, [])
        {
            return Ok(tenant);
        }
        let stamp = self.freshness.stamp(Subject::Directory);
        let tenant = store::tenants::resolve(db, text).await?.map(|tenant| {
            Arc::new(KnownTenant {
                id: tenant.id,
                suspended: tenant.status == crate::domain::tenants::STATUS_SUSPENDED,
                slug: tenant.slug,
            })
        });
        self.tenants.insert(text.to_owned(), (stamp, tenant.clone()));
        Ok(tenant)
    }

    /// How many tenant keys are cached (known or not).
    pub fn cached_tenant_keys(&self) -> usize {
        self.tenants.len()
    }
}

/// Reads a user's access in one transaction: one checkout of a pooled
/// connection rather than one a query (one snapshot on SQLite; on
/// PostgreSQL each statement sees the commits before it, and the cache's
/// stamp, taken before the first, outdates what a write in between changed;
/// see `store::users::load_records`).
async fn load(db: &DatabaseConnection, user_id: Uuid, tenant_id: Uuid) -> Result<UserAccess> {
    let txn = db.begin().await?;
    let access = load_in(&txn, user_id, tenant_id).await?;
    txn.commit().await?;
    Ok(access)
}

async fn load_in<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<UserAccess> {
    let Some(state) = store::access::user_state(db, user_id, tenant_id).await? else {
        return Ok(UserAccess {
            active: false,
            member: false,
            global: false,
            global_permissions: Arc::default(),
            password_change_required: false,
            token_generation: 0,
            permissions: Arc::default(),
            grants: Arc::default(),
            read_from: Vec::new(),
        });
    };
    let UserGrants {
        grants,
        global,
        read_from,
    } = store::access::effective_grants(db, user_id, tenant_id).await?;
    Ok(UserAccess {
        active: state.active,
        member: state.member,
        global: state.has_global_role,
        global_permissions: Arc::new(PermissionSet::new(global)),
        password_change_required: state.password_change_required,
        token_generation: state.token_generation,
        permissions: Arc::new(PermissionSet::new(grants.iter().map(|g| g.permission.as_str()))),
        grants: Arc::new(EffectiveGrants::new(grants)),
        read_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_grants_match_like_permission_sets_and_keep_sources() {
        let role = Uuid::now_v7();
        let group = Uuid::now_v7();
        let grants = vec![
            Grant {
                permission: "billing:invoices:*".into(),
                source: GrantSource::Role(role),
            },
            Grant {
                permission: "billing:invoices:read".into(),
                source: GrantSource::Direct,
            },
            Grant {
                permission: "users:*".into(),
                source: GrantSource::Group {
                    group_id: group,
                    role_id: role,
                },
            },
            Grant {
                permission: "roles:read".into(),
                source: GrantSource::Role(role),
            },
            Grant {
                permission: "odd*".into(),
                source: GrantSource::Direct,
            },
        ];
        let set = PermissionSet::new(grants.iter().map(|g| g.permission.clone()));
        let index = EffectiveGrants::new(grants);
        for permission in [
            "billing:invoices:read",
            "billing:invoices:refund",
            "billing:payments:read",
            "billing",
            "users:read",
            "usersx:read",
            "roles:read",
            "roles:update",
            "odd*",
            "oddity",
            "",
        ] {
            assert_eq!(
                !index.sources(permission).is_empty(),
                set.allows(permission),
                "{permission}"
            );
        }
        assert_eq!(
            index.sources("billing:invoices:read"),
            vec![GrantSource::Direct, GrantSource::Role(role)]
        );
        assert_eq!(
            index.sources("users:list"),
            vec![GrantSource::Group {
                group_id: group,
                role_id: role
            }]
        );
        let everything = EffectiveGrants::new([Grant {
            permission: "*".into(),
            source: GrantSource::Role(role),
        }]);
        assert_eq!(everything.sources("any:thing"), vec![GrantSource::Role(role)]);
    }
}
