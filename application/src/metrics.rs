//! Counters of what this process committed, and how long its commands
//! waited for their commits, for the Prometheus endpoint. They start at
//! zero with the process, as Prometheus counters may.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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

/// Upper bounds, in seconds, of the buckets of the commit wait histogram:
/// a group commit's sync on a quiet disk takes well under a millisecond, a
/// busy log several.
const COMMIT_WAIT_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
/// The commit wait histogram's help line.
const COMMIT_WAIT: &str = "Seconds a command waited for its events to be committed to the event log (written and synced, in a group with other commands' events).";

/// How long commands waited for their events to reach the log.
#[derive(Default)]
struct CommitWaits {
    /// Commits per bucket of `COMMIT_WAIT_BOUNDS` (not cumulative); the
    /// last counts those above every bound.
    buckets: [AtomicU64; COMMIT_WAIT_BOUNDS.len() + 1],
    micros: AtomicU64,
}

/// The process's counters.
#[derive(Default)]
pub(crate) struct Metrics {
    counts: Mutex<Counts>,
    /// Audit verifications that found a problem.
    verification_failures: AtomicU64,
    commit_waits: CommitWaits,
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
        self.verification_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a command whose events were committed after `waited`.
    pub(crate) fn commit_waited(&self, waited: Duration) {
        let seconds = waited.as_secs_f64();
        let bucket = COMMIT_WAIT_BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(COMMIT_WAIT_BOUNDS.len());
        let waits = &self.commit_waits;
        waits.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(waited.as_micros()).unwrap_or(u64::MAX);
        waits.micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The commit wait histogram, as Prometheus's cumulative buckets.
    fn commit_wait_samples(&self) -> Vec<Sample> {
        let waits = &self.commit_waits;
        let sample = |name, labels, value| Sample {
            name,
            kind: "histogram",
            help: COMMIT_WAIT,
            labels,
            value,
        };
        let mut samples = Vec::with_capacity(COMMIT_WAIT_BOUNDS.len() + 3);
        let mut count = 0;
        for (i, bucket) in waits.buckets.iter().enumerate() {
            count += bucket.load(Ordering::Relaxed);
            let le = COMMIT_WAIT_BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), f64::to_string);
            samples.push(sample(
                "tollgate_event_commit_wait_seconds_bucket",
                vec![("le", le)],
                count as f64,
            ));
        }
        let seconds = waits.micros.load(Ordering::Relaxed) as f64 / 1e6;
        samples.push(sample(
            "tollgate_event_commit_wait_seconds_sum",
            Vec::new(),
            seconds,
        ));
        samples.push(sample(
            "tollgate_event_commit_wait_seconds_count",
            Vec::new(),
            count as f64,
        ));
        samples
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        let counts = self.counts.lock().expect("metrics lock is never poisoned");
        let mut samples = vec![Sample {
            name: "tollgate_audit_verification_failures_total",
            kind: "counter",
            help: "Verifications of the audit trail that found a problem.",
            labels: Vec::new(),
            value: self.verification_failures.load(Ordering::Relaxed) as f64,
        }];
        samples.extend(self.commit_wait_samples());
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
