//! `loadgen sweep`: finds the breaking point. It steps through load levels — isolated API,
//! isolated events, then both together — each for a set duration after a warm-up, stops at the
//! first level that breaks a limit, narrows the limit down by bisection between the last good and
//! the first bad level, and writes `capacity.json` beside one results folder per level.
//!
//! With `--replica-counts 1,2,3` every search is made once per count, the service it loads
//! running as that many replicas (API levels: the challenge service; event levels: the event
//! handler; combined: both), so the Capacity Planning Guide can fit how capacity grows with
//! replicas.
//!
//! A level is judged on the seconds after its warm-up only (from the per-second HDR intervals and
//! the time series), so the ramp-up of connections and caches does not count against it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::definition::options::{Replicas, RunArgs};
use crate::definition::plan::Plan;
use crate::live::{LevelVerdict, Live, RunEnd};
use crate::results::layout;
use crate::verdict::limits::{Limits, WindowStats, judge, pool_full_share, window_stats};

/// Which searches a sweep makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SweepMode {
    /// REST only (scenario 1).
    Api,
    /// Events only (scenario 2).
    Events,
    /// Both at once (scenario 3), as a matrix: for each API level, the event levels are
    /// climbed and bisected, giving the maximum event rate sustainable beside that API load.
    Combined,
    /// Api, then events, then combined.
    All,
}

/// `loadgen sweep` options.
#[derive(Debug, Clone, Args)]
pub struct SweepArgs {
    /// Which searches to make.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: SweepMode,
    /// API levels, requests/s.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200,500,1000,2000,5000")]
    pub api_levels: Vec<f64>,
    /// Event levels, events/s.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000,5000,10000,20000")]
    pub event_levels: Vec<f64>,
    /// How long each level is measured, after its warm-up.
    #[arg(long, default_value = "30s", value_parser = sut::duration::clap_parser)]
    pub level_duration: Duration,
    /// Warm-up of each level, not judged.
    #[arg(long, default_value = "10s", value_parser = sut::duration::clap_parser)]
    pub warmup: Duration,
    /// Bisection stops when the bad level is within this fraction above the good one.
    #[arg(long, default_value_t = 0.1)]
    pub precision: f64,
    /// Make every search at each of these replica counts of the service it loads (API: the
    /// challenge service, events: the event handler, combined: both), e.g. 1,2,3; the Capacity
    /// Planning Guide fits the Universal Scalability Law across them.
    #[arg(long, value_delimiter = ',', value_name = "N,…")]
    pub replica_counts: Vec<u32>,
    /// The limits a level must keep.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// The target and the rest (as for a run; --rps, --eps and --duration are the sweep's).
    #[command(flatten)]
    pub run: RunArgs,
}

/// The limits a sustainable level keeps, as options (the sweep's, and the Grafana alert rules').
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Limit: highest error rate of any operation.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Limit: highest API p95 (corrected).
    #[arg(long, default_value = "2s", value_parser = sut::duration::clap_parser)]
    pub max_api_p95: Duration,
    /// Limit: highest event p95 (corrected).
    #[arg(long, default_value = "500ms", value_parser = sut::duration::clap_parser)]
    pub max_event_p95: Duration,
    /// Limit: highest share of arrivals dropped.
    #[arg(long, default_value_t = 0.01)]
    pub max_dropped: f64,
}

impl LimitArgs {
    /// The limits.
    pub fn limits(&self) -> Limits {
        Limits {
            error_rate: self.max_error_rate,
            api_p95_ms: self.max_api_p95.as_secs_f64() * 1000.0,
            event_p95_ms: self.max_event_p95.as_secs_f64() * 1000.0,
            dropped_rate: self.max_dropped,
        }
    }
}

/// A load level: REST and event arrival rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// Requests/s (0 when the search sends none).
    pub rps: f64,
    /// Events/s (0 when the search sends none).
    pub eps: f64,
}

impl Level {
    fn magnitude(self) -> f64 {
        self.rps + self.eps
    }

    fn between(self, other: Level) -> Level {
        Level { rps: ((self.rps + other.rps) / 2.0).round(), eps: ((self.eps + other.eps) / 2.0).round() }
    }

