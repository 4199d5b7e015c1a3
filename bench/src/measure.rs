//! The measured run: a fixed number of workers, each with one request in
//! flight (a closed loop), for a warm-up and then a measured window.
//!
//! A request counts when it both starts and ends inside the window; the
//! throughput is those that succeeded divided by the window. Latencies of
//! successful requests go to HDR histograms in microseconds; failures are
//! counted by name. Histograms are sharded rather than per worker so that
//! memory stays bounded at any concurrency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::connection::{Connection, Failure, Written};
use crate::progress::Progress;
use crate::workload::{Op, WorkerKeys, Workload};

/// The longest latency told apart from a longer one: the longest allowed
/// request timeout.
const HIGHEST_TRACKABLE_MICROS: u64 = 3_600_000_000;

/// Three significant digits: 1 µs resolution up to 2 ms, 0.1 % above.
const SIGNIFICANT_DIGITS: u8 = 3;

/// Histogram shards per available core: enough that workers on different
/// threads rarely meet on one lock.
const SHARDS_PER_CORE: usize = 4;

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub workload: Workload,
    pub load_percent: u8,
    pub concurrency: usize,
}

/// When the warm-up ends and measuring starts, and when it ends.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub measure_start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_start = Instant::now() + warmup;
        Self {
            measure_start,
            end: measure_start + duration,
        }
    }

    fn duration(&self) -> Duration {
        self.end - self.measure_start
    }
}

/// What a run measured.
#[derive(Debug)]
pub struct Measurement {
    /// Latencies of the successful requests, in microseconds.
    pub histogram: Histogram<u64>,
    /// Failed requests by name (gRPC status code, …).
    pub errors: BTreeMap<String, u64>,
    /// The measured window.
    pub elapsed: Duration,
}

impl Measurement {
    pub fn requests(&self) -> u64 {
        self.histogram.len()
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.requests() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Latencies and failures of some of the workers.
#[derive(Debug)]
struct Tally {
    histogram: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

/// Requests answered so far, measured or not, for the progress line.
#[derive(Debug, Default)]
struct Counters {
    answered: AtomicU64,
    failed: AtomicU64,
}

fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, HIGHEST_TRACKABLE_MICROS, SIGNIFICANT_DIGITS)
        .context("cannot set up a latency histogram")
}

/// Runs `shape` on `connections` (workers spread over them evenly) until
/// `window.end`, and returns what was measured in the window.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    connections: &[Connection],
    keys: Vec<String>,
    written: &Written,
    shape: Shape,
    window: Window,
    progress: &Progress,
    label: &str,
    cancel: &CancellationToken,
) -> anyhow::Result<Measurement> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let shard_count = (cores * SHARDS_PER_CORE).clamp(1, shape.concurrency.max(1));
    let shards = (0..shard_count)
        .map(|_| {
            Ok(Arc::new(Mutex::new(Tally {
                histogram: histogram()?,
                errors: BTreeMap::new(),
            })))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let counters = Arc::new(Counters::default());
    let ticker = progress.tick(progress_line(label, window, counters.clone()));

    let mut workers = JoinSet::new();
    let worker_keys = WorkerKeys::split(shape.workload, keys, shape.concurrency);
    for (index, keys) in worker_keys.into_iter().enumerate() {
        let (Some(conn), Some(shard)) = (
            connections.get(index % connections.len().max(1)),
            shards.get(index % shard_count),
        ) else {
            bail!("no connection to send requests on");
        };
        let worker = Worker {
            conn: conn.clone(),
            keys,
            written: written.clone(),
            shape,
            window,
            shard: shard.clone(),
            counters: counters.clone(),
            rng: SmallRng::seed_from_u64(index as u64),
        };
        workers.spawn(worker.run(cancel.clone()));
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a worker panicked")?;
    }
    ticker.stop().await;
    if cancel.is_cancelled() {
        bail!("interrupted");
    }

    let mut total = histogram()?;
    let mut errors = BTreeMap::new();
    for shard in shards {
        let tally = shard.lock().unwrap_or_else(PoisonError::into_inner);
        total
            .add(&tally.histogram)
            .context("cannot merge latency histograms")?;
        for (name, count) in &tally.errors {
            *errors.entry(name.clone()).or_insert(0) += count;
        }
    }
    Ok(Measurement {
        histogram: total,
        errors,
        elapsed: window.duration(),
    })
}

/// The progress line: phase, requests answered in the last second, errors.
fn progress_line(
    label: &str,
    window: Window,
    counters: Arc<Counters>,
) -> impl Fn(Duration) -> String + Send + 'static {
    let label = label.to_owned();
    let last = Mutex::new((Instant::now(), 0_u64));
    move |_| {
        let now = Instant::now();
        let answered = counters.answered.load(Ordering::Relaxed);
        let failed = counters.failed.load(Ordering::Relaxed);
        let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
        let (then, before) = *last;
        *last = (now, answered);
        let rate = (answered - before) as f64 / (now - then).as_secs_f64().max(f64::EPSILON);
        let phase = if now < window.measure_start {
            let left = window.measure_start - now;
            format!("warming up, {:.0} s left", left.as_secs_f64().ceil())
        } else if now < window.end {
            let left = window.end - now;
            format!("measuring, {:.0} s left", left.as_secs_f64().ceil())
        } else {
            "finishing the requests in flight".to_owned()
        };
        format!("{label}: {phase}, {rate:.0} req/s, {failed} errors")
    }
}

/// One request in flight at a time, until the window ends.
struct Worker {
    conn: Connection,
    keys: WorkerKeys,
    written: Written,
    shape: Shape,
    window: Window,
    shard: Arc<Mutex<Tally>>,
    counters: Arc<Counters>,
    rng: SmallRng,
}

impl Worker {
    /// Bounded in time by the window's end and, for the request in flight
    /// then, by the request timeout.
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            let started = Instant::now();
            if started >= self.window.end {
                break;
            }
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                result = self.request() => result,
            };
            let Some(result) = result else { break };
            let finished = Instant::now();
            self.counters.answered.fetch_add(1, Ordering::Relaxed);
            if result.is_err() {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
            if started < self.window.measure_start || finished > self.window.end {
                continue;
            }
            let mut tally = self.shard.lock().unwrap_or_else(PoisonError::into_inner);
            match result {
                Ok(()) => {
                    let micros = u64::try_from(finished.duration_since(started).as_micros())
                        .unwrap_or(u64::MAX);
                    tally.histogram.saturating_record(micros.max(1));
                }
                Err(Failure(name)) => *tally.errors.entry(name).or_insert(0) += 1,
            }
        }
    }

    /// Sends the next request; `None` when there is nothing to do.
    async fn request(&mut self) -> Option<Result<(), Failure>> {
        let Shape {
            workload,
            load_percent,
            ..
        } = self.shape;
        let op = self.keys.next_op(workload, load_percent, &mut self.rng)?;
        let result = match op {
            Op::Load(key) => self.conn.load(key).await,
            Op::Save(key) => self.conn.save(key, &self.written).await,
            Op::Create => self.conn.create(&self.written).await.map(drop),
            Op::Cycle(index) => {
                let key = self.keys.own(index)?;
                match self.conn.cycle(key, &self.written).await {
                    Ok(fresh) => {
                        self.keys.replace(index, fresh);
                        Ok(())
                    }
                    Err(failure) => Err(failure),
                }
            }
        };
        Some(result)
    }
}
