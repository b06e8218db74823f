//! Counters of what this process committed, for the Prometheus endpoint.
//! They start at zero with the process, as Prometheus counters may.

use std::collections::BTreeMap;
use std::sync::Mutex;

use tollgate_domain::{AggregateRoot, DomainEvent};
use tollgate_ports::api::Sample;

/// What one commit adds: each event's type and the bytes it reports.
pub(crate) type Tally = Vec<(String, Option<u64>)>;

/// The event types and byte counts of events about to be committed.
pub(crate) fn tally<T: AggregateRoot>(events: &[T::Event]) -> Tally {
    events
        .iter()
        .map(|event| (event.event_type(), T::bytes_moved(event)))
        .collect()
}

#[derive(Default)]
struct Counts {
    /// (event type, protocol) → events committed.
    events: BTreeMap<(String, String), u64>,
    /// protocol → bytes moved by finished transfers.
    bytes: BTreeMap<String, u64>,
}

/// The process's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
    /// Audit verifications that found a problem.
    verification_failures: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub(crate) fn add(&self, protocol: Option<&str>, tally: Tally) {
        let protocol = protocol.unwrap_or("none").to_string();
        let mut counts = self.counts.lock().expect("metrics lock is never poisoned");
        for (event_type, bytes) in tally {
            if let Some(bytes) = bytes {
                *counts.bytes.entry(protocol.clone()).or_default() += bytes;
            }
            *counts
                .events
                .entry((event_type, protocol.clone()))
                .or_default() += 1;
        }
    }

    /// Counts a verification of the audit trail that found a problem.
    pub(crate) fn verification_failed(&self) {
        self.verification_failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        let counts = self.counts.lock().expect("metrics lock is never poisoned");
        let mut samples = vec![Sample {
            name: "tollgate_audit_verification_failures_total",
            kind: "counter",
            help: "Verifications of the audit trail that found a problem.",
            labels: Vec::new(),
            value: self
                .verification_failures
                .load(std::sync::atomic::Ordering::Relaxed) as f64,
        }];
        for ((event_type, protocol), n) in &counts.events {
            let labels = vec![("type", event_type.clone()), ("protocol", protocol.clone())];
            samples.push(Sample {
                name: "tollgate_events_total",
                kind: "counter",
                help: "Events committed by this process, by type and protocol.",
                labels,
                value: *n as f64,
            });
            let derived = match event_type.as_str() {
                "SessionOpened" => Some((
                    "tollgate_connections_total",
                    "Connections opened, by protocol.",
                    None,
                )),
                "LoginFailed" => Some((
                    "tollgate_auth_failures_total",
                    "Failed authentications, by protocol.",
                    None,
                )),
                "TransferCompleted" => Some((
                    "tollgate_transfers_total",
                    "Finished transfers, by protocol and outcome.",
                    Some("completed"),
                )),
                "TransferFailed" => Some((
                    "tollgate_transfers_total",
                    "Finished transfers, by protocol and outcome.",
                    Some("failed"),
                )),
                "TransferAborted" => Some((
                    "tollgate_transfers_total",
                    "Finished transfers, by protocol and outcome.",
                    Some("aborted"),
                )),
                "TransferDenied" => Some((
                    "tollgate_transfers_total",
                    "Finished transfers, by protocol and outcome.",
                    Some("denied"),
                )),
                _ => None,
            };
            if let Some((name, help, outcome)) = derived {
                let mut labels = vec![("protocol", protocol.clone())];
                if let Some(outcome) = outcome {
                    labels.push(("outcome", outcome.to_string()));
                }
                samples.push(Sample {
                    name,
                    kind: "counter",
                    help,
                    labels,
                    value: *n as f64,
                });
            }
        }
        for (protocol, bytes) in &counts.bytes {
            samples.push(Sample {
                name: "tollgate_transfer_bytes_total",
                kind: "counter",
                help: "Bytes moved by finished transfers, by protocol.",
                labels: vec![("protocol", protocol.clone())],
                value: *bytes as f64,
            });
        }
        samples
    }
}
