//! Argo CD repository credentials for Helm charts and OCI artifacts in ECR: with
//! --argocd-namespace, one `repo-creds` Secret per registry host in Argo CD's namespace, which
//! Argo CD matches by URL prefix for every OCI Helm repository under that host (Argo CD's
//! declarative setup, "Repository Credentials"; `argocd repocreds add <host> --enable-oci
//! --type helm` makes the same).
//!
//! Judged like the pull Secret: written only when due, never over someone else's, and checked
//! against the ledger (under [`ledger_key`]) so that one changed since our write is rewritten.
//! The ledger also says which names to read: RBAC grants this identity those names only, never
//! a list of Argo CD's Secrets (its admin password and cluster credentials live there).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde::Serialize;
use tracing::{info, warn};

use crate::cluster::{
    explain, explain_write, is_rbac_forbidden, is_status, Cluster, FIELD_MANAGER,
};
use crate::ecr::token::Login;
use crate::pullsecret::{
    annotation, expiry, expiry_problem, is_ours, Expiry, LazyDesired, Ledger, Written,
    EXPIRES_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, REGISTRIES_ANNOTATION,
    REQUEST_ANNOTATION,
};
use crate::report::Outcome;

/// Argo CD reads Secrets with this label: `repo-creds` is a credential template.
pub(crate) const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";
pub(crate) const REPO_CREDS: &str = "repo-creds";
/// Exactly the keys we write (the admission policy holds the Secret to them).
pub(crate) const KEYS: [&str; 5] = ["enableOCI", "password", "type", "url", "username"];
const NAME_PREFIX: &str = "ecr-refresh.";

/// The Secret's name for a registry host: a host is a DNS name, so this is a valid name.
pub(crate) fn name_for(host: &str) -> String {
    format!("{NAME_PREFIX}{host}")
}

/// The host a name of ours is for.
fn host_of(name: &str) -> &str {
    name.strip_prefix(NAME_PREFIX).unwrap_or(name)
}

/// The ledger's key for the Secrets in Argo CD namespace `namespace`: a ConfigMap key may
/// start with `_`, a Secret name may not, so it never meets a pull Secret's key.
pub(crate) fn ledger_key(namespace: &str) -> String {
    format!("_argocd.{namespace}")
}

/// The url a host's Secret holds: the host and a slash. Argo CD gives a template's credentials
/// to every repository URL that starts with its url (a plain string prefix): without the slash,
/// also to `<host>.attacker.example/chart`.
pub(crate) fn url_for(host: &str) -> String {
    format!("{host}/")
}

/// The repo-creds Secret for `host`, holding `login` (username `AWS`, the token as password).
pub(crate) fn desired(
    host: &str,
    login: &Login,
    expires_at: Option<jiff::Timestamp>,
    request: &str,
    namespace: &str,
) -> Secret {
    let url = url_for(host);
    let data = [
        ("enableOCI", "true".as_bytes()),
        ("password", login.password.expose().as_bytes()),
        ("type", b"helm"),
        ("url", url.as_bytes()),
        ("username", login.username.as_bytes()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
    .collect();
    let mut annotations = BTreeMap::from([
        (REGISTRIES_ANNOTATION.to_string(), host.to_string()),
        (REQUEST_ANNOTATION.to_string(), request.to_string()),
    ]);
    if let Some(t) = expires_at {
        annotations.insert(EXPIRES_AT_ANNOTATION.to_string(), t.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name_for(host)),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY_VALUE.to_string()),
                (SECRET_TYPE_LABEL.to_string(), REPO_CREDS.to_string()),
            ])),
            annotations: Some(annotations),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// What to do with the repo-creds Secret of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Ours and current.
    Leave,
    /// Missing, or ours and due (expiring, made for another request, not as we write it, or
    /// changed since our write).
    Write,
    /// Someone else's Secret of that name: never overwritten.
    Refuse,
}

/// How [`judge`] decides.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Judgement<'a> {
    /// The fingerprint of what this run fetches (`pullsecret::Wanted::request`).
    pub(crate) request: &'a str,
    pub(crate) now: jiff::Timestamp,
    pub(crate) refresh_before: Duration,
    pub(crate) refresh_all: bool,
}

