//! The shape every aggregate shares: a pure `decide` from state and command
//! to events, and a pure `apply` that folds an event into the state.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event of one aggregate: its stable type name and schema version.
///
/// A shipped `event_type` is never renamed; a changed payload gets a new
/// `event_version` and an upcaster.
pub trait DomainEvent:
    Serialize + DeserializeOwned + Clone + PartialEq + std::fmt::Debug + Send + Sync
{
    /// The variant name, as stored in the event log.
    fn event_type(&self) -> String;
    /// The payload schema version, as stored in the event log.
    fn event_version(&self) -> String;
    /// Every variant name of the enum.
    const TYPES: &'static [&'static str];
}

/// The kind of a refused command, which callers branch on (an HTTP API
/// answers 404, 409 or 400 from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// The aggregate does not exist (or was deleted).
    NotFound,
    /// The aggregate exists already.
    AlreadyExists,
    /// The command's input breaks a rule (a name, a missing credential).
    Invalid,
    /// The command does not fit the aggregate's current state.
    Conflict,
}

/// An aggregate error that says which kind of refusal it is.
pub trait Refusal {
    /// The kind of refusal.
    fn kind(&self) -> RefusalKind;
}

/// Implements [`Refusal`] by listing each variant's kind.
#[macro_export]
macro_rules! refusal {
    ($ty:ty, { $($variant:ident => $kind:ident),+ $(,)? }) => {
        impl $crate::aggregate::Refusal for $ty {
            fn kind(&self) -> $crate::aggregate::RefusalKind {
                match self {
                    $(Self::$variant { .. } => $crate::aggregate::RefusalKind::$kind,)+
                }
            }
        }
    };
}

/// An event-sourced aggregate: state rebuilt by applying its events.
pub trait AggregateRoot:
    Default + Serialize + DeserializeOwned + Clone + std::fmt::Debug + Send + Sync
{
    /// The aggregate type name stored with every event.
    const TYPE: &'static str;
    /// What a caller asks the aggregate to do.
    type Command;
    /// What the aggregate records when it agrees.
    type Event: DomainEvent;
    /// Why the aggregate refuses a command.
    type Error: std::error::Error + Refusal + Send + Sync + 'static;

    /// Decides which events a command produces, without changing state.
    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    /// Folds one event into the state. Must never fail: events are facts.
    fn apply(&mut self, event: Self::Event);
    /// The bytes an event reports as moved by a transfer; none for events
    /// that move no file data.
    fn bytes_moved(_event: &Self::Event) -> Option<u64> {
        None
    }
}

/// Implements [`DomainEvent`] for a serde-tagged enum whose tag is the
/// variant name, with one version for every variant.
#[macro_export]
macro_rules! domain_event {
    ($ty:ty, $version:literal, { $($variant:ident),+ $(,)? }) => {
        impl $crate::aggregate::DomainEvent for $ty {
            const TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            fn event_type(&self) -> String {
                match self {
                    $(Self::$variant { .. } => stringify!($variant).to_string(),)+
                }
            }
            fn event_version(&self) -> String {
                $version.to_string()
            }
        }
    };
}

/// Given/when/then for aggregate tests: applies `given`, decides `command`
/// and renders the events (one per line) or the error.
#[cfg(test)]
pub(crate) fn check<A: AggregateRoot>(
    given: Vec<A::Event>,
    command: A::Command,
    expect: expect_test::Expect,
) {
    let mut state = A::default();
    for event in given {
        state.apply(event);
    }
    let actual = match state.decide(command) {
        Ok(events) => events
            .iter()
            .map(|e| format!("{e:?}\n"))
            .collect::<String>(),
        Err(err) => format!("error: {err}\n"),
    };
    expect.assert_eq(&actual);
}
