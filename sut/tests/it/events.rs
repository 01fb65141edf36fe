//! The event handler over real gRPC against a real PostgreSQL (SPEC §1, §5), for both store
//! layouts. The oracle is a model that applies the same events one by one, written independently
//! of the buffer and store it checks, and compared with what the store reads back for every goal.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use proto::account::user_authentication_user_logged_in_service_client::UserAuthenticationUserLoggedInServiceClient as LoginClient;
use proto::account::{UserAccount, UserLoggedIn, UserLoggedInPayload};
use proto::statistic::statistic_stat_item_updated_service_client::StatisticStatItemUpdatedServiceClient as StatClient;
use proto::statistic::{StatItem, StatItemUpdated};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use sut::challenges::{self, ChallengeConfig, GoalType};
use sut::events::store::{Store, StoreKind, UserProgress};
use sut::pg_cluster::PgCluster;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{
    NAMESPACE, fresh_database, fresh_database_on, handler_settings, spawn_handler, test_cluster_options,
};

for_both_stores!(
    random_streams_from_500_concurrent_callers_match_the_sequential_model,
    five_hundred_concurrent_logins_of_one_user_all_count,
    invalid_events_are_rejected_and_other_namespaces_skipped,
    a_database_outage_of_ten_seconds_loses_no_accepted_event,
    a_full_buffer_answers_resource_exhausted_and_loses_no_accepted_event,
    shutdown_flushes_everything_buffered,
    an_absolute_zero_keeps_an_in_progress_goal_in_progress,
);

/// What `store` reads back for `user`.
pub(crate) async fn progress_of(
    pool: &PgPool,
    config: &Arc<ChallengeConfig>,
    store: StoreKind,
    user: &str,
) -> UserProgress {
    Store::new(store, pool.clone(), config.clone()).user_progress(user).await.expect("read progress")
}

/// Users with any stored row, in either layout's tables.
async fn stored_users(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT user_id FROM user_goal_progress UNION SELECT user_id FROM user_stat_progress")
        .fetch_all(pool)
        .await
        .expect("read users")
}

/// A small configuration with every goal type on both sources, low targets so goals complete.
const TEST_CONFIG: &str = r#"{"challenges":[{"id":"c1","name":"C1","goals":[
 {"id":"login-inc","name":"n","type":"increment","event_source":"login","requirement":{"stat_code":"login_count","target_value":3},"reward":{"type":"WALLET","reward_id":"GEMS","quantity":1}},
 {"id":"login-daily","name":"n","type":"daily","event_source":"login","requirement":{"stat_code":"login_count","target_value":1},"reward":{"type":"WALLET","reward_id":"GEMS","quantity":1}},
 {"id":"login-daily-inc","name":"n","type":"increment","daily":true,"event_source":"login","requirement":{"stat_code":"login_count","target_value":2},"reward":{"type":"WALLET","reward_id":"GEMS","quantity":1}},
 {"id":"kills-abs","name":"n","type":"absolute","event_source":"statistic","requirement":{"stat_code":"enemy_kills","target_value":500},"reward":{"type":"ITEM","reward_id":"sword","quantity":1}},
 {"id":"kills-inc","name":"n","type":"increment","event_source":"statistic","requirement":{"stat_code":"enemy_kills","target_value":5},"reward":{"type":"ITEM","reward_id":"shield","quantity":1}}]},
 {"id":"c2","name":"C2","goals":[
 {"id":"wins-abs","name":"n","type":"absolute","event_source":"statistic","requirement":{"stat_code":"wins","target_value":50},"reward":{"type":"WALLET","reward_id":"GOLD","quantity":5}},
 {"id":"wins-daily-inc","name":"n","type":"increment","daily":true,"event_source":"statistic","requirement":{"stat_code":"wins","target_value":1},"reward":{"type":"WALLET","reward_id":"GOLD","quantity":5}},
 {"id":"wins-daily","name":"n","type":"daily","event_source":"statistic","requirement":{"stat_code":"wins","target_value":1},"reward":{"type":"WALLET","reward_id":"GOLD","quantity":5}},
 {"id":"wins-inc","name":"n","type":"increment","event_source":"statistic","requirement":{"stat_code":"wins","target_value":20},"reward":{"type":"WALLET","reward_id":"GOLD","quantity":5},"prerequisites":["wins-abs"]}]}]}"#;

