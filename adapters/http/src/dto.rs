//! The JSON shapes of the API, as the OpenAPI document describes them, and
//! their conversion from and to the port's types.

use poem_openapi::{Enum, Object};
use tollgate_domain::access::{AccessRules, TimeWindow};
use tollgate_domain::admin::Role;
use tollgate_ports::api::{
    AdminRecord, ApiKeyRecord, BanRecord, EventRecord, FolderRecord, GroupRecord,
    MountCheckFailure, MountRecord, PolicyRecord, RuleRecord, SessionRecord, StorageRecord,
    TotpEnrolmentRecord, TransferRecord, UserRecord,
};

/// An administrator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum RoleDto {
    /// Full control.
    Admin,
    /// Read-only access to everything, including the audit trail.
    Auditor,
}

impl From<RoleDto> for Role {
    fn from(role: RoleDto) -> Role {
        match role {
            RoleDto::Admin => Role::Admin,
            RoleDto::Auditor => Role::Auditor,
        }
    }
}

impl From<Role> for RoleDto {
    fn from(role: Role) -> RoleDto {
        match role {
            Role::Admin => RoleDto::Admin,
            Role::Auditor => RoleDto::Auditor,
        }
    }
}

/// A bearer token.
#[derive(Debug, Object)]
pub(crate) struct Token {
    /// The JWT to send as `Authorization: Bearer …`.
    pub(crate) access_token: String,
    /// Always `Bearer`.
    pub(crate) token_type: String,
    /// Seconds until the token expires.
    pub(crate) expires_in: u64,
}

/// Who the token belongs to.
#[derive(Debug, Object)]
pub(crate) struct Whoami {
    /// The principal's name.
    pub(crate) name: String,
    /// `admin` or `user`.
    pub(crate) kind: String,
    /// The role in force, for administrators.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) role: Option<RoleDto>,
}

/// A mount shown in a namespace at a virtual path.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct Folder {
    /// Where the mount appears, e.g. `/partners-s3` (not `/`; folders do
    /// not nest).
    #[oai(validator(min_length = 2, max_length = 4096))]
    pub(crate) path: String,
    /// The mount's name (must exist).
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) mount: String,
}

impl From<FolderRecord> for Folder {
    fn from(record: FolderRecord) -> Folder {
        Folder {
            path: record.path,
            mount: record.mount,
        }
    }
}

impl From<Folder> for FolderRecord {
    fn from(folder: Folder) -> FolderRecord {
        FolderRecord {
            path: folder.path,
            mount: folder.mount,
        }
    }
}

pub(crate) fn folder_records(folders: Vec<Folder>) -> Vec<FolderRecord> {
    folders.into_iter().map(Into::into).collect()
}

fn folders_of(records: Vec<FolderRecord>) -> Vec<Folder> {
    records.into_iter().map(Into::into).collect()
}

/// Hours of some weekdays (UTC) when logins are allowed.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct Window {
    /// Weekdays, 0 = Monday … 6 = Sunday; empty means every day.
    #[oai(default)]
    pub(crate) days: Vec<u8>,
    /// From this time (`HH:MM`, UTC, inclusive).
    pub(crate) from: String,
    /// Until this time (`HH:MM`, UTC, exclusive; `24:00` is midnight).
    pub(crate) to: String,
}

/// The conditions of logins; an empty or absent field restricts nothing.
/// A user's field applies when set, else the first of their groups' that
/// sets it.
#[derive(Debug, Clone, Default, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct Access {
    /// Protocols allowed: `sftp`, `scp`, `ftp`, `ftps`, `webdav`, `http`.
    #[oai(default)]
    pub(crate) protocols: Vec<String>,
    /// Credentials allowed: `password`, `public_key` (tokens and API keys
    /// come from a login these conditions already checked).
    #[oai(default)]
    pub(crate) login_methods: Vec<String>,
    /// Only from these address blocks (`10.0.0.0/8`, `2001:db8::/32`).
    #[oai(default)]
    pub(crate) allow_from: Vec<String>,
    /// Never from these address blocks (checked first).
    #[oai(default)]
    pub(crate) deny_from: Vec<String>,
    /// At most this many sessions at once.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) max_sessions: Option<u32>,
    /// Only within one of these windows.
    #[oai(default)]
    pub(crate) time_windows: Vec<Window>,
    /// Uploads of all the user's sessions together, at most this many
    /// bytes a second (every protocol).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "1")))]
    pub(crate) upload_bytes_per_sec: Option<u64>,
    /// Downloads of all the user's sessions together, at most this many
    /// bytes a second (every protocol).
    #[oai(skip_serializing_if_is_none, validator(minimum(value = "1")))]
    pub(crate) download_bytes_per_sec: Option<u64>,
    /// The files the user stores, at most this many bytes together
    /// (checked before and during every upload).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) quota_bytes: Option<u64>,
    /// The files the user stores, at most this many.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) quota_files: Option<u64>,
    /// Whether logins need a TOTP second factor: a user without one
    /// enrolled and confirmed is refused.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) require_totp: Option<bool>,
}

