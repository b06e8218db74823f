//! The SSH commands users run on their files: `sha256sum` and `md5sum`
//! (as `ssh host sha256sum FILE` and tools such as rclone use them). Each
//! file is read through `FileOps`, so the read is authorised and recorded
//! like any download. Output follows coreutils: `HEX  NAME` per file,
//! errors on stderr, exit status 1 when a file could not be read.

use std::sync::Arc;

use md5::Md5;
use russh::Channel;
use russh::server::Msg;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tollgate_ports::inbound::FileOps;

use crate::scp::shell_words;

/// Bytes read per storage call.
const CHUNK: u32 = 256 * 1024;

/// A checksum algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Sha256,
    Md5,
}

impl Algorithm {
    fn program(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256sum",
            Algorithm::Md5 => "md5sum",
        }
    }
}

/// A parsed checksum command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChecksumCommand {
    algorithm: Algorithm,
    paths: Vec<String>,
}

/// Parses `sha256sum [--] FILE...` or `md5sum [--] FILE...`; other options
/// are not served.
pub(crate) fn parse(line: &str) -> Option<ChecksumCommand> {
    let words = shell_words(line)?;
    let (program, args) = words.split_first()?;
    let algorithm = match program.as_str() {
        "sha256sum" => Algorithm::Sha256,
        "md5sum" => Algorithm::Md5,
        _ => return None,
    };
    let mut paths = Vec::new();
    let mut options_done = false;
    for arg in args {
        if !options_done && arg == "--" {
            options_done = true;
        } else if !options_done && arg.starts_with('-') && arg.len() > 1 {
            return None;
        } else {
            paths.push(arg.clone());
        }
    }
    (!paths.is_empty()).then_some(ChecksumCommand { algorithm, paths })
}

enum Hasher {
    Sha256(Sha256),
    Md5(Md5),
}

impl Hasher {
    fn new(algorithm: Algorithm) -> Hasher {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Md5 => Hasher::Md5(Md5::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}

/// The checksum of one file, read through a recorded download.
async fn checksum(files: &dyn FileOps, algorithm: Algorithm, path: &str) -> Result<String, String> {
    let mut download = files.open_download(path).await.map_err(|e| e.to_string())?;
    let mut hasher = Hasher::new(algorithm);
    let mut offset = 0u64;
    loop {
        match download.read_at(offset, CHUNK).await {
            Ok(data) if data.is_empty() => break,
            Ok(data) => {
                offset += data.len() as u64;
                hasher.update(&data);
            }
            Err(err) => {
                download.abort(&err.to_string()).await;
                return Err(err.to_string());
            }
        }
    }
    download.finish().await.map_err(|e| e.to_string())?;
    Ok(hasher.hex())
}

/// Runs one checksum command on `channel` and ends it with its exit status.
pub(crate) async fn serve(
    channel: Channel<Msg>,
    files: Arc<dyn FileOps>,
    command: ChecksumCommand,
    ssh: russh::server::Handle,
) {
    let channel_id = channel.id();
    let mut stdout = channel.make_writer();
    let mut status = 0;
    for path in &command.paths {
        match checksum(&*files, command.algorithm, path).await {
            Ok(hex) => {
                let line = format!("{hex}  {path}\n");
                if stdout.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            Err(err) => {
                status = 1;
                let line = format!("{}: {path}: {err}\n", command.algorithm.program());
                let _ = ssh.extended_data(channel_id, 1, line.into_bytes()).await;
            }
        }
    }
    let _ = stdout.flush().await;
    let _ = ssh.exit_status_request(channel_id, status).await;
    let _ = ssh.eof(channel_id).await;
    let _ = ssh.close(channel_id).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_commands_are_parsed_like_coreutils() {
        let parsed = parse("sha256sum 'a b.txt' -- -odd").unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Sha256);
        assert_eq!(parsed.paths, vec!["a b.txt", "-odd"]);
        assert_eq!(parse("md5sum x").unwrap().algorithm, Algorithm::Md5);
        assert_eq!(parse("md5sum"), None);
        assert_eq!(parse("sha256sum -c sums"), None);
        assert_eq!(parse("sha1sum x"), None);
        assert_eq!(parse("sha256sum 'unterminated"), None);
    }
}
