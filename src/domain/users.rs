//! Users: creation in batches, lookups and lists scoped to the tenant in
//! context, updates, lifecycle (deactivate, reactivate, delete) and tenant
//! memberships. A user outside the tenant in context is NOT_FOUND.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectionTrait, DatabaseTransaction, EntityTrait, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    app::App,
    auth::{Principal, access::TenantKey},
    cache::{Cache, Freshness, Stamp, Subject},
    domain::{
        audit::{self, Target},
        credentials, grants, groups,
        idempotency::{self, RequestKey},
        invitations::{self, Invitee},
        now,
        paging::{ListParams, MAX_BASIC_LIMIT, MAX_LIMIT, Page, PageRequest, SortField},
        permissions,
        validate::{self, MAX_IMAGE, MAX_TEXT},
    },
    error::{Error, Result, Violations},
    store::{
        self,
        entity::user,
        invalidation::Change,
        users::{NewUser, UserDetails, UserFilter},
    },
};

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_INACTIVE: &str = "inactive";
pub const STATUS_PENDING: &str = "pending";
pub const STATUS_LOCKED: &str = "locked";

/// Most users one CreateUsers call may create.
pub const MAX_BATCH: usize = 100;

/// Most role ids one list of a request names for a user (UpdateUser
/// `role_ids`, UpdateUserRoles' lists, a CreateUsers draft's `role_ids`).
pub const MAX_ROLES: usize = 1000;

/// Most group ids a CreateUsers draft names.
pub const MAX_GROUPS: usize = 1000;

/// Most tenant ids or slugs one list of a request names (a draft's
/// `tenant_ids`, UpdateUser's, UpdateUserTenants' lists).
pub const MAX_TENANTS: usize = 1000;

const SORT_FIELDS: &[SortField] = &[
    SortField::time("createdAt"),
    SortField::time("updatedAt"),
    SortField::text("email"),
    SortField::text("username"),
    SortField::text("firstName"),
    SortField::text("lastName"),
    SortField::text("status"),
];

/// A user as the API shows it: the row, and in the FULL view its details in
/// the tenant in context.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: user::Model,
    pub details: Option<UserDetails>,
}

impl UserRecord {
    fn is_member_of(&self, tenant_id: Uuid) -> bool {
        self.details.as_ref().is_some_and(|d| d.tenant_ids.contains(&tenant_id))
    }

    /// The roles and groups the record shows, by id: a change to one of
    /// them changes the record.
    fn read_from(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.details
            .iter()
            .flat_map(|d| d.roles.iter().map(|r| r.role.id).chain(d.groups.iter().map(|g| g.id)))
    }
}

/// FULL user records as seen from a tenant, read on the GetUser and WhoAmI
/// paths: a warm call makes no database round trip. Every write that changes
/// a record commits through `App::commit`, which outdates it (see
/// `store::invalidation::Change` for what each kind of change outdates).
#[derive(Debug)]
pub struct UserRecordCache {
    freshness: Arc<Freshness>,
    /// (tenant, user) → the record, with the stamp it was read under.
    entries: Cache<(Uuid, Uuid), (Stamp, Arc<UserRecord>)>,
    /// Role → its sorted permissions, with the stamp they were read under:
    /// a record read from the database takes the permissions of the roles
    /// found here, and queries only the others. Roles are few and rarely
    /// change; a change to one outdates its entry as it outdates the
    /// records read from it.
    role_permissions: Cache<Uuid, (Stamp, Vec<String>)>,
}

impl UserRecordCache {
    pub fn new(freshness: Arc<Freshness>) -> Self {
        Self {
            freshness,
            entries: Cache::new(20_000, Duration::from_secs(300)),
            role_permissions: Cache::new(2_000, Duration::from_secs(300)),
        }
    }

    /// The cached permissions of a role, while no write has outdated them.
    fn permissions_of_role(&self, role_id: Uuid) -> Option<Vec<String>> {
        self.role_permissions
            .get(&role_id)
            .filter(|(stamp, _)| self.freshness.is_current(*stamp, Subject::Directory, [role_id]))
            .map(|(_, permissions)| permissions)
    }

    /// The FULL record of a user (member of the tenant or not) as seen from
    /// the tenant; `None` when there is no such user.
    async fn get(&self, app: &App, tenant_id: Uuid, user_id: Uuid) -> Result<Option<Arc<UserRecord>>> {
        if let Some(record) = self.current(tenant_id, user_id) {
            return Ok(Some(record));
        }
        Ok(self.load(app, tenant_id, &[user_id]).await?.remove(&user_id))
    }

    /// The record of a user as a write's transaction sees it, read before
    /// its commit: the write answers with what it wrote, and a record that
    /// cannot be read fails the write before its commit rather than a
    /// committed write's answer. Not kept: the commit outdates it.
    async fn read_in(&self, txn: &DatabaseTransaction, tenant_id: Uuid, user_id: Uuid) -> Result<Option<UserRecord>> {
        let known = |role_id| self.permissions_of_role(role_id);
        let mut loaded = store::users::records_on(txn, tenant_id, &[user_id], &known).await?;
        Ok(loaded.records.remove(&user_id).map(|(user, details)| UserRecord {
            user,
            details: Some(details),
        }))
    }

    /// The cached record, while no write has outdated it.
    fn current(&self, tenant_id: Uuid, user_id: Uuid) -> Option<Arc<UserRecord>> {
        self.entries
            .get(&(tenant_id, user_id))
            .filter(|(stamp, record)| {
                self.freshness
                    .is_current(*stamp, Subject::Record(user_id), record.read_from())
            })
            .map(|(_, record)| record)
    }

    /// Reads the records of these users (in one transaction) and keeps each
    /// under the stamp taken before the read. Users that do not exist are
    /// left out.
    async fn load(&self, app: &App, tenant_id: Uuid, user_ids: &[Uuid]) -> Result<HashMap<Uuid, Arc<UserRecord>>> {
        let stamps: Vec<Stamp> = user_ids
            .iter()
            .map(|&user_id| self.freshness.stamp(Subject::Record(user_id)))
            .collect();
        let roles_stamp = self.freshness.stamp(Subject::Directory);
        let known = |role_id| self.permissions_of_role(role_id);
        let mut loaded = store::users::load_records(&app.db, tenant_id, user_ids, &known).await?;
        for (role_id, permissions) in loaded.permissions_read {
            self.role_permissions.insert(role_id, (roles_stamp, permissions));
        }
        let mut records = HashMap::with_capacity(loaded.records.len());
        for (&user_id, stamp) in user_ids.iter().zip(stamps) {
            if let Some((user, details)) = loaded.records.remove(&user_id) {
                let record = Arc::new(UserRecord {
                    user,
                    details: Some(details),
                });
                self.entries.insert((tenant_id, user_id), (stamp, record.clone()));
                records.insert(user_id, record);
            }
        }
        Ok(records)
    }

