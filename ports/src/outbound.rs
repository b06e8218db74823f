//! Outbound ports: what the application needs from the world.
//!
//! The aggregate store itself is the `cqrs_es::persist::PersistedEventRepository`
//! trait; this module holds the global-log side of the event store (reading
//! in commit order, subscriber checkpoints, audit seals), file storage,
//! password hashing and the clock.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tollgate_domain::VirtualPath;

use crate::BoxError;

/// What went wrong in a store, as a caller must branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreErrorKind {
    /// The record does not exist. HTTP 404.
    NotFound,
    /// A concurrent writer won (optimistic concurrency). HTTP 409; SFTP/FTP retry or fail.
    Conflict,
    /// The database cannot be reached. HTTP 503; SFTP `SSH_FX_FAILURE`; FTP 421.
    Unavailable,
    /// Stored data does not decode. HTTP 500; reported as an integrity problem.
    Corrupt,
}

/// An error from the event log, audit or projection stores.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct StoreError {
    /// What kind of failure.
    pub kind: StoreErrorKind,
    /// A description without secrets.
    pub message: String,
    /// The underlying cause.
    #[source]
    pub source: Option<BoxError>,
}

impl StoreError {
    /// An error of `kind` with a message and a cause.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>, source: Option<BoxError>) -> Self {
        StoreError {
            kind,
            message: message.into(),
            source,
        }
    }
}

/// One committed event as the global log holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Gapless position in commit order, starting at 1.
    pub position: u64,
    /// Stable unique id, for de-duplication by subscribers.
    pub event_id: String,
    /// `user`, `session`, `transfer`, ...
    pub aggregate_type: String,
    /// The aggregate instance.
    pub aggregate_id: String,
    /// The event's sequence within its aggregate, starting at 1.
    pub sequence: u64,
    /// The variant name.
    pub event_type: String,
    /// The payload schema version.
    pub event_version: String,
    /// The payload.
    pub payload: serde_json::Value,
    /// Actor, session, remote address, protocol, correlation id, time.
    pub metadata: serde_json::Value,
}

/// The global event log, read in commit order.
///
/// Contract: positions are gapless and assigned in commit order, so a
/// reader that has seen position `n` has seen every position below `n`
/// once it reads again; an event is never updated or deleted.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Up to `limit` events with position greater than `after`, in order.
    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError>;
    /// `read_after` for a reader that follows the log and comes back for
    /// more (a subscriber): it may answer with fewer events than the log
    /// holds, even fewer than `limit`, but never with none while the log
    /// holds any after `after`, and never skips one. A store may answer it
    /// from the events this process just committed.
    async fn follow(&self, after: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        self.read_after(after, limit).await
    }
    /// The highest committed position (0 when empty).
    async fn head(&self) -> Result<u64, StoreError>;
    /// The position of the event with this id, if any.
    async fn position_of(&self, event_id: &str) -> Result<Option<u64>, StoreError>;
}

/// The audit hash of one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The sealed event's position.
    pub position: u64,
    /// The sealed event's id.
    pub event_id: String,
    /// Hex SHA-256 chaining this record to the previous one.
    pub hash: String,
}

/// A signed tree head over the first `size` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// The number of records covered.
    pub size: u64,
    /// Hex Merkle root over them.
    pub root: String,
    /// The signing key's id (8 hex digits).
    pub key_id: String,
    /// The signed note (C2SP checkpoint in a signed note).
    pub note: String,
    /// When it was made (RFC 3339).
    pub time: String,
}

