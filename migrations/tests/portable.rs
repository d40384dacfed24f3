//! The migrations are portable: they go up, down and up again on SQLite and on
//! PostgreSQL, leave nothing behind going down, and the constraints they create
//! (unique, partial unique, foreign keys with cascade) hold on both databases.
//!
//! SQLite always runs, on a temp file. PostgreSQL runs when
//! `CASTELLAN_TEST_DATABASE_URL` points at a server (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`): the test creates a uniquely
//! named database there and drops it at the end, pass or fail.

use std::time::{SystemTime, UNIX_EPOCH};

use migrations::Migrator;
use migrations::sea_orm_migration::MigratorTrait;
use migrations::sea_orm_migration::sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DbBackend, SqlErr, Statement,
};

/// Every table the schema owns, sorted.
const TABLES: [&str; 18] = [
    "audit_events",
    "credentials",
    "devices",
    "group_members",
    "group_roles",
    "groups",
    "idempotency_keys",
    "invitations",
    "login_failures",
    "mail_outbox",
    "registered_permissions",
    "role_permissions",
    "roles",
    "tenant_memberships",
    "tenants",
    "user_permissions",
    "user_roles",
    "users",
];

/// Every named index the schema owns (primary keys aside), sorted.
const INDEXES: [&str; 30] = [
    "idx_audit_events_actor",
    "idx_audit_events_target",
    "idx_audit_events_tenant_id_occurred_at_id",
    "idx_devices_user_id_registered_at_id",
    "idx_group_members_user_id",
    "idx_group_roles_role_id",
    "idx_groups_tenant_id_created_at_id",
    "idx_invitations_tenant_id",
    "idx_invitations_user_id",
    "idx_mail_outbox_sent_at_next_attempt_at",
    "idx_registered_permissions_namespace",
    "idx_role_permissions_permission",
    "idx_roles_global_name",
    "idx_roles_tenant_id_created_at_id",
    "idx_tenant_memberships_tenant_id_is_owner",
    "idx_tenant_memberships_user_id",
    "idx_tenants_created_at_id",
    "idx_user_permissions_tenant_id",
    "idx_user_roles_role_id",
    "idx_users_created_at_id",
    "idx_users_first_name_id",
    "idx_users_last_name_id",
    "idx_users_status",
    "idx_users_updated_at_id",
    "uq_groups_tenant_id_name",
    "uq_invitations_token_hash",
    "uq_roles_tenant_id_name",
    "uq_tenants_slug",
    "uq_users_email",
    "uq_users_username",
];

const TENANT_A: &str = "00000000-0000-7000-8000-00000000000a";
const TENANT_B: &str = "00000000-0000-7000-8000-00000000000b";
const UNKNOWN: &str = "00000000-0000-7000-8000-0000000000ff";
const USER: &str = "00000000-0000-7000-8000-000000000001";
const NOW: &str = "2026-01-01T00:00:00Z";

#[tokio::test]
async fn sqlite_up_down_up() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("castellan.db").display());
    let db = Database::connect(&url).await.expect("open SQLite");
    exercise(&db).await;
    db.close().await.expect("close SQLite");
}

#[tokio::test]
async fn postgres_up_down_up() {
    let Ok(server_url) = std::env::var("CASTELLAN_TEST_DATABASE_URL") else {
        eprintln!("CASTELLAN_TEST_DATABASE_URL is not set: PostgreSQL run skipped");
        return;
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let name = format!("castellan_migrations_{}_{nanos}", std::process::id());

    let server = Database::connect(&server_url)
        .await
        .expect("connect to the PostgreSQL server");
    server
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create the test database");

    let url = with_database(&server_url, &name);
    // Run on another task so that a failed assertion still reaches the cleanup.
    let outcome = tokio::spawn(async move {
        let db = Database::connect(&url).await.expect("connect to the test database");
        exercise(&db).await;
        db.close().await.expect("close the test database");
    })
    .await;

    server
        .execute_unprepared(&format!("DROP DATABASE \"{name}\" WITH (FORCE)"))
        .await
        .expect("drop the test database");
    server.close().await.expect("close the server connection");
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
}

/// Every migration asks for a transaction on every database, not only on
/// PostgreSQL (sea-orm-migration's default).
#[test]
fn every_migration_runs_in_a_transaction() {
    for migration in Migrator::migrations() {
        assert_eq!(migration.use_transaction(), Some(true), "{}", migration.name());
    }
}

/// A migration that fails part-way on SQLite leaves nothing of itself
/// behind, so that once the cause is gone the next start applies it whole.
/// The second migration creates `mail_outbox` and its index, then adds
/// `login_failures.lockouts`: a column of that name added beforehand makes
/// that last step fail.
#[tokio::test]
async fn sqlite_a_migration_failing_part_way_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("castellan.db").display());
    let db = Database::connect(&url).await.expect("open SQLite");
    Migrator::up(&db, Some(1)).await.expect("the first migration");
    exec(&db, "ALTER TABLE login_failures ADD COLUMN lockouts INTEGER").await;

    Migrator::up(&db, None)
        .await
        .expect_err("the second migration fails on the column already there");
    assert!(
        !tables(&db).await.contains(&"mail_outbox".to_owned()),
        "half a migration stayed"
    );
    assert!(
        !indexes(&db)
            .await
            .iter()
            .any(|name| name.starts_with("idx_mail_outbox"))
    );
    let applied = Migrator::get_applied_migrations(&db).await.expect("applied");
    assert_eq!(applied.len(), 1);

    exec(&db, "ALTER TABLE login_failures DROP COLUMN lockouts").await;
    Migrator::up(&db, None)
        .await
        .expect("the migrations, whole, once the cause is gone");
    assert_schema_present(&db).await;
    db.close().await.expect("close SQLite");
}

