//! The one typed configuration: clap flags, each with its `CASTELLAN_...`
//! environment variable. Defaults need nothing: an SQLite file in `./data`,
//! gRPC on 0.0.0.0:50051, HTTP on 0.0.0.0:8080.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Print a signed access token for a service (`--subject`) or a user (`--user`).
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
    #[arg(long)]
    pub ttl: Option<humantime::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Args)]
pub struct Config {
    /// Database URL (`sqlite://...` or `postgres://...`); default: SQLite in the data dir.
    #[arg(long, env = "CASTELLAN_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// gRPC listen address.
    #[arg(long, env = "CASTELLAN_GRPC_ADDR", default_value = "0.0.0.0:50051", global = true)]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address (health, JWKS, REST gateway).
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
    #[arg(long, env = "CASTELLAN_TOKEN_TTL", default_value = "1h", global = true)]
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
    #[arg(long, env = "CASTELLAN_SHUTDOWN_GRACE", default_value = "30s", global = true)]
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
            .finish()
    }
}
