//! The Ban aggregate: a client address refused on every protocol until a
//! time, after too many failed logins. The aggregate id is the address
//! (`203.0.113.9`); each ban of the same address lasts longer than the one
//! before. Addresses here are kept in clear: they are the record of an
//! attack, kept for the security of the service.

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;

/// The Ban aggregate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ban {
    /// The address; empty before its first ban.
    pub address: String,
    /// Until when it is refused (Unix seconds); 0 when not banned.
    pub until: i64,
    /// How many times it was banned.
    pub bans: u32,
}

impl Ban {
    /// Whether the address is refused at `now` (Unix seconds).
    pub fn active(&self, now: i64) -> bool {
        self.until > now
    }
}

/// Commands on a ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BanCommand {
    /// Bans the address from `now` for `base_secs`, doubled for every
    /// earlier ban, up to `max_secs`.
    Ban {
        /// The address.
        address: String,
        /// The current time, Unix seconds.
        now: i64,
        /// The first ban's length.
        base_secs: i64,
        /// The longest ban.
        max_secs: i64,
        /// The score that reached the threshold.
        score: u32,
    },
    /// Lifts the ban now.
    Unban {
        /// The current time, Unix seconds.
        now: i64,
    },
}

/// Events of a ban.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum BanEvent {
    AddressBanned {
        address: String,
        until: i64,
        ban: u32,
        score: u32,
    },
    AddressUnbanned {},
}
crate::domain_event!(BanEvent, "1", { AddressBanned, AddressUnbanned });

/// Why a ban command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BanError {
    /// The address is banned already.
    #[error("the address is banned already")]
    AlreadyBanned,
    /// The address is not banned.
    #[error("the address is not banned")]
    NotBanned,
}
crate::refusal!(BanError, { AlreadyBanned => Conflict, NotBanned => NotFound });

impl AggregateRoot for Ban {
    const TYPE: &'static str = "ban";
    type Command = BanCommand;
    type Event = BanEvent;
    type Error = BanError;

    fn decide(&self, command: BanCommand) -> Result<Vec<BanEvent>, BanError> {
        match command {
            BanCommand::Ban {
                address,
                now,
                base_secs,
                max_secs,
                score,
            } => {
                if self.active(now) {
                    return Err(BanError::AlreadyBanned);
                }
                let ban = self.bans + 1;
                let length = base_secs
                    .saturating_mul(1i64 << (ban - 1).min(30))
                    .min(max_secs)
                    .max(1);
                Ok(vec![BanEvent::AddressBanned {
                    address,
                    until: now.saturating_add(length),
                    ban,
                    score,
                }])
            }
            BanCommand::Unban { now } => {
                if !self.active(now) {
                    return Err(BanError::NotBanned);
                }
                Ok(vec![BanEvent::AddressUnbanned {}])
            }
        }
    }

    fn apply(&mut self, event: BanEvent) {
        match event {
            BanEvent::AddressBanned {
                address,
                until,
                ban,
                ..
            } => {
                self.address = address;
                self.until = until;
                self.bans = ban;
            }
            BanEvent::AddressUnbanned {} => self.until = 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(now: i64) -> BanCommand {
        BanCommand::Ban {
            address: "203.0.113.9".into(),
            now,
            base_secs: 60,
            max_secs: 600,
            score: 15,
        }
    }

    fn run(state: &mut Ban, command: BanCommand) -> Result<(), BanError> {
        for event in state.decide(command)? {
            state.apply(event);
        }
        Ok(())
    }

    #[test]
    fn each_ban_lasts_twice_as_long_as_the_last_up_to_the_cap() {
        let mut state = Ban::default();
        run(&mut state, ban(1000)).unwrap();
        assert_eq!((state.until, state.bans), (1060, 1));
        assert!(state.active(1059) && !state.active(1060));
        assert_eq!(run(&mut state, ban(1010)), Err(BanError::AlreadyBanned));
        run(&mut state, ban(2000)).unwrap();
        assert_eq!(state.until, 2120);
        for now in [3000, 4000, 5000, 6000] {
            run(&mut state, ban(now)).unwrap();
        }
        assert_eq!(state.until, 6600, "capped");
    }

    #[test]
    fn an_unban_lifts_an_active_ban_only() {
        let mut state = Ban::default();
        assert_eq!(
            run(&mut state, BanCommand::Unban { now: 0 }),
            Err(BanError::NotBanned)
        );
        run(&mut state, ban(1000)).unwrap();
        run(&mut state, BanCommand::Unban { now: 1001 }).unwrap();
        assert!(!state.active(1001));
        assert_eq!(state.bans, 1, "the history stays for the next ban's length");
    }
}
