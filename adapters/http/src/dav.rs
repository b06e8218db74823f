//! WebDAV under `/dav` (dav-server): each request authenticates (basic or
//! bearer), becomes a session of its own, and reaches files only through
//! that session's `FileOps`, so WebDAV clients get the same permissions,
//! atomic uploads and events as every other protocol.

use std::io::SeekFrom;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::{Buf, Bytes};
use dav_server::davpath::DavPath;
use dav_server::fs::{
    DavDirEntry, DavFile, DavMetaData, FsError, FsFuture, FsResult, FsStream, GuardedFileSystem,
    OpenOptions, ReadDirMeta,
};
use dav_server::{DavConfig, DavHandler};
use futures::FutureExt;
use poem::http::StatusCode;
use poem::{Endpoint, Request, Response};
use tollgate_domain::session::Protocol;
use tollgate_ports::inbound::{
    Download, FileKind, FileMeta, FileOpError, FileOps, LoginError, Sessions, Upload, UploadMode,
};

use crate::request_session::{RequestSession, client_info};

/// Where WebDAV is mounted.
pub(crate) const PREFIX: &str = "/dav";

/// The largest read or write passed to storage at once.
const CHUNK: usize = 256 * 1024;

/// One request's login: its file operations, and its session, whose end is
/// recorded when the request (and any body it streams) is done.
#[derive(Clone)]
pub(crate) struct Login {
    files: Arc<dyn FileOps>,
    _session: Arc<RequestSession>,
}

fn fs_error(err: FileOpError) -> FsError {
    match err {
        FileOpError::Denied | FileOpError::InvalidPath(_) => FsError::Forbidden,
        FileOpError::NotFound => FsError::NotFound,
        FileOpError::AlreadyExists => FsError::Exists,
        FileOpError::Conflict(_) => FsError::Forbidden,
        FileOpError::QuotaExceeded => FsError::InsufficientStorage,
        FileOpError::Unsupported => FsError::NotImplemented,
        FileOpError::Unavailable | FileOpError::Corrupt | FileOpError::Internal => {
            FsError::GeneralFailure
        }
    }
}

fn text(path: &DavPath) -> String {
    let path = path.as_pathbuf().to_string_lossy().into_owned();
    if path.is_empty() {
        "/".to_string()
    } else {
        path
    }
}

/// Metadata in dav-server's terms.
#[derive(Debug, Clone)]
struct Meta(FileMeta);

impl DavMetaData for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn modified(&self) -> FsResult<SystemTime> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(self.0.mtime.max(0) as u64))
    }

    fn is_dir(&self) -> bool {
        self.0.kind == FileKind::Dir
    }
}

struct Entry {
    name: String,
    meta: FileMeta,
}

impl DavDirEntry for Entry {
    fn name(&self) -> Vec<u8> {
        self.name.as_bytes().to_vec()
    }

    fn metadata(&self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.meta.clone()));
        async move { Ok(meta) }.boxed()
    }
}

/// A file being read: the download finishes (is recorded) once its last
/// byte was read; otherwise dropping it records an abort.
struct Reading {
    download: Option<Box<dyn Download>>,
    meta: FileMeta,
    position: u64,
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("position", &self.position)
            .finish()
    }
}

/// A file being written: the upload commits on flush; dropped without a
/// flush (the client went away), it is aborted and nothing is committed.
struct Writing {
    upload: Option<Box<dyn Upload>>,
    position: u64,
    written: u64,
}

impl std::fmt::Debug for Writing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writing")
            .field("position", &self.position)
            .finish()
    }
}

impl DavFile for Reading {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        let meta: Box<dyn DavMetaData> = Box::new(Meta(self.meta.clone()));
        async move { Ok(meta) }.boxed()
    }

    fn write_buf(&mut self, _buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn write_bytes(&mut self, _buf: Bytes) -> FsFuture<'_, ()> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn read_bytes(&mut self, count: usize) -> FsFuture<'_, Bytes> {
        async move {
            let Some(download) = self.download.as_mut() else {
                return Ok(Bytes::new());
            };
            let data = download
                .read_at(self.position, count.min(CHUNK) as u32)
                .await
                .map_err(fs_error)?;
            self.position += data.len() as u64;
            if (data.is_empty() || self.position >= self.meta.size)
                && let Some(download) = self.download.take()
            {
                download.finish().await.map_err(fs_error)?;
            }
            Ok(data)
        }
        .boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            self.position = match pos {
                SeekFrom::Start(n) => n,
                SeekFrom::End(n) => self.meta.size.saturating_add_signed(n),
                SeekFrom::Current(n) => self.position.saturating_add_signed(n),
            };
            Ok(self.position)
        }
        .boxed()
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        async { Ok(()) }.boxed()
    }
}

