//! The Subscription aggregate: where events go out (a webhook endpoint),
//! which ones (a filter), and in what shape. Each subscription follows the
//! log as a subscriber of its own. The webhook signing secret is held
//! sealed, like a mount's.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;
use crate::mount::SealedSecret;
use crate::policy::valid_name;

/// Which events a subscription delivers: every given criterion must hold
/// (an empty list or an absent value accepts everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionFilter {
    /// Event types (`TransferCompleted`, ...).
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Users the events are about.
    #[serde(default)]
    pub users: Vec<String>,
    /// A virtual path prefix the event's path must be under.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// `success`, `failure`, `denied` or `aborted`.
    #[serde(default)]
    pub outcome: Option<String>,
}

/// What an event offers to a filter.
#[derive(Debug, Clone, Copy)]
pub struct EventFacts<'a> {
    /// The event type.
    pub event_type: &'a str,
    /// The user it is about.
    pub user: Option<&'a str>,
    /// The affected path.
    pub path: Option<&'a str>,
    /// Its outcome.
    pub outcome: &'a str,
}

impl SubscriptionFilter {
    /// Whether an event with these facts is delivered.
    pub fn matches(&self, facts: &EventFacts<'_>) -> bool {
        let under = |prefix: &str, path: &str| {
            let prefix = prefix.trim_end_matches('/');
            prefix.is_empty()
                || path == prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        };
        (self.event_types.is_empty() || self.event_types.iter().any(|t| t == facts.event_type))
            && (self.users.is_empty()
                || facts
                    .user
                    .is_some_and(|u| self.users.iter().any(|w| w == u)))
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|prefix| facts.path.is_some_and(|p| under(prefix, p)))
            && self.outcome.as_deref().is_none_or(|o| o == facts.outcome)
    }
}

/// How events are rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// The public event schema (`docs/events.md`).
    #[default]
    Tollgate,
    /// OCSF-aligned classes (File System Activity, Authentication, Account Change).
    Ocsf,
}

/// The Subscription aggregate. The aggregate id is its name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Empty before creation.
    pub name: String,
    /// The webhook endpoint (empty for a Kafka subscription).
    pub url: String,
    /// The Kafka topic, for a subscription that produces to Kafka.
    #[serde(default)]
    pub kafka_topic: Option<String>,
    /// Which events.
    pub filter: SubscriptionFilter,
    /// Their shape.
    pub format: EventFormat,
    /// The signing secret, sealed.
    pub secret: Option<SealedSecret>,
    /// Whether deliveries run.
    pub enabled: bool,
    /// Why it was disabled, if it was.
    pub disabled_reason: Option<String>,
    /// Whether it was deleted.
    pub deleted: bool,
    /// Deliveries start after this log position (the head when created).
    pub start_after: u64,
}

/// Commands on a subscription.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum SubscriptionCommand {
    /// A webhook subscription (`url`) or a Kafka one (`kafka_topic`).
    Create {
        name: String,
        url: String,
        kafka_topic: Option<String>,
        filter: SubscriptionFilter,
        format: EventFormat,
        secret: SealedSecret,
        start_after: u64,
    },
    /// Stops deliveries (by an administrator, or after the endpoint
    /// answered 410 Gone).
    Disable {
        reason: String,
    },
    /// Resumes deliveries from where they stopped.
    Enable,
    Delete,
}

/// Events of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum SubscriptionEvent {
    SubscriptionCreated {
        name: String,
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kafka_topic: Option<String>,
        filter: SubscriptionFilter,
        format: EventFormat,
        secret: SealedSecret,
        start_after: u64,
    },
    SubscriptionDisabled {
        reason: String,
    },
    SubscriptionEnabled {},
    SubscriptionDeleted {},
}
crate::domain_event!(SubscriptionEvent, "1", {
    SubscriptionCreated, SubscriptionDisabled, SubscriptionEnabled, SubscriptionDeleted,
});

