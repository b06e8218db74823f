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

impl Role {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    /// Parses `admin` or `auditor`.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "auditor" => Some(Role::Auditor),
            _ => None,
        }
    }

    /// Whether this role may change state (not only read).
    pub fn may_write(self) -> bool {
        self == Role::Admin
    }
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
    /// Whether logins and tokens are refused.
    #[serde(default)]
    pub disabled: bool,
    /// Whether the administrator was deleted.
    #[serde(default)]
    pub deleted: bool,
}

impl Admin {
    /// Whether the administrator exists (created and not deleted).
    pub fn exists(&self) -> bool {
        self.role.is_some() && !self.deleted
    }

    /// The role of an administrator who may act now: existing and enabled.
    pub fn active_role(&self) -> Option<Role> {
        self.role.filter(|_| self.exists() && !self.disabled)
    }
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
    ChangeRole {
        role: Role,
    },
    Enable,
    Disable,
    Delete,
    /// Several changes committed together; a value equal to the current
    /// one is no change.
    Update {
        password_hash: Option<String>,
        role: Option<Role>,
        enabled: Option<bool>,
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
    AdminRoleChanged {
        role: Role,
    },
    AdminEnabled {},
    AdminDisabled {},
    AdminDeleted {},
}
crate::domain_event!(AdminEvent, "1", {
    AdminCreated, AdminPasswordChanged, AdminRoleChanged, AdminEnabled, AdminDisabled,
    AdminDeleted,
});

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
    /// The administrator is already in the requested state.
    #[error("administrator is already {state}")]
    Unchanged {
        /// `enabled`, `disabled` or the role.
        state: &'static str,
    },
}
crate::refusal!(AdminError, { AlreadyExists => AlreadyExists, NotFound => NotFound, InvalidName => Invalid, Unchanged => Conflict });

impl AggregateRoot for Admin {
    const TYPE: &'static str = "admin";
    type Command = AdminCommand;
    type Event = AdminEvent;
    type Error = AdminError;

    fn decide(&self, command: AdminCommand) -> Result<Vec<AdminEvent>, AdminError> {
        if let AdminCommand::Create {
            username,
            password_hash,
            role,
        } = command
        {
            if self.exists() {
                return Err(AdminError::AlreadyExists);
            }
            if !valid_name(&username) {
                return Err(AdminError::InvalidName { name: username });
            }
            return Ok(vec![AdminEvent::AdminCreated {
                username,
                password_hash,
                role,
            }]);
        }
        if !self.exists() {
            return Err(AdminError::NotFound);
        }
        if let AdminCommand::Update {
            password_hash,
            role,
            enabled,
        } = command
        {
            let mut events = Vec::new();
            if let Some(password_hash) = password_hash {
                events.push(AdminEvent::AdminPasswordChanged { password_hash });
            }
            if let Some(role) = role.filter(|r| self.role != Some(*r)) {
                events.push(AdminEvent::AdminRoleChanged { role });
            }
            match enabled {
                Some(true) if self.disabled => events.push(AdminEvent::AdminEnabled {}),
                Some(false) if !self.disabled => events.push(AdminEvent::AdminDisabled {}),
                _ => {}
            }
            return Ok(events);
        }
        let event = match command {
            AdminCommand::Create { .. } | AdminCommand::Update { .. } => {
                unreachable!("handled above")
            }
            AdminCommand::ChangePassword { password_hash } => {
                AdminEvent::AdminPasswordChanged { password_hash }
            }
            AdminCommand::ChangeRole { role } if self.role == Some(role) => {
                return Err(AdminError::Unchanged {
                    state: role.as_str(),
                });
            }
            AdminCommand::ChangeRole { role } => AdminEvent::AdminRoleChanged { role },
            AdminCommand::Enable if !self.disabled => {
                return Err(AdminError::Unchanged { state: "enabled" });
            }
            AdminCommand::Enable => AdminEvent::AdminEnabled {},
            AdminCommand::Disable if self.disabled => {
                return Err(AdminError::Unchanged { state: "disabled" });
            }
            AdminCommand::Disable => AdminEvent::AdminDisabled {},
            AdminCommand::Delete => AdminEvent::AdminDeleted {},
        };
        Ok(vec![event])
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
                    disabled: false,
                    deleted: false,
                };
            }
            AdminEvent::AdminPasswordChanged { password_hash } => {
                self.password_hash = password_hash
            }
            AdminEvent::AdminRoleChanged { role } => self.role = Some(role),
            AdminEvent::AdminEnabled {} => self.disabled = false,
            AdminEvent::AdminDisabled {} => self.disabled = true,
            AdminEvent::AdminDeleted {} => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests;
