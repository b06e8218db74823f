//! SFTP proxy: users' namespaces as directories on a remote SFTP server.
//!
//! One SSH connection and one SFTP session carry every operation (SFTP
//! matches replies to requests by id, so operations run concurrently on
//! it). The connection is opened by the first operation and opened again
//! by the first operation after it is found closed or broken; an operation
//! in flight when it breaks fails with `Unavailable`.
//!
//! Uploads do not wait for each write's reply before sending the next, and
//! sequential downloads read ahead, so a transfer is paced by the link and
//! not by the round trip; both keep a bounded number of requests in flight.
//!
//! Paths: the namespace root is a directory on the remote (absolute, or
//! relative to the login directory). A path's parent directory must lie
//! inside the root once the server resolves its symlinks (`REALPATH`), and
//! the final component is never followed: `LSTAT` describes a symlink, and
//! opening one, or setting its times, is refused. SFTP cannot open without
//! following, so a symlink swapped in between that check and the open by
//! someone else with access to the remote would be followed; Tollgate itself
//! never creates symlinks.
//!
//! Uploads in `Replace` mode go to a hidden staging file next to the target
//! that is renamed over it on commit. SFTP's own rename refuses an existing
//! target, so the commit uses `posix-rename@openssh.com` when the server
//! offers it; otherwise it removes the target first, and for that moment
//! the file is absent under its name.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::rawsession::Limits;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{
    DirEntry, FileKind, FileMeta, FileStorage, ReadHandle, StorageError, StorageErrorKind,
    WriteHandle, WriteMode,
};

/// Names with this prefix are staging files: hidden and unreachable.
const STAGING_PREFIX: &str = ".tollgate-part-";

/// Bound on each step of opening a connection (TCP and key exchange,
/// authentication, starting SFTP), so a server that is down or silent gives
/// `Unavailable` instead of a hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one SFTP request may wait for its reply. Generous, because
/// requests queue behind the transfers sharing the connection; a dead
/// connection is found sooner by the SSH keepalives.
const REQUEST_TIMEOUT_SECS: u64 = 30;

/// SSH keepalives: sent after this much silence from the server, and the
/// connection is dropped after `KEEPALIVE_MAX` unanswered ones.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_MAX: usize = 3;

/// Size of one read or write request (the SFTP clients' usual size, one
/// SSH packet), lowered to the server's limits when it announces smaller.
const REQUEST_SIZE: u32 = 32 * 1024;

/// Requests one handle keeps in flight: writes awaiting their status, or
/// reads ahead of a sequential reader. With `REQUEST_SIZE` this bounds a
/// handle's buffered data to 2 MiB each way.
const MAX_IN_FLIGHT: usize = 64;

/// The most one `read_at` returns; larger requests get a shorter answer.
const MAX_READ_AT: u32 = 1024 * 1024;

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSYNC: &str = "fsync@openssh.com";
const LIMITS: &str = "limits@openssh.com";

/// How to reach the remote server. Secrets arrive in clear; `Debug`
/// redacts them.
#[derive(Clone)]
pub struct SftpOptions {
    /// The server's host name or address.
    pub host: String,
    /// Its SSH port.
    pub port: u16,
    /// The account to log in as.
    pub username: String,
    /// The account's password; tried after the private key, if any.
    pub password: Option<String>,
    /// An OpenSSH private key (PEM/OpenSSH format text), not encrypted.
    pub private_key: Option<String>,
    /// The server's host key fingerprint, `SHA256:<base64 without padding>`
    /// as `ssh-keygen -lf` prints it. Required: a server presenting any
    /// other key is refused with `PermissionDenied`, naming the fingerprint
    /// it presented.
    pub host_key_fingerprint: String,
}

impl fmt::Debug for SftpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |secret: &Option<String>| secret.as_ref().map(|_| "<redacted>");
        f.debug_struct("SftpOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("private_key", &redacted(&self.private_key))
            .field("host_key_fingerprint", &self.host_key_fingerprint)
            .finish()
    }
}

/// Users' namespaces as directories on a remote SFTP server, reached over
/// one shared SSH connection.
pub struct SftpStorage {
    options: SftpOptions,
    /// The current connection; replaced when found broken. Held while
    /// connecting, so concurrent operations wait for one attempt.
    slot: tokio::sync::Mutex<Slot>,
    /// How many connection attempts failed; read before waiting for the
    /// slot, to tell whether an attempt failed meanwhile.
    failed_attempts: AtomicU64,
}

#[derive(Default)]
struct Slot {
    connection: Option<Arc<Connection>>,
    /// The last failed attempt's kind and cause.
    last_failure: Option<(StorageErrorKind, String)>,
}

