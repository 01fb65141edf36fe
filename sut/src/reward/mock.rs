//! The reward platform mock: the platform's entitlement and wallet-credit endpoints, answering
//! after an injected latency and failing at an injected rate, so claims can be tested against a
//! slow or failing platform.
//!
//! A failure is injected either before the grant (nothing granted) or after it (granted, but the
//! caller sees an error: the reply that was lost), in the share `failure_after_grant`. A request
//! carrying an `Idempotency-Key` that was granted before is answered with the first answer and
//! grants nothing. Every applied grant is kept in a ledger ([`MockStats::grants`], and
//! `GET /admin/grants`), so a harness can count grants per user and goal. The settings can be read
//! and changed while the mock runs (`GET`/`PUT /admin/settings`).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use prometheus::{IntCounterVec, Opts, Registry};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The header a grant's idempotency key travels in.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

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

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        match self {
            Latency::Fixed(d) => write!(f, "fixed:{}ms", ms(d)),
            Latency::Uniform(low, high) => write!(f, "uniform:{}ms..{}ms", ms(low), ms(high)),
        }
    }
}

/// How the mock behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MockSettings {
    /// Delay before every answer.
    pub latency: Latency,
    /// Fraction of requests that fail, 0.0–1.0.
    pub failure_rate: f64,
    /// The status failed requests get.
    pub failure_status: u16,
    /// The share of failures injected after granting (the grant applied, the reply an error),
    /// 0.0–1.0; the others fail before anything is granted.
    pub failure_after_grant: f64,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            latency: Latency::Uniform(Duration::from_millis(50), Duration::from_millis(200)),
            failure_rate: 0.0,
            failure_status: 503,
            failure_after_grant: 0.0,
        }
    }
}

impl MockSettings {
    /// Checks the ranges; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(format!("failureRate must be between 0 and 1, got {}", self.failure_rate));
        }
        if !(0.0..=1.0).contains(&self.failure_after_grant) {
            return Err(format!("failureAfterGrant must be between 0 and 1, got {}", self.failure_after_grant));
        }
        if StatusCode::from_u16(self.failure_status).is_err() || self.failure_status < 400 {
            return Err(format!("failureStatus must be an HTTP error status (400–599), got {}", self.failure_status));
        }
        Ok(())
    }
}

/// The settings as `/admin/settings` shows them; on `PUT` every field is optional.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SettingsBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_after_grant: Option<f64>,
}

impl SettingsBody {
    fn of(settings: &MockSettings) -> Self {
        Self {
            latency: Some(settings.latency.to_string()),
            failure_rate: Some(settings.failure_rate),
            failure_status: Some(settings.failure_status),
            failure_after_grant: Some(settings.failure_after_grant),
        }
    }

    fn apply_to(self, settings: &MockSettings) -> Result<MockSettings, String> {
        let mut next = *settings;
        if let Some(latency) = self.latency {
            next.latency = latency.parse().map_err(|e| format!("latency: {e}"))?;
        }
        next.failure_rate = self.failure_rate.unwrap_or(next.failure_rate);
        next.failure_status = self.failure_status.unwrap_or(next.failure_status);
        next.failure_after_grant = self.failure_after_grant.unwrap_or(next.failure_after_grant);
        next.validate()?;
        Ok(next)
    }
}

/// One line of the grant ledger: grants applied to one user for one reward under one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantRecord {
    /// The namespace in the path.
    pub namespace: String,
    /// The user id in the path (decoded).
    pub user_id: String,
    /// `ITEM` or `WALLET`.
    pub reward_type: &'static str,
    /// The item or currency.
    pub reward_id: String,
    /// The request's idempotency key, `""` without one.
    pub idempotency_key: String,
    /// Grants applied.
    pub applied: u64,
    /// Requests answered from an earlier grant of the same key (nothing granted).
    pub replayed: u64,
}

