//! The administrative API: who may call what (roles), authentication of
//! administrators, users and API keys, the admin resources as commands, and
//! the audit queries, which are themselves recorded.

use async_trait::async_trait;
use cqrs_es::persist::PersistedEventRepository;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tollgate_domain::access::AccessRules;
use tollgate_domain::admin::{Admin, AdminCommand, Role};
use tollgate_domain::api_key::{ApiKey, ApiKeyCommand};
use tollgate_domain::audit_access::{AuditAccess, AuditAccessCommand};
use tollgate_domain::group::{Group, GroupCommand};
use tollgate_domain::mount::{Mount, MountCommand, SealedSecret};
use tollgate_domain::policy::{Policy, PolicyCommand, Rule};
use tollgate_domain::session::{LoginMethod, Session, SessionCommand};
use tollgate_domain::subscription::{
    EventFormat, Subscription, SubscriptionCommand, SubscriptionFilter,
};
use tollgate_domain::user::{User, UserCommand, UserProfile, UserUpdate};
use tollgate_domain::{AggregateRoot, RefusalKind};
use tollgate_ports::api::{
    AdminApi, AdminChanges, AdminRecord, ApiError, ApiKeyRecord, AuditVerification, BanRecord,
    ConsistencyProof, CreatedApiKey, EventPage, EventQuery, GroupChanges, GroupRecord,
    InclusionProof, IssuedToken, ListParams, MountCheckFailure, MountRecord, Page, PolicyRecord,
    Principal, RedeliveryReport, RedeliveryRequest, RuleRecord, Sample, SessionRecord,
    SignedCheckpoint, StorageRecord, StreamFilter, StreamPage, SubscriptionRecord,
    TotpEnrolmentRecord, TransferRecord, UserChanges, UserRecord, UserSpec, Versioned,
};
use tollgate_ports::inbound::{ClientInfo, LoginError};
use tollgate_ports::outbound::{
    DeliveryAttempt, MountTarget, StorageError, StorageErrorKind, TokenClaims, TokenError,
};

use crate::admin::{NewUser, parse_keys};
use crate::aggregates::Actor;
use crate::mounts::{folder_records, folders as parse_folders};
use crate::sessions::{Gateway, PasswordCheck};
use crate::subscribers::{ADMINS, API_KEYS, GROUPS, MOUNTS, POLICIES, Projected};
use crate::webhooks::NewSubscription;
use crate::{AppError, Tollgate};

/// The prefix of every API key: `tgk_<id>_<secret>`.
const KEY_PREFIX: &str = "tgk_";

/// The administrative API on top of the application.
pub(crate) struct AdminService<R> {
    app: Tollgate<R>,
    gateway: Gateway<R>,
}

impl<R: PersistedEventRepository + Clone + 'static> AdminService<R> {
    pub(crate) fn new(app: Tollgate<R>) -> Self {
        AdminService {
            gateway: Gateway::new(app.clone()),
            app,
        }
    }
}

fn api_error(err: AppError) -> ApiError {
    match err {
        AppError::Rejected { kind, message } => match kind {
            RefusalKind::NotFound => ApiError::NotFound(message),
            RefusalKind::AlreadyExists | RefusalKind::Conflict => ApiError::Conflict(message),
            RefusalKind::Invalid => ApiError::Invalid(message),
        },
        AppError::Conflict => ApiError::Conflict(err.to_string()),
        AppError::VersionMismatch { current } => ApiError::VersionMismatch { current },
        AppError::Invalid(message) => ApiError::Invalid(message),
        AppError::Store(_) | AppError::Port(_) => {
            tracing::error!(error = ?err, "the API could not reach the store");
            ApiError::Unavailable
        }
    }
}

/// Any administrator (admin or auditor) may read.
fn reader(by: &Principal) -> Result<&str, ApiError> {
    match by {
        Principal::Admin { name, .. } => Ok(name),
        Principal::User { .. } => Err(ApiError::Forbidden(
            "this resource is for administrators".to_string(),
        )),
    }
}

/// Only the admin role may change anything.
fn writer(by: &Principal) -> Result<&str, ApiError> {
    match by {
        Principal::Admin {
            name,
            role: Role::Admin,
        } => Ok(name),
        Principal::Admin { .. } => Err(ApiError::Forbidden(
            "the auditor role is read-only".to_string(),
        )),
        Principal::User { .. } => Err(ApiError::Forbidden(
            "this resource is for administrators".to_string(),
        )),
    }
}

/// The metadata of a change made through the API; `user` names the user
/// the event is about, if any.
fn actor_of(by: &Principal, user: Option<&str>) -> Actor {
    Actor {
        actor: by.name().to_string(),
        user: user.map(str::to_string),
        protocol: Some("http".to_string()),
        ..Actor::default()
    }
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!("{what} {name:?} does not exist"))
}

fn page_of<T>(mut items: Vec<(String, T)>, params: &ListParams) -> Page<T> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let limit = params.limit.max(1);
    let mut selected: Vec<(String, T)> = items
        .into_iter()
        .filter(|(key, _)| params.after.as_ref().is_none_or(|after| key > after))
        .filter(|(key, _)| params.prefix.as_ref().is_none_or(|p| key.starts_with(p)))
        .take(limit + 1)
        .collect();
    let more = selected.len() > limit;
    selected.truncate(limit);
    let next_cursor = if more {
        selected.last().map(|(key, _)| key.clone())
    } else {
        None
    };
    Page {
        items: selected.into_iter().map(|(_, item)| item).collect(),
        next_cursor,
    }
}

fn subscription_record(sub: &Subscription) -> SubscriptionRecord {
    SubscriptionRecord {
        name: sub.name.clone(),
        url: sub.url.clone(),
        kafka_topic: sub.kafka_topic.clone(),
        event_types: sub.filter.event_types.clone(),
        users: sub.filter.users.clone(),
        path_prefix: sub.filter.path_prefix.clone(),
        outcome: sub.filter.outcome.clone(),
        format: match sub.format {
            EventFormat::Tollgate => "tollgate",
            EventFormat::Ocsf => "ocsf",
        }
        .to_string(),
        enabled: sub.enabled,
        disabled_reason: sub.disabled_reason.clone(),
    }
}

/// A user's record, its profile given in clear.
fn user_record(user: &User, profile: UserProfile, usage: (u64, u64)) -> UserRecord {
    UserRecord {
        username: user.username.clone(),
        home: user.home.clone(),
        enabled: user.enabled,
        has_password: user.password_hash.is_some(),
        public_keys: user.public_keys.iter().map(|k| k.to_openssh()).collect(),
        groups: user.groups.clone(),
        policies: user.policies.clone(),
        ftp_require_tls: user.ftp_require_tls,
        full_name: profile.full_name,
        email: profile.email,
        folders: folder_records(&user.folders),
        access: user.access.clone(),
        used_bytes: usage.0,
        used_files: usage.1,
        directory_dn: user.directory_dn.clone(),
        totp: crate::admin::totp_state(user.totp.as_ref()),
    }
}

