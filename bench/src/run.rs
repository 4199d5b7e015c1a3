//! One run: every planned row in turn (start sessiond if needed, create the
//! sessions, warm up, measure, read the server's stats, stop it, remove the
//! row's namespace), then the report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::bail;
use tokio_util::sync::CancellationToken;

use crate::cli::Cli;
use crate::connection::{Connection, Written};
use crate::measure::{self, Measurement, Shape, Window};
use crate::plan::{self, Plan, RedisSharing, Subject};
use crate::proc_stats::ProcStats;
use crate::progress::Progress;
use crate::purge::{self, Purge};
use crate::report::{self, Report, Row, Status};
use crate::sessiond_process::{self, SessiondProcess};
use crate::workload::Workload;

/// Sessions the bench writes expire this long after the run, so that
/// those left in a shared store go away through its normal purge.
const EXPIRE_AFTER_RUN: Duration = Duration::from_secs(3600);

/// Everything a row needs from the command line.
#[derive(Debug)]
struct Context {
    sessiond: Option<PathBuf>,
    server_args: Vec<String>,
    shape: Shape,
    data: Arc<str>,
    sessions: usize,
    expired: usize,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    progress: Progress,
    cancel: CancellationToken,
}

/// Measures what `cli` asks for and prints the report. Fails when a row
/// failed (a skipped row is not a failure).
pub async fn run(cli: Cli, cancel: CancellationToken) -> anyhow::Result<ExitCode> {
    let progress = Progress::stderr();
    if cli.idle_connections.is_some() {
        let path = sessiond_process::locate(cli.sessiond.as_deref())?;
        warn_of_debug_builds(&path, &progress);
        return crate::idle::run(&cli, &path, progress, cancel).await;
    }
    check(&cli)?;
    let mut plans = plan::plans(&cli).await?;
    let spawns = plans
        .iter()
        .any(|plan| matches!(plan.subject, Subject::Sessiond { .. }));
    let sessiond = if spawns {
        let path = sessiond_process::locate(cli.sessiond.as_deref())?;
        warn_of_debug_builds(&path, &progress);
        Some(path)
    } else {
        None
    };
    let context = Context {
        sessiond,
        server_args: server_args(&cli),
        shape: Shape {
            workload: cli.workload,
            load_percent: cli.load_percent,
            concurrency: usize::try_from(cli.concurrency)?,
        },
        data: crate::payload::json_object(usize::try_from(cli.payload_bytes)?).into(),
        sessions: usize::try_from(cli.sessions)?,
        expired: usize::try_from(cli.expired)?,
        connections: usize::try_from(cli.connections)?,
        duration: cli.duration,
        warmup: cli.warmup,
        timeout: cli.timeout,
        progress,
        cancel: cancel.clone(),
    };

    let mut rounds = Vec::new();
    for round in 1..=cli.rounds {
        if round > 1 {
            // With --compare, fresh files, schemas and key prefixes: each
            // round starts as the first did.
            plans = plan::plans(&cli).await?;
        }
        if cli.rounds > 1 {
            context
                .progress
                .note(&format!("round {round} of {}", cli.rounds));
        }
        let mut rows = Vec::with_capacity(plans.len());
        for plan in plans.drain(..) {
            if cancel.is_cancelled() {
                break;
            }
            rows.push(run_plan(plan, &context).await);
        }
        if cancel.is_cancelled() {
            bail!("interrupted; the rows measured so far are not reported");
        }
        report::set_ratios(&mut rows);
        rounds.push(rows);
    }
    let rows = report::median_rows(rounds);
    let report = Report {
        settings: report::Settings {
            workload: cli.workload,
            load_percent: (cli.workload == Workload::Mixed).then_some(cli.load_percent),
            payload_bytes: cli.payload_bytes,
            sessions: cli.sessions,
            expired: cli.expired,
            concurrency: cli.concurrency,
            connections: cli.connections,
            threads: cli.threads,
            duration_s: cli.duration.as_secs_f64(),
            warmup_s: cli.warmup.as_secs_f64(),
            timeout_s: cli.timeout.as_secs_f64(),
            rounds: cli.rounds,
        },
        rows,
    };
    if cli.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.table());
    }
    let failed = report.rows.iter().any(|row| row.status == Status::Failed);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The flags of the sessiond the bench starts: the `--server-arg`s and,
