//! Pods stuck on a pull because they were admitted before their ServiceAccount listed our
//! Secret: a pod's imagePullSecrets are copied from its ServiceAccount when it is created, so
//! such a pod never gets the Secret and waits in ImagePullBackOff until it is replaced.
//!
//! `status` names them; `sync --delete-stuck-pods` deletes exactly those a controller will
//! recreate with the Secret, and never a Job's (the Job controller counts a deleted pod as a
//! failed attempt). Both need `list` on pods (and the flag `delete`), which only the optional
//! deploy/stuck-pods-rbac.yaml grants; deploy/stuck-pods-policy.yaml holds the deletes to the
//! same rules.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use serde::Serialize;

use crate::cluster::{explain, explain_write, is_status, Cluster};

/// The waiting reasons of a container whose image cannot be pulled.
const PULL_FAILURES: [&str; 2] = ["ErrImagePull", "ImagePullBackOff"];

/// Controllers that recreate a deleted pod from their template, by API group and kind. Not a
/// Job: its controller counts a deleted pod that had not succeeded as a failed attempt against
/// backoffLimit (with 0, one deletion fails the Job). deploy/stuck-pods-policy.yaml lists the
/// same kinds.
const CONTROLLERS: [(&str, &str); 3] = [
    ("apps", "ReplicaSet"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
];

/// Where to get the permissions, for every refusal.
pub(crate) const RBAC_HINT: &str =
    "apply deploy/stuck-pods-rbac.yaml, which grants `list` and `delete` on pods";

const LIST_PAGE: u32 = 500;

/// A pod waiting on a pull whose spec lacks our Secret: what deciding about it needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) name: String,
    uid: String,
    /// The version listed: the delete is refused once the pod has changed (started, say).
    resource_version: String,
    service_account: String,
    /// The spec lists imagePullSecrets of its own: a replacement would not get the
    /// ServiceAccount's list either.
    own_pull_secrets: bool,
    /// The controlling owner, as `group/Kind name`.
    controller: Option<(String, String, String)>,
    /// (image, waiting reason) of each container that cannot pull.
    waiting: Vec<(String, String)>,
}

/// A pending pod that waits on a pull and lacks `secret`; `None` for every other pod.
pub(crate) fn candidate(pod: Pod, secret: &str) -> Option<Candidate> {
    let meta = pod.metadata;
    if meta.deletion_timestamp.is_some() {
        return None;
    }
    let spec = pod.spec?;
    let refs = spec.image_pull_secrets.unwrap_or_default();
    if refs.iter().any(|r| r.name == secret) {
        return None;
    }
    let status = pod.status?;
    let statuses = status.init_container_statuses.into_iter().flatten();
    let waiting: Vec<(String, String)> = statuses
        .chain(status.container_statuses.into_iter().flatten())
        .filter_map(|c| {
            let reason = c.state?.waiting?.reason?;
            PULL_FAILURES
                .contains(&reason.as_str())
                .then_some((c.image, reason))
        })
        .collect();
    if waiting.is_empty() {
        return None;
    }
    let controller = meta
        .owner_references
        .into_iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| {
            let group = o.api_version.split_once('/').map_or("", |(g, _)| g);
            (group.to_string(), o.kind, o.name)
        });
    Some(Candidate {
        name: meta.name?,
        uid: meta.uid?,
        resource_version: meta.resource_version?,
        service_account: spec
            .service_account_name
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        own_pull_secrets: !refs.is_empty(),
        controller,
        waiting,
    })
}

/// The registry host of an image reference (`docker.io` when it names none).
fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// One stuck pod of a namespace, as reported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct StuckPod {
    pub(crate) name: String,
    pub(crate) image: String,
    /// ErrImagePull or ImagePullBackOff.
    pub(crate) reason: String,
    /// What happened to it (`deleted`, or `left` by `sync`; `stuck` in `status`).
    pub(crate) action: PodAction,
    /// Why it is stuck and what fixes it, or why it was left alone.
    pub(crate) why: String,
    /// For its Event (see `events`).
    #[serde(skip)]
    pub(crate) uid: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PodAction {
    Stuck,
    Deleted,
    Left,
}

