//! The storage port's behaviour, as one suite every backend must pass.
//!
//! `run` drives a backend through the port only: not-found, already-exists,
//! directories, range reads, replacing and resumed writes, a stat with a
//! staged replacement, rename, delete,
//! listing and a file larger than any buffer or part size. The local and
//! encrypted backends run it under `cargo test`; the object stores and the
//! SFTP proxy run it in scripts/ci against real emulators and servers.
//! It panics on the first broken expectation, naming it.

use bytes::Bytes;
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{
    FileKind, FileStorage, ReadHandle, StorageErrorKind, WriteHandle, WriteMode,
};

/// Size of the large file: crosses every chunk, part and buffer boundary.
pub const LARGE_FILE: usize = 24 * 1024 * 1024 + 12_345;

/// How the suite writes: the SFTP client's usual request size.
const WRITE_SIZE: usize = 32 * 1024;

fn vp(text: &str) -> VirtualPath {
    VirtualPath::parse(text).expect("a valid test path")
}

/// Deterministic content: byte `i` of a file made from `seed`.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

async fn expect_kind<T>(
    what: &str,
    result: Result<T, tollgate_ports::outbound::StorageError>,
    kind: StorageErrorKind,
) {
    match result {
        Ok(_) => panic!("{what}: succeeded, expected {kind:?}"),
        Err(err) => assert_eq!(err.kind, kind, "{what}: {:?}", err.source),
    }
}

/// Writes `data` as a new file through a replacing write, in `WRITE_SIZE` pieces.
pub async fn put(storage: &dyn FileStorage, root: &str, path: &str, data: &[u8]) {
    let mut handle = storage
        .open_write(root, &vp(path), WriteMode::Replace)
        .await
        .unwrap_or_else(|err| panic!("open {path} for writing: {err:?} {:?}", err.source));
    write_all(handle.as_mut(), 0, data).await;
    let size = handle
        .commit()
        .await
        .unwrap_or_else(|err| panic!("commit {path}: {err:?} {:?}", err.source));
    assert_eq!(size, data.len() as u64, "committed size of {path}");
}

async fn write_all(handle: &mut dyn WriteHandle, start: u64, data: &[u8]) {
    let data = Bytes::copy_from_slice(data);
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + WRITE_SIZE).min(data.len());
        handle
            .write_at(start + offset as u64, data.slice(offset..end))
            .await
            .unwrap_or_else(|err| panic!("write at {offset}: {err:?} {:?}", err.source));
        offset = end;
    }
}

/// Reads a whole file back in requests of `len` bytes.
pub async fn get(storage: &dyn FileStorage, root: &str, path: &str, len: u32) -> Vec<u8> {
    let mut handle = storage
        .open_read(root, &vp(path))
        .await
        .unwrap_or_else(|err| panic!("open {path} for reading: {err:?} {:?}", err.source));
    read_all(handle.as_mut(), len).await
}

async fn read_all(handle: &mut dyn ReadHandle, len: u32) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let chunk = handle
            .read_at(out.len() as u64, len)
            .await
            .unwrap_or_else(|err| panic!("read at {}: {err:?} {:?}", out.len(), err.source));
        if chunk.is_empty() {
            return out;
        }
        out.extend_from_slice(&chunk);
    }
}

/// A directory's names and kinds, checking that the paged listing holds
/// the same entries as the whole one.
async fn names(storage: &dyn FileStorage, root: &str, path: &str) -> Vec<(String, FileKind)> {
    let whole: Vec<(String, FileKind)> = storage
        .list(root, &vp(path))
        .await
        .unwrap_or_else(|err| panic!("list {path}: {err:?} {:?}", err.source))
        .into_iter()
        .map(|entry| (entry.name, entry.meta.kind))
        .collect();
    let mut paged = Vec::new();
    let mut pages = storage
        .list_pages(root, &vp(path))
        .await
        .unwrap_or_else(|err| panic!("list_pages {path}: {err:?} {:?}", err.source));
    while let Some(page) = futures::StreamExt::next(&mut pages).await {
        let page = page.unwrap_or_else(|err| panic!("a page of {path}: {err:?}"));
        paged.extend(page.into_iter().map(|entry| (entry.name, entry.meta.kind)));
    }
    paged.sort_by(|a, b| a.0.cmp(&b.0));
    let mut sorted = whole.clone();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        paged, sorted,
        "the paged listing of {path} holds the same entries"
    );
    whole
}

