//! identity.v1.PermissionService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::{
        checks::{self, CheckOutcome, CheckRequest, CheckSubject, DenialReason},
        permissions::{self, PermissionDefinition, PermissionInfo},
    },
    grpc::{convert, principal, status::to_status},
    pb::{self, check_permission_request::Subject, permission_service_server::PermissionService},
};

pub struct PermissionApi {
    pub app: Arc<App>,
}

fn check_request(r: pb::CheckPermissionRequest) -> CheckRequest {
    CheckRequest {
        subject: r.subject.map(|subject| match subject {
            Subject::UserId(id) => CheckSubject::UserId(id),
            Subject::AccessToken(token) => CheckSubject::AccessToken(token),
        }),
        permission: r.permission,
        tenant_id: r.tenant_id,
    }
}

fn check_response(outcome: CheckOutcome) -> pb::CheckPermissionResponse {
    let reason = match outcome.denial {
        None => pb::CheckDenialReason::Unspecified,
        Some(DenialReason::NotGranted) => pb::CheckDenialReason::NotGranted,
        Some(DenialReason::UnknownSubject) => pb::CheckDenialReason::UnknownSubject,
        Some(DenialReason::InvalidToken) => pb::CheckDenialReason::InvalidToken,
        Some(DenialReason::InactiveSubject) => pb::CheckDenialReason::InactiveSubject,
    };
    pb::CheckPermissionResponse {
        allowed: outcome.allowed(),
        user_id: outcome.user_id.map(|id| id.to_string()).unwrap_or_default(),
        tenant_id: outcome.tenant_id.to_string(),
        sources: outcome.sources.into_iter().map(convert::permission_source).collect(),
        reason: reason.into(),
    }
}

fn definition(p: PermissionInfo) -> pb::PermissionDefinition {
    pb::PermissionDefinition {
        name: p.name,
        description: p.description,
    }
}

#[tonic::async_trait]
impl PermissionService for PermissionApi {
    async fn register_permissions(
        &self,
        request: Request<pb::RegisterPermissionsRequest>,
    ) -> Result<Response<pb::RegisterPermissionsResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let definitions: Vec<PermissionDefinition> = r
            .permissions
            .into_iter()
            .map(|p| PermissionDefinition {
                name: p.name,
                description: p.description,
            })
            .collect();
        let registered = permissions::register(&self.app, &caller, &r.namespace, &definitions)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RegisterPermissionsResponse {
            permissions: registered.into_iter().map(definition).collect(),
        }))
    }

    async fn unregister_permissions(
        &self,
        request: Request<pb::UnregisterPermissionsRequest>,
    ) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        let r = request.get_ref();
        permissions::unregister(&self.app, &caller, &r.namespace, &r.names, r.force)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let caller = principal(&request)?;
        let outcome = checks::check(&self.app, &caller, &check_request(request.into_inner()))
            .await
            .map_err(to_status)?;
        Ok(Response::new(check_response(outcome)))
    }

    async fn check_permissions(
        &self,
        request: Request<pb::CheckPermissionsRequest>,
    ) -> Result<Response<pb::CheckPermissionsResponse>, Status> {
        let caller = principal(&request)?;
        let requests: Vec<CheckRequest> = request.into_inner().checks.into_iter().map(check_request).collect();
        let outcomes = checks::check_all(&self.app, &caller, &requests)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CheckPermissionsResponse {
            results: outcomes.into_iter().map(check_response).collect(),
        }))
    }
}
