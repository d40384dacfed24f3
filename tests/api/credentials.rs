//! Login, passwords, throttling, invitations (through a real SMTP
//! conversation) and the temporary-password gate.

use std::time::{Duration, Instant};

use castellan::pb::{
    self, AcceptInvitationRequest, ChangePasswordRequest, LoginRequest, ResetUserPasswordRequest, UserDraft,
    auth_service_client::AuthServiceClient,
};
use castellan::store::{
    entity::mail_outbox,
    outbox::{self, NewMail},
};
use sea_orm::EntityTrait;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

use crate::{
    helpers::{TestApp, authed, authed_in, behind, build_app, draft, error_reason, expect_code, violated_fields},
    smtp_sink::{SmtpSink, invitation_token},
};

const PASSWORD: &str = "correct horse battery";

fn with_password(email: &str, temporary: bool) -> UserDraft {
    UserDraft {
        email: email.into(),
        password: PASSWORD.into(),
        temporary_password: temporary,
        ..Default::default()
    }
}

/// Creates jane@example.com, ACTIVE with `PASSWORD`: the user, and its id.
async fn jane(app: &TestApp) -> (pb::User, uuid::Uuid) {
    let jane = app
        .create_users(vec![with_password("jane@example.com", false)])
        .await
        .remove(0);
    let id = jane.id.parse().expect("uuid");
    (jane, id)
}

/// An acceptance of the invitation with `token` and `PASSWORD`, to run
/// `behind` a write the test holds open.
fn accept_invitation(
    app: &TestApp,
    token: String,
) -> impl Future<Output = Result<tonic::Response<pb::User>, Status>> + Send + 'static {
    let mut auth = AuthServiceClient::new(app.channel.clone());
    let request = Request::new(AcceptInvitationRequest {
        token,
        password: PASSWORD.into(),
        first_name: None,
        last_name: None,
    });
    async move { auth.accept_invitation(request).await }
}

/// The user's status as stored.
async fn stored_status(app: &TestApp, id: uuid::Uuid) -> String {
    castellan::store::entity::user::Entity::find_by_id(id)
        .one(&app.app.db)
        .await
        .expect("read")
        .expect("the user")
        .status
}

#[tokio::test]
async fn login_issues_a_token_that_works_and_records_the_connection() {
    let app = TestApp::spawn().await;
    let user = app
        .create_users(vec![with_password("jane@example.com", false)])
        .await
        .remove(0);
    assert!(user.last_connection.is_none());
    let grant = app.login("JANE@example.com", PASSWORD).await.expect("login");
    assert_eq!(grant.token_type, "Bearer");
    assert_eq!(grant.expires_in, 3600);
    assert!(!grant.password_change_required);
    let header = jsonwebtoken::decode_header(&grant.access_token).expect("jwt");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(header.kid.is_some());
    let claims = app.app.keys.verify(&grant.access_token).expect("verifies");
    assert_eq!(
        (claims.sub.as_str(), claims.tid),
        (user.id.as_str(), app.tenant_id.to_string())
    );
    assert!(!claims.jti.is_empty());

    let me = app
        .users()
        .who_am_i(authed(pb::WhoAmIRequest {}, &grant.access_token))
        .await
        .expect("whoami")
        .into_inner();
    assert_eq!(me.id, user.id);
    assert!(me.last_connection.is_some(), "login records the connection");

    // Into a named tenant the user belongs to; not into another.
    let other = app.create_tenant("other").await;
    let mut auth = AuthServiceClient::new(app.channel.clone());
    let refused = auth
        .login(Request::new(LoginRequest {
            username: "jane@example.com".into(),
            password: PASSWORD.into(),
            tenant_id: other.to_string(),
        }))
        .await;
    assert_eq!(
        error_reason(&expect_code(refused, Code::Unauthenticated)),
        "INVALID_CREDENTIALS"
    );
    auth.login(Request::new(LoginRequest {
        username: "jane@example.com".into(),
        password: PASSWORD.into(),
        tenant_id: "default".into(),
    }))
    .await
    .expect("login into default by slug");
}

