//! Local disk. Uploads in `Replace` mode are written to a hidden staging
//! file next to the target and renamed over it on commit, so a file is only
//! ever visible under its name complete.

use std::collections::HashMap;
use std::fs::{File, FileTimes, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{
    DirEntry, FileKind, FileMeta, FileStorage, ReadHandle, Replacing, StorageError,
    StorageErrorKind, WriteHandle, WriteMode,
};

/// Names with this prefix are staging files: hidden and unreachable.
const STAGING_PREFIX: &str = ".tollgate-part-";

/// Users' namespaces as directories on local disk.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    /// Each root as `canonicalize` found it, the first time it was used:
    /// every operation resolves its path under a root, and resolving the
    /// root again each time cost a readlink per component. Should a root
    /// later be swapped for a symlink, paths under it resolve elsewhere and
    /// are refused as outside the cached root.
    roots: Arc<RwLock<HashMap<String, PathBuf>>>,
    /// Whether a commit syncs the file and its directory.
    sync_commits: bool,
}

impl Default for LocalStorage {
    fn default() -> Self {
        LocalStorage::with_sync_commits(true)
    }
}

impl LocalStorage {
    /// The local disk adapter: a commit syncs the file and its directory.
    pub fn new() -> Self {
        LocalStorage::default()
    }

    /// The local disk adapter whose commits do not sync (`sync_commits`
    /// false), as OpenSSH's sftp-server leaves an upload to the system's
    /// write-back: a power cut may then lose a file recorded as complete.
    /// A write handle's `sync` still syncs.
    pub fn with_sync_commits(sync_commits: bool) -> Self {
        LocalStorage {
            roots: Arc::default(),
            sync_commits,
        }
    }

    fn root(&self, root: &str) -> Result<PathBuf, StorageError> {
        let known = self
            .roots
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(root)
            .cloned();
        if let Some(real) = known {
            return Ok(real);
        }
        let real = std::fs::canonicalize(root).map_err(map_err)?;
        self.roots
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(root.to_string(), real.clone());
        Ok(real)
    }

    /// The real path of `path` under `root`, refused when it (or, with
    /// `follow`, what it points to) is outside the root.
    fn resolve(
        &self,
        root: &str,
        path: &VirtualPath,
        follow: bool,
    ) -> Result<PathBuf, StorageError> {
        resolve_under(&self.root(root)?, path, follow)
    }
}

fn map_err(err: std::io::Error) -> StorageError {
    let kind = match err.kind() {
        ErrorKind::NotFound => StorageErrorKind::NotFound,
        ErrorKind::PermissionDenied => StorageErrorKind::PermissionDenied,
        ErrorKind::AlreadyExists => StorageErrorKind::AlreadyExists,
        ErrorKind::DirectoryNotEmpty | ErrorKind::NotADirectory | ErrorKind::IsADirectory => {
            StorageErrorKind::Conflict
        }
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            StorageErrorKind::QuotaExceeded
        }
        _ => StorageErrorKind::Other,
    };
    StorageError {
        kind,
        source: Some(Box::new(err)),
    }
}

fn denied() -> StorageError {
    StorageError::of(StorageErrorKind::PermissionDenied)
}

/// Runs blocking file system work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|err| {
            Err(StorageError {
                kind: StorageErrorKind::Other,
                source: Some(Box::new(err)),
            })
        })
}

fn unix_seconds(time: std::io::Result<SystemTime>) -> i64 {
    time.ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn meta_of(meta: &std::fs::Metadata) -> FileMeta {
    let file_type = meta.file_type();
    let kind = if file_type.is_symlink() {
        FileKind::Symlink
    } else if file_type.is_dir() {
        FileKind::Dir
    } else if file_type.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    };
    FileMeta {
        kind,
        size: meta.len(),
        mode: meta.mode() & 0o7777,
        mtime: unix_seconds(meta.modified()),
        atime: unix_seconds(meta.accessed()),
    }
}

/// Resolves `path` under `root`. The parent directory must lie inside the
/// root once symlinks are resolved; with `follow`, so must the target.
fn resolve_under(root: &Path, path: &VirtualPath, follow: bool) -> Result<PathBuf, StorageError> {
    walk_under(root, path, follow).map(|(full, _)| full)
}

