//! The integrity audit around the load: the audited users' books read before it, read again
//! and judged after it.

use std::sync::Arc;
use std::time::Duration;

use super::RunError;
use crate::definition::plan::Plan;
use crate::deploy::Endpoints;
use crate::engine::http::RestTarget;
use crate::engine::workload::Workload;
use crate::integrity::{Auditor, GrantRow, Integrity, Snapshot};
use crate::target::fixtures;
use crate::target::operations::STAT_CODES;

/// The integrity audit as it stood before the load.
pub(super) struct AuditStart {
    auditor: Auditor,
    before: Snapshot,
    grants_before: Option<Vec<GrantRow>>,
    started: chrono::NaiveDate,
}

impl AuditStart {
    /// Reads the audited users' books before the load (operations that change them only).
    pub async fn read(plan: &Plan, workload: &Workload, endpoints: &Endpoints) -> Result<Option<Self>, RunError> {
        let changes_books =
            plan.scenario.streams.values().flat_map(|s| s.operations.keys()).any(|op| op.changes_books());
        let audited = workload.ledger.audited(workload.users.len());
        let api = endpoints.api_urls.as_slice();
        if api.is_empty() || !changes_books || audited.is_empty() {
            return Ok(None);
        }
        let failed = |e: String| {
            RunError::Unreachable(format!(
                "reading the books before the load: {e} (--audit-users 0 runs without the integrity audit)"
            ))
        };
        let config = fixtures::load_challenges(&plan.challenges_file)?;
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
    pub async fn check(&self, workload: &Workload, settle: Duration) -> Integrity {
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