impl DavFile for Writing {
    fn metadata(&mut self) -> FsFuture<'_, Box<dyn DavMetaData>> {
        async move {
            let meta = match self.upload.as_mut() {
                Some(upload) => upload.meta().await.map_err(fs_error)?,
                None => FileMeta {
                    kind: FileKind::File,
                    size: self.written,
                    mode: 0o644,
                    mtime: 0,
                    atime: 0,
                },
            };
            let meta: Box<dyn DavMetaData> = Box::new(Meta(meta));
            Ok(meta)
        }
        .boxed()
    }

    fn write_buf(&mut self, mut buf: Box<dyn Buf + Send>) -> FsFuture<'_, ()> {
        let bytes = buf.copy_to_bytes(buf.remaining());
        self.write_bytes(bytes)
    }

    fn write_bytes(&mut self, buf: Bytes) -> FsFuture<'_, ()> {
        async move {
            let upload = self.upload.as_mut().ok_or(FsError::GeneralFailure)?;
            let len = buf.len() as u64;
            upload
                .write_at(self.position, buf)
                .await
                .map_err(fs_error)?;
            self.position += len;
            self.written += len;
            Ok(())
        }
        .boxed()
    }

    fn read_bytes(&mut self, _count: usize) -> FsFuture<'_, Bytes> {
        async { Err(FsError::Forbidden) }.boxed()
    }

    fn seek(&mut self, pos: SeekFrom) -> FsFuture<'_, u64> {
        async move {
            self.position = match pos {
                SeekFrom::Start(n) => n,
                SeekFrom::End(_) => return Err(FsError::NotImplemented),
                SeekFrom::Current(n) => self.position.saturating_add_signed(n),
            };
            Ok(self.position)
        }
        .boxed()
    }

    fn flush(&mut self) -> FsFuture<'_, ()> {
        async move {
            if let Some(upload) = self.upload.take() {
                upload.finish().await.map_err(fs_error)?;
            }
            Ok(())
        }
        .boxed()
    }
}

/// The file system every request sees through its own login.
#[derive(Clone, Copy)]
struct GatewayFs;

impl GatewayFs {
    /// Copies a file as a download of the source and an upload of the
    /// target, both authorised and recorded.
    async fn copy_file(files: &dyn FileOps, from: &str, to: &str) -> Result<(), FileOpError> {
        let mut download = files.open_download(from).await?;
        let mut upload = match files.open_upload(to, UploadMode::Truncate).await {
            Ok(upload) => upload,
            Err(err) => {
                download.abort("the copy's target was refused").await;
                return Err(err);
            }
        };
        let mut offset = 0u64;
        loop {
            let data = match download.read_at(offset, CHUNK as u32).await {
                Ok(data) => data,
                Err(err) => {
                    upload.abort("the copy's source failed").await;
                    download.abort(&err.to_string()).await;
                    return Err(err);
                }
            };
            if data.is_empty() {
                break;
            }
            let len = data.len() as u64;
            if let Err(err) = upload.write_at(offset, data).await {
                download.abort("the copy's target failed").await;
                upload.abort(&err.to_string()).await;
                return Err(err);
            }
            offset += len;
        }
        download.finish().await?;
        upload.finish().await
    }
}

