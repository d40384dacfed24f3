//! The permission catalog: Castellan's built-in permissions (a const table,
//! each with a description) and those services registered. Roles, groups and
//! direct grants may only carry catalog permissions, or wildcards over them:
//! `*`, and `prefix:*` when some catalog permission starts with `prefix:`
//! (`users:*`, `billing:*`, `billing:invoices:*`).

use std::collections::BTreeSet;

use sea_orm::ConnectionTrait;

use crate::{
    app::App,
    auth::Principal,
    error::{Result, Violations},
    store,
};

/// Castellan's own permissions (API.md), sorted by name.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("audit:read", "Read the audit trail"),
    ("devices:list", "List a user's devices"),
    ("devices:read", "Read a device"),
    ("devices:register", "Register devices for users"),
    ("devices:revoke", "Revoke devices"),
    (
        "devices:update",
        "Rename devices and report their posture and connections",
    ),
    ("groups:create", "Create groups"),
    ("groups:delete", "Delete groups (their members lose the groups' roles)"),
    ("groups:list", "List the groups of a tenant"),
    ("groups:members", "Manage the members of groups"),
    ("groups:read", "Read groups and list their members"),
    ("groups:update", "Rename groups and replace their roles"),
    ("permissions:check", "Check whether users hold permissions"),
    ("permissions:register", "Register and unregister service permissions"),
    ("roles:create", "Create roles"),
    ("roles:delete", "Delete roles"),
    ("roles:list", "List the roles valid in a tenant"),
    ("roles:read", "Read roles and the permission catalog"),
    ("roles:update", "Rename roles and change their permissions"),
    ("tenants:create", "Create tenants"),
    (
        "tenants:delete",
        "Delete tenants with their memberships, roles and groups",
    ),
    ("tenants:list", "List tenants"),
    ("tenants:read", "Read a tenant"),
    ("tenants:update", "Rename, suspend and reactivate tenants"),
    ("users:create", "Create users"),
    ("users:deactivate", "Deactivate and reactivate users"),
    ("users:delete", "Delete users permanently"),
    ("users:groups", "Add users to groups and remove them"),
    ("users:list", "List the users of a tenant"),
    ("users:password-reset", "Set users' passwords"),
    ("users:read", "Read users and their effective permissions"),
    ("users:roles", "Grant and revoke users' roles"),
    ("users:tenants", "Manage users' tenant memberships"),
    (
        "users:update",
        "Update users' profiles, direct permissions, roles and tenants",
    ),
];

/// One catalog entry (ListPermissions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionInfo {
    pub name: String,
    pub description: String,
    /// One of Castellan's own permissions.
    pub built_in: bool,
}

/// The names of every catalog permission, for membership checks.
#[derive(Debug, Clone, Default)]
pub struct Catalog(BTreeSet<String>);

impl Catalog {
    pub async fn load<C: ConnectionTrait>(db: &C) -> Result<Self> {
        let mut names: BTreeSet<String> = BUILT_IN.iter().map(|(name, _)| (*name).to_owned()).collect();
        names.extend(store::permissions::registered(db).await?.into_iter().map(|p| p.name));
        Ok(Self(names))
    }

    /// Whether `permission` may be granted: a catalog permission, `*`, or
    /// `prefix:*` over at least one catalog permission.
    pub fn admits(&self, permission: &str) -> bool {
        if permission == "*" || self.0.contains(permission) {
            return true;
        }
        match permission.strip_suffix('*') {
            Some(prefix) if prefix.len() > 1 && prefix.ends_with(':') => self
                .0
                .range(prefix.to_owned()..)
                .next()
                .is_some_and(|n| n.starts_with(prefix)),
            _ => false,
        }
    }
}

/// Checks every permission of `list` against the catalog, naming `field[i]`
/// for each one outside it; returns the list sorted and without duplicates.
pub async fn check_catalog<C: ConnectionTrait>(
    db: &C,
    violations: &mut Violations,
    field: &str,
    list: &[String],
) -> Result<Vec<String>> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let catalog = Catalog::load(db).await?;
    for (i, permission) in list.iter().enumerate() {
        if !catalog.admits(permission) {
            violations.add(
                format!("{field}[{i}]"),
                format!("{permission:?} is not in the permission catalog (see ListPermissions)"),
            );
        }
    }
    Ok(sorted(list))
}

/// Checks that every name of `list` is well formed (see [`well_formed`]),
/// naming `field[i]`; returns the list sorted and without duplicates.
pub fn check_format(violations: &mut Violations, field: &str, list: &[String]) -> Vec<String> {
    for (i, permission) in list.iter().enumerate() {
        if !well_formed(permission) {
            violations.add(format!("{field}[{i}]"), "must look like resource:action or *");
        }
    }
    sorted(list)
}

fn sorted(list: &[String]) -> Vec<String> {
    let mut list = list.to_vec();
    list.sort_unstable();
    list.dedup();
    list
}

/// Whether a permission name is well formed (`resource:action`, or `*`),
/// whether or not it is in the catalog.
pub fn well_formed(permission: &str) -> bool {
    permission == "*"
        || (permission.contains(':')
            && !permission.starts_with(':')
            && permission.len() <= 200
            && permission
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b':' | b'-' | b'_' | b'.' | b'*')))
}

/// The catalog: built-in and registered permissions, sorted by name.
pub async fn list(app: &App, _caller: &Principal) -> Result<Vec<PermissionInfo>> {
    let mut catalog: Vec<PermissionInfo> = BUILT_IN
        .iter()
        .map(|(name, description)| PermissionInfo {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            built_in: true,
        })
        .collect();
    catalog.extend(
        store::permissions::registered(&app.db)
            .await?
            .into_iter()
            .map(|p| PermissionInfo {
                name: p.name,
                description: p.description,
                built_in: false,
            }),
    );
    catalog.sort_by(|a, b| a.name.cmp(&b.name));
    catalog.dedup_by(|a, b| a.name == b.name);
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_table_is_sorted_unique_and_described() {
        assert!(BUILT_IN.windows(2).all(|w| w[0].0 < w[1].0), "sorted and unique");
        assert!(
            BUILT_IN
                .iter()
                .all(|(name, description)| well_formed(name) && !description.is_empty())
        );
        assert_eq!(BUILT_IN.len(), 34);
    }

    #[test]
    fn the_catalog_admits_its_names_and_wildcards_over_them() {
        let mut catalog = Catalog(BUILT_IN.iter().map(|(n, _)| (*n).to_owned()).collect());
        catalog.0.insert("billing:invoices:read".into());
        for ok in [
            "*",
            "users:read",
            "users:*",
            "audit:*",
            "billing:*",
            "billing:invoices:*",
        ] {
            assert!(catalog.admits(ok), "{ok}");
        }
        for bad in [
            "users:fly",
            "nope:*",
            "user:*",
            ":*",
            "users",
            "",
            "billing:payments:*",
            "users:read ",
        ] {
            assert!(!catalog.admits(bad), "{bad}");
        }
    }
}
