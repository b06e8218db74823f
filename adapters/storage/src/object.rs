//! Object stores: Amazon S3, Google Cloud Storage and Azure Blob, through
//! the `object_store` crate. Every user's namespace is a key prefix of one
//! bucket (or container): the namespace `root` "a/b" holds `/x/y` under the
//! key `a/b/x/y`, and the root "" is the bucket's top.
//!
//! Object stores have no directories, so they are emulated:
//! - A directory made by `mkdir` is an empty marker object named
//!   `.tollgate-dir` inside it (`a/b/docs/.tollgate-dir`); object keys
//!   cannot end with `/` here (empty path segments are refused), so the
//!   marker is a hidden child. Markers never appear in listings, and a name
//!   equal to the marker's is refused with `PermissionDenied`.
//! - A path is a directory when its marker exists or any object lies under
//!   it, so trees written by other tools are directories too. The namespace
//!   root always exists; `ensure_root` writes its marker.
//! - When a file and a directory share a name (possible only through other
//!   tools), `stat` describes the file.
//!
//! Keys are the users' names as they are (no escaping), so a bucket reads
//! naturally with other tools; a name with an ASCII control character
//! cannot be stored and is refused with `Unsupported`.
//!
//! Uploads stream. A write handle starts a multipart upload to the final
//! key (S3 and GCS multipart uploads, Azure staged blocks) and sends 8 MiB
//! parts, at most two in flight, so an upload holds at most three parts in
//! memory (24 MiB), never the file. Parts double in size every 2,000 parts
//! (past 16 GB), up to 128 MiB, which keeps files of up to about 500 GB
//! under S3's limit of 10,000 parts. Nothing is visible under the name before
//! `commit`; `abort` (or dropping the handle) aborts the upload and leaves
//! no object. Writes must be sequential: the last 256 KiB written are held
//! back from the parts, so a write may still replace them (an encrypted
//! file's last chunk is rewritten when the file grows), and a write anywhere
//! else but at the end is `Unsupported`. A multipart upload interrupted by a crash stays
//! incomplete in the store until the bucket's lifecycle rule for incomplete
//! uploads removes it (S3, GCS); on Azure its staged blocks expire.
//!
//! Resuming (`WriteMode::InPlace`) on an existing object starts a new upload
//! to the same key, streams the existing object's bytes into it and then
//! accepts writes from the old size on: the whole file passes through the
//! gateway again. Unlike local disk, `abort` then keeps the old object
//! unchanged and drops what was appended, and the appended bytes are not
//! visible before `commit`. A write handle can read back the existing
//! object's bytes (a resumed file's old content) and the bytes it still
//! holds in its unsent part; anything already sent is `Unsupported`.
//!
//! Downloads stream: a read handle keeps one ranged GET open and serves
//! sequential reads from it, skips short gaps forward, and starts a new
//! ranged GET for any other offset or after a broken connection. Every GET
//! names the version opened (`If-Match` on its entity tag): when the object
//! is replaced while a download runs, the next request fails with
//! `Conflict` instead of mixing two versions.
//!
//! Rename is copy then delete. It refuses with `AlreadyExists` when the
//! target exists, checked before the copy: a target created in between is
//! overwritten (the stores offer no portable atomic copy-if-absent). A
//! directory is renamed object by object while its listing is read page by
//! page, so renaming a large tree is not atomic: a failure midway leaves
//! both names partly populated (and, the target now existing, a second
//! rename is refused until someone sorts the two out).
//! S3 copies objects over 5 GiB by streaming them through the gateway, as
//! S3's copy refuses larger objects.
//!
//! `list` reads a whole directory; `list_pages` asks the store for 1,000
//! keys at a time, the next page only when the previous one is consumed,
//! in key order (each page sorted by name).
//!
//! Object stores keep no settable times: `set_times` succeeds without
//! effect on an existing path. A file's time is its last modification;
//! files have mode 0644 and directories 0755.
//!
//! Two concurrent uploads to one name on Azure: the first commit discards
//! the other's staged blocks, so the later commit fails.
//!
//! Clients connect within 5 s, give up on a request after 120 s, and retry
//! a failed request at most 3 times within 20 s, so an unreachable store
//! answers `Unavailable` within seconds.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::gcp::{GcpCredential, GoogleCloudStorageBuilder};
use object_store::list::{PaginatedListOptions, PaginatedListResult, PaginatedListStore};
use object_store::path::{Path, PathPart};
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, StaticCredentialProvider,
};
use tokio::task::JoinSet;
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{
    DirEntry, EntryPages, FileKind, FileMeta, FileStorage, ReadHandle, StorageError,
    StorageErrorKind, WriteHandle, WriteMode,
};

/// The hidden object that makes an empty directory exist.
const MARKER: &str = ".tollgate-dir";

/// The size of the first upload parts (S3 and GCS want at least 5 MiB).
const PART_SIZE: usize = 8 * 1024 * 1024;

/// Parts are doubled in size after this many parts...
const PARTS_PER_SIZE_STEP: usize = 2_000;

/// ...at most this many times (8 MiB × 2⁴ = 128 MiB): with S3's limit of
/// 10,000 parts, about 500 GB in all.
const MAX_SIZE_STEPS: usize = 4;

/// Parts of one upload being sent at the same time.
const PARTS_IN_FLIGHT: usize = 2;

/// The last bytes written are kept unsent, so that a write may still
/// replace them: an encrypted file's last chunk is rewritten when the file
/// grows (a resume or append), and it is never larger than this.
const HELD_BACK: usize = 256 * 1024;

