//! Mount backends: a mount's specification, its secrets opened with the
//! secret box, becomes a `FileStorage` (local disk, an object store or a
//! remote SFTP server), wrapped in `Encrypted` when the mount has a key.
//! A backend is built once per specification and shared by every session,
//! so connections and clients are reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tollgate_domain::VirtualPath;
use tollgate_domain::mount::{SealedSecret, StorageSpec};
use tollgate_ports::outbound::{
    FileStorage, MountBackends, MountTarget, MountedStorage, SecretBox, StorageError,
    StorageErrorKind,
};

use crate::{DataKey, Encrypted, ObjectOptions, ObjectStorage, SftpOptions, SftpStorage};

/// Builds and caches the backends of mounts.
pub struct Backends {
    secrets: Arc<dyn SecretBox>,
    local: Arc<dyn FileStorage>,
    built: Mutex<HashMap<String, (MountTarget, MountedStorage)>>,
}

impl Backends {
    /// Backends whose secrets `secrets` opens; local mounts share `local`.
    pub fn new(secrets: Arc<dyn SecretBox>, local: Arc<dyn FileStorage>) -> Backends {
        Backends {
            secrets,
            local,
            built: Mutex::new(HashMap::new()),
        }
    }

    fn open(&self, secret: &Option<SealedSecret>) -> Result<Option<String>, StorageError> {
        secret
            .as_ref()
            .map(|sealed| {
                self.secrets.open(&sealed.0).map_err(|err| StorageError {
                    kind: StorageErrorKind::Other,
                    source: Some(format!("cannot open a secret of the mount: {err}").into()),
                })
            })
            .transpose()
    }

    fn build(&self, mount: &MountTarget) -> Result<MountedStorage, StorageError> {
        let (storage, root): (Arc<dyn FileStorage>, String) = match &mount.storage {
            StorageSpec::Local { root } => (self.local.clone(), root.clone()),
            StorageSpec::S3 {
                bucket,
                region,
                endpoint,
                prefix,
                access_key_id,
                secret_access_key,
            } => (
                Arc::new(ObjectStorage::new(ObjectOptions::S3 {
                    bucket: bucket.clone(),
                    region: region.clone(),
                    endpoint: endpoint.clone(),
                    access_key_id: access_key_id.clone(),
                    secret_access_key: self.open(secret_access_key)?,
                })?),
                prefix.clone().unwrap_or_default(),
            ),
            StorageSpec::Gcs {
                bucket,
                prefix,
                credentials_json,
                endpoint,
            } => (
                Arc::new(ObjectStorage::new(ObjectOptions::Gcs {
                    bucket: bucket.clone(),
                    endpoint: endpoint.clone(),
                    credentials_json: self.open(credentials_json)?,
                })?),
                prefix.clone().unwrap_or_default(),
            ),
            StorageSpec::Azure {
                account,
                container,
                prefix,
                access_key,
                endpoint,
            } => (
                Arc::new(ObjectStorage::new(ObjectOptions::Azure {
                    account: account.clone(),
                    container: container.clone(),
                    endpoint: endpoint.clone(),
                    access_key: self.open(access_key)?,
                })?),
                prefix.clone().unwrap_or_default(),
            ),
            StorageSpec::Sftp {
                host,
                port,
                username,
                root,
                password,
                private_key,
                host_key_fingerprint,
            } => (
                Arc::new(SftpStorage::new(SftpOptions {
                    host: host.clone(),
                    port: *port,
                    username: username.clone(),
                    password: self.open(password)?,
                    private_key: self.open(private_key)?,
                    host_key_fingerprint: host_key_fingerprint.clone().unwrap_or_default(),
                })),
                root.clone().unwrap_or_else(|| ".".to_string()),
            ),
        };
        let storage = match &mount.encryption_key {
            None => storage,
            Some(sealed) => Arc::new(Encrypted::new(storage, self.data_key(sealed)?)),
        };
        Ok(MountedStorage { storage, root })
    }

    /// The mount's key, sealed as base64 of 32 bytes.
    fn data_key(&self, sealed: &SealedSecret) -> Result<DataKey, StorageError> {
        let failed = |what: &str| StorageError {
            kind: StorageErrorKind::Other,
            source: Some(format!("cannot open the mount's encryption key: {what}").into()),
        };
        let text = self
            .secrets
            .open(&sealed.0)
            .map_err(|err| failed(&err.to_string()))?;
        let bytes = STANDARD
            .decode(text.as_bytes())
            .map_err(|_| failed("not base64"))?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| failed("not 32 bytes"))?;
        Ok(DataKey::new(key))
    }
}

#[async_trait]
impl MountBackends for Backends {
    async fn backend(&self, mount: &MountTarget) -> Result<MountedStorage, StorageError> {
        let built = self
            .built
            .lock()
            .expect("the backend cache is never poisoned");
        if let Some((target, backend)) = built.get(&mount.name)
            && target == mount
        {
            return Ok(backend.clone());
        }
        drop(built);
        let backend = self.build(mount)?;
        self.built
            .lock()
            .expect("the backend cache is never poisoned")
            .insert(mount.name.clone(), (mount.clone(), backend.clone()));
        Ok(backend)
    }

    async fn check(&self, mount: &MountTarget) -> Result<(), StorageError> {
        // A fresh backend: a check must reach the storage, not a cached
        // connection made with other settings.
        let backend = self.build(mount)?;
        backend.storage.ensure_root(&backend.root).await?;
        backend
            .storage
            .list(&backend.root, &VirtualPath::root())
            .await
            .map(drop)
    }
}
