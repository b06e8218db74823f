//! Encryption at rest. `Encrypted` wraps any `FileStorage` and stores every
//! file as AES-256-GCM chunks of 64 KiB under a random per-file key, which is
//! itself wrapped under the mount's key in a fixed-size header. Reads and
//! writes at any offset touch only the chunks they need, and a plaintext size
//! follows from the stored length alone, so listings never open a file.
//!
//! The byte layout is a stable format, specified in docs/encrypted-format.md.
//! Directories and names are not encrypted: every operation other than
//! opening a file passes straight through to the inner backend.

use std::fmt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, Key, KeyInit, Nonce, Tag};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use sha2::{Digest, Sha256};
use tollgate_domain::VirtualPath;
use tollgate_ports::outbound::{
    DirEntry, EntryPages, FileKind, FileMeta, FileStorage, ReadHandle, StorageError,
    StorageErrorKind, WriteHandle, WriteMode,
};

/// The first bytes of every encrypted file (format version 1).
const MAGIC: [u8; 8] = *b"TGENC1\0\0";
const KEY_ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const FILE_KEY_LEN: usize = 32;
/// The header bytes authenticated by the key wrap: magic, key id, nonce.
const WRAP_AAD_LEN: usize = MAGIC.len() + KEY_ID_LEN + NONCE_LEN;
/// Magic, key id, wrap nonce, wrapped file key and its tag: 84 bytes.
const HEADER_LEN: usize = WRAP_AAD_LEN + FILE_KEY_LEN + TAG_LEN;
/// Plaintext bytes per chunk; only the last chunk of a file may hold fewer.
const CHUNK_LEN: usize = 64 * 1024;
/// What each stored chunk adds to its plaintext: nonce and tag.
const CHUNK_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Domain separation for the key id derivation.
const KEY_ID_CONTEXT: &[u8] = b"tollgate-mount-key-id\0";
/// The most plaintext one read request returns (the port allows short
/// reads), so a huge request cannot make the adapter buffer a whole file.
const MAX_READ: u64 = 16 * CHUNK_LEN as u64;

const HEADER: u64 = HEADER_LEN as u64;
const CHUNK: u64 = CHUNK_LEN as u64;
const OVERHEAD: u64 = CHUNK_OVERHEAD as u64;
const STORED_CHUNK: u64 = CHUNK + OVERHEAD;

/// Zeros that fill a hole left by a write past the end.
static ZEROS: [u8; CHUNK_LEN] = [0; CHUNK_LEN];

/// How many chunks a file of `plain` bytes has: an empty file has one
/// empty chunk, so that cutting a file down to its header is detected.
fn chunk_count(plain: u64) -> u64 {
    plain.div_ceil(CHUNK).max(1)
}

/// The stored length of a file of `plain` bytes, if it fits in a `u64`.
fn stored_len(plain: u64) -> Option<u64> {
    chunk_count(plain)
        .checked_mul(OVERHEAD)?
        .checked_add(plain)?
        .checked_add(HEADER)
}

/// The plaintext size a stored length implies. Exact for every length a
/// writer produces; for any other (damaged) length it is the same formula's
/// estimate, and opening such a file reports `Corrupt`.
fn plain_len(stored: u64) -> u64 {
    let body = stored.saturating_sub(HEADER);
    let full_chunks = body / STORED_CHUNK;
    let rest = body % STORED_CHUNK;
    full_chunks * CHUNK + rest.saturating_sub(OVERHEAD)
}

/// Whether a writer can have produced a file of this stored length.
fn is_valid_len(stored: u64) -> bool {
    stored_len(plain_len(stored)) == Some(stored)
}

/// Where chunk `index` starts in the stored file.
fn chunk_offset(index: u64) -> u64 {
    HEADER + index * STORED_CHUNK
}

/// The plaintext length of chunk `index` of a file of `plain` bytes.
fn chunk_plain_len(plain: u64, index: u64) -> usize {
    // Bounded by CHUNK_LEN, so the cast cannot truncate.
    (plain - index * CHUNK).min(CHUNK) as usize
}