impl Candidate {
    /// The first container that cannot pull an image from one of `hosts` (our Secret's).
    fn stuck_on(&self, hosts: &[String]) -> Option<&(String, String)> {
        self.waiting
            .iter()
            .find(|(image, _)| hosts.iter().any(|h| h == registry_host(image)))
    }

    /// Whether deleting it gives a replacement that gets `secret`, or why not. `linked`: the
    /// pod's ServiceAccount lists the Secret now.
    pub(crate) fn verdict(&self, secret: &str, linked: bool) -> Result<String, String> {
        let Some((group, kind, owner)) = &self.controller else {
            return Err("it has no controller to recreate it: delete and recreate it yourself, after its ServiceAccount lists the Secret".into());
        };
        if (group.as_str(), kind.as_str()) == ("batch", "Job") {
            return Err(format!("its controller Job {owner} would count a deleted pod as a failed attempt (backoffLimit), so it is not deleted: delete Job {owner} and create it again (a CronJob's next Job gets the Secret by itself)"));
        }
        if !CONTROLLERS.contains(&(group.as_str(), kind.as_str())) {
            return Err(format!("its controller {kind} {owner} is not a ReplicaSet, StatefulSet or DaemonSet, so it is not deleted: recreate it yourself"));
        }
        if self.own_pull_secrets {
            return Err(format!("it lists imagePullSecrets of its own, so a replacement would not get the ServiceAccount's either: add {secret} to its {kind}'s pod template"));
        }
        if !linked {
            return Err(format!("its ServiceAccount {} does not list {secret}, so a replacement would not get it either (link it: --service-account {})", self.service_account, self.service_account));
        }
        Ok(format!("created before its ServiceAccount {} listed {secret}; deleting it lets {kind} {owner} create one that gets it", self.service_account))
    }

    /// The report of a pod stuck on one of `hosts`, or `None` when no image needs our Secret.
    pub(crate) fn report(&self, secret: &str, hosts: &[String], linked: bool) -> Option<StuckPod> {
        let (image, reason) = self.stuck_on(hosts)?;
        let (action, why) = match self.verdict(secret, linked) {
            Ok(why) | Err(why) => (PodAction::Stuck, why),
        };
        Some(StuckPod {
            name: self.name.clone(),
            image: image.clone(),
            reason: reason.clone(),
            action,
            why,
            uid: self.uid.clone(),
        })
    }

    pub(crate) fn service_account(&self) -> &str {
        &self.service_account
    }
}

/// Candidates by namespace, of the namespaces `wanted` accepts.
pub(crate) type ByNamespace = HashMap<String, Vec<Candidate>>;

/// Every pending pod that waits on a pull without `secret`: one paged cluster-wide list of
/// pending pods. Where that is refused and the namespaces are named (`literal`), one list each.
pub(crate) async fn find(
    cluster: &Cluster,
    secret: &str,
    literal: Option<&[String]>,
    wanted: impl Fn(&str) -> bool,
) -> Result<ByNamespace, String> {
    let all = list(cluster, Api::all(cluster.client()), secret).await;
    let err = match all {
        Ok(found) => {
            let mut by_ns = ByNamespace::new();
            for (ns, c) in found.into_iter().filter(|(ns, _)| wanted(ns)) {
                by_ns.entry(ns).or_default().push(c);
            }
            return Ok(by_ns);
        }
        Err(e) => e,
    };
    let Some(names) = literal.filter(|_| is_status(&err, |s| s.is_forbidden())) else {
        return Err(refusal(&err));
    };
    let mut by_ns = ByNamespace::new();
    for ns in names {
        let api = Api::namespaced(cluster.client(), ns);
        let found = list(cluster, api, secret).await.map_err(|e| refusal(&e))?;
        by_ns.insert(ns.clone(), found.into_iter().map(|(_, c)| c).collect());
    }
    Ok(by_ns)
}

fn refusal(e: &kube::Error) -> String {
    if is_status(e, |s| s.is_forbidden()) {
        format!("{} ({RBAC_HINT})", explain(e))
    } else {
        explain(e)
    }
}

