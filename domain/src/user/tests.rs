//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfake0key0for0tests0only0000000000000000000 alice@laptop";

fn created() -> UserEvent {
    UserEvent::UserCreated {
        username: "alice".into(),
        password_hash: Some("$argon2id$hash".into()),
        public_keys: vec![],
        home: "/srv/alice".into(),
        groups: vec![],
        policies: vec![],
        ftp_require_tls: false,
        profile: UserProfile::default(),
        folders: vec![],
    }
}

fn create(username: &str, password: Option<&str>, keys: Vec<AuthorizedKey>) -> UserCommand {
    UserCommand::Create {
        username: username.into(),
        password_hash: password.map(Into::into),
        public_keys: keys,
        home: "/srv/alice".into(),
        groups: vec![],
        policies: vec!["readonly".into()],
        ftp_require_tls: false,
        profile: UserProfile::default(),
        folders: vec![],
    }
}

#[test]
fn creating_a_user_records_its_credentials_and_home() {
    check::<User>(
        vec![],
        create("alice", None, vec![AuthorizedKey::parse(KEY).unwrap()]),
        expect![[r#"
            UserCreated { username: "alice", password_hash: None, public_keys: [AuthorizedKey { algorithm: "ssh-ed25519", blob: "AAAAC3NzaC1lZDI1NTE5AAAAIHfake0key0for0tests0only0000000000000000000", comment: "alice@laptop" }], home: "/srv/alice", groups: [], policies: ["readonly"], ftp_require_tls: false, profile: UserProfile { full_name: None, email: None }, folders: [] }
        "#]],
    );
}

#[test]
fn a_user_needs_a_credential_and_a_valid_name() {
    check::<User>(
        vec![],
        create("alice", None, vec![]),
        expect![[r#"
        error: a user needs a password or a public key
    "#]],
    );
    check::<User>(
        vec![],
        create("../root", Some("h"), vec![]),
        expect![[r#"
        error: invalid user name "../root"
    "#]],
    );
}

#[test]
fn a_user_cannot_be_created_twice_but_can_after_deletion() {
    check::<User>(
        vec![created()],
        create("alice", Some("h"), vec![]),
        expect![[r#"
        error: user already exists
    "#]],
    );
    check::<User>(
        vec![created(), UserEvent::UserDeleted {}],
        create("alice", Some("h"), vec![]),
        expect![[r#"
            UserCreated { username: "alice", password_hash: Some("h"), public_keys: [], home: "/srv/alice", groups: [], policies: ["readonly"], ftp_require_tls: false, profile: UserProfile { full_name: None, email: None }, folders: [] }
        "#]],
    );
}

#[test]
fn disabling_twice_is_refused() {
    check::<User>(
        vec![created()],
        UserCommand::Disable,
        expect![[r#"
        UserDisabled
    "#]],
    );
    check::<User>(
        vec![created(), UserEvent::UserDisabled {}],
        UserCommand::Disable,
        expect![[r#"
        error: user is already disabled
    "#]],
    );
}

#[test]
fn commands_on_a_missing_user_are_refused() {
    check::<User>(
        vec![],
        UserCommand::ChangePassword {
            password_hash: "h".into(),
        },
        expect![[r#"
        error: user does not exist
    "#]],
    );
}

#[test]
fn public_keys_compare_without_their_comment() {
    let a = AuthorizedKey::parse(KEY).unwrap();
    let b = AuthorizedKey::parse(KEY.trim_end_matches(" alice@laptop")).unwrap();
    assert_eq!(a, b);
    assert!(AuthorizedKey::parse("ssh-foo AAAA").is_err());
    assert!(AuthorizedKey::parse("not a key").is_err());
}

#[test]
fn an_update_records_only_what_changes_and_keeps_a_credential() {
    let created = UserEvent::UserCreated {
        username: "alice".into(),
        password_hash: None,
        public_keys: vec![],
        home: "/srv/alice".into(),
        groups: vec![],
        policies: vec![],
        ftp_require_tls: false,
        profile: UserProfile::default(),
        folders: vec![],
    };
    check::<User>(
        vec![created.clone()],
        UserCommand::Update(UserUpdate {
            groups: Some(vec!["partners".into()]),
            enabled: Some(true),
            ..UserUpdate::default()
        }),
        expect![[r#"
            UserGroupsChanged { groups: ["partners"] }
        "#]],
    );
    check::<User>(
        vec![created],
        UserCommand::Update(UserUpdate {
            public_keys: Some(vec![]),
            enabled: Some(false),
            ..UserUpdate::default()
        }),
        expect![[r#"
            error: a user needs a password or a public key
        "#]],
    );
}

#[test]
fn requiring_tls_for_ftp_is_recorded_once() {
    check::<User>(
        vec![created()],
        UserCommand::Update(UserUpdate {
            ftp_require_tls: Some(true),
            ..UserUpdate::default()
        }),
        expect![[r#"
            UserFtpSecurityChanged { require_tls: true }
        "#]],
    );
    check::<User>(
        vec![
            created(),
            UserEvent::UserFtpSecurityChanged { require_tls: true },
        ],
        UserCommand::Update(UserUpdate {
            ftp_require_tls: Some(true),
            ..UserUpdate::default()
        }),
        expect![""],
    );
}

#[test]
fn an_erasure_deletes_the_user_once_and_names_the_destroyed_keys() {
    let profiled = UserEvent::UserProfileChanged {
        profile: UserProfile {
            full_name: Some("tgpd1:k1:AAAA".into()),
            email: None,
        },
    };
    check::<User>(
        vec![created(), profiled.clone()],
        UserCommand::Erase {
            key_ids: vec!["k1".into()],
        },
        expect![[r#"
            UserDeleted
            UserErased { key_ids: ["k1"] }
        "#]],
    );
    // A deleted user can still be erased; an erased one not twice; a name
    // never created not at all.
    check::<User>(
        vec![created(), UserEvent::UserDeleted {}],
        UserCommand::Erase { key_ids: vec![] },
        expect![[r#"
            UserErased { key_ids: [] }
        "#]],
    );
    let erased = UserEvent::UserErased { key_ids: vec![] };
    check::<User>(
        vec![created(), UserEvent::UserDeleted {}, erased.clone()],
        UserCommand::Erase { key_ids: vec![] },
        expect![[r#"
            error: user is already erased
        "#]],
    );
    check::<User>(
        vec![],
        UserCommand::Erase { key_ids: vec![] },
        expect![[r#"
            error: user does not exist
        "#]],
    );
    let mut user = User::default();
    for event in [created(), profiled, UserEvent::UserDeleted {}, erased] {
        user.apply(event);
    }
    assert!(user.erased && !user.exists());
    assert_eq!(user.profile, UserProfile::default());
    // The name may be created again, as a new person with no erasure.
    user.apply(created());
    assert!(user.exists() && !user.erased);
}