fn minutes(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a time of day (HH:MM)");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    let (hours, minutes): (u16, u16) = (
        hours.parse().map_err(|_| bad())?,
        minutes.parse().map_err(|_| bad())?,
    );
    if minutes > 59 || hours * 60 + minutes > 1440 {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

fn named<T: serde::de::DeserializeOwned>(what: &str, names: Vec<String>) -> Result<Vec<T>, String> {
    names
        .into_iter()
        .map(|name| {
            serde_json::from_value(serde_json::Value::String(name.clone()))
                .map_err(|_| format!("{name:?} is not a {what}"))
        })
        .collect()
}

fn blocks(texts: Vec<String>) -> Result<Vec<tollgate_domain::access::Cidr>, String> {
    texts.iter().map(|text| text.parse()).collect()
}

impl TryFrom<Access> for AccessRules {
    type Error = String;
    fn try_from(access: Access) -> Result<AccessRules, String> {
        Ok(AccessRules {
            protocols: named("protocol", access.protocols)?,
            login_methods: named("login method", access.login_methods)?,
            allow_from: blocks(access.allow_from)?,
            deny_from: blocks(access.deny_from)?,
            max_sessions: access.max_sessions,
            time_windows: access
                .time_windows
                .into_iter()
                .map(|w| {
                    Ok(TimeWindow {
                        days: w.days,
                        from_minute: minutes(&w.from)?,
                        to_minute: minutes(&w.to)?,
                    })
                })
                .collect::<Result<_, String>>()?,
            upload_bytes_per_sec: access.upload_bytes_per_sec,
            download_bytes_per_sec: access.download_bytes_per_sec,
            quota_bytes: access.quota_bytes,
            quota_files: access.quota_files,
            require_totp: access.require_totp,
        })
    }
}

fn names_of<T: serde::Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok()?.as_str().map(str::to_string))
        .collect()
}

impl From<AccessRules> for Access {
    fn from(rules: AccessRules) -> Access {
        let time = |minute: u16| format!("{:02}:{:02}", minute / 60, minute % 60);
        Access {
            protocols: names_of(&rules.protocols),
            login_methods: names_of(&rules.login_methods),
            allow_from: rules.allow_from.iter().map(ToString::to_string).collect(),
            deny_from: rules.deny_from.iter().map(ToString::to_string).collect(),
            max_sessions: rules.max_sessions,
            time_windows: rules
                .time_windows
                .into_iter()
                .map(|w| Window {
                    days: w.days,
                    from: time(w.from_minute),
                    to: time(w.to_minute),
                })
                .collect(),
            upload_bytes_per_sec: rules.upload_bytes_per_sec,
            download_bytes_per_sec: rules.download_bytes_per_sec,
            quota_bytes: rules.quota_bytes,
            quota_files: rules.quota_files,
            require_totp: rules.require_totp,
        }
    }
}

/// A file-transfer user.
#[derive(Debug, Object)]
pub(crate) struct User {
    /// Login name.
    pub(crate) username: String,
    /// Root of the user's namespace on storage.
    pub(crate) home: String,
    /// Whether logins are allowed.
    pub(crate) enabled: bool,
    /// Whether a password is set (the password itself is never returned).
    pub(crate) has_password: bool,
    /// OpenSSH public keys (`type base64`).
    pub(crate) public_keys: Vec<String>,
    /// Groups.
    pub(crate) groups: Vec<String>,
    /// Directly attached policies.
    pub(crate) policies: Vec<String>,
    /// Whether FTP needs TLS: plain FTP logins and data connections
    /// without `PROT P` are refused.
    pub(crate) ftp_require_tls: bool,
    /// The person's name (`[erased]` after an erasure).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) full_name: Option<String>,
    /// The person's email address (`[erased]` after an erasure).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) email: Option<String>,
    /// Mounts shown in the user's namespace (the groups' come on top).
    pub(crate) folders: Vec<Folder>,
    /// The conditions of the user's own logins.
    pub(crate) access: Access,
    /// Bytes the user stores: completed uploads less removals, kept from
    /// the event log (what `quota_bytes` is checked against).
    pub(crate) used_bytes: u64,
    /// Files the user stores, likewise (checked against `quota_files`).
    pub(crate) used_files: u64,
    /// For a user provisioned from a directory on their first login, the
    /// directory entry (the directory checks their password and says
    /// their groups).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) directory_dn: Option<String>,
    /// The TOTP second factor: `pending` until a code confirms the
    /// enrolment, then `enabled`; absent without one.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) totp: Option<String>,
    /// The version to send in `If-Match`.
    pub(crate) version: u64,
}

impl User {
    pub(crate) fn new(record: UserRecord, version: u64) -> User {
        User {
            username: record.username,
            home: record.home,
            enabled: record.enabled,
            has_password: record.has_password,
            public_keys: record.public_keys,
            groups: record.groups,
            policies: record.policies,
            ftp_require_tls: record.ftp_require_tls,
            full_name: record.full_name,
            email: record.email,
            folders: folders_of(record.folders),
            access: record.access.into(),
            used_bytes: record.used_bytes,
            used_files: record.used_files,
            directory_dn: record.directory_dn,
            totp: record.totp,
            version,
        }
    }
}