impl fmt::Debug for SftpStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpStorage")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl SftpStorage {
    /// The SFTP proxy adapter. No I/O yet: it connects on first use.
    pub fn new(options: SftpOptions) -> SftpStorage {
        SftpStorage {
            options,
            slot: tokio::sync::Mutex::new(Slot::default()),
            failed_attempts: AtomicU64::new(0),
        }
    }

    /// The shared connection, opened (again) if there is none or it broke.
    /// Operations that waited while an attempt failed fail with it, rather
    /// than each waiting for an attempt of its own.
    async fn connection(&self) -> Result<Arc<Connection>, StorageError> {
        let failures_seen = self.failed_attempts.load(Ordering::Acquire);
        let mut slot = self.slot.lock().await;
        if let Some(connection) = slot.connection.as_ref() {
            if connection.usable() {
                return Ok(connection.clone());
            }
            tracing::info!(
                host = %self.options.host,
                port = self.options.port,
                "the connection to the SFTP server broke; reconnecting"
            );
            slot.connection = None;
        }
        if self.failed_attempts.load(Ordering::Acquire) != failures_seen
            && let Some((kind, cause)) = &slot.last_failure
        {
            return Err(error(
                *kind,
                format!("connecting failed while this operation waited: {cause}"),
            ));
        }
        match Connection::open(&self.options).await {
            Ok(connection) => {
                let connection = Arc::new(connection);
                slot.connection = Some(connection.clone());
                slot.last_failure = None;
                Ok(connection)
            }
            Err(err) => {
                let cause = err
                    .source
                    .as_ref()
                    .map_or_else(|| format!("{:?}", err.kind), |source| source.to_string());
                slot.last_failure = Some((err.kind, cause));
                self.failed_attempts.fetch_add(1, Ordering::Release);
                Err(err)
            }
        }
    }
}

/// A cause described by this adapter, with the underlying error if any.
#[derive(Debug)]
struct Cause {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|err| err as &(dyn std::error::Error + 'static))
    }
}

fn error(kind: StorageErrorKind, message: impl Into<String>) -> StorageError {
    StorageError {
        kind,
        source: Some(Box::new(Cause {
            message: message.into(),
            source: None,
        })),
    }
}

fn error_from(
    kind: StorageErrorKind,
    message: impl Into<String>,
    source: impl std::error::Error + Send + Sync + 'static,
) -> StorageError {
    StorageError {
        kind,
        source: Some(Box::new(Cause {
            message: message.into(),
            source: Some(Box::new(source)),
        })),
    }
}

fn denied() -> StorageError {
    StorageError::of(StorageErrorKind::PermissionDenied)
}

/// The kind of an SFTP client error. OpenSSH answers plain `FAILURE` for
/// many causes (an existing directory, a non-empty one, a full disk); the
/// operations that can tell them apart look at the path again.
fn sftp_kind(err: &SftpError) -> StorageErrorKind {
    match err {
        SftpError::Status(status) => match status.status_code {
            StatusCode::NoSuchFile => StorageErrorKind::NotFound,
            StatusCode::PermissionDenied => StorageErrorKind::PermissionDenied,
            StatusCode::OpUnsupported => StorageErrorKind::Unsupported,
            StatusCode::NoConnection | StatusCode::ConnectionLost => StorageErrorKind::Unavailable,
            StatusCode::Ok | StatusCode::Eof | StatusCode::Failure | StatusCode::BadMessage => {
                StorageErrorKind::Other
            }
        },
        // The session's transport is gone or stopped answering.
        SftpError::IO(_) | SftpError::Timeout | SftpError::UnexpectedBehavior(_) => {
            StorageErrorKind::Unavailable
        }
        SftpError::Limited(_) | SftpError::UnexpectedPacket => StorageErrorKind::Other,
    }
}

fn is_failure(err: &StorageError) -> bool {
    err.kind == StorageErrorKind::Other
}

/// The kind of an SSH error met while connecting.
fn ssh_kind(err: &russh::Error) -> StorageErrorKind {
    use russh::Error as E;
    match err {
        E::UnknownKey | E::WrongServerSig | E::NotAuthenticated | E::NoAuthMethod => {
            StorageErrorKind::PermissionDenied
        }
        E::IO(_)
        | E::Disconnect
        | E::HUP
        | E::ConnectionTimeout
        | E::KeepaliveTimeout
        | E::InactivityTimeout
        | E::SendError
        | E::RecvError
        | E::Elapsed(_)
        | E::ChannelOpenFailure(_) => StorageErrorKind::Unavailable,
        _ => StorageErrorKind::Other,
    }
}

/// `text` as a fingerprint is compared: trimmed, without base64 padding.
fn normalise_fingerprint(text: &str) -> String {
    text.trim().trim_end_matches('=').to_string()
}

/// Checks the server's host key against the configured fingerprint and
/// remembers the one presented, for the error message.
struct HostKeyCheck {
    expected: String,
    presented: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.fingerprint(HashAlg::Sha256),
            // A certificate is accepted for the key it certifies.
            PublicKeyOrCertificate::Certificate(cert) => {
                cert.public_key().fingerprint(HashAlg::Sha256)
            }
        }
        .to_string();
        let matches = fingerprint == self.expected;
        *self
            .presented
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(fingerprint);
        Ok(matches)
    }
}

fn client_config() -> client::Config {
    client::Config {
        // Bulk downloads need a large receive window; the default throttles
        // SFTP far below the link. 65535 is the largest packet russh takes.
        window_size: 16 * 1024 * 1024,
        maximum_packet_size: 65535,
        channel_buffer_size: 1024,
        nodelay: true,
        keepalive_interval: Some(KEEPALIVE_INTERVAL),
        keepalive_max: KEEPALIVE_MAX,
        preferred: russh::Preferred {
            // The client's order decides; AES-GCM has hardware support on
            // most servers and clients.
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_GCM,
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_256_CTR,
                russh::cipher::AES_192_CTR,
                russh::cipher::AES_128_CTR,
            ]),
            ..russh::Preferred::default()
        },
        ..Default::default()
    }
}