/// What resolving a path learnt of its last component.
enum Walked {
    /// Its `lstat`, taken on the way: no symlink was met.
    Found(std::fs::Metadata),
    /// It does not exist (nor was a symlink met).
    Missing(std::io::Error),
    /// A symlink on the way, or the root itself: not looked at.
    Unknown,
}

/// `resolve_under`, keeping what the walk found at the end of the path,
/// so that a stat need not repeat the walk's last `lstat`.
fn walk_under(
    root: &Path,
    path: &VirtualPath,
    follow: bool,
) -> Result<(PathBuf, Walked), StorageError> {
    if path.components().any(|c| c.starts_with(STAGING_PREFIX)) {
        return Err(denied());
    }
    // The usual case, no symlink on the way: one lstat per component below
    // the (canonical) root says so, where canonicalizing the parent and the
    // path took a readlink for every component from `/`. Components are
    // plain names (a `VirtualPath` holds no `.` or `..`), so without a
    // symlink the joined path is the real one.
    let mut walked = root.to_path_buf();
    let mut last = Walked::Unknown;
    let mut components = path.components().peekable();
    while let Some(component) = components.next() {
        walked.push(component);
        match std::fs::symlink_metadata(&walked) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Ok((resolve_links(root, path, follow)?, Walked::Unknown));
            }
            Ok(meta) => last = Walked::Found(meta),
            // A missing last component is a name to create.
            Err(err) if err.kind() == ErrorKind::NotFound && components.peek().is_none() => {
                last = Walked::Missing(err);
            }
            Err(err) => return Err(map_err(err)),
        }
    }
    Ok((walked, last))
}

/// `resolve_under` for a path with a symlink on the way (so not the root):
/// the parent's real path, and with `follow` the target's, must stay under
/// the root.
fn resolve_links(root: &Path, path: &VirtualPath, follow: bool) -> Result<PathBuf, StorageError> {
    let full = root.join(path.relative());
    let parent = full.parent().expect("a non-root path has a parent");
    let real_parent = std::fs::canonicalize(parent).map_err(map_err)?;
    if !real_parent.starts_with(root) {
        return Err(denied());
    }
    let name = full.file_name().expect("a non-root path has a file name");
    let full = real_parent.join(name);
    if follow {
        match std::fs::canonicalize(&full) {
            Ok(real) if !real.starts_with(root) => return Err(denied()),
            Ok(real) => return Ok(real),
            Err(err) if err.kind() == ErrorKind::NotFound => {
                // A dangling symlink must not be written through either.
                if std::fs::symlink_metadata(&full).is_ok() {
                    return Err(denied());
                }
            }
            Err(err) => return Err(map_err(err)),
        }
    }
    Ok(full)
}

/// What the page cache already holds of `len` bytes at `offset`, read
/// without waiting for the disk: `None` when part of it is not cached (or
/// the kernel cannot tell), and the read must go to the blocking pool. A
/// cached read costs a copy; the trip to the pool cost two thread switches.
#[cfg(target_os = "linux")]
fn read_cached(file: &File, offset: u64, len: u32) -> Option<Bytes> {
    use std::os::fd::AsRawFd;
    let mut buf = bytes::BytesMut::with_capacity(len as usize);
    while buf.len() < len as usize {
        let at = i64::try_from(offset + buf.len() as u64).ok()?;
        let spare = buf.spare_capacity_mut();
        let iov = libc::iovec {
            iov_base: spare.as_mut_ptr().cast(),
            iov_len: spare.len(),
        };
        // SAFETY: the one iovec names the buffer's spare capacity, which
        // `buf` owns for the whole call; the kernel writes at most
        // `iov_len` bytes there and reports how many.
        #[allow(unsafe_code)]
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        match usize::try_from(read) {
            // The end of the file.
            Ok(0) => break,
            // SAFETY: the kernel initialised the `n` bytes after the
            // buffer's length, within its capacity.
            #[allow(unsafe_code)]
            Ok(n) => unsafe { buf.set_len(buf.len() + n) },
            // Not cached, interrupted, or not supported here.
            Err(_) => return None,
        }
    }
    Some(buf.freeze())
}

/// Elsewhere every read goes to the blocking pool.
#[cfg(not(target_os = "linux"))]
fn read_cached(_file: &File, _offset: u64, _len: u32) -> Option<Bytes> {
    None
}

