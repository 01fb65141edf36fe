//! The challenge service's REST contract (SPEC §3).

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sut::events::store::StoreKind;
use sut::pg_cluster::PgCluster;
use sut::reward::Latency;
use sut::services::challenge::AuthMode;

use crate::helpers::{AppOptions, fresh_database_on, spawn_app, test_cluster_options, token};

// Goal 2 of challenge 1 is an enemy_kills goal without prerequisites; goal 10 requires goal 5.
const CHALLENGE: &str = "challenge-001";
const GOAL: &str = "challenge-001-goal-02";

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

fn assert_error_body(body: &Value, code: i64) {
    assert_eq!(body["code"], code, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert_eq!(body["details"], Value::Array(vec![]), "{body}");
}

#[tokio::test]
async fn get_merges_configuration_with_stored_progress() {
    // Rows in progress are production's layout (the per-stat layout derives them from stat rows).
    let app = spawn_app(AppOptions { store: StoreKind::PerGoal, ..AppOptions::default() }).await;
    app.put_row("alice", GOAL, 7, "in_progress").await;
    app.put_row("alice", "challenge-003-goal-01", 1, "completed").await;
    app.put_row("bob", GOAL, 999, "claimed").await;

    let response = app.get_challenges("alice").await;
    assert_eq!(response.status(), StatusCode::OK);
    let view = body(response).await;
    let challenges = view["challenges"].as_array().unwrap();
    assert_eq!(challenges.len(), 10);
    let keys: BTreeSet<&str> = challenges[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["challengeId", "name", "description", "goals"]));
    let goals: Vec<&Value> = challenges.iter().flat_map(|c| c["goals"].as_array().unwrap()).collect();
    assert_eq!(goals.len(), 500);
    let goal_keys: BTreeSet<&str> = goals[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        goal_keys,
        BTreeSet::from([
            "goalId",
            "name",
            "description",
            "requirement",
            "reward",
            "prerequisites",
            "progress",
            "status",
            "completedAt",
            "claimedAt"
        ])
    );
    let find = |id: &str| goals.iter().find(|g| g["goalId"] == id).unwrap();
    let stored = find(GOAL);
    assert_eq!(stored["progress"], 7);
    assert_eq!(stored["status"], "in_progress");
    assert_eq!(stored["completedAt"], "");
    assert_eq!(stored["requirement"]["statCode"], "enemy_kills");
    assert_eq!(stored["requirement"]["operator"], ">=");
    let completed = find("challenge-003-goal-01");
    assert_eq!(completed["status"], "completed");
    assert!(completed["completedAt"].as_str().unwrap().ends_with('Z'));
    let untouched = find("challenge-010-goal-50");
    assert_eq!((untouched["progress"].clone(), untouched["status"].clone()), (0.into(), "not_started".into()));
    assert_eq!(find("challenge-001-goal-10")["prerequisites"], serde_json::json!(["challenge-001-goal-05"]));
    // Bob's claimed row is his alone.
    assert_eq!(goals.iter().filter(|g| g["status"] == "claimed").count(), 0);
}

