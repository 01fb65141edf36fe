//! Granting rewards through the reward platform (SPEC §3 claim flow, §4 mock): ids reach the
//! platform as the ids they are, and a grant is applied once however often it is retried.

use reqwest::StatusCode;
use serde_json::{Value, json};
use sut::reward::mock::GrantRecord;

use crate::helpers::{AppOptions, TestApp, spawn_app};

const CHALLENGE: &str = "challenge-001";
/// A WALLET (GEMS) goal without prerequisites.
const WALLET_GOAL: &str = "challenge-001-goal-01";
/// An ITEM goal without prerequisites.
const ITEM_GOAL: &str = "challenge-001-goal-02";

async fn set_mock(app: &TestApp, settings: Value) -> reqwest::Response {
    app.http.put(format!("{}/admin/settings", app.mock_url)).json(&settings).send().await.expect("PUT settings")
}

fn grants_to(app: &TestApp, user: &str) -> Vec<GrantRecord> {
    app.mock.grants().into_iter().filter(|g| g.user_id == user).collect()
}

#[tokio::test]
async fn ids_with_slashes_reach_the_platform_as_one_path_segment() {
    let app = spawn_app(AppOptions::default()).await;
    let user = "u1/../../../../namespaces/other/users/victim";
    for goal in [WALLET_GOAL, ITEM_GOAL] {
        app.put_row(user, goal, 50, "completed").await;
        assert_eq!(app.claim(user, CHALLENGE, goal).await.status(), StatusCode::OK);
    }
    let grants = app.mock.grants();
    assert!(grants.iter().all(|g| g.user_id == user && g.namespace == "test"), "{grants:#?}");
    assert_eq!(grants.iter().map(|g| g.applied).sum::<u64>(), 2, "{grants:#?}");
}

#[tokio::test]
async fn a_grant_whose_reply_was_lost_is_applied_once_however_often_the_claim_is_retried() {
    let app = spawn_app(AppOptions::default()).await;
    // Every request is granted, then answered with an error: the reply is lost.
    let changed = set_mock(&app, json!({"failureRate": 1.0, "failureAfterGrant": 1.0})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    for goal in [WALLET_GOAL, ITEM_GOAL] {
        app.put_row("alice", goal, 50, "completed").await;
        let response = app.claim("alice", CHALLENGE, goal).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY, "the claim cannot know the grant happened");
        assert_eq!(app.status_of("alice", goal).await.as_deref(), Some("completed"));
    }
    // The platform recovers; the player claims again.
    set_mock(&app, json!({"failureRate": 0.0})).await;
    for goal in [WALLET_GOAL, ITEM_GOAL] {
        assert_eq!(app.claim("alice", CHALLENGE, goal).await.status(), StatusCode::OK);
        assert_eq!(app.status_of("alice", goal).await.as_deref(), Some("claimed"));
    }
    let grants = grants_to(&app, "alice");
    assert_eq!(grants.len(), 2, "one key per goal: {grants:#?}");
    for grant in &grants {
        assert_eq!(grant.applied, 1, "granted once: {grant:#?}");
        assert_eq!(grant.replayed, 4, "three retries and the second claim were answered from the ledger");
        assert!(!grant.idempotency_key.is_empty());
    }
}

#[tokio::test]
async fn the_mock_settings_change_at_run_time_and_bad_values_are_named() {
    let app = spawn_app(AppOptions::default()).await;
    let url = format!("{}/admin/settings", app.mock_url);
    let changed = set_mock(&app, json!({"latency": "fixed:4.5s", "failureRate": 0.5, "failureAfterGrant": 0.5})).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let now: Value = app.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        now,
        json!({"latency": "fixed:4500ms", "failureRate": 0.5, "failureStatus": 503, "failureAfterGrant": 0.5})
    );
    let refused = set_mock(&app, json!({"failureRate": 7})).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: Value = refused.json().await.unwrap();
    assert!(error["errorMessage"].as_str().unwrap().contains("failureRate"), "{error}");
    let unchanged: Value = app.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(unchanged["failureRate"], 0.5, "a refused change changes nothing");

    let grants: Value =
        app.http.get(format!("{}/admin/grants", app.mock_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(grants, json!({"grants": []}));
}