#[tokio::test]
async fn every_login_failure_answers_alike_and_in_about_the_same_time() {
    let app = TestApp::spawn_with(&["--login-max-failures", "1000"]).await;
    let inactive = app
        .create_users(vec![with_password("inactive@example.com", false)])
        .await
        .remove(0);
    app.create_users(vec![
        with_password("active@example.com", false),
        draft("pending@example.com"),
    ])
    .await;
    app.users()
        .deactivate_user(authed(
            pb::DeactivateUserRequest { id: inactive.id },
            &app.token(&["*"]),
        ))
        .await
        .expect("deactivate");

    for (username, password) in [
        ("nobody@example.com", PASSWORD),
        ("active@example.com", "wrong password!"),
        ("pending@example.com", PASSWORD),
        ("inactive@example.com", PASSWORD),
    ] {
        let status = expect_code(app.login(username, password).await, Code::Unauthenticated);
        assert_eq!(status.message(), "invalid credentials", "{username}");
        assert_eq!(error_reason(&status), "INVALID_CREDENTIALS", "{username}");
    }

    // Unknown users cost a dummy hash: never much faster than a wrong
    // password. The fastest of several attempts is compared (the least noisy
    // measure of the work done on a busy machine), the two kinds taken in
    // turn: the tests of this binary share one process and its hashing
    // threads, so another test's hashes can hold up a run of attempts, and
    // taking them in turn spreads such a stretch over both kinds. Without
    // the dummy hash an unknown user would answer in well under a tenth of
    // the time.
    let (mut unknown, mut known) = (Duration::MAX, Duration::MAX);
    for _ in 0..9 {
        for (username, fastest) in [("nobody@example.com", &mut unknown), ("active@example.com", &mut known)] {
            let started = Instant::now();
            let _ = app.login(username, "wrong password!").await;
            *fastest = (*fastest).min(started.elapsed());
        }
    }
    assert!(
        unknown * 4 >= known && known * 4 >= unknown,
        "unknown user {unknown:?} vs wrong password {known:?}"
    );
    let empty = expect_code(app.login("", "").await, Code::InvalidArgument);
    assert_eq!(violated_fields(&empty), ["username", "password"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wrong_passwords_never_exceed_the_limit_and_lock_for_a_while() {
    let app = TestApp::spawn_with(&["--login-max-failures", "5", "--login-lockout", "2s"]).await;
    app.create_users(vec![with_password("target@example.com", false)]).await;
    let attempts = (0..20).map(|_| {
        let channel = app.channel.clone();
        tokio::spawn(async move {
            AuthServiceClient::new(channel)
                .login(Request::new(LoginRequest {
                    username: "target@example.com".into(),
                    password: "wrong password!".into(),
                    tenant_id: String::new(),
                }))
                .await
        })
    });
    let mut evaluated = 0;
    let mut throttled = 0;
    for attempt in attempts {
        match attempt.await.expect("join") {
            Err(status) if status.code() == Code::Unauthenticated => evaluated += 1,
            Err(status) if status.code() == Code::ResourceExhausted => {
                let retry = status.get_details_retry_info().expect("RetryInfo");
                assert!(retry.retry_delay.is_some_and(|d| d <= Duration::from_secs(2)));
                throttled += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((evaluated, throttled), (5, 15), "exactly the limit is evaluated");

    // The right password is refused until the wait passes, then works and resets the count.
    expect_code(app.login("target@example.com", PASSWORD).await, Code::ResourceExhausted);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    app.login("target@example.com", PASSWORD)
        .await
        .expect("after the lockout");
    for _ in 0..4 {
        expect_code(
            app.login("target@example.com", "wrong password!").await,
            Code::Unauthenticated,
        );
    }
    app.login("target@example.com", PASSWORD)
        .await
        .expect("the count was reset by the success");
}

#[tokio::test]
async fn failures_across_accounts_lock_their_address() {
    let app = TestApp::spawn_with(&["--login-max-failures-per-address", "3", "--login-max-failures", "2"]).await;
    let emails = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"];
    app.create_users(emails.iter().map(|email| with_password(email, false)).collect())
        .await;
    // One failure an account (each within its own limit of two), each
    // counted against the one address too.
    for email in &emails[..3] {
        expect_code(app.login(email, "wrong password!").await, Code::Unauthenticated);
    }
    // The address has used up its three: the next attempt is refused before
    // its password is evaluated, even the right password of a fresh account.
    let refused = expect_code(app.login(emails[3], PASSWORD).await, Code::ResourceExhausted);
    assert!(
        refused
            .get_details_retry_info()
            .is_some_and(|info| info.retry_delay.is_some())
    );
}

/// A password change that succeeds gives its address back the attempt it
/// reserved, as a login does: many users behind one address changing their
/// passwords do not lock it. (Each change used one of the address's
/// attempts for good.)
#[tokio::test]
async fn successful_password_changes_do_not_lock_their_address() {
    let app = TestApp::spawn_with(&["--login-max-failures-per-address", "3"]).await;
    let emails = ["a@example.com", "b@example.com", "c@example.com", "d@example.com"];
    app.create_users(emails.iter().map(|email| with_password(email, false)).collect())
        .await;
    let mut auth = AuthServiceClient::new(app.channel.clone());
    for email in emails {
        let token = app.login(email, PASSWORD).await.expect("login").access_token;
        let change = ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "a brand new secret".into(),
        };
        auth.change_password(authed(change, &token))
            .await
            .unwrap_or_else(|refused| panic!("{email}'s change: {refused:?}"));
    }
    app.login(emails[0], "a brand new secret")
        .await
        .expect("the address is not locked");
}

#[tokio::test]
async fn consecutive_lockouts_grow() {
    let app = TestApp::spawn_with(&["--login-max-failures", "2", "--login-lockout", "1s"]).await;
    let wait = |app: &TestApp| {
        let channel = app.channel.clone();
        async move {
            let status = AuthServiceClient::new(channel)
                .login(Request::new(LoginRequest {
                    username: "ghost@example.com".into(),
                    password: "wrong password!".into(),
                    tenant_id: String::new(),
                }))
                .await
                .expect_err("refused");
            status.get_details_retry_info().and_then(|r| r.retry_delay)
        }
    };
    // Unknown accounts are throttled exactly like known ones.
    assert_eq!(wait(&app).await, None);
    assert_eq!(wait(&app).await, None);
    let first = wait(&app).await.expect("locked");
    tokio::time::sleep(first + Duration::from_millis(100)).await;
    assert_eq!(wait(&app).await, None);
    assert_eq!(wait(&app).await, None);
    let second = wait(&app).await.expect("locked again");
    assert!(second > first, "{second:?} should exceed {first:?}");
}

#[tokio::test]
async fn failures_count_only_within_their_window() {
    // A window of 3 s: the three attempts of the second window (each a hash,
    // slow in a debug build on a busy machine) must fit in one.
    let app = TestApp::spawn_with(&["--login-max-failures", "2", "--login-failure-window", "3s"]).await;
    app.create_users(vec![with_password("window@example.com", false)]).await;
    let wrong = || app.login("window@example.com", "wrong password!");
    expect_code(wrong().await, Code::Unauthenticated);
    expect_code(wrong().await, Code::Unauthenticated);
    // The window has passed: its two failures no longer count, and the new
    // window counts from one again.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    expect_code(wrong().await, Code::Unauthenticated);
    expect_code(wrong().await, Code::Unauthenticated);
    // Within this window the limit is reached: locked, even for the right password.
    expect_code(wrong().await, Code::ResourceExhausted);
    expect_code(app.login("window@example.com", PASSWORD).await, Code::ResourceExhausted);
}

/// The keys of the login throttling counters.
pub async fn throttling_keys(app: &TestApp) -> Vec<String> {
    castellan::store::entity::login_failure::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query")
        .into_iter()
        .map(|row| row.key)
        .collect()
}

/// A username with a control character (a NUL, which PostgreSQL refuses in
/// text) is no account's: Login answers it as an unknown user, without
/// counting it or looking it up. A tenant with one is refused as an unknown
/// tenant is.
#[tokio::test]
async fn a_control_character_in_a_login_answers_as_wrong_credentials() {
    let app = TestApp::spawn().await;
    app.create_users(vec![with_password("person@example.com", false)]).await;
    for username in ["a\0b@example.com", "person\0@example.com", "person@example.com\u{1}"] {
        let status = expect_code(app.login(username, PASSWORD).await, Code::Unauthenticated);
        assert_eq!(status.message(), "invalid credentials", "{username:?}");
        assert_eq!(error_reason(&status), "INVALID_CREDENTIALS", "{username:?}");
    }
    assert_eq!(throttling_keys(&app).await, Vec::<String>::new(), "nothing counted");
    for tenant in ["def\0ault", "default\u{1}"] {
        let status = expect_code(
            AuthServiceClient::new(app.channel.clone())
                .login(Request::new(LoginRequest {
                    username: "person@example.com".into(),
                    password: PASSWORD.into(),
                    tenant_id: tenant.into(),
                }))
                .await,
            Code::Unauthenticated,
        );
        assert_eq!(error_reason(&status), "INVALID_CREDENTIALS", "{tenant:?}");
    }
    app.login("person@example.com", PASSWORD)
        .await
        .expect("the account is not locked");
}

/// A username longer than any account's (254 bytes, as an e-mail address)
/// is answered as an unknown one is, by Login and the password page, and
/// is neither counted nor looked up: it never becomes a throttling key (on
/// PostgreSQL a 20 KB one overflowed the key's index, INTERNAL; on SQLite
/// each attempt stored its key).
#[tokio::test]
async fn a_username_longer_than_any_accounts_is_wrong_credentials_uncounted() {
    let app = TestApp::spawn().await;
    // The longest an account may have is counted as any unknown one is.
    let longest = format!("{}@example.com", "a".repeat(254 - 12));
    assert_eq!(longest.len(), 254);
    let status = expect_code(app.login(&longest, PASSWORD).await, Code::Unauthenticated);
    assert_eq!(error_reason(&status), "INVALID_CREDENTIALS");
    let counted = throttling_keys(&app).await;
    assert_eq!(counted.len(), 2, "{counted:?}");
    // 20,000 pseudo-random letters: incompressible.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let letters: String = (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    let page = format!("http://{}/password/change", app.http_addr);
    for username in [format!("a{longest}"), format!("{letters}@example.com")] {
        let status = expect_code(app.login(&username, PASSWORD).await, Code::Unauthenticated);
        assert_eq!(status.message(), "invalid credentials");
        assert_eq!(error_reason(&status), "INVALID_CREDENTIALS");
        let form = [
            ("username", username.as_str()),
            ("current_password", PASSWORD),
            ("new_password", "a new long passphrase"),
            ("new_password_confirmation", "a new long passphrase"),
        ];
        let response = reqwest::Client::new()
            .post(&page)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(serde_urlencoded::to_string(form).expect("encode"))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    }
    assert_eq!(throttling_keys(&app).await, counted, "nothing more counted");
}

/// The throttling counters nothing holds back any more (a window and the
/// longest lockout after their window started) are forgotten, once a
/// window, so failed logins of unknown usernames do not pile up; one in
/// force stays.
#[tokio::test]
async fn idle_throttling_counters_are_forgotten() {
    use castellan::store::entity::login_failure;
    use sea_orm::{ActiveModelTrait, ActiveValue::Set};
    let app = TestApp::spawn_with(&[
        "--login-failure-window",
        "300ms",
        "--login-lockout",
        "100ms",
        "--login-max-lockout",
        "300ms",
    ])
    .await;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    login_failure::ActiveModel {
        key: Set("user:locked@example.com".into()),
        failures: Set(0),
        window_started_at: Set(later),
        locked_until: Set(Some(later)),
        lockouts: Set(3),
    }
    .insert(&app.app.writer)
    .await
    .expect("insert");
    expect_code(app.login("ghost@example.com", PASSWORD).await, Code::Unauthenticated);
    let mut keys = throttling_keys(&app).await;
    keys.sort();
    assert_eq!(
        keys,
        ["ip:127.0.0.1", "user:ghost@example.com", "user:locked@example.com"]
    );
    let started = Instant::now();
    while throttling_keys(&app).await.len() > 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never forgotten: {:?}",
            throttling_keys(&app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(throttling_keys(&app).await, ["user:locked@example.com"]);
}

#[tokio::test]
async fn a_temporary_password_must_be_changed_before_anything_else() {
    let app = TestApp::spawn().await;
    let user = app
        .create_users(vec![with_password("temp@example.com", true)])
        .await
        .remove(0);
    let grant = app.login("temp@example.com", PASSWORD).await.expect("login");
    assert!(grant.password_change_required);
    let token = grant.access_token;
    let mut users = app.users();
    let mut auth = AuthServiceClient::new(app.channel.clone());

    let gated = expect_code(
        users
            .get_user(authed(pb::GetUserRequest { id: user.id.clone() }, &token))
            .await,
        Code::PermissionDenied,
    );
    assert_eq!(error_reason(&gated), "PASSWORD_CHANGE_REQUIRED");
    users
        .who_am_i(authed(pb::WhoAmIRequest {}, &token))
        .await
        .expect("WhoAmI still works");

    let change = |current: &str, new: &str| ChangePasswordRequest {
        current_password: current.into(),
        new_password: new.into(),
    };
    expect_code(
        auth.change_password(authed(change("wrong password!", "a brand new secret"), &token))
            .await,
        Code::Unauthenticated,
    );
    let weak = expect_code(
        auth.change_password(authed(change(PASSWORD, "password"), &token)).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&weak), ["new_password"]);
    assert!(!weak.message().contains(PASSWORD));
    auth.change_password(authed(change(PASSWORD, "a brand new secret"), &token))
        .await
        .expect("change");
    users
        .get_user(authed(pb::GetUserRequest { id: user.id.clone() }, &token))
        .await
        .expect("the same token works once the password is changed");
    expect_code(app.login("temp@example.com", PASSWORD).await, Code::Unauthenticated);
    let grant = app
        .login("temp@example.com", "a brand new secret")
        .await
        .expect("new password");
    assert!(!grant.password_change_required);
}

#[tokio::test]
async fn administrators_reset_passwords() {
    let app = TestApp::spawn().await;
    let other = app.create_tenant("other").await;
    let pending = app.create_users(vec![draft("pending@example.com")]).await.remove(0);
    let elsewhere = app
        .create_users_in(other, vec![draft("elsewhere@example.com")])
        .await
        .remove(0);
    let admin = app.token(&["users:password-reset"]);
    let mut users = app.users();
    let reset = |id: &str, password: &str, temporary: Option<bool>| ResetUserPasswordRequest {
        id: id.into(),
        password: password.into(),
        temporary,
    };

    users
        .reset_user_password(authed(reset(&pending.id, "reset secret 1", None), &admin))
        .await
        .expect("reset");
    let grant = app
        .login("pending@example.com", "reset secret 1")
        .await
        .expect("a reset activates a pending user");
    assert!(grant.password_change_required, "temporary by default");
    users
        .reset_user_password(authed(reset(&pending.id, "reset secret 2", Some(false)), &admin))
        .await
        .expect("reset");
    let grant = app.login("pending@example.com", "reset secret 2").await.expect("login");
    assert!(!grant.password_change_required);
    // A reset revokes the user's live token at once (the user's cached
    // access is outdated, not only its record), and the token of a login
    // with the temporary password is gated.
    let token = grant.access_token;
    let read_self = || pb::GetUserRequest { id: pending.id.clone() };
    users
        .get_user(authed(read_self(), &token))
        .await
        .expect("a user reads itself");
    users
        .reset_user_password(authed(reset(&pending.id, "reset secret 4", Some(true)), &admin))
        .await
        .expect("reset");
    let revoked = expect_code(users.get_user(authed(read_self(), &token)).await, Code::Unauthenticated);
    assert_eq!(error_reason(&revoked), "TOKEN_REVOKED");
    let temporary = app.login("pending@example.com", "reset secret 4").await.expect("login");
    let gated = expect_code(
        users.get_user(authed(read_self(), &temporary.access_token)).await,
        Code::PermissionDenied,
    );
    assert_eq!(error_reason(&gated), "PASSWORD_CHANGE_REQUIRED");

    let weak = expect_code(
        users
            .reset_user_password(authed(reset(&pending.id, "short", None), &admin))
            .await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&weak), ["password"]);
    expect_code(
        users
            .reset_user_password(authed(reset(&elsewhere.id, "reset secret 3", None), &admin))
            .await,
        Code::NotFound,
    );
    expect_code(
        users
            .reset_user_password(authed(
                reset(&pending.id, "reset secret 3", None),
                &app.token(&["users:update"]),
            ))
            .await,
        Code::PermissionDenied,
    );
}

/// The outbox sends 20 mails a pass; a pass that finds 20 due is followed by
/// the next at once, so a bulk import's invitations leave together instead
/// of 20 an interval.
#[tokio::test]
async fn a_backlog_of_invitations_leaves_without_waiting_an_interval_a_batch() {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "6s", &[]).await;
    let drafts = (0..45).map(|i| draft(&format!("backlog{i}@example.com"))).collect();
    app.create_users(drafts).await;
    let created = Instant::now();
    // The next pass comes within one interval (6 s) and sends all three
    // batches; 20 a pass would take two intervals more (12 s or later).
    while sink.messages().len() < 45 {
        assert!(
            created.elapsed() < Duration::from_secs(11),
            "{} of 45 mails after {:?}",
            sink.messages().len(),
            created.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_invited_user_receives_a_mail_and_accepts_once() {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &["--public-url", "https://id.example.com/"]).await;
    let invited = app.create_users(vec![draft("invited@example.com")]).await.remove(0);
    assert_eq!(invited.status, pb::UserStatus::Pending as i32);
    let mails = sink.wait_for(1).await;
    assert!(mails[0].contains("invited@example.com"), "{}", mails[0]);
    assert!(
        mails[0].contains("https://id.example.com/invitations/accept?token="),
        "{}",
        mails[0]
    );
    let token = invitation_token(&mails[0]);
    assert!(token.len() >= 22, "at least 128 bits: {token}");

    // A token for the invited user is refused while it is pending (and that
    // refusal is what its cached access says) ...
    let user_token = app.user_token(&invited.id, app.tenant_id);
    let mut users = app.users();
    expect_code(
        users.who_am_i(authed(pb::WhoAmIRequest {}, &user_token)).await,
        Code::Unauthenticated,
    );

    let mut auth = AuthServiceClient::new(app.channel.clone());
    let accept = |password: &str| AcceptInvitationRequest {
        token: token.clone(),
        password: password.into(),
        first_name: Some("Ivy".into()),
        last_name: None,
    };
    let weak = expect_code(
        auth.accept_invitation(Request::new(accept("short"))).await,
        Code::InvalidArgument,
    );
    assert_eq!(violated_fields(&weak), ["password"]);
    let user = auth
        .accept_invitation(Request::new(accept(PASSWORD)))
        .await
        .expect("accept")
        .into_inner();
    assert_eq!(user.status, pb::UserStatus::Active as i32);
    assert_eq!(user.first_name, "Ivy");
    // ... and works the moment the invitation is accepted.
    users
        .who_am_i(authed(pb::WhoAmIRequest {}, &user_token))
        .await
        .expect("the accepted user's token works at once");
    app.login("invited@example.com", PASSWORD)
        .await
        .expect("login after accepting");
    expect_code(
        auth.accept_invitation(Request::new(accept(PASSWORD))).await,
        Code::NotFound,
    );

    // Only the hash of the token is stored; the sent mail's body is wiped.
    let stored = castellan::store::entity::invitation::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    assert!(stored.iter().all(|i| !i.token_hash.contains(&token)));
    let outbox = castellan::store::entity::mail_outbox::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    assert!(outbox.iter().all(|m| m.sent_at.is_some() && m.body.is_empty()));
}

#[tokio::test]
async fn an_smtp_outage_delays_mail_but_loses_none() {
    let sink = SmtpSink::start(2).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    app.create_users(vec![draft("patient@example.com")]).await;
    let mails = sink.wait_for(1).await;
    assert!(mails[0].contains("patient@example.com"));
    let outbox = castellan::store::entity::mail_outbox::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].attempts, 3, "two refusals, then delivered");
    assert!(outbox[0].last_error.as_deref().is_some_and(|e| e.contains("451")));
}

/// A mail to queue in the outbox tests below.
fn outbox_mail(recipient: &str) -> NewMail {
    NewMail {
        recipient: recipient.into(),
        subject: "Hello".into(),
        body: "a one-time link".into(),
    }
}

async fn outbox_row(db: &sea_orm::DatabaseConnection, id: uuid::Uuid) -> mail_outbox::Model {
    mail_outbox::Entity::find_by_id(id)
        .one(db)
        .await
        .expect("query")
        .expect("the mail")
}

/// A claim lasts its lease: a leased mail is not claimed twice, and once the
/// lease lapsed and another worker (replica) claimed the mail, the first
/// worker's late outcome, sent or failed, records nothing over the second's.
#[tokio::test]
async fn a_lapsed_claim_cannot_record_its_attempt() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Without the servers, so no outbox worker runs beside the test.
    let (app, _database) = build_app(dir.path(), &[]).await;
    let now = castellan::domain::now();
    outbox::enqueue(&app.writer, vec![outbox_mail("lease@example.com")], now)
        .await
        .expect("enqueue");
    let mail = outbox::due(&app.db, now, 10).await.expect("due").remove(0);
    let lease = chrono::Duration::seconds(120);
    let first = outbox::claim(&app.writer, &mail, now + lease)
        .await
        .expect("claim")
        .expect("the first claim holds");
    assert_eq!(
        outbox::claim(&app.writer, &mail, now + lease * 2).await.expect("claim"),
        None,
        "a leased mail is not claimed again"
    );

    // The lease lapses; another worker finds the mail due and claims it.
    let later = now + lease + chrono::Duration::seconds(1);
    let lapsed = outbox::due(&app.db, later, 10).await.expect("due").remove(0);
    let second = outbox::claim(&app.writer, &lapsed, later + lease)
        .await
        .expect("claim")
        .expect("a lapsed lease is claimed again");
    assert!(
        !outbox::mark_failed(&app.writer, &first, "late", later)
            .await
            .expect("update")
    );
    assert!(!outbox::mark_sent(&app.writer, &first, later).await.expect("update"));
    let untouched = outbox_row(&app.db, mail.id).await;
    assert_eq!(
        (untouched.sent_at, untouched.attempts, untouched.last_error.as_deref()),
        (None, 0, None)
    );
    assert_eq!(untouched.next_attempt_at, second.lease_until);
    assert_eq!(untouched.body, "a one-time link");

    assert!(outbox::mark_sent(&app.writer, &second, later).await.expect("update"));
    let sent = outbox_row(&app.db, mail.id).await;
    assert_eq!((sent.sent_at, sent.attempts, sent.body.as_str()), (Some(later), 1, ""));
    assert!(
        !outbox::mark_sent(&app.writer, &second, later).await.expect("update"),
        "sent once"
    );
}

/// Each mail of a pass is leased from its own claim, not from the pass's
/// start: a slow mailer does not eat into the leases of the mails after the
/// first, which another replica would then claim (and send again) while
/// this one still sends them.
#[tokio::test]
async fn each_mail_is_leased_from_its_own_claim() {
    let delay = Duration::from_millis(300);
    let sink = SmtpSink::start_slow(0, delay).await;
    let port = sink.port.to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, _database) = build_app(dir.path(), &crate::helpers::smtp_to(&port)).await;
    let mails = (0..3).map(|i| outbox_mail(&format!("slow{i}@example.com"))).collect();
    let started = castellan::domain::now();
    outbox::enqueue(&app.writer, mails, started).await.expect("enqueue");
    castellan::mail::outbox::deliver_due(&app, Duration::from_secs(1))
        .await
        .expect("pass");
    assert_eq!(sink.messages().len(), 3);

    let mut leases: Vec<_> = mail_outbox::Entity::find()
        .all(&app.db)
        .await
        .expect("query")
        .into_iter()
        .map(|mail| mail.next_attempt_at)
        .collect();
    leases.sort();
    let lease = chrono::Duration::from_std(castellan::mail::outbox::CLAIM_LEASE).expect("lease");
    assert!(leases[0] >= started + lease, "{leases:?}");
    for pair in leases.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::from_std(delay).expect("delay"),
            "each lease starts at its claim, after the slow send before it: {leases:?}"
        );
    }
}

