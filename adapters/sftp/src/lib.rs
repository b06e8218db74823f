//! The SSH server (russh) and its SFTP subsystem.
//!
//! One `Connection` per TCP connection holds the protocol state; every
//! authentication and file operation is delegated to the `Sessions` and
//! `FileOps` inbound ports.
//!
//! Architecture invariant: this crate never touches storage or the event
//! store, and decides no permission: it translates SSH/SFTP to port calls
//! and port errors to SFTP status codes.

mod certificates;
mod commands;
mod protocol;
mod scp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PrivateKey;
use russh::server::{Auth, Msg, Session};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tollgate_domain::session::Protocol;
use tollgate_ports::inbound::{ClientInfo, FileOps, LoginError, Sessions};

pub use certificates::{CertificateTrust, Revocations};

/// Tuning of the SSH transport.
#[derive(Debug, Clone)]
pub struct SftpConfig {
    /// Host keys offered to clients.
    pub host_keys: Vec<PrivateKey>,
    /// Idle connections are closed after this long.
    pub idle_timeout: Duration,
    /// Delay before answering a failed authentication.
    pub auth_rejection_time: Duration,
    /// The user CAs whose certificates log in, and the revocations.
    pub certificates: CertificateTrust,
}

/// How long a shutdown waits for open SFTP sessions to record their end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// The SSH/SFTP server.
pub struct SftpServer {
    sessions: Arc<dyn Sessions>,
    config: Arc<russh::server::Config>,
    certificates: Arc<CertificateTrust>,
}

impl SftpServer {
    /// A server answering with `sessions`.
    pub fn new(sessions: Arc<dyn Sessions>, config: SftpConfig) -> Self {
        let methods = auth_methods();
        let preferred = russh::Preferred {
            // OpenSSH's set: russh's defaults leave out aes128-gcm, the cipher
            // many clients prefer.
            cipher: std::borrow::Cow::Borrowed(&[
                russh::cipher::CHACHA20_POLY1305,
                russh::cipher::AES_128_GCM,
                russh::cipher::AES_256_GCM,
                russh::cipher::AES_128_CTR,
                russh::cipher::AES_192_CTR,
                russh::cipher::AES_256_CTR,
            ]),
            ..russh::Preferred::default()
        };
        let russh_config = russh::server::Config {
            preferred,
            server_id: russh::SshId::Standard("SSH-2.0-Tollgate".into()),
            methods,
            auth_rejection_time: config.auth_rejection_time,
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: config.host_keys,
            inactivity_timeout: Some(config.idle_timeout),
            // Bulk transfers need a large window and the largest packets
            // russh accepts; the defaults throttle SFTP far below the link.
            window_size: 16 * 1024 * 1024,
            maximum_packet_size: 65535,
            channel_buffer_size: 1024,
            max_auth_attempts: 6,
            ..Default::default()
        };
        SftpServer {
            sessions,
            config: Arc::new(russh_config),
            certificates: Arc::new(config.certificates),
        }
    }

    /// Accepts connections on `listener` until `shutdown` turns true, then
    /// disconnects every client and waits (bounded) until each session has
    /// recorded its aborted transfers and its end. A connection that cannot
    /// be accepted (out of file descriptors, say) is logged and the server
    /// goes on accepting.
    pub async fn run(
        self,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        let tasks = TaskTracker::new();
        let mut factory = Factory {
            sessions: self.sessions,
            tasks: tasks.clone(),
            certificates: self.certificates,
        };
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.wait_for(|stop| *stop) => break,
            };
            match accepted {
                Ok((socket, peer)) => {
                    let connection = factory.new_client(peer);
                    tokio::spawn(serve_connection(
                        self.config.clone(),
                        socket,
                        connection,
                        shutdown.clone(),
                    ));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept an SSH connection");
                    tokio::select! {
                        _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                        _ = shutdown.wait_for(|stop| *stop) => break,
                    }
                }
            }
        }
        tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("some SFTP sessions did not finish recording before shutdown");
        }
        Ok(())
    }
}

/// How long the server waits after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Bytes read from a client's socket at a time. russh reads each SSH
/// packet in two reads, its first block and then the rest; straight from
/// the socket that is two system calls per packet, and a small request
/// costs two or three. Through a buffer, the packets a client has sent
/// arrive together in one.
const READ_BUFFER: usize = 64 * 1024;

