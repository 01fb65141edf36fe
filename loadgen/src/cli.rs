//! The `loadgen` command line: the subcommands and their options (clap), each turned into a
//! validated plan or a report job and run, with k6's exit codes where k6 has the case: 0
//! (thresholds passed), 99 (a threshold failed or aborted the run), 104 (an invalid scenario or
//! options), 105 (stopped by a signal); else 1 (the run could not be done, or a service died).
//! `anyhow` lives here, at the edge, and nowhere else.

use std::path::PathBuf;

use crate::definition::builtin;
use crate::definition::options::RunArgs;
use crate::definition::plan::Plan;
use crate::definition::scenario::Scenario;
use crate::distributed::coordinator::{CoordinateError, Coordinator, CoordinatorOptions, OnWorkerLoss};
use crate::distributed::worker::{WorkError, WorkerOptions};
use crate::engine::stop::StopReason;
use crate::live::Live;
use crate::live::server::{Dashboard, DashboardError};
use crate::results::layout;
use crate::run::Load;
use crate::{EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_PASSED, EXIT_THRESHOLDS_FAILED, terminal};
use clap::{Parser, Subcommand};

/// Gauntlet: load tests for the challenge service, with truthful numbers.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// API load: GET /v1/challenges and claims at an arrival rate (--rps).
    Scenario1(RunArgs),
    /// Event load: OnMessage login and stat updates at an arrival rate (--eps), ≤500 in flight.
    Scenario2(RunArgs),
    /// Scenarios 1 and 2 at once.
    Scenario3(RunArgs),
    /// Scenario 3 with the database deep dive and CPU flamegraphs of each service.
    Scenario4(RunArgs),
    /// End-to-end latency: from an event's send to its effect in the API.
    Scenario5(RunArgs),
    /// Scenario 3's mix held steady for 30 minutes (--duration to change), at half of the
    /// reference capacity or of a sweep's (--capacity): the verdict says whether any service's
    /// memory, heap, tasks, open files or connections grew.
    Soak(SoakArgs),
    /// Renders the Performance Baseline, Capacity Planning and Performance Tuning documents
    /// (HTML and Markdown) from saved results folders; with --compare A B, the deltas between
    /// two runs (exit 99 when one regressed beyond the tolerance).
    Report(ReportArgs),
    /// Finds the breaking point: steps through load levels (API, events, both), stops at the
    /// first that breaks a limit, bisects, and writes capacity.json with one folder per level.
    Sweep(Box<crate::sweep::SweepArgs>),
    /// Compares a sweep's capacity.json with a reference one; exit 99 when a maximum
    /// sustainable load fell by more than the tolerance.
    CapacityCheck {
        /// The new capacity.json.
        current: PathBuf,
        /// The reference capacity.json.
        reference: PathBuf,
        /// Allowed fall, in percent.
        #[arg(long, default_value_t = 20.0)]
        tolerance: f64,
    },
    /// Draws a scenario's offered load (arrivals per second of each stream, as the engine will
    /// release them) into an SVG file, without running anything.
    Offered {
        /// The scenario file (YAML), or a built-in name.
        scenario: PathBuf,
        /// The SVG file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes the Grafana dashboard (over loadgen's and the SUT's metrics) and alert rules for
    /// the limits into DIR (`docker/grafana` holds them for the default limits).
    Grafana {
        /// The folder (dashboards/gauntlet.json, provisioning/alerting/gauntlet.yaml).
        dir: PathBuf,
        #[command(flatten)]
        limits: crate::sweep::LimitArgs,
    },
    /// Runs a scenario with its load sent by N workers (`loadgen worker`, or a Docker Swarm
    /// service with --swarm): each sends an equal share, and their seconds are merged into one
    /// run, one verdict and one results folder (each worker's own folder inside it).
    Coordinate(Box<CoordinateArgs>),
    /// Joins a coordinator and sends its share of the run.
    Worker(WorkerArgs),
    /// Writes the Kubernetes manifests of a distributed run (the coordinator as a Job and a
    /// Service, the workers as an Indexed Job) into DIR/gauntlet.yaml; the run's options go
    /// after `--`.
    K8s(K8sArgs),
    /// Runs a scenario file, or a built-in scenario by name (db-outage, reward-slow,
    /// reward-failing, scenario1…5).
    Run {
        /// The scenario file (YAML), or a built-in name.
        file: PathBuf,
        #[command(flatten)]
        args: RunArgs,
    },
}