/// The most bytes one read returns (a shorter read is allowed).
const MAX_READ: usize = 1024 * 1024;

/// A read this far ahead of the open GET reads on and discards the gap
/// instead of starting a new request.
const SKIP_AHEAD: u64 = 1024 * 1024;

/// Objects copied at the same time while renaming a directory.
const RENAME_CONCURRENCY: usize = 8;

/// S3 copies objects up to this size on the server side.
const S3_COPY_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// Azurite's account, whose key is public (it is no secret).
const AZURITE_ACCOUNT: &str = "devstoreaccount1";
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Where and how to reach an object store. Secrets arrive in clear (the
/// caller opened them); `Debug` shows none of them.
#[derive(Clone)]
pub enum ObjectOptions {
    /// Amazon S3 or an S3-compatible store.
    S3 {
        /// The bucket.
        bucket: String,
        /// The bucket's region (`us-east-1`).
        region: String,
        /// Another endpoint than AWS's (`http://127.0.0.1:9000`); requests
        /// are then path-style, and plain HTTP is allowed when it says so.
        endpoint: Option<String>,
        /// Static credentials (both or neither); without them, the
        /// instance's credentials are used.
        access_key_id: Option<String>,
        /// The secret of `access_key_id`.
        secret_access_key: Option<String>,
    },
    /// Google Cloud Storage.
    Gcs {
        /// The bucket.
        bucket: String,
        /// Another base URL than Google's (`http://127.0.0.1:4443`). Objects
        /// are reached through GCS's XML API (multipart uploads, copy,
        /// listing), which an emulator must therefore serve.
        endpoint: Option<String>,
        /// A service account key (JSON). Without it, the application
        /// default credentials or the instance's are used, except with an
        /// `endpoint`, where requests are then anonymous (emulators).
        credentials_json: Option<String>,
    },
    /// Azure Blob Storage.
    Azure {
        /// The storage account.
        account: String,
        /// The container.
        container: String,
        /// The account URL when it is not `https://{account}.blob.core.windows.net`;
        /// for Azurite `http://127.0.0.1:10000/devstoreaccount1`.
        endpoint: Option<String>,
        /// The account's shared key. Without it, Azure's usual credentials
        /// (managed identity, environment, ...) are used, except for
        /// Azurite's account behind an `endpoint`, whose key is public.
        access_key: Option<String>,
    },
}

/// Shows whether a secret is set, never its value.
struct Redacted<'a>(&'a Option<String>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(_) => f.write_str("Some(<redacted>)"),
            None => f.write_str("None"),
        }
    }
}

impl fmt::Debug for ObjectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectOptions::S3 {
                bucket,
                region,
                endpoint,
                access_key_id,
                secret_access_key,
            } => f
                .debug_struct("S3")
                .field("bucket", bucket)
                .field("region", region)
                .field("endpoint", endpoint)
                .field("access_key_id", &Redacted(access_key_id))
                .field("secret_access_key", &Redacted(secret_access_key))
                .finish(),
            ObjectOptions::Gcs {
                bucket,
                endpoint,
                credentials_json,
            } => f
                .debug_struct("Gcs")
                .field("bucket", bucket)
                .field("endpoint", endpoint)
                .field("credentials_json", &Redacted(credentials_json))
                .finish(),
            ObjectOptions::Azure {
                account,
                container,
                endpoint,
                access_key,
            } => f
                .debug_struct("Azure")
                .field("account", account)
                .field("container", container)
                .field("endpoint", endpoint)
                .field("access_key", &Redacted(access_key))
                .finish(),
        }
    }
}

/// Which store is behind the client, for its few differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    S3,
    Gcs,
    Azure,
    /// An in-process store (tests).
    #[cfg(test)]
    Other,
}

/// Users' namespaces as key prefixes of one bucket or container.
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    /// The same store's page-by-page listing, to ask for one or two keys.
    pages: Option<Arc<dyn PaginatedListStore>>,
    flavour: Flavour,
    /// `s3://bucket`, for `Debug`.
    location: String,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("location", &self.location)
            .finish()
    }
}

/// A configuration error: what is wrong, said without secrets.
#[derive(Debug)]
struct InvalidOptions {
    message: String,
    source: Option<object_store::Error>,
}

impl fmt::Display for InvalidOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid object store options: {}", self.message)
    }
}

impl std::error::Error for InvalidOptions {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|err| err as &(dyn std::error::Error + 'static))
    }
}

fn invalid(message: impl Into<String>, source: Option<object_store::Error>) -> StorageError {
    StorageError {
        kind: StorageErrorKind::Other,
        source: Some(Box::new(InvalidOptions {
            message: message.into(),
            source,
        })),
    }
}

fn require(what: &str, value: &str) -> Result<(), StorageError> {
    if value.trim().is_empty() {
        return Err(invalid(format!("the {what} is empty"), None));
    }
    Ok(())
}

fn client_options(endpoint: Option<&str>) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(120))
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
}

fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(20),
    }
}

impl ObjectStorage {
    /// A store of one of the supported clouds, which all list page by page.
    fn paged<S: ObjectStore + PaginatedListStore>(
        store: S,
        flavour: Flavour,
        location: String,
    ) -> ObjectStorage {
        let store = Arc::new(store);
        ObjectStorage {
            store: store.clone(),
            pages: Some(store),
            flavour,
            location,
        }
    }