#[tokio::test]
async fn expired_and_unknown_invitations_are_not_found() {
    // A long outbox interval keeps the mail (and its link) in the outbox to read it.
    let app = TestApp::spawn_with(&["--invitation-ttl", "1s", "--outbox-interval", "1h"]).await;
    app.create_users(vec![draft("late@example.com")]).await;
    let outbox = castellan::store::entity::mail_outbox::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    let token = invitation_token(&outbox[0].body);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut auth = AuthServiceClient::new(app.channel.clone());
    for token in [token.as_str(), "made-up-token"] {
        expect_code(
            auth.accept_invitation(Request::new(AcceptInvitationRequest {
                token: token.into(),
                password: PASSWORD.into(),
                ..Default::default()
            }))
            .await,
            Code::NotFound,
        );
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Hashing runs on threads of its own (one a core, at idle priority), so
/// while a burst of logins queues for them, other calls go on: a GetUser during the burst
/// takes a fraction of what a login takes (both measured in the same run, so
/// the comparison holds on a slow or busy machine).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_logins_does_not_stall_other_calls() {
    let app = TestApp::spawn_with(&["--login-max-failures", "1000"]).await;
    let user = app
        .create_users(vec![with_password("busy@example.com", false)])
        .await
        .remove(0);
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let channel = app.channel.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                AuthServiceClient::new(channel)
                    .login(Request::new(LoginRequest {
                        username: "busy@example.com".into(),
                        password: PASSWORD.into(),
                        tenant_id: String::new(),
                    }))
                    .await
                    .map(|_| started.elapsed())
            })
        })
        .collect();
    let token = app.token(&["users:read"]);
    let mut users = app.users();
    let mut get_user_latencies = Vec::new();
    while get_user_latencies.len() < 10 || logins.iter().any(|login| !login.is_finished()) {
        let started = Instant::now();
        users
            .get_user(authed(pb::GetUserRequest { id: user.id.clone() }, &token))
            .await
            .expect("get user");
        get_user_latencies.push(started.elapsed());
    }
    let mut login_latencies = Vec::new();
    for login in logins {
        login_latencies.push(login.await.expect("join").expect("login"));
    }
    let (get_user, login) = (median(get_user_latencies), median(login_latencies));
    eprintln!("GetUser median {get_user:?}, login median {login:?}");
    assert!(
        get_user * 3 < login,
        "GetUser {get_user:?} should not queue behind logins ({login:?})"
    );
}

