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

#[tokio::test]
async fn gathered_writes_land_in_order_with_out_of_order_ones_between() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();
    let mut handle = storage
        .open_write(root, &vp("/g.bin"), WriteMode::Replace)
        .await
        .unwrap();
    // What the file must hold, written the same way.
    let mut model = vec![0u8; 0];
    let mut write = async |handle: &mut Box<dyn WriteHandle>, offset: usize, data: Vec<u8>| {
        if model.len() < offset + data.len() {
            model.resize(offset + data.len(), 0);
        }
        model[offset..offset + data.len()].copy_from_slice(&data);
        handle
            .write_at(offset as u64, Bytes::from(data))
            .await
            .unwrap();
        model.clone()
    };
    // Sequential 32 KiB writes past several gathers' worth, a rewrite of
    // bytes still gathered, one of bytes already on disk, a gap, and one
    // write larger than a gather.
    let mut offset = 0;
    for seed in 0..20u8 {
        write(
            &mut handle,
            offset,
            crate::contract::pattern(seed, 32 * 1024),
        )
        .await;
        offset += 32 * 1024;
    }
    write(&mut handle, offset - 100, crate::contract::pattern(50, 300)).await;
    write(&mut handle, 10, crate::contract::pattern(51, 1000)).await;
    write(
        &mut handle,
        offset + 5000,
        crate::contract::pattern(52, 4096),
    )
    .await;
    let model = write(
        &mut handle,
        2_000_000,
        crate::contract::pattern(53, 600 * 1024),
    )
    .await;
    assert_eq!(handle.size().await.unwrap(), model.len() as u64);
    // A read sees every write so far, gathered or not.
    assert_eq!(
        handle.read_at(offset as u64 - 200, 400).await.unwrap(),
        model[offset - 200..offset + 200]
    );
    assert_eq!(handle.commit().await.unwrap(), model.len() as u64);
    assert!(std::fs::read(dir.path().join("g.bin")).unwrap() == model);

    // An aborted upload in place keeps every write, gathered ones included.
    let mut handle = storage
        .open_write(root, &vp("/g.bin"), WriteMode::InPlace)
        .await
        .unwrap();
    let mut model = model;
    for seed in 0..3u8 {
        let at = model.len();
        let data = crate::contract::pattern(60 + seed, 32 * 1024);
        model.extend_from_slice(&data);
        handle.write_at(at as u64, Bytes::from(data)).await.unwrap();
    }
    handle.abort().await.unwrap();
    assert!(std::fs::read(dir.path().join("g.bin")).unwrap() == model);
}

#[tokio::test]
async fn writes_past_the_write_behind_stretches_keep_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    // An upload in place onto a file that already holds bytes: its
    // stretches are counted from its end.
    let mut model = crate::contract::pattern(70, 4096);
    std::fs::write(dir.path().join("w.bin"), &model).unwrap();
    let storage = LocalStorage::new();
    let mut handle = storage
        .open_write(root, &vp("/w.bin"), WriteMode::InPlace)
        .await
        .unwrap();
    let chunk = 1024 * 1024;
    let stretches = 2 * WRITE_BEHIND as usize + 3 * chunk;
    for seed in 0..(stretches / chunk) as u8 {
        let data = crate::contract::pattern(seed, chunk);
        let at = model.len();
        model.extend_from_slice(&data);
        handle.write_at(at as u64, Bytes::from(data)).await.unwrap();
    }
    // A rewrite inside a stretch already handed to the write-back.
    let data = crate::contract::pattern(90, chunk);
    model[chunk..2 * chunk].copy_from_slice(&data);
    handle
        .write_at(chunk as u64, Bytes::from(data))
        .await
        .unwrap();
    assert_eq!(handle.commit().await.unwrap(), model.len() as u64);
    assert!(std::fs::read(dir.path().join("w.bin")).unwrap() == model);
}

