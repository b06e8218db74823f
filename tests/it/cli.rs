//! The real `tollgate` executable: configuration checks, administration
//! commands, and `serve` announcing its address on stdout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use tollgate_audit::merkle;
use tollgate_audit::note::{Checkpoint, NoteVerifier};

use crate::support::{PASSWORD, hashes, unhex, upload_to, verify_inclusion_json};

fn tollgate(data_dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    // Only what the test sets reaches the binary's configuration.
    for (var, _) in std::env::vars().filter(|(var, _)| var.starts_with("TOLLGATE_")) {
        command.env_remove(var);
    }
    command
        .env("TOLLGATE_DATA_DIR", data_dir)
        .env("TOLLGATE_ADMIN_PASSWORD", "admin-secret");
    command
}

fn run(command: &mut Command, stdin: &str) -> (bool, String, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn config_validate_accepts_a_good_file_and_explains_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "data_dir = \"/tmp/x\"\n[sftp]\nlisten = \"0.0.0.0:2022\"\n",
    )
    .unwrap();
    let (ok, stdout, _) = run(
        tollgate(dir.path()).args(["config", "validate"]).arg(&good),
        "",
    );
    assert!(ok && stdout.contains("ok"), "{stdout}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[sftp]\nlisten = \"localhost:99999\"\nhost_keys = [\"/missing/key\"]\n\
         [ftp]\nimplicit_listen = \"990\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = run(
        tollgate(dir.path()).args(["config", "validate"]).arg(&bad),
        "",
    );
    assert!(!ok);
    assert!(
        stderr.contains("sftp.listen") && stderr.contains("/missing/key does not exist"),
        "{stderr}"
    );
    assert!(
        stderr.contains("ftp.implicit_listen needs ftp.tls_cert")
            && stderr.contains("\"990\" is not an address"),
        "{stderr}"
    );

    let (ok, _, stderr) = run(
        tollgate(dir.path())
            .env("TOLLGATE_SFTP_LISTN", "x")
            .args(["config", "validate"])
            .arg(&good),
        "",
    );
    assert!(
        !ok && stderr.contains("TOLLGATE_SFTP_LISTN"),
        "a misspelt variable is an error here: {stderr}"
    );

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "[sftp]\nport = 22\n").unwrap();
    let (ok, _, stderr) = run(
        tollgate(dir.path())
            .args(["config", "validate"])
            .arg(&unknown),
        "",
    );
    assert!(!ok && stderr.contains("unknown field `port`"), "{stderr}");
}

/// `tollgate policy add partner` (everything) and `user add NAME` with it.
fn add_partner(data: &std::path::Path, name: &str) -> (bool, String, String) {
    let (ok, _, stderr) = run(
        tollgate(data).args(["policy", "add", "partner", "--rule", "/=*"]),
        "",
    );
    assert!(ok, "{stderr}");
    run(
        tollgate(data).args([
            "user",
            "add",
            name,
            "--password-stdin",
            "--policy",
            "partner",
        ]),
        PASSWORD,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_added_by_the_cli_log_in_to_the_served_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, stdout, stderr) = add_partner(&data, "judy");
    assert!(
        ok && stdout.contains("user judy created"),
        "{stdout}{stderr}"
    );
    let (ok, _, stderr) = run(
        tollgate(&data).args(["user", "add", "judy", "--password", "another-password"]),
        "",
    );
    assert!(!ok && stderr.contains("user already exists"), "{stderr}");

    let (server, addr) = serve(&data);

    upload_to(addr, "judy", "hello.txt", b"hello").await;

    stop(server);

    let (ok, stdout, stderr) = run(
        tollgate(&data).args(["events", "list", "--user", "judy", "--json"]),
        "",
    );
    assert!(ok, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"LoginSucceeded") && types.contains(&"TransferCompleted"),
        "{types:?}"
    );
    let completed = events
        .iter()
        .rev()
        .find(|e| e["event_type"] == "TransferCompleted")
        .unwrap();
    assert_eq!(completed["sha256"], crate::support::sha256_hex(b"hello"));
    assert_eq!(
        completed["remote_addr"].as_str().unwrap().split(':').next(),
        Some("127.0.0.1")
    );

    let (ok, stdout, _) = run(tollgate(&data).args(["audit", "verify"]), "");
    assert!(ok && stdout.starts_with("OK:"), "{stdout}");

    // A signed checkpoint, its key, and a proof that the transfer is in it.
    let (ok, note, stderr) = run(tollgate(&data).args(["audit", "checkpoint"]), "");
    assert!(
        ok && note.starts_with("tollgate.local/audit\n"),
        "{note}{stderr}"
    );
    let (ok, key, _) = run(tollgate(&data).args(["audit", "checkpoint", "--key"]), "");
    assert!(ok, "{key}");
    let verifier = NoteVerifier::from_key(key.trim()).unwrap();
    let checkpoint = Checkpoint::open(&note, &verifier).unwrap();
    let event_id = completed["event_id"].as_str().unwrap();
    let (ok, proof, stderr) = run(
        tollgate(&data).args(["audit", "proof", "--event", event_id]),
        "",
    );
    assert!(ok, "{stderr}");
    let proof: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let path = hashes(&proof["proof"]);
    let position = proof["position"].as_u64().unwrap();
    assert!(position <= checkpoint.size && proof["checkpoint"] == note.as_str());
    merkle::verify_inclusion(
        position - 1,
        checkpoint.size,
        &unhex(proof["leaf_hash"].as_str().unwrap()),
        &path,
        &checkpoint.root,
    )
    .unwrap();
    let (ok, _, stderr) = run(
        tollgate(&data).args(["audit", "proof", "--event", "not-an-event"]),
        "",
    );
    assert!(!ok && stderr.contains("no event has the id"), "{stderr}");
    let (ok, stdout, _) = run(tollgate(&data).args(["audit", "tail", "-n", "2"]), "");
    assert!(ok && stdout.lines().count() == 2, "{stdout}");
    let (ok, stdout, _) = run(tollgate(&data).args(["projections", "rebuild"]), "");
    assert!(ok && stdout.contains("rebuilt"), "{stdout}");
    let (ok, stdout, _) = run(tollgate(&data).args(["user", "list"]), "");
    assert!(
        ok && stdout.contains("judy") && stdout.contains("enabled"),
        "{stdout}"
    );
}

