//! SQLite: the embedded default. One file, WAL mode, our own
//! `PersistedEventRepository`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Row, SqliteConnection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard, mpsc, oneshot};
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
    writer: Arc<Mutex<Writer>>,
    /// Event appends waiting for the group committer (see `commit_groups`).
    appends: mpsc::UnboundedSender<Append>,
    /// Events this process committed that no follower has taken yet.
    committed: Arc<std::sync::Mutex<Committed>>,
}

/// The events this process committed last and no follower of the log has
/// yet taken, in position order and without gaps, so that the next
/// `EventLog::follow` takes them as they were written instead of reading
/// them back from the database and parsing their documents again: under
/// many sessions, that read was most of what following the log cost.
///
/// A follower takes them only when they start right after the position it
/// follows from (the first to get there, usually the subscribers' shared
/// read); from anywhere else it reads the database, and so does every
/// `read_after`. The events held may stop short of the log's head (another
/// process, or a group that went in one INSERT per command, committed
/// after them): a follower then gets the rest from the database when it
/// comes back. Whatever a follower has moved past, by either way, is
/// dropped. A new group that does not follow on from the last one held
/// drops what is held, so the events held never skip a position. At most
/// `COMMITTED_HELD` are held: a process nobody follows the log in (the
/// CLI) keeps only the newest.
#[derive(Default)]
struct Committed {
    events: VecDeque<LoggedEvent>,
}

/// The most committed events held for followers.
const COMMITTED_HELD: usize = 4096;

impl Committed {
    /// Holds `events`, which were committed at consecutive positions.
    fn hold(&mut self, events: impl IntoIterator<Item = LoggedEvent>) {
        let mut events = events.into_iter().peekable();
        let Some(first) = events.peek() else {
            return;
        };
        if self
            .events
            .back()
            .is_some_and(|last| last.position + 1 != first.position)
        {
            self.events.clear();
        }
        self.events.extend(events);
        let excess = self.events.len().saturating_sub(COMMITTED_HELD);
        self.events.drain(..excess);
    }

    /// Up to `limit` events from position `after + 1` on, when the first
    /// held is that one; `None` sends the read to the database.
    fn take(&mut self, after: u64, limit: u32) -> Option<Vec<LoggedEvent>> {
        let passed = self.events.partition_point(|event| event.position <= after);
        self.events.drain(..passed);
        if self.events.front()?.position != after + 1 {
            return None;
        }
        let count = self.events.len().min(limit as usize);
        Some(self.events.drain(..count).collect())
    }
}

/// The events of one command, and where to say whether they were appended.
struct Append {
    events: Vec<NewEvent>,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

/// An event on its way into the log, as `insert_events` binds it: its id
/// chosen and its documents already JSON text. The command's own task
/// writes it, so the committer, which serves every command, only binds.
/// It also keeps the documents themselves, for the readers the committer
/// hands it to (`Committed`).
struct NewEvent {
    /// The row, its position not yet known.
    row: EventRow,
    documents: (Value, Value),
}

impl NewEvent {
    fn new(event: &SerializedEvent) -> Self {
        let text = |document: &Value| {
            serde_json::to_string(document).expect("a JSON document writes to memory")
        };
        NewEvent {
            row: EventRow {
                position: 0,
                // Time-ordered, so that the unique index on event ids grows
                // at its end as positions do: a random id lands on a page of
                // its own, which each group commit then writes to the WAL
                // (and, once the index outgrows the caches, reads first).
                event_id: uuid::Uuid::now_v7().hyphenated().to_string(),
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
                event_type: event.event_type.clone(),
                event_version: event.event_version.clone(),
                payload: text(&event.payload),
                metadata: text(&event.metadata),
            },
            documents: (event.payload.clone(), event.metadata.clone()),
        }
    }

