//! Seeding: a role and a group, ACTIVE callers with passwords (through the
//! API: the server hashes them), and the users to read, either through
//! CreateUsers or, when the bench can reach the database, in bulk.

use std::{sync::Arc, time::Duration};

use castellan::{
    pb::{
        CreateGroupRequest, CreateRoleRequest, CreateUsersRequest, ListUsersRequest, LoginRequest, UserDraft, UserView,
        auth_service_client::AuthServiceClient, group_service_client::GroupServiceClient,
        role_service_client::RoleServiceClient, user_service_client::UserServiceClient,
    },
    store::{self, PoolSettings, entity::user},
};
use tonic::{
    Request,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use uuid::Uuid;

use crate::scenarios::Fixture;

/// The permissions of the bench's callers.
const CALLER_PERMISSIONS: &[&str] = &["users:read", "users:list", "users:create", "permissions:check"];
/// Password of the callers (never a real one).
const CALLER_PASSWORD: &str = "bench horse battery staple";

pub struct SeedPlan {
    pub users: u64,
    pub callers: usize,
    /// Insert users straight into this database instead of calling CreateUsers.
    pub bulk_database_url: Option<String>,
    pub run_id: String,
}

/// What seeding made that the fixture needs besides tokens.
pub struct Seeded {
    pub logins: Vec<(String, String)>,
    pub user_ids: Vec<String>,
    /// A role of the seeded tenant that no seeded user holds.
    pub unheld_role_id: String,
}

pub fn bearer(token: &str) -> Result<MetadataValue<Ascii>, String> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| "a token is not ASCII".to_owned())
}

/// A request carrying a caller's bearer token.
pub fn authed<T>(message: T, bearer: &MetadataValue<Ascii>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", bearer.clone());
    request
}

/// Logs in and returns the access token.
pub async fn login(channel: &Channel, username: &str, password: &str) -> Result<String, String> {
    AuthServiceClient::new(channel.clone())
        .login(LoginRequest {
            username: username.to_owned(),
            password: password.to_owned(),
            tenant_id: String::new(),
        })
        .await
        .map(|r| r.into_inner().access_token)
        .map_err(|s| format!("login of {username}: {:?} {}", s.code(), s.message()))
}

fn status(what: &str) -> impl Fn(tonic::Status) -> String + '_ {
    move |s| format!("{what}: {:?} {}", s.code(), s.message())
}

