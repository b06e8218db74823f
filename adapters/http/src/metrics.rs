//! Prometheus text exposition (format 0.0.4).

use std::fmt::Write;

use tollgate_ports::api::Sample;

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metric a sample belongs to: its name, or for a histogram's
/// `_bucket`, `_sum` and `_count` series the name they share.
fn family(sample: &Sample) -> &'static str {
    if sample.kind == "histogram" {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = sample.name.strip_suffix(suffix) {
                return family;
            }
        }
    }
    sample.name
}

/// Renders samples grouped by metric, each group with its HELP and TYPE; a
/// histogram's series stay in the order given (its buckets' bounds rising).
pub(crate) fn render(samples: &[Sample]) -> String {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|sample| family(sample));
    let mut out = String::new();
    let mut current = "";
    for sample in sorted {
        let family = family(sample);
        if family != current {
            current = family;
            let _ = writeln!(out, "# HELP {family} {}", sample.help);
            let _ = writeln!(out, "# TYPE {family} {}", sample.kind);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &'static str, kind: &'static str, le: Option<&str>, value: f64) -> Sample {
        Sample {
            name,
            kind,
            help: "help",
            labels: le
                .map(|le| vec![("le", le.to_string())])
                .unwrap_or_default(),
            value,
        }
    }

    #[test]
    fn a_histogram_is_one_family_in_the_order_given() {
        let samples = [
            sample("b_total", "counter", None, 1.0),
            sample("a_seconds_bucket", "histogram", Some("0.5"), 1.0),
            sample("a_seconds_bucket", "histogram", Some("+Inf"), 2.0),
            sample("a_seconds_sum", "histogram", None, 0.75),
            sample("a_seconds_count", "histogram", None, 2.0),
            sample("a_seconds_total", "counter", None, 3.0),
        ];
        assert_eq!(
            render(&samples),
            "# HELP a_seconds help\n# TYPE a_seconds histogram\n\
             a_seconds_bucket{le=\"0.5\"} 1\na_seconds_bucket{le=\"+Inf\"} 2\n\
             a_seconds_sum 0.75\na_seconds_count 2\n\
             # HELP a_seconds_total help\n# TYPE a_seconds_total counter\na_seconds_total 3\n\
             # HELP b_total help\n# TYPE b_total counter\nb_total 1\n"
        );
    }
}
