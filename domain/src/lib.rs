//! The pure core of Tollgate: aggregates, their commands and events, value
//! objects and policy evaluation.
//!
//! Architecture invariant: this crate performs no I/O. It never reads the
//! clock, never draws random numbers, never touches a file, socket or
//! database, and depends on no runtime. Time and identifiers arrive as inputs;
//! decisions leave as values (events or errors).
#![warn(missing_docs)]

pub mod access;
pub mod admin;
pub mod aggregate;
pub mod api_key;
pub mod audit_access;
pub mod audit_key;
pub mod defender;
pub mod group;
pub mod mount;
pub mod path;
pub mod policy;
pub mod public_key;
pub mod retention;
pub mod server;
pub mod session;
pub mod subscription;
pub mod transfer;
pub mod user;

pub use aggregate::{AggregateRoot, DomainEvent, Refusal, RefusalKind};
pub use path::{PathError, VirtualPath};
pub use policy::{Decision, Permission, Rule};

/// Every event type the log can hold, with its aggregate type.
pub fn event_types() -> Vec<(&'static str, &'static str)> {
    fn of<A: AggregateRoot>() -> impl Iterator<Item = (&'static str, &'static str)> {
        <A::Event as DomainEvent>::TYPES
            .iter()
            .map(|t| (A::TYPE, *t))
    }
    of::<admin::Admin>()
        .chain(of::<api_key::ApiKey>())
        .chain(of::<audit_access::AuditAccess>())
        .chain(of::<audit_key::AuditKey>())
        .chain(of::<defender::Ban>())
        .chain(of::<group::Group>())
        .chain(of::<mount::Mount>())
        .chain(of::<policy::Policy>())
        .chain(of::<retention::AuditPrune>())
        .chain(of::<server::ServerRun>())
        .chain(of::<subscription::Subscription>())
        .chain(of::<session::Session>())
        .chain(of::<transfer::Transfer>())
        .chain(of::<user::User>())
        .collect()
}