/// The invitation goes with the address: a new e-mail of a PENDING user ends
/// the link mailed to the old one (which would otherwise let whoever reads
/// that mailbox take the account) and mails the new address its own.
#[tokio::test]
async fn a_pending_users_new_email_ends_the_old_invitation_and_mails_a_new_one() {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let invited = app.create_users(vec![draft("typo@exampel.com")]).await.remove(0);
    let old_token = invitation_token(&sink.wait_for(1).await[0]);
    let admin = app.token(&["*"]);
    let mut users = app.users();
    users
        .update_user(authed(
            pb::UpdateUserRequest {
                id: invited.id.clone(),
                email: "right@example.com".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .expect("new e-mail");
    let mails = sink.wait_for(2).await;
    assert!(mails[1].contains("right@example.com"), "{}", mails[1]);
    let new_token = invitation_token(&mails[1]);

    let mut auth = AuthServiceClient::new(app.channel.clone());
    let accept = |token: &str| {
        Request::new(AcceptInvitationRequest {
            token: token.to_owned(),
            password: PASSWORD.into(),
            first_name: None,
            last_name: None,
        })
    };
    expect_code(auth.accept_invitation(accept(&old_token)).await, Code::NotFound);
    let user = auth
        .accept_invitation(accept(&new_token))
        .await
        .expect("the new address's link works")
        .into_inner();
    assert_eq!(user.email, "right@example.com");
}

/// Whether a new e-mail re-invites goes by the user as it is once the change
/// holds its row: an invitation accepted meanwhile (here: the user made
/// ACTIVE by a write the test holds open) means no new invitation.
#[tokio::test]
async fn a_new_email_re_invites_by_the_users_status_under_the_lock() {
    use castellan::{
        domain::users::STATUS_ACTIVE,
        store::entity::{invitation, user},
    };
    use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait, sea_query::Expr};
    let app = TestApp::spawn().await;
    let invited = app.create_users(vec![draft("racing@example.com")]).await.remove(0);
    let id: uuid::Uuid = invited.id.parse().expect("uuid");
    let acceptance = app.app.writer.begin().await.expect("begin");
    user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value(STATUS_ACTIVE))
        .filter(user::Column::Id.eq(id))
        .exec(&acceptance)
        .await
        .expect("activate");
    let mut users = app.users();
    let request = authed(
        pb::UpdateUserRequest {
            id: invited.id.clone(),
            email: "moved@example.com".into(),
            ..Default::default()
        },
        &app.token(&["*"]),
    );
    let update = async move { users.update_user(request).await };
    let updated = behind(&app, acceptance, update).await.expect("new e-mail").into_inner();
    assert_eq!(updated.email, "moved@example.com");
    let invitations = invitation::Entity::find()
        .filter(invitation::Column::UserId.eq(id))
        .all(&app.app.db)
        .await
        .expect("invitations");
    assert_eq!(invitations.len(), 1, "no invitation for an ACTIVE user");
}

/// Only a password makes a user ACTIVE: one deactivated while PENDING comes
/// back PENDING, and its invitation works again.
#[tokio::test]
async fn a_user_deactivated_while_pending_is_reactivated_pending() {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let invited = app.create_users(vec![draft("later@example.com")]).await.remove(0);
    let token = invitation_token(&sink.wait_for(1).await[0]);
    let admin = app.token(&["*"]);
    let mut users = app.users();
    users
        .deactivate_user(authed(pb::DeactivateUserRequest { id: invited.id.clone() }, &admin))
        .await
        .expect("deactivate");
    let back = users
        .reactivate_user(authed(pb::ReactivateUserRequest { id: invited.id.clone() }, &admin))
        .await
        .expect("reactivate")
        .into_inner();
    assert_eq!(back.status, pb::UserStatus::Pending as i32);
    let user = AuthServiceClient::new(app.channel.clone())
        .accept_invitation(Request::new(AcceptInvitationRequest {
            token,
            password: PASSWORD.into(),
            first_name: None,
            last_name: None,
        }))
        .await
        .expect("its invitation works again")
        .into_inner();
    assert_eq!(user.status, pb::UserStatus::Active as i32);
}

/// Whether a reset makes the user ACTIVE goes by the user as it is once the
/// reset holds its row: a deactivation that commits while the reset waits
/// (here: a write the test holds open) is kept, and the user cannot log in.
#[tokio::test]
async fn a_reset_keeps_a_deactivation_that_commits_while_it_waits() {
    use castellan::{domain::users::STATUS_INACTIVE, store::entity::user};
    use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait, sea_query::Expr};
    let app = TestApp::spawn().await;
    let pending = app.create_users(vec![draft("deactivated@example.com")]).await.remove(0);
    let id: uuid::Uuid = pending.id.parse().expect("uuid");
    let deactivation = app.app.writer.begin().await.expect("begin");
    user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value(STATUS_INACTIVE))
        .filter(user::Column::Id.eq(id))
        .exec(&deactivation)
        .await
        .expect("deactivate");
    let mut users = app.users();
    let request = authed(
        ResetUserPasswordRequest {
            id: pending.id.clone(),
            password: "reset while deactivated".into(),
            temporary: Some(false),
        },
        &app.token(&["users:password-reset"]),
    );
    let reset = async move { users.reset_user_password(request).await };
    behind(&app, deactivation, reset).await.expect("reset");
    assert_eq!(
        stored_status(&app, id).await,
        STATUS_INACTIVE,
        "the deactivation stands"
    );
    expect_code(
        app.login("deactivated@example.com", "reset while deactivated").await,
        Code::Unauthenticated,
    );
}

