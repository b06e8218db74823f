//! File storage adapters: local disk (`LocalStorage`), object stores
//! (`ObjectStorage`: S3, GCS, Azure Blob), a remote SFTP server
//! (`SftpStorage`), encryption at rest over any of them (`Encrypted`), and
//! `Backends`, which builds a mount's backend from its specification.
//!
//! Architecture invariant: an adapter resolves every path under the
//! namespace root and never follows a symlink out of it; it holds no
//! business rule (no permission check, no event).

mod backends;
pub mod contract;
mod encrypted;
mod local;
mod object;
mod sftp;

pub use backends::Backends;
pub use encrypted::{DataKey, Encrypted};
pub use local::LocalStorage;
pub use object::{ObjectOptions, ObjectStorage};
pub use sftp::{SftpOptions, SftpStorage};