    /// Builds the client for `options`; no request is made yet. Options
    /// that cannot work are `StorageErrorKind::Other` with the reason.
    pub fn new(options: ObjectOptions) -> Result<ObjectStorage, StorageError> {
        match options {
            ObjectOptions::S3 {
                bucket,
                region,
                endpoint,
                access_key_id,
                secret_access_key,
            } => {
                require("S3 bucket name", &bucket)?;
                require("S3 region", &region)?;
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(&bucket)
                    .with_region(&region)
                    .with_retry(retry_config())
                    .with_client_options(client_options(endpoint.as_deref()));
                if let Some(endpoint) = &endpoint {
                    builder = builder
                        .with_endpoint(endpoint.trim_end_matches('/'))
                        .with_virtual_hosted_style_request(false);
                }
                builder = match (access_key_id, secret_access_key) {
                    (Some(id), Some(secret)) => builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret),
                    (None, None) => builder,
                    _ => {
                        return Err(invalid(
                            "S3 needs both an access key id and a secret access key, or neither",
                            None,
                        ));
                    }
                };
                let store = builder
                    .build()
                    .map_err(|err| invalid("cannot configure the S3 client", Some(err)))?;
                Ok(ObjectStorage::paged(
                    store,
                    Flavour::S3,
                    format!("s3://{bucket}"),
                ))
            }
            ObjectOptions::Gcs {
                bucket,
                endpoint,
                credentials_json,
            } => {
                require("GCS bucket name", &bucket)?;
                let mut builder = GoogleCloudStorageBuilder::new()
                    .with_bucket_name(&bucket)
                    .with_retry(retry_config())
                    .with_client_options(client_options(endpoint.as_deref()));
                if let Some(endpoint) = &endpoint {
                    builder = builder.with_base_url(endpoint.trim_end_matches('/'));
                }
                match credentials_json {
                    Some(json) => builder = builder.with_service_account_key(json),
                    // An emulator wants no token: an empty bearer token
                    // sends no Authorization header, as object_store's own
                    // `disable_oauth` service-account setting does.
                    None if endpoint.is_some() => {
                        builder = builder.with_credentials(Arc::new(
                            StaticCredentialProvider::new(GcpCredential {
                                bearer: String::new(),
                            }),
                        ));
                    }
                    None => {}
                }
                let store = builder
                    .build()
                    .map_err(|err| invalid("cannot configure the GCS client", Some(err)))?;
                Ok(ObjectStorage::paged(
                    store,
                    Flavour::Gcs,
                    format!("gs://{bucket}"),
                ))
            }
            ObjectOptions::Azure {
                account,
                container,
                endpoint,
                access_key,
            } => {
                require("Azure account", &account)?;
                require("Azure container", &container)?;
                let mut builder = MicrosoftAzureBuilder::new()
                    .with_account(&account)
                    .with_container_name(&container)
                    .with_retry(retry_config())
                    .with_client_options(client_options(endpoint.as_deref()));
                if let Some(endpoint) = &endpoint {
                    builder = builder.with_endpoint(endpoint.trim_end_matches('/').to_string());
                }
                let access_key = access_key.or_else(|| {
                    (endpoint.is_some() && account == AZURITE_ACCOUNT)
                        .then(|| AZURITE_KEY.to_string())
                });
                if let Some(key) = access_key {
                    builder = builder.with_access_key(key);
                }
                let store = builder
                    .build()
                    .map_err(|err| invalid("cannot configure the Azure client", Some(err)))?;
                Ok(ObjectStorage::paged(
                    store,
                    Flavour::Azure,
                    format!("azure://{account}/{container}"),
                ))
            }
        }
    }

    /// Storage over any `object_store` implementation (the in-memory one
    /// in tests).
    #[cfg(test)]
    fn over(store: Arc<dyn ObjectStore>) -> ObjectStorage {
        ObjectStorage {
            store,
            pages: None,
            flavour: Flavour::Other,
            location: "memory://".to_string(),
        }
    }
}

/// Maps an `object_store` error to the port's kinds, keeping it as the cause.
fn map_err(err: object_store::Error) -> StorageError {
    use object_store::Error as E;
    let kind = match &err {
        E::NotFound { .. } => StorageErrorKind::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => StorageErrorKind::AlreadyExists,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            StorageErrorKind::PermissionDenied
        }
        E::NotSupported { .. } | E::NotImplemented { .. } => StorageErrorKind::Unsupported,
        E::Generic { source, .. } => {
            generic_kind(source.as_ref()).unwrap_or(StorageErrorKind::Other)
        }
        _ => StorageErrorKind::Other,
    };
    StorageError {
        kind,
        source: Some(Box::new(err)),
    }
}

/// The kind of a failed request, from its cause: the store could not be
/// reached or answered with a server-side failure (connection refused or
/// reset, timeouts, 5xx, 429, 408) ⇒ `Unavailable`; it does not implement
/// the request (501) ⇒ `Unsupported`.
fn generic_kind(err: &(dyn std::error::Error + 'static)) -> Option<StorageErrorKind> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(http) = err.downcast_ref::<HttpError>() {
            match http.kind() {
                HttpErrorKind::Connect
                | HttpErrorKind::Request
                | HttpErrorKind::Timeout
                | HttpErrorKind::Interrupted => return Some(StorageErrorKind::Unavailable),
                _ => {}
            }
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::BrokenPipe
                    | K::TimedOut
                    | K::UnexpectedEof
            ) {
                return Some(StorageErrorKind::Unavailable);
            }
        }
        if let Some(kind) = status_kind(&err.to_string()) {
            return Some(kind);
        }
        next = err.source();
    }
    None
}