/// A login whose password was checked before a reset committed (here: a
/// write the test holds open, which moves the user's token generation on as
/// ResetUserPassword does) is refused, never answered with a token the next
/// call refuses as revoked. (On SQLite the one writer orders them: the login
/// waits to count its attempt and then reads the user as reset, so its token
/// works; on PostgreSQL it reads the user first and meets the reset at its
/// bookkeeping.)
#[tokio::test]
async fn a_login_that_a_reset_overtakes_answers_no_revoked_token() {
    use castellan::store::entity::user;
    use sea_orm::{
        ColumnTrait, QueryFilter, TransactionTrait,
        sea_query::{Expr, ExprTrait},
    };
    let app = TestApp::spawn().await;
    let (jane, id) = jane(&app).await;
    let reset = app.app.writer.begin().await.expect("begin");
    user::Entity::update_many()
        .col_expr(
            user::Column::TokenGeneration,
            Expr::col(user::Column::TokenGeneration).add(1),
        )
        .filter(user::Column::Id.eq(id))
        .exec(&reset)
        .await
        .expect("move the generation on");
    let mut auth = AuthServiceClient::new(app.channel.clone());
    let login = async move {
        auth.login(Request::new(LoginRequest {
            username: "jane@example.com".into(),
            password: PASSWORD.into(),
            tenant_id: String::new(),
        }))
        .await
    };
    match behind(&app, reset, login).await {
        Ok(grant) => {
            let read_self = pb::GetUserRequest { id: jane.id.clone() };
            app.users()
                .get_user(authed(read_self, &grant.into_inner().access_token))
                .await
                .expect("the token a login answers works");
        }
        Err(refused) => assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}"),
    }
}