#[derive(Debug, clap::Args)]
struct CoordinateArgs {
    /// The scenario file (YAML), or a built-in name.
    scenario: PathBuf,
    /// Workers to split the load among.
    #[arg(long)]
    workers: u32,
    /// Where workers reach the coordinator.
    #[arg(long, default_value = "127.0.0.1:5670")]
    listen: std::net::SocketAddr,
    /// When a worker stops sending before its share is done: stop the run, or go on without it.
    #[arg(long, value_enum, default_value = "stop")]
    on_worker_loss: OnWorkerLoss,
    /// How long to wait for every worker to join and be ready.
    #[arg(long, default_value = "120s", value_parser = sut::duration::clap_parser)]
    join_timeout: std::time::Duration,
    /// Start the workers as a Docker Swarm service of the loadgen image (`docker swarm init` first).
    #[arg(long)]
    swarm: bool,
    /// With --swarm: each worker's CPU limit.
    #[arg(long, default_value_t = 1.0)]
    worker_cpus: f64,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct K8sArgs {
    /// The scenario file (YAML; carried in a ConfigMap), or a built-in name.
    scenario: PathBuf,
    /// Workers (the Indexed Job's completions).
    #[arg(long)]
    workers: u32,
    /// Where gauntlet.yaml goes.
    #[arg(long)]
    out: PathBuf,
    /// The loadgen image the pods run.
    #[arg(long, default_value = crate::distributed::swarm::IMAGE)]
    image: String,
    /// Each worker's CPU request and limit.
    #[arg(long, default_value = "1")]
    worker_cpu: String,
    /// Each worker's memory request and limit.
    #[arg(long, default_value = "1Gi")]
    worker_memory: String,
    /// The run's options, for the coordinator (`-- --rps 2000 --api-url http://127.0.0.1:8080 …`).
    #[arg(last = true)]
    run: Vec<String>,
}

/// A run's options alone, to check those given to `loadgen k8s`.
#[derive(Debug, Parser)]
#[command(name = "coordinate")]
struct RunOnly {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, clap::Args)]
struct WorkerArgs {
    /// The coordinator's URL (as `loadgen coordinate` prints it).
    #[arg(long)]
    coordinator: String,
    /// This worker's own results folder (default: results/<time>-<scenario>-worker<N>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// How long to keep trying to reach the coordinator.
    #[arg(long, default_value = "60s", value_parser = sut::duration::clap_parser)]
    connect_timeout: std::time::Duration,
    /// Serve this worker's own live dashboard on ADDR.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:5665")]
    dashboard: Option<std::net::SocketAddr>,
    /// The segment to take (a Kubernetes Indexed Job's completion index); default: any free one.
    #[arg(long, env = "JOB_COMPLETION_INDEX")]
    segment: Option<u32>,
    /// Pretends this machine's clock is this many ms ahead (for testing the clock check).
    #[arg(long, hide = true, env = "GAUNTLET_TEST_CLOCK_SKEW_MS", default_value_t = 0, allow_hyphen_values = true)]
    test_clock_skew_ms: i64,
}

#[derive(Debug, clap::Args)]
struct SoakArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A sweep's capacity.json: soak at --fraction of the heaviest level its combined row with
    /// the highest API rate sustained (--rps and --eps, when given, win).
    #[arg(long)]
    capacity: Option<PathBuf>,
    /// The share of that level to hold.
    #[arg(long, default_value_t = 0.5)]
    fraction: f64,
}

impl SoakArgs {
    /// The run's options with the soak's rates filled in from `--capacity`.
    fn rates(self) -> anyhow::Result<RunArgs> {
        let Self { mut run, capacity, fraction } = self;
        if !(fraction.is_finite() && fraction > 0.0 && fraction <= 1.0) {
            anyhow::bail!("--fraction must be above 0 and at most 1, got {fraction}");
        }
        let Some(path) = capacity else { return Ok(run) };
        let level = read_capacity(&path)?.soak_level(fraction).ok_or_else(|| {
            anyhow::anyhow!("{}: no combined level was sustained, so there is no capacity to soak at", path.display())
        })?;
        run.rps = run.rps.or(Some(level.rps));
        run.eps = run.eps.or(Some(level.eps));
        eprintln!("gauntlet: soaking at {} rps + {} eps ({fraction} of {})", level.rps, level.eps, path.display());
        Ok(run)
    }
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Results folders (one per load level).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Where the documents go (default: <DIR>/report for one folder, results/report-<time> for several).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Compare two runs: the first is the baseline.
    #[arg(long)]
    compare: bool,
    /// With --compare: how much worse a figure may get before it is a regression, in percent.
    #[arg(long, default_value_t = 10.0)]
    tolerance: f64,
    /// Write Markdown and charts only (for the book, which makes its own HTML).
    #[arg(long)]
    markdown_only: bool,
    /// Capacity model (YAML): tiers_dau, requests_per_user_per_day, events_per_user_per_day,
    /// peak_factor, headroom, stored_users_per_dau, rows_per_user.
    #[arg(long)]
    capacity_model: Option<PathBuf>,
}

