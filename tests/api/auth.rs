//! The permission layer: authentication failures, permission checks, tenant
//! context, the rule table generated from the protos, and the authorization
//! matrix.

use castellan::{
    pb::{self, GetUserRequest, ListUsersRequest, WhoAmIRequest},
    store::invalidation::Change,
};
use clap::Parser;
use migrations::{Migrator, sea_orm_migration::MigratorTrait};
use prost::Message;
use tonic::{Code, Request};

use crate::helpers::{TestApp, authed, authed_in, draft, error_reason, expect_code};

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

    // To any other token an unknown tenant answers as a known one does, so
    // no token, dead or alive, tells which tenants exist.
    expect_code(
        users
            .list_users(authed_in(ListUsersRequest::default(), &local, "no-such-tenant"))
            .await,
        Code::PermissionDenied,
    );
    let person = app
        .create_users(vec![crate::helpers::active_draft("person@example.com")])
        .await[0]
        .id
        .clone();
    let token = app.user_token(&person, app.tenant_id);
    for tenant in ["acme", "no-such-tenant"] {
        expect_code(
            users.who_am_i(authed_in(WhoAmIRequest {}, &token, tenant)).await,
            Code::PermissionDenied,
        );
    }
    users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: person }, &local))
        .await
        .expect("deactivate");
    for tenant in ["acme", "no-such-tenant"] {
        expect_code(
            users.who_am_i(authed_in(WhoAmIRequest {}, &token, tenant)).await,
            Code::Unauthenticated,
        );
    }
}

/// An `x-tenant-id` that cannot name a tenant (a UUID or a slug,
/// `[a-z0-9-]{2,63}`) is INVALID_ARGUMENT naming it, to every caller, over
/// gRPC and REST; one naming another tenant is refused to a caller that may
/// not choose its tenant. Neither is looked up: only a global caller's
/// well-formed value becomes a key of the tenant cache.
#[tokio::test]
async fn x_tenant_id_is_checked_before_it_is_looked_up() {
    let app = TestApp::spawn().await;
    let acme = app.create_tenant("acme").await;
    let person = app
        .create_users(vec![crate::helpers::active_draft("person@example.com")])
        .await[0]
        .id
        .clone();
    let local = app.token(&["*"]);
    let mine = app.user_token(&person, app.tenant_id);
    let global = app.global_token(&["users:list"]);
    let mut users = app.users();

    // The header naming the caller's own tenant, by id or slug (in any
    // case), is no crossing.
    let own_id = app.tenant_id.to_string();
    for own in [own_id.as_str(), "default", "Default"] {
        users
            .list_users(authed_in(ListUsersRequest::default(), &local, own))
            .await
            .unwrap_or_else(|e| panic!("{own}: {e}"));
        users
            .who_am_i(authed_in(WhoAmIRequest {}, &mine, own))
            .await
            .unwrap_or_else(|e| panic!("{own}: {e}"));
    }
    let cached = app.app.access.cached_tenant_keys();

    // Long, but within one HTTP/2 frame (the REST call below sends 256 KiB).
    let long = "a".repeat(8 * 1024);
    let malformed = [long.as_str(), &"a".repeat(64), "a", "acme corp", "acme_1", "ac/me"];
    for value in malformed {
        let shown = &value[..value.len().min(20)];
        for token in [&local, &mine, &global] {
            let status = expect_code(
                users
                    .list_users(authed_in(ListUsersRequest::default(), token, value))
                    .await,
                Code::InvalidArgument,
            );
            assert_eq!(crate::helpers::violated_fields(&status), ["x-tenant-id"], "{shown}");
        }
    }
    // Another tenant, known or not, to callers that may not choose one.
    let other_tenants = [
        acme.to_string(),
        "acme".into(),
        "no-such-tenant".into(),
        uuid::Uuid::now_v7().to_string(),
    ];
    for other in &other_tenants {
        expect_code(
            users
                .list_users(authed_in(ListUsersRequest::default(), &local, other))
                .await,
            Code::PermissionDenied,
        );
        expect_code(
            users.who_am_i(authed_in(WhoAmIRequest {}, &mine, other)).await,
            Code::PermissionDenied,
        );
    }
    assert_eq!(
        app.app.access.cached_tenant_keys(),
        cached,
        "nothing looked up for a malformed header or a caller that may not name a tenant"
    );
    // A global caller's well-formed header is looked up (and cached).
    expect_code(
        users
            .list_users(authed_in(ListUsersRequest::default(), &global, "no-such-tenant"))
            .await,
        Code::NotFound,
    );
    assert_eq!(app.app.access.cached_tenant_keys(), cached + 1);

    // The REST gateway answers alike: 400 naming the header, 403.
    let client = reqwest::Client::new();
    let whoami = format!("http://{}/auth/users/whoami", app.http_addr);
    let response = client
        .get(&whoami)
        .bearer_auth(&mine)
        .header("x-tenant-id", "a".repeat(256 * 1024))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["details"][0]["field"], "x-tenant-id", "{body}");
    let response = client
        .get(&whoami)
        .bearer_auth(&mine)
        .header("x-tenant-id", "acme")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), reqwest::StatusCode::FORBIDDEN);
    assert_eq!(app.app.access.cached_tenant_keys(), cached + 1);
}

/// Bootstrap admin credentials, for tests that need a user with a global
/// role.
const ROOT: [&str; 4] = [
    "--bootstrap-admin-email",
    "root@example.com",
    "--bootstrap-admin-password",
    "correct horse battery staple",
];

/// The bootstrap admin's id (a global `*` role, owner of `default`).
async fn root_id(app: &TestApp) -> String {
    castellan::store::users::find_by_username_in_tenant(&app.app.db, app.tenant_id, "root@example.com")
        .await
        .expect("query")
        .expect("admin created")
        .id
        .to_string()
}

