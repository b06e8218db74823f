//! `tollgate.toml`: one file, every key overridable by a `TOLLGATE_*`
//! environment variable, safe defaults when there is no file at all.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the database, host keys and default homes live.
    pub data_dir: PathBuf,
    /// The event store.
    pub database: DatabaseConfig,
    /// The SSH/SFTP server.
    pub sftp: SftpSection,
    /// The HTTP(S) API server.
    pub http: HttpSection,
    /// The FTP/FTPS server.
    pub ftp: FtpSection,
    /// Local storage.
    pub storage: StorageConfig,
    /// The audit trail's signed checkpoints.
    pub audit: AuditConfig,
    /// Personal data in events.
    pub privacy: PrivacyConfig,
    /// What new passwords must be (`[passwords]`).
    pub passwords: tollgate_application::PasswordPolicy,
    /// Banning addresses after failed logins (`[defender]`).
    pub defender: tollgate_application::DefenderPolicy,
    /// Logins through an LDAP or Active Directory server (`[ldap]`; off
    /// while `url` is empty).
    pub ldap: tollgate_identity::ldap::LdapConfig,
    /// Webhook deliveries.
    pub webhooks: WebhooksConfig,
    /// The Kafka brokers of Kafka subscriptions.
    pub kafka: KafkaConfig,
    /// Logging.
    pub log: LogConfig,
}

/// `[database]`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite:PATH` or `postgres://...`; empty means SQLite in the data directory.
    pub url: String,
}

/// `[sftp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftpSection {
    /// Whether the SSH server runs.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
    /// Host key files (OpenSSH format); empty means generated keys in the data directory.
    pub host_keys: Vec<PathBuf>,
    /// Idle connections are closed after this many seconds.
    pub idle_timeout_secs: u64,
    /// User CAs (OpenSSH public key lines): a user certificate one of them
    /// signed logs in as any of its principals.
    pub trusted_user_ca_keys: Vec<String>,
    /// Revoked certificate serials.
    pub revoked_certificate_serials: Vec<u64>,
    /// Revoked certificate key ids.
    pub revoked_certificate_key_ids: Vec<String>,
    /// Revoked keys (`SHA256:...`): a certified key or a CA.
    pub revoked_keys: Vec<String>,
}

/// `[http]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Whether the HTTP server runs.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
    /// PEM certificate chain; with `tls_key`, the server speaks HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// How long an access token lives, in seconds.
    pub token_ttl_secs: u64,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A live event stream (`/api/v1/events/ws`) client that does not take
    /// a message within this many milliseconds is disconnected.
    pub stream_send_timeout_ms: u64,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            enabled: true,
            listen: "127.0.0.1:8080".to_string(),
            tls_cert: None,
            tls_key: None,
            token_ttl_secs: 900,
            max_body_bytes: 1024 * 1024,
            stream_send_timeout_ms: 10_000,
        }
    }
}

/// `[ftp]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FtpSection {
    /// Whether the FTP server runs.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
    /// PEM certificate chain; with `tls_key`, explicit FTPS (AUTH TLS) is offered.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Refuse logins and transfers without TLS (needs the certificate).
    pub require_tls: bool,
    /// Address for implicit FTPS (TLS from the first byte, usually port
    /// 990); empty means off. Needs the certificate.
    pub implicit_listen: String,
    /// First port for passive data connections.
    pub passive_port_min: u16,
    /// Last port for passive data connections.
    pub passive_port_max: u16,
    /// The IPv4 address announced in PASV replies; empty means the
    /// control connection's local address.
    pub passive_host: String,
    /// Idle control connections are closed after this many seconds.
    pub idle_timeout_secs: u64,
}

