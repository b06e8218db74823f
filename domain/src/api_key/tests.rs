//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;

fn created() -> ApiKeyEvent {
    ApiKeyEvent::ApiKeyCreated {
        name: "ci".into(),
        admin: "admin".into(),
        role: Role::Auditor,
        secret_sha256: "ab".into(),
        expires_at: None,
    }
}

#[test]
fn a_key_is_revoked_once() {
    check::<ApiKey>(
        vec![created()],
        ApiKeyCommand::Revoke,
        expect![[r#"
            ApiKeyRevoked
        "#]],
    );
    check::<ApiKey>(
        vec![created(), ApiKeyEvent::ApiKeyRevoked {}],
        ApiKeyCommand::Revoke,
        expect![[r#"
            error: API key is already revoked
        "#]],
    );
    check::<ApiKey>(
        vec![],
        ApiKeyCommand::Revoke,
        expect![[r#"
            error: API key does not exist
        "#]],
    );
}

#[test]
fn a_key_name_is_checked() {
    check::<ApiKey>(
        vec![],
        ApiKeyCommand::Create {
            name: "bad name".into(),
            admin: "admin".into(),
            role: Role::Admin,
            secret_sha256: "ab".into(),
            expires_at: None,
        },
        expect![[r#"
            error: invalid API key name "bad name"
        "#]],
    );
}
