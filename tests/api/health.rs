use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::helpers::TestApp;

#[tokio::test]
async fn health_reports_serving_overall_and_per_service() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel.clone());
    for service in [
        "",
        "identity.v1.UserService",
        "identity.v1.TenantService",
        "identity.v1.AuthService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health of {service:?}: {e}"))
            .into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "identity.v1.Nope".into(),
        })
        .await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn http_liveness_readiness_and_jwks() {
    let app = TestApp::spawn().await;
    let base = format!("http://{}", app.http_addr);
    assert_eq!(
        reqwest::get(format!("{base}/healthz")).await.expect("healthz").status(),
        200
    );
    assert_eq!(
        reqwest::get(format!("{base}/readyz")).await.expect("readyz").status(),
        200
    );
    let jwks: serde_json::Value = reqwest::get(format!("{base}/.well-known/jwks.json"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(key.get("d").is_none(), "the private key must never be published");
}

#[tokio::test]
async fn metrics_count_and_time_every_rpc_by_code() {
    let app = TestApp::spawn().await;
    let mut users = app.users();
    users
        .list_users(crate::helpers::authed(
            castellan::pb::ListUsersRequest::default(),
            &app.token(&["users:list"]),
        ))
        .await
        .expect("list");
    let _ = users
        .list_users(tonic::Request::new(castellan::pb::ListUsersRequest::default()))
        .await;
    // A REST call (no token: 401) is counted by its route pattern.
    let rest = reqwest::get(format!(
        "http://{}/tenants/users/{}",
        app.http_addr,
        uuid::Uuid::now_v7()
    ))
    .await
    .expect("rest call");
    assert_eq!(rest.status(), 401);
    // A made-up path is counted, under `unknown`: callers cannot mint series.
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.expect("ready");
    let made_up = grpc
        .unary(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/identity.v1.UserService/MadeUp"),
            tonic_prost::ProstCodec::<(), ()>::default(),
        )
        .await;
    crate::helpers::expect_code(made_up, tonic::Code::Unimplemented);
    let text = reqwest::get(format!("http://{}/metrics", app.http_addr))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    assert!(!text.contains("MadeUp"), "a made-up path became a label:\n{text}");
    for expected in [
        r#"castellan_rpc_requests_total{rpc="unknown",code="Unimplemented"}"#,
        r#"castellan_rpc_requests_total{rpc="identity.v1.UserService/ListUsers",code="Ok"}"#,
        r#"castellan_rpc_requests_total{rpc="identity.v1.UserService/ListUsers",code="Unauthenticated"}"#,
        r#"castellan_rpc_duration_seconds_bucket{rpc="identity.v1.UserService/ListUsers",le="0.005"}"#,
        r#"castellan_db_pool_connections{state="idle"}"#,
        "castellan_mail_outbox_backlog",
        r#"castellan_http_requests_total{route="/tenants/users/{id}",method="GET",status="401"}"#,
        r#"castellan_http_duration_seconds_bucket{route="/tenants/users/{id}",le="0.005"}"#,
    ] {
        assert!(text.contains(expected), "{expected} missing from:\n{text}");
    }
}

#[tokio::test]
async fn a_busy_pool_answers_unavailable_after_the_acquire_timeout() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn_with(&["--database-max-connections", "1", "--database-acquire-timeout", "1s"]).await;
    let token = app.token(&["users:list"]);
    let mut users = app.users();
    users
        .list_users(crate::helpers::authed(
            castellan::pb::ListUsersRequest::default(),
            &token,
        ))
        .await
        .expect("an idle pool serves");
    // Hold the only connection.
    let held = app.app.db.begin().await.expect("take the connection");
    let started = std::time::Instant::now();
    let status = users
        .list_users(crate::helpers::authed(
            castellan::pb::ListUsersRequest::default(),
            &token,
        ))
        .await
        .expect_err("no connection is free");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    held.rollback().await.expect("release");
    users
        .list_users(crate::helpers::authed(
            castellan::pb::ListUsersRequest::default(),
            &token,
        ))
        .await
        .expect("served again once a connection is free");
}

/// On SQLite, writes queue for a connection of their own: a write in progress
/// leaves every pooled connection to reads, and the next write waits for it
/// (and answers UNAVAILABLE when it waits past the acquire timeout).
#[tokio::test]
async fn on_sqlite_a_write_in_progress_leaves_the_pool_to_reads() {
    use sea_orm::{DbBackend, TransactionTrait};
    let app = TestApp::spawn_with(&["--database-max-connections", "1", "--database-acquire-timeout", "1s"]).await;
    if app.app.db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let token = app.token(&["users:list", "users:create"]);
    let mut users = app.users();
    let create = |email: &str| {
        crate::helpers::authed(
            castellan::pb::CreateUsersRequest {
                users: vec![crate::helpers::draft(email)],
                request_id: String::new(),
            },
            &token,
        )
    };
    let held = app.app.writer.begin().await.expect("take the writer");
    users
        .list_users(crate::helpers::authed(
            castellan::pb::ListUsersRequest::default(),
            &token,
        ))
        .await
        .expect("reads are served while a write is in progress");
    let status = users
        .create_users(create("queued@example.com"))
        .await
        .expect_err("the writer is taken");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    held.rollback().await.expect("release");
    users
        .create_users(create("queued@example.com"))
        .await
        .expect("written once the writer is free");
}

/// On SQLite, the writer's commits leave WAL checkpoints to a background
/// task: the writer checkpoints inline only past 10,000 WAL pages, and what
/// a write adds reaches the database file without any further commit.
#[tokio::test]
async fn on_sqlite_the_wal_is_checkpointed_in_the_background() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = TestApp::spawn().await;
    if app.app.db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let inline_pages = app
        .app
        .writer
        .query_one_raw(Statement::from_string(DbBackend::Sqlite, "PRAGMA wal_autocheckpoint"))
        .await
        .expect("read the pragma")
        .expect("a row")
        .try_get_by_index::<i64>(0)
        .expect("a number");
    assert_eq!(inline_pages, 10_000);

    let url = app.app.config.database_url();
    let path = url
        .strip_prefix("sqlite://")
        .and_then(|rest| rest.split('?').next())
        .expect("a file database")
        .to_owned();
    let file_size = || std::fs::metadata(&path).expect("the database file").len();
    // The size of the database, WAL included, as a reader sees it.
    let pragma = |name: &'static str| {
        let db = app.app.db.clone();
        async move {
            db.query_one_raw(Statement::from_string(DbBackend::Sqlite, format!("PRAGMA {name}")))
                .await
                .expect("read the pragma")
                .expect("a row")
                .try_get_by_index::<i64>(0)
                .expect("a number")
        }
    };
    let database_size =
        || async { u64::try_from(pragma("page_count").await * pragma("page_size").await).expect("a size") };
    // Let the checkpoint of what the start wrote land first: the file holds
    // every page of the database once it has (a complete checkpoint leaves
    // the file exactly that size).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (file, database) = (file_size(), database_size().await);
        if file >= database {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the start's writes were not checkpointed within 5 s ({file} of {database} bytes)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = file_size();
    let token = app.token(&["users:create"]);
    let drafts = (0..100)
        .map(|i| crate::helpers::draft(&format!("checkpointed{i}@example.com")))
        .collect();
    app.users()
        .create_users(crate::helpers::authed(
            castellan::pb::CreateUsersRequest {
                users: drafts,
                request_id: String::new(),
            },
            &token,
        ))
        .await
        .expect("create users");
    let grown = database_size().await;
    assert!(grown > before, "the write added pages ({before} -> {grown} bytes)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while file_size() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file did not grow within 5 s of the write ({before} bytes)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A PostgreSQL session ended under the pool (a failover, a restart,
/// pg_terminate_backend, idle_session_timeout) fails the call that meets
/// it UNAVAILABLE (57P01 admin_shutdown, or the closed socket), as a
/// database that cannot be reached does; the pool then opens new sessions.
#[tokio::test]
async fn a_terminated_postgresql_session_is_unavailable_not_internal() {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let app = TestApp::spawn().await;
    if app.app.db.get_database_backend() != DbBackend::Postgres {
        return;
    }
    let token = app.token(&["users:list"]);
    let list = || {
        let mut users = app.users();
        let request = crate::helpers::authed(castellan::pb::ListUsersRequest::default(), &token);
        async move { users.list_users(request).await }
    };
    // Calls at once, so the pool holds several sessions.
    let (a, b, c) = tokio::join!(list(), list(), list());
    assert!(a.is_ok() && b.is_ok() && c.is_ok(), "{a:?} {b:?} {c:?}");
    let database: String = app
        .app
        .db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, "SELECT current_database()"))
        .await
        .expect("query")
        .expect("a row")
        .try_get_by_index(0)
        .expect("a name");
    // From another session of the server: every session of the test's database.
    let server = std::env::var("CASTELLAN_TEST_DATABASE_URL").expect("a PostgreSQL server");
    let admin = sea_orm::Database::connect(&server).await.expect("connect");
    admin
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            [database.into()],
        ))
        .await
        .expect("terminate the server's sessions");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Each pooled session fails the one call that meets it, then is closed.
    let mut codes = Vec::new();
    while codes.last() != Some(&tonic::Code::Ok) {
        assert!(codes.len() < 40, "{codes:?}");
        codes.push(list().await.map_or_else(|status| status.code(), |_| tonic::Code::Ok));
    }
    assert!(
        codes[..codes.len() - 1]
            .iter()
            .all(|code| *code == tonic::Code::Unavailable),
        "{codes:?}"
    );
    assert!(codes.len() > 1, "no call met a terminated session: {codes:?}");
}

