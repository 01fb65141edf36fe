//! The options every run subcommand shares (`--rps`, `--eps`, `--duration`, the target, the
//! SUT's settings, what to observe), as clap parses them; [`Plan::new`](super::plan::Plan::new)
//! validates them.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use sut::events::store::StoreKind;

/// How many audited users the integrity audit reads the books of by default.
pub const DEFAULT_AUDIT_USERS: usize = 2_000;

/// Options shared by every run subcommand.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    /// REST arrival rate (requests/s) of the scenario's API stream.
    #[arg(long)]
    pub rps: Option<f64>,
    /// Event arrival rate (events/s) of the scenario's event stream.
    #[arg(long)]
    pub eps: Option<f64>,
    /// Load duration of constant executors, e.g. 30s or 5m.
    #[arg(long, value_parser = sut::duration::clap_parser)]
    pub duration: Option<Duration>,
    /// Virtual users: constant-vus users, or the in-flight limit (max_vus) of arrival-rate streams.
    #[arg(long)]
    pub vus: Option<u32>,
    /// Target an existing REST API (e.g. http://127.0.0.1:8080) instead of provisioning one;
    /// several replicas as a comma-separated list (connections go to each in turn).
    #[arg(long)]
    pub api_url: Option<String>,
    /// Target an existing event handler (e.g. http://127.0.0.1:6565) instead of provisioning one;
    /// several replicas as a comma-separated list.
    #[arg(long)]
    pub grpc_url: Option<String>,
    /// Results folder (default: results/<UTC timestamp>-<scenario>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With an external target: a JSON file of tokens, `[{"userId": "...", "token": "..."}]`,
    /// aligned with the users fixture.
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// With an external target: send `X-Mock-User-Id` instead of tokens (its auth is disabled).
    #[arg(long)]
    pub mock_auth: bool,
    /// Users fixture (default: fixtures/users.json).
    #[arg(long)]
    pub users: Option<PathBuf>,
    /// Challenge configuration for a provisioned SUT (default: fixtures/challenges.json).
    #[arg(long)]
    pub challenges: Option<PathBuf>,
    /// Namespace of the deployment and its events.
    #[arg(long, default_value = "test")]
    pub namespace: String,
    /// REST path prefix of the target.
    #[arg(long, default_value = "/challenge")]
    pub base_path: String,
    /// gRPC connections shared by the event users (the platform uses one).
    #[arg(long, default_value_t = 1)]
    pub grpc_connections: usize,
    /// Timeout of one request or call.
    #[arg(long, default_value = "10s", value_parser = sut::duration::clap_parser)]
    pub request_timeout: Duration,
    /// Refuse runs whose load lasts longer than this.
    #[arg(long, default_value = "2h", value_parser = sut::duration::clap_parser)]
    pub max_duration: Duration,
    /// Users whose books (goals, grants) are read before and after the load to check that no
    /// accepted event was lost or applied twice and no goal granted twice: every n-th fixture
    /// user, at most this many (0: no audit).
    #[arg(long, default_value_t = DEFAULT_AUDIT_USERS)]
    pub audit_users: usize,
    /// The reward mock of an external target (`http://host:port`), whose grant ledger the
    /// integrity audit reads (a provisioned target's mock is read anyway).
    #[arg(long)]
    pub reward_mock_url: Option<String>,
    /// How long the audit waits for the SUT to write what it accepted before judging.
    #[arg(long, default_value = "15s", value_parser = sut::duration::clap_parser)]
    pub audit_settle: Duration,
    /// Provisioned reward mock latency, e.g. uniform:50ms..200ms.
    #[arg(long)]
    pub reward_latency: Option<String>,
    /// How the SUT stores progress: passed to a provisioned SUT's services (default per-stat);
    /// with an external target, recorded as what it runs.
    #[arg(long, value_enum)]
    pub store: Option<StoreKind>,
    /// Provisioned SUT: this many users (user-000001…), each with stored progress before the load
    /// (20 goals per user in per-goal, 2 stat rows per user in per-stat), tokens minted for all.
    #[arg(long)]
    pub seed_users: Option<usize>,
    /// Provisioned reward mock failure rate (0–1).
    #[arg(long)]
    pub reward_failure_rate: Option<f64>,
    /// With an external target: its PostgreSQL, for the database sampler (connections,
    /// statements, plans). Read-only apart from EXPLAIN ANALYZE inside rolled-back transactions.
    #[arg(long)]
    pub database_url: Option<String>,
    /// With an external target: a service's Prometheus endpoint, NAME=URL (repeatable), scraped
    /// every second; its admin port's profiling endpoint is used for CPU profiles.
    #[arg(long = "metrics-url", value_name = "NAME=URL", value_parser = name_value)]
    pub metrics_urls: Vec<(String, String)>,
    /// With an external target on this machine: a process to sample, NAME=PID (repeatable);
    /// `postgres=PID` of the postmaster counts its backends with it.
    #[arg(long = "pid", value_name = "NAME=PID", value_parser = name_value)]
    pub pids: Vec<(String, String)>,
    /// How to run the provisioned SUT: processes, or Docker containers (1 CPU / 1 GiB each).
    #[arg(long, value_enum, default_value = "processes")]
    pub deploy: Deploy,
    /// Provisioned SUT: replicas per service, e.g. `challenge-service=3,event-handler=2` (1 each
    /// by default). The generator spreads its connections over them round-robin, as a
    /// client-side balancer would; each replica is sampled on its own and the service as their sum.
    #[arg(long, value_name = "SERVICE=N,…", value_parser = Replicas::parse)]
    pub replicas: Option<Replicas>,
    /// How the generator spreads calls over a service's replicas: each call to the next
    /// (per-request), or each user's connection to one, handed out in turn (per-connection, as
    /// an L4 balancer; few busy users then load few replicas).
    #[arg(long, value_enum, default_value = "per-request")]
    pub balance: Balance,
    /// Also sample these existing containers' stats (e.g. your own compose stack), repeatable.
    #[arg(long = "docker-stats", value_name = "CONTAINER", num_args = 1..)]
    pub docker_stats: Vec<String>,
    /// Less output: no per-second progress lines.
    #[arg(long, short)]
    pub quiet: bool,
    /// Serve a live dashboard (charts over server-sent events) and loadgen's Prometheus
    /// `/metrics` on this address while the run lasts (default 127.0.0.1:5665).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:5665")]
    pub dashboard: Option<std::net::SocketAddr>,
    /// After the run, keep the dashboard serving the finished reports this long (Ctrl-C ends it
    /// sooner).
    #[arg(long, default_value = "0s", value_parser = sut::duration::clap_parser)]
    pub dashboard_hold: Duration,
}

