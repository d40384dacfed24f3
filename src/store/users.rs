//! User queries: lookups scoped to a tenant, the filtered list, the details
//! of the FULL view loaded in batches (a fixed number of queries per page,
//! never one per row), and the writes of the user aggregate.

use std::collections::{BTreeMap, HashMap, HashSet};

use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, JoinType, PaginatorTrait, QueryFilter, QuerySelect,
    RelationTrait, TransactionTrait,
    sea_query::{Expr, ExprTrait, LikeExpr, OnConflict, Query},
};
use uuid::Uuid;

use crate::{
    domain::paging::ListParams,
    error::Result,
    store::{
        self,
        access::role_valid_in,
        entity::{
            credential, device, group, group_member, role, role_permission, tenant_membership, user, user_permission,
            user_role,
        },
        paging,
        tenants::{self, MemberCounts},
    },
};

/// The user with this id if it is a member of the tenant.
pub async fn find_in_tenant<C: ConnectionTrait>(db: &C, tenant_id: Uuid, user_id: Uuid) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(user_id)
        .join(JoinType::InnerJoin, user::Relation::TenantMembership.def())
        .filter(tenant_membership::Column::TenantId.eq(tenant_id))
        .one(db)
        .await?)
}

/// The member of the tenant with this username.
pub async fn find_by_username_in_tenant<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    username: &str,
) -> Result<Option<user::Model>> {
    Ok(user::Entity::find()
        .join(JoinType::InnerJoin, user::Relation::TenantMembership.def())
        .filter(tenant_membership::Column::TenantId.eq(tenant_id))
        .filter(user::Column::Username.eq(username.to_lowercase()))
        .one(db)
        .await?)
}

/// The e-mails and usernames among `values` that users hold.
#[derive(Debug, Default)]
pub struct TakenIdentities {
    pub emails: HashSet<String>,
    pub usernames: HashSet<String>,
}

/// Which of `values` (lowercase e-mails and usernames) users hold, as an
/// e-mail or as a username.
pub async fn taken_identities<C: ConnectionTrait>(db: &C, values: &[&str]) -> Result<TakenIdentities> {
    let mut taken = TakenIdentities::default();
    let rows = store::find_by_ids(values, |chunk| {
        user::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(user::Column::Email.is_in(chunk.clone()))
                    .add(user::Column::Username.is_in(chunk)),
            )
            .all(db)
    })
    .await?;
    let wanted: HashSet<&str> = values.iter().copied().collect();
    for user in rows {
        if wanted.contains(user.email.as_str()) {
            taken.emails.insert(user.email);
        }
        if wanted.contains(user.username.as_str()) {
            taken.usernames.insert(user.username);
        }
    }
    Ok(taken)
}