/// The associated data of a chunk: its index and whether it is the last.
fn chunk_aad(index: u64, last: bool) -> [u8; 9] {
    let mut aad = [0u8; 9];
    aad[..8].copy_from_slice(&index.to_be_bytes());
    aad[8] = u8::from(last);
    aad
}

fn aes(key: &[u8; 32]) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
}

/// Why an operation on an encrypted file was refused; never names key
/// material.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn corrupt(path: &str, what: impl fmt::Display) -> StorageError {
    StorageError {
        kind: StorageErrorKind::Corrupt,
        source: Some(Box::new(Refused(format!("encrypted file {path}: {what}")))),
    }
}

/// A mount's data-encryption key (AES-256) and its 16-byte id.
///
/// The id is stored in every file's header, so a file encrypted under
/// another key is recognised as such; it reveals nothing about the key.
/// `Debug` shows the id only.
#[derive(Clone)]
pub struct DataKey {
    key: [u8; 32],
    id: [u8; KEY_ID_LEN],
}

impl DataKey {
    /// The key, with id = the first 16 bytes of
    /// SHA-256("tollgate-mount-key-id\0" || key).
    pub fn new(key: [u8; 32]) -> DataKey {
        let digest = Sha256::new()
            .chain_update(KEY_ID_CONTEXT)
            .chain_update(key)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        DataKey { key, id }
    }

    /// The key's id, as stored in file headers.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

/// Encrypts every file of `inner` (any `FileStorage`) at rest.
///
/// Sizes in `stat`, `list` and handles are plaintext sizes, computed from
/// stored lengths without reading. A file that was altered, truncated,
/// extended, reordered or encrypted under another key fails with
/// `StorageErrorKind::Corrupt`, never with wrong plaintext.
pub struct Encrypted {
    inner: Arc<dyn FileStorage>,
    key_id: [u8; KEY_ID_LEN],
    mount: Aes256Gcm,
}

impl fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypted")
            .field("key_id", &hex::encode(self.key_id))
            .finish_non_exhaustive()
    }
}

impl Encrypted {
    /// Encrypts the files of `inner` under the mount key `key`.
    pub fn new(inner: Arc<dyn FileStorage>, key: DataKey) -> Encrypted {
        Encrypted {
            inner,
            key_id: key.id,
            mount: aes(&key.key),
        }
    }

    /// A new file's header, and the cipher of its fresh random file key.
    fn new_header(&self, path: &str) -> ([u8; HEADER_LEN], FileCipher) {
        let mut file_key = [0u8; FILE_KEY_LEN];
        rand::fill(&mut file_key);
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(&MAGIC);
        header[MAGIC.len()..MAGIC.len() + KEY_ID_LEN].copy_from_slice(&self.key_id);
        header[MAGIC.len() + KEY_ID_LEN..WRAP_AAD_LEN].copy_from_slice(&nonce);
        let (aad, wrapped) = header.split_at_mut(WRAP_AAD_LEN);
        let (sealed_key, tag) = wrapped.split_at_mut(FILE_KEY_LEN);
        sealed_key.copy_from_slice(&file_key);
        let computed = self
            .mount
            .encrypt_inout_detached(&Nonce::<Aes256Gcm>::from(nonce), aad, sealed_key.into())
            .expect("a 32-byte key is far below AES-GCM's message limit");
        tag.copy_from_slice(&computed);
        (header, FileCipher::new(&file_key, path))
    }