/// object_store keeps the HTTP status of a failed request in an error type
/// it does not export; its text is stable ("Server returned non-2xx status
/// code: 503 Service Unavailable: ..."), and an error body S3 sends with
/// 200 for an internal error reads "Server returned error response".
fn status_kind(text: &str) -> Option<StorageErrorKind> {
    if text.starts_with("Server returned error response") {
        return Some(StorageErrorKind::Unavailable);
    }
    let rest = text.strip_prefix("Server returned non-2xx status code: ")?;
    match rest.get(..3)?.parse::<u16>().ok()? {
        501 => Some(StorageErrorKind::Unsupported),
        500..=599 | 429 | 408 => Some(StorageErrorKind::Unavailable),
        _ => None,
    }
}

fn kind_err(kind: StorageErrorKind) -> StorageError {
    StorageError::of(kind)
}

/// An error of `kind` with a plain description as its cause.
fn described(kind: StorageErrorKind, text: &str) -> StorageError {
    StorageError {
        kind,
        source: Some(text.to_string().into()),
    }
}

/// The key prefix of a namespace.
fn root_key(root: &str) -> Result<Path, StorageError> {
    Path::parse(root.trim_matches('/')).map_err(|err| StorageError {
        kind: StorageErrorKind::Other,
        source: Some(Box::new(err)),
    })
}

/// The key of `path` in the namespace `root`.
fn object_key(root: &str, path: &VirtualPath) -> Result<Path, StorageError> {
    let mut key = root_key(root)?;
    for name in path.components() {
        if name == MARKER {
            return Err(kind_err(StorageErrorKind::PermissionDenied));
        }
        let part = PathPart::parse(name).map_err(|err| StorageError {
            kind: StorageErrorKind::Unsupported,
            source: Some(Box::new(err)),
        })?;
        key = key.join(part);
    }
    Ok(key)
}

/// The listing prefix of a key (`None` for the bucket's top).
fn prefix(key: &Path) -> Option<&Path> {
    (!key.as_ref().is_empty()).then_some(key)
}

fn marker_of(key: &Path) -> Path {
    key.clone().join(MARKER)
}

fn file_meta(meta: &ObjectMeta) -> FileMeta {
    let mtime = meta.last_modified.timestamp();
    FileMeta {
        kind: FileKind::File,
        size: meta.size,
        mode: 0o644,
        mtime,
        atime: mtime,
    }
}

fn dir_meta(mtime: i64) -> FileMeta {
    FileMeta {
        kind: FileKind::Dir,
        size: 0,
        mode: 0o755,
        mtime,
        atime: mtime,
    }
}

/// How many keys one listing request asks for.
const LIST_PAGE: usize = 1000;

/// One page of a directory (one level: `/` delimits).
async fn list_page(
    pages: &dyn PaginatedListStore,
    below: Option<&str>,
    page_token: Option<String>,
) -> Result<PaginatedListResult, StorageError> {
    let options = PaginatedListOptions {
        delimiter: Some("/".into()),
        max_keys: Some(LIST_PAGE),
        page_token,
        ..Default::default()
    };
    pages.list_paginated(below, options).await.map_err(map_err)
}

/// A listing's files and directories, markers hidden, sorted by name.
fn entries_of(listing: &ListResult) -> Vec<DirEntry> {
    let mut entries = Vec::with_capacity(listing.objects.len() + listing.common_prefixes.len());
    for object in &listing.objects {
        match object.location.filename() {
            Some(name) if name != MARKER => entries.push(DirEntry {
                name: name.to_string(),
                meta: file_meta(object),
            }),
            _ => {}
        }
    }
    for dir in &listing.common_prefixes {
        match dir.filename() {
            Some(name) if name != MARKER => entries.push(DirEntry {
                name: name.to_string(),
                meta: dir_meta(0),
            }),
            _ => {}
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    entries
}

impl ObjectStorage {
    /// The object at `key`, if there is one.
    async fn head_file(&self, key: &Path) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(map_err(err)),
        }
    }

    /// Some object under the directory `key` (its marker or any content),
    /// if the directory exists.
    async fn first_under(&self, key: &Path) -> Result<Option<ObjectMeta>, StorageError> {
        Ok(self.some_under(key, 1).await?.into_iter().next())
    }

    /// Up to `most` objects under the directory `key`, asking the store for
    /// no more than that (a directory may hold many thousands).
    async fn some_under(&self, key: &Path, most: usize) -> Result<Vec<ObjectMeta>, StorageError> {
        if let Some(pages) = &self.pages {
            let below = prefix(key).map(|key| format!("{key}/"));
            let options = PaginatedListOptions {
                max_keys: Some(most),
                ..Default::default()
            };
            let page = pages
                .list_paginated(below.as_deref(), options)
                .await
                .map_err(map_err)?;
            // A store may answer a short page with more to come (Azure
            // does); then the listing below reads on.
            if page.result.objects.len() >= most || page.page_token.is_none() {
                return Ok(page.result.objects.into_iter().take(most).collect());
            }
        }
        self.store
            .list(prefix(key))
            .take(most)
            .try_collect()
            .await
            .map_err(map_err)
    }

    /// `Ok` when the parent directory of `path` exists; `NotFound` when it
    /// does not, `Conflict` when it is a file.
    async fn require_parent(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        if parent.is_root() {
            return Ok(());
        }
        let key = object_key(root, &parent)?;
        if self.first_under(&key).await?.is_some() {
            return Ok(());
        }
        if self.head_file(&key).await?.is_some() {
            return Err(kind_err(StorageErrorKind::Conflict));
        }
        Err(kind_err(StorageErrorKind::NotFound))
    }

    /// Whether anything (file or directory) is at `path`.
    async fn exists(&self, key: &Path) -> Result<bool, StorageError> {
        Ok(self.head_file(key).await?.is_some() || self.first_under(key).await?.is_some())
    }

    /// Copies one object to `to`, on the server side where the store can.
    async fn copy_object(&self, from: &ObjectMeta, to: &Path) -> Result<(), StorageError> {
        if self.flavour == Flavour::S3 && from.size > S3_COPY_LIMIT {
            let upload = self.store.put_multipart(to).await.map_err(map_err)?;
            let mut parts = PartWriter::new(upload);
            if let Err(err) = fill_from(&self.store, from, &mut parts).await {
                parts.abort_quietly().await;
                return Err(err);
            }
            return parts.finish().await.map(|_| ()).map_err(map_err);
        }
        self.store.copy(&from.location, to).await.map_err(map_err)
    }

    /// Moves every object under the directory `from` to `to`, reading the
    /// listing lazily.
    async fn rename_tree(&self, from: &Path, to: &Path) -> Result<(), StorageError> {
        self.store
            .list(Some(from))
            .map_err(map_err)
            .try_for_each_concurrent(RENAME_CONCURRENCY, |meta| async move {
                let rest = meta.location.prefix_match(from).ok_or_else(|| {
                    described(
                        StorageErrorKind::Other,
                        "a listed object is outside its prefix",
                    )
                })?;
                let target = rest.fold(to.clone(), |key, part| key.join(part));
                self.copy_object(&meta, &target).await?;
                self.store.delete(&meta.location).await.map_err(map_err)
            })
            .await
    }
}

