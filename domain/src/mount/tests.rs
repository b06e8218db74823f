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
        },
        expect![[r#"
            error: a local storage root must be an absolute path
        "#]],
    );
    let created = MountEvent::MountCreated {
        name: "archive".into(),
        description: "old".into(),
        storage: s3("sealed-1"),
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