/// A new user.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewUser {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) username: String,
    /// Clear text; only its Argon2id hash is stored. It must meet the
    /// password policy (`[passwords]`).
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub(crate) password: Option<String>,
    /// Instead of `password`: a hash imported from another system
    /// (Argon2id, bcrypt `$2a$`/`$2b$`/`$2y$`, SHA-512-crypt `$6$`, or
    /// PBKDF2 as SFTPGo stores it, `$pbkdf2-sha256$ROUNDS$SALT$DIGEST`);
    /// replaced by an Argon2id hash at the user's next password login.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub(crate) password_hash: Option<String>,
    /// OpenSSH public keys.
    #[oai(default)]
    pub(crate) public_keys: Vec<String>,
    /// Root of the user's namespace on storage.
    #[oai(validator(min_length = 1, max_length = 4096))]
    pub(crate) home: String,
    /// Groups (must exist).
    #[oai(default)]
    pub(crate) groups: Vec<String>,
    /// Policies (must exist).
    #[oai(default)]
    pub(crate) policies: Vec<String>,
    /// Refuse plain FTP: logins and data connections need TLS.
    #[oai(default)]
    pub(crate) ftp_require_tls: bool,
    /// The person's name: personal data, recorded sealed with a key that
    /// an erasure destroys.
    #[oai(validator(max_length = 256))]
    pub(crate) full_name: Option<String>,
    /// The person's email address, sealed likewise.
    #[oai(validator(max_length = 320))]
    pub(crate) email: Option<String>,
    /// Mounts shown in the user's namespace.
    #[oai(default)]
    pub(crate) folders: Vec<Folder>,
}

/// Changes to a user; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct UserUpdate {
    /// A new password.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub(crate) password: Option<String>,
    /// Replaces the public keys.
    pub(crate) public_keys: Option<Vec<String>>,
    /// Replaces the groups.
    pub(crate) groups: Option<Vec<String>>,
    /// Replaces the policies.
    pub(crate) policies: Option<Vec<String>>,
    /// Allows or refuses logins.
    pub(crate) enabled: Option<bool>,
    /// Whether FTP needs TLS.
    pub(crate) ftp_require_tls: Option<bool>,
    /// The person's name; empty clears it.
    #[oai(validator(max_length = 256))]
    pub(crate) full_name: Option<String>,
    /// The person's email address; empty clears it.
    #[oai(validator(max_length = 320))]
    pub(crate) email: Option<String>,
    /// Replaces the virtual folders.
    pub(crate) folders: Option<Vec<Folder>>,
    /// Replaces the conditions of the user's logins.
    pub(crate) access: Option<Access>,
}

/// What an erasure destroyed.
#[derive(Debug, Object)]
pub(crate) struct Erasure {
    /// The user whose personal data was erased.
    pub(crate) username: String,
    /// The ids of the destroyed subject keys.
    pub(crate) destroyed_keys: Vec<String>,
}

/// A page of users.
#[derive(Debug, Object)]
pub(crate) struct UserPage {
    /// The users.
    pub(crate) items: Vec<User>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// A group of users sharing policies.
#[derive(Debug, Object)]
pub(crate) struct Group {
    /// The group's name.
    pub(crate) name: String,
    /// Policies every member gets.
    pub(crate) policies: Vec<String>,
    /// Mounts shown in every member's namespace.
    pub(crate) folders: Vec<Folder>,
    /// The conditions of members' logins, where a member sets none.
    pub(crate) access: Access,
    /// The version to send in `If-Match`.
    pub(crate) version: u64,
}

impl Group {
    pub(crate) fn new(record: GroupRecord, version: u64) -> Group {
        Group {
            name: record.name,
            policies: record.policies,
            folders: folders_of(record.folders),
            access: record.access.into(),
            version,
        }
    }
}

/// A new group.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewGroup {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) name: String,
    /// Policies (must exist).
    #[oai(default)]
    pub(crate) policies: Vec<String>,
    /// Mounts shown in every member's namespace.
    #[oai(default)]
    pub(crate) folders: Vec<Folder>,
}

/// Changes to a group; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct GroupUpdate {
    /// Replaces the policies.
    pub(crate) policies: Option<Vec<String>>,
    /// Replaces the virtual folders.
    pub(crate) folders: Option<Vec<Folder>>,
    /// Replaces the conditions of members' logins.
    pub(crate) access: Option<Access>,
}

/// A page of groups.
#[derive(Debug, Object)]
pub(crate) struct GroupPage {
    /// The groups.
    pub(crate) items: Vec<Group>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// One rule: a virtual path prefix and what it allows below it.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct PolicyRule {
    /// A virtual path such as `/` or `/incoming`.
    #[oai(validator(min_length = 1, max_length = 4096))]
    pub(crate) path: String,
    /// Any of `list`, `download`, `upload`, `overwrite`, `delete`,
    /// `rename`, `create_dirs`, `remove_dirs`, `symlink`, `chmod_chtimes`,
    /// or `*` for all.
    pub(crate) permissions: Vec<String>,
}

impl From<RuleRecord> for PolicyRule {
    fn from(rule: RuleRecord) -> PolicyRule {
        PolicyRule {
            path: rule.path,
            permissions: rule.permissions,
        }
    }
}

impl From<PolicyRule> for RuleRecord {
    fn from(rule: PolicyRule) -> RuleRecord {
        RuleRecord {
            path: rule.path,
            permissions: rule.permissions,
        }
    }
}

/// A policy: ordered rules; the longest matching prefix decides.
#[derive(Debug, Object)]
pub(crate) struct Policy {
    /// The policy's name.
    pub(crate) name: String,
    /// Its rules.
    pub(crate) rules: Vec<PolicyRule>,
    /// The version to send in `If-Match`.
    pub(crate) version: u64,
}

