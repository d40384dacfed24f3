//! identity.v1.AuthService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    auth::Call,
    domain::auth::{self, AcceptInvitation, LoginCommand},
    grpc::{convert, principal, status::to_status},
    pb::{self, auth_service_server::AuthService},
};

/// The public RPCs: no auth layer names their call, so they do.
const LOGIN: &str = "/identity.v1.AuthService/Login";
const ACCEPT_INVITATION: &str = "/identity.v1.AuthService/AcceptInvitation";

pub struct AuthApi {
    pub app: Arc<App>,
}

#[tonic::async_trait]
impl AuthService for AuthApi {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let client = request.remote_addr().map(|addr| addr.ip());
        let call = Call::new(LOGIN, request.metadata().as_ref());
        let r = request.into_inner();
        let grant = auth::login(
            &self.app,
            LoginCommand {
                username: r.username,
                password: r.password,
                tenant: r.tenant_id,
                client,
                call,
            },
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(pb::LoginResponse {
            access_token: grant.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: grant.expires_in.as_secs() as i64,
            password_change_required: grant.password_change_required,
        }))
    }

    async fn change_password(&self, request: Request<pb::ChangePasswordRequest>) -> Result<Response<()>, Status> {
        let caller = principal(&request)?;
        let client = request.remote_addr().map(|addr| addr.ip());
        let r = request.into_inner();
        auth::change_password(&self.app, &caller, &r.current_password, &r.new_password, client)
            .await
            .map_err(to_status)?;
        Ok(Response::new(()))
    }

    async fn accept_invitation(
        &self,
        request: Request<pb::AcceptInvitationRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let call = Call::new(ACCEPT_INVITATION, request.metadata().as_ref());
        let r = request.into_inner();
        let user = auth::accept_invitation(
            &self.app,
            AcceptInvitation {
                token: r.token,
                password: r.password,
                first_name: r.first_name,
                last_name: r.last_name,
                call,
            },
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(convert::user(&user)))
    }
}
