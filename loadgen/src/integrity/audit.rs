//! Reading the SUT's books and judging them: each audited user's goals read through the REST API
//! before the load and after it (so it works for any store and any deployment), the reward mock's
//! grant ledger where the mock is ours, and the comparison with what the [`Ledger`] says was
//! accepted, under SPEC §1.
//!
//! Per goal not claimed before the run, by its rule:
//! - a counter (increment goals, login goals): progress grew by between the accepted events and
//!   the accepted plus unknown ones; below is events lost, above is events applied twice;
//! - a once-a-day counter: it counted if an event was accepted and it had counted nothing;
//!   it grew by at most the days the run spanned;
//! - a daily goal: completed if an event was accepted;
//! - an absolute goal: its progress is the value of an event that may have been applied last;
//!   completed if an accepted value reached the target.
//!
//! A goal completed before the run must stay completed (its progress is not counted: past the
//! target it is the layout's business).
//! A goal claimed during the run is frozen at an unknown moment, so only its grant is judged:
//! granted once (by idempotency key, or by user and reward where the SUT sends no key).
//! A goal claimed before the run must not change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hyper::Method;
use serde::Deserialize;
use sut::challenges::{ChallengeConfig, EventSource, Goal};
use sut::db::Status;
use sut::events::derive::Rule;

use super::Integrity;
use crate::engine::http::{Keep, RestClient, RestTarget};
use crate::engine::ledger::{ClaimBook, Ledger, SourceBook};
use crate::target::operations::Source;

/// Goals' (progress, status) per audited user, by goal position in the configuration.
pub type Snapshot = HashMap<usize, Vec<(i64, Status)>>;

/// Requests in flight while reading snapshots.
const CONCURRENCY: usize = 16;
/// At most this many examples are kept.
const EXAMPLES: usize = 20;

#[derive(Deserialize)]
struct View {
    challenges: Vec<ChallengeView>,
}

#[derive(Deserialize)]
struct ChallengeView {
    goals: Vec<GoalView>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoalView {
    goal_id: String,
    progress: i64,
    status: String,
}

/// One line of the reward mock's grant ledger (`GET /admin/grants`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GrantRow {
    /// The user id.
    pub user_id: String,
    /// `ITEM` or `WALLET`.
    pub reward_type: String,
    /// The item or currency.
    pub reward_id: String,
    /// The grant's idempotency key, `""` without one.
    pub idempotency_key: String,
    /// Grants applied.
    pub applied: u64,
}

#[derive(Deserialize)]
struct Grants {
    grants: Vec<GrantRow>,
}

/// Reads the books of one target.
#[derive(Debug)]
pub struct Auditor {
    target: Arc<RestTarget>,
    config: Arc<ChallengeConfig>,
    users: Arc<Vec<String>>,
    mock_url: Option<String>,
    http: reqwest::Client,
}

impl Auditor {
    /// Reads through `target` (the users' own credentials), goals as `config` has them, grants
    /// from the reward mock at `mock_url` when there is one.
    pub fn new(
        target: Arc<RestTarget>,
        config: Arc<ChallengeConfig>,
        users: Arc<Vec<String>>,
        mock_url: Option<String>,
    ) -> Self {
        Self { target, config, users, mock_url, http: reqwest::Client::new() }
    }

    /// The goals of `users`, read through the API.
    pub async fn snapshot(&self, users: &[usize]) -> Result<Snapshot, String> {
        let reads = futures::stream::iter(users.iter().copied())
            .map(|user| {
                let mut client = RestClient::new(self.target.clone());
                async move { (user, self.read(&mut client, user).await) }
            })
            .buffer_unordered(CONCURRENCY);
        let mut snapshot = HashMap::new();
        let mut reads = std::pin::pin!(reads);
        while let Some((user, read)) = reads.next().await {
            snapshot.insert(user, read?);
        }
        Ok(snapshot)
    }

    async fn read(&self, client: &mut RestClient, user: usize) -> Result<Vec<(i64, Status)>, String> {
        let uri = self.target.challenges().clone();
        let who = || self.users.get(user).map_or("?", String::as_str).to_owned();
        let reply = client
            .send(Method::GET, uri, user, Keep::Whole)
            .await
            .map_err(|o| format!("reading {}'s goals: {}", who(), o.error.unwrap_or_default()))?;
        if reply.status != 200 {
            return Err(format!("reading {}'s goals: HTTP {}", who(), reply.status));
        }
        let view: View = serde_json::from_slice(&reply.body)
            .map_err(|e| format!("reading {}'s goals: not the challenges view: {e}", who()))?;
        let mut goals = vec![(0, Status::NotStarted); self.config.goal_count()];
        for goal in view.challenges.iter().flat_map(|c| &c.goals) {
            if let Some(index) = self.config.goal_position(&goal.goal_id) {
                let status = Status::parse(&goal.status).unwrap_or(Status::NotStarted);
                goals[index as usize] = (goal.progress, status);
            }
        }
        Ok(goals)
    }

