//! What a run did, as a short human summary or one JSON document (schema in the README):
//! the run report of `sync` and `prune`, and the report of `status`.

mod run;
mod status;

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::Stats;
use crate::error::{exit, Error};
pub(crate) use run::{FailedTenant, NamespaceReport, Outcome, RunReport, SecretTrouble};
pub(crate) use status::{AccountStatus, NamespaceStatus, StatusReport};

/// Bumped on any incompatible change to the JSON output.
const SCHEMA_VERSION: u32 = 1;

/// Every command's report, as `main` prints it and exits with it.
pub(crate) enum Report {
    Run(RunReport),
    Status(StatusReport),
}

impl Report {
    /// A few lines for people.
    pub(crate) fn to_text(&self) -> String {
        match self {
            Report::Run(r) => r.to_text(),
            Report::Status(r) => r.to_text(),
        }
    }

    /// One JSON document, newline-terminated.
    pub(crate) fn to_json(&self) -> String {
        let json = match self {
            Report::Run(r) => serde_json::to_string_pretty(r),
            Report::Status(r) => serde_json::to_string_pretty(r),
        };
        json.expect("report always serializes") + "\n"
    }

    /// The same document on one line, `"type":"report"` first: a log collector takes each
    /// line as one entry, and the field tells the report from log events (which have none).
    pub(crate) fn to_json_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a, T> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            report: &'a T,
        }
        let json = match self {
            Report::Run(r) => serde_json::to_string(&Line {
                kind: "report",
                report: r,
            }),
            Report::Status(r) => serde_json::to_string(&Line {
                kind: "report",
                report: r,
            }),
        };
        json.expect("report always serializes") + "\n"
    }

    fn end(&self) -> &End {
        match self {
            Report::Run(r) => &r.end,
            Report::Status(r) => &r.end,
        }
    }

    pub(crate) fn exit_code(&self) -> u8 {
        self.end().exit_code
    }

    /// Set when the run stopped on a fatal error.
    pub(crate) fn fatal_error(&self) -> Option<&ErrorReport> {
        self.end().error.as_ref()
    }

    /// Holds per-namespace results, to print even when the run also stopped on a fatal error.
    pub(crate) fn has_results(&self) -> bool {
        match self {
            Report::Run(r) => !r.namespaces.is_empty(),
            Report::Status(_) => false,
        }
    }
}

/// How every report ends: what the run cost the API server, and how it ended.
#[derive(Debug, Serialize)]
pub(crate) struct End {
    pub(crate) api_requests: u64,
    pub(crate) api_retries: u64,
    pub(crate) duration_seconds: f64,
    /// Set when the run stopped on a fatal error.
    pub(crate) error: Option<ErrorReport>,
    pub(crate) exit_code: u8,
    /// That error's own exit code (`exit_code` is 1 instead when something was written).
    #[serde(skip)]
    pub(crate) fatal_code: Option<u8>,
}

impl End {
    fn ok() -> Self {
        Self {
            api_requests: 0,
            api_retries: 0,
            duration_seconds: 0.0,
            error: None,
            exit_code: exit::OK,
            fatal_code: None,
        }
    }

    fn fatal(err: &Error) -> Self {
        Self {
            error: Some(ErrorReport::from(err)),
            exit_code: err.exit_code(),
            fatal_code: Some(err.exit_code()),
            ..Self::ok()
        }
    }

    /// A later run of the same command (one per Secret name): its cost added, its fatal error
    /// kept if this one had none; the exit code is the caller's to decide.
    pub(crate) fn absorb(&mut self, later: End) {
        self.api_requests += later.api_requests;
        self.api_retries += later.api_retries;
        self.duration_seconds =
            ((self.duration_seconds + later.duration_seconds) * 1000.0).round() / 1000.0;
        if self.error.is_none() {
            self.error = later.error;
            self.fatal_code = later.fatal_code;
        }
    }

    /// A fatal error a later run met before it could report, kept unless one came before.
    pub(crate) fn keep_error(&mut self, e: &Error) {
        if self.error.is_none() {
            self.error = Some(e.into());
            self.fatal_code = Some(e.exit_code());
        }
    }

    /// The run ended on a fatal error.
    pub(crate) fn ended(&self) -> bool {
        self.error.is_some()
    }

    /// How the run ended, with its cost.
    fn finish(&mut self, stats: &Stats, started: Instant, error: Option<&Error>, exit_code: u8) {
        self.error = error.map(ErrorReport::from);
        self.fatal_code = error.map(Error::exit_code);
        self.exit_code = exit_code;
        self.api_requests = stats.requests();
        self.api_retries = stats.retries();
        self.duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct ErrorReport {
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

impl From<&Error> for ErrorReport {
    fn from(err: &Error) -> Self {
        Self {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// A time left, for people: `2h 5m`.
fn whole_minutes(secs: i64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(secs.max(0) as u64 / 60 * 60))
}

/// A later run's warnings added to `warnings`, each once.
pub(crate) fn merge_warnings(warnings: &mut Vec<String>, later: Vec<String>) {
    for w in later {
        if !warnings.contains(&w) {
            warnings.push(w);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_line_is_the_json_document_on_one_line_marked_as_the_report() {
        let mut run = RunReport::new("sync", "awsecr-cred".into(), false);
        run.namespaces.push(NamespaceReport::failed(
            "team-a",
            "boom\nsecond line".into(),
        ));
        for report in [
            Report::Run(run),
            Report::Status(StatusReport::new(
                "awsecr-cred".into(),
                Duration::from_secs(7200),
            )),
        ] {
            let line = report.to_json_line();
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(
                line.ends_with('\n') && line.starts_with(r#"{"type":"report","#),
                "{line}"
            );
            let mut parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
            let pretty: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
            assert_eq!(parsed["type"], "report");
            parsed.as_object_mut().unwrap().remove("type");
            assert_eq!(parsed, pretty);
        }
    }

    /// The exit code is decided in one place, from the namespaces and the fatal error: a fatal
    /// error keeps its own code only while nothing was written.
    #[test]
    fn the_exit_code_comes_from_the_namespaces_and_the_fatal_error() {
        use crate::pullsecret::SecretOutcome;
        let ecr = Error::EcrToken {
            region: "us-east-1".into(),
            message: "denied".into(),
        };
        let created = || NamespaceReport::new("a", SecretOutcome::Created);
        let unchanged = || NamespaceReport::new("b", SecretOutcome::Unchanged);
        let failed = || NamespaceReport::failed("c", "boom".into());
        let cases: [(Vec<NamespaceReport>, Option<&Error>, u8); 6] = [
            (vec![unchanged()], None, exit::OK),
            (vec![created(), failed()], None, exit::NAMESPACE_FAILED),
            (vec![], Some(&ecr), ecr.exit_code()),
            (vec![unchanged(), failed()], Some(&ecr), ecr.exit_code()),
            (
                vec![created(), failed()],
                Some(&ecr),
                exit::NAMESPACE_FAILED,
            ),
            (
                vec![],
                Some(&Error::StdoutClosed),
                Error::StdoutClosed.exit_code(),
            ),
        ];
        for (n, (namespaces, fatal, code)) in cases.into_iter().enumerate() {
            let mut run = RunReport::new("sync", "awsecr-cred".into(), false);
            run.namespaces = namespaces;
            run.finish(&Stats::default(), Instant::now(), fatal);
            let report = Report::Run(run);
            assert_eq!(report.exit_code(), code, "case {n}");
            assert_eq!(report.fatal_error().is_some(), fatal.is_some(), "case {n}");
        }
        assert_ne!(ecr.exit_code(), exit::NAMESPACE_FAILED);
    }
}
