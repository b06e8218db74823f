//! File operations and transfers of one logged-in session: the `FileOps`,
//! `Upload` and `Download` inbound ports. Each operation is authorised by
//! the user's policies, delegated to storage, and recorded as an event.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use cqrs_es::persist::PersistedEventRepository;
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tollgate_domain::policy::{NamedRules, Permission, Rule, evaluate};
use tollgate_domain::session::{FileOperation, Protocol, Session, SessionCommand};
use tollgate_domain::transfer::{
    Direction, Transfer, TransferCommand, TransferContext, UsageChange,
};
use tollgate_domain::user::User;
use tollgate_domain::{PathError, VirtualPath};
use tollgate_ports::inbound::{
    DirEntry, DirPages, Download, FileMeta, FileOpError, FileOps, Upload, UploadMode,
};
use tollgate_ports::outbound::{
    FileKind, ReadHandle, StorageError, StorageErrorKind, WriteHandle, WriteMode, found,
};

use crate::Tollgate;
use crate::aggregates::Actor;
use crate::bandwidth::Bucket;
use crate::error::AppError;
use crate::namespace::Namespace;
use crate::quota::{Quota, QuotaRefusal, Reservation};

/// What a logged-in user may do and reach: the rules of their policies,
/// their namespace and their bandwidth.
pub(crate) struct Grants {
    pub(crate) policies: Vec<(String, Vec<Rule>)>,
    pub(crate) namespace: Namespace,
    pub(crate) limits: Limits,
}

/// The bandwidth buckets a session's transfers take from.
#[derive(Clone, Default)]
pub(crate) struct Limits {
    pub(crate) upload: Option<Arc<Bucket>>,
    pub(crate) download: Option<Arc<Bucket>>,
    /// The user's storage quota, if any.
    pub(crate) quota: Option<Quota>,
}

/// How much a re-hash reads at a time.
const HASH_CHUNK: u32 = 256 * 1024;

pub(crate) struct UserFiles<R> {
    app: Tollgate<R>,
    session_id: String,
    user: User,
    policies: Vec<(String, Vec<Rule>)>,
    namespace: Namespace,
    limits: Limits,
    protocol: Protocol,
    remote_addr: String,
    /// The session aggregate as this session's last recorded operation
    /// left it, so that recording the next one need not read back every
    /// event of the session (see `Tollgate::execute_known`).
    known_session: Arc<tokio::sync::Mutex<Option<(Session, u64)>>>,
}

/// The rule name recorded when a path tries to leave the namespace.
const NAMESPACE_RULE: &str = "namespace";

/// The rule name recorded when a client tries to remove, rename or replace
/// a virtual folder itself.
const FOLDER_RULE: &str = "virtual-folder";
/// The rule recorded for an upload refused because its user is at their quota.
const QUOTA_RULE: &str = "quota";

fn map_storage(err: StorageError) -> FileOpError {
    match err.kind {
        StorageErrorKind::NotFound => FileOpError::NotFound,
        StorageErrorKind::PermissionDenied => FileOpError::Denied,
        StorageErrorKind::AlreadyExists => FileOpError::AlreadyExists,
        StorageErrorKind::Conflict => {
            FileOpError::Conflict("wrong file type or directory not empty")
        }
        StorageErrorKind::QuotaExceeded => FileOpError::QuotaExceeded,
        StorageErrorKind::Unsupported => FileOpError::Unsupported,
        StorageErrorKind::Unavailable => {
            tracing::error!(error = ?err, source = ?err.source, "storage backend unavailable");
            FileOpError::Unavailable
        }
        StorageErrorKind::Corrupt => {
            tracing::error!(error = ?err, source = ?err.source, "stored data failed its integrity check");
            FileOpError::Corrupt
        }
        StorageErrorKind::Other => {
            tracing::error!(error = ?err, source = ?err.source, "storage failure");
            FileOpError::Internal
        }
    }
}