/// Locks the user's row for the rest of the transaction with a write that
/// changes nothing: a row lock on PostgreSQL, the database write lock on
/// SQLite. Rules that count a user's rows (`max_devices`) take it first, so
/// racing transactions on the same user run one after the other. `false`
/// when there is no such user.
pub async fn lock<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<bool> {
    let result = user::Entity::update_many()
        .col_expr(user::Column::UpdatedAt, Expr::col(user::Column::UpdatedAt))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Sets the user's `last_connection` (not a profile change: `updated_at`
/// stays). Like [`lock`], it locks the row; `false` when there is no such user.
pub async fn set_last_connection<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let result = user::Entity::update_many()
        .col_expr(user::Column::LastConnection, Expr::value(at))
        .filter(user::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// A login's `last_connection`, written only while the user is as the login
/// found it before its hash: ACTIVE and at the token generation its token
/// will carry. `false` when a deactivation, a reset or a deletion committed
/// since (the token would be refused from its first call), so the login
/// answers as a wrong password does.
pub async fn record_login<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    token_generation: i32,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let result = user::Entity::update_many()
        .col_expr(user::Column::LastConnection, Expr::value(at))
        .filter(user::Column::Id.eq(user_id))
        .filter(user::Column::Status.eq(crate::domain::users::STATUS_ACTIVE))
        .filter(user::Column::TokenGeneration.eq(token_generation))
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Filters of ListUsers (all optional).
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub status: Option<String>,
    pub role_id: Option<Uuid>,
    pub group_id: Option<Uuid>,
    /// Lowercase substring of email, username, first or last name.
    pub search: Option<String>,
}

impl UserFilter {
    /// Whether no filter is set (every member of the tenant matches).
    pub fn is_empty(&self) -> bool {
        // Destructured so that a new filter cannot be forgotten here.
        let Self {
            status,
            role_id,
            group_id,
            search,
        } = self;
        status.is_none() && role_id.is_none() && group_id.is_none() && search.is_none()
    }
}

fn column_of(field: &str) -> user::Column {
    match field {
        "updatedAt" => user::Column::UpdatedAt,
        "email" => user::Column::Email,
        "username" => user::Column::Username,
        "firstName" => user::Column::FirstName,
        "lastName" => user::Column::LastName,
        "status" => user::Column::Status,
        _ => user::Column::CreatedAt,
    }
}

/// Escapes LIKE wildcards so a search term matches literally.
fn like_pattern(term: &str) -> LikeExpr {
    let escaped = term.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// From this many members on, a page of a tenant's users is read in sort
/// order from the users' indexes, each row checked for membership (about a
/// page's worth of index probes when the tenant holds most users), instead
/// of joining and sorting every member of the tenant (linear in its size).
/// Below it, sorting the members costs less than scanning past other
/// tenants' users, unless the tenant holds most users anyway (see
/// [`reads_the_users_index`]).
const LARGE_TENANT: u64 = 5_000;

/// Whether a page of the tenant's users is read from the users' indexes:
/// for a large tenant, or one with at least a quarter of all memberships,
/// where a page costs at most about four index probes a row. (A
/// 1,000-member tenant holding every user: 1.3–1.9 × the pages a second of
/// joining and sorting its members; docs/benchmarks-log.md, 2026-12-06.)
fn reads_the_users_index(counts: MemberCounts) -> bool {
    counts.members >= LARGE_TENANT || counts.members.saturating_mul(4) >= counts.all_memberships
}

/// One page (up to `limit + 1` rows) of the tenant's users matching `filter`, and the total.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    filter: &UserFilter,
    params: &ListParams,
) -> Result<(Vec<user::Model>, u64)> {
    let counts = tenants::member_counts(db, tenant_id).await?;
    let members = counts.members;
    let mut select = if reads_the_users_index(counts) {
        user::Entity::find().filter(Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(tenant_membership::Entity)
                .and_where(tenant_membership::Column::TenantId.eq(tenant_id))
                .and_where(
                    Expr::col((tenant_membership::Entity, tenant_membership::Column::UserId))
                        .equals((user::Entity, user::Column::Id)),
                )
                .to_owned(),
        ))
    } else {
        user::Entity::find()
            .join(JoinType::InnerJoin, user::Relation::TenantMembership.def())
            .filter(tenant_membership::Column::TenantId.eq(tenant_id))
    };
    if let Some(status) = &filter.status {
        select = select.filter(user::Column::Status.eq(status.clone()));
    }
    // A grant counts only where its role or group is valid: the tenant's own
    // roles and global ones, the tenant's own groups (grants are keyed by
    // user and role or group alone, so a member of two tenants holds the
    // other tenant's too). Any other id matches no one, like an unknown one.
    if let Some(role_id) = filter.role_id {
        select = select.filter(
            user::Column::Id.in_subquery(
                Query::select()
                    .column(user_role::Column::UserId)
                    .from(user_role::Entity)
                    .and_where(user_role::Column::RoleId.eq(role_id))
                    .and_where(
                        user_role::Column::RoleId.in_subquery(
                            Query::select()
                                .column(role::Column::Id)
                                .from(role::Entity)
                                .and_where(role::Column::Id.eq(role_id))
                                .cond_where(role_valid_in(tenant_id))
                                .to_owned(),
                        ),
                    )
                    .to_owned(),
            ),
        );
    }
    if let Some(group_id) = filter.group_id {
        select = select.filter(
            user::Column::Id.in_subquery(
                Query::select()
                    .column(group_member::Column::UserId)
                    .from(group_member::Entity)
                    .and_where(group_member::Column::GroupId.eq(group_id))
                    .and_where(
                        group_member::Column::GroupId.in_subquery(
                            Query::select()
                                .column(group::Column::Id)
                                .from(group::Entity)
                                .and_where(group::Column::Id.eq(group_id))
                                .and_where(group::Column::TenantId.eq(tenant_id))
                                .to_owned(),
                        ),
                    )
                    .to_owned(),
            ),
        );
    }
    if let Some(term) = &filter.search {
        let mut any = sea_orm::Condition::any();
        // Every column is stored lowercase (the names in copies folded by
        // the application), so LIKE compares folded text on both databases:
        // SQLite's `lower()` and `LIKE` fold ASCII letters only.
        for column in [
            user::Column::Email,
            user::Column::Username,
            user::Column::FirstNameLower,
            user::Column::LastNameLower,
        ] {
            any = any.add(Expr::col((user::Entity, column)).like(like_pattern(term)));
        }
        select = select.filter(any);
    }
    // Without filters the total is the tenant's member count, kept exact in
    // the transactions that change memberships: no full count per call.
    let total = if filter.is_empty() {
        members
    } else {
        select.clone().count(db).await?
    };
    let rows = paging::apply(select, params, column_of, user::Column::Id)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// A role with its permissions.
#[derive(Debug, Clone)]
pub struct RoleWithPermissions {
    pub role: role::Model,
    pub permissions: Vec<String>,
}

/// What the FULL view adds to a user, in the tenant in context.
#[derive(Debug, Clone, Default)]
pub struct UserDetails {
    pub tenant_ids: Vec<Uuid>,
    pub is_owner: bool,
    pub roles: Vec<RoleWithPermissions>,
    pub groups: Vec<group::Model>,
    pub devices: Vec<device::Model>,
    pub permissions: Vec<String>,
}

/// Users with their details as seen from the tenant, by id (the ids of
/// users that do not exist are left out), read in one transaction: one
/// checkout of a pooled connection rather than one a query, and no query at
/// all for no ids. Each user's row comes with its memberships. On SQLite the
/// transaction is also one snapshot; on PostgreSQL (READ COMMITTED) each
/// statement sees what was committed before it, so a write that commits in
/// between shows in the later statements only. That is a read beside a
/// write, never a stale cache entry: the cache stamps an entry with counters
/// read before the first statement, and the writer bumps them after its
/// commit.
pub async fn load_records(
    db: &DatabaseConnection,
    tenant_id: Uuid,
    user_ids: &[Uuid],
    known: KnownPermissions<'_>,
) -> Result<LoadedRecords> {
    if user_ids.is_empty() {
        return Ok(LoadedRecords::default());
    }
    let txn = db.begin().await?;
    let loaded = records_on(&txn, tenant_id, user_ids, known).await?;
    txn.commit().await?;
    Ok(loaded)
}

/// [`load_records`] on a connection the caller holds: a write's own
/// transaction reads what it wrote.
pub async fn records_on<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    user_ids: &[Uuid],
    known: KnownPermissions<'_>,
) -> Result<LoadedRecords> {
    let mut loaded = LoadedRecords::default();
    let (users, memberships): (Vec<user::Model>, Vec<Vec<tenant_membership::Model>>) = user::Entity::find()
        .filter(user::Column::Id.is_in(user_ids.to_vec()))
        .find_with_related(tenant_membership::Entity)
        .all(db)
        .await?
        .into_iter()
        .unzip();
    let found: Vec<Uuid> = users.iter().map(|user| user.id).collect();
    let mut details = if found.is_empty() {
        HashMap::new()
    } else {
        let memberships = memberships.into_iter().flatten().collect();
        let (details, permissions) = details_given_memberships(db, tenant_id, &found, memberships, known).await?;
        loaded.permissions_read = permissions;
        details
    };
    loaded.records = users
        .into_iter()
        .filter_map(|user| details.remove(&user.id).map(|details| (user.id, (user, details))))
        .collect();
    Ok(loaded)
}

