//! The `tollgate` command: parses the command line and hands over to the
//! composition root (`tollgate::Server`) or to one administrative command.
#![allow(clippy::print_stdout)]

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tollgate::{Config, Listeners, Server};
use tollgate_application::{EventFilter, EventSummary, NewUser};

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "A file-transfer gateway with a tamper-evident audit trail"
)]
struct Cli {
    /// The configuration file (default: none, embedded defaults).
    #[arg(long, short, global = true, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the server.
    Serve {
        /// Overrides sftp.listen (use 127.0.0.1:0 for an ephemeral port).
        #[arg(long)]
        listen_sftp: Option<String>,
        /// Overrides http.listen (use 127.0.0.1:0 for an ephemeral port).
        #[arg(long)]
        listen_http: Option<String>,
        /// Overrides ftp.listen (use 127.0.0.1:0 for an ephemeral port).
        #[arg(long)]
        listen_ftp: Option<String>,
        /// Overrides ftp.implicit_listen (implicit FTPS; needs the certificate).
        #[arg(long)]
        listen_ftps: Option<String>,
    },
    /// Signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// User administration.
    #[command(subcommand)]
    User(UserCommand),
    /// Policy administration.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Group administration.
    #[command(subcommand)]
    Group(GroupCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The event log.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Read models.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Starts signing access tokens with a new key; tokens signed with the
    /// previous key stay valid until they expire. Takes effect when the
    /// server (re)starts.
    RotateToken,
    /// Starts signing audit checkpoints with a new key: the new key is
    /// activated in the log, the previous one retired (checkpoints it signs
    /// afterwards are not trusted), and a first checkpoint is signed with
    /// the new key. Stop the server first; it signs with the key it
    /// loaded until it restarts.
    RotateAudit,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Checks a configuration file (and TOLLGATE_* overrides).
    Validate { file: PathBuf },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Creates a user.
    Add {
        name: String,
        /// The password (prefer --password-stdin: arguments are visible to other local users).
        #[arg(long)]
        password: Option<String>,
        /// Reads the password from standard input.
        #[arg(long)]
        password_stdin: bool,
        /// An OpenSSH public key line; repeatable.
        #[arg(long = "key")]
        keys: Vec<String>,
        /// A file of OpenSSH public key lines (authorized_keys format).
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// The home directory (default: HOMES_DIR/NAME).
        #[arg(long)]
        home: Option<String>,
        /// A group; repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A policy; repeatable.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Refuses plain FTP: logins and data connections need TLS.
        #[arg(long)]
        ftp_require_tls: bool,
        /// The person's name (recorded sealed; erased by `user erase`).
        #[arg(long)]
        full_name: Option<String>,
        /// The person's email address (recorded sealed likewise).
        #[arg(long)]
        email: Option<String>,
    },
    /// Lists users (from the read model).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Sets a user's password, read from standard input.
    Passwd { name: String },
    /// Replaces a user's directly attached policies.
    SetPolicies { name: String, policies: Vec<String> },
    /// Sets whether FTP needs TLS (`true`: plain FTP logins and data
    /// connections are refused).
    SetFtpRequireTls {
        name: String,
        #[arg(action = clap::ArgAction::Set)]
        required: bool,
    },
    /// Allows logins again.
    Enable { name: String },
    /// Refuses logins from now on.
    Disable { name: String },
    /// Deletes a user (files stay on disk).
    Delete { name: String },
    /// Erases a user's personal data (GDPR): destroys the keys that sealed
    /// its name, email and connection addresses and records the erasure;
    /// the account is deleted, files stay on disk, audit proofs still verify.
    Erase { name: String },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Creates a policy from rules like `/inbox=list,upload`.
    Add {
        name: String,
        #[arg(long = "rule", required = true)]
        rules: Vec<String>,
    },
    /// Replaces a policy's rules.
    Set {
        name: String,
        #[arg(long = "rule", required = true)]
        rules: Vec<String>,
    },
}

#[derive(Subcommand)]
enum GroupCommand {
    /// Creates a group with policies.
    Add {
        name: String,
        #[arg(long = "policy")]
        policies: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies the whole hash chain, the Merkle leaves and every signed
    /// checkpoint; with --bundle, an exported evidence bundle instead,
    /// offline. Exit code 1 on the first problem.
    Verify {
        /// An evidence bundle folder (no database is opened).
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// The trusted checkpoint key (`NAME+KEYID+KEY`, from
        /// `audit checkpoint --key`); without it, the bundle's own keys.txt
        /// is used.
        #[arg(long, requires = "bundle")]
        key: Option<String>,
    },
    /// Writes an evidence bundle: the records between two times, a signed
    /// checkpoint, the proof tying them, and the public keys.
    Export {
        /// RFC 3339 time of the first record (default: the first).
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339 time of the last record (default: the last).
        #[arg(long)]
        to: Option<String>,
        /// The folder to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Removes from the live log the records an evidence bundle holds that
    /// are older than the retention period and belong to finished sessions,
    /// transfers or audit reads; the prune is recorded, and the chain, the
    /// tree and every proof still verify.
    Prune {
        /// The evidence bundle (from `audit export`) holding the records.
        #[arg(long)]
        bundle: PathBuf,
        /// RFC 3339 time: records older than this are eligible (default:
        /// now minus `audit.retention_days`).
        #[arg(long)]
        before: Option<String>,
    },
    /// Prints the latest signed checkpoint (C2SP signed note), signing one
    /// first when records were added since.
    Checkpoint {
        /// Prints the verifier key (`NAME+KEYID+KEY`) instead.
        #[arg(long)]
        key: bool,
    },
    /// Prints the inclusion proof of an event in the latest checkpoint (JSON).
    Proof {
        /// The event id.
        #[arg(long = "event")]
        event_id: String,
    },
    /// Prints the consistency proof between two checkpoints, by size (JSON).
    Consistency { first: u64, second: u64 },
    /// Shows the newest events.
    Tail {
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Lists events, oldest first.
    List {
        #[arg(long)]
        user: Option<String>,
        /// RFC 3339 time, e.g. 2026-11-23T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// An event type, e.g. LoginFailed.
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Drops the read models and rebuilds them from the event log.
    Rebuild,
}

#[derive(Args)]
struct Output {
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

fn main() -> anyhow::Result<()> {
    tollgate::install_tls_provider();
    let cli = Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match &cli.command {
        Command::Audit(AuditCommand::Verify {
            bundle: Some(dir),
            key,
        }) => return verify_bundle(dir, key.as_deref()),
        Command::Config(ConfigCommand::Validate { file }) => {
            let (config, unmatched) = Config::load(Some(file), env)?;
            if !unmatched.is_empty() {
                bail!("no configuration key matches {}", unmatched.join(", "));
            }
            println!(
                "{}: ok (database: {})",
                file.display(),
                config.database_url()
            );
            return Ok(());
        }
        _ => {
            let (config, unmatched) = Config::load(cli.config.as_deref(), env)?;
            for var in unmatched {
                eprintln!("warning: {var} matches no configuration key and is ignored");
            }
            config
        }
    };
    init_tracing(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(run(cli.command, config))
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn read_stdin_line() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read standard input")?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

fn parse_time(text: &Option<String>) -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
    text.as_deref()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&chrono::Utc))
                .with_context(|| format!("{t:?} is not an RFC 3339 time like 2026-11-23T10:00:00Z"))
        })
        .transpose()
}

fn print_events(events: &[EventSummary], json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for event in events {
        let line = if json {
            serde_json::to_string(event)?
        } else {
            event_line(event)
        };
        match writeln!(out, "{line}") {
            Ok(()) => {}
            // A closed pipe (`| head`) ends the listing quietly.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// One event as a table row: position, time, user, type, outcome, origin,
/// protocol, then the fields it has.
fn event_line(event: &EventSummary) -> String {
    let mut line = format!(
        "{:>6} {} {:<8} {:<22} {:<7} {:<21} {}",
        event.position,
        event.time,
        event.user.as_deref().unwrap_or("-"),
        event.event_type,
        event.outcome,
        event.remote_addr.as_deref().unwrap_or("-"),
        event.protocol.as_deref().unwrap_or("-"),
    );
    for (label, value) in [
        ("op", event.operation.clone()),
        ("path", event.path.clone()),
        ("to", event.target.clone()),
        ("bytes", event.bytes.map(|b| b.to_string())),
        ("sha256", event.sha256.clone()),
        ("detail", event.detail.clone()),
    ] {
        if let Some(value) = value {
            line.push_str(&format!(" {label}={value}"));
        }
    }
    line
}

const CLI_ACTOR: &str = "cli";

async fn run(command: Command, mut config: Config) -> anyhow::Result<()> {
    if let Command::Serve {
        listen_sftp,
        listen_http,
        listen_ftp,
        listen_ftps,
    } = command
    {
        if let Some(listen) = listen_ftps {
            config.ftp.implicit_listen = listen;
        }
        if let Some(listen) = listen_ftp {
            config.ftp.listen = listen;
        }
        if let Some(listen) = listen_sftp {
            config.sftp.listen = listen;
        }
        if let Some(listen) = listen_http {
            config.http.listen = listen;
        }
        config.validate()?;
        let tls = config.http.tls_cert.is_some();
        let server = Server::start(config, Listeners::default()).await?;
        // Machine-readable lines for scripts and tests. A closed stdout
        // must not stop the server, so write errors are ignored.
        let mut lines = String::new();
        if let Some(addr) = server.sftp_addr {
            let line = serde_json::json!({"listening": "sftp", "address": addr.to_string()});
            lines.push_str(&format!("{line}\n"));
        }
        if let Some(addr) = server.http_addr {
            let scheme = if tls { "https" } else { "http" };
            let line = serde_json::json!({"listening": scheme, "address": addr.to_string()});
            lines.push_str(&format!("{line}\n"));
        }
        if let Some(addr) = server.ftp_addr {
            let line = serde_json::json!({"listening": "ftp", "address": addr.to_string()});
            lines.push_str(&format!("{line}\n"));
        }
        if let Some(addr) = server.ftps_addr {
            let line = serde_json::json!({"listening": "ftps", "address": addr.to_string()});
            lines.push_str(&format!("{line}\n"));
        }
        {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(lines.as_bytes());
            let _ = stdout.flush();
        }
        return server.wait(shutdown_signal()).await;
    }
    if let Command::Keys(KeysCommand::RotateToken) = command {
        std::fs::create_dir_all(&config.data_dir)?;
        let kid = tollgate_identity::JwtSigner::rotate(&config.token_keys_path())
            .context("cannot rotate the token signing key")?;
        println!("new token signing key {kid}; restart the server to use it");
        return Ok(());
    }
    if let Command::Keys(KeysCommand::RotateAudit) = command {
        let path = config.audit_key_path();
        let retired = tollgate::retire_audit_key(&path)?;
        let (app, db) = tollgate::open(&config).await?;
        let signed = app.checkpoint_now().await;
        db.close().await;
        let checkpoint = signed?.context("the audit log is empty")?;
        println!(
            "new audit checkpoint key {} (the previous key, kept as {}, is retired); checkpoint of {} records signed; restart the server to sign with it",
            checkpoint.key_id,
            retired.display(),
            checkpoint.size
        );
        return Ok(());
    }
    let (app, db) = tollgate::open(&config).await?;
    let res = admin(command, &config, &app).await;
    db.close().await;
    res
}

async fn admin(command: Command, config: &Config, app: &tollgate::App) -> anyhow::Result<()> {
    match command {
        Command::Serve { .. } | Command::Config(_) | Command::Keys(_) => {
            unreachable!("handled before")
        }
        Command::User(UserCommand::Add {
            name,
            password,
            password_stdin,
            mut keys,
            key_file,
            home,
            groups,
            policies,
            ftp_require_tls,
            full_name,
            email,
        }) => {
            let password = if password_stdin {
                Some(read_stdin_line()?)
            } else {
                password
            };
            if let Some(file) = key_file {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                keys.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .map(String::from),
                );
            }
            let home = match home {
                Some(home) => home,
                None => {
                    let dir = config.homes_dir().join(&name);
                    let dir = if dir.is_absolute() {
                        dir
                    } else {
                        std::env::current_dir()?.join(dir)
                    };
                    dir.to_string_lossy().into_owned()
                }
            };
            app.create_user(
                CLI_ACTOR,
                NewUser {
                    username: name.clone(),
                    password,
                    password_hash: None,
                    public_keys: keys,
                    home: home.clone(),
                    groups,
                    policies,
                    ftp_require_tls,
                    full_name,
                    email,
                    folders: Vec::new(),
                },
            )
            .await?;
            println!("user {name} created (home {home})");
        }
        Command::User(UserCommand::List { json }) => {
            app.catch_up().await?;
            for user in app.list_users().await? {
                if json {
                    println!("{}", serde_json::to_string(&user)?);
                } else {
                    println!(
                        "{:<20} {:<8} keys={} password={} home={} policies={}",
                        user.username,
                        if user.enabled { "enabled" } else { "disabled" },
                        user.public_keys.len(),
                        user.has_password,
                        user.home,
                        user.policies.join(",")
                    );
                }
            }
        }
        Command::User(UserCommand::Passwd { name }) => {
            let password = read_stdin_line()?;
            app.set_password(CLI_ACTOR, &name, &password).await?;
            println!("password of {name} changed");
        }
        Command::User(UserCommand::SetPolicies { name, policies }) => {
            app.set_user_policies(CLI_ACTOR, &name, &policies).await?;
            println!("policies of {name} set");
        }
        Command::User(UserCommand::SetFtpRequireTls { name, required }) => {
            app.set_user_ftp_require_tls(CLI_ACTOR, &name, required)
                .await?;
            println!("ftp tls requirement of {name} set to {required}");
        }
        Command::User(UserCommand::Enable { name }) => {
            app.set_user_enabled(CLI_ACTOR, &name, true).await?
        }
        Command::User(UserCommand::Disable { name }) => {
            app.set_user_enabled(CLI_ACTOR, &name, false).await?
        }
        Command::User(UserCommand::Delete { name }) => app.delete_user(CLI_ACTOR, &name).await?,
        Command::User(UserCommand::Erase { name }) => {
            let keys = app.erase_user(CLI_ACTOR, &name).await?;
            println!(
                "personal data of {name} erased ({} keys destroyed)",
                keys.len()
            );
        }
        Command::Policy(PolicyCommand::Add { name, rules }) => {
            app.create_policy(CLI_ACTOR, &name, &rules).await?;
            println!("policy {name} created");
        }
        Command::Policy(PolicyCommand::Set { name, rules }) => {
            app.replace_policy_rules(CLI_ACTOR, &name, &rules).await?
        }
        Command::Group(GroupCommand::Add { name, policies }) => {
            app.create_group(CLI_ACTOR, &name, &policies).await?;
            println!("group {name} created");
        }
        Command::Audit(AuditCommand::Checkpoint { key }) => {
            if key {
                println!("{}", app.checkpoint_verifier_key());
            } else {
                let checkpoint = app
                    .checkpoint_now()
                    .await?
                    .context("the audit log is empty: there is nothing to sign")?;
                print!("{}", checkpoint.note);
            }
        }
        Command::Audit(AuditCommand::Proof { event_id }) => {
            app.catch_up().await?;
            let proof = app.inclusion_proof(&event_id).await?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
        }
        Command::Audit(AuditCommand::Consistency { first, second }) => {
            app.catch_up().await?;
            let proof = app.consistency_proof(first, second).await?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
        }
        Command::Audit(AuditCommand::Export { from, to, out }) => {
            match tollgate::bundle::export(app, CLI_ACTOR, from.as_deref(), to.as_deref(), &out)
                .await?
            {
                Some(done) => println!(
                    "exported records {}..={} with a checkpoint of {} records to {}",
                    done.first,
                    done.last,
                    done.tree_size,
                    out.display()
                ),
                None => bail!("no record is in that range"),
            }
        }
        Command::Audit(AuditCommand::Prune { bundle, before }) => {
            let before = match before {
                Some(text) => chrono::DateTime::parse_from_rfc3339(&text)
                    .with_context(|| format!("--before {text:?} is not an RFC 3339 time"))?
                    .with_timezone(&chrono::Utc),
                None if config.audit.retention_days > 0 => {
                    chrono::Utc::now()
                        - chrono::Duration::days(i64::from(config.audit.retention_days))
                }
                None => bail!("give --before, or set audit.retention_days"),
            };
            let range = tollgate::bundle::exported_range(app, &bundle).await?;
            let report = app.prune_exported(CLI_ACTOR, &range, before).await?;
            match report.prune_id {
                Some(id) => println!(
                    "pruned {} records of {}..={} (prune {id}); {} kept",
                    report.pruned, range.first, range.last, report.kept
                ),
                None => println!(
                    "nothing to prune in {}..={} before {before}; {} kept",
                    range.first, range.last, report.kept
                ),
            }
        }
        Command::Audit(AuditCommand::Verify { .. }) => {
            let report = app.verify_audit().await?;
            app.record_audit_verification(CLI_ACTOR, &report).await?;
            match report.finding {
                None => println!(
                    "OK: {} records verified ({} pruned after export), {} not yet sealed; {} signed checkpoints verified (latest covers {} records)",
                    report.sealed,
                    report.pruned,
                    report.unsealed,
                    report.checkpoints,
                    report.checkpointed
                ),
                Some(finding) => {
                    println!(
                        "FAILED: {finding} ({} records verified before it)",
                        report.sealed
                    );
                    bail!("the audit trail does not verify");
                }
            }
        }
        Command::Audit(AuditCommand::Tail { lines, output }) => {
            let events = app
                .list_events(&EventFilter {
                    limit: lines,
                    tail: true,
                    ..EventFilter::default()
                })
                .await?;
            print_events(&events, output.json)?;
        }
        Command::Events(EventsCommand::List {
            user,
            since,
            until,
            event_type,
            limit,
            output,
        }) => {
            let filter = EventFilter {
                user,
                since: parse_time(&since)?,
                until: parse_time(&until)?,
                event_type,
                limit,
                ..EventFilter::default()
            };
            print_events(&app.list_events(&filter).await?, output.json)?;
        }
        Command::Projections(ProjectionsCommand::Rebuild) => {
            let n = app.rebuild_projections().await?;
            println!("projections rebuilt from {n} events");
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// `audit verify --bundle`: offline, no configuration, no database.
fn verify_bundle(dir: &std::path::Path, key: Option<&str>) -> anyhow::Result<()> {
    match tollgate::bundle::verify(dir, key) {
        Ok(verified) => {
            let s = &verified.summary;
            println!(
                "OK: records {}..={} ({}) are in the log {} of {} records, checkpoint signed by {}",
                s.first, s.last, s.records, s.origin, s.tree_size, verified.key
            );
            if verified.key_from_bundle {
                println!(
                    "note: the key came from the bundle itself; compare it with one obtained independently, or pass --key"
                );
            }
            Ok(())
        }
        Err(err) => {
            println!("FAILED: {err:#}");
            bail!("the evidence bundle does not verify")
        }
    }
}
