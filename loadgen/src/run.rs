//! One run from plan to results: set up the target, run the engine with the per-second sampler
//! beside it, summarise, evaluate thresholds, write the results folder, tear down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::engine::{self, EngineError, EngineOptions};
use crate::environment::{Endpoints, EnvironmentError, ProvisionSettings, Provisioned};
use crate::faults;
use crate::http::RestTarget;
use crate::integrity::{Auditor, GrantRow, Integrity, Ledger, Snapshot};
use crate::observe::postgres::{DatabaseEnd, PgSampler};
use crate::observe::profile::{self, ProfileWindow};
use crate::observe::prometheus::MetricsScraper;
use crate::observe::resources::{ProcessSampler, ProcessTarget, ResourceSource};
use crate::observe::{ObservationLog, ObservationWriter, Observer, digest};
use crate::plan::{AuthPlan, Plan, Target};
use crate::recorder::{Operation, Recorder};
use crate::report::Formats;
use crate::report::analysis::Limits;
use crate::results::{Interval, ResultsDir, layout};
use crate::scenario::OperationKind;
use crate::stop::{Stop, StopReason};
use crate::summary::{self, Summary};
use crate::threshold::{self, Measurements, live::LiveJudge};
use crate::workload::{RestAuth, STAT_CODES, Workload};