fn name_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && !value.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("'{text}' is not NAME=VALUE")),
    }
}

/// How a provisioned SUT runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Deploy {
    /// Separate processes on this machine.
    #[default]
    Processes,
    /// Docker containers with the plan's limits (1 CPU, 1 GiB each), built without a registry.
    Docker,
}

/// How calls are spread over a service's replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each user holds a connection to every replica and sends each call to the next (a
    /// client-side balancer).
    #[default]
    PerRequest,
    /// Each user's connection goes to one replica, the users' connections handed out in turn
    /// (a connection-level, L4 balancer).
    PerConnection,
}

/// How many replicas of each scalable SUT service a provisioned run starts (the reward mock
/// stands for a single external platform and is never replicated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Replicas {
    /// Challenge service (REST) replicas.
    pub challenge_service: u32,
    /// Event handler (gRPC) replicas.
    pub event_handler: u32,
}

impl Default for Replicas {
    fn default() -> Self {
        Self { challenge_service: 1, event_handler: 1 }
    }
}

impl Replicas {
    /// The most replicas of one service a run starts (every one holds a database pool).
    pub const MAX: u32 = 16;

    /// Parses `challenge-service=N,event-handler=M` (either may be left out: 1).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut replicas = Self::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (service, count) =
                part.split_once('=').ok_or_else(|| format!("'{part}' is not SERVICE=N (e.g. challenge-service=2)"))?;
            let count: u32 = count
                .trim()
                .parse()
                .ok()
                .filter(|n| (1..=Self::MAX).contains(n))
                .ok_or_else(|| format!("{service}: '{count}' is not a replica count from 1 to {}", Self::MAX))?;
            match service.trim() {
                "challenge-service" => replicas.challenge_service = count,
                "event-handler" => replicas.event_handler = count,
                other => {
                    return Err(format!(
                        "'{other}' has no replicas: the services that scale are challenge-service and event-handler"
                    ));
                }
            }
        }
        Ok(replicas)
    }

    /// True when some service runs more than once.
    pub fn any(&self) -> bool {
        self.challenge_service > 1 || self.event_handler > 1
    }
}

impl std::fmt::Display for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "challenge-service={},event-handler={}", self.challenge_service, self.event_handler)
    }
}

/// The component name of replica `index` (from 1) of `count` of `service`: the service's own
/// name when it runs once, `service#index` otherwise (the samplers sum the replicas under the
/// service's name).
pub fn replica_name(service: &str, index: u32, count: u32) -> String {
    if count <= 1 { service.to_owned() } else { format!("{service}#{index}") }
}

/// The service a replica's component name belongs to (`challenge-service#2` →
/// `challenge-service`), or None for a name that is not a replica's.
pub fn replica_of(component: &str) -> Option<&str> {
    let (service, index) = component.split_once('#')?;
    index.parse::<u32>().ok().map(|_| service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_parse_and_refuse_what_is_not_a_count_of_a_scalable_service() {
        let both = Replicas::parse("challenge-service=3, event-handler=2").unwrap();
        assert_eq!(both, Replicas { challenge_service: 3, event_handler: 2 });
        assert_eq!(Replicas::parse("event-handler=4").unwrap(), Replicas { challenge_service: 1, event_handler: 4 });
        assert_eq!(Replicas::parse(&both.to_string()).unwrap(), both);
        assert!(Replicas::parse("reward-mock=2").unwrap_err().contains("challenge-service and event-handler"));
        assert!(Replicas::parse("challenge-service=0").unwrap_err().contains("from 1 to 16"));
        assert!(Replicas::parse("challenge-service=17").unwrap_err().contains("from 1 to 16"));
        assert!(Replicas::parse("challenge-service").unwrap_err().contains("SERVICE=N"));
        assert_eq!(replica_name("event-handler", 1, 1), "event-handler");
        assert_eq!(replica_name("event-handler", 2, 3), "event-handler#2");
        assert_eq!(replica_of("event-handler#2"), Some("event-handler"));
        assert_eq!(replica_of("event-handler"), None);
    }
}