/// Streams the object `meta` into an upload.
async fn fill_from(
    store: &Arc<dyn ObjectStore>,
    meta: &ObjectMeta,
    parts: &mut PartWriter,
) -> Result<(), StorageError> {
    let options = GetOptions {
        if_match: meta.e_tag.clone(),
        ..Default::default()
    };
    let mut stream = store
        .get_opts(&meta.location, options)
        .await
        .map_err(read_err)?
        .into_stream();
    while let Some(chunk) = stream.try_next().await.map_err(read_err)? {
        parts.push(chunk).await.map_err(map_err)?;
    }
    if parts.written() != meta.size {
        return Err(described(
            StorageErrorKind::Other,
            "the object read back does not have its recorded size",
        ));
    }
    Ok(())
}

/// A failed read of one version: the object changed since it was opened.
fn read_err(err: object_store::Error) -> StorageError {
    match err {
        err @ object_store::Error::Precondition { .. } => StorageError {
            kind: StorageErrorKind::Conflict,
            source: Some(Box::new(err)),
        },
        err => map_err(err),
    }
}

#[async_trait]
impl FileStorage for ObjectStorage {
    async fn ensure_root(&self, root: &str) -> Result<(), StorageError> {
        let key = root_key(root)?;
        if key.as_ref().is_empty() {
            return Ok(());
        }
        let marker = marker_of(&key);
        if self.head_file(&marker).await?.is_some() {
            return Ok(());
        }
        self.store
            .put(&marker, PutPayload::new())
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn stat(&self, root: &str, path: &VirtualPath) -> Result<FileMeta, StorageError> {
        let key = object_key(root, path)?;
        if path.is_root() {
            return Ok(dir_meta(0));
        }
        if let Some(meta) = self.head_file(&key).await? {
            return Ok(file_meta(&meta));
        }
        match self.first_under(&key).await? {
            Some(first) => Ok(dir_meta(first.last_modified.timestamp())),
            None => Err(kind_err(StorageErrorKind::NotFound)),
        }
    }

    async fn list(&self, root: &str, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError> {
        let key = object_key(root, path)?;
        let listing = self
            .store
            .list_with_delimiter(prefix(&key))
            .await
            .map_err(map_err)?;
        let found = !listing.objects.is_empty() || !listing.common_prefixes.is_empty();
        if !found && !path.is_root() {
            if self.head_file(&key).await?.is_some() {
                return Err(kind_err(StorageErrorKind::Conflict));
            }
            return Err(kind_err(StorageErrorKind::NotFound));
        }
        Ok(entries_of(&listing))
    }

    async fn list_pages(&self, root: &str, path: &VirtualPath) -> Result<EntryPages, StorageError> {
        let Some(pages) = self.pages.clone() else {
            return Ok(tollgate_ports::outbound::one_page(
                self.list(root, path).await?,
            ));
        };
        let key = object_key(root, path)?;
        let below = prefix(&key).map(|key| format!("{key}/"));
        let first = list_page(pages.as_ref(), below.as_deref(), None).await?;
        let found = !first.result.objects.is_empty() || !first.result.common_prefixes.is_empty();
        if !found && first.page_token.is_none() && !path.is_root() {
            if self.head_file(&key).await?.is_some() {
                return Err(kind_err(StorageErrorKind::Conflict));
            }
            return Err(kind_err(StorageErrorKind::NotFound));
        }
        // Each later page is asked for only when the caller wants it.
        let state = (Some(first), pages, below);
        Ok(Box::pin(futures::stream::try_unfold(
            state,
            |(mut next, pages, below)| async move {
                loop {
                    let page = match next.take() {
                        Some(page) => page,
                        None => return Ok(None),
                    };
                    if let Some(token) = page.page_token.clone() {
                        next =
                            Some(list_page(pages.as_ref(), below.as_deref(), Some(token)).await?);
                    }
                    let entries = entries_of(&page.result);
                    // A store may answer an empty page with more to come.
                    if !entries.is_empty() {
                        return Ok(Some((entries, (next, pages, below))));
                    }
                }
            },
        )))
    }

    async fn mkdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(kind_err(StorageErrorKind::AlreadyExists));
        }
        let key = object_key(root, path)?;
        self.require_parent(root, path).await?;
        if self.exists(&key).await? {
            return Err(kind_err(StorageErrorKind::AlreadyExists));
        }
        self.store
            .put(&marker_of(&key), PutPayload::new())
            .await
            .map(|_| ())
            .map_err(map_err)
    }

