//! LDAP and Active Directory authentication by bind: [`LdapDirectory`]
//! implements the [`Directory`] port.
//!
//! A login opens a connection (plain, StartTLS or LDAPS), finds the user's
//! entry, binds as that entry with the password, reads the user's groups
//! (the entry's `memberOf` values and, when a group base is configured, the
//! groups whose members name the entry), maps them to Tollgate groups and
//! unbinds. The entry is found either by a DN template (direct bind) or by
//! a search, anonymous or as a service account (search then bind).
//!
//! Every step is bounded by `timeout_ms`: a dead or silent directory gives
//! `Unavailable`, never a hang. Successful logins are kept in memory for
//! `cache_ttl_secs`, keyed by the user name and an HMAC-SHA256 of the
//! password under a key drawn at random when the directory is created, so
//! neither the cache nor the logs ever hold a password.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use ldap3::asn1::StructureTag;
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, Scope, SearchOptions, dn_escape,
    ldap_escape,
};
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::task::JoinHandle;
use tollgate_ports::outbound::{Directory, DirectoryError, DirectoryUser};

/// The `{username}` placeholder of the DN template and the filters.
const USERNAME: &str = "{username}";
/// The `{dn}` placeholder of the group filter: the user entry's DN.
const DN: &str = "{dn}";

/// LDAP result code 0, success.
const RC_SUCCESS: u32 = 0;
/// LDAP result code 4: more entries than the size limit allows.
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;
/// LDAP result code 49: invalid credentials.
const RC_INVALID_CREDENTIALS: u32 = 49;

/// How to reach and use an LDAP or Active Directory server.
///
/// Exactly one of `bind_dn_template` (direct bind) and `search_base`
/// (search then bind) is set. For Active Directory, search with
/// `search_filter = "(sAMAccountName={username})"` and a service account;
/// groups then come from the users' `memberOf` values.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// The server: `ldap://host[:port]` or `ldaps://host[:port]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything else
    /// is sent (not allowed with `ldaps://`).
    pub starttls: bool,
    /// A PEM file with the CA certificate(s) that the server's certificate
    /// must chain to, for LDAPS and StartTLS. When unset, the system's
    /// trusted roots are used.
    pub ca_file: Option<PathBuf>,
    /// Direct bind: the user's DN, with `{username}` replaced by the login
    /// name (escaped as an RDN value, RFC 4514), e.g.
    /// `uid={username},ou=users,dc=example,dc=org`. A refused bind cannot
    /// tell an unknown user from a wrong password, so in this mode both are
    /// reported as a wrong password.
    pub bind_dn_template: Option<String>,
    /// Search then bind: where to look for the user's entry (whole subtree).
    pub search_base: Option<String>,
    /// The filter that finds the user's entry, with `{username}` replaced
    /// by the login name (escaped for filters, RFC 4515). It must match
    /// exactly one entry. Default `(uid={username})`; for Active Directory
    /// `(sAMAccountName={username})`.
    pub search_filter: String,
    /// The service account that searches (and reads groups); anonymous
    /// when unset.
    pub search_bind_dn: Option<String>,
    /// The service account's password.
    pub search_bind_password: Option<String>,
    /// Where groups are looked up (whole subtree); when unset, only the
    /// user entry's `memberOf` values count.
    pub group_base: Option<String>,
    /// The filter that finds the user's groups under `group_base`, with
    /// `{dn}` replaced by the user's DN and `{username}` by the login name
    /// (both escaped for filters). Default
    /// `(|(member={dn})(uniqueMember={dn}))`.
    pub group_filter: String,
    /// Directory group → Tollgate group. A key is a group's full DN or its
    /// CN, compared case-insensitively (and, for DNs, ignoring spaces
    /// around the separators). Directory groups without an entry
    /// here are left out.
    pub group_map: BTreeMap<String, String>,
    /// The bound on connecting and on every operation, in milliseconds.
    /// Default 5000.
    pub timeout_ms: u64,
    /// How long a successful login is remembered, in seconds; 0 turns the
    /// cache off. Default 60. Failed logins are never remembered.
    pub cache_ttl_secs: u64,
    /// Policies attached to users provisioned on their first login (read
    /// by the application, not by this adapter).
    pub policies: Vec<String>,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn_template: None,
            search_base: None,
            search_filter: "(uid={username})".to_string(),
            search_bind_dn: None,
            search_bind_password: None,
            group_base: None,
            group_filter: "(|(member={dn})(uniqueMember={dn}))".to_string(),
            group_map: BTreeMap::new(),
            timeout_ms: 5000,
            cache_ttl_secs: 60,
            policies: Vec::new(),
        }
    }
}

