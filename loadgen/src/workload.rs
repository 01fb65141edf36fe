//! What each operation sends: REST requests through the user's lean [`RestClient`], gRPC calls
//! through the tonic clients in the user's session data, every one of them recorded in the
//! harness's own [`Recorder`].

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::Method;
use proto::account::user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient as LoginClient;
use proto::account::{UserAccount, UserLoggedIn, UserLoggedInPayload};
use proto::statistic::statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient as StatClient;
use proto::statistic::{StatItem, StatItemUpdated};
use rand::Rng;
use rand::rngs::SmallRng;
use serde::Deserialize;
use tokio::time::Instant;
use tonic::transport::Channel;

pub use crate::http::RestAuth;
use crate::http::{Keep, Reply, RestClient};
use crate::integrity::{Fate, Ledger, Source};
use crate::recorder::{Operation, Outcome, Recorder};
use crate::scenario::OperationKind;

/// The stat codes the event stream sends (the fixture's statistic-sourced codes).
pub const STAT_CODES: [&str; 4] = ["enemy_kills", "games_played", "headshots", "wins"];

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
    /// What was sent to the audited users and what became of it.
    pub ledger: Arc<Ledger>,
    /// Times a refused event (`RESOURCE_EXHAUSTED`, `UNAVAILABLE`) is sent again.
    pub event_retries: u32,
    /// What `claim_stampede` claims: (user index, challenge id, goal id).
    pub stampede: Option<(usize, String, String)>,
}

/// The platform's retry of a refused event: up to `left` more attempts, backoff from 100 ms
/// doubling, all before `deadline`; the event is cloned only while another attempt may follow.
struct Retry {
    left: u32,
    backoff: Duration,
    deadline: Instant,
}

impl Retry {
    fn new(retries: u32, deadline: Instant) -> Self {
        Self { left: retries, backoff: Duration::from_millis(100), deadline }
    }

    /// The event to send now.
    fn take<E: Clone + Default>(&self, event: &mut E) -> E {
        if self.left > 0 { event.clone() } else { std::mem::take(event) }
    }

    /// Time left for this attempt.
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// After `outcome`: waits the backoff and says whether to send again.
    async fn again(&mut self, outcome: &Outcome) -> bool {
        let refused = matches!(outcome.status, 8 | 14) && outcome.error.is_some();
        if self.left == 0 || !refused || Instant::now() + self.backoff >= self.deadline {
            return false;
        }
        self.left -= 1;
        tokio::time::sleep(self.backoff).await;
        self.backoff *= 2;
        true
    }
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
    /// Its HTTP client (when the run has a REST target).
    pub rest: Option<RestClient>,
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

fn http_failure(status: u16) -> Outcome {
    Outcome::failed(status.into(), format!("HTTP {status}"))
}

impl Workload {
    /// A random user index for load (probe users excluded).
    fn random_user(&self, rng: &mut SmallRng) -> usize {
        let pool = self.users.len().saturating_sub(self.reserved_for_probes).max(1);
        rng.random_range(0..pool)
    }

    /// One arrival of `kind`, due at `intended`.
    pub async fn run(&self, kind: OperationKind, session: &mut Session, intended: Instant) {
        match kind {
            OperationKind::GetChallenges => self.run_get(session, intended).await,
            OperationKind::GetThenClaim => self.run_get_then_claim(session, intended).await,
            OperationKind::Login => self.run_login(session, intended).await,
            OperationKind::Stat => self.run_stat(session, intended).await,
            OperationKind::EndToEnd => self.run_end_to_end(session, intended).await,
            OperationKind::ClaimStampede => self.run_claim_stampede(session, intended).await,
            OperationKind::Session => self.run_session(session, intended, false).await,
            OperationKind::CompleteThenClaim => self.run_session(session, intended, true).await,
        }
    }