/// The permissions of the roles a caller already knows, by role id: the
/// record cache's roles, so that a cold read queries only the others.
pub type KnownPermissions<'a> = &'a (dyn Fn(Uuid) -> Option<Vec<String>> + Sync);

/// What [`load_records`] read.
#[derive(Debug, Default)]
pub struct LoadedRecords {
    /// By user id: the users found, with their details.
    pub records: HashMap<Uuid, (user::Model, UserDetails)>,
    /// The permissions of every role it had to read (not known), by role
    /// id; a role without permissions has an empty list.
    pub permissions_read: HashMap<Uuid, Vec<String>>,
}

/// Loads the details of many users with one query per kind of detail.
pub async fn load_details<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    user_ids: &[Uuid],
) -> Result<HashMap<Uuid, UserDetails>> {
    if user_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let memberships = tenant_membership::Entity::find()
        .filter(tenant_membership::Column::UserId.is_in(user_ids.to_vec()))
        .all(db)
        .await?;
    let (details, _) = details_given_memberships(db, tenant_id, user_ids, memberships, &|_| None).await?;
    Ok(details)
}

/// The details of these users, given all their memberships, and the
/// permissions of the roles it read (those `known` did not give).
async fn details_given_memberships<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    user_ids: &[Uuid],
    memberships: Vec<tenant_membership::Model>,
    known: KnownPermissions<'_>,
) -> Result<(HashMap<Uuid, UserDetails>, HashMap<Uuid, Vec<String>>)> {
    let mut details: HashMap<Uuid, UserDetails> = user_ids.iter().map(|id| (*id, UserDetails::default())).collect();
    let ids = user_ids.to_vec();
    for membership in memberships {
        if let Some(d) = details.get_mut(&membership.user_id) {
            d.tenant_ids.push(membership.tenant_id);
            if membership.tenant_id == tenant_id {
                d.is_owner = membership.is_owner;
            }
        }
    }

    let grants: Vec<(user_role::Model, Option<role::Model>)> = user_role::Entity::find()
        .filter(user_role::Column::UserId.is_in(ids.clone()))
        .find_also_related(role::Entity)
        .all(db)
        .await?;
    let valid: Vec<(Uuid, role::Model)> = grants
        .into_iter()
        .filter_map(|(grant, role)| role.map(|r| (grant.user_id, r)))
        .filter(|(_, role)| role.tenant_id.is_none() || role.tenant_id == Some(tenant_id))
        .collect();
    let mut role_ids: Vec<Uuid> = valid.iter().map(|(_, r)| r.id).collect();
    role_ids.sort_unstable();
    role_ids.dedup();
    let mut permissions: HashMap<Uuid, Vec<String>> = HashMap::with_capacity(role_ids.len());
    let mut unknown = Vec::new();
    for role_id in role_ids {
        match known(role_id) {
            Some(known) => {
                permissions.insert(role_id, known);
            }
            None => unknown.push(role_id),
        }
    }
    let mut read = permissions_of_roles(db, &unknown).await?;
    for role_id in unknown {
        read.entry(role_id).or_default();
    }
    for (user_id, role) in valid {
        if let Some(d) = details.get_mut(&user_id) {
            let permissions = permissions
                .get(&role.id)
                .or_else(|| read.get(&role.id))
                .cloned()
                .unwrap_or_default();
            d.roles.push(RoleWithPermissions { role, permissions });
        }
    }

    for (membership, group) in group_member::Entity::find()
        .filter(group_member::Column::UserId.is_in(ids.clone()))
        .find_also_related(group::Entity)
        .all(db)
        .await?
    {
        if let (Some(d), Some(group)) = (details.get_mut(&membership.user_id), group)
            && group.tenant_id == tenant_id
        {
            d.groups.push(group);
        }
    }

    for device in device::Entity::find()
        .filter(device::Column::UserId.is_in(ids.clone()))
        .all(db)
        .await?
    {
        if let Some(d) = details.get_mut(&device.user_id) {
            d.devices.push(device);
        }
    }

    for grant in user_permission::Entity::find()
        .filter(user_permission::Column::UserId.is_in(ids))
        .filter(user_permission::Column::TenantId.eq(tenant_id))
        .all(db)
        .await?
    {
        if let Some(d) = details.get_mut(&grant.user_id) {
            d.permissions.push(grant.permission);
        }
    }
    for d in details.values_mut() {
        d.tenant_ids.sort_unstable();
        d.roles.sort_by(|a, b| a.role.name.cmp(&b.role.name));
        d.groups.sort_by(|a, b| a.name.cmp(&b.name));
        d.devices.sort_by_key(|device| (device.registered_at, device.id));
        d.permissions.sort_unstable();
    }
    Ok((details, read))
}

