//! The permission layer: authentication failures, permission checks, tenant
//! context, the rule table generated from the protos, and the authorization
//! matrix.

use castellan::pb::{self, GetUserRequest, ListUsersRequest, WhoAmIRequest};
use prost::Message;
use tonic::{Code, Request};

use crate::helpers::{TestApp, authed, authed_in, draft, expect_code};

#[test]
fn every_identity_rpc_has_a_rule_from_its_proto_option() {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut checked = 0;
    for file in set.file.iter().filter(|f| f.package() == "identity.v1") {
        for service in &file.service {
            for method in &service.method {
                let path = format!("/identity.v1.{}/{}", service.name(), method.name());
                assert!(pb::rule_for(&path).is_some(), "{path} has no (identity.v1.auth) rule");
                checked += 1;
            }
        }
    }
    assert!(checked >= 40, "only {checked} RPCs found");
    let rule = pb::rule_for("/identity.v1.UserService/GetUser").expect("rule");
    assert_eq!(
        (rule.permission, rule.allow_self, rule.public),
        ("users:read", true, false)
    );
    assert!(pb::rule_for("/identity.v1.AuthService/Login").expect("rule").public);
    assert_eq!(
        pb::rule_for("/identity.v1.UserService/WhoAmI")
            .expect("rule")
            .permission,
        ""
    );
}

#[tokio::test]
async fn missing_malformed_and_foreign_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let mut users = app.users();
    expect_code(
        users.list_users(Request::new(ListUsersRequest::default())).await,
        Code::Unauthenticated,
    );
    expect_code(
        users.list_users(authed(ListUsersRequest::default(), "not-a-jwt")).await,
        Code::Unauthenticated,
    );

    // Signed by another key (another server's data dir).
    let other = TestApp::spawn().await;
    let foreign = other.token(&["*"]);
    expect_code(
        users.list_users(authed(ListUsersRequest::default(), &foreign)).await,
        Code::Unauthenticated,
    );

    // A tampered payload.
    let token = app.token(&["users:read"]);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    expect_code(
        users
            .list_users(authed(ListUsersRequest::default(), &parts.join(".")))
            .await,
        Code::Unauthenticated,
    );

    // Basic instead of Bearer.
    let mut request = Request::new(ListUsersRequest::default());
    request.metadata_mut().insert(
        "authorization",
        format!("Basic {}", app.token(&["*"])).parse().expect("ascii"),
    );
    expect_code(users.list_users(request).await, Code::Unauthenticated);
}

#[tokio::test]
async fn a_token_without_the_permission_is_denied_and_wildcards_grant() {
    let app = TestApp::spawn().await;
    let mut users = app.users();
    let status = expect_code(
        users
            .create_users(authed(
                pb::CreateUsersRequest {
                    users: vec![draft("x@example.com")],
                    ..Default::default()
                },
                &app.token(&["users:read", "users:list"]),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("users:create"), "{}", status.message());
    for grant in ["users:list", "users:*", "*"] {
        users
            .list_users(authed(ListUsersRequest::default(), &app.token(&[grant])))
            .await
            .unwrap_or_else(|e| panic!("{grant}: {e}"));
    }
    expect_code(
        users
            .list_users(authed(ListUsersRequest::default(), &app.token(&["roles:*"])))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn x_tenant_id_needs_a_global_caller() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("acme").await;
    app.create_users_in(other, vec![draft("in-acme@example.com")]).await;
    let mut users = app.users();

    let local = app.token(&["*"]);
    expect_code(
        users
            .list_users(authed_in(ListUsersRequest::default(), &local, "acme"))
            .await,
        Code::PermissionDenied,
    );

    let global = app.global_token(&["users:list"]);
    let listed = users
        .list_users(authed_in(ListUsersRequest::default(), &global, &other.to_string()))
        .await
        .expect("global caller lists another tenant")
        .into_inner();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.users[0].email, "in-acme@example.com");

    let by_slug = users
        .list_users(authed_in(ListUsersRequest::default(), &global, "acme"))
        .await
        .expect("slug works too")
        .into_inner();
    assert_eq!(by_slug.total, 1);
    expect_code(
        users
            .list_users(authed_in(ListUsersRequest::default(), &global, "no-such-tenant"))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn user_tokens_follow_the_user_state_at_once() {
    let app = TestApp::spawn().await;
    let created = app.create_users(vec![draft("self@example.com")]).await;
    let id = created[0].id.clone();
    let mut users = app.users();
    let admin = app.token(&["*"]);
    // A pending user's token is refused; activate by reactivation is refused too (invitation pending).
    let token = app.user_token(&id, app.tenant_id);
    expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &token)).await,
        Code::Unauthenticated,
    );
    expect_code(
        users
            .reactivate_user(authed(pb::ReactivateUserRequest { id: id.clone() }, &admin))
            .await,
        Code::FailedPrecondition,
    );

    // An active user (created with a password) may call WhoAmI and read itself.
    let active = app
        .create_users(vec![pb::UserDraft {
            email: "active@example.com".into(),
            password: "correct horse battery".into(),
            ..Default::default()
        }])
        .await;
    let active_id = active[0].id.clone();
    let token = app.user_token(&active_id, app.tenant_id);
    let me = users
        .who_am_i(authed(WhoAmIRequest {}, &token))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(me.email, "active@example.com");
    assert_eq!(me.status, pb::UserStatus::Active as i32);
    users
        .get_user(authed(GetUserRequest { id: active_id.clone() }, &token))
        .await
        .expect("allow_self: a user reads itself");
    expect_code(
        users.get_user(authed(GetUserRequest { id: id.clone() }, &token)).await,
        Code::PermissionDenied,
    );
    expect_code(
        users.list_users(authed(ListUsersRequest::default(), &token)).await,
        Code::PermissionDenied,
    );

    // Deactivation: the very next call is refused.
    users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: active_id.clone() }, &admin))
        .await
        .expect("deactivate");
    expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &token)).await,
        Code::Unauthenticated,
    );
    users
        .reactivate_user(authed(pb::ReactivateUserRequest { id: active_id.clone() }, &admin))
        .await
        .expect("reactivate");
    users
        .who_am_i(authed(WhoAmIRequest {}, &token))
        .await
        .expect("works again");

    // Deletion: refused at once.
    users
        .delete_user(authed(pb::DeleteUserRequest { id: active_id.clone() }, &admin))
        .await
        .expect("delete");
    expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &token)).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn the_bootstrap_admin_holds_every_permission_through_its_global_role() {
    let app = TestApp::spawn_with(&[
        "--bootstrap-admin-email",
        "root@example.com",
        "--bootstrap-admin-password",
        "correct horse battery staple",
    ])
    .await;
    let admin = castellan::store::users::find_by_username_in_tenant(&app.app.db, app.tenant_id, "root@example.com")
        .await
        .expect("query")
        .expect("admin created");
    let token = app.user_token(&admin.id.to_string(), app.tenant_id);
    let mut users = app.users();
    let me = users
        .who_am_i(authed(WhoAmIRequest {}, &token))
        .await
        .expect("whoami")
        .into_inner();
    assert!(me.is_owner);
    assert_eq!(me.roles.len(), 1);
    assert_eq!(me.roles[0].name, "admin");
    assert_eq!(me.roles[0].permissions, vec!["*".to_owned()]);
    users
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![draft("made-by-admin@example.com")],
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("admin creates users");
    // A global role lets the admin act in another tenant.
    let other = app.create_tenant("elsewhere").await;
    users
        .list_users(authed_in(ListUsersRequest::default(), &token, &other.to_string()))
        .await
        .expect("global role crosses tenants");
}