impl Default for FtpSection {
    fn default() -> Self {
        FtpSection {
            enabled: true,
            listen: "127.0.0.1:2121".to_string(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            implicit_listen: String::new(),
            passive_port_min: 50000,
            passive_port_max: 50999,
            passive_host: String::new(),
            idle_timeout_secs: 600,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where `user add` puts homes when none is given; empty means `DATA_DIR/homes`.
    pub homes_dir: String,
    /// Whether an upload to local disk is synced (the file, then its
    /// directory) before it is recorded complete. `false` leaves it to the
    /// system's write-back, as OpenSSH's sftp-server does: faster for many
    /// small files, but a power cut may lose a file the log records as
    /// complete. A client's `fsync@openssh.com` (`put -f`) syncs either way.
    pub sync_uploads: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            homes_dir: String::new(),
            sync_uploads: true,
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The log's name: the first line of every checkpoint and the name of
    /// its signing key (no spaces; a URL-like name is customary).
    pub origin: String,
    /// A signed checkpoint after this many new records...
    pub checkpoint_every: u64,
    /// ...or after this many seconds, when at least one record is new.
    pub checkpoint_interval_secs: u64,
    /// Records older than this many days may be pruned once exported
    /// (`tollgate audit prune`); 0 keeps everything.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            origin: "tollgate.local/audit".to_string(),
            checkpoint_every: 1000,
            checkpoint_interval_secs: 10,
            retention_days: 0,
        }
    }
}

/// `[privacy]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Whether client addresses are sealed in events with a key that
    /// `tollgate user erase` destroys (names and emails always are).
    pub seal_remote_addr: bool,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            seal_remote_addr: true,
        }
    }
}

/// `[webhooks]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Whether endpoints on loopback, private or link-local addresses are
    /// allowed (off: such targets are refused, against request forgery).
    pub allow_private_targets: bool,
    /// A delivery attempt gives up after this many seconds.
    pub timeout_secs: u64,
    /// The wait after a first failed attempt, doubled after each failure...
    pub first_retry_ms: u64,
    /// ...up to this many seconds.
    pub max_retry_secs: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private_targets: false,
            timeout_secs: 10,
            first_retry_ms: 1000,
            max_retry_secs: 600,
        }
    }
}

/// `[kafka]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port,...`; empty: Kafka subscriptions are refused.
    pub brokers: String,
    /// How long a record may wait for the brokers' acknowledgement before
    /// the batch is retried.
    pub delivery_timeout_ms: u64,
    /// Other librdkafka properties, passed through (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`,
    /// `ssl.ca.location`, ...).
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            delivery_timeout_ms: 30_000,
            options: std::collections::BTreeMap::new(),
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter, e.g. `info` or `tollgate=debug`.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            database: DatabaseConfig::default(),
            sftp: SftpSection::default(),
            http: HttpSection::default(),
            ftp: FtpSection::default(),
            storage: StorageConfig::default(),
            audit: AuditConfig::default(),
            privacy: PrivacyConfig::default(),
            passwords: Default::default(),
            defender: Default::default(),
            ldap: Default::default(),
            webhooks: WebhooksConfig::default(),
            kafka: KafkaConfig::default(),
            log: LogConfig::default(),
        }
    }
}

impl Default for SftpSection {
    fn default() -> Self {
        SftpSection {
            enabled: true,
            listen: "127.0.0.1:2022".to_string(),
            host_keys: Vec::new(),
            idle_timeout_secs: 600,
            trusted_user_ca_keys: Vec::new(),
            revoked_certificate_serials: Vec::new(),
            revoked_certificate_key_ids: Vec::new(),
            revoked_keys: Vec::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: "text".to_string(),
            level: "info".to_string(),
        }
    }
}

/// Environment variables that are not configuration keys: the first
/// administrator's password, the config file path, the log filter, and the
/// test suite's own switches.
const NON_KEYS: [&str; 3] = ["TOLLGATE_ADMIN_PASSWORD", "TOLLGATE_CONFIG", "TOLLGATE_LOG"];
const NON_KEY_PREFIX: &str = "TOLLGATE_TEST_";
/// Keys whose default is "not set" (and so absent from the serialised defaults).
const OPTIONAL_KEYS: [(&str, &str); 10] = [
    ("http", "tls_cert"),
    ("http", "tls_key"),
    ("ftp", "tls_cert"),
    ("ftp", "tls_key"),
    ("ldap", "ca_file"),
    ("ldap", "bind_dn_template"),
    ("ldap", "search_base"),
    ("ldap", "search_bind_dn"),
    ("ldap", "search_bind_password"),
    ("ldap", "group_base"),
];

