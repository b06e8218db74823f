//! The User aggregate: credentials, home, groups, policies, enabled state.

use serde::{Deserialize, Serialize};

use crate::access::AccessRules;
use crate::aggregate::AggregateRoot;
use crate::mount::{FolderError, VirtualFolder, check_folders};
use crate::policy::valid_name;
use crate::public_key::AuthorizedKey;

/// The User aggregate. The aggregate id is the user name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The login name; empty before creation.
    pub username: String,
    /// A PHC-format password hash, never the password.
    pub password_hash: Option<String>,
    /// Keys the user may log in with.
    pub public_keys: Vec<AuthorizedKey>,
    /// The root of the user's namespace on the storage backend.
    pub home: String,
    /// Group names the user belongs to.
    pub groups: Vec<String>,
    /// Policy names attached directly to the user.
    pub policies: Vec<String>,
    /// Whether logins are allowed.
    pub enabled: bool,
    /// Whether the user was deleted.
    pub deleted: bool,
    /// Whether FTP logins and transfers must be protected by TLS (FTPS):
    /// a plain FTP login is refused, and data connections need `PROT P`.
    #[serde(default)]
    pub ftp_require_tls: bool,
    /// Personal details, each sealed by the application with a key of the
    /// user (the domain never sees them in clear).
    #[serde(default)]
    pub profile: UserProfile,
    /// Whether the user's personal data was erased (its keys destroyed).
    #[serde(default)]
    pub erased: bool,
    /// Mounts shown in the user's namespace.
    #[serde(default)]
    pub folders: Vec<VirtualFolder>,
    /// The conditions of the user's logins.
    #[serde(default)]
    pub access: AccessRules,
    /// For a user provisioned from a directory (LDAP, Active Directory),
    /// the entry's distinguished name: the directory checks their
    /// password and says their groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_dn: Option<String>,
    /// The user's time-based one-time password second factor, once
    /// enrolled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Totp>,
}

/// A TOTP second factor (RFC 6238).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totp {
    /// The shared secret, sealed by the application (never in clear here).
    pub secret: String,
    /// Whether a code proved the enrolment: only then is it required.
    pub confirmed: bool,
    /// Hashes of the recovery codes not used yet.
    pub recovery_codes: Vec<String>,
}

/// A user's personal details, as sealed values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    /// The person's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The person's email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Commands on a user.
#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// Creates the user.
    Create {
        /// Login name.
        username: String,
        /// Password hash (already hashed by the identity adapter).
        password_hash: Option<String>,
        /// Public keys.
        public_keys: Vec<AuthorizedKey>,
        /// Storage root.
        home: String,
        /// Groups.
        groups: Vec<String>,
        /// Directly attached policies.
        policies: Vec<String>,
        /// Whether FTP needs TLS.
        ftp_require_tls: bool,
        /// Personal details (sealed).
        profile: UserProfile,
        /// Mounts shown in the namespace.
        folders: Vec<VirtualFolder>,
    },
    /// Sets a new password hash.
    ChangePassword {
        /// The new hash.
        password_hash: String,
    },
    /// Replaces the public keys.
    SetPublicKeys {
        /// The new keys.
        public_keys: Vec<AuthorizedKey>,
    },
    /// Replaces the group memberships.
    SetGroups {
        /// The new groups.
        groups: Vec<String>,
    },
    /// Replaces the directly attached policies.
    SetPolicies {
        /// The new policies.
        policies: Vec<String>,
    },
    /// Allows logins again.
    Enable,
    /// Refuses logins from now on.
    Disable,
    /// Deletes the user (the name may be created again later).
    Delete,
    /// Records a GDPR erasure: the application destroyed the keys that
    /// sealed the user's personal data. Deletes the user if it exists.
    Erase {
        /// The ids of the destroyed keys.
        key_ids: Vec<String>,
    },
    /// Several changes committed together (absent fields stay); an
    /// enabled state equal to the current one is no change.
    Update(UserUpdate),
    /// Creates a user on their first login through a directory.
    Provision {
        /// Login name.
        username: String,
        /// The directory entry.
        dn: String,
        /// Storage root.
        home: String,
        /// Groups, as the directory maps them.
        groups: Vec<String>,
        /// Directly attached policies.
        policies: Vec<String>,
    },
    /// Enrols a TOTP second factor, unconfirmed until `ConfirmTotp`;
    /// replaces an unconfirmed one.
    EnrollTotp {
        /// The sealed secret.
        secret: String,
        /// Hashes of the recovery codes.
        recovery_codes: Vec<String>,
    },
    /// A code proved the enrolment: from now on logins need one.
    ConfirmTotp,
    /// Removes the second factor.
    DisableTotp,
    /// A recovery code replaced a TOTP code at a login; it is spent.
    UseRecoveryCode {
        /// The code's hash.
        hash: String,
    },
}

