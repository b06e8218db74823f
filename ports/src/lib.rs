//! The ports of Tollgate: the traits the application implements for the
//! protocol adapters (`inbound`) and the traits the application needs from
//! the world (`outbound`).
//!
//! Architecture invariant: no technology leaks through a port. No `sqlx`,
//! `io::Error`, russh or HTTP type appears in a signature; every port error
//! is a kind a caller can branch on plus an optional boxed source.
#![warn(missing_docs)]

pub mod api;
pub mod inbound;
pub mod outbound;

/// A boxed error source carried by a port error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
