//! The seed 002 dialect ("User Management API") under `/auth/...`: users
//! carry `locator` for the id and `userName`; lists answer
//! `{listCompleted, items}`. Each handler authorizes with its gRPC twin's
//! rule, calls the same domain operation, and encodes.

use std::sync::Arc;

use axum::{
    Json,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::App,
    domain::{
        self, grants,
        paging::PageRequest,
        permissions,
        roles::{self, NewRole, RolePatch},
        users::{self, UserDraft, UserPatch, UserQuery, UserRecord},
    },
    error::Error,
    rest::{
        Body, PathParams, QueryPairs, RestResult, caller,
        error::{RestError, rename_path},
        request_id,
    },
    store::users::RoleWithPermissions,
};

const TAG: &str = "seed 002: users";
const ROLES_TAG: &str = "seed 002: roles and permissions";

pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(who_am_i))
        .routes(routes!(users_by_name))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(list_users))
        .routes(routes!(list_basic_users))
        .routes(routes!(reset_password))
        .routes(routes!(update_tenants))
        .routes(routes!(update_user_roles))
        .routes(routes!(user_permissions))
        .routes(routes!(create_role))
        .routes(routes!(get_role, update_role, delete_role))
        .routes(routes!(list_roles))
        .routes(routes!(available_permissions))
}

/// Domain field names → this dialect's JSON names.
const FIELD_NAMES: &[(&str, &str)] = &[
    ("id", "locator"),
    ("username", "userName"),
    ("role_ids", "roles"),
    ("tenant_ids", "tenants"),
    ("add_tenant_ids", "addTenants"),
    ("remove_tenant_ids", "removeTenants"),
    ("limit", "count"),
    ("add_role_ids", "addRoles"),
    ("remove_role_ids", "removeRoles"),
    ("add_permissions", "addPermissions"),
    ("remove_permissions", "removePermissions"),
];

fn fields(error: Error) -> RestError {
    RestError::from(error)
        .rename_fields(|path| rename_path(path.strip_prefix("users[0].").unwrap_or(path), FIELD_NAMES))
}

/// UserCreateRequest.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserCreateRequest {
    pub first_name: String,
    pub last_name: String,
    /// A user name in e-mail format.
    pub user_name: String,
    /// Empty: the user is PENDING and gets an invitation e-mail.
    pub password: String,
    /// The user must change the password at first login.
    pub temporary_password: bool,
    /// Defaults to `userName`.
    #[serde(default)]
    pub email: Option<String>,
    /// Role locators; at most 1000.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Tenant ids or slugs; defaults to the tenant in context.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
}

debug_without_secrets!(UserCreateRequest {
    first_name,
    last_name,
    user_name,
    temporary_password,
    email,
    roles,
    tenants,
});

/// UserResponse. The seed marks `permissions` and `roles` optional: they are
/// left out of the users of `GET /auth/users/list?extended=false`, and there
/// only; `tenants` is required, so it is always there.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserResponse {
    pub locator: uuid::Uuid,
    pub first_name: String,
    pub last_name: String,
    pub user_name: String,
    /// Tenant ids the user belongs to.
    pub tenants: Vec<String>,
    pub email: Option<String>,
    /// Direct permission grants; absent from a list that is not extended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub permissions: Option<Vec<String>>,
    /// Locators of the roles granted directly in the tenant in context;
    /// absent from a list that is not extended.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub roles: Option<Vec<String>>,
}

impl UserResponse {
    /// The user of a list that is not extended: the seed's optional
    /// `permissions` and `roles` left out.
    fn unextended(self) -> Self {
        Self {
            permissions: None,
            roles: None,
            ..self
        }
    }
}

impl From<UserRecord> for UserResponse {
    fn from(record: UserRecord) -> Self {
        let u = record.user;
        let details = record.details.unwrap_or_default();
        Self {
            locator: u.id,
            first_name: u.first_name,
            last_name: u.last_name,
            user_name: u.username,
            tenants: details.tenant_ids.iter().map(ToString::to_string).collect(),
            email: Some(u.email),
            permissions: Some(details.permissions),
            roles: Some(details.roles.iter().map(|r| r.role.id.to_string()).collect()),
        }
    }
}

