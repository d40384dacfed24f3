//! `castellan-bench`: a load tool for Castellan. It starts the real
//! `castellan serve` binary as a child process (SQLite in a temp dir, or
//! `--database-url`) or targets a running server (`--addr`), seeds users with
//! roles and groups, drives each scenario with C connections × S concurrent
//! streams for T seconds, and prints requests/s, latency percentiles
//! (hdrhistogram), errors, the server's RSS and CPU seconds, and every
//! scenario's ratio to `health` measured in the same run. See README.md
//! ("Benchmarks") and BENCHMARKS.md.

mod drive;
mod process;
mod scenarios;
mod seed;
mod targets;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use serde::Serialize;
use tonic::transport::{Channel, Endpoint};

use crate::{
    drive::{LoadResult, ServerUsage},
    process::{ServerCommand, ServerProcess},
    scenarios::{SCENARIOS, Scenario},
};

/// Load tool for Castellan: throughput, latency and server resources per scenario.
#[derive(Debug, Parser)]
#[command(name = "castellan-bench", version, about)]
struct Args {
    /// Scenarios to run, comma-separated, or `all`. `health` always runs first (the baseline).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    scenario: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// A running server's gRPC address (`http://127.0.0.1:50051`); default: start `castellan serve`.
    #[arg(long)]
    addr: Option<String>,
    /// The `castellan` binary to start; default: the one beside this binary.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Database of the started server (default: SQLite in a temp dir). With
    /// `--addr`, the server's database: users are then seeded in bulk.
    #[arg(long)]
    database_url: Option<String>,
    /// Administrator of the server (a self-started server is bootstrapped with it).
    #[arg(long, default_value = "bench-admin@bench.example")]
    admin_email: String,
    #[arg(long, default_value = "bench admin passphrase")]
    admin_password: String,
    /// Users in the tenant (callers included). Inserted in bulk through the
    /// store when the bench reaches the database, else through CreateUsers.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    /// ACTIVE users with a password and the bench role: the callers of every
    /// authorized scenario and the accounts of `login`. The server counts a
    /// login attempt before evaluating it (at most 10 an account by
    /// default), so 64 streams over 16 accounts keep about 4 logins of one
    /// account in flight; over 8 an account now and then had 11, and one
    /// was refused.
    #[arg(long, default_value_t = 16)]
    callers: usize,
    /// HTTP/2 connections.
    #[arg(long, short = 'c', default_value_t = 2)]
    connections: usize,
    /// Concurrent streams per connection.
    #[arg(long, short = 's', default_value_t = 32)]
    streams: usize,
    /// Concurrent streams of write scenarios (create-users), in total.
    #[arg(long, default_value_t = 1)]
    write_streams: usize,
    /// Measured time of each scenario.
    #[arg(long, default_value = "5s")]
    duration: humantime::Duration,
    /// Unmeasured time before each scenario's measurement.
    #[arg(long, default_value = "1s")]
    warmup: humantime::Duration,
    /// Page size of the list scenarios.
    #[arg(long, default_value_t = 50)]
    page_size: i32,
    /// Calls a second of the get-user probe beside the login flood (and of
    /// its baseline, `get-user-probe`).
    #[arg(long, default_value_t = 1000.0, value_parser = positive_rate)]
    probe_rate: f64,
    /// Each scenario compared with health is measured in this many windows,
    /// each right after a window of health of the same length, and its
    /// ratio is to those health windows: slow drift of the machine (another
    /// tenant's load) then moves both sides alike. 0: one window, compared
    /// with the opening health run.
    #[arg(long, default_value_t = 3)]
    health_rounds: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Unmeasured time before each interleaved window after the first (the
/// connections are warm; the streams are new).
const WINDOW_WARMUP: Duration = Duration::from_millis(200);

/// One scenario's figures.
#[derive(Debug, Serialize)]
struct ScenarioResult {
    name: String,
    about: String,
    loads: Vec<LoadResult>,
    /// Requests/s of the first load ÷ requests/s of `health`: of the health
    /// windows interleaved with this scenario's when there were any, else
    /// of the opening health run.
    ratio_to_health: f64,
    /// The health windows interleaved with this scenario's, together: their
    /// requests/s is what `ratio_to_health` divides by, and their errors
    /// fail the ratio's targets.
    #[serde(skip_serializing_if = "Option::is_none")]
    interleaved_health: Option<LoadResult>,
    /// Requests/s of the first load ÷ requests/s of the opening health run.
    ratio_to_opening_health: f64,
    /// Each window's requests/s of the first load ÷ those of the health
    /// window right before it: the spread is the run's own noise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    window_ratios: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<ServerUsage>,
}

#[derive(Debug, Serialize)]
struct Report {
    connections: usize,
    streams_per_connection: usize,
    duration_seconds: f64,
    users: u64,
    database: String,
    /// Self-started server: spawn → first SERVING, on the seeded database.
    #[serde(skip_serializing_if = "Option::is_none")]
    start_to_serving_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_rss_mb: Option<f64>,
    /// One argon2id hash (the server's parameters) measured here, the
    /// fastest of five (with `login`, the mean of that right before and
    /// right after its flood), and the login target derived from it:
    /// 0.8 × cores ÷ hash time.
    argon2_hash_ms: f64,
    login_target_per_second: f64,
    scenarios: Vec<ScenarioResult>,
    /// Each target this run measured, its figure and whether it was met.
    targets: Vec<targets::Verdict>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for scenario in SCENARIOS {
            println!("{:<24} {}", scenario.name, scenario.about);
        }
        return ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("castellan-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn chosen(names: &[String]) -> Result<Vec<&'static Scenario>, String> {
    let all = names.iter().any(|n| n == "all");
    let mut picked: Vec<&'static Scenario> = vec![&SCENARIOS[0]];
    for name in names.iter().filter(|n| *n != "all") {
        if !SCENARIOS.iter().any(|s| s.name == name) {
            let known: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
            return Err(format!("unknown scenario {name:?}; known: {}", known.join(", ")));
        }
    }
    for scenario in &SCENARIOS[1..] {
        if all || names.iter().any(|n| n == scenario.name) {
            picked.push(scenario);
        }
    }
    Ok(picked)
}

fn positive_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!("{value:?} is not a positive number of calls a second")),
    }
}