    /// The reward mock's grants, when the mock is ours; `None` without one.
    pub async fn grants(&self) -> Option<Result<Vec<GrantRow>, String>> {
        let url = format!("{}/admin/grants", self.mock_url.as_deref()?.trim_end_matches('/'));
        let read = async {
            let response = self.http.get(&url).send().await.map_err(|e| format!("{url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{url}: HTTP {}", response.status()));
            }
            response.json::<Grants>().await.map(|g| g.grants).map_err(|e| format!("{url}: {e}"))
        };
        Some(read.await)
    }

    /// Reads the books after the load and judges them; while events look lost, the users
    /// concerned are read again (the SUT may still be flushing) until `settle` has passed.
    pub async fn check(
        &self,
        ledger: &Ledger,
        codes: &[&str],
        before: &Snapshot,
        grants_before: Option<&[GrantRow]>,
        days: i64,
        settle: Duration,
    ) -> Integrity {
        let started = tokio::time::Instant::now();
        let events = ledger.events();
        let claims = ledger.claims();
        let mut touched: Vec<usize> = events.iter().map(|((u, _), _)| *u as usize).collect();
        touched.extend(claims.keys().map(|(u, _)| *u as usize));
        touched.sort_unstable();
        touched.dedup();
        let mut after = match self.snapshot(&touched).await {
            Ok(after) => after,
            Err(e) => return Integrity::unavailable(format!("the books could not be read after the load: {e}")),
        };
        let books = Books { config: &self.config, codes, events: &events, claims: &claims, days };
        let mut judged = books.judge(before, &after);
        while !judged.short_users.is_empty() && started.elapsed() < settle {
            tokio::time::sleep(Duration::from_millis(500)).await;
            match self.snapshot(&judged.short_users).await {
                Ok(again) => after.extend(again),
                Err(_) => continue,
            }
            judged = books.judge(before, &after);
        }
        let mut integrity = judged.integrity;
        integrity.users_audited = before.len() as u64;
        integrity.settled_s = started.elapsed().as_secs_f64();
        match self.grants().await {
            Some(Ok(grants_after)) => {
                let index: HashMap<&str, usize> = before.keys().map(|&u| (self.users[u].as_str(), u)).collect();
                grant_checks(
                    &self.config,
                    &index,
                    grants_before.unwrap_or_default(),
                    &grants_after,
                    before,
                    &after,
                    &mut integrity,
                );
            }
            Some(Err(e)) => integrity.notes.push(format!("grants not counted: {e}")),
            None => integrity.notes.push("grants not counted: the reward platform is not Gauntlet's mock".into()),
        }
        integrity
    }
}

/// What the ledger holds, with what judging it needs.
struct Books<'a> {
    config: &'a ChallengeConfig,
    codes: &'a [&'a str],
    events: &'a [((u32, Source), SourceBook)],
    claims: &'a HashMap<(u32, String), ClaimBook>,
    days: i64,
}

/// A judgement, and the users whose events look lost (to read again).
struct Judged {
    integrity: Integrity,
    short_users: Vec<usize>,
}