/// Rewrites `file` in `bundle` through `change`.
fn edit_bundle(bundle: &std::path::Path, file: &str, change: impl FnOnce(String) -> String) {
    let path = bundle.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, change(text)).unwrap();
}

/// A copy of `bundle` with `change` applied, and what `audit verify
/// --bundle` says of it with `key`.
fn verify_altered(
    data: &std::path::Path,
    bundle: &std::path::Path,
    key: &str,
    file: &str,
    change: impl FnOnce(String) -> String,
) -> (bool, String) {
    let copy = bundle.with_extension(format!("altered-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    edit_bundle(&copy, file, change);
    let (ok, stdout, _) = run(
        tollgate(data)
            .args(["audit", "verify", "--bundle"])
            .arg(&copy)
            .args(["--key", key]),
        "",
    );
    // The independent verifier must reach the same verdict.
    let (python_ok, python_out) = python_verify(&copy, key);
    assert_eq!(ok, python_ok, "{stdout}\n{python_out}");
    let first_line = |text: &str| {
        text.lines()
            .next()
            .unwrap_or_default()
            .split(": ")
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        first_line(&stdout),
        first_line(&python_out),
        "{stdout}\n{python_out}"
    );
    (ok, stdout)
}

/// `tools/verify_bundle.py`, the verifier written from the documentation
/// alone (Python's standard library, no Tollgate code).
fn python_verify(bundle: &std::path::Path, key: &str) -> (bool, String) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/verify_bundle.py");
    let (ok, stdout, stderr) = run(
        Command::new("python3")
            .arg(script)
            .arg(bundle)
            .args(["--key", key]),
        "",
    );
    (ok, format!("{stdout}{stderr}"))
}

fn lines_edited(text: String, edit: impl FnOnce(&mut Vec<String>)) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    edit(&mut lines);
    lines.join("\n") + "\n"
}

