//! Stuck pods on the real apiserver: pods admitted before their ServiceAccount listed the
//! Secret, their status set as a kubelet would report a failed pull (no kubelet runs here; the
//! real pull is in scripts/e2e.sh). `status` names them, `sync --delete-stuck-pods` deletes
//! only the one a controller recreates with the Secret, and without deploy/stuck-pods-rbac.yaml
//! the CronJob's identity can neither look at pods nor delete them.

use crate::common;

use common::fault::Fault;
use common::install::*;
use common::proxy::FaultProxy;
use common::*;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;

pub(crate) const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1";

/// A ReplicaSet object to own pods (no controller runs here, so it makes none itself).
async fn replica_set(client: &Client, ns: &str) -> ReplicaSet {
    let rs: ReplicaSet = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]}}}
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &rs)
        .await
        .expect("create replicaset")
}

/// The controller owner reference to an object of this apiVersion and kind.
fn controller_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> serde_json::Value {
    serde_json::json!({"apiVersion": api_version, "kind": kind, "controller": true,
        "name": meta.name, "uid": meta.uid})
}

/// A pod created now (so it copies the ServiceAccount's imagePullSecrets as they are now),
/// then given the status a kubelet reports when the pull fails with `reason`.
pub(crate) async fn pod(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    owner: Option<&ReplicaSet>,
    own_secrets: &[&str],
    reason: &str,
) {
    let owner = owner.map(|rs| controller_ref("apps/v1", "ReplicaSet", &rs.metadata));
    owned_pod(client, ns, name, image, owner, own_secrets, reason).await;
}

/// [`pod`], owned by whatever `owner` (a controller reference) names.
async fn owned_pod(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    owner: Option<serde_json::Value>,
    own_secrets: &[&str],
    reason: &str,
) {
    let owners: Vec<_> = owner.into_iter().collect();
    let secrets: Vec<_> = own_secrets
        .iter()
        .map(|s| serde_json::json!({"name": s}))
        .collect();
    let mut spec = serde_json::json!({"automountServiceAccountToken": false,
        "containers": [{"name": "app", "image": image}]});
    if !secrets.is_empty() {
        spec["imagePullSecrets"] = secrets.into();
    }
    let p: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": owners},
        "spec": spec
    }))
    .unwrap();
    Api::<Pod>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &p)
        .await
        .expect("create pod");
    set_waiting(client, ns, name, image, reason).await;
}

/// The status a kubelet reports while the pull of `image` fails with `reason`.
async fn set_waiting(client: &Client, ns: &str, name: &str, image: &str, reason: &str) {
    let status = serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [{
        "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": "401 Unauthorized"}}}]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("set pod status");
}

/// The status a kubelet reports once the pull worked and the container runs.
async fn set_running(client: &Client, ns: &str, name: &str) {
    let status = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [{
        "name": "app", "image": IMAGE, "imageID": "sha256:1", "ready": true, "restartCount": 0,
        "started": true, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}});
    Api::<Pod>::namespaced(client.clone(), ns)
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("set pod status");
}

/// A pod of `rs`, stuck in ImagePullBackOff on our registry.
async fn replica(client: &Client, ns: &str, rs: &ReplicaSet, name: &str) {
    pod(client, ns, name, IMAGE, Some(rs), &[], "ImagePullBackOff").await;
}

async fn pod_names(client: &Client, ns: &str) -> Vec<String> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap();
    let mut names: Vec<String> = pods
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