/// When the token in one of ours expires, if its annotation says.
fn expires_at(s: &Secret) -> Option<jiff::Timestamp> {
    match expiry(s) {
        Expiry::At(t) => Some(t),
        _ => None,
    }
}

/// Ours, with exactly our labels' values, keys and the fixed values we write for `name`.
fn is_shaped(s: &Secret, name: &str) -> bool {
    let data = s.data.as_ref();
    let keys: Vec<&str> = data
        .into_iter()
        .flat_map(|d| d.keys().map(String::as_str))
        .collect();
    let value = |k: &str| data.and_then(|d| d.get(k)).map(|v| v.0.as_slice());
    let label = s
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SECRET_TYPE_LABEL));
    keys == KEYS
        && s.type_.as_deref() == Some("Opaque")
        && label.map(String::as_str) == Some(REPO_CREDS)
        && value("type") == Some(b"helm")
        && value("enableOCI") == Some(b"true")
        && value("url") == Some(url_for(host_of(name)).as_bytes())
        && value("username").is_some_and(|u| !u.is_empty())
        && value("password").is_some_and(|p| !p.is_empty())
}

/// Judges the Secret found under `name`; `written` is the ledger's word on it.
pub(crate) fn judge(
    name: &str,
    found: Option<&Secret>,
    written: &Written,
    how: Judgement<'_>,
) -> Step {
    let Some(s) = found else {
        return Step::Write;
    };
    if !is_ours(s) {
        return Step::Refuse;
    }
    // An unreadable ledger vouches for nothing and blames nothing (as for the pull Secret).
    let vouched =
        *written == Written::Unknown || written.vouches_for(s.metadata.resource_version.as_deref());
    let same_request = annotation(s, REQUEST_ANNOTATION) == Some(how.request);
    let fresh = expires_at(s)
        .is_some_and(|t| t.as_second() - how.now.as_second() > how.refresh_before.as_secs() as i64);
    if vouched && is_shaped(s, name) && same_request && fresh && !how.refresh_all {
        Step::Leave
    } else {
        Step::Write
    }
}

/// What happened to one repo-creds Secret, in `sync`'s and `prune`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct RepoCredsReport {
    pub(crate) name: String,
    /// The url it holds: Argo CD gives it to every repository under it.
    pub(crate) url: String,
    pub(crate) outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl RepoCredsReport {
    fn new(name: &str, outcome: Outcome) -> Self {
        Self {
            name: name.to_string(),
            url: url_for(host_of(name)),
            outcome,
            error: None,
        }
    }

    fn failed(name: &str, error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::new(name, Outcome::Failed)
        }
    }
}

/// The Argo CD part of `sync`'s and `prune`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct ArgoCdReport {
    pub(crate) namespace: String,
    pub(crate) secrets: Vec<RepoCredsReport>,
    /// Why none could be written (no token); counted as a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Not for one Secret: the ledger, a Secret no longer written.
    #[serde(skip)]
    pub(crate) warnings: Vec<String>,
}

impl ArgoCdReport {
    fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            secrets: Vec::new(),
            error: None,
            warnings: Vec::new(),
        }
    }

    /// Not done: the run's deadline came first (`message` says so).
    pub(crate) fn cut_short(namespace: &str, message: String) -> Self {
        Self {
            error: Some(format!("Argo CD's repository credentials: {message}")),
            ..Self::new(namespace)
        }
    }

    pub(crate) fn failed(&self) -> usize {
        self.secrets
            .iter()
            .filter(|s| s.outcome == Outcome::Failed)
            .count()
            + usize::from(self.error.is_some())
    }

    pub(crate) fn wrote(&self) -> bool {
        self.secrets.iter().any(|s| {
            matches!(
                s.outcome,
                Outcome::Created | Outcome::Updated | Outcome::Pruned
            )
        })
    }

    pub(crate) fn count(&self, outcome: Outcome) -> usize {
        self.secrets.iter().filter(|s| s.outcome == outcome).count()
    }
}