/// with `--expired`, a request timeout as long as the ClearExpired call may
/// take (sessiond's own default, 10 s, would cut a purge of a million rows
/// short), unless one is given.
fn server_args(cli: &Cli) -> Vec<String> {
    let given = |flag: &str| cli.server_args.iter().any(|arg| arg.starts_with(flag));
    let mut args = Vec::new();
    if cli.expired > 0 && !given("--request-timeout") {
        args.push(format!(
            "--request-timeout={}s",
            crate::purge::PURGE_TIMEOUT.as_secs()
        ));
    }
    args.extend(cli.server_args.iter().cloned());
    args
}

/// Refuses settings that leave workers nothing to do.
fn check(cli: &Cli) -> anyhow::Result<()> {
    if cli.workload.needs_sessions() && cli.sessions == 0 {
        bail!(
            "--workload {} works on existing sessions; give --sessions of at least 1",
            cli.workload.name()
        );
    }
    if cli.workload == Workload::Cycle && cli.sessions < cli.concurrency {
        bail!(
            "--workload cycle gives each worker sessions of its own; give --sessions of at least --concurrency ({})",
            cli.concurrency
        );
    }
    Ok(())
}

/// Figures from debug builds say little about a release; say so.
fn warn_of_debug_builds(sessiond: &Path, progress: &Progress) {
    if sessiond
        .components()
        .any(|part| part.as_os_str() == "debug")
    {
        progress.note(&format!(
            "note: {} looks like a debug build; for real figures use `cargo build --release`",
            sessiond.display()
        ));
    }
    if cfg!(debug_assertions) {
        progress.note("note: sessiond-bench is a debug build; for real figures use --release");
    }
}

/// Measures one row, then removes its namespace; never fails, a failure
/// becomes the row.
async fn run_plan(plan: Plan, context: &Context) -> Row {
    let shown = plan.shown();
    let row = match &plan.subject {
        Subject::Skip(reason) => {
            Row::not_measured(&plan.name, &shown, Status::Skipped, reason.clone())
        }
        subject => match measure_subject(&plan.name, subject, context).await {
            Ok(Measured {
                measurement,
                server,
                purge,
            }) => Row::measured(&plan.name, &shown, &measurement, server, purge),
            Err(err) => {
                context
                    .progress
                    .note(&format!("{}: failed: {err:#}", plan.name));
                Row::not_measured(&plan.name, &shown, Status::Failed, format!("{err:#}"))
            }
        },
    };
    if let Err(err) = plan.namespace.remove().await {
        context
            .progress
            .note(&format!("{}: cleanup failed: {err:#}", plan.name));
    }
    row
}

/// What one row measured.
struct Measured {
    measurement: Measurement,
    server: Option<report::Server>,
    purge: Option<Purge>,
}