/// Runs the whole suite in `root`, which must be empty or absent.
pub async fn run(storage: &dyn FileStorage, root: &str) {
    storage
        .ensure_root(root)
        .await
        .unwrap_or_else(|err| panic!("ensure_root: {err:?} {:?}", err.source));
    not_found(storage, root).await;
    files_and_directories(storage, root).await;
    range_reads(storage, root).await;
    replacing_and_resuming(storage, root).await;
    staged_replacements(storage, root).await;
    rename_and_delete(storage, root).await;
    large_file(storage, root).await;
    synced_writes(storage, root).await;
}

async fn not_found(storage: &dyn FileStorage, root: &str) {
    use StorageErrorKind::NotFound;
    expect_kind(
        "stat missing",
        storage.stat(root, &vp("/missing")).await,
        NotFound,
    )
    .await;
    expect_kind(
        "open_read missing",
        storage.open_read(root, &vp("/missing")).await,
        NotFound,
    )
    .await;
    expect_kind(
        "list missing",
        storage.list(root, &vp("/missing")).await,
        NotFound,
    )
    .await;
    expect_kind(
        "remove missing",
        storage.remove(root, &vp("/missing")).await,
        NotFound,
    )
    .await;
    expect_kind(
        "rename missing",
        storage.rename(root, &vp("/missing"), &vp("/other")).await,
        NotFound,
    )
    .await;
    expect_kind(
        "mkdir under a missing parent",
        storage.mkdir(root, &vp("/missing/dir")).await,
        NotFound,
    )
    .await;
    expect_kind(
        "set_times missing",
        storage.set_times(root, &vp("/missing"), 1, 1).await,
        NotFound,
    )
    .await;
    assert!(
        storage
            .list(root, &vp("/"))
            .await
            .expect("list root")
            .is_empty(),
        "a new root is empty"
    );
}

async fn files_and_directories(storage: &dyn FileStorage, root: &str) {
    storage
        .mkdir(root, &vp("/docs"))
        .await
        .expect("mkdir /docs");
    expect_kind(
        "mkdir existing",
        storage.mkdir(root, &vp("/docs")).await,
        StorageErrorKind::AlreadyExists,
    )
    .await;
    assert_eq!(
        storage
            .stat(root, &vp("/docs"))
            .await
            .expect("stat dir")
            .kind,
        FileKind::Dir
    );
    assert!(
        storage
            .list(root, &vp("/docs"))
            .await
            .expect("list empty dir")
            .is_empty(),
        "a new directory is empty"
    );
    storage
        .mkdir(root, &vp("/docs/inner"))
        .await
        .expect("mkdir nested");
    put(storage, root, "/docs/b.txt", b"bee").await;
    put(storage, root, "/docs/a.txt", b"a").await;
    put(storage, root, "/empty", b"").await;
    assert_eq!(
        names(storage, root, "/docs").await,
        vec![
            ("a.txt".to_string(), FileKind::File),
            ("b.txt".to_string(), FileKind::File),
            ("inner".to_string(), FileKind::Dir),
        ],
        "a listing is sorted by name"
    );
    let meta = storage.stat(root, &vp("/docs/b.txt")).await.expect("stat");
    assert_eq!((meta.kind, meta.size), (FileKind::File, 3));
    let empty = storage.stat(root, &vp("/empty")).await.expect("stat empty");
    assert_eq!((empty.kind, empty.size), (FileKind::File, 0));
    assert!(get(storage, root, "/empty", 4096).await.is_empty());
    storage
        .set_times(root, &vp("/docs/b.txt"), 1_600_000_000, 1_600_000_000)
        .await
        .expect("set_times on a file");
    expect_kind(
        "rmdir non-empty",
        storage.rmdir(root, &vp("/docs")).await,
        StorageErrorKind::Conflict,
    )
    .await;
    expect_kind(
        "open_read a directory",
        async {
            let mut handle = storage.open_read(root, &vp("/docs")).await?;
            let meta = handle.meta().await?;
            if meta.kind == FileKind::Dir {
                return Err(tollgate_ports::outbound::StorageError::of(
                    StorageErrorKind::Conflict,
                ));
            }
            Ok(())
        }
        .await,
        StorageErrorKind::Conflict,
    )
    .await;
    storage
        .rmdir(root, &vp("/docs/inner"))
        .await
        .expect("rmdir empty");
    expect_kind(
        "stat removed dir",
        storage.stat(root, &vp("/docs/inner")).await,
        StorageErrorKind::NotFound,
    )
    .await;
}