/// The changes of one `UserCommand::Update`.
#[derive(Debug, Clone, Default, PartialEq)]
#[allow(missing_docs)]
pub struct UserUpdate {
    pub password_hash: Option<String>,
    pub public_keys: Option<Vec<AuthorizedKey>>,
    pub groups: Option<Vec<String>>,
    pub policies: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub ftp_require_tls: Option<bool>,
    pub profile: Option<UserProfile>,
    pub folders: Option<Vec<VirtualFolder>>,
    pub access: Option<AccessRules>,
}

/// Events of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum UserEvent {
    UserCreated {
        username: String,
        password_hash: Option<String>,
        public_keys: Vec<AuthorizedKey>,
        home: String,
        groups: Vec<String>,
        policies: Vec<String>,
        #[serde(default)]
        ftp_require_tls: bool,
        #[serde(default, skip_serializing_if = "is_empty")]
        profile: UserProfile,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        folders: Vec<VirtualFolder>,
    },
    UserPasswordChanged {
        password_hash: String,
    },
    UserPublicKeysChanged {
        public_keys: Vec<AuthorizedKey>,
    },
    UserGroupsChanged {
        groups: Vec<String>,
    },
    UserPoliciesChanged {
        policies: Vec<String>,
    },
    UserEnabled {},
    UserDisabled {},
    UserDeleted {},
    UserFtpSecurityChanged {
        require_tls: bool,
    },
    UserProfileChanged {
        profile: UserProfile,
    },
    UserErased {
        key_ids: Vec<String>,
    },
    UserFoldersChanged {
        folders: Vec<VirtualFolder>,
    },
    UserAccessChanged {
        access: AccessRules,
    },
    /// Created on a first login through a directory.
    UserProvisioned {
        username: String,
        dn: String,
        home: String,
        groups: Vec<String>,
        policies: Vec<String>,
    },
    /// `secret` is sealed; `recovery_codes` are hashes.
    UserTotpEnrolled {
        secret: String,
        recovery_codes: Vec<String>,
    },
    UserTotpConfirmed {},
    UserTotpDisabled {},
    /// `hash` is the spent recovery code's hash.
    UserRecoveryCodeUsed {
        hash: String,
    },
}
crate::domain_event!(UserEvent, "1", {
    UserCreated, UserPasswordChanged, UserPublicKeysChanged, UserGroupsChanged,
    UserPoliciesChanged, UserEnabled, UserDisabled, UserDeleted, UserFtpSecurityChanged,
    UserProfileChanged, UserErased, UserFoldersChanged, UserAccessChanged,
    UserProvisioned, UserTotpEnrolled, UserTotpConfirmed, UserTotpDisabled,
    UserRecoveryCodeUsed,
});

fn is_empty(profile: &UserProfile) -> bool {
    profile == &UserProfile::default()
}