/// BasicUserResponse.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicUserResponse {
    pub locator: uuid::Uuid,
    pub user_name: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

impl From<UserRecord> for BasicUserResponse {
    fn from(record: UserRecord) -> Self {
        let u = record.user;
        let some = |s: String| (!s.is_empty()).then_some(s);
        Self {
            locator: u.id,
            user_name: u.username,
            first_name: some(u.first_name),
            last_name: some(u.last_name),
        }
    }
}

/// UserListResponse.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserListResponse {
    /// No page follows this one.
    pub list_completed: bool,
    pub items: Vec<UserResponse>,
}

/// BasicUserListResponse.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BasicUserListResponse {
    pub list_completed: bool,
    pub items: Vec<BasicUserResponse>,
}

/// UserUpdateRequest: an absent field is left as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserUpdateRequest {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// Direct grants, replaced (needs users:update).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Role locators, replaced (needs users:update); at most 1000.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Tenant ids or slugs, replaced (needs users:update).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    #[serde(default)]
    pub email: Option<String>,
}

/// UserTenantsAssignmentsUpdateRequest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserTenantsAssignmentsUpdateRequest {
    /// Tenant ids or slugs to join.
    #[serde(default)]
    pub add_tenants: Vec<String>,
    /// Tenant ids or slugs to leave.
    #[serde(default)]
    pub remove_tenants: Vec<String>,
}

/// Create a user (createUser).
#[utoipa::path(post, path = "/auth/users", tag = TAG, request_body = UserCreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body returns the first result and creates nothing twice")),
    responses((status = 201, description = "The user created", body = UserResponse)))]
async fn create_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<(StatusCode, Json<UserResponse>)> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/CreateUsers").await?;
    let request: UserCreateRequest = body.json()?;
    let draft = UserDraft {
        email: request.email.unwrap_or_else(|| request.user_name.clone()),
        username: request.user_name,
        first_name: request.first_name,
        last_name: request.last_name,
        password: request.password,
        temporary_password: request.temporary_password,
        role_ids: request.roles.unwrap_or_default(),
        tenant_ids: request.tenants.unwrap_or_default(),
        ..Default::default()
    };
    let created = users::create(&app, &caller, vec![draft], request_id(&headers)?)
        .await
        .map_err(fields)?;
    let user = created
        .into_iter()
        .next()
        .ok_or_else(|| Error::internal("create returned no user"))?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Fetch my user details (fetchMyUserDetails).
#[utoipa::path(get, path = "/auth/users/whoami", tag = TAG,
    responses((status = 200, description = "The caller's own user", body = UserResponse)))]
async fn who_am_i(State(app): State<Arc<App>>, headers: HeaderMap) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/WhoAmI").await?;
    let user = users::who_am_i(&app, &caller).await.map_err(fields)?;
    Ok(Json(Arc::unwrap_or_clone(user).into()))
}

/// Fetch a user by name (fetchUserByName): the matching users of the tenant
/// in context, an empty array when there is none.
#[utoipa::path(get, path = "/auth/users/username/{username}", tag = TAG,
    params(("username" = String, Path, description = "The user name")),
    responses((status = 200, description = "The users with this name", body = Vec<UserResponse>)))]
async fn users_by_name(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    username: PathParams<String>,
) -> RestResult<Json<Vec<UserResponse>>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/GetUserByUsername").await?;
    let username = username.get()?;
    match users::get_by_username(&app, &caller, &username).await {
        Ok(user) => Ok(Json(vec![user.into()])),
        Err(Error::NotFound(_)) => Ok(Json(Vec::new())),
        Err(error) => Err(fields(error)),
    }
}

/// Fetch a user by locator (fetchUserByLocator).
#[utoipa::path(get, path = "/auth/users/{locator}", tag = TAG,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = UserResponse)))]
async fn get_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/GetUser").await?;
    let locator = locator.get()?;
    let user = users::get(&app, &caller, &locator).await.map_err(fields)?;
    Ok(Json(Arc::unwrap_or_clone(user).into()))
}