/// Where the audit hash chain, the Merkle leaves and the checkpoints are
/// kept. Append-only.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Records that `positions` were pruned (by the prune `pruned_by`)
    /// and deletes their records from the log, in one transaction; their
    /// seals and leaves stay.
    async fn prune(&self, pruned_by: &str, positions: &[u64]) -> Result<(), StoreError>;
    /// Up to `limit` pruned positions greater than `after`, in order.
    async fn read_pruned(&self, after: u64, limit: u32) -> Result<Vec<u64>, StoreError>;
    /// The newest seal, if any.
    async fn last_seal(&self) -> Result<Option<Seal>, StoreError>;
    /// Appends seals, which must continue the chain without a gap; must
    /// return `Conflict` if another sealer wrote the same positions first.
    /// Seals derive from the log, so they may be committed without waiting
    /// for the disk (see `ProjectionStore::commit`).
    async fn append_seals(&self, seals: &[Seal]) -> Result<(), StoreError>;
    /// Up to `limit` seals with position greater than `after`, in order.
    async fn read_seals(&self, after: u64, limit: u32) -> Result<Vec<Seal>, StoreError>;
    /// How many Merkle leaves are stored (they are gapless from 1).
    async fn leaf_count(&self) -> Result<u64, StoreError>;
    /// Stores hex leaf hashes at positions `after + 1 ..`, and a
    /// checkpoint, in one transaction; must return `Conflict` (and store
    /// nothing) if another process stored any of them first. Leaves alone
    /// may be committed without waiting for the disk (see
    /// `ProjectionStore::commit`); with a checkpoint, the commit is durable.
    async fn append_leaves(
        &self,
        after: u64,
        leaves: &[String],
        checkpoint: Option<&CheckpointRecord>,
    ) -> Result<(), StoreError>;
    /// Up to `limit` (position, hex leaf) pairs after `after`, in order.
    async fn read_leaves(&self, after: u64, limit: u32) -> Result<Vec<(u64, String)>, StoreError>;
    /// Stores a checkpoint; `Conflict` if one of that size exists.
    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError>;
    /// The checkpoint of the largest size, if any.
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;
    /// The checkpoint of exactly `size` records, if any.
    async fn checkpoint_of_size(&self, size: u64) -> Result<Option<CheckpointRecord>, StoreError>;
    /// Up to `limit` checkpoints larger than `after`, by size.
    async fn read_checkpoints(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<CheckpointRecord>, StoreError>;
}

/// Signs the audit log's checkpoints (the key stays in the adapter).
pub trait CheckpointSigner: Send + Sync {
    /// The key's name, also the checkpoints' origin line.
    fn origin(&self) -> &str;
    /// The key id (8 hex digits).
    fn key_id(&self) -> String;
    /// The verifier key string (`NAME+KEYID+KEY`), public.
    fn verifier_key(&self) -> String;
    /// The signed note of `text`.
    fn sign(&self, text: &str) -> String;
}

/// One change to a projection document.
#[derive(Debug, Clone, PartialEq)]
pub struct DocChange {
    /// The projection (read model) name.
    pub projection: String,
    /// The document key.
    pub key: String,
    /// The new document as JSON text, or `None` to remove it. Text, not a
    /// parsed document: the store keeps it as text, and a projector writes
    /// its typed views straight to text.
    pub doc: Option<String>,
}

