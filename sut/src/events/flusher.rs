//! The background flusher: every interval (or sooner, when the buffer asks) it takes the
//! buffer and writes it through the [`ProgressStore`] in chunks, each with an id that stays with
//! it across retries, so a chunk whose commit succeeded but whose reply was lost is not applied
//! twice. A chunk that fails stays in hand and is retried with backoff before anything newer is
//! written, so the database sees the events' effects in order and an outage loses nothing.
//!
//! A chunk the database refuses for its data (a value out of range, a constraint) is split in
//! halves until the row at fault stands alone; that row is logged with its key, counted in
//! `event_flush_rejected_rows_total` and set aside, and every other row is written. At shutdown
//! it flushes until the buffer is empty.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};
use tokio_util::sync::CancellationToken;

use super::buffer::{Entry, EventBuffer};
use super::store::{Applied, ProgressStore, StoreError};
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
    rejected_rows: IntCounter,
    already_applied: IntCounter,
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
            rejected_rows: register(
                registry,
                IntCounter::new(
                    "event_flush_rejected_rows_total",
                    "Rows the database refused for their data, isolated and set aside",
                )
                .expect("valid"),
            ),
            already_applied: register(
                registry,
                IntCounter::new(
                    "event_flush_batches_already_applied_total",
                    "Retried batches found committed by an earlier attempt (not applied again)",
                )
                .expect("valid"),
            ),
        }
    }
}

/// Runs the flusher until `shutdown` fires, then flushes what is left.
pub async fn run<S: ProgressStore>(
    buffer: Arc<EventBuffer<S::Update>>,
    store: Arc<S>,
    settings: FlushSettings,
    metrics: FlushMetrics,
    shutdown: CancellationToken,
) {
    let mut flusher = Flusher { buffer, store, settings, metrics, in_hand: VecDeque::new() };
    let mut ticker = tokio::time::interval(settings.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = Backoff::new();
    let mut last_pruned = Instant::now();
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
        if last_pruned.elapsed() >= PRUNE_EVERY {
            last_pruned = Instant::now();
            if let Err(e) = flusher.store.forget_old_batches().await {
                tracing::warn!(error = %e, "could not forget old batch ids; trying again later");
            }
        }
    }
    flusher.drain(settings.shutdown_timeout).await;
}

/// How often the ids of long-applied batches are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Rows written together, under one id for all their attempts.
struct Chunk<U> {
    id: i64,
    entries: Vec<Entry<U>>,
}

impl<U> Chunk<U> {
    fn new(entries: Vec<Entry<U>>) -> Self {
        Self { id: rand::random(), entries }
    }
}

struct Flusher<S: ProgressStore> {
    buffer: Arc<EventBuffer<S::Update>>,
    store: Arc<S>,
    settings: FlushSettings,
    metrics: FlushMetrics,
    /// Taken from the buffer, not yet written (oldest first).
    in_hand: VecDeque<Chunk<S::Update>>,
}

impl<S: ProgressStore> Flusher<S> {
    fn unwritten(&self) -> usize {
        self.in_hand.iter().map(|c| c.entries.len()).sum()
    }

    /// Writes what is in hand, then everything buffered. Err: something is still in hand.
    async fn flush_once(&mut self) -> Result<(), ()> {
        if self.in_hand.is_empty() {
            let size = self.settings.chunk_rows.max(1);
            let mut taken = self.buffer.take().into_iter().peekable();
            while taken.peek().is_some() {
                self.in_hand.push_back(Chunk::new(taken.by_ref().take(size).collect()));
            }
        }
        self.metrics.buffer_size.set(i64::try_from(self.buffer.len()).unwrap_or(i64::MAX));
        if self.in_hand.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let rows = self.unwritten();
        while let Some(chunk) = self.in_hand.front() {
            match self.store.apply(chunk.id, &chunk.entries).await {
                Ok(applied) => {
                    if applied == Applied::AlreadyApplied {
                        self.metrics.already_applied.inc();
                        tracing::info!(
                            batch = chunk.id,
                            "batch found committed by an earlier attempt; not applied again"
                        );
                    }
                    self.in_hand.pop_front();
                    self.buffer.set_in_flight(self.unwritten());
                }
                Err(StoreError::Rejected(e)) => self.isolate(&e),
                Err(e) => {
                    self.metrics.failures.inc();
                    tracing::warn!(error = %e, unwritten = self.unwritten(), "flush failed; keeping the batch and retrying");
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

    /// The front chunk was refused for its data (and rolled back): split it, or set aside the
    /// single row at fault.
    fn isolate(&mut self, error: &sqlx::Error) {
        let Some(mut chunk) = self.in_hand.pop_front() else { return };
        if chunk.entries.len() > 1 {
            let second = chunk.entries.split_off(chunk.entries.len() / 2);
            self.in_hand.push_front(Chunk::new(second));
            self.in_hand.push_front(Chunk::new(chunk.entries));
            return;
        }
        for entry in chunk.entries {
            self.metrics.rejected_rows.inc();
            tracing::error!(
                user_id = %entry.user_id,
                key = self.store.key_name(entry.key),
                update = ?entry.update,
                %error,
                "the database refused this row; it is set aside so every other row is written"
            );
        }
        self.buffer.set_in_flight(self.unwritten());
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
