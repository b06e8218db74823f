//! The AuditAccess aggregate: one read of the audit trail (a query, an
//! export or a verification), recorded because reading audit records is
//! itself an auditable act (PCI DSS 10.2.1.3). One aggregate per access.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;

/// The AuditAccess aggregate. The aggregate id is a UUID chosen by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditAccess {
    /// Whether the access was recorded.
    pub recorded: bool,
}

/// Commands on an audit access.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum AuditAccessCommand {
    /// A query or an export: the filter as text and the format.
    RecordRead { query: String, format: String },
    /// A verification and its result; a failed one is recorded as
    /// `AuditVerificationFailed`, so that it can be alerted on by type.
    RecordVerification { result: String, ok: bool },
}

/// Events of an audit access.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AuditAccessEvent {
    AuditLogRead { query: String, format: String },
    AuditLogVerified { result: String },
    AuditVerificationFailed { result: String },
}
crate::domain_event!(AuditAccessEvent, "1", { AuditLogRead, AuditLogVerified, AuditVerificationFailed });

/// Why an audit access command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditAccessError {
    /// Each access is recorded once.
    #[error("audit access already recorded")]
    AlreadyRecorded,
}
crate::refusal!(AuditAccessError, { AlreadyRecorded => AlreadyExists });

impl AggregateRoot for AuditAccess {
    const TYPE: &'static str = "audit_access";
    type Command = AuditAccessCommand;
    type Event = AuditAccessEvent;
    type Error = AuditAccessError;

    fn decide(&self, command: AuditAccessCommand) -> Result<Vec<AuditAccessEvent>, Self::Error> {
        if self.recorded {
            return Err(AuditAccessError::AlreadyRecorded);
        }
        Ok(vec![match command {
            AuditAccessCommand::RecordRead { query, format } => {
                AuditAccessEvent::AuditLogRead { query, format }
            }
            AuditAccessCommand::RecordVerification { result, ok: true } => {
                AuditAccessEvent::AuditLogVerified { result }
            }
            AuditAccessCommand::RecordVerification { result, ok: false } => {
                AuditAccessEvent::AuditVerificationFailed { result }
            }
        }])
    }

    fn apply(&mut self, _event: AuditAccessEvent) {
        self.recorded = true;
    }
}
