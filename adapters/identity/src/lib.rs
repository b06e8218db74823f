//! Identity adapters: password hashing with Argon2id (and the verification
//! of imported bcrypt, SHA-512-crypt and PBKDF2 hashes), bearer tokens
//! (HS256 JWTs with a rotatable key file), sealed storage secrets
//! (AES-256-GCM), RFC 6238 one-time passwords (`Rfc6238`), and LDAP / Active Directory logins by bind (`ldap`).
//!
//! Architecture invariant: a clear-text password never leaves the function
//! it was given to; nothing here logs or stores one.

mod audit_key;
mod jwt;
pub mod ldap;
mod passwords;
mod secrets;
mod totp;

pub use audit_key::AuditKeySigner;
pub use jwt::{JwtSigner, KeyFileError};
pub use passwords::Argon2Hasher;
pub use secrets::AesGcmSecretBox;
pub use totp::Rfc6238;
