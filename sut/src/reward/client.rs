//! Granting a reward over HTTP, with production's retry policy: up to 3 retries on retryable
//! failures (timeouts, 408, 429, 5xx) with exponential backoff from 500 ms, all inside the
//! claim's time budget. 400/401/403/404/409/422 are final.
//!
//! Ids travel as single path segments (percent-encoded, so a `/` in a user id cannot reach
//! another user's wallet), and every grant carries an idempotency key made of the namespace, user
//! and goal ([`grant_key`]): a retry after a lost reply, or a second claim after a failed commit,
//! is answered by the platform from the first grant instead of granting again.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use super::mock::IDEMPOTENCY_KEY;
use crate::challenges::{Goal, RewardType};

/// Everything but RFC 3986's unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// The (namespace, user, goal) a [`grant_key`] names; `None` for another kind of key.
pub fn parse_grant_key(key: &str) -> Option<(String, String, String)> {
    let mut parts = key.strip_prefix("claim/")?.split('/');
    let mut decode = || Some(percent_encoding::percent_decode_str(parts.next()?).decode_utf8().ok()?.into_owned());
    let parsed = (decode()?, decode()?, decode()?);
    parts.next().is_none().then_some(parsed)
}

/// One path segment, percent-encoded; `.` and `..` (which a URL parser resolves as steps up the
/// path) and the empty segment are refused.
fn segment(id: &str) -> Result<String, GrantError> {
    if matches!(id, "" | "." | "..") {
        return Err(GrantError::UnsendableId(id.to_owned()));
    }
    Ok(utf8_percent_encode(id, SEGMENT).to_string())
}

/// The idempotency key of the grant for `goal_id` to `user_id` in `namespace`: one goal is
/// granted once per user, so the key names exactly that (each part percent-encoded, joined by `/`).
pub fn grant_key(namespace: &str, user_id: &str, goal_id: &str) -> String {
    let part = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
    format!("claim/{}/{}/{}", part(namespace), part(user_id), part(goal_id))
}

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
    /// An id that cannot be sent as a path segment (empty, `.` or `..`).
    #[error("'{0}' cannot be sent to the reward platform as an id")]
    UnsendableId(String),
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

/// The reward platform's base URL is not an `http(s)://host[:port][/path]` URL.
#[derive(Debug, thiserror::Error)]
#[error("reward platform URL '{url}' is not usable: {problem}")]
pub struct InvalidBaseUrl {
    url: String,
    problem: String,
}

enum Attempt {
    Done,
    Retry(String),
    Final(GrantError),
}

impl RewardClient {
    /// A client for the platform at `base_url` (e.g. `http://127.0.0.1:8090`).
    pub fn new(base_url: &str, policy: RetryPolicy) -> Result<Self, InvalidBaseUrl> {
        let invalid = |problem: &str| InvalidBaseUrl { url: base_url.to_owned(), problem: problem.to_owned() };
        let parsed = reqwest::Url::parse(base_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err(invalid("expected http://host[:port]"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a base URL has no query or fragment"));
        }
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().expect("a plain HTTP client builds");
        Ok(Self { http, base_url: parsed.as_str().trim_end_matches('/').to_owned(), policy })
    }

    /// Grants `goal`'s reward to the user, retrying as the policy allows, finishing before
    /// `deadline`; every attempt carries the same idempotency key.
    pub async fn grant(
        &self,
        namespace: &str,
        user_id: &str,
        goal: &Goal,
        deadline: Instant,
    ) -> Result<(), GrantError> {
        let request = self.request(namespace, user_id, goal)?;
        let mut backoff = self.policy.initial_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let last = match self.attempt(&request, deadline).await {
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

    /// The grant's request, built once and cloned per attempt.
    fn request(&self, namespace: &str, user_id: &str, goal: &Goal) -> Result<reqwest::Request, GrantError> {
        let reward = &goal.reward;
        let user =
            format!("{}/platform/admin/namespaces/{}/users/{}", self.base_url, segment(namespace)?, segment(user_id)?);
        let builder = match reward.reward_type {
            RewardType::Item => self.http.post(format!("{user}/entitlements")).json(&json!([{
                "itemId": reward.reward_id, "itemNamespace": namespace, "quantity": reward.quantity
            }])),
            RewardType::Wallet => self
                .http
                .put(format!("{user}/wallets/{}/credit", segment(&reward.reward_id)?))
                .json(&json!({ "amount": reward.quantity })),
        };
        builder
            .header(IDEMPOTENCY_KEY, grant_key(namespace, user_id, &goal.id))
            .build()
            .map_err(|e| GrantError::UnsendableId(format!("{user_id}: {e}")))
    }

    async fn attempt(&self, request: &reqwest::Request, deadline: Instant) -> Attempt {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Attempt::Final(GrantError::BudgetExceeded { attempts: 0, last: "no time left".into() });
        }
        let mut request = request.try_clone().expect("a JSON body can be cloned");
        *request.timeout_mut() = Some(remaining);
        match self.http.execute(request).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_encoded_as_single_segments_and_dot_segments_refused() {
        assert_eq!(segment("user-000001").unwrap(), "user-000001");
        assert_eq!(segment("u1/../victim").unwrap(), "u1%2F..%2Fvictim");
        assert_eq!(segment("a b?c#d%").unwrap(), "a%20b%3Fc%23d%25");
        for id in ["", ".", ".."] {
            assert!(matches!(segment(id), Err(GrantError::UnsendableId(_))), "{id:?}");
        }
        assert_eq!(grant_key("test", "u/1", "g 1"), "claim/test/u%2F1/g%201");
        let parsed = parse_grant_key(&grant_key("te/st", "u/1%", "g 1")).unwrap();
        assert_eq!(parsed, ("te/st".into(), "u/1%".into(), "g 1".into()));
        assert_eq!(parse_grant_key("other-key"), None);
        assert_eq!(parse_grant_key("claim/a/b/c/d"), None);
    }

    #[test]
    fn base_urls_are_checked_when_the_client_is_made() {
        let policy = RetryPolicy::default();
        assert!(RewardClient::new("http://127.0.0.1:8090/", policy).is_ok());
        for bad in ["127.0.0.1:8090", "ftp://host", "http://host/?x=1", "not a url"] {
            let error = RewardClient::new(bad, policy).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }
}