/// Paging of the seed's user lists: `offset` and `count`.
fn list_query(query: &QueryPairs, basic: bool) -> RestResult<UserQuery> {
    Ok(UserQuery {
        basic,
        page: PageRequest {
            limit: query.limit("count")?,
            offset: query.offset("offset")?,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Fetch multiple users (fetchMultipleUsers): `count` up to 100.
/// `extended=false` leaves out what the seed's UserResponse marks optional,
/// `roles` and `permissions`. Its `tenants` is required, so it is filled
/// (an empty list would read as "in no tenant"), which takes the FULL
/// records: the count stays 1 to 100, the seed giving the higher limit to
/// `/auth/users/basic/list` alone.
#[utoipa::path(get, path = "/auth/users/list", tag = TAG,
    params(
        ("offset" = Option<i32>, Query, minimum = 0, description = "Users to skip"),
        ("count" = Option<i32>, Query, minimum = 1, maximum = 100, description = "Users to return: 1 to 100, default 10"),
        ("extended" = Option<bool>, Query, description = "Include roles and permissions (default true); tenants are always there"),
    ),
    responses((status = 200, description = "A page of users", body = UserListResponse)))]
async fn list_users(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<UserListResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ListUsers").await?;
    let query = QueryPairs::parse(raw.as_deref())?;
    let extended = query.bool("extended")?.unwrap_or(true);
    let page = users::list(&app, &caller, list_query(&query, false)?)
        .await
        .map_err(fields)?;
    Ok(Json(UserListResponse {
        list_completed: !page.has_next,
        items: page
            .items
            .into_iter()
            .map(UserResponse::from)
            .map(|user| if extended { user } else { user.unextended() })
            .collect(),
    }))
}

/// Fetch multiple basic users (fetchMultipleBasicUsers): `count` up to 1000.
#[utoipa::path(get, path = "/auth/users/basic/list", tag = TAG,
    params(
        ("offset" = Option<i32>, Query, minimum = 0, description = "Users to skip"),
        ("count" = Option<i32>, Query, minimum = 1, maximum = 1000, description = "Users to return: 1 to 1000, default 10"),
        ("extended" = Option<bool>, Query, description = "Accepted for the seed's sake; basic users are never extended"),
    ),
    responses((status = 200, description = "A page of basic users", body = BasicUserListResponse)))]
async fn list_basic_users(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<BasicUserListResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ListUsers").await?;
    let query = QueryPairs::parse(raw.as_deref())?;
    query.bool("extended")?;
    let page = users::list(&app, &caller, list_query(&query, true)?)
        .await
        .map_err(fields)?;
    Ok(Json(BasicUserListResponse {
        list_completed: !page.has_next,
        items: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// Update a user (updateUser). A caller updating itself without
/// users:update may change only its names: the other fields it sends must
/// hold the values it has (the seed requires `permissions`, `roles` and
/// `tenants` in every update).
#[utoipa::path(patch, path = "/auth/users/{locator}", tag = TAG, request_body = UserUpdateRequest,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The updated user", body = UserResponse)))]
async fn update_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
    body: Body,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUser").await?;
    let locator = locator.get()?;
    let request: UserUpdateRequest = body.json()?;
    let patch = UserPatch {
        first_name: request.first_name,
        last_name: request.last_name,
        email: request.email,
        permissions: request.permissions,
        role_ids: request.roles,
        tenant_ids: request.tenants,
        ..Default::default()
    };
    let user = users::update(&app, &caller, &locator, patch).await.map_err(fields)?;
    Ok(Json(user.into()))
}

/// Reset a user's password (resetUserPassword): the body is the new password
/// as a JSON string; the user must change it at next login.
#[utoipa::path(patch, path = "/auth/users/{locator}/passwordreset", tag = TAG,
    request_body(content = String, description = "The new password, as a JSON string"),
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "Password reset")))]
async fn reset_password(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
    body: Body,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ResetUserPassword").await?;
    let locator = locator.get()?;
    let password: String = body.json()?;
    domain::auth::reset_password(&app, &caller, &locator, &password, true)
        .await
        // The body is the password itself.
        .map_err(|e| {
            RestError::from(e).rename_fields(|path| match path {
                "password" => "body".into(),
                other => rename_path(other, FIELD_NAMES),
            })
        })?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a user (deleteUser).
#[utoipa::path(delete, path = "/auth/users/{locator}", tag = TAG,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "User deleted")))]
async fn delete_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/DeleteUser").await?;
    let locator = locator.get()?;
    users::delete(&app, &caller, &locator).await.map_err(fields)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Update a user's tenant assignments (updateUserTenantAssignments).
#[utoipa::path(patch, path = "/auth/users/{locator}/tenants", tag = TAG,
    request_body = UserTenantsAssignmentsUpdateRequest,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user with its new tenants", body = UserResponse)))]
async fn update_tenants(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
    body: Body,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUserTenants").await?;
    let locator = locator.get()?;
    let request: UserTenantsAssignmentsUpdateRequest = body.json()?;
    let user = users::update_tenants(&app, &caller, &locator, &request.add_tenants, &request.remove_tenants)
        .await
        .map_err(fields)?;
    Ok(Json(user.into()))
}

/// UserRolesUpdateRequest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRolesUpdateRequest {
    /// Role locators to grant; at most 1000.
    #[serde(default)]
    pub add_roles: Vec<String>,
    /// Role locators to revoke; at most 1000.
    #[serde(default)]
    pub remove_roles: Vec<String>,
}