/// Read models and subscriber checkpoints.
#[async_trait]
pub trait ProjectionStore: Send + Sync {
    /// The last position `subscriber` has processed (0 if never).
    async fn checkpoint(&self, subscriber: &str) -> Result<u64, StoreError>;
    /// Applies `changes` and moves the checkpoint from `from` to `to`,
    /// atomically; must return `Conflict` (and change nothing) when the
    /// checkpoint is no longer `from` because another process moved it.
    ///
    /// What it stores derives from the log, so it may be committed without
    /// waiting for the disk: a crash of the machine may then lose it, but
    /// only with every commit after it and never an event it was derived
    /// from, and the subscriber derives it again from its checkpoint. Every
    /// later durable commit (an event's) makes it durable too.
    async fn commit(
        &self,
        subscriber: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError>;
    /// One document.
    async fn get(
        &self,
        projection: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError>;
    /// All documents of a projection, ordered by key.
    async fn list(&self, projection: &str) -> Result<Vec<(String, serde_json::Value)>, StoreError>;
    /// Drops the documents of `projections` and resets `subscriber` to 0.
    async fn reset(&self, subscriber: &str, projections: &[&str]) -> Result<(), StoreError>;
}

/// What went wrong in file storage, as a caller must branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageErrorKind {
    /// No such file or directory. SFTP `NO_SUCH_FILE`; FTP 550; HTTP 404.
    NotFound,
    /// Refused by the backend, or the path would leave the namespace (a
    /// symlink pointing out). SFTP `PERMISSION_DENIED`; FTP 550; HTTP 403.
    PermissionDenied,
    /// The target exists. SFTP `FAILURE`; FTP 550; HTTP 409.
    AlreadyExists,
    /// A directory operation on a file or the reverse, or a non-empty
    /// directory removal. SFTP `FAILURE`; FTP 550; HTTP 409.
    Conflict,
    /// The backend is out of space or quota. SFTP `FAILURE`; FTP 552; HTTP 507.
    QuotaExceeded,
    /// The backend cannot be reached. SFTP `FAILURE`; FTP 451; HTTP 503.
    Unavailable,
    /// The backend cannot do this (a random write into an object store).
    /// SFTP `OP_UNSUPPORTED`; FTP 502; HTTP 501.
    Unsupported,
    /// Stored data failed its integrity check (an encrypted file that was
    /// altered or truncated). SFTP `FAILURE`; FTP 451; HTTP 500.
    Corrupt,
    /// Anything else. SFTP `FAILURE`; FTP 451; HTTP 500.
    Other,
}

/// A file storage error.
#[derive(Debug, thiserror::Error)]
#[error("{kind:?}")]
pub struct StorageError {
    /// What kind of failure.
    pub kind: StorageErrorKind,
    /// The underlying cause (may name host paths: log it, never send it).
    #[source]
    pub source: Option<BoxError>,
}

impl StorageError {
    /// An error of `kind` without a cause.
    pub fn of(kind: StorageErrorKind) -> Self {
        StorageError { kind, source: None }
    }
}

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// File metadata, in the user's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// File, directory, ...
    pub kind: FileKind,
    /// Size in bytes (plaintext size for transformed backends).
    pub size: u64,
    /// Unix permission bits (`0o644`), without the file type.
    pub mode: u32,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Access time, Unix seconds.
    pub atime: i64,
}

/// A named entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// The entry's name (one component).
    pub name: String,
    /// Its metadata.
    pub meta: FileMeta,
}

/// How a write handle treats existing content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Writes go to a staging file that replaces the target atomically on
    /// commit; an abort leaves the target as it was.
    Replace,
    /// Writes go into the existing file in place (resume, append, random
    /// writes); it is created empty if missing.
    InPlace,
}

/// Random-access reads of one file.
#[async_trait]
pub trait ReadHandle: Send + Sync {
    /// Up to `len` bytes at `offset`; an empty result means end of file.
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError>;
    /// The current metadata of the open file.
    async fn meta(&mut self) -> Result<FileMeta, StorageError>;
}

/// Writes to one file, made visible by `commit`.
#[async_trait]
pub trait WriteHandle: Send + Sync {
    /// Writes `data` at `offset`.
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError>;
    /// Reads back up to `len` bytes at `offset` of what is written so far.
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError>;
    /// The current size of what is written.
    async fn size(&mut self) -> Result<u64, StorageError>;
    /// Makes what is written so far durable without making it visible (a
    /// client's `fsync`). A backend that keeps an upload only at its
    /// commit, which is durable, answers at once for a new file (nothing of
    /// it exists before the commit) and `Unsupported` for a rewrite of a
    /// file that exists (which stays as it was until the commit).
    async fn sync(&mut self) -> Result<(), StorageError>;
    /// Makes the content durable and visible under the target name;
    /// returns the final size.
    async fn commit(self: Box<Self>) -> Result<u64, StorageError>;
    /// Discards a staged write; the target stays as it was (`Replace`) or
    /// keeps what was written (`InPlace`).
    async fn abort(self: Box<Self>) -> Result<(), StorageError>;
}

/// A directory's entries in pages, read from the backend as they are
/// consumed.
pub type EntryPages = futures::stream::BoxStream<'static, Result<Vec<DirEntry>, StorageError>>;

/// A listing already read whole, as one page.
pub fn one_page<E: Send + 'static>(
    entries: Vec<DirEntry>,
) -> futures::stream::BoxStream<'static, Result<Vec<DirEntry>, E>> {
    Box::pin(futures::stream::once(async move { Ok(entries) }))
}

