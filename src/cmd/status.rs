//! `status`: a read-only health check of every selected namespace.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::Api;
use serde::Serialize;

use super::{bounded, Limits, ServiceAccounts, Target};
use crate::cluster::{explain, Cluster, ClusterOptions, Stats};
use crate::ecr::RegistrySpec;
use crate::error::{exit, Error, Result};
use crate::namespaces::{self, Selection, Target as Namespace, OPT_OUT_ANNOTATION};
use crate::pullsecret::{self, Expiry, State};
use crate::report::{ErrorReport, Render, SCHEMA_VERSION};
use crate::shutdown::Stop;
use crate::{EXPIRES_AT_ANNOTATION, REGISTRIES_ANNOTATION};

#[derive(Clone, Debug)]
pub struct StatusOptions {
    pub cluster: ClusterOptions,
    pub selection: Selection,
    pub target: Target,
    pub concurrency: usize,
    pub timeout: Duration,
    pub min_remaining: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretState {
    Missing,
    Managed,
    Foreign,
    WrongType,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Linked,
    Unlinked,
    Missing,
    Unknown,
}

#[derive(Debug, Serialize)]
pub struct AccountStatus {
    pub name: String,
    pub state: LinkState,
}

#[derive(Debug, Serialize)]
pub struct NamespaceStatus {
    pub name: String,
    pub healthy: bool,
    /// Set when the namespace was not checked (terminating, opted out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub secret: SecretState,
    /// RFC 3339 (jiff's serde form).
    pub expires_at: Option<jiff::Timestamp>,
    /// Negative once expired.
    pub remaining_seconds: Option<i64>,
    pub registries: Vec<String>,
    pub service_accounts: Vec<AccountStatus>,
    pub problems: Vec<String>,
}

impl crate::progress::Tally for NamespaceStatus {
    fn failed(&self) -> bool {
        !self.healthy && self.skipped.is_none()
    }
}

#[derive(Debug, Default, Serialize)]
pub struct StatusSummary {
    pub selected: usize,
    pub healthy: usize,
    pub unhealthy: usize,
    pub skipped: usize,
}

#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub schema_version: u32,
    pub command: &'static str,
    pub secret_name: String,
    pub min_remaining_seconds: u64,
    pub summary: StatusSummary,
    pub namespaces: Vec<NamespaceStatus>,
    pub api_requests: u64,
    pub api_retries: u64,
    pub duration_seconds: f64,
    pub error: Option<ErrorReport>,
    pub exit_code: u8,
}

impl StatusReport {
    fn new(secret_name: String, min_remaining: Duration) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            command: "status",
            secret_name,
            min_remaining_seconds: min_remaining.as_secs(),
            summary: StatusSummary::default(),
            namespaces: Vec::new(),
            api_requests: 0,
            api_retries: 0,
            duration_seconds: 0.0,
            error: None,
            exit_code: exit::OK,
        }
    }

    pub fn fatal(secret_name: String, err: &Error) -> Self {
        let mut r = Self::new(secret_name, Duration::ZERO);
        r.error = Some(ErrorReport {
            kind: err.kind(),
            message: err.to_string(),
        });
        r.exit_code = err.exit_code();
        r
    }

    fn finish(&mut self, stats: &Stats, started: Instant) {
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
        self.exit_code = if s.unhealthy > 0 {
            exit::NAMESPACE_FAILED
        } else {
            exit::OK
        };
        self.api_requests = stats.requests();
        self.api_retries = stats.retries();
        self.duration_seconds = (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0;
    }
}

impl Render for StatusReport {
    fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report always serializes") + "\n"
    }

    fn exit_code(&self) -> u8 {
        self.exit_code
    }

    fn fatal(&self) -> Option<&ErrorReport> {
        self.error.as_ref()
    }

    fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let s = &self.summary;
        let mut out = format!(
            "status secret {}: {} namespaces: {} healthy, {} unhealthy, {} skipped\n",
            self.secret_name, s.selected, s.healthy, s.unhealthy, s.skipped
        );
        for ns in &self.namespaces {
            let left = match ns.remaining_seconds {
                Some(secs) if secs > 0 => format!(
                    "expires in {}",
                    humantime::format_duration(Duration::from_secs(secs as u64 / 60 * 60))
                ),
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
        out
    }
}

pub async fn run(opts: &StatusOptions) -> Result<StatusReport> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let cluster = Cluster::new(&opts.cluster).await?;
    cluster.check_access().await?;
    let targets = namespaces::resolve(&cluster, &opts.selection).await?;
    let mut report = StatusReport::new(opts.target.secret_name.clone(), opts.min_remaining);
    let now = jiff::Timestamp::now();
    let late = |ns: &Namespace, _| NamespaceStatus {
        problems: vec![format!(
            "not checked before the run deadline (--timeout {})",
            humantime::format_duration(opts.timeout)
        )],
        ..NamespaceStatus::blank(&ns.name)
    };
    report.namespaces = bounded(
        targets,
        opts.concurrency,
        // Read-only: a signal may end it at once, so there is no stop to honour.
        Limits {
            deadline,
            timeout: opts.timeout,
            stop: &Stop::never(),
        },
        |ns, _| check(&cluster, opts, ns, now),
        late,
    )
    .await;
    report.finish(cluster.stats(), started);
    Ok(report)
}