/// Up, check, down, check nothing is left, up again, check again.
async fn exercise(db: &DatabaseConnection) {
    names_are_folded_for_existing_users(db).await;
    Migrator::up(db, None).await.expect("first up");
    assert_schema_present(db).await;
    assert_constraints_hold(db).await;

    Migrator::down(db, None).await.expect("down");
    assert_eq!(tables(db).await, ["seaql_migrations"], "down left tables");
    assert_eq!(indexes(db).await, Vec::<String>::new(), "down left indexes");

    Migrator::up(db, None).await.expect("second up");
    assert_schema_present(db).await;
    assert_constraints_hold(db).await;
}

/// Users there before the fourth migration get the lowercase copies of
/// their names, folded beyond ASCII (two of them share a first name). Leaves
/// the schema up and the users table empty.
async fn names_are_folded_for_existing_users(db: &DatabaseConnection) {
    Migrator::up(db, Some(3)).await.expect("the first three migrations");
    for (id, first, last) in [
        ("00000000-0000-7000-8000-000000000301", "Élodie", "ØDEGÅRD"),
        ("00000000-0000-7000-8000-000000000302", "Élodie", ""),
    ] {
        exec(
            db,
            &format!(
                "INSERT INTO users (id, email, username, first_name, last_name, status, \
                 created_at, updated_at) \
                 VALUES ('{id}', '{id}@example.com', '{id}', '{first}', '{last}', 'active', \
                 '{NOW}', '{NOW}')"
            ),
        )
        .await;
    }
    Migrator::up(db, None).await.expect("the rest");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT first_name_lower, last_name_lower FROM users ORDER BY email",
        ))
        .await
        .expect("read the folded names");
    let folded: Vec<(String, String)> = rows
        .iter()
        .map(|row| {
            (
                row.try_get("", "first_name_lower").expect("first"),
                row.try_get("", "last_name_lower").expect("last"),
            )
        })
        .collect();
    assert_eq!(
        folded,
        [
            ("élodie".to_owned(), "ødegård".to_owned()),
            ("élodie".to_owned(), String::new())
        ]
    );
    exec(db, "DELETE FROM users").await;
}

async fn assert_schema_present(db: &DatabaseConnection) {
    let mut expected: Vec<&str> = TABLES.to_vec();
    expected.push("seaql_migrations");
    expected.sort_unstable();
    assert_eq!(tables(db).await, expected);
    assert_eq!(indexes(db).await, INDEXES);
}

/// The rules the database itself must enforce, whatever the application does.
async fn assert_constraints_hold(db: &DatabaseConnection) {
    exec(db, &tenant(TENANT_A, "acme")).await;
    expect_unique_violation(db, &tenant(UNKNOWN, "acme")).await;
    exec(db, &tenant(TENANT_B, "globex")).await;

    exec(db, &user(USER, "ada@example.com", "ada")).await;
    expect_unique_violation(db, &user(UNKNOWN, "ada@example.com", "other")).await;
    expect_unique_violation(db, &user(UNKNOWN, "other@example.com", "ada")).await;

    // Role names: unique among global roles (the partial index) and per tenant,
    // while the same name may exist once globally and once in each tenant.
    exec(db, &role("00000000-0000-7000-8000-000000000101", None, "admin")).await;
    expect_unique_violation(db, &role(UNKNOWN, None, "admin")).await;
    exec(
        db,
        &role("00000000-0000-7000-8000-000000000102", Some(TENANT_A), "admin"),
    )
    .await;
    exec(
        db,
        &role("00000000-0000-7000-8000-000000000103", Some(TENANT_B), "admin"),
    )
    .await;
    expect_unique_violation(db, &role(UNKNOWN, Some(TENANT_A), "admin")).await;

    exec(db, &group("00000000-0000-7000-8000-000000000201", TENANT_A, "ops")).await;
    expect_unique_violation(db, &group(UNKNOWN, TENANT_A, "ops")).await;

    exec(db, &membership(TENANT_A, USER)).await;
    expect_unique_violation(db, &membership(TENANT_A, USER)).await;
    expect_foreign_key_violation(db, &membership(UNKNOWN, USER)).await;

    // Deleting a tenant takes its memberships, roles and groups with it.
    exec(db, &format!("DELETE FROM tenants WHERE id = '{TENANT_A}'")).await;
    assert_eq!(count(db, "tenant_memberships").await, 0);
    assert_eq!(count(db, "roles").await, 2, "the global and TENANT_B roles stay");
    assert_eq!(count(db, "groups").await, 0);
    assert_eq!(count(db, "users").await, 1);
}

