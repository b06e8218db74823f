//! The ApiKey aggregate: a long-lived credential for automation, acting as
//! one administrator with a role no wider than theirs.

use serde::{Deserialize, Serialize};

use crate::admin::Role;
use crate::aggregate::AggregateRoot;
use crate::policy::valid_name;

/// The ApiKey aggregate. The aggregate id is the key id (the public part of
/// the key); only the SHA-256 of the secret part is ever recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    /// A label chosen by the administrator; empty before creation.
    pub name: String,
    /// The administrator the key acts as.
    pub admin: String,
    /// The role the key grants (never more than the administrator's).
    pub role: Option<Role>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// RFC 3339 time after which the key is refused, if any.
    pub expires_at: Option<String>,
    /// Whether the key was revoked.
    pub revoked: bool,
}

impl ApiKey {
    /// Whether the key was created.
    pub fn exists(&self) -> bool {
        self.role.is_some()
    }
}

/// Commands on an API key.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum ApiKeyCommand {
    Create {
        name: String,
        admin: String,
        role: Role,
        secret_sha256: String,
        expires_at: Option<String>,
    },
    Revoke,
}

/// Events of an API key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ApiKeyEvent {
    ApiKeyCreated {
        name: String,
        admin: String,
        role: Role,
        secret_sha256: String,
        expires_at: Option<String>,
    },
    ApiKeyRevoked {},
}
crate::domain_event!(ApiKeyEvent, "1", { ApiKeyCreated, ApiKeyRevoked });

/// Why an API key command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyError {
    /// A key with this id exists.
    #[error("API key already exists")]
    AlreadyExists,
    /// No such key.
    #[error("API key does not exist")]
    NotFound,
    /// The key was revoked already.
    #[error("API key is already revoked")]
    AlreadyRevoked,
    /// A key name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid API key name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
}
crate::refusal!(ApiKeyError, { AlreadyExists => AlreadyExists, NotFound => NotFound, AlreadyRevoked => Conflict, InvalidName => Invalid });

impl AggregateRoot for ApiKey {
    const TYPE: &'static str = "api_key";
    type Command = ApiKeyCommand;
    type Event = ApiKeyEvent;
    type Error = ApiKeyError;

    fn decide(&self, command: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match command {
            ApiKeyCommand::Create { .. } if self.exists() => Err(ApiKeyError::AlreadyExists),
            ApiKeyCommand::Create { name, .. } if !valid_name(&name) => {
                Err(ApiKeyError::InvalidName { name })
            }
            ApiKeyCommand::Create {
                name,
                admin,
                role,
                secret_sha256,
                expires_at,
            } => Ok(vec![ApiKeyEvent::ApiKeyCreated {
                name,
                admin,
                role,
                secret_sha256,
                expires_at,
            }]),
            ApiKeyCommand::Revoke if !self.exists() => Err(ApiKeyError::NotFound),
            ApiKeyCommand::Revoke if self.revoked => Err(ApiKeyError::AlreadyRevoked),
            ApiKeyCommand::Revoke => Ok(vec![ApiKeyEvent::ApiKeyRevoked {}]),
        }
    }

    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::ApiKeyCreated {
                name,
                admin,
                role,
                secret_sha256,
                expires_at,
            } => {
                *self = ApiKey {
                    name,
                    admin,
                    role: Some(role),
                    secret_sha256,
                    expires_at,
                    revoked: false,
                }
            }
            ApiKeyEvent::ApiKeyRevoked {} => self.revoked = true,
        }
    }
}

#[cfg(test)]
mod tests;