#[tokio::test]
async fn claiming_a_completed_goal_grants_the_reward_once() {
    let app = spawn_app(AppOptions::default()).await;
    app.put_row("alice", GOAL, 50, "completed").await;

    let response = app.claim("alice", CHALLENGE, GOAL).await;
    assert_eq!(response.status(), StatusCode::OK);
    let claimed = body(response).await;
    assert_eq!(claimed["goalId"], GOAL);
    assert_eq!(claimed["status"], "claimed");
    let reward = &app.config.goal(GOAL).unwrap().reward;
    assert_eq!(claimed["reward"]["rewardId"], reward.reward_id.as_str());
    assert_eq!(claimed["reward"]["quantity"], reward.quantity);
    assert!(claimed["claimedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.status_of("alice", GOAL).await.as_deref(), Some("claimed"));
    assert_eq!(app.mock.requests.load(Ordering::Relaxed), 1);

    let again = app.claim("alice", CHALLENGE, GOAL).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    assert_error_body(&body(again).await, 6);
    assert_eq!(app.mock.requests.load(Ordering::Relaxed), 1, "no second grant");
}

#[tokio::test]
async fn a_goal_not_completed_cannot_be_claimed() {
    let app = spawn_app(AppOptions::default()).await;
    let no_row = app.claim("alice", CHALLENGE, GOAL).await;
    assert_eq!(no_row.status(), StatusCode::BAD_REQUEST);
    assert_error_body(&body(no_row).await, 9);
    app.put_row("alice", GOAL, 1, "in_progress").await;
    assert_eq!(app.claim("alice", CHALLENGE, GOAL).await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.status_of("alice", GOAL).await.as_deref(), Some("in_progress"));
    assert_eq!(app.mock.requests.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn prerequisites_must_be_completed_or_claimed_first() {
    let app = spawn_app(AppOptions::default()).await;
    let (goal, prerequisite) = ("challenge-001-goal-10", "challenge-001-goal-05");
    app.put_row("alice", goal, 100, "completed").await;
    let refused = app.claim("alice", CHALLENGE, goal).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(body(refused).await["message"].as_str().unwrap().contains(prerequisite));
    app.put_row("alice", prerequisite, 100, "claimed").await;
    assert_eq!(app.claim("alice", CHALLENGE, goal).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_challenges_and_goals_are_404() {
    let app = spawn_app(AppOptions::default()).await;
    for (challenge, goal) in [
        ("challenge-999", GOAL),
        (CHALLENGE, "challenge-001-goal-99"),
        ("challenge-002", GOAL), // exists, but in another challenge
    ] {
        let response = app.claim("alice", challenge, goal).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{challenge}/{goal}");
        assert_error_body(&body(response).await, 5);
    }
}

#[tokio::test]
async fn one_hundred_concurrent_claims_of_one_goal_give_one_success() {
    let app =
        spawn_app(AppOptions { reward_latency: Latency::Fixed(Duration::from_millis(50)), ..AppOptions::default() })
            .await;
    app.put_row("alice", GOAL, 50, "completed").await;
    let claims = (0..100).map(|_| app.claim("alice", CHALLENGE, GOAL));
    let statuses: Vec<StatusCode> = futures::future::join_all(claims).await.iter().map(|r| r.status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CONFLICT).count(), 99, "{statuses:?}");
    assert_eq!(app.mock.requests.load(Ordering::Relaxed), 1, "the reward is granted exactly once");
}

#[tokio::test]
async fn a_failing_reward_platform_gives_502_after_retries_and_keeps_the_goal_completed() {
    let app = spawn_app(AppOptions { reward_failure_rate: 1.0, ..AppOptions::default() }).await;
    app.put_row("alice", GOAL, 50, "completed").await;
    let response = app.claim("alice", CHALLENGE, GOAL).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let error = body(response).await;
    assert_error_body(&error, 13);
    assert!(!error["message"].as_str().unwrap().contains("injected"), "platform details are not shown: {error}");
    assert_eq!(app.mock.requests.load(Ordering::Relaxed), 4, "one attempt and three retries");
    assert_eq!(app.status_of("alice", GOAL).await.as_deref(), Some("completed"));
}

#[tokio::test]
async fn a_reward_platform_slower_than_the_budget_gives_502() {
    let app = spawn_app(AppOptions {
        reward_latency: Latency::Fixed(Duration::from_secs(3)),
        claim_budget: Duration::from_secs(1),
        ..AppOptions::default()
    })
    .await;
    app.put_row("alice", GOAL, 50, "completed").await;
    let response = app.claim("alice", CHALLENGE, GOAL).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(app.status_of("alice", GOAL).await.as_deref(), Some("completed"));
}

#[tokio::test]
async fn auth_failures_are_401_or_403_and_users_cannot_claim_for_others() {
    let app = spawn_app(AppOptions::default()).await;
    let url = format!("{}/v1/challenges", app.base_url);
    let missing = app.http.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_error_body(&body(missing).await, 16);
    let garbled = app.http.get(&url).header("Authorization", "Token abc").send().await.unwrap();
    assert_eq!(garbled.status(), StatusCode::UNAUTHORIZED);

    let forged = sut::auth::mint_token(b"wrong-secret", "alice", "test", Duration::from_secs(60));
    let response = app.http.get(&url).bearer_auth(forged).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_error_body(&body(response).await, 7);
    let expired = sut::auth::mint_token_with_expiry(crate::helpers::SECRET.as_bytes(), "alice", "test", 1_000_000);
    assert_eq!(app.http.get(&url).bearer_auth(expired).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let other_namespace =
        sut::auth::mint_token(crate::helpers::SECRET.as_bytes(), "alice", "prod", Duration::from_secs(60));
    assert_eq!(app.http.get(&url).bearer_auth(other_namespace).send().await.unwrap().status(), StatusCode::FORBIDDEN);

    // Bob's goal is completed; Alice's token can only ever act on Alice's row.
    app.put_row("bob", GOAL, 50, "completed").await;
    let response = app
        .http
        .post(format!("{}/v1/challenges/{CHALLENGE}/goals/{GOAL}/claim", app.base_url))
        .bearer_auth(token("alice"))
        .header(sut::auth::MOCK_USER_HEADER, "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(app.status_of("bob", GOAL).await.as_deref(), Some("completed"));
    assert_eq!(app.mock.requests.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn mock_user_mode_takes_the_user_from_the_header() {
    let app = spawn_app(AppOptions { auth_mode: AuthMode::Mock, ..AppOptions::default() }).await;
    app.put_row("carol", GOAL, 50, "completed").await;
    let response = app
        .http
        .post(format!("{}/v1/challenges/{CHALLENGE}/goals/{GOAL}/claim", app.base_url))
        .header(sut::auth::MOCK_USER_HEADER, "carol")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(app.status_of("carol", GOAL).await.as_deref(), Some("claimed"));
}

/// Polls `/healthz` until it answers `want`, each answer bounded so a hang fails the test.
async fn wait_for_health(app: &crate::helpers::TestApp, want: StatusCode) {
    let url = format!("{}/healthz", app.base_url);
    for _ in 0..200 {
        let answer = tokio::time::timeout(Duration::from_secs(5), app.http.get(&url).send())
            .await
            .expect("/healthz answered within 5 s");
        if answer.map(|r| r.status()).ok() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/healthz never answered {want}");
}

#[tokio::test]
async fn a_stopped_database_gives_503_promptly_and_the_service_recovers() {
    let cluster = PgCluster::start(&test_cluster_options()).expect("own cluster");
    let database = fresh_database_on(&cluster.url("postgres")).await;
    let app = spawn_app(AppOptions { database_url: Some(database), ..AppOptions::default() }).await;
    wait_for_health(&app, StatusCode::OK).await;
    app.pool.close().await;

    cluster.stop_server().expect("stop PostgreSQL");

    let health = tokio::time::timeout(Duration::from_secs(5), app.http.get(format!("{}/healthz", app.base_url)).send())
        .await
        .expect("/healthz answers promptly while the database is down")
        .unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_error_body(&body(health).await, 14);
    let api = tokio::time::timeout(Duration::from_secs(5), app.get_challenges("alice"))
        .await
        .expect("the API answers promptly while the database is down");
    assert_eq!(api.status(), StatusCode::SERVICE_UNAVAILABLE);

    cluster.start_server().expect("start PostgreSQL again");
    wait_for_health(&app, StatusCode::OK).await;
    assert_eq!(app.get_challenges("alice").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn per_stat_a_goal_completed_without_its_row_is_shown_and_claimed_once() {
    let app = spawn_app(AppOptions { store: StoreKind::PerStat, ..AppOptions::default() }).await;
    let goal = app.config.goal(GOAL).unwrap().clone();
    // A stat row that completes the goal, but no goal row: what a goal added to the
    // configuration after the events sees.
    let value = goal.target_value.max(50);
    sqlx::query(
        "INSERT INTO user_stat_progress (user_id, stat_code, namespace, latest_value, max_value, total, day_count, \
         last_day, first_event_at, updated_at) VALUES ('alice', $1, 'test', $2, $2, $2, $2, current_date, now(), now())",
    )
    .bind(&goal.stat_code)
    .bind(value)
    .execute(&app.pool)
    .await
    .unwrap();
    let shown = |view: &Value| {
        view["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|c| c["goals"].as_array().unwrap())
            .find(|g| g["goalId"] == GOAL)
            .unwrap()
            .clone()
    };
    let before = shown(&body(app.get_challenges("alice").await).await);
    assert_eq!(before["status"], "completed", "{before}");
    assert!(before["completedAt"].as_str().is_some_and(|t| !t.is_empty()), "{before}");
    assert_eq!(app.status_of("alice", GOAL).await, None, "no goal row yet");

    let claims = futures::future::join_all((0..10).map(|_| app.claim("alice", CHALLENGE, GOAL))).await;
    let mut statuses: Vec<u16> = claims.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
    assert_eq!(app.mock.requests.load(Ordering::SeqCst), 1, "one grant");
    let after = shown(&body(app.get_challenges("alice").await).await);
    assert_eq!((after["status"].as_str(), after["progress"].as_i64()), (Some("claimed"), Some(i64::from(value))));
}

#[tokio::test]
async fn every_error_has_the_gateway_body_routes_and_methods_included() {
    let app = spawn_app(AppOptions::default()).await;
    let root = app.base_url.trim_end_matches("/challenge").to_owned();
    let cases = [
        (reqwest::Method::GET, format!("{}/v1/nothing-here", app.base_url), StatusCode::NOT_FOUND, 5),
        (reqwest::Method::GET, format!("{root}/elsewhere"), StatusCode::NOT_FOUND, 5),
        (reqwest::Method::DELETE, format!("{}/v1/challenges", app.base_url), StatusCode::METHOD_NOT_ALLOWED, 12),
        (
            reqwest::Method::POST,
            format!("{}/v1/challenges/%FF/goals/x/claim", app.base_url),
            StatusCode::BAD_REQUEST,
            3,
        ),
    ];
    for (method, url, status, code) in cases {
        let response = app.http.request(method.clone(), &url).bearer_auth(token("alice")).send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {url}");
        assert_error_body(&body(response).await, code);
    }
}

#[tokio::test]
async fn a_subject_the_store_cannot_hold_is_403_not_a_database_error() {
    let app = spawn_app(AppOptions::default()).await;
    for sub in ["u\u{0}1", &"x".repeat(101)] {
        let response = app.get_challenges(sub).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{sub:?}");
        assert_error_body(&body(response).await, 7);
    }
}
