//! The file API for users (`/api/v1/user/files`): list, download with
//! Range, streaming upload (with resume), mkdir, rename, delete and a
//! SHA-256 checksum. Each request is a session of its own, logged in with
//! the user's bearer token, and goes through the same `FileOps` as SFTP, so
//! permissions, atomic uploads and events are the same.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use poem::{Body, Request};
use poem_openapi::param::{Header, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use sha2::{Digest, Sha256};
use tollgate_ports::inbound::{Download, FileKind, FileOpError, FileOps, Sessions, UploadMode};

use crate::problem::{Problem, details};
use crate::request_session::RequestSession;
use crate::routes::{BearerAuth, Tag, client};

/// How much one read of a download asks for.
const CHUNK: u32 = 256 * 1024;

/// One request's logged-in session: its end is recorded when dropped.
struct UserSession {
    files: Arc<dyn FileOps>,
    _session: RequestSession,
}

fn file_problem(err: FileOpError) -> Problem {
    use poem::http::StatusCode;
    let detail = err.to_string();
    match err {
        FileOpError::Denied => Problem::Forbidden(Json(details(StatusCode::FORBIDDEN, detail))),
        FileOpError::InvalidPath(_) => Problem::bad_request(detail),
        FileOpError::NotFound => Problem::not_found(detail),
        FileOpError::AlreadyExists | FileOpError::Conflict(_) => {
            Problem::Conflict(Json(details(StatusCode::CONFLICT, detail)))
        }
        FileOpError::QuotaExceeded => {
            Problem::InsufficientStorage(Json(details(StatusCode::INSUFFICIENT_STORAGE, detail)))
        }
        FileOpError::Unsupported => {
            Problem::NotImplemented(Json(details(StatusCode::NOT_IMPLEMENTED, detail)))
        }
        FileOpError::Unavailable => {
            Problem::Unavailable(Json(details(StatusCode::SERVICE_UNAVAILABLE, detail)))
        }
        FileOpError::Corrupt => {
            Problem::Internal(Json(details(StatusCode::INTERNAL_SERVER_ERROR, detail)))
        }
        FileOpError::Internal => Problem::Internal(Json(details(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the operation failed; the cause was logged",
        ))),
    }
}

/// A directory entry.
#[derive(Debug, Object)]
pub(crate) struct FileEntry {
    /// The entry's name.
    name: String,
    /// `file`, `dir`, `symlink` or `other`.
    kind: String,
    /// Size in bytes.
    size: u64,
    /// Modification time (RFC 3339).
    modified: String,
}

fn kind_name(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "dir",
        FileKind::Symlink => "symlink",
        FileKind::Other => "other",
    }
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A finished upload.
#[derive(Debug, Object)]
pub(crate) struct Uploaded {
    /// The file's path.
    path: String,
    /// The file's size after the upload.
    size: u64,
    /// SHA-256 of the bytes this request wrote.
    sha256: String,
}

/// A file's checksum.
#[derive(Debug, Object)]
pub(crate) struct Checksum {
    /// The file's path.
    path: String,
    /// Its size.
    size: u64,
    /// Hex SHA-256 of its content.
    sha256: String,
}

/// A rename.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct Rename {
    /// The current path.
    from: String,
    /// The new path.
    to: String,
}

/// A download.
#[derive(ApiResponse)]
enum DownloadResponse {
    /// The whole file.
    #[oai(status = 200)]
    Full(
        Binary<Body>,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "Accept-Ranges")] String,
    ),
    /// The requested range.
    #[oai(status = 206)]
    Partial(
        Binary<Body>,
        #[oai(header = "Content-Length")] u64,
        #[oai(header = "Content-Range")] String,
        #[oai(header = "Accept-Ranges")] String,
    ),
}

/// A created upload or directory.
#[derive(ApiResponse)]
enum UploadResponse {
    /// The file was written.
    #[oai(status = 201)]
    Created(Json<Uploaded>),
}