async fn range_reads(storage: &dyn FileStorage, root: &str) {
    let data = pattern(7, 300_001);
    put(storage, root, "/ranges.bin", &data).await;
    let mut handle = storage
        .open_read(root, &vp("/ranges.bin"))
        .await
        .expect("open ranges");
    assert_eq!(handle.meta().await.expect("meta").size, data.len() as u64);
    for (offset, len) in [
        (0usize, 1u32),
        (1, 100),
        (65_535, 2),
        (65_536, 65_536),
        (131_000, 70_000),
        (299_990, 100),
        (123_457, 32_768),
    ] {
        let mut got = Vec::new();
        while got.len() < len as usize {
            let chunk = handle
                .read_at((offset + got.len()) as u64, len - got.len() as u32)
                .await
                .expect("range read");
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        let end = (offset + len as usize).min(data.len());
        assert_eq!(got, data[offset..end], "range {offset}+{len}");
    }
    assert!(
        handle
            .read_at(data.len() as u64, 10)
            .await
            .expect("read at end")
            .is_empty(),
        "a read at the end is empty"
    );
    assert!(
        handle
            .read_at(data.len() as u64 + 1000, 10)
            .await
            .expect("read past end")
            .is_empty(),
        "a read past the end is empty"
    );
}

async fn replacing_and_resuming(storage: &dyn FileStorage, root: &str) {
    let first = pattern(1, 100_000);
    put(storage, root, "/resume.bin", &first[..70_000]).await;

    // A replacing write is invisible until commit and gone after abort.
    let mut handle = storage
        .open_write(root, &vp("/resume.bin"), WriteMode::Replace)
        .await
        .expect("open replace");
    write_all(handle.as_mut(), 0, b"replacement").await;
    assert_eq!(
        storage
            .stat(root, &vp("/resume.bin"))
            .await
            .expect("stat")
            .size,
        70_000,
        "the old content stays visible during a replacing write"
    );
    handle.abort().await.expect("abort");
    assert_eq!(
        get(storage, root, "/resume.bin", 65_536).await,
        first[..70_000]
    );
    let mut handle = storage
        .open_write(root, &vp("/new-aborted"), WriteMode::Replace)
        .await
        .expect("open new");
    write_all(handle.as_mut(), 0, b"partial").await;
    handle.abort().await.expect("abort new");
    expect_kind(
        "an aborted new file",
        storage.stat(root, &vp("/new-aborted")).await,
        StorageErrorKind::NotFound,
    )
    .await;
    assert_eq!(
        names(storage, root, "/").await,
        vec![
            ("docs".to_string(), FileKind::Dir),
            ("empty".to_string(), FileKind::File),
            ("ranges.bin".to_string(), FileKind::File),
            ("resume.bin".to_string(), FileKind::File),
        ],
        "no staged or aborted write is listed"
    );

    // Resume: an in-place write continues at the current size.
    let mut handle = storage
        .open_write(root, &vp("/resume.bin"), WriteMode::InPlace)
        .await
        .expect("open in place");
    assert_eq!(handle.size().await.expect("size"), 70_000);
    write_all(handle.as_mut(), 70_000, &first[70_000..]).await;
    assert_eq!(handle.size().await.expect("size after"), 100_000);
    assert_eq!(
        read_back(handle.as_mut(), 0, 100_000).await,
        first,
        "a write handle reads back what it holds"
    );
    assert_eq!(handle.commit().await.expect("commit resume"), 100_000);
    assert_eq!(get(storage, root, "/resume.bin", 32_768).await, first);
    assert_eq!(
        storage
            .stat(root, &vp("/resume.bin"))
            .await
            .expect("stat")
            .size,
        100_000
    );
}

/// `stat_and_replace`: what a stat finds, and a replacement staged as a
/// replacing `open_write` stages one.
async fn staged_replacements(storage: &dyn FileStorage, root: &str) {
    let old = get(storage, root, "/resume.bin", 65_536).await;
    let replacing = storage
        .stat_and_replace(root, &vp("/resume.bin"))
        .await
        .expect("stat_and_replace an existing file");
    let existing = replacing.existing.expect("the existing file is found");
    assert_eq!(
        existing,
        storage.stat(root, &vp("/resume.bin")).await.expect("stat"),
        "stat_and_replace describes the file as stat does"
    );
    let mut handle = replacing.handle.expect("a replacement is staged");
    write_all(handle.as_mut(), 0, b"staged").await;
    assert_eq!(
        get(storage, root, "/resume.bin", 65_536).await,
        old,
        "the old content stays visible while a replacement is staged"
    );
    assert_eq!(handle.commit().await.expect("commit the replacement"), 6);
    assert_eq!(get(storage, root, "/resume.bin", 65_536).await, b"staged");

    let replacing = storage
        .stat_and_replace(root, &vp("/docs/fresh.txt"))
        .await
        .expect("stat_and_replace a missing file");
    assert!(replacing.existing.is_none(), "a missing file is not found");
    let mut handle = replacing.handle.expect("a new file is staged");
    write_all(handle.as_mut(), 0, b"fresh").await;
    handle.abort().await.expect("abort the staged file");
    expect_kind(
        "a staged file aborted",
        storage.stat(root, &vp("/docs/fresh.txt")).await,
        StorageErrorKind::NotFound,
    )
    .await;

    let replacing = storage
        .stat_and_replace(root, &vp("/docs"))
        .await
        .expect("stat_and_replace a directory");
    assert_eq!(
        replacing.existing.map(|meta| meta.kind),
        Some(FileKind::Dir),
        "a directory is found as one"
    );
    expect_kind(
        "a directory's replacement",
        replacing.handle,
        StorageErrorKind::Conflict,
    )
    .await;
}

async fn read_back(handle: &mut dyn WriteHandle, start: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let chunk = handle
            .read_at(
                start + out.len() as u64,
                (len - out.len()).min(65_536) as u32,
            )
            .await
            .expect("read back");
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    out
}

async fn rename_and_delete(storage: &dyn FileStorage, root: &str) {
    put(storage, root, "/old.txt", b"moving").await;
    put(storage, root, "/taken.txt", b"taken").await;
    expect_kind(
        "rename onto an existing file",
        storage
            .rename(root, &vp("/old.txt"), &vp("/taken.txt"))
            .await,
        StorageErrorKind::AlreadyExists,
    )
    .await;
    storage
        .rename(root, &vp("/old.txt"), &vp("/docs/new.txt"))
        .await
        .expect("rename into a directory");
    expect_kind(
        "stat the old name",
        storage.stat(root, &vp("/old.txt")).await,
        StorageErrorKind::NotFound,
    )
    .await;
    assert_eq!(get(storage, root, "/docs/new.txt", 4096).await, b"moving");

    storage.mkdir(root, &vp("/tree")).await.expect("mkdir tree");
    put(storage, root, "/tree/leaf.txt", b"leaf").await;
    storage
        .rename(root, &vp("/tree"), &vp("/moved"))
        .await
        .expect("rename a directory");
    assert_eq!(get(storage, root, "/moved/leaf.txt", 4096).await, b"leaf");
    expect_kind(
        "stat the old directory",
        storage.stat(root, &vp("/tree")).await,
        StorageErrorKind::NotFound,
    )
    .await;

    storage
        .remove(root, &vp("/moved/leaf.txt"))
        .await
        .expect("remove");
    expect_kind(
        "stat removed",
        storage.stat(root, &vp("/moved/leaf.txt")).await,
        StorageErrorKind::NotFound,
    )
    .await;
    assert!(names(storage, root, "/moved").await.is_empty());
    storage
        .rmdir(root, &vp("/moved"))
        .await
        .expect("rmdir moved");
}

async fn large_file(storage: &dyn FileStorage, root: &str) {
    let data = pattern(42, LARGE_FILE);
    put(storage, root, "/large.bin", &data).await;
    assert_eq!(
        storage
            .stat(root, &vp("/large.bin"))
            .await
            .expect("stat large")
            .size,
        data.len() as u64
    );
    let back = get(storage, root, "/large.bin", 261_120).await;
    assert!(back == data, "the large file reads back unchanged");
    storage
        .remove(root, &vp("/large.bin"))
        .await
        .expect("remove large");
}

/// `sync`: a synced replacement stays invisible until its commit, a synced
/// write in place is the file's content, whole, while the handle stays
/// open, and writing on after a sync loses nothing. A backend that cannot
/// sync says so.
async fn synced_writes(storage: &dyn FileStorage, root: &str) {
    let open = |mode| async move {
        storage
            .open_write(root, &vp("/synced.bin"), mode)
            .await
            .unwrap_or_else(|err| panic!("open {mode:?}: {err:?} {:?}", err.source))
    };
    let data = pattern(7, 100_000);
    let mut handle = open(WriteMode::Replace).await;
    write_all(handle.as_mut(), 0, &data[..40_000]).await;
    match handle.sync().await {
        Ok(()) => {}
        Err(err) if err.kind == StorageErrorKind::Unsupported => {
            handle.abort().await.expect("abort an unsyncable write");
            return;
        }
        Err(err) => panic!("sync a replacement: {err:?} {:?}", err.source),
    }
    expect_kind(
        "a synced replacement before its commit",
        storage.stat(root, &vp("/synced.bin")).await,
        StorageErrorKind::NotFound,
    )
    .await;
    write_all(handle.as_mut(), 40_000, &data[40_000..]).await;
    assert_eq!(read_back(handle.as_mut(), 0, 100_000).await, data);
    assert_eq!(handle.commit().await.expect("commit after sync"), 100_000);
    assert_eq!(get(storage, root, "/synced.bin", 32_768).await, data);

    // Past a chunk boundary of an encrypted file after the sync.
    let more = pattern(8, 70_000);
    let mut whole = data.clone();
    whole.extend_from_slice(&more[..10_000]);
    let mut handle = open(WriteMode::InPlace).await;
    write_all(handle.as_mut(), 100_000, &more[..10_000]).await;
    match handle.sync().await {
        Ok(()) => {
            assert_eq!(
                get(storage, root, "/synced.bin", 32_768).await,
                whole,
                "what an in-place write synced reads back whole"
            );
            write_all(handle.as_mut(), 110_000, &more[10_000..]).await;
            whole.extend_from_slice(&more[10_000..]);
            assert_eq!(handle.commit().await.expect("commit in place"), 170_000);
            assert_eq!(get(storage, root, "/synced.bin", 32_768).await, whole);
        }
        // An object store keeps the rewrite of an object only at its commit.
        Err(err) if err.kind == StorageErrorKind::Unsupported => {
            handle.abort().await.expect("abort an unsyncable rewrite");
            assert_eq!(get(storage, root, "/synced.bin", 32_768).await, data);
        }
        Err(err) => panic!("sync in place: {err:?} {:?}", err.source),
    }
    storage
        .remove(root, &vp("/synced.bin"))
        .await
        .expect("remove synced");
}
