//! File storage adapters. `LocalStorage` keeps each user's namespace in a
//! directory on local disk.
//!
//! Architecture invariant: an adapter resolves every path under the
//! namespace root and never follows a symlink out of it; it holds no
//! business rule (no permission check, no event).

mod local;

pub use local::LocalStorage;