fn report(args: &ReportArgs) -> anyhow::Result<i32> {
    use crate::report::{self, compare};
    use crate::results::read::RunData;
    if args.compare {
        let [a, b] = args.dirs.as_slice() else { anyhow::bail!("--compare takes exactly two results folders") };
        if !(args.tolerance.is_finite() && args.tolerance >= 0.0) {
            anyhow::bail!("--tolerance must be a percentage ≥ 0");
        }
        let (a, b) = (RunData::load(a)?, RunData::load(b)?);
        let (doc, regressions) = compare::document(&a, &b, args.tolerance / 100.0);
        let (markdown, _) = doc.to_markdown("charts");
        println!("{markdown}");
        if let Some(out) = &args.out {
            std::fs::create_dir_all(out)?;
            report::write_atomically(&out.join("compare.html"), doc.to_html().as_bytes())?;
            report::write_atomically(&out.join("compare.md"), markdown.as_bytes())?;
        }
        return Ok(if regressions > 0 { EXIT_THRESHOLDS_FAILED } else { EXIT_PASSED });
    }
    let out = args.out.clone().unwrap_or_else(|| match args.dirs.as_slice() {
        [one] => one.join(layout::REPORT),
        _ => crate::definition::plan::default_results_path(
            &crate::definition::plan::workspace_root().join("results"),
            "report",
        ),
    });
    let model = report::capacity_model(args.capacity_model.as_deref())?;
    let formats = if args.markdown_only { report::Formats::MarkdownOnly } else { report::Formats::All };
    let written = report::render(&args.dirs, &out, &crate::verdict::limits::Limits::default(), &model, formats)?;
    for file in &written {
        println!("{}", file.display());
    }
    Ok(EXIT_PASSED)
}

fn sweep(args: crate::sweep::SweepArgs) -> i32 {
    let out_path = args.run.out.clone().unwrap_or_else(|| {
        crate::definition::plan::default_results_path(
            &crate::definition::plan::workspace_root().join("results"),
            "sweep",
        )
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return failed(&e.into()),
    };
    let (dashboard, hold) = (args.run.dashboard, args.run.dashboard_hold);
    let swept = runtime.block_on(watched(dashboard, hold, |live| {
        let out = out_path.clone();
        async move { crate::sweep::run(args, &out, &live).await }
    }));
    let swept = match swept {
        Ok(swept) => swept,
        Err(e) => return failed(&e.into()),
    };
    match swept {
        Ok(capacity) => {
            for search in &capacity.searches {
                println!(
                    "{:?}{}: maximum sustainable {}; {}",
                    search.mode,
                    search.api_rps.map_or(String::new(), |r| format!(" at {r} rps")),
                    match (search.max_sustainable, &search.first_broken) {
                        (Some(l), _) => format!("{} rps + {} eps", l.rps, l.eps),
                        (None, Some(_)) => "— (the first level broke a limit)".to_owned(),
                        (None, None) => "— (not measured)".to_owned(),
                    },
                    search.first_broken.as_ref().map_or(
                        "no level measured broke a limit".to_owned(),
                        |(l, why)| format!("first broken at {} rps + {} eps: {why}", l.rps, l.eps)
                    )
                );
            }
            println!("capacity: {}", out_path.join(layout::CAPACITY).display());
            if let Some(reason) = &capacity.interrupted {
                eprintln!("loadgen: the sweep stopped early: {reason}; the levels measured are kept");
                let signalled = crate::engine::stop::signalled().is_cancelled();
                return if signalled { EXIT_INTERRUPTED } else { EXIT_ERROR };
            }
            EXIT_PASSED
        }
        Err(e) => {
            eprintln!("loadgen: error: {e}");
            if matches!(e, crate::sweep::SweepError::Option(_)) { EXIT_INVALID } else { EXIT_ERROR }
        }
    }
}

/// A sweep's `capacity.json`, read; the error names the file and what is wrong with it.
fn read_capacity(path: &std::path::Path) -> anyhow::Result<crate::sweep::Capacity> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a capacity.json: {e}", path.display()))
}

