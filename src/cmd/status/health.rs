//! What `status` finds wrong, in the words it reports.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;

use crate::ecr::is_registry_host;
use crate::pullsecret::{
    annotated_hosts, expiry, hosts, is_beyond_token_lifetime, named_hosts, Expiry,
    EXPIRES_AT_ANNOTATION, REGISTRIES_ANNOTATION,
};

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
    let mut expires_at = None;
    match expiry(secret) {
        Expiry::Missing => problems.push("secret has no expiry annotation".into()),
        Expiry::Garbage(v) => problems.push(format!(
            "annotation {EXPIRES_AT_ANNOTATION} is {v:?}, not an RFC 3339 timestamp"
        )),
        Expiry::At(t) if is_beyond_token_lifetime(t, now) => {
            expires_at = Some(t);
            problems.push(format!(
                "annotation {EXPIRES_AT_ANNOTATION} says {t}, further out than an ECR token lasts (12h)"
            ));
        }
        Expiry::At(t) => {
            expires_at = Some(t);
            let left = t.as_second() - now.as_second();
            if left <= 0 {
                problems.push(format!("token expired at {t}"));
            } else if (left as u64) < min_remaining.as_secs() {
                problems.push(format!(
                    "token expires in {}, sooner than --min-remaining {}",
                    humantime::format_duration(Duration::from_secs(left as u64)),
                    humantime::format_duration(min_remaining)
                ));
            }
        }
    }
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
