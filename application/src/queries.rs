//! Queries over the event log: filtered event listings and the audit
//! verification walk.

use chrono::{DateTime, SecondsFormat, Utc};
use cqrs_es::persist::PersistedEventRepository;
use serde::Serialize;
use serde_json::Value;
use tollgate_audit::{Finding, LoggedCheckpoint, Record, TreeSummary, TreeVerifier, Verifier};
use tollgate_domain::aggregate::AggregateRoot;
use tollgate_domain::audit_access::{AuditAccess, AuditAccessCommand};
use tollgate_domain::audit_key::AuditKey;
use tollgate_ports::api::{EventPage, EventQuery, EventRecord};
use tollgate_ports::outbound::LoggedEvent;

use crate::{AppError, Tollgate};

const PAGE: u32 = 1000;
/// How many checkpoints verification holds at once.
const CHECKPOINT_PAGE: u32 = 100;

/// The audit view of one event record.
pub(crate) fn record(event: &LoggedEvent) -> Record<'_> {
    Record {
        position: event.position,
        event_id: &event.event_id,
        aggregate_type: &event.aggregate_type,
        aggregate_id: &event.aggregate_id,
        sequence: event.sequence,
        event_type: &event.event_type,
        event_version: &event.event_version,
        payload: &event.payload,
        metadata: &event.metadata,
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only events about this user.
    pub user: Option<String>,
    /// Only events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only these event types.
    pub event_type: Option<String>,
    /// Only events after this position.
    pub after: u64,
    /// At most this many (the newest ones when `tail` is set).
    pub limit: usize,
    /// Keep the last `limit` matches instead of the first.
    pub tail: bool,
}

/// One event as a compliance officer reads it (PCI DSS 10.2.2: user, type,
/// time, outcome, origin, affected resource).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventSummary {
    /// Global position.
    pub position: u64,
    /// Stable id.
    pub event_id: String,
    /// When it was recorded.
    pub time: String,
    /// Who acted (`cli`, `anonymous`, a user name).
    pub actor: String,
    /// The user concerned.
    pub user: Option<String>,
    /// The event type.
    pub event_type: String,
    /// success, failure, denied or aborted.
    pub outcome: &'static str,
    /// Protocol of the session.
    pub protocol: Option<String>,
    /// Client address.
    pub remote_addr: Option<String>,
    /// Session id.
    pub session_id: Option<String>,
    /// `aggregate_type/aggregate_id`.
    pub aggregate: String,
    /// The file operation (`mkdir`, `list`, ...), for session file events.
    pub operation: Option<String>,
    /// The affected path, if any.
    pub path: Option<String>,
    /// Rename target.
    pub target: Option<String>,
    /// Bytes moved.
    pub bytes: Option<u64>,
    /// SHA-256 of the transferred file.
    pub sha256: Option<String>,
    /// Reason, error or deciding rule.
    pub detail: Option<String>,
    /// The event's payload.
    pub payload: Value,
}

/// Payload fields that hold credential material (hashes, never clear
/// text): kept in the log for verification, never shown by a query.
const CREDENTIAL_FIELDS: [&str; 3] = ["password_hash", "secret_sha256", "secret"];

fn redact(payload: &mut Value) {
    if let Some(body) = payload
        .as_object_mut()
        .and_then(|o| o.values_mut().next())
        .and_then(Value::as_object_mut)
    {
        for field in CREDENTIAL_FIELDS {
            if let Some(value) = body.get_mut(field)
                && !value.is_null()
            {
                *value = Value::String("[redacted]".to_string());
            }
        }
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_string)
}

