//! The pages a person meets (accepting an invitation, changing a password):
//! their headers and refusals over plain HTTP, and the flows in a real
//! headless Chromium driven over WebDriver, with a screenshot of each page
//! saved under the target directory's `screenshots/`.
//!
//! The browser tests need `chromium` and `chromedriver` (Debian:
//! `apt-get install chromium chromium-driver`). Without them they print a
//! notice and pass, unless `CI` is set, where they fail.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::LazyLock,
    time::Duration,
};

use castellan::pb::UserDraft;
use fantoccini::{Client, Locator, wd::Capabilities};
use reqwest::{StatusCode, header};
use sea_orm::EntityTrait;
use tonic::Code;

use crate::{
    helpers::{LogCapture, TestApp, draft, expect_code},
    smtp_sink::{SmtpSink, invitation_token},
};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "staple battery horse";

fn temporary_user(email: &str) -> UserDraft {
    UserDraft {
        email: email.into(),
        password: PASSWORD.into(),
        temporary_password: true,
        ..Default::default()
    }
}

/// The invitation token waiting in the outbox (the log mailer's way).
async fn outbox_token(app: &TestApp) -> String {
    let outbox = castellan::store::entity::mail_outbox::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    invitation_token(&outbox.last().expect("an invitation mail").body)
}

async fn tenant_name(app: &TestApp) -> String {
    castellan::store::tenants::resolve(&app.app.db, &app.tenant_id.to_string())
        .await
        .expect("query")
        .expect("the default tenant")
        .name
}

/// Posts a form the way a same-origin browser page does.
async fn post_form(app: &TestApp, path: &str, fields: &[(&str, &str)], site: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{}{path}", app.http_addr))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", site)
        .body(serde_urlencoded::to_string(fields).expect("encode"))
        .send()
        .await
        .expect("post")
}

