//! Legacy SCP: `scp -t` (upload) and `scp -f` (download) run in an exec
//! channel, as OpenSSH's `scp -O` and older clients use them. Every file
//! goes through `FileOps`, so permissions, atomic uploads and events are
//! the same as for SFTP.

use std::sync::Arc;

use bytes::Bytes;
use russh::Channel;
use russh::server::Msg;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;
use tollgate_ports::inbound::{FileKind, FileOps, UploadMode};

use crate::protocol::read_exact_bytes;

/// Bytes moved per storage call.
const CHUNK: u64 = 256 * 1024;
/// Chunks queued between the channel and storage, each way.
const QUEUE: usize = 4;
/// The longest control line accepted (`C0644 <size> <name>\n`).
const MAX_LINE: usize = 4096;

/// A parsed `scp` command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScpCommand {
    /// `-t`: receive files (the client uploads); otherwise `-f`: send them.
    sink: bool,
    recursive: bool,
    preserve: bool,
    /// `-d`: the target must be a directory.
    target_is_dir: bool,
    paths: Vec<String>,
}

/// Splits a command line into words the way a POSIX shell would for the
/// quoting clients use: single quotes, double quotes and backslashes.
pub(crate) fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        other => word.push(other),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        other => word.push(other),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

/// Parses `scp [-r] [-p] [-d] [-v] [-q] -t|-f [--] PATH...`.
pub(crate) fn parse_command(line: &str) -> Option<ScpCommand> {
    let words = shell_words(line)?;
    let (program, args) = words.split_first()?;
    if program != "scp" {
        return None;
    }
    let mut command = ScpCommand {
        sink: false,
        recursive: false,
        preserve: false,
        target_is_dir: false,
        paths: Vec::new(),
    };
    let mut mode = None;
    let mut options_done = false;
    for arg in args {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && arg.starts_with('-') && arg.len() > 1 {
            for flag in arg[1..].chars() {
                match flag {
                    't' => mode = Some(true),
                    'f' => mode = Some(false),
                    'r' => command.recursive = true,
                    'p' => command.preserve = true,
                    'd' => command.target_is_dir = true,
                    'v' | 'q' => {}
                    _ => return None,
                }
            }
        } else {
            command.paths.push(arg.clone());
        }
    }
    command.sink = mode?;
    if command.paths.is_empty() || (command.sink && command.paths.len() != 1) {
        return None;
    }
    Some(command)
}

/// The byte stream of the exec channel with SCP's framing.
struct ScpStream<R, W> {
    reader: BufReader<R>,
    writer: W,
}

/// Why a transfer stopped.
enum Stop {
    /// The connection is gone or spoke nonsense.
    Broken,
}

impl<R: tokio::io::AsyncRead + Unpin, W: AsyncWrite + Unpin> ScpStream<R, W> {
    async fn ok(&mut self) -> Result<(), Stop> {
        self.send(&[0]).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        self.writer
            .write_all(bytes)
            .await
            .map_err(|_| Stop::Broken)?;
        self.writer.flush().await.map_err(|_| Stop::Broken)
    }

    /// A non-fatal error the client prints and goes on from.
    async fn warn(&mut self, message: &str) -> Result<(), Stop> {
        let line = format!("\x01scp: {}\n", message.replace('\n', " "));
        self.send(line.as_bytes()).await
    }

    /// One control line without its newline; `None` at the end of input.
    async fn line(&mut self) -> Result<Option<String>, Stop> {
        let mut buf = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
            .map_err(|_| Stop::Broken)?;
        if n == 0 {
            return Ok(None);
        }
        if buf.pop() != Some(b'\n') {
            return Err(Stop::Broken);
        }
        String::from_utf8(buf).map(Some).map_err(|_| Stop::Broken)
    }

    /// The client's answer to what we sent: `Ok(None)` for success, or
    /// its error message.
    async fn response(&mut self) -> Result<Option<String>, Stop> {
        let code = self.reader.read_u8().await.map_err(|_| Stop::Broken)?;
        match code {
            0 => Ok(None),
            1 | 2 => Ok(Some(self.line().await?.unwrap_or_default())),
            _ => Err(Stop::Broken),
        }
    }
}

/// Runs one `scp -t` or `scp -f` on `channel`, then ends it with exit
/// status 0 when every file went through, 1 otherwise.
pub(crate) async fn serve(
    channel: Channel<Msg>,
    files: Arc<dyn FileOps>,
    command: ScpCommand,
    ssh: russh::server::Handle,
) {
    let channel_id = channel.id();
    let (reader, writer) = tokio::io::split(channel.into_stream());
    let mut stream = ScpStream {
        reader: BufReader::new(reader),
        writer,
    };
    let res = if command.sink {
        sink(&mut stream, &*files, &command).await
    } else {
        source(&mut stream, &*files, &command).await
    };
    let clean = matches!(res, Ok(true));
    let _ = stream.writer.flush().await;
    let _ = ssh
        .exit_status_request(channel_id, if clean { 0 } else { 1 })
        .await;
    let _ = stream.writer.shutdown().await;
    let _ = ssh.close(channel_id).await;
}

