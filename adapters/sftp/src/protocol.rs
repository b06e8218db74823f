//! The SFTP v3 request loop over one SSH channel, pipelined.
//!
//! Packets are decoded and encoded with russh-sftp's protocol types, except
//! READ and WRITE, which are parsed and answered without copying their data.
//! A reader decodes requests; each open file gets a worker task that serves
//! its requests in order; one writer sends replies, coalescing small ones
//! and handing the whole packets of large READ data to the channel uncopied.
//! Requests on different files run concurrently and their replies may
//! interleave, as SFTP allows (replies carry the request id). Any request
//! that is not about an open file waits until every earlier file request has
//! been answered, so path operations observe what earlier writes and closes
//! did. Malformed input gets `BAD_MESSAGE`; an impossible length closes the
//! channel instead of desynchronising the stream.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::StreamExt;
use russh::server::Msg;
use russh::{Channel, ChannelWriteHalf};
use russh_sftp::extensions::{FSYNC, LIMITS, LimitsExtension};
use russh_sftp::protocol::{
    Attrs, ExtendedReply, File, FileAttributes, Handle, Name, OpenFlags, Packet, Status,
    StatusCode, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tollgate_domain::PathError;
use tollgate_ports::inbound::{
    DirEntry, DirPages, Download, FileKind, FileMeta, FileOpError, FileOps, Upload, UploadMode,
};

/// The largest request accepted, as OpenSSH's sftp-server (256 KiB).
const MAX_PACKET: u32 = 256 * 1024;
/// The most data returned by one READ.
const MAX_READ: u32 = 255 * 1024;
/// The most data one WRITE may carry, as OpenSSH's sftp-server: room is
/// left in a `MAX_PACKET` request for its header and handle.
const MAX_WRITE: u32 = MAX_PACKET - 1024;
/// Directory entries per READDIR reply.
const DIR_PAGE: usize = 128;
/// Open handles per session.
const MAX_HANDLES: usize = 1024;
/// Requests queued per open file (OpenSSH keeps up to 64 in flight).
const FILE_QUEUE: usize = 128;
/// Replies waiting for the writer.
const REPLY_QUEUE: usize = 256;
/// Replies are gathered into one channel write up to this size.
const COALESCE: usize = 256 * 1024;

const FXP_READ: u8 = 5;
const FXP_WRITE: u8 = 6;
const FXP_DATA: u8 = 103;

/// A reply ready to be sent.
enum Reply {
    Packet(Packet),
    /// SSH_FXP_DATA; its data is copied only where it shares a packet.
    Data {
        id: u32,
        data: Bytes,
    },
}

/// A decoded request.
enum Request {
    Read {
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    },
    Write {
        id: u32,
        handle: String,
        offset: u64,
        data: Bytes,
    },
    Other(Packet),
    Malformed {
        id: u32,
    },
}

/// A request for an open file's worker.
enum FileRequest {
    Read {
        offset: u64,
        len: u32,
    },
    Write {
        offset: u64,
        data: Bytes,
    },
    Fstat,
    SetAttributes(FileAttributes),
    /// `fsync@openssh.com`.
    Sync,
    Close,
}

enum OpenFile {
    Read(Box<dyn Download>),
    Write {
        upload: Box<dyn Upload>,
        path: String,
        times: Option<(i64, i64)>,
    },
}

enum OpenHandle {
    File(mpsc::Sender<(u32, FileRequest)>),
    Dir(DirListing),
}

/// An open directory: entries read and not yet sent, and the pages still
/// to be read (each read from storage only when the client asks on). The
/// pages sit in a mutex only so that the session state is `Sync`; they are
/// reached through `&mut`, never locked.
struct DirListing {
    ready: VecDeque<DirEntry>,
    pages: Option<std::sync::Mutex<DirPages>>,
}

/// File requests handed to workers and not yet answered.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn start(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::Acquire) == 0 {
                return;
            }
            idle.await;
        }
    }
}

