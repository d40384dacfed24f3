//! The servers: tonic (health, reflection v1 and v1alpha, the auth layer, the
//! identity services) and axum (liveness, readiness, JWKS), with a request id
//! on every call and graceful shutdown that drains in-flight calls.

use std::{
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::get, serve::ListenerExt};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpListener,
};
use tokio_stream::StreamExt;
use tonic::{
    server::NamedService,
    transport::server::{Connected, TcpConnectInfo, TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower_http::{
    classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::{
    app::App,
    auth::layer::AuthLayer,
    error::{Error, Result},
    grpc::{
        audit::{AuditApi, RefusalLayer},
        auth::AuthApi,
        device::DeviceApi,
        group::GroupApi,
        permission::PermissionApi,
        role::RoleApi,
        tenant::TenantApi,
        user::UserApi,
    },
    pb::{
        self, audit_service_server::AuditServiceServer, auth_service_server::AuthServiceServer,
        device_service_server::DeviceServiceServer, group_service_server::GroupServiceServer,
        permission_service_server::PermissionServiceServer, role_service_server::RoleServiceServer,
        tenant_service_server::TenantServiceServer, user_service_server::UserServiceServer,
    },
    store,
};

/// The names the health service reports, besides the overall "".
const SERVICE_NAMES: &[&str] = &[
    <TenantServiceServer<TenantApi> as NamedService>::NAME,
    <UserServiceServer<UserApi> as NamedService>::NAME,
    <RoleServiceServer<RoleApi> as NamedService>::NAME,
    <GroupServiceServer<GroupApi> as NamedService>::NAME,
    <DeviceServiceServer<DeviceApi> as NamedService>::NAME,
    <AuthServiceServer<AuthApi> as NamedService>::NAME,
    <PermissionServiceServer<PermissionApi> as NamedService>::NAME,
    <AuditServiceServer<AuditApi> as NamedService>::NAME,
];

/// A health entry that only says the process is alive and not shutting
/// down: for liveness probes, which must not restart pods during a database
/// outage (the overall "" entry follows the database, for readiness).
pub const LIVENESS_SERVICE: &str = "liveness";

/// How often the database is probed for the health status.
const HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// A built, bound, not yet running server.
pub struct Application {
    app: Arc<App>,
    grpc: TcpListener,
    http: TcpListener,
}

impl Application {
    /// Builds the app and binds both listeners (port 0 picks a free port).
    pub async fn build(app: Arc<App>) -> Result<Self> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| Error::internal(format!("binding {addr}: {e}")))
        };
        let grpc = bind(app.config.grpc_addr).await?;
        let http = bind(app.config.http_addr).await?;
        Ok(Self { app, grpc, http })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.app.config.grpc_addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.app.config.http_addr)
    }

    /// Serves until `shutdown` resolves, then reports NOT_SERVING, stops
    /// accepting, and lets in-flight calls finish within the grace period.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Self { app, grpc, http } = self;
        let (reporter, health_service) = tonic_health::server::health_reporter();
        set_health(&reporter, ServingStatus::Serving).await;
        reporter
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let probe = tokio::spawn(probe_database(app.clone(), reporter.clone()));
        let probe_abort = probe.abort_handle();
        let outbox = tokio::spawn(crate::mail::outbox::run(app.clone()));
        let listener = tokio::spawn(app.clone().listen_for_changes());
        let checkpoints = tokio::spawn(store::checkpoint_continuously(app.db.clone()));
        let metrics_upkeep = tokio::spawn(crate::telemetry::metrics::keep_up());
        let forgetting = tokio::spawn(crate::domain::auth::forget_idle_attempts_continuously(app.clone()));

        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(Error::internal)?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(Error::internal)?;

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let grace = app.config.shutdown_grace.into();
        {
            let reporter = reporter.clone();
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
                // The database probe ends first: a database that returns
                // while the calls drain must not set SERVING again.
                probe.abort();
                let _ = probe.await;
                set_health(&reporter, ServingStatus::NotServing).await;
                reporter
                    .set_service_status(LIVENESS_SERVICE, ServingStatus::NotServing)
                    .await;
                let _ = stop_tx.send(true);
            });
        }
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let grpc_server = tonic::transport::Server::builder()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new(SharedClassifier::new(caller_errors_are_answers())).make_span_with(
                    |request: &http::Request<_>| {
                        tracing::info_span!("rpc", path = %request.uri().path(), request_id = %request_id_of(request))
                    },
                ),
            )
            .layer(crate::telemetry::metrics::RpcMetricsLayer)
            .layer(RefusalLayer::new(app.clone()))
            .layer(AuthLayer::new(app.clone()))
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(TenantServiceServer::new(TenantApi { app: app.clone() }))
            .add_service(UserServiceServer::new(UserApi { app: app.clone() }))
            .add_service(RoleServiceServer::new(RoleApi { app: app.clone() }))
            .add_service(GroupServiceServer::new(GroupApi { app: app.clone() }))
            .add_service(DeviceServiceServer::new(DeviceApi { app: app.clone() }))
            .add_service(AuthServiceServer::new(AuthApi { app: app.clone() }))
            .add_service(PermissionServiceServer::new(PermissionApi { app: app.clone() }))
            .add_service(AuditServiceServer::new(AuditApi { app: app.clone() }))
            .serve_with_incoming_shutdown(
                // Without TCP_NODELAY a reply written in more than one
                // segment waits for the peer's delayed ACK (about 40 ms).
                TcpIncoming::from(grpc)
                    .with_nodelay(Some(true))
                    .map(|accepted| accepted.map(BatchedWrites::new)),
                stopped(stop_rx.clone()),
            );

        // The peer address reaches the pages' login throttling, as gRPC's does.
        let http = http.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not set TCP_NODELAY");
            }
        });
        let http_server = axum::serve(
            http,
            http_router(app.clone()).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stopped(stop_rx.clone()));
        // Everything is built: what start-up freed goes back to the system.
        crate::allocator::return_freed_memory();

        let servers = async {
            let (grpc_result, http_result) = tokio::join!(grpc_server, http_server.into_future());
            grpc_result.map_err(Error::internal)?;
            http_result.map_err(Error::internal)
        };
        tokio::pin!(servers);
        let result = tokio::select! {
            result = &mut servers => result,
            _ = async { stopped(stop_rx.clone()).await; tokio::time::sleep(grace).await } => {
                tracing::warn!("shutdown grace period over; abandoning remaining calls");
                Ok(())
            }
        };
        probe_abort.abort();
        outbox.abort();
        listener.abort();
        checkpoints.abort();
        metrics_upkeep.abort();
        forgetting.abort();
        result
    }
}