impl GuardedFileSystem<Login> for GatewayFs {
    fn open<'a>(
        &'a self,
        path: &'a DavPath,
        options: OpenOptions,
        login: &'a Login,
    ) -> FsFuture<'a, Box<dyn DavFile>> {
        async move {
            let path = text(path);
            if options.write {
                let mode = if options.create_new {
                    UploadMode::CreateNew
                } else if options.append {
                    UploadMode::Append
                } else if options.truncate {
                    UploadMode::Truncate
                } else {
                    UploadMode::Resume
                };
                let upload = login
                    .files
                    .open_upload(&path, mode)
                    .await
                    .map_err(fs_error)?;
                let file: Box<dyn DavFile> = Box::new(Writing {
                    upload: Some(upload),
                    position: 0,
                    written: 0,
                });
                return Ok(file);
            }
            let mut download = login.files.open_download(&path).await.map_err(fs_error)?;
            let meta = match download.meta().await {
                Ok(meta) if meta.kind == FileKind::Dir => {
                    download.abort("not a file").await;
                    return Err(FsError::Forbidden);
                }
                Ok(meta) => meta,
                Err(err) => {
                    download.abort(&err.to_string()).await;
                    return Err(fs_error(err));
                }
            };
            let file: Box<dyn DavFile> = Box::new(Reading {
                download: Some(download),
                meta,
                position: 0,
            });
            Ok(file)
        }
        .boxed()
    }

    fn read_dir<'a>(
        &'a self,
        path: &'a DavPath,
        _meta: ReadDirMeta,
        login: &'a Login,
    ) -> FsFuture<'a, FsStream<Box<dyn DavDirEntry>>> {
        async move {
            let entries = login.files.list(&text(path)).await.map_err(fs_error)?;
            let items: Vec<FsResult<Box<dyn DavDirEntry>>> = entries
                .into_iter()
                .map(|e| {
                    let entry: Box<dyn DavDirEntry> = Box::new(Entry {
                        name: e.name,
                        meta: e.meta,
                    });
                    Ok(entry)
                })
                .collect();
            let stream: FsStream<Box<dyn DavDirEntry>> = Box::pin(futures::stream::iter(items));
            Ok(stream)
        }
        .boxed()
    }

    fn metadata<'a>(
        &'a self,
        path: &'a DavPath,
        login: &'a Login,
    ) -> FsFuture<'a, Box<dyn DavMetaData>> {
        async move {
            let meta = login.files.stat(&text(path)).await.map_err(fs_error)?;
            let meta: Box<dyn DavMetaData> = Box::new(Meta(meta));
            Ok(meta)
        }
        .boxed()
    }

    fn create_dir<'a>(&'a self, path: &'a DavPath, login: &'a Login) -> FsFuture<'a, ()> {
        async move { login.files.mkdir(&text(path)).await.map_err(fs_error) }.boxed()
    }

    fn remove_dir<'a>(&'a self, path: &'a DavPath, login: &'a Login) -> FsFuture<'a, ()> {
        async move { login.files.rmdir(&text(path)).await.map_err(fs_error) }.boxed()
    }

    fn remove_file<'a>(&'a self, path: &'a DavPath, login: &'a Login) -> FsFuture<'a, ()> {
        async move { login.files.remove(&text(path)).await.map_err(fs_error) }.boxed()
    }

    fn rename<'a>(
        &'a self,
        from: &'a DavPath,
        to: &'a DavPath,
        login: &'a Login,
    ) -> FsFuture<'a, ()> {
        async move {
            login
                .files
                .rename(&text(from), &text(to))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }

    fn copy<'a>(
        &'a self,
        from: &'a DavPath,
        to: &'a DavPath,
        login: &'a Login,
    ) -> FsFuture<'a, ()> {
        async move {
            GatewayFs::copy_file(&*login.files, &text(from), &text(to))
                .await
                .map_err(fs_error)
        }
        .boxed()
    }
}

/// The `/dav` endpoint: authenticates, then lets dav-server answer.
pub(crate) struct DavEndpoint {
    sessions: Arc<dyn Sessions>,
    handler: DavHandler<Login>,
}

impl DavEndpoint {
    pub(crate) fn new(sessions: Arc<dyn Sessions>) -> DavEndpoint {
        let handler = DavConfig::new()
            .strip_prefix(PREFIX)
            .filesystem(Box::new(GatewayFs))
            .locksystem(dav_server::memls::MemLs::new())
            .build_handler();
        DavEndpoint { sessions, handler }
    }

    async fn login(&self, req: &Request) -> Result<(String, Login), Response> {
        let challenge = || {
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("WWW-Authenticate", "Basic realm=\"tollgate\"")
                .body("authentication required")
        };
        let header = req
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let Some(header) = header else {
            return Err(challenge());
        };
        let session = RequestSession::open(&self.sessions, client_info(req, Protocol::Webdav))
            .await
            .map_err(|_| {
                Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body("authentication unavailable")
            })?;
        let id = session.id();
        let res = if let Some(token) = header.strip_prefix("Bearer ") {
            self.sessions.login_token(id, token.trim()).await
        } else if let Some(basic) = header.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((user, password)) => self.sessions.login_password(id, user, password).await,
                None => Err(LoginError::Denied),
            }
        } else {
            Err(LoginError::Denied)
        };
        match res {
            Ok(files) => Ok((
                files.username().to_string(),
                Login {
                    files,
                    _session: Arc::new(session),
                },
            )),
            Err(_) => Err(challenge()),
        }
    }
}

impl Endpoint for DavEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let (user, login) = match self.login(&req).await {
            Ok(login) => login,
            Err(response) => return Ok(response),
        };
        let body: http_body_util::combinators::BoxBody<Bytes, std::io::Error> =
            req.take_body().into();
        let mut builder = poem::http::Request::builder()
            .method(req.method().clone())
            .uri(req.uri().clone());
        for (name, value) in req.headers() {
            builder = builder.header(name, value);
        }
        let dav_req = builder
            .body(body)
            .map_err(|e| poem::Error::new(e, StatusCode::BAD_REQUEST))?;
        let res = self.handler.handle_guarded(dav_req, user, login).await;
        let (parts, body) = res.into_parts();
        let mut response = Response::builder().status(parts.status);
        for (name, value) in parts.headers.iter() {
            response = response.header(name, value);
        }
        Ok(response.body(poem::Body::from_bytes_stream(body)))
    }
}
