//! The event store, audit seals, projections and subscriber checkpoints on
//! SQLite (the embedded default, our own repository) or PostgreSQL
//! (postgres-es), chosen at runtime by the database URL.
//!
//! Architecture invariant: no business rule lives here. This crate stores
//! and reads rows; it never decides, never emits an event of its own, and
//! never lets a `sqlx::Error` cross a port.

use std::sync::Arc;

use async_trait::async_trait;
use cqrs_es::Aggregate;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use serde_json::Value;
use tollgate_ports::outbound::{
    AuditStore, CheckpointRecord, DeliveryAttempt, DeliveryLog, DocChange, EventLog, LoggedEvent,
    ProjectionStore, Seal, StoreError, StoreErrorKind, SubjectKey, SubjectKeyStore,
};

mod postgres;
mod shared;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("unsupported database URL scheme in {0:?} (use sqlite:PATH or postgres://...)")]
    UnsupportedScheme(String),
    /// The database refused or failed.
    #[error("cannot open the database")]
    Database(#[source] sqlx::Error),
    /// A migration failed.
    #[error("cannot apply database migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// The database behind every store port, chosen by URL.
#[derive(Clone)]
pub enum Database {
    /// The embedded default.
    Sqlite(SqliteStore),
    /// For clusters.
    Postgres(PostgresStore),
}

impl Database {
    /// Opens the database at `url`, creating it (SQLite) and applying
    /// migrations.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        if url.starts_with("sqlite:") {
            Ok(Database::Sqlite(SqliteStore::connect(url).await?))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Database::Postgres(PostgresStore::connect(url).await?))
        } else {
            Err(ConnectError::UnsupportedScheme(url.to_string()))
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Closes the connection pools.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(db) => db.close().await,
            Database::Postgres(db) => db.pool().close().await,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $db:ident => $body:expr) => {
        match $self {
            Database::Sqlite($db) => $body,
            Database::Postgres($db) => $body,
        }
    };
}

impl PersistedEventRepository for Database {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        dispatch!(self, db => db.get_events::<A>(aggregate_id).await)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        dispatch!(self, db => db.get_last_events::<A>(aggregate_id, last_sequence).await)
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        match self {
            Database::Sqlite(db) => db.get_snapshot(aggregate_id).await,
            Database::Postgres(db) => db.get_snapshot::<A>(aggregate_id).await,
        }
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        match self {
            Database::Sqlite(db) => db.persist(events, snapshot_update).await,
            Database::Postgres(db) => db.persist::<A>(events, snapshot_update).await,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        dispatch!(self, db => db.stream_events::<A>(aggregate_id).await)
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        dispatch!(self, db => db.stream_all_events::<A>().await)
    }
}

#[async_trait]
impl EventLog for Database {
    async fn read_after(&self, after: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        dispatch!(self, db => db.read_after(after, limit).await)
    }
    async fn follow(&self, after: u64, limit: u32) -> Result<Vec<LoggedEvent>, StoreError> {
        if let Database::Sqlite(db) = self
            && let Some(events) = db.take_committed(after, limit)
        {
            return Ok(events);
        }
        self.read_after(after, limit).await
    }
    async fn head(&self) -> Result<u64, StoreError> {
        dispatch!(self, db => db.head().await)
    }
    async fn position_of(&self, event_id: &str) -> Result<Option<u64>, StoreError> {
        dispatch!(self, db => db.position_of(event_id).await)
    }
}

#[async_trait]
impl AuditStore for Database {
    async fn prune(&self, pruned_by: &str, positions: &[u64]) -> Result<(), StoreError> {
        dispatch!(self, db => db.prune(pruned_by, positions).await)
    }
    async fn read_pruned(&self, after: u64, limit: u32) -> Result<Vec<u64>, StoreError> {
        dispatch!(self, db => db.read_pruned(after, limit).await)
    }
    async fn last_seal(&self) -> Result<Option<Seal>, StoreError> {
        dispatch!(self, db => db.last_seal().await)
    }
    async fn append_seals(&self, seals: &[Seal]) -> Result<(), StoreError> {
        dispatch!(self, db => db.append_seals(seals).await)
    }
    async fn read_seals(&self, after: u64, limit: u32) -> Result<Vec<Seal>, StoreError> {
        dispatch!(self, db => db.read_seals(after, limit).await)
    }
    async fn leaf_count(&self) -> Result<u64, StoreError> {
        dispatch!(self, db => db.leaf_count().await)
    }
    async fn append_leaves(
        &self,
        after: u64,
        leaves: &[String],
        checkpoint: Option<&CheckpointRecord>,
    ) -> Result<(), StoreError> {
        dispatch!(self, db => db.append_leaves(after, leaves, checkpoint).await)
    }
    async fn read_leaves(&self, after: u64, limit: u32) -> Result<Vec<(u64, String)>, StoreError> {
        dispatch!(self, db => db.read_leaves(after, limit).await)
    }
    async fn append_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError> {
        dispatch!(self, db => db.append_checkpoint(checkpoint).await)
    }
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        dispatch!(self, db => db.latest_checkpoint().await)
    }
    async fn checkpoint_of_size(&self, size: u64) -> Result<Option<CheckpointRecord>, StoreError> {
        dispatch!(self, db => db.checkpoint_of_size(size).await)
    }
    async fn read_checkpoints(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<CheckpointRecord>, StoreError> {
        dispatch!(self, db => db.read_checkpoints(after, limit).await)
    }
}

