//! Groups: sets of users of one tenant whose members inherit the group's
//! roles (roles valid in that tenant). A group of another tenant is NOT_FOUND.
//! Giving a group a role is granting it: the caller must hold its permissions.

use sea_orm::{ConnectionTrait, TransactionTrait};
use uuid::Uuid;

use crate::{
    app::App,
    auth::Principal,
    domain::{
        audit::{self, Target},
        idempotency::{self, RequestKey},
        now,
        paging::{ListParams, MAX_LIMIT, Page, PageRequest, SortField},
        roles, tenants,
        users::{self, UserQuery, UserRecord},
        validate::{self, MAX_DESCRIPTION, MAX_NAME},
    },
    error::{Error, Result, Violations},
    store::{self, entity::group, groups::GroupDetails, invalidation::Change, users::RoleWithPermissions},
};

/// Most roles a group gets in one request (CreateGroup, UpdateGroup).
pub const MAX_ROLES: usize = 1000;

const SORT_FIELDS: &[SortField] = &[
    SortField::time("createdAt"),
    SortField::time("updatedAt"),
    SortField::text("name"),
];

/// A group as the API shows it: the row, its roles and its member count.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub group: group::Model,
    /// Sorted by name.
    pub roles: Vec<RoleWithPermissions>,
    pub member_count: u64,
}

/// A group to create.
#[derive(Debug, Clone, Default)]
pub struct NewGroup {
    pub name: String,
    pub description: String,
    pub role_ids: Vec<String>,
    /// Optional idempotency key (see `domain::idempotency`).
    pub request_id: String,
}

/// Changes to a group; `None` leaves a field. `role_ids` replaces the roles.
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub role_ids: Option<Vec<String>>,
}

fn record(group: group::Model, details: Option<GroupDetails>) -> GroupRecord {
    let details = details.unwrap_or_default();
    GroupRecord {
        group,
        roles: details.roles,
        member_count: details.member_count,
    }
}

async fn full_record<C: ConnectionTrait>(db: &C, group: group::Model) -> Result<GroupRecord> {
    let id = group.id;
    let mut details = store::groups::load_details(db, &[id]).await?;
    Ok(record(group, details.remove(&id)))
}

/// The group of the tenant in context, or NOT_FOUND.
pub async fn find(app: &App, caller: &Principal, id: Uuid) -> Result<group::Model> {
    store::groups::find_in(&app.db, caller.tenant_id, id)
        .await?
        .ok_or(Error::NotFound("group"))
}

pub async fn create(app: &App, caller: &Principal, new: NewGroup) -> Result<GroupRecord> {
    let mut violations = Violations::new();
    let request_id = idempotency::request_id(&mut violations, &new.request_id);
    let name = validate::required_text(&mut violations, "name", &new.name, MAX_NAME);
    let description = validate::text(&mut violations, "description", &new.description, MAX_DESCRIPTION);
    let role_ids = validate::bounded_uuids(&mut violations, "role_ids", &new.role_ids, MAX_ROLES);
    violations.finish()?;
    roles::require_grantable(&app.db, caller, "role_ids", &role_ids).await?;
    let roles_text = format!("{role_ids:?}");
    let body = [name.as_bytes(), description.as_bytes(), roles_text.as_bytes()];
    let key = RequestKey::new(caller, "CreateGroup", &request_id, &body);
    let load = |response: Vec<u8>| async move {
        let id = idempotency::ids_from_bytes(&response)
            .first()
            .copied()
            .unwrap_or_default();
        let group = find(app, caller, id).await?;
        full_record(&app.db, group).await
    };
    let create = async {
        let now = now();
        let group = group::Model {
            id: Uuid::now_v7(),
            tenant_id: caller.tenant_id,
            name,
            description,
            created_at: now,
            updated_at: now,
        };
        let txn = app.writer.begin().await?;
        tenants::hold_context(&txn, caller).await?;
        // The roles checked before the transaction, held until they are assigned.
        roles::hold_granted(&txn, caller, "role_ids", &role_ids).await?;
        store::groups::insert(&txn, &group, &role_ids).await?;
        if let Some(key) = &key {
            key.record(&txn, idempotency::ids_to_bytes(&[group.id]), now).await?;
        }
        let mut fields = vec!["name"];
        if !group.description.is_empty() {
            fields.push("description");
        }
        if !role_ids.is_empty() {
            fields.push("role_ids");
        }
        audit::record(&txn, caller, Target::Group(group.id), &fields).await?;
        let answer = full_record(&txn, group).await?;
        txn.commit().await?;
        Ok(answer)
    };
    idempotency::once(&app.db, key.as_ref(), load, create).await
}

pub async fn get(app: &App, caller: &Principal, id: &str) -> Result<GroupRecord> {
    let id = validate::id("id", id)?;
    let group = find(app, caller, id).await?;
    full_record(&app.db, group).await
}

