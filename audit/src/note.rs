//! Signed tree heads in the C2SP formats: a checkpoint
//! (`c2sp.org/tlog-checkpoint`: origin, tree size, base64 root hash, one
//! per line) carried in a signed note (`c2sp.org/signed-note`: the text, a
//! blank line, then `— NAME BASE64(KEY_ID || SIGNATURE)` lines) with
//! Ed25519 keys. Keys are written as the note format's key strings
//! (`NAME+KEYID+BASE64(0x01 || KEY)`, the private one prefixed with
//! `PRIVATE+KEY+`), so standard tooling reads both the notes and the keys.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature type byte of Ed25519 in the signed-note format.
const ED25519: u8 = 0x01;

/// What is wrong with a key, a note or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key string that is not `NAME+KEYID+KEY` with an Ed25519 key.
    #[error("malformed key: {0}")]
    MalformedKey(&'static str),
    /// A key name with spaces, newlines or plus signs, or empty.
    #[error("a key name must be non-empty and hold no space, newline or '+'")]
    BadName,
    /// A note that does not follow the signed-note layout.
    #[error("malformed note: {0}")]
    MalformedNote(&'static str),
    /// No signature line by the trusted key.
    #[error("the note is not signed by {name}")]
    NotSignedBy {
        /// The trusted key's name.
        name: String,
    },
    /// A signature line by the trusted key that does not verify.
    #[error("the signature by {name} does not verify")]
    BadSignature {
        /// The trusted key's name.
        name: String,
    },
    /// A checkpoint body that is not origin, size and root.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(&'static str),
}

/// The key id: the first four bytes of `SHA-256(NAME || "\n" || 0x01 ||
/// PUBLIC_KEY)`.
fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ED25519]);
    hasher.update(public.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains(|c: char| c == '+' || c.is_whitespace()) {
        return Err(NoteError::BadName);
    }
    Ok(())
}

/// Splits `NAME+KEYID+BASE64` and decodes the typed 32-byte key.
fn parse_key(text: &str) -> Result<(&str, [u8; 4], [u8; 32]), NoteError> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NoteError::MalformedKey("expected NAME+KEYID+KEY"));
    };
    check_name(name)?;
    let id: [u8; 4] = (id.len() == 8)
        .then(|| hex::decode(id).ok())
        .flatten()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(NoteError::MalformedKey("the key id is not 8 hex digits"))?;
    let bytes = BASE64
        .decode(key)
        .map_err(|_| NoteError::MalformedKey("the key is not base64"))?;
    match bytes.split_first() {
        Some((&ED25519, key)) => {
            let key: [u8; 32] = key
                .try_into()
                .map_err(|_| NoteError::MalformedKey("an Ed25519 key has 32 bytes"))?;
            Ok((name, id, key))
        }
        _ => Err(NoteError::MalformedKey("not an Ed25519 key")),
    }
}

/// A key that signs notes.
pub struct NoteSigner {
    name: String,
    id: [u8; 4],
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// A signer named `name` with the Ed25519 key of `seed` (32 random
    /// bytes the caller draws).
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        Ok(NoteSigner {
            name: name.to_string(),
            id: key_id(name, &key.verifying_key()),
            key,
        })
    }

    /// Reads a `PRIVATE+KEY+NAME+KEYID+KEY` string.
    pub fn from_private_key(text: &str) -> Result<NoteSigner, NoteError> {
        let rest = text
            .trim()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey(
                "expected PRIVATE+KEY+NAME+KEYID+KEY",
            ))?;
        let (name, id, seed) = parse_key(rest)?;
        let signer = NoteSigner::from_seed(name, seed)?;
        if signer.id != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(signer)
    }

    /// The private key string (`PRIVATE+KEY+NAME+KEYID+KEY`): a secret.
    pub fn private_key(&self) -> String {
        let mut typed = vec![ED25519];
        typed.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(typed)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id, as 8 hex digits.
    pub fn key_id(&self) -> String {
        hex::encode(self.id)
    }

    /// The public half, to publish (its `key()` is the verifier key
    /// string).
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of `text` (which must end with a newline).
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        if !text.ends_with('\n') {
            return Err(NoteError::MalformedNote("the text must end with a newline"));
        }
        let signature = self.key.sign(text.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        Ok(format!("{text}\n— {} {}\n", self.name, BASE64.encode(blob)))
    }
}