async fn connect(addr: &str, count: usize) -> Result<Vec<Channel>, String> {
    let endpoint = Endpoint::from_shared(addr.to_owned())
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    let mut channels = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        // One Channel = one HTTP/2 connection.
        channels.push(
            endpoint
                .connect()
                .await
                .map_err(|e| format!("connecting to {addr}: {e}"))?,
        );
    }
    Ok(channels)
}

/// What one argon2id hash with the server's parameters costs here: the
/// fastest of five, after one on every hashing thread at once to warm them
/// up (the hashes take the threads in turn, and a thread idle for a second
/// gives its memory back: a hash on fresh memory pays its page faults, and
/// the target dividing by it would be too low). The host's noise only ever
/// adds to a hash's time (another tenant's load, or any other thread
/// preempting the idle-class hashing thread), and their mean swung from
/// 19.5 to 32.3 ms in one hour on one host, moving the login target with it.
async fn argon2_hash_ms() -> Result<f64, String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let warming: Vec<_> = (0..threads)
        .map(|_| {
            tokio::spawn(castellan::domain::credentials::hash_password(
                "warm up the hasher".into(),
            ))
        })
        .collect();
    for hash in warming {
        let _ = hash.await;
    }
    let mut fastest = f64::INFINITY;
    for _ in 0..5 {
        let started = std::time::Instant::now();
        castellan::domain::credentials::hash_password("correct horse battery".into())
            .await
            .map_err(|e| format!("argon2: {e}"))?;
        fastest = fastest.min(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(fastest)
}

async fn run(args: Args) -> Result<(), String> {
    let scenarios = chosen(&args.scenario)?;
    let run_id = format!("{:x}", uuid::Uuid::now_v7().as_u128() & 0xffff_ffff_ffff);
    let temp = TempDir::new(&run_id)?;
    let command = match &args.addr {
        Some(_) => None,
        None => {
            let binary = match &args.server_bin {
                Some(path) => path.clone(),
                None => std::env::current_exe()
                    .map_err(|e| format!("locating this binary: {e}"))?
                    .with_file_name("castellan"),
            };
            Some(ServerCommand {
                binary,
                data_dir: temp.path().join("data"),
                database_url: args.database_url.clone(),
                admin_email: args.admin_email.clone(),
                admin_password: args.admin_password.clone(),
                log_file: temp.path().join("server.log"),
            })
        }
    };
    // The database the bench can seed in bulk (none: a running server's unknown one).
    let database = match (&args.database_url, &command) {
        (Some(url), _) => Some(url.clone()),
        (None, Some(command)) => Some(format!("sqlite://{}/castellan.db?mode=rwc", command.data_dir.display())),
        (None, None) => None,
    };
    let start_timeout = Duration::from_secs(60);

    // First start: migrates and bootstraps; then seed.
    let mut server = match &command {
        Some(command) => Some(ServerProcess::start(command, start_timeout).await?),
        None => None,
    };
    let addr = match (&args.addr, &server) {
        (Some(addr), _) => addr.clone(),
        (None, Some(server)) => format!("http://{}", server.grpc_addr),
        (None, None) => return Err("no server".into()),
    };
    let setup = connect(&addr, 1).await?.remove(0);
    let admin = seed::bearer(&seed::login(&setup, &args.admin_email, &args.admin_password).await?)?;
    let seed_started = std::time::Instant::now();
    let seeded = seed::seed(
        &setup,
        &admin,
        &seed::SeedPlan {
            users: args.users,
            callers: args.callers.max(1),
            bulk_database_url: database.clone(),
            run_id: run_id.clone(),
        },
    )
    .await?;
    eprintln!(
        "seeded {} users in {:.1} s",
        args.users,
        seed_started.elapsed().as_secs_f64()
    );

    // Second start on the seeded database: time to SERVING, idle RSS.
    let (mut start_to_serving_ms, mut idle_rss_mb) = (None, None);
    if let (Some(command), Some(first)) = (&command, server.as_mut()) {
        drop(setup);
        first.stop();
        let second = ServerProcess::start(command, start_timeout).await?;
        start_to_serving_ms = Some(second.start_to_serving.as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle_rss_mb = second.rss_mb();
        server = Some(second);
    }
    let addr = match (&args.addr, &server) {
        (Some(addr), _) => addr.clone(),
        (None, Some(server)) => format!("http://{}", server.grpc_addr),
        (None, None) => return Err("no server".into()),
    };
    let channels = connect(&addr, args.connections).await?;
    let admin = seed::bearer(&seed::login(&channels[0], &args.admin_email, &args.admin_password).await?)?;
    let fixture = seed::fixture(
        &channels[0],
        &admin,
        seeded,
        seed::Shape {
            streams: args.connections.max(1) * args.streams.max(1),
            write_streams: args.write_streams.max(1),
            page_size: args.page_size,
            probe_rate: args.probe_rate,
        },
        run_id,
    )
    .await?;

    let mut argon2_ms = argon2_hash_ms().await?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let health_loads = (SCENARIOS[0].loads)(&fixture);
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut health_rps = 0.0;
    for scenario in scenarios {
        // The login target follows the host's speed at the time of the
        // flood, as ratios follow interleaved health windows: the hash is
        // timed again right before and right after the flood, and the
        // target uses their mean.
        let login = scenario.name == "login";
        let hash_before = if login { Some(argon2_hash_ms().await?) } else { None };
        let loads = (scenario.loads)(&fixture);
        let interleaved = scenario.compared_with_health && args.health_rounds > 0;
        let rounds = if interleaved { args.health_rounds } else { 1 };
        let window = Duration::from(args.duration) / rounds;
        let mut recorded: Vec<drive::Recorded> = loads.iter().map(|_| drive::Recorded::new()).collect();
        let mut health = drive::Recorded::new();
        let mut usage: Option<ServerUsage> = None;
        let mut window_ratios = Vec::new();
        for round in 0..rounds {
            let mut health_window_rps = None;
            if interleaved {
                let (mut windows, _) = drive::record(&channels, &health_loads, WINDOW_WARMUP, window, None).await;
                if let Some(window) = windows.pop() {
                    health_window_rps = Some(window.requests_per_second());
                    health.add(window);
                }
            }
            let warmup = if round == 0 { args.warmup.into() } else { WINDOW_WARMUP };
            let (windows, window_usage) = drive::record(&channels, &loads, warmup, window, server.as_ref()).await;
            if let (Some(base), Some(first)) = (health_window_rps, windows.first())
                && base > 0.0
            {
                window_ratios.push(first.requests_per_second() / base);
            }
            for (total, window) in recorded.iter_mut().zip(windows) {
                total.add(window);
            }
            if let Some(window_usage) = window_usage {
                usage.get_or_insert_with(ServerUsage::default).add(window_usage);
            }
        }
        if let Some(before) = hash_before {
            argon2_ms = (before + argon2_hash_ms().await?) / 2.0;
        }
        let loads: Vec<LoadResult> = loads.iter().zip(recorded).map(|(load, r)| r.result(load)).collect();
        let rps = loads.first().map_or(0.0, |l| l.requests_per_second);
        if scenario.name == "health" {
            health_rps = rps;
        }
        let ratio = |base: f64| if base > 0.0 { rps / base } else { 0.0 };
        let interleaved_health = interleaved
            .then(|| health_loads.first().map(|load| health.result(load)))
            .flatten();
        let result = ScenarioResult {
            name: scenario.name.to_owned(),
            about: scenario.about.to_owned(),
            ratio_to_health: ratio(
                interleaved_health
                    .as_ref()
                    .map_or(health_rps, |health| health.requests_per_second),
            ),
            interleaved_health,
            ratio_to_opening_health: ratio(health_rps),
            window_ratios,
            loads,
            server: usage,
        };
        if !args.json {
            eprintln!("{}", row_lines(&result).join("\n"));
        }
        results.push(result);
    }

    let mut report = Report {
        connections: args.connections,
        streams_per_connection: args.streams,
        duration_seconds: Duration::from(args.duration).as_secs_f64(),
        users: args.users,
        database: match &database {
            Some(url) if url.starts_with("postgres") => "postgres".into(),
            Some(_) => "sqlite".into(),
            None => "unknown".into(),
        },
        start_to_serving_ms,
        idle_rss_mb,
        argon2_hash_ms: argon2_ms,
        login_target_per_second: 0.8 * cores / (argon2_ms / 1000.0),
        scenarios: results,
        targets: Vec::new(),
    };
    report.targets = targets::judge(&report);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| format!("JSON: {e}"))?
        );
    } else {
        print_table(&report);
    }
    Ok(())
}

