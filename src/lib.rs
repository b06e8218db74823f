//! The `tollgate` binary's library: configuration and the composition root,
//! the only place where adapters are wired to ports.

pub mod bundle;
pub mod config;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use russh::keys::{Algorithm, PrivateKey};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tollgate_application::{
    CheckpointPolicy, Dependencies, DirectoryLogins, PrivacyPolicy, RetryPolicy, RunInfo,
    SystemClock, Tollgate,
};
use tollgate_export::{HttpWebhookSender, KafkaProducer, KafkaSettings};
use tollgate_ftp::{FtpConfig, FtpServer};
use tollgate_http::{HttpConfig, HttpServer, TlsPem};
use tollgate_identity::{AesGcmSecretBox, Argon2Hasher, AuditKeySigner, JwtSigner, Rfc6238};
use tollgate_persistence::Database;
use tollgate_sftp::{CertificateTrust, Revocations, SftpConfig, SftpServer};
use tollgate_storage::{Backends, LocalStorage};

pub use config::Config;

/// Selects aws-lc-rs as the process's TLS provider (the only one in the
/// tree). Call before any TLS configuration is built; later calls do nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The application as wired by the binary.
pub type App = Tollgate<Database>;

/// Opens the database (creating the data directory) and wires the application.
pub async fn open(config: &Config) -> anyhow::Result<(App, Database)> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let url = config.database_url();
    let db = Database::connect(&url)
        .await
        .with_context(|| format!("cannot open the {} database", url_kind(&url)))?;
    let tokens = JwtSigner::load_or_create(&config.token_keys_path())
        .context("cannot load the token signing keys")?;
    let secrets = AesGcmSecretBox::load_or_create(&config.secret_key_path())
        .context("cannot load the secret sealing key")?;
    let checkpoints =
        AuditKeySigner::load_or_create(&config.audit_key_path(), &config.audit.origin)
            .context("cannot load the audit checkpoint key")?;
    let secrets = Arc::new(secrets);
    let local: Arc<LocalStorage> =
        Arc::new(LocalStorage::with_sync_commits(config.storage.sync_uploads));
    let app = Tollgate::new(Dependencies {
        repository: db.clone(),
        log: Arc::new(db.clone()),
        audit: Arc::new(db.clone()),
        projections: Arc::new(db.clone()),
        storage: local.clone(),
        mounts: Arc::new(Backends::new(secrets.clone(), local)),
        hasher: Arc::new(Argon2Hasher),
        defender: config.defender.clone().normalized(),
        password_policy: config.passwords,
        clock: Arc::new(SystemClock),
        tokens: Arc::new(tokens),
        secrets: secrets.clone(),
        subject_keys: Arc::new(db.clone()),
        subject_cipher: secrets,
        privacy: PrivacyPolicy {
            seal_remote_addr: config.privacy.seal_remote_addr,
        },
        webhooks: Arc::new(HttpWebhookSender::new(
            Duration::from_secs(config.webhooks.timeout_secs),
            config.webhooks.allow_private_targets,
        )),
        deliveries: Arc::new(db.clone()),
        kafka: Arc::new(
            KafkaProducer::new(&KafkaSettings {
                brokers: config.kafka.brokers.clone(),
                delivery_timeout: Duration::from_millis(config.kafka.delivery_timeout_ms),
                options: config.kafka.options.clone(),
            })
            .map_err(anyhow::Error::msg)?,
        ),
        retry_policy: RetryPolicy {
            first: Duration::from_millis(config.webhooks.first_retry_ms),
            max: Duration::from_secs(config.webhooks.max_retry_secs),
        },
        token_ttl: Duration::from_secs(config.http.token_ttl_secs),
        otp: Arc::new(Rfc6238),
        directory: config.directory()?.map(|directory| DirectoryLogins {
            directory: Arc::new(directory),
            homes_dir: config.homes_dir().to_string_lossy().into_owned(),
            policies: config.ldap.policies.clone(),
        }),
        checkpoints: Arc::new(checkpoints),
        checkpoint_policy: CheckpointPolicy {
            every: config.audit.checkpoint_every,
            interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
        },
    });
    Ok((app, db))
}