impl<R: PersistedEventRepository + Clone + 'static> UserFiles<R> {
    pub(crate) fn new(
        app: Tollgate<R>,
        session_id: String,
        user: User,
        grants: Grants,
        protocol: Protocol,
        remote_addr: String,
    ) -> Self {
        let Grants {
            policies,
            namespace,
            limits,
        } = grants;
        UserFiles {
            app,
            session_id,
            user,
            policies,
            namespace,
            limits,
            protocol,
            remote_addr,
            known_session: Arc::default(),
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            actor: self.user.username.clone(),
            user: Some(self.user.username.clone()),
            session_id: Some(self.session_id.clone()),
            remote_addr: Some(self.remote_addr.clone()),
            protocol: Some(self.protocol.as_str().to_string()),
        }
    }

    async fn record(&self, command: SessionCommand) {
        let mut known = self.known_session.lock().await;
        let res = self
            .app
            .execute_known(&self.session_id, &self.actor(), known.take(), || {
                command.clone()
            })
            .await;
        match res {
            Ok(state) => *known = Some(state),
            Err(err) => {
                tracing::error!(session_id = %self.session_id, error = %err, "cannot record a file operation");
            }
        }
    }

    /// Parses a client path; an escape attempt is recorded as a denial.
    async fn parse(&self, operation: FileOperation, raw: &str) -> Result<VirtualPath, FileOpError> {
        match VirtualPath::parse(raw) {
            Ok(path) => Ok(path),
            Err(err) => {
                if err == PathError::Escapes || err == PathError::Nul {
                    self.record(SessionCommand::RecordDenial {
                        operation,
                        path: raw.replace('\0', "\\0"),
                        target: None,
                        rule: NAMESPACE_RULE.to_string(),
                    })
                    .await;
                }
                Err(FileOpError::InvalidPath(err))
            }
        }
    }

    fn decide(&self, permission: Permission, path: &VirtualPath) -> tollgate_domain::Decision {
        let named: Vec<NamedRules<'_>> = self
            .policies
            .iter()
            .map(|(policy, rules)| NamedRules { policy, rules })
            .collect();
        evaluate(&named, permission, path)
    }

    /// Parses a client path and checks `permission` on it; a refusal is recorded.
    async fn checked(
        &self,
        operation: FileOperation,
        permission: Permission,
        raw: &str,
    ) -> Result<VirtualPath, FileOpError> {
        let path = self.parse(operation, raw).await?;
        self.authorize(permission, operation, &path, None).await?;
        Ok(path)
    }

    /// Checks a permission for a non-transfer operation; a denial is recorded.
    async fn authorize(
        &self,
        permission: Permission,
        operation: FileOperation,
        path: &VirtualPath,
        target: Option<&VirtualPath>,
    ) -> Result<(), FileOpError> {
        let checked = target.unwrap_or(path);
        let decision = self.decide(permission, checked);
        if decision.allowed {
            return Ok(());
        }
        self.record(SessionCommand::RecordDenial {
            operation,
            path: path.to_string(),
            target: target.map(ToString::to_string),
            rule: decision.rule,
        })
        .await;
        Err(FileOpError::Denied)
    }

    /// Records the outcome of a non-transfer operation.
    async fn outcome<T>(
        &self,
        operation: FileOperation,
        path: &VirtualPath,
        target: Option<&VirtualPath>,
        result: Result<T, StorageError>,
    ) -> Result<T, FileOpError> {
        self.outcome_with(operation, path, target, None, result)
            .await
    }

    /// `outcome` of an operation that changes what the user stores by
    /// `usage` when it succeeds.
    async fn outcome_with<T>(
        &self,
        operation: FileOperation,
        path: &VirtualPath,
        target: Option<&VirtualPath>,
        usage: Option<UsageChange>,
        result: Result<T, StorageError>,
    ) -> Result<T, FileOpError> {
        let (path_text, target_text) = (path.to_string(), target.map(ToString::to_string));
        match result {
            Ok(value) => {
                self.record(SessionCommand::RecordOperation {
                    operation,
                    path: path_text,
                    target: target_text,
                    usage,
                })
                .await;
                if let Some(change) = usage {
                    self.app.inner.quotas.committed(&self.user.username, change);
                }
                Ok(value)
            }
            Err(err) => {
                let error = map_storage(err);
                self.record(SessionCommand::RecordFailure {
                    operation,
                    path: path_text,
                    target: target_text,
                    error: error.to_string(),
                })
                .await;
                Err(error)
            }
        }
    }

    /// Refuses (and records) an operation on a virtual folder itself.
    async fn protect_folders(
        &self,
        operation: FileOperation,
        path: &VirtualPath,
        target: Option<&VirtualPath>,
    ) -> Result<(), FileOpError> {
        let touches = self.namespace.is_mount_point(path)
            || target.is_some_and(|t| self.namespace.is_mount_point(t));
        if !touches {
            return Ok(());
        }
        self.record(SessionCommand::RecordDenial {
            operation,
            path: path.to_string(),
            target: target.map(ToString::to_string),
            rule: FOLDER_RULE.to_string(),
        })
        .await;
        Err(FileOpError::Denied)
    }

    fn transfer_context(&self, path: &VirtualPath, direction: Direction) -> TransferContext {
        TransferContext {
            session_id: self.session_id.clone(),
            username: self.user.username.clone(),
            protocol: self.protocol,
            remote_addr: self.remote_addr.clone(),
            path: path.to_string(),
            direction,
        }
    }

    /// Records a denied transfer under a fresh transfer id.
    async fn deny_transfer(
        &self,
        path: &VirtualPath,
        direction: Direction,
        rule: String,
    ) -> FileOpError {
        let context = self.transfer_context(path, direction);
        let id = uuid::Uuid::now_v7().to_string();
        let res = self
            .app
            .execute_known(&id, &self.actor(), Some((Transfer::default(), 0)), || {
                TransferCommand::Deny {
                    context: context.clone(),
                    rule: rule.clone(),
                }
            })
            .await;
        if let Err(err) = res {
            tracing::error!(error = %err, "cannot record a denied transfer");
        }
        FileOpError::Denied
    }

    /// Refuses (and records, as denied by the `quota` rule) an upload its
    /// user has no room for.
    async fn over_quota(&self, path: &VirtualPath) -> FileOpError {
        self.deny_transfer(path, Direction::Upload, QUOTA_RULE.to_string())
            .await;
        FileOpError::QuotaExceeded
    }

    /// Records a transfer's start and returns its log once the start is
    /// committed: nothing is read before its start is on record.
    async fn start_transfer(
        &self,
        path: &VirtualPath,
        direction: Direction,
        offset: u64,
    ) -> Result<TransferLog<R>, FileOpError> {
        let mut log = self.begin_transfer(path, direction, offset);
        log.confirm().await?;
        Ok(log)
    }

    /// Sends a transfer's start to the event log and returns its log at
    /// once, the start still committing: an upload stages its first bytes
    /// meanwhile, and `confirm` waits for the start before anything of the
    /// transfer becomes visible or is recorded after it.
    fn begin_transfer(
        &self,
        path: &VirtualPath,
        direction: Direction,
        offset: u64,
    ) -> TransferLog<R> {
        let (id, actor) = (uuid::Uuid::now_v7().to_string(), self.actor());
        let started = Instant::now();
        let context = self.transfer_context(path, direction);
        let (app, start_id, start_actor) = (self.app.clone(), id.clone(), actor.clone());
        // A fresh id: nothing to read back before the first event.
        let start = tokio::spawn(async move {
            app.execute_known(
                &start_id,
                &start_actor,
                Some((Transfer::default(), 0)),
                || TransferCommand::Start {
                    context: context.clone(),
                    offset,
                },
            )
            .await
        });
        TransferLog {
            app: self.app.clone(),
            id,
            actor,
            started,
            known: Known::Pending(start),
        }
    }
}

