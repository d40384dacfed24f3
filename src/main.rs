//! The `castellan` binary: parse the configuration, start logging, run the
//! chosen subcommand.

use std::process::ExitCode;

use castellan::{
    allocator,
    app::App,
    config::{Cli, Command},
    server::{Application, shutdown_signal},
    store::{self, PoolSettings},
    telemetry, token_cli,
};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    allocator::keep_large_allocations_mapped();
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => migrate(&cli.config).await,
        Command::Token(args) => token_cli::run(&cli.config, &args)
            .await
            .map(|token| println!("{token}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "castellan failed");
            eprintln!("castellan: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: castellan::config::Config) -> castellan::error::Result<()> {
    let app = App::build(config).await?;
    let server = Application::build(app).await?;
    tracing::info!(grpc = %server.grpc_addr(), http = %server.http_addr(), "castellan serving");
    server.run_until(shutdown_signal()).await
}

async fn migrate(config: &castellan::config::Config) -> castellan::error::Result<()> {
    let db = store::connect(&config.database_url(), PoolSettings::from(config)).await?;
    store::migrate(&db).await?;
    tracing::info!("migrations applied");
    Ok(())
}
