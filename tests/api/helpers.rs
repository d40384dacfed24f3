//! `TestApp`: the real server on 127.0.0.1:0 with a fresh database migrated
//! by the real migrator: a temp-file SQLite database by default, a fresh
//! uniquely named PostgreSQL database (dropped afterwards) when
//! `CASTELLAN_TEST_DATABASE_URL` points at a server.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use castellan::{
    app::App,
    auth::token::{SubjectKind, TokenRequest},
    config::Cli,
    pb::{
        CreateUsersRequest, LoginRequest, LoginResponse, User, UserDraft, auth_service_client::AuthServiceClient,
        group_service_client::GroupServiceClient, role_service_client::RoleServiceClient,
        tenant_service_client::TenantServiceClient, user_service_client::UserServiceClient,
    },
    server::Application,
};
use clap::Parser;
use sea_orm::{ConnectionTrait, Database};
use tonic::{Code, Request, Status, transport::Channel};
use tonic_types::StatusExt;
use uuid::Uuid;

pub struct TestApp {
    pub app: Arc<App>,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub channel: Channel,
    /// The tenant `default` created by the bootstrap.
    pub tenant_id: Uuid,
    data_dir: tempfile::TempDir,
    _database: Option<PostgresDatabase>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A PostgreSQL database created for one test and dropped with it.
pub struct PostgresDatabase {
    server_url: String,
    name: String,
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let name = self.name.clone();
        // Drop is synchronous; run the cleanup on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Runtime::new() else {
                return;
            };
            runtime.block_on(async {
                if let Ok(db) = Database::connect(&server_url).await {
                    let _ = db
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A fresh database for one test: a temp-file SQLite database in `dir`, or a
/// new uniquely named PostgreSQL database (dropped with the returned guard)
/// when `CASTELLAN_TEST_DATABASE_URL` names a server.
pub async fn test_database(dir: &std::path::Path) -> (String, Option<PostgresDatabase>) {
    match std::env::var("CASTELLAN_TEST_DATABASE_URL") {
        Ok(server_url) if !server_url.is_empty() => {
            let name = format!("castellan_test_{}", Uuid::now_v7().simple());
            let admin = Database::connect(&server_url).await.expect("connect to PostgreSQL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("create test database");
            let url = match server_url.rfind('/') {
                Some(slash) if slash > "postgres://".len() => format!("{}/{name}", &server_url[..slash]),
                _ => format!("{server_url}/{name}"),
            };
            (url, Some(PostgresDatabase { server_url, name }))
        }
        _ => (format!("sqlite://{}?mode=rwc", dir.join("test.db").display()), None),
    }
}

/// The command line of a test server on `database_url` and `data_dir`
/// (both listeners on port 0), with extra flags.
pub fn test_cli(database_url: &str, data_dir: &std::path::Path, extra_args: &[&str]) -> Cli {
    let data_dir_arg = data_dir.display().to_string();
    let mut args = vec![
        "castellan",
        "--database-url",
        database_url,
        "--data-dir",
        &data_dir_arg,
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
        "--shutdown-grace",
        "5s",
    ];
    args.extend_from_slice(extra_args);
    Cli::try_parse_from(args).expect("test configuration")
}

/// The application on a fresh database in `data_dir`, without its servers
/// and background tasks (the mail outbox worker among them): for tests that
/// drive those by hand. Keep the returned guard as long as the app.
pub async fn build_app(data_dir: &std::path::Path, extra_args: &[&str]) -> (Arc<App>, Option<PostgresDatabase>) {
    let (database_url, database) = test_database(data_dir).await;
    let cli = test_cli(&database_url, data_dir, extra_args);
    (App::build(cli.config).await.expect("build app"), database)
}

/// Adds the bearer token to a request.
pub fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().expect("ascii token"));
    request
}

/// Adds a bearer token and `x-tenant-id`.
pub fn authed_in<T>(message: T, token: &str, tenant: &str) -> Request<T> {
    let mut request = authed(message, token);
    request
        .metadata_mut()
        .insert("x-tenant-id", tenant.parse().expect("ascii tenant"));
    request
}

/// Asserts an error's code and returns the status.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(result: Result<T, Status>, code: Code) -> Status {
    match result {
        Ok(value) => panic!("expected {code:?}, got Ok({value:?})"),
        Err(status) => {
            assert_eq!(status.code(), code, "unexpected status: {status:?}");
            status
        }
    }
}

/// The `reason` of the status's `ErrorInfo` detail; empty without one.
pub fn error_reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_default()
}

/// Expects INVALID_ARGUMENT naming `field` alone, its message saying `words`.
pub fn expect_invalid_field<T: std::fmt::Debug>(result: Result<T, Status>, field: &str, words: &str) {
    let status = expect_code(result, Code::InvalidArgument);
    assert_eq!(violated_fields(&status), [field], "{words}");
    assert!(status.message().contains(words), "{field}: {}", status.message());
}

/// The field paths of a status's `BadRequest` violations.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// Waits until a call started by the test is blocked behind a write the
/// test holds open: on PostgreSQL until a session waits for a lock; on
/// SQLite, where nothing shows a call waiting for the one writer, 300 ms
/// (enough for the call to read and reach the writer; a call that got there
/// later would only read the held write's outcome, so a test using this
/// never fails wrongly, it may only miss a regression now and then).
async fn until_a_call_waits_for_a_lock(app: &TestApp) {
    use sea_orm::{DbBackend, Statement};
    if app.app.db.get_database_backend() != DbBackend::Postgres {
        tokio::time::sleep(Duration::from_millis(300)).await;
        return;
    }
    let waiting = Statement::from_string(
        DbBackend::Postgres,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = app
            .app
            .db
            .query_one_raw(waiting.clone())
            .await
            .expect("count the waiting calls");
        let count: i64 = row.expect("a row").try_get_by_index(0).expect("a number");
        if count > 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no call ever waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `call` behind `held`, a write the test holds open: the call starts
/// on a task of its own, `held` commits once the call waits for it (see
/// `until_a_call_waits_for_a_lock`), and the call's output is returned.
pub async fn behind<T: Send + 'static>(
    app: &TestApp,
    held: sea_orm::DatabaseTransaction,
    call: impl Future<Output = T> + Send + 'static,
) -> T {
    let task = tokio::spawn(call);
    until_a_call_waits_for_a_lock(app).await;
    held.commit().await.expect("commit the held write");
    task.await
        .unwrap_or_else(|error| panic!("the call behind the held write did not finish: {error}"))
}

/// Deletes the group in a write the test holds open (as DeleteGroup writes
/// it), to be committed once a call waits behind it.
pub async fn held_group_deletion(app: &TestApp, group_id: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let deletion = app.app.writer.begin().await.expect("begin");
    castellan::store::groups::delete(&deletion, group_id.parse().expect("uuid"))
        .await
        .expect("delete the group");
    deletion
}

/// Deletes the role in a write the test holds open (as DeleteRole with
/// `force` writes it), to be committed once a call waits behind it.
pub async fn held_role_deletion(app: &TestApp, role_id: &str) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let deletion = app.app.writer.begin().await.expect("begin");
    let deleted = castellan::store::roles::delete(&deletion, role_id.parse().expect("uuid"), true)
        .await
        .expect("delete the role");
    assert!(deleted);
    deletion
}

/// Deletes the tenant in a write the test holds open (as DeleteTenant
/// writes it), to be committed once a call waits behind it.
pub async fn held_tenant_deletion(app: &TestApp, tenant_id: Uuid) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let deletion = app.app.writer.begin().await.expect("begin");
    castellan::store::tenants::delete(&deletion, tenant_id)
        .await
        .expect("delete the tenant");
    deletion
}

