//! Identity adapters: password hashing with Argon2id, and bearer tokens
//! (HS256 JWTs with a rotatable key file), and sealed storage secrets
//! (AES-256-GCM).
//!
//! Architecture invariant: a clear-text password never leaves the function
//! it was given to; nothing here logs or stores one.

mod audit_key;
mod jwt;
mod secrets;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use tollgate_ports::BoxError;
use tollgate_ports::outbound::PasswordHasher;

pub use audit_key::AuditKeySigner;
pub use jwt::{JwtSigner, KeyFileError};
pub use secrets::AesGcmSecretBox;

/// Argon2id with the crate's recommended parameters (OWASP minimums).
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Hasher;

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<String, BoxError> {
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(hash.to_string())
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = Argon2Hasher.hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(Argon2Hasher.verify("correct horse", &hash));
        assert!(!Argon2Hasher.verify("wrong", &hash));
        assert!(!Argon2Hasher.verify("correct horse", "not a hash"));
    }
}
