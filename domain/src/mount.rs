//! The Mount aggregate: a storage backend and its options, which later
//! appears in users' namespaces as a virtual folder. Secrets (keys,
//! passwords) are held only sealed: the aggregate and its events carry the
//! ciphertext the secret box produced, never the clear text.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;
use crate::policy::valid_name;

/// A secret as the secret box sealed it (opaque to the domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedSecret(pub String);

/// Where a mount's files live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum StorageSpec {
    /// A directory of the gateway's host.
    Local { root: String },
    /// An S3 (or S3-compatible) bucket.
    S3 {
        bucket: String,
        region: String,
        endpoint: Option<String>,
        prefix: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<SealedSecret>,
    },
    /// A Google Cloud Storage bucket.
    Gcs {
        bucket: String,
        prefix: Option<String>,
        credentials_json: Option<SealedSecret>,
    },
    /// An Azure Blob Storage container.
    Azure {
        account: String,
        container: String,
        prefix: Option<String>,
        access_key: Option<SealedSecret>,
    },
    /// A directory on a remote SFTP server.
    Sftp {
        host: String,
        port: u16,
        username: String,
        root: Option<String>,
        password: Option<SealedSecret>,
        private_key: Option<SealedSecret>,
    },
}

/// Why a storage specification is refused.
fn check(spec: &StorageSpec) -> Result<(), MountError> {
    let missing = |field: &'static str, value: &str| {
        if value.trim().is_empty() {
            Err(MountError::MissingField { field })
        } else {
            Ok(())
        }
    };
    match spec {
        StorageSpec::Local { root } => {
            missing("root", root)?;
            if !root.starts_with('/') {
                return Err(MountError::RelativeRoot);
            }
            Ok(())
        }
        StorageSpec::S3 { bucket, region, .. } => {
            missing("bucket", bucket)?;
            missing("region", region)
        }
        StorageSpec::Gcs { bucket, .. } => missing("bucket", bucket),
        StorageSpec::Azure {
            account, container, ..
        } => {
            missing("account", account)?;
            missing("container", container)
        }
        StorageSpec::Sftp {
            host,
            port,
            username,
            ..
        } => {
            missing("host", host)?;
            missing("username", username)?;
            if *port == 0 {
                return Err(MountError::MissingField { field: "port" });
            }
            Ok(())
        }
    }
}

/// The Mount aggregate. The aggregate id is the mount's name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// The name; empty before creation.
    pub name: String,
    /// A note for administrators.
    pub description: String,
    /// The backend, once created.
    pub storage: Option<StorageSpec>,
    /// Whether the mount was deleted.
    pub deleted: bool,
}

impl Mount {
    /// Whether the mount exists (created and not deleted).
    pub fn exists(&self) -> bool {
        self.storage.is_some() && !self.deleted
    }
}

/// Commands on a mount.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MountCommand {
    Create {
        name: String,
        description: String,
        storage: StorageSpec,
    },
    Change {
        description: Option<String>,
        storage: Option<StorageSpec>,
    },
    Delete,
}

/// Events of a mount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum MountEvent {
    MountCreated {
        name: String,
        description: String,
        storage: StorageSpec,
    },
    MountDescriptionChanged {
        description: String,
    },
    MountStorageChanged {
        storage: StorageSpec,
    },
    MountDeleted {},
}
crate::domain_event!(MountEvent, "1", {
    MountCreated, MountDescriptionChanged, MountStorageChanged, MountDeleted,
});

/// Why a mount command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// A mount with this name exists.
    #[error("mount already exists")]
    AlreadyExists,
    /// No such mount.
    #[error("mount does not exist")]
    NotFound,
    /// A name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid mount name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A required storage option is empty.
    #[error("the storage option {field} is required")]
    MissingField {
        /// The option.
        field: &'static str,
    },
    /// A local root must be an absolute path.
    #[error("a local storage root must be an absolute path")]
    RelativeRoot,
}
crate::refusal!(MountError, {
    AlreadyExists => AlreadyExists, NotFound => NotFound, InvalidName => Invalid,
    MissingField => Invalid, RelativeRoot => Invalid,
});

impl AggregateRoot for Mount {
    const TYPE: &'static str = "mount";
    type Command = MountCommand;
    type Event = MountEvent;
    type Error = MountError;

    fn decide(&self, command: MountCommand) -> Result<Vec<MountEvent>, MountError> {
        match command {
            MountCommand::Create { .. } if self.exists() => Err(MountError::AlreadyExists),
            MountCommand::Create { name, .. } if !valid_name(&name) => {
                Err(MountError::InvalidName { name })
            }
            MountCommand::Create {
                name,
                description,
                storage,
            } => {
                check(&storage)?;
                Ok(vec![MountEvent::MountCreated {
                    name,
                    description,
                    storage,
                }])
            }
            _ if !self.exists() => Err(MountError::NotFound),
            MountCommand::Change {
                description,
                storage,
            } => {
                let mut events = Vec::new();
                if let Some(description) = description.filter(|d| *d != self.description) {
                    events.push(MountEvent::MountDescriptionChanged { description });
                }
                if let Some(storage) = storage.filter(|s| Some(s) != self.storage.as_ref()) {
                    check(&storage)?;
                    events.push(MountEvent::MountStorageChanged { storage });
                }
                Ok(events)
            }
            MountCommand::Delete => Ok(vec![MountEvent::MountDeleted {}]),
        }
    }

    fn apply(&mut self, event: MountEvent) {
        match event {
            MountEvent::MountCreated {
                name,
                description,
                storage,
            } => {
                *self = Mount {
                    name,
                    description,
                    storage: Some(storage),
                    deleted: false,
                }
            }
            MountEvent::MountDescriptionChanged { description } => self.description = description,
            MountEvent::MountStorageChanged { storage } => self.storage = Some(storage),
            MountEvent::MountDeleted {} => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests;