    /// After a commit that set only the user's `last_connection` (a
    /// login): outdates the user's records, as a `Change::Record` does, but
    /// keeps its record as seen from `tenant_id`, with the new value, unless
    /// another write outdated it meanwhile. (Otherwise a caller's every login
    /// would send its next reads to the database.)
    pub fn connected(&self, tenant_id: Uuid, user_id: Uuid, at: DateTime<Utc>) {
        let key = (tenant_id, user_id);
        let cached = self.entries.get(&key);
        let kept = self.freshness.invalidate_user_after(
            user_id,
            cached.as_ref().map(|(read, _)| *read),
            cached.iter().flat_map(|(_, record)| record.read_from()),
        );
        if let (Some(stamp), Some((_, record))) = (kept, cached) {
            let mut record = UserRecord::clone(&record);
            record.user.last_connection = Some(at);
            self.entries.replace(key, (stamp, Arc::new(record)));
        }
    }

    /// The FULL records of listed users, as seen from the tenant: a current
    /// cached record answers for its user, the others are read together
    /// and kept. Users deleted since the listing are left out.
    async fn records_of(
        &self,
        app: &App,
        tenant_id: Uuid,
        users: &[user::Model],
    ) -> Result<HashMap<Uuid, Arc<UserRecord>>> {
        let mut records = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for user in users {
            match self.current(tenant_id, user.id) {
                Some(record) => {
                    records.insert(user.id, record);
                }
                None => missing.push(user.id),
            }
        }
        records.extend(self.load(app, tenant_id, &missing).await?);
        Ok(records)
    }
}

/// One user to create (CreateUsers draft).
#[derive(Clone, Default)]
pub struct UserDraft {
    pub email: String,
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub password: String,
    pub temporary_password: bool,
    pub role_ids: Vec<String>,
    pub group_ids: Vec<String>,
    pub tenant_ids: Vec<String>,
    pub max_devices: Option<i32>,
    pub image: String,
}

debug_without_secrets!(UserDraft {
    email,
    username,
    first_name,
    last_name,
    temporary_password,
    role_ids,
    group_ids,
    tenant_ids,
    max_devices,
    image,
});

/// Changes to a user; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image: Option<String>,
    pub email: Option<String>,
    /// `Some(None)` removes the limit.
    pub max_devices: Option<Option<i32>>,
    pub permissions: Option<Vec<String>>,
    pub role_ids: Option<Vec<String>>,
    pub tenant_ids: Option<Vec<String>>,
}

/// ListUsers filters and view, as received.
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub page: PageRequest,
    pub basic: bool,
    pub status: Option<String>,
    pub role_id: String,
    pub group_id: String,
    pub search: String,
}

struct ValidDraft {
    email: String,
    username: String,
    first_name: String,
    last_name: String,
    password: Option<String>,
    temporary_password: bool,
    role_ids: Vec<Uuid>,
    group_ids: Vec<Uuid>,
    tenant_ids: Vec<Uuid>,
    max_devices: Option<i32>,
    image: Option<String>,
}

fn max_devices(violations: &mut Violations, field: &str, value: Option<i32>) -> Option<i32> {
    if let Some(n) = value
        && n < 0
    {
        violations.add(field, "must not be negative");
    }
    value
}

fn image(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    let value = validate::text(violations, field, value, MAX_IMAGE);
    (!value.is_empty()).then_some(value)
}

/// The tenants that the lists' tenant ids or slugs name (trimmed key → id),
/// looked up together. Only keys that may name a tenant are looked up:
/// another (one with a NUL, which PostgreSQL refuses in text) is as unknown
/// as any unknown one; and none of a list over [`MAX_TENANTS`], which
/// [`resolve_tenants`] refuses.
async fn known_tenants<'a>(app: &App, lists: impl IntoIterator<Item = &'a [String]>) -> Result<HashMap<String, Uuid>> {
    let keys: Vec<&str> = lists
        .into_iter()
        .filter(|list| list.len() <= MAX_TENANTS)
        .flatten()
        .map(|key| key.trim())
        .filter(|key| TenantKey::parse(key).is_some())
        .collect();
    store::tenants::resolve_all(&app.db, &keys).await
}

/// Resolves tenant ids or slugs with the [`known_tenants`] among them,
/// naming `field[i]` for one that cannot name a tenant, and `field` for a
/// list over [`MAX_TENANTS`]. A well-formed key that names no tenant is
/// INVALID_ARGUMENT (`unknown tenant`) only for a caller that may name other
/// tenants (`may_name_others`: it holds the RPC's permission through a
/// global role); for any other it stands for a tenant outside the one in
/// context ([`Uuid::nil`]), which [`require_tenant_scope`] then refuses as it
/// refuses one that exists: no answer tells such a caller whether a tenant
/// exists.
fn resolve_tenants(
    known: &HashMap<String, Uuid>,
    may_name_others: bool,
    violations: &mut Violations,
    field: &str,
    keys: &[String],
) -> Vec<Uuid> {
    if keys.len() > MAX_TENANTS {
        violations.add(field, format!("at most {MAX_TENANTS} tenants"));
        return Vec::new();
    }
    let mut ids = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        match known.get(key.trim()) {
            Some(id) => ids.push(*id),
            None if TenantKey::parse(key.trim()).is_none() => {
                violations.add(format!("{field}[{i}]"), "must be a tenant id or slug")
            }
            None if may_name_others => violations.add(format!("{field}[{i}]"), "unknown tenant"),
            None => ids.push(Uuid::nil()),
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Memberships in tenants other than the one in context need the RPC's
/// `permission` through a global role.
fn require_tenant_scope(caller: &Principal, permission: &str, tenant_ids: &[Uuid]) -> Result<()> {
    if caller.holds_globally(permission) || tenant_ids.iter().all(|t| *t == caller.tenant_id) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "only a caller holding {permission} through a global role may manage other tenants' memberships"
        )))
    }
}

