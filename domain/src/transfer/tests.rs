//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check;
use crate::session::Protocol;

fn context() -> TransferContext {
    TransferContext {
        session_id: "s1".into(),
        username: "alice".into(),
        protocol: Protocol::Sftp,
        remote_addr: "127.0.0.1:5000".into(),
        path: "/a.txt".into(),
        direction: Direction::Upload,
    }
}

fn started() -> TransferEvent {
    TransferEvent::TransferStarted {
        context: context(),
        offset: 0,
    }
}

#[test]
fn a_started_transfer_completes_once() {
    let complete = || TransferCommand::Complete {
        bytes: 3,
        size: 3,
        sha256: Some("ab".into()),
        duration_ms: 5,
        usage: Some(UsageChange::written(3, None)),
    };
    check::<Transfer>(
        vec![started()],
        complete(),
        expect![[r#"
            TransferCompleted { path: "/a.txt", bytes: 3, size: 3, sha256: Some("ab"), duration_ms: 5, usage: Some(UsageChange { bytes: 3, files: 1 }) }
        "#]],
    );
    let done = TransferEvent::TransferCompleted {
        path: "/a.txt".into(),
        bytes: 3,
        size: 3,
        sha256: None,
        duration_ms: 5,
        usage: None,
    };
    check::<Transfer>(
        vec![started(), done],
        TransferCommand::Abort {
            bytes: 3,
            reason: "x".into(),
            duration_ms: 1,
        },
        expect![[r#"
            error: transfer already ended as Completed
        "#]],
    );
}

#[test]
fn an_outcome_needs_a_start() {
    check::<Transfer>(
        vec![],
        TransferCommand::Fail {
            bytes: 0,
            error: "e".into(),
            duration_ms: 0,
        },
        expect![[r#"
        error: transfer was not started
    "#]],
    );
}

#[test]
fn a_denied_transfer_cannot_start() {
    let denied = TransferEvent::TransferDenied {
        context: context(),
        rule: "p:/".into(),
    };
    check::<Transfer>(
        vec![denied],
        TransferCommand::Start {
            context: context(),
            offset: 0,
        },
        expect![[r#"
        error: transfer already exists
    "#]],
    );
}

#[test]
fn usage_changes_count_bytes_and_files() {
    assert_eq!(
        UsageChange::written(10, None),
        UsageChange {
            bytes: 10,
            files: 1
        }
    );
    assert_eq!(
        UsageChange::written(4, Some(10)),
        UsageChange {
            bytes: -6,
            files: 0
        }
    );
    assert_eq!(
        UsageChange::removed(7),
        UsageChange {
            bytes: -7,
            files: -1
        }
    );
}