impl fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapConfig")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("ca_file", &self.ca_file)
            .field("bind_dn_template", &self.bind_dn_template)
            .field("search_base", &self.search_base)
            .field("search_filter", &self.search_filter)
            .field("search_bind_dn", &self.search_bind_dn)
            .field(
                "search_bind_password",
                &self.search_bind_password.as_ref().map(|_| "<redacted>"),
            )
            .field("group_base", &self.group_base)
            .field("group_filter", &self.group_filter)
            .field("group_map", &self.group_map)
            .field("timeout_ms", &self.timeout_ms)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("policies", &self.policies)
            .finish()
    }
}

/// Why an [`LdapConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LdapConfigError {
    /// A setting is missing, contradicts another or has the wrong form.
    #[error("ldap: {0}")]
    Invalid(String),
    /// The CA file cannot be read or holds no certificate.
    #[error("ldap: CA file {path}: {reason}")]
    CaFile {
        /// The configured path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// How the user's entry is found.
enum Locate {
    /// Bind to the DN template with the escaped login name.
    Template(String),
    /// Search under `base` with `filter`, as `account` (or anonymously).
    Search {
        base: String,
        filter: String,
        account: Option<(String, String)>,
    },
}

/// An LDAP or Active Directory server that authenticates by bind.
pub struct LdapDirectory {
    url: String,
    starttls: bool,
    tls: Option<Arc<ClientConfig>>,
    locate: Locate,
    group_base: Option<String>,
    group_filter: String,
    /// Lower-cased directory group DN or CN → Tollgate group.
    group_map: HashMap<String, String>,
    timeout: Duration,
    cache: Option<LoginCache>,
}

impl fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .finish_non_exhaustive()
    }
}

