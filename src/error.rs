//! The domain error. Every failure the domain can report is one variant; the
//! doc comment on each says what it becomes on the wire. The mapping to
//! `tonic::Status` lives in `grpc/status.rs` (and to HTTP in the REST gateway),
//! nowhere else.

use std::time::Duration;

use sea_orm::{DbErr, SqlErr};

/// Result of a domain operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One invalid field of a request: its path (`users[3].email`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// The longest field path or description a violation keeps, in bytes: a
/// description may quote the value it refuses (an unknown sort key, a
/// permission), and a value of 20,000 characters quoted back would not fit
/// the trailer a gRPC error travels in.
pub const VIOLATION_TEXT_MAX: usize = 200;

impl FieldViolation {
    /// A violation; a field path or description longer than
    /// [`VIOLATION_TEXT_MAX`] is cut there and ends with "…".
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: clipped(field.into()),
            description: clipped(description.into()),
        }
    }
}

fn clipped(mut text: String) -> String {
    if text.len() > VIOLATION_TEXT_MAX {
        let mut end = VIOLATION_TEXT_MAX - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Why a caller is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No bearer token was sent.
    Missing,
    /// The token does not verify (signature, expiry, issuer, audience, shape).
    Invalid,
    /// The token's user is no longer active, or no longer in the tenant;
    /// or the token's tenant was deleted, or is suspended and the caller
    /// holds no global role.
    SubjectInactive,
    /// The user's token was issued before its password was reset or the
    /// user was deactivated (its `gen` claim is no longer the user's).
    Revoked,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// INVALID_ARGUMENT with a `BadRequest` listing every violation.
    #[error("invalid request: {}", summary(.0))]
    Invalid(Vec<FieldViolation>),
    /// NOT_FOUND: unknown id, or a resource of another tenant; or one a
    /// write refers to that a concurrent call deleted meanwhile (a foreign
    /// key that fails).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// ALREADY_EXISTS: a unique value is taken; names the field.
    #[error("{field} already exists")]
    AlreadyExists { field: String },
    /// ABORTED (reason VERSION_MISMATCH): optimistic concurrency (`version`)
    /// mismatch.
    #[error("{0}")]
    VersionMismatch(String),
    /// ABORTED (reason CONCURRENT_CHANGE): the database gave up the call's
    /// transaction for a concurrent one's sake (on PostgreSQL a deadlock or
    /// a serialization failure); nothing was written, a retry may succeed.
    #[error("a concurrent change got in the way: retry")]
    ConcurrentChange,
    /// FAILED_PRECONDITION: a business rule refuses the change.
    #[error("{0}")]
    FailedPrecondition(String),
    /// FAILED_PRECONDITION (reason REQUEST_ID_REUSED): a Create RPC's
    /// `request_id` was used before with a different body.
    #[error("request_id was already used with a different request")]
    RequestIdReused,
    /// PERMISSION_DENIED: the caller lacks a permission.
    #[error("{0}")]
    PermissionDenied(String),
    /// UNAUTHENTICATED.
    #[error("unauthenticated")]
    Unauthenticated(AuthFailure),
    /// UNAVAILABLE: the database cannot be reached.
    #[error("storage unavailable")]
    Unavailable,
    /// INTERNAL: logged with the request id; answered with a generic message.
    #[error("internal error: {0}")]
    Internal(String),
    /// RESOURCE_EXHAUSTED with RetryInfo.
    #[error("too many attempts")]
    Throttled { retry_after: Duration },
    /// UNAUTHENTICATED "invalid credentials": unknown user, wrong password,
    /// or a user who may not log in; deliberately indistinguishable.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// PERMISSION_DENIED: the user must change its password first.
    #[error("password change required")]
    PasswordChangeRequired,
}

/// How many violations a message names, and after how many bytes it stops
/// naming them; the rest are counted. A gRPC message travels in a header,
/// and headers have a size limit.
pub const VIOLATIONS_IN_MESSAGE: usize = 10;
const SUMMARY_BYTES: usize = 1000;

/// How many field violations an answer details at most (gRPC's
/// `BadRequest`, a REST body's `details`); its message counts the rest. A
/// request can break a rule per element of a list (a sort key, a draft's
/// role id), so an answer listing them all could outgrow the request.
pub const MAX_DETAILED_VIOLATIONS: usize = 100;

/// `field: description; ...`, for messages: the first
/// [`VIOLATIONS_IN_MESSAGE`] (fewer when they are long), then how many more.
pub fn summary(violations: &[FieldViolation]) -> String {
    let mut summary = String::new();
    let mut named = 0;
    for violation in violations.iter().take(VIOLATIONS_IN_MESSAGE) {
        if summary.len() >= SUMMARY_BYTES {
            break;
        }
        if named > 0 {
            summary.push_str("; ");
        }
        summary.push_str(&violation.field);
        summary.push_str(": ");
        summary.push_str(&violation.description);
        named += 1;
    }
    if violations.len() > named {
        summary.push_str(&format!("; and {} more", violations.len() - named));
    }
    summary
}

impl Error {
    /// INVALID_ARGUMENT naming one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldViolation::new(field, description)])
    }

    pub fn internal(what: impl std::fmt::Display) -> Self {
        Error::Internal(what.to_string())
    }
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(message)) => {
                return Error::AlreadyExists {
                    field: unique_field(&message).to_owned(),
                };
            }
            // Every reference a write makes is checked before it; a foreign
            // key that fails all the same names a row a concurrent call
            // deleted in between (a group joined as it is deleted): it is
            // gone, as a retry would find.
            Some(SqlErr::ForeignKeyConstraintViolation(_)) => {
                return Error::NotFound(vanished_parent(database_error(&err).and_then(|e| e.constraint())));
            }
            _ => {}
        }
        match err {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => Error::Unavailable,
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(ref e))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(ref e))
                if is_connection_error(e) =>
            {
                Error::Unavailable
            }
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(ref e))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(ref e))
                if is_concurrency_failure(e) =>
            {
                Error::ConcurrentChange
            }
            DbErr::Exec(sea_orm::RuntimeErr::SqlxError(ref e))
            | DbErr::Query(sea_orm::RuntimeErr::SqlxError(ref e))
                if is_unstorable_text(e) =>
            {
                Error::invalid("request", UNSTORABLE_TEXT)
            }
            other => Error::Internal(other.to_string()),
        }
    }
}

