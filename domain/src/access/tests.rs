//! Tests of the parent module.
use super::*;

fn context() -> LoginContext {
    LoginContext {
        protocol: Protocol::Sftp,
        method: LoginMethod::Password,
        source: Some("10.1.2.3".parse().unwrap()),
        weekday: 2,
        minute: 9 * 60,
        sessions: 0,
        second_factor: false,
    }
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

#[test]
fn address_blocks_parse_print_and_match() {
    assert!(cidr("10.0.0.0/8").contains("10.255.0.1".parse().unwrap()));
    assert!(!cidr("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
    assert!(cidr("0.0.0.0/0").contains("8.8.8.8".parse().unwrap()));
    assert!(cidr("127.0.0.2").contains("127.0.0.2".parse().unwrap()));
    assert!(!cidr("127.0.0.2").contains("127.0.0.1".parse().unwrap()));
    assert!(cidr("2001:db8::/32").contains("2001:db8:1::5".parse().unwrap()));
    assert!(cidr("192.168.1.0/24").contains("::ffff:192.168.1.9".parse().unwrap()));
    assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
    for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::/129"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn each_condition_refuses_with_its_own_reason() {
    let open = AccessRules::default();
    assert_eq!(open.check(&context()), Ok(()));
    let rules = |edit: fn(&mut AccessRules)| {
        let mut rules = AccessRules::default();
        edit(&mut rules);
        rules.check(&context())
    };
    assert_eq!(
        rules(|r| r.protocols = vec![Protocol::Http]),
        Err(AccessRefusal::Protocol)
    );
    assert_eq!(
        rules(|r| r.login_methods = vec![LoginMethod::PublicKey]),
        Err(AccessRefusal::LoginMethod)
    );
    assert_eq!(
        rules(|r| r.allow_from = vec!["192.168.0.0/16".parse().unwrap()]),
        Err(AccessRefusal::Source)
    );
    assert_eq!(
        rules(|r| {
            r.allow_from = vec!["10.0.0.0/8".parse().unwrap()];
            r.deny_from = vec!["10.1.0.0/16".parse().unwrap()];
        }),
        Err(AccessRefusal::Source),
        "deny wins"
    );
    assert_eq!(
        rules(|r| r.time_windows = vec![TimeWindow {
            days: vec![0, 1],
            from_minute: 0,
            to_minute: 1440
        }]),
        Err(AccessRefusal::Hours)
    );
    assert_eq!(
        rules(|r| r.time_windows = vec![TimeWindow {
            days: vec![],
            from_minute: 8 * 60,
            to_minute: 9 * 60
        }]),
        Err(AccessRefusal::Hours),
        "the end is exclusive"
    );
    assert_eq!(
        rules(|r| r.max_sessions = Some(0)),
        Err(AccessRefusal::Sessions)
    );
    let mut token = context();
    token.method = LoginMethod::Token;
    let keys_only = AccessRules {
        login_methods: vec![LoginMethod::PublicKey],
        ..AccessRules::default()
    };
    assert_eq!(
        keys_only.check(&token),
        Ok(()),
        "a token was issued after a login"
    );
    let mut certificate = context();
    certificate.method = LoginMethod::Certificate;
    assert_eq!(
        keys_only.check(&certificate),
        Ok(()),
        "a certificate is a public key a CA vouches for"
    );
    let passwords_only = AccessRules {
        login_methods: vec![LoginMethod::Password],
        ..AccessRules::default()
    };
    assert_eq!(
        passwords_only.check(&certificate),
        Err(AccessRefusal::LoginMethod)
    );
}

#[test]
fn the_users_own_conditions_win_over_their_groups() {
    let own = AccessRules {
        max_sessions: Some(2),
        ..AccessRules::default()
    };
    let first = AccessRules {
        max_sessions: Some(9),
        protocols: vec![Protocol::Sftp],
        ..AccessRules::default()
    };
    let second = AccessRules {
        protocols: vec![Protocol::Ftp],
        deny_from: vec!["10.0.0.0/8".parse().unwrap()],
        ..AccessRules::default()
    };
    let rules = AccessRules::effective(&own, [&first, &second]);
    assert_eq!(rules.max_sessions, Some(2));
    assert_eq!(rules.protocols, vec![Protocol::Sftp]);
    assert_eq!(rules.deny_from.len(), 1);
}

#[test]
fn malformed_windows_are_refused() {
    for window in [
        TimeWindow {
            days: vec![7],
            from_minute: 0,
            to_minute: 60,
        },
        TimeWindow {
            days: vec![],
            from_minute: 60,
            to_minute: 60,
        },
        TimeWindow {
            days: vec![],
            from_minute: 0,
            to_minute: 1441,
        },
    ] {
        let rules = AccessRules {
            time_windows: vec![window.clone()],
            ..AccessRules::default()
        };
        assert!(rules.validate().is_err(), "{window:?}");
    }
}

#[test]
fn a_required_second_factor_refuses_users_without_one() {
    let rules = AccessRules {
        require_totp: Some(true),
        ..AccessRules::default()
    };
    assert_eq!(rules.check(&context()), Err(AccessRefusal::SecondFactor));
    let enrolled = LoginContext {
        second_factor: true,
        ..context()
    };
    assert_eq!(rules.check(&enrolled), Ok(()));
    assert_eq!(AccessRules::default().check(&context()), Ok(()));
}
