//! The optional born-linked MutatingAdmissionPolicy (deploy/born-linked): whether it is
//! installed, for `status` and `prune --uninstall`. Read-only; the tool never writes it.
//!
//! The policy adds our entry to each `default` ServiceAccount as it is created, and records it
//! in the `ecr-refresh/linked` annotation as `sync` would: `sync` then finds it linked and writes
//! nothing, and `prune` treats the entry as ours.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject};
use serde::Serialize;

use crate::cluster::{explain, is_status, Cluster};
use crate::serviceaccount::ServiceAccounts;

/// The name of the policy and of its binding in deploy/born-linked/policy.yaml.
pub(crate) const POLICY_NAME: &str = "ecr-refresh-born-linked";
const GROUP: &str = "admissionregistration.k8s.io";
const VERSION: &str = "v1";

/// How to take the policy out, for the uninstall warning.
pub(crate) const REMOVE_HINT: &str =
    "kubectl delete mutatingadmissionpolicybinding,mutatingadmissionpolicy ecr-refresh-born-linked";

/// Whether the policy is installed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub(crate) enum PolicyState {
    /// The policy and its binding are there: new `default` ServiceAccounts are born linked.
    Installed,
    /// The policy is there but not bound, so it does nothing.
    Unbound,
    NotInstalled,
    /// The cluster has no admissionregistration.k8s.io/v1 MutatingAdmissionPolicy (before 1.36).
    NotServed,
    /// It could not be read, and why.
    Unknown(String),
}

impl std::fmt::Display for PolicyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyState::Installed => write!(f, "installed"),
            PolicyState::Unbound => write!(
                f,
                "installed but not bound (no MutatingAdmissionPolicyBinding {POLICY_NAME}), so it does nothing"
            ),
            PolicyState::NotInstalled => write!(f, "not installed"),
            PolicyState::NotServed => write!(
                f,
                "not available: this cluster does not serve {GROUP}/{VERSION} MutatingAdmissionPolicy (Kubernetes 1.36+)"
            ),
            PolicyState::Unknown(why) => write!(f, "unknown: {why}"),
        }
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Reads the policy and its binding (two GETs; `get` on them is granted by
/// deploy/born-linked/status-rbac.yaml). A 404 is told apart by discovery: no such object, or
/// no such API on this cluster.
pub(crate) async fn state(cluster: &Cluster) -> PolicyState {
    let client = cluster.client();
    let read = |kind: &'static str, plural: &'static str| {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource(kind, plural));
        async move {
            cluster
                .call("get born-linked policy", || {
                    api.get_metadata_opt(POLICY_NAME)
                })
                .await
        }
    };
    let policy = read("MutatingAdmissionPolicy", "mutatingadmissionpolicies").await;
    let bound = match policy {
        Ok(Some(_)) => {
            read(
                "MutatingAdmissionPolicyBinding",
                "mutatingadmissionpolicybindings",
            )
            .await
        }
        Ok(None) => return not_found(cluster).await,
        Err(e) => return unreadable(&e),
    };
    match bound {
        Ok(Some(_)) => PolicyState::Installed,
        Ok(None) => PolicyState::Unbound,
        Err(e) => unreadable(&e),
    }
}

fn unreadable(e: &kube::Error) -> PolicyState {
    if is_status(e, |s| s.is_forbidden()) {
        PolicyState::Unknown(format!(
            "not allowed to read it (deploy/born-linked/status-rbac.yaml grants `get` on it): {}",
            explain(e)
        ))
    } else {
        PolicyState::Unknown(explain(e))
    }
}

/// The object is missing, or the whole resource is: discovery says which.
async fn not_found(cluster: &Cluster) -> PolicyState {
    let (client, group) = (cluster.client(), format!("{GROUP}/{VERSION}"));
    let served = cluster
        .call("discover admission policies", || {
            client.list_api_group_resources(&group)
        })
        .await;
    match served {
        Ok(list)
            if list
                .resources
                .iter()
                .any(|r| r.kind == "MutatingAdmissionPolicy") =>
        {
            PolicyState::NotInstalled
        }
        Ok(_) => PolicyState::NotServed,
        Err(e) if is_status(&e, |s| s.is_not_found()) => PolicyState::NotServed,
        Err(e) => PolicyState::Unknown(explain(&e)),
    }
}