/// A password change whose current password was checked before another
/// write of the password committed (here: a write the test holds open, which
/// locks the user and sets a new hash as ResetUserPassword does) is refused
/// and leaves that password standing: a change made with a stolen password
/// never undoes an administrator's reset. (On SQLite the one writer orders
/// them before the check; on PostgreSQL the change checks the old password
/// and meets the reset at the user's row.)
#[tokio::test]
async fn a_password_change_that_a_reset_overtakes_is_refused_and_the_reset_stands() {
    use sea_orm::TransactionTrait;
    let app = TestApp::spawn().await;
    let (jane, id) = jane(&app).await;
    let token = app.user_token(&jane.id, app.tenant_id);
    let reset = app.app.writer.begin().await.expect("begin");
    assert!(castellan::store::users::lock(&reset, id).await.expect("lock"));
    let hash = castellan::domain::credentials::hash_password("set by the administrator".into())
        .await
        .expect("hash");
    castellan::store::credentials::set_password_hash(&reset, id, hash, chrono::Utc::now())
        .await
        .expect("reset the password");
    let mut auth = AuthServiceClient::new(app.channel.clone());
    let change = async move {
        let change = ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: "chosen with the old password".into(),
        };
        auth.change_password(authed(change, &token)).await
    };
    expect_code(behind(&app, reset, change).await, Code::Unauthenticated);
    app.login("jane@example.com", "set by the administrator")
        .await
        .expect("the reset's password stands");
    expect_code(
        app.login("jane@example.com", "chosen with the old password").await,
        Code::Unauthenticated,
    );
}

