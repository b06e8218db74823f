//! Policies: ordered rules mapping a virtual path prefix to permissions, and
//! the pure evaluation that decides whether an action is allowed.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::aggregate::AggregateRoot;
use crate::path::VirtualPath;

/// One thing a user may do to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// List a directory and stat its entries.
    List,
    /// Read a file.
    Download,
    /// Create a new file.
    Upload,
    /// Replace or change an existing file.
    Overwrite,
    /// Remove a file.
    Delete,
    /// Rename or move a file or directory (checked on source and target).
    Rename,
    /// Create a directory.
    CreateDirs,
    /// Remove a directory.
    RemoveDirs,
    /// Create a symbolic link.
    Symlink,
    /// Change permissions and times.
    ChmodChtimes,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 10] = [
        Permission::List,
        Permission::Download,
        Permission::Upload,
        Permission::Overwrite,
        Permission::Delete,
        Permission::Rename,
        Permission::CreateDirs,
        Permission::RemoveDirs,
        Permission::Symlink,
        Permission::ChmodChtimes,
    ];

    /// The stable lower-case name (`create_dirs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::List => "list",
            Permission::Download => "download",
            Permission::Upload => "upload",
            Permission::Overwrite => "overwrite",
            Permission::Delete => "delete",
            Permission::Rename => "rename",
            Permission::CreateDirs => "create_dirs",
            Permission::RemoveDirs => "remove_dirs",
            Permission::Symlink => "symlink",
            Permission::ChmodChtimes => "chmod_chtimes",
        }
    }

    /// Parses a name as given by [`Permission::as_str`], or `*` for all.
    pub fn parse_list(text: &str) -> Result<BTreeSet<Permission>, PolicyError> {
        let mut set = BTreeSet::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                set.extend(Permission::ALL);
                continue;
            }
            let perm = Permission::ALL
                .into_iter()
                .find(|p| p.as_str() == name)
                .ok_or_else(|| PolicyError::UnknownPermission {
                    name: name.to_string(),
                })?;
            set.insert(perm);
        }
        Ok(set)
    }
}

/// A path prefix and the permissions granted below it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule applies to this path and everything below it.
    pub path_prefix: VirtualPath,
    /// What is allowed there; everything else is denied.
    pub permissions: BTreeSet<Permission>,
}

impl Rule {
    /// Parses `PREFIX=perm,perm` (e.g. `/inbox=list,upload`).
    pub fn parse(text: &str) -> Result<Rule, PolicyError> {
        let (prefix, perms) = text
            .split_once('=')
            .ok_or_else(|| PolicyError::MalformedRule {
                text: text.to_string(),
            })?;
        let path_prefix =
            VirtualPath::parse(prefix.trim()).map_err(|_| PolicyError::MalformedRule {
                text: text.to_string(),
            })?;
        Ok(Rule {
            path_prefix,
            permissions: Permission::parse_list(perms)?,
        })
    }
}

/// Which rule decided an evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the action is allowed.
    pub allowed: bool,
    /// `policy:prefix` of the deciding rule, or `default` when none matched.
    pub rule: String,
}

/// A named policy as evaluated: its name and rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedRules<'a> {
    /// The policy name.
    pub policy: &'a str,
    /// Its rules.
    pub rules: &'a [Rule],
}

