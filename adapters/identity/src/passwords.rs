//! Password hashes. New hashes are Argon2id. Hashes imported from other
//! systems verify too, so that their users keep their passwords: bcrypt
//! (`$2a$`, `$2b$`, `$2y$`), SHA-512-crypt (`$6$`) and PBKDF2 in the form
//! SFTPGo stores (`$pbkdf2-sha1$`, `$pbkdf2-sha256$`, `$pbkdf2-sha512$`,
//! `$pbkdf2-b64salt-sha256$`: `$ALGO$ITERATIONS$SALT$BASE64(DIGEST)`).
//! Any of those is replaced by an Argon2id hash at the user's next login.

use std::sync::{Condvar, Mutex, OnceLock};

use argon2::password_hash::PasswordHasher as _;
use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tollgate_ports::BoxError;
use tollgate_ports::outbound::PasswordHasher;

/// Argon2id with the crate's recommended parameters (OWASP minimums), and
/// the verification of imported hashes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Argon2Hasher;

/// The memory of Argon2 computations, reused: at most one block set per
/// core, each computation waits for one. Logins then cost a bounded,
/// steady amount of memory however many arrive at once; allocating 19 MiB
/// per login instead leaves glibc's arenas holding it afterwards.
struct Memory {
    free: Mutex<(Vec<Vec<Block>>, usize)>,
    returned: Condvar,
    most: usize,
}

impl Memory {
    fn get() -> &'static Memory {
        static MEMORY: OnceLock<Memory> = OnceLock::new();
        MEMORY.get_or_init(|| Memory {
            free: Mutex::new((Vec::new(), 0)),
            returned: Condvar::new(),
            most: std::thread::available_parallelism().map_or(2, usize::from),
        })
    }

    /// Runs `work` with at least `blocks` blocks of memory.
    fn with<T>(&self, blocks: usize, work: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut memory = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(memory) = free.0.pop() {
                    break memory;
                }
                if free.1 < self.most {
                    free.1 += 1;
                    break Vec::new();
                }
                free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
            }
        };
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        let result = work(&mut memory[..blocks]);
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        free.0.push(memory);
        self.returned.notify_one();
        result
    }
}

/// Whether `password` matches a PHC Argon2 hash, computed in reused memory.
fn argon2_matches(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let blocks = params.block_count();
    let argon2 = Argon2::new(algorithm, version, params);
    let mut computed = vec![0u8; expected.len()];
    Memory::get()
        .with(blocks, |memory| {
            argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut computed, memory)
        })
        .is_ok_and(|()| same(&computed, expected.as_bytes()))
}

/// PBKDF2 iteration counts above this are refused: a hash is verified on
/// every login, and an absurd count would let one import stall logins.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// The schemes a stored hash may be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Argon2id,
    Bcrypt,
    Sha512Crypt,
    Pbkdf2,
}

fn scheme(hash: &str) -> Option<Scheme> {
    if hash.starts_with("$argon2id$") {
        Some(Scheme::Argon2id)
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        Some(Scheme::Bcrypt)
    } else if hash.starts_with("$6$") {
        Some(Scheme::Sha512Crypt)
    } else if hash.starts_with("$pbkdf2-") {
        Some(Scheme::Pbkdf2)
    } else {
        None
    }
}

/// The digest of a PBKDF2 hash.
#[derive(Debug, Clone, Copy)]
enum Digest {
    Sha1,
    Sha256,
    Sha512,
}

/// A parsed PBKDF2 hash.
struct Pbkdf2Hash {
    digest: Digest,
    iterations: u32,
    salt: Vec<u8>,
    expected: Vec<u8>,
}

fn parse_pbkdf2(hash: &str) -> Option<Pbkdf2Hash> {
    let mut parts = hash.split('$');
    if parts.next() != Some("") {
        return None;
    }
    let algorithm = parts.next()?;
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = parts.next()?;
    let expected = STANDARD.decode(parts.next()?).ok()?;
    if parts.next().is_some() || iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
        return None;
    }
    let (digest, salt) = match algorithm {
        "pbkdf2-sha1" => (Digest::Sha1, salt.as_bytes().to_vec()),
        "pbkdf2-sha256" => (Digest::Sha256, salt.as_bytes().to_vec()),
        "pbkdf2-sha512" => (Digest::Sha512, salt.as_bytes().to_vec()),
        "pbkdf2-b64salt-sha256" => (Digest::Sha256, STANDARD.decode(salt).ok()?),
        _ => return None,
    };
    if expected.is_empty() || salt.is_empty() {
        return None;
    }
    Some(Pbkdf2Hash {
        digest,
        iterations,
        salt,
        expected,
    })
}

impl Pbkdf2Hash {
    fn matches(&self, password: &str) -> bool {
        let mut derived = vec![0u8; self.expected.len()];
        let (password, salt, rounds) = (password.as_bytes(), &self.salt[..], self.iterations);
        match self.digest {
            Digest::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, rounds, &mut derived),
            Digest::Sha256 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password, salt, rounds, &mut derived)
            }
            Digest::Sha512 => {
                pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password, salt, rounds, &mut derived)
            }
        }
        same(&derived, &self.expected)
    }
}

/// Equality that takes the same time wherever the inputs differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<String, BoxError> {
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|e| e.to_string())?;
        Ok(hash.to_string())
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        match scheme(hash) {
            Some(Scheme::Argon2id) => argon2_matches(password, hash),
            Some(Scheme::Bcrypt) => bcrypt::verify(password, hash).unwrap_or(false),
            Some(Scheme::Sha512Crypt) => sha_crypt::sha512_check(password, hash).is_ok(),
            Some(Scheme::Pbkdf2) => parse_pbkdf2(hash).is_some_and(|h| h.matches(password)),
            None => false,
        }
    }

    fn recognizes(&self, hash: &str) -> bool {
        match scheme(hash) {
            Some(Scheme::Argon2id) => PasswordHash::new(hash).is_ok(),
            Some(Scheme::Bcrypt) => hash.len() == 60,
            Some(Scheme::Sha512Crypt) => {
                let fields = hash.split('$').count();
                (4..=5).contains(&fields) && !hash.ends_with('$')
            }
            Some(Scheme::Pbkdf2) => parse_pbkdf2(hash).is_some(),
            None => false,
        }
    }

    fn needs_rehash(&self, hash: &str) -> bool {
        scheme(hash) != Some(Scheme::Argon2id)
    }
}

#[cfg(test)]
mod tests;