/// What the trace layer logs as a failure (at ERROR): the server's own
/// faults only. A caller's mistake or refusal (a bad field, an unknown id, a
/// missing permission, a wrong password, a rate limit) is an answer: it is
/// in the metrics and, for mutations, in the audit trail, and logging each
/// one at ERROR would let any client flood the logs.
fn caller_errors_are_answers() -> GrpcErrorsAsFailures {
    [
        GrpcCode::Cancelled,
        GrpcCode::InvalidArgument,
        GrpcCode::NotFound,
        GrpcCode::AlreadyExists,
        GrpcCode::PermissionDenied,
        GrpcCode::ResourceExhausted,
        GrpcCode::FailedPrecondition,
        GrpcCode::Aborted,
        GrpcCode::OutOfRange,
        GrpcCode::Unauthenticated,
    ]
    .into_iter()
    .fold(GrpcErrorsAsFailures::new(), GrpcErrorsAsFailures::with_success)
}

async fn set_health(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(*name, status).await;
    }
}

/// Keeps the health status in step with the database: NOT_SERVING while it
/// is unreachable, SERVING again when it returns.
async fn probe_database(app: Arc<App>, reporter: HealthReporter) {
    let mut serving = true;
    let mut interval = tokio::time::interval(HEALTH_PROBE_INTERVAL);
    loop {
        interval.tick().await;
        let reachable = store::ping(&app.db).await;
        if reachable != serving {
            serving = reachable;
            tracing::warn!(reachable, "database reachability changed");
            let status = if reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
        }
    }
}