/// The stuck pods of namespace `ns` in a report, by name: (action, why).
fn stuck(report: &serde_json::Value, ns: &str) -> Vec<(String, String, String)> {
    let entry = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == ns)
        .unwrap_or_else(|| panic!("{ns} not in {report:#}"));
    let mut pods: Vec<_> = entry["stuck_pods"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["action"].as_str().unwrap().to_string(),
                p["why"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    pods.sort();
    pods
}

/// Five pods of `ns` created before its ServiceAccount lists the Secret, so none gets it:
/// stuck on our registry with a controller (web-1), without one (bare), with pull secrets of
/// its own (own); stuck on another registry (elsewhere); and not stuck yet (starting).
async fn five_pods(client: &kube::Client, ns: &str) {
    let rs = replica_set(client, ns).await;
    pod(
        client,
        ns,
        "web-1",
        IMAGE,
        Some(&rs),
        &[],
        "ImagePullBackOff",
    )
    .await;
    pod(client, ns, "bare", IMAGE, None, &[], "ErrImagePull").await;
    pod(
        client,
        ns,
        "own",
        IMAGE,
        Some(&rs),
        &["theirs"],
        "ImagePullBackOff",
    )
    .await;
    let other = "docker.io/library/nginx:1";
    pod(
        client,
        ns,
        "elsewhere",
        other,
        Some(&rs),
        &[],
        "ImagePullBackOff",
    )
    .await;
    pod(
        client,
        ns,
        "starting",
        IMAGE,
        Some(&rs),
        &[],
        "ContainerCreating",
    )
    .await;
}

#[tokio::test]
async fn status_names_stuck_pods_and_the_flag_deletes_only_the_healable_one() {
    let _suite = suite::shared().await;
    let (client, _, [ns, untouched]) = TestNs::group("stuck", ["a", "b"]).await;
    five_pods(&client, &ns).await;
    Run::sync().args(["-n", &ns]).run().assert_code(0);

    // status names the three pods stuck on our registry, each with why and what fixes it.
    let out = Run::bare().args(["status", "-n", &ns, "-o", "json"]).run();
    out.assert_code(1);
    let report = out.json();
    let pods = stuck(&report, &ns);
    let names: Vec<&str> = pods.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["bare", "own", "web-1"], "{report:#}");
    assert!(pods[0].2.contains("no controller"), "{pods:?}");
    assert!(
        pods[1].2.contains("imagePullSecrets of its own"),
        "{pods:?}"
    );
    assert!(pods[2].2.contains("ReplicaSet web"), "{pods:?}");
    Run::bare()
        .args(["status", "-n", &ns])
        .run()
        .assert_stdout_contains("pod web-1 waits in ImagePullBackOff on 123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1: its spec lacks awsecr-cred");

    // The CronJob's identity without deploy/stuck-pods-rbac.yaml: status says it could not
    // look, the flag fails before writing anything, and pods cannot be listed or deleted.
    let sa = unique("stuck-sa");
    apply_renamed(&repo_file("deploy/rbac.yaml"), &sa, &[]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &sa);
    let as_cronjob = |args: &[&str]| Run::bare().env("KUBECONFIG", &kubeconfig).args(args).run();
    let report = as_cronjob(&["status", "-n", &ns, "-o", "json"]).json();
    assert!(stuck(&report, &ns).is_empty(), "{report:#}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("could not look at pods") && warnings.contains("stuck-pods-rbac.yaml"),
        "{warnings}"
    );
    let out = as_cronjob(&[
        "sync",
        "--delete-stuck-pods",
        "-n",
        &format!("{ns},{untouched}"),
    ]);
    out.assert_code(4);
    out.assert_stderr_contains("--delete-stuck-pods: cannot list pods");
    out.assert_stderr_contains("stuck-pods-rbac.yaml");
    assert!(
        get_secret(&client, &untouched, "awsecr-cred")
            .await
            .is_none(),
        "nothing written"
    );
    for verb in [["get", "pods"], ["delete", "pod/bare"]] {
        let tried = std::process::Command::new("kubectl")
            .args(["--kubeconfig", kubeconfig.to_str().unwrap(), "-n", &ns])
            .args(verb)
            .output()
            .unwrap();
        assert!(!tried.status.success(), "{verb:?} must be refused");
        assert!(String::from_utf8_lossy(&tried.stderr).contains("forbidden"));
    }

    // With it: exactly the pod its ReplicaSet recreates with the Secret is deleted.
    apply_renamed(
        &repo_file("deploy/stuck-pods-rbac.yaml"),
        &sa,
        &[(
            "name: ecr-refresh-stuck-pods\n",
            &format!("name: {sa}-pods\n"),
        )],
    );
    let out = as_cronjob(&["sync", "--delete-stuck-pods", "--dry-run", "-n", &ns]);
    out.assert_code(0)
        .assert_stdout_contains("would delete stuck pod");
    assert_eq!(
        pod_names(&client, &ns).await.len(),
        5,
        "a dry run deletes nothing"
    );
    let out = as_cronjob(&["sync", "--delete-stuck-pods", "-n", &ns, "-o", "json"]);
    out.assert_code(0);
    let pods = stuck(&out.json(), &ns);
    let actions: Vec<(&str, &str)> = pods.iter().map(|p| (p.0.as_str(), p.1.as_str())).collect();
    assert_eq!(
        actions,
        [("bare", "left"), ("own", "left"), ("web-1", "deleted")]
    );
    assert_eq!(
        pod_names(&client, &ns).await,
        ["bare", "elsewhere", "own", "starting"]
    );
    let _ = try_kubectl(
        &[
            "delete",
            "clusterrolebinding,clusterrole",
            &format!("{sa}-pods"),
        ],
        None,
    );
}