/// What `prune --uninstall` says about a policy that may still link new ServiceAccounts.
pub(crate) fn uninstall_warning(state: &PolicyState, secret: &str) -> Option<String> {
    match state {
        PolicyState::Installed => Some(format!(
            "the born-linked policy {POLICY_NAME} is still installed: every new namespace's default ServiceAccount will still list {secret}; remove it too: {REMOVE_HINT} (or kubectl delete -k with deploy/born-linked)"
        )),
        PolicyState::Unknown(why) => Some(format!(
            "could not check whether the born-linked policy {POLICY_NAME} is installed ({why}); if you installed deploy/born-linked, remove it too: {REMOVE_HINT}"
        )),
        PolicyState::Unbound | PolicyState::NotInstalled | PolicyState::NotServed => None,
    }
}

/// Which ServiceAccounts the installed policy links at creation: what its parameters (the
/// settings ConfigMap) say, read as policy.yaml reads them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Coverage {
    /// Every ServiceAccount (`ECR_REFRESH_ALL_SERVICE_ACCOUNTS: "true"`).
    pub(crate) all: bool,
    /// Otherwise these (`ECR_REFRESH_SERVICE_ACCOUNT`, else `default`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) service_accounts: Vec<String>,
    /// Whether this run links the same ones (--service-account, --all-service-accounts).
    pub(crate) matches_sync: bool,
}

impl Coverage {
    /// As policy.yaml's variables `all` and `names` read the ConfigMap's data.
    pub(crate) fn of(data: Option<&BTreeMap<String, String>>, links: &ServiceAccounts) -> Self {
        let get = |k: &str| data.and_then(|d| d.get(k));
        let all =
            get("ECR_REFRESH_ALL_SERVICE_ACCOUNTS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let mut names: Vec<String> = match get("ECR_REFRESH_SERVICE_ACCOUNT") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from)
                .collect(),
            None => vec!["default".into()],
        };
        names.sort();
        names.dedup();
        let matches_sync = match links {
            ServiceAccounts::All => all,
            ServiceAccounts::Named(linked) => {
                let mut linked = linked.clone();
                linked.sort();
                linked.dedup();
                !all && linked == names
            }
        };
        Self {
            all,
            service_accounts: if all { Vec::new() } else { names },
            matches_sync,
        }
    }

    /// What the policy links, in words: `builder, default`, or `every ServiceAccount`.
    pub(crate) fn links(&self) -> String {
        say(self.all, &self.service_accounts)
    }

    /// What `status` says when the two disagree.
    pub(crate) fn mismatch(&self, links: &ServiceAccounts) -> Option<String> {
        if self.matches_sync {
            return None;
        }
        let synced = match links {
            ServiceAccounts::All => say(true, &[]),
            ServiceAccounts::Named(n) => say(false, n),
        };
        Some(format!(
            "the born-linked policy links {} at creation, but sync links {synced}: set ECR_REFRESH_SERVICE_ACCOUNT (or ECR_REFRESH_ALL_SERVICE_ACCOUNTS: \"true\") in the settings ConfigMap to what the CronJob links, so both agree",
            self.links()
        ))
    }
}

/// ServiceAccounts in words, for `status`.
fn say(all: bool, names: &[String]) -> String {
    if all {
        "every ServiceAccount".to_string()
    } else {
        names.join(", ")
    }
}

