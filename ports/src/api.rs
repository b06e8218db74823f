//! The inbound port of the administrative HTTP API: authentication of
//! administrators, users and API keys; the admin resources; the audit
//! queries; live sessions, health and metrics.
//!
//! Every method that acts on behalf of someone takes the authenticated
//! [`Principal`]; the implementation decides what that principal may do, so
//! the HTTP adapter holds no authorisation rule.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tollgate_domain::access::AccessRules;
use tollgate_domain::admin::Role;

use crate::inbound::{ClientInfo, LoginError};

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An administrator (or an API key acting as one) with the role in force.
    Admin {
        /// The administrator's name.
        name: String,
        /// The role in force (an API key's role may be narrower).
        role: Role,
    },
    /// A file-transfer user.
    User {
        /// The user's name.
        name: String,
    },
}

impl Principal {
    /// The principal's name.
    pub fn name(&self) -> &str {
        match self {
            Principal::Admin { name, .. } | Principal::User { name } => name,
        }
    }
}

/// Why an API call was refused. Each kind's doc names its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// Malformed or invalid input (bad name, rule, key, path). HTTP 400.
    #[error("{0}")]
    Invalid(String),
    /// The caller's role does not allow this. HTTP 403.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource. HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// The resource exists already, or the change conflicts with its state. HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The caller's `If-Match` version is not the current one. HTTP 412.
    #[error("the resource is at version {current}, not the one given in If-Match")]
    VersionMismatch {
        /// The current version.
        current: u64,
    },
    /// The service cannot answer now (store unavailable). HTTP 503.
    #[error("the service is unavailable")]
    Unavailable,
}

/// A resource with its aggregate version (the ETag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The number of events of the aggregate.
    pub version: u64,
    /// The resource.
    pub value: T,
}

/// Cursor pagination over a list ordered by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListParams {
    /// Resume after this key (the `next_cursor` of the previous page).
    pub after: Option<String>,
    /// Page size.
    pub limit: usize,
    /// Only names starting with this.
    pub prefix: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The cursor for the next page, absent on the last one.
    pub next_cursor: Option<String>,
}

/// A mount shown in a namespace at a virtual path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRecord {
    /// Where it appears (a virtual path below `/`).
    pub path: String,
    /// The mount's name.
    pub mount: String,
}

/// A user as administrators see it (never a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserRecord {
    pub username: String,
    pub home: String,
    pub enabled: bool,
    pub has_password: bool,
    pub public_keys: Vec<String>,
    pub groups: Vec<String>,
    pub policies: Vec<String>,
    pub ftp_require_tls: bool,
    /// In clear, or `[erased]`.
    pub full_name: Option<String>,
    /// In clear, or `[erased]`.
    pub email: Option<String>,
    pub folders: Vec<FolderRecord>,
    pub access: AccessRules,
    /// Bytes the user stores (completed uploads less removals).
    pub used_bytes: u64,
    /// Files the user stores.
    pub used_files: u64,
    /// The directory entry of a user provisioned from a directory.
    pub directory_dn: Option<String>,
    /// The second factor: `pending` until confirmed, `enabled`; none.
    pub totp: Option<String>,
}

/// What creating a user takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserSpec {
    pub username: String,
    /// Clear text, hashed before anything is recorded.
    pub password: Option<String>,
    /// A hash imported from another system, instead of `password`.
    pub password_hash: Option<String>,
    pub public_keys: Vec<String>,
    pub home: String,
    pub groups: Vec<String>,
    pub policies: Vec<String>,
    pub ftp_require_tls: bool,
    /// Personal data: sealed before it is recorded.
    pub full_name: Option<String>,
    /// Personal data: sealed before it is recorded.
    pub email: Option<String>,
    pub folders: Vec<FolderRecord>,
}

/// A partial update of a user; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct UserChanges {
    pub password: Option<String>,
    pub public_keys: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
    pub policies: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub ftp_require_tls: Option<bool>,
    /// Empty clears it.
    pub full_name: Option<String>,
    /// Empty clears it.
    pub email: Option<String>,
    pub folders: Option<Vec<FolderRecord>>,
    pub access: Option<AccessRules>,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct GroupRecord {
    pub name: String,
    pub policies: Vec<String>,
    pub folders: Vec<FolderRecord>,
    pub access: AccessRules,
}

/// A client address banned after failed logins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanRecord {
    /// The address.
    pub address: String,
    /// Until when (RFC 3339).
    pub until: String,
    /// How many times it was banned (each ban lasts twice the last).
    pub bans: u32,
}

