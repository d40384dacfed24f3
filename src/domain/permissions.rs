//! The permission catalog: Castellan's built-in permissions (a const table,
//! each with a description) and those services registered. Roles, groups and
//! direct grants may only carry catalog permissions, or wildcards over them:
//! `*`, and `prefix:*` when some catalog permission starts with `prefix:`
//! (`users:*`, `billing:*`, `billing:invoices:*`).
//!
//! Services register their permissions under a namespace of their own
//! (`billing:invoices:read`); Castellan's namespaces are reserved. The
//! catalog is shared by every tenant, so only global callers change it.

use std::collections::BTreeSet;

use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use uuid::Uuid;

use crate::{
    app::App,
    auth::Principal,
    domain::{
        audit::{self, Target},
        now,
        paging::{CursorValue, ListParams, MAX_BASIC_LIMIT, Page, PageRequest, SortField},
        validate::{self, MAX_DESCRIPTION},
    },
    error::{Error, Result, Violations},
    store::{self, entity::registered_permission, invalidation::Change},
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
    /// The part of the name before the first `:`.
    pub namespace: String,
}

/// The namespace of a permission name: the part before the first `:`.
pub fn namespace_of(name: &str) -> &str {
    name.split_once(':').map_or(name, |(namespace, _)| namespace)
}

/// Whether a namespace is Castellan's own (that of a built-in permission:
/// `tenants`, `users`, `roles`, `groups`, `devices`, `audit`, `permissions`).
pub fn is_reserved(namespace: &str) -> bool {
    BUILT_IN.iter().any(|(name, _)| namespace_of(name) == namespace)
}

/// Most permissions a call names: a Register or Unregister call, a role's
/// or a user's list, an UpdateRole's additions or removals.
pub const MAX_PER_CALL: usize = 1000;
/// Longest namespace.
pub const MAX_NAMESPACE: usize = 63;

/// A permission a service declares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionDefinition {
    pub name: String,
    pub description: String,
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
    if list.is_empty() || too_many(violations, field, list) {
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

/// In the transaction that writes grants of `list` (the request's list,
/// already checked by [`check_catalog`] before it): holds its registered
/// permissions against their unregistration, then checks the list again
/// against the catalog as it is now, so no grant carries a permission
/// unregistered in between.
pub async fn recheck_catalog(txn: &DatabaseTransaction, field: &str, list: &[String]) -> Result<()> {
    store::permissions::hold(txn, list).await?;
    let mut violations = Violations::new();
    check_catalog(txn, &mut violations, field, list).await?;
    violations.finish()
}

/// Checks that every name of `list` is well formed (see [`well_formed`]),
/// naming `field[i]`; returns the list sorted and without duplicates.
pub fn check_format(violations: &mut Violations, field: &str, list: &[String]) -> Vec<String> {
    if too_many(violations, field, list) {
        return Vec::new();
    }
    for (i, permission) in list.iter().enumerate() {
        if !well_formed(permission) {
            violations.add(format!("{field}[{i}]"), "must look like resource:action or *");
        }
    }
    sorted(list)
}

/// Refuses a list of more than [`MAX_PER_CALL`] permissions, naming `field`.
fn too_many(violations: &mut Violations, field: &str, list: &[String]) -> bool {
    let too_many = list.len() > MAX_PER_CALL;
    if too_many {
        violations.add(field, format!("at most {MAX_PER_CALL} permissions"));
    }
    too_many
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
            namespace: namespace_of(name).to_owned(),
        })
        .collect();
    catalog.extend(
        store::permissions::registered(&app.db)
            .await?
            .into_iter()
            .map(registered_info),
    );
    catalog.sort_by(|a, b| a.name.cmp(&b.name));
    catalog.dedup_by(|a, b| a.name == b.name);
    Ok(catalog)
}

/// The catalog's one sort key; names are unique, so no tie is left to break.
const SORT_FIELDS: &[SortField] = &[SortField::text("name")];