#[test]
fn an_exported_bundle_verifies_offline_and_names_what_was_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for name in ["ann", "ben", "cat", "dan", "eve", "fay"] {
        let (ok, _, stderr) = run(
            tollgate(&data).args(["user", "add", name, "--password-stdin"]),
            "a-long-password\n",
        );
        assert!(ok, "{stderr}");
    }
    let bundle = dir.path().join("bundle");
    let (ok, stdout, stderr) = run(
        tollgate(&data)
            .args(["audit", "export", "--out"])
            .arg(&bundle),
        "",
    );
    assert!(
        ok && stdout.starts_with("exported records 1..="),
        "{stdout}{stderr}"
    );
    let (_, key, _) = run(tollgate(&data).args(["audit", "checkpoint", "--key"]), "");
    let key = key.trim().to_string();

    // Offline: the database is gone, the bundle and the key suffice.
    std::fs::remove_dir_all(&data).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let (ok, stdout, _) = run(
        tollgate(&elsewhere)
            .args(["audit", "verify", "--bundle"])
            .arg(&bundle)
            .args(["--key", &key]),
        "",
    );
    assert!(ok && stdout.starts_with("OK: records 1..="), "{stdout}");
    assert!(!elsewhere.exists(), "verifying a bundle opens no database");
    let (ok, out) = python_verify(&bundle, &key);
    assert!(ok && out.starts_with("OK: records 1..="), "{out}");

    let (ok, out) = verify_altered(&elsewhere, &bundle, &key, "records.ndjson", |t| {
        t.replacen("\"ben\"", "\"bob\"", 1)
    });
    assert!(!ok && out.contains("was altered"), "{out}");
    let (ok, out) = verify_altered(&elsewhere, &bundle, &key, "records.ndjson", |t| {
        lines_edited(t, |l| {
            l.remove(2);
        })
    });
    assert!(!ok && out.contains("record 3 is missing"), "{out}");
    let (ok, out) = verify_altered(&elsewhere, &bundle, &key, "records.ndjson", |t| {
        lines_edited(t, |l| l.swap(1, 2))
    });
    assert!(
        !ok && out.contains("record 3 is out of place (expected record 2)"),
        "{out}"
    );
    let (ok, out) = verify_altered(&elsewhere, &bundle, &key, "records.ndjson", |t| {
        lines_edited(t, |l| l.truncate(l.len() - 2))
    });
    assert!(!ok && out.contains("is missing"), "{out}");
    let (ok, out) = verify_altered(&elsewhere, &bundle, &key, "checkpoint.txt", |t| {
        let at = t.rfind(' ').unwrap() + 10;
        let mut t = t.into_bytes();
        t[at] = if t[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(t).unwrap()
    });
    assert!(
        !ok && out.contains("not signed by the trusted key"),
        "{out}"
    );

    // Another log's key is not this log's.
    let other = dir.path().join("other");
    let (_, other_key, _) = run(tollgate(&other).args(["audit", "checkpoint", "--key"]), "");
    let (ok, out) = verify_altered(
        &elsewhere,
        &bundle,
        other_key.trim(),
        "manifest.json",
        |t| t,
    );
    assert!(
        !ok && out.contains("not signed by the trusted key"),
        "{out}"
    );
}

#[test]
fn rotating_the_audit_key_retires_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let add = |name: &str| {
        let (ok, _, stderr) = run(
            tollgate(&data).args(["user", "add", name, "--password-stdin"]),
            "a-long-password\n",
        );
        assert!(ok, "{stderr}");
    };
    add("ann");
    let (ok, _, _) = run(tollgate(&data).args(["audit", "checkpoint"]), "");
    assert!(ok);
    let (_, old_key, _) = run(tollgate(&data).args(["audit", "checkpoint", "--key"]), "");
    let (ok, stdout, stderr) = run(tollgate(&data).args(["keys", "rotate-audit"]), "");
    assert!(ok && stdout.contains("is retired"), "{stdout}{stderr}");
    let (_, new_key, _) = run(tollgate(&data).args(["audit", "checkpoint", "--key"]), "");
    assert_ne!(old_key, new_key);
    add("ben");
    let (ok, stdout, _) = run(tollgate(&data).args(["audit", "verify"]), "");
    assert!(
        ok && stdout.contains("2 signed checkpoints verified"),
        "{stdout}"
    );
    let (_, events, _) = run(
        tollgate(&data).args(["events", "list", "--type", "AuditKeyRetired", "--json"]),
        "",
    );
    let old_id = old_key.split('+').nth(1).unwrap();
    assert!(events.contains(old_id), "{events}");

    // A process still holding the retired key signs after the rotation:
    // its checkpoint is not trusted.
    let retired = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".retired"))
        .expect("the retired key is kept");
    std::fs::copy(&retired, data.join("audit_checkpoint.key")).unwrap();
    add("cat");
    let (ok, _, _) = run(tollgate(&data).args(["audit", "checkpoint"]), "");
    assert!(ok);
    let (ok, stdout, _) = run(tollgate(&data).args(["audit", "verify"]), "");
    assert!(
        !ok && stdout.contains(&format!("key {old_id} was retired at record")),
        "{stdout}"
    );
}