/// A partial update of a group; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct GroupChanges {
    pub policies: Option<Vec<String>>,
    pub folders: Option<Vec<FolderRecord>>,
    pub access: Option<AccessRules>,
}

/// One policy rule: a virtual path prefix and the permissions it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RuleRecord {
    pub path: String,
    pub permissions: Vec<String>,
}

/// A policy.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PolicyRecord {
    pub name: String,
    pub rules: Vec<RuleRecord>,
}

/// What a secret field shows instead of the secret, and what a client sends
/// back to keep the stored secret unchanged.
pub const REDACTED: &str = "[redacted]";

/// A mount's storage backend. Secret fields hold clear text on the way in
/// (or [`REDACTED`] to keep the stored one) and [`REDACTED`] on the way out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum StorageRecord {
    Local {
        root: String,
    },
    S3 {
        bucket: String,
        region: String,
        endpoint: Option<String>,
        prefix: Option<String>,
        access_key_id: Option<String>,
        secret_access_key: Option<String>,
    },
    Gcs {
        bucket: String,
        prefix: Option<String>,
        credentials_json: Option<String>,
        endpoint: Option<String>,
    },
    Azure {
        account: String,
        container: String,
        prefix: Option<String>,
        access_key: Option<String>,
        endpoint: Option<String>,
    },
    Sftp {
        host: String,
        port: u16,
        username: String,
        root: Option<String>,
        password: Option<String>,
        private_key: Option<String>,
        host_key_fingerprint: Option<String>,
    },
}

/// A mount (virtual folder backend).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct MountRecord {
    pub name: String,
    pub description: String,
    pub storage: StorageRecord,
    /// Whether every file is encrypted at rest with the mount's own key
    /// (chosen at creation).
    pub encrypted: bool,
}

/// Why a mount's storage did not answer a connectivity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountCheckFailure {
    /// `not_found`, `permission_denied`, `unavailable`, ...
    pub kind: String,
    /// What went wrong, without secrets.
    pub detail: String,
}

/// An administrator (never a hash).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AdminRecord {
    pub username: String,
    pub role: Role,
    pub enabled: bool,
}

/// A partial update of an administrator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct AdminChanges {
    pub password: Option<String>,
    pub role: Option<Role>,
    pub enabled: Option<bool>,
}

/// An API key (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ApiKeyRecord {
    pub id: String,
    pub name: String,
    pub admin: String,
    pub role: Role,
    pub expires_at: Option<String>,
    pub revoked: bool,
}

/// A new API key: the only time its full value is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedApiKey {
    /// The key's record.
    pub record: ApiKeyRecord,
    /// The value to send in `X-Api-Key`.
    pub key: String,
}

/// A TOTP enrolment, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TotpEnrolmentRecord {
    pub secret: String,
    pub uri: String,
    pub qr_png: Vec<u8>,
    pub recovery_codes: Vec<String>,
}

/// An issued bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT.
    pub access_token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// Which events an audit query selects. Every filter narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct EventQuery {
    /// RFC 3339; events at or after.
    pub since: Option<String>,
    /// RFC 3339; events before.
    pub until: Option<String>,
    pub user: Option<String>,
    /// The event type (`LoginFailed`, `TransferCompleted`, ...).
    pub action: Option<String>,
    /// `success`, `failure`, `denied` or `aborted`.
    pub outcome: Option<String>,
    pub protocol: Option<String>,
    pub path_prefix: Option<String>,
    pub remote_addr: Option<String>,
    /// Only events after this global position.
    pub after: u64,
    pub limit: usize,
}

/// One audit record: the PCI DSS 10.2.2 fields plus the event itself.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub struct EventRecord {
    pub position: u64,
    pub event_id: String,
    pub time: String,
    pub actor: String,
    pub user: Option<String>,
    pub event_type: String,
    pub outcome: String,
    pub protocol: Option<String>,
    pub remote_addr: Option<String>,
    pub session_id: Option<String>,
    /// `aggregate_type/aggregate_id`: the affected resource.
    pub resource: String,
    pub path: Option<String>,
    pub target: Option<String>,
    pub bytes: Option<u64>,
    pub sha256: Option<String>,
    pub detail: Option<String>,
    pub payload: serde_json::Value,
}

/// One page of audit records.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPage {
    /// Matching records in position order.
    pub items: Vec<EventRecord>,
    /// Where the next page starts (the last position examined), absent
    /// when the end of the log was reached.
    pub next_cursor: Option<u64>,
}