/// The sorted permissions of each role.
pub async fn permissions_of_roles<C: ConnectionTrait>(db: &C, role_ids: &[Uuid]) -> Result<HashMap<Uuid, Vec<String>>> {
    let rows = store::find_by_ids(role_ids, |chunk| {
        role_permission::Entity::find()
            .filter(role_permission::Column::RoleId.is_in(chunk))
            .all(db)
    })
    .await?;
    let mut by_role: HashMap<Uuid, Vec<String>> = HashMap::new();
    for row in rows {
        by_role.entry(row.role_id).or_default().push(row.permission);
    }
    for permissions in by_role.values_mut() {
        permissions.sort_unstable();
    }
    Ok(by_role)
}

/// Roles with these ids that are valid in the tenant (its own or global).
pub async fn roles_valid_in<C: ConnectionTrait>(
    db: &C,
    tenant_id: Uuid,
    role_ids: &[Uuid],
) -> Result<Vec<role::Model>> {
    store::find_by_ids(role_ids, |chunk| {
        role::Entity::find()
            .filter(role::Column::Id.is_in(chunk))
            .filter(
                sea_orm::Condition::any()
                    .add(role::Column::TenantId.eq(tenant_id))
                    .add(role::Column::TenantId.is_null()),
            )
            .all(db)
    })
    .await
}

