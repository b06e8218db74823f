//! The connections open on this process, so that administrators can list
//! them and ask one to close.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tollgate_ports::api::SessionRecord;

struct Entry {
    record: SessionRecord,
    /// Holds a permit once a disconnect was asked, even before anyone waits.
    disconnect: Arc<Notify>,
}

/// The live sessions of this process.
#[derive(Default)]
pub(crate) struct Live {
    sessions: Mutex<HashMap<String, Entry>>,
}

impl Live {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.sessions
            .lock()
            .expect("live sessions lock is never poisoned")
    }

    pub(crate) fn opened(&self, record: SessionRecord) {
        let entry = Entry {
            record: record.clone(),
            disconnect: Arc::new(Notify::new()),
        };
        self.lock().insert(record.id, entry);
    }

    pub(crate) fn logged_in(&self, id: &str, username: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.record.username = Some(username.to_string());
        }
    }

    /// How many sessions `username` has logged in here.
    pub(crate) fn sessions_of(&self, username: &str) -> usize {
        self.lock()
            .values()
            .filter(|e| e.record.username.as_deref() == Some(username))
            .count()
    }

    pub(crate) fn closed(&self, id: &str) {
        self.lock().remove(id);
    }

    pub(crate) fn list(&self) -> Vec<SessionRecord> {
        let mut list: Vec<_> = self.lock().values().map(|e| e.record.clone()).collect();
        list.sort_by(|a, b| a.started_at.cmp(&b.started_at).then(a.id.cmp(&b.id)));
        list
    }

    pub(crate) fn get(&self, id: &str) -> Option<SessionRecord> {
        self.lock().get(id).map(|e| e.record.clone())
    }

    /// Asks the session to close; false if it is not open here.
    pub(crate) fn request_disconnect(&self, id: &str) -> bool {
        match self.lock().get(id) {
            Some(entry) => {
                entry.disconnect.notify_one();
                true
            }
            None => false,
        }
    }

    /// Resolves once a disconnect is asked; pending forever for a session
    /// that is not open here.
    pub(crate) async fn disconnect_requested(&self, id: &str) {
        let signal = self.lock().get(id).map(|e| e.disconnect.clone());
        match signal {
            Some(signal) => signal.notified().await,
            None => std::future::pending().await,
        }
    }
}
