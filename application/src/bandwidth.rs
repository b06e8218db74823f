//! Bandwidth limits: one token bucket per user and direction, shared by all
//! the user's sessions on every protocol, taken from in the transfers' data
//! path (a transfer waits for its tokens before its bytes move on).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A token bucket of `rate` bytes a second, holding at most a tenth of a
/// second's worth (at least 64 KiB) so bursts stay short.
pub(crate) struct Bucket {
    rate: u64,
    capacity: f64,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    fn new(rate: u64) -> Bucket {
        let capacity = (rate as f64 / 10.0).max(64.0 * 1024.0);
        Bucket {
            rate,
            capacity,
            state: Mutex::new((capacity, Instant::now())),
        }
    }

    /// Takes `bytes` tokens, waiting for them when the bucket is short
    /// (the debt is paid by waiting, so large requests pass too).
    pub(crate) async fn take(&self, bytes: u64) {
        let wait = {
            let mut state = self
                .state
                .lock()
                .expect("a bucket's lock is never poisoned");
            let (tokens, last) = &mut *state;
            let now = Instant::now();
            let refilled = now.duration_since(*last).as_secs_f64() * self.rate as f64;
            *tokens = (*tokens + refilled).min(self.capacity) - bytes as f64;
            *last = now;
            if *tokens < 0.0 {
                Duration::from_secs_f64(-*tokens / self.rate as f64)
            } else {
                Duration::ZERO
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The buckets of every limited user and direction.
#[derive(Default)]
pub(crate) struct Buckets {
    buckets: Mutex<HashMap<(String, bool), Arc<Bucket>>>,
}

impl Buckets {
    /// The bucket of `username` for uploads (`upload`) or downloads, at
    /// `rate`; `None` when unlimited. A changed rate starts a new bucket.
    pub(crate) fn of(
        &self,
        username: &str,
        upload: bool,
        rate: Option<u64>,
    ) -> Option<Arc<Bucket>> {
        let rate = rate.filter(|r| *r > 0)?;
        let mut buckets = self
            .buckets
            .lock()
            .expect("the buckets' lock is never poisoned");
        let bucket = buckets
            .entry((username.to_string(), upload))
            .or_insert_with(|| Arc::new(Bucket::new(rate)));
        if bucket.rate != rate {
            *bucket = Arc::new(Bucket::new(rate));
        }
        Some(bucket.clone())
    }
}