    /// Checks a stored header and unwraps its file key.
    fn open_header(&self, header: &[u8], path: &str) -> Result<FileCipher, StorageError> {
        if header.len() < HEADER_LEN {
            return Err(corrupt(
                path,
                format_args!(
                    "{} bytes stored, shorter than the {HEADER_LEN}-byte header",
                    header.len()
                ),
            ));
        }
        let (aad, wrapped) = header[..HEADER_LEN].split_at(WRAP_AAD_LEN);
        if aad[..MAGIC.len()] != MAGIC {
            return Err(corrupt(path, "no encrypted-file header (bad magic)"));
        }
        let key_id = &aad[MAGIC.len()..MAGIC.len() + KEY_ID_LEN];
        if key_id != self.key_id {
            return Err(corrupt(
                path,
                format_args!(
                    "encrypted under the key with id {}, but this mount's key id is {}",
                    hex::encode(key_id),
                    hex::encode(self.key_id)
                ),
            ));
        }
        let nonce = Nonce::<Aes256Gcm>::try_from(&aad[MAGIC.len() + KEY_ID_LEN..])
            .expect("the header nonce is 12 bytes");
        let (sealed_key, tag) = wrapped.split_at(FILE_KEY_LEN);
        let tag = Tag::<Aes256Gcm>::try_from(tag).expect("the header tag is 16 bytes");
        let mut file_key = [0u8; FILE_KEY_LEN];
        file_key.copy_from_slice(sealed_key);
        self.mount
            .decrypt_inout_detached(&nonce, aad, file_key.as_mut_slice().into(), &tag)
            .map_err(|_| corrupt(path, "the header failed authentication (altered)"))?;
        Ok(FileCipher::new(&file_key, path))
    }

    /// A write handle on a new (empty) inner file: writes the header.
    async fn start_file(
        &self,
        mut inner: Box<dyn WriteHandle>,
        path: &str,
        mode: WriteMode,
    ) -> Result<EncryptedWrite, StorageError> {
        let (header, file) = self.new_header(path);
        if let Err(err) = inner.write_at(0, Bytes::copy_from_slice(&header)).await {
            discard(inner).await;
            return Err(err);
        }
        Ok(EncryptedWrite {
            inner,
            file,
            mode,
            tail_index: 0,
            tail: Vec::with_capacity(CHUNK_LEN),
            tail_dirty: true,
            cache: ChunkCache::default(),
        })
    }

    /// A write handle continuing an existing file: verifies the header and
    /// loads the last chunk, which later writes extend.
    async fn resume_file(
        &self,
        inner: &mut Box<dyn WriteHandle>,
        stored: u64,
        path: &str,
    ) -> Result<(FileCipher, u64, Vec<u8>), StorageError> {
        let header = read_stored(inner, 0, HEADER_LEN).await?;
        let file = self.open_header(&header, path)?;
        check_len(stored, path)?;
        let plain = plain_len(stored);
        let tail_index = chunk_count(plain) - 1;
        let len = chunk_plain_len(plain, tail_index);
        let sealed = read_stored(inner, chunk_offset(tail_index), len + CHUNK_OVERHEAD).await?;
        let mut tail = Vec::with_capacity(CHUNK_LEN);
        file.open(tail_index, true, &sealed, len, &mut tail)?;
        Ok((file, tail_index, tail))
    }
}

/// Refuses a stored length no writer produces (truncated or extended).
fn check_len(stored: u64, path: &str) -> Result<(), StorageError> {
    if is_valid_len(stored) {
        Ok(())
    } else {
        Err(corrupt(
            path,
            format_args!("a stored length of {stored} bytes is impossible (truncated or extended)"),
        ))
    }
}

fn plain_meta(mut meta: FileMeta) -> FileMeta {
    if meta.kind == FileKind::File {
        meta.size = plain_len(meta.size);
    }
    meta
}

/// Aborts an inner write after a failure that is already being reported.
async fn discard(inner: Box<dyn WriteHandle>) {
    if let Err(err) = inner.abort().await {
        tracing::warn!(error = ?err, "cannot discard a failed encrypted write");
    }
}

/// A listing of the inner backend with plaintext sizes (computed from the
/// stored lengths, without opening the files).
fn plain_sizes(mut entries: Vec<DirEntry>) -> Vec<DirEntry> {
    for entry in &mut entries {
        if entry.meta.kind == FileKind::File {
            entry.meta.size = plain_len(entry.meta.size);
        }
    }
    entries
}

#[async_trait]
impl FileStorage for Encrypted {
    async fn ensure_root(&self, root: &str) -> Result<(), StorageError> {
        self.inner.ensure_root(root).await
    }

    async fn stat(&self, root: &str, path: &VirtualPath) -> Result<FileMeta, StorageError> {
        self.inner.stat(root, path).await.map(plain_meta)
    }

    async fn list(&self, root: &str, path: &VirtualPath) -> Result<Vec<DirEntry>, StorageError> {
        Ok(plain_sizes(self.inner.list(root, path).await?))
    }