fn tenant(id: &str, slug: &str) -> String {
    format!(
        "INSERT INTO tenants (id, name, slug, status, created_at, updated_at) \
         VALUES ('{id}', 'Tenant {slug}', '{slug}', 'active', '{NOW}', '{NOW}')"
    )
}

fn user(id: &str, email: &str, username: &str) -> String {
    format!(
        "INSERT INTO users (id, email, username, first_name, last_name, status, \
         created_at, updated_at) \
         VALUES ('{id}', '{email}', '{username}', 'Ada', 'Lovelace', 'active', '{NOW}', '{NOW}')"
    )
}

fn role(id: &str, tenant_id: Option<&str>, name: &str) -> String {
    let tenant_id = tenant_id.map_or_else(|| "NULL".to_owned(), |id| format!("'{id}'"));
    format!(
        "INSERT INTO roles (id, tenant_id, name, created_at, updated_at) \
         VALUES ('{id}', {tenant_id}, '{name}', '{NOW}', '{NOW}')"
    )
}

fn group(id: &str, tenant_id: &str, name: &str) -> String {
    format!(
        "INSERT INTO groups (id, tenant_id, name, created_at, updated_at) \
         VALUES ('{id}', '{tenant_id}', '{name}', '{NOW}', '{NOW}')"
    )
}

fn membership(tenant_id: &str, user_id: &str) -> String {
    format!(
        "INSERT INTO tenant_memberships (tenant_id, user_id, created_at) \
         VALUES ('{tenant_id}', '{user_id}', '{NOW}')"
    )
}

async fn exec(db: &DatabaseConnection, sql: &str) {
    if let Err(error) = db.execute_unprepared(sql).await {
        panic!("{sql}\nfailed: {error}");
    }
}

async fn expect_unique_violation(db: &DatabaseConnection, sql: &str) {
    match db.execute_unprepared(sql).await {
        Ok(_) => panic!("{sql}\nsucceeded; a unique violation was expected"),
        Err(error) => assert!(
            matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
            "{sql}\nfailed with {error}, not a unique violation"
        ),
    }
}

async fn expect_foreign_key_violation(db: &DatabaseConnection, sql: &str) {
    match db.execute_unprepared(sql).await {
        Ok(_) => panic!("{sql}\nsucceeded; a foreign key violation was expected"),
        Err(error) => assert!(
            matches!(error.sql_err(), Some(SqlErr::ForeignKeyConstraintViolation(_))),
            "{sql}\nfailed with {error}, not a foreign key violation"
        ),
    }
}

async fn count(db: &DatabaseConnection, table: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT COUNT(*) AS n FROM {table}"),
        ))
        .await
        .expect("count query")
        .expect("a count row");
    row.try_get("", "n").expect("count value")
}

/// The tables in the database, sorted.
async fn tables(db: &DatabaseConnection) -> Vec<String> {
    names(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema()",
    )
    .await
}

/// The schema's named indexes (`idx_*`, `uq_*`) in the database, sorted.
async fn indexes(db: &DatabaseConnection) -> Vec<String> {
    let mut names = names(
        db,
        "SELECT name FROM sqlite_master WHERE type = 'index'",
        "SELECT indexname::text AS name FROM pg_indexes WHERE schemaname = current_schema()",
    )
    .await;
    names.retain(|name| name.starts_with("idx_") || name.starts_with("uq_"));
    names
}

async fn names(db: &DatabaseConnection, sqlite: &str, postgres: &str) -> Vec<String> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Sqlite => sqlite,
        _ => postgres,
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await
        .expect("catalog query");
    let mut names: Vec<String> = rows
        .iter()
        .map(|row| row.try_get("", "name").expect("a name"))
        .collect();
    names.sort_unstable();
    names
}

/// `url` with its database path replaced by `database` (query string kept).
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |at| at + 3);
    let server = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}
