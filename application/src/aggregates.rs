//! The bridge from the pure aggregates of `domain` to cqrs-es, and the one
//! function that executes a command: load, decide, commit with metadata.

use std::collections::HashMap;

use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{AggregateError, EventStore};
use serde::{Deserialize, Serialize};
use tollgate_domain::AggregateRoot;

use crate::{AppError, Tollgate};

/// A domain aggregate seen by cqrs-es.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Agg<T>(pub(crate) T);

/// A domain event seen by cqrs-es.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Ev<E>(pub(crate) E);

impl<E: tollgate_domain::DomainEvent> cqrs_es::DomainEvent for Ev<E> {
    fn event_type(&self) -> String {
        self.0.event_type()
    }
    fn event_version(&self) -> String {
        self.0.event_version()
    }
}

impl<T> cqrs_es::Aggregate for Agg<T>
where
    T: AggregateRoot,
    T::Command: Send,
{
    const TYPE: &'static str = T::TYPE;
    type Command = T::Command;
    type Event = Ev<T::Event>;
    type Error = T::Error;
    type Services = ();

    async fn handle(
        &mut self,
        command: T::Command,
        _services: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), T::Error> {
        for event in self.0.decide(command)? {
            sink.write(Ev(event), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Ev<T::Event>) {
        self.0.apply(event.0);
    }
}

/// Who did something, from where: the metadata of every event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Actor {
    /// `cli`, `system`, or a user name.
    pub(crate) actor: String,
    /// The user the event is about, when there is one.
    pub(crate) user: Option<String>,
    pub(crate) session_id: Option<String>,
    pub(crate) remote_addr: Option<String>,
    pub(crate) protocol: Option<String>,
}

/// How often a command is retried after losing an optimistic-concurrency race.
const CONFLICT_RETRIES: usize = 5;

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Loads aggregate `id`, lets it decide with the command built by
    /// `command`, and commits the events with the actor's metadata.
    pub(crate) async fn execute<T>(
        &self,
        id: &str,
        actor: &Actor,
        command: impl Fn() -> T::Command,
    ) -> Result<T, AppError>
    where
        T: AggregateRoot,
        T::Command: Send,
    {
        self.execute_at(id, actor, None, command)
            .await
            .map(|(state, _)| state)
    }

    /// Like `execute`, and when `expected` is given, refuses with
    /// `VersionMismatch` unless the aggregate is at that version (its
    /// number of events). Returns the new state and version.
    pub(crate) async fn execute_at<T>(
        &self,
        id: &str,
        actor: &Actor,
        expected: Option<u64>,
        command: impl Fn() -> T::Command,
    ) -> Result<(T, u64), AppError>
    where
        T: AggregateRoot,
        T::Command: Send,
    {
        self.execute_from(id, actor, expected, None, command).await
    }

    /// Like `execute`, for a caller that already holds the aggregate's
    /// state and version (it created the aggregate, or made its last
    /// change): the first attempt commits on that state without reading
    /// the aggregate's events back. Should another writer have moved the
    /// aggregate on, the commit loses the optimistic-concurrency race and
    /// the command is decided again on the state loaded from the log.
    /// A new aggregate is `Some((T::default(), 0))`; `None` loads it first,
    /// as `execute` does.
    pub(crate) async fn execute_known<T>(
        &self,
        id: &str,
        actor: &Actor,
        known: Option<(T, u64)>,
        command: impl Fn() -> T::Command,
    ) -> Result<(T, u64), AppError>
    where
        T: AggregateRoot,
        T::Command: Send,
    {
        self.execute_from(id, actor, None, known, command).await
    }

    async fn execute_from<T>(
        &self,
        id: &str,
        actor: &Actor,
        expected: Option<u64>,
        mut known: Option<(T, u64)>,
        command: impl Fn() -> T::Command,
    ) -> Result<(T, u64), AppError>
    where
        T: AggregateRoot,
        T::Command: Send,
    {
        let store =
            PersistedEventStore::<R, Agg<T>>::new_event_store(self.inner.deps.repository.clone());
        for _ in 0..CONFLICT_RETRIES {
            let mut context = match known.take() {
                Some((state, version)) => cqrs_es::persist::EventStoreAggregateContext {
                    aggregate_id: id.to_string(),
                    aggregate: Agg(state),
                    current_sequence: usize::try_from(version).unwrap_or(usize::MAX),
                    current_snapshot: None,
                },
                None => store.load_aggregate(id).await?,
            };
            let current = context.current_sequence as u64;
            if expected.is_some_and(|v| v != current) {
                return Err(AppError::VersionMismatch { current });
            }
            let mut state = cqrs_es::AggregateContext::aggregate(&mut context).0.clone();
            let events = state
                .decide(command())
                .map_err(|e| AppError::rejected(&e))?;
            for event in events.clone() {
                state.apply(event);
            }
            let version = current + events.len() as u64;
            let metadata = self.metadata(actor);
            let tally = crate::metrics::tally::<T>(&events);
            // A command that decided nothing has nothing to wait for.
            let began = (!events.is_empty()).then(std::time::Instant::now);
            match store
                .commit(events.into_iter().map(Ev).collect(), context, metadata)
                .await
            {
                Ok(_) => {
                    self.inner.committed.notify_waiters();
                    let waited = began.map(|began| began.elapsed());
                    // The events first: a scrape never counts a wait
                    // without the events it waited for.
                    self.inner.metrics.add(actor.protocol.as_deref(), tally);
                    if let Some(waited) = waited {
                        self.inner.metrics.commit_waited(waited);
                    }
                    return Ok((state, version));
                }
                Err(AggregateError::AggregateConflict) => continue,
                Err(err) => return Err(err.into()),
            }
        }
        Err(AppError::Conflict)
    }

    /// Loads the current state of aggregate `id` (default if it has no events).
    pub(crate) async fn load<T>(&self, id: &str) -> Result<T, AppError>
    where
        T: AggregateRoot,
        T::Command: Send,
    {
        self.load_versioned(id).await.map(|(state, _)| state)
    }

    /// The current state of aggregate `id` and its version.
    pub(crate) async fn load_versioned<T>(&self, id: &str) -> Result<(T, u64), AppError>
    where
        T: AggregateRoot,
        T::Command: Send,
    {
        let store =
            PersistedEventStore::<R, Agg<T>>::new_event_store(self.inner.deps.repository.clone());
        let mut context = store.load_aggregate(id).await?;
        let version = context.current_sequence as u64;
        Ok((
            cqrs_es::AggregateContext::aggregate(&mut context).0.clone(),
            version,
        ))
    }

    fn metadata(&self, actor: &Actor) -> HashMap<String, String> {
        let mut map = HashMap::new();
        map.insert("time".to_string(), self.now_text());
        map.insert("actor".to_string(), actor.actor.clone());
        map.insert(
            "correlation_id".to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        let optional = [
            ("user", &actor.user),
            ("session_id", &actor.session_id),
            ("remote_addr", &actor.remote_addr),
            ("protocol", &actor.protocol),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                map.insert(key.to_string(), value.clone());
            }
        }
        map
    }
}