    async fn rmdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(kind_err(StorageErrorKind::PermissionDenied));
        }
        let key = object_key(root, path)?;
        let marker = marker_of(&key);
        match self.some_under(&key, 2).await?.as_slice() {
            [] if self.head_file(&key).await?.is_some() => {
                Err(kind_err(StorageErrorKind::Conflict))
            }
            [] => Err(kind_err(StorageErrorKind::NotFound)),
            [only] if only.location == marker => self.store.delete(&marker).await.map_err(map_err),
            _ => Err(kind_err(StorageErrorKind::Conflict)),
        }
    }

    async fn remove(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        if path.is_root() {
            return Err(kind_err(StorageErrorKind::Conflict));
        }
        let key = object_key(root, path)?;
        if self.head_file(&key).await?.is_some() {
            return self.store.delete(&key).await.map_err(map_err);
        }
        if self.first_under(&key).await?.is_some() {
            return Err(kind_err(StorageErrorKind::Conflict));
        }
        Err(kind_err(StorageErrorKind::NotFound))
    }

    async fn rename(
        &self,
        root: &str,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), StorageError> {
        if from.is_root() {
            return Err(kind_err(StorageErrorKind::PermissionDenied));
        }
        if to.is_root() {
            return Err(kind_err(StorageErrorKind::AlreadyExists));
        }
        let source = object_key(root, from)?;
        let target = object_key(root, to)?;
        let file = self.head_file(&source).await?;
        let is_dir = file.is_none() && self.first_under(&source).await?.is_some();
        if file.is_none() && !is_dir {
            return Err(kind_err(StorageErrorKind::NotFound));
        }
        if self.exists(&target).await? {
            return Err(kind_err(StorageErrorKind::AlreadyExists));
        }
        self.require_parent(root, to).await?;
        match file {
            Some(meta) => {
                self.copy_object(&meta, &target).await?;
                self.store.delete(&source).await.map_err(map_err)
            }
            None if to.starts_with(from) => Err(kind_err(StorageErrorKind::Conflict)),
            None => self.rename_tree(&source, &target).await,
        }
    }

    async fn set_times(
        &self,
        root: &str,
        path: &VirtualPath,
        _atime: i64,
        _mtime: i64,
    ) -> Result<(), StorageError> {
        let key = object_key(root, path)?;
        if path.is_root() || self.exists(&key).await? {
            return Ok(());
        }
        Err(kind_err(StorageErrorKind::NotFound))
    }

    async fn open_read(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Box<dyn ReadHandle>, StorageError> {
        let key = object_key(root, path)?;
        if path.is_root() {
            return Ok(Box::new(DirRead { mtime: 0 }));
        }
        if let Some(meta) = self.head_file(&key).await? {
            return Ok(Box::new(ObjectRead::new(self.store.clone(), meta)));
        }
        match self.first_under(&key).await? {
            Some(first) => Ok(Box::new(DirRead {
                mtime: first.last_modified.timestamp(),
            })),
            None => Err(kind_err(StorageErrorKind::NotFound)),
        }
    }

    async fn open_write(
        &self,
        root: &str,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        if path.is_root() {
            return Err(kind_err(StorageErrorKind::Conflict));
        }
        let key = object_key(root, path)?;
        let (existing, under, parent) = tokio::join!(
            self.head_file(&key),
            self.first_under(&key),
            self.require_parent(root, path)
        );
        parent?;
        let existing = existing?;
        if existing.is_none() && under?.is_some() {
            return Err(kind_err(StorageErrorKind::Conflict));
        }
        let base = match mode {
            WriteMode::InPlace => existing,
            WriteMode::Replace => None,
        };
        let upload = self.store.put_multipart(&key).await.map_err(map_err)?;
        let mut parts = PartWriter::new(upload);
        if let Some(base) = &base
            && let Err(err) = fill_from(&self.store, base, &mut parts).await
        {
            parts.abort_quietly().await;
            return Err(err);
        }
        let base = base.map(|meta| ObjectRead::new(self.store.clone(), meta));
        Ok(Box::new(ObjectWrite {
            state: Mutex::new(WriteState { parts, base }),
        }))
    }
}

/// A directory opened for reading: it describes itself and has no bytes.
struct DirRead {
    mtime: i64,
}

#[async_trait]
impl ReadHandle for DirRead {
    async fn read_at(&mut self, _offset: u64, _len: u32) -> Result<Bytes, StorageError> {
        Err(kind_err(StorageErrorKind::Conflict))
    }

    async fn meta(&mut self) -> Result<FileMeta, StorageError> {
        Ok(dir_meta(self.mtime))
    }
}

/// The open GET of a read handle.
struct Body {
    stream: BoxStream<'static, object_store::Result<Bytes>>,
    /// Bytes received and not yet read.
    pending: Bytes,
    /// The offset of the first byte of `pending` (or of the next byte of
    /// the stream when `pending` is empty).
    next: u64,
}

