//! Storage quotas: what a user stores, against their limits.
//!
//! What a user stores is a read model (`used_bytes`, `used_files` of the
//! `users` projection), folded from the usage changes that completed
//! uploads, removals and renames over files carry in their events; so it
//! survives restarts and `projections rebuild` recomputes it.
//!
//! An upload is checked when it opens (after the projector has caught up
//! with the log) and as it grows: the bytes and files of uploads still
//! running are reserved in memory per user, so that concurrent uploads of
//! one user cannot together pass the limit. Changes committed by this
//! process since the last catch-up count until the next one (possibly
//! twice, never not at all); those of other processes sharing the
//! database count from then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cqrs_es::persist::PersistedEventRepository;
use tollgate_domain::transfer::UsageChange;
use tollgate_ports::inbound::FileOpError;

use crate::admin::UserView;
use crate::{AppError, Tollgate};

/// A user's limits, as their access rules set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    /// At most this many bytes.
    pub(crate) bytes: Option<u64>,
    /// At most this many files.
    pub(crate) files: Option<u64>,
}

impl Quota {
    /// The quota of these limits, if any is set.
    pub(crate) fn of(bytes: Option<u64>, files: Option<u64>) -> Option<Quota> {
        (bytes.is_some() || files.is_some()).then_some(Quota { bytes, files })
    }
}

/// Bytes and files, signed so that reservations and changes add up.
#[derive(Debug, Clone, Copy, Default)]
struct Amount {
    bytes: i128,
    files: i128,
}

/// One user's usage as this process knows it.
#[derive(Debug, Default)]
struct Ledger {
    /// As projected at the last catch-up.
    projected: Amount,
    /// Committed by this process since.
    since: Amount,
    /// Reserved by uploads still running.
    reserved: Amount,
}

impl Ledger {
    fn total(&self) -> Amount {
        Amount {
            bytes: self.projected.bytes + self.since.bytes + self.reserved.bytes,
            files: self.projected.files + self.since.files + self.reserved.files,
        }
    }
}

/// The ledgers of the users with a quota.
#[derive(Default)]
pub(crate) struct Quotas {
    ledgers: Mutex<HashMap<String, Arc<Mutex<Ledger>>>>,
}

impl Quotas {
    fn ledger(&self, username: &str) -> Arc<Mutex<Ledger>> {
        let mut ledgers = self
            .ledgers
            .lock()
            .expect("quota ledgers are never poisoned");
        ledgers.entry(username.to_string()).or_default().clone()
    }

    /// Counts a committed change until the next catch-up.
    pub(crate) fn committed(&self, username: &str, change: UsageChange) {
        let ledger = {
            let ledgers = self
                .ledgers
                .lock()
                .expect("quota ledgers are never poisoned");
            ledgers.get(username).cloned()
        };
        if let Some(ledger) = ledger {
            let mut ledger = ledger.lock().expect("a quota ledger is never poisoned");
            ledger.since.bytes += i128::from(change.bytes);
            ledger.since.files += i128::from(change.files);
        }
    }
}

/// The room an upload holds against its user's quota; given back when it
/// ends, committed or not.
pub(crate) struct Reservation {
    ledger: Arc<Mutex<Ledger>>,
    quota: Quota,
    /// The size of the file before the upload (`None`: a new file).
    previous: Option<u64>,
    /// Bytes reserved so far: how far the file has grown past `previous`.
    bytes: i128,
    files: i128,
}

impl Reservation {
    /// Makes room for the file to reach `size` bytes.
    pub(crate) fn grow_to(&mut self, size: u64) -> Result<(), FileOpError> {
        let growth = i128::from(size) - i128::from(self.previous.unwrap_or(0));
        if growth <= self.bytes {
            return Ok(());
        }
        let extra = growth - self.bytes;
        let mut ledger = self
            .ledger
            .lock()
            .expect("a quota ledger is never poisoned");
        if let Some(limit) = self.quota.bytes
            && ledger.total().bytes + extra > i128::from(limit)
        {
            return Err(FileOpError::QuotaExceeded);
        }
        ledger.reserved.bytes += extra;
        self.bytes += extra;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut ledger = self
            .ledger
            .lock()
            .expect("a quota ledger is never poisoned");
        ledger.reserved.bytes -= self.bytes;
        ledger.reserved.files -= self.files;
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// The bytes and files `username` stores, as the projector last left
    /// them.
    pub(crate) async fn stored(&self, username: &str) -> Result<(u64, u64), AppError> {
        let doc = self
            .inner
            .deps
            .projections
            .get(crate::subscribers::USERS, username)
            .await?;
        let view = doc.and_then(|doc| serde_json::from_value::<UserView>(doc).ok());
        Ok(view.map_or((0, 0), |v| (v.used_bytes, v.used_files)))
    }

    /// Room for an upload of `username` over a file of `previous` bytes
    /// (`None`: a new file), checked against `quota` with the projector
    /// caught up: a new file needs room for one more file and for at least
    /// one byte; a file that replaces another may still shrink.
    pub(crate) async fn reserve(
        &self,
        username: &str,
        quota: Quota,
        previous: Option<u64>,
    ) -> Result<Reservation, QuotaRefusal> {
        let ledger = self.inner.quotas.ledger(username);
        // What was committed before the catch-up starts is in the log, so
        // the projection counts it; what is committed from then on may or
        // may not be, and stays counted in `since` (at worst twice).
        let before = ledger
            .lock()
            .expect("a quota ledger is never poisoned")
            .since;
        while self
            .project_pending()
            .await
            .map_err(QuotaRefusal::Unavailable)?
            > 0
        {}
        let (bytes, files) = self
            .stored(username)
            .await
            .map_err(QuotaRefusal::Unavailable)?;
        let mut held = ledger.lock().expect("a quota ledger is never poisoned");
        held.projected = Amount {
            bytes: i128::from(bytes),
            files: i128::from(files),
        };
        held.since.bytes -= before.bytes;
        held.since.files -= before.files;
        let total = held.total();
        let new_file = i128::from(previous.is_none());
        let full = |used: i128, limit: Option<u64>, more: i128| {
            limit.is_some_and(|limit| used + more > i128::from(limit))
        };
        if full(total.files, quota.files, new_file)
            || (previous.is_none() && full(total.bytes, quota.bytes, 1))
        {
            return Err(QuotaRefusal::Exceeded);
        }
        held.reserved.files += new_file;
        drop(held);
        Ok(Reservation {
            ledger,
            quota,
            previous,
            bytes: 0,
            files: new_file,
        })
    }
}

/// Why an upload gets no room.
#[derive(Debug)]
pub(crate) enum QuotaRefusal {
    /// The user is at their limit.
    Exceeded,
    /// The usage could not be read.
    Unavailable(AppError),
}
