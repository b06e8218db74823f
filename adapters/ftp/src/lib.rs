//! FTP, explicit FTPS (AUTH TLS) and implicit FTPS on a port of its own
//! (libunftp): the control connection, passive data connections and the
//! FTP commands, over the same `Sessions` and `FileOps` as every other
//! protocol.
//!
//! Each accepted connection gets a libunftp server of its own, whose
//! authenticator knows the client's address and keeps the session it opens,
//! so the login, every file operation and the close are recorded on one
//! session. Active mode (PORT/EPRT) is refused: no FTP bounce.
//!
//! Architecture invariant: this crate holds no business rule and never
//! touches storage; permission checks and events happen behind `FileOps`.

mod storage;

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tollgate_domain::session::Protocol;
use tollgate_ports::inbound::{ClientInfo, FileOps, LoginError, Sessions};
use unftp_core::auth::{
    AuthenticationError, Authenticator, ChannelEncryptionState, Credentials, Principal, UserDetail,
    UserDetailError, UserDetailProvider,
};

use crate::storage::Gate;

/// How long a shutdown waits for FTP sessions to record their end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server waits after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How the FTP server runs.
#[derive(Debug, Clone)]
pub struct FtpConfig {
    /// PEM certificate chain and key files for FTPS (explicit AUTH TLS,
    /// and implicit on the implicit listener).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Refuse logins and transfers that are not protected by TLS.
    pub require_tls: bool,
    /// Ports for passive data connections.
    pub passive_ports: RangeInclusive<u16>,
    /// The IPv4 address announced in PASV replies (default: the control
    /// connection's local address).
    pub passive_host: Option<IpAddr>,
    /// Idle control connections are closed after this long.
    pub idle_timeout: Duration,
}

/// A logged-in FTP user: the session's file operations.
#[derive(Clone)]
pub(crate) struct FtpUser {
    username: String,
    pub(crate) files: Arc<dyn FileOps>,
    /// Cancelled when the control connection ends: a transfer still
    /// running then belongs to a client that went away, and is aborted.
    pub(crate) gone: tokio_util::sync::CancellationToken,
    /// Whether the account needs `PROT P` before any data connection.
    data_tls_required: bool,
}

impl std::fmt::Debug for FtpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FtpUser")
            .field("username", &self.username)
            .finish()
    }
}

impl std::fmt::Display for FtpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.username)
    }
}

impl UserDetail for FtpUser {
    fn data_tls_required(&self) -> bool {
        self.data_tls_required
    }
}

/// One control connection: its client, its session once opened, and the
/// user once logged in.
pub(crate) struct Connection {
    sessions: Arc<dyn Sessions>,
    remote_addr: SocketAddr,
    /// The open session and the protocol it was opened under.
    session_id: Mutex<Option<(String, Protocol)>>,
    user: Mutex<Option<FtpUser>>,
    gone: tokio_util::sync::CancellationToken,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote_addr", &self.remote_addr)
            .finish()
    }
}

impl Connection {
    /// The session id, opening the session on the first login attempt.
    /// A control channel secured after a plain attempt (AUTH TLS) gets a
    /// session of its own, so each session records one protocol.
    async fn session_id(&self, protocol: Protocol) -> Result<String, AuthenticationError> {
        let open = self.session_id.lock().expect("never poisoned").clone();
        match open {
            Some((id, opened_as)) if opened_as == protocol => return Ok(id),
            Some((id, _)) => {
                self.session_id.lock().expect("never poisoned").take();
                self.sessions
                    .close(&id, "control channel secured with TLS")
                    .await;
            }
            None => {}
        }
        let client = ClientInfo {
            protocol,
            remote_addr: self.remote_addr.to_string(),
        };
        let id = self
            .sessions
            .open(client)
            .await
            .map_err(|e| AuthenticationError::new(e.to_string()))?;
        *self.session_id.lock().expect("never poisoned") = Some((id.clone(), protocol));
        Ok(id)
    }

    /// Aborts what is still running and records the end of the
    /// connection's session, if one was opened.
    async fn close(&self) {
        self.gone.cancel();
        let id = self.session_id.lock().expect("never poisoned").take();
        if let Some((id, _)) = id {
            self.sessions.close(&id, "connection closed").await;
        }
    }
}

/// The authenticator and user provider of one connection.
#[derive(Debug, Clone)]
struct ConnectionAuth(Arc<Connection>);

#[async_trait]
impl Authenticator for ConnectionAuth {
    async fn authenticate(
        &self,
        username: &str,
        creds: &Credentials,
    ) -> Result<Principal, AuthenticationError> {
        let protocol = match creds.command_channel_security {
            ChannelEncryptionState::Tls => Protocol::Ftps,
            ChannelEncryptionState::Plaintext => Protocol::Ftp,
        };
        let session_id = self.0.session_id(protocol).await?;
        let password = creds.password.as_deref().unwrap_or_default();
        match self
            .0
            .sessions
            .login_password(&session_id, username, password)
            .await
        {
            Ok(files) => {
                *self.0.user.lock().expect("never poisoned") = Some(FtpUser {
                    username: username.to_string(),
                    data_tls_required: files.ftp_require_tls(),
                    files,
                    gone: self.0.gone.clone(),
                });
                Ok(Principal {
                    username: username.to_string(),
                })
            }
            // FTP cannot prompt: a second factor code comes appended to
            // the password, so a login still owing one is refused.
            Err(LoginError::Denied | LoginError::SecondFactorRequired) => {
                Err(AuthenticationError::BadPassword)
            }
            Err(LoginError::Unavailable) => {
                Err(AuthenticationError::new("authentication unavailable"))
            }
        }
    }

