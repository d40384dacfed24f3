//! Structured logs with tracing (human-readable text, or JSON lines when
//! asked; `RUST_LOG` filters, default `info`) and Prometheus metrics.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt::layer().json().with_current_span(true).with_writer(std::io::stderr))
            .try_init(),
        // Colours only for a person at a terminal: a log file or a log
        // collector gets plain text (and every call's span is formatted
        // without the escape codes).
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

/// Prometheus metrics: the recorder (installed once per process) and the
/// tower layer that counts and times every gRPC call.
pub mod metrics {
    use std::{
        cell::RefCell,
        collections::HashMap,
        future::Future,
        pin::Pin,
        sync::OnceLock,
        task::{Context, Poll},
        time::Instant,
    };

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
    use tower::{Layer, Service};

    /// Latency buckets (seconds): from 100 µs to 5 s.
    const BUCKETS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];

    /// The process's metrics, rendered in the Prometheus text format.
    pub fn handle() -> &'static PrometheusHandle {
        static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
        HANDLE.get_or_init(|| {
            let builder = PrometheusBuilder::new();
            let builder = match builder.set_buckets(BUCKETS) {
                Ok(with_buckets) => with_buckets,
                Err(_) => PrometheusBuilder::new(),
            };
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Only the first install wins (tests start many servers in one process).
            let _ = ::metrics::set_global_recorder(recorder);
            handle
        })
    }

    /// How often recorded histogram samples are folded into their buckets.
    const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

    /// Folds the histogram samples recorded since the last time into their
    /// buckets, every [`UPKEEP_INTERVAL`]. The recorder keeps each sample
    /// until then (a scrape of `/metrics` does the same), so without this a
    /// server nobody scrapes would grow by every call's duration.
    pub async fn keep_up() {
        let mut interval = tokio::time::interval(UPKEEP_INTERVAL);
        loop {
            interval.tick().await;
            handle().run_upkeep();
        }
    }

    /// The gRPC code of a response. Errors travel in the headers
    /// (trailers-only responses); a response without grpc-status there succeeded.
    pub fn response_code<R>(response: &http::Response<R>) -> tonic::Code {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map_or(tonic::Code::Ok, tonic::Code::from_i32)
    }

    /// Counts (`castellan_rpc_requests_total{rpc,code}`) and times
    /// (`castellan_rpc_duration_seconds{rpc}`) every gRPC call.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct RpcMetricsLayer;

    impl<S> Layer<S> for RpcMetricsLayer {
        type Service = RpcMetrics<S>;

        fn layer(&self, inner: S) -> Self::Service {
            handle();
            RpcMetrics { inner }
        }
    }

    #[derive(Debug, Clone)]
    pub struct RpcMetrics<S> {
        inner: S,
    }

    impl<S, B, R> Service<http::Request<B>> for RpcMetrics<S>
    where
        S: Service<http::Request<B>, Response = http::Response<R>> + Send,
        S::Future: Send + 'static,
    {
        type Response = S::Response;
        type Error = S::Error;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: http::Request<B>) -> Self::Future {
            let rpc = rpc_label(request.uri().path());
            let started = Instant::now();
            let future = self.inner.call(request);
            Box::pin(async move {
                let response = future.await;
                let code = match &response {
                    Ok(response) => response_code(response),
                    Err(_) => tonic::Code::Unknown,
                };
                record_call(rpc, code, started.elapsed().as_secs_f64());
                response
            })
        }
    }

    /// One RPC's series: its duration histogram and its request counter of
    /// each status code, the latter registered on the code's first call.
    struct RpcSeries {
        duration: ::metrics::Histogram,
        requests: [Option<::metrics::Counter>; CODES],
    }

    /// The number of gRPC status codes, `Ok` (0) to `Unauthenticated` (16).
    const CODES: usize = tonic::Code::Unauthenticated as usize + 1;

    thread_local! {
        /// The series each worker thread has recorded into, by RPC label:
        /// looking a series up by name in the recorder's registry (a key
        /// built, hashed and compared for each) took 2–3 % of the server's
        /// time a call.
        static SERIES: RefCell<HashMap<&'static str, RpcSeries>> = RefCell::new(HashMap::new());
    }

    fn record_call(rpc: &'static str, code: tonic::Code, seconds: f64) {
        SERIES.with_borrow_mut(|series| {
            let series = series.entry(rpc).or_insert_with(|| RpcSeries {
                duration: ::metrics::histogram!("castellan_rpc_duration_seconds", "rpc" => rpc),
                requests: Default::default(),
            });
            series.duration.record(seconds);
            series.requests[code as usize]
                .get_or_insert_with(
                    || ::metrics::counter!("castellan_rpc_requests_total", "rpc" => rpc, "code" => code_label(code)),
                )
                .increment(1);
        });
    }

    /// The served RPCs outside identity.v1.
    const OTHER_RPCS: &[&str] = &[
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];

    /// The `rpc` label of a call's path: a served RPC's name, or `unknown`
    /// for any other path, so that callers cannot mint new series (each
    /// one kept for the life of the process) by calling made-up paths.
    fn rpc_label(path: &str) -> &'static str {
        if let Some(rule) = crate::pb::rule_for(path) {
            return rule.rpc;
        }
        let name = path.strip_prefix('/').unwrap_or(path);
        OTHER_RPCS
            .iter()
            .find(|rpc| **rpc == name)
            .copied()
            .unwrap_or("unknown")
    }

    /// The `code` label: the code's name as tonic spells it (`InvalidArgument`).
    fn code_label(code: tonic::Code) -> &'static str {
        use tonic::Code::*;
        match code {
            Ok => "Ok",
            Cancelled => "Cancelled",
            Unknown => "Unknown",
            InvalidArgument => "InvalidArgument",
            DeadlineExceeded => "DeadlineExceeded",
            NotFound => "NotFound",
            AlreadyExists => "AlreadyExists",
            PermissionDenied => "PermissionDenied",
            ResourceExhausted => "ResourceExhausted",
            FailedPrecondition => "FailedPrecondition",
            Aborted => "Aborted",
            OutOfRange => "OutOfRange",
            Unimplemented => "Unimplemented",
            Internal => "Internal",
            Unavailable => "Unavailable",
            DataLoss => "DataLoss",
            Unauthenticated => "Unauthenticated",
        }
    }

    /// Counts (`castellan_http_requests_total{route,method,status}`) and
    /// times (`castellan_http_duration_seconds{route}`) every HTTP request
    /// (REST gateway and operational routes), labelled by the route pattern,
    /// never by the raw path: ids and tokens stay out of the labels.
    pub async fn track_http(
        route: Option<axum::extract::MatchedPath>,
        request: axum::extract::Request,
        next: axum::middleware::Next,
    ) -> axum::response::Response {
        let route = route.map_or_else(|| "unmatched".to_owned(), |r| r.as_str().to_owned());
        let method = request.method().as_str().to_owned();
        let started = Instant::now();
        let response = next.run(request).await;
        ::metrics::counter!(
            "castellan_http_requests_total",
            "route" => route.clone(),
            "method" => method,
            "status" => response.status().as_u16().to_string()
        )
        .increment(1);
        ::metrics::histogram!("castellan_http_duration_seconds", "route" => route)
            .record(started.elapsed().as_secs_f64());
        response
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn code_labels_are_tonic_s_names() {
            for value in 0..=16 {
                let code = tonic::Code::from_i32(value);
                assert_eq!(code_label(code), format!("{code:?}"));
            }
        }

        #[test]
        fn each_thread_s_kept_series_add_up_in_the_rendered_metrics() {
            let rpc = "test.v1.Telemetry/Count";
            handle();
            record_call(rpc, tonic::Code::NotFound, 0.0002);
            record_call(rpc, tonic::Code::NotFound, 0.0002);
            std::thread::spawn(move || {
                record_call(rpc, tonic::Code::NotFound, 0.003);
                record_call(rpc, tonic::Code::Ok, 0.003);
            })
            .join()
            .expect("recording thread");
            let text = handle().render();
            for expected in [
                r#"castellan_rpc_requests_total{rpc="test.v1.Telemetry/Count",code="NotFound"} 3"#,
                r#"castellan_rpc_requests_total{rpc="test.v1.Telemetry/Count",code="Ok"} 1"#,
                r#"castellan_rpc_duration_seconds_bucket{rpc="test.v1.Telemetry/Count",le="0.00025"} 2"#,
                r#"castellan_rpc_duration_seconds_count{rpc="test.v1.Telemetry/Count"} 4"#,
            ] {
                assert!(text.contains(expected), "{expected} missing from:\n{text}");
            }
        }

        #[test]
        fn only_served_rpcs_get_a_label_of_their_own() {
            assert_eq!(
                rpc_label("/identity.v1.UserService/GetUser"),
                "identity.v1.UserService/GetUser"
            );
            assert_eq!(rpc_label("/grpc.health.v1.Health/Check"), "grpc.health.v1.Health/Check");
            assert_eq!(rpc_label("/identity.v1.UserService/Nope"), "unknown");
            assert_eq!(rpc_label("/grpc.health.v1.Health/Nope"), "unknown");
            assert_eq!(rpc_label("/x"), "unknown");
        }
    }
}
