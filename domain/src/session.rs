//! The Session aggregate: one protocol connection, its login attempts and
//! the file operations that are not transfers.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;
use crate::transfer::UsageChange;

/// The protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Protocol {
    Sftp,
    Scp,
    Ftp,
    Ftps,
    Webdav,
    Http,
}

impl Protocol {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sftp => "sftp",
            Protocol::Scp => "scp",
            Protocol::Ftp => "ftp",
            Protocol::Ftps => "ftps",
            Protocol::Webdav => "webdav",
            Protocol::Http => "http",
        }
    }
}

/// How a user proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum LoginMethod {
    Password,
    PublicKey,
    /// An OpenSSH certificate signed by a trusted user CA.
    Certificate,
    /// A bearer token issued by the HTTP API.
    Token,
    /// An API key (`X-Api-Key`).
    ApiKey,
}

/// A file operation that is not a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum FileOperation {
    List,
    Stat,
    Mkdir,
    Rmdir,
    Remove,
    Rename,
    SetAttributes,
    Symlink,
}

impl FileOperation {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            FileOperation::List => "list",
            FileOperation::Stat => "stat",
            FileOperation::Mkdir => "mkdir",
            FileOperation::Rmdir => "rmdir",
            FileOperation::Remove => "remove",
            FileOperation::Rename => "rename",
            FileOperation::SetAttributes => "set_attributes",
            FileOperation::Symlink => "symlink",
        }
    }
}

/// The Session aggregate. The aggregate id is a UUID chosen by the caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// The protocol, once opened.
    pub protocol: Option<Protocol>,
    /// The client's address.
    pub remote_addr: String,
    /// The authenticated user, once logged in.
    pub username: Option<String>,
    /// Failed login attempts so far.
    pub failed_logins: u32,
    /// Whether the session ended.
    pub closed: bool,
}

/// Commands on a session.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum SessionCommand {
    Open {
        protocol: Protocol,
        remote_addr: String,
    },
    RecordLoginFailure {
        username: String,
        method: LoginMethod,
        reason: String,
        admin: bool,
    },
    RecordLogin {
        username: String,
        method: LoginMethod,
        key_fingerprint: Option<String>,
        admin: bool,
    },
    RequestDisconnect {
        by: String,
    },
    RecordRefusedCommand {
        command: String,
    },
    RecordOperation {
        operation: FileOperation,
        path: String,
        target: Option<String>,
        usage: Option<UsageChange>,
    },
    RecordDenial {
        operation: FileOperation,
        path: String,
        target: Option<String>,
        rule: String,
    },
    RecordFailure {
        operation: FileOperation,
        path: String,
        target: Option<String>,
        error: String,
    },
    Close {
        reason: String,
    },
}

/// Events of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum SessionEvent {
    SessionOpened {
        protocol: Protocol,
        remote_addr: String,
    },
    LoginFailed {
        username: String,
        method: LoginMethod,
        reason: String,
        /// The name is an administrator's, not a user's.
        #[serde(default, skip_serializing_if = "is_false")]
        admin: bool,
    },
    LoginSucceeded {
        username: String,
        method: LoginMethod,
        key_fingerprint: Option<String>,
        /// The name is an administrator's, not a user's.
        #[serde(default, skip_serializing_if = "is_false")]
        admin: bool,
    },
    FileOperationPerformed {
        operation: FileOperation,
        path: String,
        target: Option<String>,
        /// How a removal (or a rename over a file) changed what the user
        /// stores.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        usage: Option<UsageChange>,
    },
    FileOperationDenied {
        operation: FileOperation,
        path: String,
        target: Option<String>,
        rule: String,
    },
    FileOperationFailed {
        operation: FileOperation,
        path: String,
        target: Option<String>,
        error: String,
    },
    SessionDisconnectRequested {
        by: String,
    },
    /// An SSH exec or shell request the gateway does not serve.
    CommandRefused {
        command: String,
    },
    SessionClosed {
        reason: String,
    },
}
crate::domain_event!(SessionEvent, "1", {
    SessionOpened, LoginFailed, LoginSucceeded, FileOperationPerformed,
    FileOperationDenied, FileOperationFailed, SessionDisconnectRequested, CommandRefused,
    SessionClosed,
});

