//! identity.v1.DeviceService.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    app::App,
    domain::devices::{self, DevicePatch, NewDevice, Posture},
    grpc::{
        convert::{self, list_response},
        mask_paths, principal,
        status::to_status,
    },
    pb::{self, device_service_server::DeviceService},
    store::entity::device,
};

pub struct DeviceApi {
    pub app: Arc<App>,
}

/// The reported posture; `compliant` is derived, so what a caller sends there is ignored.
fn posture(p: pb::DevicePosture) -> Posture {
    Posture {
        disk_encrypted: p.disk_encrypted,
        firewall_enabled: p.firewall_enabled,
        screen_lock_enabled: p.screen_lock_enabled,
        os_up_to_date: p.os_up_to_date,
    }
}

fn reply(device: device::Model) -> Response<pb::Device> {
    Response::new(convert::device(&device))
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn register_device(
        &self,
        request: Request<pb::RegisterDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let new = NewDevice {
            user_id: r.user_id,
            name: r.name,
            platform: r.platform,
            os_version: r.os_version,
            posture: r.posture.map(posture).unwrap_or_default(),
            request_id: r.request_id,
        };
        devices::register(&self.app, &caller, new)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn get_device(&self, request: Request<pb::GetDeviceRequest>) -> Result<Response<pb::Device>, Status> {
        let caller = principal(&request)?;
        devices::get(&self.app, &caller, &request.get_ref().id)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let page = devices::list(
            &self.app,
            &caller,
            &r.user_id,
            &convert::page_request(r.limit, r.offset, r.page_token, r.sort),
        )
        .await
        .map_err(to_status)?;
        Ok(Response::new(list_response!(
            ListDevicesResponse { devices },
            page,
            |device| convert::device(&device)
        )))
    }

    async fn update_device(&self, request: Request<pb::UpdateDeviceRequest>) -> Result<Response<pb::Device>, Status> {
        let caller = principal(&request)?;
        let r = request.into_inner();
        let paths = mask_paths(
            r.update_mask.as_ref(),
            &[("name", r.name.is_some()), ("posture", r.posture.is_some())],
        )
        .map_err(to_status)?;
        let has = |name: &str| paths.iter().any(|p| p == name);
        // A path named with its field unset means the field's empty value.
        let patch = DevicePatch {
            name: has("name").then(|| r.name.unwrap_or_default()),
            posture: has("posture").then(|| r.posture.map(posture).unwrap_or_default()),
        };
        devices::update(&self.app, &caller, &r.id, patch)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn report_connection(
        &self,
        request: Request<pb::ReportConnectionRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let caller = principal(&request)?;
        let r = request.get_ref();
        devices::report_connection(&self.app, &caller, &r.device_id, r.connected)
            .await
            .map(reply)
            .map_err(to_status)
    }

    async fn revoke_device(&self, request: Request<pb::RevokeDeviceRequest>) -> Result<Response<pb::Device>, Status> {
        let caller = principal(&request)?;
        devices::revoke(&self.app, &caller, &request.get_ref().id)
            .await
            .map(reply)
            .map_err(to_status)
    }
}
