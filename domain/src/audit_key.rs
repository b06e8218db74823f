//! The AuditKey aggregate: a key that signs the audit log's checkpoints.
//! Activating a key records its public half in the log itself, so a
//! verifier learns which keys to trust from the records it checks (and an
//! exported bundle carries them). One aggregate per key, by key id.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;

/// The AuditKey aggregate. The aggregate id is the key id (8 hex digits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditKey {
    /// The key's name (the log's origin).
    pub name: String,
    /// The verifier key string (`NAME+KEYID+KEY`).
    pub verifier_key: String,
}

/// Commands on an audit key.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum AuditKeyCommand {
    /// Starts signing checkpoints with this key.
    Activate { name: String, verifier_key: String },
}

/// Events of an audit key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AuditKeyEvent {
    AuditKeyActivated { name: String, verifier_key: String },
}
crate::domain_event!(AuditKeyEvent, "1", { AuditKeyActivated });

/// Why an audit key command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    /// The key was activated before.
    #[error("audit key already active")]
    AlreadyActive,
}
crate::refusal!(AuditKeyError, { AlreadyActive => AlreadyExists });

impl AuditKey {
    /// Whether the key was activated.
    pub fn exists(&self) -> bool {
        !self.verifier_key.is_empty()
    }
}

impl AggregateRoot for AuditKey {
    const TYPE: &'static str = "audit_key";
    type Command = AuditKeyCommand;
    type Event = AuditKeyEvent;
    type Error = AuditKeyError;

    fn decide(&self, command: AuditKeyCommand) -> Result<Vec<AuditKeyEvent>, Self::Error> {
        if self.exists() {
            return Err(AuditKeyError::AlreadyActive);
        }
        let AuditKeyCommand::Activate { name, verifier_key } = command;
        Ok(vec![AuditKeyEvent::AuditKeyActivated {
            name,
            verifier_key,
        }])
    }

    fn apply(&mut self, event: AuditKeyEvent) {
        let AuditKeyEvent::AuditKeyActivated { name, verifier_key } = event;
        *self = AuditKey { name, verifier_key };
    }
}
