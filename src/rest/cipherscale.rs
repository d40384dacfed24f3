//! The Cipherscale dialect (seeds 000, 001, 003) under `/tenants/users`:
//! users as seed 003 shows them (lowercase `status`, `isOwner`,
//! `maxDevices`, embedded roles, groups and devices), lists as
//! `{data, total, page, limit, hasNext, hasPrevious}`, and a create that
//! takes one user or an array of up to 100 and answers in the same shape.

use std::sync::Arc;

use axum::{
    Json,
    extract::{RawQuery, State},
    http::{HeaderMap, StatusCode},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::{
    app::App,
    domain::{
        grants,
        paging::PageRequest,
        users::{self, UserDraft, UserPatch, UserQuery, UserRecord},
    },
    error::Error,
    rest::{
        Body, PathParams, QueryPairs, RestResult, caller, decode_json,
        error::{RestError, rename_path},
        request_id,
    },
    store::{
        entity::{device, group},
        users::RoleWithPermissions,
    },
};

const TAG: &str = "Cipherscale: tenant users";

pub fn routes() -> OpenApiRouter<Arc<App>> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_users))
        .routes(routes!(get_user, update_user, delete_user))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(update_user_roles))
        .routes(routes!(add_user_to_group))
        .routes(routes!(remove_user_from_group))
}

/// Domain field names → this dialect's JSON names.
const FIELD_NAMES: &[(&str, &str)] = &[
    ("role_ids", "roles"),
    ("group_ids", "groups"),
    ("tenant_ids", "tenants"),
    ("add_role_ids", "addedRoles"),
    ("remove_role_ids", "removedRoles"),
    ("user_id", "id"),
    ("group_id", "groupId"),
    ("role_id", "roleId"),
];

/// A domain field path in this dialect: `users[3].first_name` is
/// `[3].firstName` for an array body and `firstName` for a single object.
fn json_field(path: &str, array: bool) -> String {
    if path == "users" {
        return "body".to_owned();
    }
    if let Some(rest) = path.strip_prefix("users[")
        && let Some((index, field)) = rest.split_once("].")
    {
        let field = rename_path(field, FIELD_NAMES);
        return if array { format!("[{index}].{field}") } else { field };
    }
    rename_path(path, FIELD_NAMES)
}

fn fields(error: Error) -> RestError {
    RestError::from(error).rename_fields(|path| json_field(path, false))
}

/// Status of a user account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    Active,
    Inactive,
    Pending,
    Locked,
}

impl UserStatus {
    fn from_domain(status: &str) -> Self {
        match status {
            users::STATUS_ACTIVE => Self::Active,
            users::STATUS_PENDING => Self::Pending,
            users::STATUS_LOCKED => Self::Locked,
            _ => Self::Inactive,
        }
    }

    fn domain(self) -> &'static str {
        match self {
            Self::Active => users::STATUS_ACTIVE,
            Self::Inactive => users::STATUS_INACTIVE,
            Self::Pending => users::STATUS_PENDING,
            Self::Locked => users::STATUS_LOCKED,
        }
    }
}

/// A role as embedded in a user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub permissions: Vec<String>,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<RoleWithPermissions> for Role {
    fn from(r: RoleWithPermissions) -> Self {
        Self {
            id: r.role.id,
            name: r.role.name,
            description: r.role.description,
            permissions: r.permissions,
            version: r.role.version,
            created_at: r.role.created_at,
            updated_at: r.role.updated_at,
        }
    }
}

/// A group as embedded in a user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<group::Model> for Group {
    fn from(g: group::Model) -> Self {
        Self {
            id: g.id,
            name: g.name,
            description: g.description,
            created_at: g.created_at,
            updated_at: g.updated_at,
        }
    }
}

/// Security posture of a device; `compliant` when all four hold.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DevicePosture {
    pub disk_encrypted: bool,
    pub firewall_enabled: bool,
    pub screen_lock_enabled: bool,
    pub os_up_to_date: bool,
    pub compliant: bool,
}

/// A device of the user.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub platform: String,
    pub os_version: String,
    /// `active` or `revoked`.
    pub status: String,
    pub connected: bool,
    pub last_connection: Option<DateTime<Utc>>,
    pub registered_at: DateTime<Utc>,
    pub posture: DevicePosture,
}