/// An invitation accepted while its user is being deactivated (a write the
/// test holds open) goes by the user once it holds its row: NOT_FOUND, and
/// the user stays INACTIVE. (On SQLite the one writer already orders them;
/// on PostgreSQL the acceptance read the user PENDING before it waited.)
#[tokio::test]
async fn an_invitation_accepted_while_its_user_is_deactivated_is_not_found() {
    use castellan::{domain::users::STATUS_INACTIVE, store::entity::user};
    use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait, sea_query::Expr};
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let invited = app.create_users(vec![draft("leaving@example.com")]).await.remove(0);
    let token = invitation_token(&sink.wait_for(1).await[0]);
    let id: uuid::Uuid = invited.id.parse().expect("uuid");
    let deactivation = app.app.writer.begin().await.expect("begin");
    user::Entity::update_many()
        .col_expr(user::Column::Status, Expr::value(STATUS_INACTIVE))
        .filter(user::Column::Id.eq(id))
        .exec(&deactivation)
        .await
        .expect("deactivate");
    expect_code(
        behind(&app, deactivation, accept_invitation(&app, token)).await,
        Code::NotFound,
    );
    assert_eq!(
        stored_status(&app, id).await,
        STATUS_INACTIVE,
        "the deactivation stands"
    );
    expect_code(app.login("leaving@example.com", PASSWORD).await, Code::Unauthenticated);
}

/// An invitation withdrawn while its acceptance hashes or waits for the
/// user's row (here: a new e-mail the test holds open, written as
/// UpdateUser writes it: the user locked, its e-mail changed, its
/// invitations withdrawn) is NOT_FOUND once the change commits, and the
/// user stays PENDING: the old address's link takes over no account.
#[tokio::test]
async fn an_invitation_withdrawn_while_it_is_accepted_is_not_found() {
    use castellan::{
        domain::{now, users::STATUS_PENDING},
        store::{self, entity::user},
    };
    use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait, sea_query::Expr};
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let invited = app.create_users(vec![draft("typo@exampel.com")]).await.remove(0);
    let old_token = invitation_token(&sink.wait_for(1).await[0]);
    let id: uuid::Uuid = invited.id.parse().expect("uuid");
    let change = app.app.writer.begin().await.expect("begin");
    assert!(store::users::lock(&change, id).await.expect("lock"));
    user::Entity::update_many()
        .col_expr(user::Column::Email, Expr::value("right@example.com"))
        .col_expr(user::Column::Username, Expr::value("right@example.com"))
        .filter(user::Column::Id.eq(id))
        .exec(&change)
        .await
        .expect("new e-mail");
    store::credentials::withdraw_invitations(&change, id, now())
        .await
        .expect("withdraw");
    expect_code(
        behind(&app, change, accept_invitation(&app, old_token)).await,
        Code::NotFound,
    );
    assert_eq!(
        stored_status(&app, id).await,
        STATUS_PENDING,
        "the old link set no password"
    );
    expect_code(app.login("right@example.com", PASSWORD).await, Code::Unauthenticated);
}

/// An invitation accepted while its tenant is being suspended (a write the
/// test holds open) goes by the tenant once the acceptance holds its row:
/// NOT_FOUND, and the user stays PENDING (the suspension was checked only
/// before the password was hashed).
#[tokio::test]
async fn an_invitation_accepted_while_its_tenant_is_suspended_is_not_found() {
    use castellan::{
        domain::{tenants::STATUS_SUSPENDED, users::STATUS_PENDING},
        store::entity::tenant,
    };
    use sea_orm::{ColumnTrait, QueryFilter, TransactionTrait, sea_query::Expr};
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let frozen = app.create_tenant("frozen").await;
    let invited = app
        .create_users_in(frozen, vec![draft("invited@example.com")])
        .await
        .remove(0);
    let token = invitation_token(&sink.wait_for(1).await[0]);
    let suspension = app.app.writer.begin().await.expect("begin");
    tenant::Entity::update_many()
        .col_expr(tenant::Column::Status, Expr::value(STATUS_SUSPENDED))
        .filter(tenant::Column::Id.eq(frozen))
        .exec(&suspension)
        .await
        .expect("suspend");
    expect_code(
        behind(&app, suspension, accept_invitation(&app, token)).await,
        Code::NotFound,
    );
    let id: uuid::Uuid = invited.id.parse().expect("uuid");
    assert_eq!(
        stored_status(&app, id).await,
        STATUS_PENDING,
        "the suspended tenant admitted no one"
    );
}

