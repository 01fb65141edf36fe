//! The flush cannot be broken by one event or one lost reply, and is not held up by a claim
//! (issue: a bad event stalled every user's events; a lost commit reply double-counted; a slow
//! grant's row lock held up the flush). Each test runs against both store layouts where both
//! apply.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use proto::account::UserLoggedIn;
use proto::statistic::{StatItem, StatItemUpdated};
use sqlx::PgPool;
use sut::events::derive::Rule;
use sut::events::store::StoreKind;
use sut::reward::Latency;
use tokio::time::Instant;
use tonic::Code;

use crate::events::{Event, Model, connect, metric_value, model_of, send, stream, test_config};
use crate::helpers::{AppOptions, NAMESPACE, fresh_database, handler_settings, spawn_app, spawn_handler, token};
use crate::proxy::CommitReplyDropper;

for_both_stores!(
    bad_events_are_refused_at_the_door_and_the_good_ones_around_them_land,
    a_row_the_database_refuses_is_set_aside_and_every_other_row_lands,
    a_lost_commit_reply_does_not_apply_a_batch_twice,
);

/// Polls `check` every 20 ms until it holds, failing after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(admin_url: &str) -> String {
    reqwest::get(format!("{admin_url}/metrics")).await.unwrap().text().await.unwrap()
}