/// Creates 1..=100 users, all or nothing.
/// With a `request_id`, a retry with the same drafts returns the users the
/// first call created (passwords are not part of the comparison: they are
/// never stored in a comparable form).
pub async fn create(
    app: &App,
    caller: &Principal,
    drafts: Vec<UserDraft>,
    request_id: &str,
) -> Result<Vec<UserRecord>> {
    if drafts.is_empty() || drafts.len() > MAX_BATCH {
        return Err(Error::invalid("users", format!("must hold 1 to {MAX_BATCH} users")));
    }
    let mut violations = Violations::new();
    let request_id = idempotency::request_id(&mut violations, request_id);
    let mut valid = Vec::with_capacity(drafts.len());
    let mut seen_emails = HashSet::new();
    let mut seen_usernames = HashSet::new();
    let mut duplicate: Option<String> = None;
    let known = known_tenants(app, drafts.iter().map(|d| d.tenant_ids.as_slice())).await?;
    let may_name_others = caller.holds_globally("users:create");
    for (i, draft) in drafts.iter().enumerate() {
        let field = |name: &str| format!("users[{i}].{name}");
        let email = validate::email(&mut violations, &field("email"), &draft.email);
        let username = if draft.username.trim().is_empty() {
            email.clone()
        } else {
            validate::email(&mut violations, &field("username"), &draft.username)
        };
        let first_name = validate::text(&mut violations, &field("first_name"), &draft.first_name, MAX_TEXT);
        let last_name = validate::text(&mut violations, &field("last_name"), &draft.last_name, MAX_TEXT);
        let password = (!draft.password.is_empty()).then(|| {
            credentials::check_policy(
                &mut violations,
                &field("password"),
                &draft.password,
                app.config.password_min_length,
            );
            draft.password.clone()
        });
        if draft.temporary_password && password.is_none() {
            violations.add(field("temporary_password"), "needs a password");
        }
        let role_ids = validate::bounded_uuids(&mut violations, &field("role_ids"), &draft.role_ids, MAX_ROLES);
        let group_ids = validate::bounded_uuids(&mut violations, &field("group_ids"), &draft.group_ids, MAX_GROUPS);
        let tenant_ids = if draft.tenant_ids.is_empty() {
            vec![caller.tenant_id]
        } else {
            resolve_tenants(
                &known,
                may_name_others,
                &mut violations,
                &field("tenant_ids"),
                &draft.tenant_ids,
            )
        };
        // Roles and groups are those of the tenant in context: they are
        // granted only to its members (leaving a tenant drops them too).
        if !draft.tenant_ids.is_empty() && !tenant_ids.contains(&caller.tenant_id) {
            for (name, ids) in [("role_ids", &role_ids), ("group_ids", &group_ids)] {
                if !ids.is_empty() {
                    violations.add(
                        field(name),
                        "are the tenant in context's: the user must be a member of it (add it to tenant_ids)",
                    );
                }
            }
        }
        let max_devices = max_devices(&mut violations, &field("max_devices"), draft.max_devices);
        let image = image(&mut violations, &field("image"), &draft.image);
        if let (Some(email), Some(username)) = (email, username) {
            if !seen_emails.insert(email.clone()) {
                duplicate.get_or_insert(field("email"));
            }
            if !seen_usernames.insert(username.clone()) {
                duplicate.get_or_insert(field("username"));
            }
            valid.push(ValidDraft {
                email,
                username,
                first_name,
                last_name,
                password,
                temporary_password: draft.temporary_password,
                role_ids,
                group_ids,
                tenant_ids,
                max_devices,
                image,
            });
        }
    }
    violations.finish()?;
    if let Some(field) = duplicate {
        return Err(Error::AlreadyExists { field });
    }
    for draft in &valid {
        require_tenant_scope(caller, "users:create", &draft.tenant_ids)?;
    }
    check_grants(app, caller, &valid).await?;
    // Each field of each draft is a part of its own, which `RequestKey`
    // length-prefixes: no text in one field can pass for the next ("a|b",
    // "c" and "a", "b|c" differ). Every draft gives the same eleven parts.
    let fields: Vec<String> = valid
        .iter()
        .flat_map(|d| {
            [
                d.email.clone(),
                d.username.clone(),
                d.first_name.clone(),
                d.last_name.clone(),
                d.password.is_some().to_string(),
                d.temporary_password.to_string(),
                format!("{:?}", d.role_ids),
                format!("{:?}", d.group_ids),
                format!("{:?}", d.tenant_ids),
                format!("{:?}", d.max_devices),
                format!("{:?}", d.image),
            ]
        })
        .collect();
    let body: Vec<&[u8]> = fields.iter().map(|f| f.as_bytes()).collect();
    let key = RequestKey::new(caller, "CreateUsers", &request_id, &body);
    let load = |response: Vec<u8>| async move {
        full_records(app, caller.tenant_id, &idempotency::ids_from_bytes(&response)).await
    };
    let create = async {
        // Hash outside the transaction: argon2 is slow on purpose.
        let mut hashes = Vec::with_capacity(valid.len());
        for draft in &valid {
            hashes.push(match &draft.password {
                Some(password) => Some(credentials::hash_password(password.clone()).await?),
                None => None,
            });
        }
        let ids = insert_users(app, caller, valid, hashes, key.as_ref()).await?;
        full_records(app, caller.tenant_id, &ids).await
    };
    idempotency::once(&app.db, key.as_ref(), load, create).await
}

/// Checks the drafts' role grants and group memberships. All drafts' roles
/// and groups are checked at once (a fixed number of queries, none without
/// roles or groups); only when that refuses are they checked draft by draft,
/// to answer the refusal of the first draft that fails, naming it. A check
/// that passes for all ids passes for every draft's subset of them.
async fn check_grants(app: &App, caller: &Principal, valid: &[ValidDraft]) -> Result<()> {
    let mut role_ids: Vec<Uuid> = valid.iter().flat_map(|d| d.role_ids.iter().copied()).collect();
    let mut group_ids: Vec<Uuid> = valid.iter().flat_map(|d| d.group_ids.iter().copied()).collect();
    for ids in [&mut role_ids, &mut group_ids] {
        ids.sort_unstable();
        ids.dedup();
    }
    match check_draft_grants(app, caller, "users", &role_ids, &group_ids).await {
        Ok(()) => return Ok(()),
        Err(Error::Invalid(_) | Error::PermissionDenied(_)) => {}
        Err(other) => return Err(other),
    }
    for (i, draft) in valid.iter().enumerate() {
        check_draft_grants(app, caller, &format!("users[{i}]"), &draft.role_ids, &draft.group_ids).await?;
    }
    Ok(())
}