#[tokio::test]
async fn sequential_reads_are_read_ahead_and_others_read_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let data = crate::contract::pattern(9, 1_000_003);
    std::fs::write(dir.path().join("r.bin"), &data).unwrap();
    let storage = LocalStorage::new();
    let mut handle = storage.open_read(root, &vp("/r.bin")).await.unwrap();
    let mut got = Vec::new();
    let mut offset = 0usize;
    while offset < data.len() {
        let chunk = handle.read_at(offset as u64, 32 * 1024).await.unwrap();
        assert!(!chunk.is_empty(), "no early end at {offset}");
        assert_eq!(chunk, data[offset..offset + chunk.len()], "at {offset}");
        offset += chunk.len();
        got.extend_from_slice(&chunk);
        if offset == 320 * 1024 {
            // A read back, inside and before what was read ahead.
            assert_eq!(
                handle.read_at(300 * 1024, 4096).await.unwrap(),
                data[300 * 1024..304 * 1024]
            );
            assert_eq!(handle.read_at(5, 10).await.unwrap(), data[5..15]);
        }
    }
    assert_eq!(got.len(), data.len());
    assert!(
        handle
            .read_at(offset as u64, 32 * 1024)
            .await
            .unwrap()
            .is_empty()
    );

    // Content changed after a read ahead is seen beyond the buffered part.
    let mut handle = storage.open_read(root, &vp("/r.bin")).await.unwrap();
    handle.read_at(0, 1024).await.unwrap();
    handle.read_at(1024, 1024).await.unwrap();
    let grown = crate::contract::pattern(10, 2_000_000);
    std::fs::write(dir.path().join("r.bin"), &grown).unwrap();
    assert_eq!(
        handle.read_at(1_500_000, 1024).await.unwrap(),
        grown[1_500_000..1_501_024]
    );
}

/// Drops `file`'s pages from the page cache, as memory pressure would.
#[cfg(target_os = "linux")]
fn drop_cached(file: &File) {
    use std::os::fd::AsRawFd;
    file.sync_all().unwrap();
    // SAFETY: the descriptor belongs to `file`, which outlives the call;
    // posix_fadvise reads no memory of this process.
    #[allow(unsafe_code)]
    let res = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(res, 0);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn reads_of_cached_bytes_skip_the_pool_and_others_still_read_every_byte() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let data = crate::contract::pattern(11, 600_001);
    let path = dir.path().join("c.bin");
    std::fs::write(&path, &data).unwrap();
    let file = File::open(&path).unwrap();
    // Just written, the bytes are cached: read without a trip, exactly.
    let got = read_cached(&file, 100, GATHER).expect("just-written bytes are cached");
    assert_eq!(got, data[100..100 + GATHER as usize]);
    let tail = read_cached(&file, 600_000 - 5, GATHER).expect("cached up to the end");
    assert_eq!(tail, data[600_000 - 5..]);
    assert!(read_cached(&file, 700_000, 10).unwrap().is_empty());

    // Pages the kernel would have to read from the disk: where it can
    // tell (not on a filesystem kept in memory), the cached read declines.
    drop_cached(&file);
    if let Some(got) = read_cached(&file, 0, GATHER) {
        assert_eq!(got, data[..GATHER as usize]);
    }
    let storage = LocalStorage::new();
    let mut handle = storage.open_read(root, &vp("/c.bin")).await.unwrap();
    let mut offset = 0;
    while offset < data.len() {
        let chunk = handle.read_at(offset as u64, 32 * 1024).await.unwrap();
        assert_eq!(chunk, data[offset..offset + chunk.len()], "at {offset}");
        assert!(!chunk.is_empty(), "no early end at {offset}");
        offset += chunk.len();
        if offset == 256 * 1024 {
            drop_cached(&file);
        }
    }
}

