//! The test harness: a server on ephemeral ports with a temporary data
//! directory, databases of its own, and SFTP clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use russh::client;
use russh::keys::{Algorithm, PrivateKey, PrivateKeyWithHashAlg};
use russh_sftp::client::SftpSession;
use tokio::net::TcpListener;
use tollgate::{Config, Listeners, Server};
use tollgate_application::{EventFilter, EventSummary, NewUser};

pub(crate) const PASSWORD: &str = "correct horse battery";

static INIT: Once = Once::new();

fn init_logging() {
    tollgate::install_tls_provider();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info")
                .with_test_writer()
                .try_init();
        }
    });
}

/// Which databases the suite runs against: SQLite always, PostgreSQL when
/// configured (and required under `TOLLGATE_TEST_REQUIRE_SERVICES`).
pub(crate) fn database_kinds() -> Vec<&'static str> {
    let mut kinds = vec!["sqlite"];
    if std::env::var("TOLLGATE_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty()) {
        kinds.push("postgres");
    } else if std::env::var("TOLLGATE_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
        panic!("TOLLGATE_TEST_REQUIRE_SERVICES=1 but TOLLGATE_TEST_POSTGRES_URL is not set");
    }
    kinds
}

/// A fresh database URL of `kind` for one test.
pub(crate) async fn fresh_database(kind: &str, dir: &Path) -> String {
    match kind {
        "sqlite" => format!("sqlite:{}", dir.join("tollgate.db").display()),
        _ => {
            let server = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
                .expect("postgres tests need a server URL");
            let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin = sqlx::PgPool::connect(&format!("{server}/postgres"))
                .await
                .expect("postgres reachable");
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await
                .expect("create test database");
            admin.close().await;
            admin = sqlx::PgPool::connect(&format!("{server}/{name}"))
                .await
                .expect("test database reachable");
            admin.close().await;
            format!("{server}/{name}")
        }
    }
}

/// The configuration of a test server living in `dir`, on a fresh database.
pub(crate) async fn test_config(kind: &str, dir: &Path) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.database.url = fresh_database(kind, dir).await;
    config
}

/// A self-signed certificate for `localhost`, written to `dir` as
/// `cert.pem` and `key.pem`; returns the two paths and the certificate's PEM.
pub(crate) fn self_signed(dir: &Path) -> (PathBuf, PathBuf, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("self-signed certificate");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).expect("write the certificate");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write the key");
    (cert_path, key_path, cert.cert.pem())
}

/// The DER certificates of a PEM text.
pub(crate) fn pem_certificates(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.expect("a PEM certificate"))
        .collect()
}

/// A server on an ephemeral port with its own data directory and database.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    /// Where the HTTP(S) API listens.
    pub(crate) http_addr: SocketAddr,
    /// Where FTP listens.
    pub(crate) ftp_addr: SocketAddr,
    /// Where implicit FTPS listens, when configured.
    pub(crate) ftps_addr: Option<SocketAddr>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: Config,
    server: Option<Server>,
}

impl TestServer {
    /// Starts a server on a fresh database of `kind`.
    pub(crate) async fn start(kind: &str) -> TestServer {
        init_logging();
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = test_config(kind, dir.path()).await;
        TestServer::start_with(config, dir).await
    }