fn invalid(text: impl Into<String>) -> LdapConfigError {
    LdapConfigError::Invalid(text.into())
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

impl LdapDirectory {
    /// Checks `config` and prepares the TLS settings; contacts no server.
    pub fn new(config: LdapConfig) -> Result<Self, LdapConfigError> {
        let url = config.url.trim().to_string();
        let lower = url.to_ascii_lowercase();
        let tls_scheme = if lower.starts_with("ldaps://") {
            true
        } else if lower.starts_with("ldap://") {
            false
        } else {
            return Err(invalid(format!(
                "url must start with ldap:// or ldaps://, got {url:?}"
            )));
        };
        let host = &url[url.find("://").map_or(0, |at| at + 3)..];
        if host.is_empty() || host.starts_with('/') || host.starts_with(':') {
            return Err(invalid(format!("url {url:?} names no host")));
        }
        if tls_scheme && config.starttls {
            return Err(invalid(
                "starttls cannot be combined with an ldaps:// url (it is TLS already)",
            ));
        }
        if config.timeout_ms == 0 {
            return Err(invalid("timeout_ms must be more than 0"));
        }

        let locate = match (
            non_empty(&config.bind_dn_template),
            non_empty(&config.search_base),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set either bind_dn_template (direct bind) or search_base (search then bind), not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    "set bind_dn_template (direct bind) or search_base (search then bind)",
                ));
            }
            (Some(template), None) => {
                if !template.contains(USERNAME) {
                    return Err(invalid("bind_dn_template must contain {username}"));
                }
                if config.search_bind_dn.is_some() || config.search_bind_password.is_some() {
                    return Err(invalid(
                        "search_bind_dn and search_bind_password apply to search_base, not to bind_dn_template",
                    ));
                }
                Locate::Template(template.to_string())
            }
            (None, Some(base)) => {
                let filter = config.search_filter.trim();
                if !filter.contains(USERNAME) {
                    return Err(invalid("search_filter must contain {username}"));
                }
                check_filter("search_filter", filter)?;
                let account = match (
                    non_empty(&config.search_bind_dn),
                    config.search_bind_password.as_deref(),
                ) {
                    (None, None) => None,
                    (Some(dn), Some(password)) if !password.is_empty() => {
                        Some((dn.to_string(), password.to_string()))
                    }
                    _ => {
                        return Err(invalid(
                            "search_bind_dn and search_bind_password must be set together (both empty for an anonymous search)",
                        ));
                    }
                };
                Locate::Search {
                    base: base.to_string(),
                    filter: filter.to_string(),
                    account,
                }
            }
        };

        let group_base = non_empty(&config.group_base).map(str::to_string);
        let group_filter = config.group_filter.trim().to_string();
        if group_base.is_some() {
            if !group_filter.contains(DN) && !group_filter.contains(USERNAME) {
                return Err(invalid("group_filter must contain {dn} or {username}"));
            }
            check_filter("group_filter", &group_filter)?;
        }
        let mut group_map = HashMap::new();
        for (directory_group, tollgate_group) in &config.group_map {
            let key = normalize_dn(directory_group);
            if key.is_empty() || tollgate_group.trim().is_empty() {
                return Err(invalid("group_map keys and values must not be empty"));
            }
            if group_map
                .insert(key, tollgate_group.trim().to_string())
                .is_some()
            {
                return Err(invalid(format!(
                    "group_map names {directory_group:?} twice (keys are case-insensitive)"
                )));
            }
        }

        let tls = if tls_scheme || config.starttls {
            Some(tls_config(config.ca_file.as_ref())?)
        } else {
            if let Some(path) = &config.ca_file {
                return Err(invalid(format!(
                    "ca_file {} is set but the connection is plain (use ldaps:// or starttls)",
                    path.display()
                )));
            }
            None
        };

        let cache = (config.cache_ttl_secs > 0)
            .then(|| LoginCache::new(Duration::from_secs(config.cache_ttl_secs)));
        Ok(LdapDirectory {
            url,
            starttls: config.starttls,
            tls,
            locate,
            group_base,
            group_filter,
            group_map,
            timeout: Duration::from_millis(config.timeout_ms),
            cache,
        })
    }

    /// The whole exchange with the directory for one login.
    async fn login(&self, username: &str, password: &str) -> Result<DirectoryUser, DirectoryError> {
        let mut connection = self.connect().await?;
        let res = self
            .login_on(&mut connection.ldap, username, password)
            .await;
        // A polite goodbye; the connection is dropped either way.
        let _ = tokio::time::timeout(self.timeout, connection.ldap.unbind()).await;
        res
    }

    async fn login_on(
        &self,
        ldap: &mut Ldap,
        username: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError> {
        let (dn, member_of) = match &self.locate {
            Locate::Template(template) => {
                let dn = template.replace(USERNAME, &dn_escape(username));
                self.bind_user(ldap, &dn, password).await?;
                // The user's own entry, for its memberOf values. An entry
                // the user may not read simply contributes none.
                let res = self
                    .bounded(
                        "reading the user entry",
                        ldap.search(&dn, Scope::Base, "(objectClass=*)", vec!["memberOf"]),
                    )
                    .await?;
                let member_of = if res.1.rc == RC_SUCCESS {
                    res.0
                        .into_iter()
                        .filter_map(parse_entry)
                        .flat_map(|entry| entry.values("memberOf"))
                        .collect()
                } else {
                    tracing::debug!(dn = %dn, rc = res.1.rc, "ldap: the user entry cannot be read");
                    Vec::new()
                };
                (dn, member_of)
            }
            Locate::Search {
                base,
                filter,
                account,
            } => {
                if let Some((account_dn, account_password)) = account {
                    self.bind_service(ldap, account_dn, account_password)
                        .await?;
                }
                let filter = filter.replace(USERNAME, &ldap_escape(username));
                // Two are enough to tell "exactly one" from "several".
                let res = self
                    .bounded(
                        "searching for the user",
                        ldap.with_search_options(SearchOptions::new().sizelimit(2))
                            .search(base, Scope::Subtree, &filter, vec!["memberOf"]),
                    )
                    .await?;
                if res.1.rc != RC_SUCCESS && res.1.rc != RC_SIZE_LIMIT_EXCEEDED {
                    return Err(unavailable("searching for the user", &res.1));
                }
                let mut entries: Vec<Entry> = res.0.into_iter().filter_map(parse_entry).collect();
                if entries.len() != 1 || res.1.rc == RC_SIZE_LIMIT_EXCEEDED {
                    tracing::debug!(
                        user = username,
                        found = entries.len(),
                        "ldap: the user search does not find exactly one entry"
                    );
                    return Err(DirectoryError::UnknownUser);
                }
                let entry = entries.remove(0);
                let member_of = entry.values("memberOf");
                self.bind_user(ldap, &entry.dn, password).await?;
                (entry.dn, member_of)
            }
        };

        let mut mapped: BTreeSet<String> = member_of
            .iter()
            .filter_map(|group| self.map_group(group))
            .collect();
        if let Some(group_base) = &self.group_base {
            // Groups are read as the service account when there is one (it
            // may see more than the user); else as the user just bound.
            if let Locate::Search {
                account: Some((account_dn, account_password)),
                ..
            } = &self.locate
            {
                self.bind_service(ldap, account_dn, account_password)
                    .await?;
            }
            let filter = fill(
                &self.group_filter,
                &[
                    (DN, &ldap_escape(dn.as_str())),
                    (USERNAME, &ldap_escape(username)),
                ],
            );
            let res = self
                .bounded(
                    "searching for groups",
                    ldap.search(group_base, Scope::Subtree, &filter, vec!["cn"]),
                )
                .await?;
            if res.1.rc != RC_SUCCESS {
                return Err(unavailable("searching for groups", &res.1));
            }
            for entry in res.0.into_iter().filter_map(parse_entry) {
                let group = self.map_group(&entry.dn).or_else(|| {
                    entry
                        .values("cn")
                        .iter()
                        .find_map(|cn| self.group_map.get(&normalize_dn(cn)).cloned())
                });
                mapped.extend(group);
            }
        }
        Ok(DirectoryUser {
            dn,
            groups: mapped.into_iter().collect(),
        })
    }

    /// The Tollgate group of a directory group given by its DN: the DN
    /// itself or its CN, case-insensitively.
    fn map_group(&self, group_dn: &str) -> Option<String> {
        let dn = normalize_dn(group_dn);
        if let Some(group) = self.group_map.get(&dn) {
            return Some(group.clone());
        }
        let cn = common_name(&dn)?;
        self.group_map.get(&cn).cloned()
    }

    async fn bind_user(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &str,
    ) -> Result<(), DirectoryError> {
        let res = self
            .bounded("binding as the user", ldap.simple_bind(dn, password))
            .await?;
        match res.rc {
            RC_SUCCESS => Ok(()),
            RC_INVALID_CREDENTIALS => {
                tracing::debug!(dn = %dn, "ldap: the user bind was refused");
                Err(DirectoryError::WrongPassword)
            }
            _ => Err(unavailable("binding as the user", &res)),
        }
    }

    async fn bind_service(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &str,
    ) -> Result<(), DirectoryError> {
        let res = self
            .bounded(
                "binding as the service account",
                ldap.simple_bind(dn, password),
            )
            .await?;
        if res.rc == RC_SUCCESS {
            Ok(())
        } else {
            Err(unavailable("binding as the service account", &res))
        }
    }

    async fn connect(&self) -> Result<Connection, DirectoryError> {
        let mut settings = LdapConnSettings::new().set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = self
            .bounded(
                "connecting",
                LdapConnAsync::with_settings(settings, &self.url),
            )
            .await?;
        let driver = tokio::spawn(async move {
            if let Err(err) = conn.drive().await {
                tracing::debug!(error = %err, "ldap: connection ended with an error");
            }
        });
        Ok(Connection { ldap, driver })
    }

    /// `operation` within the timeout, its errors as `Unavailable`.
    async fn bounded<T>(
        &self,
        what: &str,
        operation: impl Future<Output = Result<T, LdapError>>,
    ) -> Result<T, DirectoryError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(DirectoryError::Unavailable(format!(
                "{what} at {}: {err}",
                self.url
            ))),
            Err(_) => Err(DirectoryError::Unavailable(format!(
                "{what} at {}: no answer within {} ms",
                self.url,
                self.timeout.as_millis()
            ))),
        }
    }
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn authenticate(
        &self,
        username: &str,
        password: &str,
    ) -> Result<DirectoryUser, DirectoryError> {
        // An empty password would make a simple bind "unauthenticated",
        // which many servers accept without checking anything.
        if password.is_empty() {
            tracing::debug!(user = username, "ldap: empty password refused");
            return Err(DirectoryError::WrongPassword);
        }
        if username.is_empty() {
            return Err(DirectoryError::UnknownUser);
        }
        if let Some(cache) = &self.cache
            && let Some(user) = cache.get(username, password)
        {
            tracing::debug!(user = username, "ldap: login answered from the cache");
            return Ok(user);
        }
        let res = self.login(username, password).await;
        match &res {
            Ok(user) => {
                tracing::info!(user = username, dn = %user.dn, groups = ?user.groups, "ldap: login accepted");
                if let Some(cache) = &self.cache {
                    cache.put(username, password, user.clone());
                }
            }
            Err(DirectoryError::Unavailable(reason)) => {
                tracing::info!(user = username, reason = %reason, "ldap: directory unavailable");
            }
            Err(err) => {
                tracing::info!(user = username, error = %err, "ldap: login refused");
                // A user the directory no longer has loses a cached login
                // at once. A wrong password says nothing about the cached
                // one, and forgetting it would let anyone evict it.
                if *err == DirectoryError::UnknownUser
                    && let Some(cache) = &self.cache
                {
                    cache.forget(username);
                }
            }
        }
        res
    }
}