impl Policy {
    pub(crate) fn new(record: PolicyRecord, version: u64) -> Policy {
        Policy {
            name: record.name,
            rules: record.rules.into_iter().map(Into::into).collect(),
            version,
        }
    }
}

/// A new policy.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewPolicy {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) name: String,
    /// Its rules.
    pub(crate) rules: Vec<PolicyRule>,
}

/// Changes to a policy.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct PolicyUpdate {
    /// Replaces the rules.
    pub(crate) rules: Vec<PolicyRule>,
}

/// A page of policies.
#[derive(Debug, Object)]
pub(crate) struct PolicyPage {
    /// The policies.
    pub(crate) items: Vec<Policy>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// An administrator.
#[derive(Debug, Object)]
pub(crate) struct Admin {
    /// Login name.
    pub(crate) username: String,
    /// Role.
    pub(crate) role: RoleDto,
    /// Whether logins and tokens are accepted.
    pub(crate) enabled: bool,
    /// The version to send in `If-Match`.
    pub(crate) version: u64,
}

impl Admin {
    pub(crate) fn new(record: AdminRecord, version: u64) -> Admin {
        Admin {
            username: record.username,
            role: record.role.into(),
            enabled: record.enabled,
            version,
        }
    }
}

/// A new administrator.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewAdmin {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) username: String,
    /// Clear text; only its Argon2id hash is stored.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub(crate) password: String,
    /// Role.
    pub(crate) role: RoleDto,
}

/// Changes to an administrator.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct AdminUpdate {
    /// A new password.
    #[oai(validator(min_length = 1, max_length = 1024))]
    pub(crate) password: Option<String>,
    /// A new role.
    pub(crate) role: Option<RoleDto>,
    /// Allows or refuses logins.
    pub(crate) enabled: Option<bool>,
}

/// A page of administrators.
#[derive(Debug, Object)]
pub(crate) struct AdminPage {
    /// The administrators.
    pub(crate) items: Vec<Admin>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// An API key (never its secret).
#[derive(Debug, Object)]
pub(crate) struct ApiKey {
    /// The key's id (the public part of the key).
    pub(crate) id: String,
    /// A label.
    pub(crate) name: String,
    /// The administrator the key acts as.
    pub(crate) admin: String,
    /// The role the key grants (never more than its administrator's).
    pub(crate) role: RoleDto,
    /// When the key stops working.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) expires_at: Option<String>,
    /// Whether the key was revoked.
    pub(crate) revoked: bool,
}

impl From<ApiKeyRecord> for ApiKey {
    fn from(record: ApiKeyRecord) -> ApiKey {
        ApiKey {
            id: record.id,
            name: record.name,
            admin: record.admin,
            role: record.role.into(),
            expires_at: record.expires_at,
            revoked: record.revoked,
        }
    }
}

/// A new API key.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewApiKey {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) name: String,
    /// The role; defaults to `admin`, capped by the creator's role.
    pub(crate) role: Option<RoleDto>,
    /// RFC 3339 time after which the key is refused.
    pub(crate) expires_at: Option<String>,
}

/// A created API key: the only answer that contains its value.
#[derive(Debug, Object)]
pub(crate) struct CreatedApiKey {
    /// The value to send as `X-Api-Key`; shown once.
    pub(crate) key: String,
    /// The key's record.
    pub(crate) api_key: ApiKey,
}

/// A page of API keys.
#[derive(Debug, Object)]
pub(crate) struct ApiKeyPage {
    /// The keys.
    pub(crate) items: Vec<ApiKey>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// The outcome of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub(crate) enum Outcome {
    /// It happened.
    Success,
    /// It was attempted and failed.
    Failure,
    /// A policy refused it.
    Denied,
    /// It started and did not finish.
    Aborted,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
            Outcome::Aborted => "aborted",
        }
    }
}

/// One audit record, with the PCI DSS 10.2.2 fields (user, event type,
/// time, outcome, origin, affected resource) and the full event.
#[derive(Debug, Object)]
pub(crate) struct Event {
    /// The global position in the event log (gapless, commit order).
    pub(crate) position: u64,
    /// A stable id for de-duplication.
    pub(crate) event_id: String,
    /// When it was recorded (RFC 3339, UTC).
    pub(crate) time: String,
    /// Who acted: a user, an administrator, `anonymous` or `system`.
    pub(crate) actor: String,
    /// The user concerned.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) user: Option<String>,
    /// The event type.
    pub(crate) event_type: String,
    /// success, failure, denied or aborted.
    pub(crate) outcome: String,
    /// The protocol of the session.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) protocol: Option<String>,
    /// The client's address (origin).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) remote_addr: Option<String>,
    /// The session.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) session_id: Option<String>,
    /// The affected resource: `aggregate_type/aggregate_id`.
    pub(crate) resource: String,
    /// The affected path.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) path: Option<String>,
    /// A rename's target path.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) target: Option<String>,
    /// Bytes moved.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) bytes: Option<u64>,
    /// SHA-256 of a transferred file.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) sha256: Option<String>,
    /// Reason, error or deciding rule.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) detail: Option<String>,
    /// The event's payload.
    pub(crate) payload: serde_json::Value,
}