fn read_at(file: &File, offset: u64, len: u32) -> Result<Bytes, StorageError> {
    let mut buf = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == ErrorKind::Interrupted => {}
            Err(err) => return Err(map_err(err)),
        }
    }
    buf.truncate(filled);
    Ok(Bytes::from(buf))
}

#[async_trait]
impl FileStorage for LocalStorage {
    async fn ensure_root(&self, root: &str) -> Result<(), StorageError> {
        let root = root.to_string();
        blocking(move || std::fs::create_dir_all(&root).map_err(map_err)).await
    }

    async fn stat(&self, root: &str, path: &VirtualPath) -> Result<FileMeta, StorageError> {
        // Resolving the path took an `lstat` of each component, the last
        // one included: unless a symlink was on the way, that is the answer,
        // with no trip to the blocking pool for the same call again.
        let full = match walk_under(&self.root(root)?, path, false)? {
            (_, Walked::Found(meta)) => return Ok(meta_of(&meta)),
            (_, Walked::Missing(err)) => return Err(map_err(err)),
            (full, Walked::Unknown) => full,
        };
        blocking(move || {
            std::fs::symlink_metadata(&full)
                .map(|m| meta_of(&m))
                .map_err(map_err)
        })
        .await
    }

    async fn list(&self, root: &str, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError> {
        let dir = self.resolve(root, path, true)?;
        blocking(move || {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(map_err)? {
                let entry = entry.map_err(map_err)?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                if name.starts_with(STAGING_PREFIX) {
                    continue;
                }
                let Ok(meta) = entry.metadata() else { continue };
                entries.push(DirEntry {
                    name,
                    meta: meta_of(&meta),
                });
            }
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(entries)
        })
        .await
    }

    async fn mkdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        let full = self.resolve(root, path, false)?;
        blocking(move || std::fs::create_dir(&full).map_err(map_err)).await
    }

