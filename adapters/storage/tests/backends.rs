//! The object-store backend against real stores: the storage contract on
//! S3, Google Cloud Storage and Azure Blob, run against the emulators that
//! `scripts/storage_peers.sh start DIR` starts and names in
//! `TOLLGATE_TEST_{S3,GCS,AZURE}_*`. A store whose variables are unset is
//! skipped with a note, unless `TOLLGATE_TEST_REQUIRE_SERVICES=1`, which
//! makes it a failure — except GCS, which no emulator installable here can
//! serve (see scripts/storage_peers.sh) and so runs only when a bucket is
//! named. The unreachable-store test needs no service.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{FileStorage, StorageErrorKind, WriteMode};
use tollgate_storage::{ObjectOptions, ObjectStorage};

fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse(text).unwrap()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The endpoint and bucket of `store`, or `None` (skipped) when unset.
fn service(store: &str, endpoint: &str, bucket: &str) -> Option<(String, String)> {
    match (env(endpoint), env(bucket)) {
        (Some(endpoint), Some(bucket)) => Some((endpoint, bucket)),
        _ if store != "GCS" && env("TOLLGATE_TEST_REQUIRE_SERVICES").as_deref() == Some("1") => {
            panic!(
                "{store}: {endpoint} and {bucket} are required (scripts/storage_peers.sh start DIR)"
            )
        }
        _ => {
            eprintln!(
                "skipped: {store} (set {endpoint} and {bucket}; see scripts/storage_peers.sh)"
            );
            None
        }
    }
}

fn s3_options(endpoint: String, bucket: String) -> ObjectOptions {
    ObjectOptions::S3 {
        bucket,
        region: "us-east-1".to_string(),
        endpoint: Some(endpoint),
        // moto takes any credentials.
        access_key_id: Some("test".to_string()),
        secret_access_key: Some("test".to_string()),
    }
}

fn gcs_options(endpoint: String, bucket: String) -> ObjectOptions {
    ObjectOptions::Gcs {
        bucket,
        endpoint: Some(endpoint),
        credentials_json: None,
    }
}

fn azure_options(endpoint: String, container: String) -> ObjectOptions {
    ObjectOptions::Azure {
        account: "devstoreaccount1".to_string(),
        container,
        endpoint: Some(endpoint),
        // Azurite's well-known key is the default for its account.
        access_key: None,
    }
}

fn s3() -> Option<ObjectStorage> {
    let (endpoint, bucket) = service("S3", "TOLLGATE_TEST_S3_ENDPOINT", "TOLLGATE_TEST_S3_BUCKET")?;
    Some(ObjectStorage::new(s3_options(endpoint, bucket)).unwrap())
}

fn gcs() -> Option<ObjectStorage> {
    let (endpoint, bucket) = service(
        "GCS",
        "TOLLGATE_TEST_GCS_ENDPOINT",
        "TOLLGATE_TEST_GCS_BUCKET",
    )?;
    Some(ObjectStorage::new(gcs_options(endpoint, bucket)).unwrap())
}

fn azure() -> Option<ObjectStorage> {
    let (endpoint, container) = service(
        "Azure",
        "TOLLGATE_TEST_AZURE_ENDPOINT",
        "TOLLGATE_TEST_AZURE_CONTAINER",
    )?;
    Some(ObjectStorage::new(azure_options(endpoint, container)).unwrap())
}