/// One SSH connection with its SFTP session.
struct Connection {
    ssh: client::Handle<HostKeyCheck>,
    sftp: RawSftpSession,
    posix_rename: bool,
    fsync: bool,
    read_len: u32,
    write_len: u32,
    /// Set when a request failed for want of a connection.
    broken: AtomicBool,
}

impl Connection {
    async fn open(options: &SftpOptions) -> Result<Connection, StorageError> {
        use StorageErrorKind::{PermissionDenied, Unavailable};
        let address = format!("{}:{}", options.host, options.port);
        let expected = normalise_fingerprint(&options.host_key_fingerprint);
        let presented = Arc::new(std::sync::Mutex::new(None));
        let check = HostKeyCheck {
            expected: expected.clone(),
            presented: presented.clone(),
        };
        let connecting = client::connect(
            Arc::new(client_config()),
            (options.host.as_str(), options.port),
            check,
        );
        let mut ssh = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Err(elapsed) => {
                return Err(error_from(
                    Unavailable,
                    format!("no SSH handshake with the SFTP server at {address} in time"),
                    elapsed,
                ));
            }
            Ok(Ok(ssh)) => ssh,
            Ok(Err(err)) => {
                let presented = presented
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                if let Some(presented) = presented
                    && presented != expected
                {
                    return Err(error_from(
                        PermissionDenied,
                        format!(
                            "the SFTP server at {address} presented host key {presented}, \
                             not the configured {expected}"
                        ),
                        err,
                    ));
                }
                return Err(error_from(
                    ssh_kind(&err),
                    format!("cannot connect to the SFTP server at {address}"),
                    err,
                ));
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, authenticate(&mut ssh, options, &address)).await
        {
            Err(elapsed) => {
                return Err(error_from(
                    Unavailable,
                    format!("the SFTP server at {address} did not finish authentication in time"),
                    elapsed,
                ));
            }
            Ok(result) => result?,
        }
        let connection = match tokio::time::timeout(CONNECT_TIMEOUT, start_sftp(ssh)).await {
            Err(elapsed) => {
                return Err(error_from(
                    Unavailable,
                    format!("the SFTP server at {address} did not start SFTP in time"),
                    elapsed,
                ));
            }
            Ok(result) => result.map_err(|err| StorageError {
                kind: err.kind,
                source: Some(Box::new(Cause {
                    message: format!("cannot start SFTP on the server at {address}"),
                    source: err.source,
                })),
            })?,
        };
        tracing::debug!(%address, "connected to the SFTP server");
        Ok(connection)
    }

    fn usable(&self) -> bool {
        !self.broken.load(Ordering::Relaxed) && !self.ssh.is_closed()
    }

    /// The storage error for a failed request; a lost connection is marked
    /// so the next operation opens a new one.
    fn fail(&self, err: SftpError) -> StorageError {
        let kind = sftp_kind(&err);
        if kind == StorageErrorKind::Unavailable {
            self.broken.store(true, Ordering::Relaxed);
        }
        StorageError {
            kind,
            source: Some(Box::new(err)),
        }
    }

    fn check<T>(&self, result: Result<T, SftpError>) -> Result<T, StorageError> {
        result.map_err(|err| self.fail(err))
    }

    async fn lstat(&self, path: &str) -> Result<FileAttributes, StorageError> {
        self.check(self.sftp.lstat(path).await).map(|it| it.attrs)
    }

    async fn stat(&self, path: &str) -> Result<FileAttributes, StorageError> {
        self.check(self.sftp.stat(path).await).map(|it| it.attrs)
    }

    async fn realpath(&self, path: &str) -> Result<String, StorageError> {
        let name = self.check(self.sftp.realpath(path).await)?;
        name.files
            .into_iter()
            .next()
            .map(|file| file.filename)
            .ok_or_else(|| error(StorageErrorKind::Other, "REALPATH answered no name"))
    }

    async fn close(&self, handle: &str) -> Result<(), StorageError> {
        self.check(self.sftp.close(handle).await).map(drop)
    }

