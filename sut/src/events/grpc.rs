//! The two `OnMessage` services the platform calls. Each call validates its event, turns it into
//! per-goal updates, buffers them and returns; the flusher does the database work.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use proto::account::UserLoggedIn;
use proto::account::user_authentication_user_logged_in_service_server::UserAuthenticationUserLoggedInService;
use proto::statistic::StatItemUpdated;
use proto::statistic::statistic_stat_item_updated_service_server::StatisticStatItemUpdatedService;
use tonic::{Request, Response, Status};

use super::buffer::EventBuffer;
use super::update::{self, StatValues};
use crate::challenges::ChallengeConfig;
use crate::metrics::register;

/// `events_*` metrics.
#[derive(Debug, Clone)]
pub struct EventMetrics {
    received: IntCounterVec,
    processed: IntCounterVec,
    rejected: IntCounterVec,
    duration: Histogram,
}

impl EventMetrics {
    /// Registers the event metrics.
    pub fn register(registry: &Registry) -> Self {
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
#[derive(Debug, Clone)]
pub struct EventService {
    config: Arc<ChallengeConfig>,
    buffer: Arc<EventBuffer>,
    namespace: Arc<str>,
    full_wait: Duration,
    metrics: EventMetrics,
}

const LOGIN: &str = "login";
const STAT: &str = "stat";

impl EventService {
    /// Handles events for `namespace` into `buffer`; a full buffer is waited on for `full_wait`.
    pub fn new(
        config: Arc<ChallengeConfig>,
        buffer: Arc<EventBuffer>,
        namespace: &str,
        full_wait: Duration,
        metrics: EventMetrics,
    ) -> Self {
        Self { config, buffer, namespace: namespace.into(), full_wait, metrics }
    }

    /// Common path: namespace filter, then buffer the updates `make` builds.
    async fn accept(
        &self,
        event_type: &'static str,
        namespace: &str,
        user_id: &str,
        make: impl FnOnce(&ChallengeConfig, chrono::NaiveDateTime) -> Vec<(crate::challenges::GoalRef, update::Update)>,
    ) -> Result<Response<()>, Status> {
        if !namespace.is_empty() && namespace != &*self.namespace {
            self.metrics.rejected.with_label_values(&[event_type, "other_namespace"]).inc();
            return Ok(Response::new(()));
        }
        let now = Utc::now().naive_utc();
        let updates = make(&self.config, now);
        let user: Arc<str> = user_id.into();
        match self.buffer.record(&user, &self.namespace, updates, now, self.full_wait).await {
            Ok(()) => {
                self.metrics.processed.with_label_values(&[event_type]).inc();
                Ok(Response::new(()))
            }
            Err(full) => {
                self.metrics.rejected.with_label_values(&[event_type, "buffer_full"]).inc();
                Err(Status::resource_exhausted(full.to_string()))
            }
        }
    }

    fn invalid(&self, event_type: &'static str, message: &str) -> Status {
        self.metrics.rejected.with_label_values(&[event_type, "invalid"]).inc();
        Status::invalid_argument(message)
    }
}

fn first_non_empty<'a>(candidates: &[&'a str]) -> &'a str {
    candidates.iter().copied().find(|s| !s.is_empty()).unwrap_or("")
}

#[tonic::async_trait]
impl UserAuthenticationUserLoggedInService for EventService {
    async fn on_message(&self, request: Request<UserLoggedIn>) -> Result<Response<()>, Status> {
        let started = Instant::now();
        self.metrics.received.with_label_values(&[LOGIN]).inc();
        let event = request.into_inner();
        let account = event.payload.as_ref().and_then(|p| p.user_account.as_ref());
        let user_id = first_non_empty(&[&event.user_id, account.map_or("", |a| a.user_id.as_str())]);
        if user_id.is_empty() {
            return Err(self.invalid(LOGIN, "login event has no user id (user_id or payload.user_account.user_id)"));
        }
        let namespace = first_non_empty(&[&event.namespace, account.map_or("", |a| a.namespace.as_str())]);
        let result = self.accept(LOGIN, namespace, user_id, update::for_login).await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        result
    }
}

#[tonic::async_trait]
impl StatisticStatItemUpdatedService for EventService {
    async fn on_message(&self, request: Request<StatItemUpdated>) -> Result<Response<()>, Status> {
        let started = Instant::now();
        self.metrics.received.with_label_values(&[STAT]).inc();
        let event = request.into_inner();
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
        let namespace = first_non_empty(&[&event.namespace, &item.namespace]);
        let values = StatValues { latest_value: item.latest_value, inc: item.inc };
        let result = self
            .accept(STAT, namespace, user_id, |config, now| update::for_stat(config, &item.stat_code, values, now))
            .await;
        self.metrics.duration.observe(started.elapsed().as_secs_f64());
        result
    }
}
