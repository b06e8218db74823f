//! Storage quotas, set through the admin API and met by real clients over
//! SFTP, FTP, the REST file API and WebDAV: an upload past the quota fails
//! with the protocol's error and leaves nothing behind, removals give room
//! back, and the usage is a read model the event log rebuilds.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::http::{Https, ROOT};
use crate::support::PASSWORD;

const KIB: usize = 1024;

async fn patch(api: &Https, root: &str, path: &str, body: Value) {
    let (status, _, text) = api.call(Method::PATCH, path, root, Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {text}");
}

/// The user as the API shows them.
async fn user_view(api: &Https, root: &str, user: &str) -> Value {
    let (status, _, body) = api
        .call(Method::GET, &format!("/api/v1/users/{user}"), root, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The user's `used_bytes` and `used_files` as the API shows them.
async fn usage(api: &Https, root: &str, user: &str) -> (u64, u64) {
    let body = user_view(api, root, user).await;
    (
        body["used_bytes"].as_u64().unwrap(),
        body["used_files"].as_u64().unwrap(),
    )
}

/// An FTP upload's reply code (226 when it was stored).
/// The names in a directory, staging files included, sorted.
fn names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

async fn ftp_put(addr: std::net::SocketAddr, user: &str, name: &str, data: Vec<u8>) -> u32 {
    let (user, name) = (user.to_string(), name.to_string());
    tokio::task::spawn_blocking(move || {
        let mut ftp = suppaftp::FtpStream::connect(addr).unwrap();
        ftp.login(user.as_str(), PASSWORD).unwrap();
        ftp.transfer_type(suppaftp::types::FileType::Binary)
            .unwrap();
        let code = match ftp.put_file(&name, &mut std::io::Cursor::new(data)) {
            Ok(_) => 226,
            Err(suppaftp::FtpError::UnexpectedResponse(response)) => {
                String::from_utf8_lossy(&response.body)[..3]
                    .parse()
                    .unwrap()
            }
            Err(other) => panic!("FTP upload: {other:?}"),
        };
        let _ = ftp.quit();
        code
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_a_quota_fail_cleanly_on_every_protocol() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let home = api.server.add_full_user("quinn").await;
    let quota = 1024 * KIB as u64;
    patch(
        &api,
        &root,
        "/api/v1/users/quinn",
        json!({"access": {"quota_bytes": quota, "quota_files": 3}}),
    )
    .await;
    let part = vec![7u8; 600 * KIB];

    // SFTP: the first 600 KiB fit; the second file does not, and the
    // client sees the failure with the quota named.
    let (_conn, sftp) = crate::support::sftp(api.server.addr, "quinn").await;
    let mut file = sftp.create("/a.bin").await.unwrap();
    file.write_all(&part).await.unwrap();
    file.shutdown().await.unwrap();
    assert_eq!(usage(&api, &root, "quinn").await, (600 * KIB as u64, 1));
    let mut file = sftp.create("/b.bin").await.unwrap();
    let written = file.write_all(&part).await;
    let closed = file.shutdown().await;
    let failure = format!("{:?} {:?}", written.err(), closed.err());
    assert!(failure.contains("quota exceeded"), "{failure}");
    assert!(!home.join("b.bin").exists(), "no partial file");

    // FTP: 552, nothing stored.
    let code = ftp_put(api.server.ftp_addr, "quinn", "c.bin", part.clone()).await;
    assert_eq!(code, 552);
    assert!(!home.join("c.bin").exists());

    // The REST file API: 507 with a problem document; WebDAV: 507.
    let res = api
        .client
        .put(format!(
            "{}/api/v1/user/files/content?path=/d.bin",
            api.base
        ))
        .header("Authorization", api.bearer("quinn", PASSWORD).await)
        .body(part.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(res.text().await.unwrap().contains("quota"));
    let res = api
        .client
        .put(format!("{}/dav/e.bin", api.base))
        .basic_auth("quinn", Some(PASSWORD))
        .body(part.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::INSUFFICIENT_STORAGE);
    for name in ["d.bin", "e.bin"] {
        assert!(!home.join(name).exists(), "{name}");
    }
    assert_eq!(usage(&api, &root, "quinn").await, (600 * KIB as u64, 1));

    // Overwriting with something smaller is room given back; a removal too.
    let mut file = sftp.create("/a.bin").await.unwrap();
    file.write_all(&part[..100 * KIB]).await.unwrap();
    file.shutdown().await.unwrap();
    assert_eq!(usage(&api, &root, "quinn").await, (100 * KIB as u64, 1));
    sftp.remove_file("/a.bin").await.unwrap();
    assert_eq!(usage(&api, &root, "quinn").await, (0, 0));
    assert_eq!(
        ftp_put(api.server.ftp_addr, "quinn", "c.bin", part.clone()).await,
        226
    );

    // The file count: three files, then a fourth is refused when it opens.
    for name in ["/f1", "/f2"] {
        let mut file = sftp.create(name).await.unwrap();
        file.write_all(b"x").await.unwrap();
        file.shutdown().await.unwrap();
    }
    assert_eq!(usage(&api, &root, "quinn").await, (600 * KIB as u64 + 2, 3));
    let before = names(&home);
    let refused = sftp.create("/f3").await;
    assert!(
        format!("{:?}", refused.err()).contains("quota exceeded"),
        "a fourth file"
    );
    assert!(!home.join("f3").exists());
    assert_eq!(
        names(&home),
        before,
        "an upload refused when it opens leaves nothing, staged or not"
    );
    let denied = api.server.wait_for_event("quinn", "TransferDenied").await;
    assert!(
        denied
            .iter()
            .any(|e| e.payload.to_string().contains("quota")),
        "refusals at open are recorded"
    );

    // A rename over a file (WebDAV MOVE with Overwrite) drops the file
    // it replaces.
    let res = api
        .client
        .request(
            Method::from_bytes(b"MOVE").unwrap(),
            format!("{}/dav/f1", api.base),
        )
        .basic_auth("quinn", Some(PASSWORD))
        .header("Destination", format!("{}/dav/f2", api.base))
        .header("Overwrite", "T")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(usage(&api, &root, "quinn").await, (600 * KIB as u64 + 1, 2));

    // The usage is a read model: rebuilding it from the log gives it back,
    // and the whole view with it, though the rebuild projects the user's
    // creation, its changes and every upload in one batch.
    let before = user_view(&api, &root, "quinn").await;
    api.server.app().rebuild_projections().await.unwrap();
    assert_eq!(usage(&api, &root, "quinn").await, (600 * KIB as u64 + 1, 2));
    assert_eq!(user_view(&api, &root, "quinn").await, before);
    api.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_quota_applies_to_each_member_without_their_own() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let (status, _, body) = api
        .call(
            Method::POST,
            "/api/v1/groups",
            &root,
            Some(json!({"name": "small"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    patch(
        &api,
        &root,
        "/api/v1/groups/small",
        json!({"access": {"quota_bytes": 1000}}),
    )
    .await;
    let home = api.server.add_full_user("gwen").await;
    patch(
        &api,
        &root,
        "/api/v1/users/gwen",
        json!({"groups": ["small"]}),
    )
    .await;
    assert_eq!(
        ftp_put(api.server.ftp_addr, "gwen", "ok.bin", vec![1; 900]).await,
        226
    );
    assert_eq!(
        ftp_put(api.server.ftp_addr, "gwen", "no.bin", vec![1; 200]).await,
        552
    );
    assert!(!home.join("no.bin").exists());
    // The user's own quota wins over the group's.
    patch(
        &api,
        &root,
        "/api/v1/users/gwen",
        json!({"access": {"quota_bytes": 5000}}),
    )
    .await;
    assert_eq!(
        ftp_put(api.server.ftp_addr, "gwen", "no.bin", vec![1; 200]).await,
        226
    );
    assert_eq!(usage(&api, &root, "gwen").await, (1100, 2));
    api.server.stop().await;
}
