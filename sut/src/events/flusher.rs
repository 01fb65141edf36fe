//! The background flusher: every interval (or sooner, when the buffer asks) it takes the
//! buffer and writes it through the [`ProgressStore`] in chunks. A chunk that fails stays in hand
//! and is retried with backoff before anything newer is written, so the database sees the events'
//! effects in order and an outage loses nothing. At shutdown it flushes until the buffer is empty.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use tokio_util::sync::CancellationToken;

use super::buffer::{Entry, EventBuffer};
use super::store::ProgressStore;
use crate::metrics::register;

/// How the flusher behaves.
#[derive(Debug, Clone, Copy)]
pub struct FlushSettings {
    /// Time between flushes.
    pub interval: Duration,
    /// Rows per write statement.
    pub chunk_rows: usize,
    /// How long the final flush at shutdown keeps retrying an unreachable database.
    pub shutdown_timeout: Duration,
}

impl Default for FlushSettings {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), chunk_rows: 5_000, shutdown_timeout: Duration::from_secs(30) }
    }
}

/// `event_buffer_*` metrics.
#[derive(Debug, Clone)]
pub struct FlushMetrics {
    /// `event_buffer_size`: entries waiting to be written.
    pub buffer_size: IntGauge,
    duration: Histogram,
    rows: Histogram,
    failures: IntCounter,
}

impl FlushMetrics {
    /// Registers the flush metrics.
    pub fn register(registry: &Registry) -> Self {
        let rows_buckets = vec![1.0, 10.0, 100.0, 1e3, 5e3, 1e4, 2.5e4, 5e4, 1e5, 2.5e5, 5e5];
        Self {
            buffer_size: register(
                registry,
                IntGauge::new("event_buffer_size", "Entries waiting to be written").expect("valid"),
            ),
            duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("event_buffer_flush_duration_seconds", "Time to write one flush")
                        .buckets(crate::metrics::LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid"),
            ),
            rows: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("event_buffer_flush_rows", "Rows written per flush").buckets(rows_buckets),
                )
                .expect("valid"),
            ),
            failures: register(
                registry,
                IntCounter::new("event_buffer_flush_failures_total", "Flush attempts that failed and will be retried")
                    .expect("valid"),
            ),
        }
    }
}

/// Runs the flusher until `shutdown` fires, then flushes what is left.
pub async fn run<S: ProgressStore>(
    buffer: Arc<EventBuffer>,
    store: Arc<S>,
    settings: FlushSettings,
    metrics: FlushMetrics,
    shutdown: CancellationToken,
) {
    let mut flusher = Flusher { buffer, store, settings, metrics, in_hand: Vec::new() };
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
            () = flusher.buffer.flush_wanted.notified() => {}
        }
        while flusher.flush_once().await.is_err() {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff.next()) => {}
            }
        }
        backoff = Backoff::new();
    }
    flusher.drain(settings.shutdown_timeout).await;
}

struct Flusher<S> {
    buffer: Arc<EventBuffer>,
    store: Arc<S>,
    settings: FlushSettings,
    metrics: FlushMetrics,
    /// Taken from the buffer, not yet written (oldest first).
    in_hand: Vec<Entry>,
}

impl<S: ProgressStore> Flusher<S> {
    /// Writes what is in hand, then everything buffered. Err: something is still in hand.
    async fn flush_once(&mut self) -> Result<(), ()> {
        if self.in_hand.is_empty() {
            self.in_hand = self.buffer.take();
        }
        self.metrics.buffer_size.set(i64::try_from(self.buffer.len()).unwrap_or(i64::MAX));
        if self.in_hand.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let rows = self.in_hand.len();
        while !self.in_hand.is_empty() {
            let chunk = self.in_hand.len().min(self.settings.chunk_rows.max(1));
            match self.store.apply(&self.in_hand[..chunk]).await {
                Ok(()) => {
                    self.in_hand.drain(..chunk);
                    self.buffer.set_in_flight(self.in_hand.len());
                }
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::warn!(error = %e, unwritten = self.in_hand.len(), "flush failed; keeping the batch and retrying");
                    return Err(());
                }
            }
        }
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        self.metrics.rows.observe(rows as f64);
        self.metrics.buffer_size.set(i64::try_from(self.buffer.len()).unwrap_or(i64::MAX));
        tracing::debug!(rows, elapsed = ?started.elapsed(), "flushed");
        Ok(())
    }

    /// Flushes until nothing is buffered, retrying failures until `timeout`.
    async fn drain(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut backoff = Backoff::new();
        while !(self.in_hand.is_empty() && self.buffer.is_empty()) {
            if self.flush_once().await.is_err() {
                if tokio::time::Instant::now() + backoff.peek() > deadline {
                    tracing::error!(
                        unwritten = self.buffer.len(),
                        "shutdown flush gave up: the database stayed unreachable; these updates are lost"
                    );
                    return;
                }
                tokio::time::sleep(backoff.next()).await;
            }
        }
        tracing::info!("buffer flushed at shutdown");
    }
}

/// Exponential backoff from 100 ms to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    fn peek(&self) -> Duration {
        self.0
    }

    fn next(&mut self) -> Duration {
        let current = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        current
    }
}