/// A PENDING user removed from the tenant its invitation names (it stays in
/// another) can no longer use that invitation: the page and
/// AcceptInvitation answer as for an unknown token, and the user stays
/// PENDING until it accepts the fresh invitation, to the tenant it stays
/// in, that the removal mailed. The removal ended the invitation; one left open all the same
/// (its membership row deleted directly, as nothing ended invitations
/// before) is refused too, since its user is no member of its tenant.
#[tokio::test]
async fn an_invitation_to_a_tenant_the_user_left_is_not_found() {
    use castellan::{
        domain::{invitations::token_hash, now, users::STATUS_PENDING},
        store::{
            self,
            entity::{tenant_membership, user},
        },
    };
    use sea_orm::{ColumnTrait, QueryFilter};
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let second = app.create_tenant("second").await.to_string();
    let in_both = |email: &str| UserDraft {
        tenant_ids: vec![app.tenant_id.to_string(), second.clone()],
        ..draft(email)
    };
    let global = app.global_token(&["*"]);
    let created = app
        .users()
        .create_users(authed(
            pb::CreateUsersRequest {
                users: vec![in_both("left@example.com"), in_both("stale@example.com")],
                request_id: String::new(),
            },
            &global,
        ))
        .await
        .expect("create users")
        .into_inner()
        .users;
    let mails = sink.wait_for(2).await;
    let token_of = |email: &str| invitation_token(mails.iter().find(|m| m.contains(email)).expect("a mail"));
    let page = |token: String| {
        let url = format!("http://{}/invitations/accept?token={token}", app.http_addr);
        async move { reqwest::get(url).await.expect("get").status().as_u16() }
    };
    let accept = |token: String| {
        let mut auth = AuthServiceClient::new(app.channel.clone());
        async move {
            auth.accept_invitation(Request::new(AcceptInvitationRequest {
                token,
                password: PASSWORD.into(),
                first_name: None,
                last_name: None,
            }))
            .await
        }
    };
    let status_of = |id: uuid::Uuid| {
        let db = app.app.db.clone();
        async move {
            user::Entity::find_by_id(id)
                .one(&db)
                .await
                .expect("read")
                .expect("the user")
                .status
        }
    };

    let (left, left_token) = (&created[0], token_of("left@example.com"));
    assert_eq!(
        page(left_token.clone()).await,
        200,
        "the invitation names the default tenant"
    );
    app.users()
        .update_user_tenants(authed_in(
            pb::UpdateUserTenantsRequest {
                id: left.id.clone(),
                remove_tenant_ids: vec![app.tenant_id.to_string()],
                ..Default::default()
            },
            &global,
            &second,
        ))
        .await
        .expect("leave the default tenant");
    let open = store::credentials::open_invitation(&app.app.db, &token_hash(&left_token), now())
        .await
        .expect("read");
    assert!(open.is_none(), "leaving the tenant ended its invitation");
    assert_eq!(page(left_token.clone()).await, 404);
    expect_code(accept(left_token.clone()).await, Code::NotFound);
    let left_id: uuid::Uuid = left.id.parse().expect("uuid");
    assert_eq!(status_of(left_id).await, STATUS_PENDING);
    // A fresh invitation, to the tenant it stays in, takes the ended one's
    // place: without it the user could never set its password.
    let mails = sink.wait_for(3).await;
    let fresh = invitation_token(&mails[2]);
    assert!(
        mails[2].contains("left@example.com") && fresh != left_token,
        "{}",
        mails[2]
    );
    let reinvited = store::credentials::open_invitation(&app.app.db, &token_hash(&fresh), now())
        .await
        .expect("read")
        .expect("open");
    assert_eq!(reinvited.tenant_id.to_string(), second);
    accept(fresh).await.expect("the fresh invitation admits it");
    assert_ne!(status_of(left_id).await, STATUS_PENDING);

    let stale_id: uuid::Uuid = created[1].id.parse().expect("uuid");
    tenant_membership::Entity::delete_many()
        .filter(tenant_membership::Column::UserId.eq(stale_id))
        .filter(tenant_membership::Column::TenantId.eq(app.tenant_id))
        .exec(&app.app.db)
        .await
        .expect("leave without ending the invitation");
    let stale_token = token_of("stale@example.com");
    assert_eq!(page(stale_token.clone()).await, 404);
    expect_code(accept(stale_token).await, Code::NotFound);
    assert_eq!(status_of(stale_id).await, STATUS_PENDING);
}

/// Sets a tenant's status with a global token.
pub async fn set_tenant_status(app: &TestApp, slug: &str, status: pb::TenantStatus) {
    app.tenants()
        .update_tenant(authed(
            pb::UpdateTenantRequest {
                id: slug.into(),
                status: status as i32,
                ..Default::default()
            },
            &app.global_token(&["*"]),
        ))
        .await
        .expect("tenant status");
}

/// An invitation from a SUSPENDED tenant is NOT_FOUND, as an unknown one
/// (a disabled Keycloak realm refuses its e-mailed links), and works again
/// once the tenant is ACTIVE.
#[tokio::test]
async fn a_suspended_tenants_invitations_wait_for_it() {
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    let frozen = app.create_tenant("frozen").await;
    app.create_users_in(frozen, vec![draft("invited@example.com")]).await;
    let token = invitation_token(&sink.wait_for(1).await[0]);
    let mut auth = AuthServiceClient::new(app.channel.clone());
    let accept = || {
        Request::new(AcceptInvitationRequest {
            token: token.clone(),
            password: PASSWORD.into(),
            ..Default::default()
        })
    };
    set_tenant_status(&app, "frozen", pb::TenantStatus::Suspended).await;
    expect_code(auth.accept_invitation(accept()).await, Code::NotFound);
    set_tenant_status(&app, "frozen", pb::TenantStatus::Active).await;
    auth.accept_invitation(accept()).await.expect("accepted once active");
}

/// Idle throttling counters are forgotten on their own schedule, once a
/// login failure window, not on the mail outbox's: with the outbox polled
/// once an hour, a failed login's counters still go within a few windows.
#[tokio::test]
async fn idle_throttling_counters_are_forgotten_while_the_outbox_sleeps() {
    let app = TestApp::spawn_with(&[
        "--login-failure-window",
        "300ms",
        "--login-max-lockout",
        "300ms",
        "--outbox-interval",
        "1h",
    ])
    .await;
    expect_code(app.login("nobody@example.com", PASSWORD).await, Code::Unauthenticated);
    assert_eq!(throttling_keys(&app).await.len(), 2, "the user's and the address's");
    let started = Instant::now();
    while !throttling_keys(&app).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never forgotten: {:?}",
            throttling_keys(&app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A login that verified a hash made with older parameters (this server's
/// until 2026-12-06: m = 19 MiB, t = 2) stores a fresh one with today's, of
/// the same password.
#[tokio::test]
async fn a_login_stores_a_fresh_hash_for_one_made_with_older_parameters() {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version, password_hash::SaltString};
    let app = TestApp::spawn().await;
    let (_, id) = jane(&app).await;
    let params = Params::new(19 * 1024, 2, 1, None).expect("params");
    let salt = SaltString::encode_b64(b"sixteen byte slt").expect("salt");
    let older = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes(), &salt)
        .expect("hash")
        .to_string();
    castellan::store::credentials::set_password_hash(&app.app.db, id, older.clone(), chrono::Utc::now())
        .await
        .expect("store the older hash");
    assert!(castellan::domain::credentials::is_outdated(&older));

    app.login("jane@example.com", PASSWORD).await.expect("login");
    let stored = castellan::store::credentials::credential_of(&app.app.db, id)
        .await
        .expect("read")
        .expect("a credential")
        .password_hash;
    assert!(stored.contains("m=7168,t=5,p=1"), "{stored}");
    assert!(!castellan::domain::credentials::is_outdated(&stored));
    app.login("jane@example.com", PASSWORD)
        .await
        .expect("the same password");
}