fn stat(user: &str, code: &str, value: f64, inc: f64) -> StatItemUpdated {
    StatItemUpdated {
        user_id: user.into(),
        namespace: NAMESPACE.into(),
        payload: Some(StatItem {
            user_id: user.into(),
            stat_code: code.into(),
            latest_value: value,
            inc,
            namespace: NAMESPACE.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn bad_events_are_refused_at_the_door_and_the_good_ones_around_them_land(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let handler = spawn_handler(&handler_settings(&database, store), config.clone()).await;
    let mut clients = connect(&handler.grpc_url).await;
    let long = "u".repeat(101);
    let bad_stats = [
        (stat(&long, "wins", 3.0, 0.0), "101 characters"),
        (stat("nul\0user", "wins", 3.0, 0.0), "control character U+0000"),
        (stat("u1", "wins", 3.0, 1e19), "inc is 1e19, out of range"),
        (stat("u1", "wins", f64::NAN, 0.0), "latest_value is NaN"),
        (stat("u1", "wins", f64::INFINITY, 0.0), "latest_value is inf"),
        (stat("u1", "wins", -1e300, 0.0), "out of range"),
        (stat("u1", "wi\nns", 3.0, 0.0), "stat code contains the control character U+000A"),
        (stat("", "wins", 3.0, 0.0), "no user id"),
    ];
    let good = |i: usize| Event::Stat { user: format!("u{}", i % 3), code: "wins", value: i as f64 * 7.0, inc: 2.0 };
    let mut sent = Vec::new();
    for (i, (bad, reason)) in bad_stats.into_iter().enumerate() {
        let event = good(i);
        send(&mut clients, &event).await.expect("a good event is accepted");
        sent.push(event);
        let status = clients.stat.on_message(bad).await.expect_err("a bad event is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{reason}: {status:?}");
        assert!(status.message().contains(reason), "'{}' should say '{reason}'", status.message());
    }
    let long_login = UserLoggedIn { user_id: long, namespace: NAMESPACE.into(), ..Default::default() };
    let status = clients.login.on_message(long_login).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    for i in 100..110 {
        let event = if i % 2 == 0 { good(i) } else { Event::Login { user: format!("u{}", i % 3) } };
        send(&mut clients, &event).await.expect("good events keep being accepted");
        sent.push(event);
    }
    let text = metrics(&handler.admin_url).await;
    assert_eq!(metric_value(&text, "events_rejected_total{event_type=\"stat\",reason=\"invalid\"}"), 8.0);
    handler.stop().await;
    let mut model = Model::new(config);
    let today = Utc::now().date_naive();
    for event in &sent {
        model.apply(event, today);
    }
    model.assert_matches(&PgPool::connect(&database).await.unwrap(), store).await;
}

async fn a_row_the_database_refuses_is_set_aside_and_every_other_row_lands(store: StoreKind) {
    let database = fresh_database().await;
    let config = test_config();
    let handler = spawn_handler(&handler_settings(&database, store), config.clone()).await;
    // A rule the door does not know: the database refuses every row of user "poison".
    let table = match store {
        StoreKind::PerStat => "user_stat_progress",
        StoreKind::PerGoal => "user_goal_progress",
    };
    let pool = PgPool::connect(&database).await.unwrap();
    sqlx::query(&format!("ALTER TABLE {table} ADD CONSTRAINT refuse_poison CHECK (user_id <> 'poison')"))
        .execute(&pool)
        .await
        .unwrap();
    let mut clients = connect(&handler.grpc_url).await;
    let poison = Event::Stat { user: "poison".into(), code: "wins", value: 60.0, inc: 0.0 };
    send(&mut clients, &poison).await.expect("the door accepts it");
    eventually(Duration::from_secs(20), "the refused row is set aside", || async {
        metric_value(&metrics(&handler.admin_url).await, "event_flush_rejected_rows_total") >= 1.0
    })
    .await;
    // Events of every other user (and more of the poison user's) keep landing.
    let sent = stream(&handler.grpc_url, 50, 10, 5, 4).await;
    let accepted = sent.iter().flatten().filter(|(_, outcome)| outcome.is_ok()).count();
    assert_eq!(accepted, 500, "no event waits on the refused row");
    let rejected_once = metric_value(&metrics(&handler.admin_url).await, "event_flush_rejected_rows_total");
    send(&mut clients, &poison).await.expect("accepted");
    eventually(Duration::from_secs(20), "the poison user's next row is set aside too", || async {
        metric_value(&metrics(&handler.admin_url).await, "event_flush_rejected_rows_total") > rejected_once
    })
    .await;
    handler.stop().await;
    model_of(config, &sent).assert_matches(&pool, store).await;
}

async fn a_lost_commit_reply_does_not_apply_a_batch_twice(store: StoreKind) {
    let database = fresh_database().await;
    let (base, name) = database.rsplit_once('/').unwrap();
    let upstream = base.rsplit_once('@').unwrap().1.parse().expect("host:port of the test server");
    let proxy = CommitReplyDropper::start(upstream).await;
    let through_proxy = format!("postgres://postgres@{}/{name}", proxy.addr);
    let config = test_config();
    let handler = spawn_handler(&handler_settings(&through_proxy, store), config.clone()).await;
    proxy.arm(1);
    let sent = stream(&handler.grpc_url, 50, 40, 11, 3).await;
    eventually(Duration::from_secs(20), "a commit reply was dropped", || async {
        proxy.counters.dropped.load(Ordering::SeqCst) >= 1
    })
    .await;
    eventually(Duration::from_secs(20), "the retry found its batch committed", || async {
        metric_value(&metrics(&handler.admin_url).await, "event_flush_batches_already_applied_total") >= 1.0
    })
    .await;
    handler.stop().await;
    assert!(sent.iter().flatten().all(|(_, outcome)| outcome.is_ok()));
    model_of(config, &sent).assert_matches(&PgPool::connect(&database).await.unwrap(), store).await;
}

#[tokio::test]
async fn per_stat_a_claim_waiting_on_a_slow_grant_does_not_hold_up_events() {
    let grant = Duration::from_secs(3);
    let database = fresh_database().await;
    let app = spawn_app(AppOptions {
        reward_latency: Latency::Fixed(grant),
        database_url: Some(database.clone()),
        store: StoreKind::PerStat,
        ..AppOptions::default()
    })
    .await;
    let handler = spawn_handler(&handler_settings(&database, StoreKind::PerStat), app.config.clone()).await;
    let login_goals = &app.config.login_source().expect("login goals").goals;
    let goal = login_goals
        .iter()
        .find(|g| g.goal.target_value == 1 && g.goal.prerequisites.is_empty())
        .expect("a login goal one login completes");
    let counter = login_goals
        .iter()
        .find(|g| Rule::of(&g.goal) == Rule::Total && g.goal.target_value > 3)
        .expect("a login counter");
    let shown = |user: &'static str, id: String| {
        let app = &app;
        async move {
            let view: serde_json::Value = app.get_challenges(user).await.json().await.unwrap();
            let goals = view["challenges"].as_array().unwrap().iter().flat_map(|c| c["goals"].as_array().unwrap());
            let goal = goals.into_iter().find(|g| g["goalId"] == id.as_str()).unwrap().clone();
            (goal["progress"].as_i64().unwrap(), goal["status"].as_str().unwrap().to_owned())
        }
    };
    let mut clients = connect(&handler.grpc_url).await;
    send(&mut clients, &Event::Login { user: "claimer".into() }).await.unwrap();
    eventually(Duration::from_secs(10), "the goal completes", || async {
        shown("claimer", goal.goal.id.clone()).await.1 == "completed"
    })
    .await;

    let claim = {
        let url = format!("{}/v1/challenges/{}/goals/{}/claim", app.base_url, goal.goal.challenge_id, goal.goal.id);
        let http = app.http.clone();
        tokio::spawn(async move { http.post(url).bearer_auth(token("claimer")).send().await.unwrap().status() })
    };
    eventually(Duration::from_secs(10), "the grant is under way", || async {
        app.mock.requests.load(Ordering::SeqCst) >= 1
    })
    .await;
    let waiting_since = Instant::now();
    send(&mut clients, &Event::Login { user: "claimer".into() }).await.unwrap();
    send(&mut clients, &Event::Login { user: "other".into() }).await.unwrap();
    eventually(grant, "both users' events are visible while the claim waits", || async {
        shown("claimer", counter.goal.id.clone()).await.0 == 2 && shown("other", counter.goal.id.clone()).await.0 == 1
    })
    .await;
    assert!(!claim.is_finished(), "the events landed while the claim still held its row lock");
    eprintln!("events visible {:?} into a {grant:?} grant", waiting_since.elapsed());
    assert_eq!(claim.await.unwrap(), 200);
    assert_eq!(shown("claimer", goal.goal.id.clone()).await, (1, "claimed".into()));
    handler.stop().await;
}
