//! Tests of the parent module, over object_store's in-memory store and a
//! loopback HTTP answerer for the error mapping. The emulator-backed runs
//! are in tests/backends.rs.
use object_store::memory::InMemory;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::contract;

fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse(text).unwrap()
}

fn memory() -> (Arc<dyn ObjectStore>, ObjectStorage) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    (store.clone(), ObjectStorage::over(store))
}

async fn keys(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .unwrap();
    keys.sort();
    keys
}

async fn write(storage: &ObjectStorage, root: &str, path: &str, data: &[u8]) {
    let mut handle = storage
        .open_write(root, &vp(path), WriteMode::Replace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::copy_from_slice(data))
        .await
        .unwrap();
    handle.commit().await.unwrap();
}

#[tokio::test]
async fn the_contract_passes_over_an_in_memory_store() {
    let (_, storage) = memory();
    contract::run(&storage, "users/alice").await;
}

#[tokio::test]
async fn the_contract_passes_at_the_bucket_top() {
    let (_, storage) = memory();
    contract::run(&storage, "").await;
}

#[tokio::test]
async fn keys_are_the_names_under_the_root_and_markers_make_directories() {
    let (store, storage) = memory();
    storage.ensure_root("users/alice").await.unwrap();
    storage.mkdir("users/alice", &vp("/docs")).await.unwrap();
    write(&storage, "users/alice", "/docs/report [1].csv", b"x").await;
    assert_eq!(
        keys(&store).await,
        vec![
            "users/alice/.tollgate-dir",
            "users/alice/docs/.tollgate-dir",
            "users/alice/docs/report [1].csv",
        ]
    );
    let names: Vec<String> = storage
        .list("users/alice", &vp("/docs"))
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.name)
        .collect();
    assert_eq!(names, vec!["report [1].csv"], "markers are hidden");
}

#[tokio::test]
async fn objects_written_by_other_tools_make_directories() {
    let (store, storage) = memory();
    store
        .put(&Path::from("ns/a/b/c.txt"), PutPayload::from_static(b"c"))
        .await
        .unwrap();
    assert_eq!(
        storage.stat("ns", &vp("/a")).await.unwrap().kind,
        FileKind::Dir
    );
    let entries = storage.list("ns", &vp("/a")).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].name.as_str(), entries[0].meta.kind),
        ("b", FileKind::Dir)
    );
    assert_eq!(
        storage.rmdir("ns", &vp("/a")).await.unwrap_err().kind,
        StorageErrorKind::Conflict
    );
    assert_eq!(
        storage.remove("ns", &vp("/a")).await.unwrap_err().kind,
        StorageErrorKind::Conflict,
        "a directory is not removed as a file"
    );
}

#[tokio::test]
async fn the_marker_name_is_refused_and_control_characters_are_unsupported() {
    let (_, storage) = memory();
    assert_eq!(
        storage
            .stat("ns", &vp("/.tollgate-dir"))
            .await
            .unwrap_err()
            .kind,
        StorageErrorKind::PermissionDenied
    );
    assert_eq!(
        storage
            .open_write("ns", &vp("/a\u{7}b"), WriteMode::Replace)
            .await
            .err()
            .map(|err| err.kind),
        Some(StorageErrorKind::Unsupported)
    );
    assert_eq!(
        storage.stat("a/../b", &vp("/x")).await.unwrap_err().kind,
        StorageErrorKind::Other,
        "a root that climbs is refused"
    );
}