async fn list(
    cluster: &Cluster,
    api: Api<Pod>,
    secret: &str,
) -> Result<Vec<(String, Candidate)>, kube::Error> {
    let mut lp = ListParams::default()
        .fields("status.phase=Pending")
        .limit(LIST_PAGE);
    let mut found = Vec::new();
    loop {
        let page = cluster.call("list pods", || api.list(&lp)).await?;
        for pod in page.items {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            found.extend(candidate(pod, secret).map(|c| (ns, c)));
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp.continue_token = Some(token),
            _ => return Ok(found),
        }
    }
}

/// What became of a stuck pod `sync` set out to delete.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Deletion {
    Deleted,
    /// Not deleted: another pod of that name since it was listed, or the same pod changed so
    /// that it is no longer one to delete. Why, for the report.
    Spared(String),
}

/// Deletes the pod only if it is still exactly the one that was judged: the uid and
/// resourceVersion preconditions make the server refuse it once the pod was replaced (a
/// StatefulSet's, under the same name) or changed (it started running). On such a refusal the
/// pod is listed again and judged again; if it still qualifies, one more delete with the new
/// version. Gone already counts as done.
pub(crate) async fn delete(
    cluster: &Cluster,
    ns: &str,
    judged: &Candidate,
    ours: &Ours<'_>,
    dry_run: bool,
) -> Result<Deletion, String> {
    let api: Api<Pod> = Api::namespaced(cluster.client(), ns);
    let mut pod = judged.clone();
    for _ in 0..2 {
        let dp = DeleteParams {
            dry_run,
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: Some(pod.resource_version.clone()),
            }),
            ..Default::default()
        };
        match cluster
            .call("delete pod", || api.delete(&pod.name, &dp))
            .await
        {
            Ok(_) => return Ok(Deletion::Deleted),
            Err(e) if is_status(&e, |s| s.is_not_found()) => return Ok(Deletion::Deleted),
            // A precondition failed: look again.
            Err(e) if is_status(&e, |s| s.is_conflict()) => {}
            Err(e) if is_status(&e, |s| s.is_forbidden()) => {
                return Err(format!(
                    "deleting stuck pod {}: {} ({RBAC_HINT})",
                    pod.name,
                    explain(&e)
                ))
            }
            Err(e) => {
                return Err(format!(
                    "deleting stuck pod {}: {}",
                    pod.name,
                    explain_write(&e)
                ))
            }
        }
        let lp = ListParams::default().fields(&format!("metadata.name={}", pod.name));
        let now = cluster
            .call("list pods", || api.list(&lp))
            .await
            .map_err(|e| format!("listing stuck pod {} again: {}", pod.name, refusal(&e)))?
            .items
            .into_iter()
            .next();
        let Some(now) = now else {
            return Ok(Deletion::Deleted);
        };
        if now.metadata.uid.as_deref() != Some(&pod.uid) {
            return Ok(Deletion::Spared("replaced by another pod of that name since it was listed (uid precondition); not deleted".into()));
        }
        let still = candidate(now, ours.secret).filter(|c| {
            c.stuck_on(ours.hosts).is_some() && c.verdict(ours.secret, ours.linked).is_ok()
        });
        let Some(still) = still else {
            return Ok(Deletion::Spared("changed since it was listed and no longer waits on a pull it can be healed of (resourceVersion precondition); not deleted".into()));
        };
        pod = still;
    }
    Ok(Deletion::Spared(
        "changed twice while being deleted (resourceVersion precondition); not deleted: the next pass looks again".into(),
    ))
}