/// A storage backend holding users' namespaces.
///
/// `root` names the namespace (a user's home); every `VirtualPath` is
/// resolved under it and must never reach outside it, symlinks included:
/// an escape must return `PermissionDenied`.
#[async_trait]
pub trait FileStorage: Send + Sync {
    /// Creates the namespace root if missing.
    async fn ensure_root(&self, root: &str) -> Result<(), StorageError>;
    /// Metadata of a path; a symlink is described, not followed.
    async fn stat(&self, root: &str, path: &VirtualPath) -> Result<FileMeta, StorageError>;
    /// Entries of a directory, sorted by name.
    async fn list(&self, root: &str, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError>;
    /// Entries of a directory in pages, each read from the backend when the
    /// caller asks for it, so that a directory of any size is never held
    /// whole; an absent directory fails here, before the first page. Pages
    /// follow the backend's order (by name, or by key for object stores).
    /// Backends that read a directory at once give one page.
    async fn list_pages(&self, root: &str, path: &VirtualPath) -> Result<EntryPages, StorageError> {
        Ok(one_page(self.list(root, path).await?))
    }
    /// Creates one directory; its parent must exist.
    async fn mkdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError>;
    /// Removes an empty directory.
    async fn rmdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError>;
    /// Removes a file.
    async fn remove(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError>;
    /// Renames a file or directory; must return `AlreadyExists` if `to` exists.
    async fn rename(
        &self,
        root: &str,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), StorageError>;
    /// Sets access and modification times (Unix seconds).
    async fn set_times(
        &self,
        root: &str,
        path: &VirtualPath,
        atime: i64,
        mtime: i64,
    ) -> Result<(), StorageError>;
    /// Opens a file for reading.
    async fn open_read(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Box<dyn ReadHandle>, StorageError>;
    /// Opens a file for writing.
    async fn open_write(
        &self,
        root: &str,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError>;
    /// For a writer that replaces whatever a path holds: what `stat` says of
    /// it (`None` when it does not exist) and, unless it is a directory, a
    /// file staged to replace it as `open_write` with `WriteMode::Replace`
    /// opens one. A backend that can do both in one trip overrides this; a
    /// staged file has no visible effect until it is committed.
    async fn stat_and_replace(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Replacing, StorageError> {
        let existing = found(self.stat(root, path).await)?;
        let handle = match &existing {
            Some(meta) if meta.kind == FileKind::Dir => {
                Err(StorageError::of(StorageErrorKind::Conflict))
            }
            _ => self.open_write(root, path, WriteMode::Replace).await,
        };
        Ok(Replacing { existing, handle })
    }
}

/// What a `stat` found: `None` when the path does not exist.
pub fn found(stat: Result<FileMeta, StorageError>) -> Result<Option<FileMeta>, StorageError> {
    match stat {
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind == StorageErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

/// What `FileStorage::stat_and_replace` found and opened.
pub struct Replacing {
    /// The path's metadata, if it exists.
    pub existing: Option<FileMeta>,
    /// The staged replacement, or why there is none (`Conflict` for a
    /// directory).
    pub handle: Result<Box<dyn WriteHandle>, StorageError>,
}

/// A mount as the backends see it: its storage and, for an encrypted
/// mount, its sealed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountTarget {
    /// The mount's name.
    pub name: String,
    /// Where its files live (secrets sealed).
    pub storage: tollgate_domain::mount::StorageSpec,
    /// The sealed key its files are encrypted with, if any.
    pub encryption_key: Option<tollgate_domain::mount::SealedSecret>,
}

/// A mounted backend and the namespace root inside it.
#[derive(Clone)]
pub struct MountedStorage {
    /// The backend.
    pub storage: std::sync::Arc<dyn FileStorage>,
    /// The root to pass with every call.
    pub root: String,
}

/// Builds the storage backends of mounts (opening their secrets).
#[async_trait]
pub trait MountBackends: Send + Sync {
    /// The backend of a mount; built once per specification and reused,
    /// without network I/O (connections are made on first use).
    async fn backend(&self, mount: &MountTarget) -> Result<MountedStorage, StorageError>;
    /// Reaches the backend now: credentials, bucket or container, host key
    /// and root are checked, and the root is created if missing.
    async fn check(&self, mount: &MountTarget) -> Result<(), StorageError>;
}

/// Password hashing, in PHC string format.
pub trait PasswordHasher: Send + Sync {
    /// Hashes a new password.
    fn hash(&self, password: &str) -> Result<String, BoxError>;
    /// Whether `password` matches `hash`. Must take about the same time
    /// whatever the answer.
    fn verify(&self, password: &str, hash: &str) -> bool;
    /// Whether `hash` is in a form `verify` understands (an imported hash
    /// is refused otherwise).
    fn recognizes(&self, hash: &str) -> bool;
    /// Whether a hash that has just verified should be replaced by a new
    /// one (an imported or older scheme).
    fn needs_rehash(&self, hash: &str) -> bool;
}

/// Why a directory did not authenticate a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The directory holds no such user (or the search found several).
    #[error("unknown user")]
    UnknownUser,
    /// The bind with the user's password was refused.
    #[error("wrong password")]
    WrongPassword,
    /// The directory could not be reached or answered with an error in
    /// time; the text says what happened, never with a password.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// A user as a directory sees them after a successful bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The entry's distinguished name.
    pub dn: String,
    /// The Tollgate groups the user's directory groups map to, sorted and
    /// without duplicates; directory groups without a mapping are left out.
    pub groups: Vec<String>,
}

/// An LDAP or Active Directory server that authenticates users by bind.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Verifies `password` for the login name `username` by binding as the
    /// user's entry, and reads the user's group memberships. Bounded in
    /// time: a directory that does not answer is `Unavailable`.
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError>;
}

/// A new TOTP secret and how an authenticator app takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpSecret {
    /// The secret, base32 as authenticator apps show it.
    pub secret: String,
    /// The `otpauth://totp/...` URI.
    pub uri: String,
    /// That URI as a QR code, a PNG image.
    pub qr_png: Vec<u8>,
}

/// Time-based one-time passwords (RFC 6238: SHA-1, 6 digits, 30 s steps).
pub trait OneTimePasswords: Send + Sync {
    /// A new random secret for `account`, labelled with `issuer`.
    fn new_secret(&self, issuer: &str, account: &str) -> Result<TotpSecret, BoxError>;
    /// The time step `code` belongs to, if it is the code of `secret` at
    /// `unix_time` or one step either side (clock drift).
    fn verify(&self, secret: &str, code: &str, unix_time: i64) -> Option<u64>;
}

/// The clock. The only source of time for the application.
pub trait Clock: Send + Sync {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// What a bearer token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The principal's name.
    pub subject: String,
    /// Whether the principal is an administrator (else a user).
    pub admin: bool,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// A unique token id.
    pub token_id: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Malformed, unknown key or bad signature.
    #[error("invalid token")]
    Invalid,
    /// Past its expiry.
    #[error("expired token")]
    Expired,
}

/// Signs and verifies bearer tokens. Implementations keep the previous
/// signing key after a rotation, so tokens issued before it stay valid
/// until they expire.
pub trait TokenSigner: Send + Sync {
    /// A signed token for the claims.
    fn sign(&self, claims: &TokenClaims) -> Result<String, TokenError>;
    /// The claims of a token whose signature verifies and which has not
    /// expired at `now` (Unix seconds).
    fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError>;
}

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The sealed text is malformed or was not sealed with this key.
    #[error("the sealed secret cannot be opened with this key")]
    Undecryptable,
}

/// Encrypts the secrets of storage configurations (authenticated
/// encryption), so that events and read models hold only ciphertext.
pub trait SecretBox: Send + Sync {
    /// The sealed form of `plaintext`; sealing twice gives different texts.
    fn seal(&self, plaintext: &str) -> String;
    /// The clear text of a sealed secret.
    fn open(&self, sealed: &str) -> Result<String, SecretError>;
}

/// One subject key: a data key that seals personal data in events, kept
/// wrapped by the key-encryption key, owned by the subject whose erasure
/// destroys it (`session:ID` until the session's login, then `user:NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectKey {
    /// The key's id, named by every value it sealed.
    pub key_id: String,
    /// Who the key belongs to.
    pub subject: String,
    /// The data key, wrapped.
    pub wrapped: String,
}

/// Where subject keys are kept. Unlike the log, this store forgets: an
/// erasure deletes a subject's keys, which leaves every value they sealed
/// unreadable while the records that hold them stay intact.
#[async_trait]
pub trait SubjectKeyStore: Send + Sync {
    /// Stores a new key.
    async fn add_subject_key(&self, key: &SubjectKey) -> Result<(), StoreError>;
    /// Gives key `key_id` to `subject` (a session's key to its user).
    async fn assign_subject_key(&self, key_id: &str, subject: &str) -> Result<(), StoreError>;
    /// The keys among `key_ids` that still exist.
    async fn subject_keys(&self, key_ids: &[String]) -> Result<Vec<SubjectKey>, StoreError>;
    /// Deletes every key of `subject`; returns their ids.
    async fn erase_subject(&self, subject: &str) -> Result<Vec<String>, StoreError>;
}

/// Seals personal data with subject keys (authenticated encryption); the
/// data keys themselves are wrapped by a key-encryption key.
pub trait SubjectCipher: Send + Sync {
    /// A fresh data key, wrapped.
    fn new_wrapped_key(&self) -> String;
    /// `plaintext` sealed with the wrapped key, bound to `key_id`.
    fn seal_with(
        &self,
        wrapped: &str,
        key_id: &str,
        plaintext: &str,
    ) -> Result<String, SecretError>;
    /// The clear text of a value sealed with the wrapped key and `key_id`.
    fn open_with(&self, wrapped: &str, key_id: &str, sealed: &str) -> Result<String, SecretError>;
}

/// One webhook request, before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// The endpoint.
    pub url: String,
    /// `webhook-id`: the event's id, stable across retries and redeliveries.
    pub message_id: String,
    /// `webhook-timestamp`: Unix seconds of this attempt.
    pub timestamp: i64,
    /// The JSON body.
    pub body: String,
    /// The subscription's signing secret in clear (`whsec_...`).
    pub secret: String,
}

