//! The seed 002 dialect ("User Management API") under `/auth/...`: users
//! carry `locator` for the id and `userName`; lists answer
//! `{listCompleted, items}`. Each handler authorizes with its gRPC twin's
//! rule, calls the same domain operation, and encodes.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, StatusCode},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    app::App,
    domain::{
        self,
        paging::PageRequest,
        users::{self, UserDraft, UserPatch, UserQuery, UserRecord},
    },
    error::Error,
    rest::{
        Body, QueryPairs, RestResult, caller,
        error::{RestError, rename_path},
    },
};

const TAG: &str = "seed 002: users";

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
];

fn fields(error: Error) -> RestError {
    RestError::from(error)
        .rename_fields(|path| rename_path(path.strip_prefix("users[0].").unwrap_or(path), FIELD_NAMES))
}

/// UserCreateRequest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
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
    /// Role locators.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Tenant ids or slugs; defaults to the tenant in context.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
}

/// UserResponse.
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
    /// Direct permission grants.
    pub permissions: Vec<String>,
    /// Locators of the roles granted directly in the tenant in context.
    pub roles: Vec<String>,
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
            permissions: details.permissions,
            roles: details.roles.iter().map(|r| r.role.id.to_string()).collect(),
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
#[serde(rename_all = "camelCase")]
pub struct UserUpdateRequest {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    /// Direct grants, replaced (needs users:update).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Role locators, replaced (needs users:update).
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
#[serde(rename_all = "camelCase")]
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
    let created = users::create(&app, &caller, vec![draft]).await.map_err(fields)?;
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
    Ok(Json(user.into()))
}

/// Fetch a user by name (fetchUserByName): the matching users of the tenant
/// in context, an empty array when there is none.
#[utoipa::path(get, path = "/auth/users/username/{username}", tag = TAG,
    params(("username" = String, Path, description = "The user name")),
    responses((status = 200, description = "The users with this name", body = Vec<UserResponse>)))]
async fn users_by_name(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(username): Path<String>,
) -> RestResult<Json<Vec<UserResponse>>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/GetUserByUsername").await?;
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
    Path(locator): Path<String>,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/GetUser").await?;
    let user = users::get(&app, &caller, &locator).await.map_err(fields)?;
    Ok(Json(user.into()))
}

/// Paging of the seed's lists: `offset`, `count`, `extended`.
fn list_query(raw: Option<&str>, basic: bool) -> RestResult<UserQuery> {
    let query = QueryPairs::parse(raw)?;
    let extended = query.bool("extended")?.unwrap_or(!basic);
    Ok(UserQuery {
        basic: basic || !extended,
        page: PageRequest {
            limit: query.int("count")?,
            offset: query.int("offset")?,
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Fetch multiple users (fetchMultipleUsers): FULL users, `count` up to 100
/// (up to 1000 with `extended=false`, which leaves tenants, roles and
/// permissions out).
#[utoipa::path(get, path = "/auth/users/list", tag = TAG,
    params(
        ("offset" = Option<i32>, Query, description = "Users to skip"),
        ("count" = Option<i32>, Query, description = "Users to return: 1 to 100, default 10"),
        ("extended" = Option<bool>, Query, description = "Include tenants, roles and permissions (default true)"),
    ),
    responses((status = 200, description = "A page of users", body = UserListResponse)))]
async fn list_users(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<UserListResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ListUsers").await?;
    let page = users::list(&app, &caller, list_query(raw.as_deref(), false)?)
        .await
        .map_err(fields)?;
    Ok(Json(UserListResponse {
        list_completed: !page.has_next,
        items: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// Fetch multiple basic users (fetchMultipleBasicUsers): `count` up to 1000.
#[utoipa::path(get, path = "/auth/users/basic/list", tag = TAG,
    params(
        ("offset" = Option<i32>, Query, description = "Users to skip"),
        ("count" = Option<i32>, Query, description = "Users to return: 1 to 1000, default 10"),
        ("extended" = Option<bool>, Query, description = "Accepted for the seed's sake; basic users are never extended"),
    ),
    responses((status = 200, description = "A page of basic users", body = BasicUserListResponse)))]
async fn list_basic_users(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<BasicUserListResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ListUsers").await?;
    let page = users::list(&app, &caller, list_query(raw.as_deref(), true)?)
        .await
        .map_err(fields)?;
    Ok(Json(BasicUserListResponse {
        list_completed: !page.has_next,
        items: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// Update a user (updateUser). A caller updating itself without
/// users:update may change only its names.
#[utoipa::path(patch, path = "/auth/users/{locator}", tag = TAG, request_body = UserUpdateRequest,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The updated user", body = UserResponse)))]
async fn update_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(locator): Path<String>,
    body: Body,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUser").await?;
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
    Path(locator): Path<String>,
    body: Body,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ResetUserPassword").await?;
    let password: String = body.json()?;
    domain::auth::reset_password(&app, &caller, &locator, &password, true)
        .await
        .map_err(fields)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a user (deleteUser).
#[utoipa::path(delete, path = "/auth/users/{locator}", tag = TAG,
    params(("locator" = uuid::Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "User deleted")))]
async fn delete_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(locator): Path<String>,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/DeleteUser").await?;
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
    Path(locator): Path<String>,
    body: Body,
) -> RestResult<Json<UserResponse>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUserTenants").await?;
    let request: UserTenantsAssignmentsUpdateRequest = body.json()?;
    let user = users::update_tenants(&app, &caller, &locator, &request.add_tenants, &request.remove_tenants)
        .await
        .map_err(fields)?;
    Ok(Json(user.into()))
}
