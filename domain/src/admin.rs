//! The Admin aggregate: administrators of the gateway and their roles.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;
use crate::policy::valid_name;

/// What an administrator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read the audit trail and the read models, change nothing.
    Auditor,
}

/// The Admin aggregate. The aggregate id is the administrator's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Admin {
    /// The login name; empty before creation.
    pub username: String,
    /// A PHC-format password hash.
    pub password_hash: String,
    /// The role, once created.
    pub role: Option<Role>,
}

/// Commands on an administrator.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum AdminCommand {
    Create {
        username: String,
        password_hash: String,
        role: Role,
    },
    ChangePassword {
        password_hash: String,
    },
}

/// Events of an administrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum AdminEvent {
    AdminCreated {
        username: String,
        password_hash: String,
        role: Role,
    },
    AdminPasswordChanged {
        password_hash: String,
    },
}
crate::domain_event!(AdminEvent, "1", { AdminCreated, AdminPasswordChanged });

/// Why an administrator command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The administrator exists.
    #[error("administrator already exists")]
    AlreadyExists,
    /// No such administrator.
    #[error("administrator does not exist")]
    NotFound,
    /// A name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid administrator name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
}

impl AggregateRoot for Admin {
    const TYPE: &'static str = "admin";
    type Command = AdminCommand;
    type Event = AdminEvent;
    type Error = AdminError;

    fn decide(&self, command: AdminCommand) -> Result<Vec<AdminEvent>, AdminError> {
        match command {
            AdminCommand::Create { .. } if self.role.is_some() => Err(AdminError::AlreadyExists),
            AdminCommand::Create { username, .. } if !valid_name(&username) => {
                Err(AdminError::InvalidName { name: username })
            }
            AdminCommand::Create {
                username,
                password_hash,
                role,
            } => Ok(vec![AdminEvent::AdminCreated {
                username,
                password_hash,
                role,
            }]),
            AdminCommand::ChangePassword { .. } if self.role.is_none() => Err(AdminError::NotFound),
            AdminCommand::ChangePassword { password_hash } => {
                Ok(vec![AdminEvent::AdminPasswordChanged { password_hash }])
            }
        }
    }

    fn apply(&mut self, event: AdminEvent) {
        match event {
            AdminEvent::AdminCreated {
                username,
                password_hash,
                role,
            } => {
                *self = Admin {
                    username,
                    password_hash,
                    role: Some(role),
                };
            }
            AdminEvent::AdminPasswordChanged { password_hash } => {
                self.password_hash = password_hash
            }
        }
    }
}

#[cfg(test)]
mod tests;