impl EventSummary {
    pub(crate) fn from_logged(mut event: LoggedEvent) -> Self {
        redact(&mut event.payload);
        let meta = &event.metadata;
        let body = event
            .payload
            .as_object()
            .and_then(|o| o.values().next())
            .cloned()
            .unwrap_or(Value::Null);
        let context = body.get("context");
        let event_type = event.event_type.clone();
        let outcome = if event_type.ends_with("Failed") {
            "failure"
        } else if event_type.ends_with("Denied") {
            "denied"
        } else if event_type.ends_with("Aborted") {
            "aborted"
        } else {
            "success"
        };
        let path = text(body.get("path")).or_else(|| text(context.and_then(|c| c.get("path"))));
        let detail = ["reason", "error", "rule"]
            .iter()
            .find_map(|k| text(body.get(*k)));
        let user = text(meta.get("user"))
            .or_else(|| (event.aggregate_type == "user").then(|| event.aggregate_id.clone()));
        EventSummary {
            position: event.position,
            event_id: event.event_id,
            time: text(meta.get("time")).unwrap_or_default(),
            actor: text(meta.get("actor")).unwrap_or_default(),
            user,
            event_type,
            outcome,
            protocol: text(meta.get("protocol")),
            remote_addr: text(meta.get("remote_addr")),
            session_id: text(meta.get("session_id")),
            aggregate: format!("{}/{}", event.aggregate_type, event.aggregate_id),
            operation: text(body.get("operation")),
            path,
            target: text(body.get("target")),
            bytes: body.get("bytes").and_then(Value::as_u64),
            sha256: text(body.get("sha256")),
            detail,
            payload: event.payload,
        }
    }

    fn matches(&self, filter: &EventFilter) -> bool {
        let time_text = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        filter
            .user
            .as_ref()
            .is_none_or(|u| self.user.as_ref() == Some(u))
            && filter
                .event_type
                .as_ref()
                .is_none_or(|t| &self.event_type == t)
            && filter
                .since
                .as_ref()
                .is_none_or(|t| self.time >= time_text(t))
            && filter
                .until
                .as_ref()
                .is_none_or(|t| self.time < time_text(t))
    }
}

/// The result of walking the whole audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records whose seal verified.
    pub sealed: u64,
    /// Records after the last seal.
    pub unsealed: u64,
    /// Sealed records pruned after their export (counted in `sealed`).
    pub pruned: u64,
    /// Signed checkpoints whose root and signature verified.
    pub checkpoints: u64,
    /// The size of the largest verified checkpoint (0 if none).
    pub checkpointed: u64,
    /// The first problem found, if any.
    pub finding: Option<Finding>,
}