    async fn list_pages(&self, root: &str, path: &VirtualPath) -> Result<EntryPages, StorageError> {
        let pages = self.inner.list_pages(root, path).await?;
        Ok(Box::pin(pages.map_ok(plain_sizes)))
    }

    async fn mkdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        self.inner.mkdir(root, path).await
    }

    async fn rmdir(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        self.inner.rmdir(root, path).await
    }

    async fn remove(&self, root: &str, path: &VirtualPath) -> Result<(), StorageError> {
        self.inner.remove(root, path).await
    }

    async fn rename(
        &self,
        root: &str,
        from: &VirtualPath,
        to: &VirtualPath,
    ) -> Result<(), StorageError> {
        self.inner.rename(root, from, to).await
    }

    async fn set_times(
        &self,
        root: &str,
        path: &VirtualPath,
        atime: i64,
        mtime: i64,
    ) -> Result<(), StorageError> {
        self.inner.set_times(root, path, atime, mtime).await
    }

    async fn open_read(
        &self,
        root: &str,
        path: &VirtualPath,
    ) -> Result<Box<dyn ReadHandle>, StorageError> {
        let mut inner = self.inner.open_read(root, path).await?;
        let meta = inner.meta().await?;
        if meta.kind == FileKind::Dir {
            return Err(StorageError::of(StorageErrorKind::Conflict));
        }
        let header = read_stored(&mut inner, 0, HEADER_LEN).await?;
        let file = self.open_header(&header, path.as_str())?;
        check_len(meta.size, path.as_str())?;
        Ok(Box::new(EncryptedRead {
            inner,
            file,
            plain_len: plain_len(meta.size),
            cache: ChunkCache::default(),
        }))
    }

    async fn open_write(
        &self,
        root: &str,
        path: &VirtualPath,
        mode: WriteMode,
    ) -> Result<Box<dyn WriteHandle>, StorageError> {
        let mut inner = self.inner.open_write(root, path, mode).await?;
        let stored = match mode {
            WriteMode::Replace => 0,
            WriteMode::InPlace => match inner.size().await {
                Ok(stored) => stored,
                Err(err) => {
                    discard(inner).await;
                    return Err(err);
                }
            },
        };
        // An empty inner file is new: the inner backend created it for this
        // write (or a write was interrupted before its header was stored).
        if stored == 0 {
            return Ok(Box::new(self.start_file(inner, path.as_str(), mode).await?));
        }
        match self.resume_file(&mut inner, stored, path.as_str()).await {
            Ok((file, tail_index, tail)) => Ok(Box::new(EncryptedWrite {
                inner,
                file,
                mode,
                tail_index,
                tail,
                tail_dirty: false,
                cache: ChunkCache::default(),
            })),
            Err(err) => {
                discard(inner).await;
                Err(err)
            }
        }
    }
}

/// Seals and opens the chunks of one file under its file key.
struct FileCipher {
    cipher: Aes256Gcm,
    /// The virtual path, for error messages.
    path: String,
}

impl FileCipher {
    fn new(file_key: &[u8; FILE_KEY_LEN], path: &str) -> FileCipher {
        FileCipher {
            cipher: aes(file_key),
            path: path.to_string(),
        }
    }

