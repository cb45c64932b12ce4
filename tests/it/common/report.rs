//! Queries of the JSON report a run prints (`-o json`).

/// Why namespace `ns` failed, from a JSON report.
pub fn error_of<'a>(report: &'a serde_json::Value, ns: &str) -> &'a str {
    outcome(report, ns)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("namespace {ns} has no error: {report:#}"))
}

/// The outcome of one namespace in a JSON report.
pub fn outcome<'a>(report: &'a serde_json::Value, ns: &str) -> &'a serde_json::Value {
    report["namespaces"]
        .as_array()
        .expect("namespaces array")
        .iter()
        .find(|n| n["name"] == ns)
        .unwrap_or_else(|| panic!("namespace {ns} not in report: {report:#}"))
}

/// Whether an error reports an HTTP 422 (the server refused the object as invalid): "422" as
/// a word of its own, not inside a generated namespace name such as `meta-5715-484220987-7`.
pub fn says_422(error: &str) -> bool {
    error
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|word| word == "422")
}
