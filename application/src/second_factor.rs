//! TOTP second factors: enrolment through the admin API (secret sealed in
//! the log, recovery codes hashed), and the check of a code at a login,
//! each TOTP code accepted once.
//!
//! How the code reaches a login depends on the protocol: SSH asks for it
//! by keyboard-interactive after the password or key; FTP, WebDAV and the
//! token endpoint take it appended to the password (the token endpoint
//! also in its own header).

use std::collections::HashMap;
use std::sync::Mutex;

use cqrs_es::persist::PersistedEventRepository;
use sha2::{Digest, Sha256};
use tollgate_domain::user::{User, UserCommand};

use crate::admin::admin_actor;
use crate::aggregates::Actor;
use crate::{AppError, Tollgate};

/// The issuer authenticator apps show beside the account.
const ISSUER: &str = "Tollgate";
/// Recovery codes given at an enrolment.
const RECOVERY_CODES: usize = 10;
/// Digits of a TOTP code, appended to a password where no prompt exists.
pub(crate) const CODE_DIGITS: usize = 6;

/// What an enrolment gives the user, once: never shown again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The secret, base32.
    pub secret: String,
    /// The `otpauth://` URI.
    pub uri: String,
    /// The URI as a QR code (PNG).
    pub qr_png: Vec<u8>,
    /// Single-use codes that stand in for a TOTP code.
    pub recovery_codes: Vec<String>,
}

/// The last TOTP step accepted per user, so that a code works once.
#[derive(Default)]
pub(crate) struct Replays {
    last: Mutex<HashMap<String, u64>>,
}

impl Replays {
    /// Takes `step` for `username` if no later or equal step was taken.
    fn take(&self, username: &str, step: u64) -> bool {
        let mut last = self.last.lock().expect("replay steps are never poisoned");
        match last.get(username) {
            Some(&taken) if taken >= step => false,
            _ => {
                last.insert(username.to_string(), step);
                true
            }
        }
    }
}

fn recovery_hash(code: &str) -> String {
    let normalized: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(normalized.as_bytes()))
}

/// Ten characters of an alphabet without look-alikes (about 50 bits), as
/// `xxxxx-xxxxx`.
fn new_recovery_code() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghjkmnpqrstuvwxyz234567890";
    let mut random = [0u8; 10];
    rand::fill(&mut random);
    let chars: Vec<char> = random
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
        .collect();
    let (first, second) = chars.split_at(5);
    format!(
        "{}-{}",
        first.iter().collect::<String>(),
        second.iter().collect::<String>()
    )
}

/// Splits a TOTP code off the end of `password` (`password` + six digits).
pub(crate) fn split_code(password: &str) -> Option<(&str, &str)> {
    let at = password.len().checked_sub(CODE_DIGITS)?;
    let (password, code) = (password.get(..at)?, password.get(at..)?);
    code.bytes()
        .all(|b| b.is_ascii_digit())
        .then_some((password, code))
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Enrols a new TOTP secret for `username` (replacing one not yet
    /// confirmed): logins need a code once `confirm_totp` proved it.
    pub async fn enroll_totp(
        &self,
        admin: &str,
        username: &str,
    ) -> Result<TotpEnrolment, AppError> {
        let deps = &self.inner.deps;
        let new = deps
            .otp
            .new_secret(ISSUER, username)
            .map_err(|err| AppError::Invalid(format!("cannot create a TOTP secret: {err}")))?;
        let recovery_codes: Vec<String> =
            (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        let command = UserCommand::EnrollTotp {
            secret: deps.secrets.seal(&new.secret),
            recovery_codes: recovery_codes.iter().map(|c| recovery_hash(c)).collect(),
        };
        self.execute::<User>(username, &admin_actor(admin, Some(username)), || {
            command.clone()
        })
        .await?;
        Ok(TotpEnrolment {
            secret: new.secret,
            uri: new.uri,
            qr_png: new.qr_png,
            recovery_codes,
        })
    }

    /// Confirms an enrolment with a current code of its secret.
    pub async fn confirm_totp(
        &self,
        admin: &str,
        username: &str,
        code: &str,
    ) -> Result<(), AppError> {
        let user: User = self.load(username).await?;
        let Some(totp) = user.totp.as_ref().filter(|_| user.exists()) else {
            return Err(AppError::Invalid(format!(
                "user {username:?} has no second factor enrolled"
            )));
        };
        if self.totp_step(&user.username, &totp.secret, code).is_none() {
            return Err(AppError::Invalid(
                "the code does not match the enrolled secret".to_string(),
            ));
        }
        self.execute::<User>(username, &admin_actor(admin, Some(username)), || {
            UserCommand::ConfirmTotp
        })
        .await?;
        Ok(())
    }

    /// Removes a user's second factor.
    pub async fn disable_totp(&self, admin: &str, username: &str) -> Result<(), AppError> {
        self.execute::<User>(username, &admin_actor(admin, Some(username)), || {
            UserCommand::DisableTotp
        })
        .await?;
        Ok(())
    }

    /// The step of a valid, unused TOTP `code` of a sealed secret, taken.
    fn totp_step(&self, username: &str, sealed: &str, code: &str) -> Option<u64> {
        let deps = &self.inner.deps;
        let secret = match deps.secrets.open(sealed) {
            Ok(secret) => secret,
            Err(err) => {
                tracing::error!(username, error = %err, "cannot open a TOTP secret");
                return None;
            }
        };
        let step = deps
            .otp
            .verify(&secret, code, deps.clock.now().timestamp())?;
        self.inner.replays.take(username, step).then_some(step)
    }

    /// Checks a second factor `code` of `user` at a login: a TOTP code not
    /// used before, or an unused recovery code (spent by `actor`). The
    /// error is the reason to record.
    pub(crate) async fn check_second_factor(
        &self,
        actor: &Actor,
        user: &User,
        code: &str,
    ) -> Result<(), &'static str> {
        let Some(totp) = &user.totp else {
            return Ok(());
        };
        let code = code.trim();
        if code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
            return match self.totp_step(&user.username, &totp.secret, code) {
                Some(_) => Ok(()),
                None => Err("wrong second factor code"),
            };
        }
        let hash = recovery_hash(code);
        if !totp.recovery_codes.contains(&hash) {
            return Err("wrong second factor code");
        }
        let command = UserCommand::UseRecoveryCode { hash };
        match self
            .execute::<User>(&user.username, actor, || command.clone())
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                tracing::error!(username = %user.username, error = %err, "cannot spend a recovery code");
                Err("recovery code not accepted")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_is_split_off_the_end_of_a_password() {
        assert_eq!(split_code("secret123456"), Some(("secret", "123456")));
        assert_eq!(split_code("123456"), Some(("", "123456")));
        assert_eq!(split_code("secret12345x"), None);
        assert_eq!(split_code("12345"), None);
        assert_eq!(split_code("pässwörd"), None);
    }

    #[test]
    fn a_step_is_taken_once_and_never_an_earlier_one() {
        let replays = Replays::default();
        assert!(replays.take("alice", 10));
        assert!(!replays.take("alice", 10));
        assert!(!replays.take("alice", 9));
        assert!(replays.take("bob", 10));
        assert!(replays.take("alice", 11));
    }

    #[test]
    fn recovery_codes_compare_without_case_or_dashes() {
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(
            recovery_hash(&code),
            recovery_hash(&code.to_uppercase().replace('-', ""))
        );
        assert_ne!(recovery_hash(&code), recovery_hash(&new_recovery_code()));
    }
}