    /// The stored form of chunk `index`: nonce || ciphertext || tag, under
    /// a fresh random nonce (a rewritten chunk never reuses one).
    fn seal(&self, index: u64, last: bool, plain: &[u8]) -> Bytes {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut out = Vec::with_capacity(plain.len() + CHUNK_OVERHEAD);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::<Aes256Gcm>::from(nonce),
                &chunk_aad(index, last),
                (&mut out[NONCE_LEN..]).into(),
            )
            .expect("a 64 KiB chunk is far below AES-GCM's message limit");
        out.extend_from_slice(&tag);
        Bytes::from(out)
    }

    /// Decrypts the stored chunk `index`, expected to hold `len` plaintext
    /// bytes, into `plain` (replacing its content).
    fn open(
        &self,
        index: u64,
        last: bool,
        sealed: &[u8],
        len: usize,
        plain: &mut Vec<u8>,
    ) -> Result<(), StorageError> {
        plain.clear();
        if sealed.len() != len + CHUNK_OVERHEAD {
            return Err(corrupt(
                &self.path,
                format_args!(
                    "chunk {index} is cut short ({} of {} bytes): the file is truncated",
                    sealed.len(),
                    len + CHUNK_OVERHEAD
                ),
            ));
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(len);
        let nonce = Nonce::<Aes256Gcm>::try_from(nonce).expect("a chunk nonce is 12 bytes");
        let tag = Tag::<Aes256Gcm>::try_from(tag).expect("a chunk tag is 16 bytes");
        plain.extend_from_slice(ciphertext);
        let res = self.cipher.decrypt_inout_detached(
            &nonce,
            &chunk_aad(index, last),
            plain.as_mut_slice().into(),
            &tag,
        );
        if res.is_err() {
            plain.clear();
            let place = if last { "last chunk" } else { "chunk" };
            return Err(corrupt(
                &self.path,
                format_args!(
                    "{place} {index} failed authentication (altered, reordered, truncated \
                     or extended)"
                ),
            ));
        }
        Ok(())
    }
}

/// Raw reads of the stored bytes, through a read or a write handle.
#[async_trait]
trait Stored: Send {
    async fn read_stored(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError>;
}

#[async_trait]
impl Stored for Box<dyn ReadHandle> {
    async fn read_stored(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.read_at(offset, len).await
    }
}

#[async_trait]
impl Stored for Box<dyn WriteHandle> {
    async fn read_stored(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        self.read_at(offset, len).await
    }
}

/// Reads `len` stored bytes at `offset`; fewer only where the stored file
/// ends. The inner backend may answer a request in several pieces.
async fn read_stored(
    source: &mut dyn Stored,
    offset: u64,
    len: usize,
) -> Result<Bytes, StorageError> {
    // Callers ask for at most one stored chunk, which fits in a u32.
    let want = |n: usize| u32::try_from(n).expect("a stored chunk fits in a u32");
    let first = source.read_stored(offset, want(len)).await?;
    if first.len() >= len || first.is_empty() {
        return Ok(first.slice(..first.len().min(len)));
    }
    let mut buf = BytesMut::with_capacity(len);
    buf.extend_from_slice(&first);
    while buf.len() < len {
        let more = source
            .read_stored(offset + buf.len() as u64, want(len - buf.len()))
            .await?;
        if more.is_empty() {
            break;
        }
        let take = more.len().min(len - buf.len());
        buf.extend_from_slice(&more[..take]);
    }
    Ok(buf.freeze())
}

/// The last chunk decrypted from the stored file, so that sequential reads
/// smaller than a chunk decrypt each chunk once.
#[derive(Default)]
struct ChunkCache {
    index: Option<u64>,
    plain: Vec<u8>,
}

impl ChunkCache {
    /// Chunk `index` (of `len` plaintext bytes, flagged `last`), decrypted
    /// from `source` unless it is the cached one.
    ///
    /// Decryption runs inline: one chunk is bounded work (64 KiB), and each
    /// is preceded by an await on the inner read, so a long request never
    /// holds a worker for long without yielding.
    async fn load(
        &mut self,
        source: &mut dyn Stored,
        file: &FileCipher,
        index: u64,
        len: usize,
        last: bool,
    ) -> Result<&mut Vec<u8>, StorageError> {
        if self.index != Some(index) {
            self.index = None;
            let sealed = read_stored(source, chunk_offset(index), len + CHUNK_OVERHEAD).await?;
            file.open(index, last, &sealed, len, &mut self.plain)?;
            self.index = Some(index);
        }
        Ok(&mut self.plain)
    }
}

/// Decrypting reads of one file.
struct EncryptedRead {
    inner: Box<dyn ReadHandle>,
    file: FileCipher,
    /// The plaintext size, from the stored length when the file was opened.
    plain_len: u64,
    cache: ChunkCache,
}

#[async_trait]
impl ReadHandle for EncryptedRead {
    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        let last_index = chunk_count(self.plain_len) - 1;
        if offset >= self.plain_len {
            // "End of file" is an answer too: it holds only if the last
            // chunk verifies as the last (not cut at a chunk boundary, and
            // for an empty file, not altered). Cached, so a sequential
            // reader that just read the last chunk pays nothing.
            self.cache
                .load(
                    &mut self.inner,
                    &self.file,
                    last_index,
                    chunk_plain_len(self.plain_len, last_index),
                    true,
                )
                .await?;
            return Ok(Bytes::new());
        }
        let end = offset
            .saturating_add(u64::from(len).min(MAX_READ))
            .min(self.plain_len);
        if offset >= end {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / CHUNK;
            let start = index * CHUNK;
            let chunk = self
                .cache
                .load(
                    &mut self.inner,
                    &self.file,
                    index,
                    chunk_plain_len(self.plain_len, index),
                    index == last_index,
                )
                .await?;
            let from = (pos - start) as usize;
            let to = (end - start).min(chunk.len() as u64) as usize;
            out.extend_from_slice(&chunk[from..to]);
            pos = start + to as u64;
        }
        Ok(out.freeze())
    }

