//! Property-based fuzzing of what a user writes: scenario files (arbitrary text, and the shipped
//! scenarios with one value replaced by anything) and threshold expressions and metric keys. The
//! properties: nothing panics, and every refusal is an error that names what was wrong. The case
//! counts keep the whole file to seconds in CI; `FUZZ_CASES=N` runs N cases per property instead.

use loadgen::definition::scenario::Scenario;
use loadgen::definition::threshold::{Metric, ThresholdExpr};
use proptest::prelude::*;
use serde_yaml::Value;

/// `cases` per property, or `FUZZ_CASES` when set (for a longer pass by hand).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

const SHIPPED: &[&str] = &[
    include_str!("../../scenarios/scenario1.yaml"),
    include_str!("../../scenarios/scenario2.yaml"),
    include_str!("../../scenarios/scenario3.yaml"),
    include_str!("../../scenarios/scenario4.yaml"),
    include_str!("../../scenarios/scenario5.yaml"),
    include_str!("../../scenarios/db-outage.yaml"),
    include_str!("../../scenarios/login-rush.yaml"),
    include_str!("../../scenarios/claim-stampede.yaml"),
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z_]{1,10}",
        "[0-9]{1,4}(ms|s|m|h)?",
        Just("p(95)<300".to_owned()),
        Just("rate<0.01".to_owned()),
        Just("constant-arrival-rate".to_owned()),
        any::<String>(),
    ]
}

fn yaml_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Sequence),
            proptest::collection::vec((word(), inner), 0..3)
                .prop_map(|pairs| Value::Mapping(pairs.into_iter().map(|(k, v)| (Value::from(k), v)).collect())),
        ]
    })
}

/// Every node of `value`, as a path of keys/indices.
fn paths(value: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                at.push(key.clone());
                paths(child, at, out);
                at.pop();
            }
        }
        Value::Sequence(items) => {
            for (index, child) in items.iter().enumerate() {
                at.push(Value::from(index as u64));
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node<'a>(value: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(value, |node, step| match node {
        Value::Sequence(items) => &mut items[step.as_u64().expect("an index") as usize],
        Value::Mapping(map) => map.get_mut(step).expect("a key from this document"),
        other => other,
    })
}

fn assert_named(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = Scenario::parse("s.yaml", text) {
        let message = error.to_string();
        prop_assert!(message.starts_with("s.yaml"), "{}", message);
        prop_assert!(message.len() > "s.yaml: ".len(), "{}", message);
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(10_000))]

    #[test]
    fn a_shipped_scenario_with_any_one_value_replaced_loads_or_names_the_problem(
        which in 0..SHIPPED.len(), choice in any::<prop::sample::Index>(), replacement in yaml_value()
    ) {
        let mut scenario: Value = serde_yaml::from_str(SHIPPED[which]).expect("a shipped scenario is YAML");
        let mut all = Vec::new();
        paths(&scenario, &mut Vec::new(), &mut all);
        let path = choice.get(&all).clone();
        *node(&mut scenario, &path) = replacement;
        assert_named(&serde_yaml::to_string(&scenario).expect("YAML"))?;
    }

    #[test]
    fn any_text_as_a_scenario_loads_or_names_the_problem(text in any::<String>()) {
        assert_named(&text)?;
    }

    #[test]
    fn any_threshold_expression_parses_or_says_why(
        text in prop_oneof![
            any::<String>(),
            "(p\\([0-9.]{0,6}\\)|avg|rate|count|max|min|med|value)(<|<=|>|>=|==|!=|=)?[-0-9.e]{0,8}( over [0-9a-z]{0,4})?",
        ]
    ) {
        if let Err(why) = ThresholdExpr::parse(&text) {
            prop_assert!(!why.trim().is_empty());
        }
    }

    #[test]
    fn any_metric_key_parses_or_says_why(
        text in prop_oneof![
            any::<String>(),
            "(http_req_duration|grpc_req_duration|latency|dropped_ratio|checks)(\\{[a-z_]{0,10}(:[a-zA-Z0-9 /]{0,12})?(,[a-z]{0,8}:[a-z0-9]{0,5})?\\}?)?",
        ]
    ) {
        if let Err(why) = Metric::parse(&text) {
            prop_assert!(!why.trim().is_empty());
        }
    }
}
