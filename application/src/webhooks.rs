//! Webhook subscriptions: each one follows the log as a subscriber with its
//! own checkpoint, delivers the sealed events its filter selects, in log
//! order, signed, and retries with exponential backoff and jitter
//! (honouring `Retry-After`) until the endpoint takes them: at-least-once,
//! nothing lost across a restart or an outage (the log is the buffer). An
//! endpoint answering 410 Gone disables its subscription. Every attempt is
//! in the delivery log.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use cqrs_es::persist::PersistedEventRepository;
use tokio::sync::watch;
use tollgate_domain::mount::SealedSecret;
use tollgate_domain::subscription::{
    EventFacts, EventFormat, Subscription, SubscriptionCommand, SubscriptionFilter,
};
use tollgate_domain::transfer::Transfer;
use tollgate_ports::outbound::{
    DeliveryAttempt, KafkaRecord, LoggedEvent, WebhookError, WebhookRequest,
};

use crate::aggregates::Actor;
use crate::publish::{Publishable, render};
use crate::queries::EventSummary;
use crate::{AppError, Tollgate};

/// The read model of the subscriptions.
pub(crate) const SUBSCRIPTIONS: &str = "subscriptions";

/// Events read per batch.
const BATCH: u32 = 200;
/// How often idle deliverers look for events committed by other processes.
const POLL: Duration = Duration::from_millis(500);
/// The most events one redelivery request examines.
pub(crate) const REDELIVERY_LIMIT: u64 = 1000;

/// When failed deliveries are tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each one...
    pub first: Duration,
    /// ...up to this.
    pub max: Duration,
}

/// What a new subscription delivers and where.
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
    /// 1–64 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// The endpoint (http or https), empty for a Kafka subscription.
    pub url: String,
    /// The Kafka topic, for a Kafka subscription.
    pub kafka_topic: Option<String>,
    /// Which events.
    pub filter: SubscriptionFilter,
    /// Their shape.
    pub format: EventFormat,
}

/// A redelivery's result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Redelivered {
    /// Events of the range the filter selected (each tried once).
    pub attempted: u64,
    /// Of those, taken by the endpoint (2xx).
    pub delivered: u64,
}

enum Outcome {
    Delivered,
    /// The subscription is disabled (410 Gone, or a refused target).
    Disabled,
    /// Shutdown or the subscription changed: stop without moving on.
    Stopped,
}

fn subscriber_of(sub: &Subscription) -> String {
    format!("webhook:{}:{}", sub.name, sub.start_after)
}