async fn passes_the_contract(store: &str, storage: Option<ObjectStorage>) {
    let Some(storage) = storage else { return };
    let root = format!("contract-{}", uuid::Uuid::new_v4());
    let started = Instant::now();
    tollgate_storage::contract::run(&storage, &root).await;
    eprintln!(
        "{store}: the storage contract passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test]
async fn s3_passes_the_storage_contract() {
    passes_the_contract("S3", s3()).await;
}

#[tokio::test]
async fn gcs_passes_the_storage_contract() {
    passes_the_contract("GCS", gcs()).await;
}

#[tokio::test]
async fn azure_passes_the_storage_contract() {
    passes_the_contract("Azure", azure()).await;
}

/// An upload that sent parts and was aborted leaves nothing behind.
async fn an_aborted_upload_leaves_no_object(storage: Option<ObjectStorage>) {
    let Some(storage) = storage else { return };
    let root = format!("abort-{}", uuid::Uuid::new_v4());
    storage.ensure_root(&root).await.unwrap();
    let mut handle = storage
        .open_write(&root, &vp("/big.bin"), WriteMode::Replace)
        .await
        .unwrap();
    // More than a part, so that one is sent before the abort.
    let data = Bytes::from(tollgate_storage::contract::pattern(5, 9 * 1024 * 1024));
    for (n, chunk) in data.chunks(1024 * 1024).enumerate() {
        handle
            .write_at((n * 1024 * 1024) as u64, Bytes::copy_from_slice(chunk))
            .await
            .unwrap();
    }
    handle.abort().await.unwrap();
    assert_eq!(
        storage.stat(&root, &vp("/big.bin")).await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    assert!(storage.list(&root, &vp("/")).await.unwrap().is_empty());
}

#[tokio::test]
async fn s3_an_aborted_upload_leaves_no_object() {
    an_aborted_upload_leaves_no_object(s3()).await;
}

#[tokio::test]
async fn gcs_an_aborted_upload_leaves_no_object() {
    an_aborted_upload_leaves_no_object(gcs()).await;
}

#[tokio::test]
async fn azure_an_aborted_upload_leaves_no_object() {
    an_aborted_upload_leaves_no_object(azure()).await;
}

/// A download that started before its file was replaced fails instead of
/// mixing the two versions (reads name the version they opened).
async fn a_download_of_a_replaced_file_fails(storage: Option<ObjectStorage>) {
    let Some(storage) = storage else { return };
    let root = format!("replace-{}", uuid::Uuid::new_v4());
    storage.ensure_root(&root).await.unwrap();
    let put = tollgate_storage::contract::put;
    put(&storage, &root, "/f.bin", b"first version").await;
    let mut handle = storage.open_read(&root, &vp("/f.bin")).await.unwrap();
    assert_eq!(handle.read_at(0, 5).await.unwrap(), &b"first"[..]);
    put(&storage, &root, "/f.bin", b"second version").await;
    assert_eq!(
        handle.read_at(0, 5).await.unwrap_err().kind,
        StorageErrorKind::Conflict,
        "a read backwards asks the store again and meets the replacement"
    );
}

#[tokio::test]
async fn s3_a_download_of_a_replaced_file_fails() {
    a_download_of_a_replaced_file_fails(s3()).await;
}

#[tokio::test]
async fn gcs_a_download_of_a_replaced_file_fails() {
    a_download_of_a_replaced_file_fails(gcs()).await;
}

#[tokio::test]
async fn azure_a_download_of_a_replaced_file_fails() {
    a_download_of_a_replaced_file_fails(azure()).await;
}

/// Runs `work`, failing if it hangs: the point is "seconds, not minutes".
async fn within_a_minute<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable() {
    // A loopback port that was just free: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    for (store, options) in [
        ("S3", s3_options(closed.clone(), "b".to_string())),
        ("GCS", gcs_options(closed.clone(), "b".to_string())),
        (
            "Azure",
            azure_options(format!("{closed}/devstoreaccount1"), "c".to_string()),
        ),
    ] {
        let storage = ObjectStorage::new(options).unwrap();
        let started = Instant::now();
        let err = within_a_minute(store, storage.stat("ns", &vp("/f")))
            .await
            .unwrap_err();
        assert_eq!(
            err.kind,
            StorageErrorKind::Unavailable,
            "{store}: {:?}",
            err.source
        );
        eprintln!(
            "{store}: unreachable answered Unavailable in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
}

/// A directory larger than one listing page is read page by page, each
/// page asked for only when the previous one is consumed.
async fn a_large_directory_lists_in_pages(storage: Option<ObjectStorage>) {
    use futures::StreamExt;
    let Some(storage) = storage else { return };
    let root = format!("pages-{}", uuid::Uuid::new_v4());
    storage.ensure_root(&root).await.unwrap();
    storage.mkdir(&root, &vp("/many")).await.unwrap();
    let count = 2_050;
    let storage = std::sync::Arc::new(storage);
    futures::stream::iter(0..count)
        .map(|n| {
            let (storage, root) = (storage.clone(), root.clone());
            async move {
                let path = vp(&format!("/many/f{n:05}"));
                let mut handle = storage
                    .open_write(&root, &path, WriteMode::Replace)
                    .await
                    .unwrap();
                handle.write_at(0, Bytes::from_static(b"x")).await.unwrap();
                handle.commit().await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let mut pages = storage.list_pages(&root, &vp("/many")).await.unwrap();
    let mut sizes = Vec::new();
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.unwrap();
        sizes.push(page.len());
        names.extend(page.into_iter().map(|e| e.name));
    }
    assert!(sizes.len() >= 3, "pages of at most 1000 entries: {sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 1000), "{sizes:?}");
    let expected: Vec<String> = (0..count).map(|n| format!("f{n:05}")).collect();
    assert_eq!(names, expected, "every entry once, in key order");
}

#[tokio::test]
async fn s3_lists_a_large_directory_in_pages() {
    a_large_directory_lists_in_pages(s3()).await;
}

#[tokio::test]
async fn azure_lists_a_large_directory_in_pages() {
    a_large_directory_lists_in_pages(azure()).await;
}
