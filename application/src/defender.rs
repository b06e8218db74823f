//! The defender: failed logins score against their client address, and an
//! address whose score reaches the threshold within the observation window
//! is banned (a `Ban` aggregate: `AddressBanned`, each ban twice as long as
//! the one before). Banned addresses are refused by every protocol before
//! any authentication; addresses on the allow-list are never banned.
//!
//! Scores live in this process only; bans are events, followed by the
//! `bans` read model and loaded by each process when it starts.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use cqrs_es::persist::PersistedEventRepository;
use serde::{Deserialize, Serialize};
use tollgate_domain::access::Cidr;
use tollgate_domain::defender::{Ban, BanCommand};

use crate::aggregates::Actor;
use crate::subscribers::Projected;
use crate::{AppError, Tollgate};

/// The read model of bans.
pub(crate) const BANS: &str = "bans";

/// When addresses are banned (`[defender]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DefenderPolicy {
    /// Whether failed logins are scored at all.
    pub enabled: bool,
    /// The score that bans.
    pub threshold: u32,
    /// How far back failures count, seconds.
    pub observation_secs: i64,
    /// The first ban's length, seconds; each later ban of the address
    /// lasts twice the one before.
    pub ban_secs: i64,
    /// The longest ban, seconds.
    pub max_ban_secs: i64,
    /// The score of a login as a user that does not exist.
    pub score_unknown_user: u32,
    /// The score of any other failed login.
    pub score_failure: u32,
    /// Address blocks never banned (`10.0.0.0/8`).
    pub allow: Vec<Cidr>,
}

impl Default for DefenderPolicy {
    fn default() -> Self {
        DefenderPolicy {
            enabled: false,
            threshold: 15,
            observation_secs: 1800,
            ban_secs: 1800,
            max_ban_secs: 86_400,
            score_unknown_user: 2,
            score_failure: 1,
            allow: Vec::new(),
        }
    }
}

impl DefenderPolicy {
    /// The policy with its numbers made usable: at least one point to ban,
    /// one second of window and ban, and a cap no shorter than a ban.
    pub fn normalized(mut self) -> Self {
        self.threshold = self.threshold.max(1);
        self.observation_secs = self.observation_secs.max(1);
        self.ban_secs = self.ban_secs.max(1);
        self.max_ban_secs = self.max_ban_secs.max(self.ban_secs);
        self
    }
}

/// This process's scores and the bans in force.
#[derive(Default)]
pub(crate) struct Defender {
    scores: Mutex<HashMap<IpAddr, VecDeque<(i64, u32)>>>,
    banned: Mutex<HashMap<IpAddr, i64>>,
}

/// The address of `ip:port` (or a bare address).
fn ip_of(address: &str) -> Option<IpAddr> {
    address
        .parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| address.parse::<IpAddr>())
        .ok()
}

impl Defender {
    fn banned_until(&self, ip: IpAddr) -> Option<i64> {
        self.banned
            .lock()
            .expect("the defender's lock is never poisoned")
            .get(&ip)
            .copied()
    }

    fn set(&self, ip: IpAddr, until: Option<i64>) {
        let mut banned = self
            .banned
            .lock()
            .expect("the defender's lock is never poisoned");
        match until {
            Some(until) => banned.insert(ip, until),
            None => banned.remove(&ip),
        };
    }

    /// Adds `points` at `now`; the window's total when it reaches
    /// `threshold` (the scores of the address then start again).
    fn score(&self, policy: &DefenderPolicy, ip: IpAddr, points: u32, now: i64) -> Option<u32> {
        let mut scores = self
            .scores
            .lock()
            .expect("the defender's lock is never poisoned");
        let entries = scores.entry(ip).or_default();
        entries.push_back((now, points));
        while entries
            .front()
            .is_some_and(|(at, _)| *at <= now - policy.observation_secs)
        {
            entries.pop_front();
        }
        let total: u32 = entries.iter().map(|(_, p)| p).sum();
        if total >= policy.threshold {
            scores.remove(&ip);
            Some(total)
        } else {
            None
        }
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    fn defender_policy(&self) -> &DefenderPolicy {
        &self.inner.deps.defender
    }

    /// Whether connections from `address` (`ip:port`) are refused now.
    pub fn is_banned(&self, address: &str) -> bool {
        let Some(ip) = ip_of(address) else {
            return false;
        };
        let now = self.inner.deps.clock.now().timestamp();
        self.inner
            .defender
            .banned_until(ip)
            .is_some_and(|until| until > now)
    }

    /// Scores a failed login from `address` refused for `reason` (only
    /// wrong credentials score: not an expired token or a disabled
    /// account); bans the address when its score reaches the threshold.
    pub(crate) async fn login_failed(&self, address: &str, reason: &str) {
        let unknown_user = match reason {
            "unknown user" => true,
            "wrong password" | "key not authorized" | "invalid token" | "malformed API key"
            | "unknown API key" => false,
            certificate if certificate.starts_with("certificate ") => false,
            _ => return,
        };
        let policy = self.defender_policy();
        let Some(ip) = ip_of(address).filter(|_| policy.enabled) else {
            return;
        };
        if policy.allow.iter().any(|block| block.contains(ip)) {
            return;
        }
        let points = if unknown_user {
            policy.score_unknown_user
        } else {
            policy.score_failure
        };
        let now = self.inner.deps.clock.now().timestamp();
        let Some(score) = self.inner.defender.score(policy, ip, points, now) else {
            return;
        };
        let actor = Actor {
            actor: "defender".to_string(),
            ..Actor::default()
        };
        let command = BanCommand::Ban {
            address: ip.to_string(),
            now,
            base_secs: policy.ban_secs,
            max_secs: policy.max_ban_secs,
            score,
        };
        match self
            .execute::<Ban>(&ip.to_string(), &actor, || command.clone())
            .await
        {
            Ok(ban) => {
                tracing::warn!(address = %ip, until = ban.until, ban = ban.bans, score, "address banned");
                self.inner.defender.set(ip, Some(ban.until));
            }
            Err(err) => tracing::error!(address = %ip, error = %err, "cannot record a ban"),
        }
    }

    /// Lifts the ban of `address` (`AddressUnbanned`).
    pub(crate) async fn unban(&self, actor: &Actor, address: &str) -> Result<(), AppError> {
        let ip = ip_of(address)
            .ok_or_else(|| AppError::Invalid(format!("{address:?} is not an address")))?;
        let now = self.inner.deps.clock.now().timestamp();
        self.execute::<Ban>(&ip.to_string(), actor, || BanCommand::Unban { now })
            .await?;
        self.inner.defender.set(ip, None);
        Ok(())
    }

    /// The bans in force, from the read model.
    pub(crate) async fn bans(&self) -> Result<Vec<Ban>, AppError> {
        let now = self.inner.deps.clock.now().timestamp();
        let docs = self.inner.deps.projections.list(BANS).await?;
        Ok(docs
            .into_iter()
            .filter_map(|(_, doc)| serde_json::from_value::<Projected<Ban>>(doc).ok())
            .map(|projected| projected.state)
            .filter(|ban| ban.active(now))
            .collect())
    }

    /// Loads the bans in force into this process (at start).
    pub async fn load_bans(&self) -> Result<(), AppError> {
        for ban in self.bans().await? {
            if let Some(ip) = ip_of(&ban.address) {
                self.inner.defender.set(ip, Some(ban.until));
            }
        }
        Ok(())
    }
}