    async fn rmdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        let full = self.resolve(root, path, false)?;
        blocking(move || std::fs::remove_dir(&full).map_err(map_err)).await
    }

    async fn remove(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        let full = self.resolve(root, path, false)?;
        blocking(move || {
            if std::fs::symlink_metadata(&full).map_err(map_err)?.is_dir() {
                return Err(StorageError::of(StorageErrorKind::Conflict));
            }
            std::fs::remove_file(&full).map_err(map_err)
        })
        .await
    }

    async fn rename(
        &self,
        root: &str,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), StorageError> {
        let source = self.resolve(root, from, false)?;
        let target = self.resolve(root, to, false)?;
        blocking(move || {
            std::fs::symlink_metadata(&source).map_err(map_err)?;
            if std::fs::symlink_metadata(&target).is_ok() {
                return Err(StorageError::of(StorageErrorKind::AlreadyExists));
            }
            std::fs::rename(&source, &target).map_err(map_err)
        })
        .await
    }

    async fn set_times(
        &self,
        root: &str,
        path: &VirtualPath,
        atime: i64,
        mtime: i64,
    ) -> Result<(), StorageError> {
        let full = self.resolve(root, path, true)?;
        let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0));
        let times = FileTimes::new()
            .set_accessed(at(atime))
            .set_modified(at(mtime));
        blocking(move || {
            File::open(&full)
                .and_then(|f| f.set_times(times))
                .map_err(map_err)
        })
        .await
    }

    async fn open_read(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Box<dyn ReadHandle>, StorageError> {
        let full = self.resolve(root, path, true)?;
        let file = blocking(move || File::open(&full).map_err(map_err)).await?;
        Ok(Box::new(LocalRead::new(file)))
    }

    async fn open_write(
        &self,
        root: &str,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        if path.is_root() {
            return Err(StorageError::of(StorageErrorKind::Conflict));
        }
        let target = self.resolve(root, path, true)?;
        let handle = blocking(move || LocalWrite::open(target, mode)).await?;
        Ok(self.boxed(handle))
    }

    /// The stat an upload begins with, and its staging file: without a
    /// symlink on the way the path's walk answers the stat (as in `stat`),
    /// and the staging file is created by the first trip that writes to it
    /// (at the latest the commit's), so that a small upload makes one trip
    /// to the blocking pool in all. Through a symlink, one trip for both.
    async fn stat_and_replace(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Replacing, StorageError> {
        let real_root = self.root(root)?;
        let (at, walked) = match walk_under(&real_root, path, false) {
            Ok(walked) => walked,
            // A missing directory on the way: nothing to stat, nowhere to
            // stage, as `stat` and `open_write` would each say.
            Err(err) if err.kind == StorageErrorKind::NotFound => {
                return Ok(Replacing {
                    existing: None,
                    handle: Err(err),
                });
            }
            Err(err) => return Err(err),
        };
        let existing = match walked {
            Walked::Found(meta) => Some(meta),
            Walked::Missing(_) => None,
            Walked::Unknown => {
                return self
                    .stat_and_replace_through_links(real_root, path, at)
                    .await;
            }
        };
        let handle = match &existing {
            Some(meta) if meta.is_dir() => Err(StorageError::of(StorageErrorKind::Conflict)),
            Some(meta) => Ok(LocalWrite::staged_later(at, meta.permissions().mode())),
            None => Ok(LocalWrite::staged_later(at, NEW_FILE_MODE)),
        };
        Ok(Replacing {
            existing: existing.as_ref().map(meta_of),
            handle: handle.map(|handle| self.boxed(handle)),
        })
    }
}

impl LocalStorage {
    /// A write handle of this storage, committed as it says.
    fn boxed(&self, handle: LocalWrite) -> Box<dyn WriteHandle> {
        Box::new(handle.commit_syncs(self.sync_commits))
    }

    /// `stat_and_replace` for a path with a symlink on the way (or the
    /// root): the stat and the staging file in one trip.
    async fn stat_and_replace_through_links(
        &self,
        real_root: PathBuf,
        path: &VirtualPath,
        at: PathBuf,
    ) -> Result<Replacing, StorageError> {
        let path = path.clone();
        let storage = self.clone();
        blocking(move || {
            let existing = match std::fs::symlink_metadata(&at) {
                Ok(meta) => Some(meta),
                Err(err) if err.kind() == ErrorKind::NotFound => None,
                Err(err) => return Err(map_err(err)),
            };
            let handle = match &existing {
                Some(meta) if meta.is_dir() => Err(StorageError::of(StorageErrorKind::Conflict)),
                // Written through the link, checked as `open_write` checks it.
                Some(meta) if meta.file_type().is_symlink() => {
                    resolve_under(&real_root, &path, true)
                        .and_then(|target| LocalWrite::open(target, WriteMode::Replace))
                }
                _ => LocalWrite::open(at, WriteMode::Replace),
            };
            Ok(Replacing {
                existing: existing.as_ref().map(meta_of),
                handle: handle.map(|handle| storage.boxed(handle)),
            })
        })
        .await
    }
}

/// How much one trip to the blocking pool reads ahead of a sequential
/// reader, or gathers of a sequential writer: clients ask for 32 KiB at a
/// time, and a trip costs more than the copy of that much.
const GATHER: u32 = 256 * 1024;
/// The largest request that is read ahead or gathered; larger ones are
/// served as they come.
const SMALL: u32 = GATHER / 4;

struct LocalRead {
    file: Arc<File>,
    /// Bytes read ahead, from offset `ahead_at`.
    ahead: Bytes,
    ahead_at: u64,
    /// Where the last read ended, if it returned all it was asked for: a
    /// read starting there is sequential and is read ahead.
    next: Option<u64>,
}

impl LocalRead {
    fn new(file: File) -> Self {
        LocalRead {
            file: Arc::new(file),
            ahead: Bytes::new(),
            ahead_at: 0,
            next: None,
        }
    }

    /// The part of the read-ahead buffer that answers a read, if it does.
    fn buffered(&self, offset: u64, len: usize) -> Option<Bytes> {
        let start = usize::try_from(offset.checked_sub(self.ahead_at)?).ok()?;
        let end = start.checked_add(len)?;
        (end <= self.ahead.len()).then(|| self.ahead.slice(start..end))
    }
}

#[async_trait]
impl ReadHandle for LocalRead {
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        let want = len as usize;
        if let Some(data) = self.buffered(offset, want) {
            self.next = Some(offset + data.len() as u64);
            return Ok(data);
        }
        let ahead = self.next == Some(offset) && len <= SMALL;
        let file = self.file.clone();
        let size = if ahead { GATHER } else { len };
        let data = match read_cached(&file, offset, size) {
            Some(data) => data,
            None => blocking(move || read_at(&file, offset, size)).await?,
        };
        let got = if ahead {
            let got = data.slice(..want.min(data.len()));
            (self.ahead, self.ahead_at) = (data, offset);
            got
        } else {
            self.ahead = Bytes::new();
            data
        };
        // A short read is the end of the file: nothing further to read ahead.
        self.next = (got.len() == want).then_some(offset + got.len() as u64);
        Ok(got)
    }

    async fn meta(&mut self) -> Result<FileMeta, StorageError> {
        let file = self.file.clone();
        blocking(move || file.metadata().map(|m| meta_of(&m)).map_err(map_err)).await
    }
}