#[async_trait]
impl<R: PersistedEventRepository + Clone + 'static> FileOps for UserFiles<R> {
    fn username(&self) -> &str {
        &self.user.username
    }

    fn ftp_require_tls(&self) -> bool {
        self.user.ftp_require_tls
    }

    fn with_protocol(&self, protocol: Protocol) -> Arc<dyn FileOps> {
        Arc::new(UserFiles {
            app: self.app.clone(),
            session_id: self.session_id.clone(),
            user: self.user.clone(),
            policies: self.policies.clone(),
            namespace: self.namespace.clone(),
            limits: self.limits.clone(),
            protocol,
            remote_addr: self.remote_addr.clone(),
            known_session: self.known_session.clone(),
        })
    }

    async fn record_refused_command(&self, command: &str) {
        /// Long enough for any real command line; a longer one is cut.
        const KEPT: usize = 1024;
        let mut command = command.replace('\0', "\\0");
        if command.len() > KEPT {
            let mut end = KEPT;
            while !command.is_char_boundary(end) {
                end -= 1;
            }
            command.truncate(end);
        }
        self.record(SessionCommand::RecordRefusedCommand { command })
            .await;
    }

    async fn realpath(&self, path: &str) -> Result<String, FileOpError> {
        Ok(self.parse(FileOperation::Stat, path).await?.to_string())
    }

    async fn stat(&self, path: &str) -> Result<FileMeta, FileOpError> {
        let path = self.parse(FileOperation::Stat, path).await?;
        let listed = path.parent().unwrap_or_else(VirtualPath::root);
        self.authorize(Permission::List, FileOperation::Stat, &listed, None)
            .await?;
        self.namespace.stat(&path).await.map_err(map_storage)
    }

    async fn list(&self, path: &str) -> Result<Vec<DirEntry>, FileOpError> {
        let path = self
            .checked(FileOperation::List, Permission::List, path)
            .await?;
        let res = self.namespace.list(&path).await;
        self.outcome(FileOperation::List, &path, None, res).await
    }

    async fn list_pages(&self, path: &str) -> Result<DirPages, FileOpError> {
        let path = self
            .checked(FileOperation::List, Permission::List, path)
            .await?;
        let res = self.namespace.list_pages(&path).await;
        let pages = self.outcome(FileOperation::List, &path, None, res).await?;
        Ok(Box::pin(pages.map_err(map_storage)))
    }

    async fn mkdir(&self, path: &str) -> Result<(), FileOpError> {
        let path = self
            .checked(FileOperation::Mkdir, Permission::CreateDirs, path)
            .await?;
        let res = if self.namespace.is_mount_point(&path) {
            Err(StorageError::of(StorageErrorKind::AlreadyExists))
        } else {
            let at = self.namespace.resolve(&path);
            at.storage.mkdir(at.root, &at.path).await
        };
        self.outcome(FileOperation::Mkdir, &path, None, res).await
    }

    async fn rmdir(&self, path: &str) -> Result<(), FileOpError> {
        let path = self.parse(FileOperation::Rmdir, path).await?;
        if path.is_root() {
            return Err(FileOpError::Denied);
        }
        self.authorize(Permission::RemoveDirs, FileOperation::Rmdir, &path, None)
            .await?;
        self.protect_folders(FileOperation::Rmdir, &path, None)
            .await?;
        let at = self.namespace.resolve(&path);
        let res = at.storage.rmdir(at.root, &at.path).await;
        self.outcome(FileOperation::Rmdir, &path, None, res).await
    }

    async fn remove(&self, path: &str) -> Result<(), FileOpError> {
        let path = self
            .checked(FileOperation::Remove, Permission::Delete, path)
            .await?;
        self.protect_folders(FileOperation::Remove, &path, None)
            .await?;
        let at = self.namespace.resolve(&path);
        let usage = file_size(at.storage.stat(at.root, &at.path).await).map(UsageChange::removed);
        let res = at.storage.remove(at.root, &at.path).await;
        self.outcome_with(FileOperation::Remove, &path, None, usage, res)
            .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), FileOpError> {
        let from = self.parse(FileOperation::Rename, from).await?;
        let to = self.parse(FileOperation::Rename, to).await?;
        if from.is_root() || to.is_root() {
            return Err(FileOpError::Denied);
        }
        self.authorize(Permission::Rename, FileOperation::Rename, &from, None)
            .await?;
        self.authorize(Permission::Rename, FileOperation::Rename, &from, Some(&to))
            .await?;
        self.protect_folders(FileOperation::Rename, &from, Some(&to))
            .await?;
        let mut usage = None;
        let res = if self.namespace.same_place(&from, &to) {
            let (at, dest) = (self.namespace.resolve(&from), self.namespace.resolve(&to));
            // A file the rename replaces is no longer stored.
            usage = file_size(at.storage.stat(at.root, &dest.path).await).map(UsageChange::removed);
            at.storage.rename(at.root, &at.path, &dest.path).await
        } else {
            // Across backends a rename would be a copy: not done implicitly.
            Err(StorageError::of(StorageErrorKind::Unsupported))
        };
        self.outcome_with(FileOperation::Rename, &from, Some(&to), usage, res)
            .await
    }

    async fn set_times(&self, path: &str, atime: i64, mtime: i64) -> Result<(), FileOpError> {
        let path = self.parse(FileOperation::SetAttributes, path).await?;
        self.authorize(
            Permission::ChmodChtimes,
            FileOperation::SetAttributes,
            &path,
            None,
        )
        .await?;
        let at = self.namespace.resolve(&path);
        let res = at.storage.set_times(at.root, &at.path, atime, mtime).await;
        self.outcome(FileOperation::SetAttributes, &path, None, res)
            .await
    }

    async fn open_download(&self, path: &str) -> Result<Box<dyn Download>, FileOpError> {
        let path = self.parse(FileOperation::Stat, path).await?;
        let decision = self.decide(Permission::Download, &path);
        if !decision.allowed {
            return Err(self
                .deny_transfer(&path, Direction::Download, decision.rule)
                .await);
        }
        let at = self.namespace.resolve(&path);
        let mut handle = at
            .storage
            .open_read(at.root, &at.path)
            .await
            .map_err(map_storage)?;
        let meta = handle.meta().await.map_err(map_storage)?;
        if meta.kind != FileKind::File {
            return Err(FileOpError::Conflict("not a regular file"));
        }
        let log = self.start_transfer(&path, Direction::Download, 0).await?;
        Ok(Box::new(DownloadTransfer {
            log: Some(log),
            handle,
            hash: Some(BackgroundHash::new()),
            bytes: 0,
            limit: self.limits.download.clone(),
        }))
    }

    async fn open_upload(
        &self,
        path: &str,
        mode: UploadMode,
    ) -> Result<Box<dyn Upload>, FileOpError> {
        let path = self.parse(FileOperation::Stat, path).await?;
        if self.namespace.is_mount_point(&path) {
            return Err(FileOpError::Conflict("is a directory"));
        }
        let at = self.namespace.resolve(&path);
        let may_upload = self.decide(Permission::Upload, &path);
        let may_overwrite = self.decide(Permission::Overwrite, &path);
        // An upload that replaces whatever is there, by a user who may both
        // create and overwrite it, opens its staging file before knowing
        // whether the file exists: one trip to the backend for both.
        let replaces_early = matches!(mode, UploadMode::Truncate | UploadMode::CreateNew)
            && may_upload.allowed
            && may_overwrite.allowed;
        let (existing, staged) = if replaces_early {
            let replacing = at
                .storage
                .stat_and_replace(at.root, &at.path)
                .await
                .map_err(map_storage)?;
            (replacing.existing, Some(replacing.handle))
        } else {
            let existing = found(at.storage.stat(at.root, &at.path).await).map_err(map_storage)?;
            (existing, None)
        };
        // Every refusal from here on discards the staged file, if any.
        let checked = async {
            if let Some(meta) = &existing {
                if meta.kind == FileKind::Dir {
                    return Err(FileOpError::Conflict("is a directory"));
                }
                if mode == UploadMode::CreateNew {
                    return Err(FileOpError::AlreadyExists);
                }
            }
            let decision = if existing.is_some() {
                may_overwrite
            } else {
                may_upload
            };
            if !decision.allowed {
                return Err(self
                    .deny_transfer(&path, Direction::Upload, decision.rule)
                    .await);
            }
            let previous = existing.as_ref().map(|meta| meta.size);
            let reservation = match self.limits.quota {
                None => None,
                Some(quota) => match self.app.reserve(&self.user.username, quota, previous).await {
                    Ok(reservation) => Some(reservation),
                    Err(QuotaRefusal::Exceeded) => return Err(self.over_quota(&path).await),
                    Err(QuotaRefusal::Unavailable(err)) => {
                        tracing::error!(error = %err, "cannot read a user's storage usage");
                        return Err(FileOpError::Unavailable);
                    }
                },
            };
            Ok((previous, reservation))
        }
        .await;
        let (previous, reservation) = match checked {
            Ok(checked) => checked,
            Err(err) => {
                discard_staged(staged).await;
                return Err(err);
            }
        };
        let in_place =
            existing.is_some() && matches!(mode, UploadMode::Resume | UploadMode::Append);
        let mut handle = match staged {
            Some(staged) => staged.map_err(map_storage)?,
            None => {
                let write_mode = if in_place {
                    WriteMode::InPlace
                } else {
                    WriteMode::Replace
                };
                at.storage
                    .open_write(at.root, &at.path, write_mode)
                    .await
                    .map_err(map_storage)?
            }
        };
        let mut hash = StreamHash::new();
        let size = if in_place {
            // Hash what is there now, so that a resume or append continuing
            // at the end keeps the digest streaming (an object store can
            // read back only this part).
            let size = handle.size().await.map_err(map_storage)?;
            hash_prefix(handle.as_mut(), &mut hash, size)
                .await
                .map_err(map_storage)?;
            size
        } else {
            0
        };
        let log = self.begin_transfer(&path, Direction::Upload, size);
        Ok(Box::new(UploadTransfer {
            log: Some(log),
            handle: Some(handle),
            hash,
            bytes: 0,
            append_at: (mode == UploadMode::Append).then_some(size),
            limit: self.limits.upload.clone(),
            username: self.user.username.clone(),
            previous,
            reservation,
            size,
            refused: None,
        }))
    }
}