/// (RPC, caller, same or other tenant) → expected code.
#[tokio::test]
async fn authorization_matrix() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let here = app.create_users(vec![draft("here@example.com")]).await[0].id.clone();
    let there = app.create_users_in(other, vec![draft("there@example.com")]).await[0]
        .id
        .clone();
    let mut users = app.users();

    let reader = app.token(&["users:read"]);
    let nobody = app.token(&["tenants:read"]);
    let cases: Vec<(&str, &str, &String, Code)> = vec![
        ("GetUser", "reader", &here, Code::Ok),
        ("GetUser", "reader", &there, Code::NotFound),
        ("GetUser", "nobody", &here, Code::PermissionDenied),
        ("GetUser", "nobody", &there, Code::PermissionDenied),
        ("DeleteUser", "reader", &here, Code::PermissionDenied),
        ("DeactivateUser", "reader", &here, Code::PermissionDenied),
    ];
    for (rpc, caller, target, expected) in cases {
        let token = if caller == "reader" { &reader } else { &nobody };
        let result = match rpc {
            "GetUser" => users
                .get_user(authed(GetUserRequest { id: target.clone() }, token))
                .await
                .map(|_| ()),
            "DeleteUser" => users
                .delete_user(authed(pb::DeleteUserRequest { id: target.clone() }, token))
                .await
                .map(|_| ()),
            _ => users
                .deactivate_user(authed(pb::DeactivateUserRequest { id: target.clone() }, token))
                .await
                .map(|_| ()),
        };
        let code = result.map_or_else(|s| s.code(), |_| Code::Ok);
        assert_eq!(code, expected, "{rpc} by {caller} on {target}");
    }

    // Every mutating user RPC on a user of another tenant is NOT_FOUND for an all-powerful local token.
    let admin = app.token(&["*"]);
    let codes = [
        users
            .delete_user(authed(pb::DeleteUserRequest { id: there.clone() }, &admin))
            .await
            .map(|_| ()),
        users
            .deactivate_user(authed(pb::DeactivateUserRequest { id: there.clone() }, &admin))
            .await
            .map(|_| ()),
        users
            .reactivate_user(authed(pb::ReactivateUserRequest { id: there.clone() }, &admin))
            .await
            .map(|_| ()),
        users
            .update_user(authed(
                pb::UpdateUserRequest {
                    id: there.clone(),
                    first_name: "X".into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .map(|_| ()),
        users
            .update_user_tenants(authed(
                pb::UpdateUserTenantsRequest {
                    id: there.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .map(|_| ()),
        users
            .get_user_by_username(authed(
                pb::GetUserByUsernameRequest {
                    username: "there@example.com".into(),
                },
                &admin,
            ))
            .await
            .map(|_| ()),
    ];
    for (i, result) in codes.into_iter().enumerate() {
        assert_eq!(
            result.map_or_else(|s| s.code(), |_| Code::Ok),
            Code::NotFound,
            "case {i}"
        );
    }
}

#[tokio::test]
async fn rpcs_of_later_issues_answer_unimplemented_after_authorization() {
    let app = TestApp::spawn().await;
    let mut audit = castellan::pb::audit_service_client::AuditServiceClient::new(app.channel.clone());
    expect_code(
        audit
            .list_audit_events(authed(
                pb::ListAuditEventsRequest::default(),
                &app.token(&["audit:read"]),
            ))
            .await,
        Code::Unimplemented,
    );
    expect_code(
        audit
            .list_audit_events(authed(
                pb::ListAuditEventsRequest::default(),
                &app.token(&["users:read"]),
            ))
            .await,
        Code::PermissionDenied,
    );
}
