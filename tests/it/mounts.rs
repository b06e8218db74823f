//! Mounts shown as virtual folders, through the admin API and a real SFTP
//! client: an encrypted local folder and a plain one from a group, the
//! rules at folder boundaries, tampering detected, connectivity checks;
//! and object-store folders when the emulators of `scripts/storage_peers.sh`
//! are running.

use std::io::SeekFrom;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{OpenFlags, StatusCode as SftpStatus};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tollgate_application::EventFilter;
use tollgate_ports::outbound::{FileStorage, WriteMode};

use crate::http::{Https, ROOT};
use crate::support::{PASSWORD, refused, sftp};

/// Uploads `data` as a new file, flushed before its close as
/// `tokio::io::copy` does: the client sends `fsync@openssh.com`, which
/// every kind of folder takes for a new file.
async fn write_file(session: &SftpSession, path: &str, data: &[u8]) {
    let mut file = session.create(path).await.expect("create");
    file.write_all(data).await.expect("write");
    file.flush().await.expect("flush");
    file.shutdown().await.expect("close");
}

/// Content with a recognisable marker every 1000 bytes.
fn marked(len: usize) -> Vec<u8> {
    let unit = b"CONFIDENTIAL-PAYROLL-";
    (0..len)
        .map(|i| {
            if i % 1000 < unit.len() {
                unit[i % 1000]
            } else {
                (i % 251) as u8
            }
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn created(api: &Https, token: &str, path: &str, body: Value) -> Value {
    let (status, _, body) = api.call(Method::POST, path, token, Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_folder_and_a_group_folder_appear_in_a_users_namespace() {
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    let disks = tempfile::tempdir().unwrap();
    let vault_dir = disks.path().join("vault");
    let shared_dir = disks.path().join("shared");

    let vault = created(
        &api,
        &root,
        "/api/v1/mounts",
        json!({"name": "vault", "encrypted": true,
               "storage": {"kind": "local", "root": vault_dir.to_str().unwrap()}}),
    )
    .await;
    assert_eq!(vault["encrypted"], true);
    created(
        &api,
        &root,
        "/api/v1/mounts",
        json!({"name": "shared", "storage": {"kind": "local", "root": shared_dir.to_str().unwrap()}}),
    )
    .await;
    created(
        &api,
        &root,
        "/api/v1/groups",
        json!({"name": "partners", "folders": [{"path": "/inbox/shared", "mount": "shared"}]}),
    )
    .await;
    let home = api.server.add_full_user("alice").await;
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            &root,
            Some(
                json!({"groups": ["partners"], "folders": [{"path": "/vault", "mount": "vault"}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["folders"],
        json!([{"path": "/vault", "mount": "vault"}])
    );

    // Overlapping folders and missing mounts are refused.
    for folders in [
        json!([{"path": "/a", "mount": "vault"}, {"path": "/a/b", "mount": "shared"}]),
        json!([{"path": "/x", "mount": "no-such-mount"}]),
        json!([{"path": "/", "mount": "vault"}]),
    ] {
        let (status, _, body) = api
            .call(
                Method::PATCH,
                "/api/v1/users/alice",
                &root,
                Some(json!({ "folders": folders })),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{folders}: {body}");
    }

    let (_conn, session) = sftp(api.server.addr, "alice").await;
    let names: Vec<(String, bool)> = session
        .read_dir("/")
        .await
        .unwrap()
        .map(|e| (e.file_name(), e.file_type().is_dir()))
        .collect();
    assert_eq!(
        names,
        vec![("inbox".to_string(), true), ("vault".to_string(), true)],
        "folders and the way to them are listed as directories"
    );
    assert!(session.metadata("/inbox").await.unwrap().is_dir());

    // The encrypted folder: plaintext for the client, ciphertext on disk.
    let data = marked(300_000);
    write_file(&session, "/vault/payroll.csv", &data).await;
    assert_eq!(session.read("/vault/payroll.csv").await.unwrap(), data);
    assert_eq!(
        session.metadata("/vault/payroll.csv").await.unwrap().size,
        Some(data.len() as u64),
        "sizes are plaintext sizes"
    );
    let stored = std::fs::read(vault_dir.join("payroll.csv")).unwrap();
    assert!(stored.len() > data.len());
    assert!(
        !contains(&stored, b"CONFIDENTIAL-PAYROLL"),
        "stored encrypted"
    );
    assert!(!home.join("vault").exists(), "nothing lands in the home");

    // Random access and append.
    let mut file = session
        .open_with_flags("/vault/payroll.csv", OpenFlags::READ)
        .await
        .unwrap();
    file.seek(SeekFrom::Start(131_000)).await.unwrap();
    let mut middle = vec![0u8; 5_000];
    file.read_exact(&mut middle).await.unwrap();
    assert_eq!(middle, data[131_000..136_000]);
    drop(file);
    let more = marked(70_001);
    let mut file = session
        .open_with_flags("/vault/payroll.csv", OpenFlags::WRITE | OpenFlags::APPEND)
        .await
        .unwrap();
    file.write_all(&more).await.unwrap();
    file.shutdown().await.unwrap();
    let whole = [data.clone(), more].concat();
    assert_eq!(session.read("/vault/payroll.csv").await.unwrap(), whole);

    // The plain group folder, nested below a directory of the home.
    write_file(&session, "/inbox/shared/note.txt", b"hello partners").await;
    assert_eq!(
        std::fs::read(shared_dir.join("note.txt")).unwrap(),
        b"hello partners"
    );

    // Folder boundaries.
    assert_eq!(
        refused(
            session
                .rename("/vault/payroll.csv", "/inbox/shared/payroll.csv")
                .await
        ),
        SftpStatus::OpUnsupported,
        "a rename across backends is not a silent copy"
    );
    assert_eq!(
        refused(session.remove_dir("/vault").await),
        SftpStatus::PermissionDenied
    );
    assert_eq!(
        refused(session.rename("/vault", "/elsewhere").await),
        SftpStatus::PermissionDenied
    );
    session
        .rename("/vault/payroll.csv", "/vault/payroll-2026.csv")
        .await
        .unwrap();

    // The HTTP file API reaches the same folder, ranges included.
    let alice = api.bearer("alice", PASSWORD).await;
    let url = |path: &str| format!("{}/api/v1/user/files/content?path={path}", api.base);
    let res = api
        .client
        .put(url("/vault/http.txt"))
        .header("Authorization", &alice)
        .body("over https, encrypted")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let res = api
        .client
        .get(url("/vault/http.txt"))
        .header("Authorization", &alice)
        .header("Range", "bytes=5-9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.text().await.unwrap(), "https");
    let stored = std::fs::read(vault_dir.join("http.txt")).unwrap();
    assert!(!contains(&stored, b"encrypted"));

    // Tampering on disk is detected, never served.
    let path = vault_dir.join("payroll-2026.csv");
    let mut stored = std::fs::read(&path).unwrap();
    let middle = stored.len() / 2;
    stored[middle] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    // The client's reader reports the status text as an I/O error.
    let err = session.read("/vault/payroll-2026.csv").await.unwrap_err();
    assert!(
        err.to_string().contains("integrity check"),
        "the client is told why: {err:?}"
    );

    // The events speak of virtual paths.
    let events = api.server.events(EventFilter::default()).await;
    assert!(
        events.iter().any(|e| e.event_type == "TransferCompleted"
            && e.path.as_deref() == Some("/vault/payroll.csv")),
        "transfer events name the virtual path"
    );
    let denial = api
        .server
        .wait_for_event("alice", "FileOperationDenied")
        .await;
    assert!(
        denial
            .iter()
            .any(|e| e.payload.to_string().contains("virtual-folder")),
        "{denial:?}"
    );

    // A mount in use cannot be deleted; a mount's storage can be checked.
    let (status, _, body) = api
        .call(Method::DELETE, "/api/v1/mounts/vault", &root, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _, body) = api
        .call(Method::POST, "/api/v1/mounts/vault/check", &root, None)
        .await;
    assert_eq!(
        (status, body["reachable"].clone()),
        (StatusCode::OK, json!(true)),
        "{body}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    created(
        &api,
        &root,
        "/api/v1/mounts",
        json!({"name": "remote", "storage": {"kind": "sftp", "host": "127.0.0.1", "port": port,
               "username": "gw", "password": "not-a-real-one",
               "host_key_fingerprint": "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}),
    )
    .await;
    let (status, _, body) = api
        .call(Method::POST, "/api/v1/mounts/remote/check", &root, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reachable"], false);
    assert_eq!(body["kind"], "unavailable", "{body}");
    assert!(!body.to_string().contains("not-a-real-one"));
    api.server.stop().await;
}

/// Azurite's well-known development account key (public).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The remote backends whose servers `scripts/storage_peers.sh` and
/// `scripts/sshd_peer.sh` started, as mount storage; a missing one is
/// skipped, unless the run requires every service.
fn remote_backends(prefix: &str) -> Vec<(&'static str, Value)> {
    let mut found = Vec::new();
    if let (Some(endpoint), Some(bucket)) = (
        env("TOLLGATE_TEST_S3_ENDPOINT"),
        env("TOLLGATE_TEST_S3_BUCKET"),
    ) {
        found.push((
            "s3",
            json!({"kind": "s3", "bucket": bucket, "region": "us-east-1",
            "endpoint": endpoint, "prefix": prefix,
            "access_key_id": "test", "secret_access_key": "test"}),
        ));
    }
    if let (Some(endpoint), Some(container)) = (
        env("TOLLGATE_TEST_AZURE_ENDPOINT"),
        env("TOLLGATE_TEST_AZURE_CONTAINER"),
    ) {
        found.push((
            "azure",
            json!({"kind": "azure", "account": "devstoreaccount1",
            "container": container, "endpoint": endpoint, "prefix": prefix,
            "access_key": AZURITE_KEY}),
        ));
    }
    if let (Some(endpoint), Some(bucket)) = (
        env("TOLLGATE_TEST_GCS_ENDPOINT"),
        env("TOLLGATE_TEST_GCS_BUCKET"),
    ) {
        found.push((
            "gcs",
            json!({"kind": "gcs", "bucket": bucket, "endpoint": endpoint,
            "prefix": prefix}),
        ));
    }
    if let Some(sshd) = env("TOLLGATE_TEST_SSHD") {
        let parts: Vec<&str> = sshd.split('|').collect();
        let (host, port) = parts[0].rsplit_once(':').expect("host:port");
        let key = std::fs::read_to_string(parts[2]).expect("the client key");
        found.push((
            "sftp",
            json!({"kind": "sftp", "host": host,
            "port": port.parse::<u16>().expect("port"), "username": parts[1],
            "private_key": key, "host_key_fingerprint": parts[3],
            "root": format!("{}/{prefix}", parts[4])}),
        ));
    }
    // GCS is not required: no emulator installable here serves the API
    // object_store speaks (scripts/storage_peers.sh).
    let required = std::env::var("TOLLGATE_TEST_REQUIRE_SERVICES").as_deref() == Ok("1");
    let names: Vec<&str> = found.iter().map(|(name, _)| *name).collect();
    if ["s3", "azure", "sftp"]
        .iter()
        .any(|name| !names.contains(name))
    {
        assert!(
            !required,
            "the storage peers are required but only {names:?} are configured: run scripts/storage_peers.sh and scripts/sshd_peer.sh"
        );
        eprintln!(
            "remote storage backends configured: {names:?} (start the others with scripts/storage_peers.sh, scripts/sshd_peer.sh)"
        );
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_and_sftp_folders_carry_uploads_downloads_and_resumes() {
    let prefix = format!("it-{}", uuid::Uuid::new_v4());
    let backends = remote_backends(&prefix);
    if backends.is_empty() {
        return;
    }
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("bob").await;
    let mut folders = Vec::new();
    for (name, storage) in &backends {
        // Every remote backend also runs encrypted, as a second mount.
        for encrypted in [false, true] {
            let mount = format!("{name}-{}", if encrypted { "enc" } else { "plain" });
            let mut storage = storage.clone();
            let sub = format!("{prefix}/{mount}");
            if storage.get("prefix").is_some() {
                storage["prefix"] = json!(sub);
            } else {
                let base = storage["root"].as_str().unwrap().to_string();
                storage["root"] = json!(format!("{base}/{mount}"));
            }
            created(
                &api,
                &root,
                "/api/v1/mounts",
                json!({"name": mount, "encrypted": encrypted, "storage": storage}),
            )
            .await;
            let (status, _, body) = api
                .call(
                    Method::POST,
                    &format!("/api/v1/mounts/{mount}/check"),
                    &root,
                    None,
                )
                .await;
            assert_eq!(body["reachable"], true, "{mount}: {status} {body}");
            folders.push(json!({"path": format!("/{mount}"), "mount": mount}));
        }
    }
    // A server presenting another host key than the pinned one is refused
    // when the mount is checked.
    if let Some((_, storage)) = backends.iter().find(|(name, _)| *name == "sftp") {
        let mut storage = storage.clone();
        storage["host_key_fingerprint"] =
            json!("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU");
        created(
            &api,
            &root,
            "/api/v1/mounts",
            json!({"name": "impostor", "storage": storage}),
        )
        .await;
        let (status, _, body) = api
            .call(Method::POST, "/api/v1/mounts/impostor/check", &root, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            (body["reachable"].clone(), body["kind"].clone()),
            (json!(false), json!("permission_denied")),
            "{body}"
        );
    }
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/users/bob",
            &root,
            Some(json!({ "folders": folders })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_conn, session) = sftp(api.server.addr, "bob").await;
    let data = marked(9 * 1024 * 1024 + 4321);
    for folder in &folders {
        let dir = folder["path"].as_str().unwrap();
        session.create_dir(format!("{dir}/in")).await.unwrap();
        let path = format!("{dir}/in/report.bin");
        write_file(&session, &path, &data).await;
        assert_eq!(
            session.metadata(&path).await.unwrap().size,
            Some(data.len() as u64),
            "{path}"
        );
        assert!(
            session.read(&path).await.unwrap() == data,
            "{path} reads back"
        );
        let names: Vec<String> = session
            .read_dir(format!("{dir}/in"))
            .await
            .unwrap()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec!["report.bin".to_string()], "{dir}");

        // Append continues after the stored content.
        let tail = marked(100_003);
        let mut file = session
            .open_with_flags(&path, OpenFlags::WRITE | OpenFlags::APPEND)
            .await
            .unwrap();
        file.write_all(&tail).await.unwrap();
        // An object store keeps the appended bytes only at the close, so
        // it refuses to sync them before; the remote SFTP server syncs.
        let flushed = file.flush().await;
        assert_eq!(
            flushed.is_err(),
            !dir.starts_with("/sftp-"),
            "{path}: a flush of an append: {flushed:?}"
        );
        file.shutdown().await.unwrap();
        let mut file = session.open(&path).await.unwrap();
        file.seek(SeekFrom::Start(data.len() as u64 - 10))
            .await
            .unwrap();
        let mut end = Vec::new();
        file.read_to_end(&mut end).await.unwrap();
        assert_eq!(
            end,
            [&data[data.len() - 10..], &tail[..]].concat(),
            "{path}"
        );
        drop(file);

        let moved = format!("{dir}/report-final.bin");
        session.rename(&path, &moved).await.unwrap();
        assert_eq!(
            session.metadata(&moved).await.unwrap().size,
            Some((data.len() + tail.len()) as u64)
        );
        session.remove_file(&moved).await.unwrap();
        session.remove_dir(format!("{dir}/in")).await.unwrap();
        assert_eq!(session.read_dir(dir).await.unwrap().count(), 0, "{dir}");
    }
    // A folder of more objects than one listing page, read by the SFTP
    // client over several READDIR calls.
    if let Some((_, storage)) = backends.iter().find(|(name, _)| *name == "s3") {
        let store = tollgate_storage::ObjectStorage::new(tollgate_storage::ObjectOptions::S3 {
            bucket: storage["bucket"].as_str().unwrap().to_string(),
            region: "us-east-1".to_string(),
            endpoint: storage["endpoint"].as_str().map(str::to_string),
            access_key_id: Some("test".to_string()),
            secret_access_key: Some("test".to_string()),
        })
        .unwrap();
        let root = format!("{prefix}/s3-plain");
        let count = 1_234;
        futures::stream::iter(0..count)
            .map(|n| {
                let (store, root) = (&store, &root);
                async move {
                    let path = tollgate_domain::VirtualPath::parse(&format!("/f{n:05}")).unwrap();
                    let mut handle = store
                        .open_write(root, &path, WriteMode::Replace)
                        .await
                        .unwrap();
                    handle
                        .write_at(0, bytes::Bytes::from_static(b"x"))
                        .await
                        .unwrap();
                    handle.commit().await.unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<()>>()
            .await;
        let mut names: Vec<String> = session
            .read_dir("/s3-plain")
            .await
            .unwrap()
            .map(|e| e.file_name())
            .collect();
        // The client gathers the READDIR batches in an order of its own.
        names.sort();
        let expected: Vec<String> = (0..count).map(|n| format!("f{n:05}")).collect();
        assert!(
            names == expected,
            "a listing of several pages has every entry once: {} of {count}",
            names.len()
        );
    }
    let completed = api.server.events_of("bob", "TransferCompleted").await;
    assert!(
        completed.len() >= folders.len() * 2,
        "every upload and download is recorded: {}",
        completed.len()
    );
    api.server.stop().await;
}

/// A TCP relay to `target` that can be cut: open connections are dropped
/// and new ones refused.
struct Relay {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                links.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, task }
    }

    /// Drops every relayed connection and the listener.
    fn cut(self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_lost_mid_upload_leaves_no_object_and_a_failed_transfer() {
    let (Some(endpoint), Some(bucket)) = (
        env("TOLLGATE_TEST_S3_ENDPOINT"),
        env("TOLLGATE_TEST_S3_BUCKET"),
    ) else {
        assert!(
            std::env::var("TOLLGATE_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "the S3 emulator is required: run scripts/storage_peers.sh"
        );
        return;
    };
    let target: std::net::SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .expect("the S3 endpoint is host:port");
    let relay = Relay::start(target).await;
    let prefix = format!("it-{}", uuid::Uuid::new_v4());
    let s3 = |endpoint: String| {
        json!({"kind": "s3", "bucket": bucket, "region": "us-east-1", "endpoint": endpoint,
               "prefix": prefix, "access_key_id": "test", "secret_access_key": "test"})
    };
    let api = Https::start("sqlite").await;
    let root = api.bearer(ROOT, PASSWORD).await;
    api.server.add_full_user("carol").await;
    created(
        &api,
        &root,
        "/api/v1/mounts",
        json!({"name": "fragile", "storage": s3(format!("http://{}", relay.addr))}),
    )
    .await;
    created(
        &api,
        &root,
        "/api/v1/mounts",
        json!({"name": "direct", "storage": s3(endpoint.clone())}),
    )
    .await;
    let (status, _, body) = api
        .call(
            Method::PATCH,
            "/api/v1/users/carol",
            &root,
            Some(json!({"folders": [{"path": "/fragile", "mount": "fragile"},
                                    {"path": "/direct", "mount": "direct"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_conn, session) = sftp(api.server.addr, "carol").await;
    let data = marked(48 * 1024 * 1024);
    let mut file = session.create("/fragile/big.bin").await.unwrap();
    file.write_all(&data[..20 * 1024 * 1024]).await.unwrap();
    relay.cut();
    let rest = async {
        file.write_all(&data[20 * 1024 * 1024..]).await?;
        file.shutdown().await
    }
    .await;
    let err = rest.expect_err("the upload cannot complete without its store");
    assert!(
        err.to_string().contains("unavailable") || err.to_string().contains("failure"),
        "a protocol error says why: {err}"
    );
    drop(file);

    // Nothing under the name, through the same store reached directly.
    let names: Vec<String> = session
        .read_dir("/direct")
        .await
        .unwrap()
        .map(|e| e.file_name())
        .collect();
    assert!(names.is_empty(), "no partial object: {names:?}");
    // The transfer is recorded as not completed, and the server serves on.
    let ended_badly = |events: &[tollgate_application::EventSummary]| {
        events.iter().any(|e| {
            matches!(e.event_type.as_str(), "TransferFailed" | "TransferAborted")
                && e.path.as_deref() == Some("/fragile/big.bin")
        })
    };
    let mut ended = Vec::new();
    for _ in 0..400 {
        ended = api.server.events(EventFilter::default()).await;
        if ended_badly(&ended) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ended_badly(&ended), "the transfer is recorded as failed");
    assert!(
        !ended.iter().any(|e| e.event_type == "TransferCompleted"
            && e.path.as_deref() == Some("/fragile/big.bin")),
        "never recorded as complete"
    );
    write_file(&session, "/direct/after.txt", b"still serving").await;
    assert_eq!(
        session.read("/direct/after.txt").await.unwrap(),
        b"still serving"
    );
    api.server.stop().await;
}
