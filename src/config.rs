//! The one typed configuration: clap flags, each with its `CASTELLAN_...`
//! environment variable. Defaults need nothing: an SQLite file in `./data`,
//! gRPC on 0.0.0.0:50051, HTTP on 0.0.0.0:8080.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::domain::credentials::MAX_PASSWORD_CHARS;

/// Castellan: tenants, users, roles, groups, permissions and devices over gRPC.
#[derive(Debug, Parser)]
#[command(name = "castellan", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC and HTTP servers (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print an access token for a service (`--subject`) or a user (`--user`), signed
    /// with the server's key, which must exist; reads only, never migrates.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["subject", "user"])))]
pub struct TokenArgs {
    /// A service token for this subject (a service name), carrying `--permission`s.
    #[arg(long)]
    pub subject: Option<String>,
    /// A user token (id or username of an ACTIVE member of `--tenant`) with the
    /// claims Login issues: authorized with the user's live permissions.
    #[arg(long, conflicts_with_all = ["permissions", "global"])]
    pub user: Option<String>,
    /// Tenant the token is valid in (slug or id).
    #[arg(long, default_value = "default")]
    pub tenant: String,
    /// A permission to claim (`users:read`, `users:*`, `*`); repeat for more.
    #[arg(long = "permission")]
    pub permissions: Vec<String>,
    /// The subject may name another tenant with `x-tenant-id` metadata.
    #[arg(long)]
    pub global: bool,
    /// Lifetime, e.g. `1h`, `30m`; default: the configured token TTL.
    #[arg(long, value_parser = setting_duration)]
    pub ttl: Option<humantime::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MailerKind {
    /// Write mails (with their links) to the log: for development.
    Log,
    /// Send through an SMTP server.
    Smtp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmtpTls {
    None,
    Starttls,
    Tls,
}

#[derive(Clone, Args)]
pub struct Config {
    /// Database URL (`sqlite://...` or `postgres://...`); default: SQLite in the data dir.
    // It may hold a password: `--help` names its variable, never its value.
    #[arg(long, env = "CASTELLAN_DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Most database connections open at once (0 = 8 on SQLite, 32 on
    /// PostgreSQL); on SQLite, writes have one more of their own.
    #[arg(long, env = "CASTELLAN_DATABASE_MAX_CONNECTIONS", default_value_t = 0, global = true)]
    pub database_max_connections: u32,
    /// How long a call waits for a free database connection before failing
    /// with UNAVAILABLE.
    #[arg(
        long,
        value_parser = setting_duration,
        env = "CASTELLAN_DATABASE_ACQUIRE_TIMEOUT",
        default_value = "5s",
        global = true
    )]
    pub database_acquire_timeout: humantime::Duration,
    /// gRPC listen address.
    #[arg(long, env = "CASTELLAN_GRPC_ADDR", default_value = "0.0.0.0:50051", global = true)]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address: health, JWKS, the REST gateway and `/openapi.json`, `/metrics`, the invitation and password pages.
    #[arg(long, env = "CASTELLAN_HTTP_ADDR", default_value = "0.0.0.0:8080", global = true)]
    pub http_addr: SocketAddr,
    /// Directory for the SQLite database and the generated signing key.
    #[arg(long, env = "CASTELLAN_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// PKCS#8 PEM Ed25519 private key; default: `<data dir>/signing-key.pem`,
    /// generated on first start.
    #[arg(long, env = "CASTELLAN_SIGNING_KEY_FILE", global = true)]
    pub signing_key_file: Option<PathBuf>,
    /// `iss` of issued tokens, required on verified ones.
    #[arg(long, env = "CASTELLAN_ISSUER", default_value = "castellan", global = true)]
    pub issuer: String,
    /// `aud` of issued tokens, required on verified ones.
    #[arg(long, env = "CASTELLAN_AUDIENCE", default_value = "castellan", global = true)]
    pub audience: String,
    /// Lifetime of issued access tokens (`15m`, `1h`).
    #[arg(long, value_parser = setting_duration, env = "CASTELLAN_TOKEN_TTL", default_value = "1h", global = true)]
    pub token_ttl: humantime::Duration,
    /// Log format.
    #[arg(
        long,
        env = "CASTELLAN_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Do not apply pending migrations at start (production runs `castellan migrate` as a job).
    #[arg(long, env = "CASTELLAN_NO_MIGRATE", global = true)]
    pub no_migrate: bool,
    /// How long shutdown waits for in-flight calls.
    #[arg(long, value_parser = setting_duration, env = "CASTELLAN_SHUTDOWN_GRACE", default_value = "30s", global = true)]
    pub shutdown_grace: humantime::Duration,
    /// On an empty database: also create this user as owner of `default` with the global `admin` role.
    #[arg(long, env = "CASTELLAN_BOOTSTRAP_ADMIN_EMAIL", global = true)]
    pub bootstrap_admin_email: Option<String>,
    /// The bootstrap admin's password.
    #[arg(
        long,
        env = "CASTELLAN_BOOTSTRAP_ADMIN_PASSWORD",
        global = true,
        hide_env_values = true
    )]
    pub bootstrap_admin_password: Option<String>,
    /// Earlier signing keys (PKCS#8 private or SPKI public PEM files,
    /// comma-separated) whose tokens still verify and which JWKS still
    /// publishes: rotate by moving the old key here and a new one in place.
    #[arg(long, env = "CASTELLAN_VERIFICATION_KEY_FILES", value_delimiter = ',', global = true)]
    pub verification_key_files: Vec<PathBuf>,
    /// Base URL of links in mails (`<url>/invitations/accept?token=...`).
    #[arg(
        long,
        env = "CASTELLAN_PUBLIC_URL",
        default_value = "http://localhost:8080",
        global = true
    )]
    pub public_url: String,
    /// How mails are delivered.
    #[arg(long, env = "CASTELLAN_MAILER", value_enum, default_value = "log", global = true)]
    pub mailer: MailerKind,
    /// SMTP server host.
    #[arg(long, env = "CASTELLAN_SMTP_HOST", default_value = "localhost", global = true)]
    pub smtp_host: String,
    /// SMTP server port.
    #[arg(long, env = "CASTELLAN_SMTP_PORT", default_value_t = 587, global = true)]
    pub smtp_port: u16,
    /// SMTP transport security.
    #[arg(
        long,
        env = "CASTELLAN_SMTP_TLS",
        value_enum,
        default_value = "starttls",
        global = true
    )]
    pub smtp_tls: SmtpTls,
    /// SMTP user name (with the password: authenticate).
    #[arg(long, env = "CASTELLAN_SMTP_USERNAME", global = true)]
    pub smtp_username: Option<String>,
    /// SMTP password.
    #[arg(long, env = "CASTELLAN_SMTP_PASSWORD", global = true, hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// Sender of mails.
    #[arg(
        long,
        env = "CASTELLAN_SMTP_FROM",
        default_value = "Castellan <no-reply@localhost>",
        global = true
    )]
    pub smtp_from: String,
    /// How often the mail outbox is polled (also the first retry delay); at
    /// least 10 ms (at 0 a failing mail would be retried without a pause).
    #[arg(long, value_parser = polling_interval, env = "CASTELLAN_OUTBOX_INTERVAL", default_value = "2s", global = true)]
    pub outbox_interval: humantime::Duration,
    /// How long an invitation link works.
    #[arg(long, value_parser = setting_duration, env = "CASTELLAN_INVITATION_TTL", default_value = "7d", global = true)]
    pub invitation_ttl: humantime::Duration,
    /// Shortest password accepted (never below 8, NIST 800-63B; at most the
    /// longest accepted, 1,024).
    #[arg(long, value_parser = password_min_length, env = "CASTELLAN_PASSWORD_MIN_LENGTH", default_value_t = 8, global = true)]
    pub password_min_length: usize,
    /// Failed logins per account within the window before attempts are refused.
    #[arg(long, env = "CASTELLAN_LOGIN_MAX_FAILURES", default_value_t = 10, global = true)]
    pub login_max_failures: i32,
    /// Failed logins per client address within the window before attempts are refused.
    #[arg(
        long,
        env = "CASTELLAN_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 100,
        global = true
    )]
    pub login_max_failures_per_address: i32,
    /// The window in which login failures are counted.
    #[arg(long, value_parser = setting_duration, env = "CASTELLAN_LOGIN_FAILURE_WINDOW", default_value = "15m", global = true)]
    pub login_failure_window: humantime::Duration,
    /// First lockout wait; each consecutive lockout doubles it.
    #[arg(long, value_parser = setting_duration, env = "CASTELLAN_LOGIN_LOCKOUT", default_value = "30s", global = true)]
    pub login_lockout: humantime::Duration,
    /// Longest lockout wait.
    #[arg(long, value_parser = setting_duration, env = "CASTELLAN_LOGIN_MAX_LOCKOUT", default_value = "1h", global = true)]
    pub login_max_lockout: humantime::Duration,
}