/// One version of an object, read through ranged GETs.
struct ObjectRead {
    store: Arc<dyn ObjectStore>,
    meta: ObjectMeta,
    /// Behind a mutex only so that the handle is `Sync`; `&mut self`
    /// reaches it without locking.
    body: Mutex<Option<Body>>,
}

impl ObjectRead {
    fn new(store: Arc<dyn ObjectStore>, meta: ObjectMeta) -> Self {
        ObjectRead {
            store,
            meta,
            body: Mutex::new(None),
        }
    }

    async fn open(&self, offset: u64) -> Result<Body, StorageError> {
        let options = GetOptions {
            if_match: self.meta.e_tag.clone(),
            range: Some(GetRange::Offset(offset)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(&self.meta.location, options)
            .await
            .map_err(read_err)?;
        Ok(Body {
            stream: result.into_stream(),
            pending: Bytes::new(),
            next: offset,
        })
    }

    /// Up to `len` bytes at `offset` (at most `MAX_READ`).
    async fn read(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        let size = self.meta.size;
        if offset >= size || len == 0 {
            return Ok(Bytes::new());
        }
        let want = (len as usize).min(MAX_READ).min((size - offset) as usize);
        let slot = self.body.get_mut().unwrap_or_else(PoisonError::into_inner);
        let reusable = slot
            .take()
            .filter(|body| body.next <= offset && offset - body.next <= SKIP_AHEAD);
        let mut body = match reusable {
            Some(body) => body,
            None => self.open(offset).await?,
        };
        let mut out = BytesMut::new();
        let mut retried = false;
        while out.len() < want {
            if body.pending.is_empty() {
                match body.stream.next().await {
                    Some(Ok(chunk)) => body.pending = chunk,
                    None => {
                        return Err(described(
                            StorageErrorKind::Other,
                            "the object ended before its size",
                        ));
                    }
                    // A broken or timed-out response: ask again once from
                    // where it stopped.
                    Some(Err(err)) if retried => return Err(read_err(err)),
                    Some(Err(err)) => {
                        tracing::debug!(error = %err, "a download broke off; resuming it");
                        retried = true;
                        body = self.open(body.next).await?;
                    }
                }
                continue;
            }
            if body.next < offset {
                let skip = ((offset - body.next) as usize).min(body.pending.len());
                body.pending.advance(skip);
                body.next += skip as u64;
                continue;
            }
            let take = body.pending.len().min(want - out.len());
            let chunk = body.pending.split_to(take);
            body.next += take as u64;
            if out.is_empty() && take == want {
                *self.body.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(body);
                return Ok(chunk);
            }
            if out.is_empty() {
                out.reserve(want);
            }
            out.extend_from_slice(&chunk);
        }
        *self.body.get_mut().unwrap_or_else(PoisonError::into_inner) = Some(body);
        Ok(out.freeze())
    }
}

#[async_trait]
impl ReadHandle for ObjectRead {
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.read(offset, len).await
    }

    async fn meta(&mut self) -> Result<FileMeta, StorageError> {
        Ok(file_meta(&self.meta))
    }
}

/// Sends a multipart upload part by part, with bounded memory: the part
/// being filled plus at most `PARTS_IN_FLIGHT` parts being sent.
struct PartWriter {
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    sending: JoinSet<object_store::Result<()>>,
    /// The part being filled.
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Parts handed to the upload so far.
    parts: usize,
    /// Bytes handed to the upload so far.
    sent: u64,
}

impl PartWriter {
    fn new(upload: Box<dyn MultipartUpload>) -> Self {
        PartWriter {
            upload: Some(upload),
            sending: JoinSet::new(),
            pending: Vec::new(),
            pending_len: 0,
            parts: 0,
            sent: 0,
        }
    }

    fn upload(&mut self) -> object_store::Result<&mut Box<dyn MultipartUpload>> {
        self.upload
            .as_mut()
            .ok_or_else(|| object_store::Error::Generic {
                store: "tollgate",
                source: "the upload is already completed or aborted".into(),
            })
    }

    fn part_size(&self) -> usize {
        PART_SIZE << (self.parts / PARTS_PER_SIZE_STEP).min(MAX_SIZE_STEPS)
    }

    /// Everything written, sent or not.
    fn written(&self) -> u64 {
        self.sent + self.pending_len as u64
    }

    async fn push(&mut self, data: Bytes) -> object_store::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.pending_len += data.len();
        self.pending.push(data);
        while self.pending_len >= self.part_size() + HELD_BACK {
            let size = self.part_size();
            self.send_part(size).await?;
        }
        Ok(())
    }

    /// Replaces the written bytes from `offset` on with `data`, when they
    /// are still unsent (bytes after the end of `data` stay).
    fn overwrite(&mut self, offset: u64, data: &[u8]) -> bool {
        if offset < self.sent || offset > self.written() {
            return false;
        }
        let start = (offset - self.sent) as usize;
        let end = start + data.len();
        let mut joined = BytesMut::with_capacity(self.pending_len.max(end));
        for chunk in self.pending.drain(..) {
            joined.extend_from_slice(&chunk);
        }
        if end > joined.len() {
            joined.resize(end, 0);
        }
        joined[start..end].copy_from_slice(data);
        self.pending_len = joined.len();
        self.pending.push(joined.freeze());
        true
    }

