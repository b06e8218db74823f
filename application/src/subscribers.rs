//! Subscribers of the event log: the projector (read models) and the audit
//! sealer (hash chain). Each keeps its own checkpoint, reads the log in
//! position order and catches up after a restart.

use std::collections::HashMap;
use std::time::Duration;

use cqrs_es::persist::PersistedEventRepository;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use tollgate_domain::AggregateRoot;
use tollgate_domain::admin::Admin;
use tollgate_domain::api_key::ApiKey;
use tollgate_domain::group::Group;
use tollgate_domain::mount::Mount;
use tollgate_domain::policy::Policy;
use tollgate_domain::session::SessionEvent;
use tollgate_domain::transfer::{TransferEvent, TransferState, UsageChange};
use tollgate_domain::user::UserEvent;
use tollgate_ports::outbound::{
    DocChange, EventLog, LoggedEvent, Seal, StoreError, StoreErrorKind,
};

use crate::admin::{TOTP_ENABLED, TOTP_PENDING, UserView};
use crate::{AppError, Tollgate};

pub(crate) const USERS: &str = "users";
pub(crate) const POLICIES: &str = "policies";
pub(crate) const GROUPS: &str = "groups";
pub(crate) const TRANSFERS: &str = "transfers";
pub(crate) const ADMINS: &str = "admins";
pub(crate) const API_KEYS: &str = "api_keys";
pub(crate) const MOUNTS: &str = "mounts";

/// An aggregate's state in a read model, with its version (event count).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Projected<T> {
    /// The aggregate's sequence number after the last projected event.
    #[serde(default)]
    pub(crate) version: u64,
    #[serde(flatten)]
    pub(crate) state: T,
}
const PROJECTOR: &str = "projector";
const SEALER: &str = "audit-sealer";
const TREE: &str = "audit-tree";
pub(crate) const BATCH: u32 = 500;
/// Another process (the CLI, another node) may commit without waking us.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long subscribers let commits gather while the log is busy.
const GATHER: Duration = Duration::from_millis(5);

/// One read of the log that the subscribers of a round share: they usually
/// stand at the same position, so the events are read once (or taken from
/// what this process just committed, `EventLog::follow`), not once each,
/// and their audit records encoded once for the sealer and the tree.
#[derive(Default)]
pub(crate) struct Reading {
    /// Up to `BATCH` events after the position they were read from.
    read: Option<(u64, Vec<LoggedEvent>)>,
    /// The audit record of each event of `read` (`tollgate_audit::encode`),
    /// once a subscriber asked for them; empty until then.
    records: Vec<Vec<u8>>,
}

impl Reading {
    /// The next events after `after`, at most `BATCH`: from the shared read
    /// when it covers them, else read now (and shared from then on). A
    /// subscriber at the end of a full read reads on from there, so none
    /// is held back by another.
    pub(crate) async fn after(
        &mut self,
        log: &dyn EventLog,
        after: u64,
    ) -> Result<&[LoggedEvent], StoreError> {
        let from = self.read_from(log, after).await?;
        let (_, events) = self.read.as_ref().expect("read above");
        Ok(&events[from..])
    }

    /// `after`, with each event's audit record.
    pub(crate) async fn records_after(
        &mut self,
        log: &dyn EventLog,
        after: u64,
    ) -> Result<(&[LoggedEvent], &[Vec<u8>]), StoreError> {
        let from = self.read_from(log, after).await?;
        let (_, events) = self.read.as_ref().expect("read above");
        if self.records.len() != events.len() {
            self.records = events
                .iter()
                .map(|event| tollgate_audit::encode(&crate::queries::record(event)))
                .collect();
        }
        Ok((&events[from..], &self.records[from..]))
    }

