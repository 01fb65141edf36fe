//! Command-line options turned into a validated [`Plan`]: the scenario with its overrides, the
//! target, the authentication, and where results go. Bad combinations are refused here, with a
//! message naming the option, so they never reach the engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sut::events::store::StoreKind;

use super::executor::Executor;
use super::options::{Balance, Deploy, Replicas, RunArgs};
use super::scenario::{Scenario, ScenarioError};
use crate::target::operations::OperationKind;

/// What to observe besides the load, when the target is not provisioned by the harness (a
/// provisioned one reports its own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ObserveTargets {
    /// The target's database (its password is left out of `run.json`).
    #[serde(serialize_with = "redacted_url")]
    pub database_url: Option<String>,
    /// `/metrics` URLs by service name.
    pub metrics_urls: BTreeMap<String, String>,
    /// Processes on this machine by name.
    pub pids: BTreeMap<String, u32>,
    /// Existing containers to sample.
    pub docker_stats: Vec<String>,
}

fn redacted_url<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    let redacted = url.as_ref().map(|text| match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("REDACTED"));
            parsed.to_string()
        }
        _ => text.clone(),
    });
    redacted.serialize(s)
}

/// Where the load goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// The harness provisions PostgreSQL and the SUT itself.
    SelfProvisioned,
    /// An existing deployment.
    External {
        /// REST base URLs, one per replica (empty: no REST).
        api_urls: Vec<String>,
        /// gRPC URLs, one per replica (empty: no events).
        grpc_urls: Vec<String>,
    },
}

/// How REST requests authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthPlan {
    /// Tokens minted from the provisioned SUT's secret, one per fixture user.
    MintedJwt,
    /// Tokens read from a file.
    TokensFile {
        /// The file.
        path: PathBuf,
    },
    /// The mock-user header.
    MockHeader,
}

/// A validated run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The scenario, overrides applied.
    pub scenario: Scenario,
    /// Each stream's validated executor.
    pub executors: BTreeMap<String, Executor>,
    /// The target.
    pub target: Target,
    /// REST authentication.
    pub auth: AuthPlan,
    /// Results folder.
    pub out: PathBuf,
    /// Users fixture.
    pub users_file: PathBuf,
    /// Challenge configuration for a provisioned SUT.
    pub challenges_file: PathBuf,
    /// Namespace.
    pub namespace: String,
    /// REST path prefix.
    pub base_path: String,
    /// gRPC connections.
    pub grpc_connections: usize,
    /// Request timeout.
    #[serde(with = "crate::definition::text::duration_text")]
    pub request_timeout: Duration,
    /// Extra arguments for provisioned services.
    pub service_args: BTreeMap<String, Vec<String>>,
    /// Suppress progress lines.
    pub quiet: bool,
    /// What to observe of an external target.
    pub observe: ObserveTargets,
    /// How a provisioned SUT runs.
    pub deploy: Deploy,
    /// Replicas of each provisioned service.
    pub replicas: Replicas,
    /// How calls spread over replicas.
    pub balance: Balance,
    /// The SUT's progress layout, where known.
    pub store: Option<StoreKind>,
    /// Users generated and seeded with progress before the load, instead of the users fixture.
    pub seed_users: Option<usize>,
    /// Users audited for integrity (0: none).
    pub audit_users: usize,
    /// An external target's reward mock.
    pub reward_mock_url: Option<String>,
    /// How long the audit waits for the SUT to settle.
    #[serde(with = "crate::definition::text::duration_text")]
    pub audit_settle: Duration,
    /// This process's share of a distributed run (the whole run when alone).
    pub segment: Segment,
    /// Users (and their tokens) handed over by a coordinator, instead of a fixture file.
    #[serde(skip)]
    pub given_users: Option<GivenUsers>,
}

/// Users handed over whole, with a token each (same order) or none (mock authentication).
#[derive(Debug, Clone)]
pub struct GivenUsers {
    /// The user ids.
    pub users: Vec<String>,
    /// One token per user, or None for the mock-user header.
    pub tokens: Option<Vec<String>>,
}

