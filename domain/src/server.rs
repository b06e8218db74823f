//! The ServerRun aggregate: one run of a server process, from its start to
//! its stop, and the failures of the log's subscribers during it (PCI DSS
//! 10.2.1.6: the starting and stopping of the audit logs). One aggregate
//! per run.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;

/// The ServerRun aggregate. The aggregate id is a UUID chosen at start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerRun {
    /// Whether the start was recorded.
    pub started: bool,
    /// Whether the stop was recorded.
    pub stopped: bool,
    /// The subscribers failing now.
    pub failing: Vec<String>,
}

/// Commands on a server run.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum ServerRunCommand {
    /// The server accepts connections.
    Start {
        version: String,
        host: String,
        pid: u32,
        listeners: Vec<String>,
    },
    /// The server stops.
    Stop { reason: String },
    /// A subscriber of the log failed (recorded once until it recovers).
    RecordSubscriberFailure { subscriber: String, error: String },
    /// A failing subscriber works again.
    RecordSubscriberRecovery { subscriber: String },
}

/// Events of a server run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ServerRunEvent {
    ServerStarted {
        version: String,
        host: String,
        pid: u32,
        listeners: Vec<String>,
    },
    ServerStopped {
        reason: String,
    },
    SubscriberFailed {
        subscriber: String,
        error: String,
    },
    SubscriberRecovered {
        subscriber: String,
    },
}
crate::domain_event!(ServerRunEvent, "1", {
    ServerStarted, ServerStopped, SubscriberFailed, SubscriberRecovered,
});

/// Why a server run command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerRunError {
    /// A run starts once.
    #[error("the server run already started")]
    AlreadyStarted,
    /// Not started, or already stopped.
    #[error("the server run is not running")]
    NotRunning,
    /// The subscriber's failure or recovery is already recorded.
    #[error("subscriber {0} is already in that state")]
    Unchanged(String),
}
crate::refusal!(ServerRunError, { AlreadyStarted => AlreadyExists, NotRunning => Conflict, Unchanged => Conflict });

impl AggregateRoot for ServerRun {
    const TYPE: &'static str = "server";
    type Command = ServerRunCommand;
    type Event = ServerRunEvent;
    type Error = ServerRunError;

    fn decide(&self, command: ServerRunCommand) -> Result<Vec<ServerRunEvent>, ServerRunError> {
        if let ServerRunCommand::Start {
            version,
            host,
            pid,
            listeners,
        } = command
        {
            if self.started {
                return Err(ServerRunError::AlreadyStarted);
            }
            return Ok(vec![ServerRunEvent::ServerStarted {
                version,
                host,
                pid,
                listeners,
            }]);
        }
        if !self.started || self.stopped {
            return Err(ServerRunError::NotRunning);
        }
        let event = match command {
            ServerRunCommand::Start { .. } => unreachable!("handled above"),
            ServerRunCommand::Stop { reason } => ServerRunEvent::ServerStopped { reason },
            ServerRunCommand::RecordSubscriberFailure { subscriber, error } => {
                if self.failing.contains(&subscriber) {
                    return Err(ServerRunError::Unchanged(subscriber));
                }
                ServerRunEvent::SubscriberFailed { subscriber, error }
            }
            ServerRunCommand::RecordSubscriberRecovery { subscriber } => {
                if !self.failing.contains(&subscriber) {
                    return Err(ServerRunError::Unchanged(subscriber));
                }
                ServerRunEvent::SubscriberRecovered { subscriber }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: ServerRunEvent) {
        match event {
            ServerRunEvent::ServerStarted { .. } => self.started = true,
            ServerRunEvent::ServerStopped { .. } => self.stopped = true,
            ServerRunEvent::SubscriberFailed { subscriber, .. } => self.failing.push(subscriber),
            ServerRunEvent::SubscriberRecovered { subscriber } => {
                self.failing.retain(|s| *s != subscriber)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::aggregate::check;

    fn started() -> ServerRunEvent {
        ServerRunEvent::ServerStarted {
            version: "0.1.0".into(),
            host: "gw1".into(),
            pid: 42,
            listeners: vec!["sftp 127.0.0.1:2022".into()],
        }
    }

    fn failure() -> ServerRunCommand {
        ServerRunCommand::RecordSubscriberFailure {
            subscriber: "projector".into(),
            error: "store failure".into(),
        }
    }

    #[test]
    fn a_subscriber_failure_is_recorded_once_until_it_recovers() {
        check::<ServerRun>(
            vec![started()],
            failure(),
            expect![[r#"
                SubscriberFailed { subscriber: "projector", error: "store failure" }
            "#]],
        );
        let failed = ServerRunEvent::SubscriberFailed {
            subscriber: "projector".into(),
            error: "store failure".into(),
        };
        check::<ServerRun>(
            vec![started(), failed.clone()],
            failure(),
            expect![[r#"
                error: subscriber projector is already in that state
            "#]],
        );
        check::<ServerRun>(
            vec![started(), failed],
            ServerRunCommand::RecordSubscriberRecovery {
                subscriber: "projector".into(),
            },
            expect![[r#"
                SubscriberRecovered { subscriber: "projector" }
            "#]],
        );
    }

    #[test]
    fn a_run_starts_once_and_records_nothing_after_its_stop() {
        check::<ServerRun>(
            vec![started()],
            ServerRunCommand::Start {
                version: "0.1.0".into(),
                host: "gw1".into(),
                pid: 1,
                listeners: vec![],
            },
            expect![[r#"
                error: the server run already started
            "#]],
        );
        check::<ServerRun>(
            vec![
                started(),
                ServerRunEvent::ServerStopped {
                    reason: "shutdown".into(),
                },
            ],
            failure(),
            expect![[r#"
                error: the server run is not running
            "#]],
        );
        check::<ServerRun>(
            vec![],
            ServerRunCommand::Stop {
                reason: "shutdown".into(),
            },
            expect![[r#"
                error: the server run is not running
            "#]],
        );
    }
}