pub(crate) fn test_config() -> Arc<ChallengeConfig> {
    Arc::new(challenges::parse("test-config", TEST_CONFIG, false).expect("test config is valid"))
}

#[derive(Debug, Clone)]
pub(crate) enum Event {
    Login { user: String },
    Stat { user: String, code: &'static str, value: f64, inc: f64 },
}

fn random_event(rng: &mut StdRng, user: &str) -> Event {
    if rng.random_bool(0.2) {
        return Event::Login { user: user.into() };
    }
    let code = ["enemy_kills", "wins", "headshots"][rng.random_range(0..3)];
    let value = if rng.random_bool(0.05) { -5.0 } else { f64::from(rng.random_range(0..1000)) + 0.7 };
    let inc = [0.0, 0.0, 0.0, 1.0, 2.7, -1.0, 0.5][rng.random_range(0..7)];
    Event::Stat { user: user.into(), code, value, inc }
}

#[derive(Clone)]
pub(crate) struct Clients {
    pub(crate) login: LoginClient<Channel>,
    pub(crate) stat: StatClient<Channel>,
}

pub(crate) async fn connect(url: &str) -> Clients {
    let channel = Channel::from_shared(url.to_owned()).unwrap().connect().await.expect("connect to the event handler");
    Clients { login: LoginClient::new(channel.clone()), stat: StatClient::new(channel) }
}

pub(crate) async fn send(clients: &mut Clients, event: &Event) -> Result<(), tonic::Status> {
    match event {
        Event::Login { user } => clients
            .login
            .on_message(UserLoggedIn {
                user_id: user.clone(),
                namespace: NAMESPACE.into(),
                payload: Some(UserLoggedInPayload {
                    user_account: Some(UserAccount { user_id: user.clone(), ..Default::default() }),
                    user_authentication: None,
                }),
                ..Default::default()
            })
            .await
            .map(drop),
        Event::Stat { user, code, value, inc } => clients
            .stat
            .on_message(StatItemUpdated {
                user_id: user.clone(),
                namespace: NAMESPACE.into(),
                payload: Some(StatItem {
                    user_id: user.clone(),
                    stat_code: (*code).into(),
                    latest_value: *value,
                    inc: *inc,
                    namespace: NAMESPACE.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .map(drop),
    }
}

/// One row of the oracle.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    progress: i64,
    status: &'static str,
    last_day: Option<NaiveDate>,
}

/// Applies events one at a time, straight from SPEC §1.
pub(crate) struct Model {
    config: Arc<ChallengeConfig>,
    rows: HashMap<(String, String), Row>,
}

impl Model {
    pub(crate) fn new(config: Arc<ChallengeConfig>) -> Self {
        Self { config, rows: HashMap::new() }
    }

    fn claimed(&mut self, user: &str, goal: &str, progress: i64) {
        self.rows.insert((user.into(), goal.into()), Row { progress, status: "claimed", last_day: None });
    }

    pub(crate) fn apply(&mut self, event: &Event, today: NaiveDate) {
        let config = self.config.clone();
        for goal in config.challenges().iter().flat_map(|c| &c.goals) {
            let (user, effect) = match event {
                Event::Login { user } if goal.event_source == challenges::EventSource::Login => (user, Effect::Count),
                Event::Stat { user, code, value, inc }
                    if goal.event_source == challenges::EventSource::Statistic && goal.stat_code == *code =>
                {
                    let effect = match goal.goal_type {
                        GoalType::Absolute if *value < 0.0 => continue,
                        GoalType::Absolute => Effect::Set(value.trunc() as i64),
                        GoalType::Increment if goal.daily => Effect::Count,
                        GoalType::Increment if *inc == 0.0 => Effect::Add(1),
                        GoalType::Increment if *inc >= 1.0 => Effect::Add(inc.trunc() as i64),
                        GoalType::Increment => continue,
                        GoalType::Daily => Effect::Count,
                    };
                    (user, effect)
                }
                _ => continue,
            };
            let row = self.rows.entry((user.clone(), goal.id.clone())).or_insert(Row {
                progress: 0,
                status: "not_started",
                last_day: None,
            });
            if row.status == "claimed" {
                continue;
            }
            let was_completed = row.status == "completed";
            let mut completed_now = false;
            match (goal.goal_type, effect) {
                (GoalType::Daily, _) => {
                    row.progress = 1;
                    completed_now = true;
                }
                (_, Effect::Count) if goal.daily => {
                    if row.last_day.is_none_or(|d| today > d) {
                        row.progress += 1;
                        row.last_day = Some(today);
                    }
                }
                (_, Effect::Count) => row.progress += 1,
                (_, Effect::Add(n)) => row.progress += n,
                (_, Effect::Set(v)) => {
                    row.progress = v;
                    completed_now = v >= i64::from(goal.target_value);
                }
            }
            if goal.goal_type != GoalType::Absolute {
                completed_now |= row.progress >= i64::from(goal.target_value);
            }
            row.status = if was_completed || completed_now {
                "completed"
            } else if row.progress > 0 || row.status == "in_progress" {
                // Progress made once is not undone by a later absolute 0.
                "in_progress"
            } else {
                "not_started"
            };
        }
    }

    /// Every goal of every user the model or the database knows, as the store reads it back.
    pub(crate) async fn assert_matches(&self, pool: &PgPool, store: StoreKind) {
        let mut users: BTreeSet<String> = self.rows.keys().map(|(user, _)| user.clone()).collect();
        users.extend(stored_users(pool).await);
        let mut mismatches = Vec::new();
        for user in &users {
            let stored = progress_of(pool, &self.config, store, user).await;
            for goal in self.config.goal_refs() {
                let id = &goal.goal.id;
                let (progress, status) =
                    self.rows.get(&(user.clone(), id.clone())).map_or((0, "not_started"), |r| (r.progress, r.status));
                let got = stored.get(goal.index);
                let (got_progress, got_status) = got.map_or((0, "not_started"), |g| (g.progress, g.status.as_str()));
                if i64::from(got_progress) != progress || got_status != status {
                    mismatches
                        .push(format!("{user}/{id}: stored {got_progress} {got_status}, model {progress} {status}"));
                }
                let has_completed_at = got.is_some_and(|g| g.completed_at.is_some());
                if has_completed_at != matches!(status, "completed" | "claimed") {
                    mismatches.push(format!("{user}/{id}: completed_at set = {has_completed_at} for {got_status}"));
                }
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} mismatches, first: {:#?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(10)]
        );
    }
}

pub(crate) fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

#[derive(Debug, Clone, Copy)]
enum Effect {
    Count,
    Add(i64),
    Set(i64),
}

/// `callers` concurrent callers, each owning its users and sending their events in order, so
/// per-user order (which absolute values depend on) is defined. Returns the accepted events.
pub(crate) async fn stream(
    url: &str,
    callers: usize,
    per_caller: usize,
    seed: u64,
    users_per_caller: usize,
) -> Vec<Vec<(Event, Result<(), Code>)>> {
    let clients = connect(url).await;
    let tasks = (0..callers).map(|caller| {
        let mut clients = clients.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed * 1_000 + caller as u64);
            let mut sent = Vec::with_capacity(per_caller);
            for _ in 0..per_caller {
                let user = format!("u{caller:03}-{}", rng.random_range(0..users_per_caller));
                let event = random_event(&mut rng, &user);
                let outcome = send(&mut clients, &event).await.map_err(|s| s.code());
                sent.push((event, outcome));
            }
            sent
        })
    });
    futures::future::join_all(tasks).await.into_iter().map(|r| r.expect("caller task")).collect()
}

pub(crate) fn model_of(config: Arc<ChallengeConfig>, sent: &[Vec<(Event, Result<(), Code>)>]) -> Model {
    let today = Utc::now().date_naive();
    let mut model = Model::new(config);
    for caller in sent {
        for (event, outcome) in caller {
            if outcome.is_ok() {
                model.apply(event, today);
            }
        }
    }
    model
}

async fn random_streams_from_500_concurrent_callers_match_the_sequential_model(store: StoreKind) {
    for seed in 1..=3 {
        let database = fresh_database().await;
        let config = test_config();
        let handler = spawn_handler(&handler_settings(&database, store), config.clone()).await;
        let pool = PgPool::connect(&database).await.unwrap();
        // Some rows are claimed already: events must never touch them.
        let mut model = Model::new(config.clone());
        for caller in (0..500).step_by(7) {
            for goal in ["kills-inc", "wins-abs", "login-inc"] {
                let user = format!("u{caller:03}-0");
                sqlx::query(
                    "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at, claimed_at) \
                     VALUES ($1, $2, $3, 'test', 77, 'claimed', now(), now())",
                )
                .bind(&user)
                .bind(goal)
                .bind(&config.goal(goal).unwrap().challenge_id)
                .execute(&pool)
                .await
                .unwrap();
                model.claimed(&user, goal, 77);
            }
        }
        let sent = stream(&handler.grpc_url, 500, 12, seed, 3).await;
        handler.stop().await;
        let failures: Vec<_> = sent.iter().flatten().filter(|(_, o)| o.is_err()).collect();
        assert!(failures.is_empty(), "no call should fail: {:?}", &failures[..failures.len().min(5)]);
        let today = Utc::now().date_naive();
        for (event, _) in sent.iter().flatten() {
            model.apply(event, today);
        }
        model.assert_matches(&pool, store).await;
    }
}

async fn five_hundred_concurrent_logins_of_one_user_all_count(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let handler = spawn_handler(&handler_settings(&database, store), config.clone()).await;
    let clients = connect(&handler.grpc_url).await;
    let calls = (0..500).map(|_| {
        let mut clients = clients.clone();
        async move { send(&mut clients, &Event::Login { user: "hot-user".into() }).await }
    });
    let results = futures::future::join_all(calls).await;
    assert!(results.iter().all(Result::is_ok));
    handler.stop().await;
    let pool = PgPool::connect(&database).await.unwrap();
    let stored = progress_of(&pool, &config, store, "hot-user").await;
    let goal = |id: &str| {
        let g = stored.get(config.goal_position(id).unwrap()).copied();
        g.map_or((0, "not_started"), |g| (g.progress, g.status.as_str()))
    };
    assert_eq!(goal("login-inc"), (500, "completed"));
    assert_eq!(goal("login-daily"), (1, "completed"));
    assert_eq!(goal("login-daily-inc"), (1, "in_progress"), "counts once per UTC day");
    assert_eq!(goal("wins-abs"), (0, "not_started"));
}

async fn invalid_events_are_rejected_and_other_namespaces_skipped(store: StoreKind) {
    let database = fresh_database().await;
    let handler = spawn_handler(&handler_settings(&database, store), test_config()).await;
    let mut clients = connect(&handler.grpc_url).await;
    let no_user = clients.login.on_message(UserLoggedIn { namespace: NAMESPACE.into(), ..Default::default() }).await;
    assert_eq!(no_user.unwrap_err().code(), Code::InvalidArgument);
    let no_code = clients
        .stat
        .on_message(StatItemUpdated {
            user_id: "u".into(),
            payload: Some(StatItem { latest_value: 3.0, ..Default::default() }),
            ..Default::default()
        })
        .await;
    let status = no_code.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("stat code"), "{}", status.message());
    let no_payload = clients.stat.on_message(StatItemUpdated { user_id: "u".into(), ..Default::default() }).await;
    assert_eq!(no_payload.unwrap_err().code(), Code::InvalidArgument);
    let elsewhere = clients
        .login
        .on_message(UserLoggedIn { user_id: "u".into(), namespace: "another".into(), ..Default::default() })
        .await;
    assert!(elsewhere.is_ok(), "acknowledged");
    handler.stop().await;
    let pool = PgPool::connect(&database).await.unwrap();
    assert!(stored_users(&pool).await.is_empty(), "nothing was written for rejected or skipped events");
}

async fn a_database_outage_of_ten_seconds_loses_no_accepted_event(store: StoreKind) {
    let cluster = PgCluster::start(&test_cluster_options()).expect("own cluster");
    let database = fresh_database_on(&cluster.url("postgres")).await;
    let config = test_config();
    let handler = spawn_handler(&handler_settings(&database, store), config.clone()).await;
    let url = handler.grpc_url.clone();
    // Stream for the whole outage: 50 callers, 20 events/s each, about 16 s.
    let streaming = tokio::spawn(async move {
        let clients = connect(&url).await;
        let tasks = (0..50).map(|caller| {
            let mut clients = clients.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(caller);
                let mut ticker = tokio::time::interval(Duration::from_millis(50));
                let mut sent = Vec::new();
                for _ in 0..320 {
                    ticker.tick().await;
                    let user = format!("u{caller:03}-{}", rng.random_range(0..4));
                    let event = random_event(&mut rng, &user);
                    let outcome = send(&mut clients, &event).await.map_err(|s| s.code());
                    sent.push((event, outcome));
                }
                sent
            })
        });
        futures::future::join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect::<Vec<_>>()
    });
    tokio::time::sleep(Duration::from_secs(3)).await; // let the stream reach the database first
    cluster.stop_server().expect("stop PostgreSQL");
    tokio::time::sleep(Duration::from_secs(10)).await; // the outage
    cluster.start_server().expect("start PostgreSQL again");
    let sent = streaming.await.unwrap();
    let metrics = reqwest::get(format!("{}/metrics", handler.admin_url)).await.unwrap().text().await.unwrap();
    let failed_flushes = metric_value(&metrics, "event_buffer_flush_failures_total");
    assert!(failed_flushes >= 1.0, "the handler saw the outage: {failed_flushes} failed flushes");
    handler.stop().await;
    let accepted = sent.iter().flatten().filter(|(_, o)| o.is_ok()).count();
    assert!(accepted > 10_000, "most events were accepted during the outage: {accepted}");
    let pool = PgPool::connect(&database).await.unwrap();
    model_of(config, &sent).assert_matches(&pool, store).await;
}

