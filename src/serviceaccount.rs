//! Adding our Secret to a ServiceAccount's imagePullSecrets, and taking it out again.
//!
//! The list is atomic: server-side apply or a merge patch would replace it and lose other
//! people's entries, and an update sends the whole object, dropping any field this build does
//! not know. So: read, then send a JSON patch that touches only the list, guarded by a `test` of
//! the resourceVersion we read, and retry when someone else wrote in between. Nothing is
//! written when there is nothing to change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Resource as _;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::{debug, info};

use crate::cluster::{explain, explain_write, is_status, Cluster, FIELD_MANAGER};

const CONFLICT_RETRIES: u32 = 5;
const POLL: Duration = Duration::from_millis(500);
const JSON_PATCH: &str = "application/json-patch+json";

/// The Secret a command works on, and the ServiceAccounts that use it.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) secret_name: String,
    pub(crate) service_accounts: ServiceAccounts,
}

/// Which ServiceAccounts of a namespace use the Secret.
#[derive(Clone, Debug)]
pub(crate) enum ServiceAccounts {
    Named(Vec<String>),
    /// Every ServiceAccount in the namespace, listed at run time.
    All,
}

impl ServiceAccounts {
    pub(crate) async fn names(&self, cluster: &Cluster, ns: &str) -> Result<Vec<String>, SaError> {
        match self {
            ServiceAccounts::Named(names) => Ok(names.clone()),
            ServiceAccounts::All => list_names(cluster, ns).await,
        }
    }

    /// One that was listed and is gone by now is reported, not waited for.
    pub(crate) fn if_missing(&self, wait: Duration) -> IfMissing {
        match self {
            ServiceAccounts::All => IfMissing::Report,
            ServiceAccounts::Named(_) => IfMissing::Wait(wait),
        }
    }
}

/// What happened to a ServiceAccount's imagePullSecrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Change {
    Linked,
    AlreadyLinked,
    Unlinked,
    NotLinked,
    Missing,
    Failed,
}

/// What linking does about a ServiceAccount that is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IfMissing {
    /// Named by the user: wait this long for it to appear, then fail.
    Wait(Duration),
    /// Found by listing and gone since: report [`Change::Missing`] at once, not a failure.
    Report,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum SaError {
    #[error("service account {service_account} not found after waiting {waited}; create it, or choose others with --service-account")]
    Missing {
        service_account: String,
        waited: String,
    },
    #[error("reading service account {service_account}: {message}")]
    Get {
        service_account: String,
        message: String,
    },
    #[error("updating service account {service_account}: {message}")]
    Update {
        service_account: String,
        message: String,
    },
    #[error("listing service accounts: {message} (--all-service-accounts needs `list` on serviceaccounts)")]
    List { message: String },
}

/// Adds `secret` to the list, keeping every other entry. `known` is the ServiceAccount as
/// already read (by [`list_everywhere`]): then no read is needed unless the patch conflicts.
pub(crate) async fn link(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    secret: &str,
    if_missing: IfMissing,
    dry_run: bool,
    known: Option<Listed>,
) -> Result<Change, SaError> {
    let wait = match if_missing {
        IfMissing::Wait(wait) => wait,
        IfMissing::Report => Duration::ZERO,
    };
    let wait_until = Instant::now() + wait;
    let result = edit(
        cluster,
        ns,
        name,
        dry_run,
        known,
        || Instant::now() < wait_until,
        |refs| link_ops(refs, secret),
    )
    .await;
    match (result, if_missing) {
        (Ok(true), _) => Ok(Change::Linked),
        (Ok(false), _) => Ok(Change::AlreadyLinked),
        (Err(SaError::Missing { .. }), IfMissing::Report) => {
            info!(
                namespace = ns,
                service_account = name,
                "service account was deleted since it was listed"
            );
            Ok(Change::Missing)
        }
        (
            Err(SaError::Missing {
                service_account, ..
            }),
            IfMissing::Wait(_),
        ) => Err(SaError::Missing {
            service_account,
            waited: humantime::format_duration(wait).to_string(),
        }),
        (Err(e), _) => Err(e),
    }
}

/// Removes `secret` from the list, keeping every other entry. A missing ServiceAccount is fine.
pub(crate) async fn unlink(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    secret: &str,
    dry_run: bool,
) -> Result<Change, SaError> {
    match edit(
        cluster,
        ns,
        name,
        dry_run,
        None,
        || false,
        |refs| unlink_ops(refs, secret),
    )
    .await
    {
        Ok(true) => Ok(Change::Unlinked),
        Ok(false) => Ok(Change::NotLinked),
        Err(SaError::Missing { .. }) => Ok(Change::Missing),
        Err(e) => Err(e),
    }
}

