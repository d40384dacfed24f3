//! identity.v1.RoleService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::{
        permissions,
        roles::{self, NewRole, RolePatch},
    },
    grpc::{
        convert::{self, list_response},
        mask_paths, principal,
        status::to_status,
    },
    pb::{self, role_service_server::RoleService},
};

pub struct RoleApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl RoleService for RoleApi {
    async fn create_role(&self, request: Request<pb::CreateRoleRequest>) -> Result<Response<pb::Role>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let new = NewRole {
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            global: r.global,
            request_id: r.request_id,
        };
        let role = roles::create(&self.app, &caller, new).await.map_err(to_status)?;
        Ok(Response::new(convert::role(&role)))
    }

    async fn get_role(&self, request: Request<pb::GetRoleRequest>) -> Result<Response<pb::Role>, Status> {
        let caller = principal(&request)?;
        let role = roles::get(&self.app, &caller, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::role(&role)))
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let page = roles::list(
            &self.app,
            &caller,
            &convert::page_request(r.limit, r.offset, r.page_token, r.sort),
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListRolesResponse { roles },
            page,
            |role| convert::role(&role)
        )))
    }

    async fn update_role(&self, request: Request<pb::UpdateRoleRequest>) -> Result<Response<pb::Role>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let paths = mask_paths(
            r.update_mask.as_ref(),
            &[
                ("name", r.name.is_some()),
                ("description", r.description.is_some()),
                ("add_permissions", !r.add_permissions.is_empty()),
                ("remove_permissions", !r.remove_permissions.is_empty()),
            ],
        )
        .map_err(to_status)?;
        let has = |name: &str| paths.iter().any(|p| p == name);
        // A path named with its field unset means the field's empty value.
        let patch = RolePatch {
            version: r.version,
            name: has("name").then(|| r.name.unwrap_or_default()),
            description: has("description").then(|| r.description.unwrap_or_default()),
            add_permissions: if has("add_permissions") {
                r.add_permissions
            } else {
                Vec::new()
            },
            remove_permissions: if has("remove_permissions") {
                r.remove_permissions
            } else {
                Vec::new()
            },
        };
        let role = roles::update(&self.app, &caller, &r.id, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::role(&role)))
    }

    async fn delete_role(&self, request: Request<pb::DeleteRoleRequest>) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        let r = request.get_ref();
        roles::delete(&self.app, &caller, &r.id, r.force)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn list_permissions(
        &self,
        request: Request<pb::ListPermissionsRequest>,
    ) -> Result<Response<pb::ListPermissionsResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let page = convert::page_request(r.limit, r.offset, r.page_token, r.sort);
        let page = permissions::list_page(&self.app, &caller, &page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListPermissionsResponse { permissions },
            page,
            convert::permission_info
        )))
    }
}
