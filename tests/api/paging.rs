use std::collections::HashSet;

use castellan::pb::{self, ListUsersRequest, ListUsersResponse};
use tonic::Code;

use crate::helpers::{TestApp, authed, draft, expect_code, violated_fields};

async fn list(app: &TestApp, token: &str, request: ListUsersRequest) -> ListUsersResponse {
    app.users()
        .list_users(authed(request, token))
        .await
        .expect("list")
        .into_inner()
}

/// Every page of a listing, from the first by `page_token`: its users in order.
async fn all_pages(app: &TestApp, token: &str, request: ListUsersRequest) -> Vec<pb::User> {
    let mut users = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = list(
            app,
            token,
            ListUsersRequest {
                page_token,
                ..request.clone()
            },
        )
        .await;
        users.extend(page.users);
        page_token = page.next_page_token;
        if page_token.is_empty() {
            return users;
        }
    }
}

/// Every page of the BASIC view in this order, `limit` users a page.
async fn every_basic_page(app: &TestApp, token: &str, limit: i32, sort: &str) -> Vec<pb::User> {
    let request = ListUsersRequest {
        limit,
        sort: vec![sort.into()],
        view: pb::UserView::Basic as i32,
        ..Default::default()
    };
    all_pages(app, token, request).await
}

#[tokio::test]
async fn an_empty_tenant_lists_nothing() {
    let app = TestApp::spawn().await;
    let page = list(&app, &app.token(&["users:list"]), ListUsersRequest::default()).await;
    assert!(page.users.is_empty());
    assert_eq!(
        (page.total, page.has_next, page.has_previous, page.list_completed),
        (0, false, false, true)
    );
    assert_eq!(page.limit, 10, "default limit");
    assert!(page.next_page_token.is_empty());
}