impl From<EventRecord> for Event {
    fn from(e: EventRecord) -> Event {
        Event {
            position: e.position,
            event_id: e.event_id,
            time: e.time,
            actor: e.actor,
            user: e.user,
            event_type: e.event_type,
            outcome: e.outcome,
            protocol: e.protocol,
            remote_addr: e.remote_addr,
            session_id: e.session_id,
            resource: e.resource,
            path: e.path,
            target: e.target,
            bytes: e.bytes,
            sha256: e.sha256,
            detail: e.detail,
            payload: e.payload,
        }
    }
}

/// A page of audit records.
#[derive(Debug, Object)]
pub(crate) struct EventPage {
    /// Matching records in position order.
    pub(crate) items: Vec<Event>,
    /// Pass as `cursor` for the next page; absent at the end of the log.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<u64>,
}

/// The result of verifying the audit trail.
#[derive(Debug, Object)]
pub(crate) struct Verification {
    /// Whether every record verified.
    pub(crate) ok: bool,
    /// Records whose seal verified.
    pub(crate) sealed: u64,
    /// Records not sealed yet.
    pub(crate) unsealed: u64,
    /// Sealed records pruned from the live log after their export (their
    /// seals and leaves remain; their bundle proves them).
    pub(crate) pruned: u64,
    /// Signed checkpoints whose root and signature verified.
    pub(crate) checkpoints: u64,
    /// The size of the largest verified checkpoint.
    pub(crate) checkpointed: u64,
    /// The first problem found.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) finding: Option<String>,
}

/// The latest signed tree head: a C2SP checkpoint in an Ed25519 signed
/// note over the RFC 6962 Merkle tree of the records.
#[derive(Debug, Object)]
pub(crate) struct Checkpoint {
    /// Records covered.
    pub(crate) size: u64,
    /// Hex Merkle root.
    pub(crate) root: String,
    /// The signing key's id (8 hex digits).
    pub(crate) key_id: String,
    /// The signed note, verifiable with `verifier_key`.
    pub(crate) note: String,
    /// The key that signed it (`NAME+KEYID+KEY`).
    pub(crate) verifier_key: String,
    /// When it was signed.
    pub(crate) time: String,
}

impl From<tollgate_ports::api::SignedCheckpoint> for Checkpoint {
    fn from(c: tollgate_ports::api::SignedCheckpoint) -> Self {
        Checkpoint {
            size: c.size,
            root: c.root,
            key_id: c.key_id,
            note: c.note,
            verifier_key: c.verifier_key,
            time: c.time,
        }
    }
}

/// A record's RFC 6962 inclusion proof in a signed checkpoint.
#[derive(Debug, Object)]
pub(crate) struct InclusionProof {
    /// The record's event id.
    pub(crate) event_id: String,
    /// Its position; the leaf index is `position - 1`.
    pub(crate) position: u64,
    /// Hex leaf hash, `SHA-256(0x00 || encoded record)`.
    pub(crate) leaf_hash: String,
    /// The checkpoint's tree size.
    pub(crate) tree_size: u64,
    /// Hex hashes of the audit path, leaf side first.
    pub(crate) proof: Vec<String>,
    /// The signed checkpoint the proof leads to.
    pub(crate) checkpoint: String,
    /// The key that signed it.
    pub(crate) verifier_key: String,
}

impl From<tollgate_ports::api::InclusionProof> for InclusionProof {
    fn from(p: tollgate_ports::api::InclusionProof) -> Self {
        InclusionProof {
            event_id: p.event_id,
            position: p.position,
            leaf_hash: p.leaf_hash,
            tree_size: p.tree_size,
            proof: p.proof,
            checkpoint: p.checkpoint,
            verifier_key: p.verifier_key,
        }
    }
}

/// An RFC 6962 consistency proof between two signed checkpoints.
#[derive(Debug, Object)]
pub(crate) struct ConsistencyProof {
    /// The earlier tree size.
    pub(crate) first: u64,
    /// The later tree size.
    pub(crate) second: u64,
    /// Hex hashes of the proof.
    pub(crate) proof: Vec<String>,
    /// The earlier signed checkpoint.
    pub(crate) first_checkpoint: String,
    /// The later signed checkpoint.
    pub(crate) second_checkpoint: String,
}

impl From<tollgate_ports::api::ConsistencyProof> for ConsistencyProof {
    fn from(p: tollgate_ports::api::ConsistencyProof) -> Self {
        ConsistencyProof {
            first: p.first,
            second: p.second,
            proof: p.proof,
            first_checkpoint: p.first_checkpoint,
            second_checkpoint: p.second_checkpoint,
        }
    }
}

/// A file transfer.
#[derive(Debug, Object)]
pub(crate) struct Transfer {
    /// The transfer id.
    pub(crate) id: String,
    /// running, completed, failed, aborted or denied.
    pub(crate) state: String,
    /// The user.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) username: Option<String>,
    /// The protocol.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) protocol: Option<String>,
    /// upload or download.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) direction: Option<String>,
    /// The virtual path.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) path: Option<String>,
    /// The client's address.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) remote_addr: Option<String>,
    /// The session.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) session_id: Option<String>,
    /// Bytes moved.
    pub(crate) bytes: u64,
    /// SHA-256 of the file, once completed.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) sha256: Option<String>,
    /// Why it failed, was aborted or denied.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) reason: Option<String>,
    /// Start time.
    pub(crate) started_at: String,
    /// End time.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) ended_at: Option<String>,
}

