//! Domain records → proto messages.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::{
    domain::{devices, paging::PageRequest, tenants, users},
    pb,
    store::{
        entity::{device, group, tenant},
        users::RoleWithPermissions,
    },
};

pub fn timestamp(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

pub fn page_request(limit: i32, offset: i32, page_token: String, sort: Vec<String>) -> PageRequest {
    PageRequest {
        limit,
        offset,
        page_token,
        sort,
    }
}

pub fn tenant_status(status: &str) -> pb::TenantStatus {
    match status {
        tenants::STATUS_ACTIVE => pb::TenantStatus::Active,
        tenants::STATUS_SUSPENDED => pb::TenantStatus::Suspended,
        _ => pb::TenantStatus::Unspecified,
    }
}

pub fn tenant(t: tenant::Model) -> pb::Tenant {
    pb::Tenant {
        id: t.id.to_string(),
        status: tenant_status(&t.status) as i32,
        name: t.name,
        slug: t.slug,
        created_at: timestamp(t.created_at),
        updated_at: timestamp(t.updated_at),
    }
}

pub fn user_status(status: &str) -> pb::UserStatus {
    match status {
        users::STATUS_ACTIVE => pb::UserStatus::Active,
        users::STATUS_INACTIVE => pb::UserStatus::Inactive,
        users::STATUS_PENDING => pb::UserStatus::Pending,
        users::STATUS_LOCKED => pb::UserStatus::Locked,
        _ => pb::UserStatus::Unspecified,
    }
}

/// The status filter of a List request (`None` for UNSPECIFIED).
pub fn user_status_filter(value: i32) -> Option<String> {
    match pb::UserStatus::try_from(value).unwrap_or_default() {
        pb::UserStatus::Active => Some(users::STATUS_ACTIVE.into()),
        pb::UserStatus::Inactive => Some(users::STATUS_INACTIVE.into()),
        pb::UserStatus::Pending => Some(users::STATUS_PENDING.into()),
        pb::UserStatus::Locked => Some(users::STATUS_LOCKED.into()),
        pb::UserStatus::Unspecified => None,
    }
}

pub fn role(r: RoleWithPermissions) -> pb::Role {
    let role = r.role;
    pb::Role {
        id: role.id.to_string(),
        tenant_id: role.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        name: role.name,
        description: role.description,
        version: role.version,
        created_at: timestamp(role.created_at),
        created_by: role.created_by.map(|u| u.to_string()).unwrap_or_default(),
        updated_at: timestamp(role.updated_at),
        permissions: r.permissions,
    }
}

/// A group as embedded in a user (without its roles and member count).
pub fn group_summary(g: group::Model) -> pb::Group {
    pb::Group {
        id: g.id.to_string(),
        tenant_id: g.tenant_id.to_string(),
        name: g.name,
        description: g.description,
        created_at: timestamp(g.created_at),
        updated_at: timestamp(g.updated_at),
        ..Default::default()
    }
}

pub fn device(d: device::Model) -> pb::Device {
    let posture = pb::DevicePosture {
        disk_encrypted: d.disk_encrypted,
        firewall_enabled: d.firewall_enabled,
        screen_lock_enabled: d.screen_lock_enabled,
        os_up_to_date: d.os_up_to_date,
        compliant: d.disk_encrypted && d.firewall_enabled && d.screen_lock_enabled && d.os_up_to_date,
    };
    pb::Device {
        id: d.id.to_string(),
        user_id: d.user_id.to_string(),
        status: if d.status == devices::STATUS_REVOKED {
            pb::DeviceStatus::Revoked
        } else {
            pb::DeviceStatus::Active
        } as i32,
        name: d.name,
        platform: d.platform,
        os_version: d.os_version,
        connected: d.connected,
        last_connection: d.last_connection.and_then(timestamp),
        registered_at: timestamp(d.registered_at),
        posture: Some(posture),
    }
}

/// A user: FULL when the record has details, else BASIC.
pub fn user(record: users::UserRecord) -> pb::User {
    let u = record.user;
    let basic = pb::User {
        id: u.id.to_string(),
        email: u.email,
        username: u.username,
        status: user_status(&u.status) as i32,
        first_name: u.first_name,
        last_name: u.last_name,
        ..Default::default()
    };
    let Some(details) = record.details else {
        return basic;
    };
    pb::User {
        created_at: timestamp(u.created_at),
        updated_at: timestamp(u.updated_at),
        last_connection: u.last_connection.and_then(timestamp),
        is_owner: details.is_owner,
        max_devices: u.max_devices,
        image: u.image.unwrap_or_default(),
        roles: details.roles.into_iter().map(role).collect(),
        groups: details.groups.into_iter().map(group_summary).collect(),
        devices: details.devices.into_iter().map(device).collect(),
        tenant_ids: details.tenant_ids.iter().map(ToString::to_string).collect(),
        permissions: details.permissions,
        password_change_required: u.password_change_required,
        ..basic
    }
}
