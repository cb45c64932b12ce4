//! Adding our Secret to a ServiceAccount's imagePullSecrets, and taking it out again.
//!
//! The list is atomic: server-side apply or a merge patch would replace it and lose other
//! people's entries. So: read, change, update with the resourceVersion we read, and retry on a
//! conflict. Nothing is written when there is nothing to change.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde::Serialize;
use tracing::{debug, info};

use crate::cluster::{explain, explain_write, is_status, Cluster};
use crate::FIELD_MANAGER;

const CONFLICT_RETRIES: u32 = 5;
const POLL: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Linked,
    AlreadyLinked,
    Unlinked,
    NotLinked,
    Missing,
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum SaError {
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

/// Adds `secret` to the list, keeping every other entry. Waits up to `wait` for a
/// ServiceAccount that does not exist yet. `known` is the ServiceAccount as already read (by
/// [`list_everywhere`]): then no read is needed unless the update conflicts.
pub async fn link(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    secret: &str,
    wait: Duration,
    dry_run: bool,
    known: Option<ServiceAccount>,
) -> Result<Change, SaError> {
    let wait_until = Instant::now() + wait;
    edit(
        cluster,
        ns,
        name,
        dry_run,
        known,
        || Instant::now() < wait_until,
        |refs| {
            if refs.iter().any(|r| r.name == secret) {
                return false;
            }
            refs.push(LocalObjectReference {
                name: secret.to_string(),
            });
            true
        },
    )
    .await
    .map(|changed| {
        if changed {
            Change::Linked
        } else {
            Change::AlreadyLinked
        }
    })
    .map_err(|e| match e {
        SaError::Missing {
            service_account, ..
        } => SaError::Missing {
            service_account,
            waited: humantime::format_duration(wait).to_string(),
        },
        other => other,
    })
}

/// Removes `secret` from the list, keeping every other entry. A missing ServiceAccount is fine.
pub async fn unlink(
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
        |refs| {
            let before = refs.len();
            refs.retain(|r| r.name != secret);
            refs.len() != before
        },
    )
    .await
    {
        Ok(true) => Ok(Change::Unlinked),
        Ok(false) => Ok(Change::NotLinked),
        Err(SaError::Missing { .. }) => Ok(Change::Missing),
        Err(e) => Err(e),
    }
}

/// Read-modify-update with conflict retries. `change` edits the list and says whether it did;
/// so does the result.
async fn edit(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    dry_run: bool,
    mut known: Option<ServiceAccount>,
    keep_waiting: impl Fn() -> bool,
    change: impl Fn(&mut Vec<LocalObjectReference>) -> bool,
) -> Result<bool, SaError> {
    let api: Api<ServiceAccount> = Api::namespaced(cluster.client(), ns);
    for attempt in 1..=CONFLICT_RETRIES {
        let mut sa = if let Some(sa) = known.take() {
            sa
        } else {
            loop {
                match cluster
                    .call("get service account", || api.get_opt(name))
                    .await
                {
                    Ok(Some(sa)) => break sa,
                    Ok(None) if keep_waiting() => {
                        debug!(
                            namespace = ns,
                            service_account = name,
                            "waiting for service account"
                        );
                        tokio::time::sleep(POLL).await;
                    }
                    Ok(None) => {
                        return Err(SaError::Missing {
                            service_account: name.to_string(),
                            waited: String::new(),
                        })
                    }
                    Err(e) => {
                        return Err(SaError::Get {
                            service_account: name.to_string(),
                            message: explain_write(&e),
                        })
                    }
                }
            }
        };
        let mut refs = sa.image_pull_secrets.take().unwrap_or_default();
        if !change(&mut refs) {
            return Ok(false);
        }
        sa.image_pull_secrets = (!refs.is_empty()).then_some(refs);
        let pp = PostParams {
            dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
        };
        match cluster
            .call("update service account", || api.replace(name, &pp, &sa))
            .await
        {
            Ok(_) => {
                info!(
                    namespace = ns,
                    service_account = name,
                    dry_run,
                    "updated imagePullSecrets"
                );
                return Ok(true);
            }
            Err(e) if is_status(&e, |s| s.is_conflict()) => {
                debug!(
                    namespace = ns,
                    service_account = name,
                    attempt,
                    "service account changed meanwhile; re-reading"
                );
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

/// Page size of [`list_everywhere`]: about 0.5 MB a page.
const LIST_PAGE: u32 = 500;

/// Every ServiceAccount called `name` in the namespaces `wanted` accepts, by namespace: one
/// paged cluster-wide list (a field selector on the name) instead of a read per namespace.
/// RBAC can allow it for that name only (`list` with `resourceNames`).
pub async fn list_everywhere(
    cluster: &Cluster,
    name: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, ServiceAccount>, kube::Error> {
    let api: Api<ServiceAccount> = Api::all(cluster.client());
    let mut lp = ListParams::default()
        .fields(&format!("metadata.name={name}"))
        .limit(LIST_PAGE);
    let mut found = HashMap::new();
    loop {
        let page = cluster
            .call("list service accounts", || api.list(&lp))
            .await?;
        for mut sa in page.items {
            let Some(ns) = sa.metadata.namespace.clone().filter(|ns| wanted(ns)) else {
                continue;
            };
            // Not needed to update it (the server keeps them when omitted); saves memory.
            sa.metadata.managed_fields = None;
            found.insert(ns, sa);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp.continue_token = Some(token),
            _ => return Ok(found),
        }
    }
}

/// Names of every ServiceAccount in a namespace (for --all-service-accounts).
pub async fn list_names(cluster: &Cluster, ns: &str) -> Result<Vec<String>, SaError> {
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