/// Groups with these ids in the tenant.
pub async fn groups_in<C: ConnectionTrait>(db: &C, tenant_id: Uuid, group_ids: &[Uuid]) -> Result<Vec<group::Model>> {
    store::find_by_ids(group_ids, |chunk| {
        group::Entity::find()
            .filter(group::Column::Id.is_in(chunk))
            .filter(group::Column::TenantId.eq(tenant_id))
            .all(db)
    })
    .await
}

/// Adds memberships (ignoring ones that exist).
pub async fn add_memberships<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    tenant_ids: &[Uuid],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    for tenant_id in tenant_ids {
        if tenant_membership::Entity::find_by_id((*tenant_id, user_id))
            .one(db)
            .await?
            .is_none()
        {
            tenant_membership::Entity::insert(tenant_membership::ActiveModel {
                tenant_id: Set(*tenant_id),
                user_id: Set(user_id),
                is_owner: Set(false),
                created_at: Set(now),
            })
            .exec(db)
            .await?;
            tenants::add_to_user_count(db, *tenant_id, 1).await?;
        }
    }
    Ok(())
}

/// Deletes the user; its memberships, grants and devices go with it
/// (foreign keys cascade), and the member counts of its tenants drop.
pub async fn delete<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<()> {
    let tenant_ids: Vec<Uuid> = tenant_membership::Entity::find()
        .select_only()
        .column(tenant_membership::Column::TenantId)
        .filter(tenant_membership::Column::UserId.eq(user_id))
        .into_tuple()
        .all(db)
        .await?;
    for tenant_id in tenant_ids {
        tenants::add_to_user_count(db, tenant_id, -1).await?;
    }
    user::Entity::delete_by_id(user_id).exec(db).await?;
    Ok(())
}

/// A user to insert, with what it starts with. Its memberships, grants and
/// credential are dated from the user's `created_at`.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub user: user::Model,
    /// Its argon2id hash; `None` for a user without a password.
    pub password_hash: Option<String>,
    /// Distinct tenants it joins (not as owner).
    pub tenant_ids: Vec<Uuid>,
    /// Distinct roles granted to it.
    pub role_ids: Vec<Uuid>,
    /// Distinct groups it joins.
    pub group_ids: Vec<Uuid>,
}

