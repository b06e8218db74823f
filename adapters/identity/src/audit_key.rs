//! The key that signs the audit log's checkpoints: Ed25519, generated on
//! first start in a file of the data directory (mode 0600) as a signed-note
//! private key string (`PRIVATE+KEY+NAME+KEYID+KEY`).

use std::path::Path;

use tollgate_audit::note::NoteSigner;
use tollgate_ports::outbound::CheckpointSigner;

use crate::jwt::{KeyFileError, create_key_file};

/// Signs checkpoints with the key in the audit key file.
#[derive(Debug)]
pub struct AuditKeySigner {
    signer: NoteSigner,
}

impl AuditKeySigner {
    /// Loads the key file, creating it with a fresh key named `origin`
    /// when it is absent. A file made for another origin is refused: the
    /// key name is the log's identity.
    pub fn load_or_create(path: &Path, origin: &str) -> Result<AuditKeySigner, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let malformed = || KeyFileError::Malformed {
            path: path.display().to_string(),
        };
        let signer = match std::fs::read_to_string(path) {
            Ok(text) => NoteSigner::from_private_key(&text).map_err(|_| malformed())?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed);
                let signer = NoteSigner::from_seed(origin, seed).map_err(|_| malformed())?;
                create_key_file(path, format!("{}\n", signer.private_key()).as_bytes())?;
                signer
            }
            Err(err) => return Err(io(err)),
        };
        if signer.name() != origin {
            return Err(KeyFileError::OtherOrigin {
                path: path.display().to_string(),
                found: signer.name().to_string(),
                configured: origin.to_string(),
            });
        }
        Ok(AuditKeySigner { signer })
    }
}

impl CheckpointSigner for AuditKeySigner {
    fn origin(&self) -> &str {
        self.signer.name()
    }

    fn key_id(&self) -> String {
        self.signer.key_id()
    }

    fn verifier_key(&self) -> String {
        self.signer.verifier().key()
    }

    fn sign(&self, text: &str) -> String {
        self.signer
            .sign(text)
            .expect("checkpoint texts end with a newline")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_audit::note::{Checkpoint, NoteVerifier};

    #[test]
    fn the_key_is_kept_and_its_checkpoints_verify() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let first = AuditKeySigner::load_or_create(&path, "tollgate.test/audit").unwrap();
        let again = AuditKeySigner::load_or_create(&path, "tollgate.test/audit").unwrap();
        assert_eq!(first.verifier_key(), again.verifier_key());
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let checkpoint = Checkpoint {
            origin: "tollgate.test/audit".into(),
            size: 3,
            root: [1; 32],
        };
        let note = again.sign(&checkpoint.body());
        let verifier = NoteVerifier::from_key(&first.verifier_key()).unwrap();
        assert_eq!(Checkpoint::open(&note, &verifier).unwrap(), checkpoint);
        assert!(matches!(
            AuditKeySigner::load_or_create(&path, "another/origin"),
            Err(KeyFileError::OtherOrigin { .. })
        ));
    }
}
