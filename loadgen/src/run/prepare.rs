//! Before the load: the target provisioned (or an external one checked), fixtures loaded and
//! tokens minted, progress seeded, the event handler's channels opened, the workload built,
//! and the audited users' books read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::RunError;
use super::audit::AuditStart;
use crate::definition::plan::{AuthPlan, GivenUsers, Plan, Target};
use crate::deploy::{Endpoints, ProvisionSettings, Provisioned, heap_sampling};
use crate::engine::ledger::Ledger;
use crate::engine::recorder::Recorder;
use crate::engine::workload::{RestAuth, Workload};
use crate::results::ResultsDir;
use crate::target::operations::OperationKind;
use crate::target::{fixtures, seed};

/// The target, set up or checked, and what the load needs of it.
pub(super) struct Prepared {
    /// The provisioned environment (none for an external target).
    pub environment: Option<Provisioned>,
    /// What the operations share.
    pub workload: Arc<Workload>,
    /// Where everything is.
    pub endpoints: Endpoints,
    /// The integrity audit's books before the load, when the run audits.
    pub audit: Option<AuditStart>,
}

/// Sets up or checks the target and builds the workload.
pub(super) async fn prepare(plan: &Plan, results: &ResultsDir) -> Result<Prepared, RunError> {
    let users = match (&plan.given_users, plan.seed_users) {
        (Some(given), _) => given.users.clone(),
        (None, Some(count)) => fixtures::generate_users(count, &plan.namespace),
        (None, None) => fixtures::load_users(&plan.users_file)?,
    };
    let (environment, endpoints, auth) = match &plan.target {
        Target::SelfProvisioned => {
            let env = Provisioned::start(&ProvisionSettings {
                challenges_config: absolute(&plan.challenges_file),
                namespace: plan.namespace.clone(),
                logs_dir: results.logs_dir(),
                extra_args: plan.service_args.clone(),
                deploy: plan.deploy,
                replicas: plan.replicas,
                environment: if plan.scenario.profile.is_some() { heap_sampling() } else { Vec::new() },
            })
            .await?;
            let lifetime = plan.duration() + Duration::from_secs(3600);
            let minted = fixtures::mint_tokens(&env.jwt_secret, &users, &plan.namespace, lifetime);
            if plan.seed_users.is_some()
                && let Some(url) = &env.endpoints.database_url
            {
                seed::users(url, &plan.challenges_file, &users, &plan.namespace, plan.store.unwrap_or_default())
                    .await?;
            }
            if plan.scenario.seed.completed_fraction > 0.0
                && let Some(url) = &env.endpoints.database_url
            {
                let fraction = plan.scenario.seed.completed_fraction;
                seed::completed_fraction(url, &plan.challenges_file, &users, &plan.namespace, fraction).await?;
            }
            if let (Some(claimable), Some(url)) = (&plan.scenario.seed.claimable, &env.endpoints.database_url) {
                seed::claimable(url, &plan.challenges_file, claimable, &plan.namespace).await?;
            }
            let endpoints = env.endpoints.clone();
            (Some(env), endpoints, RestAuth::Tokens(Arc::new(minted)))
        }
        Target::External { api_urls, grpc_urls } => {
            let auth = match (&plan.given_users, &plan.auth) {
                (Some(GivenUsers { tokens: Some(tokens), .. }), _) => RestAuth::Tokens(Arc::new(tokens.clone())),
                (Some(_), _) => RestAuth::MockHeader,
                (None, AuthPlan::TokensFile { path }) => {
                    RestAuth::Tokens(Arc::new(fixtures::load_tokens(path, &users)?))
                }
                (None, _) => RestAuth::MockHeader,
            };
            let endpoints = Endpoints {
                api_urls: api_urls.clone(),
                grpc_urls: grpc_urls.clone(),
                metrics_urls: BTreeMap::new(),
                database_url: None,
                pids: BTreeMap::new(),
                containers: BTreeMap::new(),
                reward_mock_url: plan.reward_mock_url.clone(),
            };
            (None, endpoints, auth)
        }
    };
    for api in &endpoints.api_urls {
        check_api(api, &plan.base_path).await?;
    }
    let channels = connect_grpc(&endpoints.grpc_urls, plan.grpc_connections).await?;
    let reserved_for_probes = plan
        .scenario
        .streams
        .iter()
        .filter(|(_, s)| s.operations.contains_key(&OperationKind::EndToEnd))
        .map(|(name, _)| plan.executors[name].pool_size())
        .sum();
    let users_count = users.len();
    let stampede = match &plan.scenario.seed.claimable {
        Some(claimable) => Some(fixtures::stampede_target(&plan.challenges_file, &users, claimable)?),
        None => None,
    };
    let workload = Arc::new(Workload {
        users: Arc::new(users),
        reserved_for_probes,
        namespace: plan.namespace.clone(),
        auth,
        base_path: plan.base_path.clone(),
        channels,
        balance: plan.balance,
        request_timeout: plan.request_timeout,
        recorder: Arc::new(Recorder::new()),
        probe_values: AtomicU64::new(1_000_000),
        ledger: Arc::new(Ledger::new(users_count, plan.audit_users)),
        event_retries: plan.scenario.event_retries,
        stampede,
    });
    let audit = AuditStart::read(plan, &workload, &endpoints).await?;
    Ok(Prepared { environment, workload, endpoints, audit })
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

async fn check_api(api_url: &str, base_path: &str) -> Result<(), RunError> {
    let url = format!("{api_url}{base_path}/healthz");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| RunError::Unreachable(e.to_string()))?;
    match client.get(&url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(RunError::Unreachable(format!("the API at {url} is not healthy: HTTP {}", r.status()))),
        Err(e) => Err(RunError::Unreachable(format!("cannot reach the API at {url}: {e}"))),
    }
}

/// The event handler's connection sets: `connections` channels in all (rounded up to whole
/// sets), each set one channel to every replica; none without an event handler.
async fn connect_grpc(urls: &[String], connections: usize) -> Result<Vec<Vec<Channel>>, RunError> {
    let mut endpoints = Vec::with_capacity(urls.len());
    for url in urls {
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| RunError::Unreachable(format!("--grpc-url '{url}': {e}")))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        endpoints.push((url, endpoint));
    }
    let sets = if urls.is_empty() { 0 } else { connections.div_ceil(urls.len()).max(1) };
    let mut channels = Vec::with_capacity(sets);
    for _ in 0..sets {
        let mut set = Vec::with_capacity(endpoints.len());
        for (url, endpoint) in &endpoints {
            let channel = endpoint
                .connect()
                .await
                .map_err(|e| RunError::Unreachable(format!("cannot reach the event handler at {url}: {e}")))?;
            set.push(channel);
        }
        channels.push(set);
    }
    Ok(channels)
}
