//! Inbound ports: what protocol adapters call. Implemented by the
//! application, which authorises, records an event and then delegates.
//!
//! Paths arrive as the client sent them (raw strings); parsing them into a
//! `VirtualPath` is the application's job, so every protocol rejects the
//! same inputs in the same way.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tollgate_domain::PathError;
use tollgate_domain::session::Protocol;

pub use crate::outbound::{DirEntry, FileKind, FileMeta};

/// Who is connecting, over what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The protocol of the connection.
    pub protocol: Protocol,
    /// The client's address, `ip:port`.
    pub remote_addr: String,
}

/// An OpenSSH user certificate presented at login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateLogin {
    /// `SHA256:...` of the certified key.
    pub key_fingerprint: String,
    /// The certificate's key id.
    pub key_id: String,
    /// The certificate's serial.
    pub serial: u64,
    /// `SHA256:...` of the CA that signed it.
    pub ca_fingerprint: String,
    /// Why the protocol refused it, if it did.
    pub refusal: Option<String>,
}

/// Why a login was refused. The client is told only "denied"; the reason
/// goes into the recorded `LoginFailed` event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong credential or disabled account.
    #[error("authentication failed")]
    Denied,
    /// The service cannot decide now (store unavailable).
    #[error("authentication unavailable")]
    Unavailable,
    /// The first factor passed; the user has a second one, whose code
    /// must follow (`Sessions::login_code`, SSH keyboard-interactive).
    #[error("second factor required")]
    SecondFactorRequired,
}