/// Reads the installed policy's parameters: its binding's `paramRef`, then that ConfigMap.
pub(crate) async fn coverage(
    cluster: &Cluster,
    links: &ServiceAccounts,
) -> Result<Coverage, String> {
    let bindings: Api<DynamicObject> = Api::all_with(
        cluster.client(),
        &resource(
            "MutatingAdmissionPolicyBinding",
            "mutatingadmissionpolicybindings",
        ),
    );
    let binding = cluster
        .call("get born-linked policy binding", || {
            bindings.get(POLICY_NAME)
        })
        .await
        .map_err(|e| format!("reading the binding {POLICY_NAME}: {}", explain(&e)))?;
    let param = &binding.data["spec"]["paramRef"];
    let (Some(name), Some(ns)) = (param["name"].as_str(), param["namespace"].as_str()) else {
        return Ok(Coverage::of(None, links));
    };
    let api: Api<ConfigMap> = Api::namespaced(cluster.client(), ns);
    match cluster.call("get settings ConfigMap", || api.get_opt(name)).await {
        Ok(cm) => Ok(Coverage::of(cm.as_ref().and_then(|c| c.data.as_ref()), links)),
        Err(e) if is_status(&e, |s| s.is_forbidden()) => Err(format!(
            "not allowed to read its parameters, the ConfigMap {ns}/{name} (deploy/born-linked/status-rbac.yaml grants `get` on it): {}",
            explain(&e)
        )),
        Err(e) => Err(format!("reading its parameters, the ConfigMap {ns}/{name}: {}", explain(&e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage_reads_the_settings_as_the_policy_does_and_compares_with_sync() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let named = |n: &[&str]| ServiceAccounts::Named(n.iter().map(|s| s.to_string()).collect());
        let c = Coverage::of(None, &named(&["default"]));
        assert_eq!(
            (c.all, c.service_accounts.clone(), c.matches_sync),
            (false, vec!["default".into()], true)
        );
        assert!(c.mismatch(&named(&["default"])).is_none());
        let two = data(&[("ECR_REFRESH_SERVICE_ACCOUNT", " default, builder ,")]);
        let c = Coverage::of(Some(&two), &named(&["builder", "default"]));
        assert_eq!(c.service_accounts, ["builder", "default"]);
        assert!(c.matches_sync);
        let c = Coverage::of(Some(&two), &named(&["default"]));
        let why = c.mismatch(&named(&["default"])).unwrap();
        assert!(
            why.contains("links builder, default at creation, but sync links default"),
            "{why}"
        );
        let all = data(&[("ECR_REFRESH_ALL_SERVICE_ACCOUNTS", "True")]);
        assert!(Coverage::of(Some(&all), &ServiceAccounts::All).matches_sync);
        let c = Coverage::of(Some(&all), &named(&["default"]));
        assert!(c
            .mismatch(&named(&["default"]))
            .unwrap()
            .contains("every ServiceAccount at creation"));
        assert!(!Coverage::of(Some(&two), &ServiceAccounts::All).matches_sync);
    }

    #[test]
    fn uninstall_warns_while_the_policy_may_still_link() {
        let warn = |s: PolicyState| uninstall_warning(&s, "awsecr-cred");
        let installed = warn(PolicyState::Installed).unwrap();
        assert!(installed.contains("still installed"), "{installed}");
        assert!(installed.contains(REMOVE_HINT), "{installed}");
        let unknown = warn(PolicyState::Unknown("403 Forbidden".into())).unwrap();
        assert!(unknown.contains("could not check") && unknown.contains("403"));
        for quiet in [
            PolicyState::NotInstalled,
            PolicyState::NotServed,
            PolicyState::Unbound,
        ] {
            assert_eq!(warn(quiet.clone()), None, "{quiet:?}");
        }
    }

    #[test]
    fn the_state_serializes_with_its_reason() {
        assert_eq!(
            serde_json::to_value(PolicyState::Installed).unwrap(),
            serde_json::json!({"state": "installed"})
        );
        assert_eq!(
            serde_json::to_value(PolicyState::Unknown("x".into())).unwrap(),
            serde_json::json!({"state": "unknown", "reason": "x"})
        );
    }
}
