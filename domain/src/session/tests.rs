//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;

fn opened() -> SessionEvent {
    SessionEvent::SessionOpened {
        protocol: Protocol::Sftp,
        remote_addr: "127.0.0.1:4000".into(),
    }
}

fn logged_in() -> SessionEvent {
    SessionEvent::LoginSucceeded {
        username: "alice".into(),
        method: LoginMethod::Password,
        key_fingerprint: None,
        admin: false,
    }
}

#[test]
fn failed_logins_are_recorded_before_authentication() {
    check::<Session>(
        vec![opened()],
        SessionCommand::RecordLoginFailure {
            username: "mallory".into(),
            method: LoginMethod::Password,
            reason: "unknown user".into(),
            admin: false,
        },
        expect![[r#"
            LoginFailed { username: "mallory", method: Password, reason: "unknown user", admin: false }
        "#]],
    );
}

#[test]
fn file_operations_need_a_login() {
    let op = || SessionCommand::RecordOperation {
        operation: FileOperation::Mkdir,
        path: "/d".into(),
        target: None,
        usage: None,
    };
    check::<Session>(
        vec![opened()],
        op(),
        expect![[r#"
        error: session is not authenticated
    "#]],
    );
    check::<Session>(
        vec![opened(), logged_in()],
        op(),
        expect![[r#"
            FileOperationPerformed { operation: Mkdir, path: "/d", target: None, usage: None }
        "#]],
    );
}

#[test]
fn a_closed_session_records_nothing_more() {
    let closed = SessionEvent::SessionClosed {
        reason: "eof".into(),
    };
    check::<Session>(
        vec![opened(), logged_in(), closed],
        SessionCommand::Close {
            reason: "again".into(),
        },
        expect![[r#"
        error: session is closed
    "#]],
    );
    check::<Session>(
        vec![],
        SessionCommand::Close { reason: "x".into() },
        expect![[r#"
        error: session is not open
    "#]],
    );
}

#[test]
fn a_disconnect_can_be_requested_until_the_session_closes() {
    let request = || SessionCommand::RequestDisconnect { by: "admin".into() };
    check::<Session>(
        vec![opened(), logged_in()],
        request(),
        expect![[r#"
            SessionDisconnectRequested { by: "admin" }
        "#]],
    );
    check::<Session>(
        vec![
            opened(),
            SessionEvent::SessionClosed {
                reason: "gone".into(),
            },
        ],
        request(),
        expect![[r#"
            error: session is closed
        "#]],
    );
}