/// Removes a staging file opened for an upload that was then refused.
async fn discard_staged(staged: Option<Result<Box<dyn WriteHandle>, StorageError>>) {
    if let Some(Ok(handle)) = staged
        && let Err(err) = handle.abort().await
    {
        tracing::warn!(error = ?err, "cannot discard the staging file of a refused upload");
    }
}

/// Records the life of one transfer.
struct TransferLog<R> {
    app: Tollgate<R>,
    id: String,
    actor: Actor,
    started: Instant,
    known: Known,
}

/// The transfer as its start left it: only its log changes it after.
enum Known {
    /// The start's commit, still running.
    Pending(tokio::task::JoinHandle<Result<(Transfer, u64), AppError>>),
    Started((Transfer, u64)),
    /// The start could not be recorded: the transfer has no record.
    Unrecorded,
}

impl<R: PersistedEventRepository + Clone + 'static> TransferLog<R> {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Waits for the start to be committed; an error when it could not be.
    async fn confirm(&mut self) -> Result<(), FileOpError> {
        if let Known::Pending(start) = &mut self.known {
            self.known = match start.await {
                Ok(Ok(known)) => Known::Started(known),
                Ok(Err(err)) => {
                    tracing::error!(transfer_id = %self.id, error = %err, "cannot record a transfer start");
                    Known::Unrecorded
                }
                Err(err) => {
                    tracing::error!(transfer_id = %self.id, error = %err, "the recording of a transfer start was lost");
                    Known::Unrecorded
                }
            };
        }
        match self.known {
            Known::Started(_) => Ok(()),
            _ => Err(FileOpError::Internal),
        }
    }

    /// Records the transfer's outcome; an error when it could not be.
    async fn end(mut self, command: TransferCommand) -> Result<(), FileOpError> {
        // Without its start on record an outcome would name an unknown
        // transfer: nothing is recorded then (`confirm` logged why).
        self.confirm().await?;
        let Known::Started(known) = std::mem::replace(&mut self.known, Known::Unrecorded) else {
            return Err(FileOpError::Internal);
        };
        self.app
            .execute_known(&self.id, &self.actor, Some(known), || command.clone())
            .await
            .map(drop)
            .map_err(|err| {
                tracing::error!(transfer_id = %self.id, error = %err, "cannot record a transfer outcome");
                FileOpError::Internal
            })
    }

    async fn abort(self, bytes: u64, reason: &str) {
        let duration_ms = self.elapsed_ms();
        // An abort answers no client: a failure to record it is logged.
        let _ = self
            .end(TransferCommand::Abort {
                bytes,
                reason: reason.to_string(),
                duration_ms,
            })
            .await;
    }

    /// Records a failure the client is told of whether or not it is
    /// recorded (`end` logs why not).
    async fn fail(self, bytes: u64, error: &FileOpError) {
        let duration_ms = self.elapsed_ms();
        let _ = self
            .end(TransferCommand::Fail {
                bytes,
                error: error.to_string(),
                duration_ms,
            })
            .await;
    }
}

