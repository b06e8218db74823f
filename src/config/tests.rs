//! Tests of the parent module.
use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn no_file_gives_the_embedded_defaults() {
    let (config, _) = Config::load(None, env(&[])).unwrap();
    assert_eq!(config.sftp.listen, "127.0.0.1:2022");
    assert_eq!(config.database_url(), "sqlite:./data/tollgate.db");
    assert!(config.storage.sync_uploads, "uploads are synced by default");
}

#[test]
fn environment_variables_override_file_keys() {
    let file = write("[sftp]\nlisten = \"127.0.0.1:1\"\n");
    let (config, unmatched) = Config::load(
        Some(file.path()),
        env(&[
            ("TOLLGATE_SFTP_LISTEN", "127.0.0.1:2"),
            ("TOLLGATE_SFTP_IDLE_TIMEOUT_SECS", "30"),
            ("TOLLGATE_DATABASE_URL", "postgres://localhost/x"),
            ("TOLLGATE_STORAGE_SYNC_UPLOADS", "false"),
            ("TOLLGATE_ADMIN_PASSWORD", "not a key"),
            ("PATH", "/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(config.sftp.listen, "127.0.0.1:2");
    assert_eq!(config.sftp.idle_timeout_secs, 30);
    assert_eq!(config.database_url(), "postgres://localhost/x");
    assert!(!config.storage.sync_uploads);
    assert!(unmatched.is_empty(), "{unmatched:?}");
}

#[test]
fn unknown_keys_bad_ports_and_missing_paths_are_reported() {
    let cases = [
        ("[sftp]\nlistne = \"x\"\n", "unknown field `listne`"),
        ("[sftp]\nlisten = \"127.0.0.1:99999\"\n", "sftp.listen"),
        (
            "[sftp]\nhost_keys = [\"/nonexistent/key\"]\n",
            "/nonexistent/key does not exist",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        ("[database]\nurl = \"mysql://x\"\n", "database.url"),
        ("data_dir = 5\n", "invalid type"),
    ];
    for (text, expected) in cases {
        let file = write(text);
        let err = format!(
            "{:#}",
            Config::load(Some(file.path()), env(&[])).unwrap_err()
        );
        assert!(err.contains(expected), "{text:?} gave {err:?}");
    }
    let (_, unmatched) = Config::load(None, env(&[("TOLLGATE_SFTP_LISTN", "x")])).unwrap();
    assert_eq!(
        unmatched,
        vec!["TOLLGATE_SFTP_LISTN".to_string()],
        "a likely typo is reported"
    );
    let err = format!(
        "{:#}",
        Config::load(None, env(&[("TOLLGATE_SFTP_IDLE_TIMEOUT_SECS", "soon")])).unwrap_err()
    );
    assert!(err.contains("wrong type"), "{err}");
}