#[async_trait]
impl ProjectionStore for Database {
    async fn checkpoint(&self, subscriber: &str) -> Result<u64, StoreError> {
        dispatch!(self, db => db.checkpoint(subscriber).await)
    }
    async fn commit(
        &self,
        subscriber: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError> {
        dispatch!(self, db => db.commit(subscriber, from, to, changes).await)
    }
    async fn get(&self, projection: &str, key: &str) -> Result<Option<Value>, StoreError> {
        dispatch!(self, db => db.get(projection, key).await)
    }
    async fn list(&self, projection: &str) -> Result<Vec<(String, Value)>, StoreError> {
        dispatch!(self, db => db.list(projection).await)
    }
    async fn reset(&self, subscriber: &str, projections: &[&str]) -> Result<(), StoreError> {
        dispatch!(self, db => db.reset(subscriber, projections).await)
    }
}

#[async_trait]
impl DeliveryLog for Database {
    async fn record_deliveries(&self, attempts: &[DeliveryAttempt]) -> Result<(), StoreError> {
        dispatch!(self, db => db.record_deliveries(attempts).await)
    }
    async fn deliveries(
        &self,
        subscription: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryAttempt>, StoreError> {
        dispatch!(self, db => db.deliveries(subscription, limit).await)
    }
}

#[async_trait]
impl SubjectKeyStore for Database {
    async fn add_subject_key(&self, key: &SubjectKey) -> Result<(), StoreError> {
        dispatch!(self, db => db.add_subject_key(key).await)
    }
    async fn assign_subject_key(&self, key_id: &str, subject: &str) -> Result<(), StoreError> {
        dispatch!(self, db => db.assign_subject_key(key_id, subject).await)
    }
    async fn subject_keys(&self, key_ids: &[String]) -> Result<Vec<SubjectKey>, StoreError> {
        dispatch!(self, db => db.subject_keys(key_ids).await)
    }
    async fn erase_subject(&self, subject: &str) -> Result<Vec<String>, StoreError> {
        let erased = dispatch!(self, db => db.erase_subject(subject).await)?;
        if let Database::Sqlite(db) = self {
            // The write-ahead log still holds the pages as they were before
            // the deletion: copy it back into the (securely deleted) file
            // and empty it. Busy readers only delay this to a later one.
            if let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(db.pool())
                .await
            {
                tracing::warn!(error = %err, "cannot checkpoint the write-ahead log after an erasure");
            }
        }
        Ok(erased)
    }
}

/// Translates a database error into a port error: the one place where
/// `sqlx::Error` meets the ports.
fn map_err(err: sqlx::Error) -> StoreError {
    let kind = match &err {
        sqlx::Error::RowNotFound => StoreErrorKind::NotFound,
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreErrorKind::Conflict,
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => StoreErrorKind::Corrupt,
        _ => StoreErrorKind::Unavailable,
    };
    StoreError::new(kind, "database operation failed", Some(Box::new(err)))
}

fn moved_checkpoint(subscriber: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Conflict,
        format!("the checkpoint of {subscriber} moved"),
        None,
    )
}

fn corrupt(what: &str, err: serde_json::Error) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!("stored {what} is not valid JSON"),
        Some(Box::new(err)),
    )
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// A raw row of the events table, shared by both databases.
struct EventRow {
    position: i64,
    event_id: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: String,
}

impl EventRow {
    fn into_logged(self) -> Result<LoggedEvent, StoreError> {
        let payload = serde_json::from_str(&self.payload).map_err(|e| corrupt("payload", e))?;
        let metadata = serde_json::from_str(&self.metadata).map_err(|e| corrupt("metadata", e))?;
        Ok(self.with_documents(payload, metadata))
    }

    /// The event as the log holds it, with its payload and metadata as
    /// parsed (or kept) documents rather than text.
    fn with_documents(self, payload: Value, metadata: Value) -> LoggedEvent {
        LoggedEvent {
            position: to_u64(self.position),
            event_id: self.event_id,
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: to_u64(self.sequence),
            event_type: self.event_type,
            event_version: self.event_version,
            payload,
            metadata,
        }
    }

    fn into_serialized(self) -> Result<SerializedEvent, PersistenceError> {
        let de = |text: &str| {
            serde_json::from_str(text)
                .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))
        };
        Ok(SerializedEvent {
            aggregate_id: self.aggregate_id,
            sequence: usize::try_from(self.sequence).unwrap_or(0),
            aggregate_type: self.aggregate_type,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: de(&self.payload)?,
            metadata: de(&self.metadata)?,
        })
    }
}

/// Feeds already-loaded events into a replay stream.
async fn replay(events: Vec<SerializedEvent>) -> ReplayStream {
    let (mut feed, stream) = ReplayStream::new(events.len().max(1));
    for event in events {
        // The channel is sized to hold every event, so a push cannot block.
        let _ = feed.push(Ok(event)).await;
    }
    stream
}

/// Shared handle type for the postgres-es repository, which is not `Clone`.
type SharedPgRepository = Arc<postgres_es::PostgresEventRepository>;
