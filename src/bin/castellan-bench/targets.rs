//! The performance targets (issue 7, and `check-permission`'s of issue 11),
//! judged on one run's figures: the end of the table and `targets` in JSON.
//! A target whose figures the run did not measure (its scenarios were not
//! chosen, or `--addr` gives no server process to read) is left out. The
//! SQLite targets apply to a run on SQLite or on an unknown database, the
//! PostgreSQL one to a run on PostgreSQL. Benchmarks are not tests: an unmet
//! target is reported, never an exit code.

use serde::Serialize;

use crate::{Report, ScenarioResult, drive::LoadResult};

/// The bound a figure must keep.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    AtLeast(f64),
    AtMost(f64),
}

impl Limit {
    fn holds_for(self, measured: f64) -> bool {
        match self {
            Limit::AtLeast(bound) => measured >= bound,
            Limit::AtMost(bound) => measured <= bound,
        }
    }

    fn bound(self) -> f64 {
        match self {
            Limit::AtLeast(bound) | Limit::AtMost(bound) => bound,
        }
    }
}

/// A figure to two decimals, or to as many more (up to four) as it takes
/// not to print a figure that differs from its bound as the bound itself:
/// 0.8956 against 0.9 is "0.896", not a "0.90" that missed "≥ 0.90".
fn shown(measured: f64, bound: f64) -> String {
    (2..=4)
        .map(|decimals| (format!("{measured:.decimals$}"), format!("{bound:.decimals$}")))
        .find(|(text, bound_text)| measured == bound || text != bound_text)
        .map_or_else(|| measured.to_string(), |(text, _)| text)
}

/// One target against what this run measured.
#[derive(Debug, Serialize)]
pub struct Verdict {
    pub target: &'static str,
    pub measured: f64,
    pub unit: &'static str,
    pub limit: Limit,
    pub met: bool,
    /// Where the run differs from the target's own conditions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Verdict {
    fn new(target: &'static str, measured: f64, unit: &'static str, limit: Limit) -> Self {
        Self {
            target,
            measured,
            unit,
            limit,
            met: limit.holds_for(measured),
            note: None,
        }
    }

    fn noting(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }

    /// A figure measured over failed calls, or over none, proves nothing: a
    /// target whose loads had errors, or one that completed no call, is not
    /// met, and its note says why.
    fn over<'a>(mut self, loads: impl IntoIterator<Item = &'a LoadResult>) -> Self {
        let (mut failed, mut first, mut idle) = (0, None, None);
        for load in loads {
            failed += load.errors;
            first = first.or(load.first_error.as_deref());
            if load.requests == 0 {
                idle = idle.or(Some(load.label.as_str()));
            }
        }
        let failure = match (failed, first, idle) {
            (0, _, None) => None,
            (0, _, Some(label)) => Some(format!("{label} completed no call")),
            (failed, Some(error), _) => Some(format!("{failed} calls failed, the first with {error}")),
            (failed, None, _) => Some(format!("{failed} calls failed")),
        };
        if let Some(failure) = failure {
            self.met = false;
            self.note = Some(match self.note.take() {
                Some(note) => format!("{note}; {failure}"),
                None => failure,
            });
        }
        self
    }
}

/// The streams the targets are stated at.
const TARGET_STREAMS: usize = 64;
/// The users the `list-users` target is stated at.
const TARGET_LIST_USERS: u64 = 1_000_000;

/// The loads a scenario's ratio to health rests on: its own, the health
/// windows interleaved with them, and the opening health run.
fn with_health<'a>(report: &'a Report, scenario: &'a ScenarioResult) -> Vec<&'a LoadResult> {
    scenario
        .loads
        .iter()
        .chain(scenario.interleaved_health.as_ref())
        .chain(report.load("health"))
        .collect()
}

