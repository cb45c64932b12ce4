//! `prune` and `sync --prune`. Prune acts on every namespace outside the selection, so these
//! tests live in their own binary (cargo runs test binaries one after another) and take a lock
//! so they never run at the same time as each other.

mod common;

use std::collections::BTreeMap;

use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};

static CLUSTER_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn annotate_namespace(client: &kube::Client, ns: &str, annotations: &[(&str, &str)]) {
    let map: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let patch = serde_json::json!({"metadata": {"annotations": map}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test]
async fn prune_removes_exactly_the_dropped_namespaces() {
    let _lock = CLUSTER_WIDE.lock().await;
    let client = admin().await;
    let base = unique("prune");
    let names: Vec<String> = ["keep-a", "keep-b", "drop-a", "drop-b"]
        .iter()
        .map(|s| format!("{base}-{s}"))
        .collect();
    for n in &names {
        create_namespace(&client, n, false).await;
        create_sa(&client, n, "default", &["someone-elses"]).await;
    }
    Run::sync()
        .args(["-n", &format!("{base}-*")])
        .run_async()
        .await
        .assert_code(0);
    // A foreign Secret of our name in a dropped namespace must survive (we never owned it).
    let foreign_ns = format!("{base}-drop-foreign");
    create_namespace(&client, &foreign_ns, true).await;
    let foreign = create_secret(
        &client,
        &foreign_ns,
        "awsecr-cred",
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", br#"{"auths":{}}"#)],
    )
    .await;

    // Dry run first: nothing changes.
    let out = Run::bare()
        .args([
            "prune",
            "-x",
            &format!("{base}-drop-*"),
            "--dry-run",
            "-o",
            "json",
        ])
        .run_async()
        .await;
    out.assert_code(0);
    let r = out.json();
    let pruned: Vec<&str> = r["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["outcome"] == "pruned")
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(pruned, [names[2].as_str(), names[3].as_str()]);
    for n in &names {
        assert!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            "dry run deleted in {n}"
        );
    }

    let out = Run::bare()
        .args(["prune", "-x", &format!("{base}-drop-*"), "-o", "json"])
        .run_async()
        .await;
    out.assert_code(0);
    for (n, kept) in names.iter().zip([true, true, false, false]) {
        assert_eq!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            kept,
            "{n}"
        );
        let expected: &[&str] = if kept {
            &["someone-elses", "awsecr-cred"]
        } else {
            &["someone-elses"]
        };
        assert_eq!(
            pull_secret_names(&get_sa(&client, n, "default").await),
            expected,
            "{n}"
        );
    }
    let after = get_secret(&client, &foreign_ns, "awsecr-cred")
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version,
        foreign.metadata.resource_version
    );
}

#[tokio::test]
async fn sync_prune_and_opt_out() {
    let _lock = CLUSTER_WIDE.lock().await;
    let client = admin().await;
    let base = unique("optout");
    let [stays, leaves] = ["stays", "leaves"].map(|s| format!("{base}-{s}"));
    create_namespace(&client, &stays, true).await;
    create_namespace(&client, &leaves, true).await;
    Run::sync()
        .args(["-n", &format!("{base}-*")])
        .run_async()
        .await
        .assert_code(0);

    annotate_namespace(&client, &leaves, &[("ecr-refresh/opt-out", "true")]).await;
    next_second().await;
    // `sync --prune` over just this test's namespaces (exclude everything else from pruning by
    // excluding nothing of ours): the opted-out one is skipped by sync and cleaned by prune.
    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-*"),
            "--prune",
            "-o",
            "json",
            "-x",
            "nothing-matches-this",
        ])
        .env("ECR_REFRESH_TIMEOUT", "2m")
        .run_async()
        .await;
    out.assert_code(0);
    let r = out.json();
    assert_eq!(outcome(&r, &stays)["outcome"], "unchanged");
    assert_eq!(outcome(&r, &leaves)["outcome"], "pruned");
    assert!(get_secret(&client, &leaves, "awsecr-cred").await.is_none());
    assert!(pull_secret_names(&get_sa(&client, &leaves, "default").await).is_empty());
    assert!(get_secret(&client, &stays, "awsecr-cred").await.is_some());
}
