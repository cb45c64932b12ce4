//! The report of `status`: how each namespace stands.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

use super::{whole_minutes, End, SCHEMA_VERSION};
use crate::argocd::ArgoCdStatus;
use crate::bornlinked::{Coverage, PolicyState, POLICY_NAME};
use crate::cluster::Stats;
use crate::error::{exit, Error};
use crate::pullsecret::State;
use crate::serviceaccount::LinkState;
use crate::stuckpods::StuckPod;

#[derive(Debug, Serialize)]
pub(crate) struct AccountStatus {
    pub(crate) name: String,
    pub(crate) state: LinkState,
}

#[derive(Debug, Serialize)]
pub(crate) struct NamespaceStatus {
    pub(crate) name: String,
    /// With --tenants: the rule that takes the namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tenant: Option<String>,
    /// With --tenants: the Secret's name, where its tenant names another than --secret-name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) secret_name: Option<String>,
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
            tenant: None,
            secret_name: None,
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
    /// Installed: which ServiceAccounts it links at creation, and whether `sync` links the same.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) born_linked_service_accounts: Option<Coverage>,
    pub(crate) summary: StatusSummary,
    pub(crate) namespaces: Vec<NamespaceStatus>,
    /// With --argocd-namespace: how Argo CD's repository credentials stand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) argocd: Option<ArgoCdStatus>,
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
            born_linked_service_accounts: None,
            summary: StatusSummary::default(),
            namespaces: Vec::new(),
            argocd: None,
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
        let code = self.tally();
        self.end.finish(stats, started, None, code);
    }

    /// The summary, from the namespaces; and the exit code it means.
    fn tally(&mut self) -> u8 {
        self.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        let mut s = StatusSummary {
            selected: self.namespaces.len(),
            ..StatusSummary::default()
        };
        for ns in &self.namespaces {
            match (&ns.skipped, ns.healthy) {
                (Some(_), _) => s.skipped += 1,
                (None, true) => s.healthy += 1,
                (None, false) => s.unhealthy += 1,
            }
        }
        let unhealthy = s.unhealthy > 0 || self.argocd.as_ref().is_some_and(|a| !a.healthy());
        self.summary = s;
        if unhealthy {
            exit::NAMESPACE_FAILED
        } else {
            exit::OK
        }
    }

    pub(super) fn to_text(&self) -> String {
        let s = &self.summary;
        let mut out = format!(
            "status secret {}: {} namespaces: {} healthy, {} unhealthy, {} skipped\n",
            self.secret_name, s.selected, s.healthy, s.unhealthy, s.skipped
        );
        if let Some(policy) = &self.born_linked_policy {
            let _ = writeln!(out, "born-linked policy {POLICY_NAME}: {policy}");
        }
        if let Some(c) = &self.born_linked_service_accounts {
            let links = c.links();
            let agrees = if c.matches_sync {
                "as sync does"
            } else {
                "NOT what sync links"
            };
            let _ = writeln!(out, "  it links at creation: {links} ({agrees})");
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
                    "  ok        {}{}: {left}; {}",
                    ns.name,
                    ns.tenant
                        .as_ref()
                        .map(|t| format!(" (tenant {t})"))
                        .unwrap_or_default(),
                    ns.registries.join(", ")
                ),
                (None, false) => {
                    writeln!(out, "  UNHEALTHY {}: {}", ns.name, ns.problems.join("; "))
                }
            };
        }
        if let Some(a) = &self.argocd {
            let _ = writeln!(out, "argocd namespace {}:", a.namespace);
            for p in &a.problems {
                let _ = writeln!(out, "  UNHEALTHY {p}");
            }
            for s in &a.secrets {
                let _ = match (s.healthy, s.remaining_seconds) {
                    (true, Some(secs)) => writeln!(
                        out,
                        "  ok        {}: expires in {}",
                        s.name,
                        whole_minutes(secs)
                    ),
                    (true, None) => writeln!(out, "  ok        {}", s.name),
                    (false, _) => {
                        writeln!(out, "  UNHEALTHY {}: {}", s.name, s.problems.join("; "))
                    }
                };
            }
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

impl crate::cmd::Merge for StatusReport {
    fn merge(mut self, later: Self) -> Self {
        self.namespaces.extend(later.namespaces);
        self.argocd = self.argocd.or(later.argocd);
        self.born_linked_policy = self.born_linked_policy.or(later.born_linked_policy);
        self.born_linked_service_accounts = self
            .born_linked_service_accounts
            .or(later.born_linked_service_accounts);
        super::merge_warnings(&mut self.warnings, later.warnings);
        self.end.absorb(later.end);
        let code = self.tally();
        self.end.exit_code = self.end.fatal_code.unwrap_or(code);
        self
    }

    fn with_error(mut self, e: &crate::error::Error) -> Self {
        self.end.keep_error(e);
        self.end.exit_code = e.exit_code();
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