/// One page of the catalog (ListPermissions), paged in memory: the catalog
/// is read whole for every check of a grant anyway.
pub async fn list_page(app: &App, caller: &Principal, request: &PageRequest) -> Result<Page<PermissionInfo>> {
    let params = ListParams::parse(request, SORT_FIELDS, MAX_BASIC_LIMIT, "permissions")?;
    let mut catalog = list(app, caller).await?;
    let descending = params.sort.first().is_some_and(|key| key.descending);
    if descending {
        catalog.reverse();
    }
    let total = catalog.len() as u64;
    let start = match params.after.as_ref().and_then(|cursor| cursor.values.first()) {
        Some(CursorValue::Text(last)) => catalog.partition_point(|entry| {
            if descending {
                entry.name.as_str() >= last.as_str()
            } else {
                entry.name.as_str() <= last.as_str()
            }
        }),
        _ => usize::try_from(params.offset).unwrap_or(usize::MAX),
    };
    let rows = catalog
        .into_iter()
        .skip(start)
        .take(usize::try_from(params.limit).unwrap_or(usize::MAX).saturating_add(1))
        .collect();
    Ok(params.page(rows, total, |_| Uuid::nil(), |entry, _| entry.name.clone().into()))
}

fn registered_info(p: registered_permission::Model) -> PermissionInfo {
    PermissionInfo {
        name: p.name,
        description: p.description,
        built_in: false,
        namespace: p.namespace,
    }
}

/// The catalog is shared by every tenant: only callers holding
/// `permissions:register` through a global role change it.
fn require_global(caller: &Principal) -> Result<()> {
    if caller.holds_globally("permissions:register") {
        Ok(())
    } else {
        Err(Error::PermissionDenied(
            "only a caller holding permissions:register through a global role may register or unregister permissions"
                .into(),
        ))
    }
}

/// A namespace services may register under: `[a-z][a-z0-9_.-]{0,62}`, not
/// reserved.
fn check_namespace(violations: &mut Violations, namespace: &str) {
    let well_formed = namespace.len() <= MAX_NAMESPACE
        && namespace.starts_with(|c: char| c.is_ascii_lowercase())
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if namespace.is_empty() {
        violations.add("namespace", "is required");
    } else if !well_formed {
        violations.add(
            "namespace",
            format!("must be 1..{MAX_NAMESPACE} characters [a-z0-9_.-] starting with a letter"),
        );
    } else if is_reserved(namespace) {
        violations.add(
            "namespace",
            format!("{namespace:?} is reserved for Castellan's own permissions"),
        );
    }
}

/// A name a service may register under `namespace`: well formed, starting
/// with `namespace:`, no empty `:`-separated part, no wildcard.
fn check_registrable(violations: &mut Violations, field: &str, namespace: &str, name: &str) {
    let in_namespace = name
        .strip_prefix(namespace)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some();
    if name.is_empty() {
        violations.add(field, "is required");
    } else if !well_formed(name) || name.contains('*') || name.split(':').any(str::is_empty) {
        violations.add(
            field,
            "must look like namespace:resource:action ([a-z0-9_.-] parts, no wildcard)",
        );
    } else if !in_namespace {
        violations.add(field, format!("must start with {namespace:?} followed by ':'"));
    }
}

/// The number of entries of a Register or Unregister call: 1..=MAX_PER_CALL.
fn check_count(violations: &mut Violations, field: &str, count: usize) {
    if count == 0 {
        violations.add(field, "at least one is required");
    } else if count > MAX_PER_CALL {
        violations.add(field, format!("at most {MAX_PER_CALL} a call"));
    }
}

