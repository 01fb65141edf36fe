//! Resource use per component, every second. [`ResourceSource`] is the interface: this module
//! implements it for processes on this machine from `/proc` ([`ProcessSampler`]); the Docker
//! backend implements it for containers.
//!
//! CPU is in percent of one core (200 = two cores busy), as `top` and `docker stats` show it.
//! A process tree (PostgreSQL: the postmaster and all its backends) counts as one component:
//! its CPU includes backends that exited during the second (through the postmaster's reaped-
//! children times), and its memory counts shared memory once, not once per backend.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use super::Observation;

/// One component's resource use over the last second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceSample {
    /// The component (`loadgen`, `postgres`, a service, a container, or `machine`).
    pub component: String,
    /// CPU in percent of one core; None on the first sample (no interval yet).
    pub cpu_percent: Option<f64>,
    /// The CPU limit in the same unit (cores × 100, or a container's quota).
    pub cpu_limit_percent: Option<f64>,
    /// Resident memory.
    pub memory_bytes: Option<u64>,
    /// Memory limit (containers).
    pub memory_limit_bytes: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Open file descriptors.
    pub open_files: Option<u64>,
    /// Other counters (network and block I/O of containers), name → value.
    pub extra: Vec<(&'static str, f64)>,
}

impl ResourceSample {
    /// The sample as observations at second `t_s`.
    pub fn observations(&self, t_s: u64) -> Vec<Observation> {
        let fields = [
            ("cpu_percent", self.cpu_percent),
            ("cpu_limit_percent", self.cpu_limit_percent),
            ("memory_bytes", self.memory_bytes.map(|v| v as f64)),
            ("memory_limit_bytes", self.memory_limit_bytes.map(|v| v as f64)),
            ("threads", self.threads.map(|v| v as f64)),
            ("open_files", self.open_files.map(|v| v as f64)),
        ];
        fields
            .into_iter()
            .chain(self.extra.iter().map(|(name, value)| (*name, Some(*value))))
            .filter_map(|(metric, value)| Some(Observation::new(t_s, &self.component, metric, value?)))
            .collect()
    }
}

/// A source of resource samples: processes here, containers in the Docker backend.
pub trait ResourceSource: Send {
    /// Samples every component once.
    fn sample(&mut self) -> Pin<Box<dyn Future<Output = Vec<ResourceSample>> + Send + '_>>;
}

/// A process to sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessTarget {
    /// The component's name.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Count the process's children with it (PostgreSQL's backends).
    pub with_children: bool,
}

/// The shortest window a process's CPU rate is computed over: CPU time is accounted in clock
/// ticks (10 ms), so over a shorter window (the last, partial second of a run) a rate is noise
/// that can read above the cores there are.
const MIN_RATE_WINDOW: f64 = 0.5;

/// Samples processes (and the machine's total CPU) from `/proc`.
#[derive(Debug)]
pub struct ProcessSampler {
    targets: Vec<ProcessTarget>,
    ticks_per_second: f64,
    cores: usize,
    previous_cpu: HashMap<String, (Instant, f64)>,
    previous_machine: Option<(u64, u64)>,
}