    fn label(self) -> String {
        match (self.rps > 0.0, self.eps > 0.0) {
            (true, true) => format!("{:.0}rps-{:.0}eps", self.rps, self.eps),
            (true, false) => format!("{:.0}rps", self.rps),
            _ => format!("{:.0}eps", self.eps),
        }
    }
}

/// One measured level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelRecord {
    /// The level.
    pub level: Level,
    /// Its results folder (relative to the sweep's).
    pub folder: String,
    /// Within every limit.
    pub passed: bool,
    /// The first limit it broke.
    pub broken: Option<String>,
    /// Per operation, after the warm-up.
    pub operations: BTreeMap<String, WindowStats>,
}

/// One search (api, events, or one row of the combined matrix).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRecord {
    /// Which.
    pub mode: SweepMode,
    /// In the combined matrix: the API rate this row holds while the event rate climbs.
    #[serde(default)]
    pub api_rps: Option<f64>,
    /// With `--replica-counts`: the replicas this search ran against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<Replicas>,
    /// Levels in the order measured.
    pub levels: Vec<LevelRecord>,
    /// The heaviest level within the limits.
    pub max_sustainable: Option<Level>,
    /// The lightest level that broke a limit, and which.
    pub first_broken: Option<(Level, String)>,
}

/// `capacity.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    /// The limits.
    pub limits: Limits,
    /// Seconds judged per level.
    pub level_duration_s: f64,
    /// Warm-up seconds per level.
    pub warmup_s: f64,
    /// Bisection precision.
    pub precision: f64,
    /// The searches.
    pub searches: Vec<SearchRecord>,
    /// Why the sweep stopped early (Ctrl-C, a failed level), if it did.
    pub interrupted: Option<String>,
}

impl Capacity {
    /// The level a soak holds: `fraction` of the heaviest sustained level of the combined row
    /// with the highest API rate (both streams substantial, as in scenario 3), among the rows
    /// measured against one replica of each service (a soak runs against one); `None` when no
    /// such row sustained any level.
    pub fn soak_level(&self, fraction: f64) -> Option<Level> {
        let row = self
            .searches
            .iter()
            .filter(|s| s.mode == SweepMode::Combined && s.replicas.is_none_or(|r| r == Replicas::default()))
            .filter_map(|s| s.max_sustainable)
            .max_by(|a, b| a.rps.total_cmp(&b.rps))?;
        Some(Level { rps: (row.rps * fraction).round(), eps: (row.eps * fraction).round() })
    }
}

/// Why a sweep could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A bad option.
    #[error("{0}")]
    Option(String),
    /// Writing results failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl SweepArgs {
    fn limits(&self) -> Limits {
        self.limits.limits()
    }

    fn validate(&self) -> Result<(), SweepError> {
        let bad = |m: &str| Err(SweepError::Option(m.to_owned()));
        if self.run.rps.is_some() || self.run.eps.is_some() || self.run.duration.is_some() {
            return bad(
                "--rps, --eps and --duration are set by the sweep: use --api-levels, --event-levels, --level-duration",
            );
        }
        if self.api_levels.iter().chain(&self.event_levels).any(|l| !(l.is_finite() && *l > 0.0)) {
            return bad("levels must be numbers > 0");
        }
        if self.level_duration.is_zero() {
            return bad("--level-duration must be > 0");
        }
        if !(self.precision > 0.0 && self.precision < 1.0) {
            return bad("--precision must be between 0 and 1 (0.1 = 10%)");
        }
        if !self.replica_counts.is_empty() {
            if self.run.replicas.is_some() {
                return bad("give --replica-counts (one search per count) or --replicas (one count), not both");
            }
            if self.run.api_url.is_some() || self.run.grpc_url.is_some() {
                return bad("--replica-counts starts a provisioned SUT's replicas: it needs no --api-url/--grpc-url");
            }
            if self.replica_counts.iter().any(|n| !(1..=Replicas::MAX).contains(n)) {
                return bad(&format!("--replica-counts: each count must be from 1 to {}", Replicas::MAX));
            }
        }
        Ok(())
    }

    /// The replica configurations to sweep: one per `--replica-counts` count (None: as the run
    /// options say).
    fn replica_steps(&self) -> Vec<Option<u32>> {
        let mut counts = self.replica_counts.clone();
        counts.sort_unstable();
        counts.dedup();
        if counts.is_empty() { vec![None] } else { counts.into_iter().map(Some).collect() }
    }
}