impl From<device::Model> for Device {
    fn from(d: device::Model) -> Self {
        Self {
            posture: DevicePosture {
                disk_encrypted: d.disk_encrypted,
                firewall_enabled: d.firewall_enabled,
                screen_lock_enabled: d.screen_lock_enabled,
                os_up_to_date: d.os_up_to_date,
                compliant: d.disk_encrypted && d.firewall_enabled && d.screen_lock_enabled && d.os_up_to_date,
            },
            id: d.id,
            user_id: d.user_id,
            name: d.name,
            platform: d.platform,
            os_version: d.os_version,
            status: d.status,
            connected: d.connected,
            last_connection: d.last_connection,
            registered_at: d.registered_at,
        }
    }
}

/// Complete user profile with authentication, authorization and device
/// information, in the tenant in context.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_connection: Option<DateTime<Utc>>,
    pub email: String,
    pub status: UserStatus,
    pub first_name: String,
    pub last_name: String,
    /// Owner of the tenant in context.
    pub is_owner: bool,
    /// Devices the user may register; `null` = no limit.
    pub max_devices: Option<i32>,
    pub image: Option<String>,
    pub roles: Vec<Role>,
    pub groups: Vec<Group>,
    pub devices: Vec<Device>,
}

impl From<UserRecord> for User {
    fn from(record: UserRecord) -> Self {
        let u = record.user;
        let details = record.details.unwrap_or_default();
        Self {
            id: u.id,
            created_at: u.created_at,
            updated_at: u.updated_at,
            last_connection: u.last_connection,
            email: u.email,
            status: UserStatus::from_domain(&u.status),
            first_name: u.first_name,
            last_name: u.last_name,
            is_owner: details.is_owner,
            max_devices: u.max_devices,
            image: u.image,
            roles: details.roles.into_iter().map(Into::into).collect(),
            groups: details.groups.into_iter().map(Into::into).collect(),
            devices: details.devices.into_iter().map(Into::into).collect(),
        }
    }
}

/// One user to create. Without a password the user is `pending` and gets
/// an invitation e-mail.
#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// Defaults to `email`.
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub temporary_password: bool,
    /// Role ids; at most 1000.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Group ids of the tenant; at most 1000.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Tenant ids or slugs; defaults to the tenant in context.
    #[serde(default)]
    pub tenants: Vec<String>,
    #[serde(default)]
    pub max_devices: Option<i32>,
    #[serde(default)]
    pub image: String,
}

debug_without_secrets!(CreateUser {
    email,
    username,
    first_name,
    last_name,
    temporary_password,
    roles,
    groups,
    tenants,
    max_devices,
    image,
});

impl From<CreateUser> for UserDraft {
    fn from(u: CreateUser) -> Self {
        UserDraft {
            email: u.email,
            username: u.username,
            first_name: u.first_name,
            last_name: u.last_name,
            password: u.password,
            temporary_password: u.temporary_password,
            role_ids: u.roles,
            group_ids: u.groups,
            tenant_ids: u.tenants,
            max_devices: u.max_devices,
            image: u.image,
        }
    }
}

/// One user, or an array of 1 to 100.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CreateUsers {
    One(Box<CreateUser>),
    Many(Vec<CreateUser>),
}

/// The users created, in the shape of the request.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CreatedUsers {
    One(Box<User>),
    Many(Vec<User>),
}

/// Changes to a user; an absent field is left as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUser {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// `null` removes the limit.
    #[serde(default, deserialize_with = "crate::rest::nullable")]
    #[schema(value_type = Option<i32>)]
    pub max_devices: Option<Option<i32>>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserPage {
    pub data: Vec<User>,
    /// Users matching the filters, across all pages.
    pub total: u64,
    /// 0-based: offset / limit.
    pub page: u64,
    pub limit: u64,
    pub has_next: bool,
    pub has_previous: bool,
}