/// The outcome of an audit verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// Records whose seal verified.
    pub sealed: u64,
    /// Records not sealed yet.
    pub unsealed: u64,
    /// Sealed records pruned after their export.
    pub pruned: u64,
    /// Signed checkpoints whose root and signature verified.
    pub checkpoints: u64,
    /// The size of the largest of them.
    pub checkpointed: u64,
    /// The first problem, if any (`altered`, `removed`, ... and its position).
    pub finding: Option<String>,
}

/// A webhook subscription: where, which events, in what shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SubscriptionRecord {
    pub name: String,
    /// Empty for a Kafka subscription.
    pub url: String,
    pub kafka_topic: Option<String>,
    pub event_types: Vec<String>,
    pub users: Vec<String>,
    pub path_prefix: Option<String>,
    pub outcome: Option<String>,
    /// `tollgate` or `ocsf`.
    pub format: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
}

/// Which events to deliver again: one event, or a range of positions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RedeliveryRequest {
    pub event_id: Option<String>,
    pub first: Option<u64>,
    pub last: Option<u64>,
}

/// What a redelivery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RedeliveryReport {
    pub attempted: u64,
    pub delivered: u64,
}

/// What a live event stream delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFilter {
    /// Which events (the same filter as a subscription's).
    pub filter: tollgate_domain::subscription::SubscriptionFilter,
    /// Their shape.
    pub format: tollgate_domain::subscription::EventFormat,
}

/// One page of a live event stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamPage {
    /// The selected events after the asked position: (position, JSON).
    pub events: Vec<(u64, String)>,
    /// The last position examined (the next page starts after it).
    pub examined_to: u64,
}

/// The latest signed tree head of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// Records covered.
    pub size: u64,
    /// Hex Merkle root.
    pub root: String,
    /// The signing key's id.
    pub key_id: String,
    /// The signed note (C2SP checkpoint).
    pub note: String,
    /// The key that signed it (`NAME+KEYID+KEY`).
    pub verifier_key: String,
    /// When it was signed.
    pub time: String,
}

/// A record's inclusion proof against a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionProof {
    /// The record's event id.
    pub event_id: String,
    /// Its position (1-based); the leaf index is `position - 1`.
    pub position: u64,
    /// Hex leaf hash, `SHA-256(0x00 || encoded record)`.
    pub leaf_hash: String,
    /// The size of the checkpoint's tree.
    pub tree_size: u64,
    /// Hex hashes of RFC 6962's `PATH`, leaf side first.
    pub proof: Vec<String>,
    /// The signed checkpoint the proof leads to.
    pub checkpoint: String,
    /// The key that signed it (`NAME+KEYID+KEY`).
    pub verifier_key: String,
}

/// A consistency proof between two signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyProof {
    /// The earlier tree size.
    pub first: u64,
    /// The later tree size.
    pub second: u64,
    /// Hex hashes of RFC 6962's `PROOF`.
    pub proof: Vec<String>,
    /// The earlier signed checkpoint.
    pub first_checkpoint: String,
    /// The later signed checkpoint.
    pub second_checkpoint: String,
}

/// A transfer as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct TransferRecord {
    pub id: String,
    pub state: String,
    pub username: Option<String>,
    pub protocol: Option<String>,
    pub direction: Option<String>,
    pub path: Option<String>,
    pub remote_addr: Option<String>,
    pub session_id: Option<String>,
    pub bytes: u64,
    pub sha256: Option<String>,
    pub reason: Option<String>,
    pub started_at: String,
    pub ended_at: Option<String>,
}

/// A live connection on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SessionRecord {
    pub id: String,
    pub protocol: String,
    pub remote_addr: String,
    pub username: Option<String>,
    pub started_at: String,
}

/// One Prometheus sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram` (whose series, `NAME_bucket` with
    /// an `le` label for each bound, then `NAME_sum` and `NAME_count`, are
    /// samples of their own).
    pub kind: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// The value.
    pub value: f64,
}