/// Why a Secret of that name is left alone, as the report says it.
fn not_ours(namespace: &str, name: &str) -> String {
    format!(
        "secret {namespace}/{name} is not ours (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}): left alone; Argo CD uses it for oci://{}. Delete it to let ecr-refresh keep that registry's credentials there",
        host_of(name)
    )
}

/// Why a call on `namespace/name` failed. RBAC grants these Secrets by name only, and the names
/// are the user's account's and region's: a refusal says where to add this one.
fn call_error(e: &kube::Error, doing: &str, namespace: &str, name: &str) -> String {
    if is_rbac_forbidden(e) {
        format!(
            "{doing} secret {namespace}/{name}: {} (add {name} to the resourceNames of deploy/argocd's Role in {namespace}; with Helm, {} to argocd.hosts)",
            explain(e),
            host_of(name)
        )
    } else {
        format!("{doing} secret {namespace}/{name}: {}", explain_write(e))
    }
}

/// How `sync` treats Argo CD's Secrets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncPolicy {
    pub(crate) dry_run: bool,
    pub(crate) refresh_before: Duration,
    pub(crate) refresh_all: bool,
}

/// Every call on Argo CD's Secrets, by name.
struct RepoCreds<'a> {
    cluster: &'a Cluster,
    api: Api<Secret>,
    namespace: &'a str,
}