impl From<TransferRecord> for Transfer {
    fn from(t: TransferRecord) -> Transfer {
        Transfer {
            id: t.id,
            state: t.state,
            username: t.username,
            protocol: t.protocol,
            direction: t.direction,
            path: t.path,
            remote_addr: t.remote_addr,
            session_id: t.session_id,
            bytes: t.bytes,
            sha256: t.sha256,
            reason: t.reason,
            started_at: t.started_at,
            ended_at: t.ended_at,
        }
    }
}

/// A page of transfers, newest first.
#[derive(Debug, Object)]
pub(crate) struct TransferPage {
    /// The transfers.
    pub(crate) items: Vec<Transfer>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// A client address banned after failed logins.
#[derive(Debug, Object)]
pub(crate) struct Ban {
    /// The client address.
    pub(crate) address: String,
    /// Until when it is refused (RFC 3339).
    pub(crate) until: String,
    /// How many times it was banned; each ban lasts twice the one before.
    pub(crate) bans: u32,
}

impl From<BanRecord> for Ban {
    fn from(record: BanRecord) -> Ban {
        Ban {
            address: record.address,
            until: record.until,
            bans: record.bans,
        }
    }
}

/// A live connection on the answering node.
#[derive(Debug, Object)]
pub(crate) struct Session {
    /// The session id.
    pub(crate) id: String,
    /// The protocol.
    pub(crate) protocol: String,
    /// The client's address.
    pub(crate) remote_addr: String,
    /// The logged-in user, once authenticated.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) username: Option<String>,
    /// When the connection opened.
    pub(crate) started_at: String,
}

impl From<SessionRecord> for Session {
    fn from(s: SessionRecord) -> Session {
        Session {
            id: s.id,
            protocol: s.protocol,
            remote_addr: s.remote_addr,
            username: s.username,
            started_at: s.started_at,
        }
    }
}

// The storage variants do not deny unknown fields: the union's `kind`
// discriminator reaches each variant's parser as a field.

/// A directory of the gateway's host.
#[derive(Debug, Clone, Object)]
pub(crate) struct LocalStorage {
    /// An absolute path.
    #[oai(validator(min_length = 1, max_length = 4096))]
    pub(crate) root: String,
}

/// An S3 or S3-compatible bucket. `secret_access_key` is `[redacted]` in
/// answers; send `[redacted]` back to keep the stored one.
#[derive(Debug, Clone, Object)]
pub(crate) struct S3Storage {
    /// The bucket.
    pub(crate) bucket: String,
    /// The region.
    pub(crate) region: String,
    /// A custom endpoint (S3-compatible services).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) endpoint: Option<String>,
    /// A key prefix inside the bucket.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) prefix: Option<String>,
    /// The access key id.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) access_key_id: Option<String>,
    /// The secret access key (write-only; `[redacted]` when read).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) secret_access_key: Option<String>,
}

/// A Google Cloud Storage bucket.
#[derive(Debug, Clone, Object)]
pub(crate) struct GcsStorage {
    /// The bucket.
    pub(crate) bucket: String,
    /// An object prefix inside the bucket.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) prefix: Option<String>,
    /// Service account credentials JSON (write-only; `[redacted]` when read).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) credentials_json: Option<String>,
    /// A custom service address (an emulator or private endpoint).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) endpoint: Option<String>,
}

/// An Azure Blob Storage container.
#[derive(Debug, Clone, Object)]
pub(crate) struct AzureStorage {
    /// The storage account.
    pub(crate) account: String,
    /// The container.
    pub(crate) container: String,
    /// A blob prefix inside the container.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) prefix: Option<String>,
    /// The account key (write-only; `[redacted]` when read).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) access_key: Option<String>,
    /// A custom blob service address (Azurite or a private endpoint).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) endpoint: Option<String>,
}

/// A directory on a remote SFTP server.
#[derive(Debug, Clone, Object)]
pub(crate) struct SftpStorage {
    /// The server's host name or address.
    pub(crate) host: String,
    /// The server's port.
    #[oai(validator(minimum(value = "1"), maximum(value = "65535")))]
    pub(crate) port: u16,
    /// The login name on the remote server.
    pub(crate) username: String,
    /// The remote directory.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) root: Option<String>,
    /// The password (write-only; `[redacted]` when read).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) password: Option<String>,
    /// An OpenSSH private key (write-only; `[redacted]` when read).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) private_key: Option<String>,
    /// The server's host key fingerprint as `ssh-keygen -l` prints it
    /// (`SHA256:...`); required: a server presenting another key is refused.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) host_key_fingerprint: Option<String>,
}

/// A storage backend, by `kind`.
#[derive(Debug, Clone, poem_openapi::Union)]
#[oai(discriminator_name = "kind")]
pub(crate) enum Storage {
    /// `local`
    #[oai(mapping = "local")]
    Local(LocalStorage),
    /// `s3`
    #[oai(mapping = "s3")]
    S3(S3Storage),
    /// `gcs`
    #[oai(mapping = "gcs")]
    Gcs(GcsStorage),
    /// `azure`
    #[oai(mapping = "azure")]
    Azure(AzureStorage),
    /// `sftp`
    #[oai(mapping = "sftp")]
    Sftp(SftpStorage),
}

impl From<Storage> for StorageRecord {
    fn from(storage: Storage) -> StorageRecord {
        match storage {
            Storage::Local(s) => StorageRecord::Local { root: s.root },
            Storage::S3(s) => StorageRecord::S3 {
                bucket: s.bucket,
                region: s.region,
                endpoint: s.endpoint,
                prefix: s.prefix,
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
            },
            Storage::Gcs(s) => StorageRecord::Gcs {
                bucket: s.bucket,
                prefix: s.prefix,
                credentials_json: s.credentials_json,
                endpoint: s.endpoint,
            },
            Storage::Azure(s) => StorageRecord::Azure {
                account: s.account,
                container: s.container,
                prefix: s.prefix,
                access_key: s.access_key,
                endpoint: s.endpoint,
            },
            Storage::Sftp(s) => StorageRecord::Sftp {
                host: s.host,
                port: s.port,
                username: s.username,
                root: s.root,
                password: s.password,
                private_key: s.private_key,
                host_key_fingerprint: s.host_key_fingerprint,
            },
        }
    }
}

impl From<StorageRecord> for Storage {
    fn from(record: StorageRecord) -> Storage {
        match record {
            StorageRecord::Local { root } => Storage::Local(LocalStorage { root }),
            StorageRecord::S3 {
                bucket,
                region,
                endpoint,
                prefix,
                access_key_id,
                secret_access_key,
            } => Storage::S3(S3Storage {
                bucket,
                region,
                endpoint,
                prefix,
                access_key_id,
                secret_access_key,
            }),
            StorageRecord::Gcs {
                bucket,
                prefix,
                credentials_json,
                endpoint,
            } => Storage::Gcs(GcsStorage {
                bucket,
                prefix,
                credentials_json,
                endpoint,
            }),
            StorageRecord::Azure {
                account,
                container,
                prefix,
                access_key,
                endpoint,
            } => Storage::Azure(AzureStorage {
                account,
                container,
                prefix,
                access_key,
                endpoint,
            }),
            StorageRecord::Sftp {
                host,
                port,
                username,
                root,
                password,
                private_key,
                host_key_fingerprint,
            } => Storage::Sftp(SftpStorage {
                host,
                port,
                username,
                root,
                password,
                private_key,
                host_key_fingerprint,
            }),
        }
    }
}

/// A mount: a storage backend that users' namespaces can include as a
/// virtual folder.
#[derive(Debug, Object)]
pub(crate) struct Mount {
    /// The mount's name.
    pub(crate) name: String,
    /// A note for administrators.
    pub(crate) description: String,
    /// The backend; secrets are `[redacted]`.
    pub(crate) storage: Storage,
    /// Whether every file is encrypted at rest with the mount's own key.
    pub(crate) encrypted: bool,
    /// The version to send in `If-Match`.
    pub(crate) version: u64,
}

impl Mount {
    pub(crate) fn new(record: MountRecord, version: u64) -> Mount {
        Mount {
            name: record.name,
            description: record.description,
            storage: record.storage.into(),
            encrypted: record.encrypted,
            version,
        }
    }
}

/// A TOTP enrolment: what the user's authenticator app needs, and the
/// recovery codes, shown only here.
#[derive(Debug, Object)]
pub(crate) struct TotpEnrolment {
    /// The secret, base32 (for manual entry).
    pub(crate) secret: String,
    /// The `otpauth://totp/...` URI.
    pub(crate) uri: String,
    /// The URI as a QR code: a PNG image, base64.
    pub(crate) qr_png: String,
    /// Single-use codes that stand in for a TOTP code (stored hashed).
    pub(crate) recovery_codes: Vec<String>,
}

impl From<TotpEnrolmentRecord> for TotpEnrolment {
    fn from(record: TotpEnrolmentRecord) -> TotpEnrolment {
        use base64::Engine;
        TotpEnrolment {
            secret: record.secret,
            uri: record.uri,
            qr_png: base64::engine::general_purpose::STANDARD.encode(record.qr_png),
            recovery_codes: record.recovery_codes,
        }
    }
}

/// A code that confirms a TOTP enrolment.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct TotpCode {
    /// The current six-digit code of the enrolled secret.
    pub(crate) code: String,
}

