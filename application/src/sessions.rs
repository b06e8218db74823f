//! Sessions and logins: the `Sessions` inbound port.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use chrono::{Datelike, Timelike};
use cqrs_es::persist::PersistedEventRepository;
use sha2::{Digest, Sha256};
use tollgate_domain::access::{AccessRefusal, AccessRules, LoginContext};
use tollgate_domain::group::Group;
use tollgate_domain::mount::Mount;
use tollgate_domain::policy::{Policy, Rule};
use tollgate_domain::public_key::AuthorizedKey;
use tollgate_domain::session::{LoginMethod, Protocol, Session, SessionCommand};
use tollgate_domain::user::{User, UserCommand};
use tollgate_ports::api::SessionRecord;
use tollgate_ports::inbound::{CertificateLogin, ClientInfo, FileOps, LoginError, Sessions};
use tollgate_ports::outbound::{
    MountTarget, MountedStorage, StorageError, StorageErrorKind, TokenError,
};

use crate::aggregates::Actor;
use crate::directory::DirectoryLogin;
use crate::files::{Grants, Limits, UserFiles};
use crate::namespace::{Folder, Namespace, effective_folders};
use crate::quota::Quota;
use crate::second_factor::split_code;
use crate::{AppError, Tollgate};

/// The protocol-facing application: opens sessions and logs users in.
pub struct Gateway<R> {
    app: Tollgate<R>,
    /// A hash of a random password, verified against when the user does not
    /// exist, so that an unknown user costs as much time as a wrong password.
    dummy_hash: std::sync::OnceLock<String>,
    /// SSH sessions whose first factor passed, waiting for a second
    /// factor code (keyboard-interactive), by session id.
    pending: Mutex<HashMap<String, Pending>>,
}

/// A login waiting for its second factor.
#[derive(Debug, Clone)]
struct Pending {
    username: String,
    method: LoginMethod,
    key_fingerprint: Option<String>,
}

/// What a password login's credentials prove.
pub(crate) enum PasswordCheck {
    /// Every factor the user has passed.
    Passed(User),
    /// The password passed; a second factor code must follow.
    NeedsCode(User),
    /// Refused, with the reason to record.
    Failed(String),
}

/// Whether a login still owes its second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecondFactor {
    /// Checked already, or not needed (a token).
    Done,
    /// To be asked for (SSH keyboard-interactive) if the user has one.
    Ask,
}

