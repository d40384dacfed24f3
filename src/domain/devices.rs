//! Devices: registration under the owner's `max_devices`, lookups and lists
//! scoped to the tenant in context, name and posture updates, connection
//! reports and revocation.
//!
//! A device belongs to a user, not to a tenant: it is visible in every tenant
//! its user is a member of, and NOT_FOUND in the others. A caller acting on
//! itself only (`allow_self` without the RPC's permission) sees its own
//! devices only; another user's device answers NOT_FOUND, like an unknown id.
//!
//! Lock order: a transaction that writes a user's row and its devices takes
//! the user's row first (RegisterDevice, ReportConnection, DeactivateUser,
//! DeleteUser), so they serialize per user and never deadlock.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, TransactionTrait};
use uuid::Uuid;

use crate::{
    app::App,
    auth::Principal,
    domain::{
        audit::{self, Target},
        idempotency::{self, RequestKey},
        now,
        paging::{ListParams, MAX_LIMIT, Page, PageRequest, SortField},
        users,
        validate::{self, MAX_TEXT},
    },
    error::{Error, Result, Violations},
    store::{self, entity::device, invalidation::Change},
};

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_REVOKED: &str = "revoked";

/// Longest platform or OS version accepted.
pub const MAX_PLATFORM: usize = 100;

const SORT_FIELDS: &[SortField] = &[SortField::time("registeredAt"), SortField::text("name")];

/// The security posture a device reports (`compliant` is derived, not stored).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Posture {
    pub disk_encrypted: bool,
    pub firewall_enabled: bool,
    pub screen_lock_enabled: bool,
    pub os_up_to_date: bool,
}

impl Posture {
    fn as_bytes(self) -> [u8; 4] {
        [
            self.disk_encrypted.into(),
            self.firewall_enabled.into(),
            self.screen_lock_enabled.into(),
            self.os_up_to_date.into(),
        ]
    }
}

/// A device to register (RegisterDevice), as received.
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    pub user_id: String,
    pub name: String,
    pub platform: String,
    pub os_version: String,
    pub posture: Posture,
    pub request_id: String,
}

/// Changes to a device; `None` leaves a field.
#[derive(Debug, Clone, Default)]
pub struct DevicePatch {
    pub name: Option<String>,
    pub posture: Option<Posture>,
}

fn revoked() -> Error {
    Error::FailedPrecondition("the device is revoked".into())
}

/// The device, if the caller may see it (see the module comment), else NOT_FOUND.
async fn visible(app: &App, caller: &Principal, id: Uuid) -> Result<device::Model> {
    visible_on(&app.db, caller, id).await
}

async fn visible_on<C: ConnectionTrait>(db: &C, caller: &Principal, id: Uuid) -> Result<device::Model> {
    let owner = if caller.is_self_only() {
        Some(caller.user_id().ok_or(Error::NotFound("device"))?)
    } else {
        None
    };
    store::devices::find_in_tenant(db, caller.tenant_id, id, owner)
        .await?
        .ok_or(Error::NotFound("device"))
}

/// In a write's transaction: locks the device's owner (the order of every
/// writer of a user and its devices), then finds the device visible to the
/// caller again. A user removed from the tenant in context (or deleted)
/// since the device was read is NOT_FOUND: that tenant no longer acts on
/// its devices.
async fn hold_visible<C: ConnectionTrait>(txn: &C, caller: &Principal, device: &device::Model) -> Result<()> {
    if !store::users::lock(txn, device.user_id).await? {
        return Err(Error::NotFound("device"));
    }
    visible_on(txn, caller, device.id).await.map(|_| ())
}