async fn measure_subject(
    name: &str,
    subject: &Subject,
    context: &Context,
) -> anyhow::Result<Measured> {
    match subject {
        Subject::Skip(reason) => bail!("{reason}"),
        Subject::Target(urls) => {
            let connections =
                Connection::sessiond(urls, context.connections, context.timeout).await?;
            let purger = purger(urls, context).await?;
            let (measurement, _, purge) =
                populate_and_measure(&connections, purger, name, context, None).await?;
            Ok(Measured {
                measurement,
                server: None,
                purge,
            })
        }
        Subject::RedisPlain {
            url,
            prefix,
            sharing,
        } => {
            let count = match sharing {
                RedisSharing::PerWorker => context.shape.concurrency,
                RedisSharing::Multiplexed => context.connections,
            };
            let connections = Connection::redis(url, prefix, count, context.timeout).await?;
            let (measurement, _, _) =
                populate_and_measure(&connections, None, name, context, None).await?;
            Ok(Measured {
                measurement,
                server: None,
                purge: None,
            })
        }
        Subject::Sessiond { store, cache } => {
            let Some(binary) = &context.sessiond else {
                bail!("no sessiond binary to start");
            };
            context.progress.show(&format!("{name}: starting sessiond"));
            let process =
                SessiondProcess::start(binary, store, cache.as_deref(), &context.server_args, None)
                    .await?;
            let measured = async {
                let urls = [process.url().to_owned()];
                let connections =
                    Connection::sessiond(&urls, context.connections, context.timeout).await?;
                let purger = purger(&urls, context).await?;
                let (measurement, at_start, purge) =
                    populate_and_measure(&connections, purger, name, context, Some(process.pid()))
                        .await?;
                let at_end = process.stats()?;
                let server = report::Server::new(
                    at_start,
                    at_end,
                    measurement.requests(),
                    process.warnings(),
                );
                Ok::<_, anyhow::Error>(Measured {
                    measurement,
                    server: Some(server),
                    purge,
                })
            }
            .await;
            // Connections are closed by now, so sessiond drains at once.
            let stopped = process.stop().await;
            let measured = measured?;
            stopped?;
            Ok(measured)
        }
    }
}

/// With `--expired`, a connection of its own for the ClearExpired call,
/// whose timeout is that of a long purge.
async fn purger(urls: &[String], context: &Context) -> anyhow::Result<Option<Connection>> {
    if context.expired == 0 {
        return Ok(None);
    }
    let mut connections = Connection::sessiond(urls, 1, purge::PURGE_TIMEOUT).await?;
    Ok(connections.pop())
}

/// Creates the sessions (and with `purger`, the expired ones), then warms
/// up and measures, with `purger` calling ClearExpired as measuring starts;
/// with `pid`, also reads that process's stats when measuring starts.
async fn populate_and_measure(
    connections: &[Connection],
    purger: Option<Connection>,
    name: &str,
    context: &Context,
    pid: Option<u32>,
) -> anyhow::Result<(Measurement, Option<ProcStats>, Option<Purge>)> {
    let written = Written {
        data: context.data.clone(),
        expire_at: SystemTime::now() + context.warmup + context.duration + EXPIRE_AFTER_RUN,
    };
    let keys = crate::populate::populate(
        connections,
        context.sessions,
        &written,
        &context.progress,
        name,
        &context.cancel,
    )
    .await?;
    if purger.is_some() {
        crate::populate::populate(
            connections,
            context.expired,
            &purge::expired(&written),
            &context.progress,
            &format!("{name} (expired)"),
            &context.cancel,
        )
        .await?;
    }
    let window = Window::starting_now(context.warmup, context.duration);
    let stats_at_start = pid.map(|pid| {
        tokio::spawn(async move {
            tokio::time::sleep_until(window.measure_start.into()).await;
            ProcStats::read(pid).ok()
        })
    });
    let purge = purger.map(|conn| purge::spawn(conn, window));
    let measured = measure::measure(
        connections,
        keys,
        &written,
        context.shape,
        window,
        &context.progress,
        name,
        &context.cancel,
    )
    .await;
    let at_start = match stats_at_start {
        Some(task) => {
            task.abort();
            task.await.ok().flatten()
        }
        None => None,
    };
    if purge.is_some() {
        context
            .progress
            .show(&format!("{name}: waiting for ClearExpired to finish"));
    }
    let purge = purge::finish(purge).await?;
    Ok((measured?, at_start, purge))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn server_args_of(args: &[&str]) -> Vec<String> {
        let cli = Cli::parse_from(
            ["sessiond-bench", "--store", "memory://"]
                .iter()
                .chain(args),
        );
        server_args(&cli)
    }

    #[test]
    fn a_purge_gets_a_request_timeout_as_long_as_it_may_take() {
        assert_eq!(
            server_args_of(&["--expired", "10"]),
            ["--request-timeout=3600s"]
        );
        assert!(server_args_of(&[]).is_empty());
        assert_eq!(
            server_args_of(&["--expired", "10", "--server-arg=--request-timeout=5m"]),
            ["--request-timeout=5m"]
        );
    }
}
