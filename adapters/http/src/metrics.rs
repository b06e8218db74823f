//! Prometheus text exposition (format 0.0.4).

use std::fmt::Write;

use tollgate_ports::api::Sample;

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders samples grouped by metric, each group with its HELP and TYPE.
pub(crate) fn render(samples: &[Sample]) -> String {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut out = String::new();
    let mut current = "";
    for sample in sorted {
        if sample.name != current {
            current = sample.name;
            let _ = writeln!(out, "# HELP {} {}", sample.name, sample.help);
            let _ = writeln!(out, "# TYPE {} {}", sample.name, sample.kind);
        }
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        if labels.is_empty() {
            let _ = writeln!(out, "{} {}", sample.name, sample.value);
        } else {
            let _ = writeln!(
                out,
                "{}{{{}}} {}",
                sample.name,
                labels.join(","),
                sample.value
            );
        }
    }
    out
}