/// `n` ids that name nothing, for lists over a bound.
pub fn random_ids(n: usize) -> Vec<String> {
    (0..n).map(|_| Uuid::now_v7().to_string()).collect()
}

pub fn draft(email: &str) -> UserDraft {
    UserDraft {
        email: email.to_owned(),
        ..Default::default()
    }
}

/// A draft with a password: the user is ACTIVE, so its user token works.
pub fn active_draft(email: &str) -> UserDraft {
    UserDraft {
        password: "correct horse battery".to_owned(),
        ..draft(email)
    }
}

/// The flags that send mail over plain SMTP to a sink on this `port`.
pub fn smtp_to(port: &str) -> [&str; 8] {
    [
        "--mailer",
        "smtp",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        port,
        "--smtp-tls",
        "none",
    ]
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Boots with its outbox sending to `sink` over plain SMTP, polled every
    /// `outbox_interval`, and extra command-line flags.
    pub async fn spawn_mailing_to(
        sink: &crate::smtp_sink::SmtpSink,
        outbox_interval: &str,
        extra_args: &[&str],
    ) -> Self {
        let port = sink.port.to_string();
        let mut args = smtp_to(&port).to_vec();
        args.extend_from_slice(&["--outbox-interval", outbox_interval]);
        args.extend_from_slice(extra_args);
        Self::spawn_with(&args).await
    }

    /// Boots with extra command-line flags (e.g. the bootstrap admin).
    pub async fn spawn_with(extra_args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let (database_url, database) = test_database(data_dir.path()).await;
        Self::spawn_on(data_dir, &database_url, database, extra_args).await
    }

    /// Boots on a database the caller provides (e.g. a PostgreSQL server the
    /// test owns and stops).
    pub async fn spawn_on_database(database_url: &str, extra_args: &[&str]) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::spawn_on(data_dir, database_url, None, extra_args).await
    }

    async fn spawn_on(
        data_dir: tempfile::TempDir,
        database_url: &str,
        database: Option<PostgresDatabase>,
        extra_args: &[&str],
    ) -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            castellan::telemetry::init(castellan::config::LogFormat::Text);
        }
        let cli = test_cli(database_url, data_dir.path(), extra_args);
        let app = App::build(cli.config).await.expect("build app");
        let server = Application::build(app.clone()).await.expect("bind");
        let grpc_addr = server.grpc_addr();
        let http_addr = server.http_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run_until(async move {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{grpc_addr}"))
            .expect("uri")
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect to the test server");
        let tenant_id = castellan::store::tenants::resolve(&app.db, "default")
            .await
            .expect("query")
            .expect("bootstrap created tenant default")
            .id;
        Self {
            app,
            grpc_addr,
            http_addr,
            channel,
            tenant_id,
            data_dir,
            _database: database,
            stop: Some(stop),
        }
    }

    /// The server's `--data-dir` (its signing key lives there).
    pub fn data_dir(&self) -> &std::path::Path {
        self.data_dir.path()
    }

    /// A password login with no tenant named (the user's own).
    pub async fn login(&self, username: &str, password: &str) -> Result<LoginResponse, Status> {
        AuthServiceClient::new(self.channel.clone())
            .login(Request::new(LoginRequest {
                username: username.into(),
                password: password.into(),
                tenant_id: String::new(),
            }))
            .await
            .map(|r| r.into_inner())
    }

    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    pub fn tenants(&self) -> TenantServiceClient<Channel> {
        TenantServiceClient::new(self.channel.clone())
    }

    pub fn roles(&self) -> RoleServiceClient<Channel> {
        RoleServiceClient::new(self.channel.clone())
    }

    pub fn groups(&self) -> GroupServiceClient<Channel> {
        GroupServiceClient::new(self.channel.clone())
    }

    fn issue(&self, kind: SubjectKind, subject: String, tenant_id: Uuid, permissions: &[&str], global: bool) -> String {
        self.app
            .keys
            .issue(&TokenRequest {
                kind,
                subject,
                tenant_id,
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                global,
                generation: 0,
                ttl: Duration::from_secs(600),
            })
            .expect("issue token")
            .0
    }

    /// A service token in the default tenant.
    pub fn token(&self, permissions: &[&str]) -> String {
        self.issue(
            SubjectKind::Service,
            "test-service".into(),
            self.tenant_id,
            permissions,
            false,
        )
    }

    /// A service token in another tenant.
    pub fn token_in(&self, tenant_id: Uuid, permissions: &[&str]) -> String {
        self.issue(
            SubjectKind::Service,
            "test-service".into(),
            tenant_id,
            permissions,
            false,
        )
    }

    /// A global service token (may use `x-tenant-id`).
    pub fn global_token(&self, permissions: &[&str]) -> String {
        self.issue(
            SubjectKind::Service,
            "operator".into(),
            self.tenant_id,
            permissions,
            true,
        )
    }

    /// A user token, as Login will issue it.
    pub fn user_token(&self, user_id: &str, tenant_id: Uuid) -> String {
        self.issue(SubjectKind::User, user_id.to_owned(), tenant_id, &[], false)
    }

    /// Creates users in the default tenant with an all-powerful token.
    pub async fn create_users(&self, drafts: Vec<UserDraft>) -> Vec<User> {
        self.create_users_in(self.tenant_id, drafts).await
    }

    pub async fn create_users_in(&self, tenant_id: Uuid, drafts: Vec<UserDraft>) -> Vec<User> {
        let token = self.token_in(tenant_id, &["*"]);
        self.users()
            .create_users(authed(
                CreateUsersRequest {
                    users: drafts,
                    request_id: String::new(),
                },
                &token,
            ))
            .await
            .expect("create users")
            .into_inner()
            .users
    }

    /// Creates a tenant and returns its id.
    pub async fn create_tenant(&self, slug: &str) -> Uuid {
        self.create_tenant_owned_by(slug, "").await
    }

    /// Creates a tenant with this user (an id) as its owner; none for "".
    pub async fn create_tenant_owned_by(&self, slug: &str, owner: &str) -> Uuid {
        let token = self.global_token(&["tenants:*"]);
        let tenant = self
            .tenants()
            .create_tenant(authed(
                castellan::pb::CreateTenantRequest {
                    name: slug.to_uppercase(),
                    slug: slug.to_owned(),
                    owner_user_id: owner.to_owned(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("create tenant")
            .into_inner();
        tenant.id.parse().expect("uuid")
    }
}

/// Every thread's log events, down to TRACE, while one lives: the test
/// binary's global subscriber, installed on the first capture, formats events
/// only then. A scoped subscriber (`set_default`) would see its own thread
/// only, and a callsite first hit on another thread meanwhile would cache
/// "never" and stay silent. One capture at a time: a second waits.
pub struct LogCapture {
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

static CAPTURING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static CAPTURED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());
static CAPTURE_TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct CapturedWriter;

impl std::io::Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURED.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub async fn start() -> Self {
        use std::sync::{Once, atomic::Ordering};
        use tracing_subscriber::{Layer, filter, layer::SubscriberExt, util::SubscriberInitExt};

        let turn = CAPTURE_TURN.lock().await;
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| CapturedWriter)
                .with_filter(filter::filter_fn(|_| CAPTURING.load(Ordering::Acquire)));
            tracing_subscriber::registry()
                .with(layer)
                .try_init()
                .expect("the only global subscriber (TEST_LOG installs its own)");
        });
        CAPTURED.lock().expect("lock").clear();
        CAPTURING.store(true, Ordering::Release);
        Self { _one_at_a_time: turn }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&CAPTURED.lock().expect("lock")).into_owned()
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        CAPTURING.store(false, std::sync::atomic::Ordering::Release);
    }
}