    fn name(&self) -> &str {
        "tollgate"
    }
}

#[async_trait]
impl UserDetailProvider for ConnectionAuth {
    type User = FtpUser;

    async fn provide_user_detail(&self, principal: &Principal) -> Result<FtpUser, UserDetailError> {
        self.0
            .user
            .lock()
            .expect("never poisoned")
            .clone()
            .filter(|u| u.username == principal.username)
            .ok_or_else(|| UserDetailError::UserNotFound {
                username: principal.username.clone(),
            })
    }
}

/// The FTP(S) server.
pub struct FtpServer {
    sessions: Arc<dyn Sessions>,
    config: FtpConfig,
}

impl FtpServer {
    /// A server answering through `sessions`.
    pub fn new(sessions: Arc<dyn Sessions>, config: FtpConfig) -> Self {
        FtpServer { sessions, config }
    }

    fn server_for(
        &self,
        connection: Arc<Connection>,
    ) -> Result<libunftp::Server<Gate, FtpUser>, libunftp::ServerError> {
        let auth = Arc::new(ConnectionAuth(connection));
        let mut builder =
            libunftp::ServerBuilder::with_user_detail_provider(Box::new(|| Gate), auth.clone())
                .authenticator(auth)
                .greeting("Tollgate FTP server ready")
                .passive_ports(self.config.passive_ports.clone())
                .passive_host(match self.config.passive_host {
                    Some(IpAddr::V4(ip)) => libunftp::options::PassiveHost::Ip(ip),
                    _ => libunftp::options::PassiveHost::FromConnection,
                })
                .idle_session_timeout(self.config.idle_timeout.as_secs().max(1))
                .logger(None);
        if let Some((cert, key)) = &self.config.tls {
            builder = builder.ftps(cert.clone(), key.clone());
            if self.config.require_tls {
                builder = builder.ftps_required(
                    libunftp::options::FtpsRequired::All,
                    libunftp::options::FtpsRequired::All,
                );
            }
        }
        builder.build()
    }

    /// Accepts connections on `listener` (plain FTP, with AUTH TLS when a
    /// certificate is configured) and on `implicit` (TLS from the first
    /// byte) until `shutdown` turns true, then waits (bounded) until every
    /// session has recorded its end.
    pub async fn run(
        self,
        listener: TcpListener,
        implicit: Option<TcpListener>,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        if implicit.is_some() && self.config.tls.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "implicit FTPS needs a certificate and key",
            ));
        }
        let tasks = TaskTracker::new();
        let stop = tokio_util::sync::CancellationToken::new();
        loop {
            let (accepted, implicit_tls) = tokio::select! {
                res = listener.accept() => (res, false),
                res = accept_on(implicit.as_ref()) => (res, true),
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            let (stream, remote_addr) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, the connection stays queued
                    // and the next accept fails at once: without a pause
                    // this loop would spin and flood the log.
                    tracing::warn!(%err, "cannot accept an FTP connection");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                    continue;
                }
            };
            if self.sessions.banned(&remote_addr.to_string()) {
                tracing::info!(%remote_addr, "connection from a banned address refused");
                refuse_banned(stream, implicit_tls);
                continue;
            }
            let connection = Arc::new(Connection {
                sessions: self.sessions.clone(),
                remote_addr,
                session_id: Mutex::new(None),
                user: Mutex::new(None),
                gone: tokio_util::sync::CancellationToken::new(),
            });
            let server = match self.server_for(connection.clone()) {
                Ok(server) => server,
                Err(err) => {
                    tracing::error!(%err, "cannot set up an FTP session");
                    continue;
                }
            };
            let stop = stop.clone();
            tasks.spawn(async move {
                let serve = async move {
                    if implicit_tls {
                        server.service_implicit_tls(stream).await
                    } else {
                        server.service(stream).await
                    }
                };
                tokio::select! {
                    res = serve => {
                        if let Err(err) = res {
                            tracing::debug!(%err, "an FTP connection ended with an error");
                        }
                    }
                    _ = stop.cancelled() => {}
                }
                connection.close().await;
            });
        }
        stop.cancel();
        tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some FTP sessions did not finish recording before shutdown");
        }
        Ok(())
    }
}

/// The next connection on `listener`; never, without one.
async fn accept_on(
    listener: Option<&TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Tells a banned client so in FTP's terms (421, the service is not
/// available to it) and closes; over implicit TLS, where no plain reply
/// can be read, the connection is just closed.
fn refuse_banned(mut stream: tokio::net::TcpStream, implicit_tls: bool) {
    if implicit_tls {
        return;
    }
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let reply = b"421 Service not available: this address is banned.\r\n";
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            let _ = stream.write_all(reply).await;
            let _ = stream.shutdown().await;
        })
        .await;
    });
}