    /// The event as the log holds it, at `position`.
    fn into_logged(self, position: u64) -> LoggedEvent {
        let (payload, metadata) = self.documents;
        EventRow {
            position: to_i64(position),
            ..self.row
        }
        .with_documents(payload, metadata)
    }
}

/// Appends of different commands committed together, at most.
const GROUP: usize = 256;

/// The write connection, and whether its commits wait for the disk.
///
/// Events always do: an event acknowledged to a client must survive a
/// power loss. What subscribers store (read models and their checkpoints,
/// audit seals and Merkle leaves) is derived from the events, so it may
/// commit without a sync (`PRAGMA synchronous = NORMAL`). The WAL is
/// written in commit order and a sync covers everything written before
/// it: after a power loss the database holds a prefix of its commits,
/// every derived commit with the events it was derived from, and a
/// subscriber whose last commits were lost derives them again from its
/// checkpoint. A derived commit is made durable by the next event commit,
/// or by the next checkpoint of the WAL, whichever comes first.
struct Writer {
    conn: SqliteConnection,
    /// Whether commits sync the WAL (`synchronous = FULL`).
    durable: bool,
}

impl Writer {
    /// Sets whether the next commits sync the WAL, unless they already do
    /// as asked. The setting is the connection's, not the transaction's.
    async fn sync_commits(&mut self, durable: bool) -> Result<(), sqlx::Error> {
        if self.durable != durable {
            let level = if durable { "FULL" } else { "NORMAL" };
            sqlx::query(&format!("PRAGMA synchronous = {level}"))
                .execute(&mut self.conn)
                .await?;
            self.durable = durable;
        }
        Ok(())
    }
}

/// The write connection, lent to one writer at a time.
pub(crate) struct WriteGuard<'a>(MutexGuard<'a, Writer>);

