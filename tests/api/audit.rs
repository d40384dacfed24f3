//! The audit trail: every mutation leaves exactly its event (actor, action,
//! target, request id, outcome, changed field names, never a secret),
//! refusals are recorded with their code, and ListAuditEvents filters, pages
//! and keeps tenants apart.

use castellan::{
    pb::{
        self, AcceptInvitationRequest, AddUserToGroupRequest, AuditEvent, ChangePasswordRequest, CreateGroupRequest,
        CreateRoleRequest, CreateTenantRequest, CreateUsersRequest, DeactivateUserRequest, DeleteGroupRequest,
        DeleteRoleRequest, DeleteTenantRequest, DeleteUserRequest, GetTenantRequest, GetUserRequest,
        ListAuditEventsRequest, ListUsersRequest, LoginRequest, ReactivateUserRequest, RegisterDeviceRequest,
        RemoveUserFromGroupRequest, ResetUserPasswordRequest, RevokeDeviceRequest, UpdateDeviceRequest,
        UpdateGroupRequest, UpdateRoleRequest, UpdateTenantRequest, UpdateUserRequest, UpdateUserRolesRequest,
        UpdateUserTenantsRequest, audit_service_client::AuditServiceClient, auth_service_client::AuthServiceClient,
        device_service_client::DeviceServiceClient,
    },
    store::entity::audit_event,
};
use sea_orm::EntityTrait;
use tonic::{Code, Request};

use crate::{
    helpers::{TestApp, active_draft, authed, authed_in, draft, expect_code, violated_fields},
    smtp_sink::invitation_token,
};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "Another-Secret-Passphrase-7";

/// Sends `message` with a bearer token and an `x-request-id`.
fn traced<T>(message: T, token: &str, request_id: &str) -> Request<T> {
    let mut request = authed(message, token);
    request
        .metadata_mut()
        .insert("x-request-id", request_id.parse().expect("ascii"));
    request
}

fn audit(app: &TestApp) -> AuditServiceClient<tonic::transport::Channel> {
    AuditServiceClient::new(app.channel.clone())
}

/// Every stored event, straight from the table.
async fn stored(app: &TestApp) -> Vec<audit_event::Model> {
    audit_event::Entity::find().all(&app.app.db).await.expect("query")
}

/// The events of one request id, oldest first.
async fn of_request(app: &TestApp, request_id: &str) -> Vec<audit_event::Model> {
    let mut events: Vec<_> = stored(app)
        .await
        .into_iter()
        .filter(|e| e.request_id == request_id)
        .collect();
    events.sort_by_key(|e| (e.occurred_at, e.id));
    events
}

/// Asserts that `request_id` left exactly one `ok` event with these parts.
#[track_caller]
fn assert_event(events: &[audit_event::Model], actor: &str, action: &str, target: &str, fields: &[&str]) {
    assert_eq!(events.len(), 1, "{action}: {events:?}");
    let event = &events[0];
    assert_eq!(event.actor, actor, "{action}");
    assert_eq!(event.action, format!("identity.v1.{action}"));
    assert_eq!(event.target, target, "{action}");
    assert_eq!(event.outcome, "ok", "{action}");
    let changed: Vec<String> = serde_json::from_str(&event.changed_fields).expect("a JSON array");
    assert_eq!(changed, fields, "{action}");
}

macro_rules! check {
    ($app:expr, $rid:expr, $actor:expr, $action:expr, $target:expr, [$($field:expr),*]) => {
        assert_event(&of_request($app, $rid).await, $actor, $action, &$target, &[$($field),*])
    };
}