/// Moves the audit checkpoint key aside (as `FILE.KEYID.retired`), so the
/// The SSH user CAs and revocations of the configuration.
fn certificate_trust(config: &Config) -> anyhow::Result<CertificateTrust> {
    let cas = config
        .sftp
        .trusted_user_ca_keys
        .iter()
        .map(|line| {
            russh::keys::PublicKey::from_openssh(line)
                .with_context(|| format!("[sftp] trusted_user_ca_keys: cannot read {line:?}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(CertificateTrust::new(
        &cas,
        Revocations {
            serials: config.sftp.revoked_certificate_serials.clone(),
            key_ids: config.sftp.revoked_certificate_key_ids.clone(),
            keys: config.sftp.revoked_keys.clone(),
        },
    ))
}

/// next start generates a new one; returns where the old one went.
pub fn retire_audit_key(path: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("there is no audit key at {} to rotate", path.display()))?;
    let key_id = text
        .trim()
        .split('+')
        .nth(3)
        .filter(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .with_context(|| format!("{} is not an audit key file", path.display()))?;
    let retired = path.with_file_name(format!(
        "{}.{key_id}.retired",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::rename(path, &retired)
        .with_context(|| format!("cannot move {} aside", path.display()))?;
    Ok(retired)
}

fn url_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "SQLite"
    } else {
        "PostgreSQL"
    }
}

/// Loads the configured host keys, or the generated ones in the data
/// directory (generating an Ed25519 key on first start).
pub fn host_keys(config: &Config) -> anyhow::Result<Vec<PrivateKey>> {
    if !config.sftp.host_keys.is_empty() {
        return config
            .sftp
            .host_keys
            .iter()
            .map(|path| {
                russh::keys::load_secret_key(path, None)
                    .with_context(|| format!("cannot load the host key {}", path.display()))
            })
            .collect();
    }
    let dir = config.data_dir.join("host_keys");
    let path = dir.join("ssh_host_ed25519_key");
    if path.exists() {
        return Ok(vec![
            russh::keys::load_secret_key(&path, None)
                .with_context(|| format!("cannot load {}", path.display()))?,
        ]);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
        .context("cannot generate a host key")?;
    write_private(&path, &key)?;
    tracing::info!(path = %path.display(), "generated an SSH host key");
    Ok(vec![key])
}

fn write_private(path: &Path, key: &PrivateKey) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("cannot encode the host key")?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Listeners bound by the caller (tests bind `127.0.0.1:0`).
#[derive(Default)]
pub struct Listeners {
    /// The SSH/SFTP listener; bound from the configuration when `None`.
    pub sftp: Option<TcpListener>,
    /// The HTTP(S) listener; bound from the configuration when `None`.
    pub http: Option<TcpListener>,
    /// The FTP listener; bound from the configuration when `None`.
    pub ftp: Option<TcpListener>,
    /// The implicit FTPS listener; bound from `ftp.implicit_listen`, when
    /// set, when `None`.
    pub ftps: Option<TcpListener>,
}

/// A running server.
pub struct Server {
    /// Where SFTP listens.
    pub sftp_addr: Option<SocketAddr>,
    /// Where the HTTP(S) API listens.
    pub http_addr: Option<SocketAddr>,
    /// Where FTP listens.
    pub ftp_addr: Option<SocketAddr>,
    /// Where implicit FTPS listens.
    pub ftps_addr: Option<SocketAddr>,
    /// The application, for tests and the CLI.
    pub app: App,
    db: Database,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Server {
    /// Starts every configured protocol and the log subscribers.
    pub async fn start(config: Config, listeners: Listeners) -> anyhow::Result<Server> {
        install_tls_provider();
        let (app, db) = open(&config).await?;
        let admin_password = std::env::var("TOLLGATE_ADMIN_PASSWORD")
            .ok()
            .filter(|p| !p.is_empty());
        if let Some(generated) = app
            .bootstrap_admin(admin_password)
            .await
            .context("cannot create the first administrator")?
        {
            // Shown once, on the terminal of whoever started the first server.
            eprintln!(
                "first administrator: {} / {generated} (shown once; change it)",
                tollgate_application::FIRST_ADMIN
            );
        }
        app.catch_up()
            .await
            .context("cannot catch up with the event log")?;
        app.load_bans()
            .await
            .context("cannot load the bans in force")?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        {
            let app = app.clone();
            let rx = shutdown_rx.clone();
            tasks.spawn(async move {
                app.run_subscribers(rx).await;
                Ok(())
            });
        }
        {
            let app = app.clone();
            let rx = shutdown_rx.clone();
            tasks.spawn(async move {
                app.run_webhooks(rx).await;
                Ok(())
            });
        }
        let mut sftp_addr = None;
        if config.sftp.enabled {
            let listener = match listeners.sftp {
                Some(listener) => listener,
                None => TcpListener::bind(&config.sftp.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.sftp.listen))?,
            };
            sftp_addr = Some(listener.local_addr()?);
            let server = SftpServer::new(
                app.gateway(),
                SftpConfig {
                    host_keys: host_keys(&config)?,
                    idle_timeout: Duration::from_secs(config.sftp.idle_timeout_secs),
                    auth_rejection_time: Duration::from_millis(500),
                    certificates: certificate_trust(&config)?,
                },
            );
            let rx = shutdown_rx.clone();
            tasks.spawn(async move {
                server
                    .run(listener, rx)
                    .await
                    .context("the SFTP server failed")
            });
        }
        let mut http_addr = None;
        if config.http.enabled {
            let tls = match (&config.http.tls_cert, &config.http.tls_key) {
                (Some(cert), Some(key)) => Some(TlsPem {
                    cert: std::fs::read(cert)
                        .with_context(|| format!("cannot read {}", cert.display()))?,
                    key: std::fs::read(key)
                        .with_context(|| format!("cannot read {}", key.display()))?,
                }),
                _ => None,
            };
            let listener = match listeners.http {
                Some(listener) => listener,
                None => TcpListener::bind(&config.http.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.http.listen))?,
            };
            http_addr = Some(listener.local_addr()?);
            let server = HttpServer::new(
                app.admin_api(),
                app.gateway(),
                HttpConfig {
                    tls,
                    max_body_bytes: config.http.max_body_bytes,
                    stream_send_timeout: Duration::from_millis(config.http.stream_send_timeout_ms),
                },
            );
            let rx = shutdown_rx.clone();
            tasks.spawn(async move {
                server
                    .run(listener, rx)
                    .await
                    .context("the HTTP server failed")
            });
        }
        let mut ftp_addr = None;
        let mut ftps_addr = None;
        if config.ftp.enabled {
            let listener = match listeners.ftp {
                Some(listener) => listener,
                None => TcpListener::bind(&config.ftp.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", config.ftp.listen))?,
            };
            ftp_addr = Some(listener.local_addr()?);
            let implicit = match listeners.ftps {
                Some(listener) => Some(listener),
                None if !config.ftp.implicit_listen.is_empty() => Some(
                    TcpListener::bind(&config.ftp.implicit_listen)
                        .await
                        .with_context(|| {
                            format!("cannot listen on {}", config.ftp.implicit_listen)
                        })?,
                ),
                None => None,
            };
            if let Some(listener) = &implicit {
                ftps_addr = Some(listener.local_addr()?);
            }
            let tls = match (&config.ftp.tls_cert, &config.ftp.tls_key) {
                (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
                _ => None,
            };
            let server = FtpServer::new(
                app.gateway(),
                FtpConfig {
                    tls,
                    require_tls: config.ftp.require_tls,
                    passive_ports: config.ftp.passive_port_min..=config.ftp.passive_port_max,
                    passive_host: config.ftp.passive_host.parse().ok(),
                    idle_timeout: Duration::from_secs(config.ftp.idle_timeout_secs),
                },
            );
            let rx = shutdown_rx.clone();
            tasks.spawn(async move {
                server
                    .run(listener, implicit, rx)
                    .await
                    .context("the FTP server failed")
            });
        }
        let listening = [
            ("sftp", sftp_addr),
            ("http", http_addr),
            ("ftp", ftp_addr),
            ("ftps", ftps_addr),
        ];
        app.record_server_started(RunInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: host_name(),
            pid: std::process::id(),
            listeners: listening
                .iter()
                .filter_map(|(name, addr)| addr.map(|a| format!("{name} {a}")))
                .collect(),
        })
        .await
        .context("cannot record the server's start")?;
        Ok(Server {
            sftp_addr,
            http_addr,
            ftp_addr,
            ftps_addr,
            app,
            db,
            shutdown,
            tasks,
        })
    }

    /// Runs until a task fails or `stop` is requested through `signal`.
    pub async fn wait(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = signal => {}
            Some(res) = self.tasks.join_next() => {
                res.context("a server task panicked")??;
            }
        }
        self.stop().await
    }

    /// Stops accepting, lets the subscribers finish their batch, and closes the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        while let Some(res) = self.tasks.join_next().await {
            if let Ok(Err(err)) = res {
                tracing::warn!(error = %err, "a task ended with an error during shutdown");
            }
        }
        if let Err(err) = self.app.record_server_stopped("shutdown").await {
            tracing::error!(error = %err, "cannot record the server's stop");
        }
        // Record what the subscribers have not yet seen before closing.
        if let Err(err) = self.app.catch_up().await {
            tracing::warn!(error = %err, "subscribers could not catch up before shutdown");
        }
        self.db.close().await;
        Ok(())
    }
}

/// This machine's name, as a server run records it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