/// A token for a tenant that no longer exists is dead for every caller, a
/// user with a global role included, whatever tenant it names.
#[tokio::test]
async fn a_token_for_a_deleted_tenant_is_dead_even_for_a_global_user() {
    let app = TestApp::spawn_with(&ROOT).await;
    let root = root_id(&app).await;
    let operator = app.global_token(&["tenants:*"]);
    let doomed = app.create_tenant_owned_by("doomed", &root).await;
    let in_doomed = app.user_token(&root, doomed);
    let service = app.token_in(doomed, &["*"]);
    let mut users = app.users();
    users
        .who_am_i(authed(WhoAmIRequest {}, &in_doomed))
        .await
        .expect("alive while the tenant is");

    app.tenants()
        .delete_tenant(authed(pb::DeleteTenantRequest { id: "doomed".into() }, &operator))
        .await
        .expect("delete");
    for token in [&in_doomed, &service] {
        expect_code(
            users.who_am_i(authed(WhoAmIRequest {}, token)).await,
            Code::Unauthenticated,
        );
        expect_code(
            users.who_am_i(authed_in(WhoAmIRequest {}, token, "default")).await,
            Code::Unauthenticated,
        );
        expect_code(
            app.roles()
                .create_role(authed(
                    pb::CreateRoleRequest {
                        name: "ghost".into(),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
            Code::Unauthenticated,
        );
    }
    // The admin's token for a tenant that exists still works.
    users
        .who_am_i(authed(WhoAmIRequest {}, &app.user_token(&root, app.tenant_id)))
        .await
        .expect("alive");
}

/// A suspended tenant (Keycloak's disabled realm, ZITADEL's deactivated
/// organisation): from the next call, Login into it answers as for invalid
/// credentials and its tokens are refused, users' and services' alike,
/// except to global callers, who may still act in it (and reactivate it);
/// reactivation restores access at once.
#[tokio::test]
async fn a_suspended_tenant_admits_global_callers_alone_until_reactivated() {
    let app = TestApp::spawn_with(&ROOT).await;
    let root = root_id(&app).await;
    let operator = app.global_token(&["*"]);
    let frozen: uuid::Uuid = app.create_tenant_owned_by("frozen", &root).await;
    app.create_users_in(frozen, vec![crate::helpers::active_draft("member@example.com")])
        .await;
    let login = |username: &'static str, password: &'static str, tenant: &'static str| {
        let mut auth = pb::auth_service_client::AuthServiceClient::new(app.channel.clone());
        async move {
            auth.login(Request::new(pb::LoginRequest {
                username: username.into(),
                password: password.into(),
                tenant_id: tenant.into(),
            }))
            .await
            .map(|response| response.into_inner().access_token)
        }
    };
    let member = login("member@example.com", "correct horse battery", "frozen")
        .await
        .expect("login");
    let service = app.token_in(frozen, &["*"]);
    let root_in_frozen = app.user_token(&root, frozen);
    let root_at_home = app.user_token(&root, app.tenant_id);
    let mut users = app.users();
    let works = |token: &str, tenant: Option<&str>| {
        let request = match tenant {
            Some(tenant) => authed_in(ListUsersRequest::default(), token, tenant),
            None => authed(ListUsersRequest::default(), token),
        };
        let mut users = app.users();
        async move { users.list_users(request).await.map(|_| ()) }
    };
    let set_status = |token: &str, status: pb::TenantStatus| {
        let request = authed(
            pb::UpdateTenantRequest {
                id: "frozen".into(),
                status: status as i32,
                ..Default::default()
            },
            token,
        );
        let mut tenants = app.tenants();
        async move { tenants.update_tenant(request).await.map(|_| ()) }
    };
    users.who_am_i(authed(WhoAmIRequest {}, &member)).await.expect("member");
    works(&service, None).await.expect("service");

    set_status(&operator, pb::TenantStatus::Suspended)
        .await
        .expect("suspend");
    // The very next call of a member or a tenant's service is refused.
    expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &member)).await,
        Code::Unauthenticated,
    );
    expect_code(works(&service, None).await, Code::Unauthenticated);
    // Login answers as for an inactive user: invalid credentials, whether
    // the tenant is named or is the user's first.
    for tenant in ["frozen", ""] {
        let status = expect_code(
            login("member@example.com", "correct horse battery", tenant).await,
            Code::Unauthenticated,
        );
        assert_eq!(status.message(), "invalid credentials", "{tenant:?}");
    }
    // Global callers still act in it: the admin by its token for the
    // tenant, by Login into it, by naming it; a global service token.
    users
        .who_am_i(authed(WhoAmIRequest {}, &root_in_frozen))
        .await
        .expect("a global user's token for the tenant");
    let root_logged_in = login("root@example.com", "correct horse battery staple", "frozen")
        .await
        .expect("a global user logs into a suspended tenant");
    works(&root_logged_in, None).await.expect("its token");
    works(&root_at_home, Some("frozen"))
        .await
        .expect("a global user names it");
    works(&operator, Some("frozen"))
        .await
        .expect("a global service token names it");

    // The admin reactivates it from within: access is back at once.
    set_status(&root_in_frozen, pb::TenantStatus::Active)
        .await
        .expect("reactivate");
    users
        .who_am_i(authed(WhoAmIRequest {}, &member))
        .await
        .expect("member again");
    works(&service, None).await.expect("service again");
    login("member@example.com", "correct horse battery", "frozen")
        .await
        .expect("login again");
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

    // Deactivation: the very next call is refused, and the token stays
    // refused after a reactivation; a new login's token works.
    users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: active_id.clone() }, &admin))
        .await
        .expect("deactivate");
    let inactive = expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &token)).await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&inactive), "SUBJECT_INACTIVE");
    users
        .reactivate_user(authed(pb::ReactivateUserRequest { id: active_id.clone() }, &admin))
        .await
        .expect("reactivate");
    let revoked = expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &token)).await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&revoked), "TOKEN_REVOKED");
    let token = app
        .login("active@example.com", "correct horse battery")
        .await
        .expect("login after the reactivation")
        .access_token;
    users
        .who_am_i(authed(WhoAmIRequest {}, &token))
        .await
        .expect("a new token works");

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

/// A first start given the bootstrap e-mail without the password, or the
/// password without the e-mail, refuses to start naming the one missing,
/// and creates nothing (it used to create `default` without an
/// administrator, saying nothing).
#[tokio::test]
async fn a_bootstrap_setting_alone_refuses_the_first_start() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    for (given, missing) in [
        (
            ["--bootstrap-admin-email", "root@example.com"],
            "CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD",
        ),
        (
            ["--bootstrap-admin-password", "correct horse battery staple"],
            "CASTELLAN_BOOTSTRAP_ADMIN_EMAIL",
        ),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, _database) = crate::helpers::test_database(dir.path()).await;
        let cli = crate::helpers::test_cli(&database_url, dir.path(), &given);
        let error = match castellan::app::App::build(cli.config).await {
            Ok(_) => panic!("{given:?}: started"),
            Err(error) => error,
        };
        assert!(error.to_string().contains(missing), "{given:?}: {error}");
        let db = sea_orm::Database::connect(&database_url).await.expect("connect");
        let tenants = castellan::store::entity::tenant::Entity::find()
            .count(&db)
            .await
            .expect("count");
        assert_eq!(tenants, 0, "{given:?}");
    }
}

/// A database whose tenants are all gone but whose bootstrap role and
/// administrator remain refuses the start, naming what it met, rather than
/// starting with no tenant at all (it used to take the clash for another
/// replica's bootstrap and say nothing).
#[tokio::test]
async fn a_bootstrap_that_meets_its_leftovers_in_a_database_without_tenants_refuses_the_start() {
    use sea_orm::{EntityTrait, PaginatorTrait};
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, _database) = crate::helpers::test_database(dir.path()).await;
    let first = crate::helpers::test_cli(&database_url, dir.path(), &ROOT);
    drop(castellan::app::App::build(first.config).await.expect("first start"));
    let db = sea_orm::Database::connect(&database_url).await.expect("connect");
    castellan::store::entity::tenant::Entity::delete_many()
        .exec(&db)
        .await
        .expect("every tenant gone");

    let again = crate::helpers::test_cli(&database_url, dir.path(), &ROOT);
    let error = match castellan::app::App::build(again.config).await {
        Ok(_) => panic!("started without a tenant"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("holds no tenant") && error.contains("name"), "{error}");
    let tenants = castellan::store::entity::tenant::Entity::find()
        .count(&db)
        .await
        .expect("count");
    assert_eq!(tenants, 0, "nothing half-created");
}

