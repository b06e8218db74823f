//! SSH user certificates with the russh client: a certificate signed by a
//! trusted user CA logs in as its principal, without the key being known;
//! another principal, an expired certificate, an unknown CA and a revoked
//! serial are refused and recorded.

use std::sync::Arc;

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::{Certificate, PrivateKey};

use crate::support::{TestServer, connect, new_key, test_config};

const REVOKED: u64 = 13;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A user certificate of `key` signed by `ca`.
fn certificate(
    ca: &PrivateKey,
    key: &PrivateKey,
    principal: &str,
    serial: u64,
    valid: std::ops::Range<u64>,
) -> Certificate {
    let mut builder =
        Builder::new_with_random_nonce(&mut rand::rng(), key.public_key(), valid.start, valid.end)
            .unwrap();
    builder.serial(serial).unwrap();
    builder.key_id(format!("{principal}@laptop")).unwrap();
    builder.cert_type(CertType::User).unwrap();
    builder.valid_principal(principal).unwrap();
    builder.sign(ca).unwrap()
}

async fn logs_in(server: &TestServer, user: &str, key: &PrivateKey, cert: Certificate) -> bool {
    let mut conn = connect(server.addr).await;
    conn.authenticate_openssh_cert(user, Arc::new(key.clone()), cert)
        .await
        .expect("auth exchange")
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_of_a_trusted_ca_log_in_as_their_principal() {
    let ca = new_key();
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config("sqlite", dir.path()).await;
    config.sftp.trusted_user_ca_keys = vec![ca.public_key().to_openssh().unwrap()];
    config.sftp.revoked_certificate_serials = vec![REVOKED];
    let server = TestServer::start_with(config, dir).await;
    server.add_full_user("gil").await;
    let key = new_key();
    let day = now() - 60..now() + 86_400;

    let good = certificate(&ca, &key, "gil", 7, day.clone());
    assert!(
        logs_in(&server, "gil", &key, good).await,
        "a trusted certificate"
    );
    let login = server.wait_for_event("gil", "LoginSucceeded").await;
    let recorded = login.last().unwrap().payload.to_string();
    assert!(
        recorded.contains("certificate")
            && recorded.contains("gil@laptop")
            && recorded.contains("serial 7"),
        "{recorded}"
    );

    // An expired certificate is refused by the SSH layer before the
    // gateway sees it (so no event names it).
    let expired = certificate(&ca, &key, "gil", 9, now() - 7200..now() - 3600);
    assert!(!logs_in(&server, "gil", &key, expired).await, "expired");

    let refusals = [
        (
            certificate(&ca, &key, "someone-else", 8, day.clone()),
            "not valid for this user",
        ),
        (
            certificate(&new_key(), &key, "gil", 10, day.clone()),
            "not signed by a trusted CA",
        ),
        (
            certificate(&ca, &key, "gil", REVOKED, day.clone()),
            "certificate revoked",
        ),
    ];
    for (n, (cert, reason)) in refusals.into_iter().enumerate() {
        assert!(!logs_in(&server, "gil", &key, cert).await, "{reason}");
        let failed = server.wait_for_events("gil", "LoginFailed", n + 1).await;
        let last = failed.last().unwrap().payload.to_string();
        assert!(last.contains(reason), "{reason}: {last}");
    }
    // A plain key that is not the user's is still refused, and recorded.
    let mut conn = connect(server.addr).await;
    assert!(!crate::support::login_key(&mut conn, "gil", &new_key()).await);
    let failed = server.wait_for_events("gil", "LoginFailed", 4).await;
    assert!(
        failed
            .last()
            .unwrap()
            .payload
            .to_string()
            .contains("key not authorized")
    );
    server.stop().await;
}