/// A public key that checks notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    /// Reads a `NAME+KEYID+KEY` string.
    pub fn from_key(text: &str) -> Result<NoteVerifier, NoteError> {
        let (name, id, key) = parse_key(text.trim())?;
        let key = VerifyingKey::from_bytes(&key)
            .map_err(|_| NoteError::MalformedKey("not a valid Ed25519 public key"))?;
        if key_id(name, &key) != id {
            return Err(NoteError::MalformedKey("the key id does not match the key"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            id,
            key,
        })
    }

    /// The key string (`NAME+KEYID+KEY`).
    pub fn key(&self) -> String {
        let mut typed = vec![ED25519];
        typed.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            BASE64.encode(typed)
        )
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks that `note` carries a valid signature by this key, and
    /// returns its text. Signatures by other keys are ignored.
    pub fn open<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote(
            "no blank line before the signatures",
        ))?;
        let (text, signatures) = (&note[..split + 1], &note[split + 2..]);
        if !signatures.ends_with('\n') {
            return Err(NoteError::MalformedNote("the note must end with a newline"));
        }
        let mut found = false;
        for line in signatures.lines() {
            let rest = line.strip_prefix("— ").ok_or(NoteError::MalformedNote(
                "a signature line starts with '— '",
            ))?;
            let (name, blob) = rest.split_once(' ').ok_or(NoteError::MalformedNote(
                "a signature line is '— NAME SIGNATURE'",
            ))?;
            let blob = BASE64
                .decode(blob)
                .map_err(|_| NoteError::MalformedNote("a signature is not base64"))?;
            if blob.len() < 4 {
                return Err(NoteError::MalformedNote("a signature is too short"));
            }
            if name != self.name || blob[..4] != self.id {
                continue;
            }
            found = true;
            let signature =
                Signature::from_slice(&blob[4..]).map_err(|_| NoteError::BadSignature {
                    name: self.name.clone(),
                })?;
            if self.key.verify(text.as_bytes(), &signature).is_ok() {
                return Ok(text);
            }
        }
        Err(if found {
            NoteError::BadSignature {
                name: self.name.clone(),
            }
        } else {
            NoteError::NotSignedBy {
                name: self.name.clone(),
            }
        })
    }
}

/// A tree head: the log's origin (its name), the number of records, and
/// the Merkle root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// The number of records in the tree.
    pub size: u64,
    /// The Merkle root over those records.
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint's text: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Reads a checkpoint's text (extension lines after the root are
    /// allowed and ignored).
    pub fn parse(text: &str) -> Result<Checkpoint, NoteError> {
        let mut lines = text.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or(NoteError::MalformedCheckpoint("no origin line"))?;
        let size = lines
            .next()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .filter(|s| s.len() == 1 || !s.starts_with('0'))
            .and_then(|s| s.parse().ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the size is not a decimal number",
            ))?;
        let root = lines
            .next()
            .and_then(|r| BASE64.decode(r).ok())
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .ok_or(NoteError::MalformedCheckpoint(
                "the root is not a base64 SHA-256 hash",
            ))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }

    /// The signed note of this checkpoint.
    pub fn sign(&self, signer: &NoteSigner) -> Result<String, NoteError> {
        signer.sign(&self.body())
    }

    /// Reads a signed checkpoint, checking the signature by `verifier`.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Checkpoint, NoteError> {
        Checkpoint::parse(verifier.open(note)?)
    }
}

#[cfg(test)]
mod tests;
