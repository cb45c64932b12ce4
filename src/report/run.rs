//! The report of `sync` and `prune`: what happened in each namespace.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use super::{whole_minutes, End, SCHEMA_VERSION};
use crate::argocd::ArgoCdReport;
use crate::cluster::Stats;
use crate::error::{exit, Error};
use crate::pullsecret::SecretOutcome;
use crate::serviceaccount::ServiceAccountOutcome;
use crate::stuckpods::{PodAction, StuckPod};

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
    /// With --tenants: the rule that took the namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
    /// With --tenants: the Secret's name, where its tenant names another than --secret-name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_name: Option<String>,
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
    /// Not done because a signal stopped the run (its error says so).
    #[serde(skip)]
    pub(crate) undone: bool,
    /// Why the Secret was not written, for the namespace's Events (see `events`).
    #[serde(skip)]
    pub(crate) secret_trouble: Option<SecretTrouble>,
    /// When the token in the Secret of ours left in place expires (not set where it was
    /// written): the run's earliest expiry is the earliest of these and the new token's.
    #[serde(skip)]
    pub(crate) held: Option<jiff::Timestamp>,
    /// The uid of the Secret written, for its Event.
    #[serde(skip)]
    pub(crate) secret_uid: Option<String>,
}

/// Why a namespace's Secret was not written, as its owner is told (the error's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SecretTrouble {
    /// The name is taken by a Secret that is not ours, or of another type.
    NameTaken(String),
    /// The write was refused or failed.
    NotWritten(String),
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
            tenant: None,
            secret_name: None,
            outcome,
            secret: Some(secret),
            service_accounts: Vec::new(),
            reason: None,
            error: None,
            stuck_pods: Vec::new(),
            undone: false,
            secret_trouble: None,
            held: None,
            secret_uid: None,
        }
    }

    pub(crate) fn skipped(name: &str, reason: &str) -> Self {
        Self {
            name: name.to_string(),
            tenant: None,
            secret_name: None,
            outcome: Outcome::Skipped,
            secret: None,
            service_accounts: Vec::new(),
            reason: Some(reason.to_string()),
            error: None,
            stuck_pods: Vec::new(),
            undone: false,
            secret_trouble: None,
            held: None,
            secret_uid: None,
        }
    }

    pub(crate) fn failed(name: &str, error: String) -> Self {
        Self {
            name: name.to_string(),
            tenant: None,
            secret_name: None,
            outcome: Outcome::Failed,
            secret: None,
            service_accounts: Vec::new(),
            reason: None,
            error: Some(error),
            stuck_pods: Vec::new(),
            undone: false,
            secret_trouble: None,
            held: None,
            secret_uid: None,
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
    /// With --tenants: the tenants whose token could not be had (their namespaces failed,
    /// the others were done); the run exits 3.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) failed_tenants: Vec<FailedTenant>,
    /// With --argocd-namespace: Argo CD's repository credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) argocd: Option<ArgoCdReport>,
    /// Things to act on that are not a namespace's failure (e.g. a policy left behind).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) warnings: Vec<String>,
    #[serde(flatten)]
    pub(crate) end: End,
}

/// A tenant whose token failed, and why (the error names its role).
#[derive(Debug, Serialize)]
pub(crate) struct FailedTenant {
    pub(crate) tenant: String,
    pub(crate) error: String,
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
            failed_tenants: Vec::new(),
            argocd: None,
            warnings: Vec::new(),
            end: End::ok(),
        }
    }

    /// Adds Argo CD's part; its warnings join the run's.
    pub(crate) fn add_argocd(&mut self, mut argocd: ArgoCdReport) {
        super::merge_warnings(&mut self.warnings, std::mem::take(&mut argocd.warnings));
        self.argocd = Some(argocd);
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

    /// Completes the report, the one place its exit code is decided: the summary, the cost,
    /// and how the run ended. A fatal error met after namespaces were processed keeps their
    /// results; its own exit code promises that nothing was written (3 for ECR), so when
    /// something was, the run exits 1 instead. Without one, 3 when a tenant's token failed
    /// (only its namespaces went without), else 1 when any namespace failed.
    pub(crate) fn finish(&mut self, stats: &Stats, started: Instant, fatal: Option<&Error>) {
        self.tally();
        let code = self.code(fatal.map(Error::exit_code));
        self.end.finish(stats, started, fatal, code);
    }

    /// The summary, from the namespaces.
    fn tally(&mut self) {
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
        self.summary = summary;
    }

    /// The exit code, given the fatal error's own code if the run met one.
    fn code(&self, fatal: Option<u8>) -> u8 {
        let wrote = self.namespaces.iter().any(NamespaceReport::wrote)
            || self.argocd.as_ref().is_some_and(ArgoCdReport::wrote);
        let argocd_failed = self.argocd.as_ref().map_or(0, ArgoCdReport::failed);
        match fatal {
            Some(code) if !wrote => code,
            Some(_) => exit::NAMESPACE_FAILED,
            None if !self.failed_tenants.is_empty() => exit::ECR_TOKEN,
            None if self.summary.failed > 0 || argocd_failed > 0 => exit::NAMESPACE_FAILED,
            None => exit::OK,
        }
    }
}