/// Roles the caller may grant and groups of the tenant in context it may
/// join users to; violations name `{prefix}.role_ids` or `{prefix}.group_ids`.
async fn check_draft_grants(
    app: &App,
    caller: &Principal,
    prefix: &str,
    role_ids: &[Uuid],
    group_ids: &[Uuid],
) -> Result<()> {
    grants::check_role_grants(&app.db, caller, &format!("{prefix}.role_ids"), role_ids).await?;
    if !group_ids.is_empty() {
        let groups = store::users::groups_in(&app.db, caller.tenant_id, group_ids).await?;
        if groups.len() != group_ids.len() {
            return Err(Error::invalid(
                format!("{prefix}.group_ids"),
                "unknown group in this tenant",
            ));
        }
        groups::require_joinable(&app.db, caller, group_ids).await?;
    }
    Ok(())
}

/// Writes validated drafts, all or nothing, with a fixed number of
/// statements whatever the batch's size (multi-row INSERTs: users,
/// credentials, memberships, grants, group memberships, audit events,
/// invitations and their mails; one member-count update per tenant);
/// returns the new ids in order.
async fn insert_users(
    app: &App,
    caller: &Principal,
    valid: Vec<ValidDraft>,
    hashes: Vec<Option<String>>,
    key: Option<&RequestKey>,
) -> Result<Vec<Uuid>> {
    let now = now();
    let mut users = Vec::with_capacity(valid.len());
    let mut events = Vec::with_capacity(valid.len());
    let mut invitees = Vec::new();
    for (draft, hash) in valid.into_iter().zip(hashes) {
        let id = Uuid::now_v7();
        let with_password = hash.is_some();
        // The tenant in context when the user joins it, else its first: the
        // trail its creation is recorded in, and what its invitation admits to.
        let tenant_id = if draft.tenant_ids.contains(&caller.tenant_id) {
            caller.tenant_id
        } else {
            draft.tenant_ids.first().copied().unwrap_or(caller.tenant_id)
        };
        events.push((tenant_id, Target::User(id), created_fields(&draft, with_password)));
        if !with_password {
            invitees.push(Invitee {
                user_id: id,
                email: draft.email.clone(),
                tenant_id,
            });
        }
        users.push(NewUser {
            user: user::Model {
                id,
                email: draft.email,
                username: draft.username,
                first_name_lower: draft.first_name.to_lowercase(),
                first_name: draft.first_name,
                last_name_lower: draft.last_name.to_lowercase(),
                last_name: draft.last_name,
                image: draft.image,
                status: if with_password { STATUS_ACTIVE } else { STATUS_PENDING }.to_owned(),
                max_devices: draft.max_devices,
                password_change_required: with_password && draft.temporary_password,
                last_connection: None,
                token_generation: 0,
                created_at: now,
                updated_at: now,
            },
            password_hash: hash,
            tenant_ids: draft.tenant_ids,
            role_ids: draft.role_ids,
            group_ids: draft.group_ids,
        });
    }
    let ids: Vec<Uuid> = users.iter().map(|new| new.user.id).collect();
    let identities: Vec<(String, String)> = users
        .iter()
        .map(|new| (new.user.email.clone(), new.user.username.clone()))
        .collect();
    let txn = app.writer.begin().await?;
    // The drafts' tenants before their roles and groups, in DeleteTenant's
    // order (a tenant, then what it cascades to): on PostgreSQL a role held
    // while waiting for its tenant's deletion could deadlock with it.
    let tenant_ids: Vec<Uuid> = users.iter().flat_map(|new| new.tenant_ids.iter().copied()).collect();
    store::tenants::lock(&txn, &tenant_ids).await?;
    hold_draft_grants(&txn, caller, &users).await?;
    if let Err(error) = store::users::insert_new(&txn, users).await {
        drop(txn);
        return Err(match error {
            // A deadlock over the same identities with another write is
            // what it lost to, once that write committed.
            Error::AlreadyExists { .. } | Error::ConcurrentChange => {
                taken_identity(app, &identities).await?.unwrap_or(error)
            }
            other => other,
        });
    }
    audit::record_many(&txn, caller, &events).await?;
    // After the users and memberships exist: the invitations refer to both.
    invitations::issue(&txn, app, &invitees, now).await?;
    if let Some(key) = key {
        key.record(&txn, idempotency::ids_to_bytes(&ids), now).await?;
    }
    txn.commit().await?;
    Ok(ids)
}

/// Holds the roles the drafts grant and the groups they join until the
/// batch is written (as [`crate::domain::roles::hold_granted`] does): one deleted since
/// [`check_grants`] passed is INVALID_ARGUMENT naming the first draft that
/// names it (`users[i].role_ids`, `users[i].group_ids`), the answer a retry
/// gets, rather than a foreign key that fails at the insert. A statement
/// each for the roles and the groups, none when no draft names any.
async fn hold_draft_grants(txn: &DatabaseTransaction, caller: &Principal, users: &[NewUser]) -> Result<()> {
    let role_ids: HashSet<Uuid> = users.iter().flat_map(|user| user.role_ids.iter().copied()).collect();
    let group_ids: HashSet<Uuid> = users.iter().flat_map(|user| user.group_ids.iter().copied()).collect();
    let role_ids: Vec<Uuid> = role_ids.into_iter().collect();
    let group_ids: Vec<Uuid> = group_ids.into_iter().collect();
    let held_roles: HashSet<Uuid> = store::roles::hold_valid_in(txn, caller.tenant_id, &role_ids)
        .await?
        .into_iter()
        .collect();
    let held_groups: HashSet<Uuid> = store::groups::hold_in(txn, caller.tenant_id, &group_ids)
        .await?
        .into_iter()
        .collect();
    for (i, user) in users.iter().enumerate() {
        if let Some(role) = user.role_ids.iter().find(|id| !held_roles.contains(id)) {
            return Err(Error::invalid(
                format!("users[{i}].role_ids"),
                format!("unknown role {role}"),
            ));
        }
        if user.group_ids.iter().any(|id| !held_groups.contains(id)) {
            return Err(Error::invalid(
                format!("users[{i}].group_ids"),
                "unknown group in this tenant",
            ));
        }
    }
    Ok(())
}

