//! The challenge service's operations: what the harness measures (with the names results,
//! reports and thresholds use, and k6's `name` tag), what a scenario's stream can do, and where
//! an event's updates go.

use serde::{Deserialize, Serialize};

/// The operations Gauntlet measures, with the names used in results and thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    /// `GET /v1/challenges`
    GetChallenges,
    /// `POST .../claim`
    Claim,
    /// `OnMessage(UserLoggedIn)`
    Login,
    /// `OnMessage(StatItemUpdated)`
    Stat,
    /// From a stat event's send to its effect in the API.
    EndToEnd,
    /// A player's whole session (its steps are recorded under their own operations too).
    Session,
}

impl Operation {
    /// Every operation, in report order.
    pub const ALL: [Operation; 6] = [
        Operation::GetChallenges,
        Operation::Claim,
        Operation::Login,
        Operation::Stat,
        Operation::EndToEnd,
        Operation::Session,
    ];

    /// The name in results, reports and threshold filters.
    pub fn name(self) -> &'static str {
        match self {
            Operation::GetChallenges => "GET /v1/challenges",
            Operation::Claim => "POST claim",
            Operation::Login => "OnMessage login",
            Operation::Stat => "OnMessage stat",
            Operation::EndToEnd => "E2E stat to API",
            Operation::Session => "session",
        }
    }

    /// A file-name-safe form of the name.
    pub fn slug(self) -> &'static str {
        match self {
            Operation::GetChallenges => "get-challenges",
            Operation::Claim => "post-claim",
            Operation::Login => "onmessage-login",
            Operation::Stat => "onmessage-stat",
            Operation::EndToEnd => "e2e",
            Operation::Session => "session",
        }
    }

    /// True for REST operations.
    pub fn is_rest(self) -> bool {
        matches!(self, Operation::GetChallenges | Operation::Claim)
    }

    /// True for gRPC operations.
    pub fn is_grpc(self) -> bool {
        matches!(self, Operation::Login | Operation::Stat)
    }

    /// k6's `name` tag: the URL path of a REST request, the full method of a gRPC call.
    pub fn name_tag(self) -> &'static str {
        match self {
            Operation::GetChallenges => "/v1/challenges",
            Operation::Claim => "/v1/challenges/{challengeId}/goals/{goalId}/claim",
            Operation::Login => "accelbyte.iam.account.v1.UserAuthenticationUserLoggedInService/OnMessage",
            Operation::Stat | Operation::EndToEnd => {
                "accelbyte.social.statistic.v1.StatisticStatItemUpdatedService/OnMessage"
            }
            Operation::Session => "session",
        }
    }

    /// The operation called `name`, if any.
    pub fn named(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.name() == name)
    }

    /// Its position in [`Operation::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one iteration of a stream does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// `GET /v1/challenges` as a random fixture user.
    GetChallenges,
    /// `GET /v1/challenges`, then claim a goal the response shows as completed (if any).
    GetThenClaim,
    /// `OnMessage(UserLoggedIn)` for a random fixture user.
    Login,
    /// `OnMessage(StatItemUpdated)`: one of four stat codes, `latest_value` 0–999.
    Stat,
    /// A stat event followed by polling the API until its effect is visible (scenario 5).
    EndToEnd,
    /// A claim of the one goal `seed.claimable` names, for its user: many at once, exactly one
    /// may succeed (claim-stampede).
    ClaimStampede,
    /// A player's session: login, three stat updates, a read and a claim, with think times.
    Session,
    /// A session that first completes goals (a high `wins`) and claims after the SUT's flush:
    /// claims following completions.
    CompleteThenClaim,
}

impl OperationKind {
    /// True for operations that go through the REST API.
    pub fn is_rest(self) -> bool {
        matches!(self, OperationKind::GetChallenges | OperationKind::GetThenClaim | OperationKind::ClaimStampede)
    }

    /// The recorder operation an arrival of this kind is counted (scheduled, dropped) under.
    pub fn counted_as(self) -> Operation {
        match self {
            OperationKind::GetChallenges | OperationKind::GetThenClaim => Operation::GetChallenges,
            OperationKind::Login => Operation::Login,
            OperationKind::Stat => Operation::Stat,
            OperationKind::EndToEnd => Operation::EndToEnd,
            OperationKind::ClaimStampede => Operation::Claim,
            OperationKind::Session | OperationKind::CompleteThenClaim => Operation::Session,
        }
    }

    /// True for operations that use both the REST API and the event handler (sessions).
    pub fn is_mixed(self) -> bool {
        matches!(self, OperationKind::Session | OperationKind::CompleteThenClaim)
    }

    /// Every recorder operation an arrival of this kind may record.
    pub fn records(self) -> &'static [Operation] {
        match self {
            OperationKind::GetThenClaim => &[Operation::GetChallenges, Operation::Claim],
            OperationKind::GetChallenges => &[Operation::GetChallenges],
            OperationKind::Login => &[Operation::Login],
            OperationKind::Stat => &[Operation::Stat],
            OperationKind::EndToEnd => &[Operation::EndToEnd],
            OperationKind::ClaimStampede => &[Operation::Claim],
            OperationKind::Session | OperationKind::CompleteThenClaim => {
                &[Operation::Session, Operation::Login, Operation::Stat, Operation::GetChallenges, Operation::Claim]
            }
        }
    }

    /// True for operations that call the event handler.
    pub fn is_grpc(self) -> bool {
        matches!(self, OperationKind::Login | OperationKind::Stat | OperationKind::EndToEnd)
    }

    /// True for operations that change a user's books (progress or claims): a run with any of
    /// them is audited.
    pub fn changes_books(self) -> bool {
        self != OperationKind::GetChallenges
    }
}

/// The stat codes the event stream sends (the fixture's statistic-sourced codes).
pub const STAT_CODES: [&str; 4] = ["enemy_kills", "games_played", "headshots", "wins"];

/// Where an event's updates go: logins, or one stat code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// `UserLoggedIn`.
    Login,
    /// `StatItemUpdated` of this stat code (index into the workload's codes).
    Stat(u8),
}