/// With `--no-migrate` a database that lacks a migration (a rollout whose
/// migration job has not finished) refuses the start, rather than serving
/// calls that fail one by one on the older schema; one that holds a newer
/// release's migration besides is served.
#[tokio::test]
async fn a_start_without_migrating_refuses_a_database_that_lacks_a_migration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (database_url, _database) = crate::helpers::test_database(dir.path()).await;
    let first = crate::helpers::test_cli(&database_url, dir.path(), &[]);
    drop(
        castellan::app::App::build(first.config)
            .await
            .expect("first start migrates"),
    );
    let db = sea_orm::Database::connect(&database_url).await.expect("connect");
    Migrator::down(&db, Some(1)).await.expect("undo the last migration");

    let again = crate::helpers::test_cli(&database_url, dir.path(), &["--no-migrate"]);
    let error = match castellan::app::App::build(again.config).await {
        Ok(_) => panic!("started on an older schema"),
        Err(error) => error.to_string(),
    };
    assert!(error.contains("lacks 1 migration"), "{error}");
    let migrated = crate::helpers::test_cli(&database_url, dir.path(), &[]);
    drop(
        castellan::app::App::build(migrated.config)
            .await
            .expect("a start that migrates"),
    );

    // A migration this release does not know (a newer release's, applied
    // by its migration job) is no reason to refuse: each keeps the release
    // before it working.
    use migrations::sea_orm_migration::seaql_migrations;
    use sea_orm::{ActiveModelTrait, Set};
    seaql_migrations::ActiveModel {
        version: Set("m29991231_000001_from_a_newer_release".into()),
        applied_at: Set(0),
    }
    .insert(&db)
    .await
    .expect("record a newer release's migration");
    let older = crate::helpers::test_cli(&database_url, dir.path(), &["--no-migrate"]);
    castellan::app::App::build(older.config)
        .await
        .expect("an older release starts on a newer schema");
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

/// A user's account (password, status, e-mail, the user itself) is one for
/// every tenant it belongs to: a caller without a global role changes it only
/// for a user of its tenant alone who holds no global role. Otherwise a
/// tenant's administrator could reset the global admin's password and log in
/// as it, or lock a user out of every other tenant.
#[tokio::test]
async fn only_a_global_caller_changes_the_account_of_a_global_admin_or_a_user_of_other_tenants() {
    const ROOT_PASSWORD: &str = "correct horse battery staple";
    let app = TestApp::spawn_with(&[
        "--bootstrap-admin-email",
        "root@example.com",
        "--bootstrap-admin-password",
        ROOT_PASSWORD,
    ])
    .await;
    let root = castellan::store::users::find_by_username_in_tenant(&app.app.db, app.tenant_id, "root@example.com")
        .await
        .expect("query")
        .expect("admin created")
        .id
        .to_string();
    app.create_tenant("other").await;
    let global = app.global_token(&["*"]);
    let mut users = app.users();
    let both = users
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![pb::UserDraft {
                    tenant_ids: vec!["default".into(), "other".into()],
                    ..crate::helpers::active_draft("both@example.com")
                }],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("create in two tenants")
        .into_inner()
        .users[0]
        .id
        .clone();
    let alone = app
        .create_users(vec![crate::helpers::active_draft("alone@example.com")])
        .await[0]
        .id
        .clone();

    let local = app.token(&["*"]);
    let reset = |id: &str| {
        authed(
            pb::ResetUserPasswordRequest {
                id: id.to_owned(),
                password: "taken over at last".into(),
                temporary: Some(false),
            },
            &local,
        )
    };
    let new_email = |id: &str| {
        authed(
            pb::UpdateUserRequest {
                id: id.to_owned(),
                email: "new@example.com".into(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["email".into()],
                }),
                ..Default::default()
            },
            &local,
        )
    };
    // The device limit holds in every tenant: setting it to 0 would refuse
    // the user's devices in the others.
    let no_devices = |id: &str| {
        authed(
            pb::UpdateUserRequest {
                id: id.to_owned(),
                max_devices: Some(0),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["max_devices".into()],
                }),
                ..Default::default()
            },
            &local,
        )
    };
    for (target, code) in [(&root, Code::PermissionDenied), (&both, Code::FailedPrecondition)] {
        let refusals = [
            users.reset_user_password(reset(target)).await.map(|_| ()),
            users
                .deactivate_user(authed(pb::DeactivateUserRequest { id: target.clone() }, &local))
                .await
                .map(|_| ()),
            users.update_user(new_email(target)).await.map(|_| ()),
            users.update_user(no_devices(target)).await.map(|_| ()),
            users
                .delete_user(authed(pb::DeleteUserRequest { id: target.clone() }, &local))
                .await
                .map(|_| ()),
        ];
        for (i, result) in refusals.into_iter().enumerate() {
            assert_eq!(
                result.map_or_else(|s| s.code(), |_| Code::Ok),
                code,
                "case {i} on {target}"
            );
        }
    }
    // Nothing changed: the admin logs in with its own password.
    app.login("root@example.com", ROOT_PASSWORD)
        .await
        .expect("root's password kept");
    expect_code(
        app.login("root@example.com", "taken over at last").await,
        Code::Unauthenticated,
    );
    let kept = users
        .get_user(authed(GetUserRequest { id: both.clone() }, &global))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (kept.email.as_str(), kept.status),
        ("both@example.com", pb::UserStatus::Active as i32)
    );

    // A user of this tenant alone is the tenant's to manage; a global caller
    // manages every account.
    users
        .reset_user_password(reset(&alone))
        .await
        .expect("reset a user of this tenant alone");
    users.update_user(new_email(&alone)).await.expect("change its e-mail");
    users
        .update_user(no_devices(&alone))
        .await
        .expect("change its device limit");
    users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: alone }, &local))
        .await
        .expect("deactivate it");
    users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: both }, &global))
        .await
        .expect("a global caller deactivates a user of two tenants");
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

/// The RPCs of RoleService, GroupService and the user assignments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    CreateRole,
    GetRole,
    ListRoles,
    UpdateRole,
    DeleteRole,
    ListPermissions,
    CreateGroup,
    GetGroup,
    ListGroups,
    UpdateGroup,
    DeleteGroup,
    ListGroupMembers,
    UpdateUserRoles,
    AddUserToGroup,
    RemoveUserFromGroup,
    GetUserPermissions,
}

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// A token holding every built-in permission except the RPC's.
    Lacking,
    /// A token holding exactly the RPC's permission.
    Holding,
    /// A user without any permission, through its own user token.
    Myself,
}