impl<'a> RepoCreds<'a> {
    fn new(cluster: &'a Cluster, namespace: &'a str) -> Self {
        Self {
            cluster,
            api: Api::namespaced(cluster.client(), namespace),
            namespace,
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Secret>, String> {
        self.cluster
            .call("get argocd secret", || self.api.get_opt(name))
            .await
            .map_err(|e| call_error(&e, "reading", self.namespace, name))
    }

    /// Reads each of `names` side by side.
    async fn get_all(
        &self,
        names: impl IntoIterator<Item = String>,
    ) -> BTreeMap<String, Result<Option<Secret>, String>> {
        let reads = names.into_iter().map(|n| async move {
            let got = self.get(&n).await;
            (n, got)
        });
        futures::future::join_all(reads).await.into_iter().collect()
    }

    /// Server-side applies `secret`. Over ours it is forced and conditional on the
    /// resourceVersion read (409 if it changed since); where there was none, unforced, so the
    /// server refuses (409) if someone else made one since with other values.
    async fn apply(
        &self,
        secret: &Secret,
        seen: Option<&Secret>,
        dry_run: bool,
    ) -> Result<Secret, String> {
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut secret = secret.clone();
        secret.metadata.resource_version = seen.and_then(|s| s.metadata.resource_version.clone());
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = seen.is_some();
        pp.dry_run = dry_run;
        let patch = Patch::Apply(&secret);
        self.cluster
            .call("apply argocd secret", || self.api.patch(&name, &pp, &patch))
            .await
            .map_err(|e| {
                if is_status(&e, |s| s.is_conflict()) {
                    format!(
                        "secret {}/{name} changed while it was written; the next pass judges it again",
                        self.namespace
                    )
                } else {
                    call_error(&e, "writing", self.namespace, &name)
                }
            })
    }

    /// Deletes our Secret exactly as `seen` (uid and resourceVersion preconditions).
    async fn delete(&self, seen: &Secret, dry_run: bool) -> Result<(), String> {
        let name = seen.metadata.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            dry_run,
            preconditions: Some(Preconditions {
                uid: seen.metadata.uid.clone(),
                resource_version: seen.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        match self
            .cluster
            .call("delete argocd secret", || self.api.delete(&name, &dp))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, |s| s.is_not_found()) => Ok(()),
            Err(e) => Err(call_error(&e, "deleting", self.namespace, &name)),
        }
    }
}

/// `sync`'s part: reads the Secrets the ledger names and, only when one is missing, due or
/// unknown, fetches the token (`lazy`, shared with the pull Secrets) and writes each host's.
pub(crate) async fn sync(
    cluster: &Cluster,
    namespace: &str,
    state_namespace: &str,
    lazy: &LazyDesired,
    policy: SyncPolicy,
) -> ArgoCdReport {
    let mut report = ArgoCdReport::new(namespace);
    let (ledger, unread) = Ledger::read(cluster, state_namespace, &ledger_key(namespace)).await;
    report.warnings.extend(unread.map(|e| e.to_string()));
    let calls = RepoCreds::new(cluster, namespace);
    let how = Judgement {
        request: &lazy.wanted.request,
        now: jiff::Timestamp::now(),
        refresh_before: policy.refresh_before,
        refresh_all: policy.refresh_all,
    };
    let recorded = ledger.recorded();
    let mut found = calls.get_all(recorded.clone()).await;
    let step = |name: &str, found: &BTreeMap<String, Result<Option<Secret>, String>>| match found
        .get(name)
    {
        Some(Ok(s)) => Ok(judge(name, s.as_ref(), &ledger.of(name), how)),
        Some(Err(e)) => Err(e.clone()),
        None => Ok(Step::Write),
    };
    // Without a record of which hosts, only the token says.
    let due = recorded.is_empty()
        || recorded
            .iter()
            .any(|n| matches!(step(n, &found), Ok(Step::Write)));
    // Fetched only when a write is due; then its hosts say which Secrets there are.
    let token = if due {
        match lazy.get().await {
            Ok(token) => Some(token),
            Err(e) => {
                report.error = Some(format!(
                    "Argo CD's repository credentials not written: no ECR token ({e})"
                ));
                return report;
            }
        }
    } else {
        None
    };
    let names: BTreeSet<String> = match &token {
        Some(token) => token.logins.keys().map(|h| name_for(h)).collect(),
        None => recorded.iter().cloned().collect(),
    };
    let unread: Vec<String> = names
        .iter()
        .filter(|n| !found.contains_key(*n))
        .cloned()
        .collect();
    found.extend(calls.get_all(unread).await);
    let mut written = BTreeMap::new();
    for name in &names {
        let done = match step(name, &found) {
            Err(e) => RepoCredsReport::failed(name, e),
            Ok(Step::Leave) => RepoCredsReport::new(name, Outcome::Unchanged),
            Ok(Step::Refuse) => {
                warn!(namespace, secret = %name, "argo cd secret of that name is not ours; left alone");
                RepoCredsReport::failed(name, not_ours(namespace, name))
            }
            Ok(Step::Write) => {
                let (login, expires) = token
                    .as_ref()
                    .and_then(|t| t.logins.get(host_of(name)))
                    .expect("a write is due only where the token was fetched, for its hosts");
                let secret = desired(
                    host_of(name),
                    login,
                    *expires,
                    &lazy.wanted.request,
                    namespace,
                );
                let seen = found
                    .get(name)
                    .and_then(|f| f.as_ref().ok())
                    .and_then(Option::as_ref);
                match calls.apply(&secret, seen, policy.dry_run).await {
                    Ok(stored) => {
                        let outcome = if seen.is_some() {
                            Outcome::Updated
                        } else {
                            Outcome::Created
                        };
                        info!(namespace, secret = %name, ?outcome, dry_run = policy.dry_run, "argo cd secret written");
                        if let (Some(rv), false) =
                            (stored.metadata.resource_version, policy.dry_run)
                        {
                            written.insert(name.clone(), rv);
                        }
                        RepoCredsReport::new(name, outcome)
                    }
                    Err(e) => RepoCredsReport::failed(name, e),
                }
            }
        };
        report.secrets.push(done);
    }
    // Ours for a host this run no longer fetches: no longer judged (it would be due on every
    // pass), and said once.
    for name in recorded.iter().filter(|n| !names.contains(*n)) {
        report.warnings.push(format!(
            "secret {namespace}/{name} is ours, but this run fetches no token for {}: it is no longer refreshed; delete it with `kubectl -n {namespace} delete secret {name}`",
            host_of(name)
        ));
    }
    if policy.dry_run {
        return report;
    }
    let gone = |n: &str| !names.contains(n);
    let recorded = if written.is_empty() {
        ledger.forget(cluster, gone).await
    } else {
        ledger.record(cluster, written, gone).await
    };
    report
        .warnings
        .extend(recorded.err().map(|e| e.to_string()));
    report
}

/// `prune`'s part: removes every Secret of ours that the ledger names (someone else's of that
/// name stays), then forgets them.
pub(crate) async fn prune(
    cluster: &Cluster,
    namespace: &str,
    state_namespace: &str,
    dry_run: bool,
) -> ArgoCdReport {
    let mut report = ArgoCdReport::new(namespace);
    let (ledger, unread) = Ledger::read(cluster, state_namespace, &ledger_key(namespace)).await;
    if let Some(e) = unread {
        report.warnings.push(format!(
            "{e}; so the Argo CD Secrets of ours are not known: remove them with `kubectl -n {namespace} delete secret -l {MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{SECRET_TYPE_LABEL}={REPO_CREDS}`"
        ));
        return report;
    }
    let calls = RepoCreds::new(cluster, namespace);
    let mut removed = BTreeSet::new();
    for (name, got) in calls.get_all(ledger.recorded()).await {
        match got {
            Err(e) => report.secrets.push(RepoCredsReport::failed(&name, e)),
            Ok(None) => {
                removed.insert(name);
            }
            Ok(Some(s)) if !is_ours(&s) => {
                removed.insert(name.clone());
                report.secrets.push(RepoCredsReport {
                    error: Some(not_ours(namespace, &name)),
                    ..RepoCredsReport::new(&name, Outcome::Skipped)
                });
            }
            Ok(Some(s)) => match calls.delete(&s, dry_run).await {
                Ok(()) => {
                    info!(namespace, secret = %name, dry_run, "argo cd secret pruned");
                    removed.insert(name.clone());
                    report
                        .secrets
                        .push(RepoCredsReport::new(&name, Outcome::Pruned));
                }
                Err(e) => report.secrets.push(RepoCredsReport::failed(&name, e)),
            },
        }
    }
    if !dry_run {
        if let Err(e) = ledger.forget(cluster, |n| removed.contains(n)).await {
            report.warnings.push(e.to_string());
        }
    }
    report
}

/// How one repo-creds Secret stands, in `status`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct RepoCredsStatus {
    pub(crate) name: String,
    pub(crate) url: String,
    /// `ours`, `foreign`, `missing` or `unknown` (it could not be read).
    pub(crate) secret: &'static str,
    pub(crate) healthy: bool,
    pub(crate) expires_at: Option<jiff::Timestamp>,
    /// Negative once expired.
    pub(crate) remaining_seconds: Option<i64>,
    pub(crate) problems: Vec<String>,
}

/// The Argo CD part of `status`'s report.
#[derive(Debug, Serialize)]
pub(crate) struct ArgoCdStatus {
    pub(crate) namespace: String,
    pub(crate) secrets: Vec<RepoCredsStatus>,
    /// Not about one Secret (none known at all).
    pub(crate) problems: Vec<String>,
}

impl ArgoCdStatus {
    pub(crate) fn healthy(&self) -> bool {
        self.problems.is_empty() && self.secrets.iter().all(|s| s.healthy)
    }
}

/// `status`'s part: each Secret the ledger names or a host of our pull Secrets (`hosts`) asks
/// for: there, ours, as `sync` writes it, unchanged since, and not expiring.
pub(crate) async fn status(
    cluster: &Cluster,
    namespace: &str,
    ledger: &Ledger,
    hosts: &BTreeSet<String>,
    min_remaining: Duration,
) -> ArgoCdStatus {
    let now = jiff::Timestamp::now();
    let mut names: BTreeSet<String> = ledger.recorded().into_iter().collect();
    names.extend(hosts.iter().map(|h| name_for(h)));
    let mut st = ArgoCdStatus {
        namespace: namespace.to_string(),
        secrets: Vec::new(),
        problems: Vec::new(),
    };
    if names.is_empty() {
        st.problems.push(format!(
            "no Argo CD Secret is known: the ledger records none and no pull Secret of ours names a registry; run `ecr-refresh sync --argocd-namespace {namespace}`"
        ));
        return st;
    }
    let calls = RepoCreds::new(cluster, namespace);
    for (name, got) in calls.get_all(names).await {
        let mut s = RepoCredsStatus {
            url: url_for(host_of(&name)),
            name,
            secret: "unknown",
            healthy: false,
            expires_at: None,
            remaining_seconds: None,
            problems: Vec::new(),
        };
        match got {
            Err(e) => s.problems.push(e),
            Ok(None) => {
                s.secret = "missing";
                s.problems
                    .push("missing: the next `sync --argocd-namespace` writes it".into());
            }
            Ok(Some(found)) if !is_ours(&found) => {
                s.secret = "foreign";
                s.problems.push(not_ours(namespace, &s.name));
            }
            Ok(Some(found)) => {
                s.secret = "ours";
                let written = ledger.of(&s.name);
                let (expires, problems) =
                    problems_of(&found, &s.name, &written, now, min_remaining);
                s.problems = problems;
                s.expires_at = expires;
                s.remaining_seconds = expires.map(|t| t.as_second() - now.as_second());
            }
        }
        s.healthy = s.problems.is_empty();
        st.secrets.push(s);
    }
    st
}

/// What is wrong with one of ours; and when its token expires, as `status` reports it.
fn problems_of(
    s: &Secret,
    name: &str,
    written: &Written,
    now: jiff::Timestamp,
    min_remaining: Duration,
) -> (Option<jiff::Timestamp>, Vec<String>) {
    let mut problems = Vec::new();
    if !is_shaped(s, name) {
        problems.push(format!(
            "not as sync writes it (Opaque, label {SECRET_TYPE_LABEL}={REPO_CREDS}, exactly the keys {}, url {}); the next sync rewrites it",
            KEYS.join(", "),
            url_for(host_of(name))
        ));
    }
    if matches!(written, Written::Never | Written::At(_))
        && !written.vouches_for(s.metadata.resource_version.as_deref())
    {
        problems.push(
            "changed since sync wrote it (its resourceVersion is not the ledger's); the next sync rewrites it".into(),
        );
    }
    let (expires, problem) = expiry_problem(s, now, min_remaining);
    problems.extend(problem);
    (expires, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensitive::Sensitive;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn login() -> Login {
        Login {
            username: "AWS".into(),
            password: Sensitive::new("s3cret".into()),
        }
    }

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn how(now: jiff::Timestamp) -> Judgement<'static> {
        Judgement {
            request: "r",
            now,
            refresh_before: Duration::from_secs(9 * 3600),
            refresh_all: false,
        }
    }

    /// Ours as the server stored it, at resourceVersion 7.
    fn stored() -> Secret {
        let mut s = desired(HOST, &login(), Some(at(43_200)), "r", "argocd");
        s.metadata.resource_version = Some("7".into());
        s
    }

    #[test]
    fn the_secret_is_an_argo_cd_oci_helm_credential_template_for_the_host() {
        let s = desired(HOST, &login(), Some(at(43_200)), "r", "argocd");
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("ecr-refresh.123456789012.dkr.ecr.us-east-1.amazonaws.com")
        );
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels[SECRET_TYPE_LABEL], "repo-creds");
        assert_eq!(labels[MANAGED_BY_LABEL], "ecr-refresh");
        let data = s.data.clone().unwrap();
        let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
        assert_eq!(data.keys().map(String::as_str).collect::<Vec<_>>(), KEYS);
        assert_eq!(
            [
                text("type"),
                text("url"),
                text("enableOCI"),
                text("username"),
                text("password")
            ],
            ["helm", &format!("{HOST}/"), "true", "AWS", "s3cret"]
        );
        assert!(is_shaped(&s, &name_for(HOST)));
        // Not in anything that prints it.
        assert!(!format!("{:?}", login()).contains("s3cret"));
    }

    #[test]
    fn ours_and_current_is_left_expiring_or_other_request_is_written_and_theirs_refused() {
        let name = name_for(HOST);
        let at7 = Written::At("7".into());
        let ours = stored();
        assert_eq!(judge(&name, None, &Written::Never, how(at(0))), Step::Write);
        assert_eq!(judge(&name, Some(&ours), &at7, how(at(0))), Step::Leave);
        assert_eq!(
            judge(&name, Some(&ours), &at7, how(at(3 * 3600 + 1))),
            Step::Write,
            "within --refresh-before of expiry"
        );
        let other = Judgement {
            request: "other",
            ..how(at(0))
        };
        assert_eq!(judge(&name, Some(&ours), &at7, other), Step::Write);
        let all = Judgement {
            refresh_all: true,
            ..how(at(0))
        };
        assert_eq!(judge(&name, Some(&ours), &at7, all), Step::Write);
        let mut extra = ours.clone();
        extra
            .data
            .as_mut()
            .unwrap()
            .insert("project".into(), ByteString(b"x".to_vec()));
        assert_eq!(judge(&name, Some(&extra), &at7, how(at(0))), Step::Write);
        let mut theirs = ours.clone();
        theirs
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(MANAGED_BY_LABEL);
        assert_eq!(judge(&name, Some(&theirs), &at7, how(at(0))), Step::Refuse);
    }

    #[test]
    fn a_secret_changed_since_our_write_is_rewritten_whatever_it_claims() {
        // Someone who may write the Secret can keep our label, annotations and keys and change
        // the password (or the url's host, pointing Argo CD elsewhere): the ledger tells.
        let name = name_for(HOST);
        let ours = stored();
        assert_eq!(
            judge(&name, Some(&ours), &Written::At("6".into()), how(at(0))),
            Step::Write
        );
        assert_eq!(
            judge(&name, Some(&ours), &Written::Never, how(at(0))),
            Step::Write
        );
        // The ledger unreadable: judged by what it holds.
        assert_eq!(
            judge(&name, Some(&ours), &Written::Unknown, how(at(0))),
            Step::Leave
        );
        let mut moved = ours.clone();
        moved.data.as_mut().unwrap().insert(
            "url".into(),
            ByteString(format!("{HOST}.evil.example.com/").into_bytes()),
        );
        assert_eq!(
            judge(&name, Some(&moved), &Written::Unknown, how(at(0))),
            Step::Write
        );
    }

    #[test]
    fn status_names_each_problem_of_ours() {
        let name = name_for(HOST);
        let ours = stored();
        let at7 = Written::At("7".into());
        let (expires, p) = problems_of(&ours, &name, &at7, at(0), Duration::ZERO);
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(expires, Some(at(43_200)));
        let (_, p) = problems_of(&ours, &name, &at7, at(43_200), Duration::ZERO);
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("expired"), "{p:?}");
        let (_, p) = problems_of(&ours, &name, &at7, at(0), Duration::from_secs(13 * 3600));
        assert!(p[0].contains("--min-remaining"), "{p:?}");
        let (_, p) = problems_of(
            &ours,
            &name,
            &Written::At("6".into()),
            at(0),
            Duration::ZERO,
        );
        assert!(p[0].contains("changed since"), "{p:?}");
        let (_, p) = problems_of(&ours, &name, &Written::Unknown, at(0), Duration::ZERO);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn an_rbac_refusal_says_where_to_grant_the_name() {
        let forbidden = |message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code: 403,
                reason: "Forbidden".into(),
                message: message.into(),
                ..Default::default()
            }))
        };
        let name = name_for(HOST);
        let rbac = forbidden(&format!("secrets \"{name}\" is forbidden: User \"system:serviceaccount:kube-system:ecr-refresh\" cannot get resource \"secrets\" in API group \"\" in the namespace \"argocd\""));
        let said = call_error(&rbac, "reading", "argocd", &name);
        assert!(
            said.contains(&format!("add {name} to the resourceNames of deploy/argocd's Role in argocd; with Helm, {HOST} to argocd.hosts")),
            "{said}"
        );
        // Admission's 403 is not RBAC's: no such hint.
        let policy = forbidden("secrets \"x\" is forbidden: ValidatingAdmissionPolicy 'ecr-refresh-secrets' denied request");
        assert!(!call_error(&policy, "writing", "argocd", &name).contains("resourceNames"));
    }

    #[test]
    fn the_ledger_key_cannot_be_a_secret_name() {
        let key = ledger_key("argocd");
        assert!(crate::k8s_grammar::validate_dns_subdomain(&key).is_err());
        assert_eq!(host_of(&name_for(HOST)), HOST);
    }
}