    /// Makes the shared read cover the events after `after`; returns the
    /// index of the first of them in it.
    async fn read_from(&mut self, log: &dyn EventLog, after: u64) -> Result<usize, StoreError> {
        let covers = self.read.as_ref().is_some_and(|(from, events)| {
            *from <= after
                && (events.len() < BATCH as usize
                    || events.last().is_some_and(|last| last.position > after))
        });
        if !covers {
            self.read = Some((after, log.follow(after, BATCH).await?));
            self.records.clear();
        }
        let (_, events) = self.read.as_ref().expect("read above");
        Ok(events.partition_point(|event| event.position <= after))
    }
}

/// How far one subscriber has read the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberStatus {
    /// Its name.
    pub name: &'static str,
    /// The last position it processed.
    pub position: u64,
    /// The log head when asked.
    pub head: u64,
}

/// The transfers read model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferView {
    /// The transfer id.
    pub id: String,
    /// running, completed, failed, aborted or denied.
    pub state: Option<TransferState>,
    /// Who, over what, which file.
    pub context: Option<tollgate_domain::transfer::TransferContext>,
    /// Where the transfer started in the file.
    pub offset: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Final file size.
    pub size: Option<u64>,
    /// SHA-256 of the file.
    pub sha256: Option<String>,
    /// Why it failed, was aborted or denied.
    pub reason: Option<String>,
    /// Start time.
    pub started_at: String,
    /// End time.
    pub ended_at: Option<String>,
}

fn event_time(event: &LoggedEvent) -> String {
    event
        .metadata
        .get("time")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The event's payload as `E`; an unreadable one is logged and skipped, so
/// that one bad record cannot stop a projection.
fn payload<E: serde::de::DeserializeOwned>(event: &LoggedEvent) -> Option<E> {
    // Read in place: a clone of the document would be built and dropped
    // for every event each subscriber reads.
    match E::deserialize(&event.payload) {
        Ok(parsed) => Some(parsed),
        Err(err) => {
            tracing::warn!(position = event.position, error = %err, "projection skipped an event it cannot read");
            None
        }
    }
}

/// The views of the transfers still running, as the projector's last
/// commit left them, so that a transfer's later events need not read its
/// view back: with many short transfers that read was a query per file.
/// They stand for the stored documents only while the checkpoint is where
/// that commit put it; any other checkpoint (another process projected, the
/// read models were reset) or a failed commit forgets them all.
#[derive(Default)]
pub(crate) struct RunningViews {
    /// The checkpoint the views belong to.
    at: Option<u64>,
    /// Each view's JSON text, as committed.
    views: HashMap<String, String>,
}

/// Running transfers remembered at most; past that, their views are read
/// back as before.
const RUNNING_VIEWS: usize = 65_536;

impl RunningViews {
    /// Before a batch read after `checkpoint`: the views stand only if the
    /// last commit left the checkpoint there.
    fn resume_at(&mut self, checkpoint: u64) {
        if self.at != Some(checkpoint) {
            self.at = None;
            self.views.clear();
        }
    }

    /// After a commit at `at`: remembers the views of transfers still
    /// running and forgets those of transfers that ended.
    fn committed(&mut self, at: u64, changes: &[DocChange], running: &HashMap<String, bool>) {
        for change in changes.iter().filter(|c| c.projection == TRANSFERS) {
            match (running.get(&change.key), &change.doc) {
                (Some(true), Some(doc)) if self.views.len() < RUNNING_VIEWS => {
                    self.views.insert(change.key.clone(), doc.clone());
                }
                _ => {
                    self.views.remove(&change.key);
                }
            }
        }
        self.at = Some(at);
    }
}

/// A document as a batch holds it.
enum Doc {
    /// As read from the store.
    Read(Value),
    /// As JSON text: written by this batch, or by the commit a running
    /// transfer's view is remembered from. A view goes straight to text
    /// and back, never through a `Value` tree.
    Text(String),
    /// A user's view, kept parsed while the batch changes it: with a busy
    /// user, most events of a batch add an upload to the same view.
    User(Box<UserView>),
}

impl Doc {
    /// The document as `T`; `None` when it does not read as `T`.
    fn parse<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        match self {
            Doc::Read(doc) => T::deserialize(doc).ok(),
            Doc::Text(text) => serde_json::from_str(text).ok(),
            Doc::User(view) => serde_json::to_value(view)
                .ok()
                .and_then(|doc| T::deserialize(doc).ok()),
        }
    }

    /// The document's JSON text.
    fn into_text(self) -> String {
        match self {
            Doc::Read(value) => value.to_string(),
            Doc::Text(text) => text,
            Doc::User(view) => serde_json::to_string(&view).expect("read models serialise to JSON"),
        }
    }
}