impl VerifyReport {
    /// The result in one line, as `AuditLogVerified` records it.
    pub fn result(&self) -> String {
        match &self.finding {
            Some(finding) => format!("failed: {finding}"),
            None => format!(
                "ok: {} sealed ({} pruned after export), {} unsealed, {} checkpoints (latest {})",
                self.sealed, self.pruned, self.unsealed, self.checkpoints, self.checkpointed
            ),
        }
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Events matching `filter`, in position order.
    pub async fn list_events(&self, filter: &EventFilter) -> Result<Vec<EventSummary>, AppError> {
        let mut found = std::collections::VecDeque::new();
        let mut after = filter.after;
        loop {
            let mut page = self.inner.deps.log.read_after(after, PAGE).await?;
            self.open_personal(&mut page).await?;
            let Some(last) = page.last().map(|e| e.position) else {
                break;
            };
            after = last;
            for event in page {
                let summary = EventSummary::from_logged(event);
                if !summary.matches(filter) {
                    continue;
                }
                found.push_back(summary);
                if found.len() > filter.limit {
                    if filter.tail {
                        found.pop_front();
                    } else {
                        found.pop_back();
                        return Ok(found.into());
                    }
                }
            }
        }
        Ok(found.into())
    }

    /// Walks every record and seal in position order and reports the first
    /// record that does not verify. A problem found is an alert: logged at
    /// error level and counted in `tollgate_audit_verification_failures_total`.
    pub async fn verify_audit(&self) -> Result<VerifyReport, AppError> {
        let report = self.verify_records().await?;
        if let Some(finding) = &report.finding {
            tracing::error!(%finding, "the audit trail does not verify");
            self.inner.metrics.verification_failed();
        }
        Ok(report)
    }

    /// Records that `actor` verified the trail, with the result
    /// (`AuditLogVerified`, or `AuditVerificationFailed`): verifying is
    /// itself audited.
    pub async fn record_audit_verification(
        &self,
        actor: &str,
        report: &VerifyReport,
    ) -> Result<(), AppError> {
        let command = AuditAccessCommand::RecordVerification {
            result: report.result(),
            ok: report.finding.is_none(),
        };
        self.record_audit_access(actor, command).await
    }

    /// Records one access to the audit trail by `actor` (a CLI or system
    /// actor; the API records its principals itself).
    pub(crate) async fn record_audit_access(
        &self,
        actor: &str,
        command: AuditAccessCommand,
    ) -> Result<(), AppError> {
        let actor = crate::aggregates::Actor {
            actor: actor.to_string(),
            ..Default::default()
        };
        self.execute::<AuditAccess>(&uuid::Uuid::now_v7().to_string(), &actor, || {
            command.clone()
        })
        .await
        .map(drop)
    }

    async fn verify_records(&self) -> Result<VerifyReport, AppError> {
        let deps = &self.inner.deps;
        let mut verifier = Verifier::new();
        let mut events = std::collections::VecDeque::new();
        let mut seals = std::collections::VecDeque::new();
        let (mut events_after, mut seals_after) = (0u64, 0u64);
        let (mut events_done, mut seals_done) = (false, false);
        let mut pruned = crate::retention::PrunedCursor::new(deps.audit.as_ref());
        let mut position = 0u64;
        loop {
            position += 1;
            if events.is_empty() && !events_done {
                let page = deps.log.read_after(events_after, PAGE).await?;
                events_done = page.is_empty();
                events_after = page
                    .last()
                    .map(|e: &LoggedEvent| e.position)
                    .unwrap_or(events_after);
                events.extend(page);
            }
            if seals.is_empty() && !seals_done {
                let page = deps.audit.read_seals(seals_after, PAGE).await?;
                seals_done = page.is_empty();
                seals_after = page.last().map(|s| s.position).unwrap_or(seals_after);
                seals.extend(page);
            }
            if events.is_empty() && seals.is_empty() {
                break;
            }
            let event = events
                .front()
                .filter(|e| e.position <= position)
                .is_some()
                .then(|| events.pop_front())
                .flatten();
            let seal = seals
                .front()
                .filter(|s| s.position == position)
                .is_some()
                .then(|| seals.pop_front())
                .flatten();
            let record = event.as_ref().map(record);
            let seal = seal
                .as_ref()
                .map(|s| (s.event_id.as_str(), s.hash.as_str()));
            let step = if record.is_none() && pruned.contains(position).await? {
                verifier.skip_pruned(seal)
            } else {
                verifier.step(record.as_ref(), seal)
            };
            if let Err(finding) = step {
                let summary = verifier.finish();
                return Ok(VerifyReport {
                    sealed: summary.sealed,
                    unsealed: summary.unsealed,
                    pruned: summary.pruned,
                    checkpoints: 0,
                    checkpointed: 0,
                    finding: Some(finding),
                });
            }
        }
        let summary = verifier.finish();
        let (tree, finding) = match self.verify_tree().await? {
            Ok(tree) => (tree, None),
            Err(finding) => (TreeSummary::default(), Some(finding)),
        };
        Ok(VerifyReport {
            sealed: summary.sealed,
            unsealed: summary.unsealed,
            pruned: summary.pruned,
            checkpoints: tree.checkpoints,
            checkpointed: tree.latest,
            finding,
        })
    }

    /// Walks every record again with the stored Merkle leaves: each leaf
    /// must match its record, and every checkpoint must match the records
    /// it covers and be signed by a key the log activated.
    async fn verify_tree(&self) -> Result<Result<TreeSummary, Finding>, AppError> {
        let deps = &self.inner.deps;
        // Checkpoints are fed a page at a time, as the walk reaches them.
        let mut tree = TreeVerifier::new(Vec::new());
        let mut checkpoints_after = 0u64;
        let mut checkpoints_done = false;
        let grown = deps.audit.leaf_count().await?;
        let mut leaves = std::collections::VecDeque::new();
        let mut leaves_after = 0u64;
        let mut events_after = 0u64;
        let mut pruned = crate::retention::PrunedCursor::new(deps.audit.as_ref());
        let mut next_pruned = pruned.next().await?;
        // The ranges the log's recorded prunes name.
        let mut declared: Vec<(u64, u64)> = Vec::new();
        loop {
            let events = deps.log.read_after(events_after, PAGE).await?;
            // Pruned positions before the next record (or after the last).
            let upto = events.first().map_or(u64::MAX, |e| e.position);
            while let Some(position) = next_pruned.filter(|p| *p < upto) {
                if tree.pending() == 0 && !checkpoints_done {
                    checkpoints_done = !self
                        .feed_checkpoints(&mut tree, &mut checkpoints_after)
                        .await?;
                }
                if leaves.is_empty() && leaves_after < grown {
                    let page = deps.audit.read_leaves(leaves_after, PAGE).await?;
                    leaves_after = page.last().map(|(p, _)| *p).unwrap_or(grown);
                    leaves.extend(page);
                }
                let stored = match leaves.front() {
                    Some((p, _)) if *p == position => leaves.pop_front(),
                    _ => None,
                };
                if let Err(finding) = tree.step_pruned(stored.as_ref().map(|(_, l)| l.as_str())) {
                    return Ok(Err(finding));
                }
                next_pruned = pruned.next().await?;
            }
            if events.is_empty() {
                break;
            }
            for event in &events {
                if next_pruned.is_some_and(|p| p < event.position) {
                    // The next page starts with the pruned positions before it.
                    break;
                }
                events_after = event.position;
                if event.event_type == "AuditRecordsPruned"
                    && let Some(body) = event.payload.get("AuditRecordsPruned")
                    && let (Some(a), Some(b)) = (
                        body.get("first").and_then(serde_json::Value::as_u64),
                        body.get("last").and_then(serde_json::Value::as_u64),
                    )
                {
                    declared.push((a, b));
                }
                if tree.pending() == 0 && !checkpoints_done {
                    checkpoints_done = !self
                        .feed_checkpoints(&mut tree, &mut checkpoints_after)
                        .await?;
                }
                if event.aggregate_type == AuditKey::TYPE {
                    if let Some(key) = event
                        .payload
                        .pointer("/AuditKeyActivated/verifier_key")
                        .and_then(serde_json::Value::as_str)
                        && let Err(err) = tree.trust(key)
                    {
                        tracing::warn!(position = event.position, %err, "an activated audit key is malformed");
                    }
                    if event.event_type == "AuditKeyRetired" {
                        tree.retire(&event.aggregate_id, event.position);
                    }
                }
                if leaves.is_empty() && leaves_after < grown {
                    let page = deps.audit.read_leaves(leaves_after, PAGE).await?;
                    leaves_after = page.last().map(|(p, _)| *p).unwrap_or(grown);
                    leaves.extend(page);
                }
                let stored = match leaves.front() {
                    Some((position, _)) if *position == event.position => leaves.pop_front(),
                    _ if event.position <= grown => {
                        return Ok(Err(Finding::LeafAltered {
                            position: event.position,
                        }));
                    }
                    _ => None,
                };
                let step = tree.step(&record(event), stored.as_ref().map(|(_, l)| l.as_str()));
                if let Err(finding) = step {
                    return Ok(Err(finding));
                }
            }
        }
        // Checkpoints beyond the last record are found by `finish`.
        while !checkpoints_done {
            checkpoints_done = !self
                .feed_checkpoints(&mut tree, &mut checkpoints_after)
                .await?;
        }
        // Every pruned record must be in the range of a recorded prune.
        let mut pruned = crate::retention::PrunedCursor::new(deps.audit.as_ref());
        while let Some(position) = pruned.next().await? {
            if !declared.iter().any(|(a, b)| (*a..=*b).contains(&position)) {
                return Ok(Err(Finding::PrunedUndeclared { position }));
            }
        }
        Ok(tree.finish())
    }

    /// Gives `tree` the next page of checkpoints larger than `after` (and
    /// moves `after`); false when there were none.
    async fn feed_checkpoints(
        &self,
        tree: &mut TreeVerifier,
        after: &mut u64,
    ) -> Result<bool, AppError> {
        let page = self
            .inner
            .deps
            .audit
            .read_checkpoints(*after, CHECKPOINT_PAGE)
            .await?;
        let any = !page.is_empty();
        for checkpoint in page {
            *after = checkpoint.size;
            tree.expect(LoggedCheckpoint {
                size: checkpoint.size,
                key_id: checkpoint.key_id,
                note: checkpoint.note,
            });
        }
        Ok(any)
    }
}

/// How many records one page of an audit query examines at most, so that a
/// selective filter answers in bounded time and resumes from its cursor.
const SCAN_BUDGET: u64 = 20_000;

/// The query's time bounds, parsed; an invalid one is refused.
struct Bounds {
    since: Option<String>,
    until: Option<String>,
}

fn bound(name: &str, text: Option<&String>) -> Result<Option<String>, AppError> {
    text.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| {
                t.with_timezone(&Utc)
                    .to_rfc3339_opts(SecondsFormat::Micros, true)
            })
            .map_err(|_| AppError::Invalid(format!("{name} {t:?} is not an RFC 3339 time")))
    })
    .transpose()
}