/// What a pod is judged against: our Secret's name and hosts, and whether the pod's
/// ServiceAccount lists the Secret now.
pub(crate) struct Ours<'a> {
    pub(crate) secret: &'a str,
    pub(crate) hosts: &'a [String],
    pub(crate) linked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    /// A pending pod whose first container waits with `reason` on `image`.
    fn pod(image: &str, reason: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-1", "uid": "u-1", "resourceVersion": "7", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "rs", "controller": true}
            ]},
            "spec": {"containers": [{"name": "app", "image": image}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
                "state": {"waiting": {"reason": reason}}
            }]}
        }))
        .unwrap()
    }

    fn with(mut p: Pod, edit: impl FnOnce(&mut Pod)) -> Pod {
        edit(&mut p);
        p
    }

    fn image() -> String {
        format!("{ECR}/team/app:1")
    }

    #[test]
    fn only_pods_waiting_on_a_pull_without_our_secret_are_candidates() {
        let c = candidate(pod(&image(), "ImagePullBackOff"), "awsecr-cred").unwrap();
        assert_eq!(c.name, "web-1");
        assert_eq!(c.service_account, "default");
        assert!(candidate(pod(&image(), "ErrImagePull"), "awsecr-cred").is_some());
        assert!(candidate(pod(&image(), "ContainerCreating"), "awsecr-cred").is_none());
        let has_ours = with(pod(&image(), "ErrImagePull"), |p| {
            p.spec.as_mut().unwrap().image_pull_secrets =
                Some(vec![k8s_openapi::api::core::v1::LocalObjectReference {
                    name: "awsecr-cred".into(),
                }]);
        });
        assert!(candidate(has_ours, "awsecr-cred").is_none());
        let deleting = with(pod(&image(), "ErrImagePull"), |p| {
            p.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        });
        assert!(candidate(deleting, "awsecr-cred").is_none());
    }

    #[test]
    fn a_pod_is_stuck_only_on_a_host_our_secret_covers() {
        let hosts = [ECR.to_string()];
        for (image, covered) in [
            (image(), true),
            ("docker.io/library/nginx:1".into(), false),
            ("nginx".into(), false),
            (
                "999999999999.dkr.ecr.us-east-1.amazonaws.com/x:1".into(),
                false,
            ),
        ] {
            let c = candidate(pod(&image, "ErrImagePull"), "awsecr-cred").unwrap();
            assert_eq!(
                c.report("awsecr-cred", &hosts, true).is_some(),
                covered,
                "{image}"
            );
        }
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert_eq!(registry_host("127.0.0.1:5000/x"), "127.0.0.1:5000");
        assert_eq!(registry_host("team/app"), "docker.io");
    }

    #[test]
    fn only_a_controlled_pod_without_own_secrets_whose_account_links_ours_is_deleted() {
        let secret = "awsecr-cred";
        let base = candidate(pod(&image(), "ImagePullBackOff"), secret).unwrap();
        assert!(base.verdict(secret, true).is_ok());
        for (group, kind) in CONTROLLERS {
            let mut c = base.clone();
            c.controller = Some((group.into(), kind.into(), "x".into()));
            assert!(c.verdict(secret, true).is_ok(), "{kind}");
        }
        let bare = Candidate {
            controller: None,
            ..base.clone()
        };
        assert!(bare
            .verdict(secret, true)
            .unwrap_err()
            .contains("no controller"));
        // Its controller would count the deleted pod as a failed attempt.
        let job = Candidate {
            controller: Some(("batch".into(), "Job".into(), "migrate".into())),
            ..base.clone()
        };
        let why = job.verdict(secret, true).unwrap_err();
        assert!(
            why.contains("Job migrate would count a deleted pod as a failed attempt"),
            "{why}"
        );
        let other_owner = Candidate {
            controller: Some(("example.com".into(), "Rollout".into(), "r".into())),
            ..base.clone()
        };
        assert!(other_owner.verdict(secret, true).is_err());
        let own = Candidate {
            own_pull_secrets: true,
            ..base.clone()
        };
        assert!(own
            .verdict(secret, true)
            .unwrap_err()
            .contains("of its own"));
        assert!(base
            .verdict(secret, false)
            .unwrap_err()
            .contains("does not list"));
    }

    #[test]
    fn a_controller_is_the_owner_marked_controller() {
        let p = with(pod(&image(), "ErrImagePull"), |p| {
            let owners = p.metadata.owner_references.as_mut().unwrap();
            owners[0].controller = None;
        });
        let c = candidate(p, "awsecr-cred").unwrap();
        assert_eq!(c.controller, None);
        let sa = with(pod(&image(), "ErrImagePull"), |p| {
            p.spec.as_mut().unwrap().service_account_name = Some("builder".into());
        });
        assert_eq!(
            candidate(sa, "awsecr-cred").unwrap().service_account,
            "builder"
        );
    }
}
