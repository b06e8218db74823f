//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;

fn rule(text: &str) -> Rule {
    Rule::parse(text).unwrap()
}

#[test]
fn evaluation_table() {
    let partner = [
        rule("/=list,download"),
        rule("/inbox=list,upload,create_dirs"),
        rule("/inbox/locked=list"),
    ];
    let extra = [rule("/inbox=delete")];
    let policies = [
        NamedRules {
            policy: "partner",
            rules: &partner,
        },
        NamedRules {
            policy: "extra",
            rules: &extra,
        },
    ];
    let cases = [
        (Permission::Download, "/report.csv", true, "partner:/"),
        (Permission::Upload, "/report.csv", false, "partner:/"),
        (Permission::Upload, "/inbox/a.txt", true, "partner:/inbox"),
        // Same depth in two policies: the grants add up.
        (Permission::Delete, "/inbox/a.txt", true, "extra:/inbox"),
        (Permission::Rename, "/inbox/a.txt", false, "partner:/inbox"),
        (
            Permission::Upload,
            "/inbox/locked/a",
            false,
            "partner:/inbox/locked",
        ),
        (
            Permission::List,
            "/inbox/locked",
            true,
            "partner:/inbox/locked",
        ),
        // Prefixes match whole components only.
        (Permission::Upload, "/inboxes/a", false, "partner:/"),
    ];
    for (permission, path, allowed, rule) in cases {
        let decision = evaluate(&policies, permission, &VirtualPath::parse(path).unwrap());
        assert_eq!(
            decision,
            Decision {
                allowed,
                rule: rule.into()
            },
            "{permission:?} {path}"
        );
    }
}

#[test]
fn no_matching_rule_means_the_default_allow() {
    let decision = evaluate(&[], Permission::Delete, &VirtualPath::parse("/x").unwrap());
    assert_eq!(
        decision,
        Decision {
            allowed: true,
            rule: "default".into()
        }
    );
}

#[test]
fn rules_parse_and_reject_unknown_permissions() {
    assert_eq!(rule("/a=*").permissions.len(), Permission::ALL.len());
    assert_eq!(
        Rule::parse("/a=fly"),
        Err(PolicyError::UnknownPermission { name: "fly".into() })
    );
    assert!(Rule::parse("/a").is_err());
    assert!(Rule::parse("/../a=list").is_err());
}

#[test]
fn policy_lifecycle() {
    check::<Policy>(
        vec![],
        PolicyCommand::Create {
            name: "ro".into(),
            rules: vec![rule("/=list,download")],
        },
        expect![[r#"
            PolicyCreated { name: "ro", rules: [Rule { path_prefix: VirtualPath("/"), permissions: {List, Download} }] }
        "#]],
    );
    check::<Policy>(
        vec![],
        PolicyCommand::Delete,
        expect![[r#"
        error: policy does not exist
    "#]],
    );
}
