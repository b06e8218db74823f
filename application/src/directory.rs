//! Logins through a directory (LDAP, Active Directory): the directory
//! checks the password of a user not known here, or of one it provisioned,
//! and says their groups; a first login provisions the user as an event,
//! later ones bring their groups up to date.

use std::sync::Arc;

use cqrs_es::persist::PersistedEventRepository;
use tollgate_domain::user::{User, UserCommand};
use tollgate_ports::outbound::{Directory, DirectoryError};

use crate::aggregates::Actor;
use crate::{AppError, Tollgate};

/// The directory and what users it provisions get.
#[derive(Clone)]
pub struct DirectoryLogins {
    /// The directory.
    pub directory: Arc<dyn Directory>,
    /// Where provisioned users' homes go (`<homes_dir>/<username>`).
    pub homes_dir: String,
    /// Policies attached to provisioned users.
    pub policies: Vec<String>,
}

/// The outcome of a directory login.
pub(crate) enum DirectoryLogin {
    /// The user, provisioned or brought up to date.
    User(Box<User>),
    /// Refused, with the reason to record.
    Refused(&'static str),
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// The directory, if one is configured and decides about `user` (not
    /// known here, or provisioned from it).
    pub(crate) fn directory_for(&self, user: &User) -> Option<&DirectoryLogins> {
        self.inner
            .deps
            .directory
            .as_ref()
            .filter(|_| !user.exists() || user.directory_dn.is_some())
    }

    /// Authenticates `username` with the directory and provisions or
    /// updates the user (events by `actor`).
    pub(crate) async fn directory_login(
        &self,
        logins: &DirectoryLogins,
        actor: &Actor,
        user: User,
        username: &str,
        password: &str,
    ) -> Result<DirectoryLogin, AppError> {
        let found = match logins.directory.authenticate(username, password).await {
            Ok(found) => found,
            Err(DirectoryError::UnknownUser) => return Ok(DirectoryLogin::Refused("unknown user")),
            Err(DirectoryError::WrongPassword) => {
                return Ok(DirectoryLogin::Refused("wrong password"));
            }
            Err(DirectoryError::Unavailable(cause)) => {
                tracing::error!(username, %cause, "the directory cannot decide a login");
                return Ok(DirectoryLogin::Refused("directory unavailable"));
            }
        };
        let command = if !user.exists() {
            let home = std::path::Path::new(&logins.homes_dir).join(username);
            UserCommand::Provision {
                username: username.to_string(),
                dn: found.dn,
                home: home.to_string_lossy().into_owned(),
                groups: found.groups,
                policies: logins.policies.clone(),
            }
        } else if user.groups != found.groups {
            UserCommand::SetGroups {
                groups: found.groups,
            }
        } else {
            return Ok(DirectoryLogin::User(Box::new(user)));
        };
        let user = self
            .execute::<User>(username, actor, || command.clone())
            .await?;
        Ok(DirectoryLogin::User(Box::new(user)))
    }
}