/// The delete carries the uid of the pod that was looked at: a pod recreated under the same name
/// in between (as a StatefulSet does) is refused by the server and left alone.
#[tokio::test]
async fn a_pod_recreated_under_the_same_name_is_not_deleted() {
    let _suite = suite::shared().await;
    let (client, _, [ns]) = TestNs::group("stuck-uid", ["a"]).await;
    let rs = replica_set(&client, &ns).await;
    replica(&client, &ns, &rs, "web-0").await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let first = pods.get("web-0").await.unwrap().metadata.uid.unwrap();
    let (race_ns, race_rs) = (ns.clone(), rs.clone());
    let delete = Fault::on("DELETE", format!("/api/v1/namespaces/{ns}/pods/web-0"));
    let race = delete.first(1).then(move |_| {
        let (ns, rs) = (race_ns.clone(), race_rs.clone());
        Fault::before(|racer| async move {
            let api = Api::<Pod>::namespaced(racer.clone(), &ns);
            api.delete("web-0", &DeleteParams::default().grace_period(0))
                .await
                .unwrap();
            replica(&racer, &ns, &rs, "web-0").await;
        })
    });
    let proxy = FaultProxy::start(race).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["--delete-stuck-pods", "-n", &ns, "-o", "json"])
        .run();
    out.assert_code(0);
    let pods_reported = stuck(&out.json(), &ns);
    assert_eq!(pods_reported.len(), 1, "{pods_reported:?}");
    assert_eq!(pods_reported[0].1, "left");
    assert!(
        pods_reported[0].2.contains("uid precondition"),
        "{pods_reported:?}"
    );
    let delete = proxy
        .sent()
        .into_iter()
        .find(|s| s.method == "DELETE")
        .unwrap();
    assert!(
        delete.body.contains(&first),
        "the delete names the uid it saw: {}",
        delete.body
    );
    let now = pods.get("web-0").await.unwrap().metadata.uid.unwrap();
    assert_ne!(now, first, "the recreated pod is still there");
}

/// The uids of a namespace's pods by name, and whether any is being deleted.
async fn pod_uids(client: &Client, ns: &str) -> Vec<(String, String, bool)> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let mut uids: Vec<_> = pods
        .items
        .into_iter()
        .map(|p| {
            let m = p.metadata;
            (
                m.name.unwrap(),
                m.uid.unwrap(),
                m.deletion_timestamp.is_some(),
            )
        })
        .collect();
    uids.sort();
    uids
}

/// A Job of `parallelism` pods of the private image (`backoff_limit`: the default, 6, if none).
async fn job(
    client: &Client,
    ns: &str,
    name: &str,
    parallelism: i32,
    backoff_limit: Option<i32>,
) -> Job {
    let mut spec = serde_json::json!({"parallelism": parallelism, "completions": parallelism,
        "template": {"spec": {"restartPolicy": "Never", "automountServiceAccountToken": false,
            "containers": [{"name": "app", "image": IMAGE}]}}});
    if let Some(limit) = backoff_limit {
        spec["backoffLimit"] = limit.into();
    }
    let job: Job =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
            .unwrap();
    Api::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .expect("create job")
}