/// An answer without a body.
#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// The byte range `bytes=a-b`, `bytes=a-` or `bytes=-n` of a file of
/// `size` bytes, as `(start, end_exclusive)`; `None` for a header this API
/// does not serve partially (several ranges), `Err` when unsatisfiable.
fn parse_range(header: &str, size: u64) -> Result<Option<(u64, u64)>, Problem> {
    let unsatisfiable = || {
        Problem::RangeNotSatisfiable(
            Json(details(
                poem::http::StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the range {header:?} is outside the file's {size} bytes"),
            )),
            format!("bytes */{size}"),
        )
    };
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Err(Problem::bad_request(format!("malformed Range {header:?}")));
    };
    let number = |text: &str| {
        text.trim()
            .parse::<u64>()
            .map_err(|_| Problem::bad_request(format!("malformed Range {header:?}")))
    };
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => {
            let n = number(last)?;
            if n == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(n), size)
        }
        (false, true) => (number(first)?, size),
        (false, false) => (number(first)?, number(last)?.saturating_add(1).min(size)),
        (true, true) => return Err(Problem::bad_request(format!("malformed Range {header:?}"))),
    };
    if start >= size || start >= end {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// Streams `[start, end)` of a download. The transfer is finished (and
/// recorded) as the last chunk is handed over: the server stops polling a
/// body once its Content-Length is sent. A client that goes away earlier
/// drops the stream, which records an abort.
fn download_stream(
    session: UserSession,
    download: Box<dyn Download>,
    start: u64,
    end: u64,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold(Some((session, download, start)), move |state| async move {
        let (session, mut download, offset) = state?;
        if offset >= end {
            if let Err(err) = download.finish().await {
                tracing::warn!(%err, "a download could not be recorded as finished");
            }
            drop(session);
            return None;
        }
        let want = (end - offset).min(CHUNK as u64) as u32;
        match download.read_at(offset, want).await {
            Ok(data) if data.is_empty() => {
                download.abort("the file shrank during the download").await;
                Some((Err(std::io::Error::other("the file shrank")), None))
            }
            Ok(data) => {
                let next = offset + data.len() as u64;
                if next >= end {
                    if let Err(err) = download.finish().await {
                        tracing::warn!(%err, "a download could not be recorded as finished");
                    }
                    drop(session);
                    return Some((Ok(data), None));
                }
                Some((Ok(data), Some((session, download, next))))
            }
            Err(err) => {
                download.abort(&err.to_string()).await;
                Some((Err(std::io::Error::other(err.to_string())), None))
            }
        }
    })
}

/// The user file API.
pub(crate) struct FilesApi {
    pub(crate) sessions: Arc<dyn Sessions>,
}

impl FilesApi {
    async fn session(&self, req: &Request, auth: &BearerAuth) -> Result<UserSession, Problem> {
        let session = RequestSession::open(&self.sessions, client(req)).await?;
        match self.sessions.login_token(session.id(), &auth.0.token).await {
            Ok(files) => Ok(UserSession {
                files,
                _session: session,
            }),
            Err(err) => {
                session.end("authentication failed").await;
                Err(err.into())
            }
        }
    }
}

#[OpenApi(prefix_path = "/api/v1/user/files")]
impl FilesApi {
    /// List a directory of the calling user's namespace.
    #[oai(
        path = "/",
        method = "get",
        tag = "Tag::Files",
        operation_id = "listFiles"
    )]
    async fn list(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The directory (default `/`).
        path: Query<Option<String>>,
    ) -> Result<Json<Vec<FileEntry>>, Problem> {
        let session = self.session(req, &auth).await?;
        let path = path.0.unwrap_or_else(|| "/".to_string());
        let entries = session.files.list(&path).await.map_err(file_problem)?;
        Ok(Json(
            entries
                .into_iter()
                .map(|e| FileEntry {
                    name: e.name,
                    kind: kind_name(e.meta.kind).to_string(),
                    size: e.meta.size,
                    modified: rfc3339(e.meta.mtime),
                })
                .collect(),
        ))
    }

    /// Delete a file, or an empty directory.
    #[oai(
        path = "/",
        method = "delete",
        tag = "Tag::Files",
        operation_id = "deleteFile"
    )]
    async fn delete(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The file or directory.
        path: Query<String>,
    ) -> Result<Done, Problem> {
        let session = self.session(req, &auth).await?;
        let meta = session.files.stat(&path.0).await.map_err(file_problem)?;
        if meta.kind == FileKind::Dir {
            session.files.rmdir(&path.0).await.map_err(file_problem)?;
        } else {
            session.files.remove(&path.0).await.map_err(file_problem)?;
        }
        Ok(Done::Done)
    }

    /// Download a file; a single `Range` gives 206 with that part.
    #[oai(
        path = "/content",
        method = "get",
        tag = "Tag::Files",
        operation_id = "downloadFile"
    )]
    async fn download(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The file.
        path: Query<String>,
        /// `bytes=START-END`, `bytes=START-` or `bytes=-LENGTH`.
        #[oai(name = "Range")]
        range: Header<Option<String>>,
    ) -> Result<DownloadResponse, Problem> {
        let session = self.session(req, &auth).await?;
        let mut download = session
            .files
            .open_download(&path.0)
            .await
            .map_err(file_problem)?;
        let meta = match download.meta().await {
            Ok(meta) if meta.kind == FileKind::Dir => {
                download.abort("not a file").await;
                return Err(file_problem(FileOpError::Conflict("not a file")));
            }
            Ok(meta) => meta,
            Err(err) => {
                download.abort(&err.to_string()).await;
                return Err(file_problem(err));
            }
        };
        let size = meta.size;
        let range = match range.0.as_deref().map(|r| parse_range(r, size)) {
            Some(Err(problem)) => {
                download.abort("unsatisfiable range").await;
                return Err(problem);
            }
            Some(Ok(range)) => range,
            None => None,
        };
        let (start, end) = range.unwrap_or((0, size));
        let body = if start == end {
            // An empty file: nothing will poll the body, so finish now.
            download.finish().await.map_err(file_problem)?;
            Body::empty()
        } else {
            Body::from_bytes_stream(download_stream(session, download, start, end))
        };
        let bytes = "bytes".to_string();
        Ok(match range {
            Some(_) => DownloadResponse::Partial(
                Binary(body),
                end - start,
                format!("bytes {start}-{}/{size}", end - 1),
                bytes,
            ),
            None => DownloadResponse::Full(Binary(body), size, bytes),
        })
    }

    /// Upload a file, streamed. Without `offset` the file is replaced
    /// atomically when the upload completes (an interrupted upload leaves
    /// nothing under the name); with `offset` the bytes are written into
    /// the existing file from there (resume).
    #[oai(
        path = "/content",
        method = "put",
        tag = "Tag::Files",
        operation_id = "uploadFile"
    )]
    async fn upload(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The file.
        path: Query<String>,
        /// Resume at this byte offset of the existing file.
        offset: Query<Option<u64>>,
        body: Binary<Body>,
    ) -> Result<UploadResponse, Problem> {
        let session = self.session(req, &auth).await?;
        let mode = if offset.0.is_some() {
            UploadMode::Resume
        } else {
            UploadMode::Truncate
        };
        let mut upload = session
            .files
            .open_upload(&path.0, mode)
            .await
            .map_err(file_problem)?;
        if let Some(offset) = offset.0 {
            // A resume continues a file; it cannot start past its end.
            let size = match upload.meta().await {
                Ok(meta) => meta.size,
                Err(err) => {
                    upload.abort(&err.to_string()).await;
                    return Err(file_problem(err));
                }
            };
            if offset > size {
                upload
                    .abort("resume offset beyond the end of the file")
                    .await;
                return Err(Problem::bad_request(format!(
                    "offset {offset} is beyond the end of the file ({size} bytes)"
                )));
            }
        }
        let mut position = offset.0.unwrap_or(0);
        let mut hash = Sha256::new();
        let mut stream = body.0.into_bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(err) => {
                    upload.abort("the client stopped sending").await;
                    return Err(Problem::bad_request(format!(
                        "the upload body ended early: {err}"
                    )));
                }
            };
            hash.update(&chunk);
            let len = chunk.len() as u64;
            if let Err(err) = upload.write_at(position, chunk).await {
                upload.abort(&err.to_string()).await;
                return Err(file_problem(err));
            }
            position += len;
        }
        let size = match upload.meta().await {
            Ok(meta) => meta.size,
            Err(_) => position,
        };
        upload.finish().await.map_err(file_problem)?;
        drop(session);
        Ok(UploadResponse::Created(Json(Uploaded {
            path: path.0,
            size,
            sha256: hex::encode(hash.finalize()),
        })))
    }

    /// Create a directory.
    #[oai(
        path = "/dirs",
        method = "post",
        tag = "Tag::Files",
        operation_id = "createDirectory"
    )]
    async fn mkdir(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The new directory.
        path: Query<String>,
    ) -> Result<Done, Problem> {
        let session = self.session(req, &auth).await?;
        session.files.mkdir(&path.0).await.map_err(file_problem)?;
        Ok(Done::Done)
    }

    /// Rename or move a file or directory.
    #[oai(
        path = "/rename",
        method = "post",
        tag = "Tag::Files",
        operation_id = "renameFile"
    )]
    async fn rename(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: Json<Rename>,
    ) -> Result<Done, Problem> {
        let session = self.session(req, &auth).await?;
        session
            .files
            .rename(&body.0.from, &body.0.to)
            .await
            .map_err(file_problem)?;
        Ok(Done::Done)
    }

    /// The SHA-256 of a file (read through a recorded download).
    #[oai(
        path = "/checksum",
        method = "get",
        tag = "Tag::Files",
        operation_id = "fileChecksum"
    )]
    async fn checksum(
        &self,
        req: &Request,
        auth: BearerAuth,
        /// The file.
        path: Query<String>,
    ) -> Result<Json<Checksum>, Problem> {
        let session = self.session(req, &auth).await?;
        let mut download = session
            .files
            .open_download(&path.0)
            .await
            .map_err(file_problem)?;
        let mut hash = Sha256::new();
        let mut offset = 0u64;
        loop {
            match download.read_at(offset, CHUNK).await {
                Ok(data) if data.is_empty() => break,
                Ok(data) => {
                    offset += data.len() as u64;
                    hash.update(&data);
                }
                Err(err) => {
                    download.abort(&err.to_string()).await;
                    return Err(file_problem(err));
                }
            }
        }
        download.finish().await.map_err(file_problem)?;
        Ok(Json(Checksum {
            path: path.0,
            size: offset,
            sha256: hex::encode(hash.finalize()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_parsed_as_rfc_9110_says() {
        let ok = |h: &str| parse_range(h, 100).ok().flatten();
        assert_eq!(ok("bytes=0-9"), Some((0, 10)));
        assert_eq!(ok("bytes=90-"), Some((90, 100)));
        assert_eq!(ok("bytes=-10"), Some((90, 100)));
        assert_eq!(ok("bytes=-1000"), Some((0, 100)));
        assert_eq!(ok("bytes=95-1000"), Some((95, 100)));
        assert_eq!(ok("bytes=0-1,5-6"), None);
        assert_eq!(ok("items=0-1"), None);
        assert!(parse_range("bytes=100-", 100).is_err());
        assert!(parse_range("bytes=5-2", 100).is_err());
        assert!(parse_range("bytes=x-2", 100).is_err());
        assert!(parse_range("bytes=-0", 100).is_err());
    }
}