async fn a_full_buffer_answers_resource_exhausted_and_loses_no_accepted_event(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let mut settings = handler_settings(&database, store);
    settings.buffer_limit = 40;
    settings.buffer_full_wait = Duration::ZERO;
    settings.flush_interval = Duration::from_secs(3600); // only "buffer full" triggers flushes
    let handler = spawn_handler(&settings, config.clone()).await;
    let sent = stream(&handler.grpc_url, 50, 20, 9, 20).await;
    handler.stop().await;
    let exhausted = sent.iter().flatten().filter(|(_, o)| *o == Err(Code::ResourceExhausted)).count();
    let other_errors =
        sent.iter().flatten().filter(|(_, o)| matches!(o, Err(c) if *c != Code::ResourceExhausted)).count();
    assert!(exhausted > 0, "a 40-entry buffer must push back");
    assert_eq!(other_errors, 0);
    let pool = PgPool::connect(&database).await.unwrap();
    model_of(config, &sent).assert_matches(&pool, store).await;
}

async fn shutdown_flushes_everything_buffered(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let mut settings = handler_settings(&database, store);
    settings.flush_interval = Duration::from_secs(3600);
    let handler = spawn_handler(&settings, config.clone()).await;
    let sent = stream(&handler.grpc_url, 100, 20, 4, 5).await;
    let pool = PgPool::connect(&database).await.unwrap();
    assert!(stored_users(&pool).await.is_empty(), "nothing is written before the first flush");
    handler.stop().await;
    model_of(config, &sent).assert_matches(&pool, store).await;
}

