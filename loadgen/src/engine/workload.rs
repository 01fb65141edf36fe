//! What each operation sends: REST requests through the user's lean [`RestClient`], gRPC calls
//! through the tonic clients in the user's session data, every one of them recorded in the
//! harness's own [`Recorder`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::Method;
use rand::Rng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::definition::options::Balance;
pub use crate::engine::http::RestAuth;
use crate::engine::http::{Keep, Reply, RestClient};
use crate::engine::ledger::Ledger;
use crate::engine::recorder::{Outcome, Recorder};
use crate::target::checks;
use crate::target::operations::{Operation, OperationKind, STAT_CODES, Source};
use crate::target::requests::{self, Event, EventClients};

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
    /// gRPC connection sets to the event handler, each with one channel to every replica (users
    /// pick a set by their index and send their calls to its channels in turn).
    pub channels: Vec<Vec<Channel>>,
    /// How calls spread over the replicas (REST and gRPC alike).
    pub balance: Balance,
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
    pub grpc: Option<EventClients>,
    /// End-to-end probes: the probe user's `wins` progress sum last seen.
    pub probe_baseline: Option<i64>,
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
        let completed = checks::completed_goals(&reply.body);
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
        self.ledger.claimed(user, goal, checks::claim_fate(outcome.status));
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
        let event = Event::Login(requests::login_event(&self.namespace, &self.users[index], session.rng.random()));
        self.send_event(session, (index, Source::Login, None), event, Operation::Login, intended).await
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
        let user = &self.users[index];
        let code = STAT_CODES[code_index];
        let event =
            Event::Stat(requests::stat_event(&self.namespace, user, code, f64::from(value), session.rng.random()));
        let source = (index, Source::Stat(code_index as u8), Some(i32::from(value)));
        self.send_event(session, source, event, Operation::Stat, intended).await
    }

    /// Sends `event` for `(user index, source, value)` through the session's event clients as
    /// `operation`, measured from `intended`, again while the platform's retry allows; each
    /// attempt in the ledger; its outcome.
    async fn send_event(
        &self,
        session: &mut Session,
        (index, source, value): (usize, Source, Option<i32>),
        mut event: Event,
        operation: Operation,
        intended: Instant,
    ) -> Outcome {
        let Some(clients) = session.grpc.as_mut() else { return Outcome::failed(0, "call: no gRPC target") };
        let _in_flight = self.recorder.start(operation);
        let sent = Instant::now();
        let mut retry = Retry::new(self.event_retries, sent + self.request_timeout);
        let result = loop {
            let pending = self.ledger.send(index, source, value);
            let call = retry.take(&mut event);
            let result = grpc_outcome(tokio::time::timeout(retry.left(), clients.send(call)).await);
            pending.settle(checks::event_fate(result.error.is_none(), result.status));
            if !retry.again(&result).await {
                break result;
            }
        };
        self.recorder.record(operation, session.stream, intended, sent, Instant::now(), result.clone());
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

    /// The probe user's `wins` progress sum, read through the API (an unexpected answer is the
    /// failure it is, prefixed with `what`).
    async fn wins_sum(session: &mut Session, user: usize, what: &str) -> Result<i64, Outcome> {
        let Some(rest) = session.rest.as_mut() else { return Err(Outcome::failed(0, "request: no REST target")) };
        let uri = rest.target().challenges().clone();
        match rest.send(Method::GET, uri, user, Keep::Whole).await {
            Ok(reply) if reply.status == 200 => Ok(checks::wins_progress_sum(&reply.body)),
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
        let event = requests::stat_event(&self.namespace, &user, "wins", value as f64, session.rng.random());
        let Some(clients) = session.grpc.as_mut() else { return };
        let _in_flight = self.recorder.start(Operation::EndToEnd);
        let wins = STAT_CODES.iter().position(|c| *c == "wins").unwrap_or_default() as u8;
        let pending = self.ledger.send(user_index, Source::Stat(wins), i32::try_from(value).ok());
        let sent = Instant::now();
        let deadline = sent + self.request_timeout;
        let mut outcome =
            grpc_outcome(tokio::time::timeout(self.request_timeout, clients.send(Event::Stat(event))).await);
        pending.settle(checks::event_fate(outcome.error.is_none(), outcome.status));
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

/// A gRPC call's outcome, its status the gRPC code's number (a timeout is DEADLINE_EXCEEDED, 4).
fn grpc_outcome<T>(result: Result<Result<T, tonic::Status>, tokio::time::error::Elapsed>) -> Outcome {
    match result {
        Ok(Ok(_)) => Outcome::ok(0),
        Ok(Err(status)) => Outcome::failed(status.code() as i32, format!("gRPC {:?}", status.code())),
        Err(_) => Outcome::failed(tonic::Code::DeadlineExceeded as i32, "timeout"),
    }
}