/// Inserts new users with their credentials, tenant memberships, role grants
/// and group memberships: one multi-row INSERT per table (per 500 rows)
/// whatever the number of users, and one member-count update per tenant
/// (in id order, so concurrent batches take the tenants' row locks in the
/// same order). Call it in a transaction; a taken email or username fails
/// it with ALREADY_EXISTS naming the field.
pub async fn insert_new<C: ConnectionTrait>(db: &C, users: Vec<NewUser>) -> Result<()> {
    let mut credentials = Vec::new();
    let mut memberships = Vec::new();
    let mut grants = Vec::new();
    let mut group_members = Vec::new();
    let mut joined: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut rows = Vec::with_capacity(users.len());
    for new in users {
        let (user_id, created_at) = (new.user.id, new.user.created_at);
        if let Some(password_hash) = new.password_hash {
            credentials.push(credential::Model {
                user_id,
                password_hash,
                updated_at: created_at,
            });
        }
        for tenant_id in new.tenant_ids {
            memberships.push(tenant_membership::Model {
                tenant_id,
                user_id,
                is_owner: false,
                created_at,
            });
            *joined.entry(tenant_id).or_default() += 1;
        }
        grants.extend(new.role_ids.into_iter().map(|role_id| user_role::Model {
            user_id,
            role_id,
            created_at,
        }));
        group_members.extend(new.group_ids.into_iter().map(|group_id| group_member::Model {
            group_id,
            user_id,
            created_at,
        }));
        rows.push(new.user);
    }
    // In one order of their unique keys, as every batch: two batches taking
    // the same e-mails in different orders would each wait for the other's
    // (PostgreSQL then aborts one), where in one order the later waits and
    // fails as ALREADY_EXISTS.
    rows.sort_unstable_by(|a, b| (&a.email, &a.username).cmp(&(&b.email, &b.username)));
    store::insert_rows::<_, _, user::ActiveModel>(db, rows).await?;
    store::insert_rows::<_, _, credential::ActiveModel>(db, credentials).await?;
    store::insert_rows::<_, _, tenant_membership::ActiveModel>(db, memberships).await?;
    store::insert_rows::<_, _, user_role::ActiveModel>(db, grants).await?;
    store::insert_rows::<_, _, group_member::ActiveModel>(db, group_members).await?;
    for (tenant_id, count) in joined {
        tenants::add_to_user_count(db, tenant_id, count).await?;
    }
    Ok(())
}

/// Inserts many new members of a tenant at once, each granted `role_ids`
/// and joined to `group_ids` ([`insert_new`] in its own transaction). For
/// seeding large data sets (`castellan-bench --users`): no credentials, no
/// invitations, no checks beyond the database's constraints.
pub async fn insert_members_in_bulk(
    db: &sea_orm::DatabaseConnection,
    tenant_id: Uuid,
    users: Vec<user::Model>,
    role_ids: &[Uuid],
    group_ids: &[Uuid],
) -> Result<()> {
    let users = users
        .into_iter()
        .map(|user| NewUser {
            user,
            password_hash: None,
            tenant_ids: vec![tenant_id],
            role_ids: role_ids.to_vec(),
            group_ids: group_ids.to_vec(),
        })
        .collect();
    let txn = sea_orm::TransactionTrait::begin(db).await?;
    insert_new(&txn, users).await?;
    txn.commit().await?;
    Ok(())
}

