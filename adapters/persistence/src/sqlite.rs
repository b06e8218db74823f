//! SQLite: the embedded default. One file, WAL mode, our own
//! `PersistedEventRepository`.

use std::str::FromStr;
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};
use tollgate_ports::outbound::{DocChange, LoggedEvent, Seal, StoreError};

use crate::{ConnectError, EventRow, corrupt, map_err, moved_checkpoint, replay, to_i64, to_u64};

const EVENT_COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata";

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
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
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(ConnectError::Database)?;
        sqlx::migrate!("../../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(ConnectError::Migrate)?;
        Ok(SqliteStore { pool })
    }

    /// The connection pool (tests use it to play the attacker).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
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
        let unknown = |e: sqlx::Error| PersistenceError::UnknownError(Box::new(e));
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| PersistenceError::ConnectionError(Box::new(e)))?;
        for event in events {
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
            .execute(&mut *tx)
            .await;
            match res {
                Ok(_) => {}
                Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                    return Err(PersistenceError::OptimisticLockError);
                }
                Err(err) => return Err(unknown(err)),
            }
        }
        tx.commit().await.map_err(unknown)
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

    pub(crate) async fn read_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<LoggedEvent>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(to_i64(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|row| event_row(row).map_err(map_err)?.into_logged())
            .collect()
    }

    pub(crate) async fn head(&self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(to_u64(head))
    }

    pub(crate) async fn last_seal(&self) -> Result<Option<Seal>, StoreError> {
        let row = sqlx::query(
            "SELECT position, event_id, hash FROM audit_seals ORDER BY position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(seal_row).transpose()
    }

    pub(crate) async fn append_seals(&self, seals: &[Seal]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for seal in seals {
            sqlx::query("INSERT INTO audit_seals (position, event_id, hash) VALUES (?, ?, ?)")
                .bind(to_i64(seal.position))
                .bind(&seal.event_id)
                .bind(&seal.hash)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn read_seals(&self, after: u64, limit: u32) -> Result<Vec<Seal>, StoreError> {
        let rows = sqlx::query("SELECT position, event_id, hash FROM audit_seals WHERE position > ? ORDER BY position LIMIT ?")
            .bind(to_i64(after))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(seal_row).collect()
    }

    pub(crate) async fn checkpoint(&self, subscriber: &str) -> Result<u64, StoreError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM subscriber_checkpoints WHERE subscriber = ?")
                .bind(subscriber)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        Ok(position.map(to_u64).unwrap_or(0))
    }

    pub(crate) async fn commit(
        &self,
        subscriber: &str,
        from: u64,
        to: u64,
        changes: &[DocChange],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // Compare-and-set: a subscriber running in two processes must not
        // move the checkpoint backwards or apply a batch twice.
        let moved = sqlx::query(
            "INSERT INTO subscriber_checkpoints (subscriber, position) VALUES (?, ?)
             ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position
             WHERE subscriber_checkpoints.position = ?",
        )
        .bind(subscriber)
        .bind(to_i64(to))
        .bind(to_i64(from))
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if moved.rows_affected() == 0 {
            return Err(moved_checkpoint(subscriber));
        }
        for change in changes {
            let query = match &change.doc {
                Some(doc) => sqlx::query(
                    "INSERT INTO projection_docs (projection, key, doc) VALUES (?, ?, ?)
                     ON CONFLICT (projection, key) DO UPDATE SET doc = excluded.doc",
                )
                .bind(&change.projection)
                .bind(&change.key)
                .bind(doc.to_string()),
                None => sqlx::query("DELETE FROM projection_docs WHERE projection = ? AND key = ?")
                    .bind(&change.projection)
                    .bind(&change.key),
            };
            query.execute(&mut *tx).await.map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    pub(crate) async fn get(
        &self,
        projection: &str,
        key: &str,
    ) -> Result<Option<Value>, StoreError> {
        let doc: Option<String> =
            sqlx::query_scalar("SELECT doc FROM projection_docs WHERE projection = ? AND key = ?")
                .bind(projection)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
        doc.map(|text| serde_json::from_str(&text).map_err(|e| corrupt("projection", e)))
            .transpose()
    }

    pub(crate) async fn list(&self, projection: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let rows =
            sqlx::query("SELECT key, doc FROM projection_docs WHERE projection = ? ORDER BY key")
                .bind(projection)
                .fetch_all(&self.pool)
                .await
                .map_err(map_err)?;
        rows.iter()
            .map(|row| {
                let doc: String = row.try_get(1).map_err(map_err)?;
                Ok((
                    row.try_get(0).map_err(map_err)?,
                    serde_json::from_str(&doc).map_err(|e| corrupt("projection", e))?,
                ))
            })
            .collect()
    }

    pub(crate) async fn reset(
        &self,
        subscriber: &str,
        projections: &[&str],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("DELETE FROM subscriber_checkpoints WHERE subscriber = ?")
            .bind(subscriber)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        for projection in projections {
            sqlx::query("DELETE FROM projection_docs WHERE projection = ?")
                .bind(projection)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }
}

fn event_row(row: &SqliteRow) -> Result<EventRow, sqlx::Error> {
    Ok(EventRow {
        position: row.try_get(0)?,
        event_id: row.try_get(1)?,
        aggregate_type: row.try_get(2)?,
        aggregate_id: row.try_get(3)?,
        sequence: row.try_get(4)?,
        event_type: row.try_get(5)?,
        event_version: row.try_get(6)?,
        payload: row.try_get(7)?,
        metadata: row.try_get(8)?,
    })
}

fn seal_row(row: &SqliteRow) -> Result<Seal, StoreError> {
    Ok(Seal {
        position: to_u64(row.try_get(0).map_err(map_err)?),
        event_id: row.try_get(1).map_err(map_err)?,
        hash: row.try_get(2).map_err(map_err)?,
    })
}