/// ALREADY_EXISTS naming the first draft's e-mail, else username, that
/// another user holds (`users[i].email`), once the batch's insert met a
/// unique index: the database names the index it met first, which differs
/// between SQLite and PostgreSQL when an e-mail is also the username.
/// `None` if nothing is taken any more (the other user was deleted since).
async fn taken_identity(app: &App, identities: &[(String, String)]) -> Result<Option<Error>> {
    let values: Vec<&str> = identities
        .iter()
        .flat_map(|(email, username)| [email.as_str(), username.as_str()])
        .collect();
    let taken = store::users::taken_identities(&app.db, &values).await?;
    let field = identities.iter().enumerate().find_map(|(i, (email, username))| {
        if taken.emails.contains(email) {
            Some(format!("users[{i}].email"))
        } else if taken.usernames.contains(username) {
            Some(format!("users[{i}].username"))
        } else {
            None
        }
    });
    Ok(field.map(|field| Error::AlreadyExists { field }))
}

/// The audit trail's changed fields of a created user.
fn created_fields(draft: &ValidDraft, with_password: bool) -> Vec<&'static str> {
    let optional = [
        ("first_name", !draft.first_name.is_empty()),
        ("last_name", !draft.last_name.is_empty()),
        ("password", with_password),
        ("password_change_required", with_password && draft.temporary_password),
        ("invitation", !with_password),
        ("role_ids", !draft.role_ids.is_empty()),
        ("group_ids", !draft.group_ids.is_empty()),
        ("max_devices", draft.max_devices.is_some()),
        ("image", draft.image.is_some()),
    ];
    let mut fields = vec!["email", "username", "status", "tenant_ids"];
    fields.extend(optional.iter().filter(|(_, set)| *set).map(|(name, _)| *name));
    fields
}

/// FULL records of these users, in the order of `ids`, through the record
/// cache (read together, and kept).
async fn full_records(app: &App, tenant_id: Uuid, ids: &[Uuid]) -> Result<Vec<UserRecord>> {
    let mut records = app.user_records.load(app, tenant_id, ids).await?;
    Ok(ids
        .iter()
        .filter_map(|id| records.remove(id))
        .map(Arc::unwrap_or_clone)
        .collect())
}