pub fn judge(report: &Report) -> Vec<Verdict> {
    let scenario = |name: &str| report.scenarios.iter().find(|s| s.name == name);
    let load = |label: &str| report.load(label);
    let against_health = |target: &'static str, name: &str, bound: f64| {
        scenario(name).map(|s| {
            Verdict::new(target, s.ratio_to_health, "× health", Limit::AtLeast(bound)).over(with_health(report, s))
        })
    };
    let streams_note = |load: &LoadResult| {
        (load.streams != TARGET_STREAMS).then(|| format!("at {} streams, the target at {TARGET_STREAMS}", load.streams))
    };
    let mut verdicts = Vec::new();

    if report.database == "postgres" {
        verdicts.extend(against_health("PostgreSQL: get-user ≥ 0.25 × health", "get-user", 0.25));
        return verdicts;
    }

    verdicts.extend(against_health("get-user ≥ 0.5 × health", "get-user", 0.5));
    verdicts.extend(against_health("whoami ≥ 0.5 × health", "whoami", 0.5));
    for (target, name) in [
        ("get-user p99 ≤ 2 ms at 64 streams", "get-user"),
        ("whoami p99 ≤ 2 ms at 64 streams", "whoami"),
    ] {
        if let Some(l) = load(name) {
            verdicts.push(
                Verdict::new(target, l.p99_ms, "ms", Limit::AtMost(2.0))
                    .noting(streams_note(l))
                    .over([l]),
            );
        }
    }
    verdicts.extend(against_health("check ≥ 0.9 × health", "check", 0.9));
    verdicts.extend(against_health(
        "check-permission ≥ 0.8 × health (issue 11)",
        "check-permission",
        0.8,
    ));
    // Each page's rate against the health windows beside it: the host's
    // share of the CPU moves between the two scenarios.
    if let (Some(first), Some(deep)) = (scenario("list-users"), scenario("list-users-deep-token"))
        && deep.ratio_to_health > 0.0
    {
        let users_note =
            (report.users != TARGET_LIST_USERS).then(|| format!("at {} users, the target at 1,000,000", report.users));
        verdicts.push(
            Verdict::new(
                "list-users: a page deep by page_token costs ≤ 1.5 × the first page",
                first.ratio_to_health / deep.ratio_to_health,
                "× the first page",
                Limit::AtMost(1.5),
            )
            .noting(users_note)
            .over(with_health(report, first).into_iter().chain(with_health(report, deep))),
        );
    }
    if let Some(l) = load("create-users") {
        verdicts.push(
            Verdict::new(
                "create-users, 100 a batch: p50 ≤ 20 ms",
                l.p50_ms,
                "ms",
                Limit::AtMost(20.0),
            )
            .over([l]),
        );
    }
    if let Some(l) = load("login") {
        // What the hashes cost during the flood itself, beside the timed
        // hash the target divides by.
        let hashing_note = scenario("login")
            .and_then(|s| s.server)
            .filter(|server| server.hashing_cpu_seconds > 0.0 && l.requests > 0)
            .map(|server| {
                format!(
                    "hashing threads {:.2} cores, {:.1} ms CPU a login",
                    server.hashing_cpu_seconds / report.duration_seconds,
                    server.hashing_cpu_seconds * 1000.0 / l.requests as f64
                )
            });
        verdicts.push(
            Verdict::new(
                "login ≥ 0.8 × cores ÷ one argon2id hash time",
                l.requests_per_second,
                "logins/s",
                Limit::AtLeast(report.login_target_per_second),
            )
            .noting(hashing_note)
            .over([l]),
        );
    }
    if let (Some(alone), Some(flooded)) = (load("get-user-probe"), load("login/get-user-probe"))
        && alone.p99_ms > 0.0
    {
        verdicts.push(
            Verdict::new(
                "get-user p99 during a login flood ≤ 2 × without",
                flooded.p99_ms / alone.p99_ms,
                "× without",
                Limit::AtMost(2.0),
            )
            .over([alone, flooded]),
        );
    }
    if let Some(mb) = report.idle_rss_mb {
        verdicts.push(Verdict::new("idle RSS ≤ 20 MB", mb, "MB", Limit::AtMost(20.0)));
    }
    if let Some((server, l)) = scenario("get-user").and_then(|s| s.server.zip(s.loads.first())) {
        verdicts.push(
            Verdict::new(
                "RSS during get-user at 64 streams ≤ 64 MB",
                server.rss_peak_mb,
                "MB",
                Limit::AtMost(64.0),
            )
            .noting(streams_note(l))
            .over([l]),
        );
    }
    if let Some(ms) = report.start_to_serving_ms {
        verdicts.push(Verdict::new(
            "start to SERVING ≤ 100 ms on an existing database",
            ms,
            "ms",
            Limit::AtMost(100.0),
        ));
    }
    verdicts
}

