//! identity.v1.TenantService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::tenants::{self, NewTenant, TenantPatch},
    grpc::{
        convert::{self, list_response},
        mask_paths, principal,
        status::to_status,
    },
    pb::{self, tenant_service_server::TenantService},
};

pub struct TenantApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl TenantService for TenantApi {
    async fn create_tenant(&self, request: Request<pb::CreateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let new = NewTenant {
            name: r.name,
            slug: r.slug,
            owner_user_id: r.owner_user_id,
            request_id: r.request_id,
        };
        let tenant = tenants::create(&self.app, &caller, new).await.map_err(to_status)?;
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn get_tenant(&self, request: Request<pb::GetTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let caller = principal(&request)?;
        let tenant = tenants::get(&self.app, &caller, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn list_tenants(
        &self,
        request: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let page = tenants::list(
            &self.app,
            &caller,
            &convert::page_request(r.limit, r.offset, r.page_token, r.sort),
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListTenantsResponse { tenants },
            page,
            convert::tenant
        )))
    }

    async fn update_tenant(&self, request: Request<pb::UpdateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let paths = mask_paths(
            r.update_mask.as_ref(),
            &[("name", !r.name.is_empty()), ("status", r.status != 0)],
        )
        .map_err(to_status)?;
        let status = match pb::TenantStatus::try_from(r.status).unwrap_or_default() {
            pb::TenantStatus::Active => tenants::STATUS_ACTIVE,
            pb::TenantStatus::Suspended => tenants::STATUS_SUSPENDED,
            pb::TenantStatus::Unspecified => "",
        };
        let patch = TenantPatch {
            name: paths.iter().any(|p| p == "name").then_some(r.name),
            status: paths.iter().any(|p| p == "status").then(|| status.to_owned()),
        };
        let tenant = tenants::update(&self.app, &caller, &r.id, patch)
            .await
            .map_err(to_status)?;
        Ok(Response::new(convert::tenant(tenant)))
    }

    async fn delete_tenant(&self, request: Request<pb::DeleteTenantRequest>) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        tenants::delete(&self.app, &caller, &request.get_ref().id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }
}