/// The replicas a search of `mode` runs against at `count`: of the service it loads.
fn replicas_at(mode: SweepMode, count: u32) -> Replicas {
    match mode {
        SweepMode::Api => Replicas { challenge_service: count, event_handler: 1 },
        SweepMode::Events => Replicas { challenge_service: 1, event_handler: count },
        SweepMode::Combined | SweepMode::All => Replicas { challenge_service: count, event_handler: count },
    }
}

/// The searches of a mode, each with its ladder of levels.
fn ladders(args: &SweepArgs) -> Vec<(SweepMode, &'static str, Vec<Level>)> {
    let mut api: Vec<f64> = args.api_levels.clone();
    let mut events: Vec<f64> = args.event_levels.clone();
    api.sort_by(f64::total_cmp);
    events.sort_by(f64::total_cmp);
    let api_ladder = api.iter().map(|r| Level { rps: *r, eps: 0.0 }).collect();
    let event_ladder = events.iter().map(|e| Level { rps: 0.0, eps: *e }).collect();
    let mut all = vec![(SweepMode::Api, "scenario1", api_ladder), (SweepMode::Events, "scenario2", event_ladder)];
    for rps in &api {
        all.push((SweepMode::Combined, "scenario3", events.iter().map(|e| Level { rps: *rps, eps: *e }).collect()));
    }
    all.into_iter().filter(|(mode, _, _)| args.mode == SweepMode::All || args.mode == *mode).collect()
}

/// Runs the sweep into `out` (which must not exist yet), publishing each level to `live`.
pub async fn run(args: SweepArgs, out: &Path, live: &Live) -> Result<Capacity, SweepError> {
    args.validate()?;
    if out.exists() {
        return Err(SweepError::Option(format!("{} exists already; choose another --out", out.display())));
    }
    std::fs::create_dir_all(out)?;
    let limits = args.limits();
    let mut capacity = Capacity {
        limits,
        level_duration_s: args.level_duration.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        precision: args.precision,
        searches: Vec::new(),
        interrupted: None,
    };
    let steps = args.replica_steps();
    let ladders: Vec<_> =
        steps.iter().flat_map(|count| ladders(&args).into_iter().map(move |(m, s, l)| (*count, m, s, l))).collect();
    let planned: usize = ladders.iter().map(|(_, _, _, l)| l.len()).sum();
    let mut progress = Progress { done: 0, planned, started: Instant::now(), live: live.clone(), levels: Vec::new() };
    for (count, mode, scenario, ladder) in ladders {
        let api_rps = (mode == SweepMode::Combined).then(|| ladder.first().map_or(0.0, |l| l.rps));
        let replicas = count.map(|n| replicas_at(mode, n));
        // A matrix row whose lightest level broke: every heavier API row will break too.
        let previous_row_hopeless = capacity.searches.last().is_some_and(|s| {
            s.mode == SweepMode::Combined
                && mode == SweepMode::Combined
                && s.replicas == replicas
                && s.max_sustainable.is_none()
        });
        if previous_row_hopeless {
            progress.planned = progress.planned.saturating_sub(ladder.len());
            continue;
        }
        let mut search =
            SearchRecord { mode, api_rps, replicas, levels: Vec::new(), max_sustainable: None, first_broken: None };
        let outcome = search_ladder(&args, scenario, &ladder, out, &mut search, &mut progress).await;
        // Levels the ladder did not need to climb are not coming.
        progress.planned = progress.planned.saturating_sub(ladder.len().saturating_sub(search.levels.len()));
        capacity.searches.push(search);
        write_capacity(out, &capacity)?;
        if let Err(reason) = outcome {
            capacity.interrupted = Some(reason);
            break;
        }
    }
    write_capacity(out, &capacity)?;
    let folders: Vec<PathBuf> = capacity
        .searches
        .iter()
        .flat_map(|s| s.levels.iter().map(|l| out.join(&l.folder)))
        .filter(|f| f.join(layout::SUMMARY).is_file())
        .collect();
    if !folders.is_empty() {
        let model = crate::report::model::CapacityModel::default();
        if let Err(e) =
            crate::report::render(&folders, &out.join(layout::REPORT), &limits, &model, crate::report::Formats::All)
        {
            eprintln!("sweep: the report could not be rendered: {e}");
        }
    }
    let reports = crate::report::links(out, live.serve(out.to_path_buf()), layout::CAPACITY);
    let held = capacity.searches.iter().all(|s| s.max_sustainable.is_some());
    live.end(&RunEnd {
        passed: held && capacity.interrupted.is_none(),
        interrupted: capacity.interrupted.clone(),
        folder: out.display().to_string(),
        reports,
        last: true,
    });
    Ok(capacity)
}