/// The outcome of reaching a mount's storage.
#[derive(Debug, Object)]
pub(crate) struct MountCheck {
    /// Whether the storage answered and its root is usable.
    pub(crate) reachable: bool,
    /// Why not: `not_found`, `permission_denied`, `unavailable`, `corrupt`
    /// or `failed`.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) kind: Option<String>,
    /// The backend's own explanation (never a secret).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) detail: Option<String>,
}

impl From<Result<(), MountCheckFailure>> for MountCheck {
    fn from(result: Result<(), MountCheckFailure>) -> MountCheck {
        match result {
            Ok(()) => MountCheck {
                reachable: true,
                kind: None,
                detail: None,
            },
            Err(failure) => MountCheck {
                reachable: false,
                kind: Some(failure.kind),
                detail: Some(failure.detail),
            },
        }
    }
}

/// A new mount.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewMount {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) name: String,
    /// A note for administrators.
    #[oai(default)]
    pub(crate) description: String,
    /// The backend.
    pub(crate) storage: Storage,
    /// Encrypt every file at rest (AES-256-GCM, a key of the mount's own);
    /// fixed at creation.
    #[oai(default)]
    pub(crate) encrypted: bool,
}

/// Changes to a mount; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct MountUpdate {
    /// A new note.
    pub(crate) description: Option<String>,
    /// A new backend (send `[redacted]` for a secret to keep it).
    pub(crate) storage: Option<Storage>,
}