/// SHA-256 of a file computed on the fly while its bytes pass in order
/// from offset 0; any other access pattern gives up and the file is
/// hashed afterwards if a digest is needed.
struct StreamHash {
    hasher: Option<Sha256>,
    next: u64,
}

impl StreamHash {
    fn new() -> Self {
        StreamHash {
            hasher: Some(Sha256::new()),
            next: 0,
        }
    }

    /// A hash that gives no digest.
    fn given_up() -> Self {
        StreamHash {
            hasher: None,
            next: 0,
        }
    }

    fn feed(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        match &mut self.hasher {
            Some(hasher) if offset == self.next => {
                hasher.update(data);
                self.next += data.len() as u64;
            }
            // A re-read of bytes already hashed changes nothing.
            Some(_) if offset + data.len() as u64 <= self.next => {}
            _ => self.hasher = None,
        }
    }

    /// The digest, if every byte up to `size` passed in order.
    fn finish(self, size: u64) -> Option<String> {
        self.hasher
            .filter(|_| self.next == size)
            .map(|h| hex::encode(h.finalize()))
    }
}

/// How much of a download is gathered before it is hashed.
const HASH_BATCH: usize = 256 * 1024;

/// A download's `StreamHash`, fed on the blocking pool a batch at a time,
/// so that no reply waits for the digest of its bytes (hashing took about
/// a third of a download's server time, all of it on the request's path).
/// The batches are hashed one after the other, in the order they came.
struct BackgroundHash {
    /// The hash, while no batch is being hashed.
    idle: Option<StreamHash>,
    /// The batch being hashed; gives the hash back.
    running: Option<tokio::task::JoinHandle<StreamHash>>,
    /// Bytes not handed over yet (shared, not copied).
    batch: Vec<(u64, Bytes)>,
    batched: usize,
}

