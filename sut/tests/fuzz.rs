//! Property-based fuzzing of what reaches the SUT from outside: event messages (as bytes off the
//! wire and as decoded fields) through the `OnMessage` validation path, and challenge
//! configuration files (arbitrary text, and valid files with one value replaced by anything).
//! The properties: nothing panics, and every refusal is a clear error (a gRPC status with a
//! message; a configuration error naming the file). The case counts keep the whole file to a
//! few seconds in CI; `FUZZ_CASES=N` runs N cases per property instead.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use prost::Message;
use proto::account::user_authentication_user_logged_in_service_server::UserAuthenticationUserLoggedInService;
use proto::account::{UserAccount, UserLoggedIn, UserLoggedInPayload};
use proto::statistic::statistic_stat_item_updated_service_server::StatisticStatItemUpdatedService;
use proto::statistic::{StatItem, StatItemUpdated};
use serde_json::Value;
use sut::challenges::{self, FixtureShape};
use sut::events::buffer::EventBuffer;
use sut::events::grpc::{EventMetrics, EventService};
use sut::events::store::PerStatStore;
use tonic::{Code, Request};

/// `cases` per property, or `FUZZ_CASES` when set (for a longer pass by hand).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn service() -> EventService<PerStatStore> {
    let text = challenges::generate_challenges(FixtureShape::default()).to_string();
    let config = Arc::new(challenges::parse("reference", &text, false).expect("reference fixture"));
    // The pool never connects: OnMessage only buffers.
    let pool = sqlx::PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").expect("a lazy pool");
    let store = Arc::new(PerStatStore::new(pool, config));
    let buffer = Arc::new(EventBuffer::new(10_000_000));
    EventService::new(store, buffer, "test", Duration::from_millis(10), EventMetrics::register(&Default::default()))
}

/// One runtime and one service for every case (the lazy pool needs a runtime around it).
fn harness() -> &'static (tokio::runtime::Runtime, EventService<PerStatStore>) {
    static HARNESS: std::sync::OnceLock<(tokio::runtime::Runtime, EventService<PerStatStore>)> =
        std::sync::OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        let service = {
            let _inside = runtime.enter();
            service()
        };
        (runtime, service)
    })
}

/// Accepted, or refused as invalid with a message that says why.
fn assert_clear(result: Result<tonic::Response<()>, tonic::Status>) -> Result<(), TestCaseError> {
    if let Err(status) = result {
        prop_assert_eq!(status.code(), Code::InvalidArgument, "{:?}", status);
        prop_assert!(!status.message().trim().is_empty(), "{:?}", status);
    }
    Ok(())
}

/// Strings that reach the edges: empty, control characters, long, non-ASCII, the namespace.
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("test".to_owned()),
        Just("user-000001".to_owned()),
        Just("wins".to_owned()),
        "[a-z0-9_-]{1,12}",
        any::<String>(),
        ".{95,110}",
        "[\\x00-\\x1f]{1,3}",
    ]
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-1.0),
        Just(9_007_199_254_740_993.0),
        -1e6..1e6f64,
        any::<f64>(),
    ]
}

prop_compose! {
    fn stat_event()(namespace in id(), payload_namespace in id(), user in id(), payload_user in id(),
                    code in id(), latest in value(), inc in value()) -> StatItemUpdated {
        StatItemUpdated {
            namespace,
            user_id: user,
            payload: Some(StatItem {
                namespace: payload_namespace,
                stat_code: code,
                user_id: payload_user,
                latest_value: latest,
                inc,
                ..StatItem::default()
            }),
            ..StatItemUpdated::default()
        }
    }
}

prop_compose! {
    fn login_event()(namespace in id(), user in id(), account_user in id(), account_namespace in id(),
                     with_payload in any::<bool>()) -> UserLoggedIn {
        UserLoggedIn {
            namespace,
            user_id: user,
            payload: with_payload.then(|| UserLoggedInPayload {
                user_account: Some(UserAccount { user_id: account_user, namespace: account_namespace, ..Default::default() }),
                ..Default::default()
            }),
            ..UserLoggedIn::default()
        }
    }
}

