//! What `status` finds wrong, in the words it reports.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use crate::ecr::is_registry_host;
use crate::pullsecret::{
    annotated_hosts, expiry_problem, hosts, named_hosts, stray_keys, State, Written, LEDGER_NAME,
    REGISTRIES_ANNOTATION, SECRET_TYPE,
};
use crate::report::NamespaceStatus;
use crate::serviceaccount::LinkState;
use crate::stuckpods::StuckPod;

/// What `status` finds wrong with one of our Secrets, and what it holds.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// The hosts the payload names.
    pub(super) registries: Vec<String>,
    pub(super) expires_at: Option<jiff::Timestamp>,
    pub(super) problems: Vec<String>,
}

/// Checks one of our Secrets: a complete docker config for ECR registries only, naming the
/// same hosts as its annotation, with a believable expiry at least `min_remaining` away.
pub(super) fn health(secret: &Secret, now: jiff::Timestamp, min_remaining: Duration) -> Health {
    let registries = named_hosts(secret);
    let mut problems = payload_problems(secret, &registries);
    let (expires_at, problem) = expiry_problem(secret, now, min_remaining);
    problems.extend(problem);
    Health {
        registries,
        expires_at,
        problems,
    }
}

fn payload_problems(secret: &Secret, named: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if hosts(secret).is_none() {
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
        .filter(|h| !is_registry_host(h))
        .map(String::as_str)
        .collect();
    if !foreign.is_empty() {
        problems.push(format!(
            "payload holds credentials for hosts that are not ECR registries: {}",
            foreign.join(", ")
        ));
    }
    let annotated = annotated_hosts(secret);
    if annotated != named {
        problems.push(format!(
            "payload registries ({}) differ from annotation {REGISTRIES_ANNOTATION} ({})",
            named.join(", "),
            annotated.join(", ")
        ));
    }
    problems
}

/// What the ledger and the data keys say is wrong with one of our Secrets: written by someone
/// else since our last write (whatever its managedFields claim), or holding keys besides ours.
pub(super) fn tamper_problems(secret: &Secret, written: &Written, ledger_ns: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let strays = stray_keys(secret);
    if !strays.is_empty() {
        problems.push(format!(
            "secret holds data keys ecr-refresh does not write ({}): the admission policy refuses its next write; `ecr-refresh sync` removes them",
            strays.join(", ")
        ));
    }
    let rv = secret.metadata.resource_version.as_deref().unwrap_or("");
    match written {
        Written::At(ours) if ours != rv => problems.push(format!(
            "secret was written by someone else since ecr-refresh last wrote it (resourceVersion {rv}, ecr-refresh's {ours} in {ledger_ns}/{LEDGER_NAME}); the next sync rewrites it"
        )),
        Written::Never => problems.push(format!(
            "secret is not recorded in {ledger_ns}/{LEDGER_NAME} as written by ecr-refresh (written by someone else, or before ecr-refresh kept that record); the next sync rewrites it"
        )),
        Written::At(_) | Written::Unknown => {}
    }
    problems
}

/// What is wrong with a Secret of our name that is not ours, or not there.
/// With --tenants: a Secret of ours written for another tenant than the one whose rule takes
/// the namespace now (its token pulls the other team's images); the next sync rewrites it.
pub(super) fn tenant_problem(secret: &Secret, tenant: Option<&str>) -> Option<String> {
    let written_for = secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::tenants::TENANT_ANNOTATION))
        .map(String::as_str);
    if written_for == tenant {
        return None;
    }
    let was = written_for.map_or("no tenant (one token for every namespace)".into(), |t| {
        format!("tenant {t}")
    });
    let now = tenant.map_or("no tenant".into(), |t| format!("tenant {t}"));
    Some(format!(
        "the Secret was written for {was}, but the namespace now belongs to {now}; the next sync rewrites it"
    ))
}

pub(super) fn state_problem(state: &State, name: &str) -> Option<String> {
    match state {
        State::Missing => Some(format!("secret {name} is missing")),
        State::Foreign => Some(format!("secret {name} is not managed by ecr-refresh")),
        State::WrongType(_) => Some(format!("secret {name} is not of type {SECRET_TYPE}")),
        State::Ours => None,
    }
}

/// What is wrong with a ServiceAccount that should reference the Secret `name`.
pub(super) fn account_problem(state: LinkState, sa: &str, name: &str) -> Option<String> {
    match state {
        LinkState::Unlinked => Some(format!("service account {sa} does not reference {name}")),
        LinkState::Missing => Some(format!("service account {sa} is missing")),
        LinkState::Linked | LinkState::Unknown => None,
    }
}

/// A pod stuck on a pull because its spec lacks the Secret `name`.
pub(super) fn stuck_pod(stuck: &StuckPod, name: &str) -> String {
    format!(
        "pod {} waits in {} on {}: its spec lacks {name}; {}",
        stuck.name, stuck.reason, stuck.image, stuck.why
    )
}

/// A namespace the run's deadline left unchecked.
pub(super) fn late(ns: &str, timeout: Duration) -> NamespaceStatus {
    NamespaceStatus {
        problems: vec![format!(
            "not checked before the run deadline (--timeout {})",
            humantime::format_duration(timeout)
        )],
        ..NamespaceStatus::new(ns)
    }
}

/// The pods could not be listed: a warning, not a namespace's problem.
pub(super) fn pods_unseen(e: &impl std::fmt::Display) -> String {
    format!("could not look at pods, so stuck pods are not reported: {e}")
}