impl BackgroundHash {
    fn new() -> Self {
        BackgroundHash {
            idle: Some(StreamHash::new()),
            running: None,
            batch: Vec::new(),
            batched: 0,
        }
    }

    async fn feed(&mut self, offset: u64, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.batched += data.len();
        self.batch.push((offset, data));
        if self.batched >= HASH_BATCH {
            let mut hash = self.settled().await;
            let batch = std::mem::take(&mut self.batch);
            self.batched = 0;
            self.running = Some(tokio::task::spawn_blocking(move || {
                for (offset, data) in batch {
                    hash.feed(offset, &data);
                }
                hash
            }));
        }
    }

    /// The hash once the batch being hashed, if any, is done.
    async fn settled(&mut self) -> StreamHash {
        match self.running.take() {
            Some(running) => running.await.unwrap_or_else(|err| {
                tracing::error!(error = %err, "hashing a download failed");
                StreamHash::given_up()
            }),
            None => self.idle.take().expect("a hash is idle when none runs"),
        }
    }

    /// The digest, if every byte up to `size` passed in order.
    async fn finish(mut self, size: u64) -> Option<String> {
        let mut hash = self.settled().await;
        for (offset, data) in self.batch.drain(..) {
            hash.feed(offset, &data);
        }
        hash.finish(size)
    }
}

struct DownloadTransfer<R: PersistedEventRepository + Clone + 'static> {
    log: Option<TransferLog<R>>,
    handle: Box<dyn ReadHandle>,
    hash: Option<BackgroundHash>,
    bytes: u64,
    /// The user's download bandwidth, if limited.
    limit: Option<Arc<Bucket>>,
}

