//! Stuck pods on the real apiserver: pods admitted before their ServiceAccount listed the
//! Secret, their status set as a kubelet would report a failed pull (no kubelet runs here; the
//! real pull is in scripts/e2e.sh). `status` names them, `sync --delete-stuck-pods` deletes
//! only the one a controller recreates with the Secret, and without deploy/stuck-pods-rbac.yaml
//! the CronJob's identity can neither look at pods nor delete them.

pub mod common;

use common::fault::Fault;
use common::install::*;
use common::proxy::FaultProxy;
use common::*;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::Client;

const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app:1";

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

/// A pod created now (so it copies the ServiceAccount's imagePullSecrets as they are now),
/// then given the status a kubelet reports when the pull fails with `reason`.
async fn pod(
    client: &Client,
    ns: &str,
    name: &str,
    image: &str,
    owner: Option<&ReplicaSet>,
    own_secrets: &[&str],
    reason: &str,
) {
    let owners: Vec<_> = owner
        .map(|rs| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "controller": true,
                "name": rs.metadata.name, "uid": rs.metadata.uid})
        })
        .into_iter()
        .collect();
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
    let status = serde_json::json!({"status": {"phase": "Pending", "containerStatuses": [{
        "name": "app", "image": image, "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": reason, "message": "401 Unauthorized"}}}]}});
    kubectl(
        &[
            "-n",
            ns,
            "patch",
            "pod",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );
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

#[tokio::test]
async fn status_names_stuck_pods_and_the_flag_deletes_only_the_healable_one() {
    let (client, _, [ns, untouched]) = TestNs::group("stuck", ["a", "b"]).await;
    let rs = replica_set(&client, &ns).await;
    // Created before the ServiceAccount lists the Secret: none of them gets it.
    pod(
        &client,
        &ns,
        "web-1",
        IMAGE,
        Some(&rs),
        &[],
        "ImagePullBackOff",
    )
    .await;
    pod(&client, &ns, "bare", IMAGE, None, &[], "ErrImagePull").await;
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
    let other = "docker.io/library/nginx:1";
    pod(
        &client,
        &ns,
        "elsewhere",
        other,
        Some(&rs),
        &[],
        "ImagePullBackOff",
    )
    .await;
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
    let (client, _, [ns]) = TestNs::group("stuck-uid", ["a"]).await;
    let rs = replica_set(&client, &ns).await;
    replica(&client, &ns, &rs, "web-0").await;
    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let first = pods.get("web-0").await.unwrap().metadata.uid.unwrap();
    let (racer, race_ns, race_rs) = (client.clone(), ns.clone(), rs.clone());
    let delete = Fault::on("DELETE", format!("/api/v1/namespaces/{ns}/pods/web-0"));
    let race = delete.first(1).then(move |_| {
        let (racer, ns, rs) = (racer.clone(), race_ns.clone(), race_rs.clone());
        Fault::Before(Box::pin(async move {
            let api = Api::<Pod>::namespaced(racer.clone(), &ns);
            api.delete("web-0", &kube::api::DeleteParams::default().grace_period(0))
                .await
                .unwrap();
            replica(&racer, &ns, &rs, "web-0").await;
        }))
    });
    let proxy = FaultProxy::start(client.clone(), race).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["--delete-stuck-pods", "-n", &ns, "-o", "json"])
        .run_async()
        .await;
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
