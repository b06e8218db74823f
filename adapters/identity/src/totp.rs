//! Time-based one-time passwords (RFC 6238) with totp-rs: SHA-1, six
//! digits, 30-second steps, one step of drift either side — what every
//! authenticator app speaks.

use tollgate_ports::BoxError;
use tollgate_ports::outbound::{OneTimePasswords, TotpSecret};
use totp_rs::{Builder, Secret, Totp};

/// RFC 6238 codes as authenticator apps compute them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rfc6238;

fn totp(secret: Secret, issuer: Option<&str>, account: &str) -> Result<Totp, BoxError> {
    Ok(Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(issuer)
        .build()?)
}

impl OneTimePasswords for Rfc6238 {
    fn new_secret(&self, issuer: &str, account: &str) -> Result<TotpSecret, BoxError> {
        let secret = Secret::generate();
        let base32 = secret.to_base32();
        let totp = totp(secret, Some(issuer), account)?;
        Ok(TotpSecret {
            secret: base32,
            uri: totp.to_url()?,
            qr_png: totp.to_qr_png()?,
        })
    }

    fn verify(&self, secret: &str, code: &str, unix_time: i64) -> Option<u64> {
        let secret = Secret::try_from_base32(secret).ok()?;
        let totp = totp(secret, None, "user").ok()?;
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        totp.check(code, u64::try_from(unix_time).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_of_a_new_secret_verify_within_one_step() {
        let otp = Rfc6238;
        let enrolled = otp.new_secret("Tollgate", "alice").unwrap();
        assert!(enrolled.uri.starts_with("otpauth://totp/Tollgate:alice?"));
        assert!(
            enrolled
                .uri
                .contains(&format!("secret={}", enrolled.secret))
        );
        assert_eq!(&enrolled.qr_png[1..4], b"PNG");
        let secret = Secret::try_from_base32(&enrolled.secret).unwrap();
        let code = totp(secret, None, "x").unwrap().generate(1_000_000_020);
        let code = code.to_string();
        assert_eq!(
            otp.verify(&enrolled.secret, &code, 1_000_000_020),
            Some(33_333_334)
        );
        assert!(otp.verify(&enrolled.secret, &code, 1_000_000_050).is_some());
        assert_eq!(otp.verify(&enrolled.secret, &code, 1_000_000_100), None);
        assert_eq!(otp.verify(&enrolled.secret, "12345", 1_000_000_020), None);
        assert_eq!(otp.verify("not base32!", &code, 1_000_000_020), None);
    }

    #[test]
    fn the_rfc_6238_sha1_vector_verifies() {
        // RFC 6238 appendix B: the ASCII secret "12345678901234567890",
        // T = 59 s gives 94287082 (eight digits); its last six are ours.
        let secret = Secret::from(&b"12345678901234567890"[..]).to_base32();
        assert_eq!(Rfc6238.verify(&secret, "287082", 59), Some(1));
    }
}