/// Declares or updates (idempotently) permissions of a namespace, all or
/// nothing; returns every permission of the namespace afterwards.
pub async fn register(
    app: &App,
    caller: &Principal,
    namespace: &str,
    definitions: &[PermissionDefinition],
) -> Result<Vec<PermissionInfo>> {
    require_global(caller)?;
    let mut violations = Violations::new();
    check_namespace(&mut violations, namespace);
    check_count(&mut violations, "permissions", definitions.len());
    let now = now();
    let mut seen = BTreeSet::new();
    let mut rows = Vec::with_capacity(definitions.len());
    for (i, definition) in definitions.iter().enumerate() {
        let field = format!("permissions[{i}]");
        check_registrable(&mut violations, &format!("{field}.name"), namespace, &definition.name);
        if !seen.insert(definition.name.as_str()) {
            violations.add(format!("{field}.name"), "appears twice");
        }
        let description = validate::required_text(
            &mut violations,
            &format!("{field}.description"),
            &definition.description,
            MAX_DESCRIPTION,
        );
        rows.push(registered_permission::Model {
            name: definition.name.clone(),
            namespace: namespace.to_owned(),
            description,
            created_at: now,
        });
    }
    violations.finish()?;
    let registered: Vec<&str> = definitions.iter().map(|d| d.name.as_str()).collect();
    let txn = app.writer.begin().await?;
    store::permissions::upsert(&txn, rows).await?;
    // The event's changed fields are the permissions declared.
    audit::record(&txn, caller, Target::Namespace(namespace), &registered).await?;
    // The answer is what this transaction wrote, read on its connection.
    let answer = store::permissions::in_namespace(&txn, namespace)
        .await?
        .into_iter()
        .map(registered_info)
        .collect();
    txn.commit().await?;
    Ok(answer)
}

/// Removes registered permissions of a namespace (unknown names are ignored).
/// While roles or direct grants carry one this is FAILED_PRECONDITION unless
/// `force`, which takes them out of every role and grant in the same
/// transaction.
pub async fn unregister(app: &App, caller: &Principal, namespace: &str, names: &[String], force: bool) -> Result<()> {
    require_global(caller)?;
    let mut violations = Violations::new();
    check_namespace(&mut violations, namespace);
    check_count(&mut violations, "names", names.len());
    for (i, name) in names.iter().enumerate() {
        check_registrable(&mut violations, &format!("names[{i}]"), namespace, name);
    }
    violations.finish()?;
    let names = sorted(names);
    let txn = app.writer.begin().await?;
    // Removing from the catalog first takes the write lock (SQLite) or the
    // rows' locks (PostgreSQL) before the carriers are counted.
    store::permissions::unregister(&txn, &names).await?;
    let carried = store::permissions::carriers(&txn, &names).await? > 0;
    if carried && !force {
        txn.rollback().await?;
        return Err(Error::FailedPrecondition(
            "roles or direct grants still carry these permissions: remove them first, or unregister with force".into(),
        ));
    }
    if carried {
        store::permissions::revoke_everywhere(&txn, &names, now()).await?;
    }
    let removed: Vec<&str> = names.iter().map(String::as_str).collect();
    audit::record(&txn, caller, Target::Namespace(namespace), &removed).await?;
    if carried {
        app.commit(txn, Change::Directory).await?;
    } else {
        txn.commit().await?;
    }
    Ok(())
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
    fn castellan_namespaces_are_reserved_and_others_are_not() {
        for reserved in ["tenants", "users", "roles", "groups", "devices", "audit", "permissions"] {
            assert!(is_reserved(reserved), "{reserved}");
        }
        for free in ["billing", "user", "users2", ""] {
            assert!(!is_reserved(free), "{free}");
        }
        assert_eq!(namespace_of("billing:invoices:read"), "billing");
    }

    #[test]
    fn registrable_names_belong_to_the_namespace() {
        let check = |name: &str| {
            let mut violations = Violations::new();
            check_registrable(&mut violations, "name", "billing", name);
            violations.is_empty()
        };
        assert!(check("billing:invoices:read"));
        assert!(check("billing:export"));
        for bad in [
            "",
            "billing",
            "billing:",
            "billing::read",
            "billing:*",
            "billing:invoices:*",
            "billingx:read",
            "shipping:read",
            "Billing:read",
            "billing:read now",
        ] {
            assert!(!check(bad), "{bad}");
        }
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