#[async_trait]
impl<R: PersistedEventRepository + Clone + 'static> Download for DownloadTransfer<R> {
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, FileOpError> {
        let data = self
            .handle
            .read_at(offset, len)
            .await
            .map_err(map_storage)?;
        if let Some(hash) = &mut self.hash {
            hash.feed(offset, data.clone()).await;
        }
        self.bytes += data.len() as u64;
        if let Some(limit) = &self.limit {
            limit.take(data.len() as u64).await;
        }
        Ok(data)
    }

    async fn meta(&mut self) -> Result<FileMeta, FileOpError> {
        self.handle.meta().await.map_err(map_storage)
    }

    async fn finish(mut self: Box<Self>) -> Result<(), FileOpError> {
        let log = self.log.take().expect("a transfer is finished once");
        let size = self.handle.meta().await.map(|m| m.size).unwrap_or(0);
        let sha256 = match self.hash.take() {
            Some(hash) => hash.finish(size).await,
            None => None,
        };
        let duration_ms = log.elapsed_ms();
        // The bytes have reached the client: a completion that could not be
        // recorded is logged (by `end`), and the close still succeeds.
        let _ = log
            .end(TransferCommand::Complete {
                bytes: self.bytes,
                size,
                sha256,
                duration_ms,
                usage: None,
            })
            .await;
        Ok(())
    }

    async fn abort(mut self: Box<Self>, reason: &str) {
        if let Some(log) = self.log.take() {
            log.abort(self.bytes, reason).await;
        }
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Drop for DownloadTransfer<R> {
    fn drop(&mut self) {
        if let Some(log) = self.log.take() {
            let bytes = self.bytes;
            spawn_cleanup(async move {
                log.abort(bytes, "connection closed before the transfer finished")
                    .await
            });
        }
    }
}

struct UploadTransfer<R: PersistedEventRepository + Clone + 'static> {
    log: Option<TransferLog<R>>,
    handle: Option<Box<dyn WriteHandle>>,
    hash: StreamHash,
    bytes: u64,
    /// For an append, where the next write goes.
    append_at: Option<u64>,
    /// The user's upload bandwidth, if limited.
    limit: Option<Arc<Bucket>>,
    username: String,
    /// The size of the file the upload replaces or extends.
    previous: Option<u64>,
    /// Room against the user's quota, if they have one.
    reservation: Option<Reservation>,
    /// How large the file is as far as the writes so far go.
    size: u64,
    /// Why a write was refused: the upload can then only fail.
    refused: Option<FileOpError>,
}

impl<R: PersistedEventRepository + Clone + 'static> UploadTransfer<R> {
    fn handle(&mut self) -> &mut Box<dyn WriteHandle> {
        self.handle
            .as_mut()
            .expect("the write handle lives until the transfer ends")
    }
}

