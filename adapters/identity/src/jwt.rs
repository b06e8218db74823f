//! Bearer tokens: HS256 JWTs signed with a key generated on first start and
//! kept in a file of the data directory. A rotation puts a new key first and
//! keeps the previous one, so tokens issued before it verify until they
//! expire.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tollgate_ports::outbound::{TokenClaims, TokenError, TokenSigner};

/// How many keys verify: the current one and the one before it.
const KEPT_KEYS: usize = 2;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    keys: Vec<StoredKey>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    secret: String,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    kind: String,
    iat: i64,
    exp: i64,
    jti: String,
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Signs and verifies tokens with the keys of one key file.
pub struct JwtSigner {
    /// Newest first.
    keys: Vec<Key>,
}

/// Why the key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing failed.
    #[error("cannot use the key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a key file.
    #[error("the key file {path} is malformed")]
    Malformed {
        /// The file.
        path: String,
    },
    /// The audit key file belongs to another log.
    #[error("the audit key file {path} is for the origin {found:?}, not {configured:?}")]
    OtherOrigin {
        /// The file.
        path: String,
        /// The key's name.
        found: String,
        /// The configured origin.
        configured: String,
    },
}

fn new_key() -> StoredKey {
    let mut secret = [0u8; 32];
    rand::fill(&mut secret);
    let mut kid = [0u8; 8];
    rand::fill(&mut kid);
    StoredKey {
        kid: hex::encode(kid),
        secret: STANDARD.encode(secret),
    }
}

fn read(path: &Path) -> Result<Option<KeyFile>, KeyFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyFileError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let file: KeyFile = serde_json::from_str(&text).map_err(|_| KeyFileError::Malformed {
        path: path.display().to_string(),
    })?;
    if file.keys.is_empty() {
        return Err(KeyFileError::Malformed {
            path: path.display().to_string(),
        });
    }
    Ok(Some(file))
}

/// Creates the key file `path` holding `contents`, readable by the owner
/// only, and flushed to disk; fails if the file exists.
pub(crate) fn create_key_file(path: &Path, contents: &[u8]) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    out.write_all(contents).map_err(io)?;
    out.sync_all().map_err(io)
}

/// Replaces the file atomically, readable by the owner only.
fn write(path: &Path, file: &KeyFile) -> Result<(), KeyFileError> {
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let text = serde_json::to_vec_pretty(file).expect("key files serialise");
    create_key_file(&temp, &text)?;
    std::fs::rename(&temp, path).map_err(|source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    })
}

impl JwtSigner {
    /// Loads the key file, creating it with a fresh key when it is absent.
    pub fn load_or_create(path: &Path) -> Result<JwtSigner, KeyFileError> {
        let file = match read(path)? {
            Some(file) => file,
            None => {
                let file = KeyFile {
                    keys: vec![new_key()],
                };
                write(path, &file)?;
                file
            }
        };
        JwtSigner::from_file(path, file)
    }

    /// Puts a new key first, keeping the previous one for verification.
    /// Returns the new key id. A running server uses it after a restart.
    pub fn rotate(path: &Path) -> Result<String, KeyFileError> {
        let mut keys = read(path)?.map(|f| f.keys).unwrap_or_default();
        let key = new_key();
        let kid = key.kid.clone();
        keys.insert(0, key);
        keys.truncate(KEPT_KEYS);
        write(path, &KeyFile { keys })?;
        Ok(kid)
    }

    fn from_file(path: &Path, file: KeyFile) -> Result<JwtSigner, KeyFileError> {
        let keys = file
            .keys
            .into_iter()
            .map(|stored| {
                let secret =
                    STANDARD
                        .decode(&stored.secret)
                        .map_err(|_| KeyFileError::Malformed {
                            path: path.display().to_string(),
                        })?;
                Ok(Key {
                    kid: stored.kid,
                    encoding: EncodingKey::from_secret(&secret),
                    decoding: DecodingKey::from_secret(&secret),
                })
            })
            .collect::<Result<Vec<_>, KeyFileError>>()?;
        Ok(JwtSigner { keys })
    }
}

impl TokenSigner for JwtSigner {
    fn sign(&self, claims: &TokenClaims) -> Result<String, TokenError> {
        let key = &self.keys[0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let body = Claims {
            sub: claims.subject.clone(),
            kind: if claims.admin { "admin" } else { "user" }.to_string(),
            iat: claims.issued_at,
            exp: claims.expires_at,
            jti: claims.token_id.clone(),
        };
        jsonwebtoken::encode(&header, &body, &key.encoding).map_err(|_| TokenError::Invalid)
    }

    fn verify(&self, token: &str, now: i64) -> Result<TokenClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the injected clock below.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        let admin = match claims.kind.as_str() {
            "admin" => true,
            "user" => false,
            _ => return Err(TokenError::Invalid),
        };
        Ok(TokenClaims {
            subject: claims.sub,
            admin,
            issued_at: claims.iat,
            expires_at: claims.exp,
            token_id: claims.jti,
        })
    }
}

#[cfg(test)]
mod tests;
