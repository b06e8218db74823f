//! Errors of the use cases.

use cqrs_es::AggregateError;
use tollgate_domain::{Refusal, RefusalKind};
use tollgate_ports::outbound::StoreError;

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The aggregate refused the command (the message names the rule).
    #[error("{message}")]
    Rejected {
        /// What kind of refusal.
        kind: RefusalKind,
        /// The rule, as the domain words it.
        message: String,
    },
    /// A concurrent writer changed the aggregate; retrying did not help.
    #[error("the record was changed concurrently, try again")]
    Conflict,
    /// The aggregate is not at the version the caller expected.
    #[error("the record is at version {current}")]
    VersionMismatch {
        /// The current version.
        current: u64,
    },
    /// The input is invalid (bad name, key, path or rule).
    #[error("{0}")]
    Invalid(String),
    /// The event store failed.
    #[error("event store failure")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A store port failed.
    #[error("store failure: {0}")]
    Port(#[from] StoreError),
}

impl<T: std::error::Error + Refusal + Send + Sync + 'static> From<AggregateError<T>> for AppError {
    fn from(err: AggregateError<T>) -> Self {
        match err {
            AggregateError::UserError(err) => AppError::rejected(&err),
            AggregateError::AggregateConflict => AppError::Conflict,
            other => AppError::Store(Box::new(other)),
        }
    }
}

impl AppError {
    /// A domain refusal, keeping its kind.
    pub(crate) fn rejected<E: std::error::Error + Refusal>(err: &E) -> AppError {
        AppError::Rejected {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}