/// The lines that end the table.
pub fn lines(verdicts: &[Verdict]) -> Vec<String> {
    verdicts
        .iter()
        .map(|v| {
            let bound = match v.limit {
                Limit::AtLeast(b) => format!("≥ {b:.2}"),
                Limit::AtMost(b) => format!("≤ {b:.2}"),
            };
            let note = v.note.as_ref().map(|n| format!("; {n}")).unwrap_or_default();
            format!(
                "  {:<8} {:<68} {:>9} {} ({bound}{note})",
                if v.met { "met" } else { "NOT MET" },
                v.target,
                shown(v.measured, v.limit.bound()),
                v.unit,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_figure_that_misses_its_bound_never_prints_as_the_bound() {
        assert_eq!(shown(0.8956, 0.9), "0.896");
        assert_eq!(shown(0.79951, 0.8), "0.7995");
        assert_eq!(shown(0.9, 0.9), "0.90");
        assert_eq!(shown(0.75, 0.5), "0.75");
        assert_eq!(shown(2.004, 2.0), "2.004");
    }

    #[test]
    fn a_limit_holds_at_its_bound_and_on_its_side_only() {
        assert!(Limit::AtLeast(0.5).holds_for(0.5));
        assert!(Limit::AtLeast(0.5).holds_for(0.51));
        assert!(!Limit::AtLeast(0.5).holds_for(0.49));
        assert!(Limit::AtMost(2.0).holds_for(2.0));
        assert!(!Limit::AtMost(2.0).holds_for(2.01));
    }

    fn load(errors: u64, first_error: Option<&str>) -> LoadResult {
        LoadResult {
            label: "login".into(),
            streams: 64,
            requests: 1_000,
            errors,
            first_error: first_error.map(str::to_owned),
            requests_per_second: 200.0,
            p50_ms: 1.0,
            p90_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
        }
    }

    #[test]
    fn a_figure_over_failed_calls_meets_no_target() {
        let clean = load(0, None);
        let failing = load(7, Some("ResourceExhausted: too many attempts"));
        let held = Verdict::new("login", 200.0, "logins/s", Limit::AtLeast(100.0));
        assert!(held.over([&clean]).met);

        let spoiled = Verdict::new("login", 200.0, "logins/s", Limit::AtLeast(100.0))
            .noting(Some("hashing threads 1.50 cores".into()))
            .over([&clean, &failing]);
        assert!(!spoiled.met);
        assert_eq!(
            spoiled.note.as_deref(),
            Some("hashing threads 1.50 cores; 7 calls failed, the first with ResourceExhausted: too many attempts")
        );
    }

    #[test]
    fn a_figure_over_no_calls_meets_no_target() {
        let none = LoadResult {
            requests: 0,
            p99_ms: 0.0,
            ..load(0, None)
        };
        let empty = Verdict::new("p99", none.p99_ms, "ms", Limit::AtMost(2.0)).over([&none]);
        assert!(!empty.met);
        assert_eq!(empty.note.as_deref(), Some("login completed no call"));
    }

    #[test]
    fn verdicts_serialize_with_their_limit_named() {
        let v = Verdict::new("idle RSS ≤ 20 MB", 21.0, "MB", Limit::AtMost(20.0));
        let json = serde_json::to_value(&v).expect("json");
        assert_eq!(json["limit"]["at_most"], 20.0);
        assert_eq!(json["met"], false);
        assert!(json.get("note").is_none());
    }
}