/// Why a subscription command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// The name is taken.
    #[error("subscription already exists")]
    AlreadyExists,
    /// No such subscription.
    #[error("subscription does not exist")]
    NotFound,
    /// A name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid subscription name {0:?}")]
    InvalidName(String),
    /// Only http and https endpoints.
    #[error("the webhook URL must be http:// or https://")]
    InvalidUrl,
    /// A subscription targets a webhook URL or a Kafka topic, not both.
    #[error("give either a webhook url or a kafka_topic")]
    AmbiguousTarget,
    /// Kafka topic names are 1–249 characters of `[A-Za-z0-9._-]`.
    #[error("invalid Kafka topic {0:?}")]
    InvalidTopic(String),
    /// Already in the requested state.
    #[error("subscription is already {0}")]
    Unchanged(&'static str),
}
crate::refusal!(SubscriptionError, { AlreadyExists => AlreadyExists, NotFound => NotFound, InvalidName => Invalid, InvalidUrl => Invalid, AmbiguousTarget => Invalid, InvalidTopic => Invalid, Unchanged => Conflict });

impl Subscription {
    /// Whether it exists (created, not deleted).
    pub fn exists(&self) -> bool {
        !self.name.is_empty() && !self.deleted
    }
}

impl AggregateRoot for Subscription {
    const TYPE: &'static str = "subscription";
    type Command = SubscriptionCommand;
    type Event = SubscriptionEvent;
    type Error = SubscriptionError;