/// Whether the real Job controller runs beside this server (scripts/testenv.sh starts it with
/// the v1.36.3 kube-controller-manager). The 1.20.2 build has none: there the Jobs' pods are made
/// by hand and only what the tool does is checked; a newer server must have it.
async fn job_controller(client: &Client) -> bool {
    if std::env::var("ECR_REFRESH_TEST_JOB_CONTROLLER").as_deref() == Ok("1") {
        return true;
    }
    let minor: u32 = client
        .apiserver_version()
        .await
        .unwrap()
        .minor
        .trim_end_matches('+')
        .parse()
        .unwrap();
    assert!(
        minor < 30,
        "Kubernetes 1.{minor} has a kube-controller-manager beside it: scripts/testenv.sh starts its Job \
         controller and sets ECR_REFRESH_TEST_JOB_CONTROLLER=1 (here {:?})",
        std::env::var("ECR_REFRESH_TEST_JOB_CONTROLLER").ok()
    );
    eprintln!("Kubernetes 1.{minor}: no Job controller; the Jobs' pods are made by hand, the Jobs' status is not checked");
    false
}

/// The Job controller counts a deleted pod that had not succeeded as a
/// failed attempt, so deleting a Job's stuck pods failed the Job: with backoffLimit 0 at once,
/// and with 8 in parallel and the default backoffLimit (6) in one pass. A Job's pods are left,
/// and say what to do; with the real Job controller, neither Job fails or counts a failure.
#[tokio::test]
async fn healing_stuck_pods_never_fails_a_job() {
    let _suite = suite::shared().await;
    let (client, _, [ns]) = TestNs::group("stuck-job", ["a"]).await;
    let controller = job_controller(&client).await;
    let jobs = [("once", 1, Some(0)), ("wide", 8, None)];
    for (name, parallelism, limit) in jobs {
        let made = job(&client, &ns, name, parallelism, limit).await;
        if !controller {
            for i in 0..parallelism {
                let owner = controller_ref("batch/v1", "Job", &made.metadata);
                let pod_name = format!("{name}-{i}");
                owned_pod(
                    &client,
                    &ns,
                    &pod_name,
                    IMAGE,
                    Some(owner),
                    &[],
                    "ImagePullBackOff",
                )
                .await;
            }
        }
    }
    let api = Api::<Job>::namespaced(client.clone(), &ns);
    if controller {
        // The controller made the pods and counted them active: it is watching them.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut active = 0;
            for (name, ..) in jobs {
                active += api
                    .get(name)
                    .await
                    .unwrap()
                    .status
                    .and_then(|s| s.active)
                    .unwrap_or(0);
            }
            if active == 9 && pod_uids(&client, &ns).await.len() == 9 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the Job controller did not start the 9 pods in 60s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for (name, ..) in pod_uids(&client, &ns).await {
            set_waiting(&client, &ns, &name, IMAGE, "ImagePullBackOff").await;
        }
    }
    let before = pod_uids(&client, &ns).await;
    assert_eq!(before.len(), 9, "{before:?}");

    let out = Run::sync()
        .args(["--delete-stuck-pods", "-n", &ns, "-o", "json"])
        .run();
    if controller {
        // The controller sees a deleted pod at once and counts it within a second: give it 5.
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            for (name, ..) in jobs {
                let status = api.get(name).await.unwrap().status.unwrap_or_default();
                let failed_condition = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Failed");
                assert!(
                    status.failed.unwrap_or(0) == 0 && failed_condition.is_none(),
                    "Job {name} after sync --delete-stuck-pods: failed {:?}, condition {failed_condition:?}",
                    status.failed
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    out.assert_code(0);
    assert_eq!(
        pod_uids(&client, &ns).await,
        before,
        "no pod of a Job is deleted"
    );
    let pods = stuck(&out.json(), &ns);
    assert_eq!(pods.len(), 9, "{pods:?}");
    for (name, action, why) in &pods {
        let job = name.split('-').next().unwrap();
        assert_eq!(action, "left", "{pods:?}");
        assert!(
            why.contains(&format!(
                "its controller Job {job} would count a deleted pod as a failed attempt"
            )),
            "{why}"
        );
    }
}

/// The delete carries the resourceVersion listed as well as the uid. A pod
/// that starts running between the list and the delete (here, just before the delete reaches the
/// server) is refused by the server, looked at again, and left.
#[tokio::test]
async fn a_pod_that_starts_running_after_the_list_is_not_deleted() {
    let _suite = suite::shared().await;
    let (client, _, [ns]) = TestNs::group("stuck-rv", ["a"]).await;
    let rs = replica_set(&client, &ns).await;
    replica(&client, &ns, &rs, "web-0").await;
    let before = pod_uids(&client, &ns).await;
    let race_ns = ns.clone();
    let delete = Fault::on("DELETE", format!("/api/v1/namespaces/{ns}/pods/web-0"));
    let race = delete.first(1).then(move |_| {
        let ns = race_ns.clone();
        Fault::before(|racer| async move { set_running(&racer, &ns, "web-0").await })
    });
    let proxy = FaultProxy::start(race).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["--delete-stuck-pods", "-n", &ns, "-o", "json"])
        .run();
    assert_eq!(
        pod_uids(&client, &ns).await,
        before,
        "the running pod is not deleted"
    );
    out.assert_code(0);
    let pods = stuck(&out.json(), &ns);
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].1, "left", "{pods:?}");
    assert!(
        pods[0].2.contains("resourceVersion precondition"),
        "{pods:?}"
    );
    let deletes = proxy
        .sent()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .count();
    assert_eq!(deletes, 1, "looked at again, it is not deleted");
}