/// The driver's error behind a database error, if any.
fn database_error(err: &DbErr) -> Option<&dyn sea_orm::sqlx::error::DatabaseError> {
    match err {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => {
            e.as_database_error()
        }
        _ => None,
    }
}

/// What a row's reference named, by the foreign key it broke: every key is
/// `fk_<table>_<column>` (the migrations' `cascade`), and the column says
/// the parent. PostgreSQL names the constraint; SQLite does not say which
/// key failed, so its answer is the generic [`REFERENCED_RESOURCE`].
fn vanished_parent(constraint: Option<&str>) -> &'static str {
    let Some(constraint) = constraint else {
        return REFERENCED_RESOURCE;
    };
    [
        ("_user_id", "user"),
        ("_group_id", "group"),
        ("_role_id", "role"),
        ("_tenant_id", "tenant"),
    ]
    .into_iter()
    .find(|(column, _)| constraint.ends_with(column))
    .map_or(REFERENCED_RESOURCE, |(_, parent)| parent)
}

/// What NOT_FOUND names when the database does not say which reference
/// failed.
const REFERENCED_RESOURCE: &str = "referenced resource";

/// PostgreSQL's deadlock (40P01) and serialization failure (40001): the
/// database gave up on this transaction for another's sake.
fn is_concurrency_failure(err: &sea_orm::sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "40P01" || code == "40001")
}

/// What a request whose text the database cannot hold answers
/// (INVALID_ARGUMENT; which field is not known here).
const UNSTORABLE_TEXT: &str = "holds a character that cannot be stored (such as NUL)";

/// PostgreSQL's refusal of a character its text cannot hold: a NUL
/// (22021, character_not_in_repertoire) or one the database's encoding
/// lacks (22P05, untranslatable_character). The entry points refuse such
/// input before it reaches a query; one they let through is still the
/// request's fault, not the server's.
fn is_unstorable_text(err: &sea_orm::sqlx::Error) -> bool {
    err.as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "22021" || code == "22P05")
}

/// Whether the database cannot serve the call now, though another attempt
/// may succeed (UNAVAILABLE): the connection is lost or cannot be had, or
/// the database says so itself ([`is_unavailable_database`]).
fn is_connection_error(err: &sea_orm::sqlx::Error) -> bool {
    use sea_orm::sqlx::Error as E;
    match err {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed | E::Tls(_) => true,
        E::Database(error) => is_unavailable_database(error.as_ref()),
        _ => false,
    }
}

