//! GroupService and group membership: roles and member counts, updates,
//! members paged, drafts joining groups, and no escalation through groups.

use castellan::pb::{
    self, AddUserToGroupRequest, CreateGroupRequest, DeleteGroupRequest, GetGroupRequest, Group,
    ListGroupMembersRequest, ListGroupsRequest, RemoveUserFromGroupRequest, UpdateGroupRequest,
};
use tonic::Code;

use crate::{
    helpers::{
        TestApp, authed, behind, draft, error_reason, expect_code, expect_invalid_field, held_group_deletion,
        held_role_deletion, held_tenant_deletion, random_ids, violated_fields,
    },
    roles::create_role,
};

/// Creates a group of the token's tenant.
pub async fn create_group(app: &TestApp, token: &str, name: &str, role_ids: &[&str]) -> Group {
    app.groups()
        .create_group(authed(
            CreateGroupRequest {
                name: name.to_owned(),
                role_ids: role_ids.iter().map(|r| r.to_string()).collect(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap_or_else(|e| panic!("create group {name}: {e}"))
        .into_inner()
}

/// An update mask of these paths.
pub fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|p| p.to_string()).collect(),
    })
}

async fn join(app: &TestApp, token: &str, user_id: &str, group_id: &str) -> Result<pb::User, tonic::Status> {
    app.users()
        .add_user_to_group(authed(
            AddUserToGroupRequest {
                user_id: user_id.to_owned(),
                group_id: group_id.to_owned(),
            },
            token,
        ))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn groups_carry_roles_and_member_counts_within_their_tenant() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let admin = app.token(&["*"]);
    let mut groups = app.groups();
    let readers = create_role(&app, &admin, "readers", &["users:read"]).await;
    let listers = create_role(&app, &admin, "listers", &["users:list"]).await;
    let foreign_role = create_role(&app, &app.token_in(other, &["*"]), "foreign", &[]).await;

    let team = create_group(&app, &admin, "team", &[&readers.id, &listers.id]).await;
    assert_eq!(team.tenant_id, app.tenant_id.to_string());
    assert_eq!(team.member_count, 0);
    let role_names: Vec<&str> = team.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(role_names, ["listers", "readers"]);
    assert_eq!(team.role_ids.len(), 2);
    assert_eq!(team.roles[1].permissions, ["users:read"]);

    let users = app
        .create_users(vec![draft("a@example.com"), draft("b@example.com")])
        .await;
    for user in &users {
        let joined = join(&app, &admin, &user.id, &team.id).await.expect("join");
        assert_eq!(joined.groups.len(), 1);
        assert_eq!(joined.groups[0].name, "team");
    }
    join(&app, &admin, &users[0].id, &team.id)
        .await
        .expect("joining twice changes nothing");
    let got = groups
        .get_group(authed(GetGroupRequest { id: team.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.member_count, 2);

    // Name and description; the roles stay when role_ids is neither sent
    // nor in the mask.
    let updated = groups
        .update_group(authed(
            UpdateGroupRequest {
                id: team.id.clone(),
                name: Some("crew".into()),
                description: Some("The crew".into()),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("rename")
        .into_inner();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_str()),
        ("crew", "The crew")
    );
    assert_eq!(updated.roles.len(), 2, "roles kept");
    // An empty mask means every field present: role_ids replaces the roles.
    let updated = groups
        .update_group(authed(
            UpdateGroupRequest {
                id: team.id.clone(),
                role_ids: vec![listers.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("replace roles")
        .into_inner();
    assert_eq!(updated.role_ids, std::slice::from_ref(&listers.id));
    assert_eq!(updated.description, "The crew");
    // A mask updates only its fields; one named but not sent is cleared.
    let updated = groups
        .update_group(authed(
            UpdateGroupRequest {
                id: team.id.clone(),
                name: Some("ignored".into()),
                role_ids: vec![readers.id.clone()],
                update_mask: mask(&["description"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("clear the description")
        .into_inner();
    assert_eq!((updated.name.as_str(), updated.description.as_str()), ("crew", ""));
    assert_eq!(updated.role_ids, std::slice::from_ref(&listers.id), "not in the mask");
    for (update_mask, field) in [
        (mask(&["role_ids", "replace_role_ids"]), "update_mask"),
        (mask(&["name"]), "name"),
    ] {
        let status = expect_code(
            groups
                .update_group(authed(
                    UpdateGroupRequest {
                        id: team.id.clone(),
                        update_mask,
                        ..Default::default()
                    },
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
    }
    let status = expect_code(
        groups
            .update_group(authed(
                UpdateGroupRequest {
                    id: team.id.clone(),
                    role_ids: vec![foreign_role.id.clone()],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(
        violated_fields(&status),
        ["role_ids"],
        "another tenant's role is unknown here"
    );
    // role_ids in the mask with no ids removes every role.
    let emptied = groups
        .update_group(authed(
            UpdateGroupRequest {
                id: team.id.clone(),
                update_mask: mask(&["role_ids"]),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("no roles")
        .into_inner();
    assert!(emptied.roles.is_empty());

    // Names are unique per tenant; other tenants' groups are not found.
    expect_code(
        groups
            .create_group(authed(
                CreateGroupRequest {
                    name: "crew".into(),
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::AlreadyExists,
    );
    let theirs = create_group(&app, &app.token_in(other, &["*"]), "crew", &[]).await;
    expect_code(
        groups
            .get_group(authed(GetGroupRequest { id: theirs.id.clone() }, &admin))
            .await,
        Code::NotFound,
    );
    let listed = groups
        .list_groups(authed(ListGroupsRequest::default(), &admin))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 1);
    assert_eq!(listed.groups[0].member_count, 2);

    groups
        .delete_group(authed(DeleteGroupRequest { id: team.id.clone() }, &admin))
        .await
        .expect("delete");
    let user = app
        .users()
        .get_user(authed(
            pb::GetUserRequest {
                id: users[0].id.clone(),
            },
            &admin,
        ))
        .await
        .expect("user")
        .into_inner();
    assert!(user.groups.is_empty(), "memberships went with the group");
    expect_code(
        groups
            .delete_group(authed(DeleteGroupRequest { id: team.id.clone() }, &admin))
            .await,
        Code::NotFound,
    );
}

/// AddUserToGroup leaves an existing membership unchanged, one that a
/// concurrent call inserts too (here: a write the test holds open): OK, the
/// user a member once. (On PostgreSQL both calls found no membership, and
/// the later insert failed as ALREADY_EXISTS "id already exists"; SQLite's
/// one writer orders them anyway.)
#[tokio::test]
async fn a_membership_added_meanwhile_is_left_unchanged() {
    use castellan::{domain::now, store::entity::group_member};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let group = create_group(&app, &admin, "joined", &[]).await;
    let user = app.create_users(vec![draft("joining@example.com")]).await.remove(0);
    let group_id: uuid::Uuid = group.id.parse().expect("uuid");
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    let other = app.app.writer.begin().await.expect("begin");
    group_member::Entity::insert(group_member::ActiveModel {
        group_id: Set(group_id),
        user_id: Set(user_id),
        created_at: Set(now()),
    })
    .exec_without_returning(&other)
    .await
    .expect("the other call's membership");
    let mut users = app.users();
    let request = authed(
        AddUserToGroupRequest {
            user_id: user.id.clone(),
            group_id: group.id.clone(),
        },
        &admin,
    );
    let call = async move { users.add_user_to_group(request).await };
    let answer = behind(&app, other, call)
        .await
        .expect("an existing member is left unchanged")
        .into_inner();
    let groups: Vec<&str> = answer.groups.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(groups, [group.id.as_str()]);
    let rows = group_member::Entity::find()
        .filter(group_member::Column::UserId.eq(user_id))
        .count(&app.app.db)
        .await
        .expect("count");
    assert_eq!(rows, 1);
}

/// AddUserToGroup goes by the user's membership of the tenant once it holds
/// the user's row: a user removed from the tenant meanwhile (here: a
/// removal the test holds open, written as UpdateUserTenants writes it) is
/// NOT_FOUND and joins none of its groups (its groups there went with the
/// membership, and one joined after would wait for it to come back).
#[tokio::test]
async fn a_user_removed_from_the_tenant_meanwhile_joins_no_group() {
    use castellan::{
        domain::now,
        store::{self, entity::group_member},
    };
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let second = app.create_tenant("second").await;
    let group = create_group(&app, &admin, "left-behind", &[]).await;
    let user = app
        .users()
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![pb::UserDraft {
                    tenant_ids: vec![app.tenant_id.to_string(), second.to_string()],
                    ..draft("leaving@example.com")
                }],
                request_id: String::new(),
            },
            &app.global_token(&["*"]),
        ))
        .await
        .expect("create")
        .into_inner()
        .users
        .remove(0);
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    let removal = app.app.writer.begin().await.expect("begin");
    assert!(store::users::lock(&removal, user_id).await.expect("lock"));
    store::users::remove_memberships(&removal, user_id, &[app.tenant_id], now())
        .await
        .expect("leave the default tenant");
    let mut users = app.users();
    let request = authed(
        AddUserToGroupRequest {
            user_id: user.id.clone(),
            group_id: group.id.clone(),
        },
        &admin,
    );
    let call = async move { users.add_user_to_group(request).await };
    expect_code(behind(&app, removal, call).await, Code::NotFound);
    let rows = group_member::Entity::find()
        .filter(group_member::Column::UserId.eq(user_id))
        .count(&app.app.db)
        .await
        .expect("count");
    assert_eq!(rows, 0, "no group of a tenant the user left");
}

#[tokio::test]
async fn members_are_listed_basic_and_paged_and_removed() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let group = create_group(&app, &admin, "many", &[]).await;
    let users = app
        .create_users((0..3).map(|i| draft(&format!("m{i}@example.com"))).collect())
        .await;
    app.create_users(vec![draft("outsider@example.com")]).await;
    for user in &users {
        join(&app, &admin, &user.id, &group.id).await.expect("join");
    }
    let mut groups = app.groups();
    let page = groups
        .list_group_members(authed(
            ListGroupMembersRequest {
                id: group.id.clone(),
                limit: 2,
                sort: vec!["email".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("members")
        .into_inner();
    assert_eq!(page.total, 3);
    assert!(page.has_next);
    let emails: Vec<&str> = page.users.iter().map(|u| u.email.as_str()).collect();
    assert_eq!(emails, ["m0@example.com", "m1@example.com"]);
    assert!(page.users[0].created_at.is_none(), "BASIC view");
    let rest = groups
        .list_group_members(authed(
            ListGroupMembersRequest {
                id: group.id.clone(),
                limit: 2,
                sort: vec!["email".into()],
                page_token: page.next_page_token.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(rest.users.len(), 1);
    assert!(rest.list_completed);
    // BASIC limits go up to 1000.
    groups
        .list_group_members(authed(
            ListGroupMembersRequest {
                id: group.id.clone(),
                limit: 1000,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("limit 1000");

    let remove = |user_id: &str| RemoveUserFromGroupRequest {
        user_id: user_id.to_owned(),
        group_id: group.id.clone(),
    };
    app.users()
        .remove_user_from_group(authed(remove(&users[1].id), &admin))
        .await
        .expect("remove");
    expect_code(
        app.users()
            .remove_user_from_group(authed(remove(&users[1].id), &admin))
            .await,
        Code::NotFound,
    );
    let status = expect_code(
        app.users()
            .remove_user_from_group(authed(
                RemoveUserFromGroupRequest {
                    user_id: "x".into(),
                    group_id: "y".into(),
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["user_id", "group_id"]);
    let after = groups
        .get_group(authed(GetGroupRequest { id: group.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(after.member_count, 2);
}

#[tokio::test]
async fn user_drafts_get_their_roles_and_groups() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = create_role(&app, &admin, "starter", &["users:read"]).await;
    let group = create_group(&app, &admin, "newcomers", &[]).await;
    let created = app
        .users()
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![pb::UserDraft {
                    email: "fresh@example.com".into(),
                    role_ids: vec![role.id.clone()],
                    group_ids: vec![group.id.clone()],
                    ..Default::default()
                }],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("create")
        .into_inner()
        .users
        .remove(0);
    assert_eq!(created.roles.len(), 1);
    assert_eq!(created.roles[0].id, role.id);
    assert_eq!(created.groups.len(), 1);
    assert_eq!(created.groups[0].id, group.id);

    let status = expect_code(
        app.users()
            .create_users(authed(
                pb::CreateUsersRequest {
                    users: vec![pb::UserDraft {
                        email: "lost@example.com".into(),
                        group_ids: vec![uuid::Uuid::now_v7().to_string()],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                &admin,
            ))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&status), ["users[0].group_ids"]);

    // In a batch, every draft gets its own; a refusal names the first draft
    // that fails.
    let with = |email: &str, role_ids: Vec<String>, group_ids: Vec<String>| pb::UserDraft {
        email: email.into(),
        role_ids,
        group_ids,
        ..Default::default()
    };
    let (role_id, group_id) = (role.id.clone(), group.id.clone());
    let batch = app
        .create_users(vec![
            with("b0@example.com", vec![role_id.clone()], vec![group_id.clone()]),
            with("b1@example.com", vec![], vec![]),
            with("b2@example.com", vec![role_id.clone()], vec![]),
        ])
        .await;
    let held = |u: &pb::User| (u.roles.len(), u.groups.len());
    assert_eq!(batch.iter().map(held).collect::<Vec<_>>(), [(1, 1), (0, 0), (1, 0)]);
    let unknown = uuid::Uuid::now_v7().to_string();
    for (drafts, field) in [
        (
            vec![
                with("c0@example.com", vec![role_id.clone()], vec![group_id.clone()]),
                with("c1@example.com", vec![], vec![unknown.clone()]),
            ],
            "users[1].group_ids",
        ),
        (
            vec![
                with("c0@example.com", vec![], vec![group_id.clone()]),
                with("c1@example.com", vec![], vec![]),
                with("c2@example.com", vec![unknown.clone()], vec![]),
            ],
            "users[2].role_ids",
        ),
    ] {
        let status = expect_code(
            app.users()
                .create_users(authed(
                    pb::CreateUsersRequest {
                        users: drafts,
                        ..Default::default()
                    },
                    &admin,
                ))
                .await,
            Code::InvalidArgument,
        );
        assert_eq!(violated_fields(&status), [field]);
    }
}

#[tokio::test]
async fn groups_never_hand_out_permissions_the_caller_lacks() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let powerful = create_role(&app, &admin, "powerful", &["tenants:delete"]).await;
    let modest = create_role(&app, &admin, "modest", &["users:read"]).await;
    let strong_group = create_group(&app, &admin, "strong", &[&powerful.id]).await;
    let user = app.create_users(vec![draft("target@example.com")]).await.remove(0);
    let limited = app.token(&["groups:*", "users:groups", "users:create", "users:read"]);
    let mut groups = app.groups();

    expect_code(
        groups
            .create_group(authed(
                CreateGroupRequest {
                    name: "escalate".into(),
                    role_ids: vec![powerful.id.clone()],
                    ..Default::default()
                },
                &limited,
            ))
            .await,
        Code::PermissionDenied,
    );
    let weak = create_group(&app, &limited, "weak", &[&modest.id]).await;
    expect_code(
        groups
            .update_group(authed(
                UpdateGroupRequest {
                    id: weak.id.clone(),
                    role_ids: vec![modest.id.clone(), powerful.id.clone()],
                    ..Default::default()
                },
                &limited,
            ))
            .await,
        Code::PermissionDenied,
    );
    // Keeping a role the caller could not grant is no escalation.
    groups
        .update_group(authed(
            UpdateGroupRequest {
                id: strong_group.id.clone(),
                role_ids: vec![powerful.id.clone(), modest.id.clone()],
                ..Default::default()
            },
            &limited,
        ))
        .await
        .expect("only additions are checked");

    // Joining a group grants its roles.
    expect_code(
        join(&app, &limited, &user.id, &strong_group.id).await,
        Code::PermissionDenied,
    );
    expect_code(
        app.users()
            .create_users(authed(
                pb::CreateUsersRequest {
                    users: vec![pb::UserDraft {
                        email: "sneaky@example.com".into(),
                        group_ids: vec![strong_group.id.clone()],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                &limited,
            ))
            .await,
        Code::PermissionDenied,
    );
    join(&app, &limited, &user.id, &weak.id)
        .await
        .expect("a group with held permissions");
    let strong = groups
        .get_group(authed(
            GetGroupRequest {
                id: strong_group.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(strong.member_count, 0, "nothing was written");
    let listed = groups
        .list_groups(authed(ListGroupsRequest::default(), &admin))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.total, 2, "the refused group was not created");
}

/// A page of groups loads its roles' permissions at once: a role two groups
/// share shows its permissions in each.
#[tokio::test]
async fn groups_sharing_a_role_each_show_its_permissions() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let shared = create_role(&app, &admin, "shared", &["users:read"]).await;
    for name in ["first", "second"] {
        create_group(&app, &admin, name, &[&shared.id]).await;
    }
    let listed = app
        .groups()
        .list_groups(authed(
            ListGroupsRequest {
                sort: vec!["name".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("list")
        .into_inner();
    let shown: Vec<(&str, Vec<&str>)> = listed
        .groups
        .iter()
        .map(|g| {
            let permissions = g.roles.iter().flat_map(|r| r.permissions.iter().map(String::as_str));
            (g.name.as_str(), permissions.collect())
        })
        .collect();
    assert_eq!(shown, [("first", vec!["users:read"]), ("second", vec!["users:read"])]);
}

// Two workers so the updates really run at once; on SQLite and on
// PostgreSQL (CASTELLAN_TEST_DATABASE_URL) alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_replacements_of_a_groups_roles_leave_exactly_one_list() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let old = create_role(&app, &admin, "old", &[]).await;
    let mut roles = Vec::new();
    for name in ["a", "b", "c", "d"] {
        roles.push(create_role(&app, &admin, name, &["users:read"]).await.id);
    }
    roles.sort();
    let group = create_group(&app, &admin, "contended", &[&old.id]).await;
    let replace_all = |lists: Vec<Vec<String>>| {
        let attempts: Vec<_> = lists
            .into_iter()
            .map(|role_ids| {
                let mut groups = app.groups();
                let request = authed(
                    UpdateGroupRequest {
                        id: group.id.clone(),
                        role_ids: role_ids.clone(),
                        ..Default::default()
                    },
                    &admin,
                );
                tokio::spawn(async move { (role_ids, groups.update_group(request).await) })
            })
            .collect();
        async move {
            for attempt in attempts {
                let (mut wanted, answer) = attempt.await.expect("task");
                let mut answered = answer.expect("every replacement succeeds").into_inner().role_ids;
                wanted.sort();
                answered.sort();
                assert_eq!(answered, wanted, "each answer shows its own list");
            }
        }
    };
    let role_ids_now = || async {
        let mut ids = app
            .groups()
            .get_group(authed(GetGroupRequest { id: group.id.clone() }, &admin))
            .await
            .expect("get")
            .into_inner()
            .role_ids;
        ids.sort();
        ids
    };

    // The same list ten times: each finds what it wants, or writes it.
    replace_all(vec![roles[..3].to_vec(); 10]).await;
    assert_eq!(role_ids_now().await, roles[..3]);
    // Two lists: the last one wins whole, never a union of both.
    let (first, second) = (roles[..2].to_vec(), roles[2..].to_vec());
    replace_all(
        (0..10)
            .map(|i| if i % 2 == 0 { first.clone() } else { second.clone() })
            .collect(),
    )
    .await;
    let left = role_ids_now().await;
    assert!(left == first || left == second, "one list, not a union: {left:?}");
}

/// A group has at most 1000 roles a request: more is INVALID_ARGUMENT naming
/// `role_ids` before any is looked up (70,000 ids once overflowed the
/// database's bind parameters: INTERNAL, on SQLite and PostgreSQL alike).
#[tokio::test]
async fn role_ids_are_bounded() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let group = create_group(&app, &admin, "bounded", &[]).await;
    let mut groups = app.groups();
    for (count, refusal) in [(1000, "unknown role"), (1001, "at most 1000"), (70_000, "at most 1000")] {
        let create = groups
            .create_group(authed(
                CreateGroupRequest {
                    name: format!("with {count}"),
                    role_ids: random_ids(count),
                    ..Default::default()
                },
                &admin,
            ))
            .await;
        let update = groups
            .update_group(authed(
                UpdateGroupRequest {
                    id: group.id.clone(),
                    role_ids: random_ids(count),
                    ..Default::default()
                },
                &admin,
            ))
            .await;
        for answer in [create, update] {
            expect_invalid_field(answer, "role_ids", refusal);
        }
    }
    // A page of 100 groups may still name 100,000 roles: their permissions
    // are read in chunks.
    let many: Vec<uuid::Uuid> = (0..70_000).map(|_| uuid::Uuid::now_v7()).collect();
    let read = castellan::store::users::permissions_of_roles(&app.app.db, &many)
        .await
        .expect("70,000 roles read");
    assert!(read.is_empty());
}

/// AddUserToGroup of a group deleted meanwhile (here: a deletion the test
/// holds open, committed once the call waits for it) is NOT_FOUND naming
/// the group, as a retry is answered, on SQLite as on PostgreSQL; no
/// membership is left. (It was ABORTED VERSION_MISMATCH: the membership's
/// foreign key failed.)
#[tokio::test]
async fn a_group_deleted_meanwhile_is_not_found_to_join() {
    use castellan::store::entity::group_member;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let group = create_group(&app, &admin, "vanishing", &[]).await;
    let user = app.create_users(vec![draft("joiner@example.com")]).await.remove(0);
    let deletion = held_group_deletion(&app, &group.id).await;
    let mut users = app.users();
    let request = authed(
        AddUserToGroupRequest {
            user_id: user.id.clone(),
            group_id: group.id.clone(),
        },
        &admin,
    );
    let call = async move { users.add_user_to_group(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::NotFound);
    assert_eq!(error_reason(&status), "RESOURCE_NOT_FOUND");
    assert_eq!(status.message(), "group not found");
    let user_id: uuid::Uuid = user.id.parse().expect("uuid");
    let rows = group_member::Entity::find()
        .filter(group_member::Column::UserId.eq(user_id))
        .count(&app.app.db)
        .await
        .expect("count");
    assert_eq!(rows, 0);
}

/// CreateGroup with a role deleted meanwhile (after the call checked it,
/// before its write) is refused as a role unknown from the start is:
/// INVALID_ARGUMENT naming `role_ids`, and no group is created. (It was
/// ABORTED VERSION_MISMATCH: the assignment's foreign key failed.)
#[tokio::test]
async fn a_role_deleted_meanwhile_is_unknown_to_create_group() {
    use castellan::store::entity::group;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let role = create_role(&app, &admin, "fleeting", &[]).await;
    let deletion = held_role_deletion(&app, &role.id).await;
    let mut groups = app.groups();
    let request = authed(
        CreateGroupRequest {
            name: "late".into(),
            role_ids: vec![role.id.clone()],
            ..Default::default()
        },
        &admin,
    );
    let call = async move { groups.create_group(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["role_ids"]);
    let created = group::Entity::find()
        .filter(group::Column::Name.eq("late"))
        .count(&app.app.db)
        .await
        .expect("count");
    assert_eq!(created, 0);
}

/// CreateGroup in a tenant deleted meanwhile (after the call checked its
/// roles, before its write) is NOT_FOUND naming the tenant on both
/// databases: the call holds the tenant before the roles, in DeleteTenant's
/// order, so no role is held while it waits for the deletion (which on
/// PostgreSQL could deadlock), and SQLite no longer answers the generic
/// "referenced resource" of the group's broken foreign key.
#[tokio::test]
async fn a_group_created_in_a_tenant_deleted_meanwhile_is_not_found() {
    use castellan::store::entity::group;
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let doomed = app.create_tenant("doomed").await;
    let deletion = held_tenant_deletion(&app, doomed).await;
    let mut groups = app.groups();
    let request = crate::helpers::authed_in(
        CreateGroupRequest {
            name: "orphan".into(),
            ..Default::default()
        },
        &app.global_token(&["*"]),
        &doomed.to_string(),
    );
    let call = async move { groups.create_group(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::NotFound);
    assert_eq!(status.message(), "tenant not found");
    let orphans = group::Entity::find()
        .filter(group::Column::Name.eq("orphan"))
        .count(&app.app.db)
        .await
        .expect("count");
    assert_eq!(orphans, 0);
}

/// UpdateGroup, DeleteGroup and DeleteRole in a tenant deleted meanwhile
/// are NOT_FOUND naming the tenant: each holds the tenant first, in
/// DeleteTenant's order, so none holds a group or role that the deletion
/// then waits for while it waits for a row the deletion holds (a deadlock
/// on PostgreSQL).
#[tokio::test]
async fn group_and_role_writes_in_a_tenant_deleted_meanwhile_are_not_found() {
    let app = TestApp::spawn().await;
    for (i, write) in ["UpdateGroup", "DeleteGroup", "DeleteRole"].into_iter().enumerate() {
        let doomed = app.create_tenant(&format!("doomed-{i}")).await;
        let admin = app.token_in(doomed, &["*"]);
        let role = create_role(&app, &admin, "fleeting", &[]).await;
        let group = create_group(&app, &admin, "fleeting", &[]).await;
        let deletion = held_tenant_deletion(&app, doomed).await;
        let mut groups = app.groups();
        let mut roles = app.roles();
        let call = async move {
            match write {
                "UpdateGroup" => groups
                    .update_group(authed(
                        UpdateGroupRequest {
                            id: group.id,
                            name: Some("renamed".into()),
                            ..Default::default()
                        },
                        &admin,
                    ))
                    .await
                    .map(drop),
                "DeleteGroup" => groups
                    .delete_group(authed(DeleteGroupRequest { id: group.id }, &admin))
                    .await
                    .map(drop),
                _ => roles
                    .delete_role(authed(
                        pb::DeleteRoleRequest {
                            id: role.id,
                            force: true,
                        },
                        &admin,
                    ))
                    .await
                    .map(drop),
            }
        };
        let status = expect_code(behind(&app, deletion, call).await, Code::NotFound);
        assert_eq!(status.message(), "tenant not found", "{write}");
    }
}

/// UpdateGroup adding a role deleted meanwhile is refused as a role unknown
/// from the start is: INVALID_ARGUMENT naming `role_ids`, the group left as
/// it was. (On PostgreSQL it was ABORTED VERSION_MISMATCH: the check in the
/// transaction still saw the role, and the assignment's foreign key failed.)
#[tokio::test]
async fn a_role_deleted_meanwhile_is_unknown_to_update_group() {
    let app = TestApp::spawn().await;
    let admin = app.token(&["*"]);
    let kept = create_role(&app, &admin, "kept", &[]).await;
    let fleeting = create_role(&app, &admin, "fleeting", &[]).await;
    let group = create_group(&app, &admin, "steady", &[&kept.id]).await;
    let deletion = held_role_deletion(&app, &fleeting.id).await;
    let mut groups = app.groups();
    let request = authed(
        UpdateGroupRequest {
            id: group.id.clone(),
            role_ids: vec![kept.id.clone(), fleeting.id.clone()],
            ..Default::default()
        },
        &admin,
    );
    let call = async move { groups.update_group(request).await };
    let status = expect_code(behind(&app, deletion, call).await, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["role_ids"]);
    let stored = app
        .groups()
        .get_group(authed(GetGroupRequest { id: group.id.clone() }, &admin))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(stored.role_ids, [kept.id]);
}