    /// Starts a server with a given configuration (keeping `dir` alive).
    pub(crate) async fn start_with(config: Config, dir: tempfile::TempDir) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let http = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let ftp = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port");
        let server = Server::start(
            config.clone(),
            Listeners {
                sftp: Some(listener),
                http: Some(http),
                ftp: Some(ftp),
                ftps: None,
            },
        )
        .await
        .expect("server starts");
        let addr = server.sftp_addr.expect("sftp is enabled");
        let http_addr = server.http_addr.expect("http is enabled");
        let ftp_addr = server.ftp_addr.expect("ftp is enabled");
        TestServer {
            addr,
            http_addr,
            ftp_addr,
            ftps_addr: server.ftps_addr,
            dir,
            config,
            server: Some(server),
        }
    }

    pub(crate) fn app(&self) -> &tollgate::App {
        &self.server.as_ref().expect("running").app
    }

    /// Stops the server and waits for it.
    pub(crate) async fn stop(mut self) -> (Config, tempfile::TempDir) {
        self.server
            .take()
            .expect("running")
            .stop()
            .await
            .expect("server stops cleanly");
        (
            self.config.clone(),
            std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir")),
        )
    }

    /// The home directory for `name`.
    pub(crate) fn home(&self, name: &str) -> PathBuf {
        self.dir.path().join("homes").join(name)
    }

    /// Creates a user with the test password and optional policies.
    pub(crate) async fn add_user(&self, name: &str, policies: &[&str]) -> PathBuf {
        let home = self.home(name);
        self.app()
            .create_user(
                "test",
                NewUser {
                    username: name.to_string(),
                    password: Some(PASSWORD.to_string()),
                    home: home.to_string_lossy().into_owned(),
                    policies: policies.iter().map(|p| p.to_string()).collect(),
                    ..NewUser::default()
                },
            )
            .await
            .expect("user created");
        home
    }

    /// Creates a user who may do everything in their home (policy `all`).
    pub(crate) async fn add_full_user(&self, name: &str) -> PathBuf {
        match self
            .app()
            .create_policy("test", "all", &["/=*".to_string()])
            .await
        {
            Ok(())
            | Err(tollgate_application::AppError::Rejected {
                kind: tollgate_domain::RefusalKind::AlreadyExists,
                ..
            }) => {}
            Err(err) => panic!("policy all: {err}"),
        }
        self.add_user(name, &["all"]).await
    }

    /// Events matching `filter`, after the subscribers caught up.
    pub(crate) async fn events(&self, filter: EventFilter) -> Vec<EventSummary> {
        let filter = EventFilter {
            limit: if filter.limit == 0 {
                100_000
            } else {
                filter.limit
            },
            ..filter
        };
        self.app()
            .list_events(&filter)
            .await
            .expect("events readable")
    }

    /// Events of one type about `user`.
    pub(crate) async fn events_of(&self, user: &str, event_type: &str) -> Vec<EventSummary> {
        self.events(EventFilter {
            user: Some(user.to_string()),
            event_type: Some(event_type.to_string()),
            ..EventFilter::default()
        })
        .await
    }

    /// Waits (bounded) until an event of `event_type` about `user` exists:
    /// some events are recorded by tasks that outlive a dropped connection.
    pub(crate) async fn wait_for_event(&self, user: &str, event_type: &str) -> Vec<EventSummary> {
        self.wait_for_events(user, event_type, 1).await
    }

    /// Waits (bounded) until an event of `event_type`, about anyone, exists.
    pub(crate) async fn wait_for_type(&self, event_type: &str) -> Vec<EventSummary> {
        for _ in 0..400 {
            let found = self
                .events(EventFilter {
                    event_type: Some(event_type.to_string()),
                    ..EventFilter::default()
                })
                .await;
            if !found.is_empty() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {event_type} event appeared");
    }

    /// Waits (bounded) until `count` events of `event_type` about `user` exist.
    pub(crate) async fn wait_for_events(
        &self,
        user: &str,
        event_type: &str,
        count: usize,
    ) -> Vec<EventSummary> {
        for _ in 0..400 {
            let found = self.events_of(user, event_type).await;
            if found.len() >= count {
                return found;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {event_type} event for {user} appeared");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked still stops accepting connections.
        if let Some(server) = self.server.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            handle.spawn(async move {
                let _ = server.stop().await;
            });
        }
    }
}

/// An SSH client that trusts any host key (tests only).
pub(crate) struct TrustingClient;

impl client::Handler for TrustingClient {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

pub(crate) type Connection = client::Handle<TrustingClient>;

/// The labels and value of metric `name` as the metrics endpoint has it
/// (its first label set).
pub(crate) async fn metric(
    app: &tollgate::App,
    name: &str,
) -> Option<(Vec<(&'static str, String)>, f64)> {
    app.admin_api()
        .metrics()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.name == name)
        .map(|s| (s.labels, s.value))
}

pub(crate) async fn connect(addr: SocketAddr) -> Connection {
    let config = Arc::new(client::Config::default());
    client::connect(config, addr, TrustingClient)
        .await
        .expect("ssh connection")
}

/// Connects from another loopback address (`127.0.0.2`, say), as a
/// client on another host would.
pub(crate) async fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Connection {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    let stream = socket.connect(addr).await.expect("tcp connection");
    let config = Arc::new(client::Config::default());
    client::connect_stream(config, stream, TrustingClient)
        .await
        .expect("ssh connection")
}

/// Logs in with a password; `Ok(false)` when the server refused.
pub(crate) async fn login_password(conn: &mut Connection, user: &str, password: &str) -> bool {
    conn.authenticate_password(user, password)
        .await
        .expect("auth exchange")
        .success()
}

pub(crate) async fn login_key(conn: &mut Connection, user: &str, key: &PrivateKey) -> bool {
    let key = PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None);
    conn.authenticate_publickey(user, key)
        .await
        .expect("auth exchange")
        .success()
}

/// A session channel running the sftp subsystem, nothing sent on it yet.
pub(crate) async fn sftp_channel(conn: &Connection) -> russh::Channel<client::Msg> {
    let channel = conn.channel_open_session().await.expect("session channel");
    channel
        .request_subsystem(true, "sftp")
        .await
        .expect("sftp subsystem");
    channel
}

pub(crate) async fn open_sftp(conn: &Connection) -> SftpSession {
    SftpSession::new(sftp_channel(conn).await.into_stream())
        .await
        .expect("sftp session")
}

/// Connects and logs in with the test password.
pub(crate) async fn sftp(addr: SocketAddr, user: &str) -> (Connection, SftpSession) {
    sftp_as(addr, user, PASSWORD).await
}

/// Connects and logs in with `password`.
pub(crate) async fn sftp_as(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> (Connection, SftpSession) {
    let mut conn = connect(addr).await;
    assert!(
        login_password(&mut conn, user, password).await,
        "login of {user}"
    );
    let session = open_sftp(&conn).await;
    (conn, session)
}

/// Checks an inclusion proof as `audit proof` and the API print it (JSON
/// with `position`, `leaf_hash`, `proof` and the signed `checkpoint`)
/// against the checkpoint, opened with `verifier_key`.
pub(crate) fn verify_inclusion_json(proof: &serde_json::Value, verifier_key: &str) {
    use tollgate_audit::note::{Checkpoint, NoteVerifier};
    let verifier = NoteVerifier::from_key(verifier_key.trim()).unwrap();
    let checkpoint = Checkpoint::open(proof["checkpoint"].as_str().unwrap(), &verifier).unwrap();
    tollgate_audit::merkle::verify_inclusion(
        proof["position"].as_u64().unwrap() - 1,
        checkpoint.size,
        &unhex(proof["leaf_hash"].as_str().unwrap()),
        &hashes(&proof["proof"]),
        &checkpoint.root,
    )
    .unwrap();
}

/// Logs in as `user` (test password) over SFTP at `addr`, writes `data`
/// to `name` and disconnects.
pub(crate) async fn upload_to(addr: SocketAddr, user: &str, name: &str, data: &[u8]) {
    let mut conn = connect(addr).await;
    assert!(
        login_password(&mut conn, user, PASSWORD).await,
        "{user} logs in"
    );
    let sftp = open_sftp(&conn).await;
    let mut file = sftp.create(name).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut file, data)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut file).await.unwrap();
    drop(sftp);
    conn.disconnect(russh::Disconnect::ByApplication, "", "")
        .await
        .unwrap();
}

pub(crate) fn new_key() -> PrivateKey {
    PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key generation")
}

/// The SFTP status code of a refused request.
pub(crate) fn refused<T>(
    res: Result<T, russh_sftp::client::error::Error>,
) -> russh_sftp::protocol::StatusCode {
    match res {
        Err(russh_sftp::client::error::Error::Status(status)) => status.status_code,
        Err(other) => panic!("expected an SFTP status, got {other:?}"),
        Ok(_) => panic!("expected the request to be refused"),
    }
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// A hex SHA-256 hash, as proofs and checkpoints carry them.
pub(crate) fn unhex(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

/// A JSON array of hex hashes (a proof's path).
pub(crate) fn hashes(value: &serde_json::Value) -> Vec<[u8; 32]> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|h| unhex(h.as_str().unwrap()))
        .collect()
}
