//! The two `OnMessage` services the platform calls. Each call validates its event, turns it into
//! the store's updates, buffers them and returns; the flusher does the database work.
//!
//! Validation at the door: what the database could not store, or no goal could use, is refused
//! with `INVALID_ARGUMENT` and the reason (a missing user id, an id longer than the schema's 100
//! characters or with a control character, a non-finite value or one beyond ±2^53), so no
//! accepted event can make a flush fail. Values within range are clamped where the schema needs
//! it (progress is an `int`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use proto::account::UserLoggedIn;
use proto::account::user_authentication_user_logged_in_service_server::UserAuthenticationUserLoggedInService;
use proto::statistic::StatItemUpdated;
use proto::statistic::statistic_stat_item_updated_service_server::StatisticStatItemUpdatedService;
use tonic::{Request, Response, Status};

use super::buffer::{EventBuffer, Refused};
use super::store::ProgressStore;
use super::update::{MAX_EVENT_VALUE, StatValues};
use crate::challenges::{IdProblem, MAX_ID_CHARS, id_problem};
use crate::metrics::register;

/// `events_*` metrics.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    received: IntCounterVec,
    processed: IntCounterVec,
    rejected: IntCounterVec,
    duration: Histogram,
}

/// Why an event is refused or skipped: `events_rejected_total`'s `reason` values.
const REJECTION_REASONS: [&str; 4] = [OTHER_NAMESPACE, BUFFER_FULL, SHUTTING_DOWN, INVALID];
const OTHER_NAMESPACE: &str = "other_namespace";
const BUFFER_FULL: &str = "buffer_full";
const SHUTTING_DOWN: &str = "shutting_down";
const INVALID: &str = "invalid";

impl EventMetrics {
    /// Registers the event metrics, every known series at zero (so a dashboard or an alert sees
    /// each one before its first event).
    pub fn register(registry: &Registry) -> Self {
        let metrics = Self::register_empty(registry);
        for event_type in [LOGIN, STAT] {
            metrics.received.with_label_values(&[event_type]);
            metrics.processed.with_label_values(&[event_type]);
            for reason in REJECTION_REASONS {
                metrics.rejected.with_label_values(&[event_type, reason]);
            }
        }
        metrics
    }

    fn register_empty(registry: &Registry) -> Self {
        Self {
            received: register(
                registry,
                IntCounterVec::new(Opts::new("events_received_total", "OnMessage calls received"), &["event_type"])
                    .expect("valid"),
            ),
            processed: register(
                registry,
                IntCounterVec::new(
                    Opts::new("events_processed_total", "Events accepted into the buffer"),
                    &["event_type"],
                )
                .expect("valid"),
            ),
            rejected: register(
                registry,
                IntCounterVec::new(
                    Opts::new("events_rejected_total", "Events refused or skipped, by reason"),
                    &["event_type", "reason"],
                )
                .expect("valid"),
            ),
            duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("event_processing_duration_seconds", "OnMessage handling time")
                        .buckets(crate::metrics::LATENCY_BUCKETS.to_vec()),
                )
                .expect("valid"),
            ),
        }
    }
}

/// Both `OnMessage` services (cheap to clone; one per tonic service).
#[derive(Debug)]
pub struct EventService<S: ProgressStore> {
    store: Arc<S>,
    buffer: Arc<EventBuffer<S::Update>>,
    namespace: Arc<str>,
    full_wait: Duration,
    metrics: EventMetrics,
    /// Every event received, kept forever: a deliberate leak, only with `--test-leak-events`.
    leak: Option<Arc<std::sync::Mutex<Vec<String>>>>,
}

impl<S: ProgressStore> Clone for EventService<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            buffer: self.buffer.clone(),
            namespace: self.namespace.clone(),
            full_wait: self.full_wait,
            metrics: self.metrics.clone(),
            leak: self.leak.clone(),
        }
    }
}

const LOGIN: &str = "login";
const STAT: &str = "stat";

impl<S: ProgressStore> EventService<S> {
    /// Handles events for `namespace` into `buffer`, with `store`'s updates; a full buffer is
    /// waited on for `full_wait`.
    pub fn new(
        store: Arc<S>,
        buffer: Arc<EventBuffer<S::Update>>,
        namespace: &str,
        full_wait: Duration,
        metrics: EventMetrics,
    ) -> Self {
        Self { store, buffer, namespace: namespace.into(), full_wait, metrics, leak: None }
    }

    /// The same service, keeping a copy of every event it receives and never freeing it: the
    /// deliberate leak the harness's soak test must flag.
    pub fn leaking_every_event(self) -> Self {
        Self { leak: Some(Arc::default()), ..self }
    }

    fn keep(&self, event: &impl std::fmt::Debug) {
        if let Some(leak) = &self.leak {
            let copy = format!("{event:?}");
            leak.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(copy);
        }
    }

