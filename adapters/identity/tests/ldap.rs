//! The LDAP adapter against a real OpenLDAP slapd: search then bind and
//! direct bind, groups from a group search and from memberOf, refused and
//! unknown users, filter and DN injection, LDAPS and StartTLS with a
//! private CA, an untrusted certificate, a directory that is down or
//! silent, and the login cache.
//!
//! The directory is the one `scripts/slapd.sh start DIR` builds, named by
//! `TOLLGATE_TEST_LDAP_URL`, `TOLLGATE_TEST_LDAPS_URL`,
//! `TOLLGATE_TEST_LDAP_CA` and `TOLLGATE_TEST_LDAP_BASE`. When they are
//! unset, each test that needs the directory starts its own slapd with that
//! script in a temporary directory and stops it when done; when that is not
//! possible the test is skipped with a note, unless
//! `TOLLGATE_TEST_REQUIRE_SERVICES=1`, which makes it a failure. The tests
//! of an unreachable or silent directory and of the configuration need no
//! service.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tollgate_identity::ldap::{LdapConfig, LdapConfigError, LdapDirectory};
use tollgate_ports::outbound::{Directory, DirectoryError, DirectoryUser};

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

fn required() -> bool {
    env("TOLLGATE_TEST_REQUIRE_SERVICES").as_deref() == Some("1")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/slapd.sh")
}

/// The directory the tests use.
struct Slapd {
    url: String,
    ldaps_url: String,
    ca: PathBuf,
    base: String,
    _own: Option<OwnSlapd>,
}

/// A slapd this test started; stopped on drop.
struct OwnSlapd {
    dir: PathBuf,
    _temp: TempDir,
}

impl Drop for OwnSlapd {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Only one `slapd.sh start` at a time: the first may install packages.
static STARTING: Mutex<()> = Mutex::new(());

impl Slapd {
    /// The configured directory, else one of our own, else `None` (skipped).
    fn get() -> Option<Slapd> {
        if let Some(url) = env("TOLLGATE_TEST_LDAP_URL") {
            let var = |name: &str| {
                env(name).unwrap_or_else(|| {
                    panic!("TOLLGATE_TEST_LDAP_URL is set, so {name} must be too")
                })
            };
            return Some(Slapd {
                url,
                ldaps_url: var("TOLLGATE_TEST_LDAPS_URL"),
                ca: PathBuf::from(var("TOLLGATE_TEST_LDAP_CA")),
                base: var("TOLLGATE_TEST_LDAP_BASE"),
                _own: None,
            });
        }
        match Slapd::start() {
            Ok(slapd) => Some(slapd),
            Err(reason) if required() => {
                panic!("slapd is required but could not be started: {reason}")
            }
            Err(reason) => {
                eprintln!(
                    "skipped: no LDAP directory ({reason}); set TOLLGATE_TEST_LDAP_URL and the others from scripts/slapd.sh"
                );
                None
            }
        }
    }

