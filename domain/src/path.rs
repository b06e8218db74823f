//! `VirtualPath`: a path inside one user's namespace.
//!
//! A virtual path is always absolute (`/` is the root of the user's
//! namespace), normalised (no `.`, no empty components, no trailing slash)
//! and can never name anything above its root: a `..` that would climb past
//! `/` is rejected, as are NUL bytes and over-long names.

use serde::{Deserialize, Serialize};

/// The longest accepted file name component, in bytes (as on Linux).
pub const MAX_NAME_LEN: usize = 255;
/// The longest accepted path, in bytes (as on Linux).
pub const MAX_PATH_LEN: usize = 4096;

/// Why a client-supplied path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// A `..` would leave the user's namespace.
    #[error("path escapes the user's namespace")]
    Escapes,
    /// One component is longer than [`MAX_NAME_LEN`].
    #[error("file name is longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// The whole path is longer than [`MAX_PATH_LEN`].
    #[error("path is longer than {MAX_PATH_LEN} bytes")]
    PathTooLong,
}

/// A normalised absolute path in a user's namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VirtualPath(String);

impl VirtualPath {
    /// The root of the namespace, `/`.
    pub fn root() -> Self {
        VirtualPath("/".to_string())
    }

    /// Parses a client path, relative paths being taken from the root.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        Self::root().resolve(raw)
    }

    /// Resolves `raw` against `self` as the working directory.
    pub fn resolve(&self, raw: &str) -> Result<Self, PathError> {
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        if raw.len() > MAX_PATH_LEN {
            return Err(PathError::PathTooLong);
        }
        let mut parts: Vec<&str> = if raw.starts_with('/') {
            Vec::new()
        } else {
            self.components().collect()
        };
        for part in raw.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(PathError::Escapes);
                    }
                }
                name => {
                    if name.len() > MAX_NAME_LEN {
                        return Err(PathError::NameTooLong);
                    }
                    parts.push(name);
                }
            }
        }
        let joined = format!("/{}", parts.join("/"));
        if joined.len() > MAX_PATH_LEN {
            return Err(PathError::PathTooLong);
        }
        Ok(VirtualPath(joined))
    }

    /// The path as text, always starting with `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the namespace root.
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The components below the root, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|part| !part.is_empty())
    }

    /// The path relative to the root, without the leading `/` (empty for the root).
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// The last component, or `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.components().last()
    }

    /// The parent directory, or `None` for the root.
    pub fn parent(&self) -> Option<VirtualPath> {
        if self.is_root() {
            return None;
        }
        let cut = self
            .0
            .rfind('/')
            .expect("a virtual path always starts with '/'");
        Some(VirtualPath(if cut == 0 {
            "/".to_string()
        } else {
            self.0[..cut].to_string()
        }))
    }

    /// Whether `prefix` is this path or one of its ancestors (component-wise).
    pub fn starts_with(&self, prefix: &VirtualPath) -> bool {
        prefix.is_root()
            || self.0 == prefix.0
            || (self.0.starts_with(&prefix.0) && self.0.as_bytes()[prefix.0.len()] == b'/')
    }
}

impl VirtualPath {
    /// This path below `prefix`, as a path of its own (`/` when equal), or
    /// `None` when `prefix` is not this path or one of its ancestors.
    pub fn strip_prefix(&self, prefix: &VirtualPath) -> Option<VirtualPath> {
        if !self.starts_with(prefix) {
            return None;
        }
        let rest = if prefix.is_root() {
            &self.0[..]
        } else {
            &self.0[prefix.0.len()..]
        };
        Some(if rest.is_empty() {
            VirtualPath::root()
        } else {
            VirtualPath(rest.to_string())
        })
    }
}

impl std::fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for VirtualPath {
    type Error = PathError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        VirtualPath::parse(&value)
    }
}

impl From<VirtualPath> for String {
    fn from(value: VirtualPath) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests;