/// The FULL record of a user as seen from the tenant, as the write holding
/// `txn` left it: read before the commit, so that a write that commits
/// always answers (see [`UserRecordCache::read_in`]). NOT_FOUND when the
/// user is gone.
pub(crate) async fn written_record(
    app: &App,
    txn: &DatabaseTransaction,
    tenant_id: Uuid,
    user_id: Uuid,
) -> Result<UserRecord> {
    app.user_records
        .read_in(txn, tenant_id, user_id)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// The member of the tenant in context, or NOT_FOUND.
pub(crate) async fn member(app: &App, caller: &Principal, id: Uuid) -> Result<user::Model> {
    store::users::find_in_tenant(&app.db, caller.tenant_id, id)
        .await?
        .ok_or(Error::NotFound("user"))
}

/// A member of the caller's tenant, FULL; the record is shared with the
/// record cache (answering it needs no copy).
pub async fn get(app: &App, caller: &Principal, id: &str) -> Result<Arc<UserRecord>> {
    let id = validate::id("id", id)?;
    caller.require_target(id)?;
    app.user_records
        .get(app, caller.tenant_id, id)
        .await?
        .filter(|record| record.is_member_of(caller.tenant_id))
        .ok_or(Error::NotFound("user"))
}

/// The member of the caller's tenant with this username, FULL. A username
/// no account can have (see [`validate::may_be_username`]) is NOT_FOUND
/// without a query.
pub async fn get_by_username(app: &App, caller: &Principal, username: &str) -> Result<UserRecord> {
    if username.trim().is_empty() {
        return Err(Error::invalid("username", "is required"));
    }
    if !validate::may_be_username(username) {
        return Err(Error::NotFound("user"));
    }
    let user = store::users::find_by_username_in_tenant(&app.db, caller.tenant_id, username.trim())
        .await?
        .ok_or(Error::NotFound("user"))?;
    app.user_records
        .get(app, caller.tenant_id, user.id)
        .await?
        .map(Arc::unwrap_or_clone)
        .ok_or(Error::NotFound("user"))
}

/// The caller's own user, FULL, shared with the record cache.
pub async fn who_am_i(app: &App, caller: &Principal) -> Result<Arc<UserRecord>> {
    let id = caller
        .user_id()
        .ok_or_else(|| Error::FailedPrecondition("WhoAmI needs a user token; this is a service token".into()))?;
    app.user_records
        .get(app, caller.tenant_id, id)
        .await?
        .ok_or(Error::NotFound("user"))
}

pub async fn list(app: &App, caller: &Principal, query: UserQuery) -> Result<Page<UserRecord>> {
    let mut violations = Violations::new();
    let role_id = (!query.role_id.is_empty())
        .then(|| validate::uuid(&mut violations, "role_id", &query.role_id))
        .flatten();
    let group_id = (!query.group_id.is_empty())
        .then(|| validate::uuid(&mut violations, "group_id", &query.group_id))
        .flatten();
    let search = validate::text(&mut violations, "search", &query.search, MAX_TEXT).to_lowercase();
    violations.finish()?;
    let filter = UserFilter {
        status: query.status,
        role_id,
        group_id,
        search: (!search.is_empty()).then_some(search),
    };
    let scope = format!(
        "{}|{:?}|{:?}|{:?}|{:?}",
        caller.tenant_id, filter.status, filter.role_id, filter.group_id, filter.search
    );
    let max = if query.basic { MAX_BASIC_LIMIT } else { MAX_LIMIT };
    let params = ListParams::parse(&query.page, SORT_FIELDS, max, &scope)?;
    let (rows, total) = store::users::list(&app.db, caller.tenant_id, &filter, &params).await?;
    let page = params.page(
        rows,
        total,
        |u| u.id,
        |u, field| match field {
            "updatedAt" => u.updated_at.into(),
            "email" => u.email.clone().into(),
            "username" => u.username.clone().into(),
            "firstName" => u.first_name.clone().into(),
            "lastName" => u.last_name.clone().into(),
            "status" => u.status.clone().into(),
            _ => u.created_at.into(),
        },
    );
    if query.basic {
        return Ok(page.map(|user| UserRecord { user, details: None }));
    }
    let mut records = app.user_records.records_of(app, caller.tenant_id, &page.items).await?;
    // A user deleted since the listing keeps its listed row, with no roles,
    // groups, devices or grants.
    Ok(page.map(|user| match records.remove(&user.id) {
        Some(record) => Arc::unwrap_or_clone(record),
        None => UserRecord {
            user,
            details: Some(UserDetails::default()),
        },
    }))
}

/// Updates a member of the tenant in context: the fields the patch sets,
/// in one transaction that locks the user's row before it reads what the
/// replacements (`role_ids`, `tenant_ids`) compare with.
pub async fn update(app: &App, caller: &Principal, id: &str, patch: UserPatch) -> Result<UserRecord> {
    let id = validate::id("id", id)?;
    caller.require_target(id)?;
    let mut violations = Violations::new();
    let first_name = patch
        .first_name
        .map(|v| validate::text(&mut violations, "first_name", &v, MAX_TEXT));
    let last_name = patch
        .last_name
        .map(|v| validate::text(&mut violations, "last_name", &v, MAX_TEXT));
    let image = patch.image.map(|v| image(&mut violations, "image", &v));
    let mut email = match &patch.email {
        Some(v) => validate::email(&mut violations, "email", v),
        None => None,
    };
    let mut max_devices = patch
        .max_devices
        .map(|v| max_devices(&mut violations, "max_devices", v));
    let mut role_ids = patch
        .role_ids
        .as_ref()
        .map(|ids| validate::bounded_uuids(&mut violations, "role_ids", ids, MAX_ROLES));
    let mut tenant_ids = match &patch.tenant_ids {
        Some(keys) => {
            let known = known_tenants(app, [keys.as_slice()]).await?;
            let may_name_others = caller.holds_globally("users:update");
            Some(resolve_tenants(
                &known,
                may_name_others,
                &mut violations,
                "tenant_ids",
                keys,
            ))
        }
        None => None,
    };
    if patch.tenant_ids.as_ref().is_some_and(Vec::is_empty) {
        violations.add("tenant_ids", "a user must stay in at least one tenant");
    }
    let mut permissions = match &patch.permissions {
        Some(list) => Some(permissions::check_catalog(&app.db, &mut violations, "permissions", list).await?),
        None => None,
    };
    violations.finish()?;

    member(app, caller, id).await?;
    let now = now();
    let txn = app.writer.begin().await?;
    // The user's row first (a row lock on PostgreSQL, the write lock on
    // SQLite), then what the changes below compare with is read: concurrent
    // updates of one user run one after the other, so a `role_ids`
    // replacement leaves exactly its list (never a union with another's),
    // and its checks apply to the roles it really grants and revokes. The
    // user is read again under the lock: whether a PENDING user is
    // re-invited and whether its username follows the e-mail go by the row
    // as it is now, not as it was before another call changed it (an
    // invitation accepted meanwhile, say).
    let user = lock_member(&txn, caller.tenant_id, id).await?;
    // A caller updating itself without users:update changes only its names
    // and image: another field it sends is refused unless it holds the
    // value the user has (seed 002's update request requires them all), and
    // then it is no change.
    if caller.is_self_only() {
        if email.as_ref() == Some(&user.email) {
            email = None;
        }
        if max_devices == Some(user.max_devices) {
            max_devices = None;
        }
        if let Some(list) = &permissions
            && same_set(
                list,
                &store::users::direct_permissions(&txn, id, caller.tenant_id).await?,
            )
        {
            permissions = None;
        }
        if role_ids.is_some() || tenant_ids.is_some() {
            let details = store::users::load_details(&txn, caller.tenant_id, &[id])
                .await?
                .remove(&id)
                .unwrap_or_default();
            let roles: Vec<Uuid> = details.roles.iter().map(|r| r.role.id).collect();
            if role_ids.as_ref().is_some_and(|ids| same_set(ids, &roles)) {
                role_ids = None;
            }
            if tenant_ids
                .as_ref()
                .is_some_and(|ids| same_set(ids, &details.tenant_ids))
            {
                tenant_ids = None;
            }
        }
    }
    let changed = [
        ("first_name", first_name.is_some()),
        ("last_name", last_name.is_some()),
        ("image", image.is_some()),
        ("email", email.is_some()),
        ("max_devices", max_devices.is_some()),
        ("permissions", permissions.is_some()),
        ("role_ids", role_ids.is_some()),
        ("tenant_ids", tenant_ids.is_some()),
    ];
    let changed: Vec<&str> = changed.iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect();
    if caller.is_self_only()
        && let Some(field) = changed.iter().find(|f| !SELF_EDITABLE.contains(f))
    {
        return Err(Error::PermissionDenied(format!(
            "changing your own {field} needs users:update"
        )));
    }
    // Whom the account is shared with, as it is now (a membership or a
    // global role granted meanwhile counts).
    if email.is_some() {
        require_account_authority(&txn, caller, "users:update", id, "change its e-mail").await?;
    }
    // The device limit holds in every tenant: one tenant's administrator
    // setting it to 0 would refuse the user's devices in the others.
    if max_devices.is_some() {
        require_account_authority(&txn, caller, "users:update", id, "change its device limit").await?;
    }
    // Only the grants the replacement adds must be held by the caller, as
    // with `role_ids`: one it keeps is no grant.
    if let Some(list) = &permissions {
        let current = store::users::direct_permissions(&txn, id, caller.tenant_id).await?;
        let added: Vec<String> = list.iter().filter(|p| !current.contains(p)).cloned().collect();
        caller.require_all(&added)?;
    }
    let role_change = match &role_ids {
        Some(ids) => Some(grants::plan_role_replacement(&txn, caller, id, ids).await?),
        None => None,
    };
    let mut active: user::ActiveModel = user.clone().into();
    if let Some(v) = first_name {
        active.set_first_name(v);
    }
    if let Some(v) = last_name {
        active.set_last_name(v);
    }
    if let Some(v) = image {
        active.image = Set(v);
    }
    // The invitation of a PENDING user went to the old address: its link
    // stops working and the new address gets one of its own (below, once the
    // tenants it stays in are known).
    let mut invite_again = false;
    if let Some(email) = email {
        // A username that mirrored the e-mail follows it.
        if user.username == user.email {
            active.username = Set(email.clone());
        }
        active.email = Set(email);
        invite_again = user.status == STATUS_PENDING;
    }
    if let Some(v) = max_devices {
        active.max_devices = Set(v);
    }
    active.updated_at = Set(now);
    if let Err(error) = active.update(&txn).await {
        // Only the e-mail (and a username mirroring it) can meet a unique
        // index here: name `email`, the field the caller set, whichever
        // index the database met first (SQLite's, PostgreSQL's differ).
        return Err(match Error::from(error) {
            Error::AlreadyExists { .. } => Error::AlreadyExists { field: "email".into() },
            other => other,
        });
    }
    if let Some(list) = &permissions {
        permissions::recheck_catalog(&txn, "permissions", patch.permissions.as_deref().unwrap_or_default()).await?;
        store::users::replace_permissions(&txn, id, caller.tenant_id, list).await?;
    }
    if let Some(change) = &role_change {
        grants::apply_role_change(&txn, id, change, now).await?;
    }
    if let Some(wanted) = &tenant_ids {
        let current = current_tenants(&txn, id).await?;
        let add: Vec<Uuid> = wanted.iter().filter(|t| !current.contains(t)).copied().collect();
        let remove: Vec<Uuid> = current.iter().filter(|t| !wanted.contains(t)).copied().collect();
        invite_again |= change_memberships(&txn, caller, "users:update", id, &add, &remove).await?;
    }
    if invite_again {
        invite_again_pending(&txn, app, caller, id, now).await?;
    }
    audit::record(&txn, caller, Target::User(id), &changed).await?;
    let record = written_record(app, &txn, caller.tenant_id, id).await?;
    app.commit(txn, Change::Access(id)).await?;
    Ok(record)
}

/// A user's account (its password, status and e-mail, the user itself) is
/// one for every tenant it belongs to. A caller without the RPC's
/// `permission` through a global role changes it only for a user of the
/// tenant in context alone who holds no global role: otherwise one tenant's
/// administrator could take over an account that other tenants, or every
/// tenant, rely on. `action` completes "only a caller with a global role
/// may ...".
pub(crate) async fn require_account_authority<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    permission: &str,
    id: Uuid,
    action: &str,
) -> Result<()> {
    if caller.holds_globally(permission) {
        return Ok(());
    }
    let tenants = current_tenants(db, id).await?;
    if tenants.iter().any(|t| *t != caller.tenant_id) {
        return Err(Error::FailedPrecondition(format!(
            "the user also belongs to other tenants: only a caller with a global role may {action}"
        )));
    }
    let holds_global_role = store::access::user_state(db, id, caller.tenant_id)
        .await?
        .is_some_and(|state| state.has_global_role);
    if holds_global_role {
        return Err(Error::PermissionDenied(format!(
            "the user holds a global role: only a caller with one may {action}"
        )));
    }
    Ok(())
}