fn http_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/metrics", get(metrics))
        .with_state(app.clone())
        .merge(crate::pages::router(app.clone()))
        .merge(crate::rest::router(app))
        // Like gRPC: every call gets an x-request-id (kept if sent), which
        // the audit trail records, the log's span of the call names (a 5xx
        // is logged there), and the response returns. The span has the path
        // without its query: the invitation page's token is never logged.
        .layer(axum::middleware::from_fn(crate::telemetry::metrics::track_http))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &http::Request<_>| {
            tracing::info_span!(
                "http",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %request_id_of(request)
            )
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The call's `x-request-id` (set by `SetRequestIdLayer` when absent).
fn request_id_of<B>(request: &http::Request<B>) -> &str {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

async fn ready(State(app): State<Arc<App>>) -> (StatusCode, &'static str) {
    if store::ping(&app.db).await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}

/// Prometheus text: the RPC counters and histograms, login failures and
/// lockouts, plus gauges read now (database pool, mail outbox backlog).
async fn metrics(State(app): State<Arc<App>>) -> String {
    let (size, idle) = store::pool_stats(&app.db);
    ::metrics::gauge!("castellan_db_pool_connections", "state" => "in_use").set(size.saturating_sub(idle) as f64);
    ::metrics::gauge!("castellan_db_pool_connections", "state" => "idle").set(idle as f64);
    if let Ok(backlog) = store::outbox::backlog(&app.db).await {
        ::metrics::gauge!("castellan_mail_outbox_backlog").set(backlog as f64);
    }
    crate::telemetry::metrics::handle().render()
}

async fn jwks(State(app): State<Arc<App>>) -> Json<serde_json::Value> {
    Json(app.keys.jwks())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// A gRPC connection whose replies leave in as few writes as possible.
///
/// h2 writes a connection's frames when its task runs, and each reply wakes
/// that task. Left alone, the task runs right after the first reply of a
/// batch (tokio runs a woken task next) and writes it alone: one system call
/// and one wake-up of the client for every reply. So the first write of each
/// flush yields once, letting the other calls that are ready finish first;
/// their replies then leave in the same write. And the stream does not
/// advertise vectored writes, so h2 copies a DATA frame of less than 1 KiB
/// into its write buffer (the limit is 256 bytes with vectored writes) instead
/// of flushing before the next frame: most replies fit. Measured in
/// docs/benchmarks-log.md ("Replies that leave together").
struct BatchedWrites {
    stream: tokio::net::TcpStream,
    /// Whether this flush has already let the other ready tasks run.
    yielded: bool,
}

impl BatchedWrites {
    fn new(stream: tokio::net::TcpStream) -> Self {
        Self { stream, yielded: false }
    }
}

impl Connected for BatchedWrites {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for BatchedWrites {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for BatchedWrites {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if !self.yielded {
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.yielded = false;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tower_http::classify::{ClassifiedResponse, ClassifyResponse};

    use super::*;

    fn is_failure(code: i32) -> bool {
        let response = http::Response::builder()
            .header("grpc-status", code.to_string())
            .body(())
            .expect("a response");
        match caller_errors_are_answers().classify_response(&response) {
            ClassifiedResponse::Ready(result) => result.is_err(),
            ClassifiedResponse::RequiresEos(_) => panic!("a trailers-only answer is classified at once"),
        }
    }

    #[tokio::test]
    async fn batched_writes_yield_once_a_flush_and_are_not_vectored() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        use tokio::io::AsyncReadExt;

        struct CountingWaker(AtomicUsize);
        impl std::task::Wake for CountingWaker {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut peer = tokio::net::TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        let mut stream = BatchedWrites::new(accepted);
        assert!(!stream.is_write_vectored(), "h2 must copy small frames into its buffer");

        let wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = std::task::Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let write =
            |stream: &mut BatchedWrites, cx: &mut Context<'_>, bytes: &[u8]| Pin::new(stream).poll_write(cx, bytes);

        // The first write of a flush lets the other ready tasks run first.
        assert!(write(&mut stream, &mut cx, b"first").is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task is woken again at once");
        assert!(matches!(write(&mut stream, &mut cx, b"first"), Poll::Ready(Ok(5))));
        assert!(matches!(write(&mut stream, &mut cx, b" more"), Poll::Ready(Ok(5))));
        assert!(Pin::new(&mut stream).poll_flush(&mut cx).is_ready());
        // The next flush yields again, once.
        assert!(write(&mut stream, &mut cx, b" again").is_pending());
        assert!(matches!(write(&mut stream, &mut cx, b" again"), Poll::Ready(Ok(6))));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);

        let mut received = [0u8; 16];
        peer.read_exact(&mut received).await.expect("read");
        assert_eq!(&received, b"first more again");
    }

    #[test]
    fn only_the_servers_own_faults_are_logged_as_failures() {
        // OK, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, UNAUTHENTICATED.
        for code in [0, 3, 5, 7, 16] {
            assert!(!is_failure(code), "code {code}");
        }
        // UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(is_failure(code), "code {code}");
        }
    }
}