type LedgerKey = (String, String, &'static str, String, String);

#[derive(Debug, Default)]
struct Ledger {
    records: HashMap<LedgerKey, GrantRecord>,
    /// The first answer to each idempotency key.
    answers: HashMap<String, (StatusCode, Value)>,
    wallets: HashMap<(String, String, String), i64>,
}

/// Counters and the grant ledger, readable in-process by a test or the harness.
#[derive(Debug, Default)]
pub struct MockStats {
    /// Requests received (including injected failures).
    pub requests: AtomicU64,
    /// Requests answered with an injected failure.
    pub failures: AtomicU64,
    ledger: Mutex<Ledger>,
}

impl MockStats {
    /// Every (user, reward, key) granted to, with its counts, sorted.
    pub fn grants(&self) -> Vec<GrantRecord> {
        let mut records: Vec<GrantRecord> = self.lock().records.values().cloned().collect();
        records.sort_by(|a, b| {
            (&a.namespace, &a.user_id, &a.reward_id, &a.idempotency_key).cmp(&(
                &b.namespace,
                &b.user_id,
                &b.reward_id,
                &b.idempotency_key,
            ))
        });
        records
    }

    /// Grants applied in all.
    pub fn applied(&self) -> u64 {
        self.lock().records.values().map(|r| r.applied).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct MockState {
    settings: RwLock<MockSettings>,
    stats: Arc<MockStats>,
    requests_total: IntCounterVec,
}

impl MockState {
    fn settings(&self) -> MockSettings {
        *self.settings.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The mock's router, its counters, and (in `registry`) `reward_requests_total{kind,outcome}`.
pub fn router(settings: MockSettings, registry: &Registry) -> (Router, Arc<MockStats>) {
    let stats = Arc::new(MockStats::default());
    let requests_total = crate::metrics::register(
        registry,
        IntCounterVec::new(Opts::new("reward_requests_total", "Reward grant requests"), &["kind", "outcome"])
            .expect("valid metric"),
    );
    let state = Arc::new(MockState { settings: RwLock::new(settings), stats: stats.clone(), requests_total });
    let router = Router::new()
        .route("/platform/admin/namespaces/{namespace}/users/{user_id}/entitlements", post(grant_entitlements))
        .route("/platform/admin/namespaces/{namespace}/users/{user_id}/wallets/{currency}/credit", put(credit_wallet))
        .route("/admin/settings", get(read_settings).put(change_settings))
        .route("/admin/grants", get(list_grants))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { platform_error(StatusCode::NOT_FOUND, 20404, "no such endpoint") })
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

/// When an injected failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    None,
    BeforeGrant,
    AfterGrant,
}

/// Waits the injected latency, then decides whether and when this request fails.
async fn inject(state: &MockState) -> (Failure, StatusCode) {
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let settings = state.settings();
    tokio::time::sleep(settings.latency.sample()).await;
    let status = StatusCode::from_u16(settings.failure_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut rng = rand::rng();
    if settings.failure_rate <= 0.0 || !rng.random_bool(settings.failure_rate.min(1.0)) {
        return (Failure::None, status);
    }
    state.stats.failures.fetch_add(1, Ordering::Relaxed);
    let after = settings.failure_after_grant > 0.0 && rng.random_bool(settings.failure_after_grant.min(1.0));
    (if after { Failure::AfterGrant } else { Failure::BeforeGrant }, status)
}

fn platform_error(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"errorCode": code, "errorMessage": message}))).into_response()
}

/// What one grant request asks for.
struct Grant {
    namespace: String,
    user_id: String,
    reward_type: &'static str,
    reward_id: String,
    key: String,
}

/// Applies `grant` once per idempotency key (`apply` changes the platform's state and builds the
/// answer), injecting the failure drawn for this request; records it in the ledger.
async fn granted(
    state: &MockState,
    kind: &str,
    grant: Grant,
    apply: impl FnOnce(&mut Ledger) -> (StatusCode, Value),
) -> Response {
    let (failure, failure_status) = inject(state).await;
    let outcome = |o: &str| state.requests_total.with_label_values(&[kind, o]).inc();
    if failure == Failure::BeforeGrant {
        outcome("injected_failure");
        return platform_error(failure_status, 20000, "injected failure");
    }
    let (status, body) = {
        let mut ledger = state.stats.lock();
        let replay = if grant.key.is_empty() { None } else { ledger.answers.get(&grant.key).cloned() };
        let replayed = replay.is_some();
        let answer = match replay {
            Some(answer) => answer,
            None => {
                let answer = apply(&mut ledger);
                if !grant.key.is_empty() {
                    ledger.answers.insert(grant.key.clone(), answer.clone());
                }
                answer
            }
        };
        let id = (grant.namespace, grant.user_id, grant.reward_type, grant.reward_id, grant.key);
        let record = ledger.records.entry(id.clone()).or_insert_with(|| GrantRecord {
            namespace: id.0,
            user_id: id.1,
            reward_type: id.2,
            reward_id: id.3,
            idempotency_key: id.4,
            applied: 0,
            replayed: 0,
        });
        if replayed {
            record.replayed += 1;
        } else {
            record.applied += 1;
        }
        answer
    };
    if failure == Failure::AfterGrant {
        outcome("granted_then_failed");
        return platform_error(failure_status, 20000, "injected failure after granting");
    }
    outcome("granted");
    (status, Json(body)).into_response()
}

fn idempotency_key(headers: &HeaderMap) -> String {
    headers.get(IDEMPOTENCY_KEY).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

async fn grant_entitlements(
    State(state): State<Arc<MockState>>,
    Path((namespace, user_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<Vec<EntitlementGrant>>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(grants)) = body else {
        return platform_error(StatusCode::BAD_REQUEST, 20002, "invalid entitlement grant body");
    };
    if grants.is_empty() || grants.iter().any(|g| g.quantity <= 0) {
        return platform_error(StatusCode::UNPROCESSABLE_ENTITY, 20002, "quantity must be positive");
    }
    let reward_id = grants.iter().map(|g| g.item_id.as_str()).collect::<Vec<_>>().join(",");
    let grant = Grant {
        namespace: namespace.clone(),
        user_id: user_id.clone(),
        reward_type: "ITEM",
        reward_id,
        key: idempotency_key(&headers),
    };
    granted(&state, "entitlement", grant, |_| {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let granted: Vec<Value> = grants
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
        (StatusCode::CREATED, Value::Array(granted))
    })
    .await
}

async fn credit_wallet(
    State(state): State<Arc<MockState>>,
    Path((namespace, user_id, currency)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Json<CreditRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(credit)) = body else {
        return platform_error(StatusCode::BAD_REQUEST, 20002, "invalid credit body");
    };
    if credit.amount <= 0 {
        return platform_error(StatusCode::UNPROCESSABLE_ENTITY, 20002, "amount must be positive");
    }
    let grant = Grant {
        namespace: namespace.clone(),
        user_id: user_id.clone(),
        reward_type: "WALLET",
        reward_id: currency.clone(),
        key: idempotency_key(&headers),
    };
    granted(&state, "wallet", grant, |ledger| {
        let balance = ledger.wallets.entry((namespace.clone(), user_id.clone(), currency.clone())).or_insert(0);
        *balance += credit.amount;
        let wallet = json!({
            "id": format!("{namespace}-{user_id}-{currency}"), "namespace": namespace, "userId": user_id,
            "currencyCode": currency, "balance": *balance, "status": "ACTIVE",
        });
        (StatusCode::OK, wallet)
    })
    .await
}

async fn read_settings(State(state): State<Arc<MockState>>) -> Json<SettingsBody> {
    Json(SettingsBody::of(&state.settings()))
}

async fn change_settings(
    State(state): State<Arc<MockState>>,
    body: Result<Json<SettingsBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let change = match body {
        Ok(Json(change)) => change,
        Err(rejection) => return platform_error(StatusCode::BAD_REQUEST, 20002, &rejection.body_text()),
    };
    let mut settings = state.settings.write().unwrap_or_else(PoisonError::into_inner);
    match change.apply_to(&settings) {
        Ok(next) => {
            *settings = next;
            tracing::info!(settings = ?next, "reward mock settings changed");
            Json(SettingsBody::of(&next)).into_response()
        }
        Err(problem) => platform_error(StatusCode::BAD_REQUEST, 20002, &problem),
    }
}

async fn list_grants(State(state): State<Arc<MockState>>) -> Json<Value> {
    Json(json!({ "grants": state.stats.grants() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_specs_parse_and_print_back() {
        assert_eq!("150ms".parse(), Ok(Latency::Fixed(Duration::from_millis(150))));
        assert_eq!("fixed:2s".parse(), Ok(Latency::Fixed(Duration::from_secs(2))));
        assert_eq!(
            "uniform:50ms..200ms".parse(),
            Ok(Latency::Uniform(Duration::from_millis(50), Duration::from_millis(200)))
        );
        assert!("uniform:200ms..50ms".parse::<Latency>().is_err());
        assert!("soon".parse::<Latency>().is_err());
        for text in ["fixed:4500ms", "uniform:50ms..200ms", "fixed:0.5ms"] {
            assert_eq!(text.parse::<Latency>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn uniform_samples_stay_in_bounds() {
        let latency = Latency::Uniform(Duration::from_millis(50), Duration::from_millis(200));
        for _ in 0..1000 {
            let d = latency.sample();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(200));
        }
    }

    #[test]
    fn a_settings_change_names_the_field_it_refuses() {
        let base = MockSettings::default();
        let change = |json: &str| serde_json::from_str::<SettingsBody>(json).unwrap().apply_to(&base);
        let next = change(r#"{"latency":"fixed:4.5s","failureRate":0.5}"#).unwrap();
        assert_eq!((next.latency, next.failure_rate), (Latency::Fixed(Duration::from_millis(4500)), 0.5));
        assert_eq!(next.failure_status, 503, "fields not named keep their value");
        assert!(change(r#"{"failureRate":2}"#).unwrap_err().contains("failureRate"));
        assert!(change(r#"{"failureAfterGrant":-1}"#).unwrap_err().contains("failureAfterGrant"));
        assert!(change(r#"{"failureStatus":200}"#).unwrap_err().contains("failureStatus"));
        assert!(change(r#"{"latency":"soon"}"#).unwrap_err().starts_with("latency:"));
        assert!(serde_json::from_str::<SettingsBody>(r#"{"failure_rate":1}"#).is_err(), "unknown fields refused");
    }
}