    /// `GET /v1/challenges` for `user`, measured from `intended`, keeping what `keep` says of the
    /// body. Its check: HTTP 200 and a body of the challenges list's shape.
    async fn get_challenges(&self, session: &mut Session, intended: Instant, user: usize, keep: Keep) -> Option<Reply> {
        let _in_flight = self.recorder.start(Operation::GetChallenges);
        let sent = Instant::now();
        let result = match session.rest.as_mut() {
            Some(rest) => {
                let uri = rest.target().challenges().clone();
                rest.send(Method::GET, uri, user, keep).await
            }
            None => Err(Outcome::failed(0, "request: no REST target")),
        };
        let done = Instant::now();
        let (outcome, reply) = match result {
            Ok(reply) if reply.status == 200 => (Outcome { check: reply.shape, ..Outcome::ok(200) }, Some(reply)),
            Ok(reply) => (http_failure(reply.status), None),
            Err(outcome) => (outcome, None),
        };
        self.recorder.record(Operation::GetChallenges, session.stream, intended, sent, done, outcome);
        reply
    }

    /// One iteration of `get_challenges`: the body is read to its end and checked, not kept.
    pub async fn run_get(&self, session: &mut Session, intended: Instant) {
        let user = self.random_user(&mut session.rng);
        self.get_challenges(session, intended, user, Keep::Shape).await;
    }

    /// GET, then claim one goal the response shows as completed (if it shows one).
    pub async fn run_get_then_claim(&self, session: &mut Session, intended: Instant) {
        let user = self.random_user(&mut session.rng);
        let Some(reply) = self.get_challenges(session, intended, user, Keep::Whole).await else { return };
        self.claim_completed(session, user, &reply).await;
    }

    /// Claims one goal `reply` (the user's challenge list) shows as completed, if it shows one;
    /// its outcome, or `None` with nothing to claim. A follow-up request is due when the GET
    /// returned: its latency is its service time.
    async fn claim_completed(&self, session: &mut Session, user: usize, reply: &Reply) -> Option<Outcome> {
        let completed = completed_goals(&reply.body);
        if completed.is_empty() {
            return None;
        }
        let (challenge, goal) = &completed[session.rng.random_range(0..completed.len())];
        self.claim(session, user, challenge, goal, None, &[200]).await
    }

    /// A claim of the one goal the scenario names for its user, measured from `intended`.
    /// Exactly one claim may succeed: the others' 409 is the expected answer.
    pub async fn run_claim_stampede(&self, session: &mut Session, intended: Instant) {
        let Some((user, challenge, goal)) = &self.stampede else { return };
        self.claim(session, *user, challenge, goal, Some(intended), &[200, 409]).await;
    }

    /// `POST` the claim of `goal` in `challenge` for `user`, recorded from `intended` (or, for a
    /// follow-up request, from its own send), a status in `expected` counting as the expected
    /// answer; its outcome (`None` without a REST target).
    async fn claim(
        &self,
        session: &mut Session,
        user: usize,
        challenge: &str,
        goal: &str,
        intended: Option<Instant>,
        expected: &[u16],
    ) -> Option<Outcome> {
        let rest = session.rest.as_mut()?;
        let _in_flight = self.recorder.start(Operation::Claim);
        let sent = Instant::now();
        let result = match rest.target().claim(challenge, goal) {
            Ok(uri) => rest.send(Method::POST, uri, user, Keep::Nothing).await,
            Err(outcome) => Err(outcome),
        };
        let outcome = match result {
            Ok(reply) if expected.contains(&reply.status) => Outcome::ok(reply.status.into()),
            Ok(reply) => http_failure(reply.status),
            Err(outcome) => outcome,
        };
        self.ledger.claimed(user, goal, claim_fate(&outcome));
        let intended = intended.unwrap_or(sent);
        self.recorder.record(Operation::Claim, session.stream, intended, sent, Instant::now(), outcome.clone());
        Some(outcome)
    }

    /// `OnMessage(UserLoggedIn)` for a random user.
    pub async fn run_login(&self, session: &mut Session, intended: Instant) {
        let index = self.random_user(&mut session.rng);
        self.login(session, index, intended).await;
    }

