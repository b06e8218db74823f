//! Tests of the parent module.
use super::*;

#[test]
fn a_new_hash_is_argon2id_and_verifies_its_password_only() {
    let hash = Argon2Hasher.hash("correct horse").unwrap();
    assert!(hash.starts_with("$argon2id$"));
    assert!(!hash.contains("correct horse"));
    assert!(Argon2Hasher.verify("correct horse", &hash));
    assert!(!Argon2Hasher.verify("wrong", &hash));
    assert!(!Argon2Hasher.verify("correct horse", "not a hash"));
    assert!(Argon2Hasher.recognizes(&hash));
    assert!(!Argon2Hasher.needs_rehash(&hash));
}

#[test]
fn imported_bcrypt_hashes_verify_in_every_variant_and_ask_for_a_rehash() {
    let hash = bcrypt::hash("secret", 4).unwrap();
    for prefix in ["$2a$", "$2b$", "$2y$"] {
        let variant = format!("{prefix}{}", &hash[4..]);
        assert!(Argon2Hasher.recognizes(&variant), "{variant}");
        assert!(Argon2Hasher.verify("secret", &variant), "{variant}");
        assert!(!Argon2Hasher.verify("Secret", &variant), "{variant}");
        assert!(Argon2Hasher.needs_rehash(&variant));
    }
    assert!(!Argon2Hasher.recognizes("$2b$04$short"));
}

#[test]
fn imported_sha512_crypt_hashes_verify() {
    // The published test vector of the SHA-crypt specification.
    let hash = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
    assert!(Argon2Hasher.recognizes(hash));
    assert!(Argon2Hasher.verify("Hello world!", hash));
    assert!(!Argon2Hasher.verify("Hello world", hash));
    assert!(Argon2Hasher.needs_rehash(hash));
    // With an explicit round count.
    let rounds = "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.";
    assert!(Argon2Hasher.verify("Hello world!", rounds));
}

#[test]
fn imported_pbkdf2_hashes_verify_in_each_digest_and_salt_form() {
    // SFTPGo's documented example: "password", 150,000 rounds of SHA-256.
    let sftpgo = "$pbkdf2-sha256$150000$E86a9YMX3zC7$R5J62hsSq+pYw00hLLPKBbcGXmq7fj5+/M0IFoYtZbo=";
    assert!(Argon2Hasher.recognizes(sftpgo));
    assert!(Argon2Hasher.verify("password", sftpgo));
    assert!(!Argon2Hasher.verify("passwore", sftpgo));
    assert!(Argon2Hasher.needs_rehash(sftpgo));

    let derive = |digest: Digest, salt: &[u8]| {
        let mut out = vec![0u8; 32];
        match digest {
            Digest::Sha1 => pbkdf2::pbkdf2_hmac::<sha1::Sha1>(b"s3cret", salt, 1000, &mut out),
            Digest::Sha256 => pbkdf2::pbkdf2_hmac::<sha2::Sha256>(b"s3cret", salt, 1000, &mut out),
            Digest::Sha512 => pbkdf2::pbkdf2_hmac::<sha2::Sha512>(b"s3cret", salt, 1000, &mut out),
        }
        STANDARD.encode(out)
    };
    let salt = b"NaCl-salt";
    for (name, digest) in [
        ("pbkdf2-sha1", Digest::Sha1),
        ("pbkdf2-sha256", Digest::Sha256),
        ("pbkdf2-sha512", Digest::Sha512),
    ] {
        let hash = format!("${name}$1000$NaCl-salt${}", derive(digest, salt));
        assert!(Argon2Hasher.verify("s3cret", &hash), "{hash}");
        assert!(!Argon2Hasher.verify("s3cre", &hash), "{hash}");
    }
    let b64 = format!(
        "$pbkdf2-b64salt-sha256$1000${}${}",
        STANDARD.encode(salt),
        derive(Digest::Sha256, salt)
    );
    assert!(Argon2Hasher.verify("s3cret", &b64));
}

#[test]
fn unknown_or_malformed_hashes_are_not_recognised_and_never_verify() {
    for hash in [
        "",
        "s3cret",
        "$1$md5crypt$abcdefghijklmnopqrstuv",
        "$pbkdf2-md5$1000$salt$AAAA",
        "$pbkdf2-sha256$0$salt$AAAA",
        "$pbkdf2-sha256$99999999$salt$AAAA",
        "$pbkdf2-sha256$1000$salt$not base64!",
        "$pbkdf2-sha256$1000$$AAAA",
        "$argon2id$garbage",
        "$6$",
    ] {
        assert!(!Argon2Hasher.recognizes(hash), "{hash:?}");
        assert!(!Argon2Hasher.verify("s3cret", hash), "{hash:?}");
    }
}

#[test]
fn more_verifications_at_once_than_cores_all_finish_with_the_right_answer() {
    let hash = Argon2Hasher.hash("many at once").unwrap();
    let cheap = other_params_hash("password");
    let results: Vec<bool> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|i| {
                let (hash, cheap) = (&hash, &cheap);
                scope.spawn(move || match i % 3 {
                    0 => Argon2Hasher.verify("many at once", hash),
                    1 => !Argon2Hasher.verify("not this one", hash),
                    // Other parameters take memory of another size.
                    _ => Argon2Hasher.verify("password", cheap),
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert!(results.iter().all(|ok| *ok), "{results:?}");
}

/// An Argon2id hash with parameters other than ours: m=64 KiB, t=3, p=2.
fn other_params_hash(password: &str) -> String {
    let argon2 = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(64, 3, 2, None).unwrap(),
    );
    argon2::password_hash::PasswordHasher::hash_password(&argon2, password.as_bytes())
        .unwrap()
        .to_string()
}

#[test]
fn an_argon2_hash_with_other_parameters_verifies() {
    let hash = other_params_hash("other params");
    assert!(hash.contains("m=64,t=3,p=2"), "{hash}");
    assert!(Argon2Hasher.verify("other params", &hash));
    assert!(!Argon2Hasher.verify("other paramz", &hash));
}
