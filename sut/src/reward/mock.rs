//! The reward platform mock: the platform's entitlement and wallet-credit endpoints, answering
//! after an injected latency and failing at an injected rate, so claims can be tested against a
//! slow or failing platform.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use prometheus::{IntCounterVec, Opts, Registry};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

/// The injected response latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    /// Always the same delay.
    Fixed(Duration),
    /// Uniformly distributed between the two bounds.
    Uniform(Duration, Duration),
}

impl Latency {
    fn sample(self) -> Duration {
        match self {
            Latency::Fixed(d) => d,
            Latency::Uniform(low, high) if high > low => rand::rng().random_range(low..=high),
            Latency::Uniform(low, _) => low,
        }
    }
}

impl FromStr for Latency {
    type Err = String;

    /// `150ms`, `fixed:150ms` or `uniform:50ms..200ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |s: &str| {
            crate::duration::parse(s.trim()).ok_or_else(|| format!("'{s}' is not a duration like 50ms or 1.5s"))
        };
        if let Some(range) = text.strip_prefix("uniform:") {
            let (low, high) = range
                .split_once("..")
                .ok_or_else(|| format!("'{text}': expected uniform:LOW..HIGH, e.g. uniform:50ms..200ms"))?;
            let (low, high) = (parse(low)?, parse(high)?);
            if high < low {
                return Err(format!("'{text}': the upper bound is below the lower one"));
            }
            return Ok(Latency::Uniform(low, high));
        }
        Ok(Latency::Fixed(parse(text.strip_prefix("fixed:").unwrap_or(text))?))
    }
}

/// How the mock behaves.
#[derive(Debug, Clone, Copy)]
pub struct MockSettings {
    /// Delay before every answer.
    pub latency: Latency,
    /// Fraction of requests that fail, 0.0–1.0.
    pub failure_rate: f64,
    /// The status failed requests get.
    pub failure_status: u16,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            latency: Latency::Uniform(Duration::from_millis(50), Duration::from_millis(200)),
            failure_rate: 0.0,
            failure_status: 503,
        }
    }
}

/// Counters a test or the harness can read in-process.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Requests received (including injected failures).
    pub requests: AtomicU64,
    /// Requests answered with an injected failure.
    pub failures: AtomicU64,
}

struct MockState {
    settings: MockSettings,
    stats: Arc<MockStats>,
    wallets: std::sync::Mutex<HashMap<(String, String, String), i64>>,
    requests_total: IntCounterVec,
}

/// The mock's router, its counters, and (in `registry`) `reward_requests_total{kind,outcome}`.
pub fn router(settings: MockSettings, registry: &Registry) -> (Router, Arc<MockStats>) {
    let stats = Arc::new(MockStats::default());
    let requests_total = crate::metrics::register(
        registry,
        IntCounterVec::new(Opts::new("reward_requests_total", "Reward grant requests"), &["kind", "outcome"])
            .expect("valid metric"),
    );
    let state = Arc::new(MockState { settings, stats: stats.clone(), wallets: Default::default(), requests_total });
    let router = Router::new()
        .route("/platform/admin/namespaces/{namespace}/users/{user_id}/entitlements", post(grant_entitlements))
        .route("/platform/admin/namespaces/{namespace}/users/{user_id}/wallets/{currency}/credit", put(credit_wallet))
        .route("/healthz", axum::routing::get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(state);
    (router, stats)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntitlementGrant {
    item_id: String,
    item_namespace: String,
    quantity: i64,
}

#[derive(Debug, Deserialize)]
struct CreditRequest {
    amount: i64,
}

/// Waits the injected latency, then decides whether this request fails.
async fn inject(state: &MockState, kind: &str) -> Option<Response> {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(state.settings.latency.sample()).await;
    let fail = state.settings.failure_rate > 0.0 && rand::rng().random_bool(state.settings.failure_rate.min(1.0));
    if fail {
        state.stats.failures.fetch_add(1, Ordering::Relaxed);
        state.requests_total.with_label_values(&[kind, "injected_failure"]).inc();
        let status = StatusCode::from_u16(state.settings.failure_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return Some(platform_error(status, 20000, "injected failure"));
    }
    state.requests_total.with_label_values(&[kind, "granted"]).inc();
    None
}

fn platform_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"errorCode": code, "errorMessage": message}))).into_response()
}

async fn grant_entitlements(
    State(state): State<Arc<MockState>>,
    Path((namespace, user_id)): Path<(String, String)>,
    body: Result<Json<Vec<EntitlementGrant>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(failure) = inject(&state, "entitlement").await {
        return failure;
    }
    let Ok(Json(grants)) = body else {
        return platform_error(StatusCode::BAD_REQUEST, 20002, "invalid entitlement grant body");
    };
    if grants.is_empty() || grants.iter().any(|g| g.quantity <= 0) {
        return platform_error(StatusCode::UNPROCESSABLE_ENTITY, 20002, "quantity must be positive");
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let granted: Vec<_> = grants
        .iter()
        .map(|g| {
            json!({
                "id": format!("{:032x}", rand::rng().random::<u128>()),
                "namespace": namespace, "userId": user_id, "itemId": g.item_id,
                "itemNamespace": g.item_namespace, "quantity": g.quantity,
                "status": "ACTIVE", "grantedAt": now,
            })
        })
        .collect();
    (StatusCode::CREATED, Json(granted)).into_response()
}

async fn credit_wallet(
    State(state): State<Arc<MockState>>,
    Path((namespace, user_id, currency)): Path<(String, String, String)>,
    body: Result<Json<CreditRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(failure) = inject(&state, "wallet").await {
        return failure;
    }
    let Ok(Json(credit)) = body else {
        return platform_error(StatusCode::BAD_REQUEST, 20002, "invalid credit body");
    };
    if credit.amount <= 0 {
        return platform_error(StatusCode::UNPROCESSABLE_ENTITY, 20002, "amount must be positive");
    }
    let balance = {
        let mut wallets = state.wallets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let balance = wallets.entry((namespace.clone(), user_id.clone(), currency.clone())).or_insert(0);
        *balance += credit.amount;
        *balance
    };
    Json(json!({
        "id": format!("{namespace}-{user_id}-{currency}"), "namespace": namespace, "userId": user_id,
        "currencyCode": currency, "balance": balance, "status": "ACTIVE",
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_specs_parse() {
        assert_eq!("150ms".parse(), Ok(Latency::Fixed(Duration::from_millis(150))));
        assert_eq!("fixed:2s".parse(), Ok(Latency::Fixed(Duration::from_secs(2))));
        assert_eq!(
            "uniform:50ms..200ms".parse(),
            Ok(Latency::Uniform(Duration::from_millis(50), Duration::from_millis(200)))
        );
        assert!("uniform:200ms..50ms".parse::<Latency>().is_err());
        assert!("soon".parse::<Latency>().is_err());
    }

    #[test]
    fn uniform_samples_stay_in_bounds() {
        let latency = Latency::Uniform(Duration::from_millis(50), Duration::from_millis(200));
        for _ in 0..1000 {
            let d = latency.sample();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(200));
        }
    }
}
