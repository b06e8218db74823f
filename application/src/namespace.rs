//! A logged-in user's namespace: the home on the default storage, with
//! mounts shown at their virtual folders. Every operation resolves its
//! virtual path to one backend, its root and the path inside it; policies
//! and events keep speaking of the virtual path.

use std::sync::Arc;

use tollgate_domain::VirtualPath;
use tollgate_domain::mount::VirtualFolder;
use tollgate_ports::outbound::{
    DirEntry, EntryPages, FileKind, FileMeta, FileStorage, MountedStorage, StorageError,
    StorageErrorKind, one_page,
};

/// One virtual folder with its backend.
#[derive(Clone)]
pub(crate) struct Folder {
    /// Where it appears.
    pub(crate) path: VirtualPath,
    /// The mount's name.
    pub(crate) mount: String,
    /// Its backend.
    pub(crate) backend: MountedStorage,
}

/// Where one virtual path lives.
pub(crate) struct Resolved<'a> {
    /// The backend.
    pub(crate) storage: &'a dyn FileStorage,
    /// The root inside the backend.
    pub(crate) root: &'a str,
    /// The path inside the root.
    pub(crate) path: VirtualPath,
    /// The mount, when the path is in a virtual folder.
    pub(crate) mount: Option<&'a str>,
}

/// A user's home and virtual folders.
#[derive(Clone)]
pub(crate) struct Namespace {
    home: MountedStorage,
    folders: Arc<Vec<Folder>>,
}

/// The folders a user sees: their own, then their groups' at paths the
/// user's own do not take (the first group listed wins).
pub(crate) fn effective_folders<'a>(
    own: &'a [VirtualFolder],
    groups: impl IntoIterator<Item = &'a [VirtualFolder]>,
) -> Vec<&'a VirtualFolder> {
    let mut chosen: Vec<&VirtualFolder> = own.iter().collect();
    for folders in groups {
        for folder in folders {
            let overlaps = chosen
                .iter()
                .any(|c| c.path.starts_with(&folder.path) || folder.path.starts_with(&c.path));
            if !overlaps {
                chosen.push(folder);
            }
        }
    }
    chosen
}

/// Metadata of a directory that exists only as the way to a virtual folder.
fn synthetic_dir() -> FileMeta {
    FileMeta {
        kind: FileKind::Dir,
        size: 0,
        mode: 0o755,
        mtime: 0,
        atime: 0,
    }
}

impl Namespace {
    pub(crate) fn new(home: MountedStorage, folders: Vec<Folder>) -> Self {
        Namespace {
            home,
            folders: Arc::new(folders),
        }
    }

    /// The backend, root and inner path of a virtual path.
    pub(crate) fn resolve(&self, path: &VirtualPath) -> Resolved<'_> {
        for folder in self.folders.iter() {
            if let Some(inner) = path.strip_prefix(&folder.path) {
                return Resolved {
                    storage: folder.backend.storage.as_ref(),
                    root: &folder.backend.root,
                    path: inner,
                    mount: Some(&folder.mount),
                };
            }
        }
        Resolved {
            storage: self.home.storage.as_ref(),
            root: &self.home.root,
            path: path.clone(),
            mount: None,
        }
    }

    /// Whether the path is a virtual folder itself (it cannot be removed,
    /// renamed or replaced).
    pub(crate) fn is_mount_point(&self, path: &VirtualPath) -> bool {
        self.folders.iter().any(|f| &f.path == path)
    }

    /// Whether the path is a strict ancestor of a virtual folder, in the home.
    fn leads_to_folder(&self, path: &VirtualPath) -> bool {
        self.folders
            .iter()
            .any(|f| &f.path != path && f.path.starts_with(path))
    }

    /// Whether two paths are in the same backend and root (a rename
    /// between them can be done by the backend).
    pub(crate) fn same_place(&self, a: &VirtualPath, b: &VirtualPath) -> bool {
        self.resolve(a).mount == self.resolve(b).mount
    }

    /// Metadata of a path: a virtual folder's root, the home's entry, or a
    /// directory that exists only on the way to a virtual folder.
    pub(crate) async fn stat(&self, path: &VirtualPath) -> Result<FileMeta, StorageError> {
        let at = self.resolve(path);
        match at.storage.stat(at.root, &at.path).await {
            Err(err) if err.kind == StorageErrorKind::NotFound && self.leads_to_folder(path) => {
                Ok(synthetic_dir())
            }
            other => other,
        }
    }

    /// A directory's entries, with the virtual folders directly inside it.
    pub(crate) async fn list(&self, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError> {
        let at = self.resolve(path);
        let mut entries = match at.storage.list(at.root, &at.path).await {
            Ok(entries) => entries,
            Err(err) if err.kind == StorageErrorKind::NotFound && self.leads_to_folder(path) => {
                Vec::new()
            }
            Err(err) => return Err(err),
        };
        if at.mount.is_some() {
            return Ok(entries);
        }
        let mut added = false;
        for folder in self.folders.iter() {
            let Some(rest) = folder.path.strip_prefix(path) else {
                continue;
            };
            let Some(name) = rest.components().next() else {
                continue;
            };
            let meta = if rest.components().nth(1).is_none() {
                entries.retain(|e| e.name != name);
                folder
                    .backend
                    .storage
                    .stat(&folder.backend.root, &VirtualPath::root())
                    .await
                    .unwrap_or_else(|_| synthetic_dir())
            } else if entries.iter().any(|e| e.name == name) {
                continue;
            } else {
                synthetic_dir()
            };
            entries.push(DirEntry {
                name: name.to_string(),
                meta,
            });
            added = true;
        }
        if added {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            entries.dedup_by(|a, b| a.name == b.name);
        }
        Ok(entries)
    }

    /// A directory's entries in pages: read page by page from a folder's
    /// backend; the home's (with the folders inside it) in one page.
    pub(crate) async fn list_pages(&self, path: &VirtualPath) -> Result<EntryPages, StorageError> {
        let at = self.resolve(path);
        if at.mount.is_some() {
            return at.storage.list_pages(at.root, &at.path).await;
        }
        Ok(one_page(self.list(path).await?))
    }

    /// Prepares every root (the home and each folder's).
    pub(crate) async fn ensure_roots(&self) -> Result<(), (Option<String>, StorageError)> {
        self.home
            .storage
            .ensure_root(&self.home.root)
            .await
            .map_err(|err| (None, err))?;
        for folder in self.folders.iter() {
            folder
                .backend
                .storage
                .ensure_root(&folder.backend.root)
                .await
                .map_err(|err| (Some(folder.mount.clone()), err))?;
        }
        Ok(())
    }
}
