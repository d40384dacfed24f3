use castellan::pb::{
    self, CreateTenantRequest, DeleteTenantRequest, GetTenantRequest, ListTenantsRequest, UpdateTenantRequest,
};
use tonic::Code;

use crate::helpers::{
    TestApp, active_draft, authed, behind, draft, expect_code, held_tenant_deletion, violated_fields,
};

#[tokio::test]
async fn tenants_are_created_read_listed_updated_and_deleted() {
    let app = TestApp::spawn().await;
    let token = app.global_token(&["tenants:*"]);
    let mut tenants = app.tenants();
    let created = tenants
        .create_tenant(authed(
            CreateTenantRequest {
                name: "Acme Corp".into(),
                slug: "acme".into(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(created.slug, "acme");
    assert_eq!(created.status, pb::TenantStatus::Active as i32);
    assert!(created.created_at.is_some());

    for key in [created.id.clone(), "acme".to_owned()] {
        let got = tenants
            .get_tenant(authed(GetTenantRequest { id: key }, &token))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(got, created);
    }

    let listed = tenants
        .list_tenants(authed(ListTenantsRequest::default(), &token))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 2, "default and acme");
    let slugs: Vec<&str> = listed.tenants.iter().map(|t| t.slug.as_str()).collect();
    assert_eq!(slugs, ["default", "acme"], "oldest first");
    let by_slug_desc = tenants
        .list_tenants(authed(
            ListTenantsRequest {
                sort: vec!["-slug".into()],
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(by_slug_desc.tenants[0].slug, "default");

    // A member, added with the tenant's own token while it is active (a
    // suspended tenant refuses it).
    let member = app
        .create_users_in(created.id.parse().expect("uuid"), vec![draft("member@example.com")])
        .await;

    let updated = tenants
        .update_tenant(authed(
            UpdateTenantRequest {
                id: created.id.clone(),
                name: "Acme Inc".into(),
                status: pb::TenantStatus::Suspended as i32,
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["name".into()],
                }),
            },
            &token,
        ))
        .await
        .expect("update")
        .into_inner();
    assert_eq!(updated.name, "Acme Inc");
    assert_eq!(
        updated.status,
        pb::TenantStatus::Active as i32,
        "status not in the mask"
    );

    let suspended = tenants
        .update_tenant(authed(
            UpdateTenantRequest {
                id: created.id.clone(),
                status: pb::TenantStatus::Suspended as i32,
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("update with empty mask")
        .into_inner();
    assert_eq!(suspended.status, pb::TenantStatus::Suspended as i32);
    assert_eq!(suspended.name, "Acme Inc", "empty mask leaves unset fields");

    let status = expect_code(
        tenants
            .update_tenant(authed(
                UpdateTenantRequest {
                    id: created.id.clone(),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["slug".into()],
                    }),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["update_mask"]);

    // Deleting removes its memberships (and its users, see below).
    tenants
        .delete_tenant(authed(DeleteTenantRequest { id: created.id.clone() }, &token))
        .await
        .expect("delete");
    expect_code(
        tenants
            .get_tenant(authed(GetTenantRequest { id: created.id.clone() }, &token))
            .await,
        Code::NotFound,
    );
    let user: uuid::Uuid = member[0].id.parse().expect("uuid");
    assert!(
        castellan::store::users::find_in_tenant(&app.app.db, created.id.parse().expect("uuid"), user)
            .await
            .expect("query")
            .is_none()
    );
    // A token issued for the deleted tenant stops working.
    let stale = app.token_in(created.id.parse().expect("uuid"), &["*"]);
    expect_code(
        app.users()
            .list_users(authed(pb::ListUsersRequest::default(), &stale))
            .await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn tenant_input_is_validated_and_slugs_are_unique() {
    let app = TestApp::spawn().await;
    let token = app.global_token(&["tenants:*"]);
    let mut tenants = app.tenants();
    for (name, slug, field) in [
        ("", "ok-slug", "name"),
        ("N", "Bad_Slug", "slug"),
        ("N", "a", "slug"),
        ("N", "x".repeat(64).as_str(), "slug"),
    ] {
        let status = expect_code(
            tenants
                .create_tenant(authed(
                    CreateTenantRequest {
                        name: name.into(),
                        slug: slug.into(),
                        ..Default::default()
                    },
                    &token,
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field], "{name:?} {slug:?}");
    }
    let status = expect_code(
        tenants
            .create_tenant(authed(
                CreateTenantRequest {
                    name: "Again".into(),
                    slug: "default".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::AlreadyExists,
    );
    assert!(status.message().contains("slug"), "{}", status.message());
    expect_code(
        tenants
            .get_tenant(authed(GetTenantRequest { id: "nope".into() }, &token))
            .await,
        Code::NotFound,
    );
    expect_code(
        tenants
            .list_tenants(authed(ListTenantsRequest::default(), &app.token(&["users:*"])))
            .await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn a_tenant_may_be_created_with_an_owner() {
    let app = TestApp::spawn().await;
    let owner = app.create_users(vec![draft("owner@example.com")]).await[0].id.clone();
    let token = app.global_token(&["tenants:*"]);
    let tenant = app
        .tenants()
        .create_tenant(authed(
            CreateTenantRequest {
                name: "Owned".into(),
                slug: "owned".into(),
                owner_user_id: owner.clone(),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("create")
        .into_inner();
    let in_tenant = app.token_in(tenant.id.parse().expect("uuid"), &["users:read"]);
    let user = app
        .users()
        .get_user(authed(pb::GetUserRequest { id: owner }, &in_tenant))
        .await
        .expect("owner is a member")
        .into_inner();
    assert!(user.is_owner);
    assert_eq!(user.tenant_ids.len(), 2);
}

/// Pages every tenant by `page_token`, two at a time, in `sort` order.
async fn every_tenant_slug(app: &TestApp, token: &str, sort: &[&str]) -> Vec<String> {
    let mut slugs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .tenants()
            .list_tenants(authed(
                ListTenantsRequest {
                    limit: 2,
                    page_token: page_token.clone(),
                    sort: sort.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(page.total, 6, "{sort:?}");
        slugs.extend(page.tenants.into_iter().map(|t| t.slug));
        if !page.has_next {
            return slugs;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test]
async fn tenants_page_by_token_in_every_sort_order() {
    let app = TestApp::spawn().await;
    let token = app.global_token(&["tenants:*"]);
    // Created in this order; names sort differently from slugs.
    for (slug, name) in [
        ("echo", "Alpha"),
        ("bravo", "Delta"),
        ("delta", "Bravo"),
        ("alpha", "Echo"),
        ("charlie", "Charlie"),
    ] {
        app.tenants()
            .create_tenant(authed(
                CreateTenantRequest {
                    name: name.into(),
                    slug: slug.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .unwrap_or_else(|e| panic!("create {slug}: {e}"));
    }
    let created = ["default", "echo", "bravo", "delta", "alpha", "charlie"];
    assert_eq!(every_tenant_slug(&app, &token, &[]).await, created, "oldest first");
    assert_eq!(every_tenant_slug(&app, &token, &["-createdAt"]).await, {
        let mut newest_first = created;
        newest_first.reverse();
        newest_first
    });
    assert_eq!(
        every_tenant_slug(&app, &token, &["-slug"]).await,
        ["echo", "delta", "default", "charlie", "bravo", "alpha"]
    );
    // The default tenant's name is "Default".
    assert_eq!(
        every_tenant_slug(&app, &token, &["name"]).await,
        ["echo", "delta", "charlie", "default", "bravo", "alpha"]
    );
}

/// A tenant's own roles reach no further than the tenant: a caller holding
/// every permission there, but no global role, sees and manages only the
/// tenant in context, as a realm's administrator in Keycloak does.
#[tokio::test]
async fn a_caller_without_a_global_role_reaches_only_the_tenant_in_context() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await.to_string();
    let local = app.token(&["*"]);
    let mut tenants = app.tenants();

    for key in [other.clone(), "other".to_owned()] {
        expect_code(
            tenants.get_tenant(authed(GetTenantRequest { id: key }, &local)).await,
            Code::NotFound,
        );
    }
    expect_code(
        tenants
            .update_tenant(authed(
                UpdateTenantRequest {
                    id: other.clone(),
                    name: "Taken".into(),
                    ..Default::default()
                },
                &local,
            ))
            .await,
        Code::NotFound,
    );
    expect_code(
        tenants
            .delete_tenant(authed(DeleteTenantRequest { id: other.clone() }, &local))
            .await,
        Code::NotFound,
    );
    expect_code(
        tenants
            .create_tenant(authed(
                CreateTenantRequest {
                    name: "Mine".into(),
                    slug: "mine".into(),
                    ..Default::default()
                },
                &local,
            ))
            .await,
        Code::PermissionDenied,
    );

    let listed = tenants
        .list_tenants(authed(ListTenantsRequest::default(), &local))
        .await
        .expect("list")
        .into_inner();
    let slugs: Vec<&str> = listed.tenants.iter().map(|t| t.slug.as_str()).collect();
    assert_eq!((slugs, listed.total), (vec!["default"], 1));

    // Its own tenant it reads and renames.
    let own = tenants
        .update_tenant(authed(
            UpdateTenantRequest {
                id: "default".into(),
                name: "Home".into(),
                ..Default::default()
            },
            &local,
        ))
        .await
        .expect("update own")
        .into_inner();
    assert_eq!(own.name, "Home");

    // The other tenant is untouched, and a global caller still sees both.
    let global = app.global_token(&["tenants:*"]);
    let kept = tenants
        .get_tenant(authed(GetTenantRequest { id: other }, &global))
        .await
        .expect("other kept")
        .into_inner();
    assert_eq!(kept.name, "OTHER");
    let all = tenants
        .list_tenants(authed(ListTenantsRequest::default(), &global))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(all.total, 2);
}

/// DeleteTenant takes the users who belong to it alone with it: left, they
/// were out of every caller's reach (NOT_FOUND even to a global `*`) with
/// their e-mail taken for good. Users of other tenants stay there.
#[tokio::test]
async fn deleting_a_tenant_deletes_the_users_it_alone_held() {
    use castellan::store::entity::user;
    use sea_orm::EntityTrait;
    let app = TestApp::spawn().await;
    let closing = app.create_tenant("closing").await;
    let global = app.global_token(&["*"]);
    let alone = app
        .create_users_in(closing, vec![active_draft("alone@example.com")])
        .await
        .remove(0);
    let both = app
        .users()
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![pb::UserDraft {
                    tenant_ids: vec!["default".into(), "closing".into()],
                    ..draft("both@example.com")
                }],
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("a user of two tenants")
        .into_inner()
        .users
        .remove(0);
    let token = app
        .login("alone@example.com", "correct horse battery")
        .await
        .expect("login")
        .access_token;

    app.tenants()
        .delete_tenant(authed(DeleteTenantRequest { id: "closing".into() }, &global))
        .await
        .expect("delete");
    let exists = |id: &str| {
        let id: uuid::Uuid = id.parse().expect("uuid");
        let db = app.app.db.clone();
        async move { user::Entity::find_by_id(id).one(&db).await.expect("query").is_some() }
    };
    assert!(!exists(&alone.id).await, "the tenant's own user is deleted");
    assert!(exists(&both.id).await, "a user of another tenant stays");
    assert!(
        castellan::store::users::find_in_tenant(&app.app.db, app.tenant_id, both.id.parse().expect("uuid"))
            .await
            .expect("query")
            .is_some()
    );
    expect_code(
        app.users().who_am_i(authed(pb::WhoAmIRequest {}, &token)).await,
        Code::Unauthenticated,
    );
    app.create_users(vec![draft("alone@example.com")]).await;
}

/// A user held by the tenant alone who holds a global role (a platform
/// operator) is not deleted as a side effect: DeleteTenant refuses and
/// deletes nothing.
#[tokio::test]
async fn a_tenant_whose_own_user_holds_a_global_role_is_not_deleted() {
    use castellan::store::entity::user_role;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let app = TestApp::spawn().await;
    let home = app.create_tenant("home").await;
    let global = app.global_token(&["*"]);
    let operator = app
        .create_users_in(home, vec![draft("operator@example.com")])
        .await
        .remove(0);
    let role = crate::roles::create_global_role(&app, "operators", &["tenants:read"]).await;
    user_role::ActiveModel {
        user_id: Set(operator.id.parse().expect("uuid")),
        role_id: Set(role.id.parse().expect("uuid")),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(&app.app.db)
    .await
    .expect("grant");

    let status = expect_code(
        app.tenants()
            .delete_tenant(authed(DeleteTenantRequest { id: "home".into() }, &global))
            .await,
        Code::FailedPrecondition,
    );
    assert!(status.message().contains("global role"), "{}", status.message());
    app.tenants()
        .get_tenant(authed(GetTenantRequest { id: "home".into() }, &global))
        .await
        .expect("the tenant stays");
    assert!(
        castellan::store::users::find_in_tenant(&app.app.db, home, operator.id.parse().expect("uuid"))
            .await
            .expect("query")
            .is_some(),
        "its user stays"
    );
}

/// UpdateTenant's status: UNSPECIFIED leaves it under an empty mask, and is
/// INVALID_ARGUMENT naming `status` when the mask names it.
#[tokio::test]
async fn an_unspecified_status_is_left_alone_or_refused_by_the_mask() {
    let app = TestApp::spawn().await;
    app.create_tenant("masked").await;
    let global = app.global_token(&["*"]);
    let mut tenants = app.tenants();
    let renamed = tenants
        .update_tenant(authed(
            UpdateTenantRequest {
                id: "masked".into(),
                name: "Renamed".into(),
                ..Default::default()
            },
            &global,
        ))
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.status),
        ("Renamed", pb::TenantStatus::Active as i32)
    );
    let status = expect_code(
        tenants
            .update_tenant(authed(
                UpdateTenantRequest {
                    id: "masked".into(),
                    name: "Again".into(),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["name".into(), "status".into()],
                    }),
                    ..Default::default()
                },
                &global,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["status"]);
}

/// CreateTenant takes its owner's row before adding the membership, as
/// every writer of a user's memberships does. A write holding the user's
/// row (here one the test holds open, as DeleteUser, DeactivateUser or
/// ResetUserPassword hold it once they have read the user's tenants) is
/// waited for; one that deleted the user leaves it NOT_FOUND. (On
/// PostgreSQL the membership's foreign key took a lock that does not wait
/// for the user's row lock: a DeleteUser that had read the user's tenants
/// before could delete a user who had become the owner of another tenant,
/// leaving that tenant ownerless and miscounted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_for_an_owner_waits_for_writes_holding_the_owner() {
    use sea_orm::{EntityTrait, TransactionTrait};
    let app = TestApp::spawn().await;
    let token = app.global_token(&["tenants:*"]);
    let owner = app.create_users(vec![draft("owner@example.com")]).await[0].id.clone();
    let owner_id: uuid::Uuid = owner.parse().expect("uuid");
    let create = |slug: &str| {
        let mut tenants = app.tenants();
        let request = authed(
            CreateTenantRequest {
                name: "Owned".into(),
                slug: slug.into(),
                owner_user_id: owner.clone(),
                ..Default::default()
            },
            &token,
        );
        async move { tenants.create_tenant(request).await }
    };
    let holding = app.app.writer.begin().await.expect("begin");
    assert!(castellan::store::users::lock(&holding, owner_id).await.expect("lock"));
    behind(&app, holding, create("owned"))
        .await
        .expect("created once the write ends");

    let deletion = app.app.writer.begin().await.expect("begin");
    assert!(castellan::store::users::lock(&deletion, owner_id).await.expect("lock"));
    castellan::store::entity::user::Entity::delete_by_id(owner_id)
        .exec(&deletion)
        .await
        .expect("delete the owner");
    let status = expect_code(behind(&app, deletion, create("orphan")).await, Code::NotFound);
    assert_eq!(status.message(), "user not found");
}

/// UpdateTenant on a tenant deleted while it waited for the writer is
/// NOT_FOUND (the update of the row read before found nothing: INTERNAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deleted_while_its_update_waits_is_not_found() {
    use sea_orm::{EntityTrait, TransactionTrait};
    let app = TestApp::spawn().await;
    let doomed = app.create_tenant("doomed").await;
    let deletion = app.app.writer.begin().await.expect("begin");
    castellan::store::entity::tenant::Entity::delete_by_id(doomed)
        .exec(&deletion)
        .await
        .expect("delete");
    let mut tenants = app.tenants();
    let request = authed(
        UpdateTenantRequest {
            id: "doomed".into(),
            name: "Late".into(),
            ..Default::default()
        },
        &app.global_token(&["*"]),
    );
    let update = async move { tenants.update_tenant(request).await };
    expect_code(behind(&app, deletion, update).await, Code::NotFound);
}

/// A DeleteTenant that waited while another deleted the tenant is
/// NOT_FOUND (both used to answer OK, and both were audited): the trail
/// holds the first deletion's `ok` event alone, and the second as a
/// refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deleted_while_its_deletion_waits_is_not_found() {
    use castellan::{
        auth::Call,
        domain::audit::{self, Origin, Target},
        store::entity::audit_event,
    };
    use sea_orm::EntityTrait;
    const DELETE_TENANT: &str = "identity.v1.TenantService/DeleteTenant";
    let app = TestApp::spawn().await;
    let doomed = app.create_tenant("doomed").await;
    // The first deletion, held open, written as DeleteTenant writes it,
    // its event included.
    let deletion = held_tenant_deletion(&app, doomed).await;
    castellan::store::audit::orphan_tenant_events(&deletion, doomed)
        .await
        .expect("orphan the tenant's events");
    let first = Origin {
        actor: "service:operator".into(),
        tenant_id: None,
        call: Call {
            action: DELETE_TENANT,
            request_id: "first-delete".into(),
        },
    };
    audit::record(&deletion, first, Target::Tenant(doomed), &[])
        .await
        .expect("record the first deletion");
    let mut tenants = app.tenants();
    let mut request = authed(DeleteTenantRequest { id: "doomed".into() }, &app.global_token(&["*"]));
    request
        .metadata_mut()
        .insert("x-request-id", "second-delete".parse().expect("ascii"));
    let second = async move { tenants.delete_tenant(request).await };
    expect_code(behind(&app, deletion, second).await, Code::NotFound);

    let mut events: Vec<_> = audit_event::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query")
        .into_iter()
        .filter(|e| e.action == DELETE_TENANT)
        .collect();
    events.sort_by_key(|e| (e.occurred_at, e.id));
    let summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.request_id.as_str(),
                e.outcome.as_str(),
                e.target.clone(),
                e.tenant_id,
                e.actor.as_str(),
            )
        })
        .collect();
    // One `ok` event, the first deletion's, outside any tenant; the second
    // call's refusal as the edge records it: no target, in the tenant of
    // the caller's token, the gRPC code name as outcome.
    assert_eq!(
        summary,
        [
            (
                "first-delete",
                "ok",
                format!("tenant:{doomed}"),
                None,
                "service:operator"
            ),
            (
                "second-delete",
                "NOT_FOUND",
                String::new(),
                Some(app.tenant_id),
                "service:operator"
            ),
        ],
        "{events:?}"
    );
}

/// Login without a tenant picks the user's first tenant that is not
/// SUSPENDED: a user whose first tenant is suspended still logs into its
/// second (it used to be refused, and each refusal counted against it).
#[tokio::test]
async fn login_without_a_tenant_skips_a_suspended_one() {
    let app = TestApp::spawn().await;
    let first = app.create_tenant("first").await;
    app.create_users_in(first, vec![active_draft("two@example.com")]).await;
    let user = castellan::store::users::find_by_username_in_tenant(&app.app.db, first, "two@example.com")
        .await
        .expect("query")
        .expect("user");
    castellan::store::users::add_memberships(&app.app.writer, user.id, &[app.tenant_id], chrono::Utc::now())
        .await
        .expect("join default");
    crate::credentials::set_tenant_status(&app, "first", pb::TenantStatus::Suspended).await;
    let token = app
        .login("two@example.com", "correct horse battery")
        .await
        .expect("login into the tenant that is not suspended")
        .access_token;
    let me = app
        .users()
        .who_am_i(authed(pb::WhoAmIRequest {}, &token))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(me.id, user.id.to_string());
}

/// A tenant id or slug with a control character (a NUL, which PostgreSQL
/// refuses in text) names no tenant, and is not looked up: GetTenant,
/// UpdateTenant and DeleteTenant answer NOT_FOUND, as for an unknown one.
#[tokio::test]
async fn a_control_character_names_no_tenant() {
    let app = TestApp::spawn().await;
    let token = app.global_token(&["tenants:*"]);
    let mut tenants = app.tenants();
    for id in ["def\0ault", "default\u{1}", "\0"] {
        expect_code(
            tenants
                .get_tenant(authed(GetTenantRequest { id: id.into() }, &token))
                .await,
            Code::NotFound,
        );
        let update = UpdateTenantRequest {
            id: id.into(),
            name: "Renamed".into(),
            ..Default::default()
        };
        expect_code(tenants.update_tenant(authed(update, &token)).await, Code::NotFound);
        expect_code(
            tenants
                .delete_tenant(authed(DeleteTenantRequest { id: id.into() }, &token))
                .await,
            Code::NotFound,
        );
    }
    let default = tenants
        .get_tenant(authed(GetTenantRequest { id: "default".into() }, &token))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(default.name, "Default");
}
