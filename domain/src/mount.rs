//! The Mount aggregate: a storage backend and its options, which later
//! appears in users' namespaces as a virtual folder. Secrets (keys,
//! passwords) are held only sealed: the aggregate and its events carry the
//! ciphertext the secret box produced, never the clear text.

use serde::{Deserialize, Serialize};

use crate::VirtualPath;
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
        /// A custom service address (an emulator or private endpoint).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// An Azure Blob Storage container.
    Azure {
        account: String,
        container: String,
        prefix: Option<String>,
        access_key: Option<SealedSecret>,
        /// A custom blob service address (Azurite or a private endpoint).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
    },
    /// A directory on a remote SFTP server.
    Sftp {
        host: String,
        port: u16,
        username: String,
        root: Option<String>,
        password: Option<SealedSecret>,
        private_key: Option<SealedSecret>,
        /// The pinned host key, `SHA256:...` as `ssh-keygen -l` prints it;
        /// a server presenting another key is refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_key_fingerprint: Option<String>,
    },
}

/// A mount shown in a namespace at a virtual path (a virtual folder).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualFolder {
    /// Where the mount appears; never the root.
    pub path: VirtualPath,
    /// The mount's name.
    pub mount: String,
}

/// Why a list of virtual folders is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FolderError {
    /// The root is the home; a folder needs a path below it.
    #[error("a virtual folder cannot be the root")]
    Root,
    /// Two folders at one path.
    #[error("two virtual folders at {path}")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A folder inside another one.
    #[error("virtual folder {inner} is inside virtual folder {outer}")]
    Nested {
        /// The enclosing folder.
        outer: String,
        /// The enclosed folder.
        inner: String,
    },
    /// Not a valid mount name.
    #[error("invalid mount name {name:?}")]
    InvalidMount {
        /// The refused name.
        name: String,
    },
}

/// Checks a namespace's virtual folders: below the root, valid mount
/// names, none at or inside another.
pub fn check_folders(folders: &[VirtualFolder]) -> Result<(), FolderError> {
    for (i, folder) in folders.iter().enumerate() {
        if folder.path.is_root() {
            return Err(FolderError::Root);
        }
        if !valid_name(&folder.mount) {
            return Err(FolderError::InvalidMount {
                name: folder.mount.clone(),
            });
        }
        for other in &folders[i + 1..] {
            if other.path == folder.path {
                return Err(FolderError::Duplicate {
                    path: folder.path.to_string(),
                });
            }
            let (outer, inner) = if other.path.starts_with(&folder.path) {
                (&folder.path, &other.path)
            } else if folder.path.starts_with(&other.path) {
                (&other.path, &folder.path)
            } else {
                continue;
            };
            return Err(FolderError::Nested {
                outer: outer.to_string(),
                inner: inner.to_string(),
            });
        }
    }
    Ok(())
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
            host_key_fingerprint,
            ..
        } => {
            missing("host", host)?;
            missing("username", username)?;
            missing(
                "host_key_fingerprint",
                host_key_fingerprint.as_deref().unwrap_or(""),
            )?;
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
    /// The key every file of the mount is encrypted with, sealed; `None`
    /// for a mount stored in clear. Fixed at creation.
    #[serde(default)]
    pub encryption_key: Option<SealedSecret>,
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
        encryption_key: Option<SealedSecret>,
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        encryption_key: Option<SealedSecret>,
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
                encryption_key,
            } => {
                check(&storage)?;
                Ok(vec![MountEvent::MountCreated {
                    name,
                    description,
                    storage,
                    encryption_key,
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
                encryption_key,
            } => {
                *self = Mount {
                    name,
                    description,
                    storage: Some(storage),
                    encryption_key,
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
