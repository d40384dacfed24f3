//! The scenarios: each names the loads it drives at once. The first load of
//! a scenario is the one compared with `health`. Adding a scenario is one
//! entry in [`SCENARIOS`] and a function building its loads.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicI32, AtomicU64, Ordering},
    },
};

use castellan::pb::{
    CheckPermissionRequest, CheckPermissionsRequest, CreateUsersRequest, GetUserRequest, ListUsersRequest,
    LoginRequest, UpdateRoleRequest, UpdateUserRequest, UserDraft, UserView, WhoAmIRequest,
    auth_service_client::AuthServiceClient, check_permission_request::Subject,
    permission_service_client::PermissionServiceClient, role_service_client::RoleServiceClient,
    user_service_client::UserServiceClient,
};
use tonic::{
    Code, Status,
    metadata::{Ascii, MetadataValue},
    transport::Channel,
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::seed::authed;

/// One call of a load: the channel to use and the call's sequence number.
pub type Call = Arc<dyn Fn(Channel, u64) -> Pin<Box<dyn Future<Output = Result<(), Status>> + Send>> + Send + Sync>;

/// Calls driven concurrently by `streams` tasks; a call answering `expect`
/// counts as a success, anything else as an error. Without a `rate` each
/// task calls again as soon as an answer arrives (closed loop); with one, the
/// tasks start calls on a fixed schedule adding up to `rate` calls a second;
/// a call held up by its task's previous call counts from its scheduled
/// start (no coordinated omission), any other from when it was sent.
pub struct Load {
    pub label: String,
    pub streams: usize,
    pub expect: Code,
    pub rate: Option<f64>,
    pub call: Call,
    /// The next call's sequence number, shared by the load's streams and
    /// kept from one window to the next: no two calls of a load have the
    /// same number, so a later window reads targets the earlier ones did not.
    pub next_seq: Arc<AtomicU64>,
}

/// Streams of the get-user probe that runs beside the login flood (and
/// alone, as `get-user-probe`, for its baseline). Each stream calls every
/// 16 ms at 1,000 calls/s, so only a call slower than that delays its
/// stream's next one (which then counts from its scheduled start).
const PROBE_STREAMS: usize = 16;

/// Edits a second of `get-user-beside-edits` and
/// `get-user-beside-role-edits`, beside the reads.
const EDITS_PER_SECOND: f64 = 100.0;

/// What the seeding produced, shared by every scenario.
pub struct Fixture {
    /// `Bearer` values of ACTIVE users holding users:read, users:list and users:create
    /// through a role and a group.
    pub caller_tokens: Vec<MetadataValue<Ascii>>,
    /// `Bearer` value of the administrator (every permission).
    pub admin_token: MetadataValue<Ascii>,
    /// Usernames and passwords of the same users (for `login`).
    pub logins: Vec<(String, String)>,
    /// Users to read (members of the tenant, with a role and a group).
    pub user_ids: Vec<String>,
    /// A role of the readers' tenant that none of them holds, which
    /// `get-user-beside-role-edits` edits.
    pub unheld_role_id: String,
    /// A `page_token` starting the page after `deep_offset`.
    pub deep_page_token: String,
    pub deep_offset: i32,
    /// Default concurrency: connections × streams.
    pub streams: usize,
    /// Concurrency of write scenarios (create-users).
    pub write_streams: usize,
    /// Page size of the list scenarios.
    pub page_size: i32,
    /// Calls a second of the get-user probe.
    pub probe_rate: f64,
    /// Distinguishes the emails of this run's created users.
    pub run_id: String,
}

/// A named scenario.
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub loads: fn(&Arc<Fixture>) -> Vec<Load>,
    /// Its first load's throughput is compared with health's (a target is
    /// a ratio): health is then measured in windows interleaved with it.
    pub compared_with_health: bool,
}

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "health",
        about: "grpc.health.v1.Health/Check: the transport's ceiling (no auth, no database)",
        loads: health,
        compared_with_health: false,
    },
    Scenario {
        name: "health-bearer",
        about: "Health/Check carrying a caller's bearer token, which health ignores: what the token's transport \
                alone costs (HPACK never indexes `authorization`, so every call sends and decodes it in full)",
        loads: health_bearer,
        compared_with_health: true,
    },
    Scenario {
        name: "check",
        about: "the auth layer alone: GetUser{id:\"\"} by a user token, authorized, then refused by validation \
                before any database work (expects INVALID_ARGUMENT)",
        loads: check,
        compared_with_health: true,
    },
    Scenario {
        name: "check-permission",
        about: "PermissionService/CheckPermission: may a random seeded user read users? (answered from the \
                access cache)",
        loads: check_permission,
        compared_with_health: true,
    },
    Scenario {
        name: "check-permissions-100",
        about: "PermissionService/CheckPermissions: a batch of 100 checks of random seeded users",
        loads: check_permissions_batch,
        compared_with_health: true,
    },
    Scenario {
        name: "whoami",
        about: "UserService/WhoAmI with a user token (FULL view of oneself)",
        loads: whoami,
        compared_with_health: true,
    },
    Scenario {
        name: "get-user",
        about: "UserService/GetUser of random seeded users, FULL view, by a user holding users:read via a role",
        loads: get_user,
        compared_with_health: true,
    },
    Scenario {
        name: "get-user-beside-edits",
        about: "get-user while an administrator edits one other user (UpdateUser of its first name, 100 a second): \
                what a change to one user costs the reads of all the others",
        loads: get_user_beside_edits,
        compared_with_health: true,
    },
    Scenario {
        name: "get-user-beside-role-edits",
        about: "get-user while an administrator edits a role of the readers' tenant that none of them holds \
                (UpdateRole of its description, 100 a second): what a change to one role costs the reads of users \
                without it",
        loads: get_user_beside_role_edits,
        compared_with_health: true,
    },
    Scenario {
        name: "list-users",
        about: "UserService/ListUsers, first page, limit 50, FULL view",
        loads: list_first,
        compared_with_health: true,
    },
    Scenario {
        name: "list-users-deep-token",
        about: "UserService/ListUsers, a page deep in the set by page_token, limit 50",
        loads: list_deep_token,
        compared_with_health: true,
    },
    Scenario {
        name: "list-users-deep-offset",
        about: "UserService/ListUsers, the same deep page by offset, limit 50",
        loads: list_deep_offset,
        compared_with_health: true,
    },
    Scenario {
        name: "get-user-probe",
        about: "UserService/GetUser at a steady rate (`--probe-rate`): the baseline of the login scenario's probe",
        loads: get_user_probe,
        compared_with_health: false,
    },
    Scenario {
        name: "login",
        about: "AuthService/Login (argon2id) flood, with the steady get-user probe beside it",
        loads: login,
        compared_with_health: false,
    },
    Scenario {
        name: "create-users",
        about: "UserService/CreateUsers, batches of 100 without passwords (PENDING, invitation mailed)",
        loads: create_users,
        compared_with_health: false,
    },
];

