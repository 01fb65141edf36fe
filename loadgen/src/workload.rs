//! What each operation sends: REST requests through the goose user's client (recorded by goose
//! too), gRPC calls through the tonic clients in the user's session data (recorded in goose with
//! `record_custom_request_duration`), and every one of them in the harness's own [`Recorder`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use goose::prelude::*;
use proto::account::user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient as LoginClient;
use proto::account::{UserAccount, UserLoggedIn, UserLoggedInPayload};
use proto::statistic::statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient as StatClient;
use proto::statistic::{StatItem, StatItemUpdated};
use rand::Rng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::recorder::{Operation, Outcome, Recorder};

/// The stat codes the event stream sends (the fixture's statistic-sourced codes).
pub const STAT_CODES: [&str; 4] = ["enemy_kills", "games_played", "headshots", "wins"];

/// How REST requests authenticate.
#[derive(Debug, Clone)]
pub enum RestAuth {
    /// `Authorization: Bearer <token>`, one token per fixture user (same order).
    Tokens(Arc<Vec<String>>),
    /// `X-Mock-User-Id: <user>` (the SUT runs with auth disabled).
    MockHeader,
}

/// Everything operations share.
#[derive(Debug)]
pub struct Workload {
    /// Fixture user ids.
    pub users: Arc<Vec<String>>,
    /// Users reserved for end-to-end probes (the last ones), excluded from random draws.
    pub reserved_for_probes: usize,
    /// The namespace events carry.
    pub namespace: String,
    /// REST authentication.
    pub auth: RestAuth,
    /// Path prefix of the REST API (e.g. `/challenge`).
    pub base_path: String,
    /// gRPC channels to the event handler (users pick one by their index).
    pub channels: Vec<Channel>,
    /// Timeout of one request or call.
    pub request_timeout: Duration,
    /// Where results go.
    pub recorder: Arc<Recorder>,
    /// Values for end-to-end probes, above anything the event streams send.
    pub probe_values: AtomicU64,
}

/// Per-virtual-user state, kept in the goose user's session data.
#[derive(Debug, Clone)]
pub struct Session {
    /// Index of this user within its stream.
    pub vu: usize,
    /// Index of its stream in the plan (k6's `scenario` tag).
    pub stream: u16,
    /// Random source of this user.
    pub rng: SmallRng,
    /// gRPC clients (gRPC streams only).
    pub grpc: Option<GrpcClients>,
    /// End-to-end probes: the probe user's `wins` progress sum last seen.
    pub probe_baseline: Option<i64>,
}

/// The two tonic clients of one virtual user.
#[derive(Debug, Clone)]
pub struct GrpcClients {
    login: LoginClient<Channel>,
    stat: StatClient<Channel>,
}

impl GrpcClients {
    /// Clients on `channel`.
    pub fn new(channel: Channel) -> Self {
        Self { login: LoginClient::new(channel.clone()), stat: StatClient::new(channel) }
    }
}

impl Workload {
    /// A random user index for load (probe users excluded).
    fn random_user(&self, rng: &mut SmallRng) -> usize {
        let pool = self.users.len().saturating_sub(self.reserved_for_probes).max(1);
        rng.random_range(0..pool)
    }

    fn authorize(&self, request: reqwest::RequestBuilder, user: usize) -> reqwest::RequestBuilder {
        match &self.auth {
            RestAuth::Tokens(tokens) => request.bearer_auth(&tokens[user]),
            RestAuth::MockHeader => request.header(sut::auth::MOCK_USER_HEADER, &self.users[user]),
        }
    }