/// List all users of the tenant.
#[utoipa::path(get, path = "/tenants/users", tag = TAG,
    params(
        ("sort" = Option<Vec<String>>, Query, explode = true,
            description = "Sort keys, repeated or comma-separated: `field`, `-field` or `field:asc|desc` \
                           (createdAt, updatedAt, email, username, firstName, lastName, status)"),
        ("limit" = Option<i32>, Query, minimum = 1, maximum = 100, description = "Users per page: 1 to 100, default 10"),
        ("offset" = Option<i32>, Query, minimum = 0, description = "Users to skip"),
        ("status" = Option<UserStatus>, Query, description = "Only users with this status"),
        ("search" = Option<String>, Query, description = "Substring of e-mail, username, first or last name"),
        ("roleId" = Option<uuid::Uuid>, Query, description = "Only users granted this role directly"),
        ("groupId" = Option<uuid::Uuid>, Query, description = "Only members of this group"),
    ),
    responses((status = 200, description = "Successfully retrieved users", body = UserPage)))]
async fn list_users(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> RestResult<Json<UserPage>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ListUsers").await?;
    let query = QueryPairs::parse(raw.as_deref())?;
    let status = match query.text("status").as_str() {
        "" => None,
        value => {
            let status: UserStatus = decode_json(&serde_json::to_vec(value).map_err(Error::internal)?)
                .map_err(|e| e.rename_fields(|_| "status".to_owned()))?;
            Some(status.domain().to_owned())
        }
    };
    let query = UserQuery {
        page: PageRequest {
            limit: query.limit("limit")?,
            offset: query.offset("offset")?,
            sort: query.list("sort"),
            ..Default::default()
        },
        status,
        search: query.text("search"),
        role_id: query.text("roleId"),
        group_id: query.text("groupId"),
        ..Default::default()
    };
    let page = users::list(&app, &caller, query).await.map_err(fields)?;
    Ok(Json(UserPage {
        total: page.total,
        page: page.page,
        limit: page.limit,
        has_next: page.has_next,
        has_previous: page.has_previous,
        data: page.items.into_iter().map(Into::into).collect(),
    }))
}

/// Create one user, or up to 100 at once (all or nothing); the answer has
/// the request's shape.
#[utoipa::path(post, path = "/tenants/users", tag = TAG, request_body = CreateUsers,
    params(("Idempotency-Key" = Option<String>, Header, description = "A retry with the same key and body returns the first result and creates nothing twice")),
    responses((status = 201, description = "Successfully created user(s)", body = CreatedUsers)))]
async fn create_users(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Body,
) -> RestResult<(StatusCode, Json<CreatedUsers>)> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/CreateUsers").await?;
    // Decoded by shape (not untagged) so errors name the field.
    let request = if body.starts_with(b'[') {
        CreateUsers::Many(body.json()?)
    } else {
        CreateUsers::One(Box::new(body.json()?))
    };
    let (drafts, array): (Vec<UserDraft>, bool) = match request {
        CreateUsers::One(user) => (vec![(*user).into()], false),
        CreateUsers::Many(users) => (users.into_iter().map(Into::into).collect(), true),
    };
    let created = users::create(&app, &caller, drafts, request_id(&headers)?)
        .await
        .map_err(|e| RestError::from(e).rename_fields(|path| json_field(path, array)))?;
    let mut created: Vec<User> = created.into_iter().map(Into::into).collect();
    let answer = match created.pop() {
        Some(user) if !array => CreatedUsers::One(Box::new(user)),
        Some(user) => {
            created.push(user);
            CreatedUsers::Many(created)
        }
        None => return Err(Error::internal("create returned no user").into()),
    };
    Ok((StatusCode::CREATED, Json(answer)))
}

/// Get a user.
#[utoipa::path(get, path = "/tenants/users/{id}", tag = TAG,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "Successfully retrieved the user", body = User)))]
async fn get_user(State(app): State<Arc<App>>, headers: HeaderMap, id: PathParams<String>) -> RestResult<Json<User>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/GetUser").await?;
    let id = id.get()?;
    let user = users::get(&app, &caller, &id).await.map_err(fields)?;
    Ok(Json(Arc::unwrap_or_clone(user).into()))
}