#[tokio::test]
async fn a_write_before_the_held_back_bytes_is_unsupported() {
    let (_, storage) = memory();
    let data = contract::pattern(5, PART_SIZE + HELD_BACK + 10);
    let mut handle = storage
        .open_write("ns", &vp("/f"), WriteMode::Replace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    for offset in [0, 2, PART_SIZE as u64 - 1] {
        assert_eq!(
            handle
                .write_at(offset, Bytes::from_static(b"z"))
                .await
                .unwrap_err()
                .kind,
            StorageErrorKind::Unsupported,
            "offset {offset}"
        );
    }
    assert_eq!(
        handle
            .write_at(data.len() as u64 + 1, Bytes::from_static(b"z"))
            .await
            .unwrap_err()
            .kind,
        StorageErrorKind::Unsupported,
        "past the end"
    );
    assert_eq!(handle.size().await.unwrap(), data.len() as u64);
    assert_eq!(handle.commit().await.unwrap(), data.len() as u64);
}

#[tokio::test]
async fn a_write_handle_reads_back_only_what_it_still_holds() {
    let (_, storage) = memory();
    let data = contract::pattern(3, PART_SIZE + HELD_BACK + 1000);
    let mut handle = storage
        .open_write("ns", &vp("/big"), WriteMode::Replace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    assert_eq!(
        handle.read_at(0, 10).await.unwrap_err().kind,
        StorageErrorKind::Unsupported,
        "the first part is sent"
    );
    assert_eq!(
        handle.read_at(PART_SIZE as u64 + 10, 20).await.unwrap(),
        data[PART_SIZE + 10..PART_SIZE + 30]
    );
    assert!(
        handle
            .read_at(data.len() as u64, 20)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(handle.commit().await.unwrap(), data.len() as u64);

    // A resumed write also reads the old object's bytes, sent or not.
    let mut handle = storage
        .open_write("ns", &vp("/big"), WriteMode::InPlace)
        .await
        .unwrap();
    assert_eq!(handle.size().await.unwrap(), data.len() as u64);
    assert_eq!(handle.read_at(5, 10).await.unwrap(), data[5..15]);
    handle.abort().await.unwrap();
}

#[tokio::test]
async fn an_aborted_resume_keeps_the_old_object() {
    let (store, storage) = memory();
    write(&storage, "ns", "/f", b"old").await;
    let mut handle = storage
        .open_write("ns", &vp("/f"), WriteMode::InPlace)
        .await
        .unwrap();
    handle
        .write_at(3, Bytes::from_static(b"new"))
        .await
        .unwrap();
    handle.abort().await.unwrap();
    assert_eq!(contract::get(&storage, "ns", "/f", 100).await, b"old");
    assert_eq!(keys(&store).await, vec!["ns/f"]);
}

#[tokio::test]
async fn a_download_of_a_replaced_object_fails_with_conflict() {
    let (_, storage) = memory();
    write(&storage, "ns", "/f", b"first").await;
    let mut handle = storage.open_read("ns", &vp("/f")).await.unwrap();
    write(&storage, "ns", "/f", b"second").await;
    assert_eq!(
        handle.read_at(0, 5).await.unwrap_err().kind,
        StorageErrorKind::Conflict
    );
}

#[tokio::test]
async fn reads_past_a_part_of_the_stream_restart_where_asked() {
    let (_, storage) = memory();
    let data = contract::pattern(9, 3 * MAX_READ + 17);
    write(&storage, "ns", "/f", &data).await;
    let mut handle = storage.open_read("ns", &vp("/f")).await.unwrap();
    let offsets = [0usize, 2 * MAX_READ, 10, MAX_READ + 5, 3 * MAX_READ];
    for offset in offsets {
        let got = handle.read_at(offset as u64, 100).await.unwrap();
        assert_eq!(
            got,
            data[offset..(offset + 100).min(data.len())],
            "{offset}"
        );
    }
    let whole = handle.read_at(0, u32::MAX).await.unwrap();
    assert_eq!(whole.len(), MAX_READ, "one read is bounded");
}

#[tokio::test]
async fn a_directory_of_many_objects_is_renamed_whole() {
    let (store, storage) = memory();
    storage.mkdir("ns", &vp("/tree")).await.unwrap();
    storage.mkdir("ns", &vp("/tree/sub")).await.unwrap();
    for n in 0..25 {
        write(&storage, "ns", &format!("/tree/sub/f{n:02}"), &[n]).await;
    }
    storage
        .rename("ns", &vp("/tree"), &vp("/moved"))
        .await
        .unwrap();
    let keys = keys(&store).await;
    assert_eq!(keys.len(), 27);
    assert!(
        keys.iter().all(|key| key.starts_with("ns/moved/")),
        "{keys:?}"
    );
    assert_eq!(
        contract::get(&storage, "ns", "/moved/sub/f07", 10).await,
        [7]
    );
    assert_eq!(
        storage
            .rename("ns", &vp("/moved"), &vp("/moved/sub"))
            .await
            .unwrap_err()
            .kind,
        StorageErrorKind::AlreadyExists,
        "the target exists"
    );
    assert_eq!(
        storage
            .rename("ns", &vp("/moved"), &vp("/moved/new"))
            .await
            .unwrap_err()
            .kind,
        StorageErrorKind::Conflict,
        "a directory cannot move into itself"
    );
}

#[tokio::test]
async fn a_file_cannot_be_written_over_a_directory_or_under_a_missing_one() {
    let (_, storage) = memory();
    storage.mkdir("ns", &vp("/d")).await.unwrap();
    assert_eq!(
        storage
            .open_write("ns", &vp("/d"), WriteMode::Replace)
            .await
            .err()
            .map(|err| err.kind),
        Some(StorageErrorKind::Conflict)
    );
    assert_eq!(
        storage
            .open_write("ns", &vp("/nowhere/f"), WriteMode::Replace)
            .await
            .err()
            .map(|err| err.kind),
        Some(StorageErrorKind::NotFound)
    );
}

#[test]
fn debug_shows_no_secret() {
    let options = ObjectOptions::S3 {
        bucket: "b".into(),
        region: "r".into(),
        endpoint: None,
        access_key_id: Some("AKIDSECRETID".into()),
        secret_access_key: Some("very-secret-key".into()),
    };
    let text = format!("{options:?}");
    assert!(
        !text.contains("AKIDSECRETID") && !text.contains("very-secret-key"),
        "{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");
    let text = format!(
        "{:?}",
        ObjectOptions::Azure {
            account: "acct".into(),
            container: "c".into(),
            endpoint: None,
            access_key: Some("azure-secret".into()),
        }
    );
    assert!(!text.contains("azure-secret"), "{text}");
    let text = format!(
        "{:?}",
        ObjectOptions::Gcs {
            bucket: "b".into(),
            endpoint: None,
            credentials_json: Some("{\"private_key\": \"gcs-secret\"}".into()),
        }
    );
    assert!(!text.contains("gcs-secret"), "{text}");
}

#[test]
fn options_that_cannot_work_are_refused_with_a_reason() {
    let half_keys = ObjectOptions::S3 {
        bucket: "b".into(),
        region: "us-east-1".into(),
        endpoint: None,
        access_key_id: Some("id".into()),
        secret_access_key: None,
    };
    let no_bucket = ObjectOptions::Gcs {
        bucket: " ".into(),
        endpoint: None,
        credentials_json: None,
    };
    let bad_key = ObjectOptions::Gcs {
        bucket: "b".into(),
        endpoint: None,
        credentials_json: Some("not json".into()),
    };
    for options in [half_keys, no_bucket, bad_key] {
        let err = ObjectStorage::new(options).unwrap_err();
        assert_eq!(err.kind, StorageErrorKind::Other);
        let text = err.source.unwrap().to_string();
        assert!(text.starts_with("invalid object store options: "), "{text}");
    }
}

#[test]
fn emulator_options_build_without_credentials() {
    for options in [
        ObjectOptions::S3 {
            bucket: "b".into(),
            region: "us-east-1".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
        },
        ObjectOptions::Gcs {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            credentials_json: None,
        },
        ObjectOptions::Azure {
            account: "devstoreaccount1".into(),
            container: "c".into(),
            endpoint: Some("http://127.0.0.1:1/devstoreaccount1".into()),
            access_key: None,
        },
    ] {
        ObjectStorage::new(options).unwrap();
    }
}

#[test]
fn server_failures_are_told_from_the_status_text() {
    use StorageErrorKind::{Unavailable, Unsupported};
    for (text, kind) in [
        (
            "Server returned non-2xx status code: 503 Service Unavailable: ",
            Some(Unavailable),
        ),
        (
            "Server returned non-2xx status code: 429 Too Many Requests: x",
            Some(Unavailable),
        ),
        (
            "Server returned non-2xx status code: 501 Not Implemented: ",
            Some(Unsupported),
        ),
        (
            "Server returned error response: <Error>InternalError</Error>",
            Some(Unavailable),
        ),
        (
            "Server returned non-2xx status code: 400 Bad Request: ",
            None,
        ),
        ("something else: 503", None),
    ] {
        assert_eq!(status_kind(text), kind, "{text}");
    }
}

/// Answers every HTTP request on a loopback port with `status`.
async fn answering(status: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer =
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    format!("http://{address}")
}

fn s3_at(endpoint: String) -> ObjectStorage {
    ObjectStorage::new(ObjectOptions::S3 {
        bucket: "b".into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    })
    .unwrap()
}

#[tokio::test]
async fn store_answers_map_to_the_ports_kinds() {
    for (status, kind) in [
        ("503 Service Unavailable", StorageErrorKind::Unavailable),
        ("500 Internal Server Error", StorageErrorKind::Unavailable),
        ("501 Not Implemented", StorageErrorKind::Unsupported),
        ("403 Forbidden", StorageErrorKind::PermissionDenied),
        ("401 Unauthorized", StorageErrorKind::PermissionDenied),
        ("400 Bad Request", StorageErrorKind::Other),
    ] {
        let storage = s3_at(answering(status).await);
        let err = storage.stat("ns", &vp("/f")).await.unwrap_err();
        assert_eq!(err.kind, kind, "{status}: {:?}", err.source);
        assert!(err.source.is_some(), "the cause is kept");
    }
}

#[tokio::test]
async fn the_last_bytes_written_can_still_be_replaced_before_commit() {
    let (_, storage) = memory();
    let root = "held";
    let path = vp("/f.bin");
    let data = contract::pattern(3, 9 * 1024 * 1024 + 100);
    let mut handle = storage
        .open_write(root, &path, WriteMode::Replace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::copy_from_slice(&data))
        .await
        .unwrap();
    let end = data.len() as u64;
    // Within the held-back bytes: replaced, and what follows stays.
    handle
        .write_at(end - 1000, Bytes::from_static(b"XYZ"))
        .await
        .unwrap();
    // Before them: already sent.
    assert_eq!(
        handle
            .write_at(100, Bytes::from_static(b"no"))
            .await
            .unwrap_err()
            .kind,
        StorageErrorKind::Unsupported
    );
    assert_eq!(handle.commit().await.unwrap(), end);
    let mut expected = data.clone();
    expected[data.len() - 1000..data.len() - 997].copy_from_slice(b"XYZ");
    assert!(contract::get(&storage, root, "/f.bin", 1 << 20).await == expected);
}
