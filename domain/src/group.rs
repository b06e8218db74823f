//! The Group aggregate: shared policies for many users.

use serde::{Deserialize, Serialize};

use crate::access::AccessRules;
use crate::aggregate::AggregateRoot;
use crate::mount::{FolderError, VirtualFolder, check_folders};
use crate::policy::valid_name;

/// The Group aggregate. The aggregate id is the group name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    /// The name; empty before creation.
    pub name: String,
    /// Policies every member gets.
    pub policies: Vec<String>,
    /// Whether the group was deleted.
    pub deleted: bool,
    /// Mounts shown in every member's namespace.
    #[serde(default)]
    pub folders: Vec<VirtualFolder>,
    /// The conditions of members' logins (where a member sets none).
    #[serde(default)]
    pub access: AccessRules,
}

/// Commands on a group.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupCommand {
    /// Creates the group.
    Create {
        /// Its name.
        name: String,
        /// Its policies.
        policies: Vec<String>,
        /// Mounts shown in every member's namespace.
        folders: Vec<VirtualFolder>,
    },
    /// Replaces the policies.
    SetPolicies {
        /// The new policies.
        policies: Vec<String>,
    },
    /// Replaces the virtual folders.
    SetFolders {
        /// The new folders.
        folders: Vec<VirtualFolder>,
    },
    /// Replaces the access conditions.
    SetAccess {
        /// The new conditions.
        access: AccessRules,
    },
    /// Deletes the group.
    Delete,
}

/// Events of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum GroupEvent {
    GroupCreated {
        name: String,
        policies: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        folders: Vec<VirtualFolder>,
    },
    GroupPoliciesChanged {
        policies: Vec<String>,
    },
    GroupDeleted {},
    GroupFoldersChanged {
        folders: Vec<VirtualFolder>,
    },
    GroupAccessChanged {
        access: AccessRules,
    },
}
crate::domain_event!(GroupEvent, "1", { GroupCreated, GroupPoliciesChanged, GroupDeleted, GroupFoldersChanged, GroupAccessChanged });

/// Why a group command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The group exists.
    #[error("group already exists")]
    AlreadyExists,
    /// No such group.
    #[error("group does not exist")]
    NotFound,
    /// A group name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid group name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// The virtual folders are refused.
    #[error(transparent)]
    Folders(#[from] FolderError),
    /// The access conditions are malformed.
    #[error("{0}")]
    Access(String),
}
crate::refusal!(GroupError, { AlreadyExists => AlreadyExists, NotFound => NotFound, InvalidName => Invalid, Folders => Invalid, Access => Invalid });

impl Group {
    /// Whether the group exists (created and not deleted).
    pub fn exists(&self) -> bool {
        !self.name.is_empty() && !self.deleted
    }
}

impl AggregateRoot for Group {
    const TYPE: &'static str = "group";
    type Command = GroupCommand;
    type Event = GroupEvent;
    type Error = GroupError;

    fn decide(&self, command: GroupCommand) -> Result<Vec<GroupEvent>, GroupError> {
        let exists = self.exists();
        match command {
            GroupCommand::Create {
                name,
                policies,
                folders,
            } => {
                if exists {
                    return Err(GroupError::AlreadyExists);
                }
                if !valid_name(&name) {
                    return Err(GroupError::InvalidName { name });
                }
                check_folders(&folders)?;
                Ok(vec![GroupEvent::GroupCreated {
                    name,
                    policies,
                    folders,
                }])
            }
            GroupCommand::SetPolicies { .. }
            | GroupCommand::SetFolders { .. }
            | GroupCommand::SetAccess { .. }
            | GroupCommand::Delete
                if !exists =>
            {
                Err(GroupError::NotFound)
            }
            GroupCommand::SetPolicies { policies } => {
                Ok(vec![GroupEvent::GroupPoliciesChanged { policies }])
            }
            GroupCommand::SetFolders { folders } if folders == self.folders => Ok(vec![]),
            GroupCommand::SetFolders { folders } => {
                check_folders(&folders)?;
                Ok(vec![GroupEvent::GroupFoldersChanged { folders }])
            }
            GroupCommand::SetAccess { access } if access == self.access => Ok(vec![]),
            GroupCommand::SetAccess { access } => {
                access.validate().map_err(GroupError::Access)?;
                Ok(vec![GroupEvent::GroupAccessChanged { access }])
            }
            GroupCommand::Delete => Ok(vec![GroupEvent::GroupDeleted {}]),
        }
    }

    fn apply(&mut self, event: GroupEvent) {
        match event {
            GroupEvent::GroupCreated {
                name,
                policies,
                folders,
            } => {
                *self = Group {
                    name,
                    policies,
                    deleted: false,
                    folders,
                    access: AccessRules::default(),
                }
            }
            GroupEvent::GroupPoliciesChanged { policies } => self.policies = policies,
            GroupEvent::GroupFoldersChanged { folders } => self.folders = folders,
            GroupEvent::GroupAccessChanged { access } => self.access = access,
            GroupEvent::GroupDeleted {} => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests;
