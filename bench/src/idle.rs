//! `--idle-connections N`: what idle connections cost the server.
//!
//! It starts sessiond, lets it settle for the warm-up and reads its memory,
//! then opens N connections as idle gRPC clients open them (TLS with
//! `--tls-ca`, the HTTP/2 preface and an empty SETTINGS frame, then nothing
//! but acknowledgements)
//! and sorts them by what the server does: answers and keeps them, closes
//! them at once (past `--max-connections`), or leaves them unanswered in the
//! listen backlog. It holds them for `--duration`, reads the server's memory
//! and CPU time, closes them and reads its memory once more, to show what
//! it gives back.
//!
//! The connections come from this process, on this machine: the server's
//! figures are its own, but a flood from one address cannot show what
//! `--max-connections-per-ip` does for many.

mod flood;
mod frames;
mod listen_overflows;
mod report;

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustix::process::{Resource, Rlimit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::flood::{CONNECTS_IN_FLIGHT, Flood, SETTLE};
use self::report::{Connections, IdleReport, Server, Settings};
use crate::cli::Cli;
use crate::progress::Progress;
use crate::sessiond_process::SessiondProcess;
use crate::tls::TlsClient;

/// Files the bench needs besides its idle connections: standard streams,
/// the runtime's event queue, the pipe from sessiond, the start-up health
/// check.
const OTHER_FILES: u64 = 64;

/// How long after the connections are closed the server's memory is read
/// again: time to notice that they closed and free what they held, and for
/// the allocator to give back what it gives back at once.
const AFTER_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Measures `cli.idle_connections` idle connections to the `sessiond` it
/// starts, and prints the report.
pub async fn run(
    cli: &Cli,
    sessiond: &Path,
    progress: Progress,
    cancel: CancellationToken,
) -> anyhow::Result<ExitCode> {
    let (Some(count), Some(store)) = (cli.idle_connections, cli.store.as_deref()) else {
        bail!("--idle-connections needs --store: the sessiond to start");
    };
    let serves_tls = cli
        .server_args
        .iter()
        .any(|arg| arg.starts_with("--tls-cert"));
    if serves_tls && cli.tls_ca.is_none() {
        bail!(
            "sessiond is started with --tls-cert: give --tls-ca, the CA certificate (PEM) the \
             idle connections and the start-up health check trust"
        );
    }
    let tls = match &cli.tls_ca {
        Some(ca) => Some(Arc::new(TlsClient::load(ca, &cli.tls_name)?)),
        None => None,
    };
    // Before sessiond starts, so that it inherits the raised limit.
    let file_limit = raise_file_limit(count)?;
    progress.show("idle connections: starting sessiond");
    let process = SessiondProcess::start(
        sessiond,
        store,
        cli.cache.as_deref(),
        &cli.server_args,
        tls.as_deref(),
    )
    .await?;
    let measured = measure(&process, count, tls.clone(), cli, &progress, &cancel).await;
    // The connections are closed by now, so sessiond drains at once.
    let stopped = process.stop().await;
    let (connections, server) = measured?;
    stopped?;
    let report = IdleReport {
        mode: "idle_connections",
        settings: Settings {
            store: crate::plan::redact(store),
            server_args: cli.server_args.clone(),
            tls: tls.is_some(),
            requested: count,
            connects_in_flight: CONNECTS_IN_FLIGHT,
            file_limit,
            warmup_s: cli.warmup.as_secs_f64(),
            settle_s: SETTLE.as_secs_f64(),
            duration_s: cli.duration.as_secs_f64(),
        },
        connections,
        server,
    };
    if cli.json {
        println!("{}", report.json()?);
    } else {
        print!("{}", report.text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Warm-up, opening, hold, closing; the figures of each.
async fn measure(
    process: &SessiondProcess,
    count: u64,
    tls: Option<Arc<TlsClient>>,
    cli: &Cli,
    progress: &Progress,
    cancel: &CancellationToken,
) -> anyhow::Result<(Connections, Server)> {
    let addr = address(process.url())?;
    progress.show(&format!(
        "idle connections: warming up for {:?}",
        cli.warmup
    ));
    pause(cli.warmup, cancel).await?;
    let before = process.stats()?;

    let overflows_before = listen_overflows::read();
    let opening = Instant::now();
    let (flood, opened) = Flood::open(addr, count, tls, progress, cancel).await?;
    let opening_s = opening.elapsed().as_secs_f64();
    let listen_overflows = overflows_before
        .zip(listen_overflows::read())
        .map(|(before, after)| after.saturating_sub(before));
    let at_hold = process.stats()?;

    let holding = Instant::now();
    let held = count - opened.closed - opened.failed;
    let ticker = progress.tick(move |elapsed| {
        format!(
            "idle connections: holding {held} for {:.0} s",
            elapsed.as_secs_f64()
        )
    });
    let paused = pause(cli.duration, cancel).await;
    ticker.stop().await;
    let holding_s = holding.elapsed().as_secs_f64();
    let at_end = process.stats();
    let since = flood.since();
    progress.show("idle connections: closing them");
    flood.close().await;
    paused?;
    let at_end = at_end?;
    tokio::time::sleep(AFTER_CLOSE_WAIT).await;
    let after = process.stats()?;
    progress.clear();

    let per_connection =
        (since.held > 0).then(|| at_end.rss_bytes.saturating_sub(before.rss_bytes) / since.held);
    let cpu_opening = at_hold.cpu.saturating_sub(before.cpu).as_secs_f64();
    // Closing one at once costs the server an accept and a close too.
    let accepted = opened.answered + opened.closed;
    let cpu_holding = at_end.cpu.saturating_sub(at_hold.cpu).as_secs_f64();
    let connections = Connections {
        requested: count,
        answered: opened.answered,
        closed: opened.closed,
        silent: opened.silent,
        failed: opened.failed,
        first_failure: opened.first_failure,
        opening_s,
        listen_overflows,
        answered_late: since.answered,
        closed_while_held: since.closed,
        held_at_end: since.held,
    };
    let server = Server {
        rss_before_bytes: before.rss_bytes,
        rss_holding_bytes: at_end.rss_bytes,
        rss_after_close_bytes: after.rss_bytes,
        after_close_wait_s: AFTER_CLOSE_WAIT.as_secs_f64(),
        peak_rss_bytes: after.peak_rss_bytes,
        rss_per_connection_bytes: per_connection,
        rss_per_connection_kib: per_connection.map(|bytes| bytes as f64 / 1024.0),
        cpu_opening_s: cpu_opening,
        cpu_opening_us_per_connection: (accepted > 0).then(|| cpu_opening * 1e6 / accepted as f64),
        cpu_holding_s: cpu_holding,
        holding_s,
        cpu_holding_share_of_core: if holding_s > 0.0 {
            cpu_holding / holding_s
        } else {
            0.0
        },
        warnings_logged: process.warnings(),
    };
    Ok((connections, server))
}

/// `127.0.0.1:PORT` of `http://127.0.0.1:PORT`.
fn address(url: &str) -> anyhow::Result<SocketAddr> {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    authority
        .parse()
        .with_context(|| format!("sessiond's address {url} is not IP:PORT"))
}

/// Waits `duration`; fails when `cancel` is cancelled first.
async fn pause(duration: Duration, cancel: &CancellationToken) -> anyhow::Result<()> {
    tokio::select! {
        () = cancel.cancelled() => bail!("interrupted; nothing is reported"),
        () = tokio::time::sleep(duration) => Ok(()),
    }
}

/// Raises this process's soft open-file limit to the hard one, and fails
/// unless it leaves room for `connections`. The limit after, `None` if
/// unlimited.
fn raise_file_limit(connections: u64) -> anyhow::Result<Option<u64>> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        // Checked below: the limit as it stands may be enough.
        let _ = rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        );
    }
    let limit = rustix::process::getrlimit(Resource::Nofile);
    let needed = connections.saturating_add(OTHER_FILES);
    if let Some(soft) = limit.current
        && soft < needed
    {
        let hard = limit
            .maximum
            .map_or_else(|| "unlimited".to_owned(), |hard| hard.to_string());
        bail!(
            "--idle-connections {connections} needs {needed} open files, but this process may \
             open only {soft} (hard limit {hard}); raise the hard limit (`ulimit -Hn` as root, \
             /etc/security/limits.conf, systemd's LimitNOFILE=) or ask for at most {} \
             connections",
            soft.saturating_sub(OTHER_FILES)
        );
    }
    Ok(limit.current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_the_urls_authority() {
        assert_eq!(
            address("http://127.0.0.1:50051").unwrap(),
            SocketAddr::from(([127, 0, 0, 1], 50051))
        );
        assert!(address("http://localhost:1").is_err());
    }

    #[test]
    fn more_connections_than_files_fail_before_anything_starts() {
        let err = raise_file_limit(u64::MAX - 1).unwrap_err();
        assert!(err.to_string().contains("--idle-connections"), "{err}");
        assert!(raise_file_limit(1).is_ok());
    }
}
