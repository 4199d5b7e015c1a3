//! The `sessiond` binary: parse the command line, set up logging, run one
//! subcommand through the library, and print the error and its causes if it
//! fails.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use sessiond::cli::{Cli, Command, LogFormat, ServeArgs};
use sessiond::error::ErrorChain;
use sessiond::signals::{Hangups, Signals};
use sessiond::store::{BackupError, PendingMigration, StoreUrl};
use sessiond::{Server, StartError, healthcheck};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit code of a configuration sessiond cannot run with, clap's own
/// for a usage error.
const USAGE_EXIT_CODE: u8 = 2;

/// After the server has stopped, how long leftover background work may run.
const RUNTIME_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Command::Serve(args) = &cli.command
        && let Some(threads) = args.threads
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
            eprintln!("sessiond: {}", ErrorChain(err.as_ref()));
            exit_code(&err)
        }
    }
}

/// 2 for a command that this configuration cannot run at all, as clap exits
/// on a usage error; 1 for a command that failed, and may work if tried
/// again (a database down). The systemd unit's RestartPreventExitStatus=
/// relies on the difference: restarting does not fix a configuration.
fn exit_code(err: &anyhow::Error) -> ExitCode {
    let usage = err
        .downcast_ref::<BackupError>()
        .is_some_and(BackupError::is_usage_error)
        || err
            .downcast_ref::<StartError>()
            .is_some_and(StartError::is_configuration_error);
    if usage {
        ExitCode::from(USAGE_EXIT_CODE)
    } else {
        ExitCode::FAILURE
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(args) if args.dry_run => {
            let config = args.store.into_config();
            print_pending(&config.url, &config.pending_migrations().await?);
            Ok(())
        }
        Command::Migrate(args) => {
            let config = args.store.into_config();
            let migrations = config.migrate().await?;
            if migrations.is_empty() {
                println!("{}: schema is up to date", config.url);
            }
            for migration in migrations {
                let verb = if migration.adopted {
                    "adopted existing table for"
                } else {
                    "applied"
                };
                println!("{}: {verb} {}", config.url, migration.name);
            }
            Ok(())
        }
        Command::Clearsessions(args) => {
            let removed = args
                .store
                .into_config()
                .clear_expired(args.purge_batch_size)
                .await?;
            println!("{removed}");
            Ok(())
        }
        Command::Backup(args) => {
            let config = args.store.into_config();
            let summary = config.back_up(&args.dest, args.force).await?;
            println!(
                "{}: backed up to {}: {summary}",
                config.url,
                args.dest.display()
            );
            Ok(())
        }
        Command::Healthcheck(args) => {
            healthcheck::check(&args.into_config()).await?;
            println!("SERVING");
            Ok(())
        }
    }
}

/// What `migrate --dry-run` found: each pending migration, then its SQL
/// indented, as an operator reviews it before a deploy.
fn print_pending(url: &StoreUrl, pending: &[PendingMigration]) {
    if pending.is_empty() {
        println!("{url}: schema is up to date; nothing to apply");
        return;
    }
    println!(
        "{url}: {} pending migration(s); nothing applied (--dry-run)",
        pending.len()
    );
    for migration in pending {
        let compatible = if migration.backward_compatible {
            "backward compatible"
        } else {
            "NOT backward compatible: the previous release cannot serve the result"
        };
        println!("{:04} {} ({compatible})", migration.version, migration.name);
        if migration.adopt {
            println!(
                "    adopts the existing django_session table, which is in Django's shape; runs no SQL"
            );
            continue;
        }
        for line in migration.sql.lines() {
            println!("    {line}");
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let signals = Signals::catch().context("cannot catch SIGINT and SIGTERM")?;
    let hangups = Hangups::catch().context("cannot catch SIGHUP")?;
    raise_file_limit();
    let config = args.into_config();
    let listen = config.listen;
    let server = Server::open(config).await?;
    let listener = sessiond::bind(listen).with_context(|| {
        format!(
            "cannot listen on {listen} (--listen, SESSIOND_LISTEN); is another server using it?"
        )
    })?;
    // Connections queue on the bound socket from here on, so a unit that
    // waits for sessiond (Type=notify) may start.
    notify_service_manager(sd_notify::NotifyState::Ready);
    let reloads = tokio::spawn(hangups.reload(server.tokens()));
    let shutdown = async {
        signals.received().await;
        notify_service_manager(sd_notify::NotifyState::Stopping);
    };
    let served = server.serve(listener, shutdown).await;
    reloads.abort();
    served?;
    Ok(())
}

/// Tells systemd (Type=notify) that sessiond is ready or stopping; does
/// nothing when no service manager asked (NOTIFY_SOCKET unset). A failure
/// costs only the notice, so it is logged and serving goes on.
fn notify_service_manager(state: sd_notify::NotifyState) {
    let notice = state.to_string();
    if let Err(err) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %err, notice, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// Raises the soft open-file limit to the hard one, as systemd advises
/// services that need many files (and as Go programs do): the soft limit
/// of 1024 is kept low for programs that use select(2), and sessiond does
/// not. The default --max-connections follows from the raised limit, and
/// stays within its own ceiling.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(file_limit = limit, "open-file limit"),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
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
