//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;

#[test]
fn the_first_administrator_is_created_once() {
    let create = || AdminCommand::Create {
        username: "admin".into(),
        password_hash: "h".into(),
        role: Role::Admin,
    };
    check::<Admin>(
        vec![],
        create(),
        expect![[r#"
        AdminCreated { username: "admin", password_hash: "h", role: Admin }
    "#]],
    );
    let created = AdminEvent::AdminCreated {
        username: "admin".into(),
        password_hash: "h".into(),
        role: Role::Admin,
    };
    check::<Admin>(
        vec![created],
        create(),
        expect![[r#"
        error: administrator already exists
    "#]],
    );
}