    async fn meta(&mut self) -> Result<FileMeta, StorageError> {
        self.inner.meta().await.map(plain_meta)
    }
}

/// Encrypting writes of one file.
///
/// The plaintext is chunks `0..tail_index`, stored in the inner file (all
/// full, none flagged last), followed by `tail`: the chunk at the end, held
/// in memory until a later byte makes it a middle chunk, or until `commit`
/// or `abort` stores it flagged last. `tail` is empty only in an empty file.
struct EncryptedWrite {
    inner: Box<dyn WriteHandle>,
    file: FileCipher,
    mode: WriteMode,
    tail_index: u64,
    tail: Vec<u8>,
    /// Whether `tail` differs from what the inner file holds at its place.
    tail_dirty: bool,
    /// A chunk before the tail, as last read or rewritten.
    cache: ChunkCache,
}

fn too_large() -> StorageError {
    StorageError {
        kind: StorageErrorKind::QuotaExceeded,
        source: Some(Box::new(Refused(
            "a write ends beyond the largest encrypted file size".to_string(),
        ))),
    }
}

impl EncryptedWrite {
    fn plain_len(&self) -> u64 {
        self.tail_index * CHUNK + self.tail.len() as u64
    }

    /// Stores the tail chunk at its place.
    async fn store_tail(&mut self, last: bool) -> Result<(), StorageError> {
        let sealed = self.file.seal(self.tail_index, last, &self.tail);
        self.inner
            .write_at(chunk_offset(self.tail_index), sealed)
            .await?;
        if last {
            self.tail_dirty = false;
        }
        Ok(())
    }

    /// Adds `data` at the end. A full tail is stored (not last) only when
    /// a byte after it arrives.
    async fn append(&mut self, mut data: &[u8]) -> Result<(), StorageError> {
        while !data.is_empty() {
            if self.tail.len() == CHUNK_LEN {
                self.store_tail(false).await?;
                // The stored chunk becomes the cached one (no decryption if
                // it is read back), and the cache's buffer the new tail.
                std::mem::swap(&mut self.cache.plain, &mut self.tail);
                self.cache.index = Some(self.tail_index);
                self.tail_index += 1;
                self.tail.clear();
            }
            let take = (CHUNK_LEN - self.tail.len()).min(data.len());
            self.tail.extend_from_slice(&data[..take]);
            self.tail_dirty = true;
            data = &data[take..];
        }
        Ok(())
    }

    /// Extends the file with `len` zero bytes.
    async fn append_zeros(&mut self, mut len: u64) -> Result<(), StorageError> {
        while len > 0 {
            let take = len.min(CHUNK);
            self.append(&ZEROS[..take as usize]).await?;
            len -= take;
        }
        Ok(())
    }