const OUTCOMES: [&str; 4] = ["success", "failure", "denied", "aborted"];

/// Checks an audit query's values.
pub(crate) fn check_query(query: &EventQuery) -> Result<(), AppError> {
    bounds(query).map(drop)
}

fn bounds(query: &EventQuery) -> Result<Bounds, AppError> {
    if let Some(outcome) = &query.outcome
        && !OUTCOMES.contains(&outcome.as_str())
    {
        return Err(AppError::Invalid(format!(
            "outcome {outcome:?} is not one of success, failure, denied, aborted"
        )));
    }
    Ok(Bounds {
        since: bound("since", query.since.as_ref())?,
        until: bound("until", query.until.as_ref())?,
    })
}

fn selects(query: &EventQuery, bounds: &Bounds, e: &EventSummary) -> bool {
    let equal = |want: &Option<String>, have: &Option<String>| {
        want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
    };
    equal(&query.user, &e.user)
        && query.action.as_ref().is_none_or(|a| &e.event_type == a)
        && query.outcome.as_ref().is_none_or(|o| e.outcome == o)
        && equal(&query.protocol, &e.protocol)
        && query.remote_addr.as_ref().is_none_or(|want| {
            // An address without a port matches every port of that host.
            e.remote_addr.as_ref().is_some_and(|have| {
                have == want
                    || have
                        .rsplit_once(':')
                        .is_some_and(|(host, _)| host.trim_matches(['[', ']']) == want)
            })
        })
        && query.path_prefix.as_ref().is_none_or(|prefix| {
            [&e.path, &e.target].into_iter().flatten().any(|path| {
                path == prefix
                    || path.starts_with(prefix.as_str())
                        && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/'))
            })
        })
        && bounds.since.as_ref().is_none_or(|t| &e.time >= t)
        && bounds.until.as_ref().is_none_or(|t| &e.time < t)
}

