//! Administrative commands (users, groups, policies) and their read models.

use cqrs_es::persist::PersistedEventRepository;
use serde::{Deserialize, Serialize};
use tollgate_domain::group::{Group, GroupCommand};
use tollgate_domain::mount::{Mount, VirtualFolder};
use tollgate_domain::policy::{Policy, PolicyCommand, Rule};
use tollgate_domain::public_key::AuthorizedKey;
use tollgate_domain::user::{User, UserCommand, UserProfile, UserUpdate};

use crate::aggregates::Actor;
use crate::{AppError, Tollgate};

/// What an administrator gives to create a user.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// Clear-text password, hashed here and never stored or logged.
    pub password: Option<String>,
    /// A hash imported from another system, instead of `password`.
    pub password_hash: Option<String>,
    /// OpenSSH public key lines.
    pub public_keys: Vec<String>,
    /// Storage root of the user's namespace.
    pub home: String,
    /// Groups.
    pub groups: Vec<String>,
    /// Directly attached policies.
    pub policies: Vec<String>,
    /// Whether FTP needs TLS (control and data channels).
    pub ftp_require_tls: bool,
    /// The person's name (personal data: sealed before it is recorded).
    pub full_name: Option<String>,
    /// The person's email address (personal data: sealed likewise).
    pub email: Option<String>,
    /// Mounts shown in the namespace.
    pub folders: Vec<VirtualFolder>,
}

/// The users read model, as stored in the `users` projection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserView {
    /// Login name.
    pub username: String,
    /// Storage root.
    pub home: String,
    /// Whether logins are allowed.
    pub enabled: bool,
    /// Whether a password is set.
    pub has_password: bool,
    /// Public keys (`type base64`).
    pub public_keys: Vec<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Policies.
    pub policies: Vec<String>,
    /// Whether FTP needs TLS.
    #[serde(default)]
    pub ftp_require_tls: bool,
    /// The person's name: sealed in the read model, in clear (or
    /// `[erased]`) once read through `list_users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    /// The person's email address, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Mounts shown in the namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub folders: Vec<VirtualFolder>,
    /// The conditions of the user's logins.
    #[serde(default)]
    pub access: tollgate_domain::access::AccessRules,
    /// Bytes the user stores, as completed uploads and removals left them.
    #[serde(default)]
    pub used_bytes: u64,
    /// Files the user stores, likewise.
    #[serde(default)]
    pub used_files: u64,
    /// The directory entry of a user provisioned from a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_dn: Option<String>,
    /// The second factor's state: `pending` until confirmed, `enabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
    /// When the user was created.
    pub created_at: String,
    /// When the user last changed.
    pub updated_at: String,
    /// The aggregate version after the last projected event.
    #[serde(default)]
    pub version: u64,
}

/// `UserView::totp` of an enrolment not confirmed yet.
pub(crate) const TOTP_PENDING: &str = "pending";
/// `UserView::totp` of a confirmed second factor.
pub(crate) const TOTP_ENABLED: &str = "enabled";

/// The state of a user's second factor, as views and records name it.
pub(crate) fn totp_state(totp: Option<&tollgate_domain::user::Totp>) -> Option<String> {
    totp.map(|t| {
        if t.confirmed {
            TOTP_ENABLED
        } else {
            TOTP_PENDING
        }
        .to_string()
    })
}

impl UserView {
    /// A new user's view, created at `time`.
    pub(crate) fn new(
        username: String,
        home: String,
        groups: Vec<String>,
        policies: Vec<String>,
        time: &str,
    ) -> UserView {
        UserView {
            username,
            home,
            enabled: true,
            has_password: false,
            public_keys: Vec::new(),
            groups,
            policies,
            ftp_require_tls: false,
            full_name: None,
            email: None,
            folders: Vec::new(),
            access: Default::default(),
            used_bytes: 0,
            used_files: 0,
            directory_dn: None,
            totp: None,
            created_at: time.to_string(),
            updated_at: time.to_string(),
            version: 0,
        }
    }
}

pub(crate) fn admin_actor(admin: &str, user: Option<&str>) -> Actor {
    Actor {
        actor: admin.to_string(),
        user: user.map(str::to_string),
        ..Actor::default()
    }
}