#[tokio::test]
async fn every_mutation_of_tenants_users_roles_groups_and_devices_leaves_its_event() {
    let app = TestApp::spawn().await;
    let ops = app.global_token(&["*"]);
    let admin = app.token(&["*"]);
    let (op, svc) = ("service:operator", "service:test-service");

    // Tenants.
    let tenant = app
        .tenants()
        .create_tenant(traced(
            CreateTenantRequest {
                name: "Acme".into(),
                slug: "acme".into(),
                ..Default::default()
            },
            &ops,
            "t-create",
        ))
        .await
        .expect("create tenant")
        .into_inner();
    let tenant_target = format!("tenant:{}", tenant.id);
    check!(
        &app,
        "t-create",
        op,
        "TenantService/CreateTenant",
        tenant_target,
        ["name", "slug"]
    );
    app.tenants()
        .update_tenant(traced(
            UpdateTenantRequest {
                id: tenant.id.clone(),
                name: "Acme Corp".into(),
                ..Default::default()
            },
            &ops,
            "t-update",
        ))
        .await
        .expect("update tenant");
    check!(
        &app,
        "t-update",
        op,
        "TenantService/UpdateTenant",
        tenant_target,
        ["name"]
    );

    // Users: one event per created user.
    let created = app
        .users()
        .create_users(traced(
            CreateUsersRequest {
                users: vec![
                    pb::UserDraft {
                        first_name: "Ann".into(),
                        ..active_draft("ann@example.com")
                    },
                    draft("bob@example.com"),
                ],
                request_id: String::new(),
            },
            &admin,
            "u-create",
        ))
        .await
        .expect("create users")
        .into_inner()
        .users;
    let (ann, bob) = (created[0].id.clone(), created[1].id.clone());
    let (ann_target, bob_target) = (format!("user:{ann}"), format!("user:{bob}"));
    let events = of_request(&app, "u-create").await;
    assert_eq!(events.len(), 2, "{events:?}");
    let ann_fields = r#"["email","username","status","tenant_ids","first_name","password"]"#;
    let bob_fields = r#"["email","username","status","tenant_ids","invitation"]"#;
    for (target, fields) in [(&ann_target, ann_fields), (&bob_target, bob_fields)] {
        let event = events.iter().find(|e| &e.target == target).expect("an event per user");
        assert_eq!(
            (
                event.action.as_str(),
                event.actor.as_str(),
                event.changed_fields.as_str()
            ),
            ("identity.v1.UserService/CreateUsers", svc, fields)
        );
        assert_eq!(event.tenant_id, Some(app.tenant_id));
    }
    app.users()
        .update_user(traced(
            UpdateUserRequest {
                id: ann.clone(),
                last_name: "Lee".into(),
                max_devices: Some(2),
                ..Default::default()
            },
            &admin,
            "u-update",
        ))
        .await
        .expect("update user");
    check!(
        &app,
        "u-update",
        svc,
        "UserService/UpdateUser",
        ann_target,
        ["last_name", "max_devices"]
    );
    app.users()
        .update_user_tenants(traced(
            UpdateUserTenantsRequest {
                id: ann.clone(),
                add_tenant_ids: vec![tenant.id.clone()],
                ..Default::default()
            },
            &ops,
            "u-tenants",
        ))
        .await
        .expect("update tenants");
    check!(
        &app,
        "u-tenants",
        op,
        "UserService/UpdateUserTenants",
        ann_target,
        ["tenant_ids"]
    );
    app.users()
        .reset_user_password(traced(
            ResetUserPasswordRequest {
                id: bob.clone(),
                password: NEW_PASSWORD.into(),
                temporary: Some(false),
            },
            &admin,
            "u-reset",
        ))
        .await
        .expect("reset password");
    check!(
        &app,
        "u-reset",
        svc,
        "UserService/ResetUserPassword",
        bob_target,
        ["password", "password_change_required", "status"]
    );
    app.users()
        .deactivate_user(traced(DeactivateUserRequest { id: bob.clone() }, &admin, "u-off"))
        .await
        .expect("deactivate");
    check!(
        &app,
        "u-off",
        svc,
        "UserService/DeactivateUser",
        bob_target,
        ["status", "devices"]
    );
    app.users()
        .reactivate_user(traced(ReactivateUserRequest { id: bob.clone() }, &admin, "u-on"))
        .await
        .expect("reactivate");
    check!(&app, "u-on", svc, "UserService/ReactivateUser", bob_target, ["status"]);

    // Roles and grants.
    let role = app
        .roles()
        .create_role(traced(
            CreateRoleRequest {
                name: "viewer".into(),
                permissions: vec!["users:read".into()],
                ..Default::default()
            },
            &admin,
            "r-create",
        ))
        .await
        .expect("create role")
        .into_inner();
    let role_target = format!("role:{}", role.id);
    check!(
        &app,
        "r-create",
        svc,
        "RoleService/CreateRole",
        role_target,
        ["name", "permissions"]
    );
    app.roles()
        .update_role(traced(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: 1,
                description: Some("Reads users".into()),
                ..Default::default()
            },
            &admin,
            "r-update",
        ))
        .await
        .expect("update role");
    check!(
        &app,
        "r-update",
        svc,
        "RoleService/UpdateRole",
        role_target,
        ["version", "description"]
    );
    app.users()
        .update_user_roles(traced(
            UpdateUserRolesRequest {
                id: ann.clone(),
                add_role_ids: vec![role.id.clone()],
                ..Default::default()
            },
            &admin,
            "u-roles",
        ))
        .await
        .expect("grant role");
    check!(
        &app,
        "u-roles",
        svc,
        "UserService/UpdateUserRoles",
        ann_target,
        ["role_ids"]
    );

    // Groups and memberships.
    let group = app
        .groups()
        .create_group(traced(
            CreateGroupRequest {
                name: "support".into(),
                role_ids: vec![role.id.clone()],
                ..Default::default()
            },
            &admin,
            "g-create",
        ))
        .await
        .expect("create group")
        .into_inner();
    let group_target = format!("group:{}", group.id);
    check!(
        &app,
        "g-create",
        svc,
        "GroupService/CreateGroup",
        group_target,
        ["name", "role_ids"]
    );
    app.groups()
        .update_group(traced(
            UpdateGroupRequest {
                id: group.id.clone(),
                name: Some("helpdesk".into()),
                ..Default::default()
            },
            &admin,
            "g-update",
        ))
        .await
        .expect("update group");
    check!(
        &app,
        "g-update",
        svc,
        "GroupService/UpdateGroup",
        group_target,
        ["name"]
    );
    let membership = AddUserToGroupRequest {
        user_id: ann.clone(),
        group_id: group.id.clone(),
    };
    app.users()
        .add_user_to_group(traced(membership.clone(), &admin, "g-join"))
        .await
        .expect("join");
    check!(
        &app,
        "g-join",
        svc,
        "UserService/AddUserToGroup",
        ann_target,
        ["group_ids"]
    );
    app.users()
        .remove_user_from_group(traced(
            RemoveUserFromGroupRequest {
                user_id: ann.clone(),
                group_id: group.id.clone(),
            },
            &admin,
            "g-leave",
        ))
        .await
        .expect("leave");
    check!(
        &app,
        "g-leave",
        svc,
        "UserService/RemoveUserFromGroup",
        ann_target,
        ["group_ids"]
    );

    // Devices.
    let mut devices = DeviceServiceClient::new(app.channel.clone());
    let device = devices
        .register_device(traced(
            RegisterDeviceRequest {
                user_id: ann.clone(),
                name: "Laptop".into(),
                platform: "linux".into(),
                ..Default::default()
            },
            &admin,
            "d-register",
        ))
        .await
        .expect("register")
        .into_inner();
    let device_target = format!("device:{}", device.id);
    check!(
        &app,
        "d-register",
        svc,
        "DeviceService/RegisterDevice",
        device_target,
        ["user_id", "name", "platform", "os_version", "posture"]
    );
    devices
        .update_device(traced(
            UpdateDeviceRequest {
                id: device.id.clone(),
                name: Some("Work laptop".into()),
                ..Default::default()
            },
            &admin,
            "d-update",
        ))
        .await
        .expect("update device");
    check!(
        &app,
        "d-update",
        svc,
        "DeviceService/UpdateDevice",
        device_target,
        ["name"]
    );
    devices
        .revoke_device(traced(
            RevokeDeviceRequest { id: device.id.clone() },
            &admin,
            "d-revoke",
        ))
        .await
        .expect("revoke");
    check!(
        &app,
        "d-revoke",
        svc,
        "DeviceService/RevokeDevice",
        device_target,
        ["status", "connected"]
    );

    // Reads, traced like the mutations: they leave no event.
    let read = app
        .users()
        .get_user(traced(GetUserRequest { id: ann.clone() }, &admin, "u-get"))
        .await
        .expect("get user")
        .into_inner();
    assert_eq!(read.id, ann);
    let listed = app
        .users()
        .list_users(traced(ListUsersRequest::default(), &admin, "u-list"))
        .await
        .expect("list users")
        .into_inner()
        .users;
    assert_eq!(listed.len(), 2, "{listed:?}");
    app.tenants()
        .get_tenant(traced(GetTenantRequest { id: tenant.id.clone() }, &ops, "t-get"))
        .await
        .expect("get tenant");
    for request_id in ["u-get", "u-list", "t-get"] {
        let events = of_request(&app, request_id).await;
        assert!(events.is_empty(), "{request_id}: {events:?}");
    }

    // Deletes.
    app.groups()
        .delete_group(traced(DeleteGroupRequest { id: group.id.clone() }, &admin, "g-delete"))
        .await
        .expect("delete group");
    check!(&app, "g-delete", svc, "GroupService/DeleteGroup", group_target, []);
    app.roles()
        .delete_role(traced(
            DeleteRoleRequest {
                id: role.id.clone(),
                force: true,
            },
            &admin,
            "r-delete",
        ))
        .await
        .expect("delete role");
    check!(&app, "r-delete", svc, "RoleService/DeleteRole", role_target, []);
    app.users()
        .delete_user(traced(DeleteUserRequest { id: ann.clone() }, &ops, "u-delete"))
        .await
        .expect("delete user");
    check!(&app, "u-delete", op, "UserService/DeleteUser", ann_target, []);
    app.tenants()
        .delete_tenant(traced(DeleteTenantRequest { id: tenant.id.clone() }, &ops, "t-delete"))
        .await
        .expect("delete tenant");
    check!(&app, "t-delete", op, "TenantService/DeleteTenant", tenant_target, []);

    // No secret reached the trail, and the reads left nothing.
    let all = stored(&app).await;
    for event in &all {
        let text = format!("{event:?}");
        assert!(
            !text.contains(PASSWORD) && !text.contains(NEW_PASSWORD) && !text.contains("Bearer"),
            "{text}"
        );
        assert!(
            ![
                "identity.v1.UserService/GetUser",
                "identity.v1.UserService/ListUsers",
                "identity.v1.TenantService/GetTenant"
            ]
            .contains(&event.action.as_str()),
            "{event:?}"
        );
    }
}

