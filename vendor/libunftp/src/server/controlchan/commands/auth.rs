//! The `AUTH` command used to support TLS
//!
//! A client requests TLS with the AUTH command and then decides if it
//! wishes to secure the data connections by use of the PBSZ and PROT
//! commands.

use crate::{
    auth::UserDetail,
    server::{
        chancomms::ControlChanMsg,
        controlchan::{
            Reply, ReplyCode,
            error::ControlChanError,
            handler::{CommandContext, CommandHandler},
        },
    },
    storage::{Metadata, StorageBackend},
};
use async_trait::async_trait;

// The parameter that can be given to the `AUTH` command.
#[derive(Debug, PartialEq, Eq, Clone)]
pub enum AuthParam {
    Ssl,
    Tls,
}

#[derive(Debug)]
pub struct Auth {
    protocol: AuthParam,
}

impl Auth {
    pub fn new(protocol: AuthParam) -> Self {
        Auth { protocol }
    }
}

#[async_trait]
impl<Storage, User> CommandHandler<Storage, User> for Auth
where
    User: UserDetail + 'static,
    Storage: StorageBackend<User> + 'static,
    Storage::Metadata: Metadata,
{
    #[tracing_attributes::instrument]
    async fn handle(&self, args: CommandContext<Storage, User>) -> Result<Reply, ControlChanError> {
        let tx = args.tx_control_chan.clone();
        let logger = args.logger;
        match (args.tls_configured, self.protocol.clone()) {
            (true, AuthParam::Tls) => {
                // Queued before the reply goes out, so that the control
                // loop (which prefers internal messages) switches to TLS
                // before it reads the client's ClientHello as a command.
                // The queue holds one message: when it is taken, the loop
                // drains it first, so waiting here could deadlock.
                match tx.try_send(ControlChanMsg::SecureControlChannel) {
                    Ok(()) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Full(msg)) => {
                        tokio::spawn(async move {
                            if let Err(err) = tx.send(msg).await {
                                slog::warn!(logger, "AUTH: Could not send internal message to notify of TLS upgrade: {}", err);
                            }
                        });
                    }
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                        slog::warn!(logger, "AUTH: Could not send internal message to notify of TLS upgrade: the control loop is gone");
                    }
                }
                Ok(Reply::new(ReplyCode::AuthOkayNoDataNeeded, "Upgrading to TLS"))
            }
            (true, AuthParam::Ssl) => Ok(Reply::new(ReplyCode::CommandNotImplementedForParameter, "Auth SSL not implemented")),
            (false, _) => Ok(Reply::new(ReplyCode::CommandNotImplemented, "TLS/SSL not configured")),
        }
    }
}