fn group_record(group: &Group) -> GroupRecord {
    GroupRecord {
        name: group.name.clone(),
        policies: group.policies.clone(),
        folders: folder_records(&group.folders),
        access: group.access.clone(),
    }
}

fn policy_record(policy: &Policy) -> PolicyRecord {
    PolicyRecord {
        name: policy.name.clone(),
        rules: policy
            .rules
            .iter()
            .map(|rule| RuleRecord {
                path: rule.path_prefix.as_str().to_string(),
                permissions: rule
                    .permissions
                    .iter()
                    .map(|p| p.as_str().to_string())
                    .collect(),
            })
            .collect(),
    }
}

fn mount_record(mount: &Mount) -> Option<MountRecord> {
    Some(MountRecord {
        name: mount.name.clone(),
        description: mount.description.clone(),
        storage: crate::mounts::record(mount.storage.as_ref()?),
        encrypted: mount.encryption_key.is_some(),
    })
}

/// Why a mount check failed, in words an administrator can act on; the
/// causes are the backend's own messages (they never carry its secrets).
fn check_failure(err: &StorageError) -> MountCheckFailure {
    let kind = match err.kind {
        StorageErrorKind::NotFound => "not_found",
        StorageErrorKind::PermissionDenied => "permission_denied",
        StorageErrorKind::Unavailable => "unavailable",
        StorageErrorKind::Corrupt => "corrupt",
        _ => "failed",
    };
    let mut detail = String::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = err
        .source
        .as_deref()
        .map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(current) = cause {
        if !detail.is_empty() {
            detail.push_str(": ");
        }
        detail.push_str(&current.to_string());
        cause = current.source();
    }
    if detail.is_empty() {
        detail = format!("{:?}", err.kind);
    }
    MountCheckFailure {
        kind: kind.to_string(),
        detail,
    }
}

fn admin_record(admin: &Admin) -> AdminRecord {
    AdminRecord {
        username: admin.username.clone(),
        role: admin.role.unwrap_or(Role::Auditor),
        enabled: !admin.disabled,
    }
}

fn key_record(id: &str, key: &ApiKey) -> ApiKeyRecord {
    ApiKeyRecord {
        id: id.to_string(),
        name: key.name.clone(),
        admin: key.admin.clone(),
        role: key.role.unwrap_or(Role::Auditor),
        expires_at: key.expires_at.clone(),
        revoked: key.revoked,
    }
}

fn rules_of(records: &[RuleRecord]) -> Result<Vec<Rule>, ApiError> {
    records
        .iter()
        .map(|r| {
            let text = format!("{}={}", r.path, r.permissions.join(","));
            Rule::parse(&text).map_err(|e| ApiError::Invalid(e.to_string()))
        })
        .collect()
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Random hex text from version 4 UUIDs (122 random bits each).
fn random_text(uuids: usize) -> String {
    (0..uuids)
        .map(|_| uuid::Uuid::new_v4().simple().to_string())
        .collect()
}

impl<R: PersistedEventRepository + Clone + 'static> AdminService<R> {
    /// Records one HTTP authentication as a session of its own: opened, the
    /// login's outcome, closed.
    async fn record_login(
        &self,
        client: &ClientInfo,
        username: &str,
        method: LoginMethod,
        admin: bool,
        failure: Option<&str>,
    ) {
        let session_id = uuid::Uuid::now_v7().to_string();
        let recorded = match self
            .app
            .recorded_address(&session_id, &client.remote_addr)
            .await
        {
            Ok(recorded) => recorded,
            Err(err) => {
                tracing::error!(error = %err, "cannot record an API authentication");
                return;
            }
        };
        let mut actor = Actor {
            actor: "anonymous".to_string(),
            session_id: Some(session_id.clone()),
            remote_addr: Some(recorded.clone()),
            protocol: Some(client.protocol.as_str().to_string()),
            ..Actor::default()
        };
        let open = SessionCommand::Open {
            protocol: client.protocol,
            remote_addr: recorded.clone(),
        };
        let login = match failure {
            Some(reason) => {
                tracing::info!(username, ?method, reason, "API authentication failed");
                SessionCommand::RecordLoginFailure {
                    username: username.to_string(),
                    method,
                    reason: reason.to_string(),
                    admin,
                }
            }
            None => {
                actor.actor = username.to_string();
                SessionCommand::RecordLogin {
                    username: username.to_string(),
                    method,
                    key_fingerprint: None,
                    admin,
                }
            }
        };
        if !admin && !username.is_empty() {
            actor.user = Some(username.to_string());
            if failure.is_none()
                && let Err(err) = self.app.adopt_address(&recorded, username).await
            {
                tracing::error!(error = %err, "cannot record an API authentication");
                return;
            }
        }
        let close = SessionCommand::Close {
            reason: "request authenticated".to_string(),
        };
        for command in [open, login, close] {
            if let Err(err) = self
                .app
                .execute::<Session>(&session_id, &actor, || command.clone())
                .await
            {
                tracing::error!(error = %err, "cannot record an API authentication");
                return;
            }
        }
    }

    async fn fail(
        &self,
        client: &ClientInfo,
        username: &str,
        method: LoginMethod,
        admin: bool,
        reason: &str,
    ) -> LoginError {
        self.record_login(client, username, method, admin, Some(reason))
            .await;
        self.app.login_failed(&client.remote_addr, reason).await;
        LoginError::Denied
    }

    /// The principal a token or key names, as it stands now.
    async fn current_principal(
        &self,
        name: &str,
        admin: bool,
    ) -> Result<Result<Principal, &'static str>, LoginError> {
        if admin {
            let admin: Admin = self.app.load(name).await.map_err(unavailable)?;
            if !admin.exists() {
                return Ok(Err("unknown administrator"));
            }
            return Ok(admin
                .active_role()
                .map(|role| Principal::Admin {
                    name: name.to_string(),
                    role,
                })
                .ok_or("account disabled"));
        }
        let user: User = self.app.load(name).await.map_err(unavailable)?;
        if !user.exists() {
            return Ok(Err("unknown user"));
        }
        if !user.enabled {
            return Ok(Err("account disabled"));
        }
        Ok(Ok(Principal::User {
            name: name.to_string(),
        }))
    }

    async fn versioned<T: AggregateRoot>(&self, id: &str) -> Result<(T, u64), ApiError>
    where
        T::Command: Send,
    {
        self.app.load_versioned::<T>(id).await.map_err(api_error)
    }

    /// Brings the read models up to the log head first, so that a list
    /// shows every change committed before the request (read your writes).
    /// A user or group whose namespace shows the mount, if any.
    async fn mount_user(&self, mount: &str) -> Result<Option<String>, ApiError> {
        self.fresh().await?;
        let users = self.app.list_users().await.map_err(api_error)?;
        if let Some(user) = users
            .iter()
            .find(|u| u.folders.iter().any(|f| f.mount == mount))
        {
            return Ok(Some(format!("user {:?}", user.username)));
        }
        for (name, group) in self.projected::<Group>(GROUPS).await? {
            if group.state.exists() && group.state.folders.iter().any(|f| f.mount == mount) {
                return Ok(Some(format!("group {name:?}")));
            }
        }
        Ok(None)
    }

    async fn fresh(&self) -> Result<(), ApiError> {
        while self.app.project_pending().await.map_err(api_error)? > 0 {}
        Ok(())
    }

    /// The bytes and files a user stores, as projected now.
    async fn usage_of(&self, username: &str) -> Result<(u64, u64), ApiError> {
        self.fresh().await?;
        self.app.stored(username).await.map_err(api_error)
    }

    async fn projected<T: DeserializeOwned>(
        &self,
        projection: &str,
    ) -> Result<Vec<(String, Projected<T>)>, ApiError> {
        self.fresh().await?;
        let docs = self
            .app
            .inner
            .deps
            .projections
            .list(projection)
            .await
            .map_err(|e| api_error(e.into()))?;
        docs.into_iter()
            .map(|(key, doc)| {
                serde_json::from_value::<Projected<T>>(doc)
                    .map(|p| (key, p))
                    .map_err(|e| api_error(AppError::Store(Box::new(e))))
            })
            .collect()
    }

    /// Runs one command on aggregate `id` for `by`, refused with
    /// `VersionMismatch` unless the aggregate is at `expected` (when given).
    async fn run<T>(
        &self,
        by: &Principal,
        id: &str,
        expected: Option<u64>,
        command: T::Command,
    ) -> Result<(T, u64), ApiError>
    where
        T: AggregateRoot,
        T::Command: Clone + Send,
    {
        let about = (T::TYPE == User::TYPE).then_some(id);
        self.app
            .execute_at::<T>(id, &actor_of(by, about), expected, || command.clone())
            .await
            .map_err(api_error)
    }

    /// One page of a read model: the aggregates `record` turns into a
    /// record (`None` for deleted or never-created ones), by name.
    async fn list_of<T: DeserializeOwned, V>(
        &self,
        projection: &str,
        params: &ListParams,
        record: impl Fn(&T) -> Option<V>,
    ) -> Result<Page<Versioned<V>>, ApiError> {
        let items = self
            .projected::<T>(projection)
            .await?
            .into_iter()
            .filter_map(|(key, p)| {
                let value = record(&p.state)?;
                Some((
                    key,
                    Versioned {
                        version: p.version,
                        value,
                    },
                ))
            })
            .collect();
        Ok(page_of(items, params))
    }

    async fn user_versioned(&self, name: &str) -> Result<Versioned<UserRecord>, ApiError> {
        let (user, version) = self.versioned::<User>(name).await?;
        if !user.exists() {
            return Err(not_found("user", name));
        }
        let profile = self
            .app
            .open_profile(&user.profile)
            .await
            .map_err(api_error)?;
        let usage = self.usage_of(&user.username).await?;
        Ok(Versioned {
            version,
            value: user_record(&user, profile, usage),
        })
    }

    /// Records a read of the audit trail's checkpoints or proofs.
    async fn record_proof_read(&self, by: &Principal, query: String) -> Result<(), ApiError> {
        let command = AuditAccessCommand::RecordRead {
            query,
            format: "proof".to_string(),
        };
        self.record_audit_access(by, command).await
    }

    async fn record_audit_access(
        &self,
        by: &Principal,
        command: AuditAccessCommand,
    ) -> Result<(), ApiError> {
        let id = uuid::Uuid::now_v7().to_string();
        self.app
            .execute::<AuditAccess>(&id, &actor_of(by, None), || command.clone())
            .await
            .map(drop)
            .map_err(api_error)
    }
}

