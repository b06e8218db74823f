//! Access conditions of a login: which protocols and login methods, from
//! which addresses, at which hours, and how many sessions at once. A user
//! and each group carry their own; for each condition the user's applies
//! when set, else the first of the user's groups that sets it.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::session::{LoginMethod, Protocol};

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a single address
/// without `/N` is the block of that address alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the block (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an address block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?} has an invalid prefix length"))?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hours of some weekdays, in UTC: `from` inclusive to `to` exclusive,
/// minutes since midnight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Days, 0 = Monday … 6 = Sunday; empty means every day.
    #[serde(default)]
    pub days: Vec<u8>,
    /// The first minute of the day allowed.
    pub from_minute: u16,
    /// The first minute of the day no longer allowed (1440 = midnight).
    pub to_minute: u16,
}

impl TimeWindow {
    fn contains(&self, weekday: u8, minute: u16) -> bool {
        (self.days.is_empty() || self.days.contains(&weekday))
            && self.from_minute <= minute
            && minute < self.to_minute
    }
}

/// The conditions of a login; empty or absent means no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRules {
    /// The protocols a session may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocols: Vec<Protocol>,
    /// The credentials a login may present (`password`, `public_key`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub login_methods: Vec<LoginMethod>,
    /// Only from these blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<Cidr>,
    /// Never from these blocks (checked first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny_from: Vec<Cidr>,
    /// At most this many sessions at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<u32>,
    /// Only within one of these windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_windows: Vec<TimeWindow>,
    /// Uploads of all the user's sessions together, at most this many
    /// bytes a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bytes_per_sec: Option<u64>,
    /// Downloads of all the user's sessions together, at most this many
    /// bytes a second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_bytes_per_sec: Option<u64>,
    /// The files the user stores, at most this many bytes together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_bytes: Option<u64>,
    /// The files the user stores, at most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_files: Option<u64>,
    /// Whether logins need a TOTP second factor (a user without one
    /// enrolled is refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_totp: Option<bool>,
}

/// Why a login is refused by its access conditions (the recorded reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    /// The protocol is not among the allowed ones.
    #[error("protocol not allowed")]
    Protocol,
    /// The credential kind is not among the allowed ones.
    #[error("login method not allowed")]
    LoginMethod,
    /// The client's address is denied or not allowed.
    #[error("source address not allowed")]
    Source,
    /// Outside every allowed window.
    #[error("outside the allowed hours")]
    Hours,
    /// The user already has the most sessions allowed.
    #[error("too many sessions")]
    Sessions,
    /// The rules require a second factor the user has not enrolled.
    #[error("second factor required but not enrolled")]
    SecondFactor,
}

/// What a login attempt brings to the check.
#[derive(Debug, Clone, Copy)]
pub struct LoginContext {
    /// The session's protocol.
    pub protocol: Protocol,
    /// The credential presented.
    pub method: LoginMethod,
    /// The client's address, if known.
    pub source: Option<IpAddr>,
    /// The weekday now (0 = Monday), UTC.
    pub weekday: u8,
    /// The minute of the day now, UTC.
    pub minute: u16,
    /// The user's sessions already open.
    pub sessions: usize,
    /// Whether the user has a confirmed second factor.
    pub second_factor: bool,
}

impl AccessRules {
    /// The rules in force: each condition from `own` when set, else from
    /// the first of `groups` that sets it.
    pub fn effective<'a>(
        own: &AccessRules,
        groups: impl IntoIterator<Item = &'a AccessRules>,
    ) -> AccessRules {
        let mut rules = own.clone();
        for group in groups {
            if rules.protocols.is_empty() {
                rules.protocols = group.protocols.clone();
            }
            if rules.login_methods.is_empty() {
                rules.login_methods = group.login_methods.clone();
            }
            if rules.allow_from.is_empty() {
                rules.allow_from = group.allow_from.clone();
            }
            if rules.deny_from.is_empty() {
                rules.deny_from = group.deny_from.clone();
            }
            if rules.max_sessions.is_none() {
                rules.max_sessions = group.max_sessions;
            }
            if rules.time_windows.is_empty() {
                rules.time_windows = group.time_windows.clone();
            }
            if rules.upload_bytes_per_sec.is_none() {
                rules.upload_bytes_per_sec = group.upload_bytes_per_sec;
            }
            if rules.download_bytes_per_sec.is_none() {
                rules.download_bytes_per_sec = group.download_bytes_per_sec;
            }
            if rules.quota_bytes.is_none() {
                rules.quota_bytes = group.quota_bytes;
            }
            if rules.quota_files.is_none() {
                rules.quota_files = group.quota_files;
            }
            if rules.require_totp.is_none() {
                rules.require_totp = group.require_totp;
            }
        }
        rules
    }

    /// Whether a login in `context` is allowed, and if not, why. Tokens
    /// and API keys were issued after a login these rules already checked,
    /// so only the protocol, address, hours and sessions apply to them.
    pub fn check(&self, context: &LoginContext) -> Result<(), AccessRefusal> {
        if !self.protocols.is_empty() && !self.protocols.contains(&context.protocol) {
            return Err(AccessRefusal::Protocol);
        }
        let derived = matches!(context.method, LoginMethod::Token | LoginMethod::ApiKey);
        // A certificate is a public key a CA vouches for.
        let method = match context.method {
            LoginMethod::Certificate if !self.login_methods.contains(&LoginMethod::Certificate) => {
                LoginMethod::PublicKey
            }
            method => method,
        };
        if !derived && !self.login_methods.is_empty() && !self.login_methods.contains(&method) {
            return Err(AccessRefusal::LoginMethod);
        }
        if !self.allow_from.is_empty() || !self.deny_from.is_empty() {
            let Some(source) = context.source else {
                return Err(AccessRefusal::Source);
            };
            if self.deny_from.iter().any(|block| block.contains(source))
                || (!self.allow_from.is_empty()
                    && !self.allow_from.iter().any(|block| block.contains(source)))
            {
                return Err(AccessRefusal::Source);
            }
        }
        if !self.time_windows.is_empty()
            && !self
                .time_windows
                .iter()
                .any(|w| w.contains(context.weekday, context.minute))
        {
            return Err(AccessRefusal::Hours);
        }
        if let Some(max) = self.max_sessions
            && context.sessions >= max as usize
        {
            return Err(AccessRefusal::Sessions);
        }
        if self.require_totp == Some(true) && !context.second_factor {
            return Err(AccessRefusal::SecondFactor);
        }
        Ok(())
    }

    /// Why the rules are malformed, if they are.
    pub fn validate(&self) -> Result<(), String> {
        if self.upload_bytes_per_sec == Some(0) || self.download_bytes_per_sec == Some(0) {
            return Err("a bandwidth limit is at least 1 byte a second".to_string());
        }
        for window in &self.time_windows {
            if window.days.iter().any(|d| *d > 6) {
                return Err("a time window's days are 0 (Monday) to 6 (Sunday)".to_string());
            }
            if window.from_minute >= window.to_minute || window.to_minute > 1440 {
                return Err("a time window needs 0 <= from_minute < to_minute <= 1440".to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