/// A wait in `[0.8, 1.2) × base`, spread by a hash of what is retried.
fn jittered(base: Duration, seed: impl Hash) -> Duration {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    seed.hash(&mut hasher);
    let fraction = (hasher.finish() % 1000) as f64 / 1000.0;
    base.mul_f64(0.8 + 0.4 * fraction)
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Creates a webhook subscription; returns it and its signing secret
    /// (shown once: only its sealed form is recorded).
    pub(crate) async fn create_subscription(
        &self,
        actor: &Actor,
        new: NewSubscription,
    ) -> Result<(Subscription, String), AppError> {
        let deps = &self.inner.deps;
        if new.kafka_topic.is_some() {
            if !deps.kafka.configured() {
                return Err(AppError::Invalid(
                    "no Kafka brokers are configured (kafka.brokers)".into(),
                ));
            }
        } else {
            deps.webhooks
                .check(&new.url)
                .await
                .map_err(|e| AppError::Invalid(e.to_string()))?;
        }
        let secret = deps.webhooks.new_secret();
        let sealed = SealedSecret(deps.secrets.seal(&secret));
        // Deliveries start after what is in the log now.
        let start_after = deps.log.head().await?;
        let state = self
            .execute::<Subscription>(&new.name, actor, || SubscriptionCommand::Create {
                name: new.name.clone(),
                url: new.url.clone(),
                kafka_topic: new.kafka_topic.clone(),
                filter: new.filter.clone(),
                format: new.format,
                secret: sealed.clone(),
                start_after,
            })
            .await?;
        Ok((state, secret))
    }

    /// Runs a command on a subscription.
    pub(crate) async fn on_subscription(
        &self,
        actor: &Actor,
        name: &str,
        command: SubscriptionCommand,
    ) -> Result<Subscription, AppError> {
        let state = self
            .execute::<Subscription>(name, actor, || command.clone())
            .await?;
        self.inner.committed.notify_waiters();
        Ok(state)
    }

    /// Follows the log for every enabled subscription until `shutdown`.
    pub async fn run_webhooks(&self, mut shutdown: watch::Receiver<bool>) {
        let mut running: HashMap<String, (tokio::task::JoinHandle<()>, watch::Sender<bool>)> =
            HashMap::new();
        loop {
            let notified = self.inner.subscriptions_projected.notified();
            match self.enabled_subscriptions().await {
                Ok(enabled) => {
                    running.retain(|name, (task, stop)| {
                        let keep = enabled.contains(name) && !task.is_finished();
                        if !keep {
                            let _ = stop.send(true);
                        }
                        keep
                    });
                    for name in enabled {
                        if running.contains_key(&name) {
                            continue;
                        }
                        let (stop, stop_rx) = watch::channel(false);
                        let app = self.clone();
                        let task_name = name.clone();
                        let task = tokio::spawn(async move {
                            app.deliver_loop(&task_name, stop_rx).await;
                        });
                        running.insert(name, (task, stop));
                    }
                }
                Err(err) => tracing::error!(error = %err, "cannot list the webhook subscriptions"),
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                for (_, (task, stop)) in running.drain() {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
                return;
            }
        }
    }

    async fn enabled_subscriptions(&self) -> Result<Vec<String>, AppError> {
        let docs = self.inner.deps.projections.list(SUBSCRIPTIONS).await?;
        Ok(docs
            .into_iter()
            .filter_map(|(name, doc)| {
                let sub: crate::subscribers::Projected<Subscription> =
                    serde_json::from_value(doc).ok()?;
                (sub.state.exists() && sub.state.enabled).then_some(name)
            })
            .collect())
    }

    async fn deliver_loop(&self, name: &str, mut stop: watch::Receiver<bool>) {
        loop {
            let notified = self.inner.committed.notified();
            match self.deliver_batch(name, &mut stop).await {
                Ok(Some(true)) => continue,
                Ok(Some(false)) => {}
                Ok(None) => return,
                Err(err) => {
                    tracing::error!(subscription = name, error = %err, "webhook delivery cannot proceed");
                }
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// The sealed events after `after` (at most `limit`), personal data
    /// opened, each with its audit hash.
    pub(crate) async fn sealed_after(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(LoggedEvent, Option<String>)>, AppError> {
        let deps = &self.inner.deps;
        let sealed = deps.audit.last_seal().await?.map_or(0, |s| s.position);
        if after >= sealed {
            return Ok(Vec::new());
        }
        let limit = limit.min(u32::try_from(sealed - after).unwrap_or(u32::MAX));
        let mut events = deps.log.read_after(after, limit).await?;
        events.retain(|e| e.position <= sealed);
        self.open_personal(&mut events).await?;
        let seals = deps.audit.read_seals(after, limit).await?;
        Ok(events
            .into_iter()
            .map(|event| {
                let hash = seals
                    .iter()
                    .find(|s| s.position == event.position)
                    .map(|s| s.hash.clone());
                (event, hash)
            })
            .collect())
    }

    /// The body of an event for `sub`, if its filter selects it.
    async fn body_for(
        &self,
        sub: &Subscription,
        event: &LoggedEvent,
        hash: Option<&str>,
    ) -> Result<Option<String>, AppError> {
        self.render_selected(&sub.filter, sub.format, event, hash)
            .await
    }

    /// The event rendered in `format`, if `filter` selects it.
    pub(crate) async fn render_selected(
        &self,
        filter: &SubscriptionFilter,
        format: EventFormat,
        event: &LoggedEvent,
        hash: Option<&str>,
    ) -> Result<Option<String>, AppError> {
        let summary = EventSummary::from_logged(event.clone());
        let facts = EventFacts {
            event_type: &summary.event_type,
            user: summary.user.as_deref(),
            path: summary.path.as_deref(),
            outcome: summary.outcome,
        };
        if !filter.matches(&facts) {
            return Ok(None);
        }
        let direction = if event.aggregate_type == "transfer" {
            let transfer: Transfer = self.load(&event.aggregate_id).await?;
            transfer.context.map(|c| match c.direction {
                tollgate_domain::transfer::Direction::Upload => "upload",
                tollgate_domain::transfer::Direction::Download => "download",
            })
        } else {
            None
        };
        let publishable = Publishable {
            summary: &summary,
            aggregate_type: &event.aggregate_type,
            aggregate_id: &event.aggregate_id,
            sequence: event.sequence,
            event_version: &event.event_version,
            audit_hash: hash,
            direction,
        };
        Ok(Some(render(&publishable, format).to_string()))
    }

    /// Delivers one batch: `Some(true)` when the checkpoint moved,
    /// `Some(false)` when idle, `None` when the deliverer must stop.
    async fn deliver_batch(
        &self,
        name: &str,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<bool>, AppError> {
        let deps = &self.inner.deps;
        let sub: Subscription = self.load(name).await?;
        if !sub.exists() || !sub.enabled {
            return Ok(None);
        }
        let secret = self.open_secret(&sub)?;
        let subscriber = subscriber_of(&sub);
        let stored = deps.projections.checkpoint(&subscriber).await?;
        let after = stored.max(sub.start_after);
        let events = self.sealed_after(after, BATCH).await?;
        if events.is_empty() {
            return Ok(Some(false));
        }
        if let Some(topic) = &sub.kafka_topic {
            return self.produce_batch(&sub, topic, &events, stored, stop).await;
        }
        let mut done = after;
        let mut outcome = None;
        let mut log = Vec::new();
        for (event, hash) in &events {
            if let Some(body) = self.body_for(&sub, event, hash.as_deref()).await? {
                match self
                    .deliver(&sub, &secret, event, &body, stop, &mut log)
                    .await?
                {
                    Outcome::Delivered => {}
                    Outcome::Disabled | Outcome::Stopped => {
                        outcome = Some(None);
                        break;
                    }
                }
            }
            done = event.position;
        }
        deps.deliveries.record_deliveries(&log).await?;
        if done > after {
            deps.projections
                .commit(&subscriber, stored, done, &[])
                .await?;
        }
        Ok(outcome.unwrap_or(Some(true)))
    }

    /// Produces one batch to Kafka, retrying from the first record not
    /// acknowledged (and moving the checkpoint up to it) until all are.
    async fn produce_batch(
        &self,
        sub: &Subscription,
        topic: &str,
        events: &[(LoggedEvent, Option<String>)],
        mut stored: u64,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Option<bool>, AppError> {
        let deps = &self.inner.deps;
        let subscriber = subscriber_of(sub);
        let mut records = Vec::new();
        let mut sources = Vec::new();
        for (event, hash) in events {
            if let Some(body) = self
                .render_selected(&sub.filter, sub.format, event, hash.as_deref())
                .await?
            {
                records.push(KafkaRecord {
                    topic: topic.to_string(),
                    key: event.aggregate_id.clone(),
                    payload: body,
                    headers: vec![
                        ("event_id".into(), event.event_id.clone()),
                        ("event_type".into(), event.event_type.clone()),
                        ("position".into(), event.position.to_string()),
                        ("audit_hash".into(), hash.clone().unwrap_or_default()),
                    ],
                });
                sources.push(event);
            }
        }
        let last = events.last().map_or(stored, |(e, _)| e.position);
        let policy = deps.retry_policy;
        let mut delay = policy.first;
        let mut offset = 0usize;
        for attempt in 1u32.. {
            let started = Instant::now();
            let failure = match deps.kafka.produce(&records[offset..]).await {
                Ok(()) => {
                    if last > stored {
                        deps.projections
                            .commit(&subscriber, stored, last, &[])
                            .await?;
                    }
                    return Ok(Some(true));
                }
                Err(failure) => failure,
            };
            offset += failure.produced;
            let Some(failed) = sources.get(offset) else {
                return Err(AppError::Invalid(failure.reason));
            };
            // What was acknowledged is done, even if the rest must wait.
            let done = failed.position - 1;
            if done > stored {
                deps.projections
                    .commit(&subscriber, stored, done, &[])
                    .await?;
                stored = done;
            }
            deps.deliveries
                .record_deliveries(&[DeliveryAttempt {
                    subscription: sub.name.clone(),
                    event_id: failed.event_id.clone(),
                    position: failed.position,
                    attempt,
                    status: None,
                    latency_ms: started.elapsed().as_millis() as u64,
                    error: Some(failure.reason.clone()),
                    time: self.now_text(),
                    redelivery: false,
                }])
                .await?;
            let wait = jittered(delay, (&sub.name, &failed.event_id, attempt));
            tracing::warn!(
                subscription = sub.name,
                topic,
                error = failure.reason,
                wait_ms = wait.as_millis() as u64,
                "Kafka did not take the records; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return Ok(None),
            }
            if *stop.borrow() {
                return Ok(None);
            }
            delay = (delay * 2).min(policy.max);
        }
        unreachable!("the attempts only end by returning")
    }

    fn open_secret(&self, sub: &Subscription) -> Result<String, AppError> {
        let sealed = sub
            .secret
            .as_ref()
            .ok_or_else(|| AppError::Invalid("the subscription has no secret".into()))?;
        self.inner
            .deps
            .secrets
            .open(&sealed.0)
            .map_err(|e| AppError::Invalid(e.to_string()))
    }

    /// One attempt, and its line for the delivery log.
    async fn attempt(
        &self,
        sub: &Subscription,
        secret: &str,
        event: &LoggedEvent,
        body: &str,
        attempt: u32,
        redelivery: bool,
    ) -> Result<
        (
            Result<tollgate_ports::outbound::WebhookResponse, WebhookError>,
            DeliveryAttempt,
        ),
        AppError,
    > {
        let deps = &self.inner.deps;
        let request = WebhookRequest {
            url: sub.url.clone(),
            message_id: event.event_id.clone(),
            timestamp: deps.clock.now().timestamp(),
            body: body.to_string(),
            secret: secret.to_string(),
        };
        let started = Instant::now();
        let result = deps.webhooks.send(&request).await;
        let status = result.as_ref().ok().map(|r| r.status);
        let error = match &result {
            Ok(r) if (200..300).contains(&r.status) => None,
            Ok(r) => Some(format!("HTTP {}", r.status)),
            Err(err) => Some(err.to_string()),
        };
        let logged = DeliveryAttempt {
            subscription: sub.name.clone(),
            event_id: event.event_id.clone(),
            position: event.position,
            attempt,
            status,
            latency_ms: started.elapsed().as_millis() as u64,
            error,
            time: self.now_text(),
            redelivery,
        };
        Ok((result, logged))
    }

    /// Delivers one event, retrying until the endpoint takes it. Failed
    /// attempts are logged at once, the success joins `log` (written with
    /// the batch's checkpoint).
    async fn deliver(
        &self,
        sub: &Subscription,
        secret: &str,
        event: &LoggedEvent,
        body: &str,
        stop: &mut watch::Receiver<bool>,
        log: &mut Vec<DeliveryAttempt>,
    ) -> Result<Outcome, AppError> {
        let policy = self.inner.deps.retry_policy;
        let mut delay = policy.first;
        for attempt in 1u32.. {
            let (result, logged) = self
                .attempt(sub, secret, event, body, attempt, false)
                .await?;
            if logged.error.is_none() {
                log.push(logged);
            } else {
                self.inner
                    .deps
                    .deliveries
                    .record_deliveries(&[logged])
                    .await?;
            }
            let wait = match result {
                Ok(response) if (200..300).contains(&response.status) => {
                    return Ok(Outcome::Delivered);
                }
                Ok(response) if response.status == 410 => {
                    self.disable(sub, "the endpoint answered 410 Gone").await?;
                    return Ok(Outcome::Disabled);
                }
                Err(WebhookError::Refused(why)) => {
                    self.disable(sub, &format!("delivery refused: {why}"))
                        .await?;
                    return Ok(Outcome::Disabled);
                }
                Ok(response) => response
                    .retry_after
                    .map(|wait| wait.min(policy.max))
                    .unwrap_or_else(|| jittered(delay, (&sub.name, &event.event_id, attempt))),
                Err(WebhookError::Transport(_)) => {
                    jittered(delay, (&sub.name, &event.event_id, attempt))
                }
            };
            tracing::warn!(
                subscription = sub.name,
                event_id = event.event_id,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "webhook not delivered; retrying"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return Ok(Outcome::Stopped),
            }
            if *stop.borrow() {
                return Ok(Outcome::Stopped);
            }
            delay = (delay * 2).min(policy.max);
        }
        unreachable!("the attempts only end by returning")
    }

    async fn disable(&self, sub: &Subscription, reason: &str) -> Result<(), AppError> {
        tracing::warn!(
            subscription = sub.name,
            reason,
            "webhook subscription disabled"
        );
        let actor = Actor {
            actor: "system".to_string(),
            ..Actor::default()
        };
        self.on_subscription(
            &actor,
            &sub.name,
            SubscriptionCommand::Disable {
                reason: reason.to_string(),
            },
        )
        .await
        .map(drop)
    }

    /// Delivers again, once each, the events of positions `first..=last`
    /// (at most `REDELIVERY_LIMIT`) that the subscription's filter selects.
    pub(crate) async fn redeliver(
        &self,
        name: &str,
        first: u64,
        last: u64,
    ) -> Result<Redelivered, AppError> {
        let sub: Subscription = self.load(name).await?;
        if !sub.exists() {
            return Err(AppError::Rejected {
                kind: tollgate_domain::RefusalKind::NotFound,
                message: format!("subscription {name} does not exist"),
            });
        }
        if first == 0 || last < first || last - first >= REDELIVERY_LIMIT {
            return Err(AppError::Invalid(format!(
                "a redelivery names 1 to {REDELIVERY_LIMIT} positions, first..=last"
            )));
        }
        let secret = self.open_secret(&sub)?;
        let events = self
            .sealed_after(first - 1, u32::try_from(last - first + 1).unwrap_or(1))
            .await?;
        let mut report = Redelivered::default();
        for (event, hash) in events.iter().filter(|(e, _)| e.position <= last) {
            let Some(body) = self.body_for(&sub, event, hash.as_deref()).await? else {
                continue;
            };
            report.attempted += 1;
            let (result, logged) = self.attempt(&sub, &secret, event, &body, 1, true).await?;
            self.inner
                .deps
                .deliveries
                .record_deliveries(&[logged])
                .await?;
            if result.is_ok_and(|r| (200..300).contains(&r.status)) {
                report.delivered += 1;
            }
        }
        Ok(report)
    }
}