/// Longest duration a setting takes: ten years. A lifetime added to the
/// clock (a token's, an invitation's, a lockout's) then always fits.
const MAX_SETTING_DURATION: Duration = Duration::from_secs(10 * 31_557_600);

/// A duration setting (`30s`, `15m`, `7d`), at most ten years.
fn setting_duration(value: &str) -> Result<humantime::Duration, String> {
    let duration: humantime::Duration = value.parse().map_err(|error| format!("{error}"))?;
    if Duration::from(duration) > MAX_SETTING_DURATION {
        return Err("must be at most 10 years".into());
    }
    Ok(duration)
}

/// A duration setting (see [`setting_duration`]) that paces a loop: at
/// least 10 ms.
fn polling_interval(value: &str) -> Result<humantime::Duration, String> {
    let interval = setting_duration(value)?;
    if Duration::from(interval) < Duration::from_millis(10) {
        return Err("must be at least 10ms".into());
    }
    Ok(interval)
}

/// A minimum password length no longer than the longest password accepted
/// (which would refuse every password).
fn password_min_length(value: &str) -> Result<usize, String> {
    let length: usize = value.parse().map_err(|error| format!("{error}"))?;
    if length > MAX_PASSWORD_CHARS {
        return Err(format!(
            "must be at most {MAX_PASSWORD_CHARS}, the longest password accepted"
        ));
    }
    Ok(length)
}

