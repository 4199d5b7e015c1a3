//! `sessiond-bench`: a load generator for sessiond.
//!
//! It measures what a web app sees: requests per second and latency of
//! Load, Save, Create and CycleKey over gRPC, against a running sessiond or
//! one it starts (whose memory and CPU time it then reports), and with
//! `--compare` against every storage engine in one run, next to a plain
//! Redis as the reference for what a network key-value store costs.
//!
//! The main trade-off: workers form a closed loop (each sends its next
//! request when the last is answered), which measures the throughput a
//! fixed number of app workers get, not latency under a fixed arrival rate;
//! a saturated server shows as lower throughput rather than as a queue.
//! The load generator shares the machine with the server, so figures from
//! loopback are a ceiling and a comparison, not a capacity plan.
//!
//! With `--idle-connections N` it measures what idle connections cost
//! instead: the memory per connection of the sessiond it starts, its CPU
//! while they are held, and how many a `--max-connections` cap lets in.
//!
//! Out of scope: TLS (but for idle connections) and tokens,
//! Patch/Exists/Delete workloads, and open-loop (fixed-rate) load.
//!
//! This is a program, not a library: errors are `anyhow` with context,
//! printed once as a chain.

mod cli;
mod connection;
mod idle;
mod measure;
mod payload;
mod plan;
mod populate;
mod proc_stats;
mod progress;
mod purge;
mod report;
mod run;
mod sessiond_process;
mod tls;
mod workload;

use std::process::ExitCode;

use clap::Parser;
use tokio_util::sync::CancellationToken;

// The same allocator as sessiond: the generator shares the machine's cores
// with the server, and every cycle it spends on malloc is one the server
// does not get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match cli.threads {
        1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        threads => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(threads))
            .enable_all()
            .build(),
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sessiond-bench: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: cli::Cli) -> ExitCode {
    let cancel = CancellationToken::new();
    // Ctrl-C ends the row being measured early; servers are still stopped
    // and schemas and key prefixes still removed.
    let interrupt = cancel.clone();
    let on_ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupt.cancel();
        }
    });
    let result = run::run(cli, cancel).await;
    on_ctrl_c.abort();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sessiond-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}
