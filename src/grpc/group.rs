//! identity.v1.GroupService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::groups::{self, GroupPatch, NewGroup},
    grpc::{
        convert::{self, list_response},
        mask_paths, principal,
        status::to_status,
    },
    pb::{self, group_service_server::GroupService},
};

pub struct GroupApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl GroupService for GroupApi {
    async fn create_group(&self, request: Request<pb::CreateGroupRequest>) -> Result<Response<pb::Group>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let new = NewGroup {
            name: r.name,
            description: r.description,
            role_ids: r.role_ids,
            request_id: r.request_id,
        };
        let group = groups::create(&self.app, &caller, new).await.map_err(to_status)?;
        Ok(Response::new(convert::group(&group)))
    }

    async fn get_group(&self, request: Request<pb::GetGroupRequest>) -> Result<Response<pb::Group>, Status> {
        let caller = principal(&request)?;
        let group = groups::get(&self.app, &caller, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::group(&group)))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let page = groups::list(
            &self.app,
            &caller,
            &convert::page_request(r.limit, r.offset, r.page_token, r.sort),
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListGroupsResponse { groups },
            page,
            |group| convert::group(&group)
        )))
    }

    async fn update_group(&self, request: Request<pb::UpdateGroupRequest>) -> Result<Response<pb::Group>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let paths = mask_paths(
            r.update_mask.as_ref(),
            &[
                ("name", r.name.is_some()),
                ("description", r.description.is_some()),
                ("role_ids", !r.role_ids.is_empty()),
            ],
        )
        .map_err(to_status)?;
        let has = |name: &str| paths.iter().any(|p| p == name);
        // A path named with its field unset means the field's empty value.
        let patch = GroupPatch {
            name: has("name").then(|| r.name.unwrap_or_default()),
            description: has("description").then(|| r.description.unwrap_or_default()),
            role_ids: has("role_ids").then_some(r.role_ids),
        };
        let group = groups::update(&self.app, &caller, &r.id, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::group(&group)))
    }

    async fn delete_group(&self, request: Request<pb::DeleteGroupRequest>) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        groups::delete(&self.app, &caller, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn list_group_members(
        &self,
        request: Request<pb::ListGroupMembersRequest>,
    ) -> Result<Response<pb::ListGroupMembersResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let page = convert::page_request(r.limit, r.offset, r.page_token, r.sort);
        let members = groups::list_members(&self.app, &caller, &r.id, page)
            .await
            .map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListGroupMembersResponse { users },
            members,
            |user| convert::user(&user)
        )))
    }
}
