//! Tenants: create, read, list, update, delete, and the bootstrap of an
//! empty database (tenant `default`, optionally a global `admin` role and its
//! first user).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseTransaction, DbErr, EntityTrait, PaginatorTrait, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    app::App,
    auth::Call,
    auth::Principal,
    auth::access::TenantKey,
    domain::{
        audit::{self, Origin, Target},
        credentials,
        idempotency::{self, RequestKey},
        now,
        paging::{ListParams, Page, PageRequest, SortField},
        validate::{self, MAX_TEXT},
    },
    error::{Error, Result, Violations},
    store::{
        self,
        entity::{credential, role, role_permission, tenant, tenant_membership, user, user_role},
        invalidation::Change,
        tenants::Deletion,
    },
};

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_SUSPENDED: &str = "suspended";
/// The tenant created on an empty database.
pub const DEFAULT_TENANT_SLUG: &str = "default";

const SORT_FIELDS: &[SortField] = &[
    SortField::time("createdAt"),
    SortField::time("updatedAt"),
    SortField::text("name"),
    SortField::text("slug"),
];

/// A new tenant.
#[derive(Debug, Clone, Default)]
pub struct NewTenant {
    pub name: String,
    pub slug: String,
    pub owner_user_id: String,
    /// Optional idempotency key (see `domain::idempotency`).
    pub request_id: String,
}

/// Changes to a tenant; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub status: Option<String>,
}