/// The value of `res`, or else: tell the client what failed at `path` (a
/// warning it goes on from) and report this file as not transferred.
macro_rules! or_warn {
    ($stream:expr, $path:expr, $res:expr) => {
        match $res {
            Ok(value) => value,
            Err(err) => {
                $stream.warn(&format!("{}: {err}", $path)).await?;
                return Ok(false);
            }
        }
    };
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{}", dir.trim_end_matches('/'), name)
}

/// A name from a control line must be one path component.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// Receives files (`scp -t TARGET`); `Ok(false)` when some file failed.
async fn sink<R, W>(
    stream: &mut ScpStream<R, W>,
    files: &dyn FileOps,
    command: &ScpCommand,
) -> Result<bool, Stop>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let target = command.paths[0].clone();
    let target_kind = files.stat(&target).await.ok().map(|m| m.kind);
    if command.target_is_dir && target_kind != Some(FileKind::Dir) {
        stream
            .send(format!("\x02scp: {target}: not a directory\n").as_bytes())
            .await?;
        return Ok(false);
    }
    let mut dirs: Vec<String> = Vec::new();
    let mut times: Option<(i64, i64)> = None;
    let mut clean = true;
    stream.ok().await?;
    while let Some(line) = stream.line().await? {
        let (kind, rest) = line.split_at(line.char_indices().nth(1).map_or(line.len(), |(i, _)| i));
        match kind {
            "T" => {
                let fields: Vec<i64> = rest
                    .split_whitespace()
                    .filter_map(|f| f.parse().ok())
                    .collect();
                let [mtime, _, atime, _] = fields[..] else {
                    return Err(Stop::Broken);
                };
                times = Some((atime, mtime));
                stream.ok().await?;
            }
            "E" => {
                dirs.pop();
                stream.ok().await?;
            }
            "C" | "D" => {
                let mut fields = rest.splitn(3, ' ');
                let (Some(_mode), Some(size), Some(name)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(Stop::Broken);
                };
                let size: u64 = size.parse().map_err(|_| Stop::Broken)?;
                if !valid_name(name) {
                    stream
                        .send(format!("\x02scp: invalid name {name:?}\n").as_bytes())
                        .await?;
                    return Ok(false);
                }
                // Inside a received directory, or into an existing target
                // directory, the name counts; otherwise the target is the name.
                let dest = match dirs.last() {
                    Some(dir) => join(dir, name),
                    None if target_kind == Some(FileKind::Dir) => join(&target, name),
                    None => target.clone(),
                };
                if kind == "D" {
                    if !command.recursive {
                        stream
                            .send(b"\x02scp: received a directory without -r\n")
                            .await?;
                        return Ok(false);
                    }
                    let exists = files
                        .stat(&dest)
                        .await
                        .is_ok_and(|m| m.kind == FileKind::Dir);
                    if !exists && let Err(err) = files.mkdir(&dest).await {
                        stream
                            .send(format!("\x02scp: {dest}: {err}\n").as_bytes())
                            .await?;
                        return Ok(false);
                    }
                    dirs.push(dest);
                    times = None;
                    stream.ok().await?;
                    continue;
                }
                clean &= receive_file(stream, files, &dest, size, times.take()).await?;
            }
            "\u{1}" | "\u{2}" => {
                // The client reports its own error and goes on (1) or stops (2).
                clean = false;
                if kind == "\u{2}" {
                    return Ok(false);
                }
            }
            _ => return Err(Stop::Broken),
        }
    }
    Ok(clean)
}

/// Receives one file's data after its `C` line; `Ok(false)` if it failed.
async fn receive_file<R, W>(
    stream: &mut ScpStream<R, W>,
    files: &dyn FileOps,
    dest: &str,
    size: u64,
    times: Option<(i64, i64)>,
) -> Result<bool, Stop>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut upload = match files.open_upload(dest, UploadMode::Truncate).await {
        Ok(upload) => upload,
        Err(err) => {
            // The client skips the data of a refused file.
            stream.warn(&format!("{dest}: {err}")).await?;
            return Ok(false);
        }
    };
    stream.ok().await?;
    // The data goes to a writer task through a short queue, so that the
    // next chunk is read from the channel while this one is hashed and
    // written (the two run on different threads).
    let (chunks, mut queue) = mpsc::channel::<Bytes>(QUEUE);
    let writer = tokio::spawn(async move {
        let mut offset = 0u64;
        let mut failure = None;
        while let Some(data) = queue.recv().await {
            let len = data.len() as u64;
            // After a failure the rest is only drained, so that the stream
            // stays in step.
            if failure.is_none()
                && let Err(err) = upload.write_at(offset, data).await
            {
                failure = Some(err);
            }
            offset += len;
        }
        (upload, failure)
    });
    let mut offset = 0u64;
    while offset < size {
        let want = (size - offset).min(CHUNK) as usize;
        let Some(data) = read_exact_bytes(&mut stream.reader, want).await else {
            break;
        };
        offset += data.len() as u64;
        if chunks.send(data).await.is_err() {
            break;
        }
    }
    drop(chunks);
    let (upload, failure) = match writer.await {
        Ok(done) => done,
        // The upload went with the task; dropping it recorded the abort.
        Err(_) => return Err(Stop::Broken),
    };
    if offset < size {
        upload
            .abort("connection closed before the transfer finished")
            .await;
        return Err(Stop::Broken);
    }
    if stream.response().await?.is_some() {
        upload.abort("the client reported an error").await;
        return Ok(false);
    }
    if let Some(err) = failure {
        upload.abort(&err.to_string()).await;
        stream.warn(&format!("{dest}: {err}")).await?;
        return Ok(false);
    }
    if let Err(err) = upload.finish().await {
        stream.warn(&format!("{dest}: {err}")).await?;
        return Ok(false);
    }
    if let Some((atime, mtime)) = times
        && let Err(err) = files.set_times(dest, atime, mtime).await
    {
        stream.warn(&format!("{dest}: {err}")).await?;
        return Ok(false);
    }
    stream.ok().await?;
    Ok(true)
}