fn capacity_check(current: &std::path::Path, reference: &std::path::Path, tolerance: f64) -> anyhow::Result<i32> {
    if !(tolerance.is_finite() && (0.0..100.0).contains(&tolerance)) {
        anyhow::bail!("--tolerance must be a percentage between 0 and 100");
    }
    let regressions =
        crate::sweep::regressions(&read_capacity(current)?, &read_capacity(reference)?, tolerance / 100.0);
    for r in &regressions {
        println!("REGRESSION {r}");
    }
    if regressions.is_empty() {
        println!("no maximum sustainable load fell by more than {tolerance}%");
    }
    Ok(if regressions.is_empty() { EXIT_PASSED } else { EXIT_THRESHOLDS_FAILED })
}

/// Runs what `cli` asks for; the process's exit code.
pub fn run(cli: Cli) -> i32 {
    if let Err(e) = crate::engine::stop::install_signal_handler() {
        return failed(&anyhow::anyhow!(e));
    }
    let (scenario, args) = match cli.command {
        Command::Sweep(args) => return sweep(*args),
        Command::Grafana { dir, limits } => {
            return match write_grafana(&dir, &limits.limits()) {
                Ok(()) => EXIT_PASSED,
                Err(e) => failed(&e),
            };
        }
        Command::CapacityCheck { current, reference, tolerance } => {
            match capacity_check(&current, &reference, tolerance) {
                Ok(code) => return code,
                Err(e) => return failed(&e),
            }
        }
        Command::Report(args) => match report(&args) {
            Ok(code) => return code,
            Err(e) => return failed(&e),
        },
        Command::Offered { scenario, out } => {
            let drawn = scenario_named(&scenario)
                .map_err(anyhow::Error::from)
                .and_then(|s| crate::report::offered::offered_load_chart(&s).map_err(anyhow::Error::msg))
                .and_then(|svg| std::fs::write(&out, svg).map_err(|e| anyhow::anyhow!("{}: {e}", out.display())));
            match drawn {
                Ok(()) => return EXIT_PASSED,
                Err(e) => return failed(&e),
            }
        }
        Command::Scenario1(args) => (builtin::named("scenario1"), args),
        Command::Scenario2(args) => (builtin::named("scenario2"), args),
        Command::Scenario3(args) => (builtin::named("scenario3"), args),
        Command::Scenario4(args) => (builtin::named("scenario4"), args),
        Command::Scenario5(args) => (builtin::named("scenario5"), args),
        Command::Soak(soak) => match soak.rates() {
            Ok(args) => (builtin::named("soak"), args),
            Err(e) => {
                eprintln!("loadgen: error: {}", describe(&e));
                return EXIT_INVALID;
            }
        },
        Command::Run { file, args } => (scenario_named(&file), args),
        Command::Coordinate(args) => return coordinate(&args),
        Command::Worker(args) => return worker(args),
        Command::K8s(args) => {
            return match kubernetes(&args) {
                Ok(()) => EXIT_PASSED,
                Err(e) => {
                    eprintln!("loadgen: error: {}", describe(&e));
                    EXIT_INVALID
                }
            };
        }
    };
    let plan =
        match scenario.map_err(anyhow::Error::from).and_then(|s| Plan::new(s, &args).map_err(anyhow::Error::from)) {
            Ok(plan) => plan,
            Err(e) => {
                eprintln!("loadgen: error: {}", describe(&e));
                return EXIT_INVALID;
            }
        };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return failed(&e.into()),
    };
    let run = |live: Live| async move { crate::run::execute(plan, &live).await };
    match runtime.block_on(watched(args.dashboard, args.dashboard_hold, run)) {
        Ok(executed) => ended(executed),
        Err(e) => failed(&e.into()),
    }
}