#[tokio::test]
async fn offset_and_keyset_paging_agree() {
    let app = TestApp::spawn().await;
    let drafts = (0..25).map(|i| draft(&format!("user{i:02}@example.com"))).collect();
    let created = app.create_users(drafts).await;
    let token = app.token(&["users:list"]);

    // Offset paging.
    let mut by_offset = Vec::new();
    for offset in [0, 10, 20] {
        let page = list(
            &app,
            &token,
            ListUsersRequest {
                limit: 10,
                offset,
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.total, 25);
        assert_eq!(page.page, offset / 10);
        assert_eq!(page.has_previous, offset > 0);
        assert_eq!(page.has_next, offset < 20);
        assert_eq!(page.list_completed, offset == 20);
        by_offset.extend(page.users.into_iter().map(|u| u.id));
    }
    let created_ids: Vec<String> = created.iter().map(|u| u.id.clone()).collect();
    assert_eq!(by_offset, created_ids, "creation order by default");

    // Keyset paging.
    let mut by_token = Vec::new();
    let mut token_in = String::new();
    let mut pages = 0;
    loop {
        let page = list(
            &app,
            &token,
            ListUsersRequest {
                limit: 10,
                page_token: token_in.clone(),
                offset: if token_in.is_empty() { 0 } else { 999 }, // ignored with a page token
                ..Default::default()
            },
        )
        .await;
        assert_eq!(page.page, pages);
        assert_eq!(page.has_previous, pages > 0);
        pages += 1;
        by_token.extend(page.users.into_iter().map(|u| u.id));
        if page.next_page_token.is_empty() {
            assert!(page.list_completed);
            break;
        }
        token_in = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(by_token, created_ids);

    // An offset past the end is an empty last page.
    let past = list(
        &app,
        &token,
        ListUsersRequest {
            offset: 30,
            ..Default::default()
        },
    )
    .await;
    assert!(past.users.is_empty());
    assert!(!past.has_next);
    assert!(past.has_previous);
}

#[tokio::test]
async fn keyset_paging_is_stable_across_inserts_and_sorts() {
    let app = TestApp::spawn().await;
    let names = ["delta", "alpha", "echo", "bravo", "charlie", "alpine", "foxtrot"];
    app.create_users(
        names
            .iter()
            .map(|n| pb::UserDraft {
                email: format!("{n}@example.com"),
                first_name: if n.starts_with("al") {
                    "Same".into()
                } else {
                    n.to_string()
                },
                ..Default::default()
            })
            .collect(),
    )
    .await;
    let token = app.token(&["users:list", "users:create"]);
    let first = list(
        &app,
        &token,
        ListUsersRequest {
            limit: 3,
            sort: vec!["-email".into()],
            ..Default::default()
        },
    )
    .await;
    let emails: Vec<&str> = first.users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, ["foxtrot@example.com", "echo@example.com", "delta@example.com"]);

    // Inserts before and after the cursor: the next pages neither repeat nor skip.
    app.create_users(vec![draft("zulu@example.com"), draft("aaron@example.com")])
        .await;
    let mut seen: Vec<String> = first.users.iter().map(|u| u.email.clone()).collect();
    let mut page_token = first.next_page_token;
    while !page_token.is_empty() {
        let page = list(
            &app,
            &token,
            ListUsersRequest {
                limit: 3,
                sort: vec!["-email".into()],
                page_token: page_token.clone(),
                ..Default::default()
            },
        )
        .await;
        seen.extend(page.users.iter().map(|u| u.email.clone()));
        page_token = page.next_page_token;
    }
    let expected = [
        "foxtrot", "echo", "delta", "charlie", "bravo", "alpine", "alpha", "aaron",
    ];
    let expected: Vec<String> = expected.iter().map(|n| format!("{n}@example.com")).collect();
    assert_eq!(
        seen, expected,
        "descending email order; zulu sorts before the cursor, aaron after"
    );

    // Ties on a sort key are broken by id: a page boundary inside a tie loses nothing.
    let by_first_name: Vec<String> = all_pages(
        &app,
        &token,
        ListUsersRequest {
            limit: 1,
            sort: vec!["firstName".into(), "-createdAt".into()],
            ..Default::default()
        },
    )
    .await
    .into_iter()
    .map(|u| u.id)
    .collect();
    let unique: HashSet<&String> = by_first_name.iter().collect();
    assert_eq!(by_first_name.len(), 9);
    assert_eq!(unique.len(), 9);
}

#[tokio::test]
async fn limits_sort_keys_and_tokens_are_validated() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:list"]);
    let mut users = app.users();
    for (request, field) in [
        (
            ListUsersRequest {
                limit: 101,
                ..Default::default()
            },
            "limit",
        ),
        (
            ListUsersRequest {
                limit: -1,
                ..Default::default()
            },
            "limit",
        ),
        (
            ListUsersRequest {
                sort: vec!["password".into()],
                ..Default::default()
            },
            "sort[0]",
        ),
        (
            ListUsersRequest {
                page_token: "garbage".into(),
                ..Default::default()
            },
            "page_token",
        ),
        (
            ListUsersRequest {
                role_id: "x".into(),
                ..Default::default()
            },
            "role_id",
        ),
    ] {
        let status = expect_code(users.list_users(authed(request, &token)).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
    // BASIC views allow up to 1000.
    let basic = list(
        &app,
        &token,
        ListUsersRequest {
            limit: 1000,
            view: pb::UserView::Basic as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(basic.limit, 1000);

    // A token is bound to its sort and filters.
    app.create_users((0..3).map(|i| draft(&format!("t{i}@example.com"))).collect())
        .await;
    let page = list(
        &app,
        &token,
        ListUsersRequest {
            limit: 1,
            ..Default::default()
        },
    )
    .await;
    let status = expect_code(
        users
            .list_users(authed(
                ListUsersRequest {
                    limit: 1,
                    page_token: page.next_page_token,
                    search: "t1".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["page_token"]);
}

#[tokio::test]
async fn filters_and_views() {
    let app = TestApp::spawn().await;
    let created = app
        .create_users(vec![
            pb::UserDraft {
                email: "ann.lee@example.com".into(),
                first_name: "Ann".into(),
                last_name: "Lee".into(),
                password: "correct horse battery".into(),
                ..Default::default()
            },
            pb::UserDraft {
                email: "bob@example.com".into(),
                first_name: "Bob".into(),
                last_name: "Leeds".into(),
                ..Default::default()
            },
            pb::UserDraft {
                email: "percent%@example.com".into(),
                first_name: "Cy".into(),
                ..Default::default()
            },
        ])
        .await;
    let token = app.token(&["users:list"]);
    let search = |term: &str| ListUsersRequest {
        search: term.into(),
        ..Default::default()
    };
    assert_eq!(list(&app, &token, search("LEE")).await.total, 2);
    assert_eq!(list(&app, &token, search("ann")).await.total, 1);
    assert_eq!(
        list(&app, &token, search("%")).await.total,
        1,
        "wildcards match literally"
    );
    assert_eq!(list(&app, &token, search("_")).await.total, 0);
    let active = list(
        &app,
        &token,
        ListUsersRequest {
            status: pb::UserStatus::Active as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(active.total, 1);
    assert_eq!(active.users[0].id, created[0].id);

    let basic = list(
        &app,
        &token,
        ListUsersRequest {
            view: pb::UserView::Basic as i32,
            ..Default::default()
        },
    )
    .await;
    let ann = &basic.users[0];
    assert_eq!(ann.first_name, "Ann");
    assert!(
        ann.created_at.is_none() && ann.tenant_ids.is_empty(),
        "BASIC carries only the basic fields"
    );
    let full = list(&app, &token, ListUsersRequest::default()).await;
    assert!(full.users[0].created_at.is_some() && !full.users[0].tenant_ids.is_empty());
}

/// `search` folds case beyond ASCII on both databases: SQLite's `lower()`
/// and `LIKE` fold ASCII letters only, so "Élodie" was not found by "élo",
/// nor even by "Élodie", there. A renamed user is found by the new name only.
#[tokio::test]
async fn search_folds_case_beyond_ascii() {
    let app = TestApp::spawn().await;
    let created = app
        .create_users(vec![pb::UserDraft {
            email: "elodie@example.com".into(),
            first_name: "Élodie".into(),
            last_name: "ØDEGÅRD".into(),
            ..Default::default()
        }])
        .await;
    let token = app.token(&["users:list", "users:update"]);
    let found = |term: &'static str| {
        let app = &app;
        let token = &token;
        async move {
            list(
                app,
                token,
                ListUsersRequest {
                    search: term.into(),
                    ..Default::default()
                },
            )
            .await
            .total
        }
    };
    for term in ["Élodie", "élo", "ÉLODIE", "ødegård", "Ødegå"] {
        assert_eq!(found(term).await, 1, "{term}");
    }
    app.users()
        .update_user(authed(
            pb::UpdateUserRequest {
                id: created[0].id.clone(),
                first_name: "Zoë".into(),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["first_name".into()],
                }),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("rename");
    assert_eq!(found("ZOË").await, 1);
    assert_eq!(found("élodie").await, 0, "the old name is gone");
}

/// A tenant past the large-tenant threshold (5,000 members) is paged from
/// the users' indexes: the same pages by token and by offset, in order,
/// without other tenants' users, in both directions. A small tenant beside
/// it (a sliver of all memberships) is paged by joining its members.
#[tokio::test]
async fn a_large_tenant_pages_like_a_small_one() {
    use castellan::store::{self, entity::user};

    let app = TestApp::spawn().await;
    let other = app.create_tenant("neighbours").await;
    let outsiders = app
        .create_users_in(
            other,
            (0..5).map(|i| draft(&format!("outsider{i}@example.com"))).collect(),
        )
        .await;
    let base = chrono::Utc::now();
    let members: Vec<user::Model> = (0..5_050)
        .map(|i| {
            // Pairs share a creation time: ties are broken by id.
            let created_at = base + chrono::Duration::milliseconds(i / 2);
            let email = format!("member{i:05}@example.com");
            user::Model {
                id: uuid::Uuid::now_v7(),
                username: email.clone(),
                email,
                first_name: String::new(),
                first_name_lower: String::new(),
                last_name: String::new(),
                last_name_lower: String::new(),
                image: None,
                status: "pending".into(),
                max_devices: None,
                password_change_required: false,
                last_connection: None,
                token_generation: 0,
                created_at,
                updated_at: created_at,
            }
        })
        .collect();
    let mut expected: Vec<(chrono::DateTime<chrono::Utc>, String)> =
        members.iter().map(|u| (u.created_at, u.id.to_string())).collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    store::users::insert_members_in_bulk(&app.app.db, app.tenant_id, members, &[], &[])
        .await
        .expect("bulk insert");
    let token = app.token(&["users:list"]);

    let by_token: Vec<String> = every_basic_page(&app, &token, 100, "createdAt")
        .await
        .into_iter()
        .map(|u| u.id)
        .collect();
    assert_eq!(by_token, expected, "every member once, in (createdAt, id) order");
    assert!(outsiders.iter().all(|u| !by_token.contains(&u.id)));

    let deep = list(
        &app,
        &token,
        ListUsersRequest {
            limit: 100,
            offset: 2_501,
            sort: vec!["createdAt".into()],
            view: pb::UserView::Basic as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(deep.total, 5_050);
    let ids: Vec<String> = deep.users.into_iter().map(|u| u.id).collect();
    assert_eq!(ids, expected[2_501..2_601], "offset paging agrees");

    let descending: Vec<String> = every_basic_page(&app, &token, 1_000, "-email")
        .await
        .into_iter()
        .map(|u| u.email)
        .collect();
    assert_eq!(descending.len(), 5_050);
    assert!(descending.windows(2).all(|w| w[0] > w[1]), "descending emails");

    let neighbours = app.token_in(other, &["users:list"]);
    let listed: Vec<String> = every_basic_page(&app, &neighbours, 2, "email")
        .await
        .into_iter()
        .map(|u| u.email)
        .collect();
    let mut outsider_emails: Vec<String> = outsiders.iter().map(|u| u.email.clone()).collect();
    outsider_emails.sort();
    assert_eq!(listed, outsider_emails, "the small tenant's members only, in order");
}

/// An unknown sort key is quoted back cut short: quoted whole, a key of
/// 20,000 characters made a trailer past HTTP/2's header limit, and the
/// client saw the connection end (INTERNAL "h2 protocol error").
#[tokio::test]
async fn a_long_unknown_sort_key_is_named_and_cut_short() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:list"]);
    let status = expect_code(
        app.users()
            .list_users(authed(
                ListUsersRequest {
                    sort: vec!["x".repeat(20_000)],
                    ..Default::default()
                },
                &token,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["sort[0]"]);
    assert!(status.message().len() < 1000, "{}", status.message().len());
    assert!(
        status.message().contains("unknown sort key \"xxx"),
        "{}",
        status.message()
    );
}

/// A `status` or `view` number outside its enum is INVALID_ARGUMENT naming
/// it: ignored, a status filter of 99 listed every user.
#[tokio::test]
async fn an_unknown_status_or_view_is_named() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:list"]);
    let mut users = app.users();
    for (request, field) in [
        (
            ListUsersRequest {
                status: 99,
                ..Default::default()
            },
            "status",
        ),
        (
            ListUsersRequest {
                view: 7,
                ..Default::default()
            },
            "view",
        ),
    ] {
        let status = expect_code(users.list_users(authed(request, &token)).await, Code::InvalidArgument);
        assert_eq!(violated_fields(&status), [field]);
    }
}

/// A page token is unsigned base64url JSON, so a client may edit the
/// values in it: one with a control character (a NUL, which PostgreSQL
/// refuses in text) is INVALID_ARGUMENT naming `page_token`, as every bad
/// token is.
#[tokio::test]
async fn a_page_token_with_a_control_character_is_refused() {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let app = TestApp::spawn().await;
    app.create_users(vec![draft("p1@example.com"), draft("p2@example.com")])
        .await;
    let token = app.token(&["users:list"]);
    let request = |page_token: String| ListUsersRequest {
        limit: 1,
        sort: vec!["email".into()],
        page_token,
        ..Default::default()
    };
    let first = list(&app, &token, request(String::new())).await;
    let json = URL_SAFE_NO_PAD.decode(&first.next_page_token).expect("base64");
    let mut cursor: serde_json::Value = serde_json::from_slice(&json).expect("json");
    for value in ["p1\0@example.com", "p1@example.com\u{1}"] {
        cursor["v"][0] = value.into();
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).expect("json"));
        let status = expect_code(
            app.users().list_users(authed(request(forged), &token)).await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), ["page_token"], "{value:?}");
    }
    let second = list(&app, &token, request(first.next_page_token)).await;
    assert_eq!(second.users[0].email, "p2@example.com");
}