/// `wins-abs` (target 50) gets 10 and then 0: within one flush (user `a`), and across two
/// handler lifetimes, so the 0 meets a stored `in_progress` row (user `b`).
async fn an_absolute_zero_keeps_an_in_progress_goal_in_progress(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let settings = handler_settings(&database, store);
    let stat = |user: &str, value: f64| Event::Stat { user: user.into(), code: "wins", value, inc: 0.0 };
    let (a_ten, a_zero, b_ten, b_zero) = (stat("a", 10.0), stat("a", 0.0), stat("b", 10.0), stat("b", 0.0));

    let handler = spawn_handler(&settings, config.clone()).await;
    let mut clients = connect(&handler.grpc_url).await;
    for event in [&a_ten, &a_zero, &b_ten] {
        send(&mut clients, event).await.expect("accepted");
    }
    handler.stop().await;
    let handler = spawn_handler(&settings, config.clone()).await;
    let mut clients = connect(&handler.grpc_url).await;
    send(&mut clients, &b_zero).await.expect("accepted");
    handler.stop().await;

    let pool = PgPool::connect(&database).await.unwrap();
    let mut model = Model::new(config.clone());
    let today = Utc::now().date_naive();
    for event in [&a_ten, &a_zero, &b_ten, &b_zero] {
        model.apply(event, today);
    }
    model.assert_matches(&pool, store).await;
    let goal = config.goal_position("wins-abs").unwrap();
    for user in ["a", "b"] {
        let progress = progress_of(&pool, &config, store, user).await;
        assert_eq!(progress.status(goal).as_str(), "in_progress", "{user}");
    }
}