#[tokio::test]
async fn a_stat_with_a_staged_replacement_answers_as_the_two_calls_do() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    std::fs::write(dir.path().join("real/file"), b"inside").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real/file"), dir.path().join("link")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone"), dir.path().join("dangling")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("away")).unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();

    let kind = |err: &StorageError| err.kind;
    for path in [
        "/",
        "/real",
        "/real/file",
        "/real/new",
        "/alias/file",
        "/alias/new",
        "/link",
        "/dangling",
        "/out/new",
        "/away",
        "/missing/new",
        "/real/file/under",
    ] {
        let stat = storage.stat(root, &vp(path)).await;
        let replacing = storage.stat_and_replace(root, &vp(path)).await;
        let replacing = match (stat, replacing) {
            (Ok(meta), Ok(replacing)) => {
                assert_eq!(replacing.existing.as_ref(), Some(&meta), "{path}: found");
                replacing
            }
            (Err(err), Ok(replacing)) if err.kind == StorageErrorKind::NotFound => {
                assert_eq!(replacing.existing, None, "{path}: not found");
                replacing
            }
            (Err(stat), Err(both)) => {
                assert_eq!(stat.kind, both.kind, "{path}: the stat's error");
                continue;
            }
            (stat, both) => panic!(
                "{path}: stat gave {:?}, stat_and_replace {:?}",
                stat.map_err(|err| err.kind),
                both.map(|replacing| replacing.existing)
                    .map_err(|err| err.kind)
            ),
        };
        if replacing.existing.as_ref().map(|meta| meta.kind) == Some(FileKind::Dir) {
            assert_eq!(
                replacing.handle.err().map(|err| err.kind),
                Some(StorageErrorKind::Conflict),
                "{path}: a directory is not replaced"
            );
            continue;
        }
        let opened = storage
            .open_write(root, &vp(path), WriteMode::Replace)
            .await;
        match (opened, replacing.handle) {
            (Ok(opened), Ok(mut staged)) => {
                opened.abort().await.unwrap();
                let data = format!("replaced {path}");
                staged
                    .write_at(0, Bytes::from(data.clone().into_bytes()))
                    .await
                    .unwrap();
                staged.commit().await.unwrap();
                assert_eq!(
                    crate::contract::get(&storage, root, path, 4096).await,
                    data.as_bytes(),
                    "{path}: the replacement landed where open_write writes"
                );
            }
            (Err(opened), Err(staged)) => {
                assert_eq!(kind(&opened), kind(&staged), "{path}: the open's error");
            }
            (opened, staged) => panic!(
                "{path}: open_write gave {:?}, the staged replacement {:?}",
                opened.map(|_| ()).map_err(|err| err.kind),
                staged.map(|_| ()).map_err(|err| err.kind)
            ),
        }
    }
    assert_eq!(
        std::fs::read(dir.path().join("real/file")).unwrap(),
        b"replaced /link",
        "a link's target is replaced through it"
    );
    assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"s");
    assert_eq!(
        names_in(&dir.path().join("real")),
        ["file", "new"],
        "no staging file is left behind"
    );
}

#[tokio::test]
async fn a_stat_answers_from_the_walk_what_an_lstat_says() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/file"), b"twelve bytes").unwrap();
    std::os::unix::fs::symlink("file", dir.path().join("a/b/link")).unwrap();
    let root = dir.path().to_str().unwrap();
    let storage = LocalStorage::new();

    for path in ["/a", "/a/b", "/a/b/file", "/a/b/link", "/"] {
        let real = dir.path().join(path.trim_start_matches('/'));
        let expected = meta_of(&std::fs::symlink_metadata(&real).unwrap());
        assert_eq!(
            storage.stat(root, &vp(path)).await.unwrap(),
            expected,
            "{path}"
        );
    }
    for (path, kind) in [
        ("/a/b/none", StorageErrorKind::NotFound),
        ("/a/none/file", StorageErrorKind::NotFound),
        ("/a/b/file/under", StorageErrorKind::Conflict),
    ] {
        let err = storage.stat(root, &vp(path)).await.unwrap_err();
        assert_eq!(err.kind, kind, "{path}");
    }
}

/// The names in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The replacement `stat_and_replace` stages for `path`.
async fn staged(storage: &LocalStorage, root: &str, path: &str) -> Box<dyn WriteHandle> {
    storage
        .stat_and_replace(root, &vp(path))
        .await
        .unwrap()
        .handle
        .unwrap()
}

/// The same whether the commit syncs (on the blocking pool) or not (a
/// small one made in place).
#[tokio::test]
async fn a_staged_replacement_creates_its_file_with_its_first_bytes_on_disk() {
    for syncs in [true, false] {
        a_staged_replacement_lands_whole(LocalStorage::with_sync_commits(syncs)).await;
    }
}