#[track_caller]
fn assert_page_headers(response: &reqwest::Response) {
    let headers = response.headers();
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ascii");
    for directive in [
        "default-src 'none'",
        "style-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("script-src"), "no script at all: {csp}");
    // Not `no-referrer`, under which the page's own post carries
    // `Origin: null`, which the cross-site check refuses.
    assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let app = TestApp::spawn_with(&["--outbox-interval", "1h"]).await;
    app.create_users(vec![draft("headers@example.com")]).await;
    let token = outbox_token(&app).await;
    let base = format!("http://{}", app.http_addr);
    for (path, status, content_type) in [
        (format!("/invitations/accept?token={token}"), 200, "text/html"),
        ("/invitations/accept?token=forged".to_owned(), 404, "text/html"),
        ("/invitations/accept".to_owned(), 404, "text/html"),
        ("/password/change".to_owned(), 200, "text/html"),
        ("/static/castellan.css".to_owned(), 200, "text/css"),
    ] {
        let response = reqwest::get(format!("{base}{path}")).await.expect("get");
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_page_headers(&response);
        let got = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(got.starts_with(content_type), "{path}: {got}");
        let body = response.text().await.expect("body");
        if content_type == "text/html" {
            assert!(body.starts_with("<!DOCTYPE html>") && body.contains(r#"<html lang="en">"#));
            assert!(
                !body.contains("<script") && !body.contains("style="),
                "no inline script or style"
            );
        }
    }
    // The posts' answers carry them too, refusals included.
    for (path, site) in [
        ("/password/change", "same-origin"),
        ("/invitations/accept", "cross-site"),
    ] {
        let response = post_form(&app, path, &[("username", "nobody@example.com")], site).await;
        assert!(response.status().is_client_error(), "{path}");
        assert_page_headers(&response);
    }
    // A method a page does not have: a page saying so, with Allow.
    let response = reqwest::Client::new()
        .delete(format!("{base}/password/change"))
        .send()
        .await
        .expect("delete");
    assert_eq!(response.status().as_u16(), 405);
    assert_page_headers(&response);
    let allow = response.headers()[header::ALLOW].to_str().expect("ascii").to_owned();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let body = response.text().await.expect("body");
    assert!(body.starts_with("<!DOCTYPE html>") && body.contains("Not available this way"));
}

#[tokio::test]
async fn cross_site_and_oversized_posts_are_refused_and_change_nothing() {
    let app = TestApp::spawn_with(&["--public-url", "https://id.example.com"]).await;
    app.create_users(vec![temporary_user("target@example.com")]).await;
    let change = [
        ("username", "target@example.com"),
        ("current_password", PASSWORD),
        ("new_password", NEW_PASSWORD),
        ("new_password_confirmation", NEW_PASSWORD),
    ];
    let url = format!("http://{}/password/change", app.http_addr);
    let body = serde_urlencoded::to_string(change).expect("encode");
    let send = |headers: &[(&str, &str)]| {
        let mut request = reqwest::Client::new()
            .post(&url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    for headers in [
        &[("sec-fetch-site", "cross-site")][..],
        &[("sec-fetch-site", "same-site")],
        &[("origin", "https://evil.example")],
        &[("origin", "null")],
    ] {
        let response = send(headers).await.expect("post");
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{headers:?}");
        assert!(!response.text().await.expect("body").contains("<form"));
    }
    let big = "x".repeat(64 * 1024);
    let response = post_form(&app, "/password/change", &[("username", &big)], "same-origin").await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    app.login("target@example.com", PASSWORD)
        .await
        .expect("the password is unchanged");

    // The configured public origin (behind a proxy) is this site.
    let response = send(&[("origin", "https://id.example.com"), ("x-request-id", "page-change")])
        .await
        .expect("post");
    assert_eq!(response.status(), StatusCode::OK);
    app.login("target@example.com", NEW_PASSWORD)
        .await
        .expect("changed from the public origin");
    // Its audit event carries the page's request id, as an RPC's does.
    let events = castellan::store::entity::audit_event::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query");
    let changed: Vec<&str> = events
        .iter()
        .filter(|e| e.request_id == "page-change")
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(changed, ["identity.v1.AuthService/ChangePassword"]);
}

/// A username with a control character (a NUL, which PostgreSQL refuses in
/// text) is no account's: the page answers it as an unknown user, without
/// counting it or looking it up.
/// The longest passwords the policy allows, in 4-byte characters, fit the
/// password page's form (current, new and confirmation percent-encoded are
/// 36 KiB; the form's limit was 32 KiB, sized for two).
#[tokio::test]
async fn the_longest_passwords_fit_the_password_form() {
    let app = TestApp::spawn().await;
    let longest =
        |c: char| std::iter::repeat_n(c, castellan::domain::credentials::MAX_PASSWORD_CHARS).collect::<String>();
    let (current, new) = (longest('😀'), longest('🔑'));
    app.create_users(vec![UserDraft {
        email: "long@example.com".into(),
        password: current.clone(),
        ..Default::default()
    }])
    .await;
    let response = post_form(
        &app,
        "/password/change",
        &[
            ("username", "long@example.com"),
            ("current_password", &current),
            ("new_password", &new),
            ("new_password_confirmation", &new),
        ],
        "same-origin",
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.login("long@example.com", &new)
        .await
        .expect("the new password works");
}

#[tokio::test]
async fn a_control_character_in_the_username_is_wrong_credentials() {
    let app = TestApp::spawn().await;
    for username in ["a\0b@example.com", "nobody@example.com\u{1}"] {
        let response = post_form(
            &app,
            "/password/change",
            &[
                ("username", username),
                ("current_password", "wrong wrong wrong"),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirmation", NEW_PASSWORD),
            ],
            "same-origin",
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{username:?}");
        let body = response.text().await.expect("body");
        assert!(
            body.contains("The username or the current password is wrong."),
            "{username:?}: {body}"
        );
    }
    assert_eq!(
        crate::credentials::throttling_keys(&app).await,
        Vec::<String>::new(),
        "nothing counted"
    );
}

#[tokio::test]
async fn a_wrong_current_password_counts_like_a_failed_login() {
    let app = TestApp::spawn_with(&["--login-max-failures", "2"]).await;
    app.create_users(vec![temporary_user("guessed@example.com")]).await;
    let attempt = |current: &'static str| {
        let app = &app;
        async move {
            post_form(
                app,
                "/password/change",
                &[
                    ("username", "guessed@example.com"),
                    ("current_password", current),
                    ("new_password", NEW_PASSWORD),
                    ("new_password_confirmation", NEW_PASSWORD),
                ],
                "same-origin",
            )
            .await
        }
    };
    let unknown = post_form(
        &app,
        "/password/change",
        &[
            ("username", "nobody@example.com"),
            ("current_password", "wrong wrong wrong"),
            ("new_password", NEW_PASSWORD),
            ("new_password_confirmation", NEW_PASSWORD),
        ],
        "same-origin",
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let unknown = unknown.text().await.expect("body");
    for _ in 0..2 {
        let wrong = attempt("wrong wrong wrong").await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let wrong = wrong.text().await.expect("body");
        assert!(wrong.contains("The username or the current password is wrong."));
        assert_eq!(
            wrong.replace("guessed@example.com", "nobody@example.com"),
            unknown,
            "an unknown user and a wrong password answer alike"
        );
    }
    // The page's failures locked the account for the gRPC login too, and the
    // right password waits as well.
    let locked = attempt(PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(locked.headers().contains_key(header::RETRY_AFTER));
    assert!(locked.text().await.expect("body").contains("Too many attempts"));
    expect_code(
        app.login("guessed@example.com", PASSWORD).await,
        Code::ResourceExhausted,
    );
}

/// Everything any thread logs, down to TRACE, while a person accepts an
/// invitation and changes a password on the pages: never the token, never a
/// password.
#[tokio::test]
async fn the_pages_log_no_token_and_no_password() {
    let capture = LogCapture::start().await;
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &[]).await;
    app.create_users(vec![draft("quiet@example.com")]).await;
    let token = invitation_token(&sink.wait_for(1).await[0]);
    let page = reqwest::get(format!("http://{}/invitations/accept?token={token}", app.http_addr))
        .await
        .expect("get");
    assert_eq!(page.status(), StatusCode::OK);
    for password in ["short", PASSWORD] {
        post_form(
            &app,
            "/invitations/accept",
            &[
                ("token", &token),
                ("password", password),
                ("password_confirmation", password),
            ],
            "same-origin",
        )
        .await;
    }
    for current in ["wrong wrong wrong", PASSWORD] {
        post_form(
            &app,
            "/password/change",
            &[
                ("username", "quiet@example.com"),
                ("current_password", current),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirmation", NEW_PASSWORD),
            ],
            "same-origin",
        )
        .await;
    }
    app.login("quiet@example.com", NEW_PASSWORD)
        .await
        .expect("both forms went through");
    let logs = capture.text();
    // Other tests' servers log too; this one names its own data directory
    // (where it generated its signing key).
    let own_directory = app.data_dir().display().to_string();
    assert!(
        logs.contains(&own_directory),
        "this server's own logs are captured: {logs}"
    );
    for secret in [token.as_str(), PASSWORD, NEW_PASSWORD, "wrong wrong wrong"] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
}

/// A headless Chromium under a chromedriver this test started, in a process
/// group of their own; both end with it.
struct Browser {
    client: Client,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        end_process_group(&mut self.driver);
    }
}

/// Kills chromedriver and every Chromium process it started (killing
/// chromedriver alone leaves its browser running).
fn end_process_group(driver: &mut Child) {
    if let Ok(group) = i32::try_from(driver.id()) {
        // SAFETY: kill(2) on the process group this test created; no memory involved.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    let _ = driver.wait();
}

/// One browser at a time: the machines that run these tests are small.
static BROWSER_SLOT: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| tokio::sync::Semaphore::new(1));

fn find_program(name: &str, env: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

impl Browser {
    /// Starts chromedriver on a free port and a headless session; `None`
    /// (after a loud notice) when chromedriver is not installed, outside CI.
    async fn start() -> Option<Self> {
        let Some(chromedriver) = find_program("chromedriver", "CHROMEDRIVER") else {
            let help = "chromedriver not found: install it with \
                        `apt-get install -y chromium chromium-driver` (or set CHROMEDRIVER)";
            if std::env::var_os("CI").is_some() {
                panic!("{help}");
            }
            eprintln!("\n*** SKIPPING BROWSER TEST: {help} ***\n");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let mut chrome_options = serde_json::json!({
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1024,900",
            ],
        });
        if let Some(chromium) = find_program("chromium", "CHROMIUM") {
            chrome_options["binary"] = chromium.display().to_string().into();
        }
        let mut capabilities = Capabilities::new();
        capabilities.insert("goog:chromeOptions".into(), chrome_options);
        let url = format!("http://127.0.0.1:{port}");
        let mut browser = None;
        let mut last_error = String::new();
        let mut driver = Some(driver);
        for _ in 0..100 {
            match Client::with_capabilities_and_connector(
                &url,
                &capabilities,
                hyper_util::client::legacy::connect::HttpConnector::new(),
            )
            .await
            {
                Ok(client) => {
                    browser = Some(Browser {
                        client,
                        driver: driver.take().expect("started once"),
                    });
                    break;
                }
                Err(e) => {
                    last_error = e.to_string();
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        if let Some(mut driver) = driver {
            end_process_group(&mut driver);
            panic!("no WebDriver session from chromedriver: {last_error}");
        }
        browser
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .expect("text")
    }

    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .attr(name)
            .await
            .expect("attribute")
    }

    async fn value(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    async fn has_form(&self) -> bool {
        !self
            .client
            .find_all(Locator::Css("form"))
            .await
            .expect("find")
            .is_empty()
    }

    /// Replaces a field's text as a person types it.
    async fn fill(&self, css: &str, text: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    /// Submits the form and waits until the answer replaced the page (a
    /// click may return before the navigation it starts has finished).
    async fn submit(&self) {
        let page = self.client.find(Locator::Css("html")).await.expect("the page");
        self.client
            .find(Locator::Css("button[type=submit]"))
            .await
            .expect("a submit button")
            .click()
            .await
            .expect("click");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        // The old document's element goes stale once the answer is loaded.
        while page.tag_name().await.is_ok() {
            assert!(std::time::Instant::now() < deadline, "the form's answer never loaded");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client
            .wait()
            .for_element(Locator::Css("body"))
            .await
            .expect("the answer's body");
    }

    /// Saves a screenshot of the page as `screenshots/<name>.png` in the
    /// target directory.
    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .map(|target| target.join("screenshots"))
            .expect("the target directory");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

#[tokio::test]
async fn an_invited_person_sets_up_the_account_in_a_browser() {
    let _slot = BROWSER_SLOT.acquire().await.expect("slot");
    let Some(browser) = Browser::start().await else {
        return;
    };
    let sink = SmtpSink::start(0).await;
    let app = TestApp::spawn_mailing_to(&sink, "100ms", &["--public-url", "http://127.0.0.1:1"]).await;
    app.create_users(vec![UserDraft {
        first_name: "Ada".into(),
        last_name: "Byron".into(),
        ..draft("ada@example.com")
    }])
    .await;
    let mail = sink.wait_for(1).await.remove(0);
    // The mail's link names the public URL; the browser opens it on the test server.
    let token = invitation_token(&mail);
    let unfolded = mail.replace("=\n", "").replace("=3D", "=");
    assert!(
        unfolded.contains(&format!("http://127.0.0.1:1/invitations/accept?token={token}")),
        "{mail}"
    );
    let link = format!("http://{}/invitations/accept?token={token}", app.http_addr);

    browser.goto(&link).await;
    assert_eq!(browser.text("h1").await, "Set up your account");
    assert!(browser.text("dl.invitation").await.contains("ada@example.com"));
    assert!(browser.text("dl.invitation").await.contains(&tenant_name(&app).await));
    assert_eq!(browser.value("#first_name").await, "Ada");
    assert_eq!(browser.value("#last_name").await, "Byron");
    assert!(browser.text("#password-hint").await.contains("At least 8 characters"));
    browser.screenshot("invitation-form").await;
    browser.client.set_window_size(390, 844).await.expect("phone size");
    let width = browser
        .client
        .find(Locator::Css("#password"))
        .await
        .expect("password")
        .rectangle()
        .await
        .expect("rectangle")
        .2;
    assert!((300.0..=390.0).contains(&width), "fields fit a phone: {width}");
    browser.screenshot("invitation-phone").await;
    browser.client.set_window_size(1024, 900).await.expect("desktop size");

    // A weak password: the form again, the error next to the field, names kept.
    browser.fill("#first_name", "Augusta Ada").await;
    browser.fill("#last_name", "King").await;
    browser.fill("#password", "short").await;
    browser.fill("#password_confirmation", "short").await;
    browser.submit().await;
    assert_eq!(browser.text("h1").await, "Set up your account");
    assert!(
        browser
            .text("#password-error")
            .await
            .contains("Password must be at least 8 characters")
    );
    assert_eq!(browser.attr("#password", "aria-invalid").await.as_deref(), Some("true"));
    let described_by = browser.attr("#password", "aria-describedby").await.unwrap_or_default();
    assert!(
        described_by.split(' ').any(|id| id == "password-error"),
        "{described_by}"
    );
    assert!(browser.text(".error-summary").await.contains("at least 8 characters"));
    assert_eq!(browser.value("#first_name").await, "Augusta Ada");
    assert_eq!(browser.value("#last_name").await, "King");
    assert_eq!(browser.value("#password").await, "", "a password is never sent back");
    browser.screenshot("invitation-error").await;

    // Mismatched confirmation, then the real thing.
    browser.fill("#password", PASSWORD).await;
    browser.fill("#password_confirmation", "something else").await;
    browser.submit().await;
    assert!(
        browser
            .text("#password_confirmation-error")
            .await
            .contains("does not match")
    );
    browser.fill("#password", PASSWORD).await;
    browser.fill("#password_confirmation", PASSWORD).await;
    browser.submit().await;
    assert_eq!(browser.text("h1").await, "Your account is ready");
    assert!(!browser.has_form().await);
    browser.screenshot("invitation-ready").await;

    let grant = app.login("ada@example.com", PASSWORD).await.expect("login over gRPC");
    assert!(!grant.password_change_required);
    let user = app
        .users()
        .get_user(crate::helpers::authed(
            castellan::pb::GetUserRequest {
                id: app.app.keys.verify(&grant.access_token).expect("verifies").sub,
            },
            &app.token(&["users:read"]),
        ))
        .await
        .expect("get user")
        .into_inner();
    assert_eq!(
        (user.first_name.as_str(), user.last_name.as_str()),
        ("Augusta Ada", "King")
    );

    // The used link shows no form.
    browser.goto(&link).await;
    assert_eq!(browser.text("h1").await, "This link is no longer valid");
    assert!(!browser.has_form().await);
    browser.screenshot("invitation-invalid").await;
}

#[tokio::test]
async fn expired_and_forged_links_show_no_form() {
    let _slot = BROWSER_SLOT.acquire().await.expect("slot");
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn_with(&["--invitation-ttl", "1s", "--outbox-interval", "1h"]).await;
    app.create_users(vec![draft("late@example.com")]).await;
    let token = outbox_token(&app).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let base = format!("http://{}/invitations/accept", app.http_addr);
    for url in [
        format!("{base}?token={token}"),
        format!("{base}?token=forged-token"),
        base.clone(),
    ] {
        browser.goto(&url).await;
        assert_eq!(browser.text("h1").await, "This link is no longer valid", "{url}");
        assert!(!browser.has_form().await, "{url}");
        let page = browser.client.source().await.expect("source");
        assert!(!page.contains("late@example.com"), "nothing about the user");
    }
    // Posting the expired token changes nothing either.
    let response = post_form(
        &app,
        "/invitations/accept",
        &[
            ("token", &token),
            ("password", PASSWORD),
            ("password_confirmation", PASSWORD),
        ],
        "same-origin",
    )
    .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    expect_code(app.login("late@example.com", PASSWORD).await, Code::Unauthenticated);
}

#[tokio::test]
async fn a_person_with_a_temporary_password_changes_it_in_a_browser() {
    let _slot = BROWSER_SLOT.acquire().await.expect("slot");
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = TestApp::spawn().await;
    app.create_users(vec![temporary_user("temp@example.com")]).await;
    assert!(
        app.login("temp@example.com", PASSWORD)
            .await
            .expect("login")
            .password_change_required
    );
    let url = format!("http://{}/password/change", app.http_addr);
    browser.goto(&url).await;
    assert_eq!(browser.text("h1").await, "Change your password");
    // The fields in this order, and the tab order follows them.
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for input in browser
            .client
            .find_all(Locator::Css("form input"))
            .await
            .expect("inputs")
        {
            ids.push(input.attr("id").await.expect("id").unwrap_or_default());
        }
        ids
    };
    assert_eq!(
        ids,
        [
            "username",
            "current_password",
            "new_password",
            "new_password_confirmation"
        ]
    );
    for id in &ids {
        let label = browser.text(&format!("label[for={id}]")).await;
        assert!(!label.is_empty(), "{id} has a label");
    }
    assert!(
        browser
            .client
            .find_all(Locator::Css("[tabindex]"))
            .await
            .expect("find")
            .is_empty()
    );
    browser.screenshot("password-form").await;

    browser.fill("#username", "temp@example.com").await;
    browser.fill("#current_password", PASSWORD).await;
    browser.fill("#new_password", NEW_PASSWORD).await;
    browser.fill("#new_password_confirmation", NEW_PASSWORD).await;
    browser.submit().await;
    assert_eq!(browser.text("h1").await, "Your password is changed");
    assert!(!browser.has_form().await);
    browser.screenshot("password-changed").await;
    let grant = app.login("temp@example.com", NEW_PASSWORD).await.expect("login");
    assert!(!grant.password_change_required, "no change required any more");

    // The same form posted from another site (a page with no origin) is refused.
    let forged = format!(
        "data:text/html,<form method=post action='{url}'>\
         <input name=username value=temp@example.com>\
         <input name=current_password value='{NEW_PASSWORD}'>\
         <input name=new_password value='hijacked password'>\
         <input name=new_password_confirmation value='hijacked password'>\
         <button type=submit>go</button></form>"
    );
    browser.goto(&forged.replace(' ', "%20")).await;
    browser.submit().await;
    assert_eq!(browser.text("h1").await, "Form refused");
    app.login("temp@example.com", NEW_PASSWORD)
        .await
        .expect("the password is still the person's");
}

/// The password page refuses a user whose every tenant is SUSPENDED as it
/// refuses a wrong password, and changes nothing until a tenant of its is
/// ACTIVE again.
#[tokio::test]
async fn a_suspended_tenants_user_changes_no_password_on_the_page() {
    use castellan::pb::TenantStatus;
    let app = TestApp::spawn().await;
    let frozen = app.create_tenant("frozen").await;
    app.create_users_in(
        frozen,
        vec![UserDraft {
            temporary_password: false,
            ..temporary_user("member@example.com")
        }],
    )
    .await;
    let change = || {
        post_form(
            &app,
            "/password/change",
            &[
                ("username", "member@example.com"),
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirmation", NEW_PASSWORD),
            ],
            "same-origin",
        )
    };
    crate::credentials::set_tenant_status(&app, "frozen", TenantStatus::Suspended).await;
    let refused = change().await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(
        refused
            .text()
            .await
            .expect("body")
            .contains("The username or the current password is wrong.")
    );
    crate::credentials::set_tenant_status(&app, "frozen", TenantStatus::Active).await;
    assert_eq!(change().await.status(), StatusCode::OK);
    app.login("member@example.com", NEW_PASSWORD)
        .await
        .expect("the new password");
}