/// `loadgen coordinate`: the plan checked, the coordinator listening (and the Swarm service
/// started, with --swarm), the run with the workers' load, the service removed.
fn coordinate(args: &CoordinateArgs) -> i32 {
    let mut plan = match scenario_named(&args.scenario)
        .map_err(anyhow::Error::from)
        .and_then(|s| Plan::new(s, &args.run).map_err(anyhow::Error::from))
    {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("loadgen: error: {}", describe(&e));
            return EXIT_INVALID;
        }
    };
    let notes: Vec<String> = crate::distributed::coordinator::without_audit(&mut plan).into_iter().collect();
    for note in &notes {
        eprintln!("gauntlet: {note}");
    }
    let options = CoordinatorOptions {
        workers: args.workers,
        listen: args.listen,
        on_worker_loss: args.on_worker_loss,
        join_timeout: args.join_timeout,
        notes,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return failed(&e.into()),
    };
    let (swarm, cpus) = (args.swarm, args.worker_cpus);
    let run = |live: Live| async move {
        let coordinator = match Coordinator::listen(&plan, options).await {
            Ok(coordinator) => coordinator,
            Err(e @ CoordinateError::Plan(_)) => return Err((EXIT_INVALID, anyhow::Error::from(e))),
            Err(e) => return Err((EXIT_ERROR, e.into())),
        };
        eprintln!("gauntlet: coordinator listening at {}", coordinator.url());
        let service = if swarm {
            match crate::distributed::swarm::start(args.workers, &coordinator.url(), cpus).await {
                Ok(service) => Some(service),
                Err(e) => return Err((EXIT_ERROR, e.into())),
            }
        } else {
            None
        };
        let executed = crate::run::execute_with(plan, &live, Load::Remote(Box::new(coordinator))).await;
        if let Some(service) = service {
            service.remove().await;
        }
        Ok(executed)
    };
    match runtime.block_on(watched(args.run.dashboard, args.run.dashboard_hold, run)) {
        Ok(Ok(executed)) => ended(executed),
        Ok(Err((code, e))) => {
            eprintln!("loadgen: error: {}", describe(&e));
            code
        }
        Err(e) => failed(&e.into()),
    }
}