/// JSON patch operations that append `secret`; none when it is already listed.
fn link_ops(refs: Option<&[LocalObjectReference]>, secret: &str) -> Vec<Value> {
    match refs {
        Some(refs) if refs.iter().any(|r| r.name == secret) => Vec::new(),
        Some(refs) if !refs.is_empty() => {
            vec![json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret}})]
        }
        // No list yet: create it.
        _ => vec![json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret}]})],
    }
}

/// JSON patch operations that remove every `secret` entry, by index from the back so earlier
/// removals do not shift later ones; none when it is not listed.
fn unlink_ops(refs: Option<&[LocalObjectReference]>, secret: &str) -> Vec<Value> {
    let refs = refs.unwrap_or_default();
    let ours: Vec<usize> = (0..refs.len())
        .filter(|&i| refs[i].name == secret)
        .collect();
    if !ours.is_empty() && ours.len() == refs.len() {
        // Leave no empty list behind, as an update of a None field would not.
        return vec![json!({"op": "remove", "path": "/imagePullSecrets"})];
    }
    ours.iter()
        .rev()
        .map(|i| json!({"op": "remove", "path": format!("/imagePullSecrets/{i}")}))
        .collect()
}

/// Read, patch the list, retry when it changed meanwhile. `ops` turns the list as read into
/// patch operations (none: nothing to do); the result says whether anything was written.
async fn edit(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    dry_run: bool,
    mut known: Option<Listed>,
    keep_waiting: impl Fn() -> bool,
    ops: impl Fn(Option<&[LocalObjectReference]>) -> Vec<Value>,
) -> Result<bool, SaError> {
    let client = cluster.client();
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let url = ServiceAccount::url_path(&(), Some(ns));
    let pp = PatchParams {
        dry_run,
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    // The resourceVersion of a read whose patch got a 422, and the server's words: if a re-read
    // shows it unchanged, the 422 was not our test op failing but a real refusal.
    let mut refused: Option<(String, String)> = None;
    for attempt in 1..=CONFLICT_RETRIES {
        let sa = if let Some(listed) = known.take() {
            ServiceAccount::from(listed)
        } else {
            loop {
                match get(cluster, &api, name).await? {
                    Some(sa) => break sa,
                    None if keep_waiting() => {
                        debug!(
                            namespace = ns,
                            service_account = name,
                            "waiting for service account"
                        );
                        tokio::time::sleep(POLL).await;
                    }
                    None => {
                        return Err(SaError::Missing {
                            service_account: name.to_string(),
                            waited: String::new(),
                        })
                    }
                }
            }
        };
        let rv = sa.metadata.resource_version.clone().unwrap_or_default();
        let changes = ops(sa.image_pull_secrets.as_deref());
        if changes.is_empty() {
            return Ok(false);
        }
        if let Some((refused_rv, message)) = refused.take() {
            if refused_rv == rv {
                return Err(SaError::Update {
                    service_account: name.to_string(),
                    message,
                });
            }
        }
        let mut patch =
            vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})];
        patch.extend(changes);
        let result = cluster
            .call("patch service account", || {
                let request = kube::core::Request::new(url.clone())
                    // Serialized as the bare document; the content type is set below.
                    .patch(name, &pp, &Patch::Merge(&patch))
                    .map(|mut r| {
                        r.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(JSON_PATCH),
                        );
                        r
                    });
                let client = client.clone();
                async move {
                    client
                        .request::<ServiceAccount>(request.map_err(kube::Error::BuildRequest)?)
                        .await
                }
            })
            .await;
        match result {
            Ok(_) => {
                info!(
                    namespace = ns,
                    service_account = name,
                    dry_run,
                    "updated imagePullSecrets"
                );
                return Ok(true);
            }
            // A failed `test` op is a 422 (not a 409), with no detail to tell it apart: so
            // re-read, and the resourceVersion says which it was.
            Err(e) if is_status(&e, |s| s.code == 422 || s.is_conflict()) => {
                if is_status(&e, |s| s.code == 422) {
                    refused = Some((rv, explain_write(&e)));
                }
                debug!(
                    namespace = ns,
                    service_account = name,
                    attempt,
                    "service account changed meanwhile; re-reading"
                );
            }
            Err(e) if is_status(&e, |s| s.is_not_found()) => {
                return Err(SaError::Missing {
                    service_account: name.to_string(),
                    waited: String::new(),
                })
            }
            Err(e) => {
                return Err(SaError::Update {
                    service_account: name.to_string(),
                    message: explain_write(&e),
                })
            }
        }
    }
    Err(SaError::Update {
        service_account: name.to_string(),
        message: format!("it kept changing under us ({CONFLICT_RETRIES} conflicts in a row); the next run will retry"),
    })
}