struct Progress {
    done: usize,
    planned: usize,
    started: Instant,
    live: Live,
    levels: Vec<LevelVerdict>,
}

impl Progress {
    /// The level just measured, for the live record.
    fn measured(&mut self, record: &LevelRecord) {
        if let Some(last) = self.levels.last_mut() {
            last.held = Some(record.passed);
            last.broken.clone_from(&record.broken);
        }
        self.live.sweep(self.levels.clone());
    }

    fn announce(&mut self, search: &SearchRecord, level: Level, per_level: Duration) {
        let mode = search.mode;
        let label = match search.replicas {
            Some(r) => format!("{} ({r})", level.label()),
            None => level.label(),
        };
        self.levels.push(LevelVerdict {
            mode: format!("{mode:?}").to_lowercase(),
            level: label.clone(),
            held: None,
            broken: None,
        });
        self.live.sweep(self.levels.clone());
        self.done += 1;
        let left = self.planned.saturating_sub(self.done) + 1;
        let elapsed = self.started.elapsed().as_secs_f64();
        let each = if self.done > 1 { elapsed / (self.done - 1) as f64 } else { per_level.as_secs_f64() + 10.0 };
        eprintln!(
            "sweep: {mode:?} level {} of {} planned so far ({}) — about {:.0} min left",
            self.done,
            self.planned.max(self.done),
            label,
            (left as f64 * each / 60.0).ceil()
        );
    }
}

/// Climbs `ladder` until a level breaks a limit, then bisects. `Err` when the sweep must stop
/// (Ctrl-C, a run that could not be done).
async fn search_ladder(
    args: &SweepArgs,
    scenario: &str,
    ladder: &[Level],
    out: &Path,
    search: &mut SearchRecord,
    progress: &mut Progress,
) -> Result<(), String> {
    let limits = args.limits();
    let mut good: Option<Level> = None;
    let mut bad: Option<(Level, String)> = None;
    for level in ladder {
        progress.announce(search, *level, args.level_duration + args.warmup);
        let record = measure(args, scenario, *level, out, search, &limits, &progress.live).await?;
        progress.measured(&record);
        let broken = record.broken.clone();
        search.levels.push(record);
        match broken {
            None => {
                good = Some(*level);
                // Kept as it goes, so a sweep stopped by Ctrl-C still says what held.
                search.max_sustainable = good;
            }
            Some(why) => {
                bad = Some((*level, why));
                break;
            }
        }
    }
    // Bisection between the last good level (or nothing: zero) and the first bad one.
    if let Some((mut high, mut why)) = bad.clone() {
        let mut low = good.unwrap_or(Level { rps: high.rps / 2.0, eps: high.eps / 2.0 });
        let floor_known = good.is_some();
        while floor_known && (high.magnitude() - low.magnitude()) / low.magnitude() > args.precision {
            let middle = low.between(high);
            if middle == low || middle == high {
                break;
            }
            progress.planned += 1;
            progress.announce(search, middle, args.level_duration + args.warmup);
            let record = measure(args, scenario, middle, out, search, &limits, &progress.live).await?;
            progress.measured(&record);
            let broken = record.broken.clone();
            search.levels.push(record);
            match broken {
                None => {
                    low = middle;
                    search.max_sustainable = Some(low);
                }
                Some(reason) => (high, why) = (middle, reason),
            }
        }
        search.max_sustainable = floor_known.then_some(low);
        search.first_broken = Some((high, why));
    } else {
        search.max_sustainable = good;
    }
    Ok(())
}

