//! Mounts as the API sees them: secrets are sealed on the way in, shown as
//! `[redacted]` on the way out, and kept when a client sends `[redacted]`
//! back.

use tollgate_domain::VirtualPath;
use tollgate_domain::mount::{SealedSecret, StorageSpec, VirtualFolder};
use tollgate_ports::api::{ApiError, FolderRecord, REDACTED, StorageRecord};
use tollgate_ports::outbound::SecretBox;

fn shown(secret: &Option<SealedSecret>) -> Option<String> {
    secret.as_ref().map(|_| REDACTED.to_string())
}

/// The storage with every secret redacted.
pub(crate) fn record(spec: &StorageSpec) -> StorageRecord {
    match spec.clone() {
        StorageSpec::Local { root } => StorageRecord::Local { root },
        StorageSpec::S3 {
            bucket,
            region,
            endpoint,
            prefix,
            access_key_id,
            secret_access_key,
        } => StorageRecord::S3 {
            bucket,
            region,
            endpoint,
            prefix,
            access_key_id,
            secret_access_key: shown(&secret_access_key),
        },
        StorageSpec::Gcs {
            bucket,
            prefix,
            credentials_json,
            endpoint,
        } => StorageRecord::Gcs {
            bucket,
            prefix,
            credentials_json: shown(&credentials_json),
            endpoint,
        },
        StorageSpec::Azure {
            account,
            container,
            prefix,
            access_key,
            endpoint,
        } => StorageRecord::Azure {
            account,
            container,
            prefix,
            access_key: shown(&access_key),
            endpoint,
        },
        StorageSpec::Sftp {
            host,
            port,
            username,
            root,
            password,
            private_key,
            host_key_fingerprint,
        } => StorageRecord::Sftp {
            host,
            port,
            username,
            root,
            password: shown(&password),
            private_key: shown(&private_key),
            host_key_fingerprint,
        },
    }
}

/// The named secret of the current storage, if it has one of that name.
fn current_secret(current: Option<&StorageSpec>, field: &str) -> Option<SealedSecret> {
    let found = match (current?, field) {
        (
            StorageSpec::S3 {
                secret_access_key, ..
            },
            "secret_access_key",
        ) => secret_access_key,
        (
            StorageSpec::Gcs {
                credentials_json, ..
            },
            "credentials_json",
        ) => credentials_json,
        (StorageSpec::Azure { access_key, .. }, "access_key") => access_key,
        (StorageSpec::Sftp { password, .. }, "password") => password,
        (StorageSpec::Sftp { private_key, .. }, "private_key") => private_key,
        _ => return None,
    };
    found.clone()
}

/// Turns a client's storage into the sealed specification, keeping the
/// current secret where the client sent `[redacted]`.
pub(crate) fn spec(
    record: StorageRecord,
    current: Option<&StorageSpec>,
    secrets: &dyn SecretBox,
) -> Result<StorageSpec, ApiError> {
    let seal = |field: &str, value: Option<String>| -> Result<Option<SealedSecret>, ApiError> {
        match value {
            None => Ok(None),
            Some(text) if text == REDACTED => current_secret(current, field)
                .map(Some)
                .ok_or_else(|| {
                    ApiError::Invalid(format!(
                        "{field} is {REDACTED:?} but no {field} is stored for this storage kind; send the secret itself"
                    ))
                }),
            Some(text) if text.is_empty() => Ok(None),
            Some(text) => Ok(Some(SealedSecret(secrets.seal(&text)))),
        }
    };
    Ok(match record {
        StorageRecord::Local { root } => StorageSpec::Local { root },
        StorageRecord::S3 {
            bucket,
            region,
            endpoint,
            prefix,
            access_key_id,
            secret_access_key,
        } => StorageSpec::S3 {
            bucket,
            region,
            endpoint,
            prefix,
            access_key_id,
            secret_access_key: seal("secret_access_key", secret_access_key)?,
        },
        StorageRecord::Gcs {
            bucket,
            prefix,
            credentials_json,
            endpoint,
        } => StorageSpec::Gcs {
            bucket,
            prefix,
            credentials_json: seal("credentials_json", credentials_json)?,
            endpoint,
        },
        StorageRecord::Azure {
            account,
            container,
            prefix,
            access_key,
            endpoint,
        } => StorageSpec::Azure {
            account,
            container,
            prefix,
            access_key: seal("access_key", access_key)?,
            endpoint,
        },
        StorageRecord::Sftp {
            host,
            port,
            username,
            root,
            password,
            private_key,
            host_key_fingerprint,
        } => StorageSpec::Sftp {
            host,
            port,
            username,
            root,
            password: seal("password", password)?,
            private_key: seal("private_key", private_key)?,
            host_key_fingerprint,
        },
    })
}

/// Folders as the API shows them.
pub(crate) fn folder_records(folders: &[VirtualFolder]) -> Vec<FolderRecord> {
    folders
        .iter()
        .map(|f| FolderRecord {
            path: f.path.to_string(),
            mount: f.mount.clone(),
        })
        .collect()
}

/// Folders as a client sent them; a path that is not a valid virtual path
/// is refused.
pub(crate) fn folders(records: Vec<FolderRecord>) -> Result<Vec<VirtualFolder>, ApiError> {
    records
        .into_iter()
        .map(|r| {
            let path = VirtualPath::parse(&r.path).map_err(|err| {
                ApiError::Invalid(format!("virtual folder path {:?}: {err}", r.path))
            })?;
            Ok(VirtualFolder {
                path,
                mount: r.mount,
            })
        })
        .collect()
}
