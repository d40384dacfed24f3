//! Domain records → proto messages.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::{
    domain::{
        devices,
        grants::{EffectivePermission, UserPermissions},
        groups::GroupRecord,
        paging::PageRequest,
        permissions::PermissionInfo,
        tenants, users,
    },
    error::Error,
    pb,
    store::{
        access::GrantSource,
        entity::{audit_event, device, group, tenant},
        users::RoleWithPermissions,
    },
};

/// A List response: `pb::$response` with the page's items, converted by
/// `$convert`, under `$items`, and the paging fields every List shares.
macro_rules! list_response {
    ($response:ident { $items:ident }, $page:expr, $convert:expr) => {{
        let page = $page;
        $crate::pb::$response {
            total: i64::try_from(page.total).unwrap_or(i64::MAX),
            // A forged page_token may carry any position.
            page: $crate::grpc::convert::saturating_i32(page.page),
            limit: $crate::grpc::convert::saturating_i32(page.limit),
            has_next: page.has_next,
            has_previous: page.has_previous,
            list_completed: !page.has_next,
            next_page_token: page.next_page_token,
            $items: page.items.into_iter().map($convert).collect(),
        }
    }};
}
pub(crate) use list_response;

/// `value`, or `i32::MAX` past it (a page number, a limit).
pub fn saturating_i32(value: u64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

pub fn timestamp(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

/// The seconds of `google.protobuf.Timestamp`'s range: 0001-01-01T00:00:00Z
/// to 9999-12-31T23:59:59Z, which every database we store in can hold.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// A proto timestamp as a time; outside the type's documented range (years
/// 1 to 9999) or with nanos outside 0..1e9 it is INVALID_ARGUMENT naming
/// `field`.
pub fn time(field: &str, value: Option<Timestamp>) -> Result<Option<DateTime<Utc>>, Error> {
    match value {
        None => Ok(None),
        Some(t) => u32::try_from(t.nanos)
            .ok()
            .filter(|&nanos| nanos < 1_000_000_000 && TIMESTAMP_SECONDS.contains(&t.seconds))
            .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
            .map(Some)
            .ok_or_else(|| Error::invalid(field, "must be a timestamp between the years 1 and 9999")),
    }
}

/// An audit event; `changed_fields` is stored as a JSON array.
pub fn audit_event(e: audit_event::Model) -> pb::AuditEvent {
    pb::AuditEvent {
        id: e.id.to_string(),
        occurred_at: timestamp(e.occurred_at),
        tenant_id: e.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        actor: e.actor,
        action: e.action,
        target: e.target,
        request_id: e.request_id,
        outcome: e.outcome,
        changed_fields: serde_json::from_str(&e.changed_fields).unwrap_or_default(),
    }
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

/// The status filter of a List request (`None` for UNSPECIFIED); a number
/// outside `UserStatus` is INVALID_ARGUMENT naming `status` (ignored, it
/// would list every user).
pub fn user_status_filter(value: i32) -> Result<Option<String>, Error> {
    let status = pb::UserStatus::try_from(value).map_err(|_| unknown_enum("status", value))?;
    Ok(match status {
        pb::UserStatus::Active => Some(users::STATUS_ACTIVE.into()),
        pb::UserStatus::Inactive => Some(users::STATUS_INACTIVE.into()),
        pb::UserStatus::Pending => Some(users::STATUS_PENDING.into()),
        pb::UserStatus::Locked => Some(users::STATUS_LOCKED.into()),
        pb::UserStatus::Unspecified => None,
    })
}

/// Whether a List request asks for the BASIC view; a number outside
/// `UserView` is INVALID_ARGUMENT naming `view`.
pub fn basic_view(value: i32) -> Result<bool, Error> {
    let view = pb::UserView::try_from(value).map_err(|_| unknown_enum("view", value))?;
    Ok(view == pb::UserView::Basic)
}

fn unknown_enum(field: &str, value: i32) -> Error {
    Error::invalid(field, format!("{value} is not one of the enum's values"))
}

pub fn role(r: &RoleWithPermissions) -> pb::Role {
    let role = &r.role;
    pb::Role {
        id: role.id.to_string(),
        tenant_id: role.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
        name: role.name.clone(),
        description: role.description.clone(),
        version: role.version,
        created_at: timestamp(role.created_at),
        created_by: role.created_by.map(|u| u.to_string()).unwrap_or_default(),
        updated_at: timestamp(role.updated_at),
        permissions: r.permissions.clone(),
    }
}

/// A group as embedded in a user (without its roles and member count).
pub fn group_summary(g: &group::Model) -> pb::Group {
    pb::Group {
        id: g.id.to_string(),
        tenant_id: g.tenant_id.to_string(),
        name: g.name.clone(),
        description: g.description.clone(),
        created_at: timestamp(g.created_at),
        updated_at: timestamp(g.updated_at),
        ..Default::default()
    }
}

/// A group with its roles and member count.
pub fn group(g: &GroupRecord) -> pb::Group {
    pb::Group {
        role_ids: g.roles.iter().map(|r| r.role.id.to_string()).collect(),
        roles: g.roles.iter().map(role).collect(),
        member_count: g.member_count as i64,
        ..group_summary(&g.group)
    }
}

pub fn permission_info(p: PermissionInfo) -> pb::PermissionInfo {
    pb::PermissionInfo {
        name: p.name,
        description: p.description,
        built_in: p.built_in,
        namespace: p.namespace,
    }
}

pub fn permission_source(source: GrantSource) -> pb::PermissionSource {
    match source {
        GrantSource::Direct => pb::PermissionSource {
            direct: true,
            ..Default::default()
        },
        GrantSource::Role(role_id) => pb::PermissionSource {
            role_id: role_id.to_string(),
            ..Default::default()
        },
        GrantSource::Group { group_id, role_id } => pb::PermissionSource {
            direct: false,
            role_id: role_id.to_string(),
            group_id: group_id.to_string(),
        },
    }
}

fn effective_permission(p: EffectivePermission) -> pb::EffectivePermission {
    pb::EffectivePermission {
        permission: p.permission,
        sources: p.sources.into_iter().map(permission_source).collect(),
    }
}

pub fn user_permissions(p: UserPermissions) -> pb::GetUserPermissionsResponse {
    pb::GetUserPermissionsResponse {
        user_id: p.user_id.to_string(),
        tenant_id: p.tenant_id.to_string(),
        permissions: p.permissions.into_iter().map(effective_permission).collect(),
    }
}

pub fn device(d: &device::Model) -> pb::Device {
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
        name: d.name.clone(),
        platform: d.platform.clone(),
        os_version: d.os_version.clone(),
        connected: d.connected,
        last_connection: d.last_connection.and_then(timestamp),
        registered_at: timestamp(d.registered_at),
        posture: Some(posture),
    }
}

/// A user: FULL when the record has details, else BASIC.
pub fn user(record: &users::UserRecord) -> pb::User {
    let u = &record.user;
    let basic = pb::User {
        id: u.id.to_string(),
        email: u.email.clone(),
        username: u.username.clone(),
        status: user_status(&u.status) as i32,
        first_name: u.first_name.clone(),
        last_name: u.last_name.clone(),
        ..Default::default()
    };
    let Some(details) = &record.details else {
        return basic;
    };
    pb::User {
        created_at: timestamp(u.created_at),
        updated_at: timestamp(u.updated_at),
        last_connection: u.last_connection.and_then(timestamp),
        is_owner: details.is_owner,
        max_devices: u.max_devices,
        image: u.image.clone().unwrap_or_default(),
        roles: details.roles.iter().map(role).collect(),
        groups: details.groups.iter().map(group_summary).collect(),
        devices: details.devices.iter().map(device).collect(),
        tenant_ids: details.tenant_ids.iter().map(ToString::to_string).collect(),
        permissions: details.permissions.clone(),
        password_change_required: u.password_change_required,
        ..basic
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page number past `i32` (a forged page_token's position) is
    /// `i32::MAX`, not a wrapped negative number.
    #[test]
    fn a_page_number_past_i32_saturates() {
        assert_eq!(saturating_i32(7), 7);
        assert_eq!(saturating_i32(u64::MAX), i32::MAX);
        assert_eq!(saturating_i32(u64::from(u32::MAX)), i32::MAX);
    }
}
