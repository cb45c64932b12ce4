//! What a run did, as a short human summary or one JSON document (schema in the README):
//! the run report of `sync` and `prune`, and the report of `status`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use crate::bornlinked::{PolicyState, POLICY_NAME};
use crate::cluster::Stats;
use crate::error::{exit, Error};
pub(crate) use crate::pullsecret::Outcome as SecretOutcome;
use crate::pullsecret::State;
pub(crate) use crate::serviceaccount::Change as ServiceAccountOutcome;
use crate::serviceaccount::LinkState;
use crate::stuckpods::{PodAction, StuckPod};

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
}

impl End {
    fn ok() -> Self {
        Self {
            api_requests: 0,
            api_retries: 0,
            duration_seconds: 0.0,
            error: None,
            exit_code: exit::OK,
        }
    }

    fn fatal(err: &Error) -> Self {
        Self {
            error: Some(ErrorReport::from(err)),
            exit_code: err.exit_code(),
            ..Self::ok()
        }
    }

    /// Exit 1 when any namespace failed, with the cost of the run.
    fn finish(&mut self, stats: &Stats, started: Instant, failed: bool) {
        self.exit_code = if failed {
            exit::NAMESPACE_FAILED
        } else {
            exit::OK
        };
        self.api_requests = stats.requests();
        self.api_retries = stats.retries();
        self.duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    Created,
    Updated,
    Unchanged,
    Pruned,
    Skipped,
    Failed,
}

/// What happened to one ServiceAccount of a namespace.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceAccountReport {
    pub(crate) name: String,
    pub(crate) outcome: ServiceAccountOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct NamespaceReport {
    pub(crate) name: String,
    pub(crate) outcome: Outcome,
    /// What happened to the Secret; absent when the namespace was skipped or failed before.
    pub(crate) secret: Option<SecretOutcome>,
    pub(crate) service_accounts: Vec<ServiceAccountReport>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// With --delete-stuck-pods: the pods stuck without our Secret, deleted or left.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stuck_pods: Vec<StuckPod>,
}

impl NamespaceReport {
    pub(crate) fn new(name: &str, secret: SecretOutcome) -> Self {
        let outcome = match secret {
            SecretOutcome::Created => Outcome::Created,
            SecretOutcome::Updated => Outcome::Updated,
            SecretOutcome::Unchanged => Outcome::Unchanged,
            SecretOutcome::Deleted => Outcome::Pruned,
        };
        Self {
            name: name.to_string(),
            outcome,
            secret: Some(secret),
            service_accounts: Vec::new(),
            reason: None,
            error: None,
            stuck_pods: Vec::new(),
        }
    }

    pub(crate) fn skipped(name: &str, reason: &str) -> Self {
        Self {
            name: name.to_string(),
            outcome: Outcome::Skipped,
            secret: None,
            service_accounts: Vec::new(),
            reason: Some(reason.to_string()),
            error: None,
            stuck_pods: Vec::new(),
        }
    }

    pub(crate) fn failed(name: &str, error: String) -> Self {
        Self {
            name: name.to_string(),
            outcome: Outcome::Failed,
            secret: None,
            service_accounts: Vec::new(),
            reason: None,
            error: Some(error),
            stuck_pods: Vec::new(),
        }
    }

    pub(crate) fn fail_service_account(&mut self, name: &str, error: String) {
        self.service_accounts.push(ServiceAccountReport {
            name: name.to_string(),
            outcome: ServiceAccountOutcome::Failed,
            error: Some(error.clone()),
        });
        self.fail(error);
    }

    /// Marks the namespace failed with `error` (joined to any earlier one).
    pub(crate) fn fail(&mut self, error: String) {
        self.outcome = Outcome::Failed;
        self.error = Some(match self.error.take() {
            Some(prev) => format!("{prev}; {error}"),
            None => error,
        });
    }

    pub(crate) fn link(&mut self, name: &str, outcome: ServiceAccountOutcome) {
        self.service_accounts.push(ServiceAccountReport {
            name: name.to_string(),
            outcome,
            error: None,
        });
    }

    /// Whether anything in this namespace was written (or, in a dry run, would have been).
    pub(crate) fn wrote(&self) -> bool {
        matches!(
            self.secret,
            Some(SecretOutcome::Created | SecretOutcome::Updated | SecretOutcome::Deleted)
        ) || self.service_accounts.iter().any(|s| {
            matches!(
                s.outcome,
                ServiceAccountOutcome::Linked | ServiceAccountOutcome::Unlinked
            )
        })
    }

