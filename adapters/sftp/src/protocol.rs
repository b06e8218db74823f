//! The SFTP v3 request loop over one SSH channel. Packets are decoded and
//! encoded with russh-sftp's protocol types; the loop, the handle table and
//! the mapping to `FileOps` are ours, so that malformed or oversized input
//! gets a clean answer (or a clean close) instead of a desynchronised stream.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use russh::Channel;
use russh::server::Msg;
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status, StatusCode, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tollgate_domain::PathError;
use tollgate_ports::inbound::{
    DirEntry, Download, FileKind, FileMeta, FileOpError, FileOps, Upload, UploadMode,
};

/// The largest request accepted, as OpenSSH's sftp-server (256 KiB).
const MAX_PACKET: u32 = 256 * 1024;
/// The most data returned by one READ.
const MAX_READ: u32 = 255 * 1024;
/// Directory entries per READDIR reply.
const DIR_PAGE: usize = 128;
/// Open handles per session.
const MAX_HANDLES: usize = 1024;

enum OpenHandle {
    Read(Box<dyn Download>),
    Write {
        upload: Box<dyn Upload>,
        path: String,
        times: Option<(i64, i64)>,
    },
    Dir(Vec<DirEntry>),
}

struct SftpSession {
    files: Arc<dyn FileOps>,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
}

/// Serves SFTP on `channel` until the client closes it.
pub(crate) async fn serve(channel: Channel<Msg>, files: Arc<dyn FileOps>) {
    let stream = channel.into_stream();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut session = SftpSession {
        files,
        handles: HashMap::new(),
        next_handle: 1,
    };
    while let Ok(len) = reader.read_u32().await {
        if len == 0 || len > MAX_PACKET {
            tracing::warn!(len, "sftp packet length out of bounds; closing the channel");
            break;
        }
        let mut buf = vec![0u8; len as usize];
        if reader.read_exact(&mut buf).await.is_err() {
            break;
        }
        let request_id = if buf.len() >= 5 {
            u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]])
        } else {
            0
        };
        let mut bytes = Bytes::from(buf);
        let reply = match Packet::try_from(&mut bytes) {
            Ok(packet) => session.handle(packet).await,
            Err(err) => {
                tracing::debug!(%err, "malformed sftp packet");
                status(request_id, StatusCode::BadMessage, "malformed packet")
            }
        };
        let encoded = match Bytes::try_from(reply) {
            Ok(encoded) => encoded,
            Err(err) => {
                tracing::error!(%err, "cannot encode an sftp reply");
                break;
            }
        };
        if writer.write_all(&encoded).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    session.abandon().await;
    let _ = writer.shutdown().await;
}

fn status(id: u32, status_code: StatusCode, message: &str) -> Packet {
    Packet::Status(Status {
        id,
        status_code,
        error_message: message.to_string(),
        language_tag: "en-US".to_string(),
    })
}

fn ok(id: u32) -> Packet {
    status(id, StatusCode::Ok, "Success")
}

/// The one place where port errors become SFTP status codes.
fn error_status(id: u32, err: &FileOpError) -> Packet {
    let code = match err {
        FileOpError::Denied => StatusCode::PermissionDenied,
        FileOpError::InvalidPath(PathError::Escapes | PathError::Nul) => {
            StatusCode::PermissionDenied
        }
        FileOpError::NotFound => StatusCode::NoSuchFile,
        FileOpError::Unsupported => StatusCode::OpUnsupported,
        FileOpError::InvalidPath(_)
        | FileOpError::AlreadyExists
        | FileOpError::Conflict(_)
        | FileOpError::QuotaExceeded
        | FileOpError::Internal => StatusCode::Failure,
    };
    status(id, code, &err.to_string())
}

fn attrs_of(meta: &FileMeta) -> FileAttributes {
    let type_bits = match meta.kind {
        FileKind::Dir => 0o040000,
        FileKind::File => 0o100000,
        FileKind::Symlink => 0o120000,
        FileKind::Other => 0,
    };
    let clamp = |t: i64| u32::try_from(t.max(0)).unwrap_or(u32::MAX);
    FileAttributes {
        size: Some(meta.size),
        uid: Some(0),
        user: None,
        gid: Some(0),
        group: None,
        permissions: Some(type_bits | meta.mode),
        atime: Some(clamp(meta.atime)),
        mtime: Some(clamp(meta.mtime)),
    }
}

