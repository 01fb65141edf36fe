//! The challenge service's REST API (SPEC §3): the routes, their shared state, and the request
//! metrics. [`router`] builds the whole API under its base path;
//! [`services::challenge`](crate::services::challenge) serves it. Progress is read through the
//! event handler's [`Store`], whichever layout it is.

mod claim;

pub use claim::CLAIM_UPDATE_SQL;
pub mod error;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_json::json;
use sqlx::PgPool;

use crate::auth::Authenticator;
use crate::challenges::ChallengeConfig;
use crate::events::store::Store;
use crate::reward::RewardClient;
use error::ApiError;
use view::ViewTemplate;

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The challenge configuration.
    pub config: Arc<ChallengeConfig>,
    /// The database pool.
    pub pool: PgPool,
    /// Where progress is read from (and claims prepared), in the configured layout.
    pub store: Store,
    /// The `GET` response's configuration part, rendered once.
    pub view: Arc<ViewTemplate>,
    /// How callers are authenticated.
    pub auth: Authenticator,
    /// The reward platform client.
    pub rewards: RewardClient,
    /// The total time a claim may spend granting its reward.
    pub claim_budget: Duration,
    /// How long `/healthz` waits for the database.
    pub health_timeout: Duration,
}

#[derive(Debug, Clone)]
struct RequestMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl RequestMetrics {
    fn register(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "REST requests by route and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "REST request duration")
                .buckets(crate::metrics::LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        Self {
            requests: crate::metrics::register(registry, requests),
            duration: crate::metrics::register(registry, duration),
        }
    }
}

/// The API's routes under `base_path` (e.g. `/challenge`), with request metrics in `registry`;
/// a request still unanswered after `request_timeout` gets a 504. Every answer, unknown routes
/// and methods included, has the API's error body.
pub fn router(state: AppState, base_path: &str, registry: &Registry, request_timeout: Duration) -> Router {
    let api = Router::new()
        .route("/v1/challenges", get(list_challenges))
        .route("/v1/challenges/{challenge_id}/goals/{goal_id}/claim", post(claim_goal))
        .route("/healthz", get(healthz))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    let metrics = RequestMetrics::register(registry);
    let base = base_path.trim_end_matches('/');
    let routed = if base.is_empty() { api } else { Router::new().nest(base, api) };
    routed
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .layer(middleware::from_fn_with_state(metrics, record_request))
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route {}", uri.path()))
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed(method.to_string())
}

async fn deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(timeout).into_response(),
    }
}

async fn record_request(State(metrics): State<RequestMetrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics.duration.with_label_values(&[&method, &route]).observe(started.elapsed().as_secs_f64());
    metrics.requests.with_label_values(&[&method, &route, response.status().as_str()]).inc();
    response
}

async fn list_challenges(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = state.auth.authenticate(&headers)?;
    let progress = state.store.user_progress(&caller.user_id).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], state.view.render(&progress)).into_response())
}

async fn claim_goal(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = state.auth.authenticate(&headers)?;
    let Path((challenge_id, goal_id)) = path.map_err(|rejection| ApiError::InvalidArgument(rejection.body_text()))?;
    let goal = claim::find_goal(&state, &challenge_id, &goal_id)?;
    let response = claim::claim(&state, &caller, goal).await?;
    Ok(Json(response).into_response())
}

async fn healthz(State(state): State<AppState>) -> Result<Response, ApiError> {
    let ping = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(state.health_timeout, ping).await {
        Ok(Ok(_)) => Ok(Json(json!({"status": "ok"})).into_response()),
        Ok(Err(e)) => Err(ApiError::DatabaseUnavailable(e)),
        Err(_) => Err(ApiError::DatabaseUnavailable(sqlx::Error::PoolTimedOut)),
    }
}