/// Update user roles (updateUserRoles).
#[utoipa::path(patch, path = "/auth/users/{locator}/roles", tag = TAG, request_body = UserRolesUpdateRequest,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user with its new roles", body = UserResponse)))]
async fn update_user_roles(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
    body: Body,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUserRoles").await?;
    let locator = locator.get()?;
    let request: UserRolesUpdateRequest = body.json()?;
    let user = grants::update_user_roles(&app, &caller, &locator, &request.add_roles, &request.remove_roles)
        .await
        .map_err(fields)?;
    Ok(Json(user.into()))
}

/// Fetch user permissions (fetchUserPermissions): the user's effective
/// permissions in the tenant in context (direct, through roles and through
/// groups), sorted.
#[utoipa::path(get, path = "/auth/users/{locator}/permissions", tag = ROLES_TAG,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "Effective permissions", body = Vec<String>)))]
async fn user_permissions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
) -> RestResult<Json<Vec<String>>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/GetUserPermissions").await?;
    let locator = locator.get()?;
    let effective = grants::user_permissions(&app, &caller, &locator)
        .await
        .map_err(fields)?;
    Ok(Json(effective.permissions.into_iter().map(|p| p.permission).collect()))
}

/// RoleCreateRequest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleCreateRequest {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Catalog permissions; the caller must hold each.
    pub permissions: Vec<String>,
    /// A global role, valid in every tenant (global callers only).
    #[serde(default)]
    pub global: bool,
}

/// RoleUpdateRequest: `version` is the one read; absent fields are kept.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoleUpdateRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Must match the role's version (else 409).
    pub version: i32,
    #[serde(default)]
    pub add_permissions: Vec<String>,
    #[serde(default)]
    pub remove_permissions: Vec<String>,
}

/// RoleResponse.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleResponse {
    pub locator: uuid::Uuid,
    pub name: String,
    pub description: String,
    /// Starts at 1, +1 on every update.
    pub version: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The user who created the role, if a user did.
    pub created_by: Option<uuid::Uuid>,
    pub permissions: Vec<String>,
    /// Empty for a global role.
    pub tenant: Option<uuid::Uuid>,
}

impl From<RoleWithPermissions> for RoleResponse {
    fn from(r: RoleWithPermissions) -> Self {
        Self {
            locator: r.role.id,
            name: r.role.name,
            description: r.role.description,
            version: r.role.version,
            created_at: r.role.created_at,
            created_by: r.role.created_by,
            permissions: r.permissions,
            tenant: r.role.tenant_id,
        }
    }
}

/// RoleListResponse.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoleListResponse {
    pub list_completed: bool,
    pub items: Vec<RoleResponse>,
}

/// Create a role (createRole).
#[utoipa::path(post, path = "/auth/roles", tag = ROLES_TAG, request_body = RoleCreateRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body returns the first result and creates nothing twice")),
    responses((status = 201, description = "The role created", body = RoleResponse)))]