/// Removes memberships, with the user's groups, direct grants and roles of
/// those tenants (its global roles stay): nothing granted there waits to
/// come back if the user joins again. Its open invitations to those
/// tenants end; how many did.
pub async fn remove_memberships<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    tenant_ids: &[Uuid],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<u64> {
    if tenant_ids.is_empty() {
        return Ok(0);
    }
    let withdrawn = store::credentials::withdraw_invitations_to(db, user_id, tenant_ids, now).await?;
    for tenant_id in tenant_ids {
        let removed = tenant_membership::Entity::delete_many()
            .filter(tenant_membership::Column::UserId.eq(user_id))
            .filter(tenant_membership::Column::TenantId.eq(*tenant_id))
            .exec(db)
            .await?
            .rows_affected;
        tenants::add_to_user_count(db, *tenant_id, -(removed as i64)).await?;
    }
    user_permission::Entity::delete_many()
        .filter(user_permission::Column::UserId.eq(user_id))
        .filter(user_permission::Column::TenantId.is_in(tenant_ids.to_vec()))
        .exec(db)
        .await?;
    group_member::Entity::delete_many()
        .filter(group_member::Column::UserId.eq(user_id))
        .filter(
            group_member::Column::GroupId.in_subquery(
                Query::select()
                    .column(group::Column::Id)
                    .from(group::Entity)
                    .and_where(group::Column::TenantId.is_in(tenant_ids.to_vec()))
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    user_role::Entity::delete_many()
        .filter(user_role::Column::UserId.eq(user_id))
        .filter(
            user_role::Column::RoleId.in_subquery(
                Query::select()
                    .column(role::Column::Id)
                    .from(role::Entity)
                    .and_where(role::Column::TenantId.is_in(tenant_ids.to_vec()))
                    .to_owned(),
            ),
        )
        .exec(db)
        .await?;
    Ok(withdrawn)
}

/// Tenants (among `tenant_ids`) where the user is the only owner.
pub async fn tenants_solely_owned<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let mut sole = Vec::new();
    for tenant_id in tenant_ids {
        let owners: Vec<Uuid> = tenant_membership::Entity::find()
            .filter(tenant_membership::Column::TenantId.eq(*tenant_id))
            .filter(tenant_membership::Column::IsOwner.eq(true))
            .all(db)
            .await?
            .into_iter()
            .map(|m| m.user_id)
            .collect();
        if owners == [user_id] {
            sole.push(*tenant_id);
        }
    }
    Ok(sole)
}

/// The user's direct grants in the tenant.
pub async fn direct_permissions<C: ConnectionTrait>(db: &C, user_id: Uuid, tenant_id: Uuid) -> Result<Vec<String>> {
    Ok(user_permission::Entity::find()
        .filter(user_permission::Column::UserId.eq(user_id))
        .filter(user_permission::Column::TenantId.eq(tenant_id))
        .all(db)
        .await?
        .into_iter()
        .map(|grant| grant.permission)
        .collect())
}

/// Replaces the user's direct grants in the tenant.
pub async fn replace_permissions<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    tenant_id: Uuid,
    permissions: &[String],
) -> Result<()> {
    user_permission::Entity::delete_many()
        .filter(user_permission::Column::UserId.eq(user_id))
        .filter(user_permission::Column::TenantId.eq(tenant_id))
        .exec(db)
        .await?;
    if !permissions.is_empty() {
        user_permission::Entity::insert_many(permissions.iter().map(|permission| user_permission::ActiveModel {
            user_id: Set(user_id),
            tenant_id: Set(tenant_id),
            permission: Set(permission.clone()),
        }))
        .exec(db)
        .await?;
    }
    Ok(())
}

/// Grants roles (ignoring ones already granted).
pub async fn grant_roles<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    role_ids: &[Uuid],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    for role_id in role_ids {
        if user_role::Entity::find_by_id((user_id, *role_id))
            .one(db)
            .await?
            .is_none()
        {
            user_role::Entity::insert(user_role::ActiveModel {
                user_id: Set(user_id),
                role_id: Set(*role_id),
                created_at: Set(now),
            })
            .exec(db)
            .await?;
        }
    }
    Ok(())
}

/// Revokes role grants.
pub async fn revoke_roles<C: ConnectionTrait>(db: &C, user_id: Uuid, role_ids: &[Uuid]) -> Result<()> {
    if role_ids.is_empty() {
        return Ok(());
    }
    user_role::Entity::delete_many()
        .filter(user_role::Column::UserId.eq(user_id))
        .filter(user_role::Column::RoleId.is_in(role_ids.to_vec()))
        .exec(db)
        .await?;
    Ok(())
}

/// Adds the user to groups, leaving existing memberships as they are: in
/// one statement that skips them (`ON CONFLICT DO NOTHING`), so one that a
/// concurrent transaction inserts is skipped too (on PostgreSQL the
/// statement waits for that transaction, then skips its row) instead of
/// failing as a duplicate key.
pub async fn join_groups<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    group_ids: &[Uuid],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    group_member::Entity::insert_many(group_ids.iter().map(|group_id| group_member::ActiveModel {
        group_id: Set(*group_id),
        user_id: Set(user_id),
        created_at: Set(now),
    }))
    .on_conflict(
        OnConflict::columns([group_member::Column::GroupId, group_member::Column::UserId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_reads_the_users_index_for_a_large_tenant_or_one_holding_a_quarter_of_all() {
        let read = |members, all_memberships| {
            reads_the_users_index(MemberCounts {
                members,
                all_memberships,
            })
        };
        assert!(read(5_000, 1_000_000), "large");
        assert!(read(1_000, 1_000), "every user");
        assert!(read(250, 1_000), "a quarter");
        assert!(!read(249, 1_000));
        assert!(!read(1_000, 1_000_000), "a sliver of a large directory");
        assert!(read(0, 0), "an empty directory: nothing to page either way");
    }
}
