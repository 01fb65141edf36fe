//! Why a run stops before its end, and the process's one signal handler.
//!
//! A [`Stop`] is a cancellation token that keeps the first reason it was given: a signal, a
//! service that died, a threshold with `abortOnFail`. [`install_signal_handler`] makes SIGINT,
//! SIGTERM and SIGHUP fire [`signalled`] for the whole process (goose's own Ctrl-C handler is
//! then refused, so a second Ctrl-C can no longer exit mid-teardown): the first signal stops the
//! load and the results folder is still completed and renamed; later ones only say so.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// Why a run stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT (Ctrl-C), SIGTERM or SIGHUP.
    Signal,
    /// A provisioned service died.
    ServiceDied(String),
    /// A threshold with `abortOnFail` failed.
    Threshold(String),
    /// A distributed run's worker stopped sending (and `--on-worker-loss stop`).
    WorkerLost(String),
    /// This worker's coordinator asked it to stop (its run was stopped).
    Coordinator,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Signal => f.write_str("interrupted by a signal (Ctrl-C or SIGTERM)"),
            StopReason::ServiceDied(what) => f.write_str(what),
            StopReason::Threshold(which) => write!(f, "aborted: threshold {which} failed (abortOnFail)"),
            StopReason::WorkerLost(what) => f.write_str(what),
            StopReason::Coordinator => f.write_str("stopped by the coordinator"),
        }
    }
}

/// Stops a run, keeping the first reason.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Arc<OnceLock<StopReason>>,
}

impl Stop {
    /// Not stopped yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stops for `reason` (ignored if already stopped).
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Why it stopped, once it has.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.get().cloned()
    }

    /// True once stopped.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once stopped.
    pub async fn stopped(&self) {
        self.token.cancelled().await;
    }

    /// The token that fires on stop.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

static SIGNALLED: OnceLock<CancellationToken> = OnceLock::new();
static SIGNALS: AtomicU32 = AtomicU32::new(0);

/// Fires when the process receives SIGINT, SIGTERM or SIGHUP (never, unless
/// [`install_signal_handler`] was called).
pub fn signalled() -> CancellationToken {
    SIGNALLED.get_or_init(CancellationToken::new).clone()
}

/// Installs the process's signal handler. Call once, before anything else runs.
pub fn install_signal_handler() -> Result<(), String> {
    let token = signalled();
    ctrlc::set_handler(move || {
        let count = SIGNALS.fetch_add(1, Ordering::SeqCst) + 1;
        if count == 1 {
            eprintln!("gauntlet: signal received: stopping the load; the results folder is being completed");
        } else {
            eprintln!(
                "gauntlet: still completing the results folder (signal {count}); it is renamed when done \
                 (kill -9 {} abandons it as <out>.partial)",
                std::process::id()
            );
        }
        token.cancel();
        goose::trigger_killswitch("signal received");
    })
    .map_err(|e| format!("installing the signal handler: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_keeps_its_first_reason() {
        let stop = Stop::new();
        assert!(!stop.is_stopped());
        stop.stop(StopReason::Threshold("latency p(95)<5".into()));
        stop.stop(StopReason::Signal);
        assert!(stop.is_stopped());
        assert_eq!(stop.reason(), Some(StopReason::Threshold("latency p(95)<5".into())));
    }
}