#[tokio::test]
async fn metrics_use_the_plans_names() {
    let database = fresh_database().await;
    let handler = spawn_handler(&handler_settings(&database, StoreKind::default()), test_config()).await;
    let mut clients = connect(&handler.grpc_url).await;
    send(&mut clients, &Event::Login { user: "m".into() }).await.unwrap();
    let text = reqwest::get(format!("{}/metrics", handler.admin_url)).await.unwrap().text().await.unwrap();
    for name in [
        "events_received_total{event_type=\"login\"} 1",
        "events_processed_total{event_type=\"login\"} 1",
        "event_processing_duration_seconds_bucket",
        "event_buffer_size",
        "event_buffer_flush_duration_seconds",
        "event_buffer_flush_rows",
        "event_flush_rejected_rows_total 0",
        "event_flush_batches_already_applied_total 0",
        "db_pool_connections_active",
        "db_pool_connections_idle",
        "db_pool_connections_max 10",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    handler.stop().await;
}

#[tokio::test]
async fn metrics_count_the_async_runtimes_tasks() {
    let database = fresh_database().await;
    let handler = spawn_handler(&handler_settings(&database, StoreKind::default()), test_config()).await;
    let scrape =
        || async { reqwest::get(format!("{}/metrics", handler.admin_url)).await.unwrap().text().await.unwrap() };
    let before = scrape().await;
    assert!(metric_value(&before, "tokio_workers ") >= 1.0, "{before}");
    assert!(before.contains("# TYPE tokio_worker_busy_seconds_total counter"), "{before}");
    assert!(before.contains("tokio_worker_parks_total "), "{before}");
    assert!(before.contains("tokio_global_queue_depth "), "{before}");
    // 200 tasks that wait: the count of alive tasks grows by them, and falls when they end
    // (give or take the server's own tasks, such as the last scrape's connection, ending).
    let (release, waiting) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let mut waiting = waiting.clone();
            tokio::spawn(async move { while !*waiting.borrow_and_update() && waiting.changed().await.is_ok() {} })
        })
        .collect();
    let during = scrape().await;
    let grown = metric_value(&during, "tokio_alive_tasks ") - metric_value(&before, "tokio_alive_tasks ");
    assert!(grown >= 180.0, "alive tasks grew by {grown}");
    release.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    let after = scrape().await;
    assert!(metric_value(&after, "tokio_alive_tasks ") < metric_value(&during, "tokio_alive_tasks ") - 150.0);
    handler.stop().await;
}

