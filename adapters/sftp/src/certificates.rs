//! OpenSSH user certificates: which CAs are trusted to vouch for keys, and
//! which certificates are revoked, as sshd's `TrustedUserCAKeys` and
//! `RevokedKeys` say. A certificate is accepted for a login when it is a
//! user certificate, signed by a trusted CA, valid now, names the login
//! name among its principals, and is not revoked (by serial, key id or the
//! certified key's fingerprint).

use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::{Certificate, Fingerprint, HashAlg, PublicKey};
use tollgate_ports::inbound::CertificateLogin;

/// Certificates revoked before their expiry.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    /// Revoked serial numbers.
    pub serials: Vec<u64>,
    /// Revoked key ids.
    pub key_ids: Vec<String>,
    /// Revoked keys, `SHA256:...` (the certified key or the CA's).
    pub keys: Vec<String>,
}

/// The user CAs and the revocations.
#[derive(Debug, Clone, Default)]
pub struct CertificateTrust {
    cas: Vec<Fingerprint>,
    revoked: Revocations,
}

impl CertificateTrust {
    /// Trust in `cas` (OpenSSH public keys), less `revoked`.
    pub fn new(cas: &[PublicKey], revoked: Revocations) -> Self {
        CertificateTrust {
            cas: cas.iter().map(|k| k.fingerprint(HashAlg::Sha256)).collect(),
            revoked,
        }
    }

    /// Whether any CA is trusted (certificate logins are possible).
    pub(crate) fn any(&self) -> bool {
        !self.cas.is_empty()
    }

    /// The login `certificate` makes for `user`, with the reason it is
    /// refused if it is.
    pub(crate) fn judge(&self, user: &str, certificate: &Certificate) -> CertificateLogin {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let key_fingerprint = certificate
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string();
        let ca = certificate.signature_key().fingerprint(HashAlg::Sha256);
        let revoked = self.revoked.serials.contains(&certificate.serial())
            || self
                .revoked
                .key_ids
                .iter()
                .any(|id| id == certificate.key_id())
            || self
                .revoked
                .keys
                .iter()
                .any(|k| *k == key_fingerprint || *k == ca.to_string());
        let refusal = if certificate.cert_type() != CertType::User {
            Some("certificate is not a user certificate")
        } else if !self.cas.contains(&ca) {
            Some("certificate not signed by a trusted CA")
        } else if certificate.validate_at(now, self.cas.iter()).is_err() {
            Some("certificate expired, not yet valid or badly signed")
        } else if !certificate.valid_principals().iter().any(|p| p == user) {
            Some("certificate not valid for this user")
        } else if revoked {
            Some("certificate revoked")
        } else {
            None
        };
        CertificateLogin {
            key_fingerprint,
            key_id: certificate.key_id().to_string(),
            serial: certificate.serial(),
            ca_fingerprint: ca.to_string(),
            refusal: refusal.map(str::to_string),
        }
    }
}