/// Why a user command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// A user with this name exists.
    #[error("user already exists")]
    AlreadyExists,
    /// No such user (or it was deleted).
    #[error("user does not exist")]
    NotFound,
    /// A user name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid user name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A user needs a password or at least one public key.
    #[error("a user needs a password or a public key")]
    NoCredentials,
    /// A user needs a home.
    #[error("a user needs a home directory")]
    NoHome,
    /// The user is already in the requested state.
    #[error("user is already {state}")]
    Unchanged {
        /// `enabled` or `disabled`.
        state: &'static str,
    },
    /// The virtual folders are refused.
    #[error(transparent)]
    Folders(#[from] FolderError),
    /// The access conditions are malformed.
    #[error("{0}")]
    Access(String),
    /// The second factor is not in a state the command needs.
    #[error("{0}")]
    Totp(&'static str),
}
crate::refusal!(UserError, { AlreadyExists => AlreadyExists, NotFound => NotFound, InvalidName => Invalid, NoCredentials => Invalid, NoHome => Invalid, Unchanged => Conflict, Folders => Invalid, Access => Invalid, Totp => Conflict });

impl User {
    /// Whether the user exists (created and not deleted).
    pub fn exists(&self) -> bool {
        !self.username.is_empty() && !self.deleted
    }

    /// Whether a confirmed TOTP second factor guards the user's logins.
    pub fn has_totp(&self) -> bool {
        self.totp.as_ref().is_some_and(|t| t.confirmed)
    }
}

impl User {
    fn decide_update(&self, update: UserUpdate) -> Result<Vec<UserEvent>, UserError> {
        let has_password = update.password_hash.is_some() || self.password_hash.is_some();
        if update
            .public_keys
            .as_ref()
            .is_some_and(|keys| keys.is_empty() && !has_password)
        {
            return Err(UserError::NoCredentials);
        }
        let mut events = Vec::new();
        if let Some(password_hash) = update.password_hash {
            events.push(UserEvent::UserPasswordChanged { password_hash });
        }
        if let Some(public_keys) = update.public_keys {
            events.push(UserEvent::UserPublicKeysChanged { public_keys });
        }
        if let Some(groups) = update.groups {
            events.push(UserEvent::UserGroupsChanged { groups });
        }
        if let Some(policies) = update.policies {
            events.push(UserEvent::UserPoliciesChanged { policies });
        }
        match update.enabled {
            Some(true) if !self.enabled => events.push(UserEvent::UserEnabled {}),
            Some(false) if self.enabled => events.push(UserEvent::UserDisabled {}),
            _ => {}
        }
        if let Some(require_tls) = update.ftp_require_tls
            && require_tls != self.ftp_require_tls
        {
            events.push(UserEvent::UserFtpSecurityChanged { require_tls });
        }
        if let Some(profile) = update.profile
            && profile != self.profile
        {
            events.push(UserEvent::UserProfileChanged { profile });
        }
        if let Some(folders) = update.folders
            && folders != self.folders
        {
            check_folders(&folders)?;
            events.push(UserEvent::UserFoldersChanged { folders });
        }
        if let Some(access) = update.access
            && access != self.access
        {
            access.validate().map_err(UserError::Access)?;
            events.push(UserEvent::UserAccessChanged { access });
        }
        Ok(events)
    }
}

impl User {
    /// An erasure applies to any user ever created, deleted or not, once.
    fn decide_erase(&self, key_ids: Vec<String>) -> Result<Vec<UserEvent>, UserError> {
        if self.username.is_empty() {
            return Err(UserError::NotFound);
        }
        if self.erased {
            return Err(UserError::Unchanged { state: "erased" });
        }
        let mut events = Vec::new();
        if !self.deleted {
            events.push(UserEvent::UserDeleted {});
        }
        events.push(UserEvent::UserErased { key_ids });
        Ok(events)
    }
}

impl AggregateRoot for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = UserError;

    fn decide(&self, command: UserCommand) -> Result<Vec<UserEvent>, UserError> {
        if let UserCommand::Erase { key_ids } = command {
            return self.decide_erase(key_ids);
        }
        if let UserCommand::Provision {
            username,
            dn,
            home,
            groups,
            policies,
        } = command
        {
            if self.exists() {
                return Err(UserError::AlreadyExists);
            }
            if !valid_name(&username) {
                return Err(UserError::InvalidName { name: username });
            }
            if home.trim().is_empty() {
                return Err(UserError::NoHome);
            }
            return Ok(vec![UserEvent::UserProvisioned {
                username,
                dn,
                home,
                groups,
                policies,
            }]);
        }
        if !matches!(command, UserCommand::Create { .. }) && !self.exists() {
            return Err(UserError::NotFound);
        }
        if let UserCommand::Update(update) = command {
            return self.decide_update(update);
        }
        let event = match command {
            UserCommand::Create {
                username,
                password_hash,
                public_keys,
                home,
                groups,
                policies,
                ftp_require_tls,
                profile,
                folders,
            } => {
                if self.exists() {
                    return Err(UserError::AlreadyExists);
                }
                if !valid_name(&username) {
                    return Err(UserError::InvalidName { name: username });
                }
                if password_hash.is_none() && public_keys.is_empty() {
                    return Err(UserError::NoCredentials);
                }
                if home.trim().is_empty() {
                    return Err(UserError::NoHome);
                }
                check_folders(&folders)?;
                UserEvent::UserCreated {
                    username,
                    password_hash,
                    public_keys,
                    home,
                    groups,
                    policies,
                    ftp_require_tls,
                    profile,
                    folders,
                }
            }
            UserCommand::ChangePassword { password_hash } => {
                UserEvent::UserPasswordChanged { password_hash }
            }
            UserCommand::SetPublicKeys { public_keys } => {
                if public_keys.is_empty() && self.password_hash.is_none() {
                    return Err(UserError::NoCredentials);
                }
                UserEvent::UserPublicKeysChanged { public_keys }
            }
            UserCommand::SetGroups { groups } => UserEvent::UserGroupsChanged { groups },
            UserCommand::SetPolicies { policies } => UserEvent::UserPoliciesChanged { policies },
            UserCommand::Enable if self.enabled => {
                return Err(UserError::Unchanged { state: "enabled" });
            }
            UserCommand::Enable => UserEvent::UserEnabled {},
            UserCommand::Disable if !self.enabled => {
                return Err(UserError::Unchanged { state: "disabled" });
            }
            UserCommand::Disable => UserEvent::UserDisabled {},
            UserCommand::Delete => UserEvent::UserDeleted {},
            UserCommand::EnrollTotp { .. } if self.has_totp() => {
                return Err(UserError::Totp(
                    "a second factor is enrolled: disable it first",
                ));
            }
            UserCommand::EnrollTotp {
                secret,
                recovery_codes,
            } => UserEvent::UserTotpEnrolled {
                secret,
                recovery_codes,
            },
            UserCommand::ConfirmTotp => match &self.totp {
                Some(totp) if !totp.confirmed => UserEvent::UserTotpConfirmed {},
                Some(_) => return Err(UserError::Totp("the second factor is confirmed already")),
                None => return Err(UserError::Totp("no second factor is enrolled")),
            },
            UserCommand::DisableTotp if self.totp.is_none() => {
                return Err(UserError::Totp("no second factor is enrolled"));
            }
            UserCommand::DisableTotp => UserEvent::UserTotpDisabled {},
            UserCommand::UseRecoveryCode { hash } => {
                let unused = self
                    .totp
                    .as_ref()
                    .is_some_and(|t| t.recovery_codes.contains(&hash));
                if !unused {
                    return Err(UserError::Totp("no such recovery code"));
                }
                UserEvent::UserRecoveryCodeUsed { hash }
            }
            UserCommand::Update(_) | UserCommand::Erase { .. } | UserCommand::Provision { .. } => {
                unreachable!("handled above")
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: UserEvent) {
        match event {
            UserEvent::UserCreated {
                username,
                password_hash,
                public_keys,
                home,
                groups,
                policies,
                ftp_require_tls,
                profile,
                folders,
            } => {
                *self = User {
                    username,
                    password_hash,
                    public_keys,
                    home,
                    groups,
                    policies,
                    enabled: true,
                    deleted: false,
                    ftp_require_tls,
                    profile,
                    erased: false,
                    folders,
                    access: AccessRules::default(),
                    directory_dn: None,
                    totp: None,
                };
            }
            UserEvent::UserProvisioned {
                username,
                dn,
                home,
                groups,
                policies,
            } => {
                *self = User {
                    username,
                    home,
                    groups,
                    policies,
                    enabled: true,
                    directory_dn: Some(dn),
                    ..User::default()
                };
            }
            UserEvent::UserTotpEnrolled {
                secret,
                recovery_codes,
            } => {
                self.totp = Some(Totp {
                    secret,
                    confirmed: false,
                    recovery_codes,
                })
            }
            UserEvent::UserTotpConfirmed {} => {
                if let Some(totp) = &mut self.totp {
                    totp.confirmed = true;
                }
            }
            UserEvent::UserTotpDisabled {} => self.totp = None,
            UserEvent::UserRecoveryCodeUsed { hash } => {
                if let Some(totp) = &mut self.totp {
                    totp.recovery_codes.retain(|h| *h != hash);
                }
            }
            UserEvent::UserPasswordChanged { password_hash } => {
                self.password_hash = Some(password_hash)
            }
            UserEvent::UserPublicKeysChanged { public_keys } => self.public_keys = public_keys,
            UserEvent::UserGroupsChanged { groups } => self.groups = groups,
            UserEvent::UserPoliciesChanged { policies } => self.policies = policies,
            UserEvent::UserEnabled {} => self.enabled = true,
            UserEvent::UserDisabled {} => self.enabled = false,
            UserEvent::UserDeleted {} => self.deleted = true,
            UserEvent::UserFtpSecurityChanged { require_tls } => self.ftp_require_tls = require_tls,
            UserEvent::UserProfileChanged { profile } => self.profile = profile,
            UserEvent::UserFoldersChanged { folders } => self.folders = folders,
            UserEvent::UserAccessChanged { access } => self.access = access,
            UserEvent::UserErased { .. } => {
                self.erased = true;
                self.profile = UserProfile::default();
            }
        }
    }
}

#[cfg(test)]
mod tests;
