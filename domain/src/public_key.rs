//! `AuthorizedKey`: one OpenSSH public key line (`type base64 [comment]`).

use serde::{Deserialize, Serialize};

/// Why a public key line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The line is not `type base64 [comment]` with a known key type.
    #[error("not an OpenSSH public key line")]
    Malformed,
}

const KNOWN_TYPES: [&str; 6] = [
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
];

/// A public key a user may log in with. Compared by type and key blob; the
/// comment is kept only for display.
#[derive(Debug, Clone, Eq, Serialize, Deserialize)]
pub struct AuthorizedKey {
    algorithm: String,
    blob: String,
    comment: String,
}

impl AuthorizedKey {
    /// Parses one `authorized_keys`-style line.
    pub fn parse(line: &str) -> Result<Self, KeyError> {
        let mut parts = line.split_whitespace();
        let algorithm = parts.next().ok_or(KeyError::Malformed)?;
        let blob = parts.next().ok_or(KeyError::Malformed)?;
        let comment = parts.collect::<Vec<_>>().join(" ");
        let base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
        if !KNOWN_TYPES.contains(&algorithm) || blob.len() < 16 || !blob.chars().all(base64) {
            return Err(KeyError::Malformed);
        }
        Ok(AuthorizedKey {
            algorithm: algorithm.to_string(),
            blob: blob.to_string(),
            comment,
        })
    }

    /// The key type, e.g. `ssh-ed25519`.
    pub fn algorithm(&self) -> &str {
        &self.algorithm
    }

    /// The base64 key blob.
    pub fn blob(&self) -> &str {
        &self.blob
    }

    /// `type base64` without the comment.
    pub fn to_openssh(&self) -> String {
        format!("{} {}", self.algorithm, self.blob)
    }
}

impl PartialEq for AuthorizedKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm == other.algorithm && self.blob == other.blob
    }
}
