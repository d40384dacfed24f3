//! The REST gateway: both seed dialects over HTTP/JSON, their errors, and the
//! OpenAPI document against the routes.

use std::collections::BTreeSet;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use castellan::pb::UserDraft;

use crate::helpers::{TestApp, draft, random_ids};

const PASSWORD: &str = "Correct-Horse-Battery-9";

struct Rest {
    client: Client,
    base: String,
}

impl Rest {
    fn new(app: &TestApp) -> Self {
        Self {
            client: Client::new(),
            base: format!("http://{}", app.http_addr),
        }
    }

    /// Sends a request; returns the status and the JSON body (Null if none).
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    async fn raw(&self, method: Method, path: &str, token: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Asserts a REST error: its status, the `{code, message, details}` shape,
/// and (for 400) the violated field.
#[track_caller]
fn expect_error(answer: (StatusCode, Value), status: StatusCode, field: Option<&str>) -> Value {
    let (got, body) = answer;
    assert_eq!(got, status, "body: {body}");
    assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
    assert!(body["details"].is_array(), "{body}");
    if let Some(field) = field {
        let fields: Vec<&str> = body["details"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "expected field {field}, got {body}");
    }
    body
}

fn create_request(user_name: &str) -> Value {
    json!({
        "firstName": "Ada",
        "lastName": "Lovelace",
        "userName": user_name,
        "password": PASSWORD,
        "temporaryPassword": false,
    })
}

#[tokio::test]
async fn seed002_users_round_trip() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin = app.token(&["users:*"]);
    let admin = Some(admin.as_str());

    let (status, user) = rest
        .call(
            Method::POST,
            "/auth/users",
            admin,
            Some(create_request("ada@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let locator = user["locator"].as_str().expect("locator").to_owned();
    assert_eq!(user["userName"], "ada@example.com");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["firstName"], "Ada");
    assert_eq!(user["tenants"], json!([app.tenant_id.to_string()]));
    assert!(user["permissions"].is_array() && user["roles"].is_array());

    let (status, fetched) = rest
        .call(Method::GET, &format!("/auth/users/{locator}"), admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(fetched["locator"], locator.as_str());

    // whoami with the user's own token, and self-read without users:read.
    let own = app.user_token(&locator, app.tenant_id);
    let (status, me) = rest.call(Method::GET, "/auth/users/whoami", Some(&own), None).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["locator"], locator.as_str());
    let (status, _) = rest
        .call(Method::GET, &format!("/auth/users/{locator}"), Some(&own), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, found) = rest
        .call(Method::GET, "/auth/users/username/ada@example.com", admin, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["locator"], locator.as_str());
    let (status, none) = rest
        .call(Method::GET, "/auth/users/username/nobody@example.com", admin, None)
        .await;
    assert_eq!((status, none), (StatusCode::OK, json!([])));

    let (status, updated) = rest
        .call(
            Method::PATCH,
            &format!("/auth/users/{locator}"),
            admin,
            Some(json!({"firstName": "Augusta", "permissions": ["users:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["firstName"], "Augusta");
    assert_eq!(updated["lastName"], "Lovelace", "absent fields are kept");
    assert_eq!(updated["permissions"], json!(["users:read"]));

    let (status, body) = rest
        .call(
            Method::PATCH,
            &format!("/auth/users/{locator}/passwordreset"),
            admin,
            Some(json!("Another-Long-Secret-42")),
        )
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    // The body is the password itself, so a weak one names the body.
    expect_error(
        rest.call(
            Method::PATCH,
            &format!("/auth/users/{locator}/passwordreset"),
            admin,
            Some(json!("short")),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("body"),
    );

    let other = app.create_tenant("acme").await;
    let global = app.global_token(&["users:*"]);
    let (status, moved) = rest
        .call(
            Method::PATCH,
            &format!("/auth/users/{locator}/tenants"),
            Some(&global),
            Some(json!({"addTenants": ["acme"], "removeTenants": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    assert_eq!(moved["tenants"].as_array().map(Vec::len), Some(2));
    assert!(
        moved["tenants"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| t == &json!(other.to_string()))
    );

    let (status, body) = rest
        .call(Method::DELETE, &format!("/auth/users/{locator}"), Some(&global), None)
        .await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    let answer = rest
        .call(Method::GET, &format!("/auth/users/{locator}"), admin, None)
        .await;
    expect_error(answer, StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn seed002_lists_page_with_offset_and_count() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    app.create_users((0..5).map(|i| draft(&format!("l{i}@example.com"))).collect())
        .await;
    let token = app.token(&["users:list"]);
    let token = Some(token.as_str());

    let (status, page) = rest
        .call(Method::GET, "/auth/users/list?offset=0&count=2", token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["listCompleted"], false);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    let first = &page["items"][0];
    assert_eq!(first["tenants"], json!([app.tenant_id.to_string()]), "{first}");
    assert!(first["roles"].is_array() && first["permissions"].is_array(), "{first}");

    // Not extended: the seed's optional roles and permissions are left out,
    // its required tenants are there (not an empty list).
    let (status, page) = rest
        .call(Method::GET, "/auth/users/list?extended=false&count=100", token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(5), "{page}");
    for user in page["items"].as_array().into_iter().flatten() {
        assert_eq!(user["tenants"], json!([app.tenant_id.to_string()]), "{user}");
        assert!(
            user.get("roles").is_none() && user.get("permissions").is_none(),
            "{user}"
        );
        assert!(user["locator"].is_string() && user["userName"].is_string(), "{user}");
    }

    let (status, page) = rest
        .call(Method::GET, "/auth/users/list?offset=4&count=2", token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["listCompleted"], true);

    let (status, page) = rest
        .call(Method::GET, "/auth/users/basic/list?count=1000", token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["listCompleted"], true);
    let first = &page["items"][0];
    assert!(first["locator"].is_string() && first["userName"].is_string(), "{first}");
    assert!(first.get("tenants").is_none(), "basic users are basic: {first}");

    for (path, field) in [
        ("/auth/users/list?count=101", "count"),
        ("/auth/users/list?count=101&extended=false", "count"),
        // 0 is out of range, not "the default" (API.md's Paging).
        ("/auth/users/list?count=0", "count"),
        ("/auth/users/basic/list?count=0&offset=0", "count"),
        ("/auth/users/basic/list?count=1001", "count"),
        ("/auth/users/list?offset=-1", "offset"),
        ("/auth/users/list?count=many", "count"),
        ("/auth/users/list?extended=perhaps", "extended"),
    ] {
        let answer = rest.call(Method::GET, path, token, None).await;
        expect_error(answer, StatusCode::BAD_REQUEST, Some(field));
    }
}

#[tokio::test]
async fn seed002_errors_follow_the_table() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin = app.token(&["users:*"]);
    let admin = Some(admin.as_str());
    let (_, user) = rest
        .call(
            Method::POST,
            "/auth/users",
            admin,
            Some(create_request("grace@example.com")),
        )
        .await;
    let locator = user["locator"].as_str().expect("locator").to_owned();
    let path = format!("/auth/users/{locator}");

    let body = expect_error(
        rest.call(Method::GET, &path, None, None).await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    assert_eq!(body["code"], "TOKEN_MISSING");
    expect_error(
        rest.call(Method::GET, &path, Some("not-a-jwt"), None).await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    // Anonymous callers get 401 whatever they send.
    expect_error(
        rest.call(Method::POST, "/auth/users", None, Some(json!("garbage")))
            .await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    let reader = app.token(&["users:read"]);
    let body = expect_error(
        rest.call(Method::DELETE, &path, Some(&reader), None).await,
        StatusCode::FORBIDDEN,
        None,
    );
    assert_eq!(body["code"], "PERMISSION_MISSING");

    let other = app.create_tenant("other").await;
    let outsider = app.token_in(other, &["users:*"]);
    expect_error(
        rest.call(Method::GET, &path, Some(&outsider), None).await,
        StatusCode::NOT_FOUND,
        None,
    );

    let taken = expect_error(
        rest.call(
            Method::POST,
            "/auth/users",
            admin,
            Some(create_request("grace@example.com")),
        )
        .await,
        StatusCode::CONFLICT,
        None,
    );
    // Named as this dialect names it, not by the gRPC batch's path.
    assert_eq!(taken["message"], "email already exists", "{taken}");
    expect_error(
        rest.call(Method::GET, "/auth/users/not-a-uuid", admin, None).await,
        StatusCode::BAD_REQUEST,
        Some("locator"),
    );
    let mut missing = create_request("x@example.com");
    missing.as_object_mut().map(|o| o.remove("firstName"));
    expect_error(
        rest.call(Method::POST, "/auth/users", admin, Some(missing)).await,
        StatusCode::BAD_REQUEST,
        Some("firstName"),
    );
    let mut wrong_type = create_request("y@example.com");
    wrong_type["temporaryPassword"] = json!("yes");
    expect_error(
        rest.call(Method::POST, "/auth/users", admin, Some(wrong_type)).await,
        StatusCode::BAD_REQUEST,
        Some("temporaryPassword"),
    );
    let mut bad_email = create_request("not-an-email");
    bad_email["password"] = json!(PASSWORD);
    expect_error(
        rest.call(Method::POST, "/auth/users", admin, Some(bad_email)).await,
        StatusCode::BAD_REQUEST,
        Some("email"),
    );
    let admin_token = app.token(&["users:*"]);
    expect_error(
        rest.raw(Method::POST, "/auth/users", &admin_token, "{\"firstName\": ")
            .await,
        StatusCode::BAD_REQUEST,
        Some("firstName"),
    );
    expect_error(
        rest.raw(Method::PATCH, &format!("{path}/passwordreset"), &admin_token, "{}")
            .await,
        StatusCode::BAD_REQUEST,
        Some("body"),
    );
}

fn user_draft(email: &str) -> Value {
    json!({"email": email, "firstName": "Jane", "lastName": "Smith"})
}

#[tokio::test]
async fn cipherscale_create_mirrors_the_request_shape() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin = app.token(&["users:*"]);
    let token = Some(admin.as_str());

    let (status, one) = rest
        .call(
            Method::POST,
            "/tenants/users",
            token,
            Some(user_draft("one@example.com")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    assert!(one.is_object(), "{one}");
    assert_eq!(one["status"], "pending");
    assert_eq!(one["isOwner"], false);
    assert_eq!(one["maxDevices"], Value::Null);
    for key in [
        "id",
        "createdAt",
        "updatedAt",
        "roles",
        "groups",
        "devices",
        "firstName",
    ] {
        assert!(one.get(key).is_some(), "{key} missing in {one}");
    }

    let (status, many) = rest
        .call(
            Method::POST,
            "/tenants/users",
            token,
            Some(json!([user_draft("two@example.com"), user_draft("three@example.com")])),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{many}");
    let many = many.as_array().expect("an array answers an array");
    assert_eq!(many.len(), 2);
    assert_eq!(many[1]["email"], "three@example.com", "in request order");

    let (status, single) = rest
        .call(
            Method::POST,
            "/tenants/users",
            token,
            Some(json!([user_draft("four@example.com")])),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(single.is_array(), "a one-element array is still an array");

    let too_many: Vec<Value> = (0..101).map(|i| user_draft(&format!("m{i}@example.com"))).collect();
    expect_error(
        rest.call(Method::POST, "/tenants/users", token, Some(json!(too_many)))
            .await,
        StatusCode::BAD_REQUEST,
        Some("body"),
    );
    expect_error(
        rest.call(
            Method::POST,
            "/tenants/users",
            token,
            Some(json!([user_draft("ok@example.com"), user_draft("bad")])),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("[1].email"),
    );
    expect_error(
        rest.call(
            Method::POST,
            "/tenants/users",
            token,
            Some(json!([user_draft("ok@example.com"), {"email": "x@example.com", "maxDevices": "two"}])),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("[1].maxDevices"),
    );
    expect_error(
        rest.call(Method::POST, "/tenants/users", token, Some(json!({"firstName": "No"})))
            .await,
        StatusCode::BAD_REQUEST,
        Some("email"),
    );
    let taken = expect_error(
        rest.call(
            Method::POST,
            "/tenants/users",
            token,
            Some(user_draft("one@example.com")),
        )
        .await,
        StatusCode::CONFLICT,
        None,
    );
    assert_eq!(taken["message"], "email already exists", "{taken}");
    let taken = expect_error(
        rest.call(
            Method::POST,
            "/tenants/users",
            token,
            Some(json!([user_draft("fresh@example.com"), user_draft("one@example.com")])),
        )
        .await,
        StatusCode::CONFLICT,
        None,
    );
    assert_eq!(taken["message"], "[1].email already exists", "{taken}");
    // An Idempotency-Key makes a retry return the first result.
    let mut firsts = Vec::new();
    for _ in 0..2 {
        let response = rest
            .client
            .post(format!("{}/tenants/users", rest.base))
            .bearer_auth(&admin)
            .header("idempotency-key", "batch-7")
            .json(&json!([user_draft("retry@example.com")]))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        firsts.push(body[0]["id"].clone());
    }
    assert_eq!(firsts[0], firsts[1], "the retry answers the first result");
    // A key the domain refuses (over 200 characters) is named as the header
    // it came in, not as the gRPC field the body never had.
    let response = rest
        .client
        .post(format!("{}/tenants/users", rest.base))
        .bearer_auth(&admin)
        .header("idempotency-key", "k".repeat(201))
        .json(&json!([user_draft("long-key@example.com")]))
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["details"][0]["field"], "idempotency-key", "{body}");

    // Bodies past 1 MiB are refused before decoding.
    let huge = format!("[{}]", vec!["{}"; 400_000].join(","));
    expect_error(
        rest.raw(Method::POST, "/tenants/users", &admin, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        Some("body"),
    );
}

#[tokio::test]
async fn cipherscale_lists_page_and_sort() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    app.create_users((0..5).map(|i| draft(&format!("p{i}@example.com"))).collect())
        .await;
    let token = app.token(&["users:list"]);
    let token = Some(token.as_str());

    let (status, page) = rest
        .call(Method::GET, "/tenants/users?limit=2&offset=2&sort=-email", token, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let total = page["total"].as_u64().expect("total");
    assert!(total >= 5, "{page}");
    assert_eq!(page["page"], 1);
    assert_eq!(page["limit"], 2);
    assert_eq!(page["hasNext"], true);
    assert_eq!(page["hasPrevious"], true);
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));

    let (_, sorted) = rest
        .call(
            Method::GET,
            "/tenants/users?limit=100&sort=status&sort=-email",
            token,
            None,
        )
        .await;
    let (_, comma) = rest
        .call(Method::GET, "/tenants/users?limit=100&sort=status,-email", token, None)
        .await;
    assert_eq!(sorted["data"], comma["data"], "repeated and comma-separated sort agree");
    let emails: Vec<&str> = sorted["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["status"] == "pending")
        .filter_map(|u| u["email"].as_str())
        .collect();
    let mut descending = emails.clone();
    descending.sort_by(|a, b| b.cmp(a));
    assert_eq!(emails, descending);

    let (status, first) = rest
        .call(Method::GET, "/tenants/users?offset=0&limit=1", token, None)
        .await;
    assert_eq!((status, first["limit"].clone()), (StatusCode::OK, json!(1)), "{first}");

    let (status, pending) = rest
        .call(Method::GET, "/tenants/users?status=pending", token, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(pending["total"], 5);

    // A violation a sort key, but no more details than gRPC gives (the
    // message counts the rest): the answer does not outgrow the request.
    let keys = vec!["x"; 1000].join(",");
    let (status, many) = rest
        .call(Method::GET, &format!("/tenants/users?sort={keys}"), token, None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        many["details"].as_array().map(Vec::len),
        Some(100),
        "{}",
        many["message"]
    );
    assert_eq!(many["details"][99]["field"], "sort[99]");
    assert!(
        many["message"].as_str().is_some_and(|m| m.ends_with(" more")),
        "{}",
        many["message"]
    );

    for (path, field) in [
        ("/tenants/users?sort=password", "sort[0]"),
        ("/tenants/users?limit=0x10", "limit"),
        ("/tenants/users?limit=101", "limit"),
        ("/tenants/users?limit=0", "limit"),
        ("/tenants/users?limit=0&offset=0", "limit"),
        ("/tenants/users?status=sleeping", "status"),
        ("/tenants/users?roleId=nope", "roleId"),
        ("/tenants/users?groupId=nope", "groupId"),
    ] {
        expect_error(
            rest.call(Method::GET, path, token, None).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }

    // ListUsers' role and group filters, as `roleId` and `groupId`.
    let admin = app.token(&["*"]);
    let role = crate::roles::create_role(&app, &admin, "readers", &["users:read"]).await;
    let group = crate::groups::create_group(&app, &admin, "team", &[]).await;
    let member = app
        .create_users(vec![UserDraft {
            role_ids: vec![role.id.clone()],
            group_ids: vec![group.id.clone()],
            ..draft("member@example.com")
        }])
        .await
        .remove(0);
    for filter in [format!("roleId={}", role.id), format!("groupId={}", group.id)] {
        let (status, page) = rest
            .call(Method::GET, &format!("/tenants/users?{filter}"), token, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(
            (page["total"].clone(), page["data"][0]["id"].clone()),
            (json!(1), json!(member.id)),
            "{filter}: {page}"
        );
    }
}

#[tokio::test]
async fn cipherscale_user_lifecycle_and_errors() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let token = app.token(&["users:*"]);
    let token = Some(token.as_str());
    let (_, user) = rest
        .call(
            Method::POST,
            "/tenants/users",
            token,
            Some(json!({"email": "life@example.com", "password": PASSWORD, "maxDevices": 3})),
        )
        .await;
    let id = user["id"].as_str().expect("id").to_owned();
    let path = format!("/tenants/users/{id}");
    assert_eq!(user["status"], "active");
    assert_eq!(user["maxDevices"], 3);

    let (status, fetched) = rest.call(Method::GET, &path, token, None).await;
    assert_eq!(
        (status, fetched["email"].clone()),
        (StatusCode::OK, json!("life@example.com"))
    );

    let (status, updated) = rest
        .call(
            Method::PATCH,
            &path,
            token,
            Some(json!({"firstName": "Liv", "image": "https://example.com/liv.png", "maxDevices": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["firstName"], "Liv");
    assert_eq!(updated["image"], "https://example.com/liv.png");
    assert_eq!(updated["maxDevices"], Value::Null, "null removes the limit");
    expect_error(
        rest.call(Method::PATCH, &path, token, Some(json!({"maxDevices": -1})))
            .await,
        StatusCode::BAD_REQUEST,
        Some("maxDevices"),
    );
    expect_error(
        rest.call(Method::PATCH, &path, token, Some(json!({"firstName": 7})))
            .await,
        StatusCode::BAD_REQUEST,
        Some("firstName"),
    );

    let (status, inactive) = rest
        .call(Method::POST, &format!("{path}/deactivate"), token, None)
        .await;
    assert_eq!(
        (status, inactive["status"].clone()),
        (StatusCode::OK, json!("inactive"))
    );
    let (status, active) = rest
        .call(Method::POST, &format!("{path}/reactivate"), token, None)
        .await;
    assert_eq!((status, active["status"].clone()), (StatusCode::OK, json!("active")));

    // 401, 403, 404 in another tenant, 400 naming the id.
    expect_error(
        rest.call(Method::GET, &path, None, None).await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    let reader = app.token(&["users:read"]);
    expect_error(
        rest.call(Method::POST, &format!("{path}/deactivate"), Some(&reader), None)
            .await,
        StatusCode::FORBIDDEN,
        None,
    );
    let other = app.create_tenant("elsewhere").await;
    let outsider = app.token_in(other, &["users:*"]);
    for method in [Method::GET, Method::DELETE] {
        expect_error(
            rest.call(method, &path, Some(&outsider), None).await,
            StatusCode::NOT_FOUND,
            None,
        );
    }
    expect_error(
        rest.call(Method::GET, "/tenants/users/42", token, None).await,
        StatusCode::BAD_REQUEST,
        Some("id"),
    );

    let (status, body) = rest.call(Method::DELETE, &path, token, None).await;
    assert_eq!((status, body), (StatusCode::NO_CONTENT, Value::Null));
    expect_error(
        rest.call(Method::GET, &path, token, None).await,
        StatusCode::NOT_FOUND,
        None,
    );
}

#[tokio::test]
async fn seed002_roles_and_permissions() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin = app.token(&["*"]);
    let admin = Some(admin.as_str());

    let (status, role) = rest
        .call(
            Method::POST,
            "/auth/roles",
            admin,
            Some(json!({"name": "readers", "description": "Read users", "permissions": ["users:read"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    assert_eq!(role["version"], 1);
    assert!(role["createdAt"].is_string());
    let locator = role["locator"].as_str().expect("locator").to_owned();
    let role_path = format!("/auth/roles/{locator}");

    let (status, fetched) = rest.call(Method::GET, &role_path, admin, None).await;
    assert_eq!((status, fetched["name"].clone()), (StatusCode::OK, json!("readers")));
    expect_error(
        rest.call(Method::GET, "/auth/roles/list?count=0", admin, None).await,
        StatusCode::BAD_REQUEST,
        Some("count"),
    );
    let (status, list) = rest.call(Method::GET, "/auth/roles/list?count=100", admin, None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["listCompleted"], true);
    assert!(
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["locator"] == json!(locator))
    );

    let (status, updated) = rest
        .call(
            Method::PATCH,
            &role_path,
            admin,
            Some(json!({"version": 1, "addPermissions": ["users:list"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["permissions"], json!(["users:list", "users:read"]));
    let body = expect_error(
        rest.call(
            Method::PATCH,
            &role_path,
            admin,
            Some(json!({"version": 1, "name": "x"})),
        )
        .await,
        StatusCode::CONFLICT,
        None,
    );
    assert_eq!(body["code"], "VERSION_MISMATCH");
    expect_error(
        rest.call(Method::PATCH, &role_path, admin, Some(json!({"name": "x"})))
            .await,
        StatusCode::BAD_REQUEST,
        Some("version"),
    );

    let (status, catalog) = rest.call(Method::GET, "/auth/roles/permissions", admin, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        catalog.as_array().into_iter().flatten().any(|p| p == "users:read"),
        "{catalog}"
    );

    let (_, user) = rest
        .call(
            Method::POST,
            "/auth/users",
            admin,
            Some(create_request("roled@example.com")),
        )
        .await;
    let user_locator = user["locator"].as_str().expect("locator").to_owned();
    let (status, granted) = rest
        .call(
            Method::PATCH,
            &format!("/auth/users/{user_locator}/roles"),
            admin,
            Some(json!({"addRoles": [locator], "removeRoles": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{granted}");
    assert_eq!(granted["roles"], json!([locator]));
    expect_error(
        rest.call(
            Method::PATCH,
            &format!("/auth/users/{user_locator}/roles"),
            admin,
            Some(json!({"addRoles": ["nope"]})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("addRoles[0]"),
    );
    let (status, effective) = rest
        .call(
            Method::GET,
            &format!("/auth/users/{user_locator}/permissions"),
            admin,
            None,
        )
        .await;
    assert_eq!(
        (status, effective),
        (StatusCode::OK, json!(["users:list", "users:read"]))
    );

    // A role still granted needs force.
    expect_error(
        rest.call(Method::DELETE, &role_path, admin, None).await,
        StatusCode::PRECONDITION_FAILED,
        None,
    );
    let (status, _) = rest
        .call(Method::DELETE, &format!("{role_path}?force=true"), admin, None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect_error(
        rest.call(Method::GET, &role_path, admin, None).await,
        StatusCode::NOT_FOUND,
        None,
    );

    let lister = app.token(&["users:list"]);
    expect_error(
        rest.call(
            Method::POST,
            "/auth/roles",
            Some(&lister),
            Some(json!({"name": "x", "permissions": []})),
        )
        .await,
        StatusCode::FORBIDDEN,
        None,
    );
}

#[tokio::test]
async fn cipherscale_roles_and_groups() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin_token = app.token(&["*"]);
    let admin = Some(admin_token.as_str());
    let (_, role) = rest
        .call(
            Method::POST,
            "/auth/roles",
            admin,
            Some(json!({"name": "auditors", "permissions": ["audit:read"]})),
        )
        .await;
    let role_id = role["locator"].as_str().expect("role").to_owned();
    let (_, user) = rest
        .call(
            Method::POST,
            "/tenants/users",
            admin,
            Some(user_draft("member@example.com")),
        )
        .await;
    let id = user["id"].as_str().expect("id").to_owned();

    let (status, with_role) = rest
        .call(
            Method::PATCH,
            &format!("/tenants/users/{id}/roles"),
            admin,
            Some(json!({"addedRoles": [role_id], "removedRoles": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{with_role}");
    assert_eq!(with_role["roles"][0]["id"], role_id.as_str());
    assert_eq!(with_role["roles"][0]["permissions"], json!(["audit:read"]));
    let (status, without) = rest
        .call(
            Method::PATCH,
            &format!("/tenants/users/{id}/roles"),
            admin,
            Some(json!({"addedRoles": [], "removedRoles": [role_id]})),
        )
        .await;
    assert_eq!((status, without["roles"].clone()), (StatusCode::OK, json!([])));
    expect_error(
        rest.call(
            Method::PATCH,
            &format!("/tenants/users/{id}/roles"),
            admin,
            Some(json!({"addedRoles": ["x"], "removedRoles": []})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("addedRoles[0]"),
    );

    let group = crate::groups::create_group(&app, &admin_token, "team", &[]).await;
    let (status, member) = rest
        .call(
            Method::POST,
            &format!("/tenants/users/{id}/groups"),
            admin,
            Some(json!({"groupId": group.id})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{member}");
    assert_eq!(member["groups"][0]["id"], group.id.as_str());
    expect_error(
        rest.call(
            Method::POST,
            &format!("/tenants/users/{id}/groups"),
            admin,
            Some(json!({})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("groupId"),
    );
    let membership = format!("/tenants/users/{id}/groups/{}", group.id);
    let (status, _) = rest.call(Method::DELETE, &membership, admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    expect_error(
        rest.call(Method::DELETE, &membership, admin, None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    let reader = app.token(&["users:read"]);
    expect_error(
        rest.call(Method::DELETE, &membership, Some(&reader), None).await,
        StatusCode::FORBIDDEN,
        None,
    );
}

/// The routes of API.md's REST gateway section.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/auth/users"),
    ("GET", "/auth/users/whoami"),
    ("GET", "/auth/users/username/{username}"),
    ("GET", "/auth/users/{locator}"),
    ("PATCH", "/auth/users/{locator}"),
    ("DELETE", "/auth/users/{locator}"),
    ("GET", "/auth/users/list"),
    ("GET", "/auth/users/basic/list"),
    ("PATCH", "/auth/users/{locator}/passwordreset"),
    ("PATCH", "/auth/users/{locator}/tenants"),
    ("PATCH", "/auth/users/{locator}/roles"),
    ("GET", "/auth/users/{locator}/permissions"),
    ("POST", "/auth/roles"),
    ("GET", "/auth/roles/{locator}"),
    ("PATCH", "/auth/roles/{locator}"),
    ("DELETE", "/auth/roles/{locator}"),
    ("GET", "/auth/roles/list"),
    ("GET", "/auth/roles/permissions"),
    ("GET", "/tenants/users"),
    ("POST", "/tenants/users"),
    ("GET", "/tenants/users/{id}"),
    ("PATCH", "/tenants/users/{id}"),
    ("DELETE", "/tenants/users/{id}"),
    ("POST", "/tenants/users/{id}/deactivate"),
    ("POST", "/tenants/users/{id}/reactivate"),
    ("PATCH", "/tenants/users/{id}/roles"),
    ("POST", "/tenants/users/{id}/groups"),
    ("DELETE", "/tenants/users/{id}/groups/{groupId}"),
];

fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

#[tokio::test]
async fn openapi_documents_exactly_the_routes() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let (status, document) = rest.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document,
        serde_json::to_value(castellan::rest::openapi()).expect("json"),
        "served document is the generated one"
    );
    let schemes = &document["components"]["securitySchemes"]["bearer"];
    assert_eq!(
        (schemes["type"].as_str(), schemes["scheme"].as_str()),
        (Some("http"), Some("bearer"))
    );
    for name in [
        "ErrorBody",
        "User",
        "UserResponse",
        "UserPage",
        "CreateUsers",
        "UserStatus",
    ] {
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "schema {name} missing"
        );
    }

    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(
        documented(&document),
        expected,
        "documented operations = API.md's routes"
    );

    // Every documented operation is routed, needs the token, and documents its errors.
    for (method, path) in documented(&document) {
        let operation = &document["paths"][&path][method.to_lowercase()];
        for status in ["400", "401", "403", "404", "500"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{method} {path}: no {status}"
            );
        }
        assert_eq!(
            operation["responses"].get("415").is_some(),
            operation.get("requestBody").is_some(),
            "{method} {path}: 415 exactly where there is a body"
        );
        assert!(
            operation["responses"]["401"]["headers"]
                .get("WWW-Authenticate")
                .is_some(),
            "{method} {path}: 401 without its challenge"
        );
        let concrete = path
            .replace("{locator}", "0190a0a0-0000-7000-8000-000000000000")
            .replace("{id}", "0190a0a0-0000-7000-8000-000000000000")
            .replace("{groupId}", "0190a0a0-0000-7000-8000-000000000001")
            .replace("{username}", "someone@example.com");
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = rest.call(method.clone(), &concrete, None, Some(json!({}))).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} is not routed: {body}"
        );
    }
    // And what is not documented is not routed.
    expect_error(
        rest.call(Method::GET, "/auth/users/x/unknown", None, None).await,
        StatusCode::NOT_FOUND,
        None,
    );
    let (status, _) = rest.call(Method::PUT, "/tenants/users", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A method a path does not have answers 405 in the gateway's JSON error
/// shape, with the `Allow` header, also where a fixed path
/// (`/auth/roles/permissions`) is matched before a `{locator}` one.
#[tokio::test]
async fn a_wrong_method_answers_a_json_405_with_allow() {
    let app = TestApp::spawn().await;
    let token = app.token(&["*"]);
    let client = Client::new();
    for (method, path, token, allowed) in [
        (Method::PUT, "/tenants/users", None, "POST"),
        (Method::DELETE, "/auth/roles/permissions", Some(token.as_str()), "GET"),
        (Method::POST, "/auth/users/whoami", Some(token.as_str()), "GET"),
    ] {
        let mut request = client.request(method.clone(), format!("http://{}{path}", app.http_addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let allow = response.headers()["allow"].to_str().expect("ascii").to_owned();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
        assert!(!allow.contains(method.as_str()), "{method} {path}: Allow {allow}");
        let content_type = response.headers()["content-type"].to_str().expect("ascii").to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{method} {path}: {content_type}"
        );
        let body: Value = response.json().await.expect("a JSON body");
        let body = expect_error(
            (StatusCode::METHOD_NOT_ALLOWED, body),
            StatusCode::METHOD_NOT_ALLOWED,
            None,
        );
        assert_eq!(body["code"], "RESOURCE_NOT_FOUND", "{method} {path}");
    }
}

/// A path parameter that is not UTF-8 once percent-decoded is refused as any
/// bad field is: after authentication (an anonymous caller gets 401), as a
/// JSON 400 naming the parameter by the dialect's name, and a refused
/// mutation is audited like its gRPC twin's.
#[tokio::test]
async fn an_undecodable_path_parameter_is_a_json_400_after_authentication() {
    use sea_orm::EntityTrait;

    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let token = app.token(&["*"]);
    let user = "0190a0a0-0000-7000-8000-000000000000";

    let body = expect_error(
        rest.call(Method::GET, "/tenants/users/%FF", None, None).await,
        StatusCode::UNAUTHORIZED,
        None,
    );
    assert_eq!(body["code"], "TOKEN_MISSING");
    for (method, path, field) in [
        (Method::GET, "/tenants/users/%FF".to_owned(), "id"),
        (Method::POST, "/tenants/users/%FF/deactivate".to_owned(), "id"),
        (
            Method::DELETE,
            format!("/tenants/users/{user}/groups/%C3%28"),
            "groupId",
        ),
        (Method::GET, "/auth/users/%FF".to_owned(), "locator"),
        (Method::GET, "/auth/users/username/%FF".to_owned(), "username"),
        (Method::DELETE, "/auth/roles/%FF".to_owned(), "locator"),
    ] {
        let body = expect_error(
            rest.call(method.clone(), &path, Some(&token), None).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
        assert_eq!(body["code"], "FIELD_INVALID", "{method} {path}");
    }

    let response = rest
        .client
        .patch(format!("{}/tenants/users/%FF", rest.base))
        .bearer_auth(&token)
        .header("x-request-id", "rest-bad-path")
        .json(&json!({"firstName": "X"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let events: Vec<_> = castellan::store::entity::audit_event::Entity::find()
        .all(&app.app.db)
        .await
        .expect("query")
        .into_iter()
        .filter(|e| e.request_id == "rest-bad-path")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].action.as_str(), events[0].outcome.as_str()),
        ("identity.v1.UserService/UpdateUser", "INVALID_ARGUMENT")
    );
}

/// A misspelt or unknown JSON field is refused naming it (it used to be
/// ignored: a 200 that changed nothing), in both dialects; every field the
/// seeds document still decodes.
#[tokio::test]
async fn unknown_fields_are_refused_and_the_seeds_fields_decode() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin = app.token(&["*"]);
    let admin = Some(admin.as_str());
    let tenant = app.tenant_id.to_string();

    // Cipherscale, every documented field of a create and an update.
    let (status, user) = rest
        .call(
            Method::POST,
            "/tenants/users",
            admin,
            Some(json!({
                "email": "every@example.com", "username": "every@example.com",
                "firstName": "Eve", "lastName": "Ry", "password": PASSWORD,
                "temporaryPassword": false, "roles": [], "groups": [], "tenants": [tenant],
                "maxDevices": 2, "image": "https://example.com/eve.png",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let id = user["id"].as_str().expect("id").to_owned();
    let path = format!("/tenants/users/{id}");
    let (status, updated) = rest
        .call(
            Method::PATCH,
            &path,
            admin,
            Some(
                json!({"firstName": "Eva", "lastName": "Ry", "image": "", "email": "eva@example.com", "maxDevices": 3}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let body = expect_error(
        rest.call(Method::PATCH, &path, admin, Some(json!({"firstname": "x"})))
            .await,
        StatusCode::BAD_REQUEST,
        Some("firstname"),
    );
    assert_eq!(body["code"], "FIELD_INVALID");
    let (_, unchanged) = rest.call(Method::GET, &path, admin, None).await;
    assert_eq!(unchanged["firstName"], "Eva", "the refused update changed nothing");
    for (method, path, body, field) in [
        (
            Method::POST,
            "/tenants/users".to_owned(),
            json!([user_draft("ok@example.com"), {"email": "x@example.com", "nmae": "X"}]),
            "[1].nmae",
        ),
        (
            Method::POST,
            "/tenants/users".to_owned(),
            json!({"email": "x@example.com", "status": "active"}),
            "status",
        ),
        (
            Method::PATCH,
            format!("{path}/roles"),
            json!({"addedRoles": [], "removedRoles": [], "roles": []}),
            "roles",
        ),
        (
            Method::POST,
            format!("{path}/groups"),
            json!({"groupId": "0190a0a0-0000-7000-8000-000000000001", "group": "x"}),
            "group",
        ),
    ] {
        expect_error(
            rest.call(method, &path, admin, Some(body)).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }

    // Seed 002, every documented field of its bodies.
    let mut create = create_request("every002@example.com");
    create["email"] = json!("every002@example.com");
    create["roles"] = json!([]);
    create["tenants"] = json!([tenant]);
    let (status, user) = rest.call(Method::POST, "/auth/users", admin, Some(create)).await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let locator = user["locator"].as_str().expect("locator").to_owned();
    let path = format!("/auth/users/{locator}");
    let (status, updated) = rest
        .call(
            Method::PATCH,
            &path,
            admin,
            Some(json!({
                "firstName": "Ada", "lastName": "King", "permissions": ["users:read"],
                "roles": [], "tenants": [tenant], "email": "king@example.com",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["lastName"], "King");
    let (status, role) = rest
        .call(
            Method::POST,
            "/auth/roles",
            admin,
            Some(json!({"name": "every", "description": "All fields", "permissions": ["users:read"], "global": false})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let role_path = format!("/auth/roles/{}", role["locator"].as_str().expect("locator"));
    let (status, role) = rest
        .call(
            Method::PATCH,
            &role_path,
            admin,
            Some(json!({
                "name": "every", "description": "Still all", "version": 1,
                "addPermissions": ["users:list"], "removePermissions": [],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{role}");
    for (path, body, field) in [
        (path.clone(), json!({"firstname": "x"}), "firstname"),
        (
            format!("{path}/roles"),
            json!({"addRoles": [], "removeRoles": [], "roles": []}),
            "roles",
        ),
        (
            format!("{path}/tenants"),
            json!({"addTenants": [], "removeTenants": [], "tenant": "x"}),
            "tenant",
        ),
        (role_path.clone(), json!({"version": 2, "force": true}), "force"),
    ] {
        expect_error(
            rest.call(Method::PATCH, &path, admin, Some(body)).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
    }
    expect_error(
        rest.call(
            Method::POST,
            "/auth/roles",
            admin,
            Some(json!({"name": "x", "permissions": [], "permission": []})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("permission"),
    );
    let (_, unchanged) = rest.call(Method::GET, &path, admin, None).await;
    assert_eq!(unchanged["firstName"], "Ada", "{unchanged}");
}

/// A 401 says which scheme to use (RFC 6750 §3): `Bearer`, with
/// `error="invalid_token"` when the token sent was refused; a 403 has none.
#[tokio::test]
async fn a_401_carries_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    let client = Client::new();
    let nobody = app.user_token("0190a0a0-0000-7000-8000-000000000000", app.tenant_id);
    let reader = app.token(&["users:read"]);
    for (method, path) in [
        (Method::GET, "/tenants/users"),
        (Method::PATCH, "/auth/users/0190a0a0-0000-7000-8000-000000000000"),
    ] {
        for (token, status, challenge) in [
            (None, StatusCode::UNAUTHORIZED, Some("Bearer")),
            (
                Some("not-a-jwt"),
                StatusCode::UNAUTHORIZED,
                Some(r#"Bearer error="invalid_token""#),
            ),
            (
                Some(nobody.as_str()),
                StatusCode::UNAUTHORIZED,
                Some(r#"Bearer error="invalid_token""#),
            ),
            (Some(reader.as_str()), StatusCode::FORBIDDEN, None),
        ] {
            let mut request = client
                .request(method.clone(), format!("http://{}{path}", app.http_addr))
                .json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), status, "{method} {path} {token:?}");
            let got = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().expect("ascii").to_owned());
            assert_eq!(got.as_deref(), challenge, "{method} {path} {token:?}");
        }
    }
}

/// A body is JSON by its Content-Type (`application/json` with any
/// parameters, or a `+json` type); any other is 415 in the JSON error shape,
/// after authentication, and creates nothing.
#[tokio::test]
async fn a_body_that_is_not_json_by_its_content_type_is_415() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:*"]);
    let url = format!("http://{}/tenants/users", app.http_addr);
    let body = user_draft("typed@example.com").to_string();
    let post = |content_type: Option<&str>, token: Option<&str>| {
        let mut request = Client::new().post(&url).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        (status, response.json::<Value>().await.expect("a JSON body"))
    };

    let response = post(Some("text/plain"), None).await.expect("request");
    expect_error(answer(response).await, StatusCode::UNAUTHORIZED, None);
    for content_type in [Some("text/plain"), Some("application/x-www-form-urlencoded"), None] {
        let response = post(content_type, Some(&token)).await.expect("request");
        let body = expect_error(
            answer(response).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("content-type"),
        );
        assert_eq!(body["code"], "FIELD_INVALID", "{content_type:?}");
    }
    // Nothing was created: the first JSON post creates the user.
    let response = post(Some("application/json; charset=utf-8"), Some(&token))
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let (_, user) = answer(response).await;
    let response = Client::new()
        .patch(format!("{url}/{}", user["id"].as_str().expect("id")))
        .bearer_auth(&token)
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"firstName": "Typed"}"#)
        .send()
        .await
        .expect("request");
    let (status, updated) = answer(response).await;
    assert_eq!((status, updated["firstName"].clone()), (StatusCode::OK, json!("Typed")));
}

/// Every answer of the gateway, errors included, is for no cache and for no
/// content sniffing.
#[tokio::test]
async fn gateway_answers_are_neither_cached_nor_sniffed() {
    let app = TestApp::spawn().await;
    let token = app.token(&["users:*"]);
    let client = Client::new();
    for (method, path, token, status) in [
        (Method::GET, "/tenants/users", Some(token.as_str()), StatusCode::OK),
        (Method::GET, "/auth/users/whoami", None, StatusCode::UNAUTHORIZED),
        (
            Method::GET,
            "/auth/users/not-a-uuid",
            Some(token.as_str()),
            StatusCode::BAD_REQUEST,
        ),
        (Method::GET, "/auth/users/x/unknown", None, StatusCode::NOT_FOUND),
        (Method::PUT, "/tenants/users", None, StatusCode::METHOD_NOT_ALLOWED),
        (Method::GET, "/openapi.json", None, StatusCode::OK),
    ] {
        let mut request = client.request(method.clone(), format!("http://{}{path}", app.http_addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status(), status, "{method} {path}");
        let headers = response.headers();
        assert_eq!(headers["cache-control"], "no-store", "{method} {path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{method} {path}");
    }
}

/// A REST call that fails inside the server answers 500 with nothing of the
/// cause, which goes to the log, in the call's span with its request id
/// (API.md: "details only in the server log with the request id").
#[tokio::test]
async fn an_internal_error_is_logged_with_the_request_id_and_answered_without_details() {
    use sea_orm::ConnectionTrait;

    let capture = crate::helpers::LogCapture::start().await;
    let app = TestApp::spawn().await;
    let token = app.token(&["*"]);
    app.app
        .writer
        .execute_unprepared("ALTER TABLE tenant_memberships RENAME TO tenant_memberships_gone")
        .await
        .expect("rename");
    let response = Client::new()
        .get(format!("http://{}/tenants/users", app.http_addr))
        .bearer_auth(&token)
        .header("x-request-id", "rest-500")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "rest-500");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["message"], "internal error", "{body}");
    let logged = capture.text();
    let line = logged
        .lines()
        .find(|line| line.contains("tenant_memberships") && line.contains("ERROR"))
        .unwrap_or_else(|| panic!("the cause is logged: {logged}"));
    assert!(line.contains("request_id=rest-500"), "{line}");
}

/// The gateway reaches the domain's bounds on id lists (at most 1000 each)
/// and names each dialect's field.
#[tokio::test]
async fn id_lists_over_the_bound_name_the_dialects_field() {
    let app = TestApp::spawn().await;
    let rest = Rest::new(&app);
    let admin_token = app.token(&["*"]);
    let admin = Some(admin_token.as_str());
    let ids = random_ids(1001);
    let (_, user) = rest
        .call(
            Method::POST,
            "/tenants/users",
            admin,
            Some(user_draft("bounded@example.com")),
        )
        .await;
    let id = user["id"].as_str().expect("id").to_owned();
    let (_, seed002_user) = rest
        .call(
            Method::POST,
            "/auth/users",
            admin,
            Some(create_request("bounded2@example.com")),
        )
        .await;
    let locator = seed002_user["locator"].as_str().expect("locator").to_owned();

    let mut draft = user_draft("many@example.com");
    draft["roles"] = json!(ids);
    let mut seed002_draft = create_request("many2@example.com");
    seed002_draft["roles"] = json!(ids);
    let cases = [
        (
            Method::PATCH,
            format!("/tenants/users/{id}/roles"),
            json!({"addedRoles": ids, "removedRoles": []}),
            "addedRoles",
        ),
        (
            Method::PATCH,
            format!("/tenants/users/{id}/roles"),
            json!({"addedRoles": [], "removedRoles": ids}),
            "removedRoles",
        ),
        (Method::POST, "/tenants/users".to_owned(), draft.clone(), "roles"),
        (
            Method::POST,
            "/tenants/users".to_owned(),
            json!([user_draft("first@example.com"), draft]),
            "[1].roles",
        ),
        (
            Method::PATCH,
            format!("/auth/users/{locator}/roles"),
            json!({"addRoles": ids, "removeRoles": []}),
            "addRoles",
        ),
        (
            Method::PATCH,
            format!("/auth/users/{locator}/roles"),
            json!({"addRoles": [], "removeRoles": ids}),
            "removeRoles",
        ),
        (Method::POST, "/auth/users".to_owned(), seed002_draft, "roles"),
        (
            Method::PATCH,
            format!("/auth/users/{locator}"),
            json!({"roles": ids}),
            "roles",
        ),
    ];
    for (method, path, body, field) in cases {
        let error = expect_error(
            rest.call(method, &path, admin, Some(body)).await,
            StatusCode::BAD_REQUEST,
            Some(field),
        );
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("at most 1000")),
            "{path}: {error}"
        );
    }
}