impl ProcessSampler {
    /// Samples `targets` and the machine.
    pub fn new(targets: Vec<ProcessTarget>) -> Self {
        Self {
            targets,
            ticks_per_second: clock_ticks_per_second(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            previous_cpu: HashMap::new(),
            previous_machine: None,
        }
    }

    /// Samples synchronously (reading `/proc` does not block for long).
    pub fn sample_now(&mut self) -> Vec<ResourceSample> {
        let mut samples = Vec::with_capacity(self.targets.len() + 1);
        if let Some(machine) = self.sample_machine() {
            samples.push(machine);
        }
        for target in self.targets.clone() {
            if let Some(sample) = self.sample_process(&target) {
                samples.push(sample);
            }
        }
        samples
    }

    fn sample_machine(&mut self) -> Option<ResourceSample> {
        let (busy, total) = machine_ticks()?;
        let cpu_percent = self.previous_machine.and_then(|(busy0, total0)| {
            let total_delta = total.checked_sub(total0).filter(|d| *d > 0)?;
            Some(busy.saturating_sub(busy0) as f64 / total_delta as f64 * self.cores as f64 * 100.0)
        });
        self.previous_machine = Some((busy, total));
        Some(ResourceSample {
            component: "machine".into(),
            cpu_percent,
            cpu_limit_percent: Some(self.cores as f64 * 100.0),
            memory_bytes: machine_memory_used(),
            ..ResourceSample::default()
        })
    }

    fn sample_process(&mut self, target: &ProcessTarget) -> Option<ResourceSample> {
        let root = read_stat(target.pid)?;
        let mut pids = vec![target.pid];
        if target.with_children {
            pids.extend(children_of(target.pid));
        }
        let mut ticks = root.children_ticks() as f64 * f64::from(target.with_children);
        let (mut threads, mut open_files) = (0, 0);
        let mut memory = MemoryTally::default();
        for pid in &pids {
            let Some(stat) = (if *pid == target.pid { Some(root.clone()) } else { read_stat(*pid) }) else {
                continue; // exited between the listing and the read
            };
            ticks += stat.own_ticks() as f64;
            if let Some(status) = read_status(*pid) {
                threads += status.threads;
                memory.add(&status);
            }
            open_files += count_open_files(*pid);
        }
        let now = Instant::now();
        let previous = self.previous_cpu.get(&target.name).copied();
        let cpu_percent = previous.and_then(|(at, ticks0)| {
            let seconds = now.duration_since(at).as_secs_f64();
            (seconds >= MIN_RATE_WINDOW).then(|| ((ticks - ticks0).max(0.0) / self.ticks_per_second) / seconds * 100.0)
        });
        // A window too short for a rate keeps its baseline, so the next one spans longer.
        if previous.is_none() || cpu_percent.is_some() {
            self.previous_cpu.insert(target.name.clone(), (now, ticks));
        }
        Some(ResourceSample {
            component: target.name.clone(),
            cpu_percent,
            cpu_limit_percent: Some(self.cores as f64 * 100.0),
            memory_bytes: Some(if target.with_children { memory.tree_bytes() } else { memory.single_bytes() }),
            threads: Some(threads),
            open_files: Some(open_files),
            ..ResourceSample::default()
        })
    }
}

impl ResourceSource for ProcessSampler {
    fn sample(&mut self) -> Pin<Box<dyn Future<Output = Vec<ResourceSample>> + Send + '_>> {
        Box::pin(async move { self.sample_now() })
    }
}

/// The fields of `/proc/<pid>/stat` the sampler uses.
#[derive(Debug, Clone)]
struct ProcStat {
    parent: u32,
    user: u64,
    system: u64,
    children_user: u64,
    children_system: u64,
}

impl ProcStat {
    fn own_ticks(&self) -> u64 {
        self.user + self.system
    }

    fn children_ticks(&self) -> u64 {
        self.children_user + self.children_system
    }
}

fn read_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is fields[n - 3].
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        parent: u32::try_from(field(4)?).ok()?,
        user: field(14)?,
        system: field(15)?,
        children_user: field(16)?,
        children_system: field(17)?,
    })
}

/// Direct children of `parent` (PostgreSQL's backends are all children of the postmaster).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read_stat(*pid).is_some_and(|s| s.parent == parent))
        .collect()
}

/// The fields of `/proc/<pid>/status` the sampler uses, in bytes.
#[derive(Debug, Default)]
struct ProcStatus {
    threads: u64,
    rss: u64,
    rss_anon: u64,
    rss_file: u64,
    rss_shmem: u64,
}

fn read_status(pid: u32) -> Option<ProcStatus> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut status = ProcStatus::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let number = || value.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match key {
            "Threads" => status.threads = number(),
            "VmRSS" => status.rss = number() * 1024,
            "RssAnon" => status.rss_anon = number() * 1024,
            "RssFile" => status.rss_file = number() * 1024,
            "RssShmem" => status.rss_shmem = number() * 1024,
            _ => {}
        }
    }
    Some(status)
}

/// Memory of one process or a tree: private memory adds up, shared memory and mapped files are
/// the same pages in every member and count once.
#[derive(Debug, Default)]
struct MemoryTally {
    rss: u64,
    anon: u64,
    file_max: u64,
    shmem_max: u64,
}

impl MemoryTally {
    fn add(&mut self, status: &ProcStatus) {
        self.rss += status.rss;
        self.anon += status.rss_anon;
        self.file_max = self.file_max.max(status.rss_file);
        self.shmem_max = self.shmem_max.max(status.rss_shmem);
    }

    fn single_bytes(&self) -> u64 {
        self.rss
    }

    fn tree_bytes(&self) -> u64 {
        self.anon + self.file_max + self.shmem_max
    }
}

fn count_open_files(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// `(busy, total)` jiffies of all CPUs from `/proc/stat`; idle and iowait are not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn machine_memory_used() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(field("MemTotal:")?.saturating_sub(field("MemAvailable:")?))
}

/// `getconf CLK_TCK` (100 on every Linux this runs on, but asked rather than assumed).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}
