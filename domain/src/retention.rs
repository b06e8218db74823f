//! Retention: which records may leave the live log once exported, and the
//! AuditPrune aggregate that records each prune (one per prune).
//!
//! Only the records of finished, short-lived aggregates are prunable:
//! closed sessions, finished transfers, reads of the audit trail and
//! stopped server runs. The
//! records of users, groups, policies, administrators, keys and mounts are
//! their current state (the log is the system of record), so they stay.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;

/// Whether an aggregate whose whole history is `event_types` (in order,
/// from its first event) may be pruned: it must be finished.
pub fn prunable(aggregate_type: &str, event_types: &[&str]) -> bool {
    let Some(last) = event_types.last() else {
        return false;
    };
    match aggregate_type {
        "session" => *last == "SessionClosed",
        "transfer" => matches!(
            *last,
            "TransferCompleted" | "TransferFailed" | "TransferAborted" | "TransferDenied"
        ),
        "server" => *last == "ServerStopped",
        "audit_access" => event_types
            .iter()
            .all(|t| matches!(*t, "AuditLogRead" | "AuditLogVerified")),
        _ => false,
    }
}

/// One prune. The aggregate id is a UUID chosen by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditPrune {
    /// Whether the prune was recorded.
    pub recorded: bool,
}

/// What a prune removed, and where those records are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneRecord {
    /// The evidence bundle's first and last positions.
    pub first: u64,
    /// See `first`.
    pub last: u64,
    /// How many records of that range leave the live log.
    pub records: u64,
    /// Records older than this time (RFC 3339) were eligible.
    pub before: String,
    /// SHA-256 (hex) of the bundle's `manifest.json`, `proof.json` and
    /// `checkpoint.txt`, naming the bundle that holds the records.
    pub bundle_sha256: String,
}

/// Commands on a prune.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditPruneCommand {
    /// Records a prune before its records are deleted.
    Record(PruneRecord),
}

/// Events of a prune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AuditPruneEvent {
    AuditRecordsPruned(PruneRecord),
}
crate::domain_event!(AuditPruneEvent, "1", { AuditRecordsPruned });

/// Why a prune command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditPruneError {
    /// Each prune is recorded once.
    #[error("prune already recorded")]
    AlreadyRecorded,
    /// The range is empty or reversed, or nothing is pruned.
    #[error("a prune needs a range first..=last and at least one record")]
    Empty,
}
crate::refusal!(AuditPruneError, { AlreadyRecorded => AlreadyExists, Empty => Invalid });

impl AggregateRoot for AuditPrune {
    const TYPE: &'static str = "audit_prune";
    type Command = AuditPruneCommand;
    type Event = AuditPruneEvent;
    type Error = AuditPruneError;

    fn decide(&self, command: AuditPruneCommand) -> Result<Vec<AuditPruneEvent>, Self::Error> {
        if self.recorded {
            return Err(AuditPruneError::AlreadyRecorded);
        }
        let AuditPruneCommand::Record(record) = command;
        if record.first == 0 || record.first > record.last || record.records == 0 {
            return Err(AuditPruneError::Empty);
        }
        Ok(vec![AuditPruneEvent::AuditRecordsPruned(record)])
    }

    fn apply(&mut self, _event: AuditPruneEvent) {
        self.recorded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_short_lived_aggregates_are_prunable() {
        assert!(prunable(
            "session",
            &["SessionOpened", "LoginSucceeded", "SessionClosed"]
        ));
        assert!(!prunable("session", &["SessionOpened", "LoginSucceeded"]));
        assert!(prunable(
            "transfer",
            &["TransferStarted", "TransferCompleted"]
        ));
        assert!(prunable("transfer", &["TransferDenied"]));
        assert!(!prunable("transfer", &["TransferStarted"]));
        assert!(prunable("audit_access", &["AuditLogRead"]));
        for kept in [
            "user",
            "group",
            "policy",
            "admin",
            "audit_key",
            "audit_prune",
            "mount",
        ] {
            assert!(!prunable(kept, &["SessionClosed"]), "{kept}");
        }
        assert!(!prunable("session", &[]));
    }

    #[test]
    fn a_prune_is_recorded_once_and_never_empty() {
        let record = PruneRecord {
            first: 1,
            last: 10,
            records: 4,
            before: "2026-01-01T00:00:00Z".into(),
            bundle_sha256: "00".into(),
        };
        let mut prune = AuditPrune::default();
        let events = prune
            .decide(AuditPruneCommand::Record(record.clone()))
            .unwrap();
        prune.apply(events[0].clone());
        assert_eq!(
            prune.decide(AuditPruneCommand::Record(record.clone())),
            Err(AuditPruneError::AlreadyRecorded)
        );
        let empty = PruneRecord {
            records: 0,
            ..record
        };
        assert_eq!(
            AuditPrune::default().decide(AuditPruneCommand::Record(empty)),
            Err(AuditPruneError::Empty)
        );
    }
}
