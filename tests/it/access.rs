//! Access conditions of logins, set through the admin API and met by real
//! clients: protocols, login methods, source address blocks, concurrent
//! sessions and hours, for a user and through a group.

use chrono::Datelike;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::http::{Https, ROOT};
use crate::support::{PASSWORD, connect, connect_from, login_password};

async fn set_access(api: &Https, root: &str, user: &str, access: Value) {
    let (status, _, body) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{user}"),
            root,
            Some(json!({ "access": access })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{access}: {body}");
}

async fn sftp_login(api: &Https, user: &str) -> bool {
    let mut conn = connect(api.server.addr).await;
    login_password(&mut conn, user, PASSWORD).await
}

/// The reason of the last `LoginFailed` of `user`.
async fn last_refusal(api: &Https, user: &str) -> String {
    let failed = api.server.wait_for_event(user, "LoginFailed").await;
    let last = failed.last().expect("a failed login");
    last.payload.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_meet_their_access_conditions_on_every_protocol() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("erin").await;
    assert!(sftp_login(&api, "erin").await, "no conditions, no refusal");

    // Protocols.
    set_access(&api, &root, "erin", json!({"protocols": ["http"]})).await;
    assert!(!sftp_login(&api, "erin").await);
    assert!(
        last_refusal(&api, "erin")
            .await
            .contains("protocol not allowed")
    );
    assert_eq!(api.token("erin", PASSWORD).await.status(), StatusCode::OK);

    // Source addresses: a denied block, then an allow-list.
    set_access(&api, &root, "erin", json!({"deny_from": ["127.0.0.0/8"]})).await;
    assert!(!sftp_login(&api, "erin").await);
    assert!(
        last_refusal(&api, "erin")
            .await
            .contains("source address not allowed")
    );
    assert_eq!(
        api.token("erin", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED,
        "HTTP logins meet the same conditions"
    );
    set_access(&api, &root, "erin", json!({"allow_from": ["127.0.0.2/32"]})).await;
    assert!(!sftp_login(&api, "erin").await, "127.0.0.1 is not allowed");
    let mut other = connect_from("127.0.0.2".parse().unwrap(), api.server.addr).await;
    assert!(
        login_password(&mut other, "erin", PASSWORD).await,
        "127.0.0.2 is"
    );
    drop(other);

    // Login methods.
    set_access(
        &api,
        &root,
        "erin",
        json!({"login_methods": ["public_key"]}),
    )
    .await;
    assert!(!sftp_login(&api, "erin").await);
    assert!(
        last_refusal(&api, "erin")
            .await
            .contains("login method not allowed")
    );

    // Hours: every day but today.
    let today = chrono::Utc::now().weekday().num_days_from_monday();
    let days: Vec<u32> = (0..7).filter(|d| *d != today).collect();
    set_access(
        &api,
        &root,
        "erin",
        json!({"time_windows": [{"days": days, "from": "00:00", "to": "24:00"}]}),
    )
    .await;
    assert!(!sftp_login(&api, "erin").await);
    assert!(
        last_refusal(&api, "erin")
            .await
            .contains("outside the allowed hours")
    );

    // Concurrent sessions.
    set_access(&api, &root, "erin", json!({"max_sessions": 1})).await;
    let mut first = connect(api.server.addr).await;
    assert!(login_password(&mut first, "erin", PASSWORD).await);
    assert!(
        !sftp_login(&api, "erin").await,
        "a second session is refused"
    );
    assert!(
        last_refusal(&api, "erin")
            .await
            .contains("too many sessions")
    );
    first
        .disconnect(russh::Disconnect::ByApplication, "", "")
        .await
        .unwrap();
    drop(first);
    let mut again = false;
    for _ in 0..200 {
        if sftp_login(&api, "erin").await {
            again = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(again, "the session ended, a new one is allowed");

    // A group's conditions apply where the user sets none.
    set_access(&api, &root, "erin", json!({})).await;
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/groups",
            &root,
            Some(json!({"name": "ftp-only"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/groups/ftp-only",
            &root,
            Some(json!({"access": {"protocols": ["ftp", "ftps"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access"]["protocols"], json!(["ftp", "ftps"]));
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/users/erin",
            &root,
            Some(json!({"groups": ["ftp-only"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(!sftp_login(&api, "erin").await, "the group allows FTP only");
    set_access(&api, &root, "erin", json!({"protocols": ["sftp"]})).await;
    assert!(
        sftp_login(&api, "erin").await,
        "the user's own condition wins"
    );

    // Malformed conditions are refused.
    for access in [
        json!({"allow_from": ["nonsense"]}),
        json!({"protocols": ["gopher"]}),
        json!({"time_windows": [{"from": "25:00", "to": "26:00"}]}),
        json!({"time_windows": [{"days": [7], "from": "08:00", "to": "09:00"}]}),
        json!({"time_windows": [{"from": "10:00", "to": "09:00"}]}),
    ] {
        let (status, _, body) = api
            .call(
                Method::PATCH,
                "/api/v1/users/erin",
                &root,
                Some(json!({ "access": access })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{access}: {body}");
    }
    api.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limits_pace_transfers_on_every_protocol() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let home = api.server.add_full_user("hal").await;
    let size = 16 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    std::fs::write(home.join("big.bin"), &data).unwrap();
    let rate = 8 * 1024 * 1024;
    set_access(
        &api,
        &root,
        "hal",
        json!({"download_bytes_per_sec": rate, "upload_bytes_per_sec": rate}),
    )
    .await;
    // 16 MiB at 8 MiB/s: about two seconds; the bound is generous (a
    // burst of a tenth of a second is allowed).
    let least = std::time::Duration::from_millis(1500);

    let (_conn, session) = crate::support::sftp(api.server.addr, "hal").await;
    let started = std::time::Instant::now();
    let mut file = session.open("/big.bin").await.unwrap();
    let mut back = Vec::new();
    file.read_to_end(&mut back).await.unwrap();
    assert!(back == data, "the download is whole");
    assert!(
        started.elapsed() >= least,
        "SFTP download: {:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    let mut file = session.create("/up.bin").await.unwrap();
    file.write_all(&data).await.unwrap();
    file.shutdown().await.unwrap();
    assert!(
        started.elapsed() >= least,
        "SFTP upload: {:?}",
        started.elapsed()
    );

    let token = api.bearer("hal", PASSWORD).await;
    let started = std::time::Instant::now();
    let res = api
        .client
        .get(format!(
            "{}/api/v1/user/files/content?path=/big.bin",
            api.base
        ))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().len(), size);
    assert!(
        started.elapsed() >= least,
        "HTTP download: {:?}",
        started.elapsed()
    );

    let started = std::time::Instant::now();
    let res = api
        .client
        .get(format!("{}/dav/big.bin", api.base))
        .basic_auth("hal", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert!(
        res.bytes().await.unwrap() == data,
        "the WebDAV download is whole"
    );
    assert!(
        started.elapsed() >= least,
        "WebDAV download: {:?}",
        started.elapsed()
    );

    let ftp_addr = api.server.ftp_addr;
    let (back, elapsed) = tokio::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(ftp_addr).unwrap();
        ftp.login("hal", PASSWORD).unwrap();
        ftp.transfer_type(suppaftp::types::FileType::Binary)
            .unwrap();
        let started = std::time::Instant::now();
        let back = ftp.retr_as_buffer("big.bin").unwrap().into_inner();
        let elapsed = started.elapsed();
        let _ = ftp.quit();
        (back, elapsed)
    })
    .await
    .unwrap();
    assert!(back == data, "the FTP download is whole");
    assert!(elapsed >= least, "FTP download: {elapsed:?}");

    // Lifting the limit applies to the next session.
    set_access(&api, &root, "hal", json!({})).await;
    let (_conn, session) = crate::support::sftp(api.server.addr, "hal").await;
    let mut file = session.open("/big.bin").await.unwrap();
    let mut back = Vec::new();
    file.read_to_end(&mut back).await.unwrap();
    assert!(back == data);
    api.server.stop().await;
}