    /// Common path: namespace filter, then buffer the updates `make` builds.
    async fn accept(
        &self,
        event_type: &'static str,
        namespace: &str,
        user_id: &str,
        make: impl FnOnce(&S, chrono::NaiveDateTime) -> Vec<(u32, S::Update)>,
    ) -> Result<Response<()>, Status> {
        if !namespace.is_empty() && namespace != &*self.namespace {
            self.metrics.rejected.with_label_values(&[event_type, OTHER_NAMESPACE]).inc();
            return Ok(Response::new(()));
        }
        let now = Utc::now().naive_utc();
        let updates = make(&self.store, now);
        let user: Arc<str> = user_id.into();
        match self.buffer.record(&user, &self.namespace, updates, now, self.full_wait).await {
            Ok(()) => {
                self.metrics.processed.with_label_values(&[event_type]).inc();
                Ok(Response::new(()))
            }
            Err(full @ Refused::Full { .. }) => {
                self.metrics.rejected.with_label_values(&[event_type, BUFFER_FULL]).inc();
                Err(Status::resource_exhausted(full.to_string()))
            }
            Err(Refused::Closed) => {
                self.metrics.rejected.with_label_values(&[event_type, SHUTTING_DOWN]).inc();
                Err(Status::unavailable("the event handler is shutting down; retry"))
            }
        }
    }

    fn invalid(&self, event_type: &'static str, message: &str) -> Status {
        self.metrics.rejected.with_label_values(&[event_type, INVALID]).inc();
        Status::invalid_argument(message)
    }
}

fn first_non_empty<'a>(candidates: &[&'a str]) -> &'a str {
    candidates.iter().copied().find(|s| !s.is_empty()).unwrap_or("")
}

/// Why an id from an event cannot be stored, if it cannot.
fn check_id(field: &str, value: &str) -> Result<(), String> {
    match id_problem(value) {
        Some(IdProblem::TooLong(chars)) => {
            Err(format!("{field} has {chars} characters; at most {MAX_ID_CHARS} are stored"))
        }
        Some(IdProblem::Control(c)) => Err(format!("{field} contains the control character U+{:04X}", u32::from(c))),
        None => Ok(()),
    }
}

/// Why a stat value cannot be used, if it cannot.
fn check_value(field: &str, value: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("{field} is {value}; a finite number is required"));
    }
    if value.abs() > MAX_EVENT_VALUE {
        return Err(format!("{field} is {value:e}, out of range (at most ±2^53)"));
    }
    Ok(())
}

#[tonic::async_trait]
impl<S: ProgressStore> UserAuthenticationUserLoggedInService for EventService<S> {
    async fn on_message(&self, request: Request<UserLoggedIn>) -> Result<Response<()>, Status> {
        let started = Instant::now();
        self.metrics.received.with_label_values(&[LOGIN]).inc();
        let event = request.into_inner();
        self.keep(&event);
        let account = event.payload.as_ref().and_then(|p| p.user_account.as_ref());
        let user_id = first_non_empty(&[&event.user_id, account.map_or("", |a| a.user_id.as_str())]);
        if user_id.is_empty() {
            return Err(self.invalid(LOGIN, "login event has no user id (user_id or payload.user_account.user_id)"));
        }
        if let Err(reason) = check_id("login event: user id", user_id) {
            return Err(self.invalid(LOGIN, &reason));
        }
        let namespace = first_non_empty(&[&event.namespace, account.map_or("", |a| a.namespace.as_str())]);
        let result = self.accept(LOGIN, namespace, user_id, |store, now| store.login_updates(now)).await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        result
    }
}

#[tonic::async_trait]
impl<S: ProgressStore> StatisticStatItemUpdatedService for EventService<S> {
    async fn on_message(&self, request: Request<StatItemUpdated>) -> Result<Response<()>, Status> {
        let started = Instant::now();
        self.metrics.received.with_label_values(&[STAT]).inc();
        let event = request.into_inner();
        self.keep(&event);
        let Some(item) = event.payload.as_ref() else {
            return Err(self.invalid(STAT, "stat event has no payload"));
        };
        let user_id = first_non_empty(&[&event.user_id, &item.user_id]);
        if user_id.is_empty() {
            return Err(self.invalid(STAT, "stat event has no user id (user_id or payload.user_id)"));
        }
        if item.stat_code.is_empty() {
            return Err(self.invalid(STAT, "stat event has no stat code (payload.stat_code)"));
        }
        let checked = check_id("stat event: user id", user_id)
            .and_then(|()| check_id("stat event: stat code", &item.stat_code))
            .and_then(|()| check_value("stat event: latest_value", item.latest_value))
            .and_then(|()| check_value("stat event: inc", item.inc));
        if let Err(reason) = checked {
            return Err(self.invalid(STAT, &reason));
        }
        let namespace = first_non_empty(&[&event.namespace, &item.namespace]);
        let values = StatValues { latest_value: item.latest_value, inc: item.inc };
        let result =
            self.accept(STAT, namespace, user_id, |store, now| store.stat_updates(&item.stat_code, values, now)).await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        result
    }
}