struct LocalWrite {
    /// The file written; `None` for a staging file not created yet.
    file: Option<Arc<File>>,
    target: PathBuf,
    staging: Option<PathBuf>,
    /// Whether a staging file may be on disk: set before the trip that
    /// creates it, which may finish after its caller has gone.
    staged: bool,
    /// The permissions a staging file gets when it is created.
    mode: u32,
    /// The file's length: what it held when opened, extended by each write
    /// (only this handle writes a staging file or an upload in place).
    len: u64,
    /// Writes not yet handed to the file: contiguous, from `gathered_at`.
    gathered: Vec<u8>,
    gathered_at: u64,
    /// Where the stretch not yet handed to the disk's write-back starts.
    behind: u64,
    /// Whether the commit syncs the file and its directory.
    commit_syncs: bool,
    /// Whether everything written is synced (by `sync`, nothing since).
    synced: bool,
}

/// Once this much has been written past `behind`, its write-back starts at
/// once. Without it the pages wait in memory until the commit's sync, which
/// then writes the whole file while the client waits; with it, the disk
/// writes while the data still arrives and the sync waits for the last
/// stretch only. The commit's sync still covers every byte.
const WRITE_BEHIND: u64 = 8 * 1024 * 1024;

/// Starts the write-back of `len` bytes of `file` at `offset` without
/// waiting for it. Its errors are the commit's sync's to report.
#[cfg(target_os = "linux")]
fn start_write_back(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor belongs to `file`, which outlives the call;
    // sync_file_range reads no memory of this process.
    #[allow(unsafe_code)]
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Elsewhere the commit's sync writes the file.
#[cfg(not(target_os = "linux"))]
fn start_write_back(_file: &File, _offset: u64, _len: u64) {}

/// The permissions of a new file: the usual 0644, whatever the umask.
const NEW_FILE_MODE: u32 = 0o644;

fn remove_staging(staging: &Path) {
    if let Err(err) = std::fs::remove_file(staging)
        && err.kind() != ErrorKind::NotFound
    {
        tracing::warn!(error = %err, "cannot remove a staging file");
    }
}

/// Syncs the directory holding `path`, making its entries durable.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    File::open(parent)?.sync_all()
}

/// The process's file mode creation mask, read once from
/// `/proc/self/status` (reading it through `umask(2)` would set it, racing
/// other threads' creations); `None` where the kernel does not say.
fn process_umask() -> Option<u32> {
    static UMASK: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
        u32::from_str_radix(line.trim(), 8).ok()
    })
}

/// Whether a file created with `mode` gets exactly `mode`: no bit the umask
/// clears, and no set-id or sticky bit, which `chmod` alone sets reliably.
fn created_with(mode: u32) -> bool {
    mode & 0o7000 == 0 && process_umask().is_some_and(|umask| mode & umask == 0)
}

/// Creates a staging file with `mode` (not the umask's result); on an
/// error, no file is left. The mode is given to the creation, so a
/// separate `chmod` is needed only where the umask would take bits of it.
/// Under a directory with a default ACL the ACL stands in for the umask
/// and may narrow the mode; it is left to do so.
fn create_staging(staging: &Path, mode: u32) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(staging)?;
    if created_with(mode) {
        return Ok(file);
    }
    if let Err(err) = file.set_permissions(std::fs::Permissions::from_mode(mode)) {
        remove_staging(staging);
        return Err(err);
    }
    Ok(file)
}