#[tokio::test]
async fn password_changes_logins_and_invitations_are_recorded_without_secrets() {
    // A long outbox interval keeps the invitation mail in the outbox to read it.
    let app = TestApp::spawn_with(&["--outbox-interval", "1h"]).await;
    let users = app
        .create_users(vec![active_draft("cat@example.com"), draft("dan@example.com")])
        .await;
    let (cat, dan) = (users[0].id.clone(), users[1].id.clone());
    let mut auth = AuthServiceClient::new(app.channel.clone());

    let mut login = Request::new(LoginRequest {
        username: "cat@example.com".into(),
        password: PASSWORD.into(),
        ..Default::default()
    });
    login
        .metadata_mut()
        .insert("x-request-id", "a-login".parse().expect("ascii"));
    let token = auth.login(login).await.expect("login").into_inner().access_token;
    let actor = format!("user:{cat}");
    check!(&app, "a-login", &actor, "AuthService/Login", actor, ["last_connection"]);
    assert_eq!(of_request(&app, "a-login").await[0].tenant_id, Some(app.tenant_id));

    auth.change_password(traced(
        ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: NEW_PASSWORD.into(),
        },
        &token,
        "a-change",
    ))
    .await
    .expect("change password");
    check!(
        &app,
        "a-change",
        &actor,
        "AuthService/ChangePassword",
        actor,
        ["password", "password_change_required"]
    );

    let outbox = castellan::store::entity::mail_outbox::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    let invitation = invitation_token(&outbox[0].body);
    let mut accept = Request::new(AcceptInvitationRequest {
        token: invitation.clone(),
        password: PASSWORD.into(),
        first_name: Some("Dan".into()),
        ..Default::default()
    });
    accept
        .metadata_mut()
        .insert("x-request-id", "a-accept".parse().expect("ascii"));
    auth.accept_invitation(accept).await.expect("accept");
    let dan_actor = format!("user:{dan}");
    check!(
        &app,
        "a-accept",
        &dan_actor,
        "AuthService/AcceptInvitation",
        dan_actor,
        ["password", "status", "first_name"]
    );

    for event in stored(&app).await {
        let text = format!("{event:?}");
        for secret in [PASSWORD, NEW_PASSWORD, invitation.as_str(), token.as_str()] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

/// Asserts that `request_id` left exactly one event: `actor`'s refused
/// `action` (`UserService/DeleteUser`) with `outcome`, in the test tenant,
/// naming no field.
async fn assert_one_refusal(app: &TestApp, request_id: &str, actor: &str, action: &str, outcome: &str) {
    let events = of_request(app, request_id).await;
    assert_eq!(events.len(), 1, "{request_id}: {events:?}");
    let event = &events[0];
    assert_eq!(
        (
            event.actor.as_str(),
            event.action.as_str(),
            event.outcome.as_str(),
            event.tenant_id,
            event.changed_fields.as_str()
        ),
        (
            actor,
            format!("identity.v1.{action}").as_str(),
            outcome,
            Some(app.tenant_id),
            "[]"
        ),
        "{request_id}"
    );
}

#[tokio::test]
async fn refused_mutations_are_recorded_with_their_code_and_change_nothing() {
    let app = TestApp::spawn().await;
    let users = app.create_users(vec![active_draft("eve@example.com")]).await;
    let eve = users[0].id.clone();
    let before = stored(&app).await.len();

    // Permission missing: refused by the auth layer.
    let reader = app.token(&["users:read"]);
    expect_code(
        app.users()
            .delete_user(traced(DeleteUserRequest { id: eve.clone() }, &reader, "x-denied"))
            .await,
        Code::PermissionDenied,
    );
    // Escalation: refused by the domain.
    let granter = app.token(&["roles:*"]);
    expect_code(
        app.roles()
            .create_role(traced(
                CreateRoleRequest {
                    name: "boss".into(),
                    permissions: vec!["users:delete".into()],
                    ..Default::default()
                },
                &granter,
                "x-escalate",
            ))
            .await,
        Code::PermissionDenied,
    );
    // A rule: a granted role is not deleted without force.
    let admin = app.token(&["*"]);
    let role = app
        .roles()
        .create_role(authed(
            CreateRoleRequest {
                name: "granted".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("create role")
        .into_inner();
    app.users()
        .update_user_roles(authed(
            UpdateUserRolesRequest {
                id: eve.clone(),
                add_role_ids: vec![role.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("grant");
    expect_code(
        app.roles()
            .delete_role(traced(
                DeleteRoleRequest {
                    id: role.id.clone(),
                    force: false,
                },
                &admin,
                "x-granted",
            ))
            .await,
        Code::FailedPrecondition,
    );

    for (request_id, actor, action, outcome) in [
        (
            "x-denied",
            "service:test-service",
            "UserService/DeleteUser",
            "PERMISSION_DENIED",
        ),
        (
            "x-escalate",
            "service:test-service",
            "RoleService/CreateRole",
            "PERMISSION_DENIED",
        ),
        (
            "x-granted",
            "service:test-service",
            "RoleService/DeleteRole",
            "FAILED_PRECONDITION",
        ),
    ] {
        assert_one_refusal(&app, request_id, actor, action, outcome).await;
    }
    // Nothing refused happened: eve, the role and its grant are still there,
    // no role "boss" exists, and only the two successes and three refusals
    // were added.
    let eve_id: uuid::Uuid = eve.parse().expect("uuid");
    let role_id: uuid::Uuid = role.id.parse().expect("uuid");
    let grant = castellan::store::entity::user_role::Entity::find_by_id((eve_id, role_id))
        .one(&app.app.db)
        .await
        .expect("query");
    assert!(
        grant.is_some(),
        "eve's grant of the role must outlive the refused deletion"
    );
    let roles = castellan::store::entity::role::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    assert!(roles.iter().any(|r| r.id.to_string() == role.id));
    assert!(!roles.iter().any(|r| r.name == "boss"));
    assert!(
        castellan::store::entity::user::Entity::find_by_id(eve_id)
            .one(&app.app.db)
            .await
            .expect("query")
            .is_some()
    );
    assert_eq!(stored(&app).await.len(), before + 5);

    // An unauthenticated attempt names no actor and leaves nothing.
    expect_code(
        app.users()
            .delete_user(traced(DeleteUserRequest { id: eve.clone() }, "not-a-token", "x-anon"))
            .await,
        Code::Unauthenticated,
    );
    assert!(of_request(&app, "x-anon").await.is_empty());
}

async fn list(app: &TestApp, token: &str, request: ListAuditEventsRequest) -> pb::ListAuditEventsResponse {
    audit(app)
        .list_audit_events(authed(request, token))
        .await
        .expect("list audit events")
        .into_inner()
}

fn targets(events: &[AuditEvent]) -> Vec<String> {
    events.iter().map(|e| e.target.clone()).collect()
}

/// An act that reaches another tenant is that tenant's to read: a tenant
/// created or changed by a global caller whose token names `default`, and a
/// user created there for that tenant alone, are in the other tenant's trail
/// and not in `default`'s; a deleted tenant's trail, and its deletion, pass
/// to no tenant, for global readers only.
#[tokio::test]
async fn acts_on_another_tenant_are_in_its_trail_not_in_the_callers() {
    let app = TestApp::spawn().await;
    let ops = app.global_token(&["*"]);
    let tenant = app
        .tenants()
        .create_tenant(authed(
            CreateTenantRequest {
                name: "Acme".into(),
                slug: "acme".into(),
                ..Default::default()
            },
            &ops,
        ))
        .await
        .expect("create tenant")
        .into_inner();
    app.tenants()
        .update_tenant(authed(
            UpdateTenantRequest {
                id: tenant.id.clone(),
                name: "Acme Corp".into(),
                ..Default::default()
            },
            &ops,
        ))
        .await
        .expect("update tenant");
    let created = app
        .users()
        .create_users(authed(
            CreateUsersRequest {
                users: vec![pb::UserDraft {
                    tenant_ids: vec!["acme".into()],
                    ..draft("elsewhere@example.com")
                }],
                ..Default::default()
            },
            &ops,
        ))
        .await
        .expect("create a user of acme alone")
        .into_inner();
    let tenant_target = format!("tenant:{}", tenant.id);
    let user_target = format!("user:{}", created.users[0].id);

    let here = list(&app, &app.token(&["audit:read"]), ListAuditEventsRequest::default()).await;
    assert_eq!(
        targets(&here.events),
        [format!("tenant:{}", app.tenant_id)],
        "default's own bootstrap only"
    );
    let acme_id: uuid::Uuid = tenant.id.parse().expect("uuid");
    let there = list(
        &app,
        &app.token_in(acme_id, &["audit:read"]),
        ListAuditEventsRequest::default(),
    )
    .await;
    assert_eq!(
        targets(&there.events),
        [user_target.clone(), tenant_target.clone(), tenant_target.clone()]
    );

    app.tenants()
        .delete_tenant(authed(DeleteTenantRequest { id: tenant.id.clone() }, &ops))
        .await
        .expect("delete tenant");
    let here = list(&app, &app.token(&["audit:read"]), ListAuditEventsRequest::default()).await;
    assert_eq!(here.total, 1, "still default's bootstrap only");
    let global = list(
        &app,
        &app.global_token(&["audit:read"]),
        ListAuditEventsRequest {
            target: tenant_target.clone(),
            ..Default::default()
        },
    )
    .await;
    let actions: Vec<&str> = global.events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "identity.v1.TenantService/DeleteTenant",
            "identity.v1.TenantService/UpdateTenant",
            "identity.v1.TenantService/CreateTenant"
        ],
        "a global reader sees the deleted tenant's trail and its deletion"
    );
    assert!(global.events.iter().all(|e| e.tenant_id.is_empty()));
}

#[tokio::test]
async fn events_are_listed_newest_first_filtered_and_paged() {
    let app = TestApp::spawn().await;
    let reader = app.token(&["audit:read"]);
    // The bootstrap recorded the default tenant's creation.
    let first = list(&app, &reader, ListAuditEventsRequest::default()).await;
    assert_eq!(first.total, 1);
    assert_eq!(
        (first.events[0].actor.as_str(), first.events[0].action.as_str()),
        ("system", "bootstrap")
    );

    let users = app
        .create_users((0..5).map(|i| draft(&format!("user{i}@example.com"))).collect())
        .await;
    let ids: Vec<String> = users.iter().map(|u| format!("user:{}", u.id)).collect();
    let filter = ListAuditEventsRequest {
        action: "identity.v1.UserService/CreateUsers".into(),
        ..Default::default()
    };
    let all = list(&app, &reader, filter.clone()).await;
    assert_eq!(all.total, 5);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(targets(&all.events), newest_first);
    let event = &all.events[0];
    assert_eq!(event.tenant_id, app.tenant_id.to_string());
    assert!(event.occurred_at.is_some() && !event.id.is_empty() && !event.request_id.is_empty());
    assert_eq!(
        event.changed_fields,
        ["email", "username", "status", "tenant_ids", "invitation"]
    );

    // Keyset pages, then an offset page, cover the same order.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(
            &app,
            &reader,
            ListAuditEventsRequest {
                limit: 2,
                page_token: page_token.clone(),
                ..filter.clone()
            },
        )
        .await;
        assert_eq!(page.total, 5);
        seen.extend(targets(&page.events));
        if !page.has_next {
            assert!(page.list_completed);
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, newest_first);
    let third = list(
        &app,
        &reader,
        ListAuditEventsRequest {
            limit: 2,
            offset: 4,
            ..filter.clone()
        },
    )
    .await;
    assert_eq!(
        (targets(&third.events), third.page, third.has_previous),
        (vec![newest_first[4].clone()], 2, true)
    );

    // Actor, target and time range.
    let by_target = list(
        &app,
        &reader,
        ListAuditEventsRequest {
            target: ids[2].clone(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(targets(&by_target.events), [ids[2].clone()]);
    let by_actor = list(
        &app,
        &reader,
        ListAuditEventsRequest {
            actor: "system".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_actor.total, 1);
    let newest = all.events[0].occurred_at;
    let oldest = all.events[4].occurred_at;
    let range = list(
        &app,
        &reader,
        ListAuditEventsRequest {
            from: oldest,
            to: newest,
            ..filter.clone()
        },
    )
    .await;
    assert_eq!(
        targets(&range.events),
        newest_first[1..],
        "from inclusive, to exclusive"
    );

    // Oldest first on request.
    let oldest_first = list(
        &app,
        &reader,
        ListAuditEventsRequest {
            sort: vec!["occurredAt".into()],
            ..filter.clone()
        },
    )
    .await;
    let mut expected = newest_first.clone();
    expected.reverse();
    assert_eq!(targets(&oldest_first.events), expected);

    // Bad input names the field: a range that ends before it starts, a time
    // before the year 1 (which PostgreSQL's timestamps cannot all hold), an
    // unknown sort key, a page too large.
    let refused = |request: ListAuditEventsRequest| {
        let app = &app;
        let reader = &reader;
        async move {
            let status = expect_code(
                audit(app).list_audit_events(authed(request, reader)).await,
                Code::InvalidArgument,
            );
            violated_fields(&status)
        }
    };
    let before_the_year_1 = Some(prost_types::Timestamp {
        seconds: -300_000_000_000,
        nanos: 0,
    });
    for (request, field) in [
        (
            ListAuditEventsRequest {
                from: newest,
                to: oldest,
                ..Default::default()
            },
            "to",
        ),
        (
            ListAuditEventsRequest {
                from: before_the_year_1,
                ..Default::default()
            },
            "from",
        ),
        (
            ListAuditEventsRequest {
                sort: vec!["actor".into()],
                ..Default::default()
            },
            "sort[0]",
        ),
        (
            ListAuditEventsRequest {
                limit: 101,
                ..Default::default()
            },
            "limit",
        ),
    ] {
        assert_eq!(refused(request).await, [field]);
    }
}

#[tokio::test]
async fn audit_read_is_required_and_tenants_see_only_their_events() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    app.create_users(vec![draft("mine@example.com")]).await;
    app.create_users_in(other, vec![draft("theirs@example.com")]).await;

    expect_code(
        audit(&app)
            .list_audit_events(authed(ListAuditEventsRequest::default(), &app.token(&["users:*"])))
            .await,
        Code::PermissionDenied,
    );

    let creations = ListAuditEventsRequest {
        action: "identity.v1.UserService/CreateUsers".into(),
        ..Default::default()
    };
    let mine = list(&app, &app.token(&["audit:read"]), creations.clone()).await;
    let theirs = list(&app, &app.token_in(other, &["audit:read"]), creations.clone()).await;
    assert_eq!((mine.total, theirs.total), (1, 1));
    assert_ne!(mine.events[0].target, theirs.events[0].target);
    assert_eq!(theirs.events[0].tenant_id, other.to_string());

    // A global caller reads another tenant's trail by naming it.
    let global = app.global_token(&["audit:read"]);
    let named = audit(&app)
        .list_audit_events(authed_in(creations, &global, &other.to_string()))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(targets(&named.events), targets(&theirs.events));
}

#[tokio::test]
async fn a_rest_call_leaves_the_event_of_its_grpc_twin() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:*"]);
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/tenants/users", app.http_addr))
        .bearer_auth(&token)
        .header("x-request-id", "rest-create")
        .json(&serde_json::json!({"email": "rest@example.com", "password": PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    assert_eq!(
        response.headers().get("x-request-id").and_then(|v| v.to_str().ok()),
        Some("rest-create")
    );
    let user: serde_json::Value = response.json().await.expect("json");
    let target = format!("user:{}", user["id"].as_str().expect("id"));
    check!(
        &app,
        "rest-create",
        "service:test-service",
        "UserService/CreateUsers",
        target,
        ["email", "username", "status", "tenant_ids", "password"]
    );

    // Without an x-request-id the server assigns one, and the event carries it.
    let response = client
        .post(format!(
            "http://{}/tenants/users/{}/deactivate",
            app.http_addr,
            user["id"].as_str().expect("id")
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success());
    let assigned = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("an assigned request id")
        .to_owned();
    check!(
        &app,
        &assigned,
        "service:test-service",
        "UserService/DeactivateUser",
        target,
        ["status", "devices"]
    );
}

#[tokio::test]
async fn a_refused_rest_mutation_is_recorded_like_its_grpc_twin() {
    let app = TestApp::spawn().await;
    let users = app.create_users(vec![active_draft("eve@example.com")]).await;
    let eve = users[0].id.clone();
    let before = stored(&app).await.len();
    let client = reqwest::Client::new();
    let send = |request: reqwest::RequestBuilder, token: &str, request_id: &str| {
        request.bearer_auth(token).header("x-request-id", request_id).send()
    };
    let deactivate = |id: &str| client.post(format!("http://{}/tenants/users/{id}/deactivate", app.http_addr));
    let missing = uuid::Uuid::now_v7().to_string();

    // Permission missing: refused by the auth layer.
    let response = send(deactivate(&eve), &app.token(&["users:read"]), "rest-denied")
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    // Authorized, then refused by the domain.
    let response = send(deactivate(&missing), &app.token(&["users:*"]), "rest-missing")
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    // A refused read, and a mutation without a valid token: nothing to record.
    let response = send(
        client.get(format!("http://{}/tenants/users/{missing}", app.http_addr)),
        &app.token(&["users:read"]),
        "rest-read",
    )
    .await
    .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    let response = send(deactivate(&eve), "not-a-token", "rest-anonymous")
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);

    for (request_id, outcome) in [("rest-denied", "PERMISSION_DENIED"), ("rest-missing", "NOT_FOUND")] {
        assert_one_refusal(
            &app,
            request_id,
            "service:test-service",
            "UserService/DeactivateUser",
            outcome,
        )
        .await;
    }
    assert_eq!(stored(&app).await.len(), before + 2, "only the two refused mutations");
    let eve = castellan::store::entity::user::Entity::find_by_id(eve.parse::<uuid::Uuid>().expect("uuid"))
        .one(&app.app.db)
        .await
        .expect("query")
        .expect("eve");
    assert_eq!(eve.status, "active", "the refused deactivation changed nothing");
}