/// What the call acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum On {
    /// Nothing in particular (create, list).
    Tenant,
    /// A resource of the tenant in context (for memberships: a user and a group).
    Here,
    /// The other tenant's resource (for memberships: the other tenant's user).
    There,
    /// Memberships only: the other tenant's group.
    TheirGroup,
    /// The calling user itself.
    Me,
}

/// Fixtures of the matrix: one of everything here and in another tenant.
struct Fixtures<'a> {
    app: &'a TestApp,
    admin: String,
    role_here: String,
    role_there: String,
    group_here: String,
    group_there: String,
    user_here: String,
    user_there: String,
    me: String,
    serial: std::sync::atomic::AtomicUsize,
}

impl Fixtures<'_> {
    fn unique(&self, prefix: &str) -> String {
        let n = self.serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{n}")
    }

    fn role_id(&self, on: On) -> String {
        if on == On::There {
            self.role_there.clone()
        } else {
            self.role_here.clone()
        }
    }

    fn group_id(&self, on: On) -> String {
        if on == On::There || on == On::TheirGroup {
            self.group_there.clone()
        } else {
            self.group_here.clone()
        }
    }

    fn user_id(&self, on: On) -> String {
        match on {
            On::There => self.user_there.clone(),
            On::Me => self.me.clone(),
            _ => self.user_here.clone(),
        }
    }

    /// A fresh role or group for the deletes that succeed.
    async fn disposable(&self, rpc: Rpc, on: On) -> String {
        match (rpc, on) {
            (Rpc::DeleteRole, On::Here) => {
                crate::roles::create_role(self.app, &self.admin, &self.unique("doomed"), &[])
                    .await
                    .id
            }
            (Rpc::DeleteGroup, On::Here) => {
                crate::groups::create_group(self.app, &self.admin, &self.unique("doomed"), &[])
                    .await
                    .id
            }
            (Rpc::DeleteRole, _) => self.role_id(on),
            _ => self.group_id(on),
        }
    }

    async fn role_version(&self, id: &str) -> i32 {
        self.app
            .roles()
            .get_role(authed(pb::GetRoleRequest { id: id.to_owned() }, &self.admin))
            .await
            .map_or(1, |r| r.into_inner().version)
    }

    async fn call(&self, rpc: Rpc, token: &str, on: On) -> Code {
        let (mut roles, mut groups, mut users) = (self.app.roles(), self.app.groups(), self.app.users());
        let membership = |on: On| (self.user_id(on), self.group_id(on));
        let result = match rpc {
            Rpc::CreateRole => roles
                .create_role(authed(
                    pb::CreateRoleRequest {
                        name: self.unique("role"),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::GetRole => roles
                .get_role(authed(pb::GetRoleRequest { id: self.role_id(on) }, token))
                .await
                .map(drop),
            Rpc::ListRoles => roles
                .list_roles(authed(pb::ListRolesRequest::default(), token))
                .await
                .map(drop),
            Rpc::UpdateRole => {
                let id = self.role_id(on);
                let version = self.role_version(&id).await;
                roles
                    .update_role(authed(
                        pb::UpdateRoleRequest {
                            id,
                            version,
                            description: Some(self.unique("described")),
                            ..Default::default()
                        },
                        token,
                    ))
                    .await
                    .map(drop)
            }
            Rpc::DeleteRole => roles
                .delete_role(authed(
                    pb::DeleteRoleRequest {
                        id: self.disposable(rpc, on).await,
                        force: true,
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::ListPermissions => roles
                .list_permissions(authed(pb::ListPermissionsRequest::default(), token))
                .await
                .map(drop),
            Rpc::CreateGroup => groups
                .create_group(authed(
                    pb::CreateGroupRequest {
                        name: self.unique("group"),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::GetGroup => groups
                .get_group(authed(pb::GetGroupRequest { id: self.group_id(on) }, token))
                .await
                .map(drop),
            Rpc::ListGroups => groups
                .list_groups(authed(pb::ListGroupsRequest::default(), token))
                .await
                .map(drop),
            Rpc::UpdateGroup => groups
                .update_group(authed(
                    pb::UpdateGroupRequest {
                        id: self.group_id(on),
                        description: Some(self.unique("described")),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::DeleteGroup => groups
                .delete_group(authed(
                    pb::DeleteGroupRequest {
                        id: self.disposable(rpc, on).await,
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::ListGroupMembers => groups
                .list_group_members(authed(
                    pb::ListGroupMembersRequest {
                        id: self.group_id(on),
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::UpdateUserRoles => users
                .update_user_roles(authed(
                    pb::UpdateUserRolesRequest {
                        id: self.user_id(on),
                        add_role_ids: vec![self.role_here.clone()],
                        ..Default::default()
                    },
                    token,
                ))
                .await
                .map(drop),
            Rpc::AddUserToGroup => {
                let (user_id, group_id) = membership(on);
                users
                    .add_user_to_group(authed(pb::AddUserToGroupRequest { user_id, group_id }, token))
                    .await
                    .map(drop)
            }
            Rpc::RemoveUserFromGroup => {
                let (user_id, group_id) = membership(on);
                if on == On::Here {
                    users
                        .add_user_to_group(authed(
                            pb::AddUserToGroupRequest {
                                user_id: user_id.clone(),
                                group_id: group_id.clone(),
                            },
                            &self.admin,
                        ))
                        .await
                        .expect("join before leaving");
                }
                users
                    .remove_user_from_group(authed(pb::RemoveUserFromGroupRequest { user_id, group_id }, token))
                    .await
                    .map(drop)
            }
            Rpc::GetUserPermissions => users
                .get_user_permissions(authed(pb::GetUserPermissionsRequest { id: self.user_id(on) }, token))
                .await
                .map(drop),
        };
        result.map_or_else(|status| status.code(), |()| Code::Ok)
    }
}

/// RoleService, GroupService and the user assignments: (RPC, caller, target)
/// → expected code. Permission first (a caller without it learns nothing),
/// then the tenant scope (another tenant's resource is NOT_FOUND).
#[tokio::test]
async fn roles_groups_and_assignments_authorization_matrix() {
    use Code::{NotFound, Ok, PermissionDenied};
    use On::{Here, Me, Tenant, TheirGroup, There};
    use Rpc::*;
    use Who::{Holding, Lacking, Myself};

    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let admin = app.token(&["*"]);
    let theirs = app.token_in(other, &["*"]);
    let fixtures = Fixtures {
        app: &app,
        role_here: crate::roles::create_role(&app, &admin, "here", &[]).await.id,
        role_there: crate::roles::create_role(&app, &theirs, "there", &[]).await.id,
        group_here: crate::groups::create_group(&app, &admin, "here", &[]).await.id,
        group_there: crate::groups::create_group(&app, &theirs, "there", &[]).await.id,
        user_here: app.create_users(vec![draft("here@example.com")]).await.remove(0).id,
        user_there: app
            .create_users_in(other, vec![draft("there@example.com")])
            .await
            .remove(0)
            .id,
        me: app
            .create_users(vec![crate::helpers::active_draft("me@example.com")])
            .await
            .remove(0)
            .id,
        admin,
        serial: Default::default(),
    };
    let my_token = app.user_token(&fixtures.me, app.tenant_id);

    let table: &[(Rpc, &str, Who, On, Code)] = &[
        (CreateRole, "roles:create", Lacking, Tenant, PermissionDenied),
        (CreateRole, "roles:create", Holding, Tenant, Ok),
        (GetRole, "roles:read", Lacking, Here, PermissionDenied),
        (GetRole, "roles:read", Holding, Here, Ok),
        (GetRole, "roles:read", Holding, There, NotFound),
        (ListRoles, "roles:list", Lacking, Tenant, PermissionDenied),
        (ListRoles, "roles:list", Holding, Tenant, Ok),
        (UpdateRole, "roles:update", Lacking, Here, PermissionDenied),
        (UpdateRole, "roles:update", Holding, Here, Ok),
        (UpdateRole, "roles:update", Holding, There, NotFound),
        (DeleteRole, "roles:delete", Lacking, Here, PermissionDenied),
        (DeleteRole, "roles:delete", Holding, Here, Ok),
        (DeleteRole, "roles:delete", Holding, There, NotFound),
        (ListPermissions, "roles:read", Lacking, Tenant, PermissionDenied),
        (ListPermissions, "roles:read", Holding, Tenant, Ok),
        (CreateGroup, "groups:create", Lacking, Tenant, PermissionDenied),
        (CreateGroup, "groups:create", Holding, Tenant, Ok),
        (GetGroup, "groups:read", Lacking, Here, PermissionDenied),
        (GetGroup, "groups:read", Holding, Here, Ok),
        (GetGroup, "groups:read", Holding, There, NotFound),
        (ListGroups, "groups:list", Lacking, Tenant, PermissionDenied),
        (ListGroups, "groups:list", Holding, Tenant, Ok),
        (UpdateGroup, "groups:update", Lacking, Here, PermissionDenied),
        (UpdateGroup, "groups:update", Holding, Here, Ok),
        (UpdateGroup, "groups:update", Holding, There, NotFound),
        (DeleteGroup, "groups:delete", Lacking, Here, PermissionDenied),
        (DeleteGroup, "groups:delete", Holding, Here, Ok),
        (DeleteGroup, "groups:delete", Holding, There, NotFound),
        (ListGroupMembers, "groups:read", Lacking, Here, PermissionDenied),
        (ListGroupMembers, "groups:read", Holding, Here, Ok),
        (ListGroupMembers, "groups:read", Holding, There, NotFound),
        (UpdateUserRoles, "users:roles", Lacking, Here, PermissionDenied),
        (UpdateUserRoles, "users:roles", Holding, Here, Ok),
        (UpdateUserRoles, "users:roles", Holding, There, NotFound),
        (UpdateUserRoles, "users:roles", Myself, Me, PermissionDenied),
        (AddUserToGroup, "users:groups", Lacking, Here, PermissionDenied),
        (AddUserToGroup, "users:groups", Holding, Here, Ok),
        (AddUserToGroup, "users:groups", Holding, There, NotFound),
        (AddUserToGroup, "users:groups", Holding, TheirGroup, NotFound),
        (AddUserToGroup, "users:groups", Myself, Me, PermissionDenied),
        (RemoveUserFromGroup, "users:groups", Lacking, Here, PermissionDenied),
        (RemoveUserFromGroup, "users:groups", Holding, Here, Ok),
        (RemoveUserFromGroup, "users:groups", Holding, There, NotFound),
        (RemoveUserFromGroup, "users:groups", Holding, TheirGroup, NotFound),
        (RemoveUserFromGroup, "users:groups", Myself, Me, PermissionDenied),
        (GetUserPermissions, "users:read", Lacking, Here, PermissionDenied),
        (GetUserPermissions, "users:read", Holding, Here, Ok),
        (GetUserPermissions, "users:read", Holding, There, NotFound),
        (GetUserPermissions, "users:read", Myself, Me, Ok),
        (GetUserPermissions, "users:read", Myself, Here, PermissionDenied),
    ];
    for &(rpc, permission, who, on, expected) in table {
        assert_eq!(
            pb::rule_for(&format!("/identity.v1.{}/{rpc:?}", service_of(rpc)))
                .expect("rule")
                .permission,
            permission,
            "{rpc:?}: the table follows the proto"
        );
        let token = match who {
            Lacking => {
                let others: Vec<&str> = castellan::domain::permissions::BUILT_IN
                    .iter()
                    .map(|(name, _)| *name)
                    .filter(|name| *name != permission)
                    .collect();
                app.token(&others)
            }
            Holding => app.token(&[permission]),
            Myself => my_token.clone(),
        };
        let code = fixtures.call(rpc, &token, on).await;
        assert_eq!(code, expected, "{rpc:?} by {who:?} on {on:?}");
    }
}

fn service_of(rpc: Rpc) -> &'static str {
    match rpc {
        Rpc::CreateRole | Rpc::GetRole | Rpc::ListRoles | Rpc::UpdateRole | Rpc::DeleteRole | Rpc::ListPermissions => {
            "RoleService"
        }
        Rpc::CreateGroup
        | Rpc::GetGroup
        | Rpc::ListGroups
        | Rpc::UpdateGroup
        | Rpc::DeleteGroup
        | Rpc::ListGroupMembers => "GroupService",
        _ => "UserService",
    }
}

#[tokio::test]
async fn role_and_group_changes_take_effect_on_the_next_call() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let actor = app
        .create_users(vec![crate::helpers::active_draft("actor@example.com")])
        .await
        .remove(0);
    let other = app.create_users(vec![draft("other@example.com")]).await.remove(0);
    let token = app.user_token(&actor.id, app.tenant_id);
    let mut users = app.users();
    let read_other = || {
        let mut users = app.users();
        let request = authed(GetUserRequest { id: other.id.clone() }, &token);
        async move {
            users
                .get_user(request)
                .await
                .map(drop)
                .map_or_else(|s| s.code(), |()| Code::Ok)
        }
    };
    assert_eq!(read_other().await, Code::PermissionDenied);

    // A role granted, its permissions changed, revoked.
    let readers = crate::roles::create_role(&app, &admin, "readers", &["users:read"]).await;
    let change_roles = |add: Vec<String>, remove: Vec<String>| pb::UpdateUserRolesRequest {
        id: actor.id.clone(),
        add_role_ids: add,
        remove_role_ids: remove,
    };
    users
        .update_user_roles(authed(change_roles(vec![readers.id.clone()], vec![]), &admin))
        .await
        .expect("grant");
    assert_eq!(read_other().await, Code::Ok, "granted role works at once");
    let mut roles = app.roles();
    let role_update = |version: i32, add: &str, remove: &str| pb::UpdateRoleRequest {
        id: readers.id.clone(),
        version,
        add_permissions: [add].iter().filter(|p| !p.is_empty()).map(|p| p.to_string()).collect(),
        remove_permissions: [remove]
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.to_string())
            .collect(),
        ..Default::default()
    };
    roles
        .update_role(authed(role_update(1, "", "users:read"), &admin))
        .await
        .expect("narrow the role");
    assert_eq!(read_other().await, Code::PermissionDenied, "role change works at once");
    roles
        .update_role(authed(role_update(2, "users:read", ""), &admin))
        .await
        .expect("widen the role");
    assert_eq!(read_other().await, Code::Ok);
    users
        .update_user_roles(authed(change_roles(vec![], vec![readers.id.clone()]), &admin))
        .await
        .expect("revoke");
    assert_eq!(read_other().await, Code::PermissionDenied, "revocation works at once");

    // A group with the role: joined, its roles replaced, left, deleted.
    let group = crate::groups::create_group(&app, &admin, "readers", &[&readers.id]).await;
    let membership = || pb::AddUserToGroupRequest {
        user_id: actor.id.clone(),
        group_id: group.id.clone(),
    };
    users
        .add_user_to_group(authed(membership(), &admin))
        .await
        .expect("join");
    assert_eq!(read_other().await, Code::Ok, "group roles work at once");
    let mut groups = app.groups();
    let replace = |role_ids: Vec<String>| pb::UpdateGroupRequest {
        id: group.id.clone(),
        role_ids,
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["role_ids".into()],
        }),
        ..Default::default()
    };
    groups
        .update_group(authed(replace(vec![]), &admin))
        .await
        .expect("strip the group");
    assert_eq!(read_other().await, Code::PermissionDenied);
    groups
        .update_group(authed(replace(vec![readers.id.clone()]), &admin))
        .await
        .expect("restore the group");
    assert_eq!(read_other().await, Code::Ok);
    users
        .remove_user_from_group(authed(
            pb::RemoveUserFromGroupRequest {
                user_id: actor.id.clone(),
                group_id: group.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("leave");
    assert_eq!(read_other().await, Code::PermissionDenied, "leaving works at once");
    users
        .add_user_to_group(authed(membership(), &admin))
        .await
        .expect("join again");
    assert_eq!(read_other().await, Code::Ok);
    groups
        .delete_group(authed(pb::DeleteGroupRequest { id: group.id.clone() }, &admin))
        .await
        .expect("delete group");
    assert_eq!(
        read_other().await,
        Code::PermissionDenied,
        "group deletion works at once"
    );

    // Deleting a granted role (with force) takes its permissions away.
    users
        .update_user_roles(authed(change_roles(vec![readers.id.clone()], vec![]), &admin))
        .await
        .expect("grant again");
    assert_eq!(read_other().await, Code::Ok);
    roles
        .delete_role(authed(
            pb::DeleteRoleRequest {
                id: readers.id.clone(),
                force: true,
            },
            &admin,
        ))
        .await
        .expect("delete role");
    assert_eq!(
        read_other().await,
        Code::PermissionDenied,
        "role deletion works at once"
    );
}

/// A global role's change reaches every tenant it is used in, not only the
/// tenant of whoever changed it (the cache's own tests hold the scopes
/// apart: a role or group outdates the entries read from it only).
#[tokio::test]
async fn a_global_roles_change_takes_effect_in_every_tenant_at_once() {
    let app = TestApp::spawn().await;
    let elsewhere = app.create_tenant("elsewhere").await;
    let operator = app.global_token(&["*"]);
    let auditors = app
        .roles()
        .create_role(authed(
            pb::CreateRoleRequest {
                name: "auditors".into(),
                permissions: vec!["users:read".into()],
                global: true,
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect("create a global role")
        .into_inner();
    let actor = app
        .create_users(vec![crate::helpers::active_draft("auditor@example.com")])
        .await
        .remove(0);
    app.users()
        .update_user_roles(authed(
            pb::UpdateUserRolesRequest {
                id: actor.id.clone(),
                add_role_ids: vec![auditors.id.clone()],
                ..Default::default()
            },
            &operator,
        ))
        .await
        .expect("grant the global role");
    let target = app
        .create_users_in(elsewhere, vec![draft("target@example.com")])
        .await
        .remove(0);
    let token = app.user_token(&actor.id, app.tenant_id);
    let elsewhere = elsewhere.to_string();
    let in_elsewhere = || async {
        let mut users = app.users();
        let read = users
            .get_user(authed_in(GetUserRequest { id: target.id.clone() }, &token, &elsewhere))
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok);
        let me = users
            .who_am_i(authed_in(WhoAmIRequest {}, &token, &elsewhere))
            .await
            .expect("whoami elsewhere")
            .into_inner();
        (
            read,
            me.roles.into_iter().flat_map(|r| r.permissions).collect::<Vec<_>>(),
        )
    };
    let granted = (Code::Ok, vec!["users:read".to_owned()]);
    assert_eq!(in_elsewhere().await, granted);
    assert_eq!(in_elsewhere().await, granted, "and again, from the caches");

    let update = |version: i32, add: Vec<String>, remove: Vec<String>| pb::UpdateRoleRequest {
        id: auditors.id.clone(),
        version,
        add_permissions: add,
        remove_permissions: remove,
        ..Default::default()
    };
    app.roles()
        .update_role(authed(update(1, vec![], vec!["users:read".into()]), &operator))
        .await
        .expect("narrow the global role");
    assert_eq!(
        in_elsewhere().await,
        (Code::PermissionDenied, vec![]),
        "the change shows in the other tenant at once"
    );
    app.roles()
        .update_role(authed(update(2, vec!["users:read".into()], vec![]), &operator))
        .await
        .expect("widen it again");
    assert_eq!(in_elsewhere().await, granted);
    app.roles()
        .delete_role(authed(
            pb::DeleteRoleRequest {
                id: auditors.id.clone(),
                force: true,
            },
            &operator,
        ))
        .await
        .expect("delete the global role");
    let mut users = app.users();
    expect_code(
        users
            .get_user(authed_in(GetUserRequest { id: target.id.clone() }, &token, &elsewhere))
            .await,
        Code::PermissionDenied,
    );
}

/// A write whose call is cancelled after it committed (its client went
/// away, its deadline passed) still outdates what it changed: `App::commit`
/// runs the commit and the outdating in a task of their own.
#[tokio::test]
async fn a_commit_outdates_the_caches_even_when_its_call_is_cancelled() {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, TransactionTrait};

    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let readers = crate::roles::create_role(&app, &admin, "readers", &["users:read"]).await;
    let actor = app
        .create_users(vec![pb::UserDraft {
            role_ids: vec![readers.id.clone()],
            ..crate::helpers::active_draft("actor@example.com")
        }])
        .await
        .remove(0);
    let other = app.create_users(vec![draft("other@example.com")]).await.remove(0);
    let token = app.user_token(&actor.id, app.tenant_id);
    let read_other = || async {
        app.users()
            .get_user(authed(GetUserRequest { id: other.id.clone() }, &token))
            .await
            .map_or_else(|s| s.code(), |_| Code::Ok)
    };
    assert_eq!(read_other().await, Code::Ok, "the role works (and is cached)");

    // The role revoked in a write whose caller stops waiting at its first
    // pause, as a cancelled call's handler does.
    let actor_id: uuid::Uuid = actor.id.parse().expect("id");
    let txn = app.app.writer.begin().await.expect("begin");
    castellan::store::entity::user_role::Entity::delete_many()
        .filter(castellan::store::entity::user_role::Column::UserId.eq(actor_id))
        .exec(&txn)
        .await
        .expect("revoke");
    let mut commit = Box::pin(app.app.commit(txn, Change::Access(actor_id)));
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(commit.as_mut().poll(cx))).await;
    assert!(
        first.is_pending(),
        "the commit was still under way when its caller went away"
    );
    drop(commit);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while read_other().await != Code::PermissionDenied {
        assert!(
            std::time::Instant::now() < deadline,
            "the revocation committed by a cancelled call never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn callers_grant_only_roles_whose_permissions_they_hold() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let admin = app.token(&["*"]);
    let deleter = crate::roles::create_role(&app, &admin, "deleter", &["roles:delete"]).await;
    let granter = crate::roles::create_role(&app, &admin, "granter", &["users:roles"]).await;
    let empty = crate::roles::create_role(&app, &admin, "empty", &[]).await;
    let foreign = crate::roles::create_role(&app, &app.token_in(other, &["*"]), "foreign", &[]).await;
    let target = app.create_users(vec![draft("target@example.com")]).await.remove(0);
    let grant = |role_id: &str| pb::UpdateUserRolesRequest {
        id: target.id.clone(),
        add_role_ids: vec![role_id.to_owned()],
        ..Default::default()
    };
    let mut users = app.users();

    // A service token holding only users:roles.
    let only_roles = app.token(&["users:roles"]);
    let status = expect_code(
        users.update_user_roles(authed(grant(&deleter.id), &only_roles)).await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("roles:delete"), "{}", status.message());
    for role in [&empty, &granter] {
        users
            .update_user_roles(authed(grant(&role.id), &only_roles))
            .await
            .expect("roles whose permissions the caller holds");
    }

    // A user holding only users:roles (through `granter`): same rule with a user token.
    let helper = app
        .create_users(vec![crate::helpers::active_draft("helper@example.com")])
        .await
        .remove(0);
    users
        .update_user_roles(authed(
            pb::UpdateUserRolesRequest {
                id: helper.id.clone(),
                add_role_ids: vec![granter.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("make a helper");
    let helper_token = app.user_token(&helper.id, app.tenant_id);
    expect_code(
        users.update_user_roles(authed(grant(&deleter.id), &helper_token)).await,
        Code::PermissionDenied,
    );
    expect_code(
        users
            .update_user(authed(
                pb::UpdateUserRequest {
                    id: target.id.clone(),
                    role_ids: vec![deleter.id.clone()],
                    ..Default::default()
                },
                &app.token(&["users:update"]),
            ))
            .await,
        Code::PermissionDenied,
    );
    let unchanged = users
        .get_user(authed(GetUserRequest { id: target.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    let names: Vec<&str> = unchanged.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["empty", "granter"], "refused grants wrote nothing");

    // Unknown roles and other tenants' roles name the field.
    for id in [foreign.id.clone(), uuid::Uuid::now_v7().to_string()] {
        let status = expect_code(
            users.update_user_roles(authed(grant(&id), &admin)).await,
            Code::InvalidArgument,
        );
        assert_eq!(crate::helpers::violated_fields(&status), ["add_role_ids"]);
    }
    let status = expect_code(
        users
            .update_user_roles(authed(
                pb::UpdateUserRolesRequest {
                    id: target.id.clone(),
                    add_role_ids: vec!["nope".into()],
                    remove_role_ids: vec![empty.id.clone(), empty.id.clone(), "bad".into()],
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        crate::helpers::violated_fields(&status),
        ["add_role_ids[0]", "remove_role_ids[2]"]
    );
}

#[tokio::test]
async fn effective_permissions_list_every_source() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let user = app
        .create_users(vec![crate::helpers::active_draft("sources@example.com")])
        .await
        .remove(0);
    let direct = crate::roles::create_role(&app, &admin, "direct", &["users:read", "users:list"]).await;
    let inherited = crate::roles::create_role(&app, &admin, "inherited", &["users:read", "groups:*"]).await;
    let group = crate::groups::create_group(&app, &admin, "team", &[&inherited.id]).await;
    let mut users = app.users();
    users
        .update_user(authed(
            pb::UpdateUserRequest {
                id: user.id.clone(),
                permissions: vec!["users:list".into()],
                role_ids: vec![direct.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("grant");
    users
        .add_user_to_group(authed(
            pb::AddUserToGroupRequest {
                user_id: user.id.clone(),
                group_id: group.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("join");

    // The user reads its own permissions (allow_self) with its user token.
    let own = users
        .get_user_permissions(authed(
            pb::GetUserPermissionsRequest { id: user.id.clone() },
            &app.user_token(&user.id, app.tenant_id),
        ))
        .await
        .expect("self")
        .into_inner();
    assert_eq!(own.user_id, user.id);
    assert_eq!(own.tenant_id, app.tenant_id.to_string());
    let by_role = |role_id: &str| pb::PermissionSource {
        role_id: role_id.to_owned(),
        ..Default::default()
    };
    let via_group = pb::PermissionSource {
        role_id: inherited.id.clone(),
        group_id: group.id.clone(),
        direct: false,
    };
    let direct_grant = pb::PermissionSource {
        direct: true,
        ..Default::default()
    };
    let expected = vec![
        pb::EffectivePermission {
            permission: "groups:*".into(),
            sources: vec![via_group.clone()],
        },
        pb::EffectivePermission {
            permission: "users:list".into(),
            sources: vec![direct_grant, by_role(&direct.id)],
        },
        pb::EffectivePermission {
            permission: "users:read".into(),
            sources: vec![by_role(&direct.id), via_group],
        },
    ];
    assert_eq!(own.permissions, expected);
}

/// A token newer than the access cache knows (on another replica, the
/// reset's change notice not yet arrived) is checked against the database,
/// not refused as revoked; the older tokens are refused from then on.
#[tokio::test]
async fn a_token_newer_than_the_cached_generation_is_checked_against_the_database() {
    use castellan::{
        auth::token::{SubjectKind, TokenRequest},
        store::entity::user,
    };
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
    let app = TestApp::spawn().await;
    let created = app
        .create_users(vec![crate::helpers::active_draft("replica@example.com")])
        .await
        .remove(0);
    let id: uuid::Uuid = created.id.parse().expect("uuid");
    let old = app.user_token(&created.id, app.tenant_id);
    let mut users = app.users();
    users
        .who_am_i(authed(WhoAmIRequest {}, &old))
        .await
        .expect("the user's access is cached");
    // The generation moved on by another replica: written without this
    // server's commit, so nothing here outdates the cached entry.
    user::Entity::update_many()
        .col_expr(user::Column::TokenGeneration, Expr::value(1))
        .filter(user::Column::Id.eq(id))
        .exec(&app.app.db)
        .await
        .expect("bump the generation");
    let (new, _) = app
        .app
        .keys
        .issue(&TokenRequest {
            kind: SubjectKind::User,
            subject: created.id.clone(),
            tenant_id: app.tenant_id,
            permissions: Vec::new(),
            global: false,
            generation: 1,
            ttl: std::time::Duration::from_secs(600),
        })
        .expect("issue");
    users
        .who_am_i(authed(WhoAmIRequest {}, &new))
        .await
        .expect("the newer token works");
    let revoked = expect_code(
        users.who_am_i(authed(WhoAmIRequest {}, &old)).await,
        Code::Unauthenticated,
    );
    assert_eq!(error_reason(&revoked), "TOKEN_REVOKED");
}

/// `castellan token ARGS` with the configuration of `app`'s server.
async fn mint(app: &TestApp, args: &[&str]) -> Result<String, castellan::error::Error> {
    let (_, args) = token_command(args);
    castellan::token_cli::run(&app.app.config, &args).await
}

/// `castellan token ARGS`: the configuration and the command's arguments.
fn token_command(args: &[&str]) -> (castellan::config::Config, castellan::config::TokenArgs) {
    let mut argv = vec!["castellan", "token"];
    argv.extend_from_slice(args);
    let cli = castellan::config::Cli::try_parse_from(argv).expect("valid arguments");
    let Some(castellan::config::Command::Token(args)) = cli.command else {
        panic!("not the token command");
    };
    (cli.config, args)
}

/// `castellan token` only reads. Without the server's signing key it fails
/// (a key of its own would sign tokens no server accepts) and writes
/// nothing; with it, on a database nobody migrated, it fails and leaves the
/// database unmigrated.
#[tokio::test]
async fn the_token_command_needs_the_servers_key_and_a_migrated_database() {
    let app = TestApp::spawn().await;
    let empty = tempfile::tempdir().expect("temp dir");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args(["token", "--subject", "ops", "--permission", "users:read", "--data-dir"])
        .arg(empty.path())
        .env_remove("CASTELLAN_DATABASE_URL")
        .env_remove("CASTELLAN_SIGNING_KEY_FILE")
        .output()
        .expect("run castellan");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty(), "no token printed");
    assert!(stderr.contains("--signing-key-file: no signing key at"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(empty.path()).expect("list").count(),
        0,
        "neither a key nor a database written"
    );

    let (database_url, _database) = crate::helpers::test_database(empty.path()).await;
    let key = app.data_dir().join("signing-key.pem").display().to_string();
    let (config, args) = token_command(&[
        "--subject",
        "ops",
        "--database-url",
        &database_url,
        "--signing-key-file",
        &key,
    ]);
    let error = castellan::token_cli::run(&config, &args).await.expect_err("refused");
    assert!(error.to_string().contains("--database-url"), "{error}");
    let db = sea_orm::Database::connect(&database_url).await.expect("connect");
    let pending = Migrator::get_pending_migrations_read_only(&db).await.expect("status");
    assert_eq!(pending.len(), Migrator::migrations().len(), "nothing migrated");
}

#[tokio::test]
async fn the_token_command_mints_user_tokens_with_the_claims_login_issues() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let user = app
        .create_users(vec![crate::helpers::active_draft("cli@example.com")])
        .await
        .remove(0);
    let pending = app.create_users(vec![draft("pending@example.com")]).await.remove(0);
    app.create_users_in(other, vec![crate::helpers::active_draft("elsewhere@example.com")])
        .await;

    for key in [user.id.as_str(), "CLI@example.com"] {
        let token = mint(&app, &["--user", key, "--tenant", "default"])
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        let claims = app.app.keys.verify(&token).expect("verifies");
        assert_eq!(claims.kind, castellan::auth::token::SubjectKind::User);
        assert_eq!(claims.sub, user.id);
        assert_eq!(claims.tid, app.tenant_id.to_string());
        assert!(claims.perms.is_empty() && !claims.global);
        let me = app
            .users()
            .who_am_i(authed(WhoAmIRequest {}, &token))
            .await
            .expect("the token works")
            .into_inner();
        assert_eq!(me.id, user.id);
    }
    for refused in [
        vec!["--user", pending.id.as_str()],
        vec!["--user", "nobody@example.com"],
        vec!["--user", "elsewhere@example.com"],
        vec!["--user", "cli@example.com", "--tenant", "other"],
    ] {
        let error = mint(&app, &refused).await.expect_err("refused");
        assert!(error.to_string().contains("--user"), "{refused:?}: {error}");
    }
    // After a reset revoked the user's tokens, a minted one carries the
    // user's new generation and works.
    app.users()
        .reset_user_password(authed(
            pb::ResetUserPasswordRequest {
                id: user.id.clone(),
                password: "a brand new secret".into(),
                temporary: Some(false),
            },
            &app.token(&["users:password-reset"]),
        ))
        .await
        .expect("reset");
    let token = mint(&app, &["--user", &user.id]).await.expect("user token");
    assert_eq!(app.app.keys.verify(&token).expect("verifies").generation, 1);
    app.users()
        .who_am_i(authed(WhoAmIRequest {}, &token))
        .await
        .expect("the token minted after the reset works");
    let service = mint(&app, &["--subject", "ops", "--permission", "users:read"])
        .await
        .expect("service token");
    assert_eq!(
        app.app.keys.verify(&service).expect("verifies").kind,
        castellan::auth::token::SubjectKind::Service
    );

    for conflicting in [
        vec!["castellan", "token"],
        vec!["castellan", "token", "--subject", "ops", "--user", "cli@example.com"],
        vec!["castellan", "token", "--user", "cli@example.com", "--permission", "*"],
        vec!["castellan", "token", "--user", "cli@example.com", "--global"],
    ] {
        assert!(
            castellan::config::Cli::try_parse_from(&conflicting).is_err(),
            "{conflicting:?}"
        );
    }
}

/// A request that does not decode (here a Login whose username is not
/// UTF-8, which no generated client sends) is INVALID_ARGUMENT naming the
/// field, like any other bad input, not INTERNAL.
#[tokio::test]
async fn a_request_that_does_not_decode_is_invalid_naming_its_field() {
    /// LoginRequest's wire form with `username` (1) as raw bytes.
    #[derive(Clone, PartialEq, prost::Message)]
    struct RawLogin {
        #[prost(bytes = "vec", tag = "1")]
        username: Vec<u8>,
    }
    let app = TestApp::spawn().await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    let refused = grpc
        .unary::<_, pb::LoginResponse, _>(
            Request::new(RawLogin {
                username: vec![b'a', 0xFF, 0xFE],
            }),
            http::uri::PathAndQuery::from_static("/identity.v1.AuthService/Login"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("not UTF-8");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(crate::helpers::violated_fields(&refused), ["username"]);
}