    fn decide(&self, command: SubscriptionCommand) -> Result<Vec<SubscriptionEvent>, Self::Error> {
        if let SubscriptionCommand::Create {
            name,
            url,
            kafka_topic,
            filter,
            format,
            secret,
            start_after,
        } = command
        {
            if self.exists() {
                return Err(SubscriptionError::AlreadyExists);
            }
            if !valid_name(&name) {
                return Err(SubscriptionError::InvalidName(name));
            }
            match &kafka_topic {
                Some(_) if !url.is_empty() => return Err(SubscriptionError::AmbiguousTarget),
                Some(topic) => {
                    let valid = !topic.is_empty()
                        && topic.len() <= 249
                        && topic != "."
                        && topic != ".."
                        && topic
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                    if !valid {
                        return Err(SubscriptionError::InvalidTopic(topic.clone()));
                    }
                }
                None => {
                    let lower = url.to_ascii_lowercase();
                    if !(lower.starts_with("http://") || lower.starts_with("https://"))
                        || url.len() > 2048
                    {
                        return Err(SubscriptionError::InvalidUrl);
                    }
                }
            }
            return Ok(vec![SubscriptionEvent::SubscriptionCreated {
                name,
                url,
                kafka_topic,
                filter,
                format,
                secret,
                start_after,
            }]);
        }
        if !self.exists() {
            return Err(SubscriptionError::NotFound);
        }
        let event = match command {
            SubscriptionCommand::Create { .. } => unreachable!("handled above"),
            SubscriptionCommand::Disable { .. } if !self.enabled => {
                return Err(SubscriptionError::Unchanged("disabled"));
            }
            SubscriptionCommand::Disable { reason } => {
                SubscriptionEvent::SubscriptionDisabled { reason }
            }
            SubscriptionCommand::Enable if self.enabled => {
                return Err(SubscriptionError::Unchanged("enabled"));
            }
            SubscriptionCommand::Enable => SubscriptionEvent::SubscriptionEnabled {},
            SubscriptionCommand::Delete => SubscriptionEvent::SubscriptionDeleted {},
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: SubscriptionEvent) {
        match event {
            SubscriptionEvent::SubscriptionCreated {
                name,
                url,
                kafka_topic,
                filter,
                format,
                secret,
                start_after,
            } => {
                *self = Subscription {
                    name,
                    url,
                    kafka_topic,
                    filter,
                    format,
                    secret: Some(secret),
                    enabled: true,
                    disabled_reason: None,
                    deleted: false,
                    start_after,
                }
            }
            SubscriptionEvent::SubscriptionDisabled { reason } => {
                self.enabled = false;
                self.disabled_reason = Some(reason);
            }
            SubscriptionEvent::SubscriptionEnabled {} => {
                self.enabled = true;
                self.disabled_reason = None;
            }
            SubscriptionEvent::SubscriptionDeleted {} => {
                self.deleted = true;
                self.enabled = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(event_type: &'a str, user: &'a str, path: &'a str) -> EventFacts<'a> {
        EventFacts {
            event_type,
            user: Some(user),
            path: Some(path),
            outcome: "success",
        }
    }

    #[test]
    fn a_filter_needs_every_criterion_it_names() {
        let all = SubscriptionFilter::default();
        assert!(all.matches(&facts("TransferCompleted", "ann", "/a")));
        let filter = SubscriptionFilter {
            event_types: vec!["TransferCompleted".into()],
            users: vec!["ann".into()],
            path_prefix: Some("/inbox/".into()),
            outcome: Some("success".into()),
        };
        assert!(filter.matches(&facts("TransferCompleted", "ann", "/inbox/x.csv")));
        assert!(filter.matches(&facts("TransferCompleted", "ann", "/inbox")));
        assert!(!filter.matches(&facts("TransferCompleted", "ann", "/inboxes/x")));
        assert!(!filter.matches(&facts("TransferFailed", "ann", "/inbox/x")));
        assert!(!filter.matches(&facts("TransferCompleted", "bob", "/inbox/x")));
        let failed = EventFacts {
            outcome: "failure",
            ..facts("TransferCompleted", "ann", "/inbox/x")
        };
        assert!(!filter.matches(&failed));
        let no_path = EventFacts {
            path: None,
            ..facts("TransferCompleted", "ann", "/")
        };
        assert!(!filter.matches(&no_path));
    }

    #[test]
    fn a_subscription_is_created_once_with_an_http_endpoint() {
        let create = |url: &str| SubscriptionCommand::Create {
            name: "siem".into(),
            url: url.into(),
            kafka_topic: None,
            filter: SubscriptionFilter::default(),
            format: EventFormat::Tollgate,
            secret: SealedSecret("v1:x".into()),
            start_after: 0,
        };
        let mut sub = Subscription::default();
        let events = sub.decide(create("https://hooks.example/in")).unwrap();
        sub.apply(events[0].clone());
        assert!(sub.exists() && sub.enabled);
        assert_eq!(
            sub.decide(create("https://x")),
            Err(SubscriptionError::AlreadyExists)
        );
        assert_eq!(
            Subscription::default().decide(create("file:///etc/passwd")),
            Err(SubscriptionError::InvalidUrl)
        );
        let kafka = |url: &str, topic: &str| SubscriptionCommand::Create {
            name: "siem".into(),
            url: url.into(),
            kafka_topic: Some(topic.into()),
            filter: SubscriptionFilter::default(),
            format: EventFormat::Ocsf,
            secret: SealedSecret("v1:x".into()),
            start_after: 0,
        };
        assert!(
            Subscription::default()
                .decide(kafka("", "siem.events"))
                .is_ok()
        );
        assert_eq!(
            Subscription::default().decide(kafka("https://x", "siem.events")),
            Err(SubscriptionError::AmbiguousTarget)
        );
        assert_eq!(
            Subscription::default().decide(kafka("", "bad topic")),
            Err(SubscriptionError::InvalidTopic("bad topic".into()))
        );
        let disabled = sub
            .decide(SubscriptionCommand::Disable {
                reason: "410 Gone".into(),
            })
            .unwrap();
        sub.apply(disabled[0].clone());
        assert!(!sub.enabled);
        assert_eq!(
            sub.decide(SubscriptionCommand::Disable { reason: "x".into() }),
            Err(SubscriptionError::Unchanged("disabled"))
        );
    }
}
