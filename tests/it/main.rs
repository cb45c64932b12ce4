//! The integration tests, one binary (as ripgrep, fd and cargo do), so `common` compiles once.
//! A module per concern; most need the real kube-apiserver and moto that `scripts/test.sh`
//! starts. Tests that act cluster-wide take `suite::exclusive()`, every other test
//! `suite::shared()`: see common/suite.rs.

mod common;

mod admission_policy;
mod argocd;
mod born_linked;
mod cli;
mod completions;
mod credentials;
mod deploy;
mod events;
mod faults;
mod freshness;
mod hardening;
mod kubeconfig;
mod layering;
mod lost_answers;
mod multi_tenant;
mod oidc;
mod output;
mod ownership;
mod progress;
mod prune;
mod rbac;
mod registries;
mod requests;
mod selectors;
mod status;
mod stuck_pods;
mod sync;
mod tenant;
mod web_identity;