#[tokio::test]
async fn the_admin_port_serves_a_cpu_flamegraph() {
    let database = fresh_database().await;
    let handler = spawn_handler(&handler_settings(&database, StoreKind::default()), test_config()).await;
    let bad = reqwest::get(format!("{}/debug/pprof/profile?seconds=0", handler.admin_url)).await.unwrap();
    assert_eq!(bad.status(), 400);
    // Profiles while events arrive, so the graph has something in it.
    let profile = tokio::spawn(reqwest::get(format!("{}/debug/pprof/profile?seconds=1", handler.admin_url)));
    let mut clients = connect(&handler.grpc_url).await;
    for i in 0..200 {
        send(&mut clients, &Event::Login { user: format!("p{i}") }).await.unwrap();
    }
    let response = profile.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    let svg = response.text().await.unwrap();
    assert!(svg.contains("<svg") && svg.trim_end().ends_with("</svg>"), "{}", &svg[..svg.len().min(300)]);
    handler.stop().await;
}

#[tokio::test]
async fn without_heap_sampling_the_heap_profile_says_how_to_turn_it_on() {
    // This test binary keeps the system allocator and starts without jemalloc's options, so
    // jemalloc samples nothing: the route answers 409 naming the switch (the harness's
    // scenario 4 test takes real heap profiles from the service binaries).
    let database = fresh_database().await;
    let handler = spawn_handler(&handler_settings(&database, StoreKind::default()), test_config()).await;
    let response = reqwest::get(format!("{}/debug/pprof/heap", handler.admin_url)).await.unwrap();
    assert_eq!(response.status(), 409);
    let text = response.text().await.unwrap();
    assert!(text.contains("_RJEM_MALLOC_CONF=prof:true"), "{text}");
    let metrics = reqwest::get(format!("{}/metrics", handler.admin_url)).await.unwrap().text().await.unwrap();
    assert!(!metrics.contains("heap_allocated_bytes"), "no heap size where jemalloc allocates nothing");
    handler.stop().await;
}
