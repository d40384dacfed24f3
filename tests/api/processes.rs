//! The real `castellan` binary as separate processes: two replicas on one
//! PostgreSQL database agree on revocations at once, SIGTERM drains
//! in-flight calls, a restart with bootstrap settings warns that it ignores
//! them, and neither `--help` nor a connection error shows a password from
//! the environment.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use castellan::{
    auth::token::{SubjectKind, TokenKeys, TokenRequest},
    pb::{
        self, device_service_client::DeviceServiceClient, group_service_client::GroupServiceClient,
        role_service_client::RoleServiceClient, user_service_client::UserServiceClient,
    },
};
use ed25519_dalek::pkcs8::{EncodePrivateKey, spki::der::pem::LineEnding};
use tonic::{Code, Status, transport::Channel};
use uuid::Uuid;

use crate::helpers::{authed, expect_code, test_database};

/// A running `castellan serve` process, killed when dropped.
struct Replica {
    child: Child,
    grpc: SocketAddr,
    /// The JSON log lines it wrote up to its "serving" line.
    start_log: Vec<serde_json::Value>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Starts the binary and waits for its "serving" log line (JSON logs
    /// name the bound addresses); keeps the lines before it.
    fn start(database_url: &str, data_dir: &std::path::Path, key: &std::path::Path, extra: &[&str]) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_castellan"))
            .args([
                "serve",
                "--grpc-addr",
                "127.0.0.1:0",
                "--http-addr",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .args(extra)
            .env("CASTELLAN_DATABASE_URL", database_url)
            .env("CASTELLAN_DATA_DIR", data_dir)
            .env("CASTELLAN_SIGNING_KEY_FILE", key)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start castellan");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut start_log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if json["fields"]["message"] == "castellan serving" {
                    let grpc = json["fields"]["grpc"].as_str().unwrap_or_default().to_owned();
                    let _ = tx.send((grpc, std::mem::take(&mut start_log)));
                } else {
                    start_log.push(json);
                }
            }
        });
        let (grpc, start_log) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("castellan did not report serving");
        Replica {
            child,
            grpc: grpc.parse().expect("address"),
            start_log,
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connect")
    }
}

fn write_key(path: &std::path::Path) {
    let key = ed25519_dalek::SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    std::fs::write(path, key.to_pkcs8_pem(LineEnding::LF).expect("pem").as_bytes()).expect("write key");
}