/// The fields a caller updating itself without users:update may change.
const SELF_EDITABLE: [&str; 3] = ["first_name", "last_name", "image"];

/// Whether two lists hold the same values, whatever their order and
/// repetitions.
fn same_set<T: Ord>(a: &[T], b: &[T]) -> bool {
    let a: std::collections::BTreeSet<&T> = a.iter().collect();
    let b: std::collections::BTreeSet<&T> = b.iter().collect();
    a == b
}

async fn current_tenants<C: ConnectionTrait>(db: &C, user_id: Uuid) -> Result<Vec<Uuid>> {
    Ok(store::users::load_details(db, Uuid::nil(), &[user_id])
        .await?
        .remove(&user_id)
        .map(|d| d.tenant_ids)
        .unwrap_or_default())
}

/// Adds and removes memberships for an RPC needing `permission`; whether
/// leaving ended an open invitation of the user's (see
/// [`invite_again_pending`]).
async fn change_memberships<C: ConnectionTrait>(
    db: &C,
    caller: &Principal,
    permission: &str,
    user_id: Uuid,
    add: &[Uuid],
    remove: &[Uuid],
) -> Result<bool> {
    let now = now();
    require_tenant_scope(caller, permission, add)?;
    require_tenant_scope(caller, permission, remove)?;
    // The user's row, then the tenants' (the order of every writer that
    // takes both), before the rules below read: concurrent changes of the
    // same user, or of two owners of one tenant, then wait for each other.
    store::users::lock(db, user_id).await?;
    let mut touched = add.to_vec();
    touched.extend_from_slice(remove);
    store::tenants::lock(db, &touched).await?;
    let sole = store::users::tenants_solely_owned(db, user_id, remove).await?;
    if !sole.is_empty() {
        return Err(Error::FailedPrecondition(
            "cannot remove the last owner of a tenant".into(),
        ));
    }
    let current = current_tenants(db, user_id).await?;
    if current.iter().filter(|t| !remove.contains(t)).count() + add.iter().filter(|t| !current.contains(t)).count() == 0
    {
        return Err(Error::FailedPrecondition(
            "a user must stay in at least one tenant".into(),
        ));
    }
    store::users::add_memberships(db, user_id, add, now).await?;
    let withdrawn = store::users::remove_memberships(db, user_id, remove, now).await?;
    Ok(withdrawn > 0)
}