/// One worker's equal share of a distributed run, as k6's execution segments split a test: of
/// each stream's arrivals the `index`-th, then every `count`-th after it (so the workers' arrivals
/// interleave and together are exactly the whole schedule's), of each pool and each closed-model
/// user count a share that sums to the whole, and a block of the users of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Segment {
    /// This share's position, from 0.
    pub index: u32,
    /// How many shares there are.
    pub count: u32,
}

impl Segment {
    /// The whole run.
    pub const WHOLE: Segment = Segment { index: 0, count: 1 };

    /// This share of `total` things: the shares of every index add up to `total`, and differ by
    /// at most one.
    pub fn share(&self, total: u64) -> u64 {
        let (i, n) = (u64::from(self.index), u64::from(self.count.max(1)));
        (i + 1) * total / n - i * total / n
    }

    /// This share's block of `len` items (users): the blocks of every index are disjoint and
    /// cover all of them.
    pub fn block(&self, len: usize) -> std::ops::Range<usize> {
        let (i, n) = (self.index as usize, self.count.max(1) as usize);
        i * len / n..(i + 1) * len / n
    }
}

/// Why the options can't make a plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The scenario file is invalid.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// An option is invalid or does not fit the scenario.
    #[error("{0}")]
    Option(String),
}

fn option_error(message: impl Into<String>) -> PlanError {
    PlanError::Option(message.into())
}

/// The repository's root, when running from a checkout.
pub fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    match std::fs::canonicalize(&root) {
        Ok(root) if root.join("fixtures").is_dir() => root,
        _ => PathBuf::from("."),
    }
}