/// What the endpoint answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookResponse {
    /// The HTTP status.
    pub status: u16,
    /// The endpoint's `Retry-After`, when it gave one.
    pub retry_after: Option<std::time::Duration>,
}

/// Why a webhook was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The target is not allowed (a private or loopback address, a bad URL).
    #[error("refused: {0}")]
    Refused(String),
    /// The endpoint could not be reached or did not answer in time.
    #[error("not delivered: {0}")]
    Transport(String),
}

/// Sends signed webhooks (Standard Webhooks).
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// A new signing secret (`whsec_` and base64 of random bytes).
    fn new_secret(&self) -> String;
    /// Whether `url` is an endpoint deliveries may go to.
    async fn check(&self, url: &str) -> Result<(), WebhookError>;
    /// Signs and sends one request.
    async fn send(&self, request: &WebhookRequest) -> Result<WebhookResponse, WebhookError>;
}

/// One delivery attempt of one event to one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The subscription.
    pub subscription: String,
    /// The event delivered.
    pub event_id: String,
    /// Its position.
    pub position: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// How long the attempt took.
    pub latency_ms: u64,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When it was made (RFC 3339).
    pub time: String,
    /// Whether an administrator asked for it (a redelivery).
    pub redelivery: bool,
}

/// The delivery log of the subscriptions.
#[async_trait]
pub trait DeliveryLog: Send + Sync {
    /// Appends attempts (a batch's successes are written together).
    async fn record_deliveries(&self, attempts: &[DeliveryAttempt]) -> Result<(), StoreError>;
    /// The newest `limit` attempts of a subscription, newest first.
    async fn deliveries(
        &self,
        subscription: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, StoreError>;
}

/// One record for a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The topic.
    pub topic: String,
    /// The key: the event's aggregate id, so one aggregate's events share a
    /// partition and keep their order.
    pub key: String,
    /// The rendered event.
    pub payload: String,
    /// `event_id`, `event_type`, `position`, `audit_hash`.
    pub headers: Vec<(String, String)>,
}

/// Why records were not all produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{produced} records acknowledged, then: {reason}")]
pub struct ProduceError {
    /// How many records, from the first, the brokers acknowledged.
    pub produced: usize,
    /// What went wrong with the next one.
    pub reason: String,
}

/// Produces records to Kafka (idempotently, in order per key).
#[async_trait]
pub trait EventProducer: Send + Sync {
    /// Whether brokers are configured (Kafka subscriptions need them).
    fn configured(&self) -> bool;
    /// Produces the records; on failure, says how many from the first
    /// were acknowledged.
    async fn produce(&self, records: &[KafkaRecord]) -> Result<(), ProduceError>;
}