pub async fn list(app: &App, caller: &Principal, page: &PageRequest) -> Result<Page<GroupRecord>> {
    let params = ListParams::parse(page, SORT_FIELDS, MAX_LIMIT, &format!("groups|{}", caller.tenant_id))?;
    let (rows, total) = store::groups::list(&app.db, caller.tenant_id, &params).await?;
    let page = params.page(
        rows,
        total,
        |g| g.id,
        |g, field| match field {
            "updatedAt" => g.updated_at.into(),
            "name" => g.name.clone().into(),
            _ => g.created_at.into(),
        },
    );
    let ids: Vec<Uuid> = page.items.iter().map(|g| g.id).collect();
    let mut details = store::groups::load_details(&app.db, &ids).await?;
    Ok(page.map(|group| {
        let id = group.id;
        record(group, details.remove(&id))
    }))
}

/// Updates name and description, and replaces the roles when `role_ids` is
/// given (only the added roles must be grantable by the caller).
///
/// The group's row is written first in the transaction (a row lock on
/// PostgreSQL, the write lock on SQLite), and the roles are read and
/// compared after it: concurrent updates of one group run one after the
/// other, each replacing what the previous one left, so each leaves exactly
/// its list (never a union) and none trips over another's rows.
pub async fn update(app: &App, caller: &Principal, id: &str, patch: GroupPatch) -> Result<GroupRecord> {
    let id = validate::id("id", id)?;
    let mut violations = Violations::new();
    let name = patch
        .name
        .map(|n| validate::required_text(&mut violations, "name", &n, MAX_NAME));
    let description = patch
        .description
        .map(|d| validate::text(&mut violations, "description", &d, MAX_DESCRIPTION));
    let wanted = patch
        .role_ids
        .map(|ids| validate::bounded_uuids(&mut violations, "role_ids", &ids, MAX_ROLES));
    violations.finish()?;
    find(app, caller, id).await?;
    let mut fields = Vec::new();
    if name.is_some() {
        fields.push("name");
    }
    if description.is_some() {
        fields.push("description");
    }
    if wanted.is_some() {
        fields.push("role_ids");
    }
    let txn = app.writer.begin().await?;
    tenants::hold_context(&txn, caller).await?;
    let updated = store::groups::update(&txn, id, name, description, now())
        .await?
        .ok_or(Error::NotFound("group"))?;
    if let Some(wanted) = &wanted {
        let current = store::groups::role_ids_of(&txn, &[id]).await?;
        let add: Vec<Uuid> = wanted.iter().filter(|r| !current.contains(r)).copied().collect();
        let remove: Vec<Uuid> = current.iter().filter(|r| !wanted.contains(r)).copied().collect();
        // Checked against the roles the group has now: keeping a role is no
        // escalation, giving one back that a concurrent update took is. The
        // roles added are held first, so none is deleted before the write.
        roles::hold_granted(&txn, caller, "role_ids", &add).await?;
        roles::require_grantable(&txn, caller, "role_ids", &add).await?;
        store::groups::change_roles(&txn, id, &add, &remove).await?;
    }
    audit::record(&txn, caller, Target::Group(id), &fields).await?;
    // The answer is what this transaction wrote, read on its connection.
    let answer = full_record(&txn, updated).await?;
    // Members' records show the group's name and description.
    app.commit(txn, Change::Group(id)).await?;
    Ok(answer)
}

/// Deletes the group; its members lose the roles it gave them at once.
pub async fn delete(app: &App, caller: &Principal, id: &str) -> Result<()> {
    let id = validate::id("id", id)?;
    find(app, caller, id).await?;
    let txn = app.writer.begin().await?;
    tenants::hold_context(&txn, caller).await?;
    store::groups::delete(&txn, id).await?;
    audit::record(&txn, caller, Target::Group(id), &[]).await?;
    app.commit(txn, Change::Group(id)).await?;
    Ok(())
}

/// The members (BASIC users), paged and sorted like ListUsers.
pub async fn list_members(app: &App, caller: &Principal, id: &str, page: PageRequest) -> Result<Page<UserRecord>> {
    let id = validate::id("id", id)?;
    find(app, caller, id).await?;
    let query = UserQuery {
        page,
        basic: true,
        group_id: id.to_string(),
        ..Default::default()
    };
    users::list(app, caller, query).await
}

/// Joining these groups grants their roles: the caller must hold every
/// permission they carry.
pub async fn require_joinable<C: ConnectionTrait>(db: &C, caller: &Principal, group_ids: &[Uuid]) -> Result<()> {
    let role_ids = store::groups::role_ids_of(db, group_ids).await?;
    roles::require_held(db, caller, &role_ids).await
}
