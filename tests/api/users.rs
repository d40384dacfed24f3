use castellan::pb::{self, CreateUsersRequest, GetUserByUsernameRequest, GetUserRequest, UpdateUserRequest, UserDraft};
use tonic::Code;

use crate::helpers::{
    TestApp, active_draft, authed, authed_in, behind, draft, error_reason, expect_code, expect_invalid_field,
    held_group_deletion, held_role_deletion, random_ids, violated_fields,
};

fn batch(n: usize, prefix: &str) -> Vec<UserDraft> {
    (0..n).map(|i| draft(&format!("{prefix}{i:03}@example.com"))).collect()
}

/// A CreateUsers request for the drafts, without a request id.
fn create_request(drafts: Vec<UserDraft>, token: &str) -> tonic::Request<CreateUsersRequest> {
    authed(
        CreateUsersRequest {
            users: drafts,
            ..Default::default()
        },
        token,
    )
}

#[tokio::test]
async fn create_users_takes_1_to_100_drafts_all_or_nothing() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:create", "users:list"]);
    let mut users = app.users();
    let created = users
        .create_users(create_request(batch(100, "u"), &token))
        .await
        .expect("100 users")
        .into_inner()
        .users;
    assert_eq!(created.len(), 100);
    assert_eq!(created[3].email, "u003@example.com", "in draft order");
    assert!(created.iter().all(|u| u.status == pb::UserStatus::Pending as i32));

    for (n, field) in [(101, "users"), (0, "users")] {
        let status = expect_code(
            users.create_users(create_request(batch(n, "v"), &token)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
    }

    // One bad draft: nothing is written, and the violation names the draft.
    let mut drafts = batch(5, "w");
    drafts[3].email = "not-an-email".into();
    drafts[1].first_name = "x".repeat(201);
    let status = expect_code(
        users.create_users(create_request(drafts, &token)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["users[1].first_name", "users[3].email"]);

    // A duplicate of an existing user fails the whole batch, naming the
    // draft's e-mail on both databases (whose unique indexes fire in
    // different orders when the username is the e-mail), else its username.
    let mut drafts = batch(3, "z");
    drafts[2].email = "U001@example.com".into();
    let status = expect_code(
        users.create_users(create_request(drafts, &token)).await,
        Code::AlreadyExists,
    );
    assert_eq!(status.message(), "users[2].email already exists");
    let mut drafts = batch(3, "y");
    drafts[1].username = "u001@example.com".into();
    let status = expect_code(
        users.create_users(create_request(drafts, &token)).await,
        Code::AlreadyExists,
    );
    assert_eq!(status.message(), "users[1].username already exists");
    // Duplicates within one batch, too.
    let status = expect_code(
        users
            .create_users(create_request(
                vec![draft("same@example.com"), draft("same@example.com")],
                &token,
            ))
            .await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("users[1].email"), "{}", status.message());

    let listed = users
        .list_users(authed(pb::ListUsersRequest::default(), &token))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 100, "failed batches wrote nothing");
}

#[tokio::test]
async fn drafts_carry_names_passwords_limits_and_images() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:*"]);
    let created = app
        .users()
        .create_users(authed(
            CreateUsersRequest {
                users: vec![UserDraft {
                    email: "Jane.Smith@Company.com".into(),
                    username: "jane@company.com".into(),
                    first_name: "Jane".into(),
                    last_name: "Smith".into(),
                    password: "correct horse battery".into(),
                    temporary_password: true,
                    max_devices: Some(3),
                    image: "https://img.example.com/jane.png".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("create")
        .into_inner()
        .users;
    let jane = &created[0];
    assert_eq!(jane.email, "jane.smith@company.com", "stored lowercase");
    assert_eq!(jane.username, "jane@company.com");
    assert_eq!(jane.status, pb::UserStatus::Active as i32);
    assert!(jane.password_change_required);
    assert_eq!(jane.max_devices, Some(3));
    assert_eq!(jane.image, "https://img.example.com/jane.png");
    assert_eq!(jane.tenant_ids, [app.tenant_id.to_string()]);

    let mut users = app.users();
    for (draft, field) in [
        (
            UserDraft {
                email: "a@example.com".into(),
                password: "short".into(),
                ..Default::default()
            },
            "users[0].password",
        ),
        (
            UserDraft {
                email: "a@example.com".into(),
                password: "password".into(),
                ..Default::default()
            },
            "users[0].password",
        ),
        (
            UserDraft {
                email: "a@example.com".into(),
                max_devices: Some(-1),
                ..Default::default()
            },
            "users[0].max_devices",
        ),
        (
            UserDraft {
                email: "a@example.com".into(),
                username: "not an email".into(),
                ..Default::default()
            },
            "users[0].username",
        ),
        (
            UserDraft {
                email: "a@example.com".into(),
                role_ids: vec!["nope".into()],
                ..Default::default()
            },
            "users[0].role_ids[0]",
        ),
        (
            UserDraft {
                email: "a@example.com".into(),
                tenant_ids: vec!["not a tenant key!".into()],
                ..Default::default()
            },
            "users[0].tenant_ids[0]",
        ),
    ] {
        let status = expect_code(
            users.create_users(create_request(vec![draft], &token)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
        assert!(
            !status.message().contains("short") || field != "users[0].password",
            "never echo a password"
        );
    }
}

#[tokio::test]
async fn users_are_read_by_id_and_username_within_their_tenant() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let here = app.create_users(vec![draft("here@example.com")]).await.remove(0);
    let there = app
        .create_users_in(other, vec![draft("there@example.com")])
        .await
        .remove(0);
    let token = app.token(&["users:read"]);
    let mut users = app.users();

    let got = users
        .get_user(authed(GetUserRequest { id: here.id.clone() }, &token))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, here);
    let by_name = users
        .get_user_by_username(authed(
            GetUserByUsernameRequest {
                username: "HERE@example.com".into(),
            },
            &token,
        ))
        .await
        .expect("by username")
        .into_inner();
    assert_eq!(by_name.id, here.id);

    expect_code(
        users
            .get_user(authed(GetUserRequest { id: there.id.clone() }, &token))
            .await,
        Code::NotFound,
    );
    expect_code(
        users
            .get_user(authed(
                GetUserRequest {
                    id: uuid::Uuid::now_v7().to_string(),
                },
                &token,
            ))
            .await,
        Code::NotFound,
    );
    let status = expect_code(
        users.get_user(authed(GetUserRequest { id: "42".into() }, &token)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["id"]);
    // The other tenant's own token sees its user and not ours.
    let theirs = app.token_in(other, &["users:read"]);
    users
        .get_user(authed(GetUserRequest { id: there.id.clone() }, &theirs))
        .await
        .expect("their own");
    expect_code(
        users
            .get_user(authed(GetUserRequest { id: here.id.clone() }, &theirs))
            .await,
        Code::NotFound,
    );
    // WhoAmI needs a user subject.
    expect_code(
        users.who_am_i(authed(pb::WhoAmIRequest {}, &token)).await,
        Code::FailedPrecondition,
    );
}

#[tokio::test]
async fn update_user_follows_the_field_mask_and_self_limits() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:*"]);
    let mut users = app.users();
    let user = app
        .create_users(vec![UserDraft {
            email: "old@example.com".into(),
            first_name: "Old".into(),
            last_name: "Name".into(),
            password: "correct horse battery".into(),
            max_devices: Some(2),
            ..Default::default()
        }])
        .await
        .remove(0);

    let updated = users
        .update_user(authed(
            UpdateUserRequest {
                id: user.id.clone(),
                first_name: "New".into(),
                last_name: "Ignored".into(),
                max_devices: None,
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["first_name".into(), "max_devices".into()],
                }),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.first_name, "New");
    assert_eq!(updated.last_name, "Name", "not in the mask");
    assert_eq!(updated.max_devices, None, "masked and unset clears the limit");

    let updated = users
        .update_user(authed(
            UpdateUserRequest {
                id: user.id.clone(),
                email: "New@Example.com".into(),
                permissions: vec!["users:read".into(), "users:list".into()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("update with an empty mask")
        .into_inner();
    assert_eq!(updated.email, "new@example.com");
    assert_eq!(
        updated.username, "new@example.com",
        "a username mirroring the email follows it"
    );
    assert_eq!(updated.first_name, "New");
    assert_eq!(updated.permissions, ["users:list", "users:read"]);

    // No escalation: a caller grants only what it holds.
    let limited = app.token(&["users:update"]);
    expect_code(
        users
            .update_user(authed(
                UpdateUserRequest {
                    id: user.id.clone(),
                    permissions: vec!["tenants:delete".into()],
                    ..Default::default()
                },
                &limited,
            ))
            .await,
        Code::PermissionDenied,
    );
    // Grants it keeps need not be held: only those the replacement adds.
    let kept = users
        .update_user(authed(
            UpdateUserRequest {
                id: user.id.clone(),
                permissions: vec!["users:read".into()],
                ..Default::default()
            },
            &limited,
        ))
        .await
        .expect("a replacement that keeps a grant the caller lacks")
        .into_inner();
    assert_eq!(kept.permissions, ["users:read"]);

    // A user may change its own names and image, nothing else.
    let own = app.user_token(&user.id, app.tenant_id);
    let me = users
        .update_user(authed(
            UpdateUserRequest {
                id: user.id.clone(),
                last_name: "Mine".into(),
                image: "me.png".into(),
                ..Default::default()
            },
            &own,
        ))
        .await
        .expect("self update")
        .into_inner();
    assert_eq!((me.last_name.as_str(), me.image.as_str()), ("Mine", "me.png"));
    expect_code(
        users
            .update_user(authed(
                UpdateUserRequest {
                    id: user.id.clone(),
                    email: "hijack@example.com".into(),
                    ..Default::default()
                },
                &own,
            ))
            .await,
        Code::PermissionDenied,
    );
    // Fields it sends with the values it has are no change (seed 002's
    // update requires them all): its names change, nothing else does.
    let tenant_id = app.tenant_id.to_string();
    let same = users
        .update_user(authed(
            UpdateUserRequest {
                id: user.id.clone(),
                first_name: "Myself".into(),
                email: me.email.clone(),
                permissions: vec!["users:read".into()],
                tenant_ids: vec![tenant_id.clone()],
                ..Default::default()
            },
            &own,
        ))
        .await
        .expect("a self update repeating its own values")
        .into_inner();
    assert_eq!(
        (
            same.first_name.as_str(),
            same.email.as_str(),
            same.permissions.as_slice()
        ),
        ("Myself", me.email.as_str(), &["users:read".to_owned()][..])
    );
    let status = expect_code(
        users
            .update_user(authed(
                UpdateUserRequest {
                    id: user.id.clone(),
                    first_name: "Changed".into(),
                    permissions: vec!["users:read".into(), "users:list".into()],
                    tenant_ids: vec![tenant_id],
                    ..Default::default()
                },
                &own,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("permissions"), "{}", status.message());
    let after = users
        .get_user(authed(GetUserRequest { id: user.id.clone() }, &own))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (after.first_name.as_str(), after.permissions.as_slice()),
        ("Myself", &["users:read".to_owned()][..])
    );

    // Taken e-mail.
    app.create_users(vec![draft("taken@example.com")]).await;
    let status = expect_code(
        users
            .update_user(authed(
                UpdateUserRequest {
                    id: user.id.clone(),
                    email: "taken@example.com".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(status.message(), "email already exists");
}

#[tokio::test]
async fn tenant_memberships_are_managed_and_the_last_owner_stays() {
    let app = TestApp::spawn().await;
    let second = app.create_tenant("second").await;
    let user = app.create_users(vec![draft("member@example.com")]).await.remove(0);
    let global = app.global_token(&["users:*"]);
    let local = app.token(&["users:*"]);
    let mut users = app.users();

    // A local caller cannot add memberships elsewhere.
    expect_code(
        users
            .update_user_tenants(authed(
                pb::UpdateUserTenantsRequest {
                    id: user.id.clone(),
                    add_tenant_ids: vec!["second".into()],
                    ..Default::default()
                },
                &local,
            ))
            .await,
        Code::PermissionDenied,
    );
    let updated = users
        .update_user_tenants(authed(
            pb::UpdateUserTenantsRequest {
                id: user.id.clone(),
                add_tenant_ids: vec!["second".into()],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("add")
        .into_inner();
    assert_eq!(updated.tenant_ids.len(), 2);
    assert!(updated.tenant_ids.contains(&second.to_string()));

    // The only owner of a tenant cannot be removed from it.
    let owned = app
        .tenants()
        .create_tenant(authed(
            pb::CreateTenantRequest {
                name: "Owned".into(),
                slug: "owned".into(),
                owner_user_id: user.id.clone(),
                ..Default::default()
            },
            &app.global_token(&["tenants:create"]),
        ))
        .await
        .expect("tenant")
        .into_inner();
    expect_code(
        users
            .update_user_tenants(authed(
                pb::UpdateUserTenantsRequest {
                    id: user.id.clone(),
                    remove_tenant_ids: vec![owned.id.clone()],
                    ..Default::default()
                },
                &global,
            ))
            .await,
        Code::FailedPrecondition,
    );
    let removed = users
        .update_user_tenants(authed(
            pb::UpdateUserTenantsRequest {
                id: user.id.clone(),
                remove_tenant_ids: vec![second.to_string()],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("remove")
        .into_inner();
    assert!(!removed.tenant_ids.contains(&second.to_string()));
    // A user in several tenants is deleted only by a global caller, and
    // not while it is the last owner of one.
    expect_code(
        users
            .delete_user(authed(pb::DeleteUserRequest { id: user.id.clone() }, &local))
            .await,
        Code::FailedPrecondition,
    );
    app.tenants()
        .delete_tenant(authed(
            pb::DeleteTenantRequest { id: owned.id.clone() },
            &app.global_token(&["tenants:delete"]),
        ))
        .await
        .expect("the owned tenant goes first");
    users
        .delete_user(authed(pb::DeleteUserRequest { id: user.id.clone() }, &global))
        .await
        .expect("global delete");
    expect_code(
        users
            .get_user(authed(GetUserRequest { id: user.id.clone() }, &global))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn a_retried_create_with_the_same_request_id_creates_nothing_twice() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:create", "users:list"]);
    let mut users = app.users();
    let request = |emails: &[&str]| CreateUsersRequest {
        users: emails.iter().map(|e| draft(e)).collect(),
        request_id: "retry-1".into(),
    };
    let first = users
        .create_users(authed(request(&["r1@example.com", "r2@example.com"]), &token))
        .await
        .expect("first")
        .into_inner()
        .users;
    let again = users
        .create_users(authed(request(&["r1@example.com", "r2@example.com"]), &token))
        .await
        .expect("retry answers the first result")
        .into_inner()
        .users;
    let ids = |users: &[pb::User]| users.iter().map(|u| u.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&again), ids(&first));
    let listed = users
        .list_users(authed(pb::ListUsersRequest::default(), &token))
        .await
        .expect("list");
    assert_eq!(listed.into_inner().total, 2);

    let status = expect_code(
        users
            .create_users(authed(request(&["other@example.com"]), &token))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("request_id"), "{}", status.message());

    // Tenants too.
    let global = app.global_token(&["tenants:create"]);
    let tenant = |slug: &str| pb::CreateTenantRequest {
        name: "Retry".into(),
        slug: slug.into(),
        request_id: "tenant-retry".into(),
        ..Default::default()
    };
    let mut tenants = app.tenants();
    let first = tenants
        .create_tenant(authed(tenant("retry"), &global))
        .await
        .expect("first")
        .into_inner();
    let again = tenants
        .create_tenant(authed(tenant("retry"), &global))
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(first.id, again.id);
    expect_code(
        tenants.create_tenant(authed(tenant("other"), &global)).await,
        Code::FailedPrecondition,
    );
}

/// GetUser and WhoAmI answer warm calls from a cache: each kind of write
/// that changes a user's record shows in the very next read.
#[tokio::test]
async fn reads_follow_every_change_to_a_record_at_once() {
    use castellan::pb::{
        CreateGroupRequest, CreateRoleRequest, DeactivateUserRequest, DeleteUserRequest, RegisterDeviceRequest,
        RevokeDeviceRequest, UpdateGroupRequest, UpdateRoleRequest, UpdateUserTenantsRequest, WhoAmIRequest,
        device_service_client::DeviceServiceClient,
    };

    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = app
        .roles()
        .create_role(authed(
            CreateRoleRequest {
                name: "viewer".into(),
                permissions: vec!["users:read".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("create role")
        .into_inner();
    let group = app
        .groups()
        .create_group(authed(
            CreateGroupRequest {
                name: "ops".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("create group")
        .into_inner();
    let other = app.create_tenant("other").await;
    let global = app.global_token(&["*"]);
    let id = app
        .users()
        .create_users(authed(
            CreateUsersRequest {
                users: vec![UserDraft {
                    role_ids: vec![role.id.clone()],
                    group_ids: vec![group.id.clone()],
                    tenant_ids: vec![app.tenant_id.to_string(), other.to_string()],
                    ..active_draft("cached@example.com")
                }],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("create user")
        .into_inner()
        .users[0]
        .id
        .clone();
    let own = app.user_token(&id, app.tenant_id);
    let get = || {
        let mut users = app.users();
        let (id, admin) = (id.clone(), admin.clone());
        async move { users.get_user(authed(GetUserRequest { id }, &admin)).await }
    };
    let whoami = || {
        let mut users = app.users();
        let own = own.clone();
        async move {
            users
                .who_am_i(authed(WhoAmIRequest {}, &own))
                .await
                .expect("whoami")
                .into_inner()
        }
    };
    let read = || async { get().await.expect("get user").into_inner() };
    // ListUsers (FULL) takes the details of users whose cached record is current from the cache.
    let listed = || {
        let mut users = app.users();
        let (id, admin) = (id.clone(), admin.clone());
        async move {
            users
                .list_users(authed(pb::ListUsersRequest::default(), &admin))
                .await
                .expect("list users")
                .into_inner()
                .users
                .into_iter()
                .find(|u| u.id == id)
                .expect("listed")
        }
    };
    // Warm both paths.
    assert_eq!(read().await.roles[0].name, "viewer");
    assert_eq!(whoami().await.groups[0].name, "ops");

    app.users()
        .update_user(authed(
            UpdateUserRequest {
                id: id.clone(),
                first_name: "Renamed".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("update user");
    assert_eq!(listed().await.first_name, "Renamed");
    assert_eq!(read().await.first_name, "Renamed");
    assert_eq!(whoami().await.first_name, "Renamed");

    let renamed = app
        .roles()
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: role.version,
                name: Some("reader".into()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("rename role")
        .into_inner();
    assert_eq!(listed().await.roles[0].name, "reader");
    assert_eq!(read().await.roles[0].name, "reader");
    // A role's permissions are kept apart from the records that show them.
    app.roles()
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: renamed.version,
                add_permissions: vec!["groups:read".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("add a permission to the role");
    let both = vec!["groups:read".to_owned(), "users:read".to_owned()];
    assert_eq!(read().await.roles[0].permissions, both);
    assert_eq!(listed().await.roles[0].permissions, both);
    assert_eq!(whoami().await.roles[0].permissions, both);

    app.groups()
        .update_group(authed(
            UpdateGroupRequest {
                id: group.id.clone(),
                description: Some("On call".into()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("describe group");
    assert_eq!(listed().await.groups[0].description, "On call");
    assert_eq!(whoami().await.groups[0].description, "On call");

    // One user's own changes: a device, a login.
    let mut devices = DeviceServiceClient::new(app.channel.clone());
    let device = devices
        .register_device(authed(
            RegisterDeviceRequest {
                user_id: id.clone(),
                name: "Laptop".into(),
                platform: "linux".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("register device")
        .into_inner();
    assert_eq!(listed().await.devices.len(), 1);
    assert_eq!(read().await.devices.len(), 1);
    devices
        .revoke_device(authed(RevokeDeviceRequest { id: device.id }, &admin))
        .await
        .expect("revoke device");
    assert_eq!(
        listed().await.devices[0].status,
        pb::DeviceStatus::Revoked as i32,
        "the revocation shows in a listing"
    );
    assert_eq!(
        read().await.devices[0].status,
        pb::DeviceStatus::Revoked as i32,
        "the revocation shows"
    );
    assert!(whoami().await.last_connection.is_none());
    assert!(read().await.last_connection.is_none());
    let login = || async {
        app.login("cached@example.com", "correct horse battery")
            .await
            .expect("login")
    };
    login().await;
    let first = whoami()
        .await
        .last_connection
        .expect("the login's last_connection shows");
    assert_eq!(read().await.last_connection, Some(first), "in every reader's view");
    // A login keeps the cached record, with the new value.
    login().await;
    let second = whoami().await.last_connection.expect("still shown");
    assert!(
        (second.seconds, second.nanos) > (first.seconds, first.nanos),
        "the second login's time shows"
    );
    assert_eq!(read().await.last_connection, Some(second));

    // Memberships, status, deletion.
    app.users()
        .update_user_tenants(authed(
            UpdateUserTenantsRequest {
                id: id.clone(),
                remove_tenant_ids: vec![other.to_string()],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("leave the other tenant");
    assert_eq!(listed().await.tenant_ids, [app.tenant_id.to_string()]);
    assert_eq!(read().await.tenant_ids, [app.tenant_id.to_string()]);
    app.users()
        .deactivate_user(authed(DeactivateUserRequest { id: id.clone() }, &admin))
        .await
        .expect("deactivate");
    assert_eq!(read().await.status, pb::UserStatus::Inactive as i32);
    app.users()
        .delete_user(authed(DeleteUserRequest { id: id.clone() }, &admin))
        .await
        .expect("delete");
    expect_code(get().await, Code::NotFound);
}

#[tokio::test]
async fn a_batch_of_100_over_two_tenants_writes_every_member_event_and_invitation() {
    use castellan::store::entity::{audit_event, invitation, mail_outbox};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    // A long outbox interval keeps the invitation mails in the outbox.
    let app = TestApp::spawn_with(&["--outbox-interval", "1h"]).await;
    let second = app.create_tenant("second").await;
    let (first, second_id) = (app.tenant_id.to_string(), second.to_string());
    let global = app.global_token(&["users:*"]);
    let mut users = app.users();
    let total_in = |tenant: String| {
        let mut users = app.users();
        let global = global.clone();
        async move {
            users
                .list_users(authed_in(pb::ListUsersRequest::default(), &global, &tenant))
                .await
                .expect("list")
                .into_inner()
                .total
        }
    };
    let (before_first, before_second) = (total_in(first.clone()).await, total_in(second_id.clone()).await);

    // 0..50 in the tenant in context, 50..90 in the second, 90..100 in both.
    let drafts: Vec<UserDraft> = (0..100)
        .map(|i| UserDraft {
            tenant_ids: match i {
                0..50 => vec![],
                50..90 => vec!["second".into()],
                _ => vec![first.clone(), second_id.clone()],
            },
            ..draft(&format!("b{i:03}@example.com"))
        })
        .collect();
    let created = users
        .create_users(create_request(drafts, &global))
        .await
        .expect("100 users")
        .into_inner()
        .users;
    assert_eq!(created.len(), 100);
    for (i, user) in created.iter().enumerate() {
        assert_eq!(user.email, format!("b{i:03}@example.com"), "in draft order");
        assert_eq!(user.status, pb::UserStatus::Pending as i32);
        let expected = match i {
            0..50 => vec![first.clone()],
            50..90 => vec![second_id.clone()],
            _ => {
                let mut both = vec![first.clone(), second_id.clone()];
                both.sort();
                both
            }
        };
        assert_eq!(user.tenant_ids, expected, "user {i}");
    }
    assert_eq!(total_in(first.clone()).await, before_first + 60);
    assert_eq!(total_in(second_id.clone()).await, before_second + 50);

    // One event per user, with the fields of a user created without a password.
    let events = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("identity.v1.UserService/CreateUsers"))
        .all(&app.app.db)
        .await
        .expect("query");
    assert_eq!(events.len(), 100);
    let mut targets: Vec<String> = events.iter().map(|e| e.target.clone()).collect();
    let mut expected: Vec<String> = created.iter().map(|u| format!("user:{}", u.id)).collect();
    targets.sort();
    expected.sort();
    assert_eq!(targets, expected);
    for event in &events {
        assert_eq!(event.outcome, "ok");
        assert_eq!(event.actor, "service:operator");
        // In the tenant in context, save those created for the second alone.
        let i = created
            .iter()
            .position(|u| event.target == format!("user:{}", u.id))
            .expect("a created user");
        let trail = if (50..90).contains(&i) { second } else { app.tenant_id };
        assert_eq!(event.tenant_id, Some(trail), "user {i}");
        assert_eq!(
            event.changed_fields,
            r#"["email","username","status","tenant_ids","invitation"]"#
        );
    }

    // One invitation per user, into the tenant in context when the user is
    // in it, and one mail per invitation.
    let invitations = invitation::Entity::find().all(&app.app.db).await.expect("query");
    assert_eq!(invitations.len(), 100);
    for (i, user) in created.iter().enumerate() {
        let invited = invitations
            .iter()
            .find(|inv| inv.user_id.to_string() == user.id)
            .expect("an invitation");
        let tenant = if (50..90).contains(&i) { second } else { app.tenant_id };
        assert_eq!(invited.tenant_id, tenant, "user {i}");
    }
    let mails = mail_outbox::Entity::find().all(&app.app.db).await.expect("query");
    assert_eq!(mails.len(), 100);
    let mut recipients: Vec<String> = mails.iter().map(|m| m.recipient.clone()).collect();
    recipients.sort();
    let emails: Vec<String> = created.iter().map(|u| u.email.clone()).collect();
    assert_eq!(recipients, emails);
    assert!(
        mails
            .iter()
            .all(|m| m.subject == "Complete your account setup" && m.body.contains("/invitations/accept?token="))
    );

    // A taken email or username deep in a batch fails it, naming the field,
    // and writes nothing.
    for (field, taken) in [
        (
            "email",
            UserDraft {
                username: "fresh@example.com".into(),
                ..draft("b042@example.com")
            },
        ),
        (
            "username",
            UserDraft {
                username: "b042@example.com".into(),
                ..draft("fresh@example.com")
            },
        ),
    ] {
        let mut drafts = batch(100, "c");
        drafts[70] = taken;
        let status = expect_code(
            users.create_users(create_request(drafts, &global)).await,
            Code::AlreadyExists,
        );
        assert!(status.message().contains(field), "{}", status.message());
    }
    assert_eq!(total_in(first).await, before_first + 60);
    let mails = mail_outbox::Entity::find().all(&app.app.db).await.expect("query");
    assert_eq!(mails.len(), 100, "failed batches queue no mail");
}

/// The FULL view, read cold (GetUser) and listed (ListUsers), names each of
/// a user's roles once, by name, each with its own permissions sorted; a role
/// without permissions is listed with none, and users sharing a role do not
/// see each other's.
#[tokio::test]
async fn the_full_view_lists_each_role_once_with_its_sorted_permissions() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let auditor = crate::roles::create_role(&app, &admin, "auditor", &["users:read", "roles:read", "users:list"])
        .await
        .id;
    let bare = crate::roles::create_role(&app, &admin, "bare", &[]).await.id;
    let created = app
        .create_users(vec![
            UserDraft {
                role_ids: vec![bare.clone(), auditor.clone()],
                ..active_draft("both@example.com")
            },
            UserDraft {
                role_ids: vec![auditor.clone()],
                ..active_draft("one@example.com")
            },
        ])
        .await;
    let expected = |user: &pb::User| -> Vec<(String, Vec<String>)> {
        user.roles
            .iter()
            .map(|r| (r.name.clone(), r.permissions.clone()))
            .collect()
    };
    let auditor_view = (
        "auditor".to_owned(),
        vec![
            "roles:read".to_owned(),
            "users:list".to_owned(),
            "users:read".to_owned(),
        ],
    );
    let wanted = [
        vec![auditor_view.clone(), ("bare".to_owned(), vec![])],
        vec![auditor_view],
    ];
    // Listed first: the FULL details of a page are loaded together, not
    // taken from the record cache that GetUser then fills.
    let mut users = app.users();
    let listed = users
        .list_users(authed(
            pb::ListUsersRequest {
                view: pb::UserView::Full as i32,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list users")
        .into_inner()
        .users;
    for (user, want) in created.iter().zip(&wanted) {
        let listed = listed.iter().find(|u| u.id == user.id).expect("listed");
        assert_eq!(&expected(listed), want, "ListUsers FULL of {}", user.email);
    }
    for (user, want) in created.iter().zip(&wanted) {
        let read = users
            .get_user(authed(GetUserRequest { id: user.id.clone() }, &admin))
            .await
            .expect("get user")
            .into_inner();
        assert_eq!(&expected(&read), want, "GetUser of {}", user.email);
    }
}

/// A user's FULL view in a tenant names the roles it holds there and its
/// global roles, never the roles it holds in another of its tenants.
#[tokio::test]
async fn the_full_view_in_a_tenant_names_that_tenants_roles_and_global_ones_only() {
    let app = TestApp::spawn().await;
    let second = app.create_tenant("second").await;
    let (admin, admin_there) = (app.token(&["*"]), app.token_in(second, &["*"]));
    let global = app.global_token(&["*"]);
    let here = crate::roles::create_role(&app, &admin, "here", &["users:read"])
        .await
        .id;
    let there = crate::roles::create_role(&app, &admin_there, "there", &["users:list"])
        .await
        .id;
    let everywhere = crate::roles::create_global_role(&app, "everywhere", &["roles:read"])
        .await
        .id;
    let user = app
        .create_users(vec![UserDraft {
            role_ids: vec![here],
            ..active_draft("two-tenants@example.com")
        }])
        .await
        .remove(0);
    let mut users = app.users();
    users
        .update_user_tenants(authed(
            pb::UpdateUserTenantsRequest {
                id: user.id.clone(),
                add_tenant_ids: vec![second.to_string()],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("join the second tenant");
    for (role, token) in [(everywhere, &global), (there, &admin_there)] {
        users
            .update_user_roles(authed(
                pb::UpdateUserRolesRequest {
                    id: user.id.clone(),
                    add_role_ids: vec![role],
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("grant a role");
    }

    for (token, wanted) in [
        (&admin, ["everywhere", "here"]),
        (&admin_there, ["everywhere", "there"]),
    ] {
        let read = users
            .get_user(authed(GetUserRequest { id: user.id.clone() }, token))
            .await
            .expect("get user")
            .into_inner();
        let names: Vec<&str> = read.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, wanted, "GetUser");
        let listed = users
            .list_users(authed(
                pb::ListUsersRequest {
                    view: pb::UserView::Full as i32,
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("list users")
            .into_inner()
            .users;
        let listed = listed.iter().find(|u| u.id == user.id).expect("listed");
        let names: Vec<&str> = listed.roles.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, wanted, "ListUsers FULL");
    }
}

/// Reads racing writes never leave a stale record in the cache: while an
/// administrator renames users, GetUser and ListUsers (FULL) read them
/// over and over, filling the record cache; each rename shows in the
/// administrator's next read, and once the renames are done every reader
/// sees the last name.
#[tokio::test]
async fn reads_racing_renames_never_keep_a_stale_record() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    // A change to a role the users hold outdates all their records without
    // reading any again, so the readers' next reads load them, racing the
    // rename that follows.
    let mut role = crate::roles::create_role(&app, &admin, "racing", &[]).await;
    let drafts = (0..30)
        .map(|i| UserDraft {
            role_ids: vec![role.id.clone()],
            ..active_draft(&format!("racer{i}@example.com"))
        })
        .collect();
    let ids: Vec<String> = app.create_users(drafts).await.into_iter().map(|u| u.id).collect();
    let done = Arc::new(AtomicBool::new(false));

    let mut readers = Vec::new();
    for reader in 0..4 {
        let (mut users, admin, ids, done) = (app.users(), admin.clone(), ids.clone(), done.clone());
        readers.push(tokio::spawn(async move {
            let mut round = 0;
            while !done.load(Ordering::Acquire) {
                if reader % 2 == 0 {
                    users
                        .list_users(authed(
                            pb::ListUsersRequest {
                                view: pb::UserView::Full as i32,
                                limit: 100,
                                ..Default::default()
                            },
                            &admin,
                        ))
                        .await
                        .expect("list users");
                } else {
                    let id = ids[round % ids.len()].clone();
                    users
                        .get_user(authed(GetUserRequest { id }, &admin))
                        .await
                        .expect("get user");
                }
                round += 1;
            }
        }));
    }
    let mut users = app.users();
    for round in 0..3 {
        for id in &ids {
            role = app
                .roles()
                .update_role(authed(
                    pb::UpdateRoleRequest {
                        id: role.id.clone(),
                        version: role.version,
                        description: Some(format!("{round} {id}")),
                        ..Default::default()
                    },
                    &admin,
                ))
                .await
                .expect("describe the role")
                .into_inner();
            users
                .update_user(authed(
                    UpdateUserRequest {
                        id: id.clone(),
                        first_name: format!("Round{round}"),
                        ..Default::default()
                    },
                    &admin,
                ))
                .await
                .expect("rename");
            let read = users
                .get_user(authed(GetUserRequest { id: id.clone() }, &admin))
                .await
                .expect("get user")
                .into_inner();
            assert_eq!(
                read.first_name,
                format!("Round{round}"),
                "GetUser of {id} after its rename"
            );
        }
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.await.expect("reader");
    }

    let listed = users
        .list_users(authed(
            pb::ListUsersRequest {
                view: pb::UserView::Full as i32,
                limit: 100,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list users")
        .into_inner()
        .users;
    for id in &ids {
        let read = users
            .get_user(authed(GetUserRequest { id: id.clone() }, &admin))
            .await
            .expect("get user")
            .into_inner();
        assert_eq!(read.first_name, "Round2", "GetUser of {id}");
        let listed = listed.iter().find(|u| &u.id == id).expect("listed");
        assert_eq!(listed.first_name, "Round2", "ListUsers of {id}");
    }
}

/// Leaving a tenant takes the roles of that tenant with it (its direct grants
/// and groups too): joining again starts from nothing that tenant granted
/// before. Global roles stay.
#[tokio::test]
async fn leaving_a_tenant_drops_its_roles_and_joining_again_brings_none_back() {
    let app = TestApp::spawn().await;
    let second = app.create_tenant("second").await.to_string();
    let global = app.global_token(&["*"]);
    let user = app.create_users(vec![draft("member@example.com")]).await.remove(0);
    let mut users = app.users();
    let membership = |add: bool| {
        let change = vec![second.clone()];
        authed(
            pb::UpdateUserTenantsRequest {
                id: user.id.clone(),
                add_tenant_ids: if add { change.clone() } else { Vec::new() },
                remove_tenant_ids: if add { Vec::new() } else { change },
            },
            &global,
        )
    };
    users.update_user_tenants(membership(true)).await.expect("join");
    let role = app
        .roles()
        .create_role(authed_in(
            pb::CreateRoleRequest {
                name: "second-reader".into(),
                permissions: vec!["users:read".into()],
                ..Default::default()
            },
            &global,
            &second,
        ))
        .await
        .expect("role in second")
        .into_inner();
    let everywhere = crate::roles::create_global_role(&app, "everywhere", &["users:list"]).await;
    users
        .update_user_roles(authed_in(
            pb::UpdateUserRolesRequest {
                id: user.id.clone(),
                add_role_ids: vec![role.id.clone(), everywhere.id.clone()],
                ..Default::default()
            },
            &global,
            &second,
        ))
        .await
        .expect("grant");
    let permissions_in_second = || authed_in(pb::GetUserPermissionsRequest { id: user.id.clone() }, &global, &second);
    let granted = users
        .get_user_permissions(permissions_in_second())
        .await
        .expect("permissions")
        .into_inner();
    let names: Vec<&str> = granted.permissions.iter().map(|p| p.permission.as_str()).collect();
    assert_eq!(names, ["users:list", "users:read"]);

    users.update_user_tenants(membership(false)).await.expect("leave");
    users.update_user_tenants(membership(true)).await.expect("join again");
    let again = users
        .get_user_permissions(permissions_in_second())
        .await
        .expect("permissions")
        .into_inner();
    let names: Vec<&str> = again.permissions.iter().map(|p| p.permission.as_str()).collect();
    assert_eq!(names, ["users:list"], "only the global role is still granted");
}

/// A draft's roles and groups are the tenant in context's, so a draft that
/// leaves that tenant out of its `tenant_ids` cannot carry them; a draft may
/// name any number of tenants without the server failing.
#[tokio::test]
async fn create_users_checks_a_drafts_tenants_against_its_roles_and_scales_its_tenant_list() {
    let app = TestApp::spawn().await;
    app.create_tenant("second").await;
    let global = app.global_token(&["*"]);
    let role = crate::roles::create_role(&app, &global, "here", &["users:read"]).await;
    let mut users = app.users();
    let status = expect_code(
        users
            .create_users(create_request(
                vec![UserDraft {
                    tenant_ids: vec!["second".into()],
                    role_ids: vec![role.id.clone()],
                    ..draft("elsewhere@example.com")
                }],
                &global,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["users[0].role_ids"]);
    users
        .create_users(create_request(
            vec![UserDraft {
                tenant_ids: vec!["default".into(), "second".into()],
                role_ids: vec![role.id],
                ..draft("both@example.com")
            }],
            &global,
        ))
        .await
        .expect("a member of the tenant in context takes its roles");

    let many = random_ids(1000);
    let status = expect_code(
        users
            .create_users(create_request(
                vec![UserDraft {
                    tenant_ids: many,
                    ..draft("many@example.com")
                }],
                &global,
            ))
            .await,
        Code::InvalidArgument,
    );
    // The details list a hundred, the message names ten and counts the
    // rest: an answer whose trailers outgrew HTTP/2's header limits would
    // end the connection instead.
    let fields = violated_fields(&status);
    assert_eq!((fields.len(), fields[0].as_str()), (100, "users[0].tenant_ids[0]"));
    assert!(status.message().ends_with("and 990 more"), "{}", status.message());
}

/// As UpdateUserTenants keeps the last owner of a tenant, DeleteUser does.
#[tokio::test]
async fn the_last_owner_of_a_tenant_is_not_deleted() {
    let app = TestApp::spawn().await;
    let global = app.global_token(&["*"]);
    let owner = app.create_users(vec![draft("owner@example.com")]).await.remove(0);
    app.create_tenant_owned_by("owned", &owner.id).await;
    let mut users = app.users();
    expect_code(
        users
            .delete_user(authed(pb::DeleteUserRequest { id: owner.id.clone() }, &global))
            .await,
        Code::FailedPrecondition,
    );
    app.tenants()
        .delete_tenant(authed(pb::DeleteTenantRequest { id: "owned".into() }, &global))
        .await
        .expect("delete the tenant");
    users
        .delete_user(authed(pb::DeleteUserRequest { id: owner.id }, &global))
        .await
        .expect("no tenant left to own");
}

/// Two removals at once cannot leave a user in no tenant: the second waits
/// for the first (on PostgreSQL through the user's row lock) and then sees
/// one tenant left.
#[tokio::test]
async fn concurrent_removals_leave_a_user_in_one_tenant() {
    let app = TestApp::spawn().await;
    for slug in ["aa", "bb"] {
        app.create_tenant(slug).await;
    }
    let global = app.global_token(&["*"]);
    let mut users = app.users();
    let user = users
        .create_users(create_request(
            vec![UserDraft {
                tenant_ids: vec!["aa".into(), "bb".into()],
                ..draft("shared@example.com")
            }],
            &global,
        ))
        .await
        .expect("create")
        .into_inner()
        .users
        .remove(0);
    let remove = |slug: &str| {
        let mut users = app.users();
        let request = authed_in(
            pb::UpdateUserTenantsRequest {
                id: user.id.clone(),
                remove_tenant_ids: vec![slug.to_owned()],
                ..Default::default()
            },
            &global,
            slug,
        );
        async move { users.update_user_tenants(request).await }
    };
    let (first, second) = tokio::join!(remove("aa"), remove("bb"));
    let mut codes = [first, second].map(|r| r.map_or_else(|s| s.code(), |_| Code::Ok));
    codes.sort_by_key(|c| *c as i32);
    assert_eq!(codes, [Code::Ok, Code::FailedPrecondition]);
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    let left = castellan::store::entity::tenant_membership::Entity::find()
        .filter(castellan::store::entity::tenant_membership::Column::UserId.eq(user_id))
        .all(&app.app.db)
        .await
        .expect("memberships");
    assert_eq!(left.len(), 1);
}

/// Two batches taking the same e-mails in opposite orders, in two tenants
/// (no tenant lock between them), at once: one creates its users and the
/// other is ALREADY_EXISTS naming a draft's e-mail, never a deadlock's
/// ABORTED (every batch inserts in one order of its keys). Two workers so
/// the batches really run at once; on SQLite and on PostgreSQL
/// (CASTELLAN_TEST_DATABASE_URL) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_taking_the_same_emails_in_opposite_orders_do_not_deadlock() {
    let app = TestApp::spawn().await;
    for slug in ["aa", "bb"] {
        app.create_tenant(slug).await;
    }
    let global = app.global_token(&["*"]);
    for round in 0..5 {
        let emails: Vec<String> = (0..20).map(|i| format!("r{round}-{i:02}@example.com")).collect();
        let create = |slug: &str, reversed: bool| {
            let mut users = app.users();
            let mut drafts: Vec<UserDraft> = emails.iter().map(|email| draft(email)).collect();
            if reversed {
                drafts.reverse();
            }
            let request = authed_in(
                CreateUsersRequest {
                    users: drafts,
                    ..Default::default()
                },
                &global,
                slug,
            );
            async move { users.create_users(request).await }
        };
        let (first, second) = tokio::join!(create("aa", false), create("bb", true));
        let mut outcomes = [first, second]
            .map(|r| r.map_or_else(|s| (s.code(), s.message().to_owned()), |_| (Code::Ok, String::new())));
        outcomes.sort_by_key(|(code, _)| *code as i32);
        assert_eq!(outcomes[0].0, Code::Ok, "round {round}: {outcomes:?}");
        assert_eq!(outcomes[1].0, Code::AlreadyExists, "round {round}: {outcomes:?}");
        assert!(
            outcomes[1].1.ends_with("].email already exists"),
            "round {round}: {outcomes:?}"
        );
    }
}

/// A user granted these roles (by id) in the tenant in context.
async fn user_with_roles(app: &TestApp, token: &str, email: &str, role_ids: &[String]) -> pb::User {
    app.users()
        .create_users(create_request(
            vec![UserDraft {
                role_ids: role_ids.to_vec(),
                ..draft(email)
            }],
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("create {email}: {e}"))
        .into_inner()
        .users
        .remove(0)
}

/// The ids of the user's direct roles, sorted.
async fn role_ids_of(app: &TestApp, token: &str, id: &str) -> Vec<String> {
    let mut ids: Vec<String> = app
        .users()
        .get_user(authed(GetUserRequest { id: id.to_owned() }, token))
        .await
        .expect("get")
        .into_inner()
        .roles
        .into_iter()
        .map(|r| r.id)
        .collect();
    ids.sort();
    ids
}

/// UpdateUser's `role_ids` replacement compares with the roles read after
/// the user's row is locked in its transaction: concurrent replacements
/// all succeed and leave exactly one list (they answered ALREADY_EXISTS or
/// left a union). Two workers so the updates really run at once; on SQLite
/// and on PostgreSQL (CASTELLAN_TEST_DATABASE_URL) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replacements_of_a_users_roles_leave_exactly_one_list() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let old = crate::roles::create_role(&app, &admin, "old", &[]).await;
    let mut roles = Vec::new();
    for name in ["a", "b", "c", "d"] {
        roles.push(crate::roles::create_role(&app, &admin, name, &["users:read"]).await.id);
    }
    roles.sort();
    let user = user_with_roles(&app, &admin, "contended@example.com", &[old.id]).await;
    let replace_all = |lists: Vec<Vec<String>>| {
        let attempts: Vec<_> = lists
            .into_iter()
            .map(|role_ids| {
                let mut users = app.users();
                let request = authed(
                    UpdateUserRequest {
                        id: user.id.clone(),
                        role_ids,
                        ..Default::default()
                    },
                    &admin,
                );
                tokio::spawn(async move { users.update_user(request).await })
            })
            .collect();
        async move {
            for attempt in attempts {
                attempt.await.expect("task").expect("every replacement succeeds");
            }
        }
    };

    // The same list ten times: each finds what it wants, or writes it.
    replace_all(vec![roles[..3].to_vec(); 10]).await;
    assert_eq!(role_ids_of(&app, &admin, &user.id).await, roles[..3]);
    // Two lists: the last one wins whole, never a union of both.
    let (first, second) = (roles[..2].to_vec(), roles[2..].to_vec());
    replace_all(
        (0..10)
            .map(|i| if i % 2 == 0 { first.clone() } else { second.clone() })
            .collect(),
    )
    .await;
    let left = role_ids_of(&app, &admin, &user.id).await;
    assert!(left == first || left == second, "one list, not a union: {left:?}");
}

/// UpdateUserRoles calls granting the same role at once all succeed (the
/// grants are written after the user's row is locked, so none trips over
/// another's row).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grants_of_one_role_all_succeed() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = crate::roles::create_role(&app, &admin, "shared", &["users:read"]).await;
    let user = user_with_roles(&app, &admin, "granted@example.com", &[]).await;
    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let mut users = app.users();
            let request = authed(
                pb::UpdateUserRolesRequest {
                    id: user.id.clone(),
                    add_role_ids: vec![role.id.clone()],
                    ..Default::default()
                },
                &admin,
            );
            tokio::spawn(async move { users.update_user_roles(request).await })
        })
        .collect();
    for attempt in attempts {
        attempt.await.expect("task").expect("every grant succeeds");
    }
    assert_eq!(role_ids_of(&app, &admin, &user.id).await, [role.id]);
}

/// UpdateUser `role_ids` and UpdateUserRoles' lists hold at most 1000 ids:
/// more is INVALID_ARGUMENT naming the list before any is looked up (70,000
/// ids once overflowed the database's bind parameters: INTERNAL).
#[tokio::test]
async fn a_users_role_lists_are_bounded() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let user = user_with_roles(&app, &admin, "bounded@example.com", &[]).await;
    let mut users = app.users();
    for (count, refusal) in [(1000, "unknown role"), (1001, "at most 1000"), (70_000, "at most 1000")] {
        let update = users
            .update_user(authed(
                UpdateUserRequest {
                    id: user.id.clone(),
                    role_ids: random_ids(count),
                    ..Default::default()
                },
                &admin,
            ))
            .await;
        expect_invalid_field(update, "role_ids", refusal);
        let add = users
            .update_user_roles(authed(
                pb::UpdateUserRolesRequest {
                    id: user.id.clone(),
                    add_role_ids: random_ids(count),
                    ..Default::default()
                },
                &admin,
            ))
            .await;
        expect_invalid_field(add, "add_role_ids", refusal);
        let remove = users
            .update_user_roles(authed(
                pb::UpdateUserRolesRequest {
                    id: user.id.clone(),
                    remove_role_ids: random_ids(count),
                    ..Default::default()
                },
                &admin,
            ))
            .await;
        if count <= 1000 {
            remove.expect("removing roles the user does not hold changes nothing");
        } else {
            expect_invalid_field(remove, "remove_role_ids", refusal);
        }
    }
}

/// A CreateUsers draft's `role_ids` and `group_ids` hold at most 1000 ids
/// each, named with the draft's index; and a batch whose drafts name tens
/// of thousands of ids between them is still checked (INVALID_ARGUMENT for
/// the unknown ones, not INTERNAL past the database's bind limit).
#[tokio::test]
async fn a_drafts_role_and_group_lists_are_bounded() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let mut users = app.users();
    for field in ["role_ids", "group_ids"] {
        for count in [1001, 70_000] {
            let mut drafts = batch(4, &format!("{field}{count}-"));
            match field {
                "role_ids" => drafts[3].role_ids = random_ids(count),
                _ => drafts[3].group_ids = random_ids(count),
            }
            let answer = users.create_users(create_request(drafts, &admin)).await;
            expect_invalid_field(answer, &format!("users[3].{field}"), "at most 1000");
        }
        // 40 drafts of 1000 ids each: 40,000 ids checked together.
        let mut drafts = batch(40, &format!("{field}-many-"));
        for draft in &mut drafts {
            match field {
                "role_ids" => draft.role_ids = random_ids(1000),
                _ => draft.group_ids = random_ids(1000),
            }
        }
        let status = expect_code(
            users.create_users(create_request(drafts, &admin)).await,
            Code::InvalidArgument,
        );
        let named = format!("users[0].{field}");
        assert_eq!(violated_fields(&status), [named.as_str()], "{}", status.message());
        assert!(status.message().contains("unknown"), "{}", status.message());
    }
}

/// UpdateUserTenants on a user removed from the tenant in context while
/// the call waits (a write the test holds open) is NOT_FOUND, as a retry
/// would answer: the membership is checked again once the user's row is
/// held. (The call went on and added the user to another tenant.)
#[tokio::test]
async fn a_user_removed_from_the_tenant_meanwhile_is_not_moved() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let global = app.global_token(&["*"]);
    let second = app.create_tenant("second").await;
    let user = app.create_users(vec![draft("leaving@example.com")]).await.remove(0);
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    // As UpdateUserTenants removes it: the user's row first.
    let removal = app.app.writer.begin().await.expect("begin");
    assert!(castellan::store::users::lock(&removal, user_id).await.expect("lock"));
    castellan::store::users::remove_memberships(&removal, user_id, &[app.tenant_id], chrono::Utc::now())
        .await
        .expect("remove the membership");
    let mut users = app.users();
    let request = authed(
        pb::UpdateUserTenantsRequest {
            id: user.id.clone(),
            add_tenant_ids: vec!["second".into()],
            remove_tenant_ids: vec![],
        },
        &global,
    );
    let call = async move { users.update_user_tenants(request).await };
    expect_code(behind(&app, removal, call).await, Code::NotFound);
    let in_second = app.token_in(second, &["users:read"]);
    expect_code(
        app.users()
            .get_user(authed(GetUserRequest { id: user.id.clone() }, &in_second))
            .await,
        Code::NotFound,
    );
}

/// Every list of tenants is bounded like a list of roles: over 1,000 keys
/// is INVALID_ARGUMENT naming the list, and none of them is looked up (a
/// request of 100,000 slugs made 200 queries).
#[tokio::test]
async fn tenant_lists_are_bounded() {
    let app = TestApp::spawn().await;
    let admin = app.global_token(&["*"]);
    let user = app.create_users(vec![draft("moving@example.com")]).await.remove(0);
    let slugs = |n: usize| (0..n).map(|i| format!("tenant-{i}")).collect::<Vec<_>>();
    let mut drafts = batch(2, "tenants-");
    drafts[1].tenant_ids = slugs(1001);
    let answer = app.users().create_users(create_request(drafts, &admin)).await;
    expect_invalid_field(answer, "users[1].tenant_ids", "at most 1000 tenants");
    let answer = app
        .users()
        .update_user_tenants(authed(
            pb::UpdateUserTenantsRequest {
                id: user.id.clone(),
                add_tenant_ids: slugs(1001),
                remove_tenant_ids: vec![],
            },
            &admin,
        ))
        .await;
    expect_invalid_field(answer, "add_tenant_ids", "at most 1000 tenants");
    let answer = app
        .users()
        .update_user(authed(
            UpdateUserRequest {
                id: user.id.clone(),
                tenant_ids: slugs(1001),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["tenant_ids".into()],
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await;
    expect_invalid_field(answer, "tenant_ids", "at most 1000 tenants");
}

/// Of a tenant's two owners, one deleted while the other's deletion waits
/// (a write the test holds open) leaves the other the last owner: its
/// deletion, which reads the owners once it holds the tenant, is refused.
#[tokio::test]
async fn an_owner_is_not_deleted_while_the_other_owner_is() {
    use castellan::store::entity::tenant_membership;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait, sea_query::Expr};
    let app = TestApp::spawn().await;
    let global = app.global_token(&["*"]);
    let first = app.create_users(vec![draft("first-owner@example.com")]).await.remove(0);
    let owned = app.create_tenant_owned_by("owned", &first.id).await;
    let second = app
        .create_users_in(owned, vec![draft("second-owner@example.com")])
        .await
        .remove(0);
    let (first, second): (uuid::Uuid, uuid::Uuid) = (first.id.parse().expect("uuid"), second.id.parse().expect("uuid"));
    let owners = || {
        tenant_membership::Entity::find()
            .filter(tenant_membership::Column::TenantId.eq(owned))
            .filter(tenant_membership::Column::IsOwner.eq(true))
            .all(&app.app.db)
    };
    tenant_membership::Entity::update_many()
        .col_expr(tenant_membership::Column::IsOwner, Expr::value(true))
        .filter(tenant_membership::Column::TenantId.eq(owned))
        .filter(tenant_membership::Column::UserId.eq(second))
        .exec(&app.app.writer)
        .await
        .expect("a second owner");
    assert_eq!(owners().await.expect("owners").len(), 2);

    let deletion = app.app.writer.begin().await.expect("begin");
    castellan::store::users::delete(&deletion, second)
        .await
        .expect("delete the second owner");
    let mut users = app.users();
    let request = authed(pb::DeleteUserRequest { id: first.to_string() }, &global);
    let delete = async move { users.delete_user(request).await };
    expect_code(behind(&app, deletion, delete).await, Code::FailedPrecondition);
    let left: Vec<uuid::Uuid> = owners().await.expect("owners").iter().map(|m| m.user_id).collect();
    assert_eq!(left, [first], "the tenant keeps an owner");
}

/// A member of two tenants holds the other tenant's roles and groups too;
/// ListUsers filtered by one of those, from the tenant in context, matches
/// no one, as for an unknown id. A global role matches in every tenant.
#[tokio::test]
async fn list_filters_by_another_tenants_role_or_group_match_no_one() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let global = app.global_token(&["*"]);
    let admin_there = app.token_in(other, &["*"]);
    let there = crate::roles::create_role(&app, &admin_there, "there", &["users:read"])
        .await
        .id;
    let group_there = crate::groups::create_group(&app, &admin_there, "there", &[]).await.id;
    let everywhere = crate::roles::create_global_role(&app, "everywhere", &["roles:read"])
        .await
        .id;
    let user = app
        .users()
        .create_users(authed_in(
            CreateUsersRequest {
                users: vec![UserDraft {
                    tenant_ids: vec!["other".into(), "default".into()],
                    role_ids: vec![there.clone(), everywhere.clone()],
                    group_ids: vec![group_there.clone()],
                    ..draft("both-tenants@example.com")
                }],
                ..Default::default()
            },
            &global,
            "other",
        ))
        .await
        .expect("a member of both tenants")
        .into_inner()
        .users
        .remove(0);
    let listed = |token: String, role_id: &str, group_id: &str| {
        let mut users = app.users();
        let request = authed(
            pb::ListUsersRequest {
                role_id: role_id.to_owned(),
                group_id: group_id.to_owned(),
                ..Default::default()
            },
            &token,
        );
        async move {
            let page = users.list_users(request).await.expect("list users").into_inner();
            let ids: Vec<String> = page.users.into_iter().map(|u| u.id).collect();
            (ids, page.total)
        }
    };
    let here = || app.token(&["users:list"]);
    let in_other = || app.token_in(other, &["users:list"]);
    let found = (vec![user.id.clone()], 1);
    assert_eq!(listed(in_other(), &there, "").await, found, "its own tenant's role");
    assert_eq!(
        listed(in_other(), "", &group_there).await,
        found,
        "its own tenant's group"
    );
    let elsewhere = (listed(here(), &there, "").await, listed(here(), "", &group_there).await);
    assert_eq!(
        elsewhere,
        ((vec![], 0), (vec![], 0)),
        "another tenant's role, and group"
    );
    assert_eq!(listed(here(), &everywhere, "").await, found, "a global role");
}

/// A request id's body compares field by field: text moved from one field
/// to the next ("a|b", "c" then "a", "b|c") is another body, not a retry.
#[tokio::test]
async fn a_request_id_resent_with_text_moved_between_fields_is_reused() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:create"]);
    let mut users = app.users();
    let request = |first_name: &str, last_name: &str| {
        authed(
            CreateUsersRequest {
                users: vec![UserDraft {
                    first_name: first_name.into(),
                    last_name: last_name.into(),
                    ..draft("named@example.com")
                }],
                request_id: "shifted".into(),
            },
            &token,
        )
    };
    users.create_users(request("a|b", "c")).await.expect("first");
    let status = expect_code(users.create_users(request("a", "b|c")).await, Code::FailedPrecondition);
    assert_eq!(error_reason(&status), "REQUEST_ID_REUSED", "{status:?}");
}

/// DeactivateUser reads the user under its row lock: a user deleted while
/// the call waited for the writer is NOT_FOUND (the update of the row read
/// before the lock found nothing to update: INTERNAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_while_its_deactivation_waits_is_not_found() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let user = app
        .create_users(vec![active_draft("leaving@example.com")])
        .await
        .remove(0);
    let id: uuid::Uuid = user.id.parse().expect("uuid");
    let deletion = app.app.writer.begin().await.expect("begin");
    castellan::store::users::delete(&deletion, id).await.expect("delete");
    let mut users = app.users();
    let request = authed(pb::DeactivateUserRequest { id: user.id.clone() }, &app.token(&["*"]));
    let deactivate = async move { users.deactivate_user(request).await };
    expect_code(behind(&app, deletion, deactivate).await, Code::NotFound);
}

/// Whom an account is shared with is read under the user's row lock: a
/// tenant's administrator whose DeleteUser waited while a global admin
/// added the user to another tenant is refused (FAILED_PRECONDITION), as if
/// it had come later; it used to delete the user, and the other tenant's
/// membership with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_shared_while_its_deletion_waits_is_not_deleted() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let user = app.create_users(vec![draft("shared@example.com")]).await.remove(0);
    let id: uuid::Uuid = user.id.parse().expect("uuid");
    // UpdateUserTenants(add other), as a global admin runs it: the user's
    // row first, then the membership.
    let sharing = app.app.writer.begin().await.expect("begin");
    castellan::store::users::lock(&sharing, id).await.expect("lock");
    castellan::store::users::add_memberships(&sharing, id, &[other], chrono::Utc::now())
        .await
        .expect("join other");
    let mut users = app.users();
    let request = authed(pb::DeleteUserRequest { id: user.id.clone() }, &app.token(&["*"]));
    let delete = async move { users.delete_user(request).await };
    let status = expect_code(behind(&app, sharing, delete).await, Code::FailedPrecondition);
    assert!(status.message().contains("other tenants"), "{}", status.message());
    assert!(
        castellan::store::users::find_in_tenant(&app.app.db, other, id)
            .await
            .expect("query")
            .is_some(),
        "the user stays, in both tenants"
    );
}

/// A username or a tenant id or slug with a control character (a NUL,
/// which PostgreSQL refuses in text) names nobody, and is not looked up:
/// GetUserByUsername is NOT_FOUND (an empty array over REST), and a list of
/// tenants naming one has a violation naming it. No e-mail address, and so
/// no username, holds one.
#[tokio::test]
async fn a_control_character_names_no_user_and_no_tenant() {
    let app = TestApp::spawn().await;
    let user = app
        .create_users(vec![active_draft("person@example.com")])
        .await
        .remove(0);
    let token = app.global_token(&["*"]);
    let mut users = app.users();
    for username in ["person\0@example.com", "person@example.com\u{1}"] {
        let request = GetUserByUsernameRequest {
            username: username.into(),
        };
        expect_code(
            users.get_user_by_username(authed(request, &token)).await,
            Code::NotFound,
        );
    }
    let client = reqwest::Client::new();
    let base = format!("http://{}", app.http_addr);
    let response = client
        .get(format!("{base}/auth/users/username/person%00%40example.com"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let found: serde_json::Value = response.json().await.expect("json");
    assert_eq!(found, serde_json::json!([]));

    for tenant in ["def\0ault", "default\u{1}"] {
        let draft = UserDraft {
            tenant_ids: vec![tenant.into()],
            ..draft("new@example.com")
        };
        expect_invalid_field(
            users.create_users(create_request(vec![draft], &token)).await,
            "users[0].tenant_ids[0]",
            "must be a tenant id or slug",
        );
        let update = UpdateUserRequest {
            id: user.id.clone(),
            tenant_ids: vec!["default".into(), tenant.into()],
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tenant_ids".into()],
            }),
            ..Default::default()
        };
        expect_invalid_field(
            users.update_user(authed(update, &token)).await,
            "tenant_ids[1]",
            "must be a tenant id or slug",
        );
        let update = pb::UpdateUserTenantsRequest {
            id: user.id.clone(),
            add_tenant_ids: vec![tenant.into()],
            remove_tenant_ids: Vec::new(),
        };
        expect_invalid_field(
            users.update_user_tenants(authed(update, &token)).await,
            "add_tenant_ids[0]",
            "must be a tenant id or slug",
        );
    }
    let response = client
        .patch(format!("{base}/auth/users/{}/tenants", user.id))
        .bearer_auth(&token)
        .json(&serde_json::json!({"addTenants": ["def\0ault"], "removeTenants": []}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["details"][0]["field"], "addTenants[0]", "{body}");

    for email in ["\"a\tb\"@example.com", "a\u{85}b@example.com"] {
        expect_invalid_field(
            users.create_users(create_request(vec![draft(email)], &token)).await,
            "users[0].email",
            "must be a valid e-mail address",
        );
    }
}

/// The user's direct role grants, as stored.
async fn stored_role_grants(app: &TestApp, user_id: &str) -> u64 {
    use castellan::store::entity::user_role;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let user_id: uuid::Uuid = user_id.parse().expect("uuid");
    user_role::Entity::find()
        .filter(user_role::Column::UserId.eq(user_id))
        .count(&app.app.db)
        .await
        .expect("count")
}

/// UpdateUserRoles granting a role deleted meanwhile (after the call
/// checked it, before its write) is refused as a role unknown from the
/// start is: INVALID_ARGUMENT naming `add_role_ids`, nothing granted, on
/// SQLite as on PostgreSQL. (It was ABORTED VERSION_MISMATCH: the grant's
/// foreign key failed.)
#[tokio::test]
async fn a_role_deleted_meanwhile_is_unknown_to_update_user_roles() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = crate::roles::create_role(&app, &admin, "fleeting", &[]).await;
    let user = app.create_users(vec![draft("granted@example.com")]).await.remove(0);
    let deletion = held_role_deletion(&app, &role.id).await;
    let mut users = app.users();
    let request = authed(
        pb::UpdateUserRolesRequest {
            id: user.id.clone(),
            add_role_ids: vec![role.id.clone()],
            remove_role_ids: vec![],
        },
        &admin,
    );
    let call = async move { users.update_user_roles(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["add_role_ids"]);
    assert_eq!(stored_role_grants(&app, &user.id).await, 0);
}

/// UpdateUser's `role_ids` with a role deleted meanwhile is refused as a
/// role unknown from the start is: INVALID_ARGUMENT naming `role_ids`,
/// nothing granted. (On PostgreSQL it was ABORTED VERSION_MISMATCH: the
/// check in the transaction still saw the role, and the grant's foreign key
/// failed.)
#[tokio::test]
async fn a_role_deleted_meanwhile_is_unknown_to_update_user() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = crate::roles::create_role(&app, &admin, "fleeting", &[]).await;
    let user = app.create_users(vec![draft("replaced@example.com")]).await.remove(0);
    let deletion = held_role_deletion(&app, &role.id).await;
    let mut users = app.users();
    let request = authed(
        UpdateUserRequest {
            id: user.id.clone(),
            role_ids: vec![role.id.clone()],
            ..Default::default()
        },
        &admin,
    );
    let call = async move { users.update_user(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["role_ids"]);
    assert_eq!(stored_role_grants(&app, &user.id).await, 0);
}

/// A draft's group deleted meanwhile (after CreateUsers checked it, before
/// its write) is refused as a group unknown from the start is:
/// INVALID_ARGUMENT naming the draft's `group_ids`, and no user is created.
/// (It was NOT_FOUND from the membership's broken foreign key, and before
/// that ABORTED VERSION_MISMATCH.)
#[tokio::test]
async fn a_drafts_group_deleted_meanwhile_is_unknown_to_create_users() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let group = crate::groups::create_group(&app, &admin, "vanishing", &[]).await;
    let deletion = held_group_deletion(&app, &group.id).await;
    let mut users = app.users();
    let request = create_request(
        vec![UserDraft {
            group_ids: vec![group.id.clone()],
            ..draft("member-to-be@example.com")
        }],
        &admin,
    );
    let call = async move { users.create_users(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["users[0].group_ids"]);
    assert_no_user(&app, &admin, "member-to-be@example.com").await;
}

/// A draft's role deleted meanwhile is refused as a role unknown from the
/// start is: INVALID_ARGUMENT naming that draft's `role_ids` (the second
/// here), and none of the batch is created.
#[tokio::test]
async fn a_drafts_role_deleted_meanwhile_is_unknown_to_create_users() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = crate::roles::create_role(&app, &admin, "fleeting", &[]).await;
    let deletion = held_role_deletion(&app, &role.id).await;
    let mut users = app.users();
    let request = create_request(
        vec![
            draft("first@example.com"),
            UserDraft {
                role_ids: vec![role.id.clone()],
                ..draft("granted-to-be@example.com")
            },
        ],
        &admin,
    );
    let call = async move { users.create_users(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["users[1].role_ids"]);
    assert_no_user(&app, &admin, "first@example.com").await;
    assert_no_user(&app, &admin, "granted-to-be@example.com").await;
}

/// No user has this username.
async fn assert_no_user(app: &TestApp, token: &str, username: &str) {
    expect_code(
        app.users()
            .get_user_by_username(authed(
                GetUserByUsernameRequest {
                    username: username.into(),
                },
                token,
            ))
            .await,
        Code::NotFound,
    );
}

/// A caller that may not name other tenants (no global role) learns nothing
/// of which exist: a tenant id or slug outside the tenant in context is
/// PERMISSION_DENIED whether or not it names a tenant, in CreateUsers,
/// UpdateUser and UpdateUserTenants; only a key that cannot name a tenant
/// is INVALID_ARGUMENT, for every caller.
#[tokio::test]
async fn a_tenant_scoped_caller_cannot_tell_an_unknown_tenant_from_another() {
    let app = TestApp::spawn().await;
    app.create_tenant("acme").await;
    let user = app
        .create_users(vec![active_draft("member@example.com")])
        .await
        .remove(0);
    let admin = app.token(&["users:*"]);
    let mut users = app.users();
    for key in ["acme", "nowhere", &uuid::Uuid::now_v7().to_string()] {
        let draft = UserDraft {
            tenant_ids: vec![key.into()],
            ..draft("new@example.com")
        };
        expect_code(
            users.create_users(create_request(vec![draft], &admin)).await,
            Code::PermissionDenied,
        );
        let update = UpdateUserRequest {
            id: user.id.clone(),
            tenant_ids: vec!["default".into(), key.into()],
            ..Default::default()
        };
        expect_code(users.update_user(authed(update, &admin)).await, Code::PermissionDenied);
        let update = pb::UpdateUserTenantsRequest {
            id: user.id.clone(),
            add_tenant_ids: vec![key.into()],
            remove_tenant_ids: Vec::new(),
        };
        expect_code(
            users.update_user_tenants(authed(update, &admin)).await,
            Code::PermissionDenied,
        );
    }
    let update = pb::UpdateUserTenantsRequest {
        id: user.id.clone(),
        add_tenant_ids: vec!["not a slug!".into()],
        remove_tenant_ids: Vec::new(),
    };
    expect_invalid_field(
        users.update_user_tenants(authed(update, &admin)).await,
        "add_tenant_ids[0]",
        "must be a tenant id or slug",
    );
    // A global caller is told which are unknown.
    let global = app.global_token(&["users:*"]);
    let update = pb::UpdateUserTenantsRequest {
        id: user.id.clone(),
        add_tenant_ids: vec!["nowhere".into()],
        remove_tenant_ids: Vec::new(),
    };
    expect_invalid_field(
        users.update_user_tenants(authed(update, &global)).await,
        "add_tenant_ids[0]",
        "unknown tenant",
    );
}