#[async_trait]
impl<R: PersistedEventRepository + Clone + 'static> Upload for UploadTransfer<R> {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), FileOpError> {
        let offset = self.append_at.unwrap_or(offset);
        let len = data.len() as u64;
        if let Some(err) = &self.refused {
            return Err(err.clone());
        }
        let end = offset.saturating_add(len);
        if let Some(reservation) = &mut self.reservation
            && let Err(err) = reservation.grow_to(end.max(self.size))
        {
            // The upload can only fail now: its room goes back at once,
            // not when the client gets round to closing the handle.
            self.reservation = None;
            self.refused = Some(err.clone());
            return Err(err);
        }
        self.size = self.size.max(end);
        if let Some(limit) = &self.limit {
            limit.take(len).await;
        }
        let handle = self
            .handle
            .as_mut()
            .expect("the write handle lives until the transfer ends");
        let hash = &mut self.hash;
        // Hash while the storage writes: the two overlap on different threads.
        let (written, ()) = tokio::join!(handle.write_at(offset, data.clone()), async {
            hash.feed(offset, &data)
        });
        if let Err(err) = written {
            // Bytes this upload accepted earlier may be among those lost
            // (a backend gathers small writes and hands them over later),
            // so it can only fail now, however the client goes on.
            let err = map_storage(err);
            self.refused = Some(err.clone());
            return Err(err);
        }
        if let Some(next) = &mut self.append_at {
            *next += len;
        }
        self.bytes += len;
        Ok(())
    }

    async fn meta(&mut self) -> Result<FileMeta, FileOpError> {
        let size = self.handle().size().await.map_err(map_storage)?;
        Ok(FileMeta {
            kind: FileKind::File,
            size,
            mode: 0o644,
            mtime: 0,
            atime: 0,
        })
    }

    async fn sync(&mut self) -> Result<(), FileOpError> {
        if let Some(err) = &self.refused {
            return Err(err.clone());
        }
        self.handle().sync().await.map_err(map_storage)
    }

    async fn finish(mut self: Box<Self>) -> Result<(), FileOpError> {
        let mut log = self.log.take().expect("a transfer is finished once");
        let mut handle = self.handle.take().expect("a transfer is finished once");
        // An upload whose start is not on record is never committed.
        if let Err(err) = log.confirm().await {
            if let Err(err) = handle.abort().await {
                tracing::warn!(error = ?err, "cannot discard an unrecorded upload");
            }
            return Err(err);
        }
        let hash = std::mem::replace(&mut self.hash, StreamHash::new());
        let bytes = self.bytes;
        if let Some(err) = self.refused.take() {
            if let Err(err) = handle.abort().await {
                tracing::warn!(error = ?err, "cannot discard a refused upload");
            }
            log.fail(bytes, &err).await;
            return Err(err);
        }
        // Hash before commit so that a file is only visible with its digest
        // known; a write pattern other than sequential-from-zero is hashed
        // by reading back the staged content.
        let size = match handle.size().await {
            Ok(size) => size,
            Err(err) => return Err(fail(log, handle, bytes, err).await),
        };
        let digest = match hash.finish(size) {
            Some(digest) => digest,
            None => match hash_written(handle.as_mut(), size).await {
                Ok(digest) => digest,
                Err(err) => return Err(fail(log, handle, bytes, err).await),
            },
        };
        match handle.commit().await {
            Ok(size) => {
                let duration_ms = log.elapsed_ms();
                let usage = UsageChange::written(size, self.previous);
                let app = log.app.clone();
                // The file is in place either way; a completion that could
                // not be recorded is not reported to the client as a success.
                let recorded = log
                    .end(TransferCommand::Complete {
                        bytes,
                        size,
                        sha256: Some(digest),
                        duration_ms,
                        usage: Some(usage),
                    })
                    .await;
                app.inner.quotas.committed(&self.username, usage);
                recorded
            }
            Err(err) => {
                let error = map_storage(err);
                log.fail(bytes, &error).await;
                Err(error)
            }
        }
    }

    async fn abort(mut self: Box<Self>, reason: &str) {
        if let (Some(log), Some(handle)) = (self.log.take(), self.handle.take()) {
            if let Err(err) = handle.abort().await {
                tracing::warn!(error = ?err, "cannot discard an aborted upload");
            }
            log.abort(self.bytes, reason).await;
        }
    }
}

/// The size of what a stat found, if it is a file.
fn file_size(stat: Result<FileMeta, StorageError>) -> Option<u64> {
    stat.ok()
        .filter(|meta| meta.kind == FileKind::File)
        .map(|meta| meta.size)
}

/// Feeds the first `size` bytes of a write handle's content to `hash`.
async fn hash_prefix(
    handle: &mut dyn WriteHandle,
    hash: &mut StreamHash,
    size: u64,
) -> Result<(), StorageError> {
    let mut offset = 0u64;
    while offset < size {
        let want = u32::try_from((size - offset).min(u64::from(HASH_CHUNK))).unwrap_or(HASH_CHUNK);
        let chunk = handle.read_at(offset, want).await?;
        if chunk.is_empty() {
            break;
        }
        hash.feed(offset, &chunk);
        offset += chunk.len() as u64;
    }
    Ok(())
}

/// SHA-256 of the first `size` bytes a write handle holds, read back.
async fn hash_written(handle: &mut dyn WriteHandle, size: u64) -> Result<String, StorageError> {
    let mut hash = StreamHash::new();
    hash_prefix(handle, &mut hash, size).await?;
    hash.finish(size).ok_or_else(|| StorageError {
        kind: StorageErrorKind::Other,
        source: Some("the staged content is shorter than its size".into()),
    })
}

/// Discards the staged upload and records the transfer as failed.
async fn fail<R: PersistedEventRepository + Clone + 'static>(
    log: TransferLog<R>,
    handle: Box<dyn WriteHandle>,
    bytes: u64,
    err: StorageError,
) -> FileOpError {
    let error = map_storage(err);
    if let Err(err) = handle.abort().await {
        tracing::warn!(error = ?err, "cannot discard a failed upload");
    }
    log.fail(bytes, &error).await;
    error
}

impl<R: PersistedEventRepository + Clone + 'static> Drop for UploadTransfer<R> {
    fn drop(&mut self) {
        if let (Some(log), Some(handle)) = (self.log.take(), self.handle.take()) {
            let bytes = self.bytes;
            spawn_cleanup(async move {
                if let Err(err) = handle.abort().await {
                    tracing::warn!(error = ?err, "cannot discard an abandoned upload");
                }
                log.abort(bytes, "connection closed before the transfer finished")
                    .await;
            });
        }
    }
}

/// Runs the recording of an abandoned transfer after its owner is gone.
fn spawn_cleanup(task: impl std::future::Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(task);
        }
        Err(_) => tracing::error!("no runtime to record an abandoned transfer"),
    }
}
