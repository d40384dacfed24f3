//! Drives loads over the connections for a fixed time and records every
//! call's latency in an HDR histogram.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;
use tonic::transport::Channel;

use crate::{process::ServerProcess, scenarios::Load};

/// One load's figures.
#[derive(Debug, Clone, Serialize)]
pub struct LoadResult {
    pub label: String,
    pub streams: usize,
    pub requests: u64,
    pub errors: u64,
    /// The first unexpected answer, to tell what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The server's use of resources while the loads ran (a server the bench
/// started only).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ServerUsage {
    pub cpu_seconds: f64,
    pub rss_mb: f64,
    pub rss_peak_mb: f64,
}

struct StreamResult {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Runs every load at once for `warmup + duration`; only calls that start
/// after the warm-up count.
pub async fn run(
    channels: &[Channel],
    loads: Vec<Load>,
    warmup: Duration,
    duration: Duration,
    server: Option<&ServerProcess>,
) -> (Vec<LoadResult>, Option<ServerUsage>) {
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    let mut handles = Vec::new();
    for (load_index, load) in loads.iter().enumerate() {
        for stream in 0..load.streams {
            let channel = channels[(stream + load_index) % channels.len()].clone();
            let call = load.call.clone();
            let expect = load.expect;
            // Sequence numbers are unique across the load's streams and
            // interleaved, so streams pick different accounts and targets.
            let stride = load.streams as u64;
            let mut seq = stream as u64;
            // A paced stream's schedule: every `interval`, staggered.
            let interval = load
                .rate
                .map(|rate| Duration::from_secs_f64(load.streams as f64 / rate));
            let mut next_start =
                started + interval.map_or(Duration::ZERO, |i| i.mul_f64(stream as f64 / stride as f64));
            handles.push((
                load_index,
                tokio::spawn(async move {
                    let mut result = StreamResult {
                        histogram: histogram(),
                        errors: 0,
                        first_error: None,
                    };
                    loop {
                        let begin = match interval {
                            Some(interval) => {
                                tokio::time::sleep_until(next_start.into()).await;
                                let scheduled = next_start;
                                next_start += interval;
                                scheduled
                            }
                            None => Instant::now(),
                        };
                        if begin >= deadline {
                            break;
                        }
                        let outcome = call(channel.clone(), seq).await;
                        seq += stride;
                        if begin < measure_from {
                            continue;
                        }
                        let micros = begin.elapsed().as_micros().max(1) as u64;
                        let _ = result.histogram.record(micros.min(result.histogram.high()));
                        let code = match &outcome {
                            Ok(()) => tonic::Code::Ok,
                            Err(status) => status.code(),
                        };
                        if code != expect {
                            result.errors += 1;
                            if result.first_error.is_none() {
                                result.first_error = Some(match outcome {
                                    Ok(()) => format!("OK where {expect:?} was expected"),
                                    Err(status) => format!("{:?}: {}", status.code(), status.message()),
                                });
                            }
                        }
                    }
                    result
                }),
            ));
        }
    }

    let usage = match server {
        Some(server) => Some(sample(server, measure_from, deadline).await),
        None => None,
    };

    let mut merged: Vec<StreamResult> = loads
        .iter()
        .map(|_| StreamResult {
            histogram: histogram(),
            errors: 0,
            first_error: None,
        })
        .collect();
    for (index, handle) in handles {
        if let Ok(result) = handle.await {
            let target = &mut merged[index];
            let _ = target.histogram.add(&result.histogram);
            target.errors += result.errors;
            if target.first_error.is_none() {
                target.first_error = result.first_error;
            }
        }
    }
    let seconds = duration.as_secs_f64();
    let ms = |micros: u64| micros as f64 / 1000.0;
    let results = loads
        .iter()
        .zip(merged)
        .map(|(load, result)| {
            let h = &result.histogram;
            LoadResult {
                label: load.label.clone(),
                streams: load.streams,
                requests: h.len(),
                errors: result.errors,
                first_error: result.first_error,
                requests_per_second: h.len() as f64 / seconds,
                p50_ms: ms(h.value_at_quantile(0.50)),
                p90_ms: ms(h.value_at_quantile(0.90)),
                p99_ms: ms(h.value_at_quantile(0.99)),
                max_ms: ms(h.max()),
            }
        })
        .collect();
    (results, usage)
}

/// Samples the server's CPU time and RSS over the measured window.
async fn sample(server: &ServerProcess, from: Instant, until: Instant) -> ServerUsage {
    tokio::time::sleep_until(from.into()).await;
    let cpu_start = server.cpu_seconds();
    let mut peak = 0.0f64;
    let mut rss = 0.0;
    loop {
        rss = server.rss_mb().unwrap_or(rss);
        peak = peak.max(rss);
        let now = Instant::now();
        if now >= until {
            break;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
    }
    let cpu_end = server.cpu_seconds();
    ServerUsage {
        cpu_seconds: match (cpu_start, cpu_end) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        },
        rss_mb: rss,
        rss_peak_mb: peak,
    }
}