/// A stuck pod whose status the kubelet rewrote between the list and the delete (ErrImagePull,
/// then ImagePullBackOff) fails the resourceVersion precondition, is looked at again, is still
/// stuck, and is deleted with its new version.
#[tokio::test]
async fn a_stuck_pod_changed_after_the_list_is_judged_again_and_deleted() {
    let _suite = suite::shared().await;
    let (client, _, [ns]) = TestNs::group("stuck-rv2", ["a"]).await;
    let rs = replica_set(&client, &ns).await;
    pod(&client, &ns, "web-0", IMAGE, Some(&rs), &[], "ErrImagePull").await;
    let race_ns = ns.clone();
    let delete = Fault::on("DELETE", format!("/api/v1/namespaces/{ns}/pods/web-0"));
    let race = delete.first(1).then(move |_| {
        let ns = race_ns.clone();
        Fault::before(|racer| async move {
            set_waiting(&racer, &ns, "web-0", IMAGE, "ImagePullBackOff").await
        })
    });
    let proxy = FaultProxy::start(race).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["--delete-stuck-pods", "-n", &ns, "-o", "json"])
        .run();
    out.assert_code(0);
    let pods = stuck(&out.json(), &ns);
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0].1, "deleted", "{pods:?}");
    assert!(pod_names(&client, &ns).await.is_empty());
    let deletes = proxy
        .sent()
        .into_iter()
        .filter(|s| s.method == "DELETE")
        .count();
    assert_eq!(
        deletes, 2,
        "the first delete was refused, the second carried the new version"
    );
}

// The messages of deploy/stuck-pods-policy.yaml.
const NOT_PENDING: &str = "ecr-refresh deletes only Pending pods";
const NOT_PULLING: &str = "with a container waiting in ErrImagePull or ImagePullBackOff";
const NOT_RECREATED: &str = "whose controller is a ReplicaSet, StatefulSet or DaemonSet";
const OWN_SECRETS: &str = "list no imagePullSecrets of their own";