fn token(keys: &TokenKeys, kind: SubjectKind, subject: &str, tenant: Uuid, permissions: &[&str]) -> String {
    keys.issue(&TokenRequest {
        kind,
        subject: subject.to_owned(),
        tenant_id: tenant,
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        global: false,
        generation: 0,
        ttl: Duration::from_secs(600),
    })
    .expect("token")
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_agree_on_revocations_at_once() {
    if std::env::var("CASTELLAN_TEST_DATABASE_URL").is_err() {
        eprintln!("skipped: replicas share a PostgreSQL database (set CASTELLAN_TEST_DATABASE_URL)");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let (url, _database) = test_database(dir.path()).await;
    let key = dir.path().join("key.pem");
    write_key(&key);
    // Both start (and migrate, and bootstrap) at once.
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| Replica::start(&url, &dir_a, &key, &[]));
        let b = scope.spawn(|| Replica::start(&url, &dir_b, &key, &[]));
        (a.join().expect("a"), b.join().expect("b"))
    });
    let keys = TokenKeys::load_or_generate(&key, "castellan", "castellan").expect("keys");
    let db = sea_orm::Database::connect(&url).await.expect("db");
    let tenant = castellan::store::tenants::resolve(&db, "default")
        .await
        .expect("q")
        .expect("bootstrapped once")
        .id;
    let admin = token(&keys, SubjectKind::Service, "ops", tenant, &["*"]);

    let (mut users_a, mut users_b) = (
        UserServiceClient::new(a.channel().await),
        UserServiceClient::new(b.channel().await),
    );
    let role = RoleServiceClient::new(a.channel().await)
        .create_role(authed(
            pb::CreateRoleRequest {
                name: "reader".into(),
                permissions: vec!["users:read".into()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("role")
        .into_inner();
    let created = users_a
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![
                    pb::UserDraft {
                        email: "reader@example.com".into(),
                        password: "correct horse battery".into(),
                        ..Default::default()
                    },
                    pb::UserDraft {
                        email: "target@example.com".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("users")
        .into_inner()
        .users;
    let (reader, target) = (created[0].id.clone(), created[1].id.clone());
    let reader_token = token(&keys, SubjectKind::User, &reader, tenant, &[]);
    let get_target = || authed(pb::GetUserRequest { id: target.clone() }, &reader_token);
    let roles = |add: bool| {
        let ids = vec![role.id.clone()];
        authed(
            pb::UpdateUserRolesRequest {
                id: reader.clone(),
                add_role_ids: if add { ids.clone() } else { Vec::new() },
                remove_role_ids: if add { Vec::new() } else { ids },
            },
            &admin,
        )
    };

    for round in 0..5 {
        // Granted through one replica, honoured by the other on the next call; revoked likewise.
        let (writer, reader_side) = if round % 2 == 0 {
            (&mut users_a, &mut users_b)
        } else {
            (&mut users_b, &mut users_a)
        };
        expect_code(reader_side.get_user(get_target()).await, Code::PermissionDenied);
        writer.update_user_roles(roles(true)).await.expect("grant");
        once_the_notice_arrives(reader_side, get_target, Result::is_ok)
            .await
            .unwrap_or_else(|e| panic!("round {round}: grant not seen: {e}"));
        writer.update_user_roles(roles(false)).await.expect("revoke");
        expect_code(
            once_the_notice_arrives(reader_side, get_target, refused_with(Code::PermissionDenied)).await,
            Code::PermissionDenied,
        );
    }

    // The role's permissions changed on A (a notice about the role):
    // honoured by B on the next call, also once the role grants nothing
    // and is widened again.
    users_a.update_user_roles(roles(true)).await.expect("grant");
    once_the_notice_arrives(&users_b, get_target, Result::is_ok)
        .await
        .expect("allowed");
    let mut roles_a = RoleServiceClient::new(a.channel().await);
    let change_role = |version: i32, add: bool| {
        let permissions = vec!["users:read".to_owned()];
        authed(
            pb::UpdateRoleRequest {
                id: role.id.clone(),
                version,
                add_permissions: if add { permissions.clone() } else { Vec::new() },
                remove_permissions: if add { Vec::new() } else { permissions },
                ..Default::default()
            },
            &admin,
        )
    };
    roles_a
        .update_role(change_role(1, false))
        .await
        .expect("narrow the role");
    expect_code(
        once_the_notice_arrives(&users_b, get_target, refused_with(Code::PermissionDenied)).await,
        Code::PermissionDenied,
    );
    roles_a.update_role(change_role(2, true)).await.expect("widen the role");
    once_the_notice_arrives(&users_b, get_target, Result::is_ok)
        .await
        .expect("allowed again");

    // The role through a group instead: the group's roles changed on A (a
    // notice about the group), honoured by B, also once the group carries
    // no role and gets it back.
    let mut groups_a = GroupServiceClient::new(a.channel().await);
    let group = groups_a
        .create_group(authed(
            pb::CreateGroupRequest {
                name: "readers".into(),
                role_ids: vec![role.id.clone()],
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("group")
        .into_inner();
    users_a
        .add_user_to_group(authed(
            pb::AddUserToGroupRequest {
                user_id: reader.clone(),
                group_id: group.id.clone(),
            },
            &admin,
        ))
        .await
        .expect("join");
    users_a
        .update_user_roles(roles(false))
        .await
        .expect("revoke the direct grant");
    once_the_notice_arrives(&users_b, get_target, Result::is_ok)
        .await
        .expect("allowed through the group");
    let group_roles = |role_ids: Vec<String>| {
        authed(
            pb::UpdateGroupRequest {
                id: group.id.clone(),
                role_ids,
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["role_ids".into()],
                }),
                ..Default::default()
            },
            &admin,
        )
    };
    groups_a
        .update_group(group_roles(Vec::new()))
        .await
        .expect("strip the group");
    expect_code(
        once_the_notice_arrives(&users_b, get_target, refused_with(Code::PermissionDenied)).await,
        Code::PermissionDenied,
    );
    groups_a
        .update_group(group_roles(vec![role.id.clone()]))
        .await
        .expect("restore the group");
    once_the_notice_arrives(&users_b, get_target, Result::is_ok)
        .await
        .expect("allowed through the group again");

    // A device registered on A (a notice about one user's record alone):
    // B's cached record of that user shows it on the next read.
    let read_reader = || authed(pb::GetUserRequest { id: reader.clone() }, &admin);
    let devices_on_b = |user: pb::User| user.devices.len();
    assert_eq!(
        devices_on_b(users_b.get_user(read_reader()).await.expect("read").into_inner()),
        0
    );
    DeviceServiceClient::new(a.channel().await)
        .register_device(authed(
            pb::RegisterDeviceRequest {
                user_id: reader.clone(),
                name: "laptop".into(),
                platform: "macos".into(),
                os_version: "15.1".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("register a device");
    let shown = once_the_notice_arrives(
        &users_b,
        read_reader,
        |answer| matches!(answer, Ok(user) if user.devices.len() == 1),
    )
    .await;
    assert_eq!(
        devices_on_b(shown.expect("read")),
        1,
        "B shows the device registered on A"
    );

    // Deactivated on A: refused on B once the notice arrives.
    users_a
        .deactivate_user(authed(pb::DeactivateUserRequest { id: reader.clone() }, &admin))
        .await
        .expect("deactivate");
    expect_code(
        once_the_notice_arrives(&users_b, get_target, refused_with(Code::Unauthenticated)).await,
        Code::Unauthenticated,
    );
}

/// Another replica honours a change once its listener has the writer's
/// notice. The writer answers once its own notice has come back, and
/// PostgreSQL sends a commit's notices to every listener together, but each
/// listener's server process sends its own when it is scheduled, so on a
/// busy machine the other replica may have it a moment later (on the
/// writer's own replica a change holds from the next call, as the other
/// tests check). So: reads with `request` on
/// `replica` until `seen` holds of the answer, for up to 5 s, and returns
/// that answer; a replica that ignored the notice would keep its entry for
/// its 5-minute lifetime and fail here.
async fn once_the_notice_arrives(
    replica: &UserServiceClient<Channel>,
    request: impl Fn() -> tonic::Request<pb::GetUserRequest>,
    seen: impl Fn(&Result<pb::User, Status>) -> bool,
) -> Result<pb::User, Status> {
    let mut replica = replica.clone();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = replica.get_user(request()).await.map(tonic::Response::into_inner);
        if seen(&answer) || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn refused_with<T>(code: Code) -> impl Fn(&Result<T, Status>) -> bool {
    move |answer| matches!(answer, Err(status) if status.code() == code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_calls_and_exits() {
    let dir = tempfile::tempdir().expect("dir");
    let (url, _database) = test_database(dir.path()).await;
    let key = dir.path().join("key.pem");
    write_key(&key);
    let mut replica = Replica::start(&url, dir.path(), &key, &["--shutdown-grace", "20s"]);
    let keys = TokenKeys::load_or_generate(&key, "castellan", "castellan").expect("keys");
    let db = sea_orm::Database::connect(&url).await.expect("db");
    let tenant = castellan::store::tenants::resolve(&db, "default")
        .await
        .expect("q")
        .expect("tenant")
        .id;
    let admin = token(&keys, SubjectKind::Service, "ops", tenant, &["*"]);
    let channel = replica.channel().await;

    // Slow calls (password hashing) in a steady stream from several clients.
    let stop_at = Instant::now() + Duration::from_secs(3);
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let channel = channel.clone();
            let admin = admin.clone();
            tokio::spawn(async move {
                let mut results = Vec::new();
                let mut n = 0;
                while Instant::now() < stop_at {
                    n += 1;
                    let started = Instant::now();
                    let drafts = (0..3)
                        .map(|i| pb::UserDraft {
                            email: format!("w{worker}-{n}-{i}@example.com"),
                            password: "correct horse battery".into(),
                            ..Default::default()
                        })
                        .collect();
                    let result = UserServiceClient::new(channel.clone())
                        .create_users(authed(
                            pb::CreateUsersRequest {
                                users: drafts,
                                ..Default::default()
                            },
                            &admin,
                        ))
                        .await;
                    let failed = result.is_err();
                    results.push((started, Instant::now(), result.map(|_| ()).map_err(|s| s.code())));
                    if failed {
                        break;
                    }
                }
                results
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let terminated_at = Instant::now();
    let pid = replica.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );

    let mut completed_in_flight = 0;
    for worker in workers {
        for (started, finished, result) in worker.await.expect("join") {
            if started < terminated_at {
                assert_eq!(result, Ok(()), "a call in flight at SIGTERM failed");
                if finished > terminated_at {
                    completed_in_flight += 1;
                }
            }
        }
    }
    assert!(
        completed_in_flight > 0,
        "no call was in flight at SIGTERM; the test proved nothing"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = replica.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    assert!(exit.is_some_and(|status| status.success()), "exit: {exit:?}");
}

/// Secrets in the environment of the real binary, one a variable.
const SECRET_ENV: [(&str, &str); 3] = [
    (
        "CASTELLAN_DATABASE_URL",
        "postgres://castellan:hunter2@db host/castellan",
    ),
    ("CASTELLAN_SMTP_PASSWORD", "swordfish"),
    ("CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD", "open sesame"),
];

/// Runs the binary with [`SECRET_ENV`] and returns its stdout and stderr.
fn run_with_secrets(args: &[&str]) -> (std::process::ExitStatus, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_castellan"))
        .args(args)
        .envs(SECRET_ENV)
        .env("CASTELLAN_DATA_DIR", std::env::temp_dir())
        .env("RUST_LOG", "info")
        .output()
        .expect("run castellan");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

fn assert_no_secret(text: &str) {
    for secret in ["hunter2", "swordfish", "open sesame"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
}

/// clap shows `[env: NAME=value]` in `--help` for a variable set: the
/// variables that hold secrets are named there, their values never.
#[test]
fn help_names_the_secret_variables_but_never_their_values() {
    for args in [&["--help"][..], &["token", "--help"], &["migrate", "--help"]] {
        let (status, help) = run_with_secrets(args);
        assert!(status.success(), "{args:?}: {help}");
        for (variable, _) in SECRET_ENV {
            assert!(
                help.contains(&format!("[env: {variable}]")),
                "{args:?} does not name {variable}:\n{help}"
            );
        }
        assert_no_secret(&help);
    }
}

/// sea-orm quotes a URL it cannot parse whole in its error: the binary
/// fails, and neither its log nor its message holds the password.
#[test]
fn a_database_url_that_does_not_parse_is_reported_without_its_password() {
    let (status, output) = run_with_secrets(&["migrate"]);
    assert!(!status.success(), "{output}");
    assert!(output.contains("cannot connect to the database"), "{output}");
    assert!(output.contains("castellan:***@db host"), "{output}");
    assert_no_secret(&output);
}

/// The bootstrap runs on an empty database only: started again on the same
/// database with the bootstrap settings still set, the server says, once,
/// that it ignores them, naming the variables and never their values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_settings_on_a_database_with_tenants_are_ignored_with_a_warning() {
    const PASSWORD: &str = "a long bootstrap passphrase";
    let dir = tempfile::tempdir().expect("dir");
    let (url, _database) = test_database(dir.path()).await;
    let key = dir.path().join("key.pem");
    write_key(&key);
    let bootstrap = [
        "--bootstrap-admin-email",
        "first-admin@example.com",
        "--bootstrap-admin-password",
        PASSWORD,
    ];
    let warnings = |replica: &Replica| -> Vec<serde_json::Value> {
        replica
            .start_log
            .iter()
            .filter(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("bootstrap settings ignored"))
            })
            .cloned()
            .collect()
    };
    let first = Replica::start(&url, dir.path(), &key, &bootstrap);
    assert_eq!(
        warnings(&first),
        Vec::<serde_json::Value>::new(),
        "the first start bootstraps"
    );
    drop(first);

    let second = Replica::start(&url, dir.path(), &key, &bootstrap);
    let warned = warnings(&second);
    assert_eq!(warned.len(), 1, "{:?}", second.start_log);
    assert_eq!(warned[0]["level"], "WARN");
    assert_eq!(
        warned[0]["fields"]["settings"],
        "CASTELLAN_BOOTSTRAP_ADMIN_EMAIL, CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD"
    );
    let log = serde_json::to_string(&second.start_log).expect("json");
    assert!(!log.contains(PASSWORD), "the password is logged: {log}");
    drop(second);

    let without = Replica::start(&url, dir.path(), &key, &[]);
    assert_eq!(
        warnings(&without),
        Vec::<serde_json::Value>::new(),
        "nothing set, nothing ignored"
    );
}