    /// Linking a ServiceAccount changes the namespace even when the Secret was current.
    fn settle(&mut self) {
        if self.outcome == Outcome::Unchanged
            && self
                .service_accounts
                .iter()
                .any(|s| s.outcome == ServiceAccountOutcome::Linked)
        {
            self.outcome = Outcome::Updated;
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Summary {
    /// Namespaces the selection matched (pruned ones are counted apart).
    pub(crate) selected: usize,
    pub(crate) created: usize,
    pub(crate) updated: usize,
    pub(crate) unchanged: usize,
    pub(crate) pruned: usize,
    /// Terminating or opted out.
    pub(crate) skipped: usize,
    pub(crate) failed: usize,
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

/// The report of `sync` and `prune`.
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    pub(crate) schema_version: u32,
    pub(crate) command: &'static str,
    pub(crate) dry_run: bool,
    pub(crate) secret_name: String,
    pub(crate) registries: Vec<String>,
    /// RFC 3339 (jiff's serde form).
    pub(crate) token_expires_at: Option<jiff::Timestamp>,
    pub(crate) summary: Summary,
    pub(crate) namespaces: Vec<NamespaceReport>,
    pub(crate) ecr_calls: usize,
    /// Things to act on that are not a namespace's failure (e.g. a policy left behind).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    #[serde(flatten)]
    pub(crate) end: End,
}

impl RunReport {
    pub(crate) fn new(command: &'static str, secret_name: String, dry_run: bool) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            command,
            dry_run,
            secret_name,
            registries: Vec::new(),
            token_expires_at: None,
            summary: Summary::default(),
            namespaces: Vec::new(),
            ecr_calls: 0,
            warnings: Vec::new(),
            end: End::ok(),
        }
    }

    /// A report for a run that stopped on a fatal error before any namespace.
    pub(crate) fn fatal(
        command: &'static str,
        secret_name: String,
        dry_run: bool,
        err: &Error,
    ) -> Self {
        Self {
            end: End::fatal(err),
            ..Self::new(command, secret_name, dry_run)
        }
    }

    pub(crate) fn finish(&mut self, stats: &Stats, started: Instant) {
        let mut summary = Summary {
            selected: self
                .namespaces
                .iter()
                .filter(|n| n.outcome != Outcome::Pruned)
                .count(),
            ..Summary::default()
        };
        for ns in &mut self.namespaces {
            ns.settle();
            match ns.outcome {
                Outcome::Created => summary.created += 1,
                Outcome::Updated => summary.updated += 1,
                Outcome::Unchanged => summary.unchanged += 1,
                Outcome::Pruned => summary.pruned += 1,
                Outcome::Skipped => summary.skipped += 1,
                Outcome::Failed => summary.failed += 1,
            }
        }
        self.end.finish(stats, started, summary.failed > 0);
        self.summary = summary;
    }

    /// Records a fatal error met after namespaces were processed; their results stay. The
    /// error's own exit code promises that nothing was written (3 for ECR), so when something
    /// was, the run exits 1 instead. Call after [`finish`](Self::finish).
    pub(crate) fn abort(&mut self, err: &Error) {
        self.end.error = Some(ErrorReport::from(err));
        self.end.exit_code = if self.namespaces.iter().any(NamespaceReport::wrote) {
            exit::NAMESPACE_FAILED
        } else {
            err.exit_code()
        };
    }
}

impl RunReport {
    /// Counts, then every prune, skip and failure with its reason.
    fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = String::new();
        let verb = if self.dry_run {
            " (dry run: nothing persisted)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{} secret {}: {} namespaces: {} created, {} updated, {} unchanged, {} pruned, {} skipped, {} failed{verb}",
            self.command, self.secret_name, s.selected, s.created, s.updated, s.unchanged, s.pruned, s.skipped, s.failed
        );
        if !self.registries.is_empty() {
            let _ = writeln!(out, "registries: {}", self.registries.join(", "));
        }
        if let Some(t) = self.token_expires_at {
            let now = jiff::Timestamp::now();
            let left = if t > now {
                format!("in {}", whole_minutes(t.as_second() - now.as_second()))
            } else {
                "already expired".to_string()
            };
            let _ = writeln!(out, "token expires: {t} ({left})");
        }
        // Skips, then failures, each with its reason.
        let lines = [(Outcome::Skipped, "skipped"), (Outcome::Failed, "FAILED")];
        for (outcome, label) in lines {
            for ns in self.namespaces.iter().filter(|n| n.outcome == outcome) {
                let why = match outcome {
                    Outcome::Failed => ns.error.as_deref(),
                    _ => ns.reason.as_deref(),
                };
                let _ = writeln!(out, "{label} {}: {}", ns.name, why.unwrap_or(""));
            }
        }
        for ns in &self.namespaces {
            for p in &ns.stuck_pods {
                let verb = match p.action {
                    PodAction::Deleted if self.dry_run => "would delete",
                    PodAction::Deleted => "deleted",
                    _ => "left",
                };
                let _ = writeln!(
                    out,
                    "{verb} stuck pod {}/{} ({} on {}): {}",
                    ns.name, p.name, p.reason, p.image, p.why
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct AccountStatus {
    pub(crate) name: String,
    pub(crate) state: LinkState,
}

#[derive(Debug, Serialize)]
pub(crate) struct NamespaceStatus {
    pub(crate) name: String,
    pub(crate) healthy: bool,
    /// Set when the namespace was not checked (terminating, opted out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) skipped: Option<String>,
    /// `None`: it could not be read ("unknown").
    #[serde(serialize_with = "secret_state")]
    pub(crate) secret: Option<State>,
    /// RFC 3339 (jiff's serde form).
    pub(crate) expires_at: Option<jiff::Timestamp>,
    /// Negative once expired.
    pub(crate) remaining_seconds: Option<i64>,
    pub(crate) registries: Vec<String>,
    pub(crate) service_accounts: Vec<AccountStatus>,
    /// Pods that wait on a pull because their spec lacks our Secret (each also a problem).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) stuck_pods: Vec<StuckPod>,
    pub(crate) problems: Vec<String>,
}

fn secret_state<S: Serializer>(state: &Option<State>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(state.as_ref().map_or("unknown", State::as_str))
}

impl NamespaceStatus {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            healthy: false,
            skipped: None,
            secret: None,
            expires_at: None,
            remaining_seconds: None,
            registries: Vec::new(),
            service_accounts: Vec::new(),
            stuck_pods: Vec::new(),
            problems: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct StatusSummary {
    pub(crate) selected: usize,
    pub(crate) healthy: usize,
    pub(crate) unhealthy: usize,
    pub(crate) skipped: usize,
}

/// The report of `status`.
#[derive(Debug, Serialize)]
pub(crate) struct StatusReport {
    pub(crate) schema_version: u32,
    pub(crate) command: &'static str,
    pub(crate) secret_name: String,
    pub(crate) min_remaining_seconds: u64,
    /// The born-linked MutatingAdmissionPolicy; `None` when the run ended before it was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) born_linked_policy: Option<PolicyState>,
    pub(crate) summary: StatusSummary,
    pub(crate) namespaces: Vec<NamespaceStatus>,
    /// What could not be checked (e.g. pods, without the permission).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    #[serde(flatten)]
    pub(crate) end: End,
}

impl StatusReport {
    pub(crate) fn new(secret_name: String, min_remaining: Duration) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            command: "status",
            secret_name,
            min_remaining_seconds: min_remaining.as_secs(),
            born_linked_policy: None,
            summary: StatusSummary::default(),
            namespaces: Vec::new(),
            warnings: Vec::new(),
            end: End::ok(),
        }
    }

    pub(crate) fn fatal(secret_name: String, err: &Error) -> Self {
        Self {
            end: End::fatal(err),
            ..Self::new(secret_name, Duration::ZERO)
        }
    }

    pub(crate) fn finish(&mut self, stats: &Stats, started: Instant) {
        self.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        let s = &mut self.summary;
        s.selected = self.namespaces.len();
        for ns in &self.namespaces {
            match (&ns.skipped, ns.healthy) {
                (Some(_), _) => s.skipped += 1,
                (None, true) => s.healthy += 1,
                (None, false) => s.unhealthy += 1,
            }
        }
        self.end.finish(stats, started, s.unhealthy > 0);
    }

    fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "status secret {}: {} namespaces: {} healthy, {} unhealthy, {} skipped\n",
            self.secret_name, s.selected, s.healthy, s.unhealthy, s.skipped
        );
        if let Some(policy) = &self.born_linked_policy {
            let _ = writeln!(out, "born-linked policy {POLICY_NAME}: {policy}");
        }
        for ns in &self.namespaces {
            let left = match ns.remaining_seconds {
                Some(secs) if secs > 0 => format!("expires in {}", whole_minutes(secs)),
                Some(_) => "expired".to_string(),
                None => "no expiry".to_string(),
            };
            let _ = match (&ns.skipped, ns.healthy) {
                (Some(why), _) => writeln!(out, "  skipped   {}: {why}", ns.name),
                (None, true) => writeln!(
                    out,
                    "  ok        {}: {left}; {}",
                    ns.name,
                    ns.registries.join(", ")
                ),
                (None, false) => {
                    writeln!(out, "  UNHEALTHY {}: {}", ns.name, ns.problems.join("; "))
                }
            };
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// A time left, for people: `2h 5m`.
fn whole_minutes(secs: i64) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(secs.max(0) as u64 / 60 * 60))
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
}
