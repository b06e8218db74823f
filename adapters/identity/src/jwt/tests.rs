//! Tests of the parent module.
use super::*;

fn claims(expires_at: i64) -> TokenClaims {
    TokenClaims {
        subject: "alice".into(),
        admin: false,
        issued_at: 100,
        expires_at,
        token_id: "t1".into(),
    }
}

#[test]
fn a_token_verifies_until_it_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let signer = JwtSigner::load_or_create(&path).unwrap();
    let token = signer.sign(&claims(200)).unwrap();
    assert_eq!(signer.verify(&token, 150), Ok(claims(200)));
    assert_eq!(signer.verify(&token, 200), Err(TokenError::Expired));
    let mut tampered = token.clone();
    tampered.insert(tampered.len() - 2, 'x');
    assert_eq!(signer.verify(&tampered, 150), Err(TokenError::Invalid));
    assert_eq!(signer.verify("not a token", 150), Err(TokenError::Invalid));
}

#[test]
fn a_rotation_keeps_the_previous_key_for_one_generation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    let old = JwtSigner::load_or_create(&path).unwrap();
    let old_token = old.sign(&claims(200)).unwrap();
    JwtSigner::rotate(&path).unwrap();
    let rotated = JwtSigner::load_or_create(&path).unwrap();
    assert_eq!(rotated.verify(&old_token, 150), Ok(claims(200)));
    let new_token = rotated.sign(&claims(200)).unwrap();
    assert!(old.verify(&new_token, 150).is_err());
    JwtSigner::rotate(&path).unwrap();
    let twice = JwtSigner::load_or_create(&path).unwrap();
    assert_eq!(twice.verify(&old_token, 150), Err(TokenError::Invalid));
    assert_eq!(twice.verify(&new_token, 150), Ok(claims(200)));
}