fn unavailable(err: AppError) -> LoginError {
    tracing::error!(error = %err, "authentication cannot reach the store");
    LoginError::Unavailable
}

/// A readable summary of an audit query, for the record of who read what.
fn describe(query: &EventQuery) -> String {
    let fields = [
        ("since", query.since.clone()),
        ("until", query.until.clone()),
        ("user", query.user.clone()),
        ("action", query.action.clone()),
        ("outcome", query.outcome.clone()),
        ("protocol", query.protocol.clone()),
        ("path_prefix", query.path_prefix.clone()),
        ("remote_addr", query.remote_addr.clone()),
        ("after", (query.after > 0).then(|| query.after.to_string())),
    ];
    let parts: Vec<String> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}={v}")))
        .collect();
    parts.join("&")
}

#[async_trait]
impl<R: PersistedEventRepository + Clone + 'static> AdminApi for AdminService<R> {
    async fn login_password(
        &self,
        client: &ClientInfo,
        username: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<Principal, LoginError> {
        let admin: Admin = self.app.load(username).await.map_err(unavailable)?;
        if admin.exists() {
            let hash = Some(admin.password_hash.clone());
            if !self.gateway.verify_password(password, hash).await {
                return Err(self
                    .fail(
                        client,
                        username,
                        LoginMethod::Password,
                        true,
                        "wrong password",
                    )
                    .await);
            }
            let Some(role) = admin.active_role() else {
                return Err(self
                    .fail(
                        client,
                        username,
                        LoginMethod::Password,
                        true,
                        "account disabled",
                    )
                    .await);
            };
            self.record_login(client, username, LoginMethod::Password, true, None)
                .await;
            return Ok(Principal::Admin {
                name: username.to_string(),
                role,
            });
        }
        let actor = Actor {
            actor: username.to_string(),
            user: Some(username.to_string()),
            protocol: Some(client.protocol.as_str().to_string()),
            ..Actor::default()
        };
        let checked = self
            .gateway
            .check_password(&actor, username, password, code, false)
            .await?;
        let failure = match checked {
            PasswordCheck::Passed(user) => {
                let groups = self.gateway.groups_of(&user).await.map_err(unavailable)?;
                let rules = AccessRules::effective(&user.access, groups.iter().map(|g| &g.access));
                self.gateway
                    .conditions(
                        &user,
                        &rules,
                        client.protocol,
                        Some(&client.remote_addr),
                        LoginMethod::Password,
                    )
                    .err()
                    .map(|refusal| refusal.to_string())
            }
            PasswordCheck::NeedsCode(_) => Some("second factor code missing".to_string()),
            PasswordCheck::Failed(reason) => Some(reason),
        };
        if let Some(reason) = failure {
            return Err(self
                .fail(client, username, LoginMethod::Password, false, &reason)
                .await);
        }
        self.record_login(client, username, LoginMethod::Password, false, None)
            .await;
        Ok(Principal::User {
            name: username.to_string(),
        })
    }

    async fn issue_token(&self, principal: &Principal) -> Result<IssuedToken, ApiError> {
        let deps = &self.app.inner.deps;
        let now = deps.clock.now().timestamp();
        let ttl = deps.token_ttl.as_secs().max(1);
        let claims = TokenClaims {
            subject: principal.name().to_string(),
            admin: matches!(principal, Principal::Admin { .. }),
            issued_at: now,
            expires_at: now + ttl as i64,
            token_id: uuid::Uuid::new_v4().to_string(),
        };
        let access_token = deps.tokens.sign(&claims).map_err(|err| {
            tracing::error!(%err, "cannot sign a token");
            ApiError::Unavailable
        })?;
        Ok(IssuedToken {
            access_token,
            expires_in: ttl,
        })
    }

    async fn authenticate_token(
        &self,
        client: &ClientInfo,
        token: &str,
    ) -> Result<Principal, LoginError> {
        let deps = &self.app.inner.deps;
        let claims = match deps.tokens.verify(token, deps.clock.now().timestamp()) {
            Ok(claims) => claims,
            Err(err) => {
                let reason = match err {
                    TokenError::Expired => "expired token",
                    TokenError::Invalid => "invalid token",
                };
                return Err(self
                    .fail(client, "", LoginMethod::Token, false, reason)
                    .await);
            }
        };
        match self
            .current_principal(&claims.subject, claims.admin)
            .await?
        {
            Ok(principal) => Ok(principal),
            Err(reason) => Err(self
                .fail(
                    client,
                    &claims.subject,
                    LoginMethod::Token,
                    claims.admin,
                    reason,
                )
                .await),
        }
    }

    async fn authenticate_api_key(
        &self,
        client: &ClientInfo,
        key: &str,
    ) -> Result<Principal, LoginError> {
        let method = LoginMethod::ApiKey;
        let parsed = key
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .filter(|(id, _)| !id.is_empty() && id.len() <= 64);
        let Some((id, secret)) = parsed else {
            return Err(self
                .fail(client, "", method, true, "malformed API key")
                .await);
        };
        let stored: ApiKey = self.app.load(id).await.map_err(unavailable)?;
        if !stored.exists() || !same(&stored.secret_sha256, &sha256_hex(secret)) {
            return Err(self.fail(client, "", method, true, "unknown API key").await);
        }
        if stored.revoked {
            return Err(self
                .fail(client, &stored.admin, method, true, "revoked API key")
                .await);
        }
        let now = self.app.inner.deps.clock.now();
        let expired = stored
            .expires_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t <= now);
        if expired {
            return Err(self
                .fail(client, &stored.admin, method, true, "expired API key")
                .await);
        }
        match self.current_principal(&stored.admin, true).await? {
            Ok(Principal::Admin { name, role }) => {
                // The key never grants more than its administrator has now.
                let key_role = stored.role.unwrap_or(Role::Auditor);
                let role = if role == Role::Admin { key_role } else { role };
                Ok(Principal::Admin { name, role })
            }
            Ok(other) => Ok(other),
            Err(reason) => Err(self.fail(client, &stored.admin, method, true, reason).await),
        }
    }

    async fn list_users(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<UserRecord>>, ApiError> {
        reader(by)?;
        self.fresh().await?;
        let users = self.app.list_users().await.map_err(api_error)?;
        let items = users
            .into_iter()
            .map(|u| {
                let record = UserRecord {
                    username: u.username.clone(),
                    home: u.home,
                    enabled: u.enabled,
                    has_password: u.has_password,
                    public_keys: u.public_keys,
                    groups: u.groups,
                    policies: u.policies,
                    ftp_require_tls: u.ftp_require_tls,
                    full_name: u.full_name,
                    email: u.email,
                    folders: folder_records(&u.folders),
                    access: u.access,
                    used_bytes: u.used_bytes,
                    used_files: u.used_files,
                    directory_dn: u.directory_dn,
                    totp: u.totp,
                };
                (
                    u.username,
                    Versioned {
                        version: u.version,
                        value: record,
                    },
                )
            })
            .collect();
        Ok(page_of(items, &params))
    }

    async fn get_user(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<UserRecord>, ApiError> {
        reader(by)?;
        self.user_versioned(name).await
    }

    async fn create_user(
        &self,
        by: &Principal,
        spec: UserSpec,
    ) -> Result<Versioned<UserRecord>, ApiError> {
        let admin = writer(by)?;
        if self.versioned::<User>(&spec.username).await?.0.exists() {
            return Err(ApiError::Conflict(format!(
                "user {:?} already exists",
                spec.username
            )));
        }
        let username = spec.username.clone();
        let folders = parse_folders(spec.folders)?;
        self.app
            .create_user(
                admin,
                NewUser {
                    username: spec.username,
                    password: spec.password,
                    password_hash: spec.password_hash,
                    public_keys: spec.public_keys,
                    home: spec.home,
                    groups: spec.groups,
                    policies: spec.policies,
                    ftp_require_tls: spec.ftp_require_tls,
                    full_name: spec.full_name,
                    email: spec.email,
                    folders,
                },
            )
            .await
            .map_err(api_error)?;
        self.user_versioned(&username).await
    }

    async fn update_user(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        changes: UserChanges,
    ) -> Result<Versioned<UserRecord>, ApiError> {
        writer(by)?;
        let password_hash = changes
            .password
            .as_deref()
            .map(|p| self.app.hash_password(p))
            .transpose()
            .map_err(api_error)?;
        let public_keys = changes
            .public_keys
            .as_deref()
            .map(parse_keys)
            .transpose()
            .map_err(api_error)?;
        if let Some(groups) = &changes.groups {
            self.app.require_groups(groups).await.map_err(api_error)?;
        }
        if let Some(policies) = &changes.policies {
            self.app
                .require_policies(policies)
                .await
                .map_err(api_error)?;
        }
        let folders = changes.folders.map(parse_folders).transpose()?;
        if let Some(folders) = &folders {
            self.app.require_mounts(folders).await.map_err(api_error)?;
        }
        let profile = if changes.full_name.is_some() || changes.email.is_some() {
            let current: User = self.app.load(name).await.map_err(api_error)?;
            if !current.exists() {
                return Err(not_found("user", name));
            }
            Some(
                self.app
                    .seal_profile(
                        name,
                        &current.profile,
                        changes.full_name.as_deref(),
                        changes.email.as_deref(),
                    )
                    .await
                    .map_err(api_error)?,
            )
        } else {
            None
        };
        let update = UserUpdate {
            password_hash,
            public_keys,
            groups: changes.groups,
            policies: changes.policies,
            enabled: changes.enabled,
            ftp_require_tls: changes.ftp_require_tls,
            profile,
            folders,
            access: changes.access,
        };
        let (user, version) = self
            .run::<User>(by, name, expected, UserCommand::Update(update))
            .await?;
        let profile = self
            .app
            .open_profile(&user.profile)
            .await
            .map_err(api_error)?;
        let usage = self.usage_of(&user.username).await?;
        Ok(Versioned {
            version,
            value: user_record(&user, profile, usage),
        })
    }

    async fn open_event_stream(&self, by: &Principal, query: &str) -> Result<u64, ApiError> {
        reader(by)?;
        self.record_audit_access(
            by,
            AuditAccessCommand::RecordRead {
                query: query.to_string(),
                format: "websocket".to_string(),
            },
        )
        .await?;
        self.app
            .inner
            .deps
            .log
            .head()
            .await
            .map_err(|e| api_error(e.into()))
    }

    async fn stream_events(
        &self,
        by: &Principal,
        stream: &StreamFilter,
        after: u64,
        limit: u32,
    ) -> Result<StreamPage, ApiError> {
        reader(by)?;
        let events = self
            .app
            .sealed_after(after, limit)
            .await
            .map_err(api_error)?;
        let mut page = StreamPage {
            events: Vec::new(),
            examined_to: after,
        };
        for (event, hash) in &events {
            if let Some(body) = self
                .app
                .render_selected(&stream.filter, stream.format, event, hash.as_deref())
                .await
                .map_err(api_error)?
            {
                page.events.push((event.position, body));
            }
            page.examined_to = event.position;
        }
        Ok(page)
    }

    async fn wait_for_commit(&self, timeout: std::time::Duration) {
        let _ = tokio::time::timeout(timeout, self.app.inner.committed.notified()).await;
    }

    async fn create_subscription(
        &self,
        by: &Principal,
        spec: SubscriptionRecord,
    ) -> Result<(SubscriptionRecord, String), ApiError> {
        writer(by)?;
        let format = match spec.format.as_str() {
            "" | "tollgate" => EventFormat::Tollgate,
            "ocsf" => EventFormat::Ocsf,
            other => {
                return Err(ApiError::Invalid(format!(
                    "format {other:?} is neither tollgate nor ocsf"
                )));
            }
        };
        let new = NewSubscription {
            name: spec.name,
            url: spec.url,
            kafka_topic: spec.kafka_topic,
            filter: SubscriptionFilter {
                event_types: spec.event_types,
                users: spec.users,
                path_prefix: spec.path_prefix,
                outcome: spec.outcome,
            },
            format,
        };
        let (state, secret) = self
            .app
            .create_subscription(&actor_of(by, None), new)
            .await
            .map_err(api_error)?;
        Ok((subscription_record(&state), secret))
    }

    async fn list_subscriptions(
        &self,
        by: &Principal,
    ) -> Result<Vec<SubscriptionRecord>, ApiError> {
        reader(by)?;
        self.fresh().await?;
        let docs = self
            .app
            .inner
            .deps
            .projections
            .list(crate::webhooks::SUBSCRIPTIONS)
            .await
            .map_err(|e| api_error(e.into()))?;
        Ok(docs
            .into_iter()
            .filter_map(|(_, doc)| serde_json::from_value::<Projected<Subscription>>(doc).ok())
            .filter(|p| p.state.exists())
            .map(|p| subscription_record(&p.state))
            .collect())
    }

    async fn get_subscription(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<SubscriptionRecord, ApiError> {
        reader(by)?;
        let sub: Subscription = self.app.load(name).await.map_err(api_error)?;
        if !sub.exists() {
            return Err(not_found("subscription", name));
        }
        Ok(subscription_record(&sub))
    }

    async fn set_subscription_enabled(
        &self,
        by: &Principal,
        name: &str,
        enabled: bool,
    ) -> Result<SubscriptionRecord, ApiError> {
        writer(by)?;
        let command = if enabled {
            SubscriptionCommand::Enable
        } else {
            SubscriptionCommand::Disable {
                reason: format!("disabled by {}", by.name()),
            }
        };
        let state = self
            .app
            .on_subscription(&actor_of(by, None), name, command)
            .await
            .map_err(api_error)?;
        Ok(subscription_record(&state))
    }

    async fn delete_subscription(&self, by: &Principal, name: &str) -> Result<(), ApiError> {
        writer(by)?;
        self.app
            .on_subscription(&actor_of(by, None), name, SubscriptionCommand::Delete)
            .await
            .map(drop)
            .map_err(api_error)
    }

    async fn subscription_deliveries(
        &self,
        by: &Principal,
        name: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, ApiError> {
        reader(by)?;
        self.get_subscription(by, name).await?;
        self.app
            .inner
            .deps
            .deliveries
            .deliveries(name, limit.clamp(1, 1000))
            .await
            .map_err(|e| api_error(e.into()))
    }

    async fn redeliver(
        &self,
        by: &Principal,
        name: &str,
        request: RedeliveryRequest,
    ) -> Result<RedeliveryReport, ApiError> {
        writer(by)?;
        let (first, last) = match (request.event_id, request.first, request.last) {
            (Some(id), None, None) => {
                let position = self
                    .app
                    .inner
                    .deps
                    .log
                    .position_of(&id)
                    .await
                    .map_err(|e| api_error(e.into()))?
                    .ok_or_else(|| not_found("event", &id))?;
                (position, position)
            }
            (None, Some(first), Some(last)) => (first, last),
            _ => {
                return Err(ApiError::Invalid(
                    "give either event_id, or first and last".to_string(),
                ));
            }
        };
        let done = self
            .app
            .redeliver(name, first, last)
            .await
            .map_err(api_error)?;
        Ok(RedeliveryReport {
            attempted: done.attempted,
            delivered: done.delivered,
        })
    }

    async fn erase_user(&self, by: &Principal, name: &str) -> Result<Vec<String>, ApiError> {
        writer(by)?;
        let actor = actor_of(by, Some(name));
        self.app
            .erase_personal_data(&actor, name)
            .await
            .map_err(api_error)
    }

    async fn delete_user(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError> {
        writer(by)?;
        self.run::<User>(by, name, expected, UserCommand::Delete)
            .await
            .map(drop)
    }

    async fn list_groups(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<GroupRecord>>, ApiError> {
        reader(by)?;
        self.list_of(GROUPS, &params, |g: &Group| {
            g.exists().then(|| group_record(g))
        })
        .await
    }

    async fn get_group(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<GroupRecord>, ApiError> {
        reader(by)?;
        let (group, version) = self.versioned::<Group>(name).await?;
        if !group.exists() {
            return Err(not_found("group", name));
        }
        Ok(Versioned {
            version,
            value: group_record(&group),
        })
    }

    async fn create_group(
        &self,
        by: &Principal,
        group: GroupRecord,
    ) -> Result<Versioned<GroupRecord>, ApiError> {
        writer(by)?;
        self.app
            .require_policies(&group.policies)
            .await
            .map_err(api_error)?;
        let folders = parse_folders(group.folders)?;
        self.app.require_mounts(&folders).await.map_err(api_error)?;
        let (state, version) = self
            .run::<Group>(
                by,
                &group.name,
                None,
                GroupCommand::Create {
                    name: group.name.clone(),
                    policies: group.policies.clone(),
                    folders,
                },
            )
            .await?;
        Ok(Versioned {
            version,
            value: group_record(&state),
        })
    }

    async fn update_group(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        changes: GroupChanges,
    ) -> Result<Versioned<GroupRecord>, ApiError> {
        let GroupChanges {
            policies,
            folders,
            access,
        } = changes;
        writer(by)?;
        if let Some(policies) = &policies {
            self.app
                .require_policies(policies)
                .await
                .map_err(api_error)?;
        }
        let folders = folders.map(parse_folders).transpose()?;
        if let Some(folders) = &folders {
            self.app.require_mounts(folders).await.map_err(api_error)?;
        }
        let mut commands = Vec::new();
        if let Some(policies) = policies {
            commands.push(GroupCommand::SetPolicies { policies });
        }
        if let Some(folders) = folders {
            commands.push(GroupCommand::SetFolders { folders });
        }
        if let Some(access) = access {
            commands.push(GroupCommand::SetAccess { access });
        }
        if commands.is_empty() {
            let (group, version) = self.versioned::<Group>(name).await?;
            if !group.exists() {
                return Err(not_found("group", name));
            }
            return Ok(Versioned {
                version,
                value: group_record(&group),
            });
        }
        let mut expected = expected;
        let mut result = None;
        for command in commands {
            let (state, version) = self.run::<Group>(by, name, expected, command).await?;
            // The second change follows the first one's version.
            expected = expected.map(|_| version);
            result = Some((state, version));
        }
        let (state, version) = result.expect("at least one command ran");
        Ok(Versioned {
            version,
            value: group_record(&state),
        })
    }

    async fn delete_group(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError> {
        writer(by)?;
        self.run::<Group>(by, name, expected, GroupCommand::Delete)
            .await
            .map(drop)
    }

    async fn list_policies(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<PolicyRecord>>, ApiError> {
        reader(by)?;
        self.list_of(POLICIES, &params, |p: &Policy| {
            p.exists().then(|| policy_record(p))
        })
        .await
    }

    async fn get_policy(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<PolicyRecord>, ApiError> {
        reader(by)?;
        let (policy, version) = self.versioned::<Policy>(name).await?;
        if !policy.exists() {
            return Err(not_found("policy", name));
        }
        Ok(Versioned {
            version,
            value: policy_record(&policy),
        })
    }

    async fn create_policy(
        &self,
        by: &Principal,
        policy: PolicyRecord,
    ) -> Result<Versioned<PolicyRecord>, ApiError> {
        writer(by)?;
        let rules = rules_of(&policy.rules)?;
        let (state, version) = self
            .run::<Policy>(
                by,
                &policy.name,
                None,
                PolicyCommand::Create {
                    name: policy.name.clone(),
                    rules: rules.clone(),
                },
            )
            .await?;
        Ok(Versioned {
            version,
            value: policy_record(&state),
        })
    }

    async fn update_policy(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        rules: Vec<RuleRecord>,
    ) -> Result<Versioned<PolicyRecord>, ApiError> {
        writer(by)?;
        let rules = rules_of(&rules)?;
        let (state, version) = self
            .run::<Policy>(
                by,
                name,
                expected,
                PolicyCommand::ReplaceRules {
                    rules: rules.clone(),
                },
            )
            .await?;
        Ok(Versioned {
            version,
            value: policy_record(&state),
        })
    }

    async fn delete_policy(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError> {
        writer(by)?;
        self.run::<Policy>(by, name, expected, PolicyCommand::Delete)
            .await
            .map(drop)
    }

    async fn list_mounts(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<MountRecord>>, ApiError> {
        reader(by)?;
        self.list_of(MOUNTS, &params, |m: &Mount| {
            m.exists().then(|| mount_record(m)).flatten()
        })
        .await
    }

    async fn get_mount(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<MountRecord>, ApiError> {
        reader(by)?;
        let (mount, version) = self.versioned::<Mount>(name).await?;
        match mount_record(&mount).filter(|_| mount.exists()) {
            Some(value) => Ok(Versioned { version, value }),
            None => Err(not_found("mount", name)),
        }
    }

    async fn create_mount(
        &self,
        by: &Principal,
        mount: MountRecord,
    ) -> Result<Versioned<MountRecord>, ApiError> {
        writer(by)?;
        let storage =
            crate::mounts::spec(mount.storage, None, self.app.inner.deps.secrets.as_ref())?;
        let encryption_key = mount
            .encrypted
            .then(|| SealedSecret(self.app.inner.deps.subject_cipher.new_wrapped_key()));
        let command = MountCommand::Create {
            name: mount.name.clone(),
            description: mount.description,
            storage,
            encryption_key,
        };
        let (state, version) = self.run::<Mount>(by, &mount.name, None, command).await?;
        let value = mount_record(&state).ok_or(ApiError::Unavailable)?;
        Ok(Versioned { version, value })
    }

    async fn update_mount(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        description: Option<String>,
        storage: Option<StorageRecord>,
    ) -> Result<Versioned<MountRecord>, ApiError> {
        writer(by)?;
        let (current, _) = self.versioned::<Mount>(name).await?;
        if !current.exists() {
            return Err(not_found("mount", name));
        }
        let storage = storage
            .map(|s| {
                crate::mounts::spec(
                    s,
                    current.storage.as_ref(),
                    self.app.inner.deps.secrets.as_ref(),
                )
            })
            .transpose()?;
        let command = MountCommand::Change {
            description,
            storage,
        };
        let (state, version) = self.run::<Mount>(by, name, expected, command).await?;
        let value = mount_record(&state).ok_or(ApiError::Unavailable)?;
        Ok(Versioned { version, value })
    }

    async fn delete_mount(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError> {
        writer(by)?;
        if let Some(user) = self.mount_user(name).await? {
            return Err(ApiError::Conflict(format!(
                "mount {name:?} is a virtual folder of {user}; remove it there first"
            )));
        }
        self.run::<Mount>(by, name, expected, MountCommand::Delete)
            .await
            .map(drop)
    }

    async fn enroll_totp(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<TotpEnrolmentRecord, ApiError> {
        let admin = writer(by)?;
        let enrolled = self.app.enroll_totp(admin, name).await.map_err(api_error)?;
        Ok(TotpEnrolmentRecord {
            secret: enrolled.secret,
            uri: enrolled.uri,
            qr_png: enrolled.qr_png,
            recovery_codes: enrolled.recovery_codes,
        })
    }

    async fn confirm_totp(&self, by: &Principal, name: &str, code: &str) -> Result<(), ApiError> {
        let admin = writer(by)?;
        self.app
            .confirm_totp(admin, name, code)
            .await
            .map_err(api_error)
    }

    async fn disable_totp(&self, by: &Principal, name: &str) -> Result<(), ApiError> {
        let admin = writer(by)?;
        self.app.disable_totp(admin, name).await.map_err(api_error)
    }

    async fn check_mount(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Result<(), MountCheckFailure>, ApiError> {
        writer(by)?;
        let (mount, _) = self.versioned::<Mount>(name).await?;
        let Some(storage) = mount.storage.clone().filter(|_| mount.exists()) else {
            return Err(not_found("mount", name));
        };
        let target = MountTarget {
            name: name.to_string(),
            storage,
            encryption_key: mount.encryption_key.clone(),
        };
        Ok(self
            .app
            .inner
            .deps
            .mounts
            .check(&target)
            .await
            .map_err(|err| check_failure(&err)))
    }

    async fn list_admins(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<AdminRecord>>, ApiError> {
        reader(by)?;
        self.list_of(ADMINS, &params, |a: &Admin| {
            a.exists().then(|| admin_record(a))
        })
        .await
    }

    async fn get_admin(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<AdminRecord>, ApiError> {
        reader(by)?;
        let (admin, version) = self.versioned::<Admin>(name).await?;
        if !admin.exists() {
            return Err(not_found("administrator", name));
        }
        Ok(Versioned {
            version,
            value: admin_record(&admin),
        })
    }

    async fn create_admin(
        &self,
        by: &Principal,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<Versioned<AdminRecord>, ApiError> {
        writer(by)?;
        if self.versioned::<User>(username).await?.0.exists() {
            return Err(ApiError::Conflict(format!(
                "{username:?} is a user name; administrators and users need distinct names"
            )));
        }
        let password_hash = self.app.hash_password(password).map_err(api_error)?;
        let (state, version) = self
            .run::<Admin>(
                by,
                username,
                None,
                AdminCommand::Create {
                    username: username.to_string(),
                    password_hash: password_hash.clone(),
                    role,
                },
            )
            .await?;
        Ok(Versioned {
            version,
            value: admin_record(&state),
        })
    }

    async fn update_admin(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        changes: AdminChanges,
    ) -> Result<Versioned<AdminRecord>, ApiError> {
        let me = writer(by)?;
        let demotes = changes.role.is_some_and(|r| r != Role::Admin);
        if me == name && (changes.enabled == Some(false) || demotes) {
            return Err(ApiError::Conflict(
                "an administrator cannot disable or demote themselves".to_string(),
            ));
        }
        let password_hash = changes
            .password
            .as_deref()
            .map(|p| self.app.hash_password(p))
            .transpose()
            .map_err(api_error)?;
        let (state, version) = self
            .run::<Admin>(
                by,
                name,
                expected,
                AdminCommand::Update {
                    password_hash: password_hash.clone(),
                    role: changes.role,
                    enabled: changes.enabled,
                },
            )
            .await?;
        Ok(Versioned {
            version,
            value: admin_record(&state),
        })
    }

    async fn delete_admin(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError> {
        let me = writer(by)?;
        if me == name {
            return Err(ApiError::Conflict(
                "an administrator cannot delete themselves".to_string(),
            ));
        }
        self.run::<Admin>(by, name, expected, AdminCommand::Delete)
            .await
            .map(drop)
    }

    async fn list_api_keys(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<ApiKeyRecord>, ApiError> {
        reader(by)?;
        let items = self
            .projected::<ApiKey>(API_KEYS)
            .await?
            .into_iter()
            .filter(|(_, p)| p.state.exists())
            .map(|(key, p)| {
                let record = key_record(&key, &p.state);
                (key, record)
            })
            .collect();
        Ok(page_of(items, &params))
    }

    async fn create_api_key(
        &self,
        by: &Principal,
        name: &str,
        role: Option<Role>,
        expires_at: Option<String>,
    ) -> Result<CreatedApiKey, ApiError> {
        let admin = writer(by)?.to_string();
        if let Some(expiry) = &expires_at {
            let parsed = chrono::DateTime::parse_from_rfc3339(expiry).map_err(|_| {
                ApiError::Invalid(format!("expires_at {expiry:?} is not an RFC 3339 time"))
            })?;
            if parsed <= self.app.inner.deps.clock.now() {
                return Err(ApiError::Invalid("expires_at is in the past".to_string()));
            }
        }
        let id = random_text(1);
        let secret = random_text(2);
        let role = role.unwrap_or(Role::Admin);
        let command = ApiKeyCommand::Create {
            name: name.to_string(),
            admin: admin.clone(),
            role,
            secret_sha256: sha256_hex(&secret),
            expires_at,
        };
        let (state, _) = self.run::<ApiKey>(by, &id, None, command).await?;
        Ok(CreatedApiKey {
            record: key_record(&id, &state),
            key: format!("{KEY_PREFIX}{id}_{secret}"),
        })
    }

    async fn revoke_api_key(&self, by: &Principal, id: &str) -> Result<(), ApiError> {
        writer(by)?;
        self.run::<ApiKey>(by, id, None, ApiKeyCommand::Revoke)
            .await
            .map(drop)
    }

    async fn query_events(&self, by: &Principal, query: EventQuery) -> Result<EventPage, ApiError> {
        reader(by)?;
        let page = self.app.query_events(&query).await.map_err(api_error)?;
        self.record_audit_access(
            by,
            AuditAccessCommand::RecordRead {
                query: describe(&query),
                format: "json".to_string(),
            },
        )
        .await?;
        Ok(page)
    }

    async fn start_export(
        &self,
        by: &Principal,
        query: &EventQuery,
        format: &str,
    ) -> Result<(), ApiError> {
        reader(by)?;
        crate::queries::check_query(query).map_err(api_error)?;
        self.record_audit_access(
            by,
            AuditAccessCommand::RecordRead {
                query: describe(query),
                format: format.to_string(),
            },
        )
        .await
    }

    async fn read_events(&self, by: &Principal, query: EventQuery) -> Result<EventPage, ApiError> {
        reader(by)?;
        self.app.query_events(&query).await.map_err(api_error)
    }

    async fn verify_audit(&self, by: &Principal) -> Result<AuditVerification, ApiError> {
        reader(by)?;
        let report = self.app.verify_audit().await.map_err(api_error)?;
        let result = report.result();
        let ok = report.finding.is_none();
        let finding = report.finding.map(|f| f.to_string());
        self.record_audit_access(by, AuditAccessCommand::RecordVerification { result, ok })
            .await?;
        Ok(AuditVerification {
            sealed: report.sealed,
            unsealed: report.unsealed,
            pruned: report.pruned,
            checkpoints: report.checkpoints,
            checkpointed: report.checkpointed,
            finding,
        })
    }

    async fn audit_checkpoint(&self, by: &Principal) -> Result<SignedCheckpoint, ApiError> {
        reader(by)?;
        self.record_proof_read(by, "checkpoint".to_string()).await?;
        let checkpoint = self
            .app
            .checkpoint_now()
            .await
            .map_err(api_error)?
            .ok_or_else(|| ApiError::NotFound("the audit log is empty".to_string()))?;
        let verifier_key = self
            .app
            .verifier_key_of(&checkpoint.key_id)
            .await
            .map_err(api_error)?;
        Ok(SignedCheckpoint {
            size: checkpoint.size,
            root: checkpoint.root,
            key_id: checkpoint.key_id,
            note: checkpoint.note,
            verifier_key,
            time: checkpoint.time,
        })
    }

    async fn inclusion_proof(
        &self,
        by: &Principal,
        event_id: &str,
    ) -> Result<InclusionProof, ApiError> {
        reader(by)?;
        self.record_proof_read(by, format!("inclusion event_id={event_id}"))
            .await?;
        self.app.inclusion_proof(event_id).await.map_err(api_error)
    }

    async fn consistency_proof(
        &self,
        by: &Principal,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, ApiError> {
        reader(by)?;
        self.record_proof_read(by, format!("consistency first={first} second={second}"))
            .await?;
        self.app
            .consistency_proof(first, second)
            .await
            .map_err(api_error)
    }

    async fn list_transfers(
        &self,
        by: &Principal,
        params: ListParams,
        user: Option<String>,
    ) -> Result<Page<TransferRecord>, ApiError> {
        // A user sees only their own transfers; administrators see all.
        let only = match by {
            Principal::User { name } => {
                if user.as_ref().is_some_and(|u| u != name) {
                    return Err(ApiError::Forbidden(
                        "a user can only list their own transfers".to_string(),
                    ));
                }
                Some(name.clone())
            }
            Principal::Admin { .. } => user,
        };
        self.fresh().await?;
        let views = self.app.list_transfers().await.map_err(api_error)?;
        let items = views
            .into_iter()
            .filter(|v| {
                only.as_ref()
                    .is_none_or(|u| v.context.as_ref().is_some_and(|c| &c.username == u))
            })
            .map(|v| {
                let text = |value: serde_json::Value| value.as_str().map(str::to_string);
                let context = v.context.as_ref();
                let record = TransferRecord {
                    id: v.id.clone(),
                    state: v
                        .state
                        .and_then(|s| text(serde_json::to_value(s).unwrap_or_default()))
                        .unwrap_or_else(|| "unknown".to_string()),
                    username: context.map(|c| c.username.clone()),
                    protocol: context.map(|c| c.protocol.as_str().to_string()),
                    direction: context
                        .and_then(|c| text(serde_json::to_value(c.direction).unwrap_or_default())),
                    path: context.map(|c| c.path.clone()),
                    remote_addr: context.map(|c| c.remote_addr.clone()),
                    session_id: context.map(|c| c.session_id.clone()),
                    bytes: v.bytes,
                    sha256: v.sha256.clone(),
                    reason: v.reason.clone(),
                    started_at: v.started_at.clone(),
                    ended_at: v.ended_at.clone(),
                };
                // Newest first: order keys by inverted start time, then id.
                (format!("{}|{}", invert(&v.started_at), v.id), record)
            })
            .collect();
        Ok(page_of(items, &params))
    }

    async fn list_sessions(&self, by: &Principal) -> Result<Vec<SessionRecord>, ApiError> {
        reader(by)?;
        Ok(self.app.inner.live.list())
    }

    async fn list_bans(&self, by: &Principal) -> Result<Vec<BanRecord>, ApiError> {
        reader(by)?;
        self.fresh().await?;
        let mut bans: Vec<BanRecord> = self
            .app
            .bans()
            .await
            .map_err(api_error)?
            .into_iter()
            .map(|ban| BanRecord {
                address: ban.address,
                until: chrono::DateTime::from_timestamp(ban.until, 0)
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                bans: ban.bans,
            })
            .collect();
        bans.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(bans)
    }

    async fn unban(&self, by: &Principal, address: &str) -> Result<(), ApiError> {
        let admin = writer(by)?;
        let actor = Actor {
            actor: admin.to_string(),
            ..Actor::default()
        };
        self.app.unban(&actor, address).await.map_err(api_error)
    }

    async fn disconnect_session(&self, by: &Principal, id: &str) -> Result<(), ApiError> {
        writer(by)?;
        let Some(record) = self.app.inner.live.get(id) else {
            return Err(not_found("session", id));
        };
        // The address as the session's own events record it (sealed).
        let session: Session = self.app.load(id).await.map_err(api_error)?;
        let actor = Actor {
            actor: by.name().to_string(),
            user: record.username.clone(),
            session_id: Some(id.to_string()),
            remote_addr: Some(session.remote_addr),
            protocol: Some(record.protocol.clone()),
        };
        let by_name = by.name().to_string();
        self.app
            .execute::<Session>(id, &actor, || SessionCommand::RequestDisconnect {
                by: by_name.clone(),
            })
            .await
            .map_err(api_error)?;
        self.app.inner.live.request_disconnect(id);
        Ok(())
    }

    async fn me(&self, by: &Principal) -> Result<Versioned<UserRecord>, ApiError> {
        match by {
            Principal::User { name } => self.user_versioned(name).await,
            Principal::Admin { .. } => Err(ApiError::Forbidden(
                "this resource is for users".to_string(),
            )),
        }
    }

    async fn ready(&self) -> Result<(), ApiError> {
        self.app
            .inner
            .deps
            .log
            .head()
            .await
            .map(drop)
            .map_err(|e| api_error(e.into()))
    }

    async fn metrics(&self) -> Result<Vec<Sample>, ApiError> {
        let mut samples = self.app.inner.metrics.samples();
        let mut active = std::collections::BTreeMap::<String, u64>::new();
        for session in self.app.inner.live.list() {
            *active.entry(session.protocol).or_default() += 1;
        }
        for (protocol, n) in active {
            samples.push(Sample {
                name: "tollgate_sessions_active",
                kind: "gauge",
                help: "Connections open on this process, by protocol.",
                labels: vec![("protocol", protocol)],
                value: n as f64,
            });
        }
        let status = self.app.subscriber_status().await.map_err(api_error)?;
        for subscriber in status {
            samples.push(Sample {
                name: "tollgate_event_log_lag",
                kind: "gauge",
                help: "Events committed but not yet processed, by subscriber.",
                labels: vec![("subscriber", subscriber.name.to_string())],
                value: subscriber.head.saturating_sub(subscriber.position) as f64,
            });
        }
        Ok(samples)
    }
}

/// A key that sorts the newest time first.
fn invert(time: &str) -> String {
    time.chars()
        .map(|c| match c.to_digit(10) {
            Some(d) => char::from_digit(9 - d, 10).unwrap_or(c),
            None => c,
        })
        .collect()
}