fn valid_slug(slug: &str) -> bool {
    (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Resolves a tenant by id or slug, or NOT_FOUND. Only a key that may name
/// a tenant is looked up: another (one with a NUL, which PostgreSQL refuses
/// in text) is as unknown as any unknown one.
async fn find(app: &App, id_or_slug: &str) -> Result<tenant::Model> {
    let id_or_slug = id_or_slug.trim();
    if TenantKey::parse(id_or_slug).is_none() {
        return Err(Error::NotFound("tenant"));
    }
    store::tenants::resolve(&app.db, id_or_slug)
        .await?
        .ok_or(Error::NotFound("tenant"))
}

/// The tenant named by `id_or_slug` as the caller sees it: a caller that
/// does not hold the RPC's `permission` through a global role sees only the
/// tenant in context; another is NOT_FOUND, as every resource of another
/// tenant is.
async fn visible(app: &App, caller: &Principal, id_or_slug: &str, permission: &str) -> Result<tenant::Model> {
    let tenant = find(app, id_or_slug).await?;
    if caller.holds_globally(permission) || tenant.id == caller.tenant_id {
        Ok(tenant)
    } else {
        Err(Error::NotFound("tenant"))
    }
}

/// Creates a tenant: only a caller holding `tenants:create` through a global
/// role may (a tenant's own roles reach no further than the tenant).
pub async fn create(app: &App, caller: &Principal, new: NewTenant) -> Result<tenant::Model> {
    if !caller.holds_globally("tenants:create") {
        return Err(Error::PermissionDenied(
            "only a caller with a global role may create tenants".into(),
        ));
    }
    let mut violations = Violations::new();
    let request_id = idempotency::request_id(&mut violations, &new.request_id);
    let name = validate::required_text(&mut violations, "name", &new.name, MAX_TEXT);
    let slug = new.slug.trim().to_owned();
    if !valid_slug(&slug) {
        violations.add("slug", "must match [a-z0-9-]{2,63}");
    }
    let owner = if new.owner_user_id.trim().is_empty() {
        None
    } else {
        validate::uuid(&mut violations, "owner_user_id", &new.owner_user_id)
    };
    violations.finish()?;
    let owner_text = owner.map(|o| o.to_string()).unwrap_or_default();
    let key = RequestKey::new(
        caller,
        "CreateTenant",
        &request_id,
        &[name.as_bytes(), slug.as_bytes(), owner_text.as_bytes()],
    );
    let load = |response: Vec<u8>| async move {
        let id = idempotency::ids_from_bytes(&response).first().copied();
        tenant::Entity::find_by_id(id.unwrap_or_default())
            .one(&app.db)
            .await?
            .ok_or(Error::NotFound("tenant"))
    };
    let create = async {
        if let Some(owner) = owner
            && user::Entity::find_by_id(owner).one(&app.db).await?.is_none()
        {
            return Err(Error::NotFound("user"));
        }
        insert_tenant(app, caller, name, slug, owner, key.as_ref()).await
    };
    idempotency::once(&app.db, key.as_ref(), load, create).await
}

/// Holds the tenant in context against its deletion until the transaction
/// ends; NOT_FOUND when it was deleted meanwhile. Writers of what a tenant's
/// deletion cascades to (its groups, roles and their grants) take it first,
/// in DeleteTenant's order (the tenant, then what it cascades to): on
/// PostgreSQL, holding a group or role and then waiting for a row the
/// deletion already holds would deadlock with it.
pub(crate) async fn hold_context(txn: &DatabaseTransaction, caller: &Principal) -> Result<()> {
    if store::tenants::hold_against_deletion(txn, caller.tenant_id).await? {
        Ok(())
    } else {
        Err(Error::NotFound("tenant"))
    }
}

async fn insert_tenant(
    app: &App,
    caller: &Principal,
    name: String,
    slug: String,
    owner: Option<Uuid>,
    key: Option<&RequestKey>,
) -> Result<tenant::Model> {
    let now = now();
    let txn = app.writer.begin().await?;
    // The owner's row first, as every writer of a user's memberships takes
    // it: a DeleteUser, DeactivateUser or ResetUserPassword that read the
    // owner's tenants before this membership then waits for it and sees it.
    if let Some(owner) = owner
        && !store::users::lock(&txn, owner).await?
    {
        return Err(Error::NotFound("user"));
    }
    let tenant = tenant::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(name),
        slug: Set(slug),
        status: Set(STATUS_ACTIVE.to_owned()),
        user_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    if let Some(owner) = owner {
        tenant_membership::ActiveModel {
            tenant_id: Set(tenant.id),
            user_id: Set(owner),
            is_owner: Set(true),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        store::tenants::add_to_user_count(&txn, tenant.id, 1).await?;
    }
    if let Some(key) = key {
        key.record(&txn, idempotency::ids_to_bytes(&[tenant.id]), now).await?;
    }
    let fields: &[&str] = if owner.is_some() {
        &["name", "slug", "owner_user_id"]
    } else {
        &["name", "slug"]
    };
    let origin = Origin::from(caller).in_tenant(Some(tenant.id));
    audit::record(&txn, origin, Target::Tenant(tenant.id), fields).await?;
    app.commit(txn, Change::Directory).await?;
    Ok(tenant)
}

pub async fn get(app: &App, caller: &Principal, id: &str) -> Result<tenant::Model> {
    visible(app, caller, id, "tenants:read").await
}

/// Every tenant for a caller holding `tenants:list` through a global role;
/// for others, the tenant in context.
pub async fn list(app: &App, caller: &Principal, page: &PageRequest) -> Result<Page<tenant::Model>> {
    let only = (!caller.holds_globally("tenants:list")).then_some(caller.tenant_id);
    let scope = match only {
        Some(id) => format!("tenants|{id}"),
        None => "tenants".to_owned(),
    };
    let params = ListParams::parse(page, SORT_FIELDS, crate::domain::paging::MAX_LIMIT, &scope)?;
    let (rows, total) = store::tenants::list(&app.db, &params, only).await?;
    Ok(params.page(
        rows,
        total,
        |t| t.id,
        |t, field| match field {
            "updatedAt" => t.updated_at.into(),
            "name" => t.name.clone().into(),
            "slug" => t.slug.clone().into(),
            _ => t.created_at.into(),
        },
    ))
}

pub async fn update(app: &App, caller: &Principal, id: &str, patch: TenantPatch) -> Result<tenant::Model> {
    let mut violations = Violations::new();
    let name = patch
        .name
        .map(|n| validate::required_text(&mut violations, "name", &n, MAX_TEXT));
    if let Some(status) = &patch.status
        && status != STATUS_ACTIVE
        && status != STATUS_SUSPENDED
    {
        violations.add("status", "must be ACTIVE or SUSPENDED");
    }
    violations.finish()?;
    let tenant = visible(app, caller, id, "tenants:update").await?;
    let mut changed = Vec::new();
    let mut active: tenant::ActiveModel = tenant.into();
    if let Some(name) = name {
        active.name = Set(name);
        changed.push("name");
    }
    if let Some(status) = patch.status {
        active.status = Set(status);
        changed.push("status");
    }
    active.updated_at = Set(now());
    let txn = app.writer.begin().await?;
    let tenant = match active.update(&txn).await {
        // Deleted since it was read.
        Err(DbErr::RecordNotUpdated) => return Err(Error::NotFound("tenant")),
        updated => updated?,
    };
    let origin = Origin::from(caller).in_tenant(Some(tenant.id));
    audit::record(&txn, origin, Target::Tenant(tenant.id), &changed).await?;
    // Outdates the auth layer's cached tenants, here and (NOTIFY) on every
    // replica: a suspension or a reactivation holds from the next call.
    app.commit(txn, Change::Directory).await?;
    Ok(tenant)
}

/// Deletes the tenant, and with it the users who belong to no other tenant
/// (as a Keycloak realm's or a ZITADEL organisation's users go with it; kept,
/// they would be out of every caller's reach with their e-mail taken for
/// good), its memberships, roles, groups and direct grants.
/// FAILED_PRECONDITION, deleting nothing, when one of those users holds a
/// global role.
pub async fn delete(app: &App, caller: &Principal, id: &str) -> Result<()> {
    let tenant = visible(app, caller, id, "tenants:delete").await?;
    let txn = app.writer.begin().await?;
    let users = match store::tenants::delete(&txn, tenant.id).await? {
        Deletion::Deleted { users } => users,
        Deletion::Gone => return Err(Error::NotFound("tenant")),
        Deletion::SoleMemberHoldsGlobalRole => {
            return Err(Error::FailedPrecondition(
                "a user who belongs to this tenant alone holds a global role: \
                 add it to another tenant (UpdateUserTenants) or revoke the role first"
                    .into(),
            ));
        }
    };
    // No one can name the tenant any more: its trail, and its deletion,
    // pass to global readers.
    store::audit::orphan_tenant_events(&txn, tenant.id).await?;
    let origin = Origin::from(caller).in_tenant(None);
    audit::record(&txn, origin, Target::Tenant(tenant.id), &[]).await?;
    // Every cached entry: the tenant, and the deleted users' tokens.
    app.commit(txn, Change::Directory).await?;
    tracing::info!(tenant = %tenant.id, users, "tenant deleted with the users it alone held");
    Ok(())
}

/// The first administrator, from configuration.
#[derive(Clone)]
struct BootstrapAdmin {
    email: String,
    password: String,
}

debug_without_secrets!(BootstrapAdmin { email });

const BOOTSTRAP_EMAIL: &str = "CASTELLAN_BOOTSTRAP_ADMIN_EMAIL";
const BOOTSTRAP_PASSWORD: &str = "CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD";

/// On an empty database: creates tenant `default` and, with the bootstrap
/// settings (e-mail and password, both or neither: one alone is
/// INVALID_ARGUMENT naming the other, so a first start never comes up
/// without the administrator it was meant to create), a global role `admin`
/// holding `*` and that user as owner of `default`. Does nothing once any
/// tenant exists, save a warning that names the bootstrap settings it
/// ignores (never their values); safe when several replicas start at once
/// (the unique slug lets one win). A database without tenants that still
/// holds what the bootstrap would create refuses the start
/// (FAILED_PRECONDITION naming the field that met it).
pub async fn bootstrap(app: &App) -> Result<()> {
    let given = |value: &Option<String>| value.clone().filter(|v| !v.trim().is_empty());
    let email = given(&app.config.bootstrap_admin_email);
    let password = given(&app.config.bootstrap_admin_password);
    if tenant::Entity::find().count(&app.db).await? > 0 {
        let ignored: Vec<&str> = [(BOOTSTRAP_EMAIL, &email), (BOOTSTRAP_PASSWORD, &password)]
            .into_iter()
            .filter_map(|(name, value)| value.as_ref().map(|_| name))
            .collect();
        if !ignored.is_empty() {
            tracing::warn!(
                settings = %ignored.join(", "),
                "bootstrap settings ignored: the database already holds tenants, and the bootstrap runs on an empty database only"
            );
        }
        return Ok(());
    }
    let admin = match (email, password) {
        (Some(email), Some(password)) => Some(BootstrapAdmin { email, password }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Error::invalid(
                BOOTSTRAP_PASSWORD,
                format!("is required with {BOOTSTRAP_EMAIL}"),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::invalid(
                BOOTSTRAP_EMAIL,
                format!("is required with {BOOTSTRAP_PASSWORD}"),
            ));
        }
    };
    match create_initial_data(app, admin).await {
        // Another replica bootstrapped first, or what the bootstrap creates
        // outlived every tenant (a global role `admin`, the administrator's
        // user): then the start is refused, not left without a tenant.
        Err(Error::AlreadyExists { field }) => {
            if tenant::Entity::find().count(&app.db).await? > 0 {
                return Ok(());
            }
            Err(Error::FailedPrecondition(format!(
                "the database holds no tenant, yet the bootstrap met an existing {field} (a global role `admin` or \
                 the administrator's user, left from before): remove it and start again, or start once without \
                 the bootstrap settings (which creates tenant `default` alone)"
            )))
        }
        other => other,
    }
}

async fn create_initial_data(app: &App, admin: Option<BootstrapAdmin>) -> Result<()> {
    let password_hash = match &admin {
        Some(admin) => {
            let mut violations = Violations::new();
            let email = validate::email(&mut violations, "CASTELLAN_BOOTSTRAP_ADMIN_EMAIL", &admin.email);
            credentials::check_policy(
                &mut violations,
                "CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD",
                &admin.password,
                app.config.password_min_length,
            );
            violations.finish()?;
            Some((
                email.unwrap_or_default(),
                credentials::hash_password(admin.password.clone()).await?,
            ))
        }
        None => None,
    };
    let now = now();
    let txn = app.writer.begin().await?;
    let tenant_id = Uuid::now_v7();
    tenant::ActiveModel {
        id: Set(tenant_id),
        name: Set("Default".to_owned()),
        slug: Set(DEFAULT_TENANT_SLUG.to_owned()),
        status: Set(STATUS_ACTIVE.to_owned()),
        user_count: Set(0),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    let origin = Origin {
        actor: audit::SYSTEM_ACTOR.to_owned(),
        tenant_id: Some(tenant_id),
        call: Call {
            action: audit::BOOTSTRAP_ACTION,
            request_id: String::new(),
        },
    };
    audit::record(&txn, &origin, Target::Tenant(tenant_id), &["name", "slug"]).await?;
    if let Some((email, password_hash)) = password_hash {
        let role_id = Uuid::now_v7();
        role::ActiveModel {
            id: Set(role_id),
            tenant_id: Set(None),
            name: Set("admin".to_owned()),
            description: Set("Every permission in every tenant".to_owned()),
            version: Set(1),
            created_by: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        role_permission::ActiveModel {
            role_id: Set(role_id),
            permission: Set("*".to_owned()),
        }
        .insert(&txn)
        .await?;
        let user_id = Uuid::now_v7();
        user::ActiveModel {
            id: Set(user_id),
            email: Set(email.clone()),
            username: Set(email),
            first_name: Set("Admin".to_owned()),
            first_name_lower: Set("admin".to_owned()),
            last_name: Set(String::new()),
            last_name_lower: Set(String::new()),
            image: Set(None),
            status: Set(crate::domain::users::STATUS_ACTIVE.to_owned()),
            max_devices: Set(None),
            password_change_required: Set(false),
            last_connection: Set(None),
            token_generation: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        credential::ActiveModel {
            user_id: Set(user_id),
            password_hash: Set(password_hash),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        tenant_membership::ActiveModel {
            tenant_id: Set(tenant_id),
            user_id: Set(user_id),
            is_owner: Set(true),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        store::tenants::add_to_user_count(&txn, tenant_id, 1).await?;
        user_role::ActiveModel {
            user_id: Set(user_id),
            role_id: Set(role_id),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let role_fields = ["name", "description", "permissions", "global"];
        audit::record(&txn, &origin, Target::Role(role_id), &role_fields).await?;
        let user_fields = ["email", "username", "first_name", "password", "tenant_ids", "role_ids"];
        audit::record(&txn, &origin, Target::User(user_id), &user_fields).await?;
    }
    txn.commit().await?;
    tracing::info!("bootstrapped an empty database with tenant `default`");
    Ok(())
}
