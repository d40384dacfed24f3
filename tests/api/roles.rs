//! RoleService: the catalog, tenant scope, versions, deletion rules, global
//! roles and no escalation.

use castellan::pb::{
    self, CreateRoleRequest, DeleteRoleRequest, GetRoleRequest, ListPermissionsRequest, ListRolesRequest, Role,
    UpdateRoleRequest, UpdateUserRolesRequest,
};
use sea_orm::{ActiveModelTrait, ActiveValue::Set};
use tonic::Code;

use crate::helpers::{TestApp, authed, behind, draft, expect_code, expect_invalid_field, violated_fields};

/// Creates a role of the token's tenant.
pub async fn create_role(app: &TestApp, token: &str, name: &str, permissions: &[&str]) -> Role {
    app.roles()
        .create_role(authed(
            CreateRoleRequest {
                name: name.to_owned(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("create role {name}: {e}"))
        .into_inner()
}

/// Creates a global role, as a global service token holding everything.
pub async fn create_global_role(app: &TestApp, name: &str, permissions: &[&str]) -> Role {
    app.roles()
        .create_role(authed(
            CreateRoleRequest {
                name: name.to_owned(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                global: true,
                ..Default::default()
            },
            &app.global_token(&["*"]),
        ))
        .await
        .unwrap_or_else(|e| panic!("create global role {name}: {e}"))
        .into_inner()
}

async fn list_names(app: &TestApp, token: &str) -> Vec<String> {
    app.roles()
        .list_roles(authed(
            ListRolesRequest {
                limit: 100,
                sort: vec!["name".into()],
                ..Default::default()
            },
            token,
        ))
        .await
        .expect("list roles")
        .into_inner()
        .roles
        .into_iter()
        .map(|r| r.name)
        .collect()
}

#[tokio::test]
async fn roles_are_created_read_and_listed_within_their_tenant() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let admin = app.token(&["*"]);
    let mut roles = app.roles();

    let viewer = create_role(&app, &admin, "viewer", &["users:read", "users:list", "users:read"]).await;
    assert_eq!(viewer.tenant_id, app.tenant_id.to_string());
    assert_eq!(viewer.version, 1);
    assert_eq!(viewer.permissions, ["users:list", "users:read"], "sorted, deduplicated");
    assert_eq!(viewer.created_by, "", "created by a service token");
    assert!(viewer.created_at.is_some() && viewer.updated_at.is_some());

    let got = roles
        .get_role(authed(GetRoleRequest { id: viewer.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, viewer);

    // The same name in another tenant is fine; twice in one tenant is not.
    let theirs = create_role(&app, &app.token_in(other, &["*"]), "viewer", &[]).await;
    let status = expect_code(
        roles
            .create_role(authed(
                CreateRoleRequest {
                    name: "viewer".into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("name"), "{}", status.message());

    // Another tenant's role does not exist here.
    for id in [theirs.id.clone(), uuid::Uuid::now_v7().to_string()] {
        expect_code(
            roles.get_role(authed(GetRoleRequest { id }, &admin)).await,
            Code::NotFound,
        );
    }
    assert_eq!(list_names(&app, &admin).await, ["viewer"]);

    // A user caller is recorded as the creator.
    let creator = app
        .create_users(vec![crate::helpers::active_draft("creator@example.com")])
        .await
        .remove(0);
    let made = create_role(&app, &admin, "role-maker", &["roles:create"]).await;
    app.users()
        .update_user_roles(authed(
            UpdateUserRolesRequest {
                id: creator.id.clone(),
                add_role_ids: vec![made.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("grant");
    let by_user = create_role(&app, &app.user_token(&creator.id, app.tenant_id), "by-user", &[]).await;
    assert_eq!(by_user.created_by, creator.id);

    let status = expect_code(
        roles
            .create_role(authed(
                CreateRoleRequest {
                    name: " ".into(),
                    description: "x".repeat(1001),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["name", "description"]);
}

#[tokio::test]
async fn permissions_must_be_in_the_catalog_and_wildcards_over_it() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let mut roles = app.roles();

    let status = expect_code(
        roles
            .create_role(authed(
                CreateRoleRequest {
                    name: "bad".into(),
                    permissions: vec![
                        "users:read".into(),
                        "users:*".into(),
                        "users:fly".into(),
                        "nope:*".into(),
                        "billing:invoices:read".into(),
                    ],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        ["permissions[2]", "permissions[3]", "permissions[4]"]
    );

    // Registered permissions join the catalog (PermissionService writes this table).
    castellan::store::entity::registered_permission::ActiveModel {
        name: Set("billing:invoices:read".into()),
        namespace: Set("billing".into()),
        description: Set("Read invoices".into()),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(&app.app.db)
    .await
    .expect("register");
    let role = create_role(
        &app,
        &admin,
        "billing",
        &["billing:invoices:read", "billing:*", "billing:invoices:*", "*"],
    )
    .await;
    assert_eq!(
        role.permissions,
        ["*", "billing:*", "billing:invoices:*", "billing:invoices:read"]
    );

    let reader = app.token(&["roles:read"]);
    let list = |request: ListPermissionsRequest| {
        let mut roles = roles.clone();
        let reader = reader.clone();
        async move {
            roles
                .list_permissions(authed(request, &reader))
                .await
                .expect("catalog")
                .into_inner()
        }
    };
    let whole = list(ListPermissionsRequest {
        limit: 1000,
        ..Default::default()
    })
    .await;
    assert_eq!((whole.total, whole.has_next), (35, false));
    let catalog = whole.permissions;
    let names: Vec<&str> = catalog.iter().map(|p| p.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted by name");
    assert_eq!(catalog.len(), 35);

    // Paged like every List: 10 by default, by token or by offset, and
    // either way round.
    let mut by_token = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(ListPermissionsRequest {
            page_token: page_token.clone(),
            ..Default::default()
        })
        .await;
        assert_eq!((page.limit, page.total), (10, 35));
        by_token.extend(page.permissions.into_iter().map(|p| p.name));
        if !page.has_next {
            assert!(page.list_completed);
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(by_token, names);
    let fourth = list(ListPermissionsRequest {
        offset: 30,
        ..Default::default()
    })
    .await;
    assert_eq!(
        (fourth.page, fourth.has_previous, fourth.permissions.len()),
        (3, true, 5)
    );
    assert_eq!(fourth.permissions[0].name, names[30]);
    let newest_name_first = list(ListPermissionsRequest {
        limit: 3,
        sort: vec!["-name".into()],
        ..Default::default()
    })
    .await;
    let next = list(ListPermissionsRequest {
        limit: 3,
        sort: vec!["-name".into()],
        page_token: newest_name_first.next_page_token,
        ..Default::default()
    })
    .await;
    let descending: Vec<String> = newest_name_first
        .permissions
        .into_iter()
        .chain(next.permissions)
        .map(|p| p.name)
        .collect();
    let mut expected: Vec<String> = names.iter().rev().take(6).map(|name| name.to_string()).collect();
    expected.truncate(6);
    assert_eq!(descending, expected);
    let status = roles
        .clone()
        .list_permissions(authed(
            ListPermissionsRequest {
                limit: 1001,
                sort: vec!["namespace".into()],
                ..Default::default()
            },
            &reader,
        ))
        .await
        .expect_err("out of range");
    assert_eq!(violated_fields(&status), ["limit", "sort[0]"]);
    assert!(catalog.iter().all(|p| !p.description.is_empty()));
    let billing = catalog
        .iter()
        .find(|p| p.name == "billing:invoices:read")
        .expect("registered");
    assert!(!billing.built_in);
    assert_eq!(billing.description, "Read invoices");
    for built_in in [
        "users:password-reset",
        "groups:members",
        "permissions:check",
        "audit:read",
    ] {
        assert!(catalog.iter().any(|p| p.name == built_in && p.built_in), "{built_in}");
    }

    // Direct grants (UpdateUser) follow the catalog too.
    let user = app.create_users(vec![draft("direct@example.com")]).await.remove(0);
    let status = expect_code(
        app.users()
            .update_user(authed(
                pb::UpdateUserRequest {
                    id: user.id.clone(),
                    permissions: vec!["users:read".into(), "users:*".into(), "users:fly".into()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["permissions[2]"]);
}

#[tokio::test]
async fn updates_need_the_current_version_and_bump_it() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let mut roles = app.roles();
    let role = create_role(&app, &admin, "editor", &["users:read"]).await;

    let status = expect_code(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: role.id.clone(),
                    add_permissions: vec!["users:nope".into()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["version", "add_permissions[0]"]);

    let updated = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: 1,
                name: Some("writer".into()),
                description: Some("Writes".into()),
                add_permissions: vec!["users:update".into(), "users:list".into()],
                remove_permissions: vec!["users:read".into()],
                update_mask: None,
            },
            &admin,
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.name, "writer");
    assert_eq!(updated.description, "Writes");
    assert_eq!(updated.permissions, ["users:list", "users:update"]);

    // A stale version is ABORTED and changes nothing.
    let status = expect_code(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: role.id.clone(),
                    version: 1,
                    name: Some("stale".into()),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::Aborted,
    );
    assert!(status.message().contains("version"), "{}", status.message());
    // Even an update without changes bumps the version.
    let touched = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: 2,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("touch")
        .into_inner();
    assert_eq!((touched.version, touched.name.as_str()), (3, "writer"));

    // Adding and removing one permission at once is a contradiction.
    let status = expect_code(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: role.id.clone(),
                    version: 3,
                    add_permissions: vec!["users:read".into()],
                    remove_permissions: vec!["users:read".into()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["remove_permissions"]);
}

/// UpdateRole's `update_mask` (AIP-134): only the named fields change, a
/// named field left unset takes its empty value, and an unknown path is
/// INVALID_ARGUMENT naming the mask.
#[tokio::test]
async fn update_role_changes_only_what_its_mask_names() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let mut roles = app.roles();
    let role = create_role(&app, &admin, "editor", &["users:read"]).await;
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| p.to_string()).collect(),
        })
    };
    let updated = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: 1,
                name: Some("ignored".into()),
                description: Some("Edits".into()),
                add_permissions: vec!["users:list".into()],
                update_mask: mask(&["description", "add_permissions"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.name, "editor");
    assert_eq!(updated.description, "Edits");
    assert_eq!(updated.permissions, ["users:list", "users:read"]);

    let cleared = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: 2,
                update_mask: mask(&["description"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("clear")
        .into_inner();
    assert_eq!((cleared.description.as_str(), cleared.version), ("", 3));

    for (paths, field) in [(&["name"][..], "name"), (&["name", "colour"][..], "update_mask")] {
        let status = expect_code(
            roles
                .update_role(authed(
                    UpdateRoleRequest {
                        id: role.id.clone(),
                        version: 3,
                        update_mask: mask(paths),
                        ..Default::default()
                    },
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field], "{paths:?}");
    }
    let unchanged = roles
        .get_role(authed(GetRoleRequest { id: role.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    assert_eq!((unchanged.name.as_str(), unchanged.version), ("editor", 3));
}

/// A permission list is bounded like every list of a request (70,000
/// removals were one statement past the database's parameter limit:
/// INTERNAL).
#[tokio::test]
async fn a_role_takes_at_most_a_thousand_permissions_a_call() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = create_role(&app, &admin, "bounded", &["users:read"]).await;
    let names = |n: usize| (0..n).map(|i| format!("reports:export-{i}")).collect::<Vec<_>>();
    let mut roles = app.roles();
    expect_invalid_field(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: role.id.clone(),
                    version: role.version,
                    remove_permissions: names(1001),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        "remove_permissions",
        "at most 1000",
    );
    expect_invalid_field(
        roles
            .create_role(authed(
                CreateRoleRequest {
                    name: "too-many".into(),
                    permissions: names(1001),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        "permissions",
        "at most 1000",
    );
    let removed = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: role.id.clone(),
                version: role.version,
                remove_permissions: names(1000),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("a thousand removals")
        .into_inner();
    assert_eq!(removed.permissions, ["users:read"]);
}

/// A hundred long unknown permissions: an INVALID_ARGUMENT listing as many
/// as fit its trailer, not a broken HTTP/2 stream (the trailer used to
/// outgrow the client's 16 KiB header limit).
#[tokio::test]
async fn many_long_unknown_permissions_are_an_invalid_argument() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let permissions: Vec<String> = (0..100)
        .map(|i| format!("billing:invoices-of-the-northern-region-and-its-subsidiaries:export-{i:03}"))
        .collect();
    let status = expect_code(
        app.roles()
            .create_role(authed(
                CreateRoleRequest {
                    name: "many".into(),
                    permissions,
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    let fields = violated_fields(&status);
    assert!(
        (10..100).contains(&fields.len()) && fields[0] == "permissions[0]",
        "{fields:?}"
    );
    assert!(status.message().ends_with("more"), "{}", status.message());
}

/// Several updates carrying the same version, released at once, round after
/// round: exactly one wins each round, the others are ABORTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_updates_with_one_version_let_exactly_one_win() {
    const CONTENDERS: usize = 4;
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = create_role(&app, &admin, "contested", &[]).await;
    for (round, version) in (role.version..role.version + 8).enumerate() {
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(CONTENDERS));
        let attempts: Vec<_> = (0..CONTENDERS)
            .map(|contender| {
                let mut roles = app.roles();
                let start = start.clone();
                let request = authed(
                    UpdateRoleRequest {
                        id: role.id.clone(),
                        version,
                        name: Some(format!("contested-{round}-{contender}")),
                        add_permissions: vec![["users:read", "users:list"][contender % 2].to_owned()],
                        ..Default::default()
                    },
                    &admin,
                );
                tokio::spawn(async move {
                    start.wait().await;
                    roles.update_role(request).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for attempt in attempts {
            match attempt.await.expect("task") {
                Ok(role) => winners.push(role.into_inner()),
                Err(status) => assert_eq!(status.code(), Code::Aborted, "round {round}: {status:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one update wins");
        assert_eq!(winners[0].version, version + 1);
        let stored = app
            .roles()
            .get_role(authed(GetRoleRequest { id: role.id.clone() }, &admin))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(
            stored, winners[0],
            "round {round}: the winner's write is what is stored"
        );
    }
}

#[tokio::test]
async fn granted_roles_are_deleted_only_with_force() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let mut roles = app.roles();
    let user = app.create_users(vec![draft("holder@example.com")]).await.remove(0);
    let held = create_role(&app, &admin, "held", &["users:read"]).await;
    let in_group = create_role(&app, &admin, "in-group", &[]).await;
    let free = create_role(&app, &admin, "free", &[]).await;
    app.users()
        .update_user_roles(authed(
            UpdateUserRolesRequest {
                id: user.id.clone(),
                add_role_ids: vec![held.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("grant");
    app.groups()
        .create_group(authed(
            pb::CreateGroupRequest {
                name: "team".into(),
                role_ids: vec![in_group.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("group");

    for role in [&held, &in_group] {
        expect_code(
            roles
                .delete_role(authed(
                    DeleteRoleRequest {
                        id: role.id.clone(),
                        force: false,
                    },
                    &admin,
                ))
                .await,
            Code::FailedPrecondition,
        );
    }
    roles
        .delete_role(authed(
            DeleteRoleRequest {
                id: free.id.clone(),
                force: false,
            },
            &admin,
        ))
        .await
        .expect("an unused role goes without force");
    for role in [&held, &in_group] {
        roles
            .delete_role(authed(
                DeleteRoleRequest {
                    id: role.id.clone(),
                    force: true,
                },
                &admin,
            ))
            .await
            .expect("forced");
    }
    let user = app
        .users()
        .get_user(authed(pb::GetUserRequest { id: user.id.clone() }, &admin))
        .await
        .expect("user")
        .into_inner();
    assert!(user.roles.is_empty(), "the grant went with the role");
    assert!(list_names(&app, &admin).await.is_empty());
    expect_code(
        roles
            .delete_role(authed(
                DeleteRoleRequest {
                    id: held.id.clone(),
                    force: true,
                },
                &admin,
            ))
            .await,
        Code::NotFound,
    );
}

#[tokio::test]
async fn global_roles_are_valid_everywhere_and_read_only_for_tenant_callers() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let global = app.global_token(&["*"]);
    let local = app.token(&["*"]);
    let mut roles = app.roles();

    let request = CreateRoleRequest {
        name: "auditor".into(),
        permissions: vec!["audit:read".into()],
        global: true,
        ..Default::default()
    };
    expect_code(
        roles.create_role(authed(request.clone(), &local)).await,
        Code::PermissionDenied,
    );
    let auditor = roles
        .create_role(authed(request, &global))
        .await
        .expect("global role")
        .into_inner();
    assert_eq!(auditor.tenant_id, "");

    // Listed and readable in every tenant, next to the tenant's own roles.
    create_role(&app, &local, "local", &[]).await;
    assert_eq!(list_names(&app, &local).await, ["auditor", "local"]);
    assert_eq!(list_names(&app, &app.token_in(other, &["*"])).await, ["auditor"]);
    roles
        .get_role(authed(GetRoleRequest { id: auditor.id.clone() }, &local))
        .await
        .expect("readable");

    // Read-only for callers without a global role.
    expect_code(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: auditor.id.clone(),
                    version: 1,
                    name: Some("mine".into()),
                    ..Default::default()
                },
                &local,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        roles
            .delete_role(authed(
                DeleteRoleRequest {
                    id: auditor.id.clone(),
                    force: true,
                },
                &local,
            ))
            .await,
        Code::PermissionDenied,
    );
    // Granting a global role to a user (it then holds in every tenant) also needs a global caller.
    let user = app.create_users(vec![draft("audited@example.com")]).await.remove(0);
    let grant = UpdateUserRolesRequest {
        id: user.id.clone(),
        add_role_ids: vec![auditor.id.clone()],
        ..Default::default()
    };
    expect_code(
        app.users().update_user_roles(authed(grant.clone(), &local)).await,
        Code::PermissionDenied,
    );
    let granted = app
        .users()
        .update_user_roles(authed(grant, &global))
        .await
        .expect("global caller grants")
        .into_inner();
    assert_eq!(granted.roles.len(), 1);

    let updated = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: auditor.id.clone(),
                version: 1,
                description: Some("Reads the audit trail".into()),
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("global caller updates")
        .into_inner();
    assert_eq!(updated.version, 2);
}

#[tokio::test]
async fn roles_never_carry_permissions_their_author_lacks() {
    let app = TestApp::spawn().await;
    let limited = app.token(&["roles:*", "users:read"]);
    let mut roles = app.roles();
    let status = expect_code(
        roles
            .create_role(authed(
                CreateRoleRequest {
                    name: "sneaky".into(),
                    permissions: vec!["users:read".into(), "users:delete".into()],
                    ..Default::default()
                },
                &limited,
            ))
            .await,
        Code::PermissionDenied,
    );
    assert!(status.message().contains("users:delete"), "{}", status.message());
    for wildcard in ["users:*", "*"] {
        expect_code(
            roles
                .create_role(authed(
                    CreateRoleRequest {
                        name: "wild".into(),
                        permissions: vec![wildcard.into()],
                        ..Default::default()
                    },
                    &limited,
                ))
                .await,
            Code::PermissionDenied,
        );
    }
    assert!(list_names(&app, &limited).await.is_empty(), "nothing was written");

    let role = create_role(&app, &limited, "reader", &["users:read", "roles:read"]).await;
    expect_code(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: role.id.clone(),
                    version: 1,
                    name: Some("renamed".into()),
                    add_permissions: vec!["tenants:delete".into()],
                    ..Default::default()
                },
                &limited,
            ))
            .await,
        Code::PermissionDenied,
    );
    let unchanged = roles
        .get_role(authed(GetRoleRequest { id: role.id.clone() }, &limited))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(unchanged, role, "a refused update writes nothing, not even the version");
}

#[tokio::test]
async fn list_roles_pages_and_sorts() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    for name in ["delta", "alpha", "echo", "charlie", "bravo"] {
        create_role(&app, &admin, name, &[]).await;
    }
    let mut roles = app.roles();
    let first = roles
        .list_roles(authed(
            ListRolesRequest {
                limit: 2,
                sort: vec!["-name".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.total, 5);
    assert!(first.has_next && !first.list_completed && !first.has_previous);
    let names: Vec<&str> = first.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["echo", "delta"]);
    let second = roles
        .list_roles(authed(
            ListRolesRequest {
                limit: 2,
                sort: vec!["-name".into()],
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("page 2")
        .into_inner();
    let names: Vec<&str> = second.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["charlie", "bravo"]);
    assert_eq!(second.page, 1);
    let by_creation = roles
        .list_roles(authed(
            ListRolesRequest {
                offset: 4,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("offset")
        .into_inner();
    assert_eq!(by_creation.roles[0].name, "bravo", "default order: creation time");
    assert!(by_creation.list_completed);
    let status = expect_code(
        roles
            .list_roles(authed(
                ListRolesRequest {
                    sort: vec!["email".into()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["sort[0]"]);
}

/// What a user may do beyond the tenant comes from its global roles alone:
/// holding `*` through a tenant's own role and `users:read` through a global
/// one does not let it widen a global role, create one, grant one it does
/// not hold globally, create tenants, register permissions, or reset the
/// password of a user other tenants share.
#[tokio::test]
async fn a_tenants_own_roles_do_not_reach_beyond_it_for_a_holder_of_a_global_role() {
    let app = TestApp::spawn().await;
    let t2 = app.create_tenant("t2").await.to_string();
    let root = app.global_token(&["*"]);
    let mut roles = app.roles();
    let global_role = |name: &str, permission: &str| CreateRoleRequest {
        name: name.into(),
        permissions: vec![permission.into()],
        global: true,
        ..Default::default()
    };
    let support = roles
        .create_role(authed(global_role("support", "users:read"), &root))
        .await
        .expect("support")
        .into_inner();
    let everything = roles
        .create_role(authed(global_role("everything", "*"), &root))
        .await
        .expect("everything")
        .into_inner();
    let t2_admin = roles
        .create_role(crate::helpers::authed_in(
            CreateRoleRequest {
                name: "t2-admin".into(),
                permissions: vec!["*".into()],
                ..Default::default()
            },
            &root,
            &t2,
        ))
        .await
        .expect("t2-admin")
        .into_inner();
    let mut users = app.users();
    let in_both = |email: &str| pb::UserDraft {
        tenant_ids: vec!["default".into(), t2.clone()],
        ..crate::helpers::active_draft(email)
    };
    let created = users
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![in_both("g@example.com"), in_both("h@example.com")],
                ..Default::default()
            },
            &root,
        ))
        .await
        .expect("users")
        .into_inner()
        .users;
    let (g, h) = (created[0].id.clone(), created[1].id.clone());
    users
        .update_user_roles(crate::helpers::authed_in(
            UpdateUserRolesRequest {
                id: g.clone(),
                add_role_ids: vec![support.id.clone(), t2_admin.id.clone()],
                ..Default::default()
            },
            &root,
            &t2,
        ))
        .await
        .expect("grant");
    let g_t2 = app.user_token(&g, t2.parse().expect("uuid"));

    let widen = UpdateRoleRequest {
        id: support.id.clone(),
        version: support.version,
        add_permissions: vec!["*".into()],
        ..Default::default()
    };
    expect_code(roles.update_role(authed(widen, &g_t2)).await, Code::PermissionDenied);
    expect_code(
        roles.create_role(authed(global_role("mine", "*"), &g_t2)).await,
        Code::PermissionDenied,
    );
    expect_code(
        users
            .update_user_roles(authed(
                UpdateUserRolesRequest {
                    id: h.clone(),
                    add_role_ids: vec![everything.id.clone()],
                    ..Default::default()
                },
                &g_t2,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.tenants()
            .create_tenant(authed(
                pb::CreateTenantRequest {
                    name: "Mine".into(),
                    slug: "mine".into(),
                    ..Default::default()
                },
                &g_t2,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        app.tenants()
            .get_tenant(authed(pb::GetTenantRequest { id: "default".into() }, &g_t2))
            .await,
        Code::NotFound,
    );
    expect_code(
        pb::permission_service_client::PermissionServiceClient::new(app.channel.clone())
            .register_permissions(authed(
                pb::RegisterPermissionsRequest {
                    namespace: "billing".into(),
                    permissions: vec![pb::PermissionDefinition {
                        name: "billing:read".into(),
                        description: "Reads bills".into(),
                    }],
                },
                &g_t2,
            ))
            .await,
        Code::PermissionDenied,
    );
    expect_code(
        users
            .reset_user_password(authed(
                pb::ResetUserPasswordRequest {
                    id: h.clone(),
                    password: "taken over at last".into(),
                    temporary: Some(false),
                },
                &g_t2,
            ))
            .await,
        Code::FailedPrecondition,
    );

    // Within the tenant the tenant's role still counts, and what the global
    // role holds it may grant anywhere.
    users
        .update_user_roles(authed(
            UpdateUserRolesRequest {
                id: h.clone(),
                add_role_ids: vec![support.id.clone()],
                ..Default::default()
            },
            &g_t2,
        ))
        .await
        .expect("support is held globally");
    let kept = roles
        .get_role(authed(GetRoleRequest { id: support.id }, &root))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(kept.permissions, ["users:read"]);
}

/// A global role and a tenant's role never share a name: the tenant lists
/// both, and a grant by name would be ambiguous. Either way round, and on
/// rename, the second is ALREADY_EXISTS naming `name`.
#[tokio::test]
async fn a_global_role_and_a_tenants_role_do_not_share_a_name() {
    let app = TestApp::spawn().await;
    let global = app.global_token(&["*"]);
    let local = app.token(&["*"]);
    let mut roles = app.roles();
    let create = |name: &str, is_global: bool| CreateRoleRequest {
        name: name.into(),
        permissions: vec!["users:read".into()],
        global: is_global,
        ..Default::default()
    };
    roles
        .create_role(authed(create("ops", true), &global))
        .await
        .expect("global ops");
    let status = expect_code(
        roles.create_role(authed(create("ops", false), &local)).await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("name"), "{}", status.message());

    let support = create_role(&app, &local, "support", &["users:read"]).await;
    expect_code(
        roles.create_role(authed(create("support", true), &global)).await,
        Code::AlreadyExists,
    );
    expect_code(
        roles
            .update_role(authed(
                UpdateRoleRequest {
                    id: support.id.clone(),
                    version: support.version,
                    name: Some("ops".into()),
                    ..Default::default()
                },
                &local,
            ))
            .await,
        Code::AlreadyExists,
    );
    let renamed = roles
        .update_role(authed(
            UpdateRoleRequest {
                id: support.id.clone(),
                version: support.version,
                name: Some("support".into()),
                description: Some("unchanged name".into()),
                ..Default::default()
            },
            &local,
        ))
        .await
        .expect("keeping its own name is no clash")
        .into_inner();
    assert_eq!(renamed.version, support.version + 1);
}

/// A tenant's role created while a global role of the same name is being
/// written (its transaction checked the name and wrote the role, and has not
/// committed) waits for it and is ALREADY_EXISTS. On PostgreSQL both used to
/// land: each checked before the other's row was there, and no index spans
/// a global role and a tenant's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_role_named_while_a_global_role_takes_the_name_is_refused() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let global = castellan::store::entity::role::Model {
        id: uuid::Uuid::now_v7(),
        tenant_id: None,
        name: "ops".into(),
        description: String::new(),
        version: 1,
        created_by: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
    };
    let writing = app.app.writer.begin().await.expect("begin");
    let shadowed = castellan::store::roles::name_shadowed(&writing, None, "ops", None)
        .await
        .expect("check the name");
    assert!(!shadowed);
    castellan::store::roles::insert(&writing, &global, &[])
        .await
        .expect("write the global role");
    let mut roles = app.roles();
    let call = async move {
        let request = CreateRoleRequest {
            name: "ops".into(),
            ..Default::default()
        };
        roles.create_role(authed(request, &admin)).await.map(drop)
    };
    let status = expect_code(behind(&app, writing, call).await, Code::AlreadyExists);
    assert!(status.message().contains("name"), "{}", status.message());
}

/// A role deleted while an UpdateRole or a DeleteRole waited for the writer
/// is NOT_FOUND (they used to answer ABORTED, as for a stale version, and
/// FAILED_PRECONDITION, as for a granted role).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_deleted_meanwhile_is_not_found() {
    use sea_orm::{EntityTrait, TransactionTrait};
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    for update in [true, false] {
        let role = create_role(&app, &admin, if update { "updated" } else { "deleted" }, &[]).await;
        let id: uuid::Uuid = role.id.parse().expect("uuid");
        let deletion = app.app.writer.begin().await.expect("begin");
        castellan::store::entity::role::Entity::delete_by_id(id)
            .exec(&deletion)
            .await
            .expect("delete");
        let mut roles = app.roles();
        let token = admin.clone();
        let call = async move {
            if update {
                let request = UpdateRoleRequest {
                    id: role.id.clone(),
                    version: role.version,
                    description: Some("late".into()),
                    ..Default::default()
                };
                roles.update_role(authed(request, &token)).await.map(drop)
            } else {
                let request = DeleteRoleRequest {
                    id: role.id.clone(),
                    force: false,
                };
                roles.delete_role(authed(request, &token)).await.map(drop)
            }
        };
        expect_code(behind(&app, deletion, call).await, Code::NotFound);
    }
}

/// DeleteRole (without `force`) behind a grant of the role that commits
/// while it waits is FAILED_PRECONDITION, and the grant stays. (On
/// PostgreSQL the deletion's "not granted" was read before it waited for
/// the grant's lock on the role, and the role went, its new grant
/// cascading with it.)
#[tokio::test]
async fn a_role_granted_while_its_deletion_waits_is_not_deleted() {
    use castellan::store::entity::user_role;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, PaginatorTrait, TransactionTrait};
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = create_role(&app, &admin, "contested", &[]).await;
    let user = app.create_users(vec![draft("holder@example.com")]).await.remove(0);
    let role_id: uuid::Uuid = role.id.parse().expect("uuid");
    let grant = app.app.writer.begin().await.expect("begin");
    user_role::ActiveModel {
        user_id: Set(user.id.parse().expect("uuid")),
        role_id: Set(role_id),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(&grant)
    .await
    .expect("grant");
    let mut roles = app.roles();
    let request = authed(
        DeleteRoleRequest {
            id: role.id.clone(),
            force: false,
        },
        &admin,
    );
    let deletion = async move { roles.delete_role(request).await };
    expect_code(behind(&app, grant, deletion).await, Code::FailedPrecondition);
    let grants = user_role::Entity::find_by_id((user.id.parse().expect("uuid"), role_id))
        .count(&app.app.db)
        .await
        .expect("count");
    assert_eq!(grants, 1, "the grant stays");
}