impl Config {
    /// Loads `file` (or the defaults), applies `TOLLGATE_*` overrides from
    /// `env`, and validates the result. Also returns the `TOLLGATE_*`
    /// variables that match no key (likely typos): `config validate` treats
    /// them as errors, `serve` warns about them.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<(Config, Vec<String>)> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("{} is not valid TOML", path.display()))?
            }
            None => toml::Table::new(),
        };
        let unmatched = apply_env(&mut table, env)?;
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    anyhow::anyhow!("invalid configuration: {}", e.message())
                })?;
        config.validate()?;
        Ok((config, unmatched))
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut problems = Vec::new();
        if self.sftp.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "sftp.listen: {:?} is not an address like 127.0.0.1:2022",
                self.sftp.listen
            ));
        }
        for key in &self.sftp.host_keys {
            if !key.is_file() {
                problems.push(format!("sftp.host_keys: {} does not exist", key.display()));
            }
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "http.listen: {:?} is not an address like 127.0.0.1:8080",
                self.http.listen
            ));
        }
        match (&self.http.tls_cert, &self.http.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                problems.push("http.tls_cert and http.tls_key must be given together".to_string())
            }
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls_cert", cert), ("tls_key", key)] {
                    if !path.is_file() {
                        problems.push(format!("http.{name}: {} does not exist", path.display()));
                    }
                }
            }
            (None, None) => {}
        }
        if self.ftp.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "ftp.listen: {:?} is not an address like 127.0.0.1:2121",
                self.ftp.listen
            ));
        }
        match (&self.ftp.tls_cert, &self.ftp.tls_key) {
            (Some(_), None) | (None, Some(_)) => {
                problems.push("ftp.tls_cert and ftp.tls_key must be given together".to_string())
            }
            (Some(cert), Some(key)) => {
                for (name, path) in [("tls_cert", cert), ("tls_key", key)] {
                    if !path.is_file() {
                        problems.push(format!("ftp.{name}: {} does not exist", path.display()));
                    }
                }
            }
            (None, None) if self.ftp.require_tls => {
                problems.push("ftp.require_tls needs ftp.tls_cert and ftp.tls_key".to_string())
            }
            (None, None) if !self.ftp.implicit_listen.is_empty() => {
                problems.push("ftp.implicit_listen needs ftp.tls_cert and ftp.tls_key".to_string())
            }
            (None, None) => {}
        }
        if !self.ftp.implicit_listen.is_empty()
            && self.ftp.implicit_listen.parse::<SocketAddr>().is_err()
        {
            problems.push(format!(
                "ftp.implicit_listen: {:?} is not an address like 127.0.0.1:990",
                self.ftp.implicit_listen
            ));
        }
        if self.ftp.passive_port_min == 0 || self.ftp.passive_port_min > self.ftp.passive_port_max {
            problems.push(
                "ftp.passive_port_min..ftp.passive_port_max must be a non-empty range of ports"
                    .to_string(),
            );
        }
        if !self.ftp.passive_host.is_empty()
            && self.ftp.passive_host.parse::<std::net::Ipv4Addr>().is_err()
        {
            problems.push(format!(
                "ftp.passive_host: {:?} is not an IPv4 address",
                self.ftp.passive_host
            ));
        }
        if self.http.token_ttl_secs == 0 {
            problems.push("http.token_ttl_secs: must be at least 1".to_string());
        }
        if self.http.max_body_bytes == 0 {
            problems.push("http.max_body_bytes: must be at least 1".to_string());
        }
        if self.sftp.idle_timeout_secs == 0 {
            problems.push("sftp.idle_timeout_secs: must be at least 1".to_string());
        }
        let url = &self.database.url;
        if !url.is_empty()
            && !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            problems.push("database.url: must start with sqlite: or postgres://".to_string());
        }
        if self.audit.origin.is_empty()
            || self
                .audit
                .origin
                .contains(|c: char| c == '+' || c.is_whitespace())
        {
            problems.push(format!(
                "audit.origin: {:?} must be non-empty, without spaces or '+'",
                self.audit.origin
            ));
        }
        if self.audit.checkpoint_every == 0 {
            problems.push("audit.checkpoint_every: must be at least 1".to_string());
        }
        if self.webhooks.timeout_secs == 0 || self.webhooks.first_retry_ms == 0 {
            problems.push(
                "webhooks.timeout_secs and webhooks.first_retry_ms: must be at least 1".to_string(),
            );
        }
        if self.webhooks.max_retry_secs * 1000 < self.webhooks.first_retry_ms {
            problems.push(
                "webhooks.max_retry_secs: must not be below webhooks.first_retry_ms".to_string(),
            );
        }
        if self.http.stream_send_timeout_ms == 0 {
            problems.push("http.stream_send_timeout_ms: must be at least 1".to_string());
        }
        if self.kafka.delivery_timeout_ms == 0 {
            problems.push("kafka.delivery_timeout_ms: must be at least 1".to_string());
        }
        if self.audit.checkpoint_interval_secs == 0 {
            problems.push("audit.checkpoint_interval_secs: must be at least 1".to_string());
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            problems.push(format!(
                "log.format: {:?} is neither \"text\" nor \"json\"",
                self.log.format
            ));
        }
        if self.data_dir.exists() && !self.data_dir.is_dir() {
            problems.push(format!(
                "data_dir: {} is not a directory",
                self.data_dir.display()
            ));
        }
        if let Err(err) = self.directory() {
            problems.push(err.to_string());
        }
        if problems.is_empty() {
            return Ok(());
        }
        bail!("invalid configuration:\n  {}", problems.join("\n  "))
    }

    /// The directory of `[ldap]`, when its `url` is set.
    pub fn directory(
        &self,
    ) -> Result<
        Option<tollgate_identity::ldap::LdapDirectory>,
        tollgate_identity::ldap::LdapConfigError,
    > {
        if self.ldap.url.is_empty() {
            return Ok(None);
        }
        tollgate_identity::ldap::LdapDirectory::new(self.ldap.clone()).map(Some)
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite:{}", self.data_dir.join("tollgate.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The file holding the bearer-token signing keys.
    pub fn token_keys_path(&self) -> PathBuf {
        self.data_dir.join("token_keys.json")
    }

    /// The file holding the key that signs the audit checkpoints.
    pub fn audit_key_path(&self) -> PathBuf {
        self.data_dir.join("audit_checkpoint.key")
    }

    /// The file holding the key that seals storage secrets.
    pub fn secret_key_path(&self) -> PathBuf {
        self.data_dir.join("secret.key")
    }

    /// Where new users' homes go by default.
    pub fn homes_dir(&self) -> PathBuf {
        if self.storage.homes_dir.is_empty() {
            self.data_dir.join("homes")
        } else {
            PathBuf::from(&self.storage.homes_dir)
        }
    }
}