impl Books<'_> {
    fn source_of(&self, goal: &Goal) -> Option<Source> {
        match goal.event_source {
            EventSource::Login => Some(Source::Login),
            EventSource::Statistic => {
                let index = self.codes.iter().position(|c| *c == goal.stat_code)?;
                Some(Source::Stat(u8::try_from(index).ok()?))
            }
        }
    }

    fn judge(&self, before: &Snapshot, after: &Snapshot) -> Judged {
        let mut integrity = Integrity::default();
        let mut short: HashSet<usize> = HashSet::new();
        let books: HashMap<(u32, Source), &SourceBook> = self.events.iter().map(|(k, b)| (*k, b)).collect();
        for (_, book) in self.events {
            integrity.events_accepted += book.accepted;
            integrity.events_unknown += book.unknown;
        }
        for (&user, goals_after) in after {
            let Some(goals_before) = before.get(&user) else { continue };
            for goal_ref in self.config.goal_refs() {
                let goal = &goal_ref.goal;
                let i = goal_ref.index as usize;
                let ((bp, bs), (ap, status)) = (goals_before[i], goals_after[i]);
                let mut flag = |what: &str, n: u64, lost: bool, integrity: &mut Integrity| {
                    if lost {
                        integrity.events_lost += n;
                        short.insert(user);
                    } else {
                        integrity.events_double_applied += n;
                    }
                    if integrity.examples.len() < EXAMPLES {
                        integrity.examples.push(format!("user #{user}, goal {}: {what}", goal.id));
                    }
                };
                if bs == Status::Claimed {
                    if (ap, status) != (bp, bs) {
                        flag(
                            &format!("claimed before the run, now {ap} {}", status.as_str()),
                            1,
                            false,
                            &mut integrity,
                        );
                    }
                    continue;
                }
                if status == Status::Claimed {
                    continue;
                }
                if bs == Status::Completed {
                    // Completed stays completed; its progress beyond the target is the layout's
                    // business (per-stat derives it from the events alone), so it is not counted.
                    if status != Status::Completed {
                        flag(&format!("completed before the run, now {}", status.as_str()), 1, true, &mut integrity);
                    }
                    continue;
                }
                let Some(source) = self.source_of(goal) else { continue };
                let Some(book) = u32::try_from(user).ok().and_then(|u| books.get(&(u, source))) else {
                    if ap != bp && Rule::of(goal) != Rule::Latest {
                        flag(&format!("no event was sent, yet progress went {bp} → {ap}"), 1, false, &mut integrity);
                    }
                    continue;
                };
                let (accepted, unknown) = (book.accepted as i64, book.unknown as i64);
                let cap = i64::from(i32::MAX);
                let done = matches!(status, Status::Completed);
                match Rule::of(goal) {
                    Rule::Total => {
                        let (low, high) = ((bp + accepted).min(cap), (bp + accepted + unknown).min(cap));
                        if ap < low {
                            flag(
                                &format!("progress {ap}, at least {low} accepted"),
                                (low - ap) as u64,
                                true,
                                &mut integrity,
                            );
                        } else if ap > high {
                            flag(
                                &format!("progress {ap}, at most {high} sent"),
                                (ap - high) as u64,
                                false,
                                &mut integrity,
                            );
                        } else if ap >= i64::from(goal.target_value) && !done {
                            flag(
                                &format!("progress {ap} reached the target, status {}", status.as_str()),
                                1,
                                true,
                                &mut integrity,
                            );
                        }
                    }
                    Rule::Days => {
                        if accepted > 0 && bp == 0 && ap == 0 {
                            flag("an accepted event did not count its day", 1, true, &mut integrity);
                        } else if ap > bp + self.days {
                            flag(
                                &format!("progress {bp} → {ap} over {} day(s)", self.days),
                                (ap - bp - self.days) as u64,
                                false,
                                &mut integrity,
                            );
                        }
                    }
                    Rule::Daily => {
                        if accepted > 0 && !done {
                            flag(
                                &format!("an event was accepted, status {}", status.as_str()),
                                1,
                                true,
                                &mut integrity,
                            );
                        }
                    }
                    Rule::Latest => {
                        if accepted > 0
                            && let Some(possible) = book.possible_last_values()
                            && !possible.contains(&i32::try_from(ap).unwrap_or(i32::MAX))
                        {
                            flag(
                                &format!("progress {ap}, not the value of any event that may be last {possible:?}"),
                                1,
                                true,
                                &mut integrity,
                            );
                        } else if book.max_accepted.is_some_and(|m| m >= goal.target_value) && !done {
                            flag(
                                &format!("a value reached the target, status {}", status.as_str()),
                                1,
                                true,
                                &mut integrity,
                            );
                        }
                    }
                }
            }
        }
        for ((user, goal), book) in self.claims {
            integrity.claims_succeeded += book.succeeded;
            if book.succeeded > 1 {
                integrity.claims_double_granted += book.succeeded - 1;
                if integrity.examples.len() < EXAMPLES {
                    integrity
                        .examples
                        .push(format!("user #{user}, goal {goal}: {} claims answered 200", book.succeeded));
                }
            }
        }
        let mut short_users: Vec<usize> = short.into_iter().collect();
        short_users.sort_unstable();
        Judged { integrity, short_users }
    }
}