impl std::ops::Deref for WriteGuard<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.0.conn
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.0.conn
    }
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
        let writer = Arc::new(Mutex::new(Writer {
            conn: options.connect().await.map_err(ConnectError::Database)?,
            durable: true,
        }));
        let (appends, queue) = mpsc::unbounded_channel();
        let committed = Arc::default();
        tokio::spawn(commit_groups(writer.clone(), queue, Arc::clone(&committed)));
        Ok(SqliteStore {
            pool,
            writer,
            appends,
            committed,
        })
    }

    /// Up to `limit` events after `after` that this process committed and
    /// no follower took yet, when they start right after it (`Committed`).
    pub(crate) fn take_committed(&self, after: u64, limit: u32) -> Option<Vec<LoggedEvent>> {
        self.committed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(after, limit)
    }

    /// The connection pool (tests use it to play the attacker).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The connection for writes, once every earlier writer is done; its
    /// commits wait for the disk.
    async fn write(&self) -> Result<WriteGuard<'_>, sqlx::Error> {
        let mut writer = self.writer.lock().await;
        writer.sync_commits(true).await?;
        Ok(WriteGuard(writer))
    }

    /// The connection for a write of state derived from the log (see
    /// `Writer`); its commits do not wait for the disk.
    async fn write_derived(&self) -> Result<WriteGuard<'_>, sqlx::Error> {
        let mut writer = self.writer.lock().await;
        writer.sync_commits(false).await?;
        Ok(WriteGuard(writer))
    }

    /// A derived write's single statement needs no transaction of its own:
    /// `write_derived` has set the connection up for it.
    const DERIVED_NEEDS_TRANSACTION: bool = false;

    /// A derived write's transaction needs nothing more on SQLite: the
    /// connection was set up by `write_derived`.
    async fn derive_in(_tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), sqlx::Error> {
        Ok(())
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
        let (done, outcome) = oneshot::channel();
        let append = Append {
            events: events.iter().map(NewEvent::new).collect(),
            done,
        };
        if self.appends.send(append).is_err() {
            return Err(PersistenceError::ConnectionError(
                "the event writer has stopped".into(),
            ));
        }
        outcome.await.unwrap_or_else(|_| {
            Err(PersistenceError::UnknownError(
                "the event writer stopped before answering".into(),
            ))
        })
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

/// Commits event appends as they come, each group of those waiting at once:
/// under many concurrent commands one WAL sync serves many of them. A
/// command's events are one INSERT, which SQLite applies or undoes as a
/// whole. A group is first tried as one INSERT of all its events; when
/// SQLite refuses that, nothing of it is left and the group goes again in
/// one transaction, an INSERT per command, each undone alone when it fails
/// (the transaction goes on). A command whose statement the database
/// refuses (it lost an optimistic-concurrency race, or a constraint or
/// trigger refused an event) fails alone; any other failure fails the whole
/// group, rolled back. Positions follow the order of the queue.
async fn commit_groups(
    writer: Arc<Mutex<Writer>>,
    mut queue: mpsc::UnboundedReceiver<Append>,
    committed: Arc<std::sync::Mutex<Committed>>,
) {
    let mut group = Vec::with_capacity(GROUP);
    while queue.recv_many(&mut group, GROUP).await > 0 {
        let mut writer = writer.lock().await;
        // The position of the group's last event, when one statement
        // appended all of them.
        let mut landed = None;
        let outcomes = if let Err(err) = writer.sync_commits(true).await {
            // Never an event committed without its sync.
            failed_all(
                &group,
                format_args!("cannot make the event log's commits durable: {err}"),
            )
        } else if let [only] = group.as_slice() {
            // Alone: one statement is its own transaction.
            let outcome = insert_events(&mut writer.conn, &only.events).await;
            landed = outcome.as_ref().ok().copied().flatten();
            vec![outcome.map(drop).map_err(Into::into)]
        } else if let Ok(last) =
            insert_events(&mut writer.conn, group.iter().flat_map(|a| &a.events)).await
        {
            landed = last;
            group.iter().map(|_| Ok(())).collect()
        } else {
            // Refused or failed as a whole (and undone as a whole): each
            // command on its own finds out which of them it was. What
            // lands this way is read back from the database.
            commit_group(&mut writer.conn, &group).await
        };
        drop(writer);
        if let Some(last) = landed {
            // Held before anyone is told, so that the reads their commits
            // wake find them.
            let count: u64 = group.iter().map(|a| a.events.len() as u64).sum();
            let events = group.iter_mut().flat_map(|a| std::mem::take(&mut a.events));
            committed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .hold(
                    events
                        .zip((last + 1).saturating_sub(count)..)
                        .map(|(event, position)| event.into_logged(position)),
                );
        }
        for (append, outcome) in group.drain(..).zip(outcomes) {
            let _ = append.done.send(outcome);
        }
    }
}

/// Why an append did not land.
enum AppendError {
    /// The database refused the statement and undid it alone: the
    /// transaction goes on.
    Refused(PersistenceError),
    /// Anything else: the transaction may be gone.
    Failed(sqlx::Error),
}

impl From<AppendError> for PersistenceError {
    fn from(err: AppendError) -> Self {
        match err {
            AppendError::Refused(err) => err,
            AppendError::Failed(err) => PersistenceError::UnknownError(Box::new(err)),
        }
    }
}

/// The same failure, `why`, for every append of `group`.
fn failed_all(group: &[Append], why: std::fmt::Arguments<'_>) -> Vec<Result<(), PersistenceError>> {
    let why = why.to_string();
    group
        .iter()
        .map(|_| Err(PersistenceError::UnknownError(why.clone().into())))
        .collect()
}

/// One transaction for `group`, an INSERT per command; the outcome of each
/// append, in order.
async fn commit_group(
    conn: &mut SqliteConnection,
    group: &[Append],
) -> Vec<Result<(), PersistenceError>> {
    let failed = |err: &dyn std::fmt::Display| {
        failed_all(group, format_args!("the group of appends failed: {err}"))
    };
    if let Err(err) = sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await {
        // Should a transaction have been left open, the next group starts
        // clean (with none open this fails harmlessly).
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        return failed(&err);
    }
    let mut outcomes = Vec::with_capacity(group.len());
    for append in group {
        match insert_events(conn, &append.events).await {
            Ok(_) => outcomes.push(Ok(())),
            Err(AppendError::Refused(err)) => outcomes.push(Err(err)),
            Err(AppendError::Failed(err)) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return failed(&err);
            }
        }
    }
    match sqlx::query("COMMIT").execute(&mut *conn).await {
        Ok(_) => outcomes,
        Err(err) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            failed(&err)
        }
    }
}

/// SQLite's primary result code for a statement a constraint refused
/// (unique, check, not null, foreign key, or a trigger's `RAISE(ABORT)`):
/// the statement is undone and its transaction goes on.
const SQLITE_CONSTRAINT: i32 = 19;