/// Wraps an async closure into a [`Call`].
fn call<F, Fut>(f: F) -> Call
where
    F: Fn(Channel, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Status>> + Send + 'static,
{
    Arc::new(move |channel, seq| Box::pin(f(channel, seq)))
}

fn load(label: &str, streams: usize, call: Call) -> Load {
    Load {
        label: label.to_owned(),
        streams,
        expect: Code::Ok,
        rate: None,
        call,
        next_seq: Arc::default(),
    }
}

fn pick<T>(items: &[T], seq: u64) -> &T {
    &items[(seq as usize) % items.len()]
}

fn health(f: &Arc<Fixture>) -> Vec<Load> {
    vec![load(
        "health",
        f.streams,
        call(|channel, _| async move {
            HealthClient::new(channel)
                .check(HealthCheckRequest { service: String::new() })
                .await
                .map(drop)
        }),
    )]
}

fn health_bearer(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    vec![load(
        "health-bearer",
        f.streams,
        call(move |channel, seq| {
            let request = authed(
                HealthCheckRequest { service: String::new() },
                pick(&fixture.caller_tokens, seq),
            );
            async move { HealthClient::new(channel).check(request).await.map(drop) }
        }),
    )]
}

fn check(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    vec![Load {
        expect: Code::InvalidArgument,
        ..load(
            "check",
            f.streams,
            call(move |channel, seq| {
                let request = authed(GetUserRequest { id: String::new() }, pick(&fixture.caller_tokens, seq));
                async move { UserServiceClient::new(channel).get_user(request).await.map(drop) }
            }),
        )
    }]
}

/// A check of whether a seeded user holds `users:read` (it does, through
/// its role and its group).
fn permission_check(f: &Fixture, seq: u64) -> CheckPermissionRequest {
    CheckPermissionRequest {
        subject: Some(Subject::UserId(pick(&f.user_ids, seq.wrapping_mul(7919)).clone())),
        permission: "users:read".into(),
        tenant_id: String::new(),
    }
}

fn check_permission(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    vec![load(
        "check-permission",
        f.streams,
        call(move |channel, seq| {
            let request = authed(permission_check(&fixture, seq), pick(&fixture.caller_tokens, seq));
            async move {
                PermissionServiceClient::new(channel)
                    .check_permission(request)
                    .await
                    .map(drop)
            }
        }),
    )]
}

fn check_permissions_batch(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    vec![load(
        "check-permissions-100",
        f.streams,
        call(move |channel, seq| {
            let checks = (0..100).map(|i| permission_check(&fixture, seq * 100 + i)).collect();
            let request = authed(CheckPermissionsRequest { checks }, pick(&fixture.caller_tokens, seq));
            async move {
                PermissionServiceClient::new(channel)
                    .check_permissions(request)
                    .await
                    .map(drop)
            }
        }),
    )]
}

fn whoami(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    vec![load(
        "whoami",
        f.streams,
        call(move |channel, seq| {
            let request = authed(WhoAmIRequest {}, pick(&fixture.caller_tokens, seq));
            async move { UserServiceClient::new(channel).who_am_i(request).await.map(drop) }
        }),
    )]
}

fn get_user_load(f: &Arc<Fixture>, label: &str, streams: usize) -> Load {
    let fixture = f.clone();
    load(
        label,
        streams,
        call(move |channel, seq| {
            // Spread the targets: a stride that is coprime with most set sizes.
            let id = pick(&fixture.user_ids, seq.wrapping_mul(7919)).clone();
            let request = authed(GetUserRequest { id }, pick(&fixture.caller_tokens, seq));
            async move { UserServiceClient::new(channel).get_user(request).await.map(drop) }
        }),
    )
}

fn get_user(f: &Arc<Fixture>) -> Vec<Load> {
    vec![get_user_load(f, "get-user", f.streams)]
}

fn get_user_beside_edits(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    // The last seeded user: never a caller (callers come first, and the seed
    // refuses a run with no other user), so the edits change no caller's
    // access.
    let edited = f.user_ids.last().cloned().unwrap_or_default();
    let edits = Load {
        rate: Some(EDITS_PER_SECOND),
        ..load(
            "get-user-beside-edits/update-user",
            1,
            call(move |channel, seq| {
                let request = authed(
                    UpdateUserRequest {
                        id: edited.clone(),
                        first_name: format!("Edited {seq}"),
                        ..Default::default()
                    },
                    &fixture.admin_token,
                );
                async move { UserServiceClient::new(channel).update_user(request).await.map(drop) }
            }),
        )
    };
    vec![get_user_load(f, "get-user-beside-edits", f.streams), edits]
}

fn get_user_beside_role_edits(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    // One stream: each edit carries the version the previous one returned.
    let version = Arc::new(AtomicI32::new(1));
    let edits = Load {
        rate: Some(EDITS_PER_SECOND),
        ..load(
            "get-user-beside-role-edits/update-role",
            1,
            call(move |channel, seq| {
                let request = authed(
                    UpdateRoleRequest {
                        id: fixture.unheld_role_id.clone(),
                        version: version.load(Ordering::Acquire),
                        description: Some(format!("Edited {seq}")),
                        ..Default::default()
                    },
                    &fixture.admin_token,
                );
                let version = version.clone();
                async move {
                    let role = RoleServiceClient::new(channel).update_role(request).await?.into_inner();
                    version.store(role.version, Ordering::Release);
                    Ok(())
                }
            }),
        )
    };
    vec![get_user_load(f, "get-user-beside-role-edits", f.streams), edits]
}

fn probe(f: &Arc<Fixture>, label: &str) -> Load {
    Load {
        rate: Some(f.probe_rate),
        ..get_user_load(f, label, PROBE_STREAMS)
    }
}

fn get_user_probe(f: &Arc<Fixture>) -> Vec<Load> {
    vec![probe(f, "get-user-probe")]
}

fn list_load(f: &Arc<Fixture>, label: &str, offset: i32, page_token: String) -> Vec<Load> {
    let fixture = f.clone();
    vec![load(
        label,
        f.streams,
        call(move |channel, seq| {
            let request = authed(
                ListUsersRequest {
                    limit: fixture.page_size,
                    offset,
                    page_token: page_token.clone(),
                    view: UserView::Full as i32,
                    ..Default::default()
                },
                pick(&fixture.caller_tokens, seq),
            );
            async move { UserServiceClient::new(channel).list_users(request).await.map(drop) }
        }),
    )]
}

fn list_first(f: &Arc<Fixture>) -> Vec<Load> {
    list_load(f, "list-users", 0, String::new())
}

fn list_deep_token(f: &Arc<Fixture>) -> Vec<Load> {
    list_load(f, "list-users-deep-token", 0, f.deep_page_token.clone())
}

fn list_deep_offset(f: &Arc<Fixture>) -> Vec<Load> {
    // The page the deep token starts: the one after `deep_offset`.
    list_load(f, "list-users-deep-offset", f.deep_offset + f.page_size, String::new())
}

fn login(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    vec![
        load(
            "login",
            f.streams,
            call(move |channel, seq| {
                let (username, password) = pick(&fixture.logins, seq).clone();
                async move {
                    AuthServiceClient::new(channel)
                        .login(LoginRequest {
                            username,
                            password,
                            tenant_id: String::new(),
                        })
                        .await
                        .map(drop)
                }
            }),
        ),
        probe(f, "login/get-user-probe"),
    ]
}

fn create_users(f: &Arc<Fixture>) -> Vec<Load> {
    let fixture = f.clone();
    let batches = Arc::new(AtomicU64::new(0));
    vec![load(
        "create-users",
        f.write_streams,
        call(move |channel, seq| {
            let batch = batches.fetch_add(1, Ordering::Relaxed);
            let users = (0..100)
                .map(|i| UserDraft {
                    email: format!("new-{}-{batch}-{i}@bench.example", fixture.run_id),
                    first_name: "Bench".into(),
                    last_name: format!("User {i}"),
                    ..Default::default()
                })
                .collect();
            let request = authed(
                CreateUsersRequest {
                    users,
                    request_id: String::new(),
                },
                pick(&fixture.caller_tokens, seq),
            );
            async move { UserServiceClient::new(channel).create_users(request).await.map(drop) }
        }),
    )]
}
