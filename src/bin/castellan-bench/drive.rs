//! Drives loads over the connections for a fixed time and records every
//! call's latency in an HDR histogram.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

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
    /// The CPU seconds of the hashing threads alone (argon2id).
    pub hashing_cpu_seconds: f64,
    pub rss_mb: f64,
    pub rss_peak_mb: f64,
}

impl ServerUsage {
    /// The usage of two windows of one load: CPU summed, RSS the later
    /// sample's, the peak the higher one.
    pub fn add(&mut self, later: ServerUsage) {
        self.cpu_seconds += later.cpu_seconds;
        self.hashing_cpu_seconds += later.hashing_cpu_seconds;
        self.rss_mb = later.rss_mb;
        self.rss_peak_mb = self.rss_peak_mb.max(later.rss_peak_mb);
    }
}

/// What one load recorded, over one measured window or several.
pub struct Recorded {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
    seconds: f64,
}

impl Recorded {
    pub fn new() -> Self {
        Self {
            histogram: histogram(),
            errors: 0,
            first_error: None,
            seconds: 0.0,
        }
    }

    /// Adds another window's calls (and its measured time).
    pub fn add(&mut self, other: Recorded) {
        let _ = self.histogram.add(&other.histogram);
        self.errors += other.errors;
        self.seconds += other.seconds;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn requests_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.histogram.len() as f64 / self.seconds
        } else {
            0.0
        }
    }

    pub fn result(self, load: &Load) -> LoadResult {
        let h = &self.histogram;
        let ms = |micros: u64| micros as f64 / 1000.0;
        LoadResult {
            label: load.label.clone(),
            streams: load.streams,
            requests: h.len(),
            errors: self.errors,
            requests_per_second: self.requests_per_second(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            first_error: self.first_error,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // Microseconds, 1 µs to 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Runs every load at once for `warmup + duration`; only calls that start
/// after the warm-up count.
pub async fn record(
    channels: &[Channel],
    loads: &[Load],
    warmup: Duration,
    duration: Duration,
    server: Option<&ServerProcess>,
) -> (Vec<Recorded>, Option<ServerUsage>) {
    let started = Instant::now();
    let measure_from = started + warmup;
    let deadline = measure_from + duration;
    let mut handles = Vec::new();
    for (load_index, load) in loads.iter().enumerate() {
        for stream in 0..load.streams {
            let channel = channels[(stream + load_index) % channels.len()].clone();
            let call = load.call.clone();
            let expect = load.expect;
            let next_seq = load.next_seq.clone();
            // A paced stream's schedule: every `interval`, staggered.
            let interval = load
                .rate
                .map(|rate| Duration::from_secs_f64(load.streams as f64 / rate));
            let mut next_start =
                started + interval.map_or(Duration::ZERO, |i| i.mul_f64(stream as f64 / load.streams as f64));
            handles.push((
                load_index,
                tokio::spawn(async move {
                    let mut result = Recorded::new();
                    // When the stream's previous call ended (paced streams).
                    let mut previous_end = started;
                    loop {
                        let begin = match interval {
                            Some(interval) => {
                                tokio::time::sleep_until(next_start.into()).await;
                                let scheduled = next_start;
                                next_start += interval;
                                paced_start(scheduled, previous_end, Instant::now())
                            }
                            None => Instant::now(),
                        };
                        if begin >= deadline {
                            break;
                        }
                        let outcome = call(channel.clone(), next_seq.fetch_add(1, Ordering::Relaxed)).await;
                        previous_end = Instant::now();
                        if begin < measure_from {
                            continue;
                        }
                        let micros = begin.elapsed().as_micros().max(1) as u64;
                        let code = match &outcome {
                            Ok(()) => tonic::Code::Ok,
                            Err(status) => status.code(),
                        };
                        // Only the calls answered as expected are timed and
                        // counted: a quick refusal would flatter both.
                        if code == expect {
                            let _ = result.histogram.record(micros.min(result.histogram.high()));
                        } else {
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

    let seconds = duration.as_secs_f64();
    let mut recorded: Vec<Recorded> = loads
        .iter()
        .map(|_| Recorded {
            seconds,
            ..Recorded::new()
        })
        .collect();
    for (index, handle) in handles {
        match handle.await {
            Ok(stream) => recorded[index].add(stream),
            // A stream that panicked lost its calls: they count as failed.
            Err(error) => {
                let load = &mut recorded[index];
                load.errors += 1;
                load.first_error
                    .get_or_insert_with(|| format!("a stream task failed: {error}"));
            }
        }
    }
    (recorded, usage)
}

/// When a paced call's latency starts. A call held up by its stream's
/// previous one counts from its scheduled start (no coordinated omission);
/// any other from `now`, when it is sent: the timer's own lateness (tokio's
/// has a resolution of a millisecond) is not the server's.
fn paced_start(scheduled: Instant, previous_end: Instant, now: Instant) -> Instant {
    if previous_end > scheduled { scheduled } else { now }
}

/// The name the server gives its hashing threads (`castellan-hash-<n>`).
const HASHING_THREADS: &str = "castellan-hash-";

/// Samples the server's CPU time and RSS over the measured window.
async fn sample(server: &ServerProcess, from: Instant, until: Instant) -> ServerUsage {
    tokio::time::sleep_until(from.into()).await;
    let cpu_start = server.cpu_seconds();
    let hashing_start = server.threads_cpu_seconds(HASHING_THREADS);
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
    let hashing_end = server.threads_cpu_seconds(HASHING_THREADS);
    let used = |start: Option<f64>, end: Option<f64>| match (start, end) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    ServerUsage {
        cpu_seconds: used(cpu_start, cpu_end),
        hashing_cpu_seconds: used(hashing_start, hashing_end),
        rss_mb: rss,
        rss_peak_mb: peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_call_counts_from_its_schedule_only_when_held_up() {
        let scheduled = Instant::now();
        let late_timer = scheduled + Duration::from_micros(900);
        // The previous call ended in time: the timer's lateness is not counted.
        assert_eq!(
            paced_start(scheduled, scheduled - Duration::from_millis(3), late_timer),
            late_timer
        );
        // The previous call was still running at the scheduled start.
        assert_eq!(
            paced_start(
                scheduled,
                scheduled + Duration::from_millis(5),
                late_timer + Duration::from_millis(5)
            ),
            scheduled
        );
    }
}
