//! identity.v1.GroupService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::groups::{self, GroupPatch, NewGroup},
    error::Error,
    grpc::{
        convert::{self, list_response},
        principal,
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
        if !r.replace_role_ids && !r.role_ids.is_empty() {
            return Err(to_status(Error::invalid(
                "role_ids",
                "replaces the roles only with replace_role_ids: true",
            )));
        }
        let patch = GroupPatch {
            name: r.name,
            description: r.description,
            role_ids: r.replace_role_ids.then_some(r.role_ids),
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