/// Update a user's profile: names, image, e-mail, device limit.
#[utoipa::path(patch, path = "/tenants/users/{id}", tag = TAG, request_body = UpdateUser,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The updated user", body = User)))]
async fn update_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: PathParams<String>,
    body: Body,
) -> RestResult<Json<User>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUser").await?;
    let id = id.get()?;
    let request: UpdateUser = body.json()?;
    let patch = UserPatch {
        first_name: request.first_name,
        last_name: request.last_name,
        image: request.image,
        email: request.email,
        max_devices: request.max_devices,
        ..Default::default()
    };
    let user = users::update(&app, &caller, &id, patch).await.map_err(fields)?;
    Ok(Json(user.into()))
}

/// Delete a user permanently.
#[utoipa::path(delete, path = "/tenants/users/{id}", tag = TAG,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 204, description = "Successfully deleted the user")))]
async fn delete_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: PathParams<String>,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/DeleteUser").await?;
    let id = id.get()?;
    users::delete(&app, &caller, &id).await.map_err(fields)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivate a user: data kept, its tokens refused from the next call.
#[utoipa::path(post, path = "/tenants/users/{id}/deactivate", tag = TAG,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The deactivated user", body = User)))]
async fn deactivate_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: PathParams<String>,
) -> RestResult<Json<User>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/DeactivateUser").await?;
    let id = id.get()?;
    let user = users::deactivate(&app, &caller, &id).await.map_err(fields)?;
    Ok(Json(user.into()))
}

/// Reactivate a deactivated user.
#[utoipa::path(post, path = "/tenants/users/{id}/reactivate", tag = TAG,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The reactivated user", body = User)))]
async fn reactivate_user(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: PathParams<String>,
) -> RestResult<Json<User>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/ReactivateUser").await?;
    let id = id.get()?;
    let user = users::reactivate(&app, &caller, &id).await.map_err(fields)?;
    Ok(Json(user.into()))
}

/// Data for adding or removing roles from a user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateUserRoles {
    /// Role ids to add to the user; at most 1000.
    #[serde(default)]
    pub added_roles: Vec<String>,
    /// Role ids to remove from the user; at most 1000.
    #[serde(default)]
    pub removed_roles: Vec<String>,
}

/// The group to add the user to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddUserToGroup {
    pub group_id: String,
}

/// Modify user role assignments; changes take effect immediately.
#[utoipa::path(patch, path = "/tenants/users/{id}/roles", tag = TAG, request_body = UpdateUserRoles,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user with its new roles", body = User)))]
async fn update_user_roles(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: PathParams<String>,
    body: Body,
) -> RestResult<Json<User>> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/UpdateUserRoles").await?;
    let id = id.get()?;
    let request: UpdateUserRoles = body.json()?;
    let user = grants::update_user_roles(&app, &caller, &id, &request.added_roles, &request.removed_roles)
        .await
        .map_err(fields)?;
    Ok(Json(user.into()))
}

/// Add a user to a group of the tenant; the user inherits the group's roles.
#[utoipa::path(post, path = "/tenants/users/{id}/groups", tag = TAG, request_body = AddUserToGroup,
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 201, description = "The user, now a member of the group", body = User)))]
async fn add_user_to_group(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    id: PathParams<String>,
    body: Body,
) -> RestResult<(StatusCode, Json<User>)> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/AddUserToGroup").await?;
    let id = id.get()?;
    let request: AddUserToGroup = body.json()?;
    let user = grants::add_user_to_group(&app, &caller, &id, &request.group_id)
        .await
        .map_err(fields)?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Remove a user from a group.
#[utoipa::path(delete, path = "/tenants/users/{id}/groups/{groupId}", tag = TAG,
    params(
        ("id" = Uuid, Path, description = "The user's id"),
        ("groupId" = Uuid, Path, description = "The group's id"),
    ),
    responses((status = 204, description = "The user left the group")))]
async fn remove_user_from_group(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    params: PathParams<(String, String)>,
) -> RestResult<StatusCode> {
    let caller = caller(&app, &headers, "/identity.v1.UserService/RemoveUserFromGroup").await?;
    let (id, group_id) = params.get()?;
    grants::remove_user_from_group(&app, &caller, &id, &group_id)
        .await
        .map_err(fields)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_fields_follow_the_request_shape() {
        assert_eq!(json_field("users[3].first_name", true), "[3].firstName");
        assert_eq!(json_field("users[0].role_ids", false), "roles");
        assert_eq!(json_field("users", true), "body");
        assert_eq!(json_field("id", false), "id");
    }
}