/// A batch's view of the documents it touches.
struct Batch<'a, R> {
    app: &'a Tollgate<R>,
    docs: HashMap<(&'static str, String), Option<Doc>>,
    /// Views of running transfers from earlier batches.
    remembered: &'a mut RunningViews,
    /// Whether each transfer this batch touched is still running.
    running: HashMap<String, bool>,
}

impl<R: PersistedEventRepository + Clone + 'static> Batch<'_, R> {
    /// The batch's slot for a document, read into it first if the batch
    /// has not touched the document yet.
    async fn slot(
        &mut self,
        projection: &'static str,
        key: &str,
    ) -> Result<&mut Option<Doc>, AppError> {
        let slot = (projection, key.to_string());
        if !self.docs.contains_key(&slot) {
            let remembered = match projection {
                TRANSFERS => self.remembered.views.remove(key),
                _ => None,
            };
            let doc = match remembered {
                Some(text) => Some(Doc::Text(text)),
                None => {
                    (self.app.inner.deps.projections.get(projection, key).await?).map(Doc::Read)
                }
            };
            self.docs.insert(slot.clone(), doc);
        }
        Ok(self.docs.get_mut(&slot).expect("inserted above"))
    }

    /// A document as `T`; `None` when there is none or it does not read
    /// as `T`.
    async fn get<T: for<'de> Deserialize<'de>>(
        &mut self,
        projection: &'static str,
        key: &str,
    ) -> Result<Option<T>, AppError> {
        Ok(self
            .slot(projection, key)
            .await?
            .as_ref()
            .and_then(Doc::parse))
    }

    /// A user's view, to change in place; `None` when there is none or it
    /// does not read as a view (it is then left as it is).
    async fn user(&mut self, key: &str) -> Result<Option<&mut UserView>, AppError> {
        let slot = self.slot(USERS, key).await?;
        let parsed = match &*slot {
            Some(Doc::User(_)) | None => None,
            Some(doc) => doc.parse::<UserView>(),
        };
        if let Some(view) = parsed {
            *slot = Some(Doc::User(Box::new(view)));
        }
        Ok(match slot {
            Some(Doc::User(view)) => Some(view.as_mut()),
            _ => None,
        })
    }

    fn put<T: Serialize>(&mut self, projection: &'static str, key: &str, doc: Option<&T>) {
        let text = doc.map(|d| serde_json::to_string(d).expect("read models serialise to JSON"));
        self.docs
            .insert((projection, key.to_string()), text.map(Doc::Text));
    }

    async fn apply_aggregate<T: AggregateRoot>(
        &mut self,
        projection: &'static str,
        event: &LoggedEvent,
    ) -> Result<(), AppError> {
        let Some(parsed) = payload::<T::Event>(event) else {
            return Ok(());
        };
        let mut state: T = self
            .get::<Projected<T>>(projection, &event.aggregate_id)
            .await?
            .map(|p| p.state)
            .unwrap_or_default();
        state.apply(parsed);
        let projected = Projected {
            version: event.sequence,
            state,
        };
        self.put(projection, &event.aggregate_id, Some(&projected));
        Ok(())
    }