/// Runs one level and judges it.
async fn measure(
    args: &SweepArgs,
    scenario: &str,
    level: Level,
    out: &Path,
    search: &SearchRecord,
    limits: &Limits,
    live: &Live,
) -> Result<LevelRecord, String> {
    let mode = search.mode;
    let mut folder = format!("{}-{}", format!("{mode:?}").to_lowercase(), level.label());
    let mut run_args = args.run.clone();
    if let Some(replicas) = search.replicas {
        let count = replicas.challenge_service.max(replicas.event_handler);
        folder = format!("x{count}-{folder}");
        run_args.replicas = Some(replicas);
    }
    run_args.rps = (level.rps > 0.0).then_some(level.rps);
    run_args.eps = (level.eps > 0.0).then_some(level.eps);
    run_args.duration = Some(args.warmup + args.level_duration);
    run_args.out = Some(out.join(&folder));
    run_args.quiet = true;
    let mut scenario = crate::definition::builtin::named(scenario).map_err(|e| e.to_string())?;
    scenario.thresholds.clear(); // the sweep judges by its limits
    scenario.profile = None;
    let mut plan = Plan::new(scenario, &run_args).map_err(|e| e.to_string())?;
    if args.run.vus.is_none() {
        size_pools(&mut plan, limits);
    }
    let output = crate::run::execute(plan, live).await.map_err(|e| format!("level {}: {e}", level.label()))?;
    if let Some(reason) = &output.summary.interrupted {
        return Err(format!("level {} ended early: {reason}", level.label()));
    }
    let operations = window_stats(&out.join(&folder), args.warmup.as_secs_f64()).map_err(|e| e.to_string())?;
    let generator = output.summary.resources.as_ref().and_then(|r| r.generator);
    let pool_full: BTreeMap<&str, f64> =
        output.summary.operations.iter().map(|(name, op)| (name.as_str(), pool_full_share(op))).collect();
    let broken = judge(&operations, limits, generator, &pool_full);
    eprintln!(
        "sweep:   {} → {}",
        level.label(),
        broken.as_deref().map_or("within the limits".to_owned(), |b| format!("BROKE: {b}"))
    );
    Ok(LevelRecord { level, folder, passed: broken.is_none(), broken, operations })
}

/// Sizes every open-model stream's pool as `max_vus: auto` does, from its rate and the level's
/// latency limit (the API or event p95), so the pool never decides a level by itself.
fn size_pools(plan: &mut Plan, limits: &Limits) {
    for (name, executor) in &mut plan.executors {
        if !executor.is_open() {
            continue;
        }
        let events = plan.scenario.streams.get(name).is_some_and(|s| s.is_grpc());
        let limit_ms = if events { limits.event_p95_ms } else { limits.api_p95_ms };
        let _ = executor.size_pool(Duration::from_secs_f64(limit_ms / 1000.0));
    }
}

fn write_capacity(out: &Path, capacity: &Capacity) -> std::io::Result<()> {
    crate::atomic::write_json(&out.join(layout::CAPACITY), capacity)
}

