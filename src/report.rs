//! What a run did, as a short human summary or one JSON document (schema in the README).

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use crate::cluster::Stats;
use crate::error::{exit, Error};
pub use crate::serviceaccount::Change as ServiceAccountOutcome;

/// What every command's report offers to `main`.
pub trait Render {
    /// A few lines for people.
    fn to_text(&self) -> String;
    /// One JSON document, newline-terminated.
    fn to_json(&self) -> String;
    fn exit_code(&self) -> u8;
    /// Set when the run stopped on a fatal error.
    fn fatal(&self) -> Option<&ErrorReport>;
    /// Holds per-namespace results, to print even when the run also stopped on a fatal error.
    fn has_results(&self) -> bool {
        false
    }
}

/// Bumped on any incompatible change to the JSON output.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Pruned,
    Skipped,
    Failed,
}

/// What happened to the Secret in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretOutcome {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

#[derive(Debug, Serialize)]
pub struct ServiceAccountReport {
    pub name: String,
    pub outcome: ServiceAccountOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NamespaceReport {
    pub name: String,
    pub outcome: Outcome,
    /// What happened to the Secret; absent when the namespace was skipped or failed before.
    pub secret: Option<SecretOutcome>,
    pub service_accounts: Vec<ServiceAccountReport>,
    /// Why it was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NamespaceReport {
    pub fn new(name: &str, secret: SecretOutcome) -> Self {
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
        }
    }

    pub fn skipped(name: &str, reason: &str) -> Self {
        Self {
            name: name.to_string(),
            outcome: Outcome::Skipped,
            secret: None,
            service_accounts: Vec::new(),
            reason: Some(reason.to_string()),
            error: None,
        }
    }

    pub fn failed(name: &str, error: String) -> Self {
        Self {
            name: name.to_string(),
            outcome: Outcome::Failed,
            secret: None,
            service_accounts: Vec::new(),
            reason: None,
            error: Some(error),
        }
    }

    pub fn fail_service_account(&mut self, name: &str, error: String) {
        self.service_accounts.push(ServiceAccountReport {
            name: name.to_string(),
            outcome: ServiceAccountOutcome::Failed,
            error: Some(error.clone()),
        });
        self.outcome = Outcome::Failed;
        self.error = Some(match self.error.take() {
            Some(prev) => format!("{prev}; {error}"),
            None => error,
        });
    }

    pub fn link(&mut self, name: &str, outcome: ServiceAccountOutcome) {
        self.service_accounts.push(ServiceAccountReport {
            name: name.to_string(),
            outcome,
            error: None,
        });
    }

    /// Whether anything in this namespace was written (or, in a dry run, would have been).
    pub fn wrote(&self) -> bool {
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
pub struct Summary {
    pub selected: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub pruned: usize,
    pub skipped: usize,
    pub failed: usize,
}

#[derive(Debug, Serialize)]
pub struct ErrorReport {
    pub kind: &'static str,
    pub message: String,
}

/// The report of `sync` and `prune`.
#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub schema_version: u32,
    pub command: &'static str,
    pub dry_run: bool,
    pub secret_name: String,
    pub registries: Vec<String>,
    /// RFC 3339 (jiff's serde form).
    pub token_expires_at: Option<jiff::Timestamp>,
    pub summary: Summary,
    pub namespaces: Vec<NamespaceReport>,
    pub ecr_calls: usize,
    pub api_requests: u64,
    pub api_retries: u64,
    pub duration_seconds: f64,
    /// Set when the run stopped before touching any namespace.
    pub error: Option<ErrorReport>,
    pub exit_code: u8,
}

impl SyncReport {
    pub fn new(command: &'static str, secret_name: String, dry_run: bool) -> Self {
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
            api_requests: 0,
            api_retries: 0,
            duration_seconds: 0.0,
            error: None,
            exit_code: exit::OK,
        }
    }

    /// A report for a run that stopped on a fatal error.
    pub fn fatal(command: &'static str, secret_name: String, dry_run: bool, err: &Error) -> Self {
        let mut r = Self::new(command, secret_name, dry_run);
        r.error = Some(ErrorReport {
            kind: err.kind(),
            message: err.to_string(),
        });
        r.exit_code = err.exit_code();
        r
    }

    pub fn finish(&mut self, stats: &Stats, started: Instant) {
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
        self.exit_code = if summary.failed > 0 {
            exit::NAMESPACE_FAILED
        } else {
            exit::OK
        };
        self.summary = summary;
        self.api_requests = stats.requests();
        self.api_retries = stats.retries();
        self.duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    }

    /// Records a fatal error met after namespaces were processed; their results stay. The
    /// error's own exit code promises that nothing was written (3 for ECR), so when something
    /// was, the run exits 1 instead. Call after [`finish`](Self::finish).
    pub fn abort(&mut self, err: &Error) {
        self.error = Some(ErrorReport {
            kind: err.kind(),
            message: err.to_string(),
        });
        self.exit_code = if self.namespaces.iter().any(NamespaceReport::wrote) {
            exit::NAMESPACE_FAILED
        } else {
            err.exit_code()
        };
    }
}

impl Render for SyncReport {
    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report always serializes") + "\n"
    }

    fn exit_code(&self) -> u8 {
        self.exit_code
    }

    fn fatal(&self) -> Option<&ErrorReport> {
        self.error.as_ref()
    }

    fn has_results(&self) -> bool {
        !self.namespaces.is_empty()
    }

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
                let secs = (t.as_second() - now.as_second()).max(0) as u64;
                format!(
                    "in {}",
                    humantime::format_duration(std::time::Duration::from_secs(secs / 60 * 60))
                )
            } else {
                "already expired".to_string()
            };
            let _ = writeln!(out, "token expires: {t} ({left})");
        }
        for ns in self
            .namespaces
            .iter()
            .filter(|n| n.outcome == Outcome::Skipped)
        {
            let _ = writeln!(
                out,
                "skipped {}: {}",
                ns.name,
                ns.reason.as_deref().unwrap_or("")
            );
        }
        for ns in self
            .namespaces
            .iter()
            .filter(|n| n.outcome == Outcome::Failed)
        {
            let _ = writeln!(
                out,
                "FAILED {}: {}",
                ns.name,
                ns.error.as_deref().unwrap_or("")
            );
        }
        out
    }
}