impl SftpSession {
    fn insert(&mut self, handle: OpenHandle) -> Option<String> {
        if self.handles.len() >= MAX_HANDLES {
            return None;
        }
        let id = format!("h{}", self.next_handle);
        self.next_handle += 1;
        self.handles.insert(id.clone(), handle);
        Some(id)
    }

    fn handle_reply(&mut self, id: u32, handle: OpenHandle) -> Packet {
        match self.insert(handle) {
            Some(handle) => Packet::Handle(Handle { id, handle }),
            None => status(id, StatusCode::Failure, "too many open handles"),
        }
    }

    /// Ends every open transfer: uploads are discarded, downloads recorded
    /// as aborted.
    async fn abandon(&mut self) {
        for (_, handle) in self.handles.drain() {
            if let OpenHandle::Write { upload, .. } = handle {
                upload
                    .abort("connection closed before the upload finished")
                    .await;
            }
            // A dropped download records its own abort.
        }
    }

    async fn handle(&mut self, packet: Packet) -> Packet {
        let files = self.files.clone();
        match packet {
            Packet::Init(_) => Packet::Version(Version::new()),
            Packet::Open(open) => self.open(open.id, &open.filename, open.pflags).await,
            Packet::Close(close) => self.close(close.id, &close.handle).await,
            Packet::Read(read) => {
                let Some(OpenHandle::Read(download)) = self.handles.get_mut(&read.handle) else {
                    return status(read.id, StatusCode::Failure, "invalid handle");
                };
                match download.read_at(read.offset, read.len.min(MAX_READ)).await {
                    Ok(data) if data.is_empty() => status(read.id, StatusCode::Eof, "end of file"),
                    Ok(data) => Packet::Data(Data {
                        id: read.id,
                        data: data.to_vec(),
                    }),
                    Err(err) => error_status(read.id, &err),
                }
            }
            Packet::Write(write) => {
                let Some(OpenHandle::Write { upload, .. }) = self.handles.get_mut(&write.handle)
                else {
                    return status(write.id, StatusCode::Failure, "invalid handle");
                };
                match upload.write_at(write.offset, &write.data).await {
                    Ok(()) => ok(write.id),
                    Err(err) => error_status(write.id, &err),
                }
            }
            Packet::Lstat(stat) => reply_attrs(stat.id, files.stat(&stat.path).await),
            Packet::Stat(stat) => reply_attrs(stat.id, files.stat(&stat.path).await),
            Packet::Fstat(fstat) => {
                let meta = match self.handles.get_mut(&fstat.handle) {
                    Some(OpenHandle::Read(download)) => download.meta().await,
                    Some(OpenHandle::Write { upload, .. }) => upload.meta().await,
                    _ => return status(fstat.id, StatusCode::Failure, "invalid handle"),
                };
                reply_attrs(fstat.id, meta)
            }
            Packet::SetStat(setstat) => {
                set_attributes(&*files, setstat.id, &setstat.path, &setstat.attrs).await
            }
            Packet::FSetStat(fsetstat) => match self.handles.get_mut(&fsetstat.handle) {
                Some(OpenHandle::Write { times, upload, .. }) => {
                    if let Some(size) = fsetstat.attrs.size {
                        let current = upload.meta().await.map(|m| m.size).unwrap_or(u64::MAX);
                        if size != current {
                            return status(
                                fsetstat.id,
                                StatusCode::OpUnsupported,
                                "truncation is not supported",
                            );
                        }
                    }
                    // Times apply once the upload is committed.
                    if let (Some(atime), Some(mtime)) = (fsetstat.attrs.atime, fsetstat.attrs.mtime)
                    {
                        *times = Some((i64::from(atime), i64::from(mtime)));
                    }
                    ok(fsetstat.id)
                }
                Some(OpenHandle::Read(_)) | Some(OpenHandle::Dir(_)) => ok(fsetstat.id),
                None => status(fsetstat.id, StatusCode::Failure, "invalid handle"),
            },
            Packet::OpenDir(opendir) => match files.list(&opendir.path).await {
                Ok(entries) => self.handle_reply(opendir.id, OpenHandle::Dir(entries)),
                Err(err) => error_status(opendir.id, &err),
            },
            Packet::ReadDir(readdir) => {
                let Some(OpenHandle::Dir(entries)) = self.handles.get_mut(&readdir.handle) else {
                    return status(readdir.id, StatusCode::Failure, "invalid handle");
                };
                if entries.is_empty() {
                    return status(readdir.id, StatusCode::Eof, "end of directory");
                }
                let page: Vec<DirEntry> = entries.drain(..entries.len().min(DIR_PAGE)).collect();
                let files = page
                    .iter()
                    .map(|e| File::new(e.name.clone(), attrs_of(&e.meta)))
                    .collect();
                Packet::Name(Name {
                    id: readdir.id,
                    files,
                })
            }
            Packet::Remove(remove) => unit(remove.id, files.remove(&remove.filename).await),
            Packet::MkDir(mkdir) => unit(mkdir.id, files.mkdir(&mkdir.path).await),
            Packet::RmDir(rmdir) => unit(rmdir.id, files.rmdir(&rmdir.path).await),
            Packet::RealPath(realpath) => match files.realpath(&realpath.path).await {
                Ok(path) => Packet::Name(Name {
                    id: realpath.id,
                    files: vec![File::dummy(path)],
                }),
                Err(err) => error_status(realpath.id, &err),
            },
            Packet::Rename(rename) => unit(
                rename.id,
                files.rename(&rename.oldpath, &rename.newpath).await,
            ),
            Packet::ReadLink(readlink) => status(
                readlink.id,
                StatusCode::OpUnsupported,
                "symbolic links are not supported",
            ),
            Packet::Symlink(symlink) => status(
                symlink.id,
                StatusCode::PermissionDenied,
                "symbolic links are not allowed",
            ),
            Packet::Extended(extended) => status(
                extended.id,
                StatusCode::OpUnsupported,
                "extension not supported",
            ),
            other => status(
                other.get_request_id(),
                StatusCode::BadMessage,
                "not a request",
            ),
        }
    }