    /// Hands the first `size` pending bytes (all of them when fewer) to
    /// the upload as one part, once fewer than `PARTS_IN_FLIGHT` parts are
    /// being sent.
    async fn send_part(&mut self, size: usize) -> object_store::Result<()> {
        self.wait_until_sending(PARTS_IN_FLIGHT - 1).await?;
        let mut part = Vec::new();
        let mut taken = 0;
        let mut rest = Vec::new();
        for mut chunk in self.pending.drain(..) {
            if taken >= size {
                rest.push(chunk);
                continue;
            }
            if taken + chunk.len() > size {
                rest.push(chunk.split_off(size - taken));
            }
            taken += chunk.len();
            part.push(chunk);
        }
        self.pending = rest;
        self.pending_len -= taken;
        self.sent += taken as u64;
        self.parts += 1;
        let part: PutPayload = part.into_iter().collect();
        let sent = self.upload()?.put_part(part);
        self.sending.spawn(sent);
        Ok(())
    }

    /// Waits until at most `most` parts are being sent.
    async fn wait_until_sending(&mut self, most: usize) -> object_store::Result<()> {
        while self.sending.len() > most {
            match self.sending.join_next().await {
                Some(Ok(sent)) => sent?,
                Some(Err(join)) => return Err(join.into()),
                None => break,
            }
        }
        Ok(())
    }

    /// Up to `len` bytes at `offset` from the part not yet sent, if
    /// `offset` lies in it.
    fn read_unsent(&self, offset: u64, len: usize) -> Option<Bytes> {
        if offset < self.sent || offset >= self.written() {
            return None;
        }
        let mut skip = (offset - self.sent) as usize;
        let mut out = BytesMut::new();
        for chunk in &self.pending {
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            let take = (chunk.len() - skip).min(len - out.len());
            out.extend_from_slice(&chunk[skip..skip + take]);
            skip = 0;
            if out.len() == len {
                break;
            }
        }
        Some(out.freeze())
    }

    /// Sends what is left and completes the upload; on failure, aborts it.
    async fn finish(mut self) -> object_store::Result<u64> {
        let size = self.written();
        let sent = async {
            if self.pending_len > 0 {
                let all = self.pending_len;
                self.send_part(all).await?;
            }
            self.wait_until_sending(0).await?;
            self.upload()?.complete().await
        }
        .await;
        match sent {
            Ok(_) => {
                self.upload = None;
                Ok(size)
            }
            Err(err) => {
                self.abort_quietly().await;
                Err(err)
            }
        }
    }

    async fn abort(mut self) -> object_store::Result<()> {
        self.sending.shutdown().await;
        match self.upload.take() {
            Some(mut upload) => upload.abort().await,
            None => Ok(()),
        }
    }

    /// Aborts after another failure, which is the one worth reporting.
    async fn abort_quietly(self) {
        if let Err(err) = self.abort().await {
            tracing::warn!(error = %err, "cannot abort a multipart upload");
        }
    }
}

impl Drop for PartWriter {
    /// An upload dropped before it completed (a handle dropped without
    /// commit or abort, a cancelled commit) is aborted in the background,
    /// so no incomplete upload is left behind.
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(err) = upload.abort().await {
                    tracing::warn!(error = %err, "cannot abort an abandoned multipart upload");
                }
            });
        }
    }
}

struct WriteState {
    parts: PartWriter,
    /// The object a resumed write started from.
    base: Option<ObjectRead>,
}

/// A write handle: a multipart upload to the final key.
struct ObjectWrite {
    /// Behind a mutex only so that the handle is `Sync`; `&mut self`
    /// reaches it without locking.
    state: Mutex<WriteState>,
}

impl ObjectWrite {
    fn state(&mut self) -> &mut WriteState {
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    fn into_state(self) -> WriteState {
        self.state
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl WriteHandle for ObjectWrite {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        let state = self.state();
        if offset == state.parts.written() {
            return state.parts.push(data).await.map_err(map_err);
        }
        if state.parts.overwrite(offset, &data) {
            return Ok(());
        }
        Err(described(
            StorageErrorKind::Unsupported,
            "an object store takes writes only at the end of what is written",
        ))
    }

    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        let state = self.state();
        let len = (len as usize).min(MAX_READ);
        if offset >= state.parts.written() || len == 0 {
            return Ok(Bytes::new());
        }
        if let Some(bytes) = state.parts.read_unsent(offset, len) {
            return Ok(bytes);
        }
        match &mut state.base {
            Some(base) if offset < base.meta.size => base.read(offset, len as u32).await,
            _ => Err(described(
                StorageErrorKind::Unsupported,
                "the bytes at this offset are already sent to the object store",
            )),
        }
    }

    async fn size(&mut self) -> Result<u64, StorageError> {
        Ok(self.state().parts.written())
    }

    /// An object store keeps an upload only at its commit, which is
    /// durable. A new object has nothing to sync before it: it is not
    /// there at all until then, as a staged local upload a crash would
    /// lose is not, so the sync answers at once. A write over an existing
    /// object leaves that object as it was until the commit, where a local
    /// file would hold the synced bytes: `Unsupported`.
    async fn sync(&mut self) -> Result<(), StorageError> {
        if self.state().base.is_none() {
            return Ok(());
        }
        Err(described(
            StorageErrorKind::Unsupported,
            "an object store keeps a rewrite of an object only once it is committed",
        ))
    }

    async fn commit(self: Box<Self>) -> Result<u64, StorageError> {
        let state = self.into_state();
        state.parts.finish().await.map_err(map_err)
    }

    async fn abort(self: Box<Self>) -> Result<(), StorageError> {
        let state = self.into_state();
        state.parts.abort().await.map_err(map_err)
    }
}

#[cfg(test)]
mod tests;