/// Another process holding SQLite's write lock past the busy timeout (5 s)
/// fails the write that waits for it UNAVAILABLE (SQLITE_BUSY), not
/// INTERNAL; it succeeds once the lock is released.
#[tokio::test]
async fn on_sqlite_a_write_lock_held_past_the_busy_timeout_is_unavailable() {
    use sea_orm::{ConnectionTrait, DbBackend};
    let app = TestApp::spawn().await;
    if app.app.db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let token = app.token(&["users:create"]);
    let create = || {
        let mut users = app.users();
        let request = crate::helpers::authed(
            castellan::pb::CreateUsersRequest {
                users: vec![crate::helpers::draft("busy@example.com")],
                request_id: String::new(),
            },
            &token,
        );
        async move { users.create_users(request).await }
    };
    let mut options = sea_orm::ConnectOptions::new(app.app.config.database_url());
    options.max_connections(1).min_connections(1).sqlx_logging(false);
    let other = sea_orm::Database::connect(options).await.expect("connect");
    other
        .execute_unprepared("BEGIN IMMEDIATE")
        .await
        .expect("take the write lock");
    let status = create().await.expect_err("the write lock is held");
    other.execute_unprepared("ROLLBACK").await.expect("release");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    create().await.expect("written once the lock is free");
}