/// `loadgen capacity-check`: the maximum sustainable load of each search in `current` against
/// `reference`; the searches that fell by more than `tolerance` (a fraction).
pub fn regressions(current: &Capacity, reference: &Capacity, tolerance: f64) -> Vec<String> {
    let mut out = Vec::new();
    for before in &reference.searches {
        let Some(before_max) = before.max_sustainable else { continue };
        let after = current
            .searches
            .iter()
            .find(|s| s.mode == before.mode && s.api_rps == before.api_rps && s.replicas == before.replicas);
        let after_max = after.and_then(|s| s.max_sustainable);
        match after_max {
            Some(now) if now.magnitude() >= before_max.magnitude() * (1.0 - tolerance) => {}
            Some(now) => out.push(format!(
                "{:?}: maximum sustainable load fell from {} to {} (more than {:.0}%)",
                before.mode,
                before_max.label(),
                now.label(),
                tolerance * 100.0
            )),
            None => out.push(format!(
                "{:?}: no sustainable level found (the reference sustained {})",
                before.mode,
                before_max.label()
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sweep: SweepArgs,
    }

    #[test]
    fn the_default_sweep_is_the_plans_ladders_and_a_combined_matrix() {
        let args = Cli::parse_from(["sweep"]).sweep;
        let ladders = ladders(&args);
        let rates = |l: &[Level], f: fn(&Level) -> f64| l.iter().map(f).collect::<Vec<_>>();
        assert_eq!(rates(&ladders[0].2, |l| l.rps), [50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]);
        assert_eq!(rates(&ladders[1].2, |l| l.eps), [100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0]);
        assert_eq!(ladders.len(), 2 + 7, "one combined row per API level");
        assert!(ladders[2..].iter().all(|(mode, _, l)| *mode == SweepMode::Combined && l.len() == 7));
        assert_eq!(ladders[8].2[0], Level { rps: 5000.0, eps: 100.0 });
        assert!(Cli::try_parse_from(["sweep", "--rps", "5"]).map(|c| c.sweep.validate().is_err()).unwrap_or(true));
    }

    #[test]
    fn a_soak_holds_half_the_references_heaviest_combined_row_as_the_built_in_soak_does() {
        let reference: Capacity =
            serde_json::from_str(include_str!("../../results/reference/nightly-capacity.json")).unwrap();
        let level = reference.soak_level(0.5).unwrap();
        assert_eq!(level, Level { rps: 250.0, eps: 875.0 });
        let soak = crate::definition::builtin::named("soak").unwrap();
        let rates: Vec<f64> = soak.streams.values().filter_map(|s| s.rate.map(|r| r.0)).collect();
        assert_eq!(rates, vec![level.rps, level.eps], "the built-in soak is that level (api, events)");
        // Rows measured against more replicas do not count: the soak runs against one.
        let mut scaled = reference.clone();
        for search in &mut scaled.searches {
            search.replicas = Some(Replicas { challenge_service: 3, event_handler: 3 });
            search.max_sustainable = search.max_sustainable.map(|l| Level { rps: l.rps * 3.0, eps: l.eps * 3.0 });
        }
        let mut both = reference.clone();
        both.searches.extend(scaled.searches.clone());
        assert_eq!(both.soak_level(0.5), Some(level), "the one-replica rows decide");
        assert_eq!(scaled.soak_level(0.5), None);
        let none = Capacity { searches: Vec::new(), ..reference };
        assert_eq!(none.soak_level(0.5), None);
    }

    #[test]
    fn replica_counts_repeat_every_search_against_the_service_it_loads() {
        let args =
            Cli::parse_from(["sweep", "--mode", "api", "--api-levels", "100,200", "--replica-counts", "3,1,2"]).sweep;
        args.validate().unwrap();
        assert_eq!(args.replica_steps(), vec![Some(1), Some(2), Some(3)]);
        assert_eq!(replicas_at(SweepMode::Api, 3), Replicas { challenge_service: 3, event_handler: 1 });
        assert_eq!(replicas_at(SweepMode::Events, 2), Replicas { challenge_service: 1, event_handler: 2 });
        assert_eq!(replicas_at(SweepMode::Combined, 2), Replicas { challenge_service: 2, event_handler: 2 });
        let refused = |extra: &[&str]| {
            let args = Cli::parse_from([&["sweep", "--replica-counts", "1,2"], extra].concat()).sweep;
            args.validate().unwrap_err().to_string()
        };
        assert!(refused(&["--replicas", "challenge-service=2"]).contains("not both"));
        assert!(refused(&["--api-url", "http://127.0.0.1:1"]).contains("provisioned"));
        let zero = Cli::parse_from(["sweep", "--replica-counts", "0,2"]).sweep;
        assert!(zero.validate().unwrap_err().to_string().contains("from 1 to 16"));
        assert_eq!(Cli::parse_from(["sweep"]).sweep.replica_steps(), vec![None]);
    }

    #[test]
    fn a_fall_beyond_the_tolerance_is_a_regression() {
        let capacity = |rps: f64| Capacity {
            limits: Limits::default(),
            level_duration_s: 1.0,
            warmup_s: 0.0,
            precision: 0.1,
            searches: vec![SearchRecord {
                mode: SweepMode::Api,
                api_rps: None,
                replicas: None,
                levels: vec![],
                max_sustainable: Some(Level { rps, eps: 0.0 }),
                first_broken: None,
            }],
            interrupted: None,
        };
        assert!(regressions(&capacity(850.0), &capacity(1000.0), 0.2).is_empty());
        assert_eq!(regressions(&capacity(750.0), &capacity(1000.0), 0.2).len(), 1);
    }
}