/// Runs one SSH connection until it ends or the server shuts down, when
/// the client is told why and disconnected.
async fn serve_connection(
    config: Arc<russh::server::Config>,
    socket: TcpStream,
    connection: Connection,
    mut shutdown: watch::Receiver<bool>,
) {
    // Replies are whole packets written at once: nothing is gained by
    // holding one back for more.
    if let Err(err) = socket.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot set TCP_NODELAY on an SSH connection");
    }
    let stream = BufReader::with_capacity(READ_BUFFER, socket);
    let session = match russh::server::run_stream(config, stream, connection).await {
        Ok(session) => session,
        Err(err) => {
            tracing::debug!(error = %err, "ssh connection setup failed");
            return;
        }
    };
    let handle = session.handle();
    let stopping = tokio::select! {
        ended = session => {
            if let Err(err) = ended {
                tracing::debug!(error = %err, "ssh connection ended with an error");
            }
            false
        }
        _ = shutdown.wait_for(|stop| *stop) => true,
    };
    if stopping {
        let _ = handle
            .disconnect(
                russh::Disconnect::ByApplication,
                "server shutting down".to_string(),
                String::new(),
            )
            .await;
    }
}

struct Factory {
    sessions: Arc<dyn Sessions>,
    /// Every task that records for a session, so that shutdown can wait for it.
    tasks: TaskTracker,
    certificates: Arc<CertificateTrust>,
}

impl Factory {
    fn new_client(&mut self, peer: SocketAddr) -> Connection {
        Connection {
            sessions: self.sessions.clone(),
            certificates: self.certificates.clone(),
            tasks: self.tasks.clone(),
            _alive: self.tasks.token(),
            remote_addr: peer.to_string(),
            session_id: None,
            files: None,
            channels: HashMap::new(),
            awaiting_code: None,
            watcher: None,
        }
    }
}

/// The protocol state of one SSH connection.
struct Connection {
    sessions: Arc<dyn Sessions>,
    certificates: Arc<CertificateTrust>,
    tasks: TaskTracker,
    /// Counts the connection itself as a task until it is dropped, so
    /// shutdown waits for the close it records on drop.
    _alive: tokio_util::task::task_tracker::TaskTrackerToken,
    remote_addr: String,
    session_id: Option<String>,
    files: Option<Arc<dyn FileOps>>,
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// The user whose first factor passed, owing a second factor code.
    awaiting_code: Option<String>,
    /// Stops the disconnect watcher when the connection goes.
    watcher: Option<tokio_util::sync::DropGuard>,
}

impl Connection {
    /// Ends the connection when an administrator asks for it, once the
    /// client is logged in; the watcher stops with the connection.
    fn watch_disconnect(&mut self, session: &mut Session) {
        let (Some(session_id), None) = (self.session_id.clone(), &self.watcher) else {
            return;
        };
        let stop = tokio_util::sync::CancellationToken::new();
        self.watcher = Some(stop.clone().drop_guard());
        let handle = session.handle();
        let sessions = self.sessions.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = sessions.disconnect_requested(&session_id) => {
                    tracing::info!(session_id, "disconnecting at an administrator's request");
                    let _ = handle
                        .disconnect(
                            russh::Disconnect::ByApplication,
                            "disconnected by an administrator".to_string(),
                            "en".to_string(),
                        )
                        .await;
                }
                _ = stop.cancelled() => {}
            }
        });
    }

    /// The session id, opening the session on the first authentication attempt.
    async fn session_id(&mut self) -> Option<String> {
        if self.session_id.is_none() {
            let client = ClientInfo {
                protocol: Protocol::Sftp,
                remote_addr: self.remote_addr.clone(),
            };
            match self.sessions.open(client).await {
                Ok(id) => self.session_id = Some(id),
                Err(err) => tracing::error!(%err, "cannot open a session"),
            }
        }
        self.session_id.clone()
    }
}

/// The methods offered, before and after a failed attempt.
fn auth_methods() -> MethodSet {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::PublicKey);
    methods.push(MethodKind::Password);
    methods
}

/// The first factor passed and the user has a second one: only
/// keyboard-interactive may follow, where the code is asked for.
fn ask_code() -> Auth {
    let mut methods = MethodSet::empty();
    methods.push(MethodKind::KeyboardInteractive);
    Auth::Reject {
        proceed_with_methods: Some(methods),
        partial_success: true,
    }
}

/// The keyboard-interactive prompt for a second factor code.
fn code_prompt() -> Auth {
    Auth::Partial {
        name: "Second factor".into(),
        instructions: "Enter the code of your authenticator app or a recovery code.".into(),
        prompts: vec![("Verification code: ".into(), false)].into(),
    }
}

/// A refusal that lets the client try again, with any method, until the
/// attempt limit; a bare reject would withdraw the method just tried.
fn retry() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(auth_methods()),
        partial_success: false,
    }
}

fn openssh_key(key: &russh::keys::PublicKey) -> Option<String> {
    key.to_openssh().ok()
}

