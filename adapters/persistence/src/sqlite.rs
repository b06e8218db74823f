//! SQLite: the embedded default. One file, WAL mode, our own
//! `PersistedEventRepository`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};
use tollgate_ports::outbound::{DocChange, LoggedEvent, Seal, StoreError};

use crate::{ConnectError, EventRow, corrupt, map_err, moved_checkpoint, replay, to_i64, to_u64};

const EVENT_COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The connection every write goes through, held rather than pooled:
    /// writers queue on its lock in order instead of meeting at SQLite's
    /// write lock, whose busy handler polls with sleeps growing to 100 ms
    /// (appends waited up to half a second under 32 concurrent sessions),
    /// and no ping follows each use as it does on a pool's release. Reads
    /// use `pool` and, in WAL mode, never wait for the writer.
    writer: Arc<Mutex<SqliteConnection>>,
}

impl SqliteStore {
    /// Opens (creating if missing) and migrates the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(ConnectError::Database)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // An event acknowledged to a client must survive a power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            // Deleted rows (an erased subject's keys) are overwritten, not
            // left in free pages of the file.
            .pragma("secure_delete", "ON")
            .foreign_keys(true);
        // A connection to a local file does not go stale; checking it on
        // every acquire cost a round trip to its worker thread per query.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(ConnectError::Database)?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(ConnectError::Migrate)?;
        let writer = options.connect().await.map_err(ConnectError::Database)?;
        Ok(SqliteStore {
            pool,
            writer: Arc::new(Mutex::new(writer)),
        })
    }

    /// The connection pool (tests use it to play the attacker).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The connection for writes, once every earlier writer is done.
    async fn write(&self) -> Result<MutexGuard<'_, SqliteConnection>, sqlx::Error> {
        Ok(self.writer.lock().await)
    }

    /// Closes the pool; the writer closes with the last clone of the store.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn select(
        &self,
        sql: &str,
        aggregate_type: &str,
        id: &str,
        after: i64,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let rows = sqlx::query(sql)
            .bind(aggregate_type)
            .bind(id)
            .bind(after)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        rows.iter()
            .map(|row| {
                event_row(row)
                    .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?
                    .into_serialized()
            })
            .collect()
    }

    pub(crate) async fn get_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.get_last_events::<A>(id, 0).await
    }

    pub(crate) async fn get_last_events<A: Aggregate>(
        &self,
        id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence > ? ORDER BY sequence"
        );
        self.select(
            &sql,
            A::TYPE,
            id,
            i64::try_from(last_sequence).unwrap_or(i64::MAX),
        )
        .await
    }

    pub(crate) async fn get_snapshot(
        &self,
        _id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // Aggregates are loaded from their events; no snapshots are kept.
        Ok(None)
    }

    pub(crate) async fn persist(
        &self,
        events: &[SerializedEvent],
        _snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        let mut conn = self.writer.lock().await;
        if let [event] = events {
            // One statement is its own transaction: no BEGIN and COMMIT
            // round trips for the usual command of one event.
            return insert_event(&mut conn, event).await;
        }
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        for event in events {
            insert_event(&mut tx, event).await?;
        }
        tx.commit()
            .await
            .map_err(|e| PersistenceError::UnknownError(Box::new(e)))
    }

    pub(crate) async fn stream_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        Ok(replay(self.get_events::<A>(id).await?).await)
    }

    pub(crate) async fn stream_all_events<A: Aggregate>(
        &self,
    ) -> Result<ReplayStream, PersistenceError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE aggregate_type = ? ORDER BY position"
        );
        let rows = sqlx::query(&sql)
            .bind(A::TYPE)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        let events = rows
            .iter()
            .map(|row| {
                event_row(row)
                    .map_err(|e| PersistenceError::DeserializationError(Box::new(e)))?
                    .into_serialized()
            })
            .collect::<Result<_, _>>()?;
        Ok(replay(events).await)
    }
}

/// Appends one event at the next position; a taken sequence number of its
/// aggregate is an optimistic-concurrency conflict.
async fn insert_event(
    conn: &mut SqliteConnection,
    event: &SerializedEvent,
) -> Result<(), PersistenceError> {
    let res = sqlx::query(
        "INSERT INTO events (position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ((SELECT COALESCE(MAX(position), 0) + 1 FROM events), ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(i64::try_from(event.sequence).unwrap_or(i64::MAX))
    .bind(&event.event_type)
    .bind(&event.event_version)
    .bind(event.payload.to_string())
    .bind(event.metadata.to_string())
    .execute(conn)
    .await;
    match res {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            Err(PersistenceError::OptimisticLockError)
        }
        Err(err) => Err(PersistenceError::UnknownError(Box::new(err))),
    }
}

crate::shared::log_stores!(SqliteStore, SqliteRow, EVENT_COLUMNS, "event_id = $1");
