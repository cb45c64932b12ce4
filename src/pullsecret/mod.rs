//! The pull Secret, by concern: what we write ([`desired`]), how we judge what is there
//! ([`judge`]), and every API call on it ([`calls`]).

mod calls;
mod desired;
#[cfg(test)]
mod fixtures;
mod judge;

pub(crate) use crate::ecr::token::{is_beyond_token_lifetime, MAX_TOKEN_LIFETIME};
pub(crate) use calls::{list_everywhere, Outcome, SecretError, Secrets};
pub(crate) use desired::LazyDesired;
pub(crate) use judge::{
    annotated_hosts, expiry, hosts, named_hosts, state, Expiry, Found, Policy, State,
};

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