/// Grants per goal from the mock's ledger (applied during the run: after minus before): a goal
/// granted twice, or claimed during the run without a grant.
fn grant_checks(
    config: &ChallengeConfig,
    audited: &HashMap<&str, usize>,
    before: &[GrantRow],
    after: &[GrantRow],
    snap_before: &Snapshot,
    snap_after: &Snapshot,
    integrity: &mut Integrity,
) {
    integrity.grants_counted = true;
    let key = |g: &GrantRow| (g.user_id.clone(), g.reward_type.clone(), g.reward_id.clone(), g.idempotency_key.clone());
    let earlier: HashMap<_, u64> = before.iter().map(|g| (key(g), g.applied)).collect();
    // Applied during the run, per (user, goal) by key, or per (user, reward) without one.
    let mut by_goal: BTreeMap<(usize, String), u64> = BTreeMap::new();
    let mut by_reward: BTreeMap<(usize, String, String), u64> = BTreeMap::new();
    for grant in after {
        let Some(&user) = audited.get(grant.user_id.as_str()) else { continue };
        let applied = grant.applied.saturating_sub(earlier.get(&key(grant)).copied().unwrap_or(0));
        if applied == 0 {
            continue;
        }
        match sut::reward::parse_grant_key(&grant.idempotency_key) {
            Some((_, _, goal)) => *by_goal.entry((user, goal)).or_default() += applied,
            None => {
                *by_reward.entry((user, grant.reward_type.clone(), grant.reward_id.clone())).or_default() += applied
            }
        }
    }
    if !by_reward.is_empty() {
        integrity
            .notes
            .push("the SUT sends grants without an idempotency key: matched to goals by user and reward".into());
    }
    let example = |integrity: &mut Integrity, text: String| {
        if integrity.examples.len() < EXAMPLES {
            integrity.examples.push(text);
        }
    };
    for ((user, goal), applied) in &by_goal {
        if *applied > 1 {
            integrity.claims_double_granted += applied - 1;
            example(integrity, format!("user #{user}, goal {goal}: granted {applied} times"));
        }
    }
    let mut expected_by_reward: BTreeMap<(usize, String, String), u64> = BTreeMap::new();
    for (&user, goals_after) in snap_after {
        let Some(goals_before) = snap_before.get(&user) else { continue };
        for goal_ref in config.goal_refs() {
            let i = goal_ref.index as usize;
            if goals_after[i].1 != Status::Claimed || goals_before[i].1 == Status::Claimed {
                continue;
            }
            let goal = &goal_ref.goal;
            if by_goal.contains_key(&(user, goal.id.clone())) {
                continue;
            }
            let reward = (user, reward_type(goal).to_owned(), goal.reward.reward_id.clone());
            if by_reward.is_empty() {
                integrity.goals_claimed_without_grant += 1;
                example(integrity, format!("user #{user}, goal {}: claimed, never granted", goal.id));
            } else {
                *expected_by_reward.entry(reward).or_default() += 1;
            }
        }
    }
    for key in expected_by_reward.keys().chain(by_reward.keys()).cloned().collect::<HashSet<_>>() {
        let (expected, granted) =
            (expected_by_reward.get(&key).copied().unwrap_or(0), by_reward.get(&key).copied().unwrap_or(0));
        if granted > expected {
            integrity.claims_double_granted += granted - expected;
        } else {
            integrity.goals_claimed_without_grant += expected - granted;
        }
    }
}