/// Sends files (`scp -f PATH...`); `Ok(false)` when some file failed.
async fn source<R, W>(
    stream: &mut ScpStream<R, W>,
    files: &dyn FileOps,
    command: &ScpCommand,
) -> Result<bool, Stop>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if stream.response().await?.is_some() {
        return Ok(false);
    }
    let mut clean = true;
    for path in &command.paths {
        clean &= send_path(stream, files, command, path.clone()).await?;
    }
    Ok(clean)
}

async fn send_path<R, W>(
    stream: &mut ScpStream<R, W>,
    files: &dyn FileOps,
    command: &ScpCommand,
    path: String,
) -> Result<bool, Stop>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let meta = or_warn!(stream, path, files.stat(&path).await);
    let name = path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| valid_name(n))
        .unwrap_or("file")
        .to_string();
    if command.preserve {
        stream
            .send(format!("T{} 0 {} 0\n", meta.mtime, meta.atime).as_bytes())
            .await?;
        if stream.response().await?.is_some() {
            return Ok(false);
        }
    }
    if meta.kind == FileKind::Dir {
        if !command.recursive {
            stream.warn(&format!("{path}: not a regular file")).await?;
            return Ok(false);
        }
        let entries = or_warn!(stream, path, files.list(&path).await);
        stream
            .send(format!("D{:04o} 0 {name}\n", meta.mode & 0o7777).as_bytes())
            .await?;
        if stream.response().await?.is_some() {
            return Ok(false);
        }
        let mut clean = true;
        for entry in entries {
            if matches!(entry.meta.kind, FileKind::File | FileKind::Dir) {
                clean &=
                    Box::pin(send_path(stream, files, command, join(&path, &entry.name))).await?;
            }
        }
        stream.send(b"E\n").await?;
        return Ok(clean && stream.response().await?.is_none());
    }
    let mut download = or_warn!(stream, path, files.open_download(&path).await);
    let size = or_warn!(stream, path, download.meta().await).size;
    stream
        .send(format!("C{:04o} {size} {name}\n", meta.mode & 0o7777).as_bytes())
        .await?;
    if stream.response().await?.is_some() {
        download.abort("the client refused the file").await;
        return Ok(false);
    }
    // A reader task keeps the next chunks coming from storage while this
    // one goes out on the channel.
    let (chunks, mut queue) = mpsc::channel::<Bytes>(QUEUE);
    let reader = tokio::spawn(async move {
        let mut offset = 0u64;
        while offset < size {
            match download.read_at(offset, CHUNK as u32).await {
                Ok(mut chunk) if !chunk.is_empty() => {
                    chunk.truncate((size - offset).min(chunk.len() as u64) as usize);
                    offset += chunk.len() as u64;
                    if chunks.send(chunk).await.is_err() {
                        break;
                    }
                }
                // The file shrank or failed mid-way.
                _ => break,
            }
        }
        download
    });
    let mut sent = 0u64;
    let mut closed = false;
    while let Some(chunk) = queue.recv().await {
        if stream.writer.write_all(&chunk).await.is_err() {
            closed = true;
            break;
        }
        sent += chunk.len() as u64;
    }
    drop(queue);
    let Ok(download) = reader.await else {
        // The download went with the task; dropping it recorded the abort.
        return Err(Stop::Broken);
    };
    if closed {
        download
            .abort("connection closed before the transfer finished")
            .await;
        return Err(Stop::Broken);
    }
    if sent < size {
        // The promised size cannot be kept.
        download.abort("the file changed while it was sent").await;
        return Err(Stop::Broken);
    }
    stream.ok().await?;
    if let Err(err) = download.finish().await {
        tracing::warn!(%err, "cannot record a finished scp download");
    }
    Ok(stream.response().await?.is_none())
}

#[cfg(test)]
mod tests;