/// Registers a device for a member of the tenant in context. Refused
/// (FAILED_PRECONDITION) when the user already has `max_devices` active
/// devices, or is deactivated.
pub async fn register(app: &App, caller: &Principal, new: NewDevice) -> Result<device::Model> {
    let mut violations = Violations::new();
    let user_id = validate::uuid(&mut violations, "user_id", &new.user_id);
    let name = validate::required_text(&mut violations, "name", &new.name, MAX_TEXT);
    let platform = validate::required_text(&mut violations, "platform", &new.platform, MAX_PLATFORM);
    let os_version = validate::text(&mut violations, "os_version", &new.os_version, MAX_PLATFORM);
    let request_id = idempotency::request_id(&mut violations, &new.request_id);
    violations.finish()?;
    let user_id = user_id.ok_or_else(|| Error::invalid("user_id", "must be a UUID"))?;
    caller.require_target(user_id)?;
    let posture = new.posture;
    let key = RequestKey::new(
        caller,
        "RegisterDevice",
        &request_id,
        &[
            user_id.as_bytes(),
            name.as_bytes(),
            platform.as_bytes(),
            os_version.as_bytes(),
            &posture.as_bytes(),
        ],
    );

    // A retry of the same user's registration waits for the first at the
    // owner's lock below and replays it there. Calls naming different users
    // lock different rows: of two that share a request id, the second meets
    // the first's key when it records its own (ALREADY_EXISTS), and answers
    // as a reused request id does.
    let load = |response: Vec<u8>| async move {
        let id = Uuid::from_slice(&response).map_err(Error::internal)?;
        store::devices::find_in_tenant(&app.db, caller.tenant_id, id, None)
            .await?
            .ok_or(Error::NotFound("device"))
    };
    let registered: Result<device::Model> = async {
        let now = now();
        let txn = app.writer.begin().await?;
        // First statement: the owner's row lock. Registrations of the same user
        // run one after the other from here, so the count below still holds when
        // the device is inserted (and a retry sees its first attempt's key).
        if !store::users::lock(&txn, user_id).await? {
            return Err(Error::NotFound("user"));
        }
        let user = store::users::find_in_tenant(&txn, caller.tenant_id, user_id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        if let Some(key) = &key
            && let Some(response) = key.replay(&txn).await?
        {
            let id = Uuid::from_slice(&response).map_err(Error::internal)?;
            return store::devices::find(&txn, id).await?.ok_or(Error::NotFound("device"));
        }
        if user.status == users::STATUS_INACTIVE {
            return Err(Error::FailedPrecondition(
                "the user is deactivated: reactivate it before registering devices".into(),
            ));
        }
        if let Some(max) = user.max_devices {
            let active = store::devices::count_active(&txn, user_id).await?;
            if active >= u64::try_from(max).unwrap_or(0) {
                return Err(Error::FailedPrecondition(format!(
                    "max_devices reached: the user has {active} active devices, at most {max} allowed"
                )));
            }
        }
        let device = device::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            name: Set(name),
            platform: Set(platform),
            os_version: Set(os_version),
            status: Set(STATUS_ACTIVE.to_owned()),
            connected: Set(false),
            last_connection: Set(None),
            disk_encrypted: Set(posture.disk_encrypted),
            firewall_enabled: Set(posture.firewall_enabled),
            screen_lock_enabled: Set(posture.screen_lock_enabled),
            os_up_to_date: Set(posture.os_up_to_date),
            registered_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        if let Some(key) = &key {
            key.record(&txn, device.id.as_bytes().to_vec(), now).await?;
        }
        let fields = ["user_id", "name", "platform", "os_version", "posture"];
        audit::record(&txn, caller, Target::Device(device.id), &fields).await?;
        app.commit(txn, Change::Record(device.user_id)).await?;
        Ok(device)
    }
    .await;
    idempotency::replay_on_conflict(&app.db, key.as_ref(), load, registered).await
}

pub async fn get(app: &App, caller: &Principal, id: &str) -> Result<device::Model> {
    let id = validate::id("id", id)?;
    visible(app, caller, id).await
}

/// A member's devices (active and revoked), paged.
pub async fn list(app: &App, caller: &Principal, user_id: &str, page: &PageRequest) -> Result<Page<device::Model>> {
    let user_id = validate::id("user_id", user_id)?;
    let scope = format!("devices|{}|{user_id}", caller.tenant_id);
    let params = ListParams::parse(page, SORT_FIELDS, MAX_LIMIT, &scope)?;
    caller.require_target(user_id)?;
    store::users::find_in_tenant(&app.db, caller.tenant_id, user_id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    let (rows, total) = store::devices::list(&app.db, user_id, &params).await?;
    Ok(params.page(
        rows,
        total,
        |d| d.id,
        |d, field| match field {
            "name" => d.name.clone().into(),
            _ => d.registered_at.into(),
        },
    ))
}

/// Renames a device or replaces its posture (a revoked device too: the
/// record stays accurate).
pub async fn update(app: &App, caller: &Principal, id: &str, patch: DevicePatch) -> Result<device::Model> {
    let id = validate::id("id", id)?;
    let mut violations = Violations::new();
    let name = patch
        .name
        .map(|name| validate::required_text(&mut violations, "name", &name, MAX_TEXT));
    violations.finish()?;
    let device = visible(app, caller, id).await?;
    if name.is_none() && patch.posture.is_none() {
        audit::record(&app.writer, caller, Target::Device(id), &[]).await?;
        return Ok(device);
    }
    let mut fields = Vec::new();
    let mut changes = device::ActiveModel {
        updated_at: Set(now()),
        ..Default::default()
    };
    if let Some(name) = name {
        changes.name = Set(name);
        fields.push("name");
    }
    if let Some(posture) = patch.posture {
        fields.push("posture");
        changes.disk_encrypted = Set(posture.disk_encrypted);
        changes.firewall_enabled = Set(posture.firewall_enabled);
        changes.screen_lock_enabled = Set(posture.screen_lock_enabled);
        changes.os_up_to_date = Set(posture.os_up_to_date);
    }
    let txn = app.writer.begin().await?;
    hold_visible(&txn, caller, &device).await?;
    let device = store::devices::update(&txn, id, changes)
        .await?
        .ok_or(Error::NotFound("device"))?;
    audit::record(&txn, caller, Target::Device(id), &fields).await?;
    app.commit(txn, Change::Record(device.user_id)).await?;
    Ok(device)
}

/// Records that an active device connected or disconnected: its `connected`
/// and `last_connection`, and its user's `last_connection`, in one
/// transaction. Every report stamps `last_connection`: either way the device
/// was connected at that moment.
pub async fn report_connection(
    app: &App,
    caller: &Principal,
    device_id: &str,
    connected: bool,
) -> Result<device::Model> {
    let id = validate::id("device_id", device_id)?;
    let device = visible(app, caller, id).await?;
    if device.status != STATUS_ACTIVE {
        return Err(revoked());
    }
    let now = now();
    let txn = app.writer.begin().await?;
    // The owner's row first (see the lock order above).
    if !store::users::set_last_connection(&txn, device.user_id, now).await? {
        return Err(Error::NotFound("device"));
    }
    visible_on(&txn, caller, id).await?;
    // Checks the status again in the write, so a revocation that won the
    // race is not overwritten.
    if !store::devices::record_connection(&txn, id, connected, now).await? {
        return Err(revoked());
    }
    let device = store::devices::find(&txn, id).await?.ok_or(Error::NotFound("device"))?;
    app.commit(txn, Change::Record(device.user_id)).await?;
    Ok(device)
}

/// Revokes a device: REVOKED and disconnected. Revoking a revoked device
/// changes nothing and answers it as it is.
pub async fn revoke(app: &App, caller: &Principal, id: &str) -> Result<device::Model> {
    let id = validate::id("id", id)?;
    let device = visible(app, caller, id).await?;
    if device.status == STATUS_REVOKED {
        audit::record(&app.writer, caller, Target::Device(id), &[]).await?;
        return Ok(device);
    }
    let txn = app.writer.begin().await?;
    hold_visible(&txn, caller, &device).await?;
    store::devices::revoke(&txn, id, now()).await?;
    audit::record(&txn, caller, Target::Device(id), &["status", "connected"]).await?;
    // The answer is what this transaction wrote, read on its connection.
    let revoked = store::devices::find(&txn, id).await?.ok_or(Error::NotFound("device"))?;
    app.commit(txn, Change::Record(device.user_id)).await?;
    Ok(revoked)
}