/// An open connection and the task that drives it; dropping it closes
/// the connection.
struct Connection {
    ldap: Ldap,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn unavailable(what: &str, res: &ldap3::LdapResult) -> DirectoryError {
    let mut text = format!("{what}: result code {}", res.rc);
    if !res.text.is_empty() {
        text.push_str(&format!(" ({})", res.text));
    }
    DirectoryError::Unavailable(text)
}

/// `template` with each placeholder replaced by its value, in one pass, so
/// that a value is never searched for placeholders itself.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (placeholder, value) in values {
            if let Some(after) = rest.strip_prefix(placeholder) {
                out.push_str(value);
                rest = after;
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        out.extend(chars.next());
        rest = chars.as_str();
    }
    out
}

/// A rough check that a configured filter is one parenthesised filter;
/// the server has the last word.
fn check_filter(name: &str, filter: &str) -> Result<(), LdapConfigError> {
    let probe = filter.replace(USERNAME, "x").replace(DN, "x");
    if ldap3::parse_filter(&probe).is_err() {
        return Err(invalid(format!(
            "{name} {filter:?} is not a valid LDAP filter"
        )));
    }
    Ok(())
}

/// The TLS client settings: the CA file's certificates as the only roots,
/// or the system's roots.
fn tls_config(ca_file: Option<&PathBuf>) -> Result<Arc<ClientConfig>, LdapConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let ca_error = |reason: String| LdapConfigError::CaFile {
                path: path.clone(),
                reason,
            };
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|err| ca_error(err.to_string()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| ca_error(err.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no PEM certificate in it".to_string()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|err| ca_error(format!("unusable certificate: {err}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for err in &found.errors {
                tracing::debug!(error = %err, "ldap: a system CA certificate could not be loaded");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(invalid(
                    "no ca_file and no system CA certificates found for TLS",
                ));
            }
        }
    }
    // The provider installed by the binary, else the one this crate builds
    // with, so that no process-wide default is needed.
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(format!("TLS settings: {err}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A search result entry: its DN and attributes (names as the server
/// sent them, values as text).
struct Entry {
    dn: String,
    attrs: Vec<(String, Vec<String>)>,
}

impl Entry {
    /// The values of attribute `name`, compared case-insensitively.
    fn values(&self, name: &str) -> Vec<String> {
        self.attrs
            .iter()
            .filter(|(attr, _)| attr.eq_ignore_ascii_case(name))
            .flat_map(|(_, values)| values.iter().cloned())
            .collect()
    }
}

/// Decodes a SearchResultEntry (RFC 4511 §4.5.2) without panicking on a
/// malformed answer, unlike `SearchEntry::construct`; such an entry is
/// skipped.
fn parse_entry(entry: ResultEntry) -> Option<Entry> {
    let mut parts = entry.0.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attrs = Vec::new();
    for attribute in parts.next()?.expect_constructed()? {
        let mut attribute = attribute.expect_constructed()?.into_iter();
        let name = String::from_utf8(attribute.next()?.expect_primitive()?).ok()?;
        let values = attribute
            .next()?
            .expect_constructed()?
            .into_iter()
            .filter_map(StructureTag::expect_primitive)
            .filter_map(|value| String::from_utf8(value).ok())
            .collect();
        attrs.push((name, values));
    }
    Some(Entry { dn, attrs })
}

/// A DN (or a plain group name) for comparison: lower case, without the
/// spaces around the `,`, `=` and `+` between and inside RDNs, which LDAP
/// ignores; escaped characters are kept.
fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    // Characters up to here are escaped or separators: never trimmed.
    let mut kept = 0;
    let mut after_separator = false;
    let mut chars = dn.trim().chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(escaped) = chars.next() {
                    out.extend(escaped.to_lowercase());
                }
                kept = out.len();
                after_separator = false;
            }
            ',' | '=' | '+' => {
                while out.len() > kept && out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
                kept = out.len();
                after_separator = true;
            }
            ' ' if after_separator => {}
            _ => {
                out.extend(c.to_lowercase());
                after_separator = false;
            }
        }
    }
    out
}

