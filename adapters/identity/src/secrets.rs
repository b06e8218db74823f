//! Sealed secrets: AES-256-GCM with a random 96-bit nonce per secret and a
//! key generated on first start in a file of the data directory. The
//! sealed text is `v1:` followed by base64 of nonce ‖ ciphertext ‖ tag.

use std::path::Path;

use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tollgate_ports::outbound::{SecretBox, SecretError};

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

impl SecretBox for AesGcmSecretBox {
    fn seal(&self, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(&nonce.into(), plaintext.as_bytes())
            .expect("AES-GCM encrypts any message shorter than 64 GiB");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    fn open(&self, sealed: &str) -> Result<String, SecretError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(SecretError::Undecryptable)?;
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
        let clear = self
            .cipher
            .decrypt(&nonce.into(), body)
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(clear).map_err(|_| SecretError::Undecryptable)
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
}
