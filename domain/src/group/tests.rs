//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;

fn created() -> GroupEvent {
    GroupEvent::GroupCreated {
        name: "partners".into(),
        policies: vec!["ro".into()],
        folders: vec![],
    }
}

#[test]
fn a_group_is_created_once_with_a_valid_name() {
    let create = |name: &str| GroupCommand::Create {
        name: name.into(),
        policies: vec!["ro".into()],
        folders: vec![],
    };
    check::<Group>(
        vec![],
        create("partners"),
        expect![[r#"
            GroupCreated { name: "partners", policies: ["ro"], folders: [] }
        "#]],
    );
    check::<Group>(
        vec![created()],
        create("partners"),
        expect![[r#"
        error: group already exists
    "#]],
    );
    check::<Group>(
        vec![],
        create("a/b"),
        expect![[r#"
        error: invalid group name "a/b"
    "#]],
    );
}

#[test]
fn a_deleted_group_takes_no_more_commands() {
    check::<Group>(
        vec![created(), GroupEvent::GroupDeleted {}],
        GroupCommand::SetPolicies { policies: vec![] },
        expect![[r#"
        error: group does not exist
    "#]],
    );
    check::<Group>(
        vec![created()],
        GroupCommand::SetPolicies { policies: vec![] },
        expect![[r#"
        GroupPoliciesChanged { policies: [] }
    "#]],
    );
}