    /// `OnMessage(UserLoggedIn)` for user `index`, measured from `intended`; its outcome.
    async fn login(&self, session: &mut Session, index: usize, intended: Instant) -> Outcome {
        let user = self.users[index].clone();
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
        let Some(clients) = session.grpc.as_mut() else { return Outcome::failed(0, "call: no gRPC target") };
        let _in_flight = self.recorder.start(Operation::Login);
        let sent = Instant::now();
        let mut retry = Retry::new(self.event_retries, sent + self.request_timeout);
        let mut event = event;
        let result = loop {
            let pending = self.ledger.send(index, Source::Login, None);
            let call = retry.take(&mut event);
            let result = grpc_outcome(tokio::time::timeout(retry.left(), clients.login.on_message(call)).await);
            pending.settle(event_fate(&result));
            if !retry.again(&result).await {
                break result;
            }
        };
        self.recorder.record(Operation::Login, session.stream, intended, sent, Instant::now(), result.clone());
        result
    }

    /// `OnMessage(StatItemUpdated)` for a random user, stat code and value (0–999).
    pub async fn run_stat(&self, session: &mut Session, intended: Instant) {
        let index = self.random_user(&mut session.rng);
        let code_index = session.rng.random_range(0..STAT_CODES.len());
        let value = session.rng.random_range(0..1000u16);
        self.stat(session, index, code_index, value, intended).await;
    }

    /// `OnMessage(StatItemUpdated)` of `STAT_CODES[code_index]` = `value` for user `index`,
    /// measured from `intended`; its outcome.
    async fn stat(
        &self,
        session: &mut Session,
        index: usize,
        code_index: usize,
        value: u16,
        intended: Instant,
    ) -> Outcome {
        let user = self.users[index].clone();
        let event = self.stat_event(&user, STAT_CODES[code_index], f64::from(value), session.rng.random());
        let Some(clients) = session.grpc.as_mut() else { return Outcome::failed(0, "call: no gRPC target") };
        let _in_flight = self.recorder.start(Operation::Stat);
        let sent = Instant::now();
        let mut retry = Retry::new(self.event_retries, sent + self.request_timeout);
        let mut event = event;
        let result = loop {
            let pending = self.ledger.send(index, Source::Stat(code_index as u8), Some(i32::from(value)));
            let call = retry.take(&mut event);
            let result = grpc_outcome(tokio::time::timeout(retry.left(), clients.stat.on_message(call)).await);
            pending.settle(event_fate(&result));
            if !retry.again(&result).await {
                break result;
            }
        };
        self.recorder.record(Operation::Stat, session.stream, intended, sent, Instant::now(), result.clone());
        result
    }