/// What a trip to the blocking pool needs to reach the file: the open file,
/// or the staging file to create.
enum Reach {
    Open(Arc<File>),
    Create(PathBuf, u32),
}

impl Reach {
    /// On the blocking pool: the file, created if need be.
    fn file(self) -> Result<Arc<File>, StorageError> {
        match self {
            Reach::Open(file) => Ok(file),
            Reach::Create(staging, mode) => create_staging(&staging, mode)
                .map(Arc::new)
                .map_err(map_err),
        }
    }
}

impl LocalWrite {
    /// Opens `target` for writing, through a new staging file beside it
    /// when `mode` is `Replace`.
    fn open(target: PathBuf, mode: WriteMode) -> Result<LocalWrite, StorageError> {
        match mode {
            WriteMode::InPlace => {
                // Never truncate: an in-place write keeps the content it
                // resumes or appends to.
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(&target)
                    .map_err(map_err)?;
                let len = file.metadata().map_err(map_err)?.len();
                Ok(LocalWrite {
                    file: Some(Arc::new(file)),
                    target,
                    staging: None,
                    staged: false,
                    mode: NEW_FILE_MODE,
                    len,
                    gathered: Vec::new(),
                    gathered_at: 0,
                    behind: len,
                    commit_syncs: true,
                    synced: false,
                })
            }
            WriteMode::Replace => {
                let mode = std::fs::metadata(&target)
                    .map(|m| m.permissions().mode())
                    .unwrap_or(NEW_FILE_MODE);
                let mut write = LocalWrite::staged_later(target, mode);
                let staging = write.staging.as_deref().expect("a replacement is staged");
                write.file = Some(Arc::new(create_staging(staging, mode).map_err(map_err)?));
                write.staged = true;
                Ok(write)
            }
        }
    }

    /// A replacement of `target` whose staging file is created by the
    /// first trip to the blocking pool that writes to it.
    fn staged_later(target: PathBuf, mode: u32) -> LocalWrite {
        let dir = target.parent().expect("a file target has a parent");
        let staging = dir.join(format!("{STAGING_PREFIX}{}", uuid::Uuid::new_v4()));
        LocalWrite {
            file: None,
            target,
            staging: Some(staging),
            staged: false,
            mode,
            len: 0,
            gathered: Vec::new(),
            gathered_at: 0,
            behind: 0,
            commit_syncs: true,
            synced: false,
        }
    }

    /// This handle, its commit syncing or not.
    fn commit_syncs(mut self, commit_syncs: bool) -> Self {
        self.commit_syncs = commit_syncs;
        self
    }

    /// What the next trip to the blocking pool writes to; from here on, a
    /// staging file may be on disk.
    fn reach(&mut self) -> Reach {
        match (&self.file, &self.staging) {
            (Some(file), _) => Reach::Open(file.clone()),
            (None, Some(staging)) => {
                self.staged = true;
                Reach::Create(staging.clone(), self.mode)
            }
            (None, None) => unreachable!("only a staging file is created late"),
        }
    }

    /// Writes `data` at `offset` on the blocking pool, creating the staging
    /// file first if it is not there yet; gives the data back.
    async fn write_out<D: AsRef<[u8]> + Send + 'static>(
        &mut self,
        data: D,
        offset: u64,
    ) -> Result<D, StorageError> {
        let reach = self.reach();
        let end = offset.saturating_add(data.as_ref().len() as u64);
        let behind = (end >= self.behind.saturating_add(WRITE_BEHIND)).then_some(self.behind);
        if behind.is_some() {
            self.behind = end;
        }
        let written = blocking(move || {
            let file = reach.file()?;
            let written = file.write_all_at(data.as_ref(), offset).map_err(map_err);
            if let (Ok(()), Some(from)) = (&written, behind) {
                start_write_back(&file, from, end - from);
            }
            Ok((file, written.map(|()| data)))
        })
        .await;
        match written {
            Ok((file, written)) => {
                self.file = Some(file);
                match written {
                    Ok(data) => Ok(data),
                    Err(err) => Err(self.failed_write(err).await),
                }
            }
            // The staging file could not be created: nothing is on disk.
            Err(err) => {
                self.len = 0;
                Err(err)
            }
        }
    }

    /// Hands the gathered writes to the file.
    async fn flush(&mut self) -> Result<(), StorageError> {
        if self.gathered.is_empty() {
            return Ok(());
        }
        let data = std::mem::take(&mut self.gathered);
        let mut data = self.write_out(data, self.gathered_at).await?;
        // Keep the buffer for the next writes.
        data.clear();
        self.gathered = data;
        Ok(())
    }

    /// After a failed write: part of the data may have landed, so the
    /// length is read back from the file.
    async fn failed_write(&mut self, err: StorageError) -> StorageError {
        if let Some(file) = self.file.clone()
            && let Ok(meta) = blocking(move || file.metadata().map_err(map_err)).await
        {
            self.len = meta.len();
        }
        err
    }
}

