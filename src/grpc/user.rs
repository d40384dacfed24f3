//! identity.v1.UserService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::{
        grants,
        users::{self, UserDraft, UserPatch, UserQuery, UserRecord},
    },
    grpc::{
        convert::{self, list_response},
        mask_paths, principal,
        status::to_status,
    },
    pb::{self, user_service_server::UserService},
};

pub struct UserApi {
    pub app: Arc<App>,
}

fn draft(d: pb::UserDraft) -> UserDraft {
    UserDraft {
        email: d.email,
        username: d.username,
        first_name: d.first_name,
        last_name: d.last_name,
        password: d.password,
        temporary_password: d.temporary_password,
        role_ids: d.role_ids,
        group_ids: d.group_ids,
        tenant_ids: d.tenant_ids,
        max_devices: d.max_devices,
        image: d.image,
    }
}

/// An owned record, or one shared with the record cache.
fn reply(record: impl std::borrow::Borrow<UserRecord>) -> Response<pb::User> {
    Response::new(convert::user(record.borrow()))
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn create_users(
        &self,
        request: Request<pb::CreateUsersRequest>,
    ) -> Result<Response<pb::CreateUsersResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let drafts = r.users.into_iter().map(draft).collect();
        let created = users::create(&self.app, &caller, drafts, &r.request_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateUsersResponse {
            users: created.iter().map(convert::user).collect(),
        }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        users::get(&self.app, &caller, &request.get_ref().id)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn get_user_by_username(
        &self,
        request: Request<pb::GetUserByUsernameRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        users::get_by_username(&self.app, &caller, &request.get_ref().username)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn who_am_i(&self, request: Request<pb::WhoAmIRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        users::who_am_i(&self.app, &caller).await.map(reply).map_err(to_status)
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let query = UserQuery {
            basic: convert::basic_view(r.view).map_err(to_status)?,
            status: convert::user_status_filter(r.status).map_err(to_status)?,
            role_id: r.role_id,
            group_id: r.group_id,
            search: r.search,
            page: convert::page_request(r.limit, r.offset, r.page_token, r.sort),
        };
        let page = users::list(&self.app, &caller, query).await.map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListUsersResponse { users },
            page,
            |user| convert::user(&user)
        )))
    }

    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let paths = mask_paths(
            r.update_mask.as_ref(),
            &[
                ("first_name", !r.first_name.is_empty()),
                ("last_name", !r.last_name.is_empty()),
                ("image", !r.image.is_empty()),
                ("email", !r.email.is_empty()),
                ("max_devices", r.max_devices.is_some()),
                ("permissions", !r.permissions.is_empty()),
                ("role_ids", !r.role_ids.is_empty()),
                ("tenant_ids", !r.tenant_ids.is_empty()),
            ],
        )
        .map_err(to_status)?;
        let has = |name: &str| paths.iter().any(|p| p == name);
        let patch = UserPatch {
            first_name: has("first_name").then_some(r.first_name),
            last_name: has("last_name").then_some(r.last_name),
            image: has("image").then_some(r.image),
            email: has("email").then_some(r.email),
            max_devices: has("max_devices").then_some(r.max_devices),
            permissions: has("permissions").then_some(r.permissions),
            role_ids: has("role_ids").then_some(r.role_ids),
            tenant_ids: has("tenant_ids").then_some(r.tenant_ids),
        };
        users::update(&self.app, &caller, &r.id, patch)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn delete_user(&self, request: Request<pb::DeleteUserRequest>) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        users::delete(&self.app, &caller, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn deactivate_user(&self, request: Request<pb::DeactivateUserRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        users::deactivate(&self.app, &caller, &request.get_ref().id)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn reactivate_user(&self, request: Request<pb::ReactivateUserRequest>) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        users::reactivate(&self.app, &caller, &request.get_ref().id)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn reset_user_password(
        &self,
        request: Request<pb::ResetUserPasswordRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        crate::domain::auth::reset_password(&self.app, &caller, &r.id, &r.password, r.temporary.unwrap_or(true))
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn update_user_tenants(
        &self,
        request: Request<pb::UpdateUserTenantsRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        users::update_tenants(&self.app, &caller, &r.id, &r.add_tenant_ids, &r.remove_tenant_ids)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn update_user_roles(
        &self,
        request: Request<pb::UpdateUserRolesRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        grants::update_user_roles(&self.app, &caller, &r.id, &r.add_role_ids, &r.remove_role_ids)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn add_user_to_group(
        &self,
        request: Request<pb::AddUserToGroupRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let caller = principal(&request)?;
        let r = request.get_ref();
        grants::add_user_to_group(&self.app, &caller, &r.user_id, &r.group_id)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn remove_user_from_group(
        &self,
        request: Request<pb::RemoveUserFromGroupRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        let r = request.get_ref();
        grants::remove_user_from_group(&self.app, &caller, &r.user_id, &r.group_id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn get_user_permissions(
        &self,
        request: Request<pb::GetUserPermissionsRequest>,
    ) -> Result<Response<pb::GetUserPermissionsResponse>, Status> {
        let caller = principal(&request)?;
        grants::user_permissions(&self.app, &caller, &request.get_ref().id)
            .await
            .map(|p| Response::new(convert::user_permissions(p)))
            .map_err(to_status)
    }
}
