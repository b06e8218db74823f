//! One HTTP request as a session of its own: opened for the request,
//! recorded as closed when the request (and any body it streams) is done.

use std::sync::Arc;

use poem::Request;
use tollgate_domain::session::Protocol;
use tollgate_ports::inbound::{ClientInfo, LoginError, Sessions};

/// Who is calling, over what.
pub(crate) fn client_info(req: &Request, protocol: Protocol) -> ClientInfo {
    ClientInfo {
        protocol,
        remote_addr: req
            .remote_addr()
            .as_socket_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".to_string()),
    }
}

/// An open session; dropping it records its end.
pub(crate) struct RequestSession {
    id: String,
    sessions: Arc<dyn Sessions>,
}

impl RequestSession {
    /// Opens (records) a session for the request.
    pub(crate) async fn open(
        sessions: &Arc<dyn Sessions>,
        client: ClientInfo,
    ) -> Result<RequestSession, LoginError> {
        let id = sessions.open(client).await?;
        Ok(RequestSession {
            id,
            sessions: sessions.clone(),
        })
    }

    /// The session id, for logging in.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Records the end now, with `reason`.
    pub(crate) async fn end(mut self, reason: &str) {
        let id = std::mem::take(&mut self.id);
        self.sessions.close(&id, reason).await;
    }
}

impl Drop for RequestSession {
    fn drop(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let sessions = self.sessions.clone();
        let id = std::mem::take(&mut self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { sessions.close(&id, "request finished").await });
        }
    }
}
