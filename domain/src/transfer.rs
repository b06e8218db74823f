//! The Transfer aggregate: one file upload or download, from start to its
//! single outcome (completed, failed, aborted) or its denial.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;
use crate::session::Protocol;

/// Which way the bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Direction {
    Upload,
    Download,
}

/// Who moves which file, over what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TransferContext {
    pub session_id: String,
    pub username: String,
    pub protocol: Protocol,
    pub remote_addr: String,
    pub path: String,
    pub direction: Direction,
}

/// How an operation changed what a user stores: bytes and files added
/// (negative when removed or replaced by something smaller).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageChange {
    /// Bytes added.
    pub bytes: i64,
    /// Files added.
    pub files: i64,
}

impl UsageChange {
    /// The change of writing a file of `size` bytes over `previous` (the
    /// size of the file it replaces, `None` for a new file).
    pub fn written(size: u64, previous: Option<u64>) -> UsageChange {
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        UsageChange {
            bytes: signed(size) - previous.map_or(0, signed),
            files: i64::from(previous.is_none()),
        }
    }

    /// The change of removing a file of `size` bytes.
    pub fn removed(size: u64) -> UsageChange {
        UsageChange {
            bytes: -i64::try_from(size).unwrap_or(i64::MAX),
            files: -1,
        }
    }
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum TransferState {
    #[default]
    New,
    Running,
    Completed,
    Failed,
    Aborted,
    Denied,
}

/// The Transfer aggregate. The aggregate id is a UUID chosen by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Where it stands.
    pub state: TransferState,
    /// Who and what, once started or denied.
    pub context: Option<TransferContext>,
}

/// Commands on a transfer.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TransferCommand {
    Start {
        context: TransferContext,
        offset: u64,
    },
    Deny {
        context: TransferContext,
        rule: String,
    },
    Complete {
        bytes: u64,
        size: u64,
        sha256: Option<String>,
        duration_ms: u64,
        usage: Option<UsageChange>,
    },
    Fail {
        bytes: u64,
        error: String,
        duration_ms: u64,
    },
    Abort {
        bytes: u64,
        reason: String,
        duration_ms: u64,
    },
}

/// Events of a transfer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum TransferEvent {
    TransferStarted {
        context: TransferContext,
        offset: u64,
    },
    TransferDenied {
        context: TransferContext,
        rule: String,
    },
    /// `bytes` moved in this transfer; `size` of the file afterwards;
    /// `sha256` of the whole file when it was computed.
    /// `path` repeats the start's path so that every record names its resource.
    TransferCompleted {
        path: String,
        bytes: u64,
        size: u64,
        sha256: Option<String>,
        duration_ms: u64,
        /// For an upload, how it changed what the user stores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<UsageChange>,
    },
    TransferFailed {
        path: String,
        bytes: u64,
        error: String,
        duration_ms: u64,
    },
    TransferAborted {
        path: String,
        bytes: u64,
        reason: String,
        duration_ms: u64,
    },
}
crate::domain_event!(TransferEvent, "1", {
    TransferStarted, TransferDenied, TransferCompleted, TransferFailed, TransferAborted,
});

/// Why a transfer command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Start or Deny on a transfer that already has a history.
    #[error("transfer already exists")]
    AlreadyExists,
    /// An outcome for a transfer that never started.
    #[error("transfer was not started")]
    NotStarted,
    /// A second outcome.
    #[error("transfer already ended as {state:?}")]
    AlreadyEnded {
        /// The outcome it has.
        state: TransferState,
    },
}
crate::refusal!(TransferError, { AlreadyExists => AlreadyExists, NotStarted => NotFound, AlreadyEnded => Conflict });

impl Transfer {
    fn path(&self) -> String {
        self.context
            .as_ref()
            .map(|c| c.path.clone())
            .unwrap_or_default()
    }
}

impl AggregateRoot for Transfer {
    const TYPE: &'static str = "transfer";
    type Command = TransferCommand;
    type Event = TransferEvent;
    type Error = TransferError;

    fn decide(&self, command: TransferCommand) -> Result<Vec<TransferEvent>, TransferError> {
        let event = match command {
            TransferCommand::Start { .. } | TransferCommand::Deny { .. }
                if self.state != TransferState::New =>
            {
                return Err(TransferError::AlreadyExists);
            }
            TransferCommand::Start { context, offset } => {
                TransferEvent::TransferStarted { context, offset }
            }
            TransferCommand::Deny { context, rule } => {
                TransferEvent::TransferDenied { context, rule }
            }
            _ if self.state == TransferState::New => return Err(TransferError::NotStarted),
            _ if self.state != TransferState::Running => {
                return Err(TransferError::AlreadyEnded { state: self.state });
            }
            TransferCommand::Complete {
                bytes,
                size,
                sha256,
                duration_ms,
                usage,
            } => TransferEvent::TransferCompleted {
                path: self.path(),
                bytes,
                size,
                sha256,
                duration_ms,
                usage,
            },
            TransferCommand::Fail {
                bytes,
                error,
                duration_ms,
            } => TransferEvent::TransferFailed {
                path: self.path(),
                bytes,
                error,
                duration_ms,
            },
            TransferCommand::Abort {
                bytes,
                reason,
                duration_ms,
            } => TransferEvent::TransferAborted {
                path: self.path(),
                bytes,
                reason,
                duration_ms,
            },
        };
        Ok(vec![event])
    }

    fn bytes_moved(event: &TransferEvent) -> Option<u64> {
        match event {
            TransferEvent::TransferCompleted { bytes, .. }
            | TransferEvent::TransferFailed { bytes, .. }
            | TransferEvent::TransferAborted { bytes, .. } => Some(*bytes),
            TransferEvent::TransferStarted { .. } | TransferEvent::TransferDenied { .. } => None,
        }
    }

    fn apply(&mut self, event: TransferEvent) {
        match event {
            TransferEvent::TransferStarted { context, .. } => {
                self.state = TransferState::Running;
                self.context = Some(context);
            }
            TransferEvent::TransferDenied { context, .. } => {
                self.state = TransferState::Denied;
                self.context = Some(context);
            }
            TransferEvent::TransferCompleted { .. } => self.state = TransferState::Completed,
            TransferEvent::TransferFailed { .. } => self.state = TransferState::Failed,
            TransferEvent::TransferAborted { .. } => self.state = TransferState::Aborted,
        }
    }
}

#[cfg(test)]
mod tests;