/// A database error that says the database cannot serve the call now. On
/// SQLite, by the primary result code (the extended code's low byte):
/// SQLITE_BUSY (5; another connection, another process's too, held the
/// write lock past the busy timeout) and SQLITE_LOCKED (6). On PostgreSQL,
/// by SQLSTATE: a connection exception (class 08), the server shutting down
/// or restarting or the session ended by an administrator or a timeout
/// (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now,
/// 57P05 idle_session_timeout: a failover, a restart, pg_terminate_backend),
/// too many connections (53300), and a read-only transaction (25006: the
/// server was demoted to a standby by a failover).
fn is_unavailable_database(err: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    let Some(code) = err.code() else {
        return false;
    };
    if err.try_downcast_ref::<sea_orm::sqlx::sqlite::SqliteError>().is_some() {
        return code.parse::<i32>().is_ok_and(|code| matches!(code & 0xff, 5 | 6));
    }
    code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "57P05" | "53300" | "25006")
}

/// Which request field a unique-constraint message is about. Both SQLite
/// (`UNIQUE constraint failed: users.email`) and PostgreSQL (`... constraint
/// "idx-users-email"` with `Key (email)=...`) name the column or index.
fn unique_field(message: &str) -> &'static str {
    let message = message.to_ascii_lowercase();
    ["email", "username", "slug", "name"]
        .into_iter()
        .find(|field| message.contains(field))
        .unwrap_or("id")
}

