//! The dependency rule, read from `cargo metadata`: which of our crates may
//! depend on which, and what must never appear under the pure crates.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// Our crates and the internal dependencies each may have.
const ALLOWED: &[(&str, &[&str])] = &[
    ("tollgate-domain", &[]),
    ("tollgate-ports", &["tollgate-domain"]),
    ("tollgate-audit", &["tollgate-domain"]),
    (
        "tollgate-application",
        &["tollgate-domain", "tollgate-ports", "tollgate-audit"],
    ),
    ("tollgate-sftp", &["tollgate-domain", "tollgate-ports"]),
    ("tollgate-storage", &["tollgate-domain", "tollgate-ports"]),
    (
        "tollgate-persistence",
        &["tollgate-domain", "tollgate-ports"],
    ),
    (
        "tollgate-identity",
        &["tollgate-domain", "tollgate-ports", "tollgate-audit"],
    ),
    ("tollgate-http", &["tollgate-domain", "tollgate-ports"]),
    ("tollgate-ftp", &["tollgate-domain", "tollgate-ports"]),
    ("tollgate-export", &["tollgate-domain", "tollgate-ports"]),
];

/// Crates that must not be anywhere in the normal dependency graph of a crate.
const FORBIDDEN_BELOW: &[(&str, &[&str])] = &[
    (
        "tollgate-domain",
        &["tokio", "sqlx", "cqrs-es", "tracing", "rand", "russh"],
    ),
    ("tollgate-audit", &["tokio", "sqlx", "cqrs-es", "russh"]),
    ("tollgate-ports", &["sqlx", "russh", "cqrs-es", "poem"]),
    (
        "tollgate-application",
        &[
            "sqlx",
            "russh",
            "russh-sftp",
            "postgres-es",
            "argon2",
            "poem",
            "jsonwebtoken",
        ],
    ),
    (
        "tollgate-http",
        &["sqlx", "cqrs-es", "russh", "jsonwebtoken"],
    ),
];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON")
}

/// Normal (non-dev, non-build) dependency edges by package name.
fn normal_edges(meta: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut edges = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = names[node["id"].as_str().unwrap()].to_string();
        let deps = node["deps"].as_array().unwrap().iter().filter(|dep| {
            dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null())
        });
        let set: &mut BTreeSet<String> = edges.entry(from).or_default();
        set.extend(deps.map(|dep| names[dep["pkg"].as_str().unwrap()].to_string()));
    }
    edges
}

fn below(edges: &BTreeMap<String, BTreeSet<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(name) = stack.pop() {
        for dep in edges.get(&name).into_iter().flatten() {
            if seen.insert(dep.clone()) {
                stack.push(dep.clone());
            }
        }
    }
    seen
}

#[test]
fn crates_depend_only_along_the_allowed_edges() {
    let edges = normal_edges(&metadata());
    for (name, allowed) in ALLOWED {
        let ours: BTreeSet<&String> = edges[*name]
            .iter()
            .filter(|d| d.starts_with("tollgate"))
            .collect();
        for dep in ours {
            assert!(
                allowed.contains(&dep.as_str()),
                "{name} must not depend on {dep}"
            );
        }
    }
}

#[test]
fn the_pure_crates_pull_in_no_runtime_database_or_protocol() {
    let edges = normal_edges(&metadata());
    for (name, forbidden) in FORBIDDEN_BELOW {
        let graph = below(&edges, name);
        for crate_name in *forbidden {
            assert!(
                !graph.contains(*crate_name),
                "{crate_name} is in the dependency graph of {name}"
            );
        }
    }
}