impl<R: PersistedEventRepository + Clone + 'static> Gateway<R> {
    pub(crate) fn new(app: Tollgate<R>) -> Self {
        Gateway {
            app,
            dummy_hash: std::sync::OnceLock::new(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a password login of `username`: through the directory for a
    /// user it decides about, else against the stored hash (upgraded if
    /// old); then the account's state; then the second factor of a user
    /// who has one: `code`, else six digits appended to the password,
    /// else (with `ask`) `NeedsCode`.
    pub(crate) async fn check_password(
        &self,
        actor: &Actor,
        username: &str,
        password: &str,
        code: Option<&str>,
        ask: bool,
    ) -> Result<PasswordCheck, LoginError> {
        let user: User = self.app.load(username).await.map_err(log_unavailable)?;
        let has_totp = user.exists() && user.has_totp();
        let (password, code) = match code {
            Some(code) => (password, Some(code)),
            None if has_totp && !ask => match split_code(password) {
                Some((password, code)) => (password, Some(code)),
                None => (password, None),
            },
            None => (password, None),
        };
        let failed = |reason: &str| Ok(PasswordCheck::Failed(reason.to_string()));
        let directory = self.app.directory_for(&user);
        let local = directory.is_none();
        let user = match directory {
            Some(logins) => match self
                .app
                .directory_login(logins, actor, user, username, password)
                .await
                .map_err(log_unavailable)?
            {
                DirectoryLogin::User(user) => *user,
                DirectoryLogin::Refused(reason) => return failed(reason),
            },
            None => {
                let hash = user.password_hash.clone().filter(|_| user.exists());
                let verified = self.verify_password(password, hash).await;
                if !user.exists() {
                    return failed("unknown user");
                }
                if !verified {
                    return failed("wrong password");
                }
                user
            }
        };
        if !user.enabled {
            return failed("account disabled");
        }
        if has_totp {
            match code {
                Some(code) => {
                    if let Err(reason) = self.app.check_second_factor(actor, &user, code).await {
                        return failed(reason);
                    }
                }
                None if ask => return Ok(PasswordCheck::NeedsCode(user)),
                None => return failed("second factor code missing"),
            }
        }
        let user = if local {
            self.rehash(actor, user, password).await
        } else {
            user
        };
        Ok(PasswordCheck::Passed(user))
    }

    /// Keeps a login whose first factor passed until its code comes.
    fn await_code(
        &self,
        session_id: &str,
        username: &str,
        method: LoginMethod,
        key_fingerprint: Option<String>,
    ) -> LoginError {
        tracing::info!(
            session_id,
            username,
            ?method,
            "first factor accepted, second factor asked"
        );
        let pending = Pending {
            username: username.to_string(),
            method,
            key_fingerprint,
        };
        self.pending
            .lock()
            .expect("pending logins are never poisoned")
            .insert(session_id.to_string(), pending);
        LoginError::SecondFactorRequired
    }

    async fn session(&self, session_id: &str) -> Result<Session, LoginError> {
        self.app
            .load::<Session>(session_id)
            .await
            .map_err(log_unavailable)
    }

    async fn record(
        &self,
        session_id: &str,
        session: &Session,
        user: Option<&str>,
        command: SessionCommand,
    ) {
        let actor = session_actor(session_id, session, user);
        if let Err(err) = self
            .app
            .execute::<Session>(session_id, &actor, || command.clone())
            .await
        {
            tracing::error!(session_id, error = %err, "cannot record a session event");
        }
    }

    async fn fail(
        &self,
        session_id: &str,
        session: &Session,
        username: &str,
        method: LoginMethod,
        reason: &str,
    ) -> LoginError {
        tracing::info!(session_id, username, ?method, reason, "login failed");
        if let Some(record) = self.app.inner.live.get(session_id) {
            self.app.login_failed(&record.remote_addr, reason).await;
        }
        let command = SessionCommand::RecordLoginFailure {
            username: username.to_string(),
            method,
            reason: reason.to_string(),
            admin: false,
        };
        let user = (!username.is_empty()).then_some(username);
        self.record(session_id, session, user, command).await;
        LoginError::Denied
    }

    /// Records the login and builds the user's file operations.
    async fn succeed(
        &self,
        session_id: &str,
        session: Session,
        user: User,
        method: LoginMethod,
        key_fingerprint: Option<String>,
        second: SecondFactor,
    ) -> Result<Arc<dyn FileOps>, LoginError> {
        let groups = self.groups_of(&user).await.map_err(log_unavailable)?;
        let protocol = session
            .protocol
            .expect("a session that reaches a login was opened");
        let address = self.app.inner.live.get(session_id).map(|r| r.remote_addr);
        let rules = AccessRules::effective(&user.access, groups.iter().map(|g| &g.access));
        if let Err(refusal) = self.conditions(&user, &rules, protocol, address.as_deref(), method) {
            return Err(self
                .fail(
                    session_id,
                    &session,
                    &user.username,
                    method,
                    &refusal.to_string(),
                )
                .await);
        }
        if user.has_totp() && second == SecondFactor::Ask {
            return Err(self.await_code(session_id, &user.username, method, key_fingerprint));
        }
        let buckets = &self.app.inner.buckets;
        let limits = Limits {
            upload: buckets.of(&user.username, true, rules.upload_bytes_per_sec),
            download: buckets.of(&user.username, false, rules.download_bytes_per_sec),
            quota: Quota::of(rules.quota_bytes, rules.quota_files),
        };
        let policies = self
            .policies_of(&user, &groups)
            .await
            .map_err(log_unavailable)?;
        let prepared = async {
            let namespace = self.namespace_of(&user, &groups).await?;
            namespace.ensure_roots().await?;
            Ok(namespace)
        };
        let namespace = match prepared.await {
            Ok(namespace) => namespace,
            Err((mount, err)) => {
                let reason = match &mount {
                    None => "home directory unavailable".to_string(),
                    Some(mount) => format!("virtual folder storage {mount} unavailable"),
                };
                tracing::error!(session_id, username = %user.username, error = ?err, source = ?err.source, "{reason}");
                return Err(self
                    .fail(session_id, &session, &user.username, method, &reason)
                    .await);
            }
        };
        // The session's address is the user's personal data from now on.
        self.app
            .adopt_address(&session.remote_addr, &user.username)
            .await
            .map_err(log_unavailable)?;
        let command = SessionCommand::RecordLogin {
            username: user.username.clone(),
            method,
            key_fingerprint,
            admin: false,
        };
        let actor = session_actor(session_id, &session, Some(&user.username));
        self.app
            .execute::<Session>(session_id, &actor, || command.clone())
            .await
            .map_err(log_unavailable)?;
        self.app.inner.live.logged_in(session_id, &user.username);
        Ok(Arc::new(UserFiles::new(
            self.app.clone(),
            session_id.to_string(),
            user,
            Grants {
                policies,
                namespace,
                limits,
            },
            protocol,
            session.remote_addr,
        )))
    }

    /// The access conditions in force for `user` (their own or their
    /// groups', `AccessRules::effective`), checked for a login over
    /// `protocol` from `address` (`ip:port`, in clear).
    pub(crate) fn conditions(
        &self,
        user: &User,
        rules: &AccessRules,
        protocol: Protocol,
        address: Option<&str>,
        method: LoginMethod,
    ) -> Result<(), AccessRefusal> {
        if *rules == AccessRules::default() {
            return Ok(());
        }
        let source = address
            .and_then(|text| text.parse::<std::net::SocketAddr>().ok())
            .map(|addr| addr.ip());
        let now = self.app.inner.deps.clock.now();
        let live = &self.app.inner.live;
        let context = LoginContext {
            protocol,
            method,
            source,
            weekday: u8::try_from(now.weekday().num_days_from_monday()).unwrap_or(0),
            minute: u16::try_from(now.hour() * 60 + now.minute()).unwrap_or(0),
            sessions: live.sessions_of(&user.username),
            second_factor: user.has_totp(),
        };
        rules.check(&context)
    }

    /// The existing groups the user is in, in the user's order.
    pub(crate) async fn groups_of(&self, user: &User) -> Result<Vec<Group>, AppError> {
        let mut groups = Vec::new();
        for group_name in &user.groups {
            let group: Group = self.app.load(group_name).await?;
            if group.exists() {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    /// The rules of every policy attached to the user directly or through a group.
    async fn policies_of(
        &self,
        user: &User,
        groups: &[Group],
    ) -> Result<Vec<(String, Vec<Rule>)>, AppError> {
        let mut names = user.policies.clone();
        for group in groups {
            names.extend(group.policies.iter().cloned());
        }
        names.sort();
        names.dedup();
        let mut policies = Vec::new();
        for name in names {
            let policy: Policy = self.app.load(&name).await?;
            if policy.exists() {
                policies.push((name, policy.rules));
            }
        }
        Ok(policies)
    }

    /// The user's home and virtual folders (their own, then their groups');
    /// a folder whose mount is missing or cannot be built names that mount.
    async fn namespace_of(
        &self,
        user: &User,
        groups: &[Group],
    ) -> Result<Namespace, (Option<String>, StorageError)> {
        let deps = &self.app.inner.deps;
        let home = MountedStorage {
            storage: deps.storage.clone(),
            root: user.home.clone(),
        };
        let chosen = effective_folders(&user.folders, groups.iter().map(|g| &g.folders[..]));
        let mut folders = Vec::new();
        for folder in chosen {
            let named = || Some(folder.mount.clone());
            let missing = || (named(), StorageError::of(StorageErrorKind::NotFound));
            let mount: Mount = self.app.load(&folder.mount).await.map_err(|err| {
                (
                    named(),
                    StorageError {
                        kind: StorageErrorKind::Unavailable,
                        source: Some(Box::new(err)),
                    },
                )
            })?;
            let storage = mount
                .storage
                .clone()
                .filter(|_| mount.exists())
                .ok_or_else(missing)?;
            let target = MountTarget {
                name: folder.mount.clone(),
                storage,
                encryption_key: mount.encryption_key.clone(),
            };
            let backend = deps
                .mounts
                .backend(&target)
                .await
                .map_err(|err| (named(), err))?;
            folders.push(Folder {
                path: folder.path.clone(),
                mount: folder.mount.clone(),
                backend,
            });
        }
        Ok(Namespace::new(home, folders))
    }

    /// Replaces a verified hash of an imported or older scheme by a new
    /// one (`UserPasswordChanged`, by the user in this session). A failure
    /// is logged and the login goes on with the old hash.
    pub(crate) async fn rehash(&self, actor: &Actor, user: User, password: &str) -> User {
        let hasher = self.app.inner.deps.hasher.clone();
        let Some(old) = user
            .password_hash
            .clone()
            .filter(|h| hasher.needs_rehash(h))
        else {
            return user;
        };
        let password = password.to_string();
        let hashed = tokio::task::spawn_blocking(move || hasher.hash(&password)).await;
        let Ok(Ok(password_hash)) = hashed else {
            tracing::error!(username = %user.username, "cannot rehash a password");
            return user;
        };
        let command = UserCommand::ChangePassword { password_hash };
        match self
            .app
            .execute::<User>(&user.username, actor, || command.clone())
            .await
        {
            Ok(updated) => {
                let scheme = old.split('$').nth(1).unwrap_or("unknown");
                tracing::info!(username = %user.username, scheme, "password rehashed with Argon2id");
                updated
            }
            Err(err) => {
                tracing::error!(username = %user.username, error = %err, "cannot record a rehashed password");
                user
            }
        }
    }

    pub(crate) async fn verify_password(&self, password: &str, hash: Option<String>) -> bool {
        let hasher = self.app.inner.deps.hasher.clone();
        let password = password.to_string();
        let has_hash = hash.is_some();
        let hash = match hash {
            Some(hash) => hash,
            None => self
                .dummy_hash
                .get_or_init(|| {
                    self.app
                        .inner
                        .deps
                        .hasher
                        .hash(&uuid::Uuid::new_v4().to_string())
                        .unwrap_or_default()
                })
                .clone(),
        };
        // Hashing is deliberately slow: keep it off the async workers.
        let verified = tokio::task::spawn_blocking(move || hasher.verify(&password, &hash))
            .await
            .unwrap_or(false);
        verified && has_hash
    }
}

fn session_actor(session_id: &str, session: &Session, user: Option<&str>) -> Actor {
    Actor {
        actor: user.unwrap_or("anonymous").to_string(),
        user: user.map(str::to_string),
        session_id: Some(session_id.to_string()),
        remote_addr: Some(session.remote_addr.clone()),
        protocol: session.protocol.map(|p| p.as_str().to_string()),
    }
}

fn log_unavailable(err: AppError) -> LoginError {
    tracing::error!(error = %err, "login cannot be decided");
    LoginError::Unavailable
}

/// `SHA256:base64` as OpenSSH prints it.
fn fingerprint(key: &AuthorizedKey) -> Option<String> {
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key.blob())
        .ok()?;
    let digest = Sha256::digest(blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

#[async_trait]
impl<R: PersistedEventRepository + Clone + 'static> Sessions for Gateway<R> {
    fn banned(&self, remote_addr: &str) -> bool {
        self.app.is_banned(remote_addr)
    }

    async fn open(&self, client: ClientInfo) -> Result<String, LoginError> {
        let session_id = uuid::Uuid::now_v7().to_string();
        let recorded = self
            .app
            .recorded_address(&session_id, &client.remote_addr)
            .await
            .map_err(log_unavailable)?;
        let actor = Actor {
            actor: "anonymous".to_string(),
            session_id: Some(session_id.clone()),
            remote_addr: Some(recorded.clone()),
            protocol: Some(client.protocol.as_str().to_string()),
            ..Actor::default()
        };
        let record = SessionRecord {
            id: session_id.clone(),
            protocol: client.protocol.as_str().to_string(),
            remote_addr: client.remote_addr.clone(),
            username: None,
            started_at: self.app.now_text(),
        };
        let command = SessionCommand::Open {
            protocol: client.protocol,
            remote_addr: recorded,
        };
        self.app
            .execute::<Session>(&session_id, &actor, || command.clone())
            .await
            .map_err(log_unavailable)?;
        self.app.inner.live.opened(record);
        Ok(session_id)
    }

    async fn login_password(
        &self,
        session_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError> {
        let session = self.session(session_id).await?;
        let method = LoginMethod::Password;
        let actor = session_actor(session_id, &session, Some(username));
        // SSH asks for a second factor by keyboard-interactive; the other
        // protocols take it appended to the password.
        let ask = matches!(session.protocol, Some(Protocol::Sftp | Protocol::Scp));
        let user = match self
            .check_password(&actor, username, password, None, ask)
            .await?
        {
            PasswordCheck::Passed(user) => user,
            PasswordCheck::NeedsCode(user) => {
                return Err(self.await_code(session_id, &user.username, method, None));
            }
            PasswordCheck::Failed(reason) => {
                return Err(self
                    .fail(session_id, &session, username, method, &reason)
                    .await);
            }
        };
        if user.ftp_require_tls && session.protocol == Some(Protocol::Ftp) {
            return Err(self
                .fail(session_id, &session, username, method, "tls required")
                .await);
        }
        self.succeed(session_id, session, user, method, None, SecondFactor::Done)
            .await
    }

    async fn login_code(
        &self,
        session_id: &str,
        username: &str,
        code: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError> {
        let session = self.session(session_id).await?;
        let pending = self
            .pending
            .lock()
            .expect("pending logins are never poisoned")
            .get(session_id)
            .cloned()
            .filter(|p| p.username == username);
        let Some(pending) = pending else {
            return Err(self
                .fail(
                    session_id,
                    &session,
                    username,
                    LoginMethod::Password,
                    "second factor code without a first factor",
                )
                .await);
        };
        let user: User = self.app.load(username).await.map_err(log_unavailable)?;
        let actor = session_actor(session_id, &session, Some(username));
        if let Err(reason) = self.app.check_second_factor(&actor, &user, code).await {
            return Err(self
                .fail(session_id, &session, username, pending.method, reason)
                .await);
        }
        self.pending
            .lock()
            .expect("pending logins are never poisoned")
            .remove(session_id);
        self.succeed(
            session_id,
            session,
            user,
            pending.method,
            pending.key_fingerprint,
            SecondFactor::Done,
        )
        .await
    }

    async fn offer_public_key(&self, session_id: &str, username: &str, public_key: &str) -> bool {
        let Ok(session) = self.session(session_id).await else {
            return false;
        };
        let user: User = match self.app.load(username).await {
            Ok(user) => user,
            Err(err) => {
                log_unavailable(err);
                return false;
            }
        };
        let accepted = AuthorizedKey::parse(public_key)
            .is_ok_and(|key| user.exists() && user.enabled && user.public_keys.contains(&key));
        if !accepted {
            let reason = if !user.exists() {
                "unknown user"
            } else if !user.enabled {
                "account disabled"
            } else {
                "key not authorized"
            };
            self.fail(
                session_id,
                &session,
                username,
                LoginMethod::PublicKey,
                reason,
            )
            .await;
        }
        accepted
    }

    async fn login_public_key(
        &self,
        session_id: &str,
        username: &str,
        public_key: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError> {
        let session = self.session(session_id).await?;
        let user: User = self.app.load(username).await.map_err(log_unavailable)?;
        let method = LoginMethod::PublicKey;
        let key = AuthorizedKey::parse(public_key)
            .ok()
            .filter(|key| user.public_keys.contains(key));
        let Some(key) = key.filter(|_| user.exists() && user.enabled) else {
            return Err(self
                .fail(session_id, &session, username, method, "key not authorized")
                .await);
        };
        self.succeed(
            session_id,
            session,
            user,
            method,
            fingerprint(&key),
            SecondFactor::Ask,
        )
        .await
    }

    async fn login_certificate(
        &self,
        session_id: &str,
        username: &str,
        certificate: &CertificateLogin,
    ) -> Result<Arc<dyn FileOps>, LoginError> {
        let session = self.session(session_id).await?;
        let user: User = self.app.load(username).await.map_err(log_unavailable)?;
        let method = LoginMethod::Certificate;
        let refusal = match &certificate.refusal {
            Some(reason) => Some(reason.as_str()),
            None if !user.exists() => Some("unknown user"),
            None if !user.enabled => Some("account disabled"),
            None => None,
        };
        if let Some(reason) = refusal {
            return Err(self
                .fail(session_id, &session, username, method, reason)
                .await);
        }
        let recorded = format!(
            "{} (certificate {:?} serial {} by CA {})",
            certificate.key_fingerprint,
            certificate.key_id,
            certificate.serial,
            certificate.ca_fingerprint
        );
        self.succeed(
            session_id,
            session,
            user,
            method,
            Some(recorded),
            SecondFactor::Ask,
        )
        .await
    }

    async fn login_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError> {
        let session = self.session(session_id).await?;
        let method = LoginMethod::Token;
        let deps = &self.app.inner.deps;
        let claims = match deps.tokens.verify(token, deps.clock.now().timestamp()) {
            Ok(claims) if !claims.admin => claims,
            Ok(claims) => {
                return Err(self
                    .fail(
                        session_id,
                        &session,
                        &claims.subject,
                        method,
                        "administrator token",
                    )
                    .await);
            }
            Err(err) => {
                let reason = match err {
                    TokenError::Expired => "expired token",
                    TokenError::Invalid => "invalid token",
                };
                return Err(self.fail(session_id, &session, "", method, reason).await);
            }
        };
        let username = claims.subject;
        let user: User = self.app.load(&username).await.map_err(log_unavailable)?;
        if !user.exists() {
            return Err(self
                .fail(session_id, &session, &username, method, "unknown user")
                .await);
        }
        if !user.enabled {
            return Err(self
                .fail(session_id, &session, &username, method, "account disabled")
                .await);
        }
        self.succeed(session_id, session, user, method, None, SecondFactor::Done)
            .await
    }

    async fn close(&self, session_id: &str, reason: &str) {
        self.app.inner.live.closed(session_id);
        self.pending
            .lock()
            .expect("pending logins are never poisoned")
            .remove(session_id);
        let Ok(session) = self.session(session_id).await else {
            return;
        };
        if session.closed || session.protocol.is_none() {
            return;
        }
        let user = session.username.clone();
        self.record(
            session_id,
            &session,
            user.as_deref(),
            SessionCommand::Close {
                reason: reason.to_string(),
            },
        )
        .await;
    }

    async fn disconnect_requested(&self, session_id: &str) {
        self.app.inner.live.disconnect_requested(session_id).await
    }
}
