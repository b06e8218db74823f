//! Retention: records of finished sessions, transfers and audit reads that
//! are older than a cut-off leave the live log, but only records an
//! evidence bundle already holds (checked leaf by leaf against the stored
//! tree), and only after the prune is recorded in the log. Their seals and
//! Merkle leaves stay, so the chain, the tree, every checkpoint and every
//! proof still verify; the bundle proves the records themselves.

use std::collections::{HashMap, VecDeque};

use cqrs_es::persist::PersistedEventRepository;
use tollgate_domain::retention::{AuditPrune, AuditPruneCommand, PruneRecord, prunable};
use tollgate_ports::outbound::AuditStore;

use crate::aggregates::Actor;
use crate::{AppError, Tollgate};

const PAGE: u32 = 1000;

/// The range of records an evidence bundle proved, as its proof lists it.
#[derive(Debug, Clone)]
pub struct ExportedRange {
    /// The first record's position.
    pub first: u64,
    /// The last record's position.
    pub last: u64,
    /// The hex leaf hash of each record `first..=last`.
    pub leaves: Vec<String>,
    /// What names the bundle (see `PruneRecord::bundle_sha256`).
    pub bundle_sha256: String,
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// The prune's id (its `audit_prune` aggregate), `None` when nothing
    /// was eligible and nothing was recorded.
    pub prune_id: Option<String>,
    /// Records removed from the live log.
    pub pruned: u64,
    /// Records of the range that stay (not finished, too recent, or state).
    pub kept: u64,
}

/// The pruned positions, read forward a page at a time.
pub(crate) struct PrunedCursor<'a> {
    store: &'a dyn AuditStore,
    buffer: VecDeque<u64>,
    after: u64,
    done: bool,
}

impl<'a> PrunedCursor<'a> {
    pub(crate) fn new(store: &'a dyn AuditStore) -> Self {
        PrunedCursor {
            store,
            buffer: VecDeque::new(),
            after: 0,
            done: false,
        }
    }

    /// Whether `position` was pruned; positions must be asked in increasing order.
    pub(crate) async fn contains(&mut self, position: u64) -> Result<bool, AppError> {
        loop {
            while self.buffer.front().is_some_and(|p| *p < position) {
                self.buffer.pop_front();
            }
            if let Some(front) = self.buffer.front() {
                return Ok(*front == position);
            }
            if self.done {
                return Ok(false);
            }
            let page = self.store.read_pruned(self.after, PAGE).await?;
            self.done = page.len() < PAGE as usize;
            self.after = page.last().copied().unwrap_or(self.after);
            self.buffer.extend(page);
        }
    }

    /// The next pruned position, if any.
    pub(crate) async fn next(&mut self) -> Result<Option<u64>, AppError> {
        if self.buffer.is_empty() && !self.done {
            let page = self.store.read_pruned(self.after, PAGE).await?;
            self.done = page.len() < PAGE as usize;
            self.after = page.last().copied().unwrap_or(self.after);
            self.buffer.extend(page);
        }
        Ok(self.buffer.pop_front())
    }
}

/// One aggregate's records within the range.
#[derive(Default)]
struct History {
    positions: Vec<u64>,
    sequences: Vec<u64>,
    types: Vec<String>,
    all_old: bool,
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Prunes the records of `range` (which a verified bundle holds) that
    /// are older than `before` and belong to finished sessions, transfers
    /// or audit reads whose whole history is in the range.
    pub async fn prune_exported(
        &self,
        actor: &str,
        range: &ExportedRange,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<PruneReport, AppError> {
        let deps = &self.inner.deps;
        let invalid = |message: String| Err(AppError::Invalid(message));
        if range.first == 0
            || range.last < range.first
            || range.leaves.len() as u64 != range.last - range.first + 1
        {
            return invalid("the bundle's proof does not list one leaf per record".into());
        }
        let checkpointed = deps.audit.latest_checkpoint().await?.map_or(0, |c| c.size);
        let sealed = deps.audit.last_seal().await?.map_or(0, |s| s.position);
        if range.last > checkpointed.min(sealed) {
            return invalid(format!(
                "the bundle reaches record {}, past what the log has sealed and signed ({})",
                range.last,
                checkpointed.min(sealed)
            ));
        }
        // The bundle must hold exactly this log's records.
        let mut after = range.first - 1;
        while after < range.last {
            let page = deps.audit.read_leaves(after, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for (position, leaf) in page.iter().take_while(|(p, _)| *p <= range.last) {
                let index = (position - range.first) as usize;
                if range.leaves.get(index) != Some(leaf) {
                    return invalid(format!(
                        "the bundle's record {position} is not this log's record {position}"
                    ));
                }
            }
            after = page.last().map_or(range.last, |(p, _)| *p);
        }
        let cutoff = before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut histories: HashMap<(String, String), History> = HashMap::new();
        let mut seen = 0u64;
        let mut after = range.first - 1;
        while after < range.last {
            let page = deps.log.read_after(after, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for event in page.iter().take_while(|e| e.position <= range.last) {
                seen += 1;
                let time = event.metadata.get("time").and_then(|t| t.as_str());
                let history = histories
                    .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
                    .or_insert_with(|| History {
                        all_old: true,
                        ..History::default()
                    });
                history.positions.push(event.position);
                history.sequences.push(event.sequence);
                history.types.push(event.event_type.clone());
                history.all_old &= time.is_some_and(|t| t < cutoff.as_str());
            }
            after = page.last().map_or(range.last, |e| e.position);
        }
        let mut positions: Vec<u64> = histories
            .iter()
            .filter(|((aggregate_type, _), h)| {
                let whole = h.sequences.iter().copied().eq(1..=h.sequences.len() as u64);
                let types: Vec<&str> = h.types.iter().map(String::as_str).collect();
                whole && h.all_old && prunable(aggregate_type, &types)
            })
            .flat_map(|(_, h)| h.positions.iter().copied())
            .collect();
        positions.sort_unstable();
        let pruned = positions.len() as u64;
        if pruned == 0 {
            return Ok(PruneReport {
                prune_id: None,
                pruned: 0,
                kept: seen,
            });
        }
        let prune_id = uuid::Uuid::now_v7().to_string();
        let record = PruneRecord {
            first: range.first,
            last: range.last,
            records: pruned,
            before: cutoff,
            bundle_sha256: range.bundle_sha256.clone(),
        };
        let actor = Actor {
            actor: actor.to_string(),
            ..Actor::default()
        };
        // Recorded first: a prune the log does not name would be a removal.
        self.execute::<AuditPrune>(&prune_id, &actor, || {
            AuditPruneCommand::Record(record.clone())
        })
        .await?;
        deps.audit.prune(&prune_id, &positions).await?;
        tracing::info!(
            prune_id,
            pruned,
            first = range.first,
            last = range.last,
            "exported audit records pruned from the live log"
        );
        Ok(PruneReport {
            prune_id: Some(prune_id),
            pruned,
            kept: seen - pruned,
        })
    }
}
