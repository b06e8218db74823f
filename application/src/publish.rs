//! The public event schema (`docs/events.md`, JSON Schema in
//! `docs/schemas/`): how an event leaves the gateway, in Tollgate's own
//! shape or aligned with OCSF classes. Rendering is pure: the record, as a
//! query sees it (credentials redacted, personal data opened), its audit
//! hash, and for transfers their direction.

use chrono::DateTime;
use serde_json::{Value, json};
use tollgate_domain::subscription::EventFormat;

use crate::queries::EventSummary;

/// The schema name every Tollgate-format event carries.
pub(crate) const SCHEMA: &str = "tollgate.event/v1";

/// One event ready to render.
pub(crate) struct Publishable<'a> {
    pub(crate) summary: &'a EventSummary,
    pub(crate) aggregate_type: &'a str,
    pub(crate) aggregate_id: &'a str,
    pub(crate) sequence: u64,
    pub(crate) event_version: &'a str,
    /// The record's audit chain hash (hex).
    pub(crate) audit_hash: Option<&'a str>,
    /// `upload` or `download`, for transfer events.
    pub(crate) direction: Option<&'a str>,
}

pub(crate) fn render(event: &Publishable<'_>, format: EventFormat) -> Value {
    match format {
        EventFormat::Tollgate => tollgate(event),
        EventFormat::Ocsf => ocsf(event),
    }
}

fn tollgate(event: &Publishable<'_>) -> Value {
    let s = event.summary;
    json!({
        "schema": SCHEMA,
        "id": s.event_id,
        "position": s.position,
        "time": s.time,
        "type": s.event_type,
        "version": event.event_version,
        "aggregate": {
            "type": event.aggregate_type,
            "id": event.aggregate_id,
            "sequence": event.sequence,
        },
        "actor": s.actor,
        "user": s.user,
        "origin": {
            "remote_addr": s.remote_addr,
            "protocol": s.protocol,
            "session_id": s.session_id,
        },
        "target": {
            "resource": s.aggregate,
            "path": s.path,
            "target": s.target,
            "operation": s.operation,
            "direction": event.direction,
        },
        "outcome": s.outcome,
        "detail": s.detail,
        "bytes": s.bytes,
        "sha256": s.sha256,
        "audit_hash": event.audit_hash,
        "payload": s.payload,
    })
}

/// OCSF class, category and activity of an event.
fn classify(event: &Publishable<'_>) -> (u32, &'static str, u32, &'static str, u32, &'static str) {
    const FILES: (u32, &str, u32, &str) = (1001, "File System Activity", 1, "System Activity");
    const AUTH: (u32, &str, u32, &str) =
        (3002, "Authentication", 3, "Identity & Access Management");
    const ACCOUNT: (u32, &str, u32, &str) =
        (3001, "Account Change", 3, "Identity & Access Management");
    let s = event.summary;
    let with = |class: (u32, &'static str, u32, &'static str), id: u32, name: &'static str| {
        (class.0, class.1, class.2, class.3, id, name)
    };
    match (event.aggregate_type, s.event_type.as_str()) {
        ("transfer", _) => match event.direction {
            Some("upload") => with(FILES, 1, "Create"),
            Some("download") => with(FILES, 2, "Read"),
            _ => with(FILES, 99, "Other"),
        },
        ("session", "LoginSucceeded" | "LoginFailed") => with(AUTH, 1, "Logon"),
        ("session", "SessionClosed") => with(AUTH, 2, "Logoff"),
        ("session", t) if t.starts_with("FileOperation") => match s.operation.as_deref() {
            Some("mkdir" | "symlink") => with(FILES, 1, "Create"),
            Some("list" | "stat") => with(FILES, 8, "Get Attributes"),
            Some("remove" | "rmdir") => with(FILES, 4, "Delete"),
            Some("rename") => with(FILES, 5, "Rename"),
            Some("setattributes") => with(FILES, 6, "Set Attributes"),
            _ => with(FILES, 99, "Other"),
        },
        ("user" | "admin", t) => match t {
            "UserCreated" | "UserProvisioned" | "AdminCreated" => with(ACCOUNT, 1, "Create"),
            "UserEnabled" => with(ACCOUNT, 2, "Enable"),
            "UserPasswordChanged" | "AdminPasswordChanged" => with(ACCOUNT, 3, "Password Change"),
            "UserDisabled" => with(ACCOUNT, 5, "Disable"),
            "UserDeleted" | "UserErased" | "AdminDeleted" => with(ACCOUNT, 6, "Delete"),
            "UserPoliciesChanged" | "UserGroupsChanged" => with(ACCOUNT, 7, "Attach Policy"),
            "UserTotpConfirmed" => with(ACCOUNT, 10, "MFA Factor Enable"),
            "UserTotpDisabled" => with(ACCOUNT, 11, "MFA Factor Disable"),
            _ => with(ACCOUNT, 99, "Other"),
        },
        _ => (0, "Base Event", 0, "Uncategorized", 99, "Other"),
    }
}

fn ocsf(event: &Publishable<'_>) -> Value {
    let s = event.summary;
    let (class_uid, class_name, category_uid, category_name, activity_id, activity_name) =
        classify(event);
    let failed = s.outcome != "success";
    let time = DateTime::parse_from_rfc3339(&s.time)
        .map(|t| t.timestamp_millis())
        .unwrap_or(0);
    let mut out = json!({
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": u64::from(class_uid) * 100 + u64::from(activity_id),
        "time": time,
        "severity_id": if failed { 3 } else { 1 },
        "status": if failed { "Failure" } else { "Success" },
        "status_id": if failed { 2 } else { 1 },
        "actor": { "user": { "name": s.actor } },
        "metadata": {
            "version": "1.3.0",
            "uid": s.event_id,
            "sequence": s.position,
            "log_name": "tollgate",
            "product": { "name": "Tollgate", "vendor_name": "Tollgate" },
        },
        "unmapped": {
            "tollgate_type": s.event_type,
            "outcome": s.outcome,
            "resource": s.aggregate,
            "audit_hash": event.audit_hash,
            "protocol": s.protocol,
            "session_id": s.session_id,
        },
    });
    if let Some(detail) = &s.detail {
        out["status_detail"] = json!(detail);
    }
    if let Some(user) = &s.user {
        out["user"] = json!({ "name": user });
    }
    if let Some(addr) = &s.remote_addr {
        out["src_endpoint"] = match addr.parse::<std::net::SocketAddr>() {
            Ok(sock) => json!({ "ip": sock.ip().to_string(), "port": sock.port() }),
            // An erased or unparsable address is kept as it reads.
            Err(_) => json!({ "hostname": addr }),
        };
    }
    if class_uid == 1001
        && let Some(path) = &s.path
    {
        let name = path.rsplit('/').next().unwrap_or(path);
        let mut file = json!({ "path": path, "name": name, "type_id": 1 });
        if let Some(bytes) = s.bytes {
            file["size"] = json!(bytes);
        }
        if let Some(hash) = &s.sha256 {
            file["hashes"] = json!([{ "algorithm_id": 3, "algorithm": "SHA-256", "value": hash }]);
        }
        out["file"] = file;
    }
    out
}