    /// A player's session: a login, three stat updates, a read of the challenges and a claim of
    /// a goal it shows completed, with think times of 100–300 ms between; with `complete` first
    /// a `wins` value high enough to complete its goals and a wait past the SUT's flush, so the
    /// claim follows the completion (a completion wave). Each step is recorded under its own
    /// operation (the first from `intended`, the others from their send); the whole under
    /// `session`, from `intended`, failed if any step failed.
    pub async fn run_session(&self, session: &mut Session, intended: Instant, complete: bool) {
        let _in_flight = self.recorder.start(Operation::Session);
        let index = self.random_user(&mut session.rng);
        let started = Instant::now();
        let mut failed: Option<Outcome> = None;
        let mut note = |step: &str, outcome: Outcome| {
            if failed.is_none() && outcome.error.is_some() {
                let why = outcome.error.clone().unwrap_or_default();
                failed = Some(Outcome::failed(outcome.status, format!("session {step}: {why}")));
            }
        };
        note("login", self.login(session, index, intended).await);
        let wins = STAT_CODES.iter().position(|c| *c == "wins").unwrap_or_default();
        for step in 0..3 {
            think(session, Duration::from_millis(100), Duration::from_millis(300)).await;
            let (code, value) = if complete && step == 0 {
                (wins, 999)
            } else {
                (session.rng.random_range(0..STAT_CODES.len()), session.rng.random_range(0..1000u16))
            };
            note("stat", self.stat(session, index, code, value, Instant::now()).await);
        }
        if complete {
            // The SUT writes events once a flush interval (1 s by default): wait past it.
            think(session, Duration::from_millis(1_200), Duration::from_millis(1_500)).await;
        } else {
            think(session, Duration::from_millis(100), Duration::from_millis(300)).await;
        }
        match self.get_challenges(session, Instant::now(), index, Keep::Whole).await {
            Some(reply) => {
                think(session, Duration::from_millis(100), Duration::from_millis(300)).await;
                if let Some(claimed) = self.claim_completed(session, index, &reply).await {
                    note("claim", claimed);
                }
            }
            None => note("read", Outcome::failed(0, "the challenge list failed")),
        }
        let outcome = failed.unwrap_or_else(|| Outcome::ok(0));
        self.recorder.record(Operation::Session, session.stream, intended, started, Instant::now(), outcome);
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

    /// The probe user's `wins` progress sum, read through the API (an unexpected answer is the
    /// failure it is, prefixed with `what`).
    async fn wins_sum(session: &mut Session, user: usize, what: &str) -> Result<i64, Outcome> {
        let Some(rest) = session.rest.as_mut() else { return Err(Outcome::failed(0, "request: no REST target")) };
        let uri = rest.target().challenges().clone();
        match rest.send(Method::GET, uri, user, Keep::Whole).await {
            Ok(reply) if reply.status == 200 => Ok(wins_progress_sum(&reply.body)),
            Ok(reply) => Err(Outcome::failed(reply.status.into(), format!("{what}: HTTP {}", reply.status))),
            Err(failed) => Err(Outcome::failed(failed.status, format!("{what}: {}", failed.error.unwrap_or_default()))),
        }
    }

    /// Scenario 5: a `wins` stat event for this user's own probe user, then `GET` until the
    /// event's effect shows. Only probes touch a probe user, so any change of its `wins` goals'
    /// progress is this event's effect. Measured from the send; an arrival that cannot send its
    /// probe (no baseline read) is recorded as failed, so every arrival is accounted for.
    pub async fn run_end_to_end(&self, session: &mut Session, intended: Instant) {
        let reserved = self.reserved_for_probes.clamp(1, self.users.len());
        let user_index = self.users.len() - 1 - session.vu % reserved;
        let user = self.users[user_index].clone();
        let baseline = match session.probe_baseline {
            Some(sum) => sum,
            None => match Self::wins_sum(session, user_index, "baseline").await {
                Ok(sum) => sum,
                Err(outcome) => {
                    let now = Instant::now();
                    return self.recorder.record(Operation::EndToEnd, session.stream, intended, now, now, outcome);
                }
            },
        };
        let value = self.probe_values.fetch_add(1, Ordering::Relaxed);
        let event = self.stat_event(&user, "wins", value as f64, session.rng.random());
        let Some(clients) = session.grpc.as_mut() else { return };
        let _in_flight = self.recorder.start(Operation::EndToEnd);
        let wins = STAT_CODES.iter().position(|c| *c == "wins").unwrap_or_default() as u8;
        let pending = self.ledger.send(user_index, Source::Stat(wins), i32::try_from(value).ok());
        let sent = Instant::now();
        let deadline = sent + self.request_timeout;
        let mut outcome =
            grpc_outcome(tokio::time::timeout(self.request_timeout, clients.stat.on_message(event)).await);
        pending.settle(event_fate(&outcome));
        while outcome.error.is_none() {
            match Self::wins_sum(session, user_index, "poll").await {
                Ok(sum) if sum != baseline => {
                    session.probe_baseline = Some(sum);
                    break;
                }
                Ok(_) => {}
                Err(failed) => outcome = failed,
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

/// Waits a think time drawn uniformly between `low` and `high`.
async fn think(session: &mut Session, low: Duration, high: Duration) {
    tokio::time::sleep(session.rng.random_range(low..=high)).await;
}

/// What became of an event, from its call's outcome: `OK` accepted; `INVALID_ARGUMENT` and
/// `RESOURCE_EXHAUSTED` refused whole (SPEC §5); anything else unknown.
fn event_fate(outcome: &Outcome) -> Fate {
    match (outcome.error.is_none(), outcome.status) {
        (true, _) => Fate::Accepted,
        (false, 3 | 8) => Fate::Refused,
        _ => Fate::Unknown,
    }
}

/// What became of a claim: 200 succeeded; another answer from the service refused; no answer
/// or a gateway's (502–504: the grant may have happened) unknown.
fn claim_fate(outcome: &Outcome) -> Fate {
    match outcome.status {
        200 => Fate::Accepted,
        400..=501 | 505..=599 => Fate::Refused,
        _ => Fate::Unknown,
    }
}

/// A gRPC call's outcome, its status the gRPC code's number (a timeout is DEADLINE_EXCEEDED, 4).
fn grpc_outcome<T>(result: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> Outcome {
    match result {
        Ok(Ok(_)) => Outcome::ok(0),
        Ok(Err(status)) => Outcome::failed(status.code() as i32, format!("gRPC {:?}", status.code())),
        Err(_) => Outcome::failed(tonic::Code::DeadlineExceeded as i32, "timeout"),
    }
}

/// The fields of a `GET /v1/challenges` response the harness reads, borrowed from the body
/// (everything else is skipped unparsed).
#[derive(Debug, Deserialize)]
struct View<'a> {
    #[serde(borrow, default)]
    challenges: Vec<ChallengeView<'a>>,
}

#[derive(Debug, Deserialize)]
struct ChallengeView<'a> {
    #[serde(rename = "challengeId", borrow, default)]
    challenge_id: Cow<'a, str>,
    #[serde(borrow, default)]
    goals: Vec<GoalView<'a>>,
}

#[derive(Debug, Deserialize)]
struct GoalView<'a> {
    #[serde(rename = "goalId", borrow, default)]
    goal_id: Cow<'a, str>,
    #[serde(borrow, default)]
    status: Cow<'a, str>,
    #[serde(borrow, default)]
    prerequisites: Option<Vec<Cow<'a, str>>>,
    #[serde(default)]
    progress: Option<f64>,
    #[serde(borrow, default)]
    requirement: Option<RequirementView<'a>>,
}

#[derive(Debug, Deserialize)]
struct RequirementView<'a> {
    #[serde(rename = "statCode", borrow, default)]
    stat_code: Option<Cow<'a, str>>,
}

/// `(challengeId, goalId)` of every goal a player could claim from this GET response: shown as
/// completed, with every prerequisite shown as completed or claimed (a game client offers no
/// other claim; the SUT answers others with 400).
pub fn completed_goals(body: &[u8]) -> Vec<(String, String)> {
    let Ok(view) = serde_json::from_slice::<View>(body) else { return Vec::new() };
    let goals = || view.challenges.iter().flat_map(|c| c.goals.iter().map(move |g| (c, g)));
    let done: std::collections::HashSet<&str> = goals()
        .filter(|(_, g)| g.status == "completed" || g.status == "claimed")
        .map(|(_, g)| g.goal_id.as_ref())
        .collect();
    goals()
        .filter(|(_, g)| g.status == "completed" && g.prerequisites.iter().flatten().all(|p| done.contains(p.as_ref())))
        .map(|(c, g)| (c.challenge_id.clone().into_owned(), g.goal_id.clone().into_owned()))
        .collect()
}

/// The summed progress of every goal on `wins` in a GET response (-1 if it cannot be read).
fn wins_progress_sum(body: &[u8]) -> i64 {
    let Ok(view) = serde_json::from_slice::<View>(body) else { return -1 };
    view.challenges
        .iter()
        .flat_map(|c| &c.goals)
        .filter(|g| g.requirement.as_ref().and_then(|r| r.stat_code.as_deref()) == Some("wins"))
        .filter_map(|g| g.progress.filter(|p| p.fract() == 0.0).map(|p| p as i64))
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
    fn the_probe_reads_the_progress_of_wins_goals() {
        let body = br#"{"challenges":[{"challengeId":"c1","goals":[
            {"goalId":"g1","status":"in_progress","progress":3,"requirement":{"statCode":"wins","targetValue":10}},
            {"goalId":"g2","status":"in_progress","progress":5,"requirement":{"statCode":"kills"}},
            {"goalId":"g3","status":"completed","progress":4,"prerequisites":null,"requirement":{"statCode":"wins"}}]}]}"#;
        assert_eq!(wins_progress_sum(body), 7);
        assert_eq!(wins_progress_sum(b"{"), -1);
    }
}
