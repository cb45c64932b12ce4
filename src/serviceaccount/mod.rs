//! Adding our Secret to a ServiceAccount's imagePullSecrets, and taking it out again.
//!
//! The list is atomic: server-side apply or a merge patch would replace it and lose other
//! people's entries, and an update sends the whole object, dropping any field this build does
//! not know. So: read, then send a JSON patch that touches only the list, guarded by a `test` of
//! the resourceVersion we read, and retry when someone else wrote in between. Nothing is
//! written when there is nothing to change.
//!
//! Which entries are ours is recorded on the ServiceAccount itself, in the annotation
//! [`LINKED_ANNOTATION`], changed in the same patch as the list: `prune` takes out only entries
//! recorded there (`--uninstall` takes out any entry naming our Secret). An entry someone added
//! by hand, or one linked by a version that kept no record, is theirs.

mod edit;
mod plan;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tracing::info;

use crate::cluster::{explain, explain_write, Cluster, Parts};
use edit::Edit;
use plan::{link_plan, unlink_plan};

/// The pull Secrets this tool linked in a ServiceAccount: their names, sorted, comma-separated.
pub(crate) const LINKED_ANNOTATION: &str = "ecr-refresh/linked";

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
pub(crate) enum ServiceAccountOutcome {
    Linked,
    AlreadyLinked,
    Unlinked,
    NotLinked,
    /// Listed, but not by us (added by hand, or before we kept a record): left in place.
    NotOurs,
    Missing,
    Failed,
}

/// What linking does about a ServiceAccount that is not there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IfMissing {
    /// Named by the user: wait this long for it to appear, then fail.
    Wait(Duration),
    /// Found by listing and gone since: report [`ServiceAccountOutcome::Missing`] at once, not a failure.
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
) -> Result<ServiceAccountOutcome, SaError> {
    let wait = match if_missing {
        IfMissing::Wait(wait) => wait,
        IfMissing::Report => Duration::ZERO,
    };
    let wait_until = Instant::now() + wait;
    let edit = Edit {
        cluster,
        ns,
        name,
        dry_run,
    };
    let result = edit
        .run(
            known,
            || Instant::now() < wait_until,
            |sa| link_plan(sa, secret),
        )
        .await;
    match (result, if_missing) {
        (Ok(change), _) => Ok(change),
        (Err(SaError::Missing { .. }), IfMissing::Report) => {
            info!(
                namespace = ns,
                service_account = name,
                "service account was deleted since it was listed"
            );
            Ok(ServiceAccountOutcome::Missing)
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

/// Which entries naming our Secret unlinking takes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unlink {
    /// Only an entry recorded as ours (the `ecr-refresh/linked` annotation).
    Recorded,
    /// Any entry naming it, recorded or not (`prune --uninstall`).
    Any,
}

/// Removes our `secret` entry from the list, keeping every other entry (with [`Unlink::Any`],
/// any entry naming it, recorded as ours or not). A missing ServiceAccount is fine.
pub(crate) async fn unlink(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    secret: &str,
    which: Unlink,
    dry_run: bool,
) -> Result<ServiceAccountOutcome, SaError> {
    let plan = |sa: &ServiceAccount| unlink_plan(sa, secret, which);
    let edit = Edit {
        cluster,
        ns,
        name,
        dry_run,
    };
    match edit.run(None, || false, plan).await {
        Err(SaError::Missing { .. }) => Ok(ServiceAccountOutcome::Missing),
        result => result,
    }
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

/// What linking needs of a listed ServiceAccount, and no more: there may be one per namespace
/// in the cluster, held for the whole pass.
#[derive(Clone, Debug)]
pub(crate) struct Listed {
    resource_version: Option<String>,
    image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// Whether it has annotations at all, and our record among them.
    has_annotations: bool,
    linked: Option<String>,
}

impl Listed {
    /// For `status`: whether it lists `secret`.
    pub(crate) fn link_state(&self, secret: &str) -> LinkState {
        if self
            .image_pull_secrets
            .iter()
            .flatten()
            .any(|r| r.name == secret)
        {
            LinkState::Linked
        } else {
            LinkState::Unlinked
        }
    }
}

impl From<Listed> for ServiceAccount {
    fn from(l: Listed) -> Self {
        let annotations = l.has_annotations.then(|| {
            l.linked
                .map(|v| (LINKED_ANNOTATION.to_string(), v))
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        });
        ServiceAccount {
            metadata: ObjectMeta {
                resource_version: l.resource_version,
                annotations,
                ..Default::default()
            },
            image_pull_secrets: l.image_pull_secrets,
            ..Default::default()
        }
    }
}

/// Every ServiceAccount called `name` in the namespaces `wanted` accepts, by namespace, from
/// one paged cluster-wide list (see [`Cluster::list_named`]).
pub(crate) async fn list_everywhere(
    cluster: &Cluster,
    name: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<HashMap<String, Listed>, kube::Error> {
    let mut found = HashMap::new();
    cluster
        .list_named(
            "list service accounts",
            name,
            Parts::Whole,
            |sa: ServiceAccount| {
                if let Some(ns) = sa.metadata.namespace.filter(|ns| wanted(ns)) {
                    let annotations = sa.metadata.annotations;
                    let listed = Listed {
                        resource_version: sa.metadata.resource_version,
                        image_pull_secrets: sa.image_pull_secrets,
                        has_annotations: annotations.is_some(),
                        linked: annotations.and_then(|mut a| a.remove(LINKED_ANNOTATION)),
                    };
                    found.insert(ns, listed);
                }
            },
        )
        .await?;
    Ok(found)
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