pub(crate) fn parse_keys(lines: &[String]) -> Result<Vec<AuthorizedKey>, AppError> {
    lines
        .iter()
        .map(|line| {
            AuthorizedKey::parse(line)
                .map_err(|e| AppError::Invalid(format!("public key {line:?}: {e}")))
        })
        .collect()
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    pub(crate) fn hash_password(&self, password: &str) -> Result<String, AppError> {
        self.inner
            .deps
            .password_policy
            .check(password)
            .map_err(AppError::Invalid)?;
        self.inner
            .deps
            .hasher
            .hash(password)
            .map_err(|e| AppError::Invalid(format!("cannot hash the password: {e}")))
    }

    pub(crate) async fn require_policies(&self, names: &[String]) -> Result<(), AppError> {
        for name in names {
            let policy: Policy = self.load(name).await?;
            if !policy.exists() {
                return Err(AppError::Invalid(format!("policy {name:?} does not exist")));
            }
        }
        Ok(())
    }

    /// A hash imported from another system, checked to be one that
    /// verifies (it is replaced by an Argon2id hash at the next login).
    pub(crate) fn imported_hash(&self, hash: &str) -> Result<String, AppError> {
        if self.inner.deps.hasher.recognizes(hash) {
            Ok(hash.to_string())
        } else {
            Err(AppError::Invalid(
                "password_hash is not a recognised hash (Argon2id, bcrypt, SHA-512-crypt or PBKDF2)"
                    .to_string(),
            ))
        }
    }

    /// Every folder's mount must exist.
    pub(crate) async fn require_mounts(&self, folders: &[VirtualFolder]) -> Result<(), AppError> {
        for folder in folders {
            let mount: Mount = self.load(&folder.mount).await?;
            if !mount.exists() {
                return Err(AppError::Invalid(format!(
                    "mount {:?} of virtual folder {} does not exist",
                    folder.mount, folder.path
                )));
            }
        }
        Ok(())
    }

    pub(crate) async fn require_groups(&self, names: &[String]) -> Result<(), AppError> {
        for name in names {
            let group: Group = self.load(name).await?;
            if !group.exists() {
                return Err(AppError::Invalid(format!("group {name:?} does not exist")));
            }
        }
        Ok(())
    }

    /// Runs one command on user `username` on behalf of `admin`.
    async fn on_user(
        &self,
        admin: &str,
        username: &str,
        command: UserCommand,
    ) -> Result<(), AppError> {
        let actor = admin_actor(admin, Some(username));
        self.execute::<User>(username, &actor, || command.clone())
            .await
            .map(drop)
    }

    /// Creates a user (event `UserCreated`).
    pub async fn create_user(&self, admin: &str, new: NewUser) -> Result<(), AppError> {
        let password_hash = match (new.password.as_deref(), new.password_hash.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(AppError::Invalid(
                    "give a password or a password_hash, not both".to_string(),
                ));
            }
            (Some(password), None) => Some(self.hash_password(password)?),
            (None, Some(hash)) => Some(self.imported_hash(hash)?),
            (None, None) => None,
        };
        let public_keys = parse_keys(&new.public_keys)?;
        self.require_groups(&new.groups).await?;
        self.require_policies(&new.policies).await?;
        self.require_mounts(&new.folders).await?;
        self.inner
            .deps
            .storage
            .ensure_root(&new.home)
            .await
            .map_err(|e| {
                AppError::Invalid(format!(
                    "cannot create the home directory {:?}: {:?}",
                    new.home, e.kind
                ))
            })?;
        let profile = self
            .seal_profile(
                &new.username,
                &UserProfile::default(),
                new.full_name.as_deref(),
                new.email.as_deref(),
            )
            .await?;
        let command = UserCommand::Create {
            username: new.username.clone(),
            password_hash,
            public_keys,
            home: new.home,
            groups: new.groups,
            policies: new.policies,
            ftp_require_tls: new.ftp_require_tls,
            profile,
            folders: new.folders,
        };
        self.on_user(admin, &new.username, command).await
    }

    /// Sets a user's password (event `UserPasswordChanged`, with the hash only).
    pub async fn set_password(
        &self,
        admin: &str,
        username: &str,
        password: &str,
    ) -> Result<(), AppError> {
        let password_hash = self.hash_password(password)?;
        self.on_user(
            admin,
            username,
            UserCommand::ChangePassword {
                password_hash: password_hash.clone(),
            },
        )
        .await
    }

    /// Replaces a user's public keys.
    pub async fn set_public_keys(
        &self,
        admin: &str,
        username: &str,
        keys: &[String],
    ) -> Result<(), AppError> {
        let public_keys = parse_keys(keys)?;
        self.on_user(
            admin,
            username,
            UserCommand::SetPublicKeys {
                public_keys: public_keys.clone(),
            },
        )
        .await
    }

    /// Replaces a user's directly attached policies.
    pub async fn set_user_policies(
        &self,
        admin: &str,
        username: &str,
        policies: &[String],
    ) -> Result<(), AppError> {
        self.require_policies(policies).await?;
        self.on_user(
            admin,
            username,
            UserCommand::SetPolicies {
                policies: policies.to_vec(),
            },
        )
        .await
    }

    /// Replaces a user's groups.
    pub async fn set_user_groups(
        &self,
        admin: &str,
        username: &str,
        groups: &[String],
    ) -> Result<(), AppError> {
        self.require_groups(groups).await?;
        self.on_user(
            admin,
            username,
            UserCommand::SetGroups {
                groups: groups.to_vec(),
            },
        )
        .await
    }

    /// Enables or disables logins for a user.
    pub async fn set_user_enabled(
        &self,
        admin: &str,
        username: &str,
        enabled: bool,
    ) -> Result<(), AppError> {
        let command = if enabled {
            UserCommand::Enable
        } else {
            UserCommand::Disable
        };
        self.on_user(admin, username, command).await
    }

    /// Sets whether FTP needs TLS for a user (event
    /// `UserFtpSecurityChanged`, only when it changes).
    pub async fn set_user_ftp_require_tls(
        &self,
        admin: &str,
        username: &str,
        require_tls: bool,
    ) -> Result<(), AppError> {
        let update = UserUpdate {
            ftp_require_tls: Some(require_tls),
            ..UserUpdate::default()
        };
        self.on_user(admin, username, UserCommand::Update(update))
            .await
    }

    /// Erases a user's personal data (GDPR): the keys that sealed the
    /// user's name, email and connection addresses are destroyed, and the
    /// erasure is recorded (the account is deleted if it still exists).
    /// The records stay, so every audit proof still verifies; readers show
    /// the sealed values as `[erased]`. Returns the destroyed keys' ids.
    pub async fn erase_user(&self, admin: &str, username: &str) -> Result<Vec<String>, AppError> {
        let actor = admin_actor(admin, Some(username));
        self.erase_personal_data(&actor, username).await
    }

    /// Deletes a user. Their files stay on storage.
    pub async fn delete_user(&self, admin: &str, username: &str) -> Result<(), AppError> {
        self.on_user(admin, username, UserCommand::Delete).await
    }

    /// Creates a policy from rules of the form `PREFIX=perm,perm`.
    pub async fn create_policy(
        &self,
        admin: &str,
        name: &str,
        rules: &[String],
    ) -> Result<(), AppError> {
        let rules = parse_rules(rules)?;
        self.execute::<Policy>(name, &admin_actor(admin, None), || PolicyCommand::Create {
            name: name.to_string(),
            rules: rules.clone(),
        })
        .await
        .map(drop)
    }

    /// Replaces a policy's rules.
    pub async fn replace_policy_rules(
        &self,
        admin: &str,
        name: &str,
        rules: &[String],
    ) -> Result<(), AppError> {
        let rules = parse_rules(rules)?;
        self.execute::<Policy>(name, &admin_actor(admin, None), || {
            PolicyCommand::ReplaceRules {
                rules: rules.clone(),
            }
        })
        .await
        .map(drop)
    }

    /// Creates a group with policies.
    pub async fn create_group(
        &self,
        admin: &str,
        name: &str,
        policies: &[String],
    ) -> Result<(), AppError> {
        self.require_policies(policies).await?;
        self.execute::<Group>(name, &admin_actor(admin, None), || GroupCommand::Create {
            name: name.to_string(),
            policies: policies.to_vec(),
            folders: Vec::new(),
        })
        .await
        .map(drop)
    }

    /// The users read model, ordered by name.
    pub async fn list_users(&self) -> Result<Vec<UserView>, AppError> {
        let docs = self
            .inner
            .deps
            .projections
            .list(crate::subscribers::USERS)
            .await?;
        let mut docs: Vec<serde_json::Value> = docs.into_iter().map(|(_, doc)| doc).collect();
        self.open_values(&mut docs.iter_mut().collect::<Vec<_>>())
            .await?;
        docs.into_iter()
            .map(|doc| serde_json::from_value(doc).map_err(|e| AppError::Store(Box::new(e))))
            .collect()
    }

    /// Whether any user or administrator exists yet (for first-start bootstrap).
    pub async fn user_exists(&self, username: &str) -> Result<bool, AppError> {
        Ok(self.load::<User>(username).await?.exists())
    }
}

fn parse_rules(rules: &[String]) -> Result<Vec<Rule>, AppError> {
    rules
        .iter()
        .map(|text| Rule::parse(text).map_err(|e| AppError::Invalid(e.to_string())))
        .collect()
}

/// The name of the administrator created on first start.
pub const FIRST_ADMIN: &str = "admin";

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Creates the first administrator if there is none yet. Returns the
    /// generated password when none was given, so that it can be shown once.
    pub async fn bootstrap_admin(
        &self,
        password: Option<String>,
    ) -> Result<Option<String>, AppError> {
        use tollgate_domain::admin::{Admin, AdminCommand, Role};
        let existing: Admin = self.load(FIRST_ADMIN).await?;
        if existing.role.is_some() {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let password_hash = self.hash_password(&password)?;
        self.execute::<Admin>(FIRST_ADMIN, &admin_actor("system", None), || {
            AdminCommand::Create {
                username: FIRST_ADMIN.to_string(),
                password_hash: password_hash.clone(),
                role: Role::Admin,
            }
        })
        .await?;
        Ok(generated.then_some(password))
    }
}