/// The administrative API, implemented by the application.
#[async_trait]
#[allow(missing_docs)]
pub trait AdminApi: Send + Sync {
    /// Password login of an administrator, or else of a user. Every failure
    /// is recorded as `LoginFailed`. A user with a second factor gives its
    /// `code`, or appends it to the password.
    async fn login_password(
        &self,
        client: &ClientInfo,
        username: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<Principal, LoginError>;
    /// A short-lived bearer token for the principal.
    async fn issue_token(&self, principal: &Principal) -> Result<IssuedToken, ApiError>;
    /// The principal of a bearer token, checked against its current state
    /// (a disabled or deleted principal is refused). Failures are recorded.
    async fn authenticate_token(
        &self,
        client: &ClientInfo,
        token: &str,
    ) -> Result<Principal, LoginError>;
    /// The principal of an API key. Failures are recorded.
    async fn authenticate_api_key(
        &self,
        client: &ClientInfo,
        key: &str,
    ) -> Result<Principal, LoginError>;

    async fn list_users(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<UserRecord>>, ApiError>;
    async fn get_user(&self, by: &Principal, name: &str)
    -> Result<Versioned<UserRecord>, ApiError>;
    async fn create_user(
        &self,
        by: &Principal,
        spec: UserSpec,
    ) -> Result<Versioned<UserRecord>, ApiError>;
    async fn update_user(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        changes: UserChanges,
    ) -> Result<Versioned<UserRecord>, ApiError>;
    async fn delete_user(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError>;
    /// Erases a user's personal data (GDPR); returns the ids of the
    /// destroyed keys.
    async fn erase_user(&self, by: &Principal, name: &str) -> Result<Vec<String>, ApiError>;
    /// Opens a live event stream for an administrator or auditor: records
    /// the read (`AuditLogRead`) and returns the log's head.
    async fn open_event_stream(&self, by: &Principal, query: &str) -> Result<u64, ApiError>;
    /// The sealed events after `after` that the stream selects (at most
    /// `limit` examined), rendered.
    async fn stream_events(
        &self,
        by: &Principal,
        stream: &StreamFilter,
        after: u64,
        limit: u32,
    ) -> Result<StreamPage, ApiError>;
    /// Returns when an event was committed here, or after `timeout`.
    async fn wait_for_commit(&self, timeout: std::time::Duration);
    /// Creates a webhook subscription; returns it and its signing secret
    /// (given once).
    async fn create_subscription(
        &self,
        by: &Principal,
        spec: SubscriptionRecord,
    ) -> Result<(SubscriptionRecord, String), ApiError>;
    /// Every subscription.
    async fn list_subscriptions(&self, by: &Principal)
    -> Result<Vec<SubscriptionRecord>, ApiError>;
    /// One subscription.
    async fn get_subscription(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<SubscriptionRecord, ApiError>;
    /// Enables or disables deliveries.
    async fn set_subscription_enabled(
        &self,
        by: &Principal,
        name: &str,
        enabled: bool,
    ) -> Result<SubscriptionRecord, ApiError>;
    /// Deletes a subscription.
    async fn delete_subscription(&self, by: &Principal, name: &str) -> Result<(), ApiError>;
    /// The newest delivery attempts of a subscription.
    async fn subscription_deliveries(
        &self,
        by: &Principal,
        name: &str,
        limit: u32,
    ) -> Result<Vec<crate::outbound::DeliveryAttempt>, ApiError>;
    /// Delivers one event, or a range, again (one attempt each).
    async fn redeliver(
        &self,
        by: &Principal,
        name: &str,
        request: RedeliveryRequest,
    ) -> Result<RedeliveryReport, ApiError>;

    async fn list_groups(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<GroupRecord>>, ApiError>;
    async fn get_group(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<GroupRecord>, ApiError>;
    async fn create_group(
        &self,
        by: &Principal,
        group: GroupRecord,
    ) -> Result<Versioned<GroupRecord>, ApiError>;
    async fn update_group(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        changes: GroupChanges,
    ) -> Result<Versioned<GroupRecord>, ApiError>;
    async fn delete_group(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError>;

    async fn list_policies(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<PolicyRecord>>, ApiError>;
    async fn get_policy(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<PolicyRecord>, ApiError>;
    async fn create_policy(
        &self,
        by: &Principal,
        policy: PolicyRecord,
    ) -> Result<Versioned<PolicyRecord>, ApiError>;
    async fn update_policy(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        rules: Vec<RuleRecord>,
    ) -> Result<Versioned<PolicyRecord>, ApiError>;
    async fn delete_policy(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError>;

    async fn list_mounts(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<MountRecord>>, ApiError>;
    async fn get_mount(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<MountRecord>, ApiError>;
    async fn create_mount(
        &self,
        by: &Principal,
        mount: MountRecord,
    ) -> Result<Versioned<MountRecord>, ApiError>;
    async fn update_mount(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        description: Option<String>,
        storage: Option<StorageRecord>,
    ) -> Result<Versioned<MountRecord>, ApiError>;
    async fn delete_mount(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError>;
    /// Enrols a TOTP second factor for a user (unconfirmed until a code
    /// confirms it); the secret and recovery codes are shown only here.
    async fn enroll_totp(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<TotpEnrolmentRecord, ApiError>;
    /// Confirms a user's enrolment with a current code.
    async fn confirm_totp(&self, by: &Principal, name: &str, code: &str) -> Result<(), ApiError>;
    /// Removes a user's second factor.
    async fn disable_totp(&self, by: &Principal, name: &str) -> Result<(), ApiError>;
    /// Reaches a mount's storage now; `Ok(Err(..))` says why it did not answer.
    async fn check_mount(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Result<(), MountCheckFailure>, ApiError>;

    async fn list_admins(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<Versioned<AdminRecord>>, ApiError>;
    async fn get_admin(
        &self,
        by: &Principal,
        name: &str,
    ) -> Result<Versioned<AdminRecord>, ApiError>;
    async fn create_admin(
        &self,
        by: &Principal,
        username: &str,
        password: &str,
        role: Role,
    ) -> Result<Versioned<AdminRecord>, ApiError>;
    async fn update_admin(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
        changes: AdminChanges,
    ) -> Result<Versioned<AdminRecord>, ApiError>;
    async fn delete_admin(
        &self,
        by: &Principal,
        name: &str,
        expected: Option<u64>,
    ) -> Result<(), ApiError>;

    async fn list_api_keys(
        &self,
        by: &Principal,
        params: ListParams,
    ) -> Result<Page<ApiKeyRecord>, ApiError>;
    /// Creates a key acting as the calling administrator, with `role` (at
    /// most the caller's) and an optional RFC 3339 expiry.
    async fn create_api_key(
        &self,
        by: &Principal,
        name: &str,
        role: Option<Role>,
        expires_at: Option<String>,
    ) -> Result<CreatedApiKey, ApiError>;
    async fn revoke_api_key(&self, by: &Principal, id: &str) -> Result<(), ApiError>;

    /// One page of the audit query. The read itself is recorded.
    async fn query_events(&self, by: &Principal, query: EventQuery) -> Result<EventPage, ApiError>;
    /// Records that `by` starts exporting the events `query` selects, and
    /// checks that they may; the pages are then read with `read_events`.
    async fn start_export(
        &self,
        by: &Principal,
        query: &EventQuery,
        format: &str,
    ) -> Result<(), ApiError>;
    /// One page of an export already recorded by `start_export`.
    async fn read_events(&self, by: &Principal, query: EventQuery) -> Result<EventPage, ApiError>;
    /// Verifies the audit trail (recorded).
    async fn verify_audit(&self, by: &Principal) -> Result<AuditVerification, ApiError>;
    /// The latest signed checkpoint, signing one first when records were
    /// added since (recorded as a read).
    async fn audit_checkpoint(&self, by: &Principal) -> Result<SignedCheckpoint, ApiError>;
    /// An event's inclusion proof in the latest checkpoint (recorded).
    async fn inclusion_proof(
        &self,
        by: &Principal,
        event_id: &str,
    ) -> Result<InclusionProof, ApiError>;
    /// The consistency proof between two checkpoints (recorded).
    async fn consistency_proof(
        &self,
        by: &Principal,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, ApiError>;

    async fn list_transfers(
        &self,
        by: &Principal,
        params: ListParams,
        user: Option<String>,
    ) -> Result<Page<TransferRecord>, ApiError>;
    async fn list_sessions(&self, by: &Principal) -> Result<Vec<SessionRecord>, ApiError>;
    /// The client addresses banned now.
    async fn list_bans(&self, by: &Principal) -> Result<Vec<BanRecord>, ApiError>;
    /// Lifts the ban of an address (recorded).
    async fn unban(&self, by: &Principal, address: &str) -> Result<(), ApiError>;
    /// Asks the connection to close (recorded); its protocol adapter ends it.
    async fn disconnect_session(&self, by: &Principal, id: &str) -> Result<(), ApiError>;
    /// The calling user's own record.
    async fn me(&self, by: &Principal) -> Result<Versioned<UserRecord>, ApiError>;

    /// Whether the store answers.
    async fn ready(&self) -> Result<(), ApiError>;
    /// Current metric samples.
    async fn metrics(&self) -> Result<Vec<Sample>, ApiError>;
}
