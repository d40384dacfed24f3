//! PermissionService: services register their own permissions, which then
//! work in roles, groups and direct grants like built-in ones, and ask
//! CheckPermission whether a user holds one; revocations hold from the next
//! check.

use castellan::{
    pb::{
        self, CheckDenialReason, CheckPermissionRequest, CheckPermissionResponse, CheckPermissionsRequest,
        PermissionDefinition, PermissionSource, RegisterPermissionsRequest, UnregisterPermissionsRequest,
        check_permission_request::Subject, permission_service_client::PermissionServiceClient,
    },
    store::entity::audit_event,
};
use sea_orm::EntityTrait;
use tonic::{Code, transport::Channel};
use uuid::Uuid;

use crate::{
    groups::create_group,
    helpers::{TestApp, active_draft, authed, behind, draft, expect_code, violated_fields},
    roles::create_role,
};

fn client(app: &TestApp) -> PermissionServiceClient<Channel> {
    PermissionServiceClient::new(app.channel.clone())
}

fn definitions(names: &[&str]) -> Vec<PermissionDefinition> {
    names
        .iter()
        .map(|name| PermissionDefinition {
            name: (*name).to_owned(),
            description: format!("Allows {name}"),
        })
        .collect()
}

fn register_request(namespace: &str, names: &[&str]) -> RegisterPermissionsRequest {
    RegisterPermissionsRequest {
        namespace: namespace.to_owned(),
        permissions: definitions(names),
    }
}

/// Registers `billing:invoices:read`, `billing:invoices:refund` and
/// `billing:export` with a global token.
async fn register_billing(app: &TestApp) {
    client(app)
        .register_permissions(authed(
            register_request(
                "billing",
                &["billing:invoices:read", "billing:invoices:refund", "billing:export"],
            ),
            &app.global_token(&["permissions:register"]),
        ))
        .await
        .expect("register billing");
}

/// A server with the billing permissions registered, and a token holding
/// everything in its default tenant.
async fn billing_app() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    register_billing(&app).await;
    let admin = app.token(&["*"]);
    (app, admin)
}

fn by_user(user_id: &str, permission: &str) -> CheckPermissionRequest {
    CheckPermissionRequest {
        subject: Some(Subject::UserId(user_id.to_owned())),
        permission: permission.to_owned(),
        tenant_id: String::new(),
    }
}

fn by_token(token: &str, permission: &str) -> CheckPermissionRequest {
    CheckPermissionRequest {
        subject: Some(Subject::AccessToken(token.to_owned())),
        permission: permission.to_owned(),
        tenant_id: String::new(),
    }
}

/// A CheckPermission call with a service token holding only `permissions:check`.
async fn check(app: &TestApp, request: CheckPermissionRequest) -> CheckPermissionResponse {
    client(app)
        .check_permission(authed(request, &app.token(&["permissions:check"])))
        .await
        .expect("check")
        .into_inner()
}

/// Asserts a refusal and its reason.
#[track_caller]
fn assert_denied(response: &CheckPermissionResponse, reason: CheckDenialReason) {
    assert!(!response.allowed, "{response:?}");
    assert_eq!(response.reason(), reason, "{response:?}");
    assert!(response.sources.is_empty(), "{response:?}");
}

#[track_caller]
fn assert_allowed(response: &CheckPermissionResponse, sources: &[PermissionSource]) {
    assert!(response.allowed, "{response:?}");
    assert_eq!(response.reason(), CheckDenialReason::Unspecified);
    assert_eq!(response.sources, sources);
}

fn role_source(role_id: &str) -> PermissionSource {
    PermissionSource {
        role_id: role_id.to_owned(),
        ..Default::default()
    }
}

fn direct_source() -> PermissionSource {
    PermissionSource {
        direct: true,
        ..Default::default()
    }
}

async fn namespace_names(app: &TestApp) -> Vec<String> {
    app.roles()
        .list_permissions(authed(
            pb::ListPermissionsRequest {
                limit: 1000,
                ..Default::default()
            },
            &app.token(&["roles:read"]),
        ))
        .await
        .expect("list permissions")
        .into_inner()
        .permissions
        .into_iter()
        .filter(|p| p.namespace == "billing")
        .map(|p| p.name)
        .collect()
}

async fn grant_role(app: &TestApp, admin: &str, user_id: &str, add: &[&str], remove: &[&str]) {
    app.users()
        .update_user_roles(authed(
            pb::UpdateUserRolesRequest {
                id: user_id.to_owned(),
                add_role_ids: add.iter().map(|r| r.to_string()).collect(),
                remove_role_ids: remove.iter().map(|r| r.to_string()).collect(),
            },
            admin,
        ))
        .await
        .expect("update user roles");
}