/// Applies `TOLLGATE_SECTION_KEY=value` overrides: the key path is matched
/// against the keys the configuration knows, so `TOLLGATE_SFTP_IDLE_TIMEOUT_SECS`
/// sets `sftp.idle_timeout_secs`.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Vec<String>> {
    let mut unmatched = Vec::new();
    let defaults =
        toml::Table::try_from(Config::default()).context("the default configuration serialises")?;
    let mut keys = Vec::new();
    for (name, value) in &defaults {
        match value {
            toml::Value::Table(section) => {
                keys.extend(section.keys().map(|k| vec![name.clone(), k.clone()]))
            }
            _ => keys.push(vec![name.clone()]),
        }
    }
    // Optional keys have no default value, so the defaults do not name them.
    keys.extend(
        OPTIONAL_KEYS
            .iter()
            .map(|(section, key)| vec![section.to_string(), key.to_string()]),
    );
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix("TOLLGATE_") else {
            continue;
        };
        if NON_KEYS.contains(&var.as_str()) || var.starts_with(NON_KEY_PREFIX) {
            continue;
        }
        let wanted = rest.to_ascii_lowercase();
        let Some(path) = keys.iter().find(|path| path.join("_") == wanted) else {
            unmatched.push(var);
            continue;
        };
        let default = match path.as_slice() {
            [key] => defaults.get(key),
            [section, key] => defaults
                .get(section)
                .and_then(toml::Value::as_table)
                .and_then(|s| s.get(key)),
            _ => None,
        };
        let value = parse_like(default, &raw)
            .with_context(|| format!("{var}: {raw:?} has the wrong type"))?;
        let mut target = &mut *table;
        for key in &path[..path.len() - 1] {
            target = target
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .with_context(|| format!("{key} must be a table"))?;
        }
        target.insert(path[path.len() - 1].clone(), value);
    }
    Ok(unmatched)
}

fn parse_like(default: Option<&toml::Value>, raw: &str) -> anyhow::Result<toml::Value> {
    Ok(match default {
        Some(toml::Value::Integer(_)) => toml::Value::Integer(raw.trim().parse()?),
        Some(toml::Value::Boolean(_)) => toml::Value::Boolean(raw.trim().parse()?),
        Some(toml::Value::Array(_)) => toml::Value::Array(
            raw.split(',')
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(raw.to_string()),
    })
}

#[cfg(test)]
mod tests;