/// Ends a PENDING user's open invitations and mails it a fresh one to a
/// tenant it belongs to: the tenant in context if it is one, else its first
/// ACTIVE tenant (else its first). Called when its invitation went to an
/// address it no longer has, or to a tenant it left: without a fresh one it
/// could never set its password. Nothing for a user no longer PENDING.
async fn invite_again_pending<C: ConnectionTrait>(
    db: &C,
    app: &App,
    caller: &Principal,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<()> {
    let Some(pending) = user::Entity::find_by_id(user_id)
        .one(db)
        .await?
        .filter(|user| user.status == STATUS_PENDING)
    else {
        return Ok(());
    };
    let tenant_id = if current_tenants(db, user_id).await?.contains(&caller.tenant_id) {
        Some(caller.tenant_id)
    } else {
        match store::credentials::first_active_tenant(db, user_id).await? {
            Some(active) => Some(active),
            None => store::credentials::first_tenant(db, user_id).await?,
        }
    };
    let Some(tenant_id) = tenant_id else {
        return Ok(());
    };
    store::credentials::withdraw_invitations(db, user_id, now).await?;
    let invitee = Invitee {
        user_id,
        email: pending.email,
        tenant_id,
    };
    invitations::issue(db, app, &[invitee], now).await
}

/// Adds and removes tenant memberships in one transaction.
pub async fn update_tenants(
    app: &App,
    caller: &Principal,
    id: &str,
    add: &[String],
    remove: &[String],
) -> Result<UserRecord> {
    let id = validate::id("id", id)?;
    let mut violations = Violations::new();
    let known = known_tenants(app, [add, remove]).await?;
    let may_name_others = caller.holds_globally("users:tenants");
    let add = resolve_tenants(&known, may_name_others, &mut violations, "add_tenant_ids", add);
    let remove = resolve_tenants(&known, may_name_others, &mut violations, "remove_tenant_ids", remove);
    if let Some(t) = add.iter().find(|t| remove.contains(t)) {
        violations.add("remove_tenant_ids", format!("tenant {t} is both added and removed"));
    }
    violations.finish()?;
    member(app, caller, id).await?;
    let txn = app.writer.begin().await?;
    // A member of the tenant in context still once its row is held: one
    // removed meanwhile is NOT_FOUND, not put back into other tenants by a
    // call made in this one.
    lock_member(&txn, caller.tenant_id, id).await?;
    if change_memberships(&txn, caller, "users:tenants", id, &add, &remove).await? {
        invite_again_pending(&txn, app, caller, id, now()).await?;
    }
    audit::record(&txn, caller, Target::User(id), &["tenant_ids"]).await?;
    let record = written_record(app, &txn, caller.tenant_id, id).await?;
    app.commit(txn, Change::Access(id)).await?;
    Ok(record)
}

/// Locks the user's row (a row lock on PostgreSQL, the write lock on
/// SQLite), then reads the user as it is now: a rule that goes by its
/// status or fields then sees no change another call made after a read
/// before the lock. NOT_FOUND when it is gone, or not in the tenant.
pub(crate) async fn lock_member(txn: &DatabaseTransaction, tenant_id: Uuid, id: Uuid) -> Result<user::Model> {
    if !store::users::lock(txn, id).await? {
        return Err(Error::NotFound("user"));
    }
    store::users::find_in_tenant(txn, tenant_id, id)
        .await?
        .ok_or(Error::NotFound("user"))
}

async fn set_status(app: &App, caller: &Principal, id: &str, status: &str) -> Result<UserRecord> {
    let id = validate::id("id", id)?;
    let now = now();
    let txn = app.writer.begin().await?;
    // The user, its tenants, roles and credential as they are now: the rules
    // below go by them.
    let user = lock_member(&txn, caller.tenant_id, id).await?;
    require_account_authority(&txn, caller, "users:deactivate", id, "change its status").await?;
    if status == STATUS_ACTIVE && user.status == STATUS_PENDING {
        return Err(Error::FailedPrecondition(
            "a pending user becomes active by accepting its invitation".into(),
        ));
    }
    // A user deactivated before it ever set a password goes back to
    // PENDING: only a password (its invitation, or ResetUserPassword) makes
    // a user ACTIVE.
    let status = if status == STATUS_ACTIVE && store::credentials::credential_of(&txn, id).await?.is_none() {
        STATUS_PENDING
    } else {
        status
    };
    let generation = user.token_generation;
    let mut active: user::ActiveModel = user.into();
    active.status = Set(status.to_owned());
    if status == STATUS_INACTIVE {
        // Its tokens stay refused after a ReactivateUser.
        active.token_generation = Set(generation.wrapping_add(1));
    }
    active.updated_at = Set(now);
    active.update(&txn).await?;
    let fields: &[&str] = if status == STATUS_INACTIVE {
        store::devices::revoke_all_of_user(&txn, id, now).await?;
        &["status", "devices"]
    } else {
        &["status"]
    };
    audit::record(&txn, caller, Target::User(id), fields).await?;
    let record = written_record(app, &txn, caller.tenant_id, id).await?;
    app.commit(txn, Change::Access(id)).await?;
    Ok(record)
}

/// INACTIVE: data kept, devices revoked, tokens refused from the next call
/// (and revoked: they stay refused after a reactivation).
pub async fn deactivate(app: &App, caller: &Principal, id: &str) -> Result<UserRecord> {
    set_status(app, caller, id, STATUS_INACTIVE).await
}

pub async fn reactivate(app: &App, caller: &Principal, id: &str) -> Result<UserRecord> {
    set_status(app, caller, id, STATUS_ACTIVE).await
}

/// Deletes the user permanently: its devices are revoked first, then they,
/// its grants and memberships go with it (foreign keys cascade).
/// A user who also belongs to other tenants, or holds a global role, may only
/// be deleted by a caller with a global role; others remove the membership
/// instead (UpdateUserTenants). The last owner of a tenant is not deleted
/// (as UpdateUserTenants does not remove it).
pub async fn delete(app: &App, caller: &Principal, id: &str) -> Result<()> {
    let id = validate::id("id", id)?;
    let txn = app.writer.begin().await?;
    // The user's row, then its tenants' (the order of `change_memberships`),
    // then its devices (the order of domain::devices). Whom the account is
    // shared with is read under the user's lock (a membership or global role
    // granted meanwhile counts), the owners under the tenants' (another
    // owner deleted or removed meanwhile counts as gone).
    lock_member(&txn, caller.tenant_id, id).await?;
    require_account_authority(
        &txn,
        caller,
        "users:delete",
        id,
        "delete it (UpdateUserTenants removes it from this tenant)",
    )
    .await?;
    let tenants = current_tenants(&txn, id).await?;
    store::tenants::lock(&txn, &tenants).await?;
    if !store::users::tenants_solely_owned(&txn, id, &tenants).await?.is_empty() {
        return Err(Error::FailedPrecondition(
            "cannot delete the last owner of a tenant".into(),
        ));
    }
    store::devices::revoke_all_of_user(&txn, id, now()).await?;
    store::users::delete(&txn, id).await?;
    audit::record(&txn, caller, Target::User(id), &[]).await?;
    app.commit(txn, Change::Access(id)).await?;
    Ok(())
}