impl Config {
    /// The database URL, defaulting to an SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("castellan.db").display()),
        }
    }

    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("signing-key.pem"))
    }

    pub fn token_ttl(&self) -> Duration {
        self.token_ttl.into()
    }
}

/// Redacts the database URL (it may hold a password) and the admin password.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.database_url.as_ref().map(|_| "<redacted>"))
            .field("database_max_connections", &self.database_max_connections)
            .field("database_acquire_timeout", &self.database_acquire_timeout)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("data_dir", &self.data_dir)
            .field("signing_key_file", &self.signing_key_file)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("token_ttl", &self.token_ttl)
            .field("log_format", &self.log_format)
            .field("no_migrate", &self.no_migrate)
            .field("bootstrap_admin_email", &self.bootstrap_admin_email)
            .field(
                "bootstrap_admin_password",
                &self.bootstrap_admin_password.as_ref().map(|_| "<redacted>"),
            )
            .field("verification_key_files", &self.verification_key_files)
            .field("public_url", &self.public_url)
            .field("mailer", &self.mailer)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_tls", &self.smtp_tls)
            .field("smtp_username", &self.smtp_username)
            .field("smtp_password", &self.smtp_password.as_ref().map(|_| "<redacted>"))
            .field("smtp_from", &self.smtp_from)
            .field("invitation_ttl", &self.invitation_ttl)
            .field("password_min_length", &self.password_min_length)
            .field("login_max_failures", &self.login_max_failures)
            .field("login_max_failures_per_address", &self.login_max_failures_per_address)
            .field("login_failure_window", &self.login_failure_window)
            .field("login_lockout", &self.login_lockout)
            .field("login_max_lockout", &self.login_max_lockout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The variables that may hold a secret: a password, or a URL with one.
    fn holds_a_secret(variable: &str) -> bool {
        variable.ends_with("_PASSWORD") || (variable.ends_with("_URL") && variable != "CASTELLAN_PUBLIC_URL")
    }

    /// `--help` shows each variable's value (`[env: NAME=value]`) unless told
    /// not to: every variable that may hold a secret is, on every
    /// subcommand's help too (the arguments are global).
    #[test]
    fn help_never_shows_the_value_of_a_secret() {
        let command = Cli::command();
        let secret_args: Vec<_> = command
            .get_arguments()
            .filter(|arg| {
                arg.get_env()
                    .is_some_and(|variable| holds_a_secret(&variable.to_string_lossy()))
            })
            .collect();
        let names: Vec<_> = secret_args.iter().map(|arg| arg.get_id().as_str()).collect();
        assert_eq!(
            names,
            ["database_url", "bootstrap_admin_password", "smtp_password"],
            "the arguments this test covers"
        );
        for arg in secret_args {
            assert!(
                arg.is_hide_env_values_set(),
                "{} shows its value in --help",
                arg.get_id()
            );
        }
    }

    /// A duration past ten years is refused at start, naming its setting:
    /// an invitation's expiry added such a lifetime to the clock and
    /// panicked in the call.
    #[test]
    fn a_duration_setting_is_at_most_ten_years() {
        let refused = Cli::try_parse_from(["castellan", "--invitation-ttl", "100000000y"])
            .expect_err("a lifetime past ten years");
        assert!(refused.to_string().contains("--invitation-ttl"), "{refused}");
        assert!(refused.to_string().contains("at most 10 years"), "{refused}");
        let refused = Cli::try_parse_from(["castellan", "token", "--subject", "s", "--ttl", "11y"])
            .expect_err("a token lifetime past ten years");
        assert!(refused.to_string().contains("--ttl"), "{refused}");
        let accepted = Cli::try_parse_from(["castellan", "--login-max-lockout", "10y", "--token-ttl", "90s"])
            .expect("ten years and less");
        assert_eq!(accepted.config.token_ttl(), Duration::from_secs(90));
        assert_eq!(Duration::from(accepted.config.login_max_lockout), MAX_SETTING_DURATION);
        // Every duration setting with a default (`--ttl` above has none) is
        // bounded.
        let command = Cli::command();
        let mut durations = Vec::new();
        for arg in command.get_arguments().chain(
            command
                .get_subcommands()
                .flat_map(|subcommand| subcommand.get_arguments()),
        ) {
            let id = arg.get_id().as_str();
            if let Some(default) = arg.get_default_values().first().and_then(|value| value.to_str())
                && default.ends_with(|unit: char| unit.is_ascii_alphabetic())
                && default.parse::<humantime::Duration>().is_ok()
            {
                durations.push(id.to_owned());
            }
        }
        assert_eq!(durations.len(), 8, "{durations:?}");
        for id in durations {
            let flag = format!("--{}", id.replace('_', "-"));
            assert!(
                Cli::try_parse_from(["castellan", &flag, "11y"]).is_err(),
                "{flag} takes 11 years"
            );
        }
    }

    /// Settings that would make the server spin or refuse every password
    /// are refused at start, naming the setting.
    #[test]
    fn the_outbox_interval_paces_and_the_password_minimum_admits_a_password() {
        for (flag, value, words) in [
            ("--outbox-interval", "0s", "at least 10ms"),
            ("--password-min-length", "1025", "at most 1024"),
        ] {
            let refused = Cli::try_parse_from(["castellan", flag, value]).expect_err(value);
            assert!(refused.to_string().contains(flag), "{refused}");
            assert!(refused.to_string().contains(words), "{refused}");
        }
        let accepted = Cli::try_parse_from([
            "castellan",
            "--outbox-interval",
            "10ms",
            "--password-min-length",
            "1024",
        ])
        .expect("the bounds themselves");
        assert_eq!(accepted.config.password_min_length, 1024);
    }
}