/// `loadgen k8s`: the run's options checked as the coordinator will check them, then the
/// manifests written.
fn kubernetes(args: &K8sArgs) -> anyhow::Result<()> {
    use crate::distributed::kubernetes::{Manifests, ScenarioSource};
    let run = RunOnly::try_parse_from(std::iter::once("coordinate".to_owned()).chain(args.run.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("the run's options after --: {}", e.render().to_string().trim()))?
        .run;
    let plan = Plan::new(scenario_named(&args.scenario)?, &run)?;
    crate::distributed::coordinator::check_splittable(&plan, args.workers)?;
    if plan.target == crate::definition::plan::Target::SelfProvisioned {
        anyhow::bail!(
            "in a cluster the SUT runs on its own: give the coordinator its URLs after -- (--api-url, --grpc-url)"
        );
    }
    let scenario = if args.scenario.exists() {
        let name = args.scenario.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let text =
            std::fs::read_to_string(&args.scenario).map_err(|e| anyhow::anyhow!("{}: {e}", args.scenario.display()))?;
        ScenarioSource::File { name, text }
    } else {
        ScenarioSource::Builtin(args.scenario.display().to_string())
    };
    let manifests = Manifests {
        scenario,
        workers: args.workers,
        image: args.image.clone(),
        worker_cpu: args.worker_cpu.clone(),
        worker_memory: args.worker_memory.clone(),
        run_args: args.run.clone(),
    };
    std::fs::create_dir_all(&args.out).map_err(|e| anyhow::anyhow!("{}: {e}", args.out.display()))?;
    let path = args.out.join("gauntlet.yaml");
    crate::atomic::write(&path, manifests.to_yaml()?.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

/// `loadgen worker`: a share of a coordinator's run.
fn worker(args: WorkerArgs) -> i32 {
    let options = WorkerOptions {
        coordinator: args.coordinator,
        out: args.out,
        connect_timeout: args.connect_timeout,
        clock_skew_ms: args.test_clock_skew_ms,
        segment: args.segment,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return failed(&e.into()),
    };
    let work = |live: Live| async move { crate::distributed::worker::work(&options, &live).await };
    match runtime.block_on(watched(args.dashboard, std::time::Duration::ZERO, work)) {
        // The verdict is the coordinator's: a worker that sent its share to the end succeeded.
        Ok(Ok(output)) if output.stopped.is_none() => {
            println!("{}", terminal::summary_table(&output.summary));
            println!("results: {}", output.folder.display());
            EXIT_PASSED
        }
        Ok(Ok(output)) => ended(Ok(output)),
        Ok(Err(WorkError::Run(e))) => ended(Err(e)),
        Ok(Err(e)) => failed(&e.into()),
        Err(e) => failed(&e.into()),
    }
}

/// The summary table and the exit code of a finished run (or of one that could not be done).
fn ended(executed: Result<crate::run::RunOutput, crate::run::RunError>) -> i32 {
    match executed {
        Ok(output) => {
            println!("{}", terminal::summary_table(&output.summary));
            println!("results: {}", output.folder.display());
            if let Some(reason) = &output.stopped {
                eprintln!("loadgen: the run ended early: {reason}; the results cover the time that ran");
            }
            match &output.stopped {
                Some(StopReason::Signal) => EXIT_INTERRUPTED,
                Some(StopReason::ServiceDied(_)) => EXIT_ERROR,
                Some(StopReason::Threshold(_)) => EXIT_THRESHOLDS_FAILED,
                Some(StopReason::WorkerLost(_)) => EXIT_ERROR,
                Some(StopReason::Coordinator) => EXIT_INTERRUPTED,
                None if output.summary.passed => EXIT_PASSED,
                None => EXIT_THRESHOLDS_FAILED,
            }
        }
        Err(crate::run::RunError::Interrupted) => {
            eprintln!("loadgen: interrupted by a signal before the load started");
            EXIT_INTERRUPTED
        }
        Err(e) => failed(&e.into()),
    }
}

/// `loadgen grafana DIR`: the dashboard and the alert rules, written whole.
fn write_grafana(dir: &std::path::Path, limits: &crate::verdict::limits::Limits) -> anyhow::Result<()> {
    use crate::live::grafana;
    let dashboard = dir.join("dashboards/gauntlet.json");
    let rules = dir.join("provisioning/alerting/gauntlet.yaml");
    for file in [&dashboard, &rules] {
        let parent = file.parent().expect("a file in a folder");
        std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(&grafana::dashboard())? + "\n";
    crate::atomic::write(&dashboard, json.as_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", dashboard.display()))?;
    crate::atomic::write(&rules, grafana::alert_rules(limits).as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", rules.display()))?;
    println!("{}\n{}", dashboard.display(), rules.display());
    Ok(())
}

/// Runs `job` with the live record of this process, serving the dashboard on `dashboard` when
/// asked, and after the job keeping it up for `hold` (a signal ends that sooner).
async fn watched<T, F: Future<Output = T>>(
    dashboard: Option<std::net::SocketAddr>,
    hold: std::time::Duration,
    job: impl FnOnce(Live) -> F,
) -> Result<T, DashboardError> {
    let live = if dashboard.is_some() { Live::watched() } else { Live::new() };
    let server = match dashboard {
        Some(addr) => {
            let server = Dashboard::start(addr, live.clone()).await?;
            eprintln!("gauntlet: live dashboard at {} (loadgen's metrics at {}metrics)", server.url(), server.url());
            Some(server)
        }
        None => None,
    };
    let output = job(live).await;
    if let Some(server) = server {
        if !hold.is_zero() {
            eprintln!(
                "gauntlet: the dashboard serves the reports at {} for {}s (Ctrl-C ends it)",
                server.url(),
                hold.as_secs()
            );
            let signalled = crate::engine::stop::signalled();
            tokio::select! {
                () = tokio::time::sleep(hold) => {}
                () = signalled.cancelled() => {}
            }
        }
        server.stop().await;
    }
    Ok(output)
}

/// A scenario file, or, where no such file exists, a built-in scenario of that name
/// (`loadgen run db-outage`).
fn scenario_named(file: &std::path::Path) -> Result<Scenario, crate::definition::scenario::ScenarioError> {
    match file.to_str().filter(|_| !file.exists()).map(builtin::named) {
        Some(Ok(scenario)) => Ok(scenario),
        _ => Scenario::load(file),
    }
}

fn failed(error: &anyhow::Error) -> i32 {
    eprintln!("loadgen: error: {}", describe(error));
    EXIT_ERROR
}

/// An error and its causes, each said once: most messages here already end with their cause's.
fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1).map(ToString::to_string) {
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