impl From<EventSummary> for EventRecord {
    fn from(e: EventSummary) -> Self {
        EventRecord {
            position: e.position,
            event_id: e.event_id,
            time: e.time,
            actor: e.actor,
            user: e.user,
            event_type: e.event_type,
            outcome: e.outcome.to_string(),
            protocol: e.protocol,
            remote_addr: e.remote_addr,
            session_id: e.session_id,
            resource: e.aggregate,
            path: e.path,
            target: e.target,
            bytes: e.bytes,
            sha256: e.sha256,
            detail: e.detail,
            payload: e.payload,
        }
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// One page of an audit query: matching records after `query.after`, at
    /// most `query.limit`, examining at most `SCAN_BUDGET` records.
    pub(crate) async fn query_events(&self, query: &EventQuery) -> Result<EventPage, AppError> {
        let bounds = bounds(query)?;
        let limit = query.limit.max(1);
        let mut items = Vec::new();
        let mut after = query.after;
        let mut scanned = 0u64;
        loop {
            let mut page = self.inner.deps.log.read_after(after, PAGE).await?;
            self.open_personal(&mut page).await?;
            if page.is_empty() {
                return Ok(EventPage {
                    items,
                    next_cursor: None,
                });
            }
            for event in page {
                after = event.position;
                scanned += 1;
                let summary = EventSummary::from_logged(event);
                if selects(query, &bounds, &summary) {
                    items.push(summary.into());
                    if items.len() == limit {
                        return Ok(EventPage {
                            items,
                            next_cursor: Some(after),
                        });
                    }
                }
                if scanned >= SCAN_BUDGET {
                    return Ok(EventPage {
                        items,
                        next_cursor: Some(after),
                    });
                }
            }
        }
    }
}