#[test]
fn an_erasure_leaves_exports_and_bundles_verifiable_without_the_erased_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, _, stderr) = run(
        tollgate(&data).args([
            "user",
            "add",
            "lena",
            "--password-stdin",
            "--full-name",
            "Lena Example",
            "--email",
            "lena@example.org",
        ]),
        "a-long-password\n",
    );
    assert!(ok, "{stderr}");
    let (ok, stdout, _) = run(tollgate(&data).args(["user", "list", "--json"]), "");
    assert!(
        ok && stdout.contains("\"email\":\"lena@example.org\""),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run(tollgate(&data).args(["user", "erase", "lena"]), "");
    assert!(
        ok && stdout.contains("personal data of lena erased (1 keys destroyed)"),
        "{stdout}{stderr}"
    );
    let (ok, _, stderr) = run(tollgate(&data).args(["user", "erase", "lena"]), "");
    assert!(!ok && stderr.contains("already erased"), "{stderr}");
    let (ok, _, stderr) = run(tollgate(&data).args(["user", "erase", "nobody"]), "");
    assert!(!ok && stderr.contains("does not exist"), "{stderr}");

    let (ok, stdout, _) = run(
        tollgate(&data).args(["events", "list", "--user", "lena", "--json"]),
        "",
    );
    assert!(ok, "{stdout}");
    let created: serde_json::Value = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event_type"] == "UserCreated")
        .unwrap();
    assert_eq!(
        created["payload"]["UserCreated"]["profile"],
        serde_json::json!({"full_name": "[erased]", "email": "[erased]"})
    );
    let (ok, stdout, _) = run(tollgate(&data).args(["audit", "verify"]), "");
    assert!(ok && stdout.starts_with("OK:"), "{stdout}");

    // The bundle proves the erased records too; it never held them in clear.
    let bundle = dir.path().join("bundle");
    let (ok, _, stderr) = run(
        tollgate(&data)
            .args(["audit", "export", "--out"])
            .arg(&bundle),
        "",
    );
    assert!(ok, "{stderr}");
    let records = std::fs::read_to_string(bundle.join("records.ndjson")).unwrap();
    assert!(records.contains("UserErased") && records.contains("tgpd1:"));
    assert!(!records.contains("lena@example.org") && !records.contains("Lena Example"));
    let (_, key, _) = run(tollgate(&data).args(["audit", "checkpoint", "--key"]), "");
    let (ok, stdout, _) = run(
        tollgate(&data)
            .args(["audit", "verify", "--bundle"])
            .arg(&bundle)
            .args(["--key", key.trim()]),
        "",
    );
    assert!(ok && stdout.starts_with("OK: records 1..="), "{stdout}");
    let (ok, out) = python_verify(&bundle, key.trim());
    assert!(ok && out.starts_with("OK: records 1..="), "{out}");
}