fn is_false(value: &bool) -> bool {
    !*value
}

/// Why a session command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The session was opened already.
    #[error("session is already open")]
    AlreadyOpen,
    /// The session was never opened.
    #[error("session is not open")]
    NotOpen,
    /// The session has ended.
    #[error("session is closed")]
    Closed,
    /// A login happened already on this session.
    #[error("session is already authenticated")]
    AlreadyAuthenticated,
    /// File operations need a logged-in user.
    #[error("session is not authenticated")]
    NotAuthenticated,
}
crate::refusal!(SessionError, { AlreadyOpen => AlreadyExists, NotOpen => NotFound, Closed => Conflict, AlreadyAuthenticated => Conflict, NotAuthenticated => Conflict });

impl AggregateRoot for Session {
    const TYPE: &'static str = "session";
    type Command = SessionCommand;
    type Event = SessionEvent;
    type Error = SessionError;

    fn decide(&self, command: SessionCommand) -> Result<Vec<SessionEvent>, SessionError> {
        if let SessionCommand::Open {
            protocol,
            remote_addr,
        } = command
        {
            if self.protocol.is_some() {
                return Err(SessionError::AlreadyOpen);
            }
            return Ok(vec![SessionEvent::SessionOpened {
                protocol,
                remote_addr,
            }]);
        }
        if self.protocol.is_none() {
            return Err(SessionError::NotOpen);
        }
        if self.closed {
            return Err(SessionError::Closed);
        }
        let authenticated = self.username.is_some();
        let event = match command {
            SessionCommand::Open { .. } => unreachable!("handled above"),
            SessionCommand::RecordLoginFailure { .. } | SessionCommand::RecordLogin { .. }
                if authenticated =>
            {
                return Err(SessionError::AlreadyAuthenticated);
            }
            SessionCommand::RecordLoginFailure {
                username,
                method,
                reason,
                admin,
            } => SessionEvent::LoginFailed {
                username,
                method,
                reason,
                admin,
            },
            SessionCommand::RecordLogin {
                username,
                method,
                key_fingerprint,
                admin,
            } => SessionEvent::LoginSucceeded {
                username,
                method,
                key_fingerprint,
                admin,
            },
            SessionCommand::Close { reason } => SessionEvent::SessionClosed { reason },
            SessionCommand::RequestDisconnect { by } => {
                SessionEvent::SessionDisconnectRequested { by }
            }
            _ if !authenticated => return Err(SessionError::NotAuthenticated),
            SessionCommand::RecordOperation {
                operation,
                path,
                target,
                usage,
            } => SessionEvent::FileOperationPerformed {
                operation,
                path,
                target,
                usage,
            },
            SessionCommand::RecordDenial {
                operation,
                path,
                target,
                rule,
            } => SessionEvent::FileOperationDenied {
                operation,
                path,
                target,
                rule,
            },
            SessionCommand::RecordRefusedCommand { command } => {
                SessionEvent::CommandRefused { command }
            }
            SessionCommand::RecordFailure {
                operation,
                path,
                target,
                error,
            } => SessionEvent::FileOperationFailed {
                operation,
                path,
                target,
                error,
            },
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::SessionOpened {
                protocol,
                remote_addr,
            } => {
                self.protocol = Some(protocol);
                self.remote_addr = remote_addr;
            }
            SessionEvent::LoginFailed { .. } => self.failed_logins += 1,
            SessionEvent::LoginSucceeded { username, .. } => self.username = Some(username),
            SessionEvent::FileOperationPerformed { .. }
            | SessionEvent::FileOperationDenied { .. }
            | SessionEvent::FileOperationFailed { .. }
            | SessionEvent::SessionDisconnectRequested { .. }
            | SessionEvent::CommandRefused { .. } => {}
            SessionEvent::SessionClosed { .. } => self.closed = true,
        }
    }
}

#[cfg(test)]
mod tests;