/// A page of mounts.
#[derive(Debug, Object)]
pub(crate) struct MountPage {
    /// The mounts.
    pub(crate) items: Vec<Mount>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) next_cursor: Option<String>,
}

/// A webhook subscription.
#[derive(Debug, Object)]
pub(crate) struct Subscription {
    /// Its name.
    pub(crate) name: String,
    /// The endpoint events are POSTed to (Standard Webhooks signatures).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) url: Option<String>,
    /// The Kafka topic events are produced to.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) kafka_topic: Option<String>,
    /// Only these event types (empty: all).
    pub(crate) event_types: Vec<String>,
    /// Only events about these users (empty: all).
    pub(crate) users: Vec<String>,
    /// Only events whose path is under this prefix.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) path_prefix: Option<String>,
    /// Only events with this outcome (`success`, `failure`, `denied`, `aborted`).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) outcome: Option<String>,
    /// `tollgate` (docs/events.md) or `ocsf`.
    pub(crate) format: String,
    /// Whether deliveries run.
    pub(crate) enabled: bool,
    /// Why deliveries stopped (a 410 Gone, an administrator).
    #[oai(skip_serializing_if_is_none)]
    pub(crate) disabled_reason: Option<String>,
}

impl From<tollgate_ports::api::SubscriptionRecord> for Subscription {
    fn from(r: tollgate_ports::api::SubscriptionRecord) -> Self {
        Subscription {
            name: r.name,
            url: (!r.url.is_empty()).then_some(r.url),
            kafka_topic: r.kafka_topic,
            event_types: r.event_types,
            users: r.users,
            path_prefix: r.path_prefix,
            outcome: r.outcome,
            format: r.format,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
        }
    }
}

/// A new webhook subscription.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct NewSubscription {
    /// 1–64 characters of `A-Z a-z 0-9 . _ -`.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub(crate) name: String,
    /// A webhook endpoint: an http or https URL; private and loopback
    /// addresses are refused unless `webhooks.allow_private_targets` is set.
    #[oai(validator(min_length = 1, max_length = 2048))]
    pub(crate) url: Option<String>,
    /// Or a Kafka topic (1–249 characters of `A-Z a-z 0-9 . _ -`), produced
    /// to with the brokers of `kafka.brokers`.
    #[oai(validator(min_length = 1, max_length = 249))]
    pub(crate) kafka_topic: Option<String>,
    /// Only these event types (empty: all).
    #[oai(default)]
    pub(crate) event_types: Vec<String>,
    /// Only events about these users (empty: all).
    #[oai(default)]
    pub(crate) users: Vec<String>,
    /// Only events whose path is under this prefix.
    #[oai(validator(max_length = 4096))]
    pub(crate) path_prefix: Option<String>,
    /// Only events with this outcome.
    #[oai(validator(pattern = "^(success|failure|denied|aborted)$"))]
    pub(crate) outcome: Option<String>,
    /// `tollgate` (default) or `ocsf`.
    #[oai(validator(pattern = "^(tollgate|ocsf)$"))]
    pub(crate) format: Option<String>,
}

/// A created subscription and its signing secret.
#[derive(Debug, Object)]
pub(crate) struct CreatedSubscription {
    /// The subscription.
    pub(crate) subscription: Subscription,
    /// The `whsec_` secret that signs its deliveries: shown only here.
    pub(crate) secret: String,
}

/// Enables or disables a subscription.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct SubscriptionChange {
    /// Whether deliveries run (enabling resumes where they stopped).
    pub(crate) enabled: bool,
}

/// One delivery attempt.
#[derive(Debug, Object)]
pub(crate) struct Delivery {
    /// The event's id (the `webhook-id` header).
    pub(crate) event_id: String,
    /// The event's position in the log.
    pub(crate) position: u64,
    /// 1 for the first attempt of an event.
    pub(crate) attempt: u32,
    /// The endpoint's HTTP status, when it answered.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) status: Option<u16>,
    /// How long the attempt took.
    pub(crate) latency_ms: u64,
    /// Why it failed.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) error: Option<String>,
    /// When (RFC 3339).
    pub(crate) time: String,
    /// Whether it was a redelivery asked for by an administrator.
    pub(crate) redelivery: bool,
}

impl From<tollgate_ports::outbound::DeliveryAttempt> for Delivery {
    fn from(a: tollgate_ports::outbound::DeliveryAttempt) -> Self {
        Delivery {
            event_id: a.event_id,
            position: a.position,
            attempt: a.attempt,
            status: a.status,
            latency_ms: a.latency_ms,
            error: a.error,
            time: a.time,
            redelivery: a.redelivery,
        }
    }
}

/// Which events to deliver again: `event_id`, or `first` and `last`.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub(crate) struct Redelivery {
    /// One event.
    pub(crate) event_id: Option<String>,
    /// The first position of a range (at most 1000 positions).
    #[oai(validator(minimum(value = "1")))]
    pub(crate) first: Option<u64>,
    /// The last position of the range.
    #[oai(validator(minimum(value = "1")))]
    pub(crate) last: Option<u64>,
}

/// What a redelivery did.
#[derive(Debug, Object)]
pub(crate) struct Redelivered {
    /// Events the subscription's filter selected, each tried once.
    pub(crate) attempted: u64,
    /// Of those, taken by the endpoint (2xx).
    pub(crate) delivered: u64,
}