    async fn open(&mut self, id: u32, path: &str, flags: OpenFlags) -> Packet {
        if !flags.contains(OpenFlags::WRITE) && !flags.contains(OpenFlags::APPEND) {
            return match self.files.open_download(path).await {
                Ok(download) => self.handle_reply(id, OpenHandle::Read(download)),
                Err(err) => error_status(id, &err),
            };
        }
        let mode = if flags.contains(OpenFlags::EXCLUDE) {
            UploadMode::CreateNew
        } else if flags.contains(OpenFlags::TRUNCATE) {
            UploadMode::Truncate
        } else if flags.contains(OpenFlags::APPEND) {
            UploadMode::Append
        } else {
            UploadMode::Resume
        };
        if !flags.contains(OpenFlags::CREATE)
            && let Err(err) = self.files.stat(path).await
        {
            return error_status(id, &err);
        }
        match self.files.open_upload(path, mode).await {
            Ok(upload) => self.handle_reply(
                id,
                OpenHandle::Write {
                    upload,
                    path: path.to_string(),
                    times: None,
                },
            ),
            Err(err) => error_status(id, &err),
        }
    }

    async fn close(&mut self, id: u32, handle: &str) -> Packet {
        match self.handles.remove(handle) {
            Some(OpenHandle::Read(download)) => unit(id, download.finish().await),
            Some(OpenHandle::Write {
                upload,
                path,
                times,
            }) => {
                if let Err(err) = upload.finish().await {
                    return error_status(id, &err);
                }
                match times {
                    Some((atime, mtime)) => {
                        unit(id, self.files.set_times(&path, atime, mtime).await)
                    }
                    None => ok(id),
                }
            }
            Some(OpenHandle::Dir(_)) => ok(id),
            None => status(id, StatusCode::Failure, "invalid handle"),
        }
    }
}

fn unit(id: u32, res: Result<(), FileOpError>) -> Packet {
    match res {
        Ok(()) => ok(id),
        Err(err) => error_status(id, &err),
    }
}

fn reply_attrs(id: u32, res: Result<FileMeta, FileOpError>) -> Packet {
    match res {
        Ok(meta) => Packet::Attrs(Attrs {
            id,
            attrs: attrs_of(&meta),
        }),
        Err(err) => error_status(id, &err),
    }
}

/// SETSTAT: times are applied; permission bits are accepted and ignored
/// (the gateway owns file modes); a size change is not supported.
async fn set_attributes(
    files: &dyn FileOps,
    id: u32,
    path: &str,
    attrs: &FileAttributes,
) -> Packet {
    if attrs.size.is_some() {
        return status(id, StatusCode::OpUnsupported, "truncation is not supported");
    }
    match (attrs.atime, attrs.mtime) {
        (Some(atime), Some(mtime)) => unit(
            id,
            files
                .set_times(path, i64::from(atime), i64::from(mtime))
                .await,
        ),
        _ => match files.stat(path).await {
            Ok(_) => ok(id),
            Err(err) => error_status(id, &err),
        },
    }
}