/// Collects field violations so a request reports all of them at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok` when nothing was added, else INVALID_ARGUMENT with every violation.
    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_request_names_every_field_in_its_message() {
        let mut violations = Violations::new();
        violations.add("email", "is required");
        violations.add("users[1].name", "is too long");
        let error = violations.finish().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid request: email: is required; users[1].name: is too long"
        );
        assert_eq!(
            Error::invalid("id", "must be a UUID").to_string(),
            "invalid request: id: must be a UUID"
        );
    }

    /// A reference to a row deleted meanwhile is NOT_FOUND (what a retry
    /// answers), not a fault of the server. SQLite does not say which
    /// reference failed.
    #[tokio::test]
    async fn a_broken_foreign_key_is_not_found() {
        use sea_orm::{ConnectionTrait, Database};
        let db = Database::connect("sqlite::memory:").await.unwrap();
        db.execute_unprepared(
            "PRAGMA foreign_keys = ON; CREATE TABLE roles (id INTEGER PRIMARY KEY); \
             CREATE TABLE grants (role_id INTEGER NOT NULL REFERENCES roles (id));",
        )
        .await
        .unwrap();
        let err = db
            .execute_unprepared("INSERT INTO grants (role_id) VALUES (7)")
            .await
            .unwrap_err();
        assert!(matches!(Error::from(err), Error::NotFound(REFERENCED_RESOURCE)));
    }

    /// PostgreSQL names the foreign key that failed; its column names what
    /// is gone.
    #[test]
    fn a_broken_foreign_key_names_its_parent() {
        for (constraint, parent) in [
            ("fk_group_members_group_id", "group"),
            ("fk_group_members_user_id", "user"),
            ("fk_user_roles_role_id", "role"),
            ("fk_group_roles_role_id", "role"),
            ("fk_tenant_memberships_tenant_id", "tenant"),
            ("fk_devices_user_id", "user"),
            ("fk_something_else", REFERENCED_RESOURCE),
        ] {
            assert_eq!(vanished_parent(Some(constraint)), parent, "{constraint}");
        }
        assert_eq!(vanished_parent(None), REFERENCED_RESOURCE);
    }

    /// A database error with this SQLSTATE, as the PostgreSQL driver
    /// reports one (its own type cannot be built without a server).
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sea_orm::sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "a database error"
        }

        fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
            Some(self.0.into())
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sea_orm::sqlx::error::ErrorKind {
            sea_orm::sqlx::error::ErrorKind::Other
        }
    }

    /// The error a query that met `code` returns.
    fn query_error(code: &'static str) -> DbErr {
        let error = sea_orm::sqlx::Error::Database(Box::new(Sqlstate(code)));
        DbErr::Query(sea_orm::RuntimeErr::SqlxError(std::sync::Arc::new(error)))
    }

    /// Text PostgreSQL cannot hold (a NUL the entry points let through) is
    /// the request's fault: INVALID_ARGUMENT, with no SQL in its message.
    #[test]
    fn text_the_database_cannot_hold_is_an_invalid_argument() {
        for code in ["22021", "22P05"] {
            let Error::Invalid(violations) = Error::from(query_error(code)) else {
                panic!("{code} should be INVALID_ARGUMENT");
            };
            assert_eq!(violations[0].field, "request", "{code}");
            assert_eq!(violations[0].description, UNSTORABLE_TEXT, "{code}");
        }
        assert!(matches!(Error::from(query_error("22001")), Error::Internal(_)));
    }

    /// PostgreSQL's SQLSTATEs for a lost or refused connection, a server
    /// shutting down or restarting, and a failover are UNAVAILABLE (retry),
    /// as a connection that cannot be had is.
    #[test]
    fn a_lost_postgresql_connection_is_unavailable() {
        for code in [
            "08000", "08003", "08006", "08P01", "57P01", "57P02", "57P03", "57P05", "53300", "25006",
        ] {
            assert!(matches!(Error::from(query_error(code)), Error::Unavailable), "{code}");
            let exec = match query_error(code) {
                DbErr::Query(error) => DbErr::Exec(error),
                other => other,
            };
            assert!(matches!(Error::from(exec), Error::Unavailable), "{code}");
        }
        for code in ["57014", "53200", "42P01"] {
            assert!(matches!(Error::from(query_error(code)), Error::Internal(_)), "{code}");
        }
    }

    /// PostgreSQL's deadlock and serialization failure are ABORTED
    /// CONCURRENT_CHANGE (retry), not a `version` mismatch.
    #[test]
    fn a_deadlock_or_serialization_failure_is_a_concurrent_change() {
        for code in ["40P01", "40001"] {
            assert!(
                matches!(Error::from(query_error(code)), Error::ConcurrentChange),
                "{code}"
            );
        }
    }

    /// SQLite's write lock held by another connection (another process's)
    /// past the busy timeout is SQLITE_BUSY: UNAVAILABLE, not INTERNAL.
    #[tokio::test]
    async fn a_busy_sqlite_database_is_unavailable() {
        use sea_orm::{ConnectOptions, ConnectionTrait, Database};
        let dir = std::env::temp_dir().join(format!("castellan-busy-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}/busy.db?mode=rwc", dir.display());
        let connect = || {
            let mut options = ConnectOptions::new(url.clone());
            options.max_connections(1).sqlx_logging(false);
            options.map_sqlx_sqlite_opts(|opts| opts.busy_timeout(std::time::Duration::from_millis(50)));
            Database::connect(options)
        };
        let (holder, writer) = (connect().await.unwrap(), connect().await.unwrap());
        holder.execute_unprepared("CREATE TABLE t (v INTEGER)").await.unwrap();
        holder.execute_unprepared("BEGIN IMMEDIATE").await.unwrap();
        let err = writer
            .execute_unprepared("INSERT INTO t (v) VALUES (1)")
            .await
            .unwrap_err();
        holder.execute_unprepared("ROLLBACK").await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(Error::from(err), Error::Unavailable));
    }

    #[test]
    fn a_long_quoted_value_is_cut_at_a_character_boundary() {
        let long = format!("unknown sort key {}", "é".repeat(500));
        let Error::Invalid(violations) = Error::invalid("sort[0]", long) else {
            unreachable!("invalid makes Error::Invalid")
        };
        let description = &violations[0].description;
        assert!(description.len() <= VIOLATION_TEXT_MAX, "{}", description.len());
        assert!(description.starts_with("unknown sort key é") && description.ends_with('…'));
        assert_eq!(
            FieldViolation::new("id", "must be a UUID").description,
            "must be a UUID"
        );
    }

    #[test]
    fn a_message_names_ten_violations_and_counts_the_rest() {
        let mut violations = Violations::new();
        for i in 0..12 {
            violations.add(format!("ids[{i}]"), "unknown");
        }
        let message = violations.finish().unwrap_err().to_string();
        assert!(message.contains("ids[9]: unknown; and 2 more"), "{message}");
        assert!(!message.contains("ids[10]"), "{message}");
    }
}