    fn start() -> Result<Slapd, String> {
        let temp = tempfile::tempdir().map_err(|err| format!("a temporary directory: {err}"))?;
        let own = OwnSlapd {
            dir: temp.path().join("slapd"),
            _temp: temp,
        };
        let output = {
            let _one_at_a_time = STARTING.lock().unwrap_or_else(|err| err.into_inner());
            Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(&own.dir)
                .output()
                .map_err(|err| format!("running scripts/slapd.sh: {err}"))?
        };
        if !output.status.success() {
            return Err(format!(
                "scripts/slapd.sh start failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let vars: BTreeMap<&str, &str> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .collect();
        let var = |name: &str| {
            vars.get(name)
                .map(|value| value.to_string())
                .ok_or_else(|| format!("scripts/slapd.sh printed no {name}: {stdout}"))
        };
        Ok(Slapd {
            url: var("TOLLGATE_TEST_LDAP_URL")?,
            ldaps_url: var("TOLLGATE_TEST_LDAPS_URL")?,
            ca: PathBuf::from(var("TOLLGATE_TEST_LDAP_CA")?),
            base: var("TOLLGATE_TEST_LDAP_BASE")?,
            _own: Some(own),
        })
    }

    /// Search then bind (anonymous search), groups under ou=groups mapped
    /// by CN and by DN, no cache. The directory keeps memberOf for
    /// sftpusers and auditors; operators shows only in a group search.
    fn search_config(&self) -> LdapConfig {
        LdapConfig {
            url: self.url.clone(),
            search_base: Some(format!("ou=users,{}", self.base)),
            group_base: Some(format!("ou=groups,{}", self.base)),
            group_map: BTreeMap::from([
                ("sftpusers".to_string(), "partners".to_string()),
                (
                    format!("cn=auditors,ou=groups,{}", self.base),
                    "auditors".to_string(),
                ),
                ("Operators".to_string(), "operators".to_string()),
            ]),
            cache_ttl_secs: 0,
            ..LdapConfig::default()
        }
    }

    fn dn(&self, uid: &str) -> String {
        format!("uid={uid},ou=users,{}", self.base)
    }
}

fn directory(config: LdapConfig) -> LdapDirectory {
    LdapDirectory::new(config).expect("a valid configuration")
}

fn user(dn: String, groups: &[&str]) -> DirectoryUser {
    DirectoryUser {
        dn,
        groups: groups.iter().map(|group| group.to_string()).collect(),
    }
}

fn is_unavailable<T: std::fmt::Debug>(res: &Result<T, DirectoryError>) -> bool {
    matches!(res, Err(DirectoryError::Unavailable(_)))
}

/// A loopback address nobody listens on (just released by the system).
fn closed_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn search_then_bind_returns_the_dn_and_the_mapped_groups() {
    let Some(slapd) = Slapd::get() else { return };
    let ldap = directory(slapd.search_config());
    assert_eq!(
        ldap.authenticate("alice", "alicepass").await,
        Ok(user(slapd.dn("alice"), &["auditors", "partners"]))
    );
    assert_eq!(
        ldap.authenticate("bob", "bobpass").await,
        Ok(user(slapd.dn("bob"), &["operators", "partners"]))
    );
    assert_eq!(
        ldap.authenticate("carol", "carolpass").await,
        Ok(user(slapd.dn("carol"), &[]))
    );
}

#[tokio::test]
async fn without_a_group_base_the_groups_come_from_member_of() {
    let Some(slapd) = Slapd::get() else { return };
    // A DN key matches whatever its case and the spaces after commas.
    let upper_base = slapd.base.to_uppercase().replace(',', ", ");
    let group_map = BTreeMap::from([
        ("SFTPUsers".to_string(), "partners".to_string()),
        (
            format!("CN=Auditors, OU=Groups, {upper_base}"),
            "auditors".to_string(),
        ),
        ("operators".to_string(), "operators".to_string()),
    ]);
    let search = LdapConfig {
        group_base: None,
        group_map,
        ..slapd.search_config()
    };
    let direct = LdapConfig {
        search_base: None,
        bind_dn_template: Some(format!("uid={{username}},ou=users,{}", slapd.base)),
        ..search.clone()
    };
    for config in [search, direct] {
        let ldap = directory(config);
        assert_eq!(
            ldap.authenticate("alice", "alicepass").await,
            Ok(user(slapd.dn("alice"), &["auditors", "partners"]))
        );
        // operators is a groupOfUniqueNames, which no memberOf names.
        assert_eq!(
            ldap.authenticate("bob", "bobpass").await,
            Ok(user(slapd.dn("bob"), &["partners"]))
        );
        assert_eq!(
            ldap.authenticate("carol", "carolpass").await,
            Ok(user(slapd.dn("carol"), &[]))
        );
    }
}

#[tokio::test]
async fn search_as_a_service_account_works_and_a_wrong_account_password_is_unavailable() {
    let Some(slapd) = Slapd::get() else { return };
    let admin = format!("cn=admin,{}", slapd.base);
    let ldap = directory(LdapConfig {
        search_bind_dn: Some(admin.clone()),
        search_bind_password: Some("adminpass".to_string()),
        ..slapd.search_config()
    });
    assert_eq!(
        ldap.authenticate("alice", "alicepass").await,
        Ok(user(slapd.dn("alice"), &["auditors", "partners"]))
    );
    assert_eq!(
        ldap.authenticate("alice", "wrong").await,
        Err(DirectoryError::WrongPassword)
    );

    let ldap = directory(LdapConfig {
        search_bind_dn: Some(admin),
        search_bind_password: Some("not-the-admin-password".to_string()),
        ..slapd.search_config()
    });
    let res = ldap.authenticate("alice", "alicepass").await;
    assert!(is_unavailable(&res), "{res:?}");
    let Err(DirectoryError::Unavailable(text)) = res else {
        unreachable!()
    };
    assert!(!text.contains("not-the-admin-password"), "{text}");
    assert!(!text.contains("alicepass"), "{text}");
}

#[tokio::test]
async fn direct_bind_with_a_dn_template_returns_the_dn_and_groups() {
    let Some(slapd) = Slapd::get() else { return };
    let ldap = directory(LdapConfig {
        search_base: None,
        bind_dn_template: Some(format!("uid={{username}},ou=users,{}", slapd.base)),
        ..slapd.search_config()
    });
    assert_eq!(
        ldap.authenticate("alice", "alicepass").await,
        Ok(user(slapd.dn("alice"), &["auditors", "partners"]))
    );
    assert_eq!(
        ldap.authenticate("bob", "bobpass").await,
        Ok(user(slapd.dn("bob"), &["operators", "partners"]))
    );
    assert_eq!(
        ldap.authenticate("carol", "carolpass").await,
        Ok(user(slapd.dn("carol"), &[]))
    );
    assert_eq!(
        ldap.authenticate("alice", "bobpass").await,
        Err(DirectoryError::WrongPassword)
    );
    // A bind cannot tell an unknown user from a wrong password.
    assert_eq!(
        ldap.authenticate("dave", "davepass").await,
        Err(DirectoryError::WrongPassword)
    );
    // Escaped as an RDN value, the comma makes a well-formed DN of no
    // entry; unescaped it would make a malformed DN (invalidDNSyntax).
    assert_eq!(
        ldap.authenticate("alice,", "alicepass").await,
        Err(DirectoryError::WrongPassword)
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_an_unknown_user_is_unknown() {
    let Some(slapd) = Slapd::get() else { return };
    let ldap = directory(slapd.search_config());
    assert_eq!(
        ldap.authenticate("alice", "bobpass").await,
        Err(DirectoryError::WrongPassword)
    );
    assert_eq!(
        ldap.authenticate("alice", "ALICEPASS").await,
        Err(DirectoryError::WrongPassword)
    );
    assert_eq!(
        ldap.authenticate("dave", "davepass").await,
        Err(DirectoryError::UnknownUser)
    );
}

#[tokio::test]
async fn filter_metacharacters_in_the_name_match_no_user() {
    let Some(slapd) = Slapd::get() else { return };
    let ldap = directory(slapd.search_config());
    // Unescaped, "ali*" would find alice alone and her password would do.
    for name in ["ali*", "*", "alice)(uid=*", "*)(uid=*))(|(uid=*", "alice\\"] {
        assert_eq!(
            ldap.authenticate(name, "alicepass").await,
            Err(DirectoryError::UnknownUser),
            "{name:?}"
        );
    }
}

#[tokio::test]
async fn an_empty_password_is_refused_without_asking_the_directory() {
    // Nobody listens there: asking would give Unavailable.
    let ldap = directory(LdapConfig {
        url: format!("ldap://{}", closed_address()),
        search_base: Some("dc=example,dc=org".to_string()),
        ..LdapConfig::default()
    });
    assert_eq!(
        ldap.authenticate("alice", "").await,
        Err(DirectoryError::WrongPassword)
    );
    assert!(is_unavailable(
        &ldap.authenticate("alice", "alicepass").await
    ));
}

#[tokio::test]
async fn ldaps_with_the_ca_file_works() {
    let Some(slapd) = Slapd::get() else { return };
    let ldap = directory(LdapConfig {
        url: slapd.ldaps_url.clone(),
        ca_file: Some(slapd.ca.clone()),
        ..slapd.search_config()
    });
    assert_eq!(
        ldap.authenticate("alice", "alicepass").await,
        Ok(user(slapd.dn("alice"), &["auditors", "partners"]))
    );
    assert_eq!(
        ldap.authenticate("alice", "bobpass").await,
        Err(DirectoryError::WrongPassword)
    );
}

#[tokio::test]
async fn starttls_with_the_ca_file_works() {
    let Some(slapd) = Slapd::get() else { return };
    let ldap = directory(LdapConfig {
        starttls: true,
        ca_file: Some(slapd.ca.clone()),
        ..slapd.search_config()
    });
    assert_eq!(
        ldap.authenticate("bob", "bobpass").await,
        Ok(user(slapd.dn("bob"), &["operators", "partners"]))
    );
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_is_unavailable() {
    let Some(slapd) = Slapd::get() else { return };
    // The system's roots do not include the directory's private CA.
    for config in [
        LdapConfig {
            url: slapd.ldaps_url.clone(),
            ..slapd.search_config()
        },
        LdapConfig {
            starttls: true,
            ..slapd.search_config()
        },
    ] {
        let ldap = directory(config);
        let res = ldap.authenticate("alice", "alicepass").await;
        assert!(is_unavailable(&res), "{res:?}");
    }
}

#[tokio::test]
async fn a_directory_nobody_listens_on_is_unavailable() {
    for url in [
        format!("ldap://{}", closed_address()),
        format!("ldaps://{}", closed_address()),
    ] {
        let ldap = directory(LdapConfig {
            url,
            bind_dn_template: Some("uid={username},ou=users,dc=example,dc=org".to_string()),
            ..LdapConfig::default()
        });
        let res = ldap.authenticate("alice", "alicepass").await;
        assert!(is_unavailable(&res), "{res:?}");
    }
}

#[tokio::test]
async fn a_silent_directory_is_unavailable_after_the_timeout() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    for (url, starttls) in [
        (format!("ldap://{address}"), false),
        (format!("ldap://{address}"), true),
        (format!("ldaps://{address}"), false),
    ] {
        let ldap = directory(LdapConfig {
            url,
            starttls,
            search_base: Some("dc=example,dc=org".to_string()),
            timeout_ms: 500,
            ..LdapConfig::default()
        });
        let res = ldap.authenticate("alice", "alicepass").await;
        assert!(is_unavailable(&res), "starttls {starttls}: {res:?}");
    }
    silent.abort();
}

/// A TCP relay in front of the directory, to take it away mid-test.
struct Relay {
    address: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { address, task }
    }

    /// Closes the listener and every relayed connection.
    async fn cut(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[tokio::test]
async fn a_cached_login_outlives_the_directory_but_another_password_does_not() {
    let Some(slapd) = Slapd::get() else { return };
    let target: SocketAddr = slapd
        .url
        .strip_prefix("ldap://")
        .expect("an ldap:// url")
        .trim_end_matches('/')
        .parse()
        .expect("the directory url is ldap://IP:PORT");
    let relay = Relay::start(target).await;
    let via_relay = LdapConfig {
        url: format!("ldap://{}", relay.address),
        ..slapd.search_config()
    };
    let cached = directory(LdapConfig {
        cache_ttl_secs: 3600,
        ..via_relay.clone()
    });
    let uncached = directory(via_relay);
    let alice = user(slapd.dn("alice"), &["auditors", "partners"]);
    assert_eq!(
        cached.authenticate("alice", "alicepass").await,
        Ok(alice.clone())
    );
    assert_eq!(
        uncached.authenticate("alice", "alicepass").await,
        Ok(alice.clone())
    );
    // Another password for a cached user is the directory's to judge.
    assert_eq!(
        cached.authenticate("alice", "bobpass").await,
        Err(DirectoryError::WrongPassword)
    );

    relay.cut().await;
    assert_eq!(cached.authenticate("alice", "alicepass").await, Ok(alice));
    assert!(is_unavailable(
        &cached.authenticate("alice", "bobpass").await
    ));
    assert!(is_unavailable(
        &cached.authenticate("alice", "alicepas").await
    ));
    assert!(is_unavailable(&cached.authenticate("bob", "bobpass").await));
    assert!(is_unavailable(
        &uncached.authenticate("alice", "alicepass").await
    ));
}

#[test]
fn the_configuration_is_checked() {
    let search = LdapConfig {
        url: "ldap://127.0.0.1:389".to_string(),
        search_base: Some("dc=example,dc=org".to_string()),
        ..LdapConfig::default()
    };
    assert!(LdapDirectory::new(search.clone()).is_ok());
    assert!(
        LdapDirectory::new(LdapConfig {
            search_base: None,
            bind_dn_template: Some("uid={username},dc=example,dc=org".to_string()),
            ..search.clone()
        })
        .is_ok()
    );

    let refused = |config: LdapConfig, expected: &str| {
        let err = LdapDirectory::new(config).expect_err(expected);
        assert!(
            err.to_string().contains(expected),
            "{err} lacks {expected:?}"
        );
        err
    };
    refused(
        LdapConfig {
            bind_dn_template: Some("uid={username},dc=example,dc=org".to_string()),
            ..search.clone()
        },
        "not both",
    );
    refused(
        LdapConfig {
            search_base: None,
            ..search.clone()
        },
        "set bind_dn_template",
    );
    refused(
        LdapConfig {
            url: "http://127.0.0.1".to_string(),
            ..search.clone()
        },
        "ldap:// or ldaps://",
    );
    refused(
        LdapConfig {
            url: "ldap://".to_string(),
            ..search.clone()
        },
        "names no host",
    );
    refused(
        LdapConfig {
            url: "ldaps://127.0.0.1".to_string(),
            starttls: true,
            ..search.clone()
        },
        "starttls",
    );
    refused(
        LdapConfig {
            search_filter: "(uid=alice)".to_string(),
            ..search.clone()
        },
        "{username}",
    );
    refused(
        LdapConfig {
            search_filter: "(uid={username}".to_string(),
            ..search.clone()
        },
        "not a valid LDAP filter",
    );
    refused(
        LdapConfig {
            search_bind_dn: Some("cn=admin,dc=example,dc=org".to_string()),
            ..search.clone()
        },
        "set together",
    );
    refused(
        LdapConfig {
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..search.clone()
        },
        "plain",
    );
    let err = refused(
        LdapConfig {
            url: "ldaps://127.0.0.1".to_string(),
            ca_file: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..search.clone()
        },
        "/nonexistent/ca.pem",
    );
    assert!(matches!(err, LdapConfigError::CaFile { .. }), "{err:?}");
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate\n").unwrap();
    refused(
        LdapConfig {
            url: "ldaps://127.0.0.1".to_string(),
            ca_file: Some(not_pem.path().to_path_buf()),
            ..search.clone()
        },
        "no PEM certificate",
    );

    // The service password never shows in a debug rendering.
    let with_secret = LdapConfig {
        search_bind_dn: Some("cn=admin,dc=example,dc=org".to_string()),
        search_bind_password: Some("s3cret-service-password".to_string()),
        ..search
    };
    let rendered = format!("{with_secret:?}");
    assert!(!rendered.contains("s3cret-service-password"), "{rendered}");
}

#[test]
fn the_configuration_reads_with_defaults_and_refuses_unknown_fields() {
    let config: LdapConfig = serde_json::from_value(serde_json::json!({
        "url": "ldaps://dc1.example.org",
        "search_base": "dc=example,dc=org",
        "search_filter": "(sAMAccountName={username})",
        "group_map": {"CN=SFTP Users,OU=Groups,DC=example,DC=org": "partners"},
    }))
    .unwrap();
    assert_eq!(config.timeout_ms, 5000);
    assert_eq!(config.cache_ttl_secs, 60);
    assert_eq!(config.group_filter, "(|(member={dn})(uniqueMember={dn}))");
    assert!(!config.starttls);
    let typo = serde_json::from_value::<LdapConfig>(serde_json::json!({
        "url": "ldap://127.0.0.1",
        "search_base": "dc=example,dc=org",
        "serach_filter": "(uid={username})",
    }));
    assert!(typo.is_err());
}