async fn a_staged_replacement_lands_whole(storage: LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    std::fs::write(dir.path().join("kept"), b"old").unwrap();
    std::fs::set_permissions(
        dir.path().join("kept"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // A small upload: gathered in memory, then created, written, synced
    // (when commits sync) and renamed by the commit.
    let mut small = staged(&storage, root, "/kept").await;
    small.write_at(0, Bytes::from_static(b"new")).await.unwrap();
    assert_eq!(names_in(dir.path()), ["kept"], "nothing staged on disk yet");
    assert_eq!(small.read_at(0, 16).await.unwrap(), &b"new"[..]);
    let on_disk = names_in(dir.path());
    assert_eq!(
        on_disk.len(),
        2,
        "a read-back hands the bytes to a staging file"
    );
    assert_eq!(small.commit().await.unwrap(), 3);
    assert_eq!(std::fs::read(dir.path().join("kept")).unwrap(), b"new");
    let mode = std::fs::metadata(dir.path().join("kept"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "a replacement keeps the file's permissions"
    );

    // Bits the umask would clear (group and others' write, under the usual
    // 022) are set on the staging file after its creation.
    let other = tempfile::tempdir().unwrap();
    let shared_path = other.path().join("shared");
    std::fs::write(&shared_path, b"old").unwrap();
    std::fs::set_permissions(&shared_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut shared = staged(&storage, other.path().to_str().unwrap(), "/shared").await;
    shared
        .write_at(0, Bytes::from_static(b"new"))
        .await
        .unwrap();
    shared.commit().await.unwrap();
    let meta = std::fs::metadata(&shared_path).unwrap();
    assert_eq!(
        (
            std::fs::read(&shared_path).unwrap(),
            meta.permissions().mode() & 0o7777
        ),
        (b"new".to_vec(), 0o666)
    );

    // Nothing written at all: the commit still leaves an empty new file, 0644.
    let empty = staged(&storage, root, "/empty").await;
    assert_eq!(empty.commit().await.unwrap(), 0);
    let meta = std::fs::metadata(dir.path().join("empty")).unwrap();
    assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o644));

    // A large write goes to disk at once, through a staging file created for it.
    let mut large = staged(&storage, root, "/large").await;
    let data = Bytes::from(vec![7u8; GATHER as usize]);
    large.write_at(0, data.clone()).await.unwrap();
    assert_eq!(names_in(dir.path()).len(), 3, "the large write is staged");
    large.abort().await.unwrap();
    assert_eq!(names_in(dir.path()), ["empty", "kept"]);

    // An upload aborted before its bytes reached the disk leaves nothing.
    let mut aborted = staged(&storage, root, "/aborted").await;
    aborted.write_at(0, Bytes::from_static(b"x")).await.unwrap();
    aborted.abort().await.unwrap();
    assert_eq!(names_in(dir.path()), ["empty", "kept"]);

    // More gathered than a small write, all of it handed over by the commit.
    let mut gathered = staged(&storage, root, "/gathered").await;
    let data: Vec<u8> = (0..SMALL * 3 / 2).map(|i| (i % 251) as u8).collect();
    let (first, second) = data.split_at(SMALL as usize);
    gathered
        .write_at(0, Bytes::copy_from_slice(first))
        .await
        .unwrap();
    gathered
        .write_at(u64::from(SMALL), Bytes::copy_from_slice(second))
        .await
        .unwrap();
    assert_eq!(
        names_in(dir.path()),
        ["empty", "kept"],
        "all of it gathered"
    );
    assert_eq!(gathered.commit().await.unwrap(), data.len() as u64);
    assert!(std::fs::read(dir.path().join("gathered")).unwrap() == data);
    assert_eq!(names_in(dir.path()), ["empty", "gathered", "kept"]);
}

/// A replacement of `/docs/report` holding four gathered bytes, whose
/// directory is then removed.
async fn orphaned(storage: &LocalStorage, dir: &Path) -> Box<dyn WriteHandle> {
    std::fs::create_dir(dir.join("docs")).unwrap();
    let mut handle = staged(storage, dir.to_str().unwrap(), "/docs/report").await;
    handle
        .write_at(0, Bytes::from_static(b"data"))
        .await
        .unwrap();
    std::fs::remove_dir(dir.join("docs")).unwrap();
    handle
}

#[tokio::test]
async fn a_staged_replacement_whose_directory_went_away_fails_and_leaves_nothing() {
    for syncs in [true, false] {
        an_orphaned_replacement_fails(LocalStorage::with_sync_commits(syncs)).await;
    }
}

async fn an_orphaned_replacement_fails(storage: LocalStorage) {
    let dir = tempfile::tempdir().unwrap();
    let handle = orphaned(&storage, dir.path()).await;
    assert_eq!(
        handle.commit().await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    assert!(names_in(dir.path()).is_empty());

    // A write that cannot create the staging file: the gathered bytes are
    // gone with it, and the size says so.
    let mut handle = orphaned(&storage, dir.path()).await;
    let large = Bytes::from(vec![1u8; GATHER as usize]);
    assert_eq!(
        handle.write_at(4, large).await.unwrap_err().kind,
        StorageErrorKind::NotFound
    );
    assert_eq!(handle.size().await.unwrap(), 0);
    handle.abort().await.unwrap();
    assert!(names_in(dir.path()).is_empty());
}