struct SftpSession {
    files: Arc<dyn FileOps>,
    replies: mpsc::Sender<Reply>,
    handles: HashMap<String, OpenHandle>,
    next_handle: u64,
    in_flight: Arc<InFlight>,
    workers: JoinSet<()>,
}

/// Serves SFTP on `channel` until the client closes it, then ends the
/// channel with exit status 0 (clients such as scp judge the transfer by it).
pub(crate) async fn serve(
    channel: Channel<Msg>,
    files: Arc<dyn FileOps>,
    ssh: russh::server::Handle,
) {
    let channel_id = channel.id();
    let (mut read_half, writer) = channel.split();
    let mut reader = read_half.make_reader();
    let (replies, reply_queue) = mpsc::channel(REPLY_QUEUE);
    let writer = tokio::spawn(write_replies(writer, reply_queue));
    let mut session = SftpSession {
        files,
        replies,
        handles: HashMap::new(),
        next_handle: 1,
        in_flight: Arc::new(InFlight::default()),
        workers: JoinSet::new(),
    };
    while let Some(request) = read_request(&mut reader).await {
        if !session.dispatch(request).await {
            break;
        }
    }
    session.shutdown().await;
    drop(session);
    if let Ok(Some(writer)) = writer.await {
        let _ = writer.exit_status(0).await;
        let _ = writer.eof().await;
    }
    let _ = ssh.close(channel_id).await;
}