impl crate::cmd::Merge for RunReport {
    fn merge(mut self, later: Self) -> Self {
        let fatal = self.end.fatal_code.or(later.end.fatal_code);
        self.namespaces.extend(later.namespaces);
        self.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        self.registries.extend(later.registries);
        self.registries.sort();
        self.registries.dedup();
        self.token_expires_at = self
            .token_expires_at
            .into_iter()
            .chain(later.token_expires_at)
            .min();
        self.ecr_calls += later.ecr_calls;
        self.failed_tenants.extend(later.failed_tenants);
        self.argocd = self.argocd.or(later.argocd);
        super::merge_warnings(&mut self.warnings, later.warnings);
        self.end.absorb(later.end);
        self.tally();
        self.end.exit_code = self.code(fatal);
        self
    }

    fn with_error(mut self, e: &Error) -> Self {
        self.end.keep_error(e);
        self.end.exit_code = self.code(self.end.fatal_code);
        self
    }

    fn ended(&self) -> bool {
        self.end.ended()
    }

    fn name_secret(&mut self, name: &str) {
        for ns in &mut self.namespaces {
            ns.secret_name = Some(name.to_string());
        }
    }
}

impl RunReport {
    /// Counts, then every prune, skip and failure with its reason.
    pub(super) fn to_text(&self) -> String {
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
        self.namespace_lines(&mut out);
        if let Some(a) = &self.argocd {
            argocd_lines(a, &mut out);
        }
        for t in &self.failed_tenants {
            let _ = writeln!(out, "TENANT FAILED: {}", t.error);
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }

    /// Skips, then failures, each with its reason; then the stuck pods.
    fn namespace_lines(&self, out: &mut String) {
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
    }
}

/// Argo CD's counts, then each failure.
fn argocd_lines(a: &ArgoCdReport, out: &mut String) {
    let _ = writeln!(
        out,
        "argocd namespace {}: {} repository credentials: {} created, {} updated, {} unchanged, {} pruned, {} failed",
        a.namespace,
        a.secrets.len(),
        a.count(Outcome::Created),
        a.count(Outcome::Updated),
        a.count(Outcome::Unchanged),
        a.count(Outcome::Pruned),
        a.failed()
    );
    if let Some(e) = &a.error {
        let _ = writeln!(out, "FAILED argocd: {e}");
    }
    for s in &a.secrets {
        let label = match s.outcome {
            Outcome::Failed => "FAILED",
            Outcome::Skipped => "skipped",
            _ => continue,
        };
        let _ = writeln!(
            out,
            "{label} argocd {}/{}: {}",
            a.namespace,
            s.name,
            s.error.as_deref().unwrap_or("")
        );
    }
}