impl Report {
    /// The load of this label, in whichever scenario ran it.
    fn load(&self, label: &str) -> Option<&LoadResult> {
        self.scenarios
            .iter()
            .flat_map(|result| &result.loads)
            .find(|load| load.label == label)
    }
}

/// A directory removed when the run ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(run_id: &str) -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("castellan-bench-{run_id}"));
        std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HEADER: &str = "scenario                    streams    req/s  ratio   p50 ms   p90 ms   p99 ms   max ms  errors  cpu s  rss MB  health/s";

fn row_lines(result: &ScenarioResult) -> Vec<String> {
    result
        .loads
        .iter()
        .enumerate()
        .map(|(i, load)| {
            let health = match (i, &result.interleaved_health) {
                (0, Some(health)) => format!("{:>9.0}", health.requests_per_second),
                (0, None) => format!("{:>9}", "-"),
                _ => String::new(),
            };
            let (ratio, cpu, rss) = match (i, &result.server) {
                (0, Some(server)) => (
                    format!("{:5.2}", result.ratio_to_health),
                    format!("{:6.2}", server.cpu_seconds),
                    format!("{:7.1}", server.rss_peak_mb),
                ),
                (0, None) => (
                    format!("{:5.2}", result.ratio_to_health),
                    "     -".into(),
                    "      -".into(),
                ),
                _ => ("    -".into(), String::new(), String::new()),
            };
            format!(
                "{:<26} {:>7} {:>8.0}  {ratio} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7} {cpu} {rss} {health}",
                load.label,
                load.streams,
                load.requests_per_second,
                load.p50_ms,
                load.p90_ms,
                load.p99_ms,
                load.max_ms,
                load.errors,
            )
        })
        .collect()
}