/// The value of a DN's first RDN when its attribute is `cn`, with RFC 4514
/// escapes undone; `None` for another attribute or a multi-valued RDN.
fn common_name(dn: &str) -> Option<String> {
    let (attribute, rest) = dn.split_once('=')?;
    if !attribute.trim().eq_ignore_ascii_case("cn") {
        return None;
    }
    let mut value = Vec::new();
    let mut bytes = rest.trim_start().bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b',' => break,
            b'+' => return None,
            b'\\' => {
                let first = bytes.next()?;
                let hex = |digit: u8| (digit as char).to_digit(16);
                match hex(first) {
                    Some(high) => {
                        let low = hex(bytes.next()?)?;
                        value.push((high * 16 + low) as u8);
                    }
                    None => value.push(first),
                }
            }
            _ => value.push(byte),
        }
    }
    let value = String::from_utf8(value).ok()?;
    Some(value.trim_end().to_lowercase())
}

type HmacSha256 = Hmac<Sha256>;

/// Successful logins, each with an HMAC of its password under a random
/// per-process key, until they expire.
struct LoginCache {
    ttl: Duration,
    key: [u8; 32],
    entries: Mutex<HashMap<String, CachedLogin>>,
}

struct CachedLogin {
    tag: [u8; 32],
    user: DirectoryUser,
    expires: Instant,
}

impl LoginCache {
    fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        LoginCache {
            ttl,
            key,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self, username: &str, password: &str) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts a key of any length");
        // The name's length first, so that no other name and password
        // produce the same input.
        mac.update(&(username.len() as u64).to_be_bytes());
        mac.update(username.as_bytes());
        mac.update(password.as_bytes());
        mac
    }

    fn get(&self, username: &str, password: &str) -> Option<DirectoryUser> {
        let entries = self.entries.lock().unwrap_or_else(|err| err.into_inner());
        let cached = entries.get(username)?;
        if cached.expires <= Instant::now() {
            return None;
        }
        // verify_slice compares in constant time.
        self.mac(username, password)
            .verify_slice(&cached.tag)
            .ok()
            .map(|()| cached.user.clone())
    }

    fn put(&self, username: &str, password: &str, user: DirectoryUser) {
        let tag: [u8; 32] = self.mac(username, password).finalize().into_bytes().into();
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|err| err.into_inner());
        entries.retain(|_, cached| cached.expires > now);
        entries.insert(
            username.to_string(),
            CachedLogin {
                tag,
                user,
                expires: now + self.ttl,
            },
        );
    }

    fn forget(&self, username: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|err| err.into_inner())
            .remove(username);
    }
}
