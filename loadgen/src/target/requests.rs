//! What the harness sends the challenge service: the REST paths under the API's base path, and
//! the platform's events (`UserLoggedIn`, `StatItemUpdated`) as the event handler receives them.

use proto::account::user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient as LoginClient;
use proto::account::{UserAccount, UserLoggedIn, UserLoggedInPayload};
use proto::statistic::statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient as StatClient;
use proto::statistic::{StatItem, StatItemUpdated};
use tonic::transport::Channel;

/// The header that names the user when the service runs with auth disabled (`--mock-auth`).
pub const MOCK_USER_HEADER: &str = sut::auth::MOCK_USER_HEADER;

/// `GET {base}/v1/challenges`: the calling user's challenges and goals.
pub fn challenges_path(base_path: &str) -> String {
    format!("{base_path}/v1/challenges")
}

/// `POST {base}/v1/challenges/{challenge}/goals/{goal}/claim`.
pub fn claim_path(base_path: &str, challenge: &str, goal: &str) -> String {
    format!("{base_path}/v1/challenges/{challenge}/goals/{goal}/claim")
}

/// A `UserLoggedIn` event for `user` in `namespace`, with event id `id`.
pub fn login_event(namespace: &str, user: &str, id: u64) -> UserLoggedIn {
    UserLoggedIn {
        id: format!("{id:016x}"),
        name: "userLoggedIn".into(),
        namespace: namespace.to_owned(),
        user_id: user.to_owned(),
        payload: Some(UserLoggedInPayload {
            user_account: Some(UserAccount {
                user_id: user.to_owned(),
                namespace: namespace.to_owned(),
                ..Default::default()
            }),
            user_authentication: None,
        }),
        ..Default::default()
    }
}

/// A `StatItemUpdated` event: `user`'s stat `code` now at `value`, with event id `id`.
pub fn stat_event(namespace: &str, user: &str, code: &str, value: f64, id: u64) -> StatItemUpdated {
    StatItemUpdated {
        id: format!("{id:016x}"),
        name: "statItemUpdated".into(),
        namespace: namespace.to_owned(),
        user_id: user.to_owned(),
        payload: Some(StatItem {
            namespace: namespace.to_owned(),
            stat_code: code.to_owned(),
            user_id: user.to_owned(),
            latest_value: value,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An event of either kind the event handler takes.
#[derive(Debug, Clone)]
pub enum Event {
    /// `UserLoggedIn`.
    Login(UserLoggedIn),
    /// `StatItemUpdated`.
    Stat(StatItemUpdated),
}

impl Default for Event {
    /// What is left where an event was taken (its last attempt was sent).
    fn default() -> Self {
        Event::Login(UserLoggedIn::default())
    }
}

/// The event handler's two services, as one virtual user calls them: over one channel per
/// replica, each call on the next (round-robin per call, as a client-side balancer), or all on
/// one (per connection).
#[derive(Debug, Clone)]
pub struct EventClients {
    replicas: Vec<(LoginClient<Channel>, StatClient<Channel>)>,
    turn: usize,
    step: usize,
}

impl EventClients {
    /// Clients on `channels` (one per replica), the first call on channel `start` (modulo), each
    /// next one on the next channel when `per_call`, else all on that one.
    pub fn new(channels: &[Channel], start: usize, per_call: bool) -> Self {
        let replicas = channels.iter().map(|c| (LoginClient::new(c.clone()), StatClient::new(c.clone()))).collect();
        Self { replicas, turn: start, step: usize::from(per_call) }
    }

    /// `OnMessage` of the event's service.
    pub async fn send(&mut self, event: Event) -> Result<(), tonic::Status> {
        let count = self.replicas.len().max(1);
        let Some((login, stat)) = self.replicas.get_mut(self.turn % count) else {
            return Err(tonic::Status::unavailable("no event handler channel"));
        };
        self.turn = self.turn.wrapping_add(self.step);
        match event {
            Event::Login(event) => login.on_message(event).await.map(drop),
            Event::Stat(event) => stat.on_message(event).await.map(drop),
        }
    }
}