/// Deleting pods that are not stuck, as the attacker: with deploy/stuck-pods-rbac.yaml and
/// deploy/stuck-pods-policy.yaml, the CronJob's ServiceAccount (its real token) cannot delete a
/// running pod with no controller, a pending pod that is not stuck on a pull, a Job's stuck pod or
/// one with imagePullSecrets of its own; `sync --delete-stuck-pods` still deletes the stuck pod.
/// On a server without admission policies (before 1.30) the file cannot be applied: RBAC alone
/// is what stuck-pods-rbac.yaml gives there (the tests above).
#[tokio::test]
async fn the_policy_holds_the_token_to_the_pods_sync_deletes() {
    let _suite = suite::shared().await;
    let client = admin().await;
    if !serves_admission_policies(&client).await {
        let minor: u32 = client
            .apiserver_version()
            .await
            .unwrap()
            .minor
            .trim_end_matches('+')
            .parse()
            .unwrap();
        assert!(
            minor < 30,
            "Kubernetes 1.{minor} must serve ValidatingAdmissionPolicies"
        );
        eprintln!("Kubernetes 1.{minor}: no admission policies; deploy/stuck-pods-policy.yaml needs 1.30+");
        return;
    }
    let (client, _, [ns]) = TestNs::group("stuck-policy", ["a"]).await;
    let rs = replica_set(&client, &ns).await;
    replica(&client, &ns, &rs, "web-1").await;
    owned_pod(
        &client,
        &ns,
        "db",
        "docker.io/library/postgres:16",
        None,
        &[],
        "ContainerCreating",
    )
    .await;
    set_running(&client, &ns, "db").await;
    pod(
        &client,
        &ns,
        "starting",
        IMAGE,
        Some(&rs),
        &[],
        "ContainerCreating",
    )
    .await;
    pod(
        &client,
        &ns,
        "own",
        IMAGE,
        Some(&rs),
        &["theirs"],
        "ImagePullBackOff",
    )
    .await;
    // A Job that does not exist: a real one's controller would make pods of its own.
    let job = ObjectMeta {
        name: Some("migrate".into()),
        uid: Some("6f1c2f4e-0000-4000-8000-000000000001".into()),
        ..Default::default()
    };
    owned_pod(
        &client,
        &ns,
        "batch",
        IMAGE,
        Some(controller_ref("batch/v1", "Job", &job)),
        &[],
        "ErrImagePull",
    )
    .await;

    let id = unique("stuck-policy");
    let mut objects = render_deploy(&[]);
    objects.extend(repo_yaml("deploy/stuck-pods-rbac.yaml"));
    objects.extend(repo_yaml("deploy/stuck-pods-policy.yaml"));
    apply_objects_renamed(&objects, &id);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &id);
    let token = Api::<Pod>::namespaced(client_for(&kubeconfig).await, &ns);

    // The server loads a new policy within seconds: probe with a dry run until it refuses.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dry = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    while token.delete("db", &dry).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the policy did not refuse a dry-run delete in 30s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for (name, message) in [
        ("db", NOT_PENDING),
        ("starting", NOT_PULLING),
        ("batch", NOT_RECREATED),
        ("own", OWN_SECRETS),
    ] {
        let refused = token.delete(name, &DeleteParams::default()).await;
        let Err(kube::Error::Api(status)) = &refused else {
            panic!("deleting {name} as the CronJob's token must be refused: {refused:?}");
        };
        assert_eq!(status.code, 403, "{status:?}");
        assert!(
            status
                .message
                .contains(&format!("ValidatingAdmissionPolicy '{id}-stuck-pods'"))
                && status.message.contains(message),
            "{name}: {}",
            status.message
        );
    }
    assert_eq!(
        pod_names(&client, &ns).await,
        ["batch", "db", "own", "starting", "web-1"]
    );

    let out = Run::bare()
        .env("KUBECONFIG", &kubeconfig)
        .args(["sync", "--delete-stuck-pods", "-n", &ns, "-o", "json"])
        .run();
    out.assert_code(0);
    let pods = stuck(&out.json(), &ns);
    let actions: Vec<(&str, &str)> = pods.iter().map(|p| (p.0.as_str(), p.1.as_str())).collect();
    assert_eq!(
        actions,
        [("batch", "left"), ("own", "left"), ("web-1", "deleted")]
    );
    assert_eq!(
        pod_names(&client, &ns).await,
        ["batch", "db", "own", "starting"]
    );
}