impl Plan {
    /// Validates `scenario` with `args`.
    pub fn new(mut scenario: Scenario, args: &RunArgs) -> Result<Self, PlanError> {
        let mut executors = BTreeMap::new();
        for (name, stream) in &scenario.streams {
            let mut executor =
                stream.executor(scenario.duration, scenario.latency_limit(name)).map_err(option_error)?;
            let rest = stream.is_rest();
            let events = stream.operations.keys().all(|o| matches!(o, OperationKind::Login | OperationKind::Stat));
            let rate = if rest {
                args.rps
            } else if events {
                args.eps
            } else {
                None
            };
            if let Some(rate) = rate {
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(option_error(format!("--{} must be > 0", if rest { "rps" } else { "eps" })));
                }
                executor.set_rate(rate).map_err(|e| {
                    option_error(format!("--{}: stream '{name}': {e}", if rest { "rps" } else { "eps" }))
                })?;
                if stream.max_vus == Some(crate::definition::stream::MaxVus::Auto) {
                    executor.size_pool(scenario.latency_limit(name)).map_err(option_error)?;
                }
            }
            if let Some(duration) = args.duration {
                if duration.is_zero() {
                    return Err(option_error("--duration must be > 0"));
                }
                executor
                    .set_duration(duration)
                    .map_err(|e| option_error(format!("--duration: stream '{name}': {e}")))?;
            }
            if let Some(vus) = args.vus {
                if vus == 0 {
                    return Err(option_error("--vus must be > 0"));
                }
                executor.set_vus(vus).map_err(|e| option_error(format!("--vus: stream '{name}': {e}")))?;
            }
            executors.insert(name.clone(), executor);
        }
        if let Some(duration) = args.duration {
            scenario.duration = duration;
        }
        for (flag, given, wanted) in [("--rps", args.rps.is_some(), true), ("--eps", args.eps.is_some(), false)] {
            let matches = |s: &crate::definition::stream::Stream| {
                if wanted {
                    s.is_rest()
                } else {
                    s.operations.keys().all(|o| matches!(o, OperationKind::Login | OperationKind::Stat))
                }
            };
            if given && !scenario.streams.values().any(matches) {
                return Err(option_error(format!("{flag}: scenario '{}' has no such stream", scenario.name)));
            }
        }
        let longest = executors.values().map(Executor::duration).max().unwrap_or_default();
        if longest > args.max_duration {
            return Err(option_error(format!(
                "the load would last {}s, longer than --max-duration {}s",
                longest.as_secs(),
                args.max_duration.as_secs()
            )));
        }
        let needs_rest = scenario
            .streams
            .values()
            .any(|s| s.operations.keys().any(|o| o.is_rest() || o.is_mixed() || *o == OperationKind::EndToEnd));
        let needs_grpc = scenario.streams.values().any(|s| s.is_grpc() || s.operations.keys().any(|o| o.is_mixed()));
        let target = target(args, needs_rest, needs_grpc)?;
        let auth = match (&target, &args.tokens, args.mock_auth) {
            (Target::SelfProvisioned, None, false) => AuthPlan::MintedJwt,
            (Target::SelfProvisioned, _, _) => {
                return Err(option_error("--tokens and --mock-auth apply to external targets (--api-url)"));
            }
            (Target::External { .. }, Some(_), true) => {
                return Err(option_error("give either --tokens or --mock-auth, not both"));
            }
            (Target::External { .. }, Some(path), false) => AuthPlan::TokensFile { path: path.clone() },
            (Target::External { .. }, None, true) => AuthPlan::MockHeader,
            (Target::External { .. }, None, false) if needs_rest => {
                return Err(option_error(
                    "an external REST target needs --tokens FILE (tokens for the users fixture) or --mock-auth",
                ));
            }
            (Target::External { .. }, None, false) => AuthPlan::MockHeader,
        };
        if target != Target::SelfProvisioned {
            if let Some(fault) = scenario.faults.iter().find(|f| f.needs_database()) {
                return Err(option_error(format!(
                    "fault {} stops the harness's own PostgreSQL: it needs a provisioned target (no --api-url)",
                    fault.label()
                )));
            }
            if let Some(fault) =
                scenario.faults.iter().find(|f| !f.needs_database()).filter(|_| args.reward_mock_url.is_none())
            {
                return Err(option_error(format!(
                    "fault {} changes the reward mock: give its URL with --reward-mock-url",
                    fault.label()
                )));
            }
        }
        if args.grpc_connections == 0 {
            return Err(option_error("--grpc-connections must be > 0"));
        }
        if args.request_timeout.is_zero() {
            return Err(option_error("--request-timeout must be > 0"));
        }
        let mut service_args = BTreeMap::new();
        if target == Target::SelfProvisioned {
            let mut mock = Vec::new();
            if let Some(latency) = &args.reward_latency {
                latency.parse::<sut::reward::Latency>().map_err(|e| option_error(format!("--reward-latency: {e}")))?;
                mock.extend(["--latency".to_owned(), latency.clone()]);
            }
            if let Some(rate) = args.reward_failure_rate {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(option_error("--reward-failure-rate must be between 0 and 1"));
                }
                mock.extend(["--failure-rate".to_owned(), rate.to_string()]);
            }
            service_args.insert("reward-mock".to_owned(), mock);
            let store = vec!["--store".to_owned(), args.store.unwrap_or_default().to_string()];
            for service in ["challenge-service", "event-handler"] {
                service_args.insert(service.to_owned(), store.clone());
            }
        } else if args.replicas.is_some() {
            return Err(option_error(
                "--replicas starts a provisioned SUT's replicas: an external target's replicas are its own",
            ));
        } else if args.reward_latency.is_some() || args.reward_failure_rate.is_some() {
            return Err(option_error("--reward-latency and --reward-failure-rate apply to a provisioned SUT"));
        } else if args.seed_users.is_some() {
            return Err(option_error("--seed-users applies to a provisioned SUT"));
        }
        if args.seed_users == Some(0) {
            return Err(option_error("--seed-users must be > 0"));
        }
        let store = if target == Target::SelfProvisioned { Some(args.store.unwrap_or_default()) } else { args.store };
        let observe = observe_targets(args, &target)?;
        let root = workspace_root();
        let out = args.out.clone().unwrap_or_else(|| default_results_path(&root.join("results"), &scenario.name));
        Ok(Self {
            executors,
            target,
            auth,
            out,
            users_file: args.users.clone().unwrap_or_else(|| root.join("fixtures/users.json")),
            challenges_file: args.challenges.clone().unwrap_or_else(|| root.join("fixtures/challenges.json")),
            namespace: args.namespace.clone(),
            base_path: args.base_path.trim_end_matches('/').to_owned(),
            grpc_connections: args.grpc_connections,
            request_timeout: args.request_timeout,
            service_args,
            quiet: args.quiet,
            observe,
            deploy: args.deploy,
            replicas: args.replicas.unwrap_or_default(),
            balance: args.balance,
            store,
            seed_users: args.seed_users,
            audit_users: args.audit_users,
            reward_mock_url: args.reward_mock_url.clone(),
            audit_settle: args.audit_settle,
            segment: Segment::WHOLE,
            given_users: None,
            scenario,
        })
    }

    /// The streams as the engine runs them.
    pub fn stream_plans(&self) -> Vec<StreamPlan> {
        self.scenario
            .streams
            .iter()
            .map(|(name, stream)| StreamPlan {
                name: name.clone(),
                executor: self.executors[name].clone(),
                operations: stream.operations.clone(),
                segment: self.segment,
            })
            .collect()
    }

    /// The plan for `segment` of this one (see [`Segment`]): every pool and closed-model user
    /// count split; the arrival schedules are split as the engine runs them.
    pub fn segmented(&self, segment: Segment) -> Plan {
        let mut plan = self.clone();
        for executor in plan.executors.values_mut() {
            executor.split(segment);
        }
        plan.segment = segment;
        plan
    }

    /// The streams' names, in the plan's order (k6's `scenario` tag values).
    pub fn stream_names(&self) -> Vec<String> {
        self.scenario.streams.keys().cloned().collect()
    }

    /// How long the load lasts.
    pub fn duration(&self) -> Duration {
        self.executors.values().map(Executor::duration).max().unwrap_or_default()
    }
}

