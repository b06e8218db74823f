//! The server's own run as events: its start and stop, and the failures and
//! recoveries of the log's subscribers in between (one `ServerRun`
//! aggregate per run).

use cqrs_es::persist::PersistedEventRepository;
use tollgate_domain::server::{ServerRun, ServerRunCommand};

use crate::aggregates::Actor;
use crate::{AppError, Tollgate};

/// Who a server run is, as its start records it.
#[derive(Debug, Clone, Default)]
pub struct RunInfo {
    /// The product version.
    pub version: String,
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// What it listens on (`sftp 127.0.0.1:2022`, ...).
    pub listeners: Vec<String>,
}

fn system() -> Actor {
    Actor {
        actor: "system".to_string(),
        ..Actor::default()
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    async fn on_run(&self, command: ServerRunCommand) -> Result<(), AppError> {
        let Some(run) = self.inner.run.get() else {
            return Ok(());
        };
        self.execute::<ServerRun>(run, &system(), || command.clone())
            .await
            .map(drop)
    }

    /// Records the start of this process's run (`ServerStarted`).
    pub async fn record_server_started(&self, info: RunInfo) -> Result<(), AppError> {
        let run = uuid::Uuid::now_v7().to_string();
        if self.inner.run.set(run.clone()).is_err() {
            return Err(AppError::Invalid("this server run already started".into()));
        }
        self.on_run(ServerRunCommand::Start {
            version: info.version,
            host: info.host,
            pid: info.pid,
            listeners: info.listeners,
        })
        .await
    }

    /// Records the end of this process's run (`ServerStopped`).
    pub async fn record_server_stopped(&self, reason: &str) -> Result<(), AppError> {
        self.on_run(ServerRunCommand::Stop {
            reason: reason.to_string(),
        })
        .await
    }

    /// Records that `subscriber` failed (once until it recovers); when the
    /// log itself cannot be written, the failure is only logged.
    pub(crate) async fn record_subscriber_failure(&self, subscriber: &str, error: &AppError) {
        tracing::error!(subscriber, error = %error, "a subscriber failed; retrying");
        let command = ServerRunCommand::RecordSubscriberFailure {
            subscriber: subscriber.to_string(),
            error: error.to_string(),
        };
        if let Err(err) = self.on_run(command).await {
            tracing::error!(subscriber, error = %err, "cannot record a subscriber failure");
        }
    }

    /// Records that a failing `subscriber` works again.
    pub(crate) async fn record_subscriber_recovery(&self, subscriber: &str) {
        tracing::info!(subscriber, "a subscriber recovered");
        let command = ServerRunCommand::RecordSubscriberRecovery {
            subscriber: subscriber.to_string(),
        };
        if let Err(err) = self.on_run(command).await {
            tracing::error!(subscriber, error = %err, "cannot record a subscriber recovery");
        }
    }
}
