//! DeviceService: registration under `max_devices` (also under a race),
//! request ids, reads and lists, updates, connection reports, revocation,
//! self access, tenant scope, and what DeactivateUser and DeleteUser do to a
//! user's devices.

use castellan::{
    pb::{
        self, Device, DevicePosture, GetDeviceRequest, ListDevicesRequest, RegisterDeviceRequest,
        ReportConnectionRequest, RevokeDeviceRequest, UpdateDeviceRequest, UserDraft,
        device_service_client::DeviceServiceClient,
    },
    store::entity::device,
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use tonic::{Code, transport::Channel};
use uuid::Uuid;

use crate::helpers::{TestApp, authed, behind, draft, error_reason, expect_code, violated_fields};

fn devices(app: &TestApp) -> DeviceServiceClient<Channel> {
    DeviceServiceClient::new(app.channel.clone())
}

fn registration(user_id: &str, name: &str) -> RegisterDeviceRequest {
    RegisterDeviceRequest {
        user_id: user_id.to_owned(),
        name: name.to_owned(),
        platform: "macos".into(),
        os_version: "15.1".into(),
        ..Default::default()
    }
}

async fn register(app: &TestApp, token: &str, user_id: &str, name: &str) -> Device {
    devices(app)
        .register_device(authed(registration(user_id, name), token))
        .await
        .unwrap_or_else(|e| panic!("register {name}: {e:?}"))
        .into_inner()
}

/// An ACTIVE user (it has a password), so its own token works.
async fn active_user(app: &TestApp, email: &str, max_devices: Option<i32>) -> String {
    app.create_users(vec![UserDraft {
        email: email.to_owned(),
        password: "correct horse battery".into(),
        max_devices,
        ..Default::default()
    }])
    .await[0]
        .id
        .clone()
}

/// The user's device rows, straight from the database.
async fn rows(app: &TestApp, user_id: &str) -> Vec<device::Model> {
    let user_id: Uuid = user_id.parse().expect("uuid");
    device::Entity::find()
        .filter(device::Column::UserId.eq(user_id))
        .all(&app.app.db)
        .await
        .expect("query devices")
}

#[tokio::test]
async fn devices_are_registered_read_listed_updated_reported_and_revoked() {
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "owner@example.com", None).await;
    let admin = app.token(&["devices:*", "users:read"]);
    let mut client = devices(&app);

    let laptop = client
        .register_device(authed(
            RegisterDeviceRequest {
                posture: Some(DevicePosture {
                    disk_encrypted: true,
                    firewall_enabled: true,
                    screen_lock_enabled: true,
                    os_up_to_date: false,
                    compliant: true,
                }),
                ..registration(&user_id, "  Laptop  ")
            },
            &admin,
        ))
        .await
        .expect("register")
        .into_inner();
    assert_eq!(laptop.user_id, user_id);
    assert_eq!(laptop.name, "Laptop", "trimmed");
    assert_eq!(laptop.platform, "macos");
    assert_eq!(laptop.os_version, "15.1");
    assert_eq!(laptop.status, pb::DeviceStatus::Active as i32);
    assert!(!laptop.connected);
    assert!(laptop.last_connection.is_none());
    assert!(laptop.registered_at.is_some());
    let posture = laptop.posture.expect("posture");
    assert!(posture.disk_encrypted && !posture.os_up_to_date);
    assert!(!posture.compliant, "derived, whatever the caller sent");
    let phone = register(&app, &admin, &user_id, "Phone").await;
    let tablet = register(&app, &admin, &user_id, "Android tablet").await;

    let got = client
        .get_device(authed(GetDeviceRequest { id: phone.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, phone);
    expect_code(
        client
            .get_device(authed(
                GetDeviceRequest {
                    id: Uuid::now_v7().to_string(),
                },
                &admin,
            ))
            .await,
        Code::NotFound,
    );

    // Default order: registration time; keyset paging follows it.
    let first = client
        .list_devices(authed(
            ListDevicesRequest {
                user_id: user_id.clone(),
                limit: 2,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(first.total, 3);
    assert!(first.has_next && !first.list_completed && !first.has_previous);
    let ids: Vec<&str> = first.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, [laptop.id.as_str(), phone.id.as_str()]);
    let second = client
        .list_devices(authed(
            ListDevicesRequest {
                user_id: user_id.clone(),
                limit: 2,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("next page")
        .into_inner();
    assert_eq!(second.devices.len(), 1);
    assert_eq!(second.devices[0].id, tablet.id);
    assert!(second.list_completed && second.has_previous && second.next_page_token.is_empty());
    assert_eq!(second.page, 1);
    let by_name = client
        .list_devices(authed(
            ListDevicesRequest {
                user_id: user_id.clone(),
                sort: vec!["-name".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("sorted by name")
        .into_inner();
    let names: Vec<&str> = by_name.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["Phone", "Laptop", "Android tablet"]);

    // UpdateDevice: the name when present, the posture when present.
    let updated = client
        .update_device(authed(
            UpdateDeviceRequest {
                id: laptop.id.clone(),
                name: Some("Work laptop".into()),
                posture: Some(DevicePosture {
                    disk_encrypted: true,
                    firewall_enabled: true,
                    screen_lock_enabled: true,
                    os_up_to_date: true,
                    compliant: false,
                }),
                update_mask: None,
            },
            &admin,
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.name, "Work laptop");
    assert!(updated.posture.expect("posture").compliant, "all four true");
    let renamed_only = client
        .update_device(authed(
            UpdateDeviceRequest {
                id: laptop.id.clone(),
                name: Some("Laptop".into()),
                posture: None,
                update_mask: None,
            },
            &admin,
        ))
        .await
        .expect("rename")
        .into_inner();
    assert!(renamed_only.posture.expect("posture").compliant, "posture kept");
    // With an update mask, only its fields; one named but not sent is reset.
    let update = |name: Option<&str>, posture: Option<DevicePosture>, paths: &[&str]| {
        authed(
            UpdateDeviceRequest {
                id: laptop.id.clone(),
                name: name.map(str::to_owned),
                posture,
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|p| p.to_string()).collect(),
                }),
            },
            &admin,
        )
    };
    let masked = client
        .update_device(update(Some("Old laptop"), Some(DevicePosture::default()), &["name"]))
        .await
        .expect("masked rename")
        .into_inner();
    assert_eq!(masked.name, "Old laptop");
    assert!(masked.posture.expect("posture").compliant, "posture not in the mask");
    let reset = client
        .update_device(update(Some("Ignored"), None, &["posture"]))
        .await
        .expect("posture reset")
        .into_inner();
    assert_eq!(reset.name, "Old laptop");
    assert_eq!(reset.posture, Some(DevicePosture::default()), "nothing reported");
    for (paths, field) in [
        (&["posture.disk_encrypted"][..], "update_mask"),
        (&["name"][..], "name"),
    ] {
        let status = expect_code(
            client.update_device(update(None, None, paths)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
    }

    // ReportConnection: the device's state and the user's last connection.
    let connected = client
        .report_connection(authed(
            ReportConnectionRequest {
                device_id: laptop.id.clone(),
                connected: true,
            },
            &admin,
        ))
        .await
        .expect("connect")
        .into_inner();
    assert!(connected.connected);
    let at = connected.last_connection.expect("stamped");
    let user = app
        .users()
        .get_user(authed(pb::GetUserRequest { id: user_id.clone() }, &admin))
        .await
        .expect("get user")
        .into_inner();
    assert_eq!(user.last_connection, Some(at));
    assert_eq!(user.devices.len(), 3, "the User message carries its devices");
    assert!(user.devices.iter().any(|d| d.id == laptop.id && d.connected));
    let disconnected = client
        .report_connection(authed(
            ReportConnectionRequest {
                device_id: laptop.id.clone(),
                connected: false,
            },
            &admin,
        ))
        .await
        .expect("disconnect")
        .into_inner();
    assert!(!disconnected.connected);
    assert!(disconnected.last_connection.is_some());

    // RevokeDevice: revoked and disconnected, idempotent; a revoked device cannot report.
    client
        .report_connection(authed(
            ReportConnectionRequest {
                device_id: phone.id.clone(),
                connected: true,
            },
            &admin,
        ))
        .await
        .expect("connect the phone");
    let revoked = client
        .revoke_device(authed(RevokeDeviceRequest { id: phone.id.clone() }, &admin))
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(revoked.status, pb::DeviceStatus::Revoked as i32);
    assert!(!revoked.connected);
    let again = client
        .revoke_device(authed(RevokeDeviceRequest { id: phone.id.clone() }, &admin))
        .await
        .expect("revoking twice is fine")
        .into_inner();
    assert_eq!(again, revoked);
    let status = expect_code(
        client
            .report_connection(authed(
                ReportConnectionRequest {
                    device_id: phone.id.clone(),
                    connected: true,
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&status), "PRECONDITION_FAILED");
    let listed = client
        .list_devices(authed(
            ListDevicesRequest {
                user_id: user_id.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 3, "revoked devices are listed too");
}

#[tokio::test]
async fn max_devices_counts_active_devices() {
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "two@example.com", Some(2)).await;
    let admin = app.token(&["devices:*"]);
    let first = register(&app, &admin, &user_id, "One").await;
    register(&app, &admin, &user_id, "Two").await;
    let status = expect_code(
        devices(&app)
            .register_device(authed(registration(&user_id, "Three"), &admin))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("max_devices"), "{}", status.message());
    assert_eq!(rows(&app, &user_id).await.len(), 2);

    // A revoked device frees its place.
    devices(&app)
        .revoke_device(authed(RevokeDeviceRequest { id: first.id }, &admin))
        .await
        .expect("revoke");
    register(&app, &admin, &user_id, "Three").await;

    let none = active_user(&app, "none@example.com", Some(0)).await;
    expect_code(
        devices(&app)
            .register_device(authed(registration(&none, "Any"), &admin))
            .await,
        Code::FailedPrecondition,
    );
}

// Two workers so the registrations really run at once; on SQLite and on
// PostgreSQL (CASTELLAN_TEST_DATABASE_URL) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_registrations_cannot_pass_max_devices() {
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "racer@example.com", Some(2)).await;
    let admin = app.token(&["devices:register"]);
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let mut client = devices(&app);
            let request = authed(registration(&user_id, &format!("Device {i}")), &admin);
            tokio::spawn(async move { client.register_device(request).await })
        })
        .collect();
    let mut created = 0;
    let mut refused = 0;
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(_) => created += 1,
            Err(status) if status.code() == Code::FailedPrecondition => refused += 1,
            Err(status) => panic!("unexpected status: {status:?}"),
        }
    }
    assert_eq!((created, refused), (2, 4));
    assert_eq!(rows(&app, &user_id).await.len(), 2);
}

#[tokio::test]
async fn a_request_id_registers_once() {
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "retry@example.com", Some(1)).await;
    let admin = app.token(&["devices:register"]);
    let mut client = devices(&app);
    let request = RegisterDeviceRequest {
        request_id: "req-1".into(),
        ..registration(&user_id, "Laptop")
    };
    let first = client
        .register_device(authed(request.clone(), &admin))
        .await
        .expect("first")
        .into_inner();
    // At the limit now, yet the retry gets the first result.
    let retry = client
        .register_device(authed(request.clone(), &admin))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(retry, first);
    assert_eq!(rows(&app, &user_id).await.len(), 1);

    let status = expect_code(
        client
            .register_device(authed(
                RegisterDeviceRequest {
                    name: "Another".into(),
                    ..request.clone()
                },
                &admin,
            ))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&status), "REQUEST_ID_REUSED");

    // Request ids are scoped to the caller: another caller's "req-1" is a new
    // registration (refused here: the limit is reached).
    let other_caller = app.user_token(&user_id, app.tenant_id);
    let status = expect_code(
        client.register_device(authed(request, &other_caller)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(error_reason(&status), "PRECONDITION_FAILED");
    assert_eq!(rows(&app, &user_id).await.len(), 1);
}

// One request id sent for different users at once: each call locks its own
// user, so only the request id can tell them apart. On PostgreSQL the race is
// made certain: the key table is held in SHARE mode (reads pass, inserts
// wait) until every call waits to record its key, all of them having found
// none. SQLite runs one write transaction at a time, so there the calls meet
// the first one's key when they look it up; the answers must be the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_raced_with_different_bodies_registers_once() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    let app = TestApp::spawn().await;
    let users = app
        .create_users((0..8).map(|i| draft(&format!("racer{i}@example.com"))).collect())
        .await;
    let admin = app.token(&["devices:register"]);
    let db = &app.app.db;
    let hold = match db.get_database_backend() {
        DbBackend::Postgres => {
            let txn = db.begin().await.expect("begin");
            txn.execute_unprepared("LOCK TABLE idempotency_keys IN SHARE MODE")
                .await
                .expect("hold the key table");
            Some(txn)
        }
        _ => None,
    };
    let attempts: Vec<_> = users
        .iter()
        .map(|user| {
            let mut client = devices(&app);
            let request = RegisterDeviceRequest {
                request_id: "shared".into(),
                ..registration(&user.id, "Laptop")
            };
            let request = authed(request, &admin);
            tokio::spawn(async move { client.register_device(request).await })
        })
        .collect();
    if let Some(txn) = hold {
        let waiting = Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
             WHERE c.relname = 'idempotency_keys' AND NOT l.granted \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let count = db
                .query_one_raw(waiting.clone())
                .await
                .expect("count the waiting calls")
                .expect("a row")
                .try_get_by_index::<i64>(0)
                .expect("a number");
            if count == users.len() as i64 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{count} calls wait for the key table"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        txn.commit().await.expect("let them record");
    }
    let (mut registered, mut reused) = (0, 0);
    for attempt in attempts {
        match attempt.await.expect("task") {
            Ok(_) => registered += 1,
            Err(status) if error_reason(&status) == "REQUEST_ID_REUSED" => {
                assert_eq!(status.code(), Code::FailedPrecondition);
                reused += 1;
            }
            Err(status) => panic!("unexpected status: {status:?}"),
        }
    }
    assert_eq!((registered, reused), (1, users.len() - 1));
    let mut rows_left = 0;
    for user in &users {
        rows_left += rows(&app, &user.id).await.len();
    }
    assert_eq!(rows_left, 1, "the others registered nothing");
}

// UpdateDevice finds the device, then writes it: a device deleted in between
// (here by a transaction that holds the write while the call reads) is
// NOT_FOUND, not a failed write (INTERNAL). On PostgreSQL the call is seen
// waiting for the deleted row's lock before the deletion commits; SQLite
// gives no sign that the call waits for its writer, so there it is given
// 300 ms to get there (with less, the call finds no device, NOT_FOUND too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_deleted_while_it_is_updated_is_not_found() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "vanishing@example.com", None).await;
    let admin = app.token(&["devices:*"]);
    let device = register(&app, &admin, &user_id, "Laptop").await;
    let device_id: Uuid = device.id.parse().expect("uuid");

    let deletion = app.app.writer.begin().await.expect("begin");
    device::Entity::delete_by_id(device_id)
        .exec(&deletion)
        .await
        .expect("delete the device");
    let mut client = devices(&app);
    let request = authed(
        UpdateDeviceRequest {
            id: device.id.clone(),
            name: Some("Renamed".into()),
            ..Default::default()
        },
        &admin,
    );
    let update = async move { client.update_device(request).await };
    expect_code(behind(&app, deletion, update).await, Code::NotFound);
}

#[tokio::test]
async fn a_user_acts_on_its_own_devices_only() {
    let app = TestApp::spawn().await;
    let me = active_user(&app, "me@example.com", None).await;
    let other = active_user(&app, "other@example.com", None).await;
    let admin = app.token(&["devices:*"]);
    let theirs = register(&app, &admin, &other, "Theirs").await;
    let own = app.user_token(&me, app.tenant_id);
    let mut client = devices(&app);

    let mine = register(&app, &own, &me, "Mine").await;
    client
        .get_device(authed(GetDeviceRequest { id: mine.id.clone() }, &own))
        .await
        .expect("own device");
    let listed = client
        .list_devices(authed(
            ListDevicesRequest {
                user_id: me.clone(),
                ..Default::default()
            },
            &own,
        ))
        .await
        .expect("own list")
        .into_inner();
    assert_eq!(listed.total, 1);
    let reported = client
        .report_connection(authed(
            ReportConnectionRequest {
                device_id: mine.id.clone(),
                connected: true,
            },
            &own,
        ))
        .await
        .expect("own report")
        .into_inner();
    assert!(reported.connected);

    // Another user: the user-addressed RPCs are refused before any lookup,
    // the device-addressed ones answer as if the device did not exist.
    expect_code(
        client
            .register_device(authed(registration(&other, "Sneaky"), &own))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client
            .list_devices(authed(
                ListDevicesRequest {
                    user_id: other.clone(),
                    ..Default::default()
                },
                &own,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client
            .get_device(authed(GetDeviceRequest { id: theirs.id.clone() }, &own))
            .await,
        Code::NotFound,
    );
    expect_code(
        client
            .report_connection(authed(
                ReportConnectionRequest {
                    device_id: theirs.id.clone(),
                    connected: true,
                },
                &own,
            ))
            .await,
        Code::NotFound,
    );
    // UpdateDevice and RevokeDevice have no allow_self.
    expect_code(
        client
            .update_device(authed(
                UpdateDeviceRequest {
                    id: mine.id.clone(),
                    name: Some("Renamed".into()),
                    posture: None,
                    update_mask: None,
                },
                &own,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        client
            .revoke_device(authed(RevokeDeviceRequest { id: mine.id.clone() }, &own))
            .await,
        Code::PermissionDenied,
    );
    assert!(!rows(&app, &other).await[0].connected, "nothing changed");
}

#[tokio::test]
async fn devices_of_users_outside_the_tenant_are_not_found() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme").await;
    let there = app.create_users_in(acme, vec![draft("there@example.com")]).await[0]
        .id
        .clone();
    let device = register(&app, &app.token_in(acme, &["devices:*"]), &there, "Theirs").await;
    let admin = app.token(&["*"]);
    let mut client = devices(&app);

    expect_code(
        client
            .register_device(authed(registration(&there, "Here"), &admin))
            .await,
        Code::NotFound,
    );
    expect_code(
        client
            .list_devices(authed(
                ListDevicesRequest {
                    user_id: there.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::NotFound,
    );
    let id = device.id.clone();
    let results = [
        client
            .get_device(authed(GetDeviceRequest { id: id.clone() }, &admin))
            .await
            .map(|_| ()),
        client
            .update_device(authed(
                UpdateDeviceRequest {
                    id: id.clone(),
                    name: Some("X".into()),
                    posture: None,
                    update_mask: None,
                },
                &admin,
            ))
            .await
            .map(|_| ()),
        client
            .report_connection(authed(
                ReportConnectionRequest {
                    device_id: id.clone(),
                    connected: true,
                },
                &admin,
            ))
            .await
            .map(|_| ()),
        client
            .revoke_device(authed(RevokeDeviceRequest { id: id.clone() }, &admin))
            .await
            .map(|_| ()),
    ];
    for (i, result) in results.into_iter().enumerate() {
        assert_eq!(
            result.map_or_else(|s| s.code(), |_| Code::Ok),
            Code::NotFound,
            "case {i}"
        );
    }
    assert_eq!(rows(&app, &there).await[0].status, "active", "untouched");

    // Without the permission: refused before anything is looked up.
    expect_code(
        client
            .get_device(authed(GetDeviceRequest { id }, &app.token(&["users:read"])))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn deactivating_a_user_revokes_its_devices_and_deleting_removes_them() {
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "leaver@example.com", None).await;
    let admin = app.token(&["*"]);
    let laptop = register(&app, &admin, &user_id, "Laptop").await;
    register(&app, &admin, &user_id, "Phone").await;
    devices(&app)
        .report_connection(authed(
            ReportConnectionRequest {
                device_id: laptop.id.clone(),
                connected: true,
            },
            &admin,
        ))
        .await
        .expect("connect");

    let mut users = app.users();
    let user = users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: user_id.clone() }, &admin))
        .await
        .expect("deactivate")
        .into_inner();
    assert_eq!(user.devices.len(), 2, "both devices answered: {:?}", user.devices);
    assert!(
        user.devices
            .iter()
            .all(|d| d.status == pb::DeviceStatus::Revoked as i32 && !d.connected),
        "{:?}",
        user.devices
    );
    let stored = rows(&app, &user_id).await;
    assert_eq!(stored.len(), 2);
    assert!(
        stored.iter().all(|d| d.status == "revoked" && !d.connected),
        "{stored:?}"
    );
    expect_code(
        devices(&app)
            .register_device(authed(registration(&user_id, "New"), &admin))
            .await,
        Code::FailedPrecondition,
    );

    // Reactivation does not bring revoked devices back.
    users
        .reactivate_user(authed(pb::ReactivateUserRequest { id: user_id.clone() }, &admin))
        .await
        .expect("reactivate");
    assert!(rows(&app, &user_id).await.iter().all(|d| d.status == "revoked"));
    register(&app, &admin, &user_id, "New").await;

    users
        .delete_user(authed(pb::DeleteUserRequest { id: user_id.clone() }, &admin))
        .await
        .expect("delete");
    assert!(rows(&app, &user_id).await.is_empty(), "devices go with their user");
    expect_code(
        devices(&app)
            .get_device(authed(GetDeviceRequest { id: laptop.id }, &admin))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn invalid_input_names_the_field() {
    let app = TestApp::spawn().await;
    let user_id = active_user(&app, "valid@example.com", None).await;
    let admin = app.token(&["devices:*"]);
    let mut client = devices(&app);

    let status = expect_code(
        client
            .register_device(authed(
                RegisterDeviceRequest {
                    user_id: "not-a-uuid".into(),
                    name: " ".into(),
                    platform: "p".repeat(101),
                    os_version: "v".repeat(101),
                    request_id: "r".repeat(201),
                    posture: None,
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        ["user_id", "name", "platform", "os_version", "request_id"]
    );
    let status = expect_code(
        client
            .register_device(authed(
                RegisterDeviceRequest {
                    platform: String::new(),
                    name: "n".repeat(201),
                    ..registration(&user_id, "")
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["name", "platform"]);

    let device = register(&app, &admin, &user_id, "Fine").await;
    let status = expect_code(
        client
            .update_device(authed(
                UpdateDeviceRequest {
                    id: device.id.clone(),
                    name: Some(String::new()),
                    posture: None,
                    update_mask: None,
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["name"]);
    let status = expect_code(
        client
            .get_device(authed(GetDeviceRequest { id: "42".into() }, &admin))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["id"]);
    let status = expect_code(
        client
            .report_connection(authed(
                ReportConnectionRequest {
                    device_id: String::new(),
                    connected: true,
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["device_id"]);
    let status = expect_code(
        client
            .list_devices(authed(
                ListDevicesRequest {
                    user_id: user_id.clone(),
                    limit: 101,
                    sort: vec!["platform".into()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["limit", "sort[0]"]);
}

/// A tenant's administrator acts on a device only while its user is a
/// member of that tenant: a revocation made as the user leaves the tenant
/// (a write the test holds open) is NOT_FOUND once that write commits, and
/// the device stays ACTIVE. (UpdateDevice and ReportConnection check the
/// same way in their writes.)
#[tokio::test]
async fn a_revocation_made_as_its_user_leaves_the_tenant_is_not_found() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let second = app.create_tenant("second").await;
    let user = app
        .users()
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![UserDraft {
                    tenant_ids: vec![app.tenant_id.to_string(), second.to_string()],
                    ..draft("leaving@example.com")
                }],
                request_id: String::new(),
            },
            &app.global_token(&["users:create"]),
        ))
        .await
        .expect("a user of two tenants")
        .into_inner()
        .users
        .remove(0);
    let admin = app.token(&["devices:*"]);
    let device = register(&app, &admin, &user.id, "Laptop").await;
    let user_id: Uuid = user.id.parse().expect("uuid");
    let leaving = app.app.writer.begin().await.expect("begin");
    assert!(castellan::store::users::lock(&leaving, user_id).await.expect("lock"));
    castellan::store::users::remove_memberships(&leaving, user_id, &[app.tenant_id], chrono::Utc::now())
        .await
        .expect("leave the tenant");

    let revoke = {
        let mut devices = devices(&app);
        let request = authed(RevokeDeviceRequest { id: device.id.clone() }, &admin);
        async move { devices.revoke_device(request).await }
    };
    expect_code(behind(&app, leaving, revoke).await, Code::NotFound);
    let stored = device::Entity::find_by_id(device.id.parse::<Uuid>().expect("uuid"))
        .one(&app.app.db)
        .await
        .expect("read")
        .expect("the device");
    assert_eq!(stored.status, "active", "the revocation did not land");
}
