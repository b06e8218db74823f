//! The AuditKey aggregate: a key that signs the audit log's checkpoints.
//! Activating a key records its public half in the log itself, so a
//! verifier learns which keys to trust from the records it checks (and an
//! exported bundle carries them). A rotation retires the previous key: a
//! checkpoint it signs afterwards is not trusted. One aggregate per key, by
//! key id.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;

/// The AuditKey aggregate. The aggregate id is the key id (8 hex digits).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditKey {
    /// The key's name (the log's origin).
    pub name: String,
    /// The verifier key string (`NAME+KEYID+KEY`).
    pub verifier_key: String,
    /// Whether a newer key replaced it.
    #[serde(default)]
    pub retired: bool,
}

/// Commands on an audit key.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum AuditKeyCommand {
    /// Starts signing checkpoints with this key.
    Activate { name: String, verifier_key: String },
    /// Stops trusting this key for new checkpoints (a newer key replaced it).
    Retire { replaced_by: String },
}

/// Events of an audit key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AuditKeyEvent {
    AuditKeyActivated { name: String, verifier_key: String },
    AuditKeyRetired { replaced_by: String },
}
crate::domain_event!(AuditKeyEvent, "1", { AuditKeyActivated, AuditKeyRetired });

/// Why an audit key command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    /// The key was activated before.
    #[error("audit key already active")]
    AlreadyActive,
    /// The key was never activated.
    #[error("audit key was never activated")]
    NotActive,
    /// The key was retired before.
    #[error("audit key already retired")]
    AlreadyRetired,
}
crate::refusal!(AuditKeyError, { AlreadyActive => AlreadyExists, NotActive => NotFound, AlreadyRetired => Conflict });

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
        match command {
            AuditKeyCommand::Activate { .. } if self.exists() => Err(AuditKeyError::AlreadyActive),
            AuditKeyCommand::Activate { name, verifier_key } => {
                Ok(vec![AuditKeyEvent::AuditKeyActivated {
                    name,
                    verifier_key,
                }])
            }
            AuditKeyCommand::Retire { .. } if !self.exists() => Err(AuditKeyError::NotActive),
            AuditKeyCommand::Retire { .. } if self.retired => Err(AuditKeyError::AlreadyRetired),
            AuditKeyCommand::Retire { replaced_by } => {
                Ok(vec![AuditKeyEvent::AuditKeyRetired { replaced_by }])
            }
        }
    }

    fn apply(&mut self, event: AuditKeyEvent) {
        match event {
            AuditKeyEvent::AuditKeyActivated { name, verifier_key } => {
                *self = AuditKey {
                    name,
                    verifier_key,
                    retired: false,
                };
            }
            AuditKeyEvent::AuditKeyRetired { .. } => self.retired = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::aggregate::check;

    fn activated() -> AuditKeyEvent {
        AuditKeyEvent::AuditKeyActivated {
            name: "tollgate.local/audit".into(),
            verifier_key: "tollgate.local/audit+00000000+AQ".into(),
        }
    }

    #[test]
    fn a_key_is_activated_once_and_retired_once() {
        check::<AuditKey>(
            vec![activated()],
            AuditKeyCommand::Activate {
                name: "x".into(),
                verifier_key: "y".into(),
            },
            expect![[r#"
                error: audit key already active
            "#]],
        );
        check::<AuditKey>(
            vec![activated()],
            AuditKeyCommand::Retire {
                replaced_by: "11111111".into(),
            },
            expect![[r#"
                AuditKeyRetired { replaced_by: "11111111" }
            "#]],
        );
        check::<AuditKey>(
            vec![
                activated(),
                AuditKeyEvent::AuditKeyRetired {
                    replaced_by: "11111111".into(),
                },
            ],
            AuditKeyCommand::Retire {
                replaced_by: "22222222".into(),
            },
            expect![[r#"
                error: audit key already retired
            "#]],
        );
        check::<AuditKey>(
            vec![],
            AuditKeyCommand::Retire {
                replaced_by: "11111111".into(),
            },
            expect![[r#"
                error: audit key was never activated
            "#]],
        );
    }
}
