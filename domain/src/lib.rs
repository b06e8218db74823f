//! The pure core of Tollgate: aggregates, their commands and events, value
//! objects and policy evaluation.
//!
//! Architecture invariant: this crate performs no I/O. It never reads the
//! clock, never draws random numbers, never touches a file, socket or
//! database, and depends on no runtime. Time and identifiers arrive as inputs;
//! decisions leave as values (events or errors).
#![warn(missing_docs)]

pub mod admin;
pub mod aggregate;
pub mod api_key;
pub mod audit_access;
pub mod audit_key;
pub mod group;
pub mod mount;
pub mod path;
pub mod policy;
pub mod public_key;
pub mod session;
pub mod transfer;
pub mod user;

pub use aggregate::{AggregateRoot, DomainEvent, Refusal, RefusalKind};
pub use path::{PathError, VirtualPath};
pub use policy::{Decision, Permission, Rule};
