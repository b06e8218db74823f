//! Password rules: what a new password must be.

use serde::{Deserialize, Serialize};

/// What a new password must be (`[passwords]` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordPolicy {
    /// The fewest characters.
    pub min_length: usize,
    /// The fewest kinds of character among lower case, upper case, digits
    /// and others.
    pub min_classes: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min_length: 8,
            min_classes: 1,
        }
    }
}

impl PasswordPolicy {
    /// Why `password` is refused, if it is.
    pub fn check(&self, password: &str) -> Result<(), String> {
        if password.is_empty() {
            return Err("the password is empty".to_string());
        }
        if password.chars().count() < self.min_length {
            return Err(format!(
                "a password needs at least {} characters",
                self.min_length
            ));
        }
        let classes = [
            password.chars().any(char::is_lowercase),
            password.chars().any(char::is_uppercase),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| !c.is_alphanumeric()),
        ]
        .into_iter()
        .filter(|&present| present)
        .count();
        if classes < self.min_classes {
            return Err(format!(
                "a password needs at least {} of: lower case, upper case, digits, other characters",
                self.min_classes
            ));
        }
        Ok(())
    }
}
