//! Tests of the parent module.

use super::*;

#[test]
fn commands_parse_with_flags_and_quoting() {
    let sink = parse_command("scp -t -- 'dir with space/'").unwrap();
    assert!(sink.sink && !sink.recursive);
    assert_eq!(sink.paths, vec!["dir with space/".to_string()]);
    let source = parse_command("scp -r -p -f \"a b\" c\\ d").unwrap();
    assert!(!source.sink && source.recursive && source.preserve);
    assert_eq!(source.paths, vec!["a b".to_string(), "c d".to_string()]);
    assert!(parse_command("scp -d -t inbox").unwrap().target_is_dir);
}

#[test]
fn anything_else_is_not_an_scp_command() {
    for line in [
        "rm -rf /",
        "scp inbox",
        "scp -t",
        "scp -t a b",
        "scp -x -t a",
        "scp -t 'open",
        "sh -c 'scp -t x'",
    ] {
        assert_eq!(parse_command(line), None, "{line}");
    }
}