/// Replaces the user's direct grants (UpdateUser `permissions`).
async fn grant_directly(app: &TestApp, admin: &str, user_id: &str, permissions: &[&str]) {
    app.users()
        .update_user(authed(
            pb::UpdateUserRequest {
                id: user_id.to_owned(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .expect("direct grants");
}

#[tokio::test]
async fn registration_is_idempotent_validated_and_for_global_callers_only() {
    let app = TestApp::spawn().await;
    let global = app.global_token(&["permissions:register"]);
    let mut permissions = client(&app);

    let first = permissions
        .register_permissions(authed(
            register_request("billing", &["billing:invoices:refund", "billing:invoices:read"]),
            &global,
        ))
        .await
        .expect("register")
        .into_inner();
    let names: Vec<&str> = first.permissions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["billing:invoices:read", "billing:invoices:refund"], "sorted");

    // Again, with a new description and one more name: updated, not duplicated.
    let mut again = register_request("billing", &["billing:invoices:read", "billing:export"]);
    again.permissions[0].description = "Read invoices".into();
    let second = permissions
        .register_permissions(authed(again.clone(), &global))
        .await
        .expect("register again")
        .into_inner();
    let names: Vec<&str> = second.permissions.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["billing:export", "billing:invoices:read", "billing:invoices:refund"]
    );
    assert_eq!(second.permissions[1].description, "Read invoices");
    let third = permissions
        .register_permissions(authed(again, &global))
        .await
        .expect("idempotent")
        .into_inner();
    assert_eq!(third, second);

    // The catalog lists them with their namespace, beside the built-in ones.
    let catalog = app
        .roles()
        .list_permissions(authed(
            pb::ListPermissionsRequest {
                limit: 1000,
                ..Default::default()
            },
            &app.token(&["roles:read"]),
        ))
        .await
        .expect("catalog")
        .into_inner()
        .permissions;
    let read = catalog
        .iter()
        .find(|p| p.name == "billing:invoices:read")
        .expect("registered permission listed");
    assert_eq!(
        (read.namespace.as_str(), read.description.as_str(), read.built_in),
        ("billing", "Read invoices", false)
    );
    let users_read = catalog.iter().find(|p| p.name == "users:read").expect("built-in");
    assert_eq!((users_read.namespace.as_str(), users_read.built_in), ("users", true));

    // Castellan's namespaces are reserved.
    for reserved in ["tenants", "users", "roles", "groups", "devices", "audit", "permissions"] {
        let status = expect_code(
            permissions
                .register_permissions(authed(
                    register_request(reserved, &[&format!("{reserved}:fly")]),
                    &global,
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), ["namespace"], "{reserved}");
    }

    // Names: the namespace's prefix, well formed, no wildcard, once; a description.
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("billing", &["shipping:read"], &["permissions[0].name"]),
        ("billing", &["billingx:read"], &["permissions[0].name"]),
        ("billing", &["billing:*"], &["permissions[0].name"]),
        ("billing", &["billing:Invoices"], &["permissions[0].name"]),
        ("billing", &["billing::read"], &["permissions[0].name"]),
        ("billing", &["billing"], &["permissions[0].name"]),
        (
            "billing",
            &["billing:a", "billing:a", "billing:b c"],
            &["permissions[1].name", "permissions[2].name"],
        ),
        ("Bad NS", &["Bad NS:x"], &["namespace", "permissions[0].name"]),
        ("", &["billing:a"], &["namespace", "permissions[0].name"]),
        ("billing", &[], &["permissions"]),
    ];
    for (namespace, names, fields) in cases {
        let status = expect_code(
            permissions
                .register_permissions(authed(register_request(namespace, names), &global))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), *fields, "{namespace} {names:?}");
    }
    let mut undescribed = register_request("billing", &["billing:new"]);
    undescribed.permissions[0].description = " ".into();
    let status = expect_code(
        permissions.register_permissions(authed(undescribed, &global)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["permissions[0].description"]);
    let too_many: Vec<String> = (0..1001).map(|i| format!("billing:p{i}")).collect();
    let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
    let status = expect_code(
        permissions
            .register_permissions(authed(register_request("billing", &too_many), &global))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["permissions"]);

    // All or nothing: a valid name beside an invalid one is not written.
    expect_code(
        permissions
            .register_permissions(authed(
                register_request("billing", &["billing:fresh", "shipping:read"]),
                &global,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        namespace_names(&app).await,
        ["billing:export", "billing:invoices:read", "billing:invoices:refund"]
    );

    // Only global callers change the shared catalog; the permission is needed too.
    let tenant_admin = app.token(&["*"]);
    let status = expect_code(
        permissions
            .register_permissions(authed(register_request("crm", &["crm:read"]), &tenant_admin))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("global"), "{}", status.message());
    expect_code(
        permissions
            .unregister_permissions(authed(
                UnregisterPermissionsRequest {
                    namespace: "billing".into(),
                    names: vec!["billing:export".into()],
                    force: true,
                },
                &tenant_admin,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        permissions
            .register_permissions(authed(
                register_request("crm", &["crm:read"]),
                &app.global_token(&["roles:*", "permissions:check"]),
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(namespace_names(&app).await.len(), 3, "nothing changed");
}

#[tokio::test]
async fn registered_permissions_are_granted_by_roles_groups_direct_grants_and_wildcards() {
    let (app, admin) = billing_app().await;
    let users = app
        .create_users(vec![
            active_draft("reader@example.com"),
            active_draft("team@example.com"),
            active_draft("direct@example.com"),
        ])
        .await;
    let (reader, member, direct) = (&users[0], &users[1], &users[2]);

    // A role carrying a registered permission, granted to a user.
    let readers = create_role(&app, &admin, "invoice-readers", &["billing:invoices:read"]).await;
    grant_role(&app, &admin, &reader.id, &[&readers.id], &[]).await;
    // A wildcard over the namespace, through a group's role.
    let billing_all = create_role(&app, &admin, "billing-all", &["billing:*"]).await;
    let team = create_group(&app, &admin, "finance", &[&billing_all.id]).await;
    app.users()
        .add_user_to_group(authed(
            pb::AddUserToGroupRequest {
                user_id: member.id.clone(),
                group_id: team.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("join");
    // A direct grant.
    grant_directly(&app, &admin, &direct.id, &["billing:export"]).await;
    // Unregistered permissions are still refused in grants.
    let status = expect_code(
        app.roles()
            .create_role(authed(
                pb::CreateRoleRequest {
                    name: "payments".into(),
                    permissions: vec!["billing:payments:read".into(), "billing:payments:*".into()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["permissions[0]", "permissions[1]"]);

    // By user id.
    let answer = check(&app, by_user(&reader.id, "billing:invoices:read")).await;
    assert_allowed(&answer, &[role_source(&readers.id)]);
    assert_eq!(answer.user_id, reader.id);
    assert_eq!(answer.tenant_id, app.tenant_id.to_string());
    assert_denied(
        &check(&app, by_user(&reader.id, "billing:invoices:refund")).await,
        CheckDenialReason::NotGranted,
    );
    let via_group = PermissionSource {
        role_id: billing_all.id.clone(),
        group_id: team.id.clone(),
        direct: false,
    };
    for permission in ["billing:invoices:refund", "billing:export", "billing:anything-new"] {
        assert_allowed(
            &check(&app, by_user(&member.id, permission)).await,
            std::slice::from_ref(&via_group),
        );
    }
    assert_denied(
        &check(&app, by_user(&member.id, "billingx:read")).await,
        CheckDenialReason::NotGranted,
    );
    assert_allowed(
        &check(&app, by_user(&direct.id, "billing:export")).await,
        &[direct_source()],
    );
    assert_denied(
        &check(&app, by_user(&direct.id, "billing:invoices:read")).await,
        CheckDenialReason::NotGranted,
    );

    // By the access token the user presented (as Login issues it).
    let member_token = app.user_token(&member.id, app.tenant_id);
    let answer = check(&app, by_token(&member_token, "billing:invoices:read")).await;
    assert_allowed(&answer, std::slice::from_ref(&via_group));
    assert_eq!(answer.user_id, member.id);
    assert_denied(
        &check(&app, by_token(&member_token, "users:read")).await,
        CheckDenialReason::NotGranted,
    );

    // Sources of every covering grant: exact name and wildcard, direct first.
    grant_role(&app, &admin, &member.id, &[&readers.id], &[]).await;
    grant_directly(&app, &admin, &member.id, &["billing:invoices:*"]).await;
    assert_allowed(
        &check(&app, by_user(&member.id, "billing:invoices:read")).await,
        &[direct_source(), role_source(&readers.id), via_group.clone()],
    );

    // The tenant in context is the default; the caller's own tenant may be named.
    let mut explicit = by_user(&reader.id, "billing:invoices:read");
    explicit.tenant_id = app.tenant_id.to_string();
    assert!(check(&app, explicit).await.allowed);
}

/// A token signed with the server's key whose expiry is past the leeway.
fn expired_token(app: &TestApp, user_id: &str) -> String {
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
    let pem = std::fs::read_to_string(app.app.config.signing_key_path()).expect("signing key");
    let der = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .expect("ed25519 key")
        .to_pkcs8_der()
        .expect("der");
    let key = jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = app.app.keys.jwks()["keys"][0]["kid"].as_str().map(str::to_owned);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = castellan::auth::token::Claims {
        iss: app.app.config.issuer.clone(),
        aud: app.app.config.audience.clone(),
        sub: user_id.to_owned(),
        tid: app.tenant_id.to_string(),
        exp: now - 600,
        iat: now - 1200,
        nbf: now - 1200,
        jti: Uuid::now_v7().to_string(),
        kind: castellan::auth::token::SubjectKind::User,
        perms: Vec::new(),
        global: false,
        generation: 0,
    };
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

#[tokio::test]
async fn refusals_say_why_without_revealing_other_tenants() {
    let (app, admin) = billing_app().await;
    let other = app.create_tenant("other").await;
    let role = create_role(&app, &admin, "billing", &["billing:*"]).await;
    let users = app
        .create_users(vec![
            active_draft("active@example.com"),
            active_draft("gone@example.com"),
            draft("pending@example.com"),
            pb::UserDraft {
                temporary_password: true,
                ..active_draft("temporary@example.com")
            },
        ])
        .await;
    for user in &users {
        grant_role(&app, &admin, &user.id, &[&role.id], &[]).await;
    }
    let (active, gone, pending, temporary) = (&users[0], &users[1], &users[2], &users[3]);
    app.users()
        .deactivate_user(authed(pb::DeactivateUserRequest { id: gone.id.clone() }, &admin))
        .await
        .expect("deactivate");
    let foreign = app
        .create_users_in(other, vec![active_draft("foreign@example.com")])
        .await
        .remove(0);
    let foreign_role = create_role(&app, &app.token_in(other, &["*"]), "everything", &["*"]).await;
    grant_role(
        &app,
        &app.token_in(other, &["*"]),
        &foreign.id,
        &[&foreign_role.id],
        &[],
    )
    .await;
    let permission = "billing:invoices:read";

    assert!(check(&app, by_user(&active.id, permission)).await.allowed);
    // Unknown subjects: another tenant's user (by id, and by its own token),
    // an id nobody has; the same answer for both.
    for request in [
        by_user(&foreign.id, permission),
        by_token(&app.user_token(&foreign.id, other), permission),
        by_user(&Uuid::now_v7().to_string(), permission),
    ] {
        assert_denied(&check(&app, request).await, CheckDenialReason::UnknownSubject);
    }
    // A token issued for another tenant does not speak for this one, even
    // for a member of both.
    app.users()
        .update_user_tenants(authed(
            pb::UpdateUserTenantsRequest {
                id: active.id.clone(),
                add_tenant_ids: vec![other.to_string()],
                ..Default::default()
            },
            &app.global_token(&["*"]),
        ))
        .await
        .expect("member of both");
    assert_denied(
        &check(&app, by_token(&app.user_token(&active.id, other), permission)).await,
        CheckDenialReason::UnknownSubject,
    );
    // Not active: deactivated, pending, or a temporary password to change.
    for user in [gone, pending, temporary] {
        let answer = check(&app, by_user(&user.id, permission)).await;
        assert_denied(&answer, CheckDenialReason::InactiveSubject);
        assert_eq!(answer.user_id, user.id);
    }
    assert_denied(
        &check(&app, by_token(&app.user_token(&gone.id, app.tenant_id), permission)).await,
        CheckDenialReason::InactiveSubject,
    );
    // Tokens that do not verify, and service tokens: invalid.
    let valid = app.user_token(&active.id, app.tenant_id);
    let mut tampered: Vec<String> = valid.split('.').map(str::to_owned).collect();
    let flipped = if tampered[2].starts_with('A') { "B" } else { "A" };
    tampered[2] = format!("{flipped}{}", &tampered[2][1..]);
    let other_server = TestApp::spawn().await;
    for token in [
        tampered.join("."),
        expired_token(&app, &active.id),
        other_server.user_token(&active.id, app.tenant_id),
        app.token(&["*"]),
        "not-a-jwt".to_owned(),
    ] {
        let answer = check(&app, by_token(&token, permission)).await;
        assert_denied(&answer, CheckDenialReason::InvalidToken);
        assert_eq!(answer.user_id, "");
    }
    assert!(check(&app, by_token(&valid, permission)).await.allowed);

    // Malformed requests are INVALID_ARGUMENT naming the field.
    let mut permissions = client(&app);
    let checker = app.token(&["permissions:check"]);
    let malformed = [
        (
            CheckPermissionRequest {
                subject: None,
                permission: permission.into(),
                tenant_id: String::new(),
            },
            "subject",
        ),
        (by_user("nope", permission), "user_id"),
        (by_token(" ", permission), "access_token"),
        (by_user(&active.id, ""), "permission"),
        (by_user(&active.id, "billing:*"), "permission"),
        (by_user(&active.id, "billing"), "permission"),
        (
            CheckPermissionRequest {
                tenant_id: "default".into(),
                ..by_user(&active.id, permission)
            },
            "tenant_id",
        ),
    ];
    for (request, field) in malformed {
        let status = expect_code(
            permissions.check_permission(authed(request, &checker)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
    }

    // Tenant scope: another tenant needs a global caller, and must exist.
    let in_other = CheckPermissionRequest {
        tenant_id: other.to_string(),
        ..by_user(&foreign.id, permission)
    };
    expect_code(
        permissions.check_permission(authed(in_other.clone(), &checker)).await,
        Code::PermissionDenied,
    );
    let global = app.global_token(&["permissions:check"]);
    let answer = permissions
        .check_permission(authed(in_other, &global))
        .await
        .expect("global check in another tenant")
        .into_inner();
    assert_allowed(&answer, &[role_source(&foreign_role.id)]);
    assert_eq!(answer.tenant_id, other.to_string());
    expect_code(
        permissions
            .check_permission(authed(
                CheckPermissionRequest {
                    tenant_id: Uuid::now_v7().to_string(),
                    ..by_user(&active.id, permission)
                },
                &global,
            ))
            .await,
        Code::NotFound,
    );
    // The caller needs permissions:check.
    expect_code(
        permissions
            .check_permission(authed(by_user(&active.id, permission), &app.token(&["billing:*"])))
            .await,
        Code::PermissionDenied,
    );
    // A token revoked by a password reset is invalid, though the reset's
    // temporary password makes its user, asked about by id, inactive until
    // it changes it.
    app.users()
        .reset_user_password(authed(
            pb::ResetUserPasswordRequest {
                id: active.id.clone(),
                password: "a brand new secret".into(),
                temporary: None,
            },
            &app.global_token(&["users:password-reset"]),
        ))
        .await
        .expect("reset");
    let answer = check(&app, by_token(&valid, permission)).await;
    assert_denied(&answer, CheckDenialReason::InvalidToken);
    assert_eq!(answer.user_id, "");
    assert_denied(
        &check(&app, by_user(&active.id, permission)).await,
        CheckDenialReason::InactiveSubject,
    );
}

#[tokio::test]
async fn revocations_hold_from_the_very_next_check() {
    let (app, admin) = billing_app().await;
    let user = app
        .create_users(vec![active_draft("revoked@example.com")])
        .await
        .remove(0);
    let token = app.user_token(&user.id, app.tenant_id);
    let role = create_role(&app, &admin, "refunds", &["billing:invoices:refund"]).await;
    let permission = "billing:invoices:refund";
    // Both subject kinds, each checked twice so the cache is warm.
    let allowed = || async {
        let mut answers = Vec::new();
        for request in [by_user(&user.id, permission), by_token(&token, permission)] {
            for _ in 0..2 {
                answers.push(check(&app, request.clone()).await);
            }
        }
        let allowed = answers[0].allowed;
        assert!(answers.iter().all(|a| a.allowed == allowed), "{answers:?}");
        allowed
    };

    // The role granted, then taken from the user.
    grant_role(&app, &admin, &user.id, &[&role.id], &[]).await;
    assert!(allowed().await);
    grant_role(&app, &admin, &user.id, &[], &[&role.id]).await;
    assert!(!allowed().await, "role removed from the user");

    // The role's permission removed.
    grant_role(&app, &admin, &user.id, &[&role.id], &[]).await;
    assert!(allowed().await);
    app.roles()
        .update_role(authed(
            pb::UpdateRoleRequest {
                id: role.id.clone(),
                version: role.version,
                remove_permissions: vec![permission.into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("narrow the role");
    assert!(!allowed().await, "permission removed from the role");
    grant_role(&app, &admin, &user.id, &[], &[&role.id]).await;

    // The user removed from a group carrying it.
    let wide = create_role(&app, &admin, "billing-all", &["billing:*"]).await;
    let group = create_group(&app, &admin, "finance", &[&wide.id]).await;
    let membership = || pb::AddUserToGroupRequest {
        user_id: user.id.clone(),
        group_id: group.id.clone(),
    };
    app.users()
        .add_user_to_group(authed(membership(), &admin))
        .await
        .expect("join");
    assert!(allowed().await);
    app.users()
        .remove_user_from_group(authed(
            pb::RemoveUserFromGroupRequest {
                user_id: user.id.clone(),
                group_id: group.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("leave");
    assert!(!allowed().await, "user removed from the group");

    // Deactivation.
    app.users()
        .add_user_to_group(authed(membership(), &admin))
        .await
        .expect("join again");
    assert!(allowed().await);
    app.users()
        .deactivate_user(authed(pb::DeactivateUserRequest { id: user.id.clone() }, &admin))
        .await
        .expect("deactivate");
    assert!(!allowed().await, "deactivated");
    assert_denied(
        &check(&app, by_user(&user.id, permission)).await,
        CheckDenialReason::InactiveSubject,
    );
    app.users()
        .reactivate_user(authed(pb::ReactivateUserRequest { id: user.id.clone() }, &admin))
        .await
        .expect("reactivate");
    // Reactivated: allowed again, though not through the token issued
    // before the deactivation, which stays revoked.
    assert!(check(&app, by_user(&user.id, permission)).await.allowed, "reactivated");
    assert_denied(
        &check(&app, by_token(&token, permission)).await,
        CheckDenialReason::InvalidToken,
    );
}

#[tokio::test]
async fn batches_answer_in_order_and_take_at_most_100_checks() {
    let (app, admin) = billing_app().await;
    let user = app
        .create_users(vec![active_draft("batch@example.com")])
        .await
        .remove(0);
    let role = create_role(&app, &admin, "readers", &["billing:invoices:read"]).await;
    grant_role(&app, &admin, &user.id, &[&role.id], &[]).await;
    let checker = app.token(&["permissions:check"]);
    let mut permissions = client(&app);
    let batch = |checks: Vec<CheckPermissionRequest>| authed(CheckPermissionsRequest { checks }, &checker);

    let checks = vec![
        by_user(&user.id, "billing:invoices:read"),
        by_user(&user.id, "billing:export"),
        by_user(&Uuid::now_v7().to_string(), "billing:invoices:read"),
        by_token("forged", "billing:invoices:read"),
        by_token(&app.user_token(&user.id, app.tenant_id), "billing:invoices:read"),
    ];
    let results = permissions
        .check_permissions(batch(checks))
        .await
        .expect("batch")
        .into_inner()
        .results;
    let summary: Vec<(bool, CheckDenialReason)> = results.iter().map(|r| (r.allowed, r.reason())).collect();
    assert_eq!(
        summary,
        [
            (true, CheckDenialReason::Unspecified),
            (false, CheckDenialReason::NotGranted),
            (false, CheckDenialReason::UnknownSubject),
            (false, CheckDenialReason::InvalidToken),
            (true, CheckDenialReason::Unspecified),
        ]
    );
    assert_eq!(results[0].sources, [role_source(&role.id)]);

    // 100 is fine and keeps the order; 101 and 0 are refused.
    let hundred: Vec<CheckPermissionRequest> = (0..100)
        .map(|i| {
            let permission = if i % 3 == 0 {
                "billing:invoices:read"
            } else {
                "billing:export"
            };
            by_user(&user.id, permission)
        })
        .collect();
    let results = permissions
        .check_permissions(batch(hundred))
        .await
        .expect("100 checks")
        .into_inner()
        .results;
    assert_eq!(results.len(), 100);
    assert!(results.iter().enumerate().all(|(i, r)| r.allowed == (i % 3 == 0)));
    let too_many = vec![by_user(&user.id, "billing:export"); 101];
    let status = expect_code(
        permissions.check_permissions(batch(too_many)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["checks"]);
    let status = expect_code(
        permissions.check_permissions(batch(vec![])).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["checks"]);

    // An invalid check is named; an out-of-scope one refuses the batch.
    let status = expect_code(
        permissions
            .check_permissions(batch(vec![
                by_user(&user.id, "billing:export"),
                by_user("nope", "billing:export"),
                by_user(&user.id, "billing:*"),
            ]))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["checks[1].user_id", "checks[2].permission"]);
    let other = app.create_tenant("other").await;
    expect_code(
        permissions
            .check_permissions(batch(vec![
                by_user(&user.id, "billing:export"),
                CheckPermissionRequest {
                    tenant_id: other.to_string(),
                    ..by_user(&user.id, "billing:export")
                },
            ]))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn nobody_grants_a_registered_permission_it_does_not_hold() {
    let (app, admin) = billing_app().await;
    // A tenant administrator: everything about users, roles and groups, no billing.
    let tenant_admin_role = create_role(&app, &admin, "tenant-admin", &["users:*", "roles:*", "groups:*"]).await;
    let people = app
        .create_users(vec![
            active_draft("admin@example.com"),
            active_draft("target@example.com"),
        ])
        .await;
    let (tenant_admin, target) = (&people[0], &people[1]);
    grant_role(&app, &admin, &tenant_admin.id, &[&tenant_admin_role.id], &[]).await;
    let billing_role = create_role(&app, &admin, "billing", &["billing:invoices:read"]).await;
    let escalating = app.user_token(&tenant_admin.id, app.tenant_id);

    for permissions in [vec!["billing:invoices:read"], vec!["billing:*"]] {
        let status = expect_code(
            app.roles()
                .create_role(authed(
                    pb::CreateRoleRequest {
                        name: "sneaky".into(),
                        permissions: permissions.iter().map(|p| p.to_string()).collect(),
                        ..Default::default()
                    },
                    &escalating,
                ))
                .await,
            Code::PermissionDenied,
        );
        assert!(status.message().contains("billing:"), "{}", status.message());
    }
    let own = create_role(&app, &escalating, "own", &["users:read"]).await;
    expect_code(
        app.roles()
            .update_role(authed(
                pb::UpdateRoleRequest {
                    id: own.id.clone(),
                    version: own.version,
                    add_permissions: vec!["billing:export".into()],
                    ..Default::default()
                },
                &escalating,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.users()
            .update_user(authed(
                pb::UpdateUserRequest {
                    id: target.id.clone(),
                    permissions: vec!["billing:export".into()],
                    ..Default::default()
                },
                &escalating,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.users()
            .update_user_roles(authed(
                pb::UpdateUserRolesRequest {
                    id: target.id.clone(),
                    add_role_ids: vec![billing_role.id.clone()],
                    ..Default::default()
                },
                &escalating,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert_denied(
        &check(&app, by_user(&target.id, "billing:export")).await,
        CheckDenialReason::NotGranted,
    );
    assert_denied(
        &check(&app, by_user(&target.id, "billing:invoices:read")).await,
        CheckDenialReason::NotGranted,
    );

    // Holding billing:* makes the same grants fine.
    let billing_admin = create_role(&app, &admin, "billing-admin", &["billing:*"]).await;
    grant_role(&app, &admin, &tenant_admin.id, &[&billing_admin.id], &[]).await;
    grant_role(&app, &escalating, &target.id, &[&billing_role.id], &[]).await;
    assert!(check(&app, by_user(&target.id, "billing:invoices:read")).await.allowed);
}

#[tokio::test]
async fn unregistering_a_carried_permission_needs_force() {
    let (app, admin) = billing_app().await;
    let global = app.global_token(&["permissions:register"]);
    let user = app
        .create_users(vec![active_draft("carrier@example.com")])
        .await
        .remove(0);
    let role = create_role(
        &app,
        &admin,
        "invoices",
        &["billing:invoices:read", "billing:invoices:refund"],
    )
    .await;
    grant_role(&app, &admin, &user.id, &[&role.id], &[]).await;
    grant_directly(&app, &admin, &user.id, &["billing:export"]).await;
    let mut permissions = client(&app);
    let unregister = |names: &[&str], force: bool| {
        authed(
            UnregisterPermissionsRequest {
                namespace: "billing".into(),
                names: names.iter().map(|n| n.to_string()).collect(),
                force,
            },
            &global,
        )
    };

    // Carried by a role, or by a direct grant: refused, nothing changes.
    for name in ["billing:invoices:read", "billing:export"] {
        expect_code(
            permissions.unregister_permissions(unregister(&[name], false)).await,
            Code::FailedPrecondition,
        );
    }
    assert_eq!(namespace_names(&app).await.len(), 3);
    assert!(check(&app, by_user(&user.id, "billing:invoices:read")).await.allowed);

    // Validation names the field.
    let status = expect_code(
        permissions
            .unregister_permissions(unregister(&["shipping:read", "billing:*"], false))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["names[0]", "names[1]"]);
    expect_code(
        permissions.unregister_permissions(unregister(&[], false)).await,
        Code::InvalidArgument,
    );

    // With force: gone from the catalog, the role (whose version goes up) and
    // the direct grant, and the next check refuses.
    permissions
        .unregister_permissions(unregister(&["billing:invoices:read", "billing:export"], true))
        .await
        .expect("forced");
    assert_eq!(namespace_names(&app).await, ["billing:invoices:refund"]);
    let after = app
        .roles()
        .get_role(authed(pb::GetRoleRequest { id: role.id.clone() }, &admin))
        .await
        .expect("role")
        .into_inner();
    assert_eq!(after.permissions, ["billing:invoices:refund"]);
    assert_eq!(after.version, role.version + 1);
    let granted = app
        .users()
        .get_user(authed(pb::GetUserRequest { id: user.id.clone() }, &admin))
        .await
        .expect("user")
        .into_inner();
    assert!(granted.permissions.is_empty(), "{:?}", granted.permissions);
    for permission in ["billing:invoices:read", "billing:export"] {
        assert_denied(
            &check(&app, by_user(&user.id, permission)).await,
            CheckDenialReason::NotGranted,
        );
    }
    assert!(check(&app, by_user(&user.id, "billing:invoices:refund")).await.allowed);

    // Not carried (or not registered at all): no force needed.
    grant_role(&app, &admin, &user.id, &[], &[&role.id]).await;
    app.roles()
        .delete_role(authed(
            pb::DeleteRoleRequest {
                id: role.id.clone(),
                force: true,
            },
            &admin,
        ))
        .await
        .expect("delete role");
    permissions
        .unregister_permissions(unregister(&["billing:invoices:refund", "billing:never"], false))
        .await
        .expect("unregister unused");
    assert!(namespace_names(&app).await.is_empty());

    // The catalog changes are in the audit trail, the refused ones too.
    let events: Vec<(String, String, String)> = audit_event::Entity::find()
        .all(&app.app.db)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.action.starts_with("identity.v1.PermissionService/"))
        .map(|e| (e.action, e.target, e.outcome))
        .collect();
    let count = |action: &str, target: &str, outcome: &str| {
        events
            .iter()
            .filter(|e| e.0 == format!("identity.v1.PermissionService/{action}") && e.1 == target && e.2 == outcome)
            .count()
    };
    assert_eq!(count("RegisterPermissions", "namespace:billing", "ok"), 1, "{events:?}");
    assert_eq!(
        count("UnregisterPermissions", "namespace:billing", "ok"),
        2,
        "{events:?}"
    );
    assert_eq!(
        count("UnregisterPermissions", "", "FAILED_PRECONDITION"),
        2,
        "{events:?}"
    );
}

/// CheckPermission answers as the auth layer does: the users of a
/// SUSPENDED tenant are INACTIVE_SUBJECT (by id and by token) until it is
/// ACTIVE again, and a global service checking in it sees the same.
#[tokio::test]
async fn the_users_of_a_suspended_tenant_are_inactive_until_it_is_reactivated() {
    let (app, admin) = billing_app().await;
    let user = app
        .create_users(vec![active_draft("frozen@example.com")])
        .await
        .remove(0);
    let token = app.user_token(&user.id, app.tenant_id);
    grant_directly(&app, &admin, &user.id, &["billing:export"]).await;
    let global = app.global_token(&["*"]);
    let set_status = |status: pb::TenantStatus| {
        let mut tenants = app.tenants();
        let request = authed(
            pb::UpdateTenantRequest {
                id: "default".into(),
                status: status as i32,
                ..Default::default()
            },
            &global,
        );
        async move { tenants.update_tenant(request).await.expect("status") }
    };
    let global_check = |request: CheckPermissionRequest| {
        let mut client = client(&app);
        let request = authed(request, &global);
        async move { client.check_permission(request).await.expect("check").into_inner() }
    };
    assert_allowed(
        &check(&app, by_user(&user.id, "billing:export")).await,
        &[direct_source()],
    );
    assert_allowed(
        &check(&app, by_token(&token, "billing:export")).await,
        &[direct_source()],
    );

    set_status(pb::TenantStatus::Suspended).await;
    for request in [by_user(&user.id, "billing:export"), by_token(&token, "billing:export")] {
        assert_denied(&global_check(request).await, CheckDenialReason::InactiveSubject);
    }

    set_status(pb::TenantStatus::Active).await;
    assert_allowed(
        &check(&app, by_user(&user.id, "billing:export")).await,
        &[direct_source()],
    );
    assert_allowed(
        &global_check(by_token(&token, "billing:export")).await,
        &[direct_source()],
    );
}

/// A role written while UnregisterPermissions removes one of its
/// permissions checks the catalog again in its own transaction: it is
/// INVALID_ARGUMENT naming the permission, never a role carrying a
/// permission no longer in the catalog (the check ran before the write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_unregistered_while_a_role_waits_is_not_granted() {
    use sea_orm::TransactionTrait;
    let (app, admin) = billing_app().await;
    let unregistering = app.app.writer.begin().await.expect("begin");
    castellan::store::permissions::unregister(&unregistering, &["billing:export".to_owned()])
        .await
        .expect("unregister");
    let mut roles = app.roles();
    let request = authed(
        pb::CreateRoleRequest {
            name: "exporters".into(),
            permissions: vec!["billing:invoices:read".into(), "billing:export".into()],
            ..Default::default()
        },
        &admin,
    );
    let create = async move { roles.create_role(request).await };
    let status = expect_code(behind(&app, unregistering, create).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["permissions[1]"]);
}
