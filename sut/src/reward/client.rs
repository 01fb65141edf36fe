//! Granting a reward over HTTP, with production's retry policy: up to 3 retries on retryable
//! failures (timeouts, 408, 429, 5xx) with exponential backoff from 500 ms, all inside the
//! claim's time budget. 400/401/403/404/409/422 are final.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use crate::challenges::{Reward, RewardType};

/// How grants are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff; each next one doubles.
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 3, initial_backoff: Duration::from_millis(500) }
    }
}

/// Why a grant failed. Every variant becomes a 502 at the API.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The platform refused with a final status.
    #[error("reward platform refused the grant: HTTP {status}: {body}")]
    Refused {
        /// The final status.
        status: u16,
        /// The platform's error body.
        body: String,
    },
    /// Retryable failures until the retries ran out.
    #[error("reward platform failed {attempts} times; last: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The claim's time budget ran out.
    #[error("reward grant exceeded the claim budget after {attempts} attempt(s); last: {last}")]
    BudgetExceeded {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// An HTTP client for the reward platform's admin APIs.
#[derive(Debug, Clone)]
pub struct RewardClient {
    http: reqwest::Client,
    base_url: String,
    policy: RetryPolicy,
}

enum Attempt {
    Done,
    Retry(String),
    Final(GrantError),
}

impl RewardClient {
    /// A client for the platform at `base_url` (e.g. `http://127.0.0.1:8090`).
    pub fn new(base_url: &str, policy: RetryPolicy) -> Self {
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("a plain HTTP client builds");
        Self { http, base_url: base_url.trim_end_matches('/').to_owned(), policy }
    }

    /// Grants `reward` to the user, retrying as the policy allows, finishing before `deadline`.
    pub async fn grant(
        &self,
        namespace: &str,
        user_id: &str,
        reward: &Reward,
        deadline: Instant,
    ) -> Result<(), GrantError> {
        let mut backoff = self.policy.initial_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match self.attempt(namespace, user_id, reward, deadline).await {
                Attempt::Done => return Ok(()),
                Attempt::Final(error) => return Err(error),
                Attempt::Retry(last) => last,
            };
            if attempts > self.policy.max_retries {
                return Err(GrantError::RetriesExhausted { attempts, last });
            }
            if Instant::now() + backoff >= deadline {
                return Err(GrantError::BudgetExceeded { attempts, last });
            }
            tracing::debug!(attempts, ?backoff, %last, "retrying reward grant");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    async fn attempt(&self, namespace: &str, user_id: &str, reward: &Reward, deadline: Instant) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Final(GrantError::BudgetExceeded { attempts: 0, last: "no time left".into() });
        }
        let request = match reward.reward_type {
            RewardType::Item => self
                .http
                .post(format!("{}/platform/admin/namespaces/{namespace}/users/{user_id}/entitlements", self.base_url))
                .json(
                    &json!([{ "itemId": reward.reward_id, "itemNamespace": namespace, "quantity": reward.quantity }]),
                ),
            RewardType::Wallet => self
                .http
                .put(format!(
                    "{}/platform/admin/namespaces/{namespace}/users/{user_id}/wallets/{}/credit",
                    self.base_url, reward.reward_id
                ))
                .json(&json!({ "amount": reward.quantity })),
        };
        match request.timeout(remaining).send().await {
            Ok(response) if response.status().is_success() => Attempt::Done,
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                if is_retryable(status) {
                    Attempt::Retry(format!("HTTP {status}: {body}"))
                } else {
                    Attempt::Final(GrantError::Refused { status: status.as_u16(), body })
                }
            }
            Err(e) if e.is_timeout() => Attempt::Final(GrantError::BudgetExceeded {
                attempts: 0,
                last: "request timed out at the claim budget".into(),
            }),
            Err(e) => Attempt::Retry(format!("transport error: {e}")),
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}