/// The kinds of file operation failure, as a protocol must answer them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileOpError {
    /// A policy denied it (recorded). SFTP `PERMISSION_DENIED`; FTP 550; HTTP 403.
    #[error("permission denied")]
    Denied,
    /// The path is invalid or leaves the namespace. SFTP `PERMISSION_DENIED`
    /// for escapes and `BAD_MESSAGE`-free `FAILURE` otherwise; FTP 553; HTTP 400.
    #[error("invalid path: {0}")]
    InvalidPath(#[from] PathError),
    /// No such file. SFTP `NO_SUCH_FILE`; FTP 550; HTTP 404.
    #[error("no such file or directory")]
    NotFound,
    /// The target exists. SFTP `FAILURE`; FTP 550; HTTP 409.
    #[error("file already exists")]
    AlreadyExists,
    /// Wrong kind of file or a non-empty directory. SFTP `FAILURE`; FTP 550; HTTP 409.
    #[error("{0}")]
    Conflict(&'static str),
    /// Out of space. SFTP `FAILURE`; FTP 552; HTTP 507.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The operation is not supported. SFTP `OP_UNSUPPORTED`; FTP 502; HTTP 501.
    #[error("operation not supported")]
    Unsupported,
    /// The storage backend cannot be reached. SFTP `FAILURE`; FTP 451; HTTP 503.
    #[error("storage backend unavailable")]
    Unavailable,
    /// Stored data failed its integrity check (logged). SFTP `FAILURE`;
    /// FTP 451; HTTP 500.
    #[error("stored data failed its integrity check")]
    Corrupt,
    /// Anything else; the cause was logged. SFTP `FAILURE`; FTP 451; HTTP 500.
    #[error("internal failure")]
    Internal,
}

/// A directory's entries in pages, read as the caller consumes them.
pub type DirPages = futures::stream::BoxStream<'static, Result<Vec<DirEntry>, FileOpError>>;

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadMode {
    /// Replace the file atomically when the upload completes.
    Truncate,
    /// Write into the existing file at the given offsets (resume, random writes).
    Resume,
    /// Append to the end of the existing file.
    Append,
    /// Create a new file; fail with `AlreadyExists` if there is one.
    CreateNew,
}

/// Starting sessions and logging in.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Whether connections from `remote_addr` (`ip:port`) are refused now,
    /// before any authentication (the defender banned the address).
    fn banned(&self, remote_addr: &str) -> bool;
    /// Records a new connection and returns its session id.
    async fn open(&self, client: ClientInfo) -> Result<String, LoginError>;
    /// Password login. Every failure is recorded as `LoginFailed`. For a
    /// user with a second factor, SSH gets `SecondFactorRequired` (then
    /// `login_code`); other protocols take the code appended to the
    /// password.
    async fn login_password(
        &self,
        session_id: &str,
        username: &str,
        password: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError>;
    /// The second factor code of a login whose first factor (password,
    /// key or certificate) answered `SecondFactorRequired` in this
    /// session: a TOTP code or a recovery code. Every failure is recorded.
    async fn login_code(
        &self,
        session_id: &str,
        username: &str,
        code: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError>;
    /// Whether `username` may log in with this public key (OpenSSH
    /// `type base64`), asked before the client proves possession. A refused
    /// key is recorded as `LoginFailed`.
    async fn offer_public_key(&self, session_id: &str, username: &str, public_key: &str) -> bool;
    /// Public-key login after the protocol verified the client's signature.
    async fn login_public_key(
        &self,
        session_id: &str,
        username: &str,
        public_key: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError>;
    /// Login with an OpenSSH certificate the protocol verified (signature,
    /// trusted CA, validity, principal, revocation); a `refusal` records
    /// why the protocol refused it.
    async fn login_certificate(
        &self,
        session_id: &str,
        username: &str,
        certificate: &CertificateLogin,
    ) -> Result<Arc<dyn FileOps>, LoginError>;
    /// Login with a bearer token issued to a user by the HTTP API (an
    /// administrator's token has no files). Every failure is recorded.
    async fn login_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Arc<dyn FileOps>, LoginError>;
    /// Records the end of a connection.
    async fn close(&self, session_id: &str, reason: &str);
    /// Resolves when an administrator asks for this connection to be
    /// closed; the protocol adapter then ends it. Pending forever otherwise.
    async fn disconnect_requested(&self, session_id: &str);
}

/// The file operations of one logged-in session.
#[async_trait]
pub trait FileOps: Send + Sync {
    /// The logged-in user.
    fn username(&self) -> &str;
    /// Whether the user's account needs TLS on every FTP channel
    /// (control and data).
    fn ftp_require_tls(&self) -> bool;
    /// The same session's operations, recorded under another protocol of
    /// the same connection (SCP and SSH commands inside an SSH session).
    fn with_protocol(&self, protocol: Protocol) -> Arc<dyn FileOps>;
    /// Records a command the protocol refused to run (an SSH exec request).
    async fn record_refused_command(&self, command: &str);
    /// The normalised form of a path (`/`-rooted).
    async fn realpath(&self, path: &str) -> Result<String, FileOpError>;
    /// Metadata of a path (needs `list` on its parent).
    async fn stat(&self, path: &str) -> Result<FileMeta, FileOpError>;
    /// A directory listing (needs `list`).
    async fn list(&self, path: &str) -> Result<Vec<DirEntry>, FileOpError>;
    /// Lists a directory page by page (needs `list`): for clients that read
    /// a listing in parts (SFTP `READDIR`), so that a directory of any size
    /// is never held whole.
    async fn list_pages(&self, path: &str) -> Result<DirPages, FileOpError>;
    /// Creates a directory (needs `create_dirs`).
    async fn mkdir(&self, path: &str) -> Result<(), FileOpError>;
    /// Removes an empty directory (needs `remove_dirs`).
    async fn rmdir(&self, path: &str) -> Result<(), FileOpError>;
    /// Removes a file (needs `delete`).
    async fn remove(&self, path: &str) -> Result<(), FileOpError>;
    /// Renames (needs `rename` on both paths).
    async fn rename(&self, from: &str, to: &str) -> Result<(), FileOpError>;
    /// Sets times (needs `chmod_chtimes`).
    async fn set_times(&self, path: &str, atime: i64, mtime: i64) -> Result<(), FileOpError>;
    /// Opens a download (needs `download`); records the transfer.
    async fn open_download(&self, path: &str) -> Result<Box<dyn Download>, FileOpError>;
    /// Opens an upload (needs `upload`, plus `overwrite` for an existing
    /// file); records the transfer.
    async fn open_upload(
        &self,
        path: &str,
        mode: UploadMode,
    ) -> Result<Box<dyn Upload>, FileOpError>;
}

/// One running download. Dropping it without `finish` records an abort.
#[async_trait]
pub trait Download: Send + Sync {
    /// Up to `len` bytes at `offset`; empty at end of file.
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, FileOpError>;
    /// Metadata of the open file.
    async fn meta(&mut self) -> Result<FileMeta, FileOpError>;
    /// Ends the transfer normally and records it.
    async fn finish(self: Box<Self>) -> Result<(), FileOpError>;
    /// Ends the transfer as aborted (the connection dropped mid-way).
    async fn abort(self: Box<Self>, reason: &str);
}

/// One running upload. Dropping it without `finish` records an abort and,
/// for a replacing upload, leaves the target untouched.
#[async_trait]
pub trait Upload: Send + Sync {
    /// Writes `data` at `offset` (ignored for append mode: data goes at the end).
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), FileOpError>;
    /// Metadata of what is written so far.
    async fn meta(&mut self) -> Result<FileMeta, FileOpError>;
    /// Makes what is written so far durable; the file stays invisible
    /// until `finish` (a client's `fsync`).
    async fn sync(&mut self) -> Result<(), FileOpError>;
    /// Commits the file and records the completed transfer.
    async fn finish(self: Box<Self>) -> Result<(), FileOpError>;
    /// Ends the transfer as aborted (the connection dropped or the client gave up).
    async fn abort(self: Box<Self>, reason: &str);
}
