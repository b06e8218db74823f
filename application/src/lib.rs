//! The use cases of Tollgate: sessions and logins, file operations and
//! transfers, administrative commands, queries, and the subscribers that
//! follow the event log (projections and the audit sealer).
//!
//! Every protocol adapter reaches storage only through this crate, which
//! authorises, records an event and then delegates. That is what makes every
//! protocol behave and audit identically.
//!
//! Architecture invariant: this crate names no technology. It never imports
//! sqlx, russh, libunftp, poem or an object store; it sees the database only
//! as `cqrs_es::persist::PersistedEventRepository` plus the log ports, and
//! files only as `FileStorage`.

mod admin;
mod aggregates;
mod api;
mod bandwidth;
mod defender;
mod directory;
mod error;
mod files;
mod lifecycle;
mod live;
mod metrics;
mod mounts;
mod namespace;
mod passwords;
mod privacy;
mod publish;
mod queries;
mod quota;
mod retention;
mod second_factor;
mod sessions;
mod subscribers;
mod tree;
mod webhooks;

use std::sync::Arc;

use cqrs_es::persist::PersistedEventRepository;
use tokio::sync::Notify;
use tollgate_ports::api::AdminApi;
use tollgate_ports::outbound::{
    AuditStore, CheckpointSigner, Clock, DeliveryLog, EventLog, EventProducer, FileStorage,
    MountBackends, OneTimePasswords, PasswordHasher, ProjectionStore, SecretBox, SubjectCipher,
    SubjectKeyStore, TokenSigner, WebhookSender,
};

pub use admin::{FIRST_ADMIN, NewUser, UserView};
pub use defender::DefenderPolicy;
pub use directory::DirectoryLogins;
pub use error::AppError;
pub use lifecycle::RunInfo;
pub use passwords::PasswordPolicy;
pub use privacy::{ERASED, PrivacyPolicy};
pub use queries::{EventFilter, EventSummary, VerifyReport};
pub use retention::{ExportedRange, PruneReport};
pub use second_factor::TotpEnrolment;
pub use sessions::Gateway;
pub use subscribers::{SubscriberStatus, TransferView};
pub use tree::{BundleHead, CheckpointPolicy};
pub use webhooks::{NewSubscription, Redelivered, RetryPolicy};

/// A clock that reads the system time.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }
}

/// Everything the application needs from the outside, wired by the binary.
pub struct Dependencies<R> {
    /// The aggregate event store.
    pub repository: R,
    /// The global log, read in commit order.
    pub log: Arc<dyn EventLog>,
    /// The audit seal store.
    pub audit: Arc<dyn AuditStore>,
    /// Read models and checkpoints.
    pub projections: Arc<dyn ProjectionStore>,
    /// Where users' homes live.
    pub storage: Arc<dyn FileStorage>,
    /// The backends of mounts shown as virtual folders.
    pub mounts: Arc<dyn MountBackends>,
    /// Password hashing.
    pub hasher: Arc<dyn PasswordHasher>,
    /// What a new password must be.
    pub password_policy: PasswordPolicy,
    /// When client addresses are banned.
    pub defender: DefenderPolicy,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Signs and verifies the HTTP API's bearer tokens.
    pub tokens: Arc<dyn TokenSigner>,
    /// How long a bearer token lives.
    pub token_ttl: std::time::Duration,
    /// Seals the secrets of storage configurations.
    pub secrets: Arc<dyn SecretBox>,
    /// Signs the audit log's checkpoints.
    pub checkpoints: Arc<dyn CheckpointSigner>,
    /// When checkpoints are written.
    pub checkpoint_policy: CheckpointPolicy,
    /// Where the keys that seal personal data are kept (and destroyed).
    pub subject_keys: Arc<dyn SubjectKeyStore>,
    /// Seals and opens personal data with those keys.
    pub subject_cipher: Arc<dyn SubjectCipher>,
    /// What personal data is sealed.
    pub privacy: PrivacyPolicy,
    /// Sends signed webhooks.
    pub webhooks: Arc<dyn WebhookSender>,
    /// Where webhook delivery attempts are logged.
    pub deliveries: Arc<dyn DeliveryLog>,
    /// When failed webhook deliveries are tried again.
    pub retry_policy: RetryPolicy,
    /// Produces to Kafka.
    pub kafka: Arc<dyn EventProducer>,
    /// Time-based one-time passwords of second factors.
    pub otp: Arc<dyn OneTimePasswords>,
    /// Logins through a directory, when one is configured.
    pub directory: Option<DirectoryLogins>,
}

/// The application: cheap to clone, shared by every adapter.
pub struct Tollgate<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for Tollgate<R> {
    fn clone(&self) -> Self {
        Tollgate {
            inner: self.inner.clone(),
        }
    }
}

pub(crate) struct Inner<R> {
    pub(crate) deps: Dependencies<R>,
    /// Woken after every local commit so subscribers need not wait for a poll.
    pub(crate) committed: Notify,
    /// Woken when the projector has applied a change to a webhook
    /// subscription, so the delivery supervisor re-reads the list then
    /// (and on its poll) rather than after every commit.
    pub(crate) subscriptions_projected: Notify,
    /// The connections open on this process.
    pub(crate) live: live::Live,
    /// Counters for the metrics endpoint.
    pub(crate) metrics: metrics::Metrics,
    /// The Merkle tree as this process follows it (loaded on first use).
    pub(crate) tree: tokio::sync::Mutex<Option<tree::TreeState>>,
    /// The last seal of the audit chain as this process's sealer stored it
    /// (read from the store on first use and after any failed append).
    pub(crate) sealed: tokio::sync::Mutex<Option<(u64, [u8; 32])>>,
    /// This process's server run, once started.
    pub(crate) run: std::sync::OnceLock<String>,
    /// Failed-login scores and the bans in force.
    pub(crate) defender: defender::Defender,
    /// The users' bandwidth limits in force.
    pub(crate) buckets: bandwidth::Buckets,
    /// The usage ledgers of users with a storage quota.
    pub(crate) quotas: quota::Quotas,
    /// The TOTP steps taken per user.
    pub(crate) replays: second_factor::Replays,
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Builds the application around its dependencies.
    pub fn new(deps: Dependencies<R>) -> Self {
        Tollgate {
            inner: Arc::new(Inner {
                deps,
                committed: Notify::new(),
                subscriptions_projected: Notify::new(),
                live: live::Live::default(),
                metrics: metrics::Metrics::default(),
                tree: tokio::sync::Mutex::new(None),
                sealed: tokio::sync::Mutex::new(None),
                run: std::sync::OnceLock::new(),
                defender: defender::Defender::default(),
                buckets: bandwidth::Buckets::default(),
                quotas: quota::Quotas::default(),
                replays: second_factor::Replays::default(),
            }),
        }
    }

    /// The administrative API (REST) side.
    pub fn admin_api(&self) -> Arc<dyn AdminApi> {
        Arc::new(api::AdminService::new(self.clone()))
    }

    /// The clock's time as RFC 3339 with microseconds, as events record it.
    pub(crate) fn now_text(&self) -> String {
        self.inner
            .deps
            .clock
            .now()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }

    /// The protocol-facing side: sessions and logins.
    pub fn gateway(&self) -> Arc<Gateway<R>> {
        Arc::new(Gateway::new(self.clone()))
    }
}