#[async_trait]
impl WriteHandle for LocalWrite {
    /// Small sequential writes are gathered in memory and handed to the
    /// file together, up to `GATHER` bytes at a time (a large one goes as
    /// it is, uncopied); an error writing them is reported by the write,
    /// read or commit that hands them over.
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        self.synced = false;
        let end = offset.saturating_add(data.len() as u64);
        let gathered_end = self.gathered_at + self.gathered.len() as u64;
        let fits = self.gathered.len() + data.len() <= GATHER as usize;
        let continues = !self.gathered.is_empty() && offset == gathered_end && fits;
        if !continues {
            self.flush().await?;
            self.gathered_at = offset;
        }
        if continues || data.len() <= SMALL as usize {
            self.gathered.extend_from_slice(&data);
            self.len = self.len.max(end);
            return Ok(());
        }
        self.write_out(data, offset).await?;
        self.len = self.len.max(end);
        Ok(())
    }

    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.flush().await?;
        match self.file.clone() {
            Some(file) => blocking(move || read_at(&file, offset, len)).await,
            // Nothing written yet: an empty file.
            None => Ok(Bytes::new()),
        }
    }

    async fn size(&mut self) -> Result<u64, StorageError> {
        Ok(self.len)
    }

    /// Hands the gathered writes to the file and syncs its data (before
    /// the first write there is nothing to sync); a commit with nothing
    /// written since need not sync the file again.
    async fn sync(&mut self) -> Result<(), StorageError> {
        self.flush().await?;
        if let Some(file) = self.file.clone() {
            blocking(move || file.sync_data().map_err(map_err)).await?;
        }
        self.synced = true;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        let reach = self.reach();
        // Without a sync, and with no more than a small write left, the
        // commit's calls are of the kind the path's walk already made on
        // this worker (a file created, a small write into the page cache,
        // a rename) and take less than the trip to the blocking pool and
        // back, so a small file's upload makes no trip at all. A sync
        // waits for the disk and stays on the pool, as does a large write.
        // When the system's dirty pages are at their limit the kernel
        // holds up any write, a small one too, and this worker's other
        // tasks wait with it: the price, with uploads left to write-back,
        // of a trip fewer per file.
        let in_place = !self.commit_syncs && self.gathered.len() <= SMALL as usize;
        let work = move || {
            let write = || {
                let file = reach.file()?;
                if !self.gathered.is_empty() {
                    file.write_all_at(&self.gathered, self.gathered_at)
                        .map_err(map_err)?;
                }
                if self.commit_syncs && !self.synced {
                    file.sync_all().map_err(map_err)?;
                }
                if let Some(staging) = &self.staging {
                    std::fs::rename(staging, &self.target).map_err(map_err)?;
                }
                if !self.commit_syncs {
                    return Ok(());
                }
                // The rename (or the entry of a file created in place) is
                // the directory's change: synced too, so that a completion
                // recorded after this cannot name a file a power cut loses.
                sync_parent(&self.target).map_err(map_err)
            };
            if let Err(err) = write() {
                if let Some(staging) = &self.staging {
                    remove_staging(staging);
                }
                return Err(err);
            }
            Ok(self.len)
        };
        if in_place {
            work()
        } else {
            blocking(work).await
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        match (self.staging.take(), self.staged) {
            // Never created: nothing to remove.
            (Some(_), false) => Ok(()),
            (Some(staging), true) => {
                blocking(move || {
                    remove_staging(&staging);
                    Ok(())
                })
                .await
            }
            // An aborted upload in place keeps what it wrote, to be resumed.
            (None, _) => self.flush().await,
        }
    }
}

#[cfg(test)]
mod tests;
