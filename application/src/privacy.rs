//! Personal data in events, held so that it can be erased: each value is
//! sealed with a subject key (`tgpd1:KEY_ID:DATA`) before its command is
//! decided, so the log, its audit hashes and every proof commit to the
//! ciphertext. Erasing a subject destroys its keys; the records stay intact
//! and verifiable, and every reader shows the values as `[erased]`.
//!
//! Keys belong to subjects: a user's profile (`user:NAME`, one key per
//! change), and a connection's address (`session:ID`, one key per session,
//! given to `user:NAME` when the session logs in, so that the addresses a
//! user connected from are erased with the user).

use cqrs_es::persist::PersistedEventRepository;
use serde_json::Value;
use tollgate_domain::user::{User, UserCommand, UserProfile};
use tollgate_ports::outbound::{LoggedEvent, SubjectKey};

use crate::aggregates::Actor;
use crate::{AppError, Tollgate};

/// How an erased value reads.
pub const ERASED: &str = "[erased]";

/// The prefix of a sealed value.
const PREFIX: &str = "tgpd1:";

/// The fields of payloads and metadata that may hold sealed values.
const PERSONAL_FIELDS: [&str; 3] = ["remote_addr", "full_name", "email"];

/// What personal data is sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrivacyPolicy {
    /// Whether client addresses are sealed (per session).
    pub seal_remote_addr: bool,
}

impl Default for PrivacyPolicy {
    fn default() -> Self {
        PrivacyPolicy {
            seal_remote_addr: true,
        }
    }
}

fn user_subject(username: &str) -> String {
    format!("user:{username}")
}

/// The key id named by a sealed value.
fn key_of(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)?.split_once(':').map(|(k, _)| k)
}

/// Calls `visit` on every string of a personal field in `value`.
fn personal_strings(value: &mut Value, visit: &mut impl FnMut(&mut String)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child {
                    Value::String(text) if PERSONAL_FIELDS.contains(&key.as_str()) => visit(text),
                    _ => personal_strings(child, visit),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| personal_strings(item, visit)),
        _ => {}
    }
}

impl<R: PersistedEventRepository + Clone + 'static> Tollgate<R> {
    /// Seals each value with one new key of `subject`.
    async fn seal_new(&self, subject: &str, values: &[&str]) -> Result<Vec<String>, AppError> {
        let deps = &self.inner.deps;
        let key = SubjectKey {
            key_id: uuid::Uuid::new_v4().to_string(),
            subject: subject.to_string(),
            wrapped: deps.subject_cipher.new_wrapped_key(),
        };
        // The key is stored before anything it seals can be committed.
        deps.subject_keys.add_subject_key(&key).await?;
        values
            .iter()
            .map(|value| {
                let data = deps
                    .subject_cipher
                    .seal_with(&key.wrapped, &key.key_id, value)
                    .map_err(|e| AppError::Invalid(e.to_string()))?;
                Ok(format!("{PREFIX}{}:{data}", key.key_id))
            })
            .collect()
    }

    /// A client address as the events of session `session_id` record it:
    /// sealed with the session's own key when the policy says so.
    pub(crate) async fn recorded_address(
        &self,
        session_id: &str,
        remote_addr: &str,
    ) -> Result<String, AppError> {
        if !self.inner.deps.privacy.seal_remote_addr {
            return Ok(remote_addr.to_string());
        }
        let subject = format!("session:{session_id}");
        Ok(self.seal_new(&subject, &[remote_addr]).await?.remove(0))
    }

    /// Gives the key of a session's recorded address to the user who
    /// logged in on it.
    pub(crate) async fn adopt_address(
        &self,
        recorded: &str,
        username: &str,
    ) -> Result<(), AppError> {
        if let Some(key_id) = key_of(recorded) {
            self.inner
                .deps
                .subject_keys
                .assign_subject_key(key_id, &user_subject(username))
                .await?;
        }
        Ok(())
    }

    /// A user's profile with the given fields sealed by a new key of the
    /// user; a field given empty is cleared, one not given stays as in
    /// `current`.
    pub(crate) async fn seal_profile(
        &self,
        username: &str,
        current: &UserProfile,
        full_name: Option<&str>,
        email: Option<&str>,
    ) -> Result<UserProfile, AppError> {
        let given: Vec<&str> = [full_name, email]
            .into_iter()
            .flatten()
            .filter(|v| !v.is_empty())
            .collect();
        let mut sealed = if given.is_empty() {
            Vec::new()
        } else {
            self.seal_new(&user_subject(username), &given).await?
        }
        .into_iter();
        let mut field = |new: Option<&str>, old: &Option<String>| match new {
            None => old.clone(),
            Some("") => None,
            Some(_) => sealed.next(),
        };
        Ok(UserProfile {
            full_name: field(full_name, &current.full_name),
            email: field(email, &current.email),
        })
    }

    /// Replaces every sealed value in the events by its clear text, or by
    /// `[erased]` when its key was destroyed.
    pub(crate) async fn open_personal(&self, events: &mut [LoggedEvent]) -> Result<(), AppError> {
        let mut parts: Vec<&mut Value> = events
            .iter_mut()
            .flat_map(|e| [&mut e.payload, &mut e.metadata])
            .collect();
        self.open_values(&mut parts).await
    }

    /// Replaces every sealed value of a personal field within `values`.
    pub(crate) async fn open_values(&self, values: &mut [&mut Value]) -> Result<(), AppError> {
        let mut ids = Vec::new();
        for value in values.iter_mut() {
            personal_strings(value, &mut |text| {
                if let Some(key) = key_of(text) {
                    ids.push(key.to_string());
                }
            });
        }
        if ids.is_empty() {
            return Ok(());
        }
        ids.sort();
        ids.dedup();
        let keys = self.inner.deps.subject_keys.subject_keys(&ids).await?;
        let cipher = &self.inner.deps.subject_cipher;
        for value in values.iter_mut() {
            personal_strings(value, &mut |text| {
                let Some(key_id) = key_of(text) else { return };
                let data = &text[PREFIX.len() + key_id.len() + 1..];
                let clear = keys
                    .iter()
                    .find(|k| k.key_id == key_id)
                    .and_then(|k| cipher.open_with(&k.wrapped, key_id, data).ok());
                *text = clear.unwrap_or_else(|| ERASED.to_string());
            });
        }
        Ok(())
    }

    /// A user's sealed profile in clear.
    pub(crate) async fn open_profile(
        &self,
        profile: &UserProfile,
    ) -> Result<UserProfile, AppError> {
        let mut value = serde_json::to_value(profile).map_err(|e| AppError::Store(Box::new(e)))?;
        self.open_values(&mut [&mut value]).await?;
        serde_json::from_value(value).map_err(|e| AppError::Store(Box::new(e)))
    }

    /// Erases user `username` (GDPR): destroys every key of the user
    /// (profile and the addresses of its sessions), then records the
    /// erasure (`UserDeleted` if the account still exists, `UserErased`
    /// with the keys' ids). Returns those ids.
    pub(crate) async fn erase_personal_data(
        &self,
        actor: &Actor,
        username: &str,
    ) -> Result<Vec<String>, AppError> {
        let key_ids = self
            .inner
            .deps
            .subject_keys
            .erase_subject(&user_subject(username))
            .await?;
        tracing::info!(
            username,
            keys = key_ids.len(),
            "personal data of the user erased"
        );
        self.execute::<User>(username, actor, || UserCommand::Erase {
            key_ids: key_ids.clone(),
        })
        .await?;
        Ok(key_ids)
    }
}
