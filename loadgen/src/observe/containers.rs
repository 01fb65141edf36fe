//! Containers' resources through the Docker engine's stats streams (bollard), into the same
//! resource series as processes: CPU as `docker stats` computes it (and against the container's
//! own limit), memory without the page cache, block I/O and network totals.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bollard::Docker;
use bollard::models::ContainerStatsResponse;
use bollard::query_parameters::{InspectContainerOptions, StatsOptions};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::resources::{ResourceSample, ResourceSource};

/// A container that could not be inspected.
#[derive(Debug, thiserror::Error)]
#[error("container '{0}' (--docker-stats): {1}")]
pub struct ContainerError(pub String, pub bollard::errors::Error);

/// Samples containers' stats: one stats stream per container keeps its latest figures.
pub struct ContainerSampler {
    latest: Arc<Mutex<BTreeMap<String, ResourceSample>>>,
    stop: CancellationToken,
}

impl std::fmt::Debug for ContainerSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSampler").finish_non_exhaustive()
    }
}

impl Drop for ContainerSampler {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl ContainerSampler {
    /// Starts streaming the stats of `(component, container name or id)` pairs.
    pub async fn start(docker: &Docker, containers: &[(String, String)]) -> Result<Self, ContainerError> {
        let latest = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = CancellationToken::new();
        for (component, container) in containers {
            let inspected = docker
                .inspect_container(container, None::<InspectContainerOptions>)
                .await
                .map_err(|e| ContainerError(container.clone(), e))?;
            let host = inspected.host_config.unwrap_or_default();
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            let cpu_limit =
                match (host.nano_cpus.filter(|n| *n > 0), host.cpu_quota.filter(|q| *q > 0), host.cpu_period) {
                    (Some(nano), _, _) => nano as f64 / 1e7,
                    (None, Some(quota), Some(period)) if period > 0 => quota as f64 / period as f64 * 100.0,
                    _ => cores * 100.0,
                };
            let (docker, latest, stop, component, container) =
                (docker.clone(), latest.clone(), stop.clone(), component.clone(), container.clone());
            tokio::spawn(async move {
                let options = StatsOptions { stream: true, one_shot: false };
                let mut stream = docker.stats(&container, Some(options));
                loop {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        () = stop.cancelled() => return,
                    };
                    let Some(Ok(stats)) = next else { return };
                    let sample = container_sample(&component, &stats, cpu_limit);
                    latest.lock().expect("not poisoned").insert(component.clone(), sample);
                }
            });
        }
        Ok(Self { latest, stop })
    }
}

impl ResourceSource for ContainerSampler {
    fn sample(&mut self) -> Pin<Box<dyn Future<Output = Vec<ResourceSample>> + Send + '_>> {
        let samples: Vec<ResourceSample> = self.latest.lock().expect("not poisoned").values().cloned().collect();
        Box::pin(async move { samples })
    }
}

/// CPU as `docker stats` computes it (percent of one core), memory without the page cache, and
/// block I/O totals.
fn container_sample(component: &str, stats: &ContainerStatsResponse, cpu_limit: f64) -> ResourceSample {
    let cpu = stats.cpu_stats.as_ref();
    let pre = stats.precpu_stats.as_ref();
    let total = |s: Option<&bollard::models::ContainerCpuStats>| {
        s.and_then(|s| s.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0)
    };
    let system = |s: Option<&bollard::models::ContainerCpuStats>| s.and_then(|s| s.system_cpu_usage).unwrap_or(0);
    let cpu_delta = total(cpu).saturating_sub(total(pre)) as f64;
    let system_delta = system(cpu).saturating_sub(system(pre)) as f64;
    let online = cpu.and_then(|c| c.online_cpus).unwrap_or(1) as f64;
    let cpu_percent = (system_delta > 0.0 && system(pre) > 0).then(|| cpu_delta / system_delta * online * 100.0);
    let memory = stats.memory_stats.as_ref();
    let cache = memory
        .and_then(|m| m.stats.as_ref())
        .and_then(|s| s.get("inactive_file").or_else(|| s.get("cache")).copied())
        .unwrap_or(0);
    let mut extra = Vec::new();
    if let Some(cpu) = cpu_percent {
        // As `docker stats` would show it against the container's own quota.
        extra.push(("cpu_percent_of_limit", cpu / cpu_limit * 100.0));
    }
    if let Some(entries) = stats.blkio_stats.as_ref().and_then(|b| b.io_service_bytes_recursive.as_ref()) {
        let sum = |op: &str| {
            entries
                .iter()
                .filter(|e| e.op.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(op)))
                .filter_map(|e| e.value)
                .sum::<u64>() as f64
        };
        extra.push(("block_read_bytes", sum("read")));
        extra.push(("block_write_bytes", sum("write")));
    }
    if let Some(networks) = &stats.networks {
        extra.push(("net_rx_bytes", networks.values().filter_map(|n| n.rx_bytes).sum::<u64>() as f64));
        extra.push(("net_tx_bytes", networks.values().filter_map(|n| n.tx_bytes).sum::<u64>() as f64));
    }
    ResourceSample {
        component: component.to_owned(),
        cpu_percent,
        cpu_limit_percent: Some(cpu_limit),
        memory_bytes: memory.and_then(|m| m.usage).map(|u| u.saturating_sub(cache)),
        memory_limit_bytes: memory.and_then(|m| m.limit),
        threads: stats.pids_stats.as_ref().and_then(|p| p.current),
        open_files: None,
        extra,
    }
}