async fn get(
    cluster: &Cluster,
    api: &Api<ServiceAccount>,
    name: &str,
) -> Result<Option<ServiceAccount>, SaError> {
    cluster
        .call("get service account", || api.get_opt(name))
        .await
        .map_err(|e| SaError::Get {
            service_account: name.to_string(),
            message: explain_write(&e),
        })
}

/// For `status`: whether the ServiceAccount lists `secret`.
pub(crate) async fn link_state(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    secret: &str,
) -> Result<LinkState, SaError> {
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client(), ns);
    Ok(match get(cluster, &api, name).await? {
        None => LinkState::Missing,
        Some(sa)
            if sa
                .image_pull_secrets
                .iter()
                .flatten()
                .any(|r| r.name == secret) =>
        {
            LinkState::Linked
        }
        Some(_) => LinkState::Unlinked,
    })
}

/// How a ServiceAccount stands, for `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LinkState {
    Linked,
    Unlinked,
    Missing,
    /// It could not be read.
    Unknown,
}

/// Page size of [`list_everywhere`]: about 0.5 MB a page.
const LIST_PAGE: u32 = 500;

/// What linking needs of a listed ServiceAccount, and no more: there may be one per namespace
/// in the cluster, held for the whole pass.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    resource_version: Option<String>,
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
}

impl From<Listed> for ServiceAccount {
    fn from(l: Listed) -> Self {
        ServiceAccount {
            metadata: ObjectMeta {
                resource_version: l.resource_version,
                ..Default::default()
            },
            image_pull_secrets: l.image_pull_secrets,
            ..Default::default()
        }
    }
}

/// Every ServiceAccount called `name` in the namespaces `wanted` accepts, by namespace: one
/// paged cluster-wide list (a field selector on the name) instead of a read per namespace.
/// RBAC can allow it for that name only (`list` with `resourceNames`).
pub(crate) async fn list_everywhere(
    cluster: &Cluster,
    name: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Listed>, kube::Error> {
    let api: Api<ServiceAccount> = Api::all(cluster.client());
    let mut lp = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .limit(LIST_PAGE);
    let mut found = HashMap::new();
    loop {
        let page = cluster
            .call("list service accounts", || api.list(&lp))
            .await?;
        for sa in page.items {
            let Some(ns) = sa.metadata.namespace.filter(|ns| wanted(ns)) else {
                continue;
            };
            let listed = Listed {
                resource_version: sa.metadata.resource_version,
                image_pull_secrets: sa.image_pull_secrets,
            };
            found.insert(ns, listed);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp.continue_token = Some(token),
            _ => return Ok(found),
        }
    }
}

/// Names of every ServiceAccount in a namespace (for --all-service-accounts).
pub(crate) async fn list_names(cluster: &Cluster, ns: &str) -> Result<Vec<String>, SaError> {
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client(), ns);
    let lp = ListParams::default();
    let list = cluster
        .call("list service accounts", || api.list_metadata(&lp))
        .await
        .map_err(|e| SaError::List {
            message: explain(&e),
        })?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|sa| sa.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(names: &[&str]) -> Vec<LocalObjectReference> {
        names
            .iter()
            .map(|n| LocalObjectReference {
                name: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn link_appends_or_creates_the_list_and_never_replaces_it() {
        assert_eq!(
            link_ops(None, "ours"),
            [json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ours"}]})]
        );
        assert_eq!(
            link_ops(Some(&refs(&["theirs"])), "ours"),
            [json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}})]
        );
        assert!(link_ops(Some(&refs(&["theirs", "ours"])), "ours").is_empty());
    }

    #[test]
    fn unlink_removes_only_our_entries_from_the_back() {
        assert_eq!(
            unlink_ops(Some(&refs(&["ours", "a", "ours", "b"])), "ours"),
            [
                json!({"op": "remove", "path": "/imagePullSecrets/2"}),
                json!({"op": "remove", "path": "/imagePullSecrets/0"}),
            ]
        );
        assert_eq!(
            unlink_ops(Some(&refs(&["ours"])), "ours"),
            [json!({"op": "remove", "path": "/imagePullSecrets"})]
        );
        assert!(unlink_ops(Some(&refs(&["a"])), "ours").is_empty());
        assert!(unlink_ops(None, "ours").is_empty());
    }
}
