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

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{LocalObjectReference, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::Resource as _;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::{debug, info};

use crate::cluster::{explain, explain_write, is_status, Cluster, FIELD_MANAGER};

/// The pull Secrets this tool linked in a ServiceAccount: their names, sorted, comma-separated.
pub(crate) const LINKED_ANNOTATION: &str = "ecr-refresh/linked";
/// [`LINKED_ANNOTATION`] as a JSON pointer (`/` is written `~1`).
const LINKED_PATH: &str = "/metadata/annotations/ecr-refresh~1linked";

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

/// Removes our `secret` entry from the list, keeping every other entry; with `uninstall`, any
/// entry naming it, recorded as ours or not. A missing ServiceAccount is fine.
pub(crate) async fn unlink(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    secret: &str,
    uninstall: bool,
    dry_run: bool,
) -> Result<Change, SaError> {
    let plan = |sa: &ServiceAccount| unlink_plan(sa, secret, uninstall);
    match edit(cluster, ns, name, dry_run, None, || false, plan).await {
        Err(SaError::Missing { .. }) => Ok(Change::Missing),
        result => result,
    }
}

/// What linking `secret` takes: the patch operations (none: nothing to write) and what they
/// do. Appending the entry records it as ours in the same patch.
fn link_plan(sa: &ServiceAccount, secret: &str) -> (Vec<Value>, Change) {
    let refs = sa.image_pull_secrets.as_deref().unwrap_or_default();
    if refs.iter().any(|r| r.name == secret) {
        // Ours or someone else's: either way there is nothing to write, and nothing to claim.
        return (Vec::new(), Change::AlreadyLinked);
    }
    let mut ops = vec![if refs.is_empty() {
        // No list yet: create it.
        json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": secret}]})
    } else {
        json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": secret}})
    }];
    let mut ours = linked_by_us(sa);
    ours.push(secret.to_string());
    ops.extend(record_ops(sa, ours));
    (ops, Change::Linked)
}

/// What unlinking `secret` takes: [`link_plan`]'s counterpart. An entry not recorded as ours is
/// left alone unless `uninstall`; a record of ours without its entry is dropped.
fn unlink_plan(sa: &ServiceAccount, secret: &str, uninstall: bool) -> (Vec<Value>, Change) {
    let mut ours = linked_by_us(sa);
    let recorded = ours.iter().any(|n| n == secret);
    ours.retain(|n| n != secret);
    let record = record_ops(sa, ours);
    let ops = unlink_ops(sa.image_pull_secrets.as_deref(), secret);
    match (ops.is_empty(), recorded || uninstall) {
        (false, true) => ([ops, record].concat(), Change::Unlinked),
        (false, false) => (Vec::new(), Change::NotOurs),
        (true, _) => (record, Change::NotLinked),
    }
}

/// The Secrets [`LINKED_ANNOTATION`] records as linked by us.
fn linked_by_us(sa: &ServiceAccount) -> Vec<String> {
    let value = sa
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(LINKED_ANNOTATION));
    value
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// JSON patch operations that make [`LINKED_ANNOTATION`] record exactly `names`; none when it
/// already does. The `test` of the resourceVersion makes "no annotations yet" safe to act on.
fn record_ops(sa: &ServiceAccount, mut names: Vec<String>) -> Vec<Value> {
    names.sort();
    names.dedup();
    let annotations = sa.metadata.annotations.as_ref();
    let current = annotations.and_then(|a| a.get(LINKED_ANNOTATION));
    let value = names.join(",");
    match (current, annotations) {
        (Some(v), _) if *v == value => Vec::new(),
        (None, _) if names.is_empty() => Vec::new(),
        (Some(_), _) if names.is_empty() => vec![json!({"op": "remove", "path": LINKED_PATH})],
        (_, Some(_)) => vec![json!({"op": "add", "path": LINKED_PATH, "value": value})],
        (_, None) => vec![json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": {LINKED_ANNOTATION: value},
        })],
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

/// Read, patch, retry when it changed meanwhile. `plan` turns the ServiceAccount as read into
/// patch operations (none: nothing to write) and what they do, which is returned.
async fn edit(
    cluster: &Cluster,
    ns: &str,
    name: &str,
    dry_run: bool,
    mut known: Option<Listed>,
    keep_waiting: impl Fn() -> bool,
    plan: impl Fn(&ServiceAccount) -> (Vec<Value>, Change),
) -> Result<Change, SaError> {
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
    // What a patch whose answer was lost (then retried and refused) did, if it was applied:
    // finding nothing left to do afterwards means it was.
    let mut maybe_done: Option<Change> = None;
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
        let (changes, change) = plan(&sa);
        if changes.is_empty() {
            return Ok(maybe_done.unwrap_or(change));
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
        let sent = AtomicU32::new(0);
        let result = cluster
            .call("patch service account", || {
                sent.fetch_add(1, Ordering::Relaxed);
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
                return Ok(change);
            }
            // A failed `test` op is a 422 (not a 409), with no detail to tell it apart: so
            // re-read, and the resourceVersion says which it was.
            Err(e) if is_status(&e, |s| s.code == 422 || s.is_conflict()) => {
                if is_status(&e, |s| s.code == 422) {
                    refused = Some((rv, explain_write(&e)));
                }
                if sent.load(Ordering::Relaxed) > 1 {
                    maybe_done = Some(change);
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
        .list_named("list service accounts", name, |sa: ServiceAccount| {
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
        })
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

    fn sa(names: &[&str], annotations: Option<&[(&str, &str)]>) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                annotations: annotations.map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                ..Default::default()
            },
            image_pull_secrets: (!names.is_empty()).then(|| refs(names)),
            ..Default::default()
        }
    }

    #[test]
    fn link_appends_or_creates_the_list_and_records_it() {
        let (ops, change) = link_plan(&sa(&[], None), "ours");
        assert_eq!(change, Change::Linked);
        assert_eq!(
            ops,
            [
                json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": "ours"}]}),
                json!({"op": "add", "path": "/metadata/annotations", "value": {LINKED_ANNOTATION: "ours"}}),
            ]
        );
        // Other annotations stay: only our key is added, next to a record of another Secret.
        let (ops, _) = link_plan(
            &sa(&["theirs"], Some(&[("a", "b"), (LINKED_ANNOTATION, "zz")])),
            "ours",
        );
        assert_eq!(
            ops,
            [
                json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}}),
                json!({"op": "add", "path": LINKED_PATH, "value": "ours,zz"}),
            ]
        );
        // Listed already, by us or by hand: nothing to write, and not claimed.
        for annotations in [None, Some(&[(LINKED_ANNOTATION, "ours")][..])] {
            let (ops, change) = link_plan(&sa(&["theirs", "ours"], annotations), "ours");
            assert!(ops.is_empty());
            assert_eq!(change, Change::AlreadyLinked);
        }
    }

    #[test]
    fn unlink_takes_out_only_what_we_recorded_unless_uninstalling() {
        let ours = Some(&[(LINKED_ANNOTATION, "ours"), ("a", "b")][..]);
        let (ops, change) = unlink_plan(&sa(&["a", "ours"], ours), "ours", false);
        assert_eq!(change, Change::Unlinked);
        assert_eq!(
            ops,
            [
                json!({"op": "remove", "path": "/imagePullSecrets/1"}),
                json!({"op": "remove", "path": LINKED_PATH}),
            ]
        );
        // Added by hand (or by a version that kept no record): theirs.
        let by_hand = sa(&["ours"], Some(&[("a", "b")]));
        assert_eq!(
            unlink_plan(&by_hand, "ours", false),
            (vec![], Change::NotOurs)
        );
        let (ops, change) = unlink_plan(&by_hand, "ours", true);
        assert_eq!(change, Change::Unlinked);
        assert_eq!(ops, [json!({"op": "remove", "path": "/imagePullSecrets"})]);
        // A record without its entry is dropped; another Secret's record stays.
        let stale = sa(&["x"], Some(&[(LINKED_ANNOTATION, "other,ours")]));
        assert_eq!(
            unlink_plan(&stale, "ours", false),
            (
                vec![json!({"op": "add", "path": LINKED_PATH, "value": "other"})],
                Change::NotLinked
            )
        );
        assert_eq!(
            unlink_plan(&sa(&[], None), "ours", true),
            (vec![], Change::NotLinked)
        );
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