impl Connection {
    /// The answer to a login attempt of `user`.
    fn answer(&mut self, user: &str, login: Result<Arc<dyn FileOps>, LoginError>) -> Auth {
        match login {
            Ok(files) => {
                self.awaiting_code = None;
                self.files = Some(files);
                Auth::Accept
            }
            Err(LoginError::SecondFactorRequired) => {
                self.awaiting_code = Some(user.to_string());
                ask_code()
            }
            Err(_) => retry(),
        }
    }

    /// Ends the connection of a banned address before any credential is
    /// looked at.
    fn refuse_banned(&self) -> Result<(), russh::Error> {
        if self.sessions.banned(&self.remote_addr) {
            tracing::info!(remote_addr = %self.remote_addr, "connection from a banned address refused");
            return Err(russh::Error::Disconnect);
        }
        Ok(())
    }
}

impl russh::server::Handler for Connection {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        self.refuse_banned()?;
        Ok(retry())
    }

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        self.refuse_banned()?;
        let Some(session_id) = self.session_id().await else {
            return Ok(retry());
        };
        let login = self
            .sessions
            .login_password(&session_id, user, password)
            .await;
        Ok(self.answer(user, login))
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        self.refuse_banned()?;
        if self.awaiting_code.as_deref() != Some(user) {
            return Ok(retry());
        }
        let Some(mut response) = response else {
            return Ok(code_prompt());
        };
        let Some(session_id) = self.session_id().await else {
            return Ok(retry());
        };
        let code = response
            .next()
            .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
            .unwrap_or_default();
        let login = self.sessions.login_code(&session_id, user, &code).await;
        Ok(match self.answer(user, login) {
            // A wrong code: the first factor stands; ask again.
            Auth::Reject { .. } => ask_code(),
            auth => auth,
        })
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        self.refuse_banned()?;
        // An offer does not say whether a certificate carries the key:
        // with user CAs trusted, every offer proceeds to its signature,
        // where a plain key meets the authorized keys and a certificate
        // its CA (each failure recorded there).
        if self.certificates.any() {
            return Ok(Auth::Accept);
        }
        let Some(session_id) = self.session_id().await else {
            return Ok(retry());
        };
        let Some(key) = openssh_key(offer.public_key) else {
            return Ok(retry());
        };
        if self
            .sessions
            .offer_public_key(&session_id, user, &key)
            .await
        {
            Ok(Auth::Accept)
        } else {
            Ok(retry())
        }
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        self.refuse_banned()?;
        let Some(session_id) = self.session_id().await else {
            return Ok(retry());
        };
        let login = self.certificates.judge(user, certificate);
        let login = self
            .sessions
            .login_certificate(&session_id, user, &login)
            .await;
        Ok(self.answer(user, login))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        self.refuse_banned()?;
        let Some(session_id) = self.session_id().await else {
            return Ok(retry());
        };
        let Some(key) = openssh_key(key.public_key) else {
            return Ok(retry());
        };
        let login = self
            .sessions
            .login_public_key(&session_id, user, &key)
            .await;
        Ok(self.answer(user, login))
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if self.files.is_none() {
            return Ok(());
        }
        self.watch_disconnect(session);
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(files), true) = (self.files.clone(), name == "sftp") else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        let Some(channel) = self.channels.remove(&channel_id) else {
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        session.channel_success(channel_id)?;
        self.tasks
            .spawn(protocol::serve(channel, files, session.handle()));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel_id: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        let channel = self.channels.remove(&channel_id);
        let (Some(files), Some(channel)) = (self.files.clone(), channel) else {
            tracing::info!(command = %line, "exec request refused");
            session.channel_failure(channel_id)?;
            return Ok(());
        };
        if let Some(command) = scp::parse_command(&line) {
            session.channel_success(channel_id)?;
            let files = files.with_protocol(Protocol::Scp);
            self.tasks
                .spawn(scp::serve(channel, files, command, session.handle()));
        } else if let Some(command) = commands::parse(&line) {
            session.channel_success(channel_id)?;
            self.tasks
                .spawn(commands::serve(channel, files, command, session.handle()));
        } else {
            tracing::info!(command = %line, "exec request refused");
            // Recorded before the answer, so that it precedes the session's
            // end when the client disconnects right away.
            files.record_refused_command(&line).await;
            session.channel_failure(channel_id)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel_id: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(files) = self.files.clone() {
            files.record_refused_command("shell").await;
        }
        session.channel_failure(channel_id)?;
        Ok(())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(session_id) = self.session_id.take() {
            let sessions = self.sessions.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let _guard = runtime.enter();
                self.tasks
                    .spawn(async move { sessions.close(&session_id, "connection closed").await });
            }
        }
    }
}
