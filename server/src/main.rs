//! The `sessiond` binary: parse the configuration, set up logging, run one
//! subcommand, and print the error chain if it fails.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sessiond::config::{ClearConfig, Cli, Command, LogFormat, ServeConfig, StoreConfig};
use sessiond::{Server, shutdown, store};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// After the server has stopped, how long leftover background work may run.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(config) = &cli.command
        && let Some(threads) = config.threads
    {
        runtime.worker_threads(usize::from(threads));
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sessiond: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Work cut off by the drain timeout (a write waiting for a lock) must
    // not hold the exit any longer.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_GRACE);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sessiond: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(config) => migrate(config).await,
        Command::Clearsessions(config) => clearsessions(config).await,
        Command::Healthcheck(config) => {
            sessiond::healthcheck::check(&config).await?;
            println!("SERVING");
            Ok(())
        }
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let signals = shutdown::Signals::catch().context("cannot catch SIGINT and SIGTERM")?;
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot catch SIGHUP")?;
    let listen = config.listen;
    let server = Server::open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {listen} (--listen, SESSIOND_LISTEN); is another server using it?"
            )
        })?;
    let reloads = tokio::spawn(reload_tokens_on_hangup(server.tokens(), hangups));
    let served = server.serve(listener, signals.received()).await;
    reloads.abort();
    served?;
    Ok(())
}

/// SIGHUP rereads the tokens; a file that has become unreadable or
/// malformed keeps the tokens in force, and says why.
async fn reload_tokens_on_hangup(
    tokens: sessiond::auth::TokenStore,
    mut hangups: tokio::signal::unix::Signal,
) {
    while hangups.recv().await.is_some() {
        match tokens.reload() {
            Ok(count) => tracing::info!(tokens = count, "reloaded the bearer tokens"),
            Err(err) => tracing::error!(
                error = %sessiond::service::ErrorChain(&err),
                "cannot reload the bearer tokens; keeping those in force"
            ),
        }
    }
}

async fn migrate(config: StoreConfig) -> anyhow::Result<()> {
    let store = config.open().await?;
    let result = store.migrate().await;
    store.close().await;
    let migrations = result.with_context(|| format!("cannot migrate {}", config.store))?;
    if migrations.is_empty() {
        println!("{}: schema is up to date", config.store);
    }
    for migration in migrations {
        let verb = if migration.adopted {
            "adopted existing table for"
        } else {
            "applied"
        };
        println!("{}: {verb} {}", config.store, migration.name);
    }
    Ok(())
}

async fn clearsessions(config: ClearConfig) -> anyhow::Result<()> {
    // Opening SQLite creates the file; a purge has no reason to.
    if let store::StoreUrl::Sqlite(url) = &config.store.store
        && !url.path.exists()
    {
        anyhow::bail!(
            "{} does not exist (--store, SESSIOND_STORE); nothing to clear",
            config.store.store
        );
    }
    let store = config.store.open().await?;
    let result =
        store::clear_expired(store.as_ref(), chrono::Utc::now(), config.purge_batch_size).await;
    store.close().await;
    let removed = result
        .with_context(|| format!("cannot clear expired sessions in {}", config.store.store))?;
    println!("{removed}");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: escape codes would clutter a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
