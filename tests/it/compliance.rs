//! `docs/compliance.md` maps every event type the log can hold to the
//! logging requirements it satisfies; this keeps the table and the code
//! in step.

use std::collections::BTreeSet;

/// The event names in the first column of the document's event table.
fn mapped_event_types() -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compliance.md");
    let text = std::fs::read_to_string(path).unwrap();
    let table = text
        .split("## Event types")
        .nth(1)
        .expect("the document has an event table")
        .split("\n## ")
        .next()
        .unwrap();
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, rest)| {
            let cells = rest.split('|').filter(|c| !c.trim().is_empty()).count();
            assert!(cells >= 4, "{name}: every column of the row is filled");
            name.to_string()
        })
        .collect()
}

#[test]
fn compliance_document_maps_every_event_type() {
    let mapped = mapped_event_types();
    let known: BTreeSet<String> = tollgate_domain::event_types()
        .into_iter()
        .map(|(_, name)| name.to_string())
        .collect();
    let unmapped: Vec<_> = known.difference(&mapped).collect();
    assert!(
        unmapped.is_empty(),
        "docs/compliance.md does not map {unmapped:?}"
    );
    let unknown: Vec<_> = mapped.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "docs/compliance.md maps event types that do not exist: {unknown:?}"
    );
}
