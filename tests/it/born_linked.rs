//! deploy/born-linked: the MutatingAdmissionPolicy that makes every new `default` ServiceAccount
//! list the pull Secret, on the real apiserver. On a server without the v1 API (1.20.2) the
//! component is refused and `status` says the policy is not available.
//!
//! The policy is cluster-wide; here its binding is narrowed to this test's namespaces (a label)
//! so the other tests of the suite, which create `default` ServiceAccounts of their own, never
//! see it.

use crate::common;

use common::install::*;
use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PostParams};
use kube::Client;

const POLICY: &str = "ecr-refresh-born-linked";
const TEST_LABEL: &str = "ecr-refresh-test/born-linked";

fn served() -> bool {
    kubectl(
        &[
            "api-resources",
            "--api-group=admissionregistration.k8s.io",
            "-o",
            "name",
        ],
        None,
    )
    .lines()
    .any(|l| l.starts_with("mutatingadmissionpolicies."))
}

/// deploy/born-linked as `kubectl kustomize` renders it, its binding narrowed to namespaces
/// labelled `TEST_LABEL=<id>`; and the settings ConfigMap from cronjob.yaml.
fn component(id: &str) -> String {
    let rendered = kubectl(&["kustomize", &repo_path("deploy/born-linked")], None);
    let narrowed = format!(
        "  policyName: {POLICY}\n  matchResources:\n    namespaceSelector:\n      matchLabels:\n        {TEST_LABEL}: {id}\n"
    );
    assert!(rendered.contains(&format!("  policyName: {POLICY}\n")));
    let rendered = rendered.replace(&format!("  policyName: {POLICY}\n"), &narrowed);
    let settings = repo_yaml("deploy/cronjob.yaml")
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("cronjob.yaml holds the settings ConfigMap");
    format!(
        "{rendered}\n---\n{}",
        serde_json::to_string(&settings).unwrap()
    )
}

fn repo_path(rel: &str) -> String {
    format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// Removes the policy when the test ends, passed or not.
struct Installed;
impl Drop for Installed {
    fn drop(&mut self) {
        let _ = try_kubectl(
            &[
                "delete",
                "mutatingadmissionpolicybinding,mutatingadmissionpolicy",
                POLICY,
                "--ignore-not-found",
            ],
            None,
        );
    }
}

/// A namespace labelled for this test, optionally opted out, with a ServiceAccount `sa` created
/// as the controller-manager (or a user) would, holding `theirs`; returns its imagePullSecrets
/// and annotation `ecr-refresh/linked`, as the server stored them.
async fn born(
    client: &Client,
    id: &str,
    opted_out: bool,
    sa: &str,
    theirs: &[&str],
) -> (String, Vec<String>, Option<String>) {
    // Labelled and annotated at creation, as admission reads the namespace from a cache that a
    // later change may not have reached yet.
    let ns = unique("born");
    let mut meta = serde_json::json!({"name": ns, "labels": {TEST_LABEL: id}});
    if opted_out {
        meta["annotations"] = serde_json::json!({"ecr-refresh/opt-out": "true"});
    }
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": meta})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    let created = create_sa(client, &ns, sa, theirs).await;
    let linked = created
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("ecr-refresh/linked").cloned());
    (ns, pull_secret_names(&created), linked)
}

fn status_json(extra: &[&str]) -> serde_json::Value {
    let out = Run::bare()
        .args(["status", "-o", "json", "-n", "kube-system"])
        .args(extra)
        .run();
    out.json()
}

fn policy_state(report: &serde_json::Value) -> &str {
    report["born_linked_policy"]["state"]
        .as_str()
        .unwrap_or_else(|| panic!("no born_linked_policy in {report:#}"))
}

/// The apiserver picks policies up asynchronously: waits until one namespace is born linked.
async fn wait_until_linking(client: &kube::Client, id: &str) {
    wait_until_born_linked(client, id, "default").await;
}