/// Decides whether `permission` on `path` is allowed.
///
/// Only the rules with the longest matching prefix across all the
/// subject's policies count; their grants add up (a group policy and a user
/// policy for the same folder combine). A subject with no matching rule at
/// all is allowed, as an SFTPGo user with the default `/: *` permissions
/// would be: attach a policy to restrict it.
pub fn evaluate(
    policies: &[NamedRules<'_>],
    permission: Permission,
    path: &VirtualPath,
) -> Decision {
    let matching = policies
        .iter()
        .flat_map(|named| named.rules.iter().map(move |rule| (named.policy, rule)))
        .filter(|(_, rule)| path.starts_with(&rule.path_prefix));
    let Some(depth) = matching
        .clone()
        .map(|(_, rule)| rule.path_prefix.components().count())
        .max()
    else {
        return Decision {
            allowed: true,
            rule: "default".to_string(),
        };
    };
    let mut deepest = matching.filter(|(_, rule)| rule.path_prefix.components().count() == depth);
    let first = deepest
        .clone()
        .next()
        .expect("the maximum depth comes from a matching rule");
    let (policy, rule, allowed) =
        match deepest.find(|(_, rule)| rule.permissions.contains(&permission)) {
            Some((policy, rule)) => (policy, rule, true),
            None => (first.0, first.1, false),
        };
    Decision {
        allowed,
        rule: format!("{policy}:{}", rule.path_prefix),
    }
}

/// Why a policy command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy already exists.
    #[error("policy already exists")]
    AlreadyExists,
    /// The policy does not exist (or was deleted).
    #[error("policy does not exist")]
    NotFound,
    /// A policy name must be 1–64 characters of `[A-Za-z0-9._-]`.
    #[error("invalid policy name {name:?}")]
    InvalidName {
        /// The refused name.
        name: String,
    },
    /// A permission name is not known.
    #[error("unknown permission {name:?}")]
    UnknownPermission {
        /// The refused name.
        name: String,
    },
    /// A rule is not of the form `PREFIX=perm,perm`.
    #[error("malformed rule {text:?}: expected PREFIX=perm,perm")]
    MalformedRule {
        /// The refused text.
        text: String,
    },
}
crate::refusal!(PolicyError, { AlreadyExists => AlreadyExists, NotFound => NotFound, InvalidName => Invalid, UnknownPermission => Invalid, MalformedRule => Invalid });

/// Checks an identifier-style name (users, groups, policies).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with(['.', '-'])
}

/// The Policy aggregate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// The name (also the aggregate id); empty before creation.
    pub name: String,
    /// The rules, in the order given.
    pub rules: Vec<Rule>,
    /// Whether the policy was deleted.
    pub deleted: bool,
}

/// Commands on a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyCommand {
    /// Creates the policy.
    Create {
        /// Its name.
        name: String,
        /// Its rules.
        rules: Vec<Rule>,
    },
    /// Replaces all rules.
    ReplaceRules {
        /// The new rules.
        rules: Vec<Rule>,
    },
    /// Deletes the policy.
    Delete,
}

/// Events of a policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum PolicyEvent {
    PolicyCreated { name: String, rules: Vec<Rule> },
    PolicyRulesReplaced { rules: Vec<Rule> },
    PolicyDeleted {},
}
crate::domain_event!(PolicyEvent, "1", { PolicyCreated, PolicyRulesReplaced, PolicyDeleted });

impl Policy {
    /// Whether the policy exists (created and not deleted).
    pub fn exists(&self) -> bool {
        !self.name.is_empty() && !self.deleted
    }
}

impl AggregateRoot for Policy {
    const TYPE: &'static str = "policy";
    type Command = PolicyCommand;
    type Event = PolicyEvent;
    type Error = PolicyError;

    fn decide(&self, command: PolicyCommand) -> Result<Vec<PolicyEvent>, PolicyError> {
        match command {
            PolicyCommand::Create { name, rules } => {
                if self.exists() {
                    return Err(PolicyError::AlreadyExists);
                }
                if !valid_name(&name) {
                    return Err(PolicyError::InvalidName { name });
                }
                Ok(vec![PolicyEvent::PolicyCreated { name, rules }])
            }
            PolicyCommand::ReplaceRules { rules } => {
                if !self.exists() {
                    return Err(PolicyError::NotFound);
                }
                Ok(vec![PolicyEvent::PolicyRulesReplaced { rules }])
            }
            PolicyCommand::Delete => {
                if !self.exists() {
                    return Err(PolicyError::NotFound);
                }
                Ok(vec![PolicyEvent::PolicyDeleted {}])
            }
        }
    }

    fn apply(&mut self, event: PolicyEvent) {
        match event {
            PolicyEvent::PolicyCreated { name, rules } => {
                *self = Policy {
                    name,
                    rules,
                    deleted: false,
                };
            }
            PolicyEvent::PolicyRulesReplaced { rules } => self.rules = rules,
            PolicyEvent::PolicyDeleted {} => self.deleted = true,
        }
    }
}

#[cfg(test)]
mod tests;