fn observe_targets(args: &RunArgs, target: &Target) -> Result<ObserveTargets, PlanError> {
    let given = args.database_url.is_some() || !args.metrics_urls.is_empty() || !args.pids.is_empty();
    if args.deploy == Deploy::Docker && *target != Target::SelfProvisioned {
        return Err(option_error("--deploy docker provisions the SUT itself: leave out --api-url/--grpc-url"));
    }
    if *target == Target::SelfProvisioned {
        if given {
            return Err(option_error(
                "--database-url, --metrics-url and --pid describe an external target (--api-url/--grpc-url); a \
                 provisioned one is observed without them",
            ));
        }
        return Ok(ObserveTargets { docker_stats: args.docker_stats.clone(), ..ObserveTargets::default() });
    }
    let mut pids = BTreeMap::new();
    for (name, pid) in &args.pids {
        let pid: u32 = pid.parse().map_err(|_| option_error(format!("--pid {name}={pid}: not a process id")))?;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return Err(option_error(format!("--pid {name}={pid}: no such process on this machine")));
        }
        pids.insert(name.clone(), pid);
    }
    for (name, url) in &args.metrics_urls {
        url::Url::parse(url).map_err(|e| option_error(format!("--metrics-url {name}={url}: {e}")))?;
    }
    Ok(ObserveTargets {
        database_url: args.database_url.clone(),
        metrics_urls: args.metrics_urls.iter().cloned().collect(),
        pids,
        docker_stats: args.docker_stats.clone(),
    })
}

fn target(args: &RunArgs, needs_rest: bool, needs_grpc: bool) -> Result<Target, PlanError> {
    if args.api_url.is_none() && args.grpc_url.is_none() {
        return Ok(Target::SelfProvisioned);
    }
    if needs_rest && args.api_url.is_none() {
        return Err(option_error("this scenario sends REST requests: give --api-url too (or neither URL)"));
    }
    if needs_grpc && args.grpc_url.is_none() {
        return Err(option_error("this scenario sends events: give --grpc-url too (or neither URL)"));
    }
    let urls = |flag: &str, given: &Option<String>| -> Result<Vec<String>, PlanError> {
        let list = given.iter().flat_map(|g| g.split(',')).map(|u| u.trim().trim_end_matches('/').to_owned());
        list.map(|url| check_loopback(flag, &url).map(|()| url)).collect()
    };
    Ok(Target::External { api_urls: urls("--api-url", &args.api_url)?, grpc_urls: urls("--grpc-url", &args.grpc_url)? })
}