proptest! {
    #![proptest_config(config(10_000))]

    #[test]
    fn any_stat_event_is_accepted_or_refused_with_a_reason(event in stat_event()) {
        let (runtime, service) = harness();
        assert_clear(runtime.block_on(StatisticStatItemUpdatedService::on_message(service, Request::new(event))))?;
    }

    #[test]
    fn any_login_event_is_accepted_or_refused_with_a_reason(event in login_event()) {
        let (runtime, service) = harness();
        assert_clear(runtime.block_on(UserAuthenticationUserLoggedInService::on_message(service, Request::new(event))))?;
    }

    #[test]
    fn any_bytes_decode_to_an_error_or_an_event_the_service_judges(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let (runtime, service) = harness();
        if let Ok(event) = StatItemUpdated::decode(bytes.as_slice()) {
            assert_clear(runtime.block_on(StatisticStatItemUpdatedService::on_message(service, Request::new(event))))?;
        }
        if let Ok(event) = UserLoggedIn::decode(bytes.as_slice()) {
            assert_clear(runtime.block_on(UserAuthenticationUserLoggedInService::on_message(service, Request::new(event))))?;
        }
    }
}

/// A small valid configuration to mutate.
fn small_config() -> Value {
    serde_json::json!({"challenges": [{"id": "c1", "name": "C", "description": "d", "goals": [
        {"id": "g1", "name": "G1", "type": "absolute", "event_source": "statistic",
         "requirement": {"stat_code": "wins", "operator": ">=", "target_value": 3},
         "reward": {"type": "WALLET", "reward_id": "GEMS", "quantity": 10}, "prerequisites": []},
        {"id": "g2", "name": "G2", "type": "increment", "daily": true, "event_source": "login",
         "requirement": {"stat_code": "login_count", "operator": ">=", "target_value": 2},
         "reward": {"type": "ITEM", "reward_id": "SWORD", "quantity": 1}, "prerequisites": ["g1"]}]}]})
}

/// Every node's path in `value` (object keys and array indices).
fn paths(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                at.push(key.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                at.push(index.to_string());
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(value: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(value, |node, step| match node {
        Value::Array(items) => &mut items[step.parse::<usize>().expect("an index")],
        other => &mut other[step.as_str()],
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        id().prop_map(Value::from),
        Just(Value::from("g1")),
        Just(Value::from("g2")),
        Just(Value::from("10")),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(id(), inner, 0..3).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn assert_config_outcome(file: &str, text: &str, yaml: bool) -> Result<(), TestCaseError> {
    if let Err(error) = challenges::parse(file, text, yaml) {
        let message = error.to_string();
        prop_assert!(message.starts_with(&format!("{file}: ")), "{}", message);
        prop_assert!(message.len() > file.len() + 2, "{}", message);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(10_000))]

    #[test]
    fn a_configuration_with_any_one_value_replaced_loads_or_names_the_problem(
        choice in any::<prop::sample::Index>(), replacement in json_value(), yaml in any::<bool>()
    ) {
        let mut config = small_config();
        let mut all = Vec::new();
        paths(&config, &mut Vec::new(), &mut all);
        let path = choice.get(&all).clone();
        *node(&mut config, &path) = replacement;
        let text = if yaml { serde_yaml::to_string(&config).expect("YAML") } else { config.to_string() };
        assert_config_outcome(if yaml { "c.yaml" } else { "c.json" }, &text, yaml)?;
    }

    #[test]
    fn any_text_as_a_configuration_loads_or_names_the_problem(text in any::<String>(), yaml in any::<bool>()) {
        assert_config_outcome("c", &text, yaml)?;
    }
}
