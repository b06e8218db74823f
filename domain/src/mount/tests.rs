//! Tests of the parent module.
use expect_test::expect;

use super::*;
use crate::aggregate::check as decide;

fn s3(secret: &str) -> StorageSpec {
    StorageSpec::S3 {
        bucket: "partners".into(),
        region: "eu-west-1".into(),
        endpoint: None,
        prefix: None,
        access_key_id: Some("AKIA".into()),
        secret_access_key: Some(SealedSecret(secret.into())),
    }
}

#[test]
fn a_mount_is_checked_and_changes_only_what_differs() {
    decide::<Mount>(
        vec![],
        MountCommand::Create {
            name: "archive".into(),
            description: String::new(),
            storage: StorageSpec::Local {
                root: "relative/dir".into(),
            },
            encryption_key: None,
        },
        expect![[r#"
            error: a local storage root must be an absolute path
        "#]],
    );
    let created = MountEvent::MountCreated {
        name: "archive".into(),
        description: "old".into(),
        storage: s3("sealed-1"),
        encryption_key: None,
    };
    decide::<Mount>(
        vec![created.clone()],
        MountCommand::Change {
            description: Some("old".into()),
            storage: Some(s3("sealed-2")),
        },
        expect![[r#"
            MountStorageChanged { storage: S3 { bucket: "partners", region: "eu-west-1", endpoint: None, prefix: None, access_key_id: Some("AKIA"), secret_access_key: Some(SealedSecret("sealed-2")) } }
        "#]],
    );
    decide::<Mount>(
        vec![created, MountEvent::MountDeleted {}],
        MountCommand::Delete,
        expect![[r#"
            error: mount does not exist
        "#]],
    );
}

fn folder(path: &str, mount: &str) -> VirtualFolder {
    VirtualFolder {
        path: VirtualPath::parse(path).unwrap(),
        mount: mount.into(),
    }
}

#[test]
fn virtual_folders_are_below_the_root_and_never_overlap() {
    assert_eq!(
        check_folders(&[folder("/s3", "bucket"), folder("/vault", "enc")]),
        Ok(())
    );
    assert_eq!(
        check_folders(&[folder("/", "bucket")]),
        Err(FolderError::Root)
    );
    assert_eq!(
        check_folders(&[folder("/a", "one"), folder("/a/", "two")]),
        Err(FolderError::Duplicate { path: "/a".into() })
    );
    assert_eq!(
        check_folders(&[folder("/a/b", "one"), folder("/a", "two")]),
        Err(FolderError::Nested {
            outer: "/a".into(),
            inner: "/a/b".into()
        })
    );
    assert_eq!(
        check_folders(&[folder("/ab", "one"), folder("/a", "two")]),
        Ok(()),
        "a shared name prefix is not nesting"
    );
    assert_eq!(
        check_folders(&[folder("/x", "../etc")]),
        Err(FolderError::InvalidMount {
            name: "../etc".into()
        })
    );
}

#[test]
fn an_sftp_mount_must_pin_the_host_key() {
    let sftp = |fingerprint: Option<&str>| StorageSpec::Sftp {
        host: "sftp.example.com".into(),
        port: 22,
        username: "gw".into(),
        root: None,
        password: None,
        private_key: None,
        host_key_fingerprint: fingerprint.map(Into::into),
    };
    assert_eq!(
        check(&sftp(None)),
        Err(MountError::MissingField {
            field: "host_key_fingerprint"
        })
    );
    assert_eq!(check(&sftp(Some("SHA256:abc"))), Ok(()));
}