    /// Renames over an existing target (see the module documentation).
    async fn rename_over(&self, from: &str, to: &str) -> Result<(), StorageError> {
        if self.posix_rename {
            let mut data = Vec::with_capacity(8 + from.len() + to.len());
            for text in [from, to] {
                let len = u32::try_from(text.len())
                    .map_err(|_| error(StorageErrorKind::Other, "path too long"))?;
                data.extend_from_slice(&len.to_be_bytes());
                data.extend_from_slice(text.as_bytes());
            }
            return match self.check(self.sftp.extended(POSIX_RENAME, data).await)? {
                Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
                Packet::Status(status) => Err(self.fail(SftpError::Status(status))),
                _ => Err(self.fail(SftpError::UnexpectedPacket)),
            };
        }
        match self.check(self.sftp.remove(to).await) {
            Ok(_) => {}
            Err(err) if err.kind == StorageErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        self.check(self.sftp.rename(from, to).await).map(drop)
    }
}

async fn authenticate(
    ssh: &mut client::Handle<HostKeyCheck>,
    options: &SftpOptions,
    address: &str,
) -> Result<(), StorageError> {
    use StorageErrorKind::PermissionDenied;
    let user = options.username.as_str();
    let auth_err = |err: russh::Error| {
        error_from(
            ssh_kind(&err),
            format!("authentication with the SFTP server at {address} failed"),
            err,
        )
    };
    if options.private_key.is_none() && options.password.is_none() {
        return Err(error(
            PermissionDenied,
            "neither a password nor a private key is configured for the SFTP server",
        ));
    }
    if let Some(text) = &options.private_key {
        let key = russh::keys::decode_secret_key(text, None).map_err(|err| {
            error_from(
                PermissionDenied,
                "the configured private key cannot be read (an unencrypted OpenSSH or PEM key \
                 is needed)",
                err,
            )
        })?;
        // RSA keys sign with the best hash the server accepts; others ignore it.
        let hash = if key.algorithm().is_rsa() {
            match ssh.best_supported_rsa_hash().await {
                Ok(Some(hash)) => hash,
                _ => Some(HashAlg::Sha512),
            }
        } else {
            None
        };
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        if ssh
            .authenticate_publickey(user, key)
            .await
            .map_err(auth_err)?
            .success()
        {
            return Ok(());
        }
    }
    if let Some(password) = &options.password
        && ssh
            .authenticate_password(user, password)
            .await
            .map_err(auth_err)?
            .success()
    {
        return Ok(());
    }
    Err(error(
        PermissionDenied,
        format!("the SFTP server at {address} refused the credentials of {user}"),
    ))
}

async fn start_sftp(ssh: client::Handle<HostKeyCheck>) -> Result<Connection, StorageError> {
    let ssh_err = |err: russh::Error| error_from(ssh_kind(&err), "no SFTP channel", err);
    let channel = ssh.channel_open_session().await.map_err(ssh_err)?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(ssh_err)?;
    let config = russh_sftp::client::Config {
        request_timeout_secs: REQUEST_TIMEOUT_SECS,
        ..Default::default()
    };
    let mut sftp = RawSftpSession::new_with_config(channel.into_stream(), config);
    let sftp_err = |err: SftpError| StorageError {
        kind: sftp_kind(&err),
        source: Some(Box::new(err)),
    };
    let version = sftp.init().await.map_err(sftp_err)?;
    let offers = |name: &str, version_text: &str| {
        version
            .extensions
            .get(name)
            .is_some_and(|v| v == version_text)
    };
    let (posix_rename, fsync) = (offers(POSIX_RENAME, "1"), offers(FSYNC, "1"));
    let (mut read_len, mut write_len) = (REQUEST_SIZE, REQUEST_SIZE);
    if offers(LIMITS, "1") {
        let limits = Limits::from(sftp.limits().await.map_err(sftp_err)?);
        let lower = |ours: u32, theirs: Option<u64>| {
            theirs.map_or(ours, |theirs| {
                u32::try_from(theirs).unwrap_or(u32::MAX).clamp(1, ours)
            })
        };
        read_len = lower(read_len, limits.read_len);
        write_len = lower(write_len, limits.write_len);
        sftp.set_limits(limits);
    }
    Ok(Connection {
        ssh,
        sftp,
        posix_rename,
        fsync,
        read_len,
        write_len,
        broken: AtomicBool::new(false),
    })
}

/// `relative` (a virtual path without its leading `/`) under `root` on the
/// remote; an empty root is the login directory.
fn remote_path(root: &str, relative: &str) -> String {
    let base = match root.trim_end_matches('/') {
        "" if root.starts_with('/') => "/",
        "" => ".",
        trimmed => trimmed,
    };
    match (relative.is_empty(), base.ends_with('/')) {
        (true, _) => base.to_string(),
        (false, true) => format!("{base}{relative}"),
        (false, false) => format!("{base}/{relative}"),
    }
}

/// Whether `path` is `root` or lies under it (both as the server resolved them).
fn within(path: &str, root: &str) -> bool {
    if root == "/" {
        return path.starts_with('/');
    }
    path.strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The directories to create, outermost first, for `path` to exist.
fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = if path.starts_with('/') {
        String::from("/")
    } else {
        String::new()
    };
    for part in path.split('/').filter(|part| !part.is_empty()) {
        if !current.is_empty() && !current.ends_with('/') {
            current.push('/');
        }
        current.push_str(part);
        out.push(current.clone());
    }
    out
}

fn kind_of(attrs: &FileAttributes) -> FileKind {
    match attrs.permissions.unwrap_or(0) & 0o170_000 {
        0o040_000 => FileKind::Dir,
        0o100_000 => FileKind::File,
        0o120_000 => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

fn meta_of(attrs: &FileAttributes) -> FileMeta {
    FileMeta {
        kind: kind_of(attrs),
        size: attrs.size.unwrap_or(0),
        mode: attrs.permissions.unwrap_or(0) & 0o7777,
        mtime: attrs.mtime.map_or(0, i64::from),
        atime: attrs.atime.map_or(0, i64::from),
    }
}

/// Unix seconds as SFTP version 3 carries them.
fn sftp_time(secs: i64) -> u32 {
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

/// A request in flight: its reply, already mapped.
type Pending<T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + Sync>>;

/// Sends a request now. A request leaves on its future's first poll, so
/// polling once here makes requests go out in the order they are made,
/// without waiting for any reply; the reply is awaited later.
fn send_now<T: Send + Sync + 'static>(mut request: Pending<T>) -> Pending<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match request.as_mut().poll(&mut cx) {
        Poll::Ready(result) => Box::pin(std::future::ready(result)),
        Poll::Pending => request,
    }
}

/// Reads `len` bytes at `offset`; end of file is an empty answer.
fn read_request(
    connection: &Arc<Connection>,
    handle: &str,
    offset: u64,
    len: u32,
) -> Pending<Bytes> {
    let connection = connection.clone();
    let handle = handle.to_string();
    send_now(Box::pin(async move {
        match connection.sftp.read(handle, offset, len).await {
            Ok(data) => Ok(Bytes::from(data.data)),
            Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                Ok(Bytes::new())
            }
            Err(err) => Err(connection.fail(err)),
        }
    }))
}

fn write_request(
    connection: &Arc<Connection>,
    handle: &str,
    offset: u64,
    data: Vec<u8>,
) -> Pending<()> {
    let connection = connection.clone();
    let handle = handle.to_string();
    send_now(Box::pin(async move {
        let result = connection.sftp.write(handle, offset, data).await;
        connection.check(result).map(drop)
    }))
}

/// Up to `len` bytes at `offset`, asked in concurrent requests; shorter at
/// end of file.
async fn read_range(
    connection: &Arc<Connection>,
    handle: &str,
    offset: u64,
    len: u32,
) -> Result<Bytes, StorageError> {
    let end = offset + u64::from(len.min(MAX_READ_AT));
    let mut requests = VecDeque::new();
    let mut at = offset;
    while at < end {
        let n = u32::try_from((end - at).min(u64::from(connection.read_len)))
            .expect("bounded by read_len");
        requests.push_back((n, read_request(connection, handle, at, n)));
        at += u64::from(n);
    }
    let mut out = BytesMut::new();
    for (asked, request) in requests {
        let data = request.await?;
        out.extend_from_slice(&data);
        if data.len() < asked as usize {
            break;
        }
    }
    Ok(out.freeze())
}

/// What a handle's remote file handle needs when the handle is dropped
/// without `commit` or `abort`: closing, and removing a staging file.
fn close_in_background(connection: Arc<Connection>, handle: String, staging: Option<String>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let _ = connection.sftp.close(handle).await;
        if let Some(staging) = staging
            && let Err(err) = connection.sftp.remove(staging).await
        {
            tracing::warn!(error = %err, "cannot remove a staging file on the SFTP server");
        }
    });
}