async fn create_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<(StatusCode, Json<RoleResponse>)> {
    let caller = caller(&app, &headers, "/identity.v1.RoleService/CreateRole").await?;
    let request: RoleCreateRequest = body.json()?;
    let new = NewRole {
        name: request.name,
        description: request.description,
        permissions: request.permissions,
        global: request.global,
        request_id: request_id(&headers)?.to_owned(),
    };
    let role = roles::create(&app, &caller, new).await.map_err(fields)?;
    Ok((StatusCode::CREATED, Json(role.into())))
}

/// Fetch a role (getRole).
#[utoipa::path(get, path = "/auth/roles/{locator}", tag = ROLES_TAG,
    params(("locator" = uuid::Uuid, Path, description = "The role's id")),
    responses((status = 200, description = "The role", body = RoleResponse)))]
async fn get_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
) -> RestResult<Json<RoleResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.RoleService/GetRole").await?;
    let locator = locator.get()?;
    let role = roles::get(&app, &caller, &locator).await.map_err(fields)?;
    Ok(Json(role.into()))
}

/// Update a role (updateRole): 409 when `version` is not the role's.
#[utoipa::path(patch, path = "/auth/roles/{locator}", tag = ROLES_TAG, request_body = RoleUpdateRequest,
    params(("locator" = uuid::Uuid, Path, description = "The role's id")),
    responses((status = 200, description = "The updated role", body = RoleResponse)))]
async fn update_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
    body: Body,
) -> RestResult<Json<RoleResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.RoleService/UpdateRole").await?;
    let locator = locator.get()?;
    let request: RoleUpdateRequest = body.json()?;
    let patch = RolePatch {
        version: request.version,
        name: request.name,
        description: request.description,
        add_permissions: request.add_permissions,
        remove_permissions: request.remove_permissions,
    };
    let role = roles::update(&app, &caller, &locator, patch).await.map_err(fields)?;
    Ok(Json(role.into()))
}

/// Delete a role (deleteRole): 412 while it is granted, unless `force`.
#[utoipa::path(delete, path = "/auth/roles/{locator}", tag = ROLES_TAG,
    params(
        ("locator" = uuid::Uuid, Path, description = "The role's id"),
        ("force" = Option<bool>, Query, description = "Also revoke it from its users and groups"),
    ),
    responses((status = 204, description = "Role deleted")))]
async fn delete_role(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    locator: PathParams<String>,
    RawQuery(raw): RawQuery,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.RoleService/DeleteRole").await?;
    let locator = locator.get()?;
    let force = QueryPairs::parse(raw.as_deref())?.bool("force")?.unwrap_or(false);
    roles::delete(&app, &caller, &locator, force).await.map_err(fields)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Fetch multiple roles (fetchMultipleRoles): the tenant's roles and the
/// global ones.
#[utoipa::path(get, path = "/auth/roles/list", tag = ROLES_TAG,
    params(
        ("offset" = Option<i32>, Query, minimum = 0, description = "Roles to skip"),
        ("count" = Option<i32>, Query, minimum = 1, maximum = 100, description = "Roles to return: 1 to 100, default 10"),
        ("extended" = Option<bool>, Query, description = "Accepted for the seed's sake; roles always carry their permissions"),
    ),
    responses((status = 200, description = "A page of roles", body = RoleListResponse)))]
async fn list_roles(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<RoleListResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.RoleService/ListRoles").await?;
    let query = QueryPairs::parse(raw.as_deref())?;
    query.bool("extended")?;
    let page = PageRequest {
        limit: query.limit("count")?,
        offset: query.offset("offset")?,
        ..Default::default()
    };
    let page = roles::list(&app, &caller, &page).await.map_err(fields)?;
    Ok(Json(RoleListResponse {
        list_completed: !page.has_next,
        items: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// Fetch available permissions (fetchAvailablePermissions): the catalog,
/// built-in and registered, sorted.
#[utoipa::path(get, path = "/auth/roles/permissions", tag = ROLES_TAG,
    responses((status = 200, description = "Permission names", body = Vec<String>)))]
async fn available_permissions(State(app): State<Arc<App>>, headers: HeaderMap) -> RestResult<Json<Vec<String>>> {
    let caller = caller(&app, &headers, "/identity.v1.RoleService/ListPermissions").await?;
    let catalog = permissions::list(&app, &caller).await.map_err(fields)?;
    Ok(Json(catalog.into_iter().map(|p| p.name).collect()))
}