impl NamespaceStatus {
    fn blank(name: &str) -> Self {
        Self {
            name: name.to_string(),
            healthy: false,
            skipped: None,
            secret: SecretState::Unknown,
            expires_at: None,
            remaining_seconds: None,
            registries: Vec::new(),
            service_accounts: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// What is wrong with the payload of one of our Secrets: it must be a complete docker config
/// for ECR registries only, and name the same hosts as its registries annotation.
fn payload_problems(secret: &Secret, named: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if pullsecret::hosts(secret).is_none() {
        problems.push(
            "payload is not a complete docker config (auths with username, password and auth)"
                .into(),
        );
    }
    if named.is_empty() {
        problems.push("payload names no registry".into());
    }
    let foreign: Vec<&str> = named
        .iter()
        .filter(|h| !matches!(h.parse(), Ok(RegistrySpec::Host { .. })))
        .map(String::as_str)
        .collect();
    if !foreign.is_empty() {
        problems.push(format!(
            "payload holds credentials for hosts that are not ECR registries: {}",
            foreign.join(", ")
        ));
    }
    let annotated = pullsecret::annotated_hosts(secret);
    if annotated != named {
        problems.push(format!(
            "payload registries ({}) differ from annotation {REGISTRIES_ANNOTATION} ({})",
            named.join(", "),
            annotated.join(", ")
        ));
    }
    problems
}

async fn check(
    cluster: &Cluster,
    opts: &StatusOptions,
    target: Namespace,
    now: jiff::Timestamp,
) -> NamespaceStatus {
    let mut st = NamespaceStatus::blank(&target.name);
    if target.terminating || target.opted_out {
        st.healthy = true;
        st.skipped = Some(if target.terminating {
            "namespace is terminating".into()
        } else {
            format!("opted out by annotation {OPT_OUT_ANNOTATION}")
        });
        return st;
    }
    let ns = target.name.as_str();
    let name = opts.target.secret_name.as_str();
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), ns);
    match cluster.call("get secret", || secrets.get_opt(name)).await {
        Err(e) => st
            .problems
            .push(format!("cannot read secret {name}: {}", explain(&e))),
        Ok(existing) => {
            st.secret = match pullsecret::state(existing.as_ref()) {
                State::Missing => SecretState::Missing,
                State::Foreign => SecretState::Foreign,
                State::WrongType(_) => SecretState::WrongType,
                State::Ours => SecretState::Managed,
            };
            match st.secret {
                SecretState::Missing => st.problems.push(format!("secret {name} is missing")),
                SecretState::Foreign => st
                    .problems
                    .push(format!("secret {name} is not managed by ecr-refresh")),
                SecretState::WrongType => st.problems.push(format!(
                    "secret {name} is not of type kubernetes.io/dockerconfigjson"
                )),
                _ => {}
            }
            if let Some(s) = existing
                .as_ref()
                .filter(|_| st.secret == SecretState::Managed)
            {
                st.registries = pullsecret::named_hosts(s);
                st.problems.extend(payload_problems(s, &st.registries));
                match pullsecret::expiry(s) {
                    Expiry::Garbage(v) => st.problems.push(format!(
                        "annotation {EXPIRES_AT_ANNOTATION} is {v:?}, not an RFC 3339 timestamp"
                    )),
                    Expiry::At(t) if pullsecret::is_beyond_token_lifetime(t, now) => {
                        st.expires_at = Some(t);
                        st.remaining_seconds = Some(t.as_second() - now.as_second());
                        st.problems.push(format!(
                            "annotation {EXPIRES_AT_ANNOTATION} says {t}, further out than an ECR token lasts (12h)"
                        ));
                    }
                    Expiry::At(t) => {
                        st.expires_at = Some(t);
                        let left = t.as_second() - now.as_second();
                        st.remaining_seconds = Some(left);
                        if left <= 0 {
                            st.problems.push(format!("token expired at {t}"));
                        } else if (left as u64) < opts.min_remaining.as_secs() {
                            st.problems.push(format!(
                                "token expires in {}, sooner than --min-remaining {}",
                                humantime::format_duration(Duration::from_secs(left as u64)),
                                humantime::format_duration(opts.min_remaining)
                            ));
                        }
                    }
                    Expiry::Missing => st.problems.push("secret has no expiry annotation".into()),
                }
            }
        }
    }
    match opts.target.service_accounts(cluster, ns).await {
        Err(e) => st.problems.push(e.to_string()),
        Ok(accounts) => {
            let api: Api<ServiceAccount> = Api::namespaced(cluster.client(), ns);
            for sa in accounts {
                let state = match cluster
                    .call("get service account", || api.get_opt(&sa))
                    .await
                {
                    Ok(Some(obj))
                        if obj
                            .image_pull_secrets
                            .iter()
                            .flatten()
                            .any(|r| r.name == name) =>
                    {
                        LinkState::Linked
                    }
                    Ok(Some(_)) => {
                        st.problems
                            .push(format!("service account {sa} does not reference {name}"));
                        LinkState::Unlinked
                    }
                    // Listed a moment ago and deleted since: nothing is wrong.
                    Ok(None) if matches!(opts.target.service_accounts, ServiceAccounts::All) => {
                        LinkState::Missing
                    }
                    Ok(None) => {
                        st.problems.push(format!("service account {sa} is missing"));
                        LinkState::Missing
                    }
                    Err(e) => {
                        st.problems
                            .push(format!("cannot read service account {sa}: {}", explain(&e)));
                        LinkState::Unknown
                    }
                };
                st.service_accounts.push(AccountStatus { name: sa, state });
            }
        }
    }
    st.healthy = st.problems.is_empty();
    st
}