#[async_trait]
impl FileStorage for SftpStorage {
    async fn ensure_root(&self, root: &str) -> Result<(), StorageError> {
        let connection = self.connection().await?;
        let base = remote_path(root, "");
        // The root is the operator's choice and may itself be a symlink.
        match connection.stat(&base).await {
            Ok(attrs) if kind_of(&attrs) == FileKind::Dir => return Ok(()),
            Ok(_) => {
                return Err(error(
                    StorageErrorKind::Conflict,
                    format!("the namespace root {base} is not a directory"),
                ));
            }
            Err(err) if err.kind == StorageErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        for dir in ancestors(&base) {
            if let Err(err) = connection.check(
                connection
                    .sftp
                    .mkdir(dir.as_str(), FileAttributes::empty())
                    .await,
            ) {
                match connection.stat(&dir).await {
                    Ok(attrs) if kind_of(&attrs) == FileKind::Dir => {}
                    _ => return Err(err),
                }
            }
        }
        Ok(())
    }

    async fn stat(&self, root: &str, path: &VirtualPath) -> Result<FileMeta, StorageError> {
        let connection = self.connection().await?;
        let full = resolve(&connection, root, path).await?;
        let attrs = if path.is_root() {
            connection.stat(&full).await?
        } else {
            connection.lstat(&full).await?
        };
        Ok(meta_of(&attrs))
    }

    async fn list(&self, root: &str, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError> {
        let connection = self.connection().await?;
        let dir = resolve(&connection, root, path).await?;
        if !path.is_root() {
            // The directory itself is followed, so it must resolve inside the root.
            let base = remote_path(root, "");
            let (real_root, real_dir) =
                futures::try_join!(connection.realpath(&base), connection.realpath(&dir))?;
            if !within(&real_dir, &real_root) {
                return Err(denied());
            }
        }
        let handle = match connection.check(connection.sftp.opendir(dir.as_str()).await) {
            Ok(handle) => handle.handle,
            Err(err) => {
                // OpenSSH says "no such file" for a file too.
                if err.kind == StorageErrorKind::NotFound
                    && let Ok(attrs) = connection.stat(&dir).await
                    && kind_of(&attrs) != FileKind::Dir
                {
                    return Err(StorageError {
                        kind: StorageErrorKind::Conflict,
                        source: err.source,
                    });
                }
                return Err(err);
            }
        };
        let mut entries = Vec::new();
        let result = loop {
            match connection.sftp.readdir(handle.as_str()).await {
                Ok(name) => {
                    for file in name.files {
                        if file.filename == "."
                            || file.filename == ".."
                            || file.filename.starts_with(STAGING_PREFIX)
                        {
                            continue;
                        }
                        entries.push(DirEntry {
                            meta: meta_of(&file.attrs),
                            name: file.filename,
                        });
                    }
                }
                Err(SftpError::Status(status)) if status.status_code == StatusCode::Eof => {
                    break Ok(());
                }
                Err(err) => break Err(connection.fail(err)),
            }
        };
        let closed = connection.close(&handle).await;
        result?;
        closed?;
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    async fn mkdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        let connection = self.connection().await?;
        let full = resolve(&connection, root, path).await?;
        let result = connection.check(
            connection
                .sftp
                .mkdir(full.as_str(), FileAttributes::empty())
                .await,
        );
        taken_if_there(&connection, &full, result).await
    }

    async fn rmdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(denied());
        }
        let connection = self.connection().await?;
        let full = resolve(&connection, root, path).await?;
        let result = connection.check(connection.sftp.rmdir(full.as_str()).await);
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(explain(&connection, &full, err).await),
        }
    }

    async fn remove(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(denied());
        }
        let connection = self.connection().await?;
        let full = resolve(&connection, root, path).await?;
        let result = connection.check(connection.sftp.remove(full.as_str()).await);
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(explain(&connection, &full, err).await),
        }
    }

    async fn rename(
        &self,
        root: &str,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), StorageError> {
        if from.is_root() {
            return Err(denied());
        }
        if to.is_root() {
            return Err(StorageError::of(StorageErrorKind::AlreadyExists));
        }
        let connection = self.connection().await?;
        let (source, target) = futures::try_join!(
            resolve(&connection, root, from),
            resolve(&connection, root, to)
        )?;
        let (source_exists, target_exists) =
            futures::join!(connection.lstat(&source), connection.lstat(&target));
        source_exists?;
        match target_exists {
            Ok(_) => return Err(StorageError::of(StorageErrorKind::AlreadyExists)),
            Err(err) if err.kind == StorageErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        // SFTP's rename refuses an existing target, which closes the race
        // with a target created since the check.
        let result = connection.check(
            connection
                .sftp
                .rename(source.as_str(), target.as_str())
                .await,
        );
        taken_if_there(&connection, &target, result).await
    }

    async fn set_times(
        &self,
        root: &str,
        path: &VirtualPath,
        atime: i64,
        mtime: i64,
    ) -> Result<(), StorageError> {
        let connection = self.connection().await?;
        let full = resolve(&connection, root, path).await?;
        // SETSTAT follows symlinks; the final component must not be one.
        if !path.is_root() && kind_of(&connection.lstat(&full).await?) == FileKind::Symlink {
            return Err(denied());
        }
        let attrs = FileAttributes {
            atime: Some(sftp_time(atime)),
            mtime: Some(sftp_time(mtime)),
            ..FileAttributes::empty()
        };
        connection
            .check(connection.sftp.setstat(full.as_str(), attrs).await)
            .map(drop)
    }

    async fn open_read(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Box<dyn ReadHandle>, StorageError> {
        let connection = self.connection().await?;
        let full = resolve(&connection, root, path).await?;
        let attrs = if path.is_root() {
            connection.stat(&full).await?
        } else {
            connection.lstat(&full).await?
        };
        match kind_of(&attrs) {
            FileKind::File => {}
            FileKind::Dir => return Err(StorageError::of(StorageErrorKind::Conflict)),
            // A symlink is not followed; a device or pipe is no file to serve.
            FileKind::Symlink | FileKind::Other => return Err(denied()),
        }
        let handle = connection
            .check(
                connection
                    .sftp
                    .open(full.as_str(), OpenFlags::READ, FileAttributes::empty())
                    .await,
            )?
            .handle;
        Ok(Box::new(SftpRead {
            ahead: ReadAhead::new(attrs.size.unwrap_or(0)),
            connection,
            handle,
        }))
    }

    async fn open_write(
        &self,
        root: &str,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        let parent = path
            .parent()
            .ok_or_else(|| StorageError::of(StorageErrorKind::Conflict))?;
        let connection = self.connection().await?;
        let target = resolve(&connection, root, path).await?;
        let existing = match connection.lstat(&target).await {
            Ok(attrs) => match kind_of(&attrs) {
                FileKind::File => Some(attrs),
                FileKind::Dir => return Err(StorageError::of(StorageErrorKind::Conflict)),
                FileKind::Symlink | FileKind::Other => return Err(denied()),
            },
            Err(err) if err.kind == StorageErrorKind::NotFound => None,
            Err(err) => return Err(err),
        };
        // New files get the usual 0644; a replaced file keeps its mode.
        let permissions = existing
            .as_ref()
            .and_then(|attrs| attrs.permissions)
            .map_or(0o644, |mode| mode & 0o7777);
        let attrs = FileAttributes {
            permissions: Some(permissions),
            ..FileAttributes::empty()
        };
        let (written, staging) = match mode {
            WriteMode::InPlace => (target.clone(), None),
            WriteMode::Replace => {
                let staging = remote_path(
                    root,
                    &format!(
                        "{}{}{STAGING_PREFIX}{}",
                        parent.relative(),
                        if parent.is_root() { "" } else { "/" },
                        uuid::Uuid::new_v4()
                    ),
                );
                (staging.clone(), Some(staging))
            }
        };
        let flags = match mode {
            WriteMode::InPlace => OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE,
            WriteMode::Replace => {
                OpenFlags::READ | OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE
            }
        };
        let handle = connection
            .check(
                connection
                    .sftp
                    .open(written.as_str(), flags, attrs.clone())
                    .await,
            )?
            .handle;
        let in_flight = FuturesUnordered::new();
        if staging.is_some() {
            // The server applies its umask to the mode given at open; set it
            // exactly, without waiting for the answer.
            let sent = connection.clone();
            let file = handle.clone();
            in_flight.push(send_now(Box::pin(async move {
                let result = sent.sftp.fsetstat(file, attrs).await;
                sent.check(result).map(drop)
            })));
        }
        Ok(Box::new(SftpWrite {
            connection,
            handle,
            target,
            staging,
            in_flight,
            failure: None,
            poisoned: None,
            closed: false,
        }))
    }
}

/// Resolves `path` under `root` to a remote path. Its parent directory must
/// resolve inside the root on the server; the final component is left to
/// the caller (never followed unless the caller checks it).
async fn resolve(
    connection: &Connection,
    root: &str,
    path: &VirtualPath,
) -> Result<String, StorageError> {
    if path.components().any(|c| c.starts_with(STAGING_PREFIX)) {
        return Err(denied());
    }
    let full = remote_path(root, path.relative());
    if let Some(parent) = path.parent()
        && !parent.is_root()
    {
        let (base, parent) = (remote_path(root, ""), remote_path(root, parent.relative()));
        let (real_root, real_parent) =
            futures::try_join!(connection.realpath(&base), connection.realpath(&parent))?;
        if !within(&real_parent, &real_root) {
            return Err(denied());
        }
    }
    Ok(full)
}

/// The error of a failed removal: OpenSSH answers plain `FAILURE` for a
/// non-empty directory or the wrong kind of entry, and "no such file" for
/// some of those too; an entry that exists makes it a `Conflict`.
/// The outcome of creating `full` (a directory, a rename's target): a
/// plain failure (all OpenSSH says) with something now at `full` means the
/// name was taken.
async fn taken_if_there<T>(
    connection: &Connection,
    full: &str,
    result: Result<T, StorageError>,
) -> Result<(), StorageError> {
    match result {
        Ok(_) => Ok(()),
        Err(err) if is_failure(&err) && connection.lstat(full).await.is_ok() => Err(StorageError {
            kind: StorageErrorKind::AlreadyExists,
            source: err.source,
        }),
        Err(err) => Err(err),
    }
}

async fn explain(connection: &Connection, full: &str, err: StorageError) -> StorageError {
    if !matches!(
        err.kind,
        StorageErrorKind::Other | StorageErrorKind::NotFound
    ) {
        return err;
    }
    match connection.lstat(full).await {
        Ok(_) => StorageError {
            kind: StorageErrorKind::Conflict,
            source: err.source,
        },
        Err(missing) if missing.kind == StorageErrorKind::NotFound => missing,
        Err(_) => err,
    }
}

/// Sequential reads served from requests sent ahead.
struct ReadAhead {
    /// Where the reader stands; `ready` holds the bytes from here.
    position: u64,
    ready: Bytes,
    /// Requests in flight for the bytes after `ready`, in order, with the
    /// length each asked for.
    queue: VecDeque<(u32, Pending<Bytes>)>,
    /// Just past the last byte asked for.
    sent_end: u64,
    /// How many requests to keep ahead of the reader: one after a seek,
    /// doubling with each sequential read up to `MAX_IN_FLIGHT`.
    depth: usize,
    /// The size of the file as last seen; read-ahead stops there.
    size_hint: u64,
}

impl ReadAhead {
    fn new(size_hint: u64) -> ReadAhead {
        ReadAhead {
            position: 0,
            ready: Bytes::new(),
            queue: VecDeque::new(),
            sent_end: 0,
            depth: 1,
            size_hint,
        }
    }

    fn restart(&mut self, offset: u64) {
        // Dropping a request forgets it; its reply is ignored when it comes.
        self.queue.clear();
        self.ready = Bytes::new();
        self.position = offset;
        self.sent_end = offset;
        self.depth = 1;
    }

    /// Sends requests for everything before `needed_end`, then read-ahead
    /// up to `depth` requests, within the known size of the file.
    fn send(&mut self, connection: &Arc<Connection>, handle: &str, needed_end: u64) {
        let request = u64::from(connection.read_len);
        let ahead_end = (self.position + self.ready.len() as u64 + self.depth as u64 * request)
            .min(self.size_hint);
        let target = needed_end.max(ahead_end);
        while self.sent_end < target && self.queue.len() < MAX_IN_FLIGHT {
            self.queue.push_back((
                connection.read_len,
                read_request(connection, handle, self.sent_end, connection.read_len),
            ));
            self.sent_end += request;
        }
    }

    async fn read(
        &mut self,
        connection: &Arc<Connection>,
        handle: &str,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, StorageError> {
        let len = len.min(MAX_READ_AT) as usize;
        if len == 0 {
            return Ok(Bytes::new());
        }
        if offset == self.position {
            self.depth = (self.depth * 2).min(MAX_IN_FLIGHT);
        } else {
            self.restart(offset);
        }
        let needed_end = offset + len as u64;
        let mut out = BytesMut::with_capacity(len);
        let mut last = false;
        loop {
            if !self.ready.is_empty() {
                let n = self.ready.len().min(len - out.len());
                out.extend_from_slice(&self.ready.split_to(n));
                self.position += n as u64;
            }
            if out.len() == len || last {
                break;
            }
            self.send(connection, handle, needed_end);
            let Some((asked, request)) = self.queue.pop_front() else {
                break;
            };
            let data = match request.await {
                Ok(data) => data,
                Err(err) => {
                    self.restart(self.position);
                    return Err(err);
                }
            };
            if data.is_empty() {
                // End of file: whatever else was asked lies past it.
                self.queue.clear();
                self.sent_end = self.position;
                break;
            }
            self.size_hint = self.size_hint.max(self.position + data.len() as u64);
            if data.len() < asked as usize {
                // A short read ends at the end of file (or at the server's
                // limit): answer with what there is, and let the next read
                // ask again from there.
                self.queue.clear();
                self.sent_end = self.position + data.len() as u64;
                last = true;
            }
            self.ready = data;
        }
        // Keep requests going while the caller uses these bytes.
        self.send(connection, handle, 0);
        Ok(out.freeze())
    }
}

struct SftpRead {
    connection: Arc<Connection>,
    handle: String,
    ahead: ReadAhead,
}

#[async_trait]
impl ReadHandle for SftpRead {
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.ahead
            .read(&self.connection, &self.handle, offset, len)
            .await
    }

    async fn meta(&mut self) -> Result<FileMeta, StorageError> {
        let attrs = self
            .connection
            .check(self.connection.sftp.fstat(self.handle.as_str()).await)?
            .attrs;
        let meta = meta_of(&attrs);
        self.ahead.size_hint = meta.size;
        Ok(meta)
    }
}

impl Drop for SftpRead {
    fn drop(&mut self) {
        self.ahead.queue.clear();
        close_in_background(
            self.connection.clone(),
            std::mem::take(&mut self.handle),
            None,
        );
    }
}

struct SftpWrite {
    connection: Arc<Connection>,
    handle: String,
    target: String,
    staging: Option<String>,
    /// Writes sent whose status has not been read yet.
    in_flight: FuturesUnordered<Pending<()>>,
    /// The first failure of a write, not reported yet.
    failure: Option<StorageError>,
    /// Set once a failure was reported: every later call fails too.
    poisoned: Option<StorageErrorKind>,
    closed: bool,
}

impl SftpWrite {
    fn record(&mut self, result: Result<(), StorageError>) {
        if let Err(err) = result
            && self.failure.is_none()
            && self.poisoned.is_none()
        {
            self.failure = Some(err);
        }
    }

    /// Reports a failed write: the first one with its cause, later calls
    /// with its kind.
    fn check(&mut self) -> Result<(), StorageError> {
        while let Some(Some(result)) = self.in_flight.next().now_or_never() {
            self.record(result);
        }
        if let Some(err) = self.failure.take() {
            self.poisoned = Some(err.kind);
            return Err(err);
        }
        if let Some(kind) = self.poisoned {
            return Err(error(kind, "an earlier write to this file failed"));
        }
        Ok(())
    }

    /// Waits for every write sent.
    async fn flush(&mut self) -> Result<(), StorageError> {
        while let Some(result) = self.in_flight.next().await {
            self.record(result);
        }
        self.check()
    }
}

#[async_trait]
impl WriteHandle for SftpWrite {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        self.check()?;
        let mut done = 0;
        while done < data.len() {
            while self.in_flight.len() >= MAX_IN_FLIGHT {
                if let Some(result) = self.in_flight.next().await {
                    self.record(result);
                }
                self.check()?;
            }
            let n = (data.len() - done).min(self.connection.write_len as usize);
            let request = write_request(
                &self.connection,
                &self.handle,
                offset + done as u64,
                data[done..done + n].to_vec(),
            );
            self.in_flight.push(request);
            done += n;
        }
        Ok(())
    }

    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.flush().await?;
        read_range(&self.connection, &self.handle, offset, len).await
    }

    async fn size(&mut self) -> Result<u64, StorageError> {
        self.flush().await?;
        let attrs = self
            .connection
            .check(self.connection.sftp.fstat(self.handle.as_str()).await)?
            .attrs;
        Ok(attrs.size.unwrap_or(0))
    }

    /// Forwarded as `fsync@openssh.com` when the server offers it.
    async fn sync(&mut self) -> Result<(), StorageError> {
        self.flush().await?;
        if !self.connection.fsync {
            return Err(error(
                StorageErrorKind::Unsupported,
                "the SFTP server does not offer fsync@openssh.com",
            ));
        }
        let connection = self.connection.clone();
        connection
            .check(connection.sftp.fsync(self.handle.as_str()).await)
            .map(drop)
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        self.flush().await?;
        let connection = self.connection.clone();
        let attrs = connection
            .check(connection.sftp.fstat(self.handle.as_str()).await)?
            .attrs;
        if connection.fsync {
            connection
                .check(connection.sftp.fsync(self.handle.as_str()).await)
                .map(drop)?;
        }
        self.closed = true;
        let closed = connection.close(&self.handle).await;
        if let Some(staging) = self.staging.take() {
            let renamed = match closed {
                Ok(()) => connection.rename_over(&staging, &self.target).await,
                Err(err) => Err(err),
            };
            if let Err(err) = renamed {
                if let Err(cleanup) = connection.check(connection.sftp.remove(staging).await) {
                    tracing::warn!(
                        error = ?cleanup.source,
                        "cannot remove a staging file on the SFTP server"
                    );
                }
                return Err(err);
            }
        } else {
            closed?;
        }
        Ok(attrs.size.unwrap_or(0))
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        let connection = self.connection.clone();
        self.closed = true;
        match self.staging.take() {
            Some(staging) => {
                // The server handles requests in order: the writes sent land
                // before the close, and the removal discards them.
                self.in_flight.clear();
                let closed = connection.close(&self.handle).await;
                let removed = connection.check(connection.sftp.remove(staging).await);
                closed?;
                removed.map(drop)
            }
            None => {
                // What was written stays: report a write that failed.
                let flushed = self.flush().await;
                let closed = connection.close(&self.handle).await;
                flushed?;
                closed
            }
        }
    }
}

impl Drop for SftpWrite {
    fn drop(&mut self) {
        if !self.closed {
            self.in_flight.clear();
            close_in_background(
                self.connection.clone(),
                std::mem::take(&mut self.handle),
                self.staging.take(),
            );
        }
    }
}

#[cfg(test)]
mod tests;