fn reward_type(goal: &Goal) -> &'static str {
    match goal.reward.reward_type {
        sut::challenges::RewardType::Item => "ITEM",
        sut::challenges::RewardType::Wallet => "WALLET",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::checks::Fate;

    const CONFIG: &str = r#"{"challenges":[{"id":"c","name":"C","goals":[
      {"id":"logins","name":"n","type":"increment","event_source":"login","requirement":{"stat_code":"login_count","target_value":100},"reward":{"type":"WALLET","reward_id":"GEMS","quantity":1}},
      {"id":"wins","name":"n","type":"absolute","requirement":{"stat_code":"wins","target_value":500},"reward":{"type":"ITEM","reward_id":"cup","quantity":1}},
      {"id":"daily","name":"n","type":"daily","requirement":{"stat_code":"wins","target_value":1},"reward":{"type":"WALLET","reward_id":"GEMS","quantity":1}}]}]}"#;
    const CODES: [&str; 1] = ["wins"];

    fn config() -> ChallengeConfig {
        sut::challenges::parse("c.json", CONFIG, false).unwrap()
    }

    fn judge(ledger: &Ledger, before: &[(i64, Status)], after: &[(i64, Status)]) -> Integrity {
        let config = config();
        let (events, claims) = (ledger.events(), ledger.claims());
        let books = Books { config: &config, codes: &CODES, events: &events, claims: &claims, days: 1 };
        let snapshot = |goals: &[(i64, Status)]| Snapshot::from([(0, goals.to_vec())]);
        books.judge(&snapshot(before), &snapshot(after)).integrity
    }

    fn events(ledger: &Ledger, logins: u64, wins: &[i32]) {
        for _ in 0..logins {
            ledger.send(0, Source::Login, None).settle(Fate::Accepted);
        }
        for &value in wins {
            ledger.send(0, Source::Stat(0), Some(value)).settle(Fate::Accepted);
        }
    }

    const NONE: (i64, Status) = (0, Status::NotStarted);

    #[test]
    fn books_that_match_the_events_are_clean() {
        let ledger = Ledger::new(1, 1);
        events(&ledger, 3, &[7, 9]);
        let after = [(3, Status::InProgress), (9, Status::InProgress), (1, Status::Completed)];
        let integrity = judge(&ledger, &[NONE; 3], &after);
        assert!(integrity.clean(), "{integrity:#?}");
        assert_eq!(integrity.events_accepted, 5);
    }

    #[test]
    fn missing_and_extra_counts_are_events_lost_and_applied_twice() {
        let ledger = Ledger::new(1, 1);
        events(&ledger, 3, &[9]);
        let short =
            judge(&ledger, &[NONE; 3], &[(1, Status::InProgress), (9, Status::InProgress), (1, Status::Completed)]);
        assert_eq!((short.events_lost, short.events_double_applied), (2, 0), "{short:#?}");
        let long =
            judge(&ledger, &[NONE; 3], &[(5, Status::InProgress), (9, Status::InProgress), (1, Status::Completed)]);
        assert_eq!((long.events_lost, long.events_double_applied), (0, 2), "{long:#?}");
        // A login of unknown fate may or may not count: 4 is fine, 5 is not.
        drop(ledger.send(0, Source::Login, None));
        let maybe =
            judge(&ledger, &[NONE; 3], &[(4, Status::InProgress), (9, Status::InProgress), (1, Status::Completed)]);
        assert!(maybe.clean(), "{maybe:#?}");
    }

    #[test]
    fn an_absolute_goal_must_end_on_a_value_that_may_be_last_and_a_daily_goal_complete() {
        let ledger = Ledger::new(1, 1);
        events(&ledger, 0, &[7, 9]);
        let stale = judge(&ledger, &[NONE; 3], &[NONE, (7, Status::InProgress), (1, Status::Completed)]);
        assert_eq!(stale.events_lost, 1, "7 was answered before 9 was sent: {stale:#?}");
        let no_daily = judge(&ledger, &[NONE; 3], &[NONE, (9, Status::InProgress), (0, Status::NotStarted)]);
        assert_eq!(no_daily.events_lost, 1, "{no_daily:#?}");
    }

    #[test]
    fn claimed_goals_stay_frozen_and_completed_ones_completed() {
        let ledger = Ledger::new(1, 1);
        events(&ledger, 2, &[]);
        let before = [(100, Status::Claimed), (600, Status::Completed), NONE];
        let changed = judge(&ledger, &before, &[(102, Status::Claimed), (0, Status::InProgress), NONE]);
        assert_eq!((changed.events_double_applied, changed.events_lost), (1, 1), "{changed:#?}");
    }

    #[test]
    fn grants_are_counted_per_goal_by_key_or_per_reward_without_one() {
        let config = config();
        let audited = HashMap::from([("u", 0)]);
        let row = |reward: &str, key: &str, applied| GrantRow {
            user_id: "u".into(),
            reward_type: if reward == "cup" { "ITEM".into() } else { "WALLET".into() },
            reward_id: reward.into(),
            idempotency_key: key.into(),
            applied,
        };
        let before = Snapshot::from([(0, vec![NONE, NONE, NONE])]);
        let after = Snapshot::from([(0, vec![(100, Status::Claimed), (500, Status::Claimed), NONE])]);
        let key = |goal| sut::reward::grant_key("test", "u", goal);
        let mut keyed = Integrity::default();
        grant_checks(&config, &audited, &[], &[row("GEMS", &key("logins"), 2)], &before, &after, &mut keyed);
        assert_eq!((keyed.claims_double_granted, keyed.goals_claimed_without_grant), (1, 1), "{keyed:#?}");
        let mut unkeyed = Integrity::default();
        let earlier = [row("cup", "", 3)];
        grant_checks(
            &config,
            &audited,
            &earlier,
            &[row("cup", "", 4), row("GEMS", "", 1)],
            &before,
            &after,
            &mut unkeyed,
        );
        assert_eq!((unkeyed.claims_double_granted, unkeyed.goals_claimed_without_grant), (0, 0), "{unkeyed:#?}");
    }
}
