//! libunftp's storage back-end over the session's `FileOps`: every FTP
//! command that touches a file goes through the application.

use std::fmt::Debug;
use std::path::Path;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tollgate_ports::inbound::{FileKind, FileMeta, FileOpError, UploadMode};
use unftp_core::storage::{
    Error, ErrorKind, FEATURE_RESTART, Fileinfo, Metadata, Result, StorageBackend,
};

use crate::FtpUser;

/// Bytes moved per storage call.
const CHUNK: usize = 256 * 1024;

/// The back-end: stateless, the user carries the session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Gate;

/// Metadata in libunftp's terms.
#[derive(Debug, Clone)]
pub(crate) struct Meta(FileMeta);

impl Metadata for Meta {
    fn len(&self) -> u64 {
        self.0.size
    }

    fn is_dir(&self) -> bool {
        self.0.kind == FileKind::Dir
    }

    fn is_file(&self) -> bool {
        self.0.kind == FileKind::File
    }

    fn is_symlink(&self) -> bool {
        self.0.kind == FileKind::Symlink
    }

    fn modified(&self) -> Result<SystemTime> {
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(self.0.mtime.max(0) as u64))
    }

    fn gid(&self) -> u32 {
        0
    }

    fn uid(&self) -> u32 {
        0
    }
}

/// The one mapping from file operation errors to FTP replies.
fn map_err(err: FileOpError) -> Error {
    let kind = match &err {
        // 550
        FileOpError::Denied => ErrorKind::PermissionDenied,
        // 553
        FileOpError::InvalidPath(_) => ErrorKind::FileNameNotAllowedError,
        // 550
        FileOpError::NotFound => ErrorKind::PermanentFileNotAvailable,
        FileOpError::AlreadyExists | FileOpError::Conflict(_) => {
            ErrorKind::PermanentFileNotAvailable
        }
        // 552
        FileOpError::QuotaExceeded => ErrorKind::ExceededStorageAllocationError,
        // 502
        FileOpError::Unsupported => ErrorKind::CommandNotImplemented,
        // 451
        FileOpError::Unavailable | FileOpError::Corrupt | FileOpError::Internal => {
            ErrorKind::LocalError
        }
    };
    Error::new(kind, err)
}

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[async_trait]
impl StorageBackend<FtpUser> for Gate {
    type Metadata = Meta;

    fn name(&self) -> &str {
        "tollgate"
    }

    fn supported_features(&self) -> u32 {
        FEATURE_RESTART
    }

    async fn metadata<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Meta> {
        user.files
            .stat(&text(path.as_ref()))
            .await
            .map(Meta)
            .map_err(map_err)
    }

    async fn list<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
    ) -> Result<Vec<Fileinfo<std::path::PathBuf, Meta>>> {
        let entries = user
            .files
            .list(&text(path.as_ref()))
            .await
            .map_err(map_err)?;
        Ok(entries
            .into_iter()
            .map(|entry| Fileinfo {
                path: std::path::PathBuf::from(entry.name),
                metadata: Meta(entry.meta),
            })
            .collect())
    }

    async fn get<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        path: P,
        start_pos: u64,
    ) -> Result<Box<dyn tokio::io::AsyncRead + Send + Sync + Unpin>> {
        let mut download = user
            .files
            .open_download(&text(path.as_ref()))
            .await
            .map_err(map_err)?;
        match download.meta().await {
            Ok(meta) if meta.kind == FileKind::Dir => {
                download.abort("not a file").await;
                return Err(map_err(FileOpError::Conflict("not a file")));
            }
            Ok(_) => {}
            Err(err) => {
                download.abort(&err.to_string()).await;
                return Err(map_err(err));
            }
        }
        // A task reads the file ahead into a small channel; the transfer
        // finishes (and is recorded) at the end of the file, and a client
        // that goes away closes the channel, which records an abort.
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
        tokio::spawn(async move {
            let mut offset = start_pos;
            loop {
                match download.read_at(offset, CHUNK as u32).await {
                    Ok(data) if data.is_empty() => {
                        if let Err(err) = download.finish().await {
                            tracing::warn!(%err, "an FTP download could not be recorded as finished");
                        }
                        return;
                    }
                    Ok(data) => {
                        offset += data.len() as u64;
                        if tx.send(Ok(data)).await.is_err() {
                            download.abort("the data connection closed").await;
                            return;
                        }
                    }
                    Err(err) => {
                        let message = err.to_string();
                        download.abort(&message).await;
                        let _ = tx.send(Err(std::io::Error::other(message))).await;
                        return;
                    }
                }
            }
        });
        Ok(Box::new(ChannelReader {
            rx,
            current: Bytes::new(),
        }))
    }

    async fn put<
        P: AsRef<Path> + Send + Debug,
        R: tokio::io::AsyncRead + Send + Sync + Unpin + 'static,
    >(
        &self,
        user: &FtpUser,
        mut input: R,
        path: P,
        start_pos: u64,
    ) -> Result<u64> {
        let mode = if start_pos > 0 {
            UploadMode::Resume
        } else {
            UploadMode::Truncate
        };
        let mut upload = user
            .files
            .open_upload(&text(path.as_ref()), mode)
            .await
            .map_err(map_err)?;
        let mut offset = start_pos;
        let mut buffer = vec![0u8; CHUNK];
        loop {
            let read = tokio::select! {
                read = input.read(&mut buffer) => read,
                _ = user.gone.cancelled() => {
                    upload.abort("the control connection closed").await;
                    return Err(Error::from(ErrorKind::ConnectionClosed));
                }
            };
            let n = match read {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) => {
                    upload.abort("the data connection failed").await;
                    return Err(Error::new(ErrorKind::ConnectionClosed, err));
                }
            };
            if let Err(err) = upload
                .write_at(offset, Bytes::copy_from_slice(&buffer[..n]))
                .await
            {
                upload.abort(&err.to_string()).await;
                return Err(map_err(err));
            }
            offset += n as u64;
        }
        upload.finish().await.map_err(map_err)?;
        Ok(offset - start_pos)
    }

    async fn del<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        user.files
            .remove(&text(path.as_ref()))
            .await
            .map_err(map_err)
    }

    async fn mkd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        user.files
            .mkdir(&text(path.as_ref()))
            .await
            .map_err(map_err)
    }

    async fn rename<P: AsRef<Path> + Send + Debug>(
        &self,
        user: &FtpUser,
        from: P,
        to: P,
    ) -> Result<()> {
        user.files
            .rename(&text(from.as_ref()), &text(to.as_ref()))
            .await
            .map_err(map_err)
    }

    async fn rmd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        user.files
            .rmdir(&text(path.as_ref()))
            .await
            .map_err(map_err)
    }

    async fn cwd<P: AsRef<Path> + Send + Debug>(&self, user: &FtpUser, path: P) -> Result<()> {
        let meta = user
            .files
            .stat(&text(path.as_ref()))
            .await
            .map_err(map_err)?;
        if meta.kind == FileKind::Dir {
            Ok(())
        } else {
            Err(Error::from(ErrorKind::PermanentDirectoryNotAvailable))
        }
    }
}

/// Reads what a download task sends; `Sync` because the receiver is.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl tokio::io::AsyncRead for ChannelReader {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        while self.current.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(data))) => self.current = data,
                Poll::Ready(Some(Err(err))) => return Poll::Ready(Err(err)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.current.len().min(buf.remaining());
        let chunk = self.current.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}