pub async fn seed(channel: &Channel, admin: &MetadataValue<Ascii>, plan: &SeedPlan) -> Result<Seeded, String> {
    // The scenarios that edit a user edit one that is not a caller.
    if plan.users <= plan.callers as u64 {
        return Err(format!(
            "--users ({}) must be more than --callers ({})",
            plan.users, plan.callers
        ));
    }
    let role = RoleServiceClient::new(channel.clone())
        .create_role(authed(
            CreateRoleRequest {
                name: format!("bench-{}", plan.run_id),
                description: "castellan-bench callers".into(),
                permissions: CALLER_PERMISSIONS.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .map_err(status("CreateRole"))?
        .into_inner();
    let group = GroupServiceClient::new(channel.clone())
        .create_group(authed(
            CreateGroupRequest {
                name: format!("bench-{}", plan.run_id),
                description: "castellan-bench users".into(),
                role_ids: vec![role.id.clone()],
                request_id: String::new(),
            },
            admin,
        ))
        .await
        .map_err(status("CreateGroup"))?
        .into_inner();

    let draft = |email: String, password: &str| UserDraft {
        email,
        first_name: "Bench".into(),
        last_name: "Caller".into(),
        password: password.to_owned(),
        role_ids: vec![role.id.clone()],
        group_ids: vec![group.id.clone()],
        ..Default::default()
    };
    let mut users = UserServiceClient::new(channel.clone());
    let callers: Vec<UserDraft> = (0..plan.callers)
        .map(|i| draft(format!("caller-{}-{i}@bench.example", plan.run_id), CALLER_PASSWORD))
        .collect();
    let created = users
        .create_users(authed(
            CreateUsersRequest {
                users: callers,
                request_id: String::new(),
            },
            admin,
        ))
        .await
        .map_err(status("CreateUsers (callers)"))?
        .into_inner()
        .users;
    let tenant_id = created
        .first()
        .and_then(|u| u.tenant_ids.first().cloned())
        .ok_or("CreateUsers returned no tenant")?;
    let logins = created
        .iter()
        .map(|u| (u.username.clone(), CALLER_PASSWORD.to_owned()))
        .collect();
    let mut user_ids: Vec<String> = created.iter().map(|u| u.id.clone()).collect();

    let remaining = plan.users.saturating_sub(plan.callers as u64);
    match &plan.bulk_database_url {
        Some(url) => {
            let tenant: Uuid = tenant_id.parse().map_err(|_| "tenant id is not a UUID")?;
            let role_id: Uuid = role.id.parse().map_err(|_| "role id is not a UUID")?;
            let group_id: Uuid = group.id.parse().map_err(|_| "group id is not a UUID")?;
            user_ids.extend(bulk(url, tenant, role_id, group_id, remaining, &plan.run_id).await?);
        }
        None => {
            let mut batch = 0;
            let mut left = remaining;
            while left > 0 {
                let n = left.min(100);
                let drafts = (0..n)
                    .map(|i| draft(format!("user-{}-{batch}-{i}@bench.example", plan.run_id), ""))
                    .collect();
                let created = users
                    .create_users(authed(
                        CreateUsersRequest {
                            users: drafts,
                            request_id: String::new(),
                        },
                        admin,
                    ))
                    .await
                    .map_err(status("CreateUsers"))?
                    .into_inner()
                    .users;
                user_ids.extend(created.into_iter().map(|u| u.id));
                left -= n;
                batch += 1;
            }
        }
    }
    let unheld = RoleServiceClient::new(channel.clone())
        .create_role(authed(
            CreateRoleRequest {
                name: format!("bench-unheld-{}", plan.run_id),
                description: "held by nobody, edited beside the reads".into(),
                ..Default::default()
            },
            admin,
        ))
        .await
        .map_err(status("CreateRole (unheld)"))?
        .into_inner();
    Ok(Seeded {
        logins,
        user_ids,
        unheld_role_id: unheld.id,
    })
}

/// Inserts `count` users in bulk through the store (multi-row INSERTs), each
/// with the role and the group; returns a sample of their ids to read.
async fn bulk(
    url: &str,
    tenant_id: Uuid,
    role_id: Uuid,
    group_id: Uuid,
    count: u64,
    run_id: &str,
) -> Result<Vec<String>, String> {
    const CHUNK: u64 = 10_000;
    const SAMPLE: usize = 10_000;
    let db = store::connect(
        url,
        PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await
    .map_err(|e| format!("connecting to {url}: {e}"))?;
    let base = chrono::Utc::now() - chrono::Duration::seconds(count as i64 / 1000 + 1);
    let mut sample = Vec::new();
    let every = (count as usize / SAMPLE).max(1);
    let mut next = 0u64;
    while next < count {
        let end = (next + CHUNK).min(count);
        let users: Vec<user::Model> = (next..end)
            .map(|i| {
                let created_at = base + chrono::Duration::microseconds(i as i64 * 1000);
                let email = format!("user-{run_id}-{i}@bench.example");
                user::Model {
                    id: Uuid::now_v7(),
                    username: email.clone(),
                    email,
                    first_name: format!("First{i}"),
                    first_name_lower: format!("first{i}"),
                    last_name: format!("Last{i}"),
                    last_name_lower: format!("last{i}"),
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
        for (i, u) in users.iter().enumerate() {
            if (next as usize + i).is_multiple_of(every) && sample.len() < SAMPLE {
                sample.push(u.id.to_string());
            }
        }
        store::users::insert_members_in_bulk(&db, tenant_id, users, &[role_id], &[group_id])
            .await
            .map_err(|e| format!("bulk insert: {e}"))?;
        next = end;
    }
    db.close().await.map_err(|e| format!("closing the database: {e}"))?;
    Ok(sample)
}

/// How the scenarios load the server (see [`Fixture`]).
pub struct Shape {
    pub streams: usize,
    pub write_streams: usize,
    pub page_size: i32,
    pub probe_rate: f64,
}

/// Builds the fixture: caller tokens (by Login) and a page token deep in the set.
pub async fn fixture(
    channel: &Channel,
    admin: &MetadataValue<Ascii>,
    seeded: Seeded,
    shape: Shape,
    run_id: String,
) -> Result<Arc<Fixture>, String> {
    let Shape {
        streams,
        write_streams,
        page_size,
        probe_rate,
    } = shape;
    let mut caller_tokens = Vec::new();
    for (username, password) in &seeded.logins {
        caller_tokens.push(bearer(&login(channel, username, password).await?)?);
    }
    let mut users = UserServiceClient::new(channel.clone());
    let total = users
        .list_users(authed(
            ListUsersRequest {
                limit: 1,
                view: UserView::Basic as i32,
                ..Default::default()
            },
            admin,
        ))
        .await
        .map_err(status("ListUsers"))?
        .into_inner()
        .total;
    // Half-way through the set, on a page boundary.
    let deep_offset = ((total / 2) as i32 / page_size) * page_size;
    let deep = users
        .list_users(authed(
            ListUsersRequest {
                limit: page_size,
                offset: deep_offset,
                view: UserView::Basic as i32,
                ..Default::default()
            },
            admin,
        ))
        .await
        .map_err(status("ListUsers (deep)"))?
        .into_inner();
    if deep.next_page_token.is_empty() || deep_offset < page_size {
        eprintln!(
            "note: {total} users at {page_size} a page leave no page deep in the set: \
             the list-users-deep scenarios read an early page"
        );
    }
    Ok(Arc::new(Fixture {
        caller_tokens,
        admin_token: admin.clone(),
        logins: seeded.logins,
        user_ids: seeded.user_ids,
        unheld_role_id: seeded.unheld_role_id,
        deep_page_token: deep.next_page_token,
        deep_offset,
        streams,
        write_streams,
        page_size,
        probe_rate,
        run_id,
    }))
}