    async fn apply_user(&mut self, event: &LoggedEvent) -> Result<(), AppError> {
        let Some(parsed) = payload::<UserEvent>(event) else {
            return Ok(());
        };
        let key = &event.aggregate_id;
        let time = event_time(event);
        let created = match parsed.clone() {
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
            } => Some(UserView {
                has_password: password_hash.is_some(),
                public_keys: public_keys.iter().map(|k| k.to_openssh()).collect(),
                ftp_require_tls,
                full_name: profile.full_name,
                email: profile.email,
                folders,
                ..UserView::new(username, home, groups, policies, &time)
            }),
            UserEvent::UserProvisioned {
                username,
                dn,
                home,
                groups,
                policies,
            } => Some(UserView {
                directory_dn: Some(dn),
                ..UserView::new(username, home, groups, policies, &time)
            }),
            _ => None,
        };
        if let Some(mut view) = created {
            view.version = event.sequence;
            self.docs
                .insert((USERS, key.clone()), Some(Doc::User(Box::new(view))));
            return Ok(());
        }
        if matches!(
            parsed,
            UserEvent::UserErased { .. } | UserEvent::UserDeleted {}
        ) {
            self.put::<UserView>(USERS, key, None);
            return Ok(());
        }
        let Some(view) = self.user(key).await? else {
            return Ok(());
        };
        match parsed {
            UserEvent::UserCreated { .. }
            | UserEvent::UserProvisioned { .. }
            | UserEvent::UserErased { .. }
            | UserEvent::UserDeleted {} => {
                unreachable!("handled above")
            }
            UserEvent::UserTotpEnrolled { .. } => view.totp = Some(TOTP_PENDING.to_string()),
            UserEvent::UserTotpConfirmed {} => view.totp = Some(TOTP_ENABLED.to_string()),
            UserEvent::UserTotpDisabled {} => view.totp = None,
            UserEvent::UserRecoveryCodeUsed { .. } => {}
            UserEvent::UserPasswordChanged { .. } => view.has_password = true,
            UserEvent::UserPublicKeysChanged { public_keys } => {
                view.public_keys = public_keys.iter().map(|k| k.to_openssh()).collect();
            }
            UserEvent::UserGroupsChanged { groups } => view.groups = groups,
            UserEvent::UserPoliciesChanged { policies } => view.policies = policies,
            UserEvent::UserEnabled {} => view.enabled = true,
            UserEvent::UserDisabled {} => view.enabled = false,
            UserEvent::UserFtpSecurityChanged { require_tls } => view.ftp_require_tls = require_tls,
            UserEvent::UserProfileChanged { profile } => {
                view.full_name = profile.full_name;
                view.email = profile.email;
            }
            UserEvent::UserFoldersChanged { folders } => view.folders = folders,
            UserEvent::UserAccessChanged { access } => view.access = access,
        }
        view.updated_at = time;
        view.version = event.sequence;
        Ok(())
    }

    /// Adds a usage change to what the user's view says they store.
    async fn add_usage(&mut self, username: &str, change: UsageChange) -> Result<(), AppError> {
        let Some(view) = self.user(username).await? else {
            return Ok(());
        };
        let add = |used: u64, delta: i64| {
            u64::try_from(i128::from(used) + i128::from(delta)).unwrap_or(0)
        };
        view.used_bytes = add(view.used_bytes, change.bytes);
        view.used_files = add(view.used_files, change.files);
        Ok(())
    }

    /// A file operation's usage change, counted for the session's user.
    async fn apply_session(&mut self, event: &LoggedEvent) -> Result<(), AppError> {
        let Some(SessionEvent::FileOperationPerformed {
            usage: Some(change),
            ..
        }) = payload::<SessionEvent>(event)
        else {
            return Ok(());
        };
        let Some(username) = event.metadata.get("user").and_then(|u| u.as_str()) else {
            return Ok(());
        };
        self.add_usage(username, change).await
    }

    async fn apply_transfer(&mut self, event: &LoggedEvent) -> Result<(), AppError> {
        let Some(parsed) = payload::<TransferEvent>(event) else {
            return Ok(());
        };
        let key = &event.aggregate_id;
        let time = event_time(event);
        // A transfer's first event starts its view: there is nothing to
        // read (a batch projected again after a lost commit lost its
        // documents with it), and a busy log would pay a query per file.
        let mut view = if event.sequence == 1 {
            TransferView::default()
        } else {
            self.get::<TransferView>(TRANSFERS, key)
                .await?
                .unwrap_or_default()
        };
        view.id = key.clone();
        match parsed {
            TransferEvent::TransferStarted { context, offset } => {
                view.state = Some(TransferState::Running);
                view.context = Some(context);
                view.offset = offset;
                view.started_at = time;
            }
            TransferEvent::TransferDenied { context, rule } => {
                view.state = Some(TransferState::Denied);
                view.context = Some(context);
                view.reason = Some(rule);
                view.started_at = time.clone();
                view.ended_at = Some(time);
            }
            TransferEvent::TransferCompleted {
                bytes,
                size,
                sha256,
                usage,
                ..
            } => {
                if let (Some(change), Some(context)) = (usage, &view.context) {
                    self.add_usage(&context.username, change).await?;
                }
                view.state = Some(TransferState::Completed);
                view.bytes = bytes;
                view.size = Some(size);
                view.sha256 = sha256;
                view.ended_at = Some(time);
            }
            TransferEvent::TransferFailed { bytes, error, .. } => {
                view.state = Some(TransferState::Failed);
                view.bytes = bytes;
                view.reason = Some(error);
                view.ended_at = Some(time);
            }
            TransferEvent::TransferAborted { bytes, reason, .. } => {
                view.state = Some(TransferState::Aborted);
                view.bytes = bytes;
                view.reason = Some(reason);
                view.ended_at = Some(time);
            }
        }
        self.running
            .insert(key.clone(), view.state == Some(TransferState::Running));
        self.put(TRANSFERS, key, Some(&view));
        Ok(())
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Projects the next batch of events into the read models; returns how
    /// many events it processed.
    pub async fn project_pending(&self) -> Result<usize, AppError> {
        self.project_from(&mut Reading::default(), &mut RunningViews::default())
            .await
    }

    /// `project_pending`, reading the log through `reading` and carrying
    /// the views of running transfers from one batch to the next.
    async fn project_from(
        &self,
        reading: &mut Reading,
        remembered: &mut RunningViews,
    ) -> Result<usize, AppError> {
        let deps = &self.inner.deps;
        // Where the last commit left the checkpoint, else as stored. Should
        // another process have moved it meanwhile, the commit below finds
        // it moved and the next batch reads it again.
        let checkpoint = match remembered.at {
            Some(at) => at,
            None => deps.projections.checkpoint(PROJECTOR).await?,
        };
        remembered.resume_at(checkpoint);
        let events = reading.after(deps.log.as_ref(), checkpoint).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(0);
        };
        // Until this batch commits, the remembered views may not match the
        // stored ones.
        remembered.at = None;
        let mut batch = Batch {
            app: self,
            docs: HashMap::new(),
            remembered: &mut *remembered,
            running: HashMap::new(),
        };
        for event in events {
            match event.aggregate_type.as_str() {
                "user" => batch.apply_user(event).await?,
                "policy" => batch.apply_aggregate::<Policy>(POLICIES, event).await?,
                "group" => batch.apply_aggregate::<Group>(GROUPS, event).await?,
                "admin" => batch.apply_aggregate::<Admin>(ADMINS, event).await?,
                "api_key" => batch.apply_aggregate::<ApiKey>(API_KEYS, event).await?,
                "mount" => batch.apply_aggregate::<Mount>(MOUNTS, event).await?,
                "ban" => {
                    batch
                        .apply_aggregate::<tollgate_domain::defender::Ban>(
                            crate::defender::BANS,
                            event,
                        )
                        .await?
                }
                "subscription" => {
                    batch
                        .apply_aggregate::<tollgate_domain::subscription::Subscription>(
                            crate::webhooks::SUBSCRIPTIONS,
                            event,
                        )
                        .await?
                }
                "transfer" => batch.apply_transfer(event).await?,
                "session" => batch.apply_session(event).await?,
                _ => {}
            }
        }
        let changes: Vec<DocChange> = batch
            .docs
            .into_iter()
            .map(|((projection, key), doc)| DocChange {
                projection: projection.to_string(),
                key,
                doc: doc.map(Doc::into_text),
            })
            .collect();
        let running = batch.running;
        match deps
            .projections
            .commit(PROJECTOR, checkpoint, last, &changes)
            .await
        {
            Ok(()) => {
                remembered.committed(last, &changes, &running);
                if changes
                    .iter()
                    .any(|c| c.projection == crate::webhooks::SUBSCRIPTIONS)
                {
                    self.inner.subscriptions_projected.notify_waiters();
                }
                Ok(events.len())
            }
            // Another process projected this batch first; the next call
            // starts from its checkpoint.
            Err(err) if err.kind == StoreErrorKind::Conflict => Ok(events.len()),
            Err(err) => Err(err.into()),
        }
    }

    /// Seals the next batch of events into the audit hash chain; returns
    /// how many it sealed.
    pub async fn seal_pending(&self) -> Result<usize, AppError> {
        self.seal_from(&mut Reading::default()).await
    }

    /// `seal_pending`, reading the log through `reading`.
    async fn seal_from(&self, reading: &mut Reading) -> Result<usize, AppError> {
        let deps = &self.inner.deps;
        // The chain's end as this sealer left it, else as stored: a round
        // then reads nothing back. Should another process have sealed on
        // meanwhile, the append below collides with its seals and the next
        // round reads the store again.
        let mut sealed = self.inner.sealed.lock().await;
        let (after, mut previous) = match *sealed {
            Some(end) => end,
            None => match deps.audit.last_seal().await? {
                Some(seal) => {
                    let mut hash = [0u8; 32];
                    hex::decode_to_slice(&seal.hash, &mut hash)
                        .map_err(|e| AppError::Store(Box::new(e)))?;
                    (seal.position, hash)
                }
                None => (0, tollgate_audit::GENESIS),
            },
        };
        let (events, records) = reading.records_after(deps.log.as_ref(), after).await?;
        let mut seals = Vec::with_capacity(events.len());
        for (event, record) in events.iter().zip(records) {
            previous = tollgate_audit::chain_encoded(&previous, record);
            seals.push(Seal {
                position: event.position,
                event_id: event.event_id.clone(),
                hash: hex::encode(previous),
            });
        }
        let Some(last) = seals.last() else {
            *sealed = Some((after, previous));
            return Ok(0);
        };
        let end = (last.position, previous);
        // Unless the append is known to have landed, the next round reads
        // the chain's end from the store.
        *sealed = None;
        match deps.audit.append_seals(&seals).await {
            Ok(()) => {
                *sealed = Some(end);
                Ok(seals.len())
            }
            // Another sealer got there first; the next call continues its chain.
            Err(err) if err.kind == StoreErrorKind::Conflict => Ok(seals.len()),
            Err(err) => Err(err.into()),
        }
    }

    /// Runs every subscriber until it has processed the whole log.
    pub async fn catch_up(&self) -> Result<(), AppError> {
        while self.seal_pending().await? > 0 {}
        while self.grow_tree().await? > 0 {}
        while self.project_pending().await? > 0 {}
        Ok(())
    }

    /// Follows the log until `shutdown` turns true: woken by local commits,
    /// and polling for commits made by other processes.
    pub async fn run_subscribers(&self, mut shutdown: watch::Receiver<bool>) {
        let mut failing: Vec<&'static str> = Vec::new();
        let mut running_views = RunningViews::default();
        loop {
            let notified = self.inner.committed.notified();
            let mut reading = Reading::default();
            let results = [
                (SEALER, self.seal_from(&mut reading).await),
                (TREE, self.grow_tree_from(&mut reading).await),
                (
                    PROJECTOR,
                    self.project_from(&mut reading, &mut running_views).await,
                ),
            ];
            let (mut busy, mut full) = (false, false);
            for (subscriber, result) in results {
                match result {
                    Ok(n) => {
                        busy |= n > 0;
                        full |= n >= BATCH as usize;
                        if failing.contains(&subscriber) {
                            failing.retain(|s| *s != subscriber);
                            self.record_subscriber_recovery(subscriber).await;
                        }
                    }
                    Err(err) if failing.contains(&subscriber) => {
                        tracing::debug!(subscriber, error = %err, "a subscriber still fails");
                    }
                    Err(err) => {
                        failing.push(subscriber);
                        self.record_subscriber_failure(subscriber, &err).await;
                    }
                }
            }
            if busy {
                // Commits are streaming in: let a few milliseconds' worth
                // gather before the next round, which costs about as much
                // for one event as for hundreds. The first commit after a
                // quiet spell is still followed at once.
                if !full {
                    tokio::time::sleep(GATHER).await;
                }
                continue;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Drops the read models and projects the whole log again.
    pub async fn rebuild_projections(&self) -> Result<u64, AppError> {
        self.inner
            .deps
            .projections
            .reset(
                PROJECTOR,
                &[
                    USERS,
                    POLICIES,
                    GROUPS,
                    TRANSFERS,
                    ADMINS,
                    API_KEYS,
                    MOUNTS,
                    crate::webhooks::SUBSCRIPTIONS,
                    crate::defender::BANS,
                ],
            )
            .await?;
        let mut total = 0u64;
        loop {
            let n = self.project_pending().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n as u64;
        }
    }

    /// Where each subscriber stands.
    pub async fn subscriber_status(&self) -> Result<Vec<SubscriberStatus>, AppError> {
        let deps = &self.inner.deps;
        let head = deps.log.head().await?;
        let sealed = deps
            .audit
            .last_seal()
            .await?
            .map(|s| s.position)
            .unwrap_or(0);
        let projected = deps.projections.checkpoint(PROJECTOR).await?;
        let grown = deps.audit.leaf_count().await?;
        Ok(vec![
            SubscriberStatus {
                name: SEALER,
                position: sealed,
                head,
            },
            SubscriberStatus {
                name: TREE,
                position: grown,
                head,
            },
            SubscriberStatus {
                name: PROJECTOR,
                position: projected,
                head,
            },
        ])
    }

    /// The transfers read model, newest first.
    pub async fn list_transfers(&self) -> Result<Vec<TransferView>, AppError> {
        let docs = self.inner.deps.projections.list(TRANSFERS).await?;
        let mut views: Vec<TransferView> = docs
            .into_iter()
            .filter_map(|(_, doc)| serde_json::from_value(doc).ok())
            .collect();
        views.sort_by(|a, b| b.started_at.cmp(&a.started_at));
        Ok(views)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use tollgate_ports::outbound::{DocChange, EventLog, LoggedEvent, StoreError};

    use super::{BATCH, HashMap, Reading, RunningViews, TRANSFERS, USERS, Value};

    /// A log of `head` events that counts the reads it answers.
    struct Log {
        head: u64,
        reads: Mutex<Vec<u64>>,
    }

    fn log(head: u64) -> Log {
        Log {
            head,
            reads: Mutex::new(Vec::new()),
        }
    }

    #[async_trait]
    impl EventLog for Log {
        async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
            self.reads.lock().unwrap().push(after);
            Ok((after + 1..=self.head.min(after + u64::from(limit)))
                .map(|position| LoggedEvent {
                    position,
                    event_id: position.to_string(),
                    aggregate_type: "session".into(),
                    aggregate_id: "s".into(),
                    sequence: position,
                    event_type: "Opened".into(),
                    event_version: "1".into(),
                    payload: serde_json::Value::Null,
                    metadata: serde_json::Value::Null,
                })
                .collect())
        }
        async fn head(&self) -> Result<u64, StoreError> {
            Ok(self.head)
        }
        async fn position_of(&self, _: &str) -> Result<Option<u64>, StoreError> {
            Ok(None)
        }
    }

    fn positions(events: &[LoggedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.position).collect()
    }

    #[tokio::test]
    async fn subscribers_at_or_ahead_of_the_read_share_it() {
        let log = log(10);
        let mut reading = Reading::default();
        assert_eq!(
            positions(reading.after(&log, 4).await.unwrap()),
            (5..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            positions(reading.after(&log, 4).await.unwrap()),
            (5..=10).collect::<Vec<_>>()
        );
        assert_eq!(
            positions(reading.after(&log, 8).await.unwrap()),
            vec![9, 10]
        );
        assert!(reading.after(&log, 10).await.unwrap().is_empty());
        assert_eq!(*log.reads.lock().unwrap(), vec![4]);
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_read_reads_for_itself() {
        let log = log(10);
        let mut reading = Reading::default();
        reading.after(&log, 6).await.unwrap();
        assert_eq!(
            positions(reading.after(&log, 2).await.unwrap()),
            (3..=10).collect::<Vec<_>>()
        );
        assert_eq!(*log.reads.lock().unwrap(), vec![6, 2]);
    }

    /// The records a reading hands out are those of the events it hands
    /// out with them, also after it read again for a subscriber behind.
    #[tokio::test]
    async fn records_come_with_their_events() {
        let log = log(10);
        let mut reading = Reading::default();
        let encoded = |events: &[LoggedEvent]| -> Vec<Vec<u8>> {
            events
                .iter()
                .map(|event| tollgate_audit::encode(&crate::queries::record(event)))
                .collect()
        };
        for after in [6, 8, 2, 5] {
            let (events, records) = reading.records_after(&log, after).await.unwrap();
            assert_eq!(positions(events), (after + 1..=10).collect::<Vec<_>>());
            assert_eq!(records, encoded(events));
        }
        assert_eq!(*log.reads.lock().unwrap(), vec![6, 2]);
    }

    #[test]
    fn running_views_are_kept_from_commit_to_commit_and_forgotten_otherwise() {
        let doc = |key: &str, n: u32| DocChange {
            projection: TRANSFERS.into(),
            key: key.into(),
            doc: Some(serde_json::json!({ "n": n }).to_string()),
        };
        let mut views = RunningViews::default();
        let running: HashMap<String, bool> =
            [("a".into(), true), ("b".into(), true), ("c".into(), false)].into();
        let other = DocChange {
            projection: USERS.into(),
            ..doc("a", 9)
        };
        views.committed(7, &[doc("a", 1), doc("b", 2), doc("c", 3), other], &running);
        views.resume_at(7);
        let kept = |views: &RunningViews| {
            let mut kept: Vec<(String, Value)> = views
                .views
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap()))
                .collect();
            kept.sort_by(|x, y| x.0.cmp(&y.0));
            kept
        };
        assert_eq!(
            kept(&views),
            vec![
                ("a".into(), serde_json::json!({ "n": 1 })),
                ("b".into(), serde_json::json!({ "n": 2 }))
            ],
            "running transfers are remembered, ended ones and other read models are not"
        );

        // The next commit ends one of them.
        let running: HashMap<String, bool> = [("a".into(), false)].into();
        views.committed(9, &[doc("a", 4)], &running);
        views.resume_at(9);
        assert_eq!(
            kept(&views),
            vec![("b".into(), serde_json::json!({ "n": 2 }))]
        );

        // Another process moved the checkpoint: nothing remembered stands.
        views.resume_at(12);
        assert!(views.views.is_empty());
        assert_eq!(views.at, None);
    }

    #[tokio::test]
    async fn a_subscriber_past_a_full_read_reads_on() {
        let head = u64::from(BATCH) * 2;
        let log = log(head);
        let mut reading = Reading::default();
        assert_eq!(reading.after(&log, 0).await.unwrap().len(), BATCH as usize);
        // Ahead by the whole read, which may stop short of the head.
        let next = reading.after(&log, u64::from(BATCH)).await.unwrap();
        assert_eq!(next.first().map(|e| e.position), Some(u64::from(BATCH) + 1));
        assert_eq!(next.len(), BATCH as usize);
        assert_eq!(*log.reads.lock().unwrap(), vec![0, u64::from(BATCH)]);
    }
}
