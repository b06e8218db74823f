//! Sealed secrets: AES-256-GCM with a random 96-bit nonce per secret and a
//! key generated on first start in a file of the data directory. The
//! sealed text is `v1:` followed by base64 of nonce ‖ ciphertext ‖ tag.
//!
//! The same key wraps the subject keys that seal personal data in events:
//! a wrapped key is a sealed secret holding base64 of a 256-bit data key,
//! and a value sealed with a data key is base64 (URL-safe, unpadded) of
//! nonce ‖ ciphertext ‖ tag, with the key id as associated data.

use std::path::Path;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use tollgate_ports::outbound::{SecretBox, SecretError, SubjectCipher};

use crate::jwt::{KeyFileError, create_key_file};

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// Seals and opens secrets with one AES-256-GCM key.
pub struct AesGcmSecretBox {
    cipher: Aes256Gcm,
}

impl AesGcmSecretBox {
    /// Loads the key file, creating it with a fresh key when it is absent.
    pub fn load_or_create(path: &Path) -> Result<AesGcmSecretBox, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let malformed = || KeyFileError::Malformed {
            path: path.display().to_string(),
        };
        let key = match std::fs::read_to_string(path) {
            Ok(text) => STANDARD.decode(text.trim()).map_err(|_| malformed())?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rand::fill(&mut key[..]);
                create_key_file(path, STANDARD.encode(&key).as_bytes())?;
                key
            }
            Err(err) => return Err(io(err)),
        };
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| malformed())?;
        Ok(AesGcmSecretBox { cipher })
    }
}

/// nonce ‖ ciphertext ‖ tag of `plaintext` under `cipher`, a fresh nonce each time.
fn encrypt(cipher: &Aes256Gcm, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::fill(&mut nonce);
    let sealed = cipher
        .encrypt(
            &nonce.into(),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encrypts any message shorter than 64 GiB");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    out
}

/// The clear text of nonce ‖ ciphertext ‖ tag, if it authenticates.
fn decrypt(cipher: &Aes256Gcm, bytes: &[u8], aad: &[u8]) -> Result<String, SecretError> {
    if bytes.len() <= NONCE_LEN {
        return Err(SecretError::Undecryptable);
    }
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
    let clear = cipher
        .decrypt(&nonce.into(), Payload { msg: body, aad })
        .map_err(|_| SecretError::Undecryptable)?;
    String::from_utf8(clear).map_err(|_| SecretError::Undecryptable)
}

impl SecretBox for AesGcmSecretBox {
    fn seal(&self, plaintext: &str) -> String {
        let out = encrypt(&self.cipher, plaintext.as_bytes(), b"");
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or(SecretError::Undecryptable)?;
        decrypt(&self.cipher, &bytes, b"")
    }
}

impl AesGcmSecretBox {
    fn unwrap_key(&self, wrapped: &str) -> Result<Aes256Gcm, SecretError> {
        let key = STANDARD
            .decode(self.open(wrapped)?)
            .map_err(|_| SecretError::Undecryptable)?;
        Aes256Gcm::new_from_slice(&key).map_err(|_| SecretError::Undecryptable)
    }
}

impl SubjectCipher for AesGcmSecretBox {
    fn new_wrapped_key(&self) -> String {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        self.seal(&STANDARD.encode(key))
    }

    fn seal_with(
        &self,
        wrapped: &str,
        key_id: &str,
        plaintext: &str,
    ) -> Result<String, SecretError> {
        let cipher = self.unwrap_key(wrapped)?;
        let out = encrypt(&cipher, plaintext.as_bytes(), key_id.as_bytes());
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    fn open_with(&self, wrapped: &str, key_id: &str, sealed: &str) -> Result<String, SecretError> {
        let cipher = self.unwrap_key(wrapped)?;
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SecretError::Undecryptable)?;
        decrypt(&cipher, &bytes, key_id.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let sealer = AesGcmSecretBox::load_or_create(&path).unwrap();
        let sealed = sealer.seal("s3cr3t");
        assert!(!sealed.contains("s3cr3t"));
        assert_ne!(sealed, sealer.seal("s3cr3t"), "a fresh nonce each time");
        let reloaded = AesGcmSecretBox::load_or_create(&path).unwrap();
        assert_eq!(reloaded.open(&sealed).as_deref(), Ok("s3cr3t"));
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 3;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(reloaded.open(&altered), Err(SecretError::Undecryptable));
        let other = AesGcmSecretBox::load_or_create(&dir.path().join("other.key")).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretError::Undecryptable));
        assert_eq!(other.open("plain"), Err(SecretError::Undecryptable));
    }

    #[test]
    fn personal_data_opens_only_with_its_subject_key_and_key_id() {
        let dir = tempfile::tempdir().unwrap();
        let kek = AesGcmSecretBox::load_or_create(&dir.path().join("secret.key")).unwrap();
        let wrapped = kek.new_wrapped_key();
        let other = kek.new_wrapped_key();
        assert_ne!(wrapped, other);
        let sealed = kek.seal_with(&wrapped, "k1", "alice@example.com").unwrap();
        assert!(!sealed.contains("alice"));
        assert_eq!(
            kek.open_with(&wrapped, "k1", &sealed).as_deref(),
            Ok("alice@example.com")
        );
        // Another subject's key, the value moved under another key id, or
        // an altered value: each refused.
        assert_eq!(
            kek.open_with(&other, "k1", &sealed),
            Err(SecretError::Undecryptable)
        );
        assert_eq!(
            kek.open_with(&wrapped, "k2", &sealed),
            Err(SecretError::Undecryptable)
        );
        let mut altered = sealed.into_bytes();
        altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(
            kek.open_with(&wrapped, "k1", &altered),
            Err(SecretError::Undecryptable)
        );
        // A wrapped key is useless without the key-encryption key.
        let stranger = AesGcmSecretBox::load_or_create(&dir.path().join("b.key")).unwrap();
        assert!(stranger.seal_with(&wrapped, "k1", "x").is_err());
    }
}
