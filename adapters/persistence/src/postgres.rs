//! PostgreSQL: the event store is postgres-es; positions and event ids
//! come from the database (see the migration), the rest is plain SQL.

use std::sync::Arc;
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::persist::{PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgPool, Row};
use tollgate_ports::outbound::{DocChange, LoggedEvent, Seal, StoreError};

use crate::{
    ConnectError, EventRow, SharedPgRepository, corrupt, map_err, moved_checkpoint, to_i64, to_u64,
};

const EVENT_COLUMNS: &str = "position, event_id::text, aggregate_type, aggregate_id, sequence, event_type, \
     event_version, payload::text, metadata::text";

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    events: SharedPgRepository,
}

impl PostgresStore {
    /// Connects to and migrates the database at `url`.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(ConnectError::Database)?;
        sqlx::migrate!("../../migrations/postgres")
            .run(&pool)
            .await
            .map_err(ConnectError::Migrate)?;
        let events = Arc::new(PostgresEventRepository::new(pool.clone()));
        Ok(PostgresStore { pool, events })
    }

    /// The connection pool (tests use it to play the attacker).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection for writes: any of the pool's (PostgreSQL takes
    /// concurrent writers).
    async fn write(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
        self.pool.acquire().await
    }

    /// A connection for a write of state derived from the log: the same as
    /// `write`, its transaction set up by `derive_in`.
    async fn write_derived(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
        self.write().await
    }

    /// A derived write runs in a transaction even when it is one statement:
    /// `derive_in` sets it up with `SET LOCAL`, which lasts only as long as
    /// the transaction.
    const DERIVED_NEEDS_TRANSACTION: bool = true;

    /// Lets a transaction that stores state derived from the log (read
    /// models and their checkpoints, audit seals and Merkle leaves) commit
    /// without waiting for its WAL flush. PostgreSQL writes its WAL in
    /// order and a flush covers everything before it, so a crash loses only
    /// a suffix of such commits, never one without the events it was
    /// derived from; the subscriber derives it again from its checkpoint.
    /// The next commit of an event flushes it, and the WAL writer does
    /// within a few hundred milliseconds.
    async fn derive_in(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), sqlx::Error> {
        sqlx::query("SET LOCAL synchronous_commit TO off")
            .execute(&mut **tx)
            .await
            .map(drop)
    }

    pub(crate) async fn get_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events.get_events::<A>(id).await
    }

    pub(crate) async fn get_last_events<A: Aggregate>(
        &self,
        id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events.get_last_events::<A>(id, last_sequence).await
    }

    pub(crate) async fn get_snapshot<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.events.get_snapshot::<A>(id).await
    }

    pub(crate) async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        self.events.persist::<A>(events, snapshot_update).await
    }

    pub(crate) async fn stream_events<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.events.stream_events::<A>(id).await
    }

    pub(crate) async fn stream_all_events<A: Aggregate>(
        &self,
    ) -> Result<ReplayStream, PersistenceError> {
        self.events.stream_all_events::<A>().await
    }
}

crate::shared::log_stores!(PostgresStore, PgRow, EVENT_COLUMNS, "event_id = $1::uuid");