/// Why a run failed (as opposed to finishing with failed thresholds).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The results folder could not be written.
    #[error("results folder: {0}")]
    Results(#[from] std::io::Error),
    /// A fixture is unreadable or inconsistent.
    #[error("{0}")]
    Fixture(String),
    /// The target could not be set up or reached.
    #[error("{0}")]
    Environment(#[from] EnvironmentError),
    /// The target is not reachable.
    #[error("{0}")]
    Unreachable(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A signal (Ctrl-C, SIGTERM) before the load started.
    #[error("interrupted by a signal before the load started")]
    Interrupted,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutput {
    /// The summary written to `summary.json`.
    pub summary: Summary,
    /// The results folder.
    pub folder: PathBuf,
    /// Why the run stopped early, if it did.
    pub stopped: Option<StopReason>,
}

/// `run.json`: what ran, where, with what, and how it ended.
#[derive(Debug, Serialize)]
struct RunInfo<'a> {
    loadgen_version: &'static str,
    git_commit: Option<String>,
    started_at: String,
    finished_at: Option<String>,
    machine: Machine,
    plan: &'a Plan,
    endpoints: Option<Endpoints>,
    outcome: Option<Outcome>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    error: Option<String>,
    interrupted: Option<String>,
    shutdown_notes: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Machine {
    hostname: String,
    cpus: usize,
    memory_bytes: Option<u64>,
    os: String,
    kernel: String,
}

impl Machine {
    fn read() -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
        Self {
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            os: std::env::consts::OS.to_owned(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        }
    }
}

fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Runs `plan` to the end and writes its results folder.
pub async fn execute(plan: Plan) -> Result<RunOutput, RunError> {
    let results = ResultsDir::create(&plan.out)?;
    let mut info = RunInfo {
        loadgen_version: env!("CARGO_PKG_VERSION"),
        git_commit: git_commit(),
        started_at: now_utc(),
        finished_at: None,
        machine: Machine::read(),
        plan: &plan,
        endpoints: None,
        outcome: None,
    };
    results.write_json(layout::RUN, &info)?;
    eprintln!("gauntlet: {} → {}", plan.scenario.name, results.partial_path().display());

    // A signal during the setup abandons it cleanly (the folder is still completed).
    let signalled = crate::stop::signalled();
    let prepared = tokio::select! {
        prepared = prepare(&plan, &results) => prepared,
        () = signalled.cancelled() => Err(RunError::Interrupted),
    };
    let (environment, workload, endpoints, audit) = match prepared {
        Ok(parts) => parts,
        Err(error) => {
            info.outcome = Some(Outcome { error: Some(error.to_string()), interrupted: None, shutdown_notes: vec![] });
            info.finished_at = Some(now_utc());
            results.write_json(layout::RUN, &info)?;
            let folder = results.finish()?;
            let what = if matches!(error, RunError::Interrupted) { "setup interrupted" } else { "setup failed" };
            eprintln!("gauntlet: {what}; logs are in {}", folder.display());
            return Err(error);
        }
    };
    info.endpoints = Some(endpoints.clone());
    results.write_json(layout::RUN, &info)?;
    let faults_controls = faults::Controls {
        database: environment.as_ref().map(Provisioned::database),
        reward_mock_url: endpoints.reward_mock_url.clone(),
    };

    let streams = plan.stream_plans();
    let targets = summary::target_rates(&streams);
    let used = summary::used_operations(&streams);
    let provisioned = environment.is_some();
    let stop = Stop::new();
    let on_signal = {
        let stop = stop.clone();
        tokio::spawn(async move {
            signalled.cancelled().await;
            stop.stop(StopReason::Signal);
        })
    };
    let watch_stop = CancellationToken::new();
    let watcher = environment.map(|mut env| {
        let (stop, watch_stop) = (stop.clone(), watch_stop.clone());
        tokio::spawn(async move {
            let death = env.watch_for_deaths(watch_stop).await;
            if let Some(message) = &death {
                eprintln!("gauntlet: {message}; stopping the run");
                stop.stop(StopReason::ServiceDied(message.clone()));
            }
            env
        })
    });

    let lead = Duration::from_millis(200);
    let gate = engine::start_gate(&streams, lead);
    let sampler_done = CancellationToken::new();
    let metrics_urls = all_metrics_urls(&plan, &endpoints);
    let (observer, mut observe_notes) = build_observer(&plan, &endpoints, &metrics_urls, provisioned, &results).await?;
    let observing = tokio::spawn(observe(observer, gate.clone(), sampler_done.clone()));
    let profiling = plan.scenario.profile.map(|spec| {
        let window = ProfileWindow::middle_of(plan.duration(), spec.duration);
        let services: Vec<(String, String)> = metrics_urls.clone().into_iter().collect();
        let dir = results.partial_path().join(layout::PROFILES);
        let (gate, stop) = (gate.clone(), sampler_done.clone());
        tokio::spawn(async move {
            let Some(started) = gate.opened(&stop).await else { return vec!["the load never started".to_owned()] };
            profile::take_profiles(services, started, window, dir, stop).await
        })
    });
    let faults_stop = CancellationToken::new();
    let injecting = (!plan.scenario.faults.is_empty()).then(|| {
        let (gate, stop, faults) = (gate.clone(), faults_stop.clone(), plan.scenario.faults.clone());
        let controls = faults_controls.clone();
        tokio::spawn(async move {
            let Some(started) = gate.opened(&stop).await else { return Vec::new() };
            faults::inject(faults, controls, started, stop).await
        })
    });
    let stream_names: Vec<String> = streams.iter().map(|s| s.name.clone()).collect();
    let sampler = tokio::spawn(sample_every_second(
        results,
        Sampling {
            seconds: Vec::new(),
            recorder: workload.recorder.clone(),
            targets: targets.clone(),
            total: plan.duration(),
            quiet: plan.quiet,
            judge: LiveJudge::new(&plan.scenario.thresholds, stream_names.clone()),
            stop: stop.clone(),
        },
        gate.clone(),
        sampler_done.clone(),
    ));
    let outcome = Box::pin(engine::run(
        streams,
        workload.clone(),
        gate,
        EngineOptions {
            api_url: endpoints.api_url.clone(),
            lead,
            max_lateness: plan.scenario.max_lateness,
            stop: stop.clone(),
        },
    ))
    .await;
    sampler_done.cancel();
    on_signal.abort();
    let (results, judge, seconds) = sampler.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    faults_stop.cancel();
    let injected = match injecting {
        Some(task) => task.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let fault_verdicts = faults::verdicts(&injected, &seconds);
    let observer = observing.await.map_err(|e| std::io::Error::other(e.to_string()))??;
    let (log, database_end) = finish_observing(observer).await;
    let integrity = match &audit {
        Some(audit) => Some(audit.check(&workload, plan.audit_settle).await),
        None => None,
    };
    let profile_notes = match profiling {
        Some(task) => task.await.unwrap_or_else(|e| vec![format!("profiling failed: {e}")]),
        None => Vec::new(),
    };

    watch_stop.cancel();
    let environment = match watcher {
        Some(task) => match task.await {
            Ok(env) => Some(env),
            Err(e) => {
                stop.stop(StopReason::ServiceDied(format!("service watcher failed: {e}")));
                None
            }
        },
        None => None,
    };
    let shutdown_notes = match environment {
        Some(env) => env.shutdown().await,
        None => Vec::new(),
    };

    let outcome = outcome?;
    let stopped = stop.reason().or(outcome.stopped.clone());
    let (interrupted, aborted) = match &stopped {
        Some(StopReason::Threshold(which)) => (None, Some(which.clone())),
        Some(reason) => (Some(reason.to_string()), None),
        None => (None, None),
    };
    let totals = workload.recorder.totals();
    let resources = digest::resources(&log);
    let database = (database_end.is_some() || !metrics_urls.is_empty()).then(|| {
        let mut db = digest::database(&log, database_end);
        db.unavailable.splice(0..0, observe_notes.drain(..));
        db
    });
    let mut extras = BTreeMap::new();
    if let Some(busy) = database.as_ref().and_then(|d| d.pool_busy_max) {
        extras.insert("db_pool_busy", busy);
    }
    if let Some(generator) = resources.components.get(digest::GENERATOR) {
        extras.insert("loadgen_cpu", generator.cpu_percent_max);
    }
    if let Some(integrity) = integrity.as_ref().filter(|i| i.users_audited > 0) {
        for (name, count) in integrity.counts() {
            extras.insert(name, count as f64);
        }
    }
    let source = Measurements {
        operations: totals.iter().map(|t| (t.operation, &t.measured)).collect(),
        streams: &stream_names,
        seconds: outcome.elapsed.as_secs_f64(),
        extras,
    };
    let mut thresholds = threshold::evaluate(&plan.scenario.thresholds, &source, &judge.window_results());
    for result in &mut thresholds {
        result.aborted = aborted.as_deref() == Some(&threshold::label(&result.metric, &result.expression));
    }
    let operations = summary::operations(&totals, &used, &targets, outcome.elapsed);
    let mut warnings = summary::load_warnings(&operations, &plan.stream_plans());
    warnings.extend(digest::warnings(&resources));
    for warning in &warnings {
        eprintln!("gauntlet: {warning}");
    }
    let service_names: Vec<String> = metrics_urls.into_keys().collect();
    let profiles = profile_listing(&results, &service_names, plan.scenario.profile.is_some(), profile_notes);
    let summary = Summary {
        scenario: plan.scenario.name.clone(),
        duration_s: outcome.elapsed.as_secs_f64(),
        planned_duration_s: plan.duration().as_secs_f64(),
        interrupted: interrupted.clone(),
        passed: interrupted.is_none() && aborted.is_none() && thresholds.iter().all(|t| t.passed),
        aborted,
        operations,
        thresholds,
        warnings,
        services: digest::services(&log, &service_names),
        resources: Some(resources),
        database,
        profiles,
        integrity,
        faults: fault_verdicts,
    };
    results.write_json(layout::SUMMARY, &summary)?;
    info.outcome = Some(Outcome { error: None, interrupted, shutdown_notes });
    info.finished_at = Some(now_utc());
    results.write_json(layout::RUN, &info)?;
    // Every run ends with its own report, from what it just saved.
    let partial = results.partial_path().to_path_buf();
    let model = crate::report::documents::CapacityModel::default();
    if let Err(e) = crate::report::render(
        std::slice::from_ref(&partial),
        &partial.join(layout::REPORT),
        &Limits::default(),
        &model,
        Formats::All,
    ) {
        eprintln!("gauntlet: the report could not be rendered: {e} (render it later with `loadgen report`)");
    }
    let folder = results.finish()?;
    Ok(RunOutput { summary, folder, stopped })
}

type Prepared = (Option<Provisioned>, Arc<Workload>, Endpoints, Option<AuditStart>);

/// The integrity audit as it stood before the load.
struct AuditStart {
    auditor: Auditor,
    before: Snapshot,
    grants_before: Option<Vec<GrantRow>>,
    started: chrono::NaiveDate,
}

impl AuditStart {
    /// Reads the audited users' books before the load (operations that change them only).
    async fn read(plan: &Plan, workload: &Workload, endpoints: &Endpoints) -> Result<Option<Self>, RunError> {
        let changes_books = plan.scenario.streams.values().flat_map(|s| s.operations.keys()).any(|op| {
            matches!(
                op,
                OperationKind::Login
                    | OperationKind::Stat
                    | OperationKind::EndToEnd
                    | OperationKind::GetThenClaim
                    | OperationKind::ClaimStampede
                    | OperationKind::Session
                    | OperationKind::CompleteThenClaim
            )
        });
        let audited = workload.ledger.audited(workload.users.len());
        let Some(api) = endpoints.api_url.as_deref().filter(|_| changes_books && !audited.is_empty()) else {
            return Ok(None);
        };
        let failed = |e: String| {
            RunError::Unreachable(format!(
                "reading the books before the load: {e} (--audit-users 0 runs without the integrity audit)"
            ))
        };
        let config = load_challenges(&plan.challenges_file)?;
        let target = RestTarget::new(api, &plan.base_path, &workload.auth, &workload.users, plan.request_timeout)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let auditor =
            Auditor::new(Arc::new(target), Arc::new(config), workload.users.clone(), endpoints.reward_mock_url.clone());
        if !plan.quiet {
            eprintln!("gauntlet: reading the books of {} users before the load", audited.len());
        }
        let before = auditor.snapshot(&audited).await.map_err(failed)?;
        let grants_before = match auditor.grants().await {
            Some(read) => Some(read.map_err(failed)?),
            None => None,
        };
        Ok(Some(Self { auditor, before, grants_before, started: chrono::Utc::now().date_naive() }))
    }

    /// Reads them after the load and judges.
    async fn check(&self, workload: &Workload, settle: Duration) -> Integrity {
        let days = (chrono::Utc::now().date_naive() - self.started).num_days() + 1;
        let integrity = self
            .auditor
            .check(&workload.ledger, &STAT_CODES, &self.before, self.grants_before.as_deref(), days, settle)
            .await;
        let counts: Vec<String> = integrity.counts().iter().map(|(name, n)| format!("{name} {n}")).collect();
        eprintln!(
            "gauntlet: integrity of {} users ({} events accepted, {} unknown, {} claims): {}",
            integrity.users_audited,
            integrity.events_accepted,
            integrity.events_unknown,
            integrity.claims_succeeded,
            counts.join(", ")
        );
        integrity
    }
}

/// Sets up or checks the target and builds the workload.
async fn prepare(plan: &Plan, results: &ResultsDir) -> Result<Prepared, RunError> {
    let users = match plan.seed_users {
        Some(count) => sut::challenges::generate_users(count, &plan.namespace).into_iter().map(|u| u.id).collect(),
        None => load_users(&plan.users_file)?,
    };
    let (environment, endpoints, auth) = match &plan.target {
        Target::SelfProvisioned => {
            let env = Provisioned::start(&ProvisionSettings {
                challenges_config: absolute(&plan.challenges_file),
                namespace: plan.namespace.clone(),
                logs_dir: results.logs_dir(),
                extra_args: plan.service_args.clone(),
                deploy: plan.deploy,
            })
            .await?;
            let secret = env.jwt_secret.clone().into_bytes();
            let namespace = plan.namespace.clone();
            let minted = users
                .iter()
                .map(|u| sut::auth::mint_token(&secret, u, &namespace, plan.duration() + Duration::from_secs(3600)))
                .collect();
            if plan.seed_users.is_some()
                && let Some(url) = &env.endpoints.database_url
            {
                seed_users(url, &plan.challenges_file, &users, &plan.namespace, plan.store.unwrap_or_default()).await?;
            }
            if plan.scenario.seed.completed_fraction > 0.0
                && let Some(url) = &env.endpoints.database_url
            {
                seed(url, &plan.challenges_file, &users, &plan.namespace, plan.scenario.seed.completed_fraction)
                    .await?;
            }
            if let (Some(claimable), Some(url)) = (&plan.scenario.seed.claimable, &env.endpoints.database_url) {
                seed_claimable(url, &plan.challenges_file, claimable, &plan.namespace).await?;
            }
            let endpoints = env.endpoints.clone();
            (Some(env), endpoints, RestAuth::Tokens(Arc::new(minted)))
        }
        Target::External { api_url, grpc_url } => {
            let auth = match &plan.auth {
                AuthPlan::TokensFile { path } => RestAuth::Tokens(Arc::new(load_tokens(path, &users)?)),
                _ => RestAuth::MockHeader,
            };
            let endpoints = Endpoints {
                api_url: api_url.clone(),
                grpc_url: grpc_url.clone(),
                metrics_urls: BTreeMap::new(),
                database_url: None,
                pids: BTreeMap::new(),
                containers: BTreeMap::new(),
                reward_mock_url: plan.reward_mock_url.clone(),
            };
            (None, endpoints, auth)
        }
    };
    if let Some(api) = &endpoints.api_url {
        check_api(api, &plan.base_path).await?;
    }
    let channels = match &endpoints.grpc_url {
        Some(url) => connect_grpc(url, plan.grpc_connections).await?,
        None => Vec::new(),
    };
    let reserved_for_probes = plan
        .scenario
        .streams
        .iter()
        .filter(|(_, s)| s.operations.contains_key(&OperationKind::EndToEnd))
        .map(|(name, _)| plan.executors[name].pool_size())
        .sum();
    let users_count = users.len();
    let stampede = match &plan.scenario.seed.claimable {
        Some(claimable) => Some(stampede_target(&plan.challenges_file, &users, claimable)?),
        None => None,
    };
    let workload = Arc::new(Workload {
        users: Arc::new(users),
        reserved_for_probes,
        namespace: plan.namespace.clone(),
        auth,
        base_path: plan.base_path.clone(),
        channels,
        request_timeout: plan.request_timeout,
        recorder: Arc::new(Recorder::new()),
        probe_values: AtomicU64::new(1_000_000),
        ledger: Arc::new(Ledger::new(users_count, plan.audit_users)),
        event_retries: plan.scenario.event_retries,
        stampede,
    });
    let audit = AuditStart::read(plan, &workload, &endpoints).await?;
    Ok((environment, workload, endpoints, audit))
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn load_users(path: &Path) -> Result<Vec<String>, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Fixture(format!("{}: cannot read: {e}", path.display())))?;
    let users: Vec<sut::challenges::FixtureUser> = serde_json::from_str(&text)
        .map_err(|e| RunError::Fixture(format!("{}: not a users fixture: {e}", path.display())))?;
    if users.is_empty() {
        return Err(RunError::Fixture(format!("{}: no users", path.display())));
    }
    Ok(users.into_iter().map(|u| u.id).collect())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenEntry {
    user_id: String,
    token: String,
}

fn load_tokens(path: &Path, users: &[String]) -> Result<Vec<String>, RunError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RunError::Fixture(format!("{}: cannot read: {e}", path.display())))?;
    let entries: Vec<TokenEntry> = serde_json::from_str(&text)
        .map_err(|e| RunError::Fixture(format!("{}: expected [{{\"userId\", \"token\"}}]: {e}", path.display())))?;
    let by_user: BTreeMap<String, String> = entries.into_iter().map(|e| (e.user_id, e.token)).collect();
    users
        .iter()
        .map(|u| {
            by_user
                .get(u)
                .cloned()
                .ok_or_else(|| RunError::Fixture(format!("{}: no token for user '{u}'", path.display())))
        })
        .collect()
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

async fn connect_grpc(url: &str, connections: usize) -> Result<Vec<Channel>, RunError> {
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|e| RunError::Unreachable(format!("--grpc-url '{url}': {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| RunError::Unreachable(format!("cannot reach the event handler at {url}: {e}")))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Stores a share of every user's goals as completed (goals without prerequisites), in one
/// statement, so claims have something to claim.
async fn seed(
    database_url: &str,
    challenges: &Path,
    users: &[String],
    namespace: &str,
    fraction: f64,
) -> Result<(), RunError> {
    let config = load_challenges(challenges)?;
    let goals: Vec<&sut::challenges::Goal> =
        config.challenges().iter().flat_map(|c| &c.goals).filter(|g| g.prerequisites.is_empty()).collect();
    let pool = sqlx::PgPool::connect(database_url).await.map_err(EnvironmentError::from)?;
    let started = Instant::now();
    let rows = sqlx::query(
        "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at) \
         SELECT u.id, g.goal_id, g.challenge_id, $5, g.target, 'completed', now() AT TIME ZONE 'utc' \
         FROM unnest($1::varchar[]) AS u(id) \
         CROSS JOIN unnest($2::varchar[], $3::varchar[], $4::int4[]) AS g(goal_id, challenge_id, target) \
         WHERE random() < $6 ON CONFLICT DO NOTHING",
    )
    .bind(users)
    .bind(goals.iter().map(|g| g.id.clone()).collect::<Vec<_>>())
    .bind(goals.iter().map(|g| g.challenge_id.clone()).collect::<Vec<_>>())
    .bind(goals.iter().map(|g| g.target_value).collect::<Vec<_>>())
    .bind(namespace)
    .bind(fraction)
    .execute(&pool)
    .await
    .map_err(EnvironmentError::from)?;
    sqlx::query("ANALYZE user_goal_progress").execute(&pool).await.map_err(EnvironmentError::from)?;
    pool.close().await;
    eprintln!("gauntlet: seeded {} completed goals in {:.1}s", rows.rows_affected(), started.elapsed().as_secs_f64());
    Ok(())
}

/// The challenge configuration at `path`; an error names the file and what is wrong.
fn load_challenges(path: &Path) -> Result<sut::challenges::ChallengeConfig, RunError> {
    sut::challenges::load(path).map_err(|e| RunError::Fixture(e.to_string()))
}

/// The (user index, challenge, goal) `seed.claimable` names, checked against the fixtures.
fn stampede_target(
    challenges: &Path,
    users: &[String],
    claimable: &crate::scenario::Claimable,
) -> Result<(usize, String, String), RunError> {
    let config = load_challenges(challenges)?;
    let user = users
        .iter()
        .position(|u| *u == claimable.user)
        .ok_or_else(|| RunError::Fixture(format!("seed.claimable.user '{}' is not a fixture user", claimable.user)))?;
    let goal = config.goal(&claimable.goal).ok_or_else(|| {
        RunError::Fixture(format!("seed.claimable.goal '{}' is not a configured goal", claimable.goal))
    })?;
    Ok((user, goal.challenge_id.clone(), goal.id.clone()))
}

/// Stores `seed.claimable`'s goal as completed for its user (prerequisites too, so it can be
/// claimed).
async fn seed_claimable(
    database_url: &str,
    challenges: &Path,
    claimable: &crate::scenario::Claimable,
    namespace: &str,
) -> Result<(), RunError> {
    let config = load_challenges(challenges)?;
    let goal = config.goal(&claimable.goal).ok_or_else(|| {
        RunError::Fixture(format!("seed.claimable.goal '{}' is not a configured goal", claimable.goal))
    })?;
    let goals: Vec<&sut::challenges::Goal> =
        std::iter::once(goal).chain(goal.prerequisites.iter().filter_map(|p| config.goal(p))).collect();
    let pool = sqlx::PgPool::connect(database_url).await.map_err(EnvironmentError::from)?;
    for goal in goals {
        sqlx::query(
            "INSERT INTO user_goal_progress (user_id, goal_id, challenge_id, namespace, progress, status, completed_at) \
             VALUES ($1, $2, $3, $4, $5, 'completed', now() AT TIME ZONE 'utc') \
             ON CONFLICT (user_id, goal_id) DO UPDATE SET status = 'completed', progress = EXCLUDED.progress, \
             completed_at = EXCLUDED.completed_at, claimed_at = NULL",
        )
        .bind(&claimable.user)
        .bind(&goal.id)
        .bind(&goal.challenge_id)
        .bind(namespace)
        .bind(goal.target_value)
        .execute(&pool)
        .await
        .map_err(EnvironmentError::from)?;
    }
    pool.close().await;
    Ok(())
}

/// Stores progress for every user in the SUT's layout before the load (`--seed-users`).
async fn seed_users(
    database_url: &str,
    challenges: &Path,
    users: &[String],
    namespace: &str,
    store: sut::events::store::StoreKind,
) -> Result<(), RunError> {
    let config = load_challenges(challenges)?;
    let pool = sqlx::PgPool::connect(database_url).await.map_err(EnvironmentError::from)?;
    let started = Instant::now();
    let rows = sut::events::store::seed::seed_users(&pool, std::sync::Arc::new(config), store, users, namespace)
        .await
        .map_err(|e| RunError::Fixture(format!("seeding {} users: {e}", users.len())))?;
    pool.close().await;
    eprintln!(
        "gauntlet: seeded {} users ({rows} {store} rows) in {:.1}s",
        users.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What the per-second sampler works with.
struct Sampling {
    /// Each second's totals, for the fault verdicts.
    seconds: Vec<faults::Second>,
    recorder: Arc<Recorder>,
    targets: BTreeMap<Operation, f64>,
    total: Duration,
    quiet: bool,
    judge: LiveJudge,
    stop: Stop,
}

/// Every second from the schedules' start: time series, HDR intervals with their true start
/// and length, the live thresholds, the progress line.
async fn sample_every_second(
    mut results: ResultsDir,
    mut sampling: Sampling,
    gate: Arc<engine::StartGate>,
    done: CancellationToken,
) -> std::io::Result<(ResultsDir, LiveJudge, Vec<faults::Second>)> {
    let Some(started) = gate.opened(&done).await else { return Ok((results, sampling.judge, sampling.seconds)) };
    results.set_base_time(SystemTime::now() + started.saturating_duration_since(Instant::now()));
    if !sampling.quiet {
        eprintln!("gauntlet: every virtual user has started; load begins");
    }
    tokio::time::sleep_until(started).await;
    sampling.recorder.take_intervals(); // nothing before the start belongs to the run
    let mut ticker = tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let scheduled_seconds = sampling.total.as_secs_f64().ceil() as u64;
    let (mut second, mut previous) = (0u64, started);
    loop {
        let finished = tokio::select! {
            _ = ticker.tick() => false,
            () = done.cancelled() => true,
        };
        let now = Instant::now();
        second += 1;
        let snapshots = sampling.recorder.take_intervals();
        let interval = Interval {
            second,
            start: previous.saturating_duration_since(started),
            length: now.saturating_duration_since(previous),
        };
        previous = now;
        // Only the seconds of the schedule carry a target (the drain after it carries none).
        let live_targets = if second <= scheduled_seconds { sampling.targets.clone() } else { BTreeMap::new() };
        results.write_interval(&interval, &snapshots, &live_targets)?;
        sampling.seconds.push(second_totals(&snapshots));
        if let Some(which) = sampling.judge.second(&snapshots, interval.length.as_secs_f64()) {
            if !sampling.stop.is_stopped() {
                eprintln!("gauntlet: threshold {which} failed (abortOnFail); stopping the run");
            }
            sampling.stop.stop(StopReason::Threshold(which));
        }
        if !sampling.quiet {
            eprintln!(
                "{}",
                crate::terminal::progress_line(Duration::from_secs(second), sampling.total, &snapshots, &live_targets)
            );
        }
        if finished || Duration::from_secs(second) > sampling.total + Duration::from_secs(30) {
            return Ok((results, sampling.judge, sampling.seconds));
        }
    }
}

/// One second's requests, failures and drops over every operation.
fn second_totals(snapshots: &[crate::recorder::IntervalSnapshot]) -> faults::Second {
    let mut second = faults::Second::default();
    for snapshot in snapshots {
        for (key, series) in &snapshot.series {
            second.requests += series.requests;
            if !key.expected {
                second.errors += series.requests;
            }
        }
        second.dropped += snapshot.arrivals.values().map(|a| a.dropped).sum::<u64>();
        for (kind, n) in &snapshot.errors_by_kind {
            *second.errors_by_kind.entry(kind.clone()).or_default() += n;
        }
    }
    second
}

/// The `/metrics` URLs to scrape: the provisioned services' and those given for an external
/// target.
fn all_metrics_urls(plan: &Plan, endpoints: &Endpoints) -> BTreeMap<String, String> {
    let mut urls = endpoints.metrics_urls.clone();
    urls.extend(plan.observe.metrics_urls.clone());
    urls
}

/// The samplers for this run, and notes on what can't be observed.
async fn build_observer(
    plan: &Plan,
    endpoints: &Endpoints,
    metrics_urls: &BTreeMap<String, String>,
    provisioned: bool,
    results: &ResultsDir,
) -> Result<(Observer, Vec<String>), RunError> {
    let mut notes = Vec::new();
    let mut processes =
        vec![ProcessTarget { name: digest::GENERATOR.into(), pid: std::process::id(), with_children: false }];
    let pids = endpoints.pids.iter().chain(&plan.observe.pids);
    processes.extend(pids.map(|(name, pid)| ProcessTarget {
        name: name.clone(),
        pid: *pid,
        with_children: name == crate::observe::postgres::COMPONENT,
    }));
    let mut resources: Vec<Box<dyn ResourceSource>> = vec![Box::new(ProcessSampler::new(processes))];
    let mut containers: Vec<(String, String)> = endpoints.containers.clone().into_iter().collect();
    containers.extend(plan.observe.docker_stats.iter().map(|name| (name.clone(), name.clone())));
    if !containers.is_empty() {
        let docker = crate::docker::connect().await.map_err(EnvironmentError::from)?;
        let sampler =
            crate::docker::ContainerSampler::start(&docker, &containers).await.map_err(EnvironmentError::from)?;
        resources.push(Box::new(sampler));
    }
    let database_url = endpoints.database_url.clone().or_else(|| plan.observe.database_url.clone());
    let postgres = match &database_url {
        Some(url) => match PgSampler::connect(url, provisioned).await {
            Ok(sampler) => Some(sampler),
            Err(e) => {
                notes.push(format!("the database could not be observed: {e}"));
                None
            }
        },
        None => {
            notes.push("no database to observe (give --database-url with an external target)".into());
            None
        }
    };
    let scrapers = metrics_urls.iter().map(|(name, url)| MetricsScraper::new(name, url)).collect();
    let writer = ObservationWriter::create(&results.partial_path().join(layout::OBSERVATIONS))?;
    Ok((Observer { resources, postgres, scrapers, writer }, notes))
}

/// Samples from the load's start until `done` (nothing when the load never started).
async fn observe(
    observer: Observer,
    gate: Arc<engine::StartGate>,
    done: CancellationToken,
) -> std::io::Result<Observer> {
    match gate.opened(&done).await {
        Some(started) => observer.run(started, done).await,
        None => Ok(observer),
    }
}

/// The observations, and the database's end-of-run findings (taken before the teardown).
async fn finish_observing(mut observer: Observer) -> (ObservationLog, Option<DatabaseEnd>) {
    let end = match observer.postgres.take() {
        Some(pg) => Some(pg.finish().await),
        None => None,
    };
    (observer.writer.into_log(), end)
}

/// `profiles/<service>.svg` for each profile written, then the notes on those that were not.
fn profile_listing(results: &ResultsDir, services: &[String], wanted: bool, notes: Vec<String>) -> Vec<String> {
    if !wanted {
        return Vec::new();
    }
    let mut listing: Vec<String> = services
        .iter()
        .map(|s| format!("profiles/{s}.svg"))
        .filter(|file| results.partial_path().join(file).is_file())
        .collect();
    listing.extend(notes);
    listing
}