/// Exactly `len` bytes; `None` if the stream ends or fails first.
pub(crate) async fn read_exact_bytes(
    reader: &mut (impl AsyncRead + Unpin),
    len: usize,
) -> Option<Bytes> {
    // Read into uninitialised capacity: zeroing a buffer that is about to
    // be overwritten cost as much as a copy.
    let mut buf = BytesMut::with_capacity(len);
    while buf.len() < len {
        let missing = (len - buf.len()) as u64;
        if (&mut *reader).take(missing).read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
    Some(buf.freeze())
}

/// Reads and decodes one request; `None` at the end of the stream or on an
/// impossible length.
async fn read_request(reader: &mut (impl AsyncRead + Unpin)) -> Option<Request> {
    let len = reader.read_u32().await.ok()?;
    if len == 0 || len > MAX_PACKET {
        tracing::warn!(len, "sftp packet length out of bounds; closing the channel");
        return None;
    }
    let mut bytes = read_exact_bytes(reader, len as usize).await?;
    let id = if bytes.len() >= 5 {
        u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
    } else {
        0
    };
    let fast = match bytes[0] {
        FXP_READ => parse_read(bytes.slice(5..)).map(|(handle, offset, len)| Request::Read {
            id,
            handle,
            offset,
            len,
        }),
        FXP_WRITE => parse_write(bytes.slice(5..)).map(|(handle, offset, data)| Request::Write {
            id,
            handle,
            offset,
            data,
        }),
        _ => None,
    };
    if let Some(request) = fast {
        return Some(request);
    }
    match Packet::try_from(&mut bytes) {
        Ok(packet) => Some(Request::Other(packet)),
        Err(err) => {
            tracing::debug!(%err, "malformed sftp packet");
            Some(Request::Malformed { id })
        }
    }
}

fn take_string(body: &mut Bytes) -> Option<Bytes> {
    if body.remaining() < 4 {
        return None;
    }
    let len = body.get_u32() as usize;
    (body.remaining() >= len).then(|| body.split_to(len))
}

/// A string field that must be UTF-8, such as a handle.
fn take_text(body: &mut Bytes) -> Option<String> {
    String::from_utf8(take_string(body)?.to_vec()).ok()
}

/// `fsync@openssh.com`'s data: one handle, and nothing else.
fn parse_fsync(data: Vec<u8>) -> Option<String> {
    let mut body = Bytes::from(data);
    let handle = take_text(&mut body)?;
    body.is_empty().then_some(handle)
}

/// READ: handle, offset, length.
fn parse_read(mut body: Bytes) -> Option<(String, u64, u32)> {
    let handle = take_text(&mut body)?;
    if body.remaining() != 12 {
        return None;
    }
    Some((handle, body.get_u64(), body.get_u32()))
}

/// WRITE: handle, offset, data (a zero-copy slice of the packet).
fn parse_write(mut body: Bytes) -> Option<(String, u64, Bytes)> {
    let handle = take_text(&mut body)?;
    if body.remaining() < 8 {
        return None;
    }
    let offset = body.get_u64();
    let data = take_string(&mut body)?;
    body.is_empty().then_some((handle, offset, data))
}

/// Sends replies in the order they are queued, gathering those waiting into
/// channel writes of up to about `COALESCE` bytes; gives the writer back
/// when the queue ends.
async fn write_replies(
    writer: ChannelWriteHalf<Msg>,
    mut queue: mpsc::Receiver<Reply>,
) -> Option<ChannelWriteHalf<Msg>> {
    let packet = writer.writable_packet_size().await.max(MIN_PACKET);
    let mut packer = Packer::new(packet);
    let mut ready = Vec::new();
    while let Some(first) = queue.recv().await {
        let mut next = Some(first);
        while let Some(reply) = next.take() {
            if let Err(err) = packer.add(reply, &mut ready) {
                tracing::error!(%err, "cannot encode an sftp reply");
                return None;
            }
            for chunk in ready.drain(..) {
                writer.data_bytes(chunk).await.ok()?;
            }
            if packer.pending() < COALESCE {
                next = queue.try_recv().ok();
            }
        }
        if let Some(rest) = packer.take() {
            writer.data_bytes(rest).await.ok()?;
        }
    }
    Some(writer)
}

/// Why a reply could not be encoded.
type EncodeError = <Bytes as TryFrom<Packet>>::Error;

/// The smallest packet size replies are laid out for, whatever the window
/// left when the writer started.
const MIN_PACKET: usize = 4096;

/// Lays replies out as the channel's packets will carry them. Headers,
/// statuses and the ends of READ data are copied together; the whole
/// packets' worth of READ data between them are handed on as slices of the
/// data, uncopied. The channel cuts what it is given into packets, so every
/// packet it sends but the last of a batch is full, as when each reply was
/// copied behind the one before; a header written alone was a packet of its
/// own.
struct Packer {
    /// The channel's packet size.
    packet: usize,
    /// Copied bytes not handed on yet.
    out: BytesMut,
}

impl Packer {
    fn new(packet: usize) -> Self {
        Packer {
            packet,
            out: BytesMut::with_capacity(COALESCE),
        }
    }

    /// Adds `reply`, pushing onto `ready`, in order, what can be sent.
    fn add(&mut self, reply: Reply, ready: &mut Vec<Bytes>) -> Result<(), EncodeError> {
        match reply {
            Reply::Data { id, data } => {
                let len =
                    u32::try_from(data.len() + 9).expect("a READ reply is smaller than 4 GiB");
                self.out.put_u32(len);
                self.out.put_u8(FXP_DATA);
                self.out.put_u32(id);
                self.out.put_u32(len - 9);
                // The data's first bytes complete the packet being gathered;
                // the whole packets after them go as they are.
                let room = (self.packet - self.out.len() % self.packet) % self.packet;
                if data.len() < room + self.packet {
                    self.out.extend_from_slice(&data);
                } else {
                    let whole = room + (data.len() - room) / self.packet * self.packet;
                    self.out.extend_from_slice(&data[..room]);
                    ready.push(self.out.split().freeze());
                    ready.push(data.slice(room..whole));
                    self.out.extend_from_slice(&data[whole..]);
                }
            }
            Reply::Packet(packet) => self.out.extend_from_slice(&Bytes::try_from(packet)?),
        }
        Ok(())
    }

    /// How many copied bytes wait.
    fn pending(&self) -> usize {
        self.out.len()
    }

    /// The copied bytes waiting, if any.
    fn take(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }
}

/// VERSION, naming the extensions served.
fn version() -> Packet {
    let mut version = Version::new();
    for name in [LIMITS, FSYNC] {
        version.extensions.insert(name.to_string(), "1".to_string());
    }
    Packet::Version(version)
}

/// `limits@openssh.com`: the sizes this server accepts. OpenSSH's sftp and
/// scp size their reads and writes by them when not told otherwise, as they
/// do against OpenSSH's own server; without them they fall back to 32 KiB
/// requests.
fn limits(id: u32) -> Packet {
    let limits = LimitsExtension {
        max_packet_len: u64::from(MAX_PACKET),
        max_read_len: u64::from(MAX_READ),
        max_write_len: u64::from(MAX_WRITE),
        max_open_handles: MAX_HANDLES as u64,
    };
    match russh_sftp::ser::to_bytes(&limits) {
        Ok(data) => Packet::ExtendedReply(ExtendedReply {
            id,
            data: data.to_vec(),
        }),
        Err(err) => {
            tracing::error!(%err, "cannot encode the limits reply");
            status(id, StatusCode::Failure, "limits unavailable")
        }
    }
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
        | FileOpError::Unavailable
        | FileOpError::Corrupt
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
    async fn reply(&self, reply: Reply) -> bool {
        self.replies.send(reply).await.is_ok()
    }

    /// Answers request `id` with a status.
    async fn reply_status(&self, id: u32, code: StatusCode, message: &str) -> bool {
        self.reply(Reply::Packet(status(id, code, message))).await
    }

    /// Routes one request; `false` when the reply channel is gone.
    async fn dispatch(&mut self, request: Request) -> bool {
        let (id, handle, file_request) = match request {
            Request::Read {
                id,
                handle,
                offset,
                len,
            } => (id, handle, FileRequest::Read { offset, len }),
            Request::Write {
                id,
                handle,
                offset,
                data,
            } => (id, handle, FileRequest::Write { offset, data }),
            Request::Malformed { id } => {
                return self
                    .reply_status(id, StatusCode::BadMessage, "malformed packet")
                    .await;
            }
            Request::Other(Packet::Fstat(fstat)) => (fstat.id, fstat.handle, FileRequest::Fstat),
            Request::Other(Packet::FSetStat(set)) => {
                (set.id, set.handle, FileRequest::SetAttributes(set.attrs))
            }
            Request::Other(Packet::Close(close))
                if matches!(self.handles.get(&close.handle), Some(OpenHandle::File(_))) =>
            {
                (close.id, close.handle, FileRequest::Close)
            }
            Request::Other(Packet::Extended(extended)) if extended.request == FSYNC => {
                match parse_fsync(extended.data) {
                    Some(handle) => (extended.id, handle, FileRequest::Sync),
                    None => {
                        return self
                            .reply_status(extended.id, StatusCode::BadMessage, "malformed fsync")
                            .await;
                    }
                }
            }
            Request::Other(packet) => {
                // Path operations see the effect of every earlier file request.
                self.in_flight.wait_idle().await;
                let reply = self.handle(packet).await;
                return self.reply(Reply::Packet(reply)).await;
            }
        };
        let closing = matches!(file_request, FileRequest::Close);
        // (A CLOSE reaches here only for a file handle; directories close inline.)
        let queue = match self.handles.get(&handle) {
            Some(OpenHandle::File(queue)) => queue.clone(),
            _ => {
                return self
                    .reply_status(id, StatusCode::Failure, "invalid handle")
                    .await;
            }
        };
        if closing {
            self.handles.remove(&handle);
        }
        self.in_flight.start();
        if queue.send((id, file_request)).await.is_err() {
            self.in_flight.done();
            return self
                .reply_status(id, StatusCode::Failure, "invalid handle")
                .await;
        }
        true
    }

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

    /// Starts the worker of a newly opened file and returns its handle.
    fn open_file(&mut self, id: u32, file: OpenFile) -> Packet {
        if self.handles.len() >= MAX_HANDLES {
            // Dropping `file` records the transfer as aborted.
            return status(id, StatusCode::Failure, "too many open handles");
        }
        let (queue, requests) = mpsc::channel(FILE_QUEUE);
        self.workers.spawn(serve_file(
            file,
            requests,
            self.replies.clone(),
            self.in_flight.clone(),
            self.files.clone(),
        ));
        self.handle_reply(id, OpenHandle::File(queue))
    }

    /// Ends every open transfer when the channel closes: each worker sees
    /// its queue end without a CLOSE and records an abort.
    async fn shutdown(&mut self) {
        self.handles.clear();
        while self.workers.join_next().await.is_some() {}
    }

    /// Requests that are not about an open file.
    async fn handle(&mut self, packet: Packet) -> Packet {
        let files = self.files.clone();
        match packet {
            Packet::Init(_) => version(),
            Packet::Open(open) => self.open(open.id, &open.filename, open.pflags).await,
            Packet::Close(close) => match self.handles.remove(&close.handle) {
                Some(OpenHandle::Dir(_)) => ok(close.id),
                _ => status(close.id, StatusCode::Failure, "invalid handle"),
            },
            Packet::Read(read) => status(read.id, StatusCode::Failure, "invalid handle"),
            Packet::Write(write) => status(write.id, StatusCode::Failure, "invalid handle"),
            Packet::Lstat(stat) => reply_attrs(stat.id, files.stat(&stat.path).await),
            Packet::Stat(stat) => reply_attrs(stat.id, files.stat(&stat.path).await),
            Packet::SetStat(setstat) => {
                set_attributes(&*files, setstat.id, &setstat.path, &setstat.attrs).await
            }
            Packet::OpenDir(opendir) => match files.list_pages(&opendir.path).await {
                Ok(pages) => self.handle_reply(
                    opendir.id,
                    OpenHandle::Dir(DirListing {
                        ready: VecDeque::new(),
                        pages: Some(std::sync::Mutex::new(pages)),
                    }),
                ),
                Err(err) => error_status(opendir.id, &err),
            },
            Packet::ReadDir(readdir) => {
                let Some(OpenHandle::Dir(listing)) = self.handles.get_mut(&readdir.handle) else {
                    return status(readdir.id, StatusCode::Failure, "invalid handle");
                };
                while listing.ready.is_empty() {
                    let Some(pages) = listing.pages.as_mut() else {
                        return status(readdir.id, StatusCode::Eof, "end of directory");
                    };
                    let pages = pages
                        .get_mut()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    match pages.next().await {
                        Some(Ok(page)) => listing.ready.extend(page),
                        Some(Err(err)) => {
                            listing.pages = None;
                            return error_status(readdir.id, &err);
                        }
                        None => listing.pages = None,
                    }
                }
                let count = listing.ready.len().min(DIR_PAGE);
                let page: Vec<DirEntry> = listing.ready.drain(..count).collect();
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
            Packet::Extended(extended) if extended.request == LIMITS => limits(extended.id),
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
                Ok(download) => self.open_file(id, OpenFile::Read(download)),
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
            Ok(upload) => self.open_file(
                id,
                OpenFile::Write {
                    upload,
                    path: path.to_string(),
                    times: None,
                },
            ),
            Err(err) => error_status(id, &err),
        }
    }
}

/// Serves the requests of one open file, in order, until CLOSE; if the
/// queue ends first (the channel closed), records the transfer as aborted.
async fn serve_file(
    file: OpenFile,
    mut requests: mpsc::Receiver<(u32, FileRequest)>,
    replies: mpsc::Sender<Reply>,
    in_flight: Arc<InFlight>,
    files: Arc<dyn FileOps>,
) {
    let mut file = Some(file);
    while let Some((id, request)) = requests.recv().await {
        let reply = match (
            request,
            file.as_mut().expect("the file is open until CLOSE"),
        ) {
            (FileRequest::Close, _) => {
                let reply = close(
                    id,
                    file.take().expect("the file is open until CLOSE"),
                    &*files,
                )
                .await;
                let _ = replies.send(Reply::Packet(reply)).await;
                in_flight.done();
                return;
            }
            (FileRequest::Read { offset, len }, OpenFile::Read(download)) => {
                match download.read_at(offset, len.min(MAX_READ)).await {
                    Ok(data) if data.is_empty() => {
                        Reply::Packet(status(id, StatusCode::Eof, "end of file"))
                    }
                    Ok(data) => Reply::Data { id, data },
                    Err(err) => Reply::Packet(error_status(id, &err)),
                }
            }
            (FileRequest::Write { offset, data }, OpenFile::Write { upload, .. }) => {
                Reply::Packet(unit(id, upload.write_at(offset, data).await))
            }
            (FileRequest::Read { .. }, _) | (FileRequest::Write { .. }, _) => {
                Reply::Packet(status(
                    id,
                    StatusCode::PermissionDenied,
                    "the handle is not open for that",
                ))
            }
            (FileRequest::Fstat, OpenFile::Read(download)) => {
                Reply::Packet(reply_attrs(id, download.meta().await))
            }
            (FileRequest::Fstat, OpenFile::Write { upload, .. }) => {
                Reply::Packet(reply_attrs(id, upload.meta().await))
            }
            (FileRequest::SetAttributes(_), OpenFile::Read(_)) => Reply::Packet(ok(id)),
            // A download changes nothing that could need syncing.
            (FileRequest::Sync, OpenFile::Read(_)) => Reply::Packet(ok(id)),
            (FileRequest::Sync, OpenFile::Write { upload, .. }) => {
                Reply::Packet(unit(id, upload.sync().await))
            }
            (FileRequest::SetAttributes(attrs), OpenFile::Write { upload, times, .. }) => {
                Reply::Packet(set_upload_attributes(id, &mut **upload, times, &attrs).await)
            }
        };
        let sent = replies.send(reply).await.is_ok();
        in_flight.done();
        if !sent {
            break;
        }
    }
    // Answer nothing more: release whatever is still queued.
    while requests.try_recv().is_ok() {
        in_flight.done();
    }
    const REASON: &str = "connection closed before the transfer finished";
    match file {
        Some(OpenFile::Write { upload, .. }) => upload.abort(REASON).await,
        Some(OpenFile::Read(download)) => download.abort(REASON).await,
        None => {}
    }
}

async fn close(id: u32, file: OpenFile, files: &dyn FileOps) -> Packet {
    match file {
        OpenFile::Read(download) => unit(id, download.finish().await),
        OpenFile::Write {
            upload,
            path,
            times,
        } => {
            if let Err(err) = upload.finish().await {
                return error_status(id, &err);
            }
            match times {
                Some((atime, mtime)) => unit(id, files.set_times(&path, atime, mtime).await),
                None => ok(id),
            }
        }
    }
}

/// FSETSTAT on an upload: a size other than the current one is refused;
/// times are kept and applied once the upload is committed.
async fn set_upload_attributes(
    id: u32,
    upload: &mut dyn Upload,
    times: &mut Option<(i64, i64)>,
    attrs: &FileAttributes,
) -> Packet {
    if let Some(size) = attrs.size {
        let current = upload.meta().await.map(|m| m.size).unwrap_or(u64::MAX);
        if size != current {
            return status(id, StatusCode::OpUnsupported, "truncation is not supported");
        }
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        *times = Some((i64::from(atime), i64::from(mtime)));
    }
    ok(id)
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

#[cfg(test)]
mod tests;