/// Load goes to loopback addresses only: a remote deployment is reached through a tunnel or
/// port-forward to 127.0.0.1.
fn check_loopback(flag: &str, url: &str) -> Result<(), PlanError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| option_error(format!("{flag} '{url}': {e}")))?;
    if !matches!(parsed.scheme(), "http") {
        return Err(option_error(format!("{flag} '{url}': only http:// targets are supported")));
    }
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if !loopback {
        return Err(option_error(format!(
            "{flag} '{url}': load goes to loopback addresses only; reach a remote deployment through a \
             port-forward or tunnel to 127.0.0.1"
        )));
    }
    if parsed.port_or_known_default().is_none() {
        return Err(option_error(format!("{flag} '{url}': give a port")));
    }
    Ok(())
}

/// One stream as the engine runs it.
#[derive(Debug)]
pub struct StreamPlan {
    /// The stream's name.
    pub name: String,
    /// How iterations start.
    pub executor: Executor,
    /// Operations and weights.
    pub operations: BTreeMap<OperationKind, u32>,
    /// This process's share of the stream's arrivals.
    pub segment: Segment,
}

/// A default results folder: `results/<UTC timestamp>-<scenario>`.
pub fn default_results_path(root: &Path, scenario: &str) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    root.join(format!("{stamp}-{scenario}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::builtin;

    fn plan(name: &str, args: RunArgs) -> Result<Plan, PlanError> {
        Plan::new(
            builtin::named(name).unwrap(),
            &RunArgs {
                max_duration: Duration::from_secs(7200),
                namespace: "test".into(),
                grpc_connections: 1,
                request_timeout: Duration::from_secs(10),
                ..args
            },
        )
    }

    #[test]
    fn overrides_reach_the_matching_streams() {
        let p = plan(
            "scenario3",
            RunArgs {
                rps: Some(123.0),
                eps: Some(456.0),
                duration: Some(Duration::from_secs(7)),
                ..Default::default()
            },
        )
        .unwrap();
        let rates: Vec<f64> = p.executors.values().filter_map(|e| e.target_rate_at(Duration::ZERO)).collect();
        assert!(rates.contains(&123.0) && rates.contains(&456.0), "{rates:?}");
        assert_eq!(p.duration(), Duration::from_secs(7));
        assert_eq!(p.target, Target::SelfProvisioned);
        assert_eq!(p.auth, AuthPlan::MintedJwt);
    }

    #[test]
    fn bad_combinations_are_refused_with_the_option_named() {
        let e = plan("scenario2", RunArgs { rps: Some(10.0), ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("--rps"), "{e}");
        let e = plan("scenario3", RunArgs { api_url: Some("http://127.0.0.1:8080".into()), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("--grpc-url"), "{e}");
        let e = plan(
            "scenario1",
            RunArgs { api_url: Some("http://10.1.2.3:8080".into()), mock_auth: true, ..Default::default() },
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = plan("scenario1", RunArgs { api_url: Some("http://127.0.0.1:8080".into()), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("--tokens"), "{e}");
        let e = plan("scenario1", RunArgs { duration: Some(Duration::from_secs(3 * 3600)), ..Default::default() })
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-duration"), "{e}");
        let e = plan("scenario1", RunArgs { mock_auth: true, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("external"), "{e}");
        let replicas = Some(super::super::options::Replicas { challenge_service: 2, event_handler: 1 });
        let external =
            RunArgs { api_url: Some("http://127.0.0.1:8080".into()), mock_auth: true, replicas, ..Default::default() };
        let e = plan("scenario1", external).unwrap_err().to_string();
        assert!(e.contains("--replicas"), "{e}");
    }

    #[test]
    fn an_external_target_with_mock_auth_is_accepted() {
        let p = plan(
            "scenario3",
            RunArgs {
                api_url: Some("http://localhost:8080/".into()),
                grpc_url: Some("http://127.0.0.1:6565".into()),
                mock_auth: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            p.target,
            Target::External {
                api_urls: vec!["http://localhost:8080".into()],
                grpc_urls: vec!["http://127.0.0.1:6565".into()]
            }
        );
        assert_eq!(p.auth, AuthPlan::MockHeader);
    }
}
