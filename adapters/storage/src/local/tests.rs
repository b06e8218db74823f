//! Tests of the parent module.
use super::*;

fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse(text).unwrap()
}

#[tokio::test]
async fn a_replacing_write_is_invisible_until_commit_and_gone_after_abort() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();
    let mut handle = storage
        .open_write(root, &vp("/a.txt"), WriteMode::Replace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert_eq!(
        storage.stat(root, &vp("/a.txt")).await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    assert!(
        storage.list(root, &vp("/")).await.unwrap().is_empty(),
        "staging files are hidden"
    );
    assert_eq!(handle.commit().await.unwrap(), 5);
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"hello");

    let mut handle = storage
        .open_write(root, &vp("/a.txt"), WriteMode::Replace)
        .await
        .unwrap();
    handle
        .write_at(0, Bytes::from_static(b"partial"))
        .await
        .unwrap();
    handle.abort().await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("a.txt")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no staging file is left behind"
    );
}

#[tokio::test]
async fn symlinks_pointing_out_of_the_root_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        dir.path().join("secret-link"),
    )
    .unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();
    let refused = [
        storage
            .open_read(root, &vp("/out/secret"))
            .await
            .err()
            .unwrap()
            .kind,
        storage
            .open_read(root, &vp("/secret-link"))
            .await
            .err()
            .unwrap()
            .kind,
        storage.list(root, &vp("/out")).await.unwrap_err().kind,
        storage
            .open_write(root, &vp("/out/new"), WriteMode::Replace)
            .await
            .err()
            .unwrap()
            .kind,
        storage
            .open_write(root, &vp("/secret-link"), WriteMode::InPlace)
            .await
            .err()
            .unwrap()
            .kind,
        storage.mkdir(root, &vp("/out/d")).await.unwrap_err().kind,
    ];
    assert!(
        refused
            .iter()
            .all(|k| *k == StorageErrorKind::PermissionDenied),
        "{refused:?}"
    );
}

#[tokio::test]
async fn rename_refuses_to_overwrite_and_rmdir_refuses_a_full_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();
    std::fs::write(dir.path().join("a"), b"a").unwrap();
    std::fs::write(dir.path().join("b"), b"b").unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("d/x"), b"x").unwrap();
    assert_eq!(
        storage
            .rename(root, &vp("/a"), &vp("/b"))
            .await
            .unwrap_err()
            .kind,
        StorageErrorKind::AlreadyExists
    );
    assert_eq!(
        storage.rmdir(root, &vp("/d")).await.unwrap_err().kind,
        StorageErrorKind::Conflict
    );
    assert_eq!(
        storage.remove(root, &vp("/d")).await.unwrap_err().kind,
        StorageErrorKind::Conflict
    );
    storage.rename(root, &vp("/a"), &vp("/d/a")).await.unwrap();
    assert_eq!(std::fs::read(dir.path().join("d/a")).unwrap(), b"a");
}

#[tokio::test]
async fn local_disk_passes_the_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("home");
    crate::contract::run(&LocalStorage::new(), root.to_str().unwrap()).await;
}

#[tokio::test]
async fn symlinks_within_the_root_are_followed_and_dangling_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::fs::write(dir.path().join("real/file"), b"inside").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling")).unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();

    let meta = storage.stat(root, &vp("/alias/file")).await.unwrap();
    assert_eq!(meta.size, 6);
    let mut write = storage
        .open_write(root, &vp("/alias/new"), WriteMode::Replace)
        .await
        .unwrap();
    write
        .write_at(0, Bytes::from_static(b"via alias"))
        .await
        .unwrap();
    write.commit().await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("real/new")).unwrap(),
        b"via alias"
    );

    let dangling = storage
        .open_write(root, &vp("/dangling"), WriteMode::Replace)
        .await
        .err()
        .unwrap();
    assert_eq!(dangling.kind, StorageErrorKind::PermissionDenied);
    assert!(!dir.path().join("gone").exists());

    // A file where a directory is expected is a conflict, not a new name.
    let under_file = storage
        .open_write(root, &vp("/real/file/x"), WriteMode::Replace)
        .await
        .err()
        .unwrap();
    assert_eq!(under_file.kind, StorageErrorKind::Conflict);
}