/// Appends `events` at the next positions in one statement, which SQLite
/// applies or undoes as a whole: one trip to the connection's worker thread
/// however many there are. The positions follow on from the last one
/// taken, which SQLite reads before it inserts any row (the SELECT reads the
/// table it inserts into, so its rows are gathered first). A taken sequence
/// number of an aggregate is an optimistic-concurrency conflict.
///
/// Up to `BOUND_ROWS` events are bound as the rows of a VALUES list
/// (`bound_insert`); a larger group travels as one JSON array that SQLite
/// takes apart (`event_rows`), which costs SQLite far more per event.
///
/// Returns the position of the last event appended (the events take the
/// positions up to it, in order), unless SQLite's count of the rows does
/// not say it appended them all.
async fn insert_events<'a>(
    conn: &mut SqliteConnection,
    events: impl IntoIterator<Item = &'a NewEvent>,
) -> Result<Option<u64>, AppendError> {
    let events: Vec<&NewEvent> = events.into_iter().collect();
    let res = if events.len() <= BOUND_ROWS {
        let rows = events.len().next_power_of_two();
        let mut query = sqlx::query(bound_insert(rows));
        for event in &events {
            query = query
                .bind(event.row.event_id.as_str())
                .bind(event.row.aggregate_type.as_str())
                .bind(event.row.aggregate_id.as_str())
                .bind(event.row.sequence)
                .bind(event.row.event_type.as_str())
                .bind(event.row.event_version.as_str())
                .bind(event.row.payload.as_str())
                .bind(event.row.metadata.as_str());
        }
        for _ in events.len()..rows {
            for _ in 0..ROW_VALUES {
                query = query.bind(None::<&str>);
            }
        }
        query.execute(conn).await
    } else {
        let sql = format!(
            "INSERT INTO events ({EVENT_COLUMNS})
             SELECT last + 1 + e.key, e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3,
                    e.value ->> 4, e.value ->> 5, e.value ->> 6, e.value ->> 7
             FROM (SELECT COALESCE(MAX(position), 0) AS last FROM events), json_each($1) AS e"
        );
        sqlx::query(&sql)
            .bind(event_rows(&events))
            .execute(conn)
            .await
    };
    match res {
        Ok(done) => {
            Ok((done.rows_affected() == events.len() as u64)
                .then(|| to_u64(done.last_insert_rowid())))
        }
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
            Err(AppendError::Refused(PersistenceError::OptimisticLockError))
        }
        Err(sqlx::Error::Database(db))
            if db
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(|code| code & 0xff == SQLITE_CONSTRAINT) =>
        {
            Err(AppendError::Refused(PersistenceError::UnknownError(
                Box::new(sqlx::Error::Database(db)),
            )))
        }
        Err(err) => Err(AppendError::Failed(err)),
    }
}

/// The most events `insert_events` binds into one statement: a power of
/// two, and few enough that their values stay well within SQLite's limit
/// on bound parameters (32766).
const BOUND_ROWS: usize = 2048;

/// Values bound per event: `[event_id, aggregate_type, aggregate_id,
/// sequence, event_type, event_version, payload, metadata]`.
const ROW_VALUES: usize = 8;

/// The INSERT of up to `rows` events (a power of two, at most
/// `BOUND_ROWS`): a VALUES list of that many rows, each its 1-based index
/// and then the event's values; the rows past the last event are bound NULL
/// and skipped. A dozen texts serve every size of group, so the connection
/// keeps each prepared.
fn bound_insert(rows: usize) -> &'static str {
    const SIZES: usize = BOUND_ROWS.trailing_zeros() as usize + 1;
    static TEXTS: [OnceLock<String>; SIZES] = [const { OnceLock::new() }; SIZES];
    debug_assert!(rows.is_power_of_two() && rows <= BOUND_ROWS);
    TEXTS[rows.trailing_zeros() as usize].get_or_init(|| {
        let mut sql = format!(
            "INSERT INTO events ({EVENT_COLUMNS})
             SELECT last + v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, v.column8, v.column9
             FROM (SELECT COALESCE(MAX(position), 0) AS last FROM events), (VALUES "
        );
        for index in 1..=rows {
            if index > 1 {
                sql.push(',');
            }
            write!(sql, "({index}, ?, ?, ?, ?, ?, ?, ?, ?)").expect("a String takes any text");
        }
        sql.push_str(") AS v WHERE v.column2 IS NOT NULL");
        sql
    })
}

/// The events as the JSON array of rows `insert_events` reads with
/// `json_each`: `[event_id, aggregate_type, aggregate_id, sequence,
/// event_type, event_version, payload, metadata]`, the payload and metadata
/// as strings holding their JSON text.
fn event_rows(events: &[&NewEvent]) -> String {
    let rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                &e.row.event_id,
                &e.row.aggregate_type,
                &e.row.aggregate_id,
                e.row.sequence,
                &e.row.event_type,
                &e.row.event_version,
                &e.row.payload,
                &e.row.metadata,
            )
        })
        .collect();
    serde_json::to_string(&rows).expect("a JSON array writes to memory")
}

#[cfg(test)]
mod tests;

crate::shared::log_stores!(SqliteStore, SqliteRow, EVENT_COLUMNS, "event_id = $1");