fn print_table(report: &Report) {
    println!(
        "castellan-bench: {} users, {} database, {} connections × {} streams, {} s a scenario",
        report.users, report.database, report.connections, report.streams_per_connection, report.duration_seconds
    );
    if let Some(ms) = report.start_to_serving_ms {
        println!("start to SERVING: {ms:.1} ms");
    }
    if let Some(mb) = report.idle_rss_mb {
        println!("idle RSS: {mb:.1} MB");
    }
    println!(
        "argon2id hash: {:.1} ms → login target {:.0}/s (0.8 × cores ÷ hash time)",
        report.argon2_hash_ms, report.login_target_per_second
    );
    println!("{HEADER}");
    for result in &report.scenarios {
        for line in row_lines(result) {
            println!("{line}");
        }
    }
    let spreads: Vec<String> = report
        .scenarios
        .iter()
        .filter(|result| !result.window_ratios.is_empty())
        .map(|result| {
            let ratios: Vec<String> = result.window_ratios.iter().map(|r| format!("{r:.2}")).collect();
            format!("{} {}", result.name, ratios.join("/"))
        })
        .collect();
    if !spreads.is_empty() {
        println!(
            "ratio by window (÷ the health window before it): {}",
            spreads.join(", ")
        );
    }
    if !report.targets.is_empty() {
        println!("targets ({} database, this run):", report.database);
        for line in targets::lines(&report.targets) {
            println!("{line}");
        }
    }
    for result in &report.scenarios {
        for load in &result.loads {
            if let Some(error) = &load.first_error {
                println!("{}: first error: {error}", load.label);
            }
        }
    }
}
