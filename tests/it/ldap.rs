//! Logins through a real OpenLDAP slapd (`scripts/slapd.sh`, or the one
//! `TOLLGATE_TEST_LDAP_URL` names): a first login provisions the user with
//! their mapped groups, over SFTP and FTP; a wrong password, an unknown
//! user and a directory that is down are refused and recorded; local users
//! never reach the directory.

use std::collections::BTreeMap;
use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::http::{Https, ROOT};
use crate::support::{PASSWORD, connect, login_password};

/// The directory: its URL and base, and the slapd this test started.
struct Directory {
    url: String,
    base: String,
    own: Option<tempfile::TempDir>,
}

impl Drop for Directory {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let _ = Command::new("bash")
                .args(["scripts/slapd.sh", "stop"])
                .arg(dir.path().join("slapd"))
                .status();
        }
    }
}

/// The configured directory, else a slapd of our own; `None` (skipped)
/// when there is none and services are not required.
fn directory() -> Option<Directory> {
    if let Ok(url) = std::env::var("TOLLGATE_TEST_LDAP_URL") {
        let base = std::env::var("TOLLGATE_TEST_LDAP_BASE").expect("TOLLGATE_TEST_LDAP_BASE");
        return Some(Directory {
            url,
            base,
            own: None,
        });
    }
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .args(["scripts/slapd.sh", "start"])
        .arg(temp.path().join("slapd"))
        .output()
        .expect("bash runs");
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            std::env::var("TOLLGATE_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "slapd is required: {reason}"
        );
        eprintln!("skipped: no slapd ({reason})");
        return None;
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let vars: BTreeMap<String, String> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Some(Directory {
        url: vars["TOLLGATE_TEST_LDAP_URL"].clone(),
        base: vars["TOLLGATE_TEST_LDAP_BASE"].clone(),
        own: Some(temp),
    })
}

async fn server(url: &str, base: &str) -> Https {
    let (url, base) = (url.to_string(), base.to_string());
    Https::start_configured("sqlite", move |config| {
        config.ldap.url = url;
        config.ldap.search_base = Some(format!("ou=users,{base}"));
        config.ldap.group_base = Some(format!("ou=groups,{base}"));
        config.ldap.group_map = BTreeMap::from([
            ("sftpusers".to_string(), "partners".to_string()),
            (
                format!("cn=auditors,ou=groups,{base}"),
                "auditors".to_string(),
            ),
        ]);
        config.ldap.policies = vec!["all".to_string()];
        config.ldap.timeout_ms = 1000;
    })
    .await
}

async fn last_refusal(api: &Https, user: &str) -> String {
    let failed = api.server.wait_for_event(user, "LoginFailed").await;
    failed.last().expect("a failure").payload.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_users_are_provisioned_on_their_first_login() {
    let Some(directory) = directory() else {
        return;
    };
    let api = server(&directory.url, &directory.base).await;
    let root = api.bearer(ROOT, PASSWORD).await;
    // The policy the directory's users get, and a local user.
    let lena = api.server.add_full_user("lena").await;
    assert!(lena.exists());

    // alice: SFTP provisions her, with her mapped groups, and she works.
    let (_conn, sftp) = crate::support::sftp_as(api.server.addr, "alice", "alicepass").await;
    let mut file = sftp.create("/hello.txt").await.unwrap();
    file.write_all(b"from the directory").await.unwrap();
    file.shutdown().await.unwrap();
    let provisioned = api.server.wait_for_event("alice", "UserProvisioned").await;
    assert_eq!(provisioned.len(), 1);
    let (status, _, body) = api
        .call(Method::GET, "/api/v1/users/alice", &root, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["directory_dn"],
        format!("uid=alice,ou=users,{}", directory.base)
    );
    assert_eq!(body["groups"], json!(["auditors", "partners"]));
    assert_eq!(body["policies"], json!(["all"]));
    assert_eq!(
        body["has_password"], false,
        "the password stays in the directory"
    );
    let home = std::path::PathBuf::from(body["home"].as_str().unwrap());
    assert_eq!(
        std::fs::read(home.join("hello.txt")).unwrap(),
        b"from the directory"
    );

    // A second login is no second provisioning.
    let mut conn = connect(api.server.addr).await;
    assert!(login_password(&mut conn, "alice", "alicepass").await);
    assert_eq!(
        api.server.events_of("alice", "UserProvisioned").await.len(),
        1
    );

    // bob over FTP; his unmapped group is left out.
    let ftp_addr = api.server.ftp_addr;
    let logged_in = tokio::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(ftp_addr).unwrap();
        let ok = ftp.login("bob", "bobpass").is_ok();
        let _ = ftp.quit();
        ok
    })
    .await
    .unwrap();
    assert!(logged_in);
    let (_, _, body) = api
        .call(Method::GET, "/api/v1/users/bob", &root, None)
        .await;
    assert_eq!(body["groups"], json!(["partners"]));

    // Refusals: a wrong password, an unknown user, in the directory's terms.
    let mut conn = connect(api.server.addr).await;
    assert!(!login_password(&mut conn, "alice", "wrong").await);
    assert!(last_refusal(&api, "alice").await.contains("wrong password"));
    assert!(!login_password(&mut conn, "nobody", "whatever").await);
    assert!(last_refusal(&api, "nobody").await.contains("unknown user"));
    assert!(
        api.server
            .events_of("nobody", "UserProvisioned")
            .await
            .is_empty()
    );

    // A local user keeps their own password; the directory's is not theirs.
    let mut conn = connect(api.server.addr).await;
    assert!(login_password(&mut conn, "lena", PASSWORD).await);
    api.server.stop().await;

    // A directory that is down: the login fails at once with the reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!("ldap://{}", closed.local_addr().unwrap());
    drop(closed);
    let api = server(&down, &directory.base).await;
    let mut conn = connect(api.server.addr).await;
    assert!(!login_password(&mut conn, "alice", "alicepass").await);
    assert!(
        last_refusal(&api, "alice")
            .await
            .contains("directory unavailable")
    );
    api.server.stop().await;
}
