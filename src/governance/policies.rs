//! Policies as the application uses them: the default bodies seeded into `GovernancePolicy`
//! rows, the active set loaded into an [`Engine`], and replay of stored decision traces.

use crate::domain::Timestamp;
use crate::policy::set::{PolicyError, default_policies};
use crate::policy::{Engine, PolicySet, ReplayReport, replay};
use crate::store::{NewAuditEvent, NewPolicy, Store, StoreError};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the active policies are unusable: {0}")]
    Invalid(#[from] PolicyError),
}

/// Stores each default policy body that has no active row yet. Returns how many were stored.
/// Bodies an operator changed are left alone: the defaults only fill gaps.
pub async fn ensure_default_policies(
    store: &dyn Store,
    at: Timestamp,
) -> Result<usize, StoreError> {
    let active: Vec<String> = store
        .active_policies()
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut stored = 0;
    for (name, kind, body) in default_policies() {
        if active.contains(&name) {
            continue;
        }
        let audit = NewAuditEvent::new("system:defaults", "POLICY_DEFAULT_LOADED", at).detail(
            json!({ "policy": name, "content_hash": crate::canonical::hash_canonical(&body) }),
        );
        store
            .put_policy(
                &NewPolicy {
                    kind,
                    name,
                    body,
                    created_by: "system:defaults".into(),
                },
                &audit,
            )
            .await?;
        stored += 1;
    }
    Ok(stored)
}

/// The engine for the active policy set. Unparseable bodies are an error: never evaluate with a
/// policy we can't read (fail closed).
pub async fn load_engine(store: &dyn Store) -> Result<Engine, PolicyLoadError> {
    let bodies: BTreeMap<String, serde_json::Value> = store
        .active_policies()
        .await?
        .into_iter()
        .map(|p| (p.name, p.body.0))
        .collect();
    Ok(Engine::new(PolicySet::from_bodies(&bodies)?))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub total: usize,
    pub same: usize,
    pub different: Vec<ReplayReport>,
}

impl ReplaySummary {
    pub fn render(&self) -> String {
        let mut lines = vec![format!(
            "replayed {} trace(s): {} same, {} different",
            self.total,
            self.same,
            self.different.len()
        )];
        lines.extend(self.different.iter().map(ReplayReport::summary));
        lines.join("\n")
    }
}

/// Replays one stored trace; `None` when there is no such trace.
pub async fn replay_trace(
    store: &dyn Store,
    engine: &Engine,
    id: i64,
) -> Result<Option<ReplayReport>, StoreError> {
    Ok(store.trace_by_id(id).await?.map(|t| replay(&t, engine)))
}

/// Replays every stored trace, a page at a time.
pub async fn replay_all(store: &dyn Store, engine: &Engine) -> Result<ReplaySummary, StoreError> {
    let mut summary = ReplaySummary {
        total: 0,
        same: 0,
        different: vec![],
    };
    let mut after = 0;
    loop {
        let page = store.traces_after(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for trace in &page {
            let report = replay(trace, engine);
            summary.total += 1;
            if report.same {
                summary.same += 1;
            } else {
                summary.different.push(report);
            }
        }
    }
    Ok(summary)
}
