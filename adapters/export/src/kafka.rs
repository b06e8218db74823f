//! Kafka export with librdkafka (rdkafka): an idempotent producer
//! (`enable.idempotence`, `acks=all`), so that retries inside the client
//! neither reorder nor duplicate a partition's records; records are keyed
//! by aggregate id, so one aggregate's events keep their order.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::Producer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tollgate_ports::outbound::{EventProducer, KafkaRecord, ProduceError};

/// How to reach the brokers.
#[derive(Debug, Clone, Default)]
pub struct KafkaSettings {
    /// `host:port,...`; empty: no Kafka.
    pub brokers: String,
    /// How long a record may wait for its acknowledgement
    /// (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Any other librdkafka property (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, ...), passed
    /// through as given.
    pub options: BTreeMap<String, String>,
}

/// Produces to Kafka, or refuses when no brokers are configured.
pub struct KafkaProducer {
    settings: KafkaSettings,
    /// Replaced when librdkafka reports a fatal error (an idempotent
    /// producer that lost its guarantees must not go on).
    producer: RwLock<Option<FutureProducer>>,
}

impl KafkaProducer {
    /// A producer for `settings` (none when no brokers are configured).
    pub fn new(settings: &KafkaSettings) -> Result<KafkaProducer, String> {
        let producer = if settings.brokers.trim().is_empty() {
            None
        } else {
            Some(Self::create(settings)?)
        };
        Ok(KafkaProducer {
            settings: settings.clone(),
            producer: RwLock::new(producer),
        })
    }

    fn create(settings: &KafkaSettings) -> Result<FutureProducer, String> {
        let mut config = ClientConfig::new();
        for (key, value) in &settings.options {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "delivery.timeout.ms",
                settings.delivery_timeout.as_millis().to_string(),
            )
            .set("client.id", "tollgate");
        config
            .create()
            .map_err(|e| format!("cannot create the Kafka producer: {e}"))
    }

    /// After a failure: a producer in a fatal state is replaced, so that the
    /// retry starts a new idempotent session.
    fn renew_if_fatal(&self) {
        let mut slot = self.producer.write().unwrap_or_else(|e| e.into_inner());
        let fatal = slot
            .as_ref()
            .and_then(|p| p.client().fatal_error())
            .map(|(code, reason)| format!("{code:?}: {reason}"));
        if let Some(fatal) = fatal {
            tracing::error!(%fatal, "the Kafka producer failed fatally; starting a new one");
            match Self::create(&self.settings) {
                Ok(producer) => *slot = Some(producer),
                Err(err) => tracing::error!(%err, "cannot start a new Kafka producer"),
            }
        }
    }
}

#[async_trait]
impl EventProducer for KafkaProducer {
    fn configured(&self) -> bool {
        !self.settings.brokers.trim().is_empty()
    }

    async fn produce(&self, records: &[KafkaRecord]) -> Result<(), ProduceError> {
        let producer = self
            .producer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(producer) = producer else {
            return Err(ProduceError {
                produced: 0,
                reason: "no Kafka brokers are configured (kafka.brokers)".to_string(),
            });
        };
        let result = self.send_all(&producer, records).await;
        if result.is_err() {
            self.renew_if_fatal();
        }
        result
    }
}

impl KafkaProducer {
    async fn send_all(
        &self,
        producer: &FutureProducer,
        records: &[KafkaRecord],
    ) -> Result<(), ProduceError> {
        // Queue every record in order, then wait for each acknowledgement.
        let mut pending = Vec::with_capacity(records.len());
        let mut refused = None;
        for record in records {
            let headers =
                record
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |headers, (key, value)| {
                        headers.insert(Header {
                            key,
                            value: Some(value.as_bytes()),
                        })
                    });
            let future = FutureRecord::to(&record.topic)
                .key(record.key.as_bytes())
                .payload(record.payload.as_bytes())
                .headers(headers);
            match producer.send_result(future) {
                Ok(delivery) => pending.push(delivery),
                Err((err, _)) => {
                    refused = Some(err.to_string());
                    break;
                }
            }
        }
        let queued = pending.len();
        for (produced, delivery) in pending.into_iter().enumerate() {
            let failure = match delivery.await {
                Ok(Ok(_)) => continue,
                Ok(Err((err, _))) => err.to_string(),
                Err(_) => "the producer was dropped".to_string(),
            };
            return Err(ProduceError {
                produced,
                reason: failure,
            });
        }
        match refused {
            None => Ok(()),
            Some(reason) => Err(ProduceError {
                produced: queued,
                reason,
            }),
        }
    }
}