    async fn rest(
        &self,
        goose: &mut GooseUser,
        method: GooseMethod,
        path: &str,
        name: &str,
        user: usize,
    ) -> Result<(u16, Vec<u8>), Outcome> {
        let builder =
            goose.get_request_builder(&method, path).map_err(|e| Outcome::failed(0, format!("request: {e}")))?;
        let builder = self.authorize(builder, user).timeout(self.request_timeout);
        let request = GooseRequest::builder().set_request_builder(builder).name(name).build();
        let response = goose.request(request).await.map_err(|e| Outcome::failed(0, format!("request: {e}")))?;
        match response.response {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.bytes().await.map_err(|e| transport_error(&e))?;
                Ok((status, body.to_vec()))
            }
            Err(e) => Err(transport_error(&e)),
        }
    }

    /// `GET /v1/challenges` for a random user, measured from `intended`. Returns the body when
    /// it succeeded. Its check: HTTP 200 and [`challenges_shape`].
    pub async fn get_challenges(
        &self,
        goose: &mut GooseUser,
        stream: u16,
        intended: Instant,
        user: usize,
    ) -> Option<Vec<u8>> {
        let path = format!("{}/v1/challenges", self.base_path);
        let _in_flight = self.recorder.start(Operation::GetChallenges);
        let sent = Instant::now();
        let result = self.rest(goose, GooseMethod::Get, &path, Operation::GetChallenges.name(), user).await;
        let done = Instant::now();
        let (outcome, body) = match result {
            Ok((200, body)) => (Outcome { check: challenges_shape(&body), ..Outcome::ok(200) }, Some(body)),
            Ok((status, _)) => (Outcome::failed(status.into(), format!("HTTP {status}")), None),
            Err(outcome) => (outcome, None),
        };
        self.recorder.record(Operation::GetChallenges, stream, intended, sent, done, outcome);
        body
    }

    /// One iteration of `get_challenges`.
    pub async fn run_get(&self, goose: &mut GooseUser, session: &mut Session, intended: Instant) {
        let user = self.random_user(&mut session.rng);
        self.get_challenges(goose, session.stream, intended, user).await;
    }

    /// GET, then claim one goal the response shows as completed (if it shows one).
    pub async fn run_get_then_claim(&self, goose: &mut GooseUser, session: &mut Session, intended: Instant) {
        let user = self.random_user(&mut session.rng);
        let Some(body) = self.get_challenges(goose, session.stream, intended, user).await else { return };
        let completed = completed_goals(&body);
        if completed.is_empty() {
            return;
        }
        let (challenge, goal) = &completed[session.rng.random_range(0..completed.len())];
        let path = format!("{}/v1/challenges/{challenge}/goals/{goal}/claim", self.base_path);
        let _in_flight = self.recorder.start(Operation::Claim);
        let sent = Instant::now();
        let result = self.rest(goose, GooseMethod::Post, &path, Operation::Claim.name(), user).await;
        let outcome = match result {
            Ok((200, _)) => Outcome::ok(200),
            Ok((status, _)) => Outcome::failed(status.into(), format!("HTTP {status}")),
            Err(outcome) => outcome,
        };
        // A follow-up request is due when the GET returned: its latency is its service time.
        self.recorder.record(Operation::Claim, session.stream, sent, sent, Instant::now(), outcome);
    }

    /// `OnMessage(UserLoggedIn)` for a random user.
    pub async fn run_login(&self, goose: &mut GooseUser, session: &mut Session, intended: Instant) {
        let user = self.users[self.random_user(&mut session.rng)].clone();
        let event = UserLoggedIn {
            id: format!("{:016x}", session.rng.random::<u64>()),
            name: "userLoggedIn".into(),
            namespace: self.namespace.clone(),
            user_id: user.clone(),
            payload: Some(UserLoggedInPayload {
                user_account: Some(UserAccount {
                    user_id: user,
                    namespace: self.namespace.clone(),
                    ..Default::default()
                }),
                user_authentication: None,
            }),
            ..Default::default()
        };
        let Some(clients) = session.grpc.as_mut() else { return };
        let mut client = clients.login.clone();
        let _in_flight = self.recorder.start(Operation::Login);
        let sent = Instant::now();
        let result = grpc_outcome(tokio::time::timeout(self.request_timeout, client.on_message(event)).await);
        self.finish_grpc(goose, Operation::Login, session.stream, intended, sent, result).await;
    }

    /// `OnMessage(StatItemUpdated)` for a random user, stat code and value (0–999).
    pub async fn run_stat(&self, goose: &mut GooseUser, session: &mut Session, intended: Instant) {
        let user = self.users[self.random_user(&mut session.rng)].clone();
        let code = STAT_CODES[session.rng.random_range(0..STAT_CODES.len())];
        let value = f64::from(session.rng.random_range(0..1000u32));
        let event = self.stat_event(&user, code, value, session.rng.random());
        let Some(clients) = session.grpc.as_mut() else { return };
        let mut client = clients.stat.clone();
        let _in_flight = self.recorder.start(Operation::Stat);
        let sent = Instant::now();
        let result = grpc_outcome(tokio::time::timeout(self.request_timeout, client.on_message(event)).await);
        self.finish_grpc(goose, Operation::Stat, session.stream, intended, sent, result).await;
    }

    fn stat_event(&self, user: &str, code: &str, value: f64, id: u64) -> StatItemUpdated {
        StatItemUpdated {
            id: format!("{id:016x}"),
            name: "statItemUpdated".into(),
            namespace: self.namespace.clone(),
            user_id: user.to_owned(),
            payload: Some(StatItem {
                namespace: self.namespace.clone(),
                stat_code: code.to_owned(),
                user_id: user.to_owned(),
                latest_value: value,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn finish_grpc(
        &self,
        goose: &mut GooseUser,
        op: Operation,
        stream: u16,
        intended: Instant,
        sent: Instant,
        outcome: Outcome,
    ) {
        let done = Instant::now();
        let error = outcome.error.as_deref();
        let _ =
            goose.record_custom_request_duration("gRPC", op.name(), done - sent, error.is_none(), None, error).await;
        self.recorder.record(op, stream, intended, sent, done, outcome);
    }

    /// Scenario 5: a `wins` stat event for this user's own probe user, then `GET` until the
    /// event's effect shows. Only probes touch a probe user, so any change of its `wins` goals'
    /// progress is this event's effect. Measured from the send; an arrival that cannot send its
    /// probe (no baseline read) is recorded as failed, so every arrival is accounted for.
    pub async fn run_end_to_end(&self, goose: &mut GooseUser, session: &mut Session, intended: Instant) {
        let reserved = self.reserved_for_probes.clamp(1, self.users.len());
        let user_index = self.users.len() - 1 - session.vu % reserved;
        let user = self.users[user_index].clone();
        let path = format!("{}/v1/challenges", self.base_path);
        let baseline = match session.probe_baseline {
            Some(sum) => sum,
            None => {
                let read = self.rest(goose, GooseMethod::Get, &path, "GET /v1/challenges (e2e poll)", user_index).await;
                let read = read.and_then(|(status, body)| match status {
                    200 => Ok(wins_progress_sum(&body)),
                    _ => Err(Outcome::failed(status.into(), format!("baseline: HTTP {status}"))),
                });
                match read {
                    Ok(sum) => sum,
                    Err(outcome) => {
                        let now = Instant::now();
                        return self.recorder.record(Operation::EndToEnd, session.stream, intended, now, now, outcome);
                    }
                }
            }
        };
        let value = self.probe_values.fetch_add(1, Ordering::Relaxed) as f64;
        let event = self.stat_event(&user, "wins", value, session.rng.random());
        let Some(clients) = session.grpc.as_mut() else { return };
        let mut client = clients.stat.clone();
        let _in_flight = self.recorder.start(Operation::EndToEnd);
        let sent = Instant::now();
        let deadline = sent + self.request_timeout;
        let mut outcome = grpc_outcome(tokio::time::timeout(self.request_timeout, client.on_message(event)).await);
        while outcome.error.is_none() {
            match self.rest(goose, GooseMethod::Get, &path, "GET /v1/challenges (e2e poll)", user_index).await {
                Ok((200, body)) => {
                    let sum = wins_progress_sum(&body);
                    if sum != baseline {
                        session.probe_baseline = Some(sum);
                        break;
                    }
                }
                Ok((status, _)) => outcome = Outcome::failed(status.into(), format!("poll: HTTP {status}")),
                Err(failed) => {
                    let why = failed.error.unwrap_or_default();
                    outcome = Outcome::failed(failed.status, format!("poll: {why}"));
                }
            }
            if outcome.error.is_none() && Instant::now() >= deadline {
                outcome = Outcome::failed(0, "effect not visible within the request timeout");
                session.probe_baseline = None;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.recorder.record(Operation::EndToEnd, session.stream, sent, sent, Instant::now(), outcome);
    }
}

/// A REST request that got no response: status 0, as k6 tags it.
fn transport_error(e: &reqwest::Error) -> Outcome {
    let why = if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect error".into()
    } else {
        format!("transport: {e}")
    };
    Outcome::failed(0, why)
}

/// A gRPC call's outcome, its status the gRPC code's number (a timeout is DEADLINE_EXCEEDED, 4).
fn grpc_outcome<T>(result: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> Outcome {
    match result {
        Ok(Ok(_)) => Outcome::ok(0),
        Ok(Err(status)) => Outcome::failed(status.code() as i32, format!("gRPC {:?}", status.code())),
        Err(_) => Outcome::failed(tonic::Code::DeadlineExceeded as i32, "timeout"),
    }
}

/// The shape a `GET /v1/challenges` body must have: a JSON object with a `challenges` array
/// among its first 4 KB (parsing every ~150 KB body would cost the generator more than the
/// request).
pub fn challenges_shape(body: &[u8]) -> bool {
    let text = body.trim_ascii();
    if !(text.starts_with(b"{") && text.ends_with(b"}")) {
        return false;
    }
    let head = &text[..text.len().min(4096)];
    let key = b"\"challenges\"";
    head.windows(key.len()).enumerate().filter(|(_, w)| *w == key).any(|(at, _)| {
        let rest = head[at + key.len()..].trim_ascii_start();
        rest.strip_prefix(b":").is_some_and(|r| r.trim_ascii_start().starts_with(b"["))
    })
}

/// `(challengeId, goalId)` of every goal a player could claim from this GET response: shown as
/// completed, with every prerequisite shown as completed or claimed (a game client offers no
/// other claim; the SUT answers others with 400).
pub fn completed_goals(body: &[u8]) -> Vec<(String, String)> {
    let Ok(view) = serde_json::from_slice::<serde_json::Value>(body) else { return Vec::new() };
    let goals: Vec<(&str, &serde_json::Value)> = view["challenges"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let challenge_id = c["challengeId"].as_str().unwrap_or_default();
            c["goals"].as_array().into_iter().flatten().map(move |g| (challenge_id, g))
        })
        .collect();
    let done: std::collections::HashSet<&str> = goals
        .iter()
        .filter(|(_, g)| g["status"] == "completed" || g["status"] == "claimed")
        .filter_map(|(_, g)| g["goalId"].as_str())
        .collect();
    goals
        .iter()
        .filter(|(_, g)| g["status"] == "completed")
        .filter(|(_, g)| {
            g["prerequisites"].as_array().into_iter().flatten().all(|p| p.as_str().is_some_and(|p| done.contains(p)))
        })
        .map(|(challenge_id, g)| ((*challenge_id).to_owned(), g["goalId"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

/// The summed progress of every goal on `wins` in a GET response.
fn wins_progress_sum(body: &[u8]) -> i64 {
    let Ok(view) = serde_json::from_slice::<serde_json::Value>(body) else { return -1 };
    view["challenges"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["goals"].as_array().into_iter().flatten())
        .filter(|g| g["requirement"]["statCode"] == "wins")
        .filter_map(|g| g["progress"].as_i64())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_goals_are_read_from_the_response() {
        let body = br#"{"challenges":[{"challengeId":"c1","goals":[
            {"goalId":"g1","status":"completed"},{"goalId":"g2","status":"claimed"},{"goalId":"g3","status":"in_progress"}]},
            {"challengeId":"c2","goals":[{"goalId":"g4","status":"completed","prerequisites":["g1","g2"]},
             {"goalId":"g5","status":"completed","prerequisites":["g3"]}]}]}"#;
        assert_eq!(
            completed_goals(body),
            vec![("c1".into(), "g1".into()), ("c2".into(), "g4".into())],
            "g5's prerequisite g3 is not done"
        );
        assert!(completed_goals(b"not json").is_empty());
    }

    #[test]
    fn the_get_check_wants_an_object_with_a_challenges_array() {
        assert!(challenges_shape(br#"{"challenges":[]}"#));
        assert!(challenges_shape(br#" {"paging": {}, "challenges" : [{"challengeId":"c"}]} "#));
        assert!(!challenges_shape(br#"{"challenges":null}"#));
        assert!(!challenges_shape(br#"{"error":"x"}"#));
        assert!(!challenges_shape(b"<html>busy</html>"));
        assert!(!challenges_shape(br#"{"challenges":[{"#), "cut off");
    }
}
