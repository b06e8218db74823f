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

#[test]
fn a_disabled_or_deleted_administrator_has_no_active_role() {
    let created = AdminEvent::AdminCreated {
        username: "ops".into(),
        password_hash: "h".into(),
        role: Role::Auditor,
    };
    check::<Admin>(
        vec![created.clone()],
        AdminCommand::ChangeRole {
            role: Role::Auditor,
        },
        expect![[r#"
            error: administrator is already auditor
        "#]],
    );
    check::<Admin>(
        vec![created.clone(), AdminEvent::AdminDisabled {}],
        AdminCommand::Disable,
        expect![[r#"
            error: administrator is already disabled
        "#]],
    );
    check::<Admin>(
        vec![created.clone(), AdminEvent::AdminDeleted {}],
        AdminCommand::Enable,
        expect![[r#"
            error: administrator does not exist
        "#]],
    );
    let mut admin = Admin::default();
    admin.apply(created);
    assert_eq!(admin.active_role(), Some(Role::Auditor));
    admin.apply(AdminEvent::AdminDisabled {});
    assert_eq!(admin.active_role(), None);
    admin.apply(AdminEvent::AdminEnabled {});
    admin.apply(AdminEvent::AdminDeleted {});
    assert_eq!(admin.active_role(), None);
}