/// Waits until a new ServiceAccount `sa` is born linked (the policy, or its parameters, changed).
async fn wait_until_born_linked(client: &kube::Client, id: &str, sa: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, refs, _) = born(client, id, false, sa, &[]).await;
        if refs == ["awsecr-cred"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never linked a new ServiceAccount {sa}: {refs:?} (a v1.36.3 server on \
             which a born-linked policy was deleted before no longer sees the policy's \
             ConfigMap: its param informer goes stale; scripts/test.sh starts each server fresh)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The settings ConfigMap, as the CronJob reads it, changed (`null` removes a key).
fn set_settings(data: serde_json::Value) {
    kubectl(
        &[
            "-n",
            "kube-system",
            "patch",
            "configmap",
            "ecr-refresh",
            "--type",
            "merge",
            "-p",
            &serde_json::json!({ "data": data }).to_string(),
        ],
        None,
    );
}

/// With the settings naming `builder` (as `--service-account default,builder` does), a new
/// `builder` is born linked and another is not, and `status` says what the policy links and
/// whether `sync` links the same; with every ServiceAccount, any is. Opted out: none.
async fn other_service_accounts_follow_the_settings(client: &Client, id: &str) {
    set_settings(serde_json::json!({"ECR_REFRESH_SERVICE_ACCOUNT": "default,builder"}));
    wait_until_born_linked(client, id, "builder").await;
    let (_, refs, _) = born(client, id, false, "other", &[]).await;
    assert!(refs.is_empty(), "not named: {refs:?}");
    let (_, refs, _) = born(client, id, true, "builder", &[]).await;
    assert!(refs.is_empty(), "opted out: {refs:?}");
    let covers = |extra: &[&str]| status_json(extra)["born_linked_service_accounts"].clone();
    assert_eq!(
        covers(&[]),
        serde_json::json!({"all": false, "service_accounts": ["builder", "default"], "matches_sync": false})
    );
    let report = status_json(&[]);
    assert!(
        report["warnings"]
            .to_string()
            .contains("but sync links default"),
        "{report:#}"
    );
    assert_eq!(
        covers(&["--service-account", "builder,default"])["matches_sync"],
        true
    );

    set_settings(
        serde_json::json!({"ECR_REFRESH_SERVICE_ACCOUNT": null, "ECR_REFRESH_ALL_SERVICE_ACCOUNTS": "true"}),
    );
    wait_until_born_linked(client, id, "other").await;
    assert_eq!(
        covers(&["--all-service-accounts"]),
        serde_json::json!({"all": true, "matches_sync": true})
    );
    set_settings(serde_json::json!({"ECR_REFRESH_ALL_SERVICE_ACCOUNTS": null}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !born(client, id, false, "other", &[]).await.1.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the settings were not restored"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// `status` says the policy is installed, as the admin and as the CronJob's identity once it
/// may read the policy (and nothing else of its kind); unknown before. The reader
/// ClusterRole's name, for the cleanup.
fn status_reads_the_policy(plain: &str) -> String {
    let report = status_json(&[]);
    assert_eq!(policy_state(&report), "installed", "{report:#}");
    Run::bare()
        .args(["status", "-n", plain])
        .run()
        .assert_stdout_contains(&format!("born-linked policy {POLICY}: installed"));
    let sa = unique("born-sa");
    apply_renamed(&repo_file("deploy/rbac.yaml"), &sa, &[]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &sa);
    let as_cronjob = || {
        Run::bare()
            .env("KUBECONFIG", &kubeconfig)
            .args(["status", "-o", "json", "-n", plain])
            .run()
            .json()
    };
    let report = as_cronjob();
    assert_eq!(policy_state(&report), "unknown", "{report:#}");
    assert!(report["born_linked_policy"]["reason"]
        .as_str()
        .unwrap()
        .contains("status-rbac.yaml"));
    let reader = format!("{sa}-reader");
    apply_renamed(
        &repo_file("deploy/born-linked/status-rbac.yaml"),
        &sa,
        &[(
            "name: ecr-refresh-born-linked-reader\n",
            &format!("name: {reader}\n"),
        )],
    );
    let report = as_cronjob();
    assert_eq!(policy_state(&report), "installed", "{report:#}");
    // The reader may read the policy, and nothing else of its kind.
    let other = std::process::Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "get",
            "mutatingadmissionpolicies",
        ])
        .output()
        .unwrap();
    assert!(
        !other.status.success(),
        "listing every policy must be refused"
    );
    reader
}

#[tokio::test]
async fn new_default_service_accounts_are_born_linked() {
    let _suite = suite::exclusive().await;
    let client = admin().await;
    let id = unique("pol");
    let _cleanup = Installed;
    _ = try_kubectl(
        &[
            "delete",
            "mutatingadmissionpolicybinding,mutatingadmissionpolicy",
            POLICY,
            "--ignore-not-found",
        ],
        None,
    );
    if !served() {
        // Older clusters: the component is refused as a whole, and status says why.
        let err = try_kubectl(&["apply", "-f", "-"], Some(&component(&id))).unwrap_err();
        assert!(
            err.contains("no matches for kind \"MutatingAdmissionPolicy\""),
            "{err}"
        );
        let report = status_json(&[]);
        assert_eq!(policy_state(&report), "not_served", "{report:#}");
        return;
    }
    assert_eq!(policy_state(&status_json(&[])), "not_installed");
    kubectl(&["apply", "-f", "-"], Some(&component(&id)));

    wait_until_linking(&client, &id).await;

    let (plain, refs, linked) = born(&client, &id, false, "default", &[]).await;
    assert_eq!(refs, ["awsecr-cred"]);
    assert_eq!(
        linked.as_deref(),
        Some("awsecr-cred"),
        "the entry is recorded as the tool's"
    );
    let (_, refs, linked) = born(&client, &id, true, "default", &[]).await;
    assert!(
        refs.is_empty() && linked.is_none(),
        "opted out: {refs:?} {linked:?}"
    );
    let (_, refs, _) = born(&client, &id, false, "default", &["theirs"]).await;
    assert_eq!(
        refs,
        ["theirs", "awsecr-cred"],
        "their entry is kept, ours appended"
    );
    let (_, refs, linked) = born(&client, &id, false, "default", &["awsecr-cred", "theirs"]).await;
    assert_eq!(refs, ["awsecr-cred", "theirs"], "no duplicate");
    assert_eq!(linked, None, "an entry the creator listed stays theirs");
    let (_, refs, _) = born(&client, &id, false, "builder", &[]).await;
    assert!(refs.is_empty(), "only `default` is linked: {refs:?}");
    other_service_accounts_follow_the_settings(&client, &id).await;

    // 100 namespaces in a row, each with its ServiceAccount: no error, every one linked.
    for _ in 0..100 {
        let (ns, refs, _) = born(&client, &id, false, "default", &[]).await;
        assert_eq!(refs, ["awsecr-cred"], "{ns}");
    }

    // sync finds the born-linked ServiceAccount linked: it writes the Secret, not the account.
    let before = get_sa(&client, &plain, "default")
        .await
        .metadata
        .resource_version;
    let report = Run::sync()
        .args(["-n", &plain, "-o", "json"])
        .run()
        .assert_code(0)
        .json();
    assert_eq!(
        outcome(&report, &plain)["service_accounts"][0]["outcome"],
        "already_linked",
        "{report:#}"
    );
    assert!(get_secret(&client, &plain, "awsecr-cred").await.is_some());
    assert_eq!(
        get_sa(&client, &plain, "default")
            .await
            .metadata
            .resource_version,
        before
    );

    let reader = status_reads_the_policy(&plain);

    // prune --uninstall says to remove the policy too (a dry run: nothing else on the shared
    // server is touched).
    let report = Run::bare()
        .args(["prune", "--uninstall", "--dry-run", "-o", "json"])
        .run()
        .json();
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("still installed") && warnings.contains("kubectl delete"),
        "{report:#}"
    );

    kubectl(
        &[
            "delete",
            "mutatingadmissionpolicybinding,mutatingadmissionpolicy",
            POLICY,
        ],
        None,
    );
    assert_eq!(policy_state(&status_json(&[])), "not_installed");
    let report = Run::bare()
        .args(["prune", "--uninstall", "--dry-run", "-o", "json"])
        .run()
        .json();
    assert!(report.get("warnings").is_none(), "{report:#}");
    let _ = try_kubectl(&["delete", "clusterrolebinding,clusterrole", &reader], None);
}
