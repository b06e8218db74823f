//! Tests of the parent module.
use super::*;

#[test]
fn normalises_dots_slashes_and_parent_references() {
    let cases = [
        ("", "/"),
        ("/", "/"),
        ("a", "/a"),
        ("/a/./b//c/", "/a/b/c"),
        ("a/../b", "/b"),
        ("/a/b/..", "/a"),
        ("./ünïcödé/文件.txt", "/ünïcödé/文件.txt"),
    ];
    for (raw, expected) in cases {
        assert_eq!(
            VirtualPath::parse(raw).unwrap().as_str(),
            expected,
            "input {raw:?}"
        );
    }
}

#[test]
fn paths_that_climb_above_the_root_are_rejected() {
    for raw in [
        "..",
        "/..",
        "../etc/passwd",
        "/a/../../b",
        "a/b/../../..",
        "/./..",
    ] {
        assert_eq!(
            VirtualPath::parse(raw),
            Err(PathError::Escapes),
            "input {raw:?}"
        );
    }
}

#[test]
fn nul_and_overlong_names_are_rejected() {
    assert_eq!(VirtualPath::parse("a\0b"), Err(PathError::Nul));
    assert_eq!(
        VirtualPath::parse(&"x".repeat(256)),
        Err(PathError::NameTooLong)
    );
    assert!(VirtualPath::parse(&"x".repeat(255)).is_ok());
    let long = vec!["abcdefgh"; 600].join("/");
    assert_eq!(VirtualPath::parse(&long), Err(PathError::PathTooLong));
}

#[test]
fn resolves_relative_to_a_working_directory() {
    let cwd = VirtualPath::parse("/home/docs").unwrap();
    assert_eq!(cwd.resolve("x").unwrap().as_str(), "/home/docs/x");
    assert_eq!(cwd.resolve("../x").unwrap().as_str(), "/home/x");
    assert_eq!(cwd.resolve("/y").unwrap().as_str(), "/y");
    assert_eq!(cwd.resolve("../../../x"), Err(PathError::Escapes));
}

#[test]
fn every_path_over_a_small_alphabet_stays_inside_the_root() {
    // Exhaustive over all strings of length <= 6 built from the characters
    // that matter to path resolution.
    let alphabet = ['a', '.', '/'];
    let mut frontier = vec![String::new()];
    for _ in 0..6 {
        let mut next = Vec::new();
        for prefix in &frontier {
            for c in alphabet {
                let raw = format!("{prefix}{c}");
                if let Ok(path) = VirtualPath::parse(&raw) {
                    assert!(path.as_str().starts_with('/'));
                    assert!(
                        path.components()
                            .all(|c| c != ".." && c != "." && !c.is_empty())
                    );
                    assert_eq!(
                        VirtualPath::parse(path.as_str()).unwrap(),
                        path,
                        "idempotent"
                    );
                }
                next.push(raw);
            }
        }
        frontier = next;
    }
}

#[test]
fn prefix_matching_is_component_wise() {
    let p = VirtualPath::parse("/inbox/file").unwrap();
    assert!(p.starts_with(&VirtualPath::parse("/inbox").unwrap()));
    assert!(p.starts_with(&VirtualPath::root()));
    assert!(!p.starts_with(&VirtualPath::parse("/in").unwrap()));
    assert_eq!(p.parent().unwrap().as_str(), "/inbox");
    assert_eq!(p.file_name(), Some("file"));
    assert_eq!(VirtualPath::root().parent(), None);
}