    /// Replaces bytes inside the current plaintext (`offset + data.len()`
    /// is at most the size): in the tail in memory, before it by
    /// re-encrypting each affected chunk under a fresh nonce.
    async fn overwrite(&mut self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let index = pos / CHUNK;
            let start = index * CHUNK;
            let from = (pos - start) as usize;
            let to = (end - start).min(CHUNK) as usize;
            let piece_at = (pos - offset) as usize;
            let piece = &data[piece_at..piece_at + (to - from)];
            if index == self.tail_index {
                self.tail[from..to].copy_from_slice(piece);
                self.tail_dirty = true;
            } else {
                self.rewrite_chunk(index, from, piece).await?;
            }
            pos = start + to as u64;
        }
        Ok(())
    }

    /// Rewrites the stored middle chunk `index` with `piece` at `from`.
    async fn rewrite_chunk(
        &mut self,
        index: u64,
        from: usize,
        piece: &[u8],
    ) -> Result<(), StorageError> {
        let sealed = if piece.len() == CHUNK_LEN {
            // The whole chunk is replaced: nothing to read.
            if self.cache.index == Some(index) {
                self.cache.index = None;
            }
            self.file.seal(index, false, piece)
        } else {
            let chunk = self
                .cache
                .load(&mut self.inner, &self.file, index, CHUNK_LEN, false)
                .await?;
            chunk[from..from + piece.len()].copy_from_slice(piece);
            self.file.seal(index, false, chunk)
        };
        let res = self.inner.write_at(chunk_offset(index), sealed).await;
        if res.is_err() {
            // The cache holds the new plaintext, which may not be stored.
            self.cache.index = None;
        }
        res
    }
}

#[async_trait]
impl WriteHandle for EncryptedWrite {
    async fn write_at(&mut self, offset: u64, data: Bytes) -> Result<(), StorageError> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|end| stored_len(*end).is_some())
            .ok_or_else(too_large)?;
        let size = self.plain_len();
        if offset > size {
            self.append_zeros(offset - size).await?;
        }
        let size = self.plain_len();
        let overlap_end = end.min(size);
        if offset < overlap_end {
            self.overwrite(offset, &data[..(overlap_end - offset) as usize])
                .await?;
        }
        if end > size {
            self.append(&data[(size - offset) as usize..]).await?;
        }
        Ok(())
    }

    async fn read_at(&mut self, offset: u64, len: u32) -> Result<Bytes, StorageError> {
        let end = offset
            .saturating_add(u64::from(len).min(MAX_READ))
            .min(self.plain_len());
        if offset >= end {
            return Ok(Bytes::new());
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        let mut pos = offset;
        while pos < end {
            let index = pos / CHUNK;
            let start = index * CHUNK;
            let chunk: &[u8] = if index == self.tail_index {
                &self.tail
            } else {
                self.cache
                    .load(&mut self.inner, &self.file, index, CHUNK_LEN, false)
                    .await?
            };
            let from = (pos - start) as usize;
            let to = (end - start).min(chunk.len() as u64) as usize;
            out.extend_from_slice(&chunk[from..to]);
            pos = start + to as u64;
        }
        Ok(out.freeze())
    }

    async fn size(&mut self) -> Result<u64, StorageError> {
        Ok(self.plain_len())
    }

    /// Stores the tail as the last chunk, as an abort in place does, so
    /// that what is synced decrypts whole; a later write past it rewrites
    /// that chunk.
    async fn sync(&mut self) -> Result<(), StorageError> {
        if self.tail_dirty {
            self.store_tail(true).await?;
        }
        self.inner.sync().await
    }

    async fn commit(mut self: Box<Self>) -> Result<u64, StorageError> {
        if self.tail_dirty
            && let Err(err) = self.store_tail(true).await
        {
            discard(self.inner).await;
            return Err(err);
        }
        let plain = self.plain_len();
        let expected = stored_len(plain).expect("write_at keeps the size storable");
        let stored = self.inner.commit().await?;
        if stored != expected {
            return Err(corrupt(
                &self.file.path,
                format_args!(
                    "{stored} bytes stored for {plain} plaintext bytes, expected {expected}: \
                     another writer changed the file"
                ),
            ));
        }
        Ok(plain)
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        // An in-place write keeps what was written, so its tail is stored
        // as the last chunk: the file stays complete and decryptable.
        let stored = if self.mode == WriteMode::InPlace && self.tail_dirty {
            self.store_tail(true).await
        } else {
            Ok(())
        };
        let aborted = self.inner.abort().await;
        stored.and(aborted)
    }
}

#[cfg(test)]
mod tests;