/// Starts `tollgate serve` on ephemeral ports; returns the child and the SFTP address.
fn serve(data: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    let mut server = tollgate(data)
        .args(["serve", "--listen-sftp", "127.0.0.1:0"])
        .args([
            "--listen-http",
            "127.0.0.1:0",
            "--listen-ftp",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let announced: serde_json::Value = serde_json::from_str(&line).unwrap();
    (
        server,
        announced["address"].as_str().unwrap().parse().unwrap(),
    )
}

/// Stops `serve` with SIGTERM; it must exit cleanly.
fn stop(mut server: std::process::Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(server.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        server.wait().unwrap().success(),
        "serve exits cleanly on SIGTERM"
    );
}

fn events_json(data: &std::path::Path) -> Vec<serde_json::Value> {
    let (ok, stdout, stderr) = run(tollgate(data).args(["events", "list", "--json"]), "");
    assert!(ok, "{stderr}");
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_records_are_pruned_and_the_trail_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (ok, _, stderr) = add_partner(&data, "ivy");
    assert!(ok, "{stderr}");
    let (server, addr) = serve(&data);
    for n in 0..3 {
        upload_to(addr, "ivy", &format!("f{n}.txt"), b"data").await;
    }
    stop(server);
    let before = events_json(&data);
    let created = before
        .iter()
        .find(|e| e["event_type"] == "UserCreated")
        .unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let closed = before
        .iter()
        .filter(|e| e["event_type"] == "SessionClosed")
        .count();
    assert_eq!(closed, 3, "{before:?}");

    let bundle = dir.path().join("bundle");
    let (ok, _, stderr) = run(
        tollgate(&data)
            .args(["audit", "export", "--out"])
            .arg(&bundle),
        "",
    );
    assert!(ok, "{stderr}");

    // Refused: no cut-off; a bundle of another log; an altered bundle.
    let (ok, _, stderr) = run(
        tollgate(&data)
            .args(["audit", "prune", "--bundle"])
            .arg(&bundle),
        "",
    );
    assert!(!ok && stderr.contains("audit.retention_days"), "{stderr}");
    let other = dir.path().join("other");
    run(
        tollgate(&other).args(["policy", "add", "x", "--rule", "/=list"]),
        "",
    );
    let foreign = dir.path().join("foreign");
    run(
        tollgate(&other)
            .args(["audit", "export", "--out"])
            .arg(&foreign),
        "",
    );
    let future = "2999-01-01T00:00:00Z";
    let (ok, _, stderr) = run(
        tollgate(&data)
            .args(["audit", "prune", "--before", future, "--bundle"])
            .arg(&foreign),
        "",
    );
    assert!(
        !ok && stderr.contains("not signed by a key of this log"),
        "{stderr}"
    );
    let altered = dir.path().join("altered");
    std::fs::create_dir(&altered).unwrap();
    for entry in std::fs::read_dir(&bundle).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), altered.join(entry.file_name())).unwrap();
    }
    edit_bundle(&altered, "records.ndjson", |t| {
        t.replacen("\"ivy\"", "\"eve\"", 1)
    });
    let (ok, _, stderr) = run(
        tollgate(&data)
            .args(["audit", "prune", "--before", future, "--bundle"])
            .arg(&altered),
        "",
    );
    assert!(!ok && stderr.contains("does not verify"), "{stderr}");
    // Nothing is older than a time before everything.
    let (ok, stdout, stderr) = run(
        tollgate(&data)
            .args([
                "audit",
                "prune",
                "--before",
                "2000-01-01T00:00:00Z",
                "--bundle",
            ])
            .arg(&bundle),
        "",
    );
    assert!(
        ok && stdout.starts_with("nothing to prune"),
        "{stdout}{stderr}"
    );

    let (ok, stdout, stderr) = run(
        tollgate(&data)
            .args(["audit", "prune", "--before", future, "--bundle"])
            .arg(&bundle),
        "",
    );
    assert!(ok && stdout.starts_with("pruned "), "{stdout}{stderr}");
    let pruned: u64 = stdout.split_whitespace().nth(1).unwrap().parse().unwrap();
    let after = events_json(&data);
    let types: Vec<&str> = after
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    for gone in [
        "SessionOpened",
        "LoginSucceeded",
        "TransferCompleted",
        "SessionClosed",
    ] {
        assert!(!types.contains(&gone), "{gone} stays: {types:?}");
    }
    for kept in [
        "PolicyCreated",
        "UserCreated",
        "AuditKeyActivated",
        "AuditRecordsPruned",
    ] {
        assert!(types.contains(&kept), "{kept} is gone: {types:?}");
    }
    assert!(pruned >= 3 * 5, "{pruned}");

    // The live trail verifies across the gaps, proofs still work, and the
    // bundle still proves the pruned records offline.
    let (ok, stdout, _) = run(tollgate(&data).args(["audit", "verify"]), "");
    assert!(
        ok && stdout.contains(&format!("({pruned} pruned after export)")),
        "{stdout}"
    );
    let (ok, proof, stderr) = run(
        tollgate(&data).args(["audit", "proof", "--event", &created]),
        "",
    );
    assert!(ok, "{stderr}");
    let proof: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let (_, key, _) = run(tollgate(&data).args(["audit", "checkpoint", "--key"]), "");
    verify_inclusion_json(&proof, &key);
    let (ok, out) = python_verify(&bundle, key.trim());
    assert!(ok && out.starts_with("OK: records 1..="), "{out}");

    // A new export starts after the pruned records; one reaching back to
    // them is refused with the reason.
    let later = dir.path().join("later");
    let (ok, stdout, stderr) = run(
        tollgate(&data)
            .args(["audit", "export", "--out"])
            .arg(&later),
        "",
    );
    assert!(ok, "{stdout}{stderr}");
    let (ok, out) = python_verify(&later, key.trim());
    assert!(ok, "{out}");
    let (ok, _, stderr) = run(
        tollgate(&data)
            .args(["audit", "export", "--from", "2000-01-01T00:00:00Z", "--out"])
            .arg(dir.path().join("reaching")),
        "",
    );
    assert!(!ok && stderr.contains("were pruned"), "{stderr}");
}
