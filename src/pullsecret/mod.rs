//! The pull Secret, by concern: what we write ([`desired`]), how we judge what is there
//! ([`judge`]), and every API call on it ([`calls`]).

mod calls;
mod desired;
#[cfg(test)]
mod fixtures;
mod judge;
mod ledger;

use serde::Serialize;

pub(crate) use crate::ecr::token::{is_beyond_token_lifetime, MAX_TOKEN_LIFETIME};
use crate::error::Error;
pub(crate) use calls::{list_everywhere, Ensured, Secrets};
pub(crate) use desired::{Desired, LazyDesired};
pub(crate) use judge::{
    annotated_hosts, annotation, expiry, expiry_problem, hosts, is_ours, named_hosts, state,
    stray_keys, Expiry, Found, Policy, SecretStep, State, Wanted,
};
pub(crate) use ledger::{Ledger, LedgerError, Written, LEDGER_NAME};

pub(crate) const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Marks the Secrets this tool owns; a Secret without it is never touched unless `--force`.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY_VALUE: &str = "ecr-refresh";
/// When the token in the Secret expires (RFC 3339).
pub(crate) const EXPIRES_AT_ANNOTATION: &str = "ecr-refresh/expires-at";
/// The registry hosts the Secret covers, comma-separated.
pub(crate) const REGISTRIES_ANNOTATION: &str = "ecr-refresh/registries";
/// What the Secret was made from (region, registries, role): a Secret made from another
/// request is never considered fresh.
pub(crate) const REQUEST_ANNOTATION: &str = "ecr-refresh/request";

/// What happened to the Secret in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SecretOutcome {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

/// A call on the Secret, for messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Read,
    Write,
    Replace,
    Delete,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Read => "reading",
            Op::Write => "writing",
            Op::Replace => "replacing (wrong type)",
            Op::Delete => "deleting",
        })
    }
}

/// Why the Secret of one namespace was not made current. Messages name the object and say
/// what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// Not a failure: a terminating namespace refuses creates, and is skipped.
    #[error("namespace is terminating")]
    Terminating,
    #[error("namespace does not exist")]
    NamespaceNotFound,
    #[error("secret {secret} exists and is not managed by ecr-refresh (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); left unchanged (use --force to take it over)")]
    NotOurs { secret: String },
    #[error("secret {secret} exists with type {found:?}, not {SECRET_TYPE}; left unchanged (use --force to replace it)")]
    WrongType { secret: String, found: String },
    #[error("no ECR token, so nothing was written: {0}")]
    Token(Error),
    /// Not a failure: it changed since it was read, and is read again (see `ensure`).
    #[error("secret changed since it was read")]
    Changed,
    /// Refused or failed otherwise; a 403 says whether RBAC or a quota refused it.
    #[error("{op} secret {secret}: {message}")]
    Call {
        op: Op,
        secret: String,
        message: String,
    },
}
