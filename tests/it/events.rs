//! Events for namespace owners, on the real apiserver: each reason on the object its owner looks
//! at (and shown by `kubectl describe` and `kubectl get events`), how often a condition that
//! persists is told, Recovered, `--no-events`, and a server that does not serve them.

use crate::common;

use std::collections::BTreeMap;

use common::fault::Fault;
use common::install::kubectl;
use common::proxy::FaultProxy;
use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use kube::Client;

/// (type, reason, regarding kind/name, regarding uid) of an Event.
fn said(e: &Event) -> (String, String, String, String) {
    let r = e.regarding.as_ref().expect("regarding");
    assert_eq!(e.reporting_controller.as_deref(), Some("ecr-refresh"));
    assert!(e
        .reporting_instance
        .as_deref()
        .is_some_and(|i| !i.is_empty()));
    (
        e.type_.clone().unwrap(),
        e.reason.clone().unwrap(),
        format!(
            "{}/{}",
            r.kind.as_deref().unwrap(),
            r.name.as_deref().unwrap()
        ),
        r.uid.clone().unwrap_or_default(),
    )
}

fn series_count(e: &Event) -> i32 {
    e.series.as_ref().map_or(1, |s| s.count)
}

async fn uid<K>(client: &Client, ns: &str, name: &str) -> String
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .unwrap()
        .meta()
        .uid
        .clone()
        .unwrap()
}

/// Each reason the README documents (its "For namespace owners" table).
fn documented(reason: &str) -> bool {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .unwrap()
        .contains(&format!("| `{reason}` |"))
}

/// 100 namespaces whose `awsecr-cred` is someone else's: one Warning each, about that Secret.
/// A second pass within the hour writes none; once the hour (here `--event-repeat 2s`) has
/// passed, each Event counts one more in its series, and no Event is made anew.
#[tokio::test]
async fn a_name_taken_is_told_once_then_not_within_the_hour_then_as_a_series_count() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let base = unique("evtaken");
    let names: Vec<String> = (0..100).map(|i| format!("{base}-{i:03}")).collect();
    futures::future::join_all(names.iter().map(|ns| {
        let client = client.clone();
        async move {
            create_namespace(&client, ns, true).await;
            create_foreign_secret(&client, ns).await;
        }
    }))
    .await;
    let glob = format!("{base}-*");
    let pass = |extra: &[&str]| {
        let out = Run::sync()
            .args(["-n", glob.as_str(), "-o", "json"])
            .args(extra)
            .run();
        out.assert_code(1);
        assert_eq!(out.json()["summary"]["failed"], 100);
    };
    let all = || async {
        let mut all = BTreeMap::new();
        for ns in &names {
            for (name, e) in our_events(&client, ns).await {
                all.insert((ns.clone(), name), e);
            }
        }
        all
    };

    pass(&[]);
    let first = all().await;
    assert_eq!(first.len(), 100, "one Event per namespace");
    for ((ns, _), e) in &first {
        let foreign = uid::<Secret>(&client, ns, "awsecr-cred").await;
        assert_eq!(
            said(e),
            (
                "Warning".into(),
                "SecretNameTaken".into(),
                "Secret/awsecr-cred".into(),
                foreign
            )
        );
        let note = e.note.as_deref().unwrap();
        assert!(
            note.contains("not managed by ecr-refresh") && note.contains("--force"),
            "{note}"
        );
        assert!(e.series.is_none());
    }
    assert!(documented("SecretNameTaken"));

    // As a pass 5 minutes later: nothing written.
    pass(&[]);
    let second = all().await;
    let rewritten = second
        .iter()
        .filter(|(k, e)| {
            first.get(*k).map(|f| &f.metadata.resource_version)
                != Some(&e.metadata.resource_version)
        })
        .count();
    assert_eq!(
        (second.len(), rewritten),
        (100, 0),
        "no Event written again"
    );

    // After the window: one series update each, no new Event.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    pass(&["--event-repeat", "2s"]);
    let third = all().await;
    assert_eq!(
        third.keys().collect::<Vec<_>>(),
        first.keys().collect::<Vec<_>>()
    );
    assert!(
        third.values().all(|e| series_count(e) == 2),
        "each counts 2"
    );
}

/// Each reason on the object its owner looks at, as `kubectl describe` shows it; then the
/// Normal ones once the trouble is gone.
#[tokio::test]
async fn each_reason_is_told_on_the_object_its_owner_looks_at() {
    let _suite = suite::shared().await;
    let (client, base, [fresh, link, write, pod]) =
        TestNs::group("evwhy", ["fresh", "link", "write", "pod"]).await;
    crate::stuck_pods::pod(
        &client,
        &pod,
        "bare",
        crate::stuck_pods::IMAGE,
        None,
        &[],
        "ErrImagePull",
    )
    .await;
    let refused = Fault::any([
        (
            "PATCH",
            format!("/api/v1/namespaces/{link}/serviceaccounts/default"),
        ),
        (
            "PATCH",
            format!("/api/v1/namespaces/{write}/secrets/awsecr-cred"),
        ),
    ])
    .status(403);
    let proxy = FaultProxy::start(refused).await;
    let glob = format!("{base}-*");
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", glob.as_str(), "--delete-stuck-pods", "-o", "json"])
        .run();
    out.assert_code(1);
    let secret_uid = uid::<Secret>(&client, &fresh, "awsecr-cred").await;
    let one = |events: BTreeMap<String, Event>| {
        assert_eq!(events.len(), 1, "{:#?}", events.keys());
        events.into_values().next().unwrap()
    };
    let created = one(our_events(&client, &fresh).await);
    assert_eq!(
        said(&created),
        (
            "Normal".into(),
            "SecretCreated".into(),
            "Secret/awsecr-cred".into(),
            secret_uid
        )
    );
    // Its Secret is written and told; its link is refused.
    let sa = uid::<ServiceAccount>(&client, &link, "default").await;
    let events = our_events(&client, &link).await;
    assert_eq!(
        said(&events["awsecr-cred.secret.secretcreated"]).1,
        "SecretCreated"
    );
    let e = &events["default.serviceaccount.linkfailed"];
    assert_eq!(
        said(e),
        (
            "Warning".into(),
            "LinkFailed".into(),
            "ServiceAccount/default".into(),
            sa
        )
    );
    assert!(e.note.as_deref().unwrap().contains("403"), "{e:?}");
    // No Secret of ours to tell it on: the ServiceAccount.
    let sa = uid::<ServiceAccount>(&client, &write, "default").await;
    let e = one(our_events(&client, &write).await);
    assert_eq!(
        said(&e),
        (
            "Warning".into(),
            "SecretNotRefreshed".into(),
            "ServiceAccount/default".into(),
            sa
        )
    );
    let stuck = uid::<Pod>(&client, &pod, "bare").await;
    let mine: Vec<_> = our_events(&client, &pod)
        .await
        .into_values()
        .map(|e| said(&e))
        .collect();
    assert!(
        mine.contains(&(
            "Warning".into(),
            "StuckWithoutPullSecret".into(),
            "Pod/bare".into(),
            stuck
        )),
        "{mine:?}"
    );
    // What the owner sees with kubectl.
    let described = kubectl(
        &["-n", &link, "describe", "serviceaccount", "default"],
        None,
    );
    assert!(
        described.contains("LinkFailed") && described.contains("ecr-refresh"),
        "{described}"
    );
    let described = kubectl(&["-n", &pod, "describe", "pod", "bare"], None);
    assert!(described.contains("StuckWithoutPullSecret"), "{described}");
    let listed = kubectl(
        &[
            "-n",
            &write,
            "get",
            "events",
            "--field-selector",
            "reportingComponent=ecr-refresh",
        ],
        None,
    );
    assert!(listed.contains("SecretNotRefreshed"), "{listed}");
    for reason in [
        "SecretCreated",
        "LinkFailed",
        "SecretNotRefreshed",
        "StuckWithoutPullSecret",
    ] {
        assert!(documented(reason), "README documents {reason}");
    }

    // The trouble gone: the link is made, and told as Recovered; the Secret created.
    let out = Run::sync().args(["-n", glob.as_str(), "-o", "json"]).run();
    out.assert_code(0);
    let reasons =
        |events: BTreeMap<String, Event>| events.values().map(|e| said(e).1).collect::<Vec<_>>();
    assert_eq!(
        reasons(our_events(&client, &link).await),
        ["SecretCreated", "LinkFailed", "Recovered"]
    );
    let write_reasons = reasons(our_events(&client, &write).await);
    assert!(
        write_reasons.contains(&"SecretCreated".to_string()),
        "{write_reasons:?}"
    );
    assert!(documented("Recovered"));
    // Told once: a third pass says nothing more.
    let before = our_events(&client, &link).await;
    Run::sync().args(["-n", glob.as_str()]).run().assert_code(0);
    let after = our_events(&client, &link).await;
    let versions = |m: &BTreeMap<String, Event>| {
        m.values()
            .map(|e| e.metadata.resource_version.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(versions(&after), versions(&before));
}

/// `--no-events` writes none; a server that does not serve events.k8s.io/v1 (here a proxy that
/// answers 404 for them) costs a warning, and the pass is done as without Events.
#[tokio::test]
async fn no_events_writes_none_and_a_server_without_them_is_a_warning() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("evoff").await;
    Run::sync()
        .args(["-n", &ns, "--no-events"])
        .run()
        .assert_code(0);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
    assert!(our_events(&client, &ns).await.is_empty());

    let TestNs { client, name: ns } = TestNs::new("evnone").await;
    let proxy = FaultProxy::start(Fault::on("*", "/apis/events.k8s.io/").status(404)).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", &ns, "-o", "json"])
        .run();
    out.assert_code(0);
    let warnings = out.json()["warnings"].to_string();
    assert!(
        warnings.contains("does not serve events.k8s.io/v1"),
        "{warnings}"
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
    assert!(our_events(&client, &ns).await.is_empty());
}

/// The README's Argo CD `ignoreDifferences` names, as `managedFieldsManagers`, the field
/// managers that own what `sync` writes: the ServiceAccount's `imagePullSecrets` and the
/// Secret's data, as the server records them after a real `sync`.
#[tokio::test]
async fn the_argo_cd_snippet_names_the_managers_sync_writes_with() {
    let _suite = suite::shared().await;
    // The ServiceAccount as Argo CD applies it (a server that never tracked an object's fields
    // does not start on a plain update, so a bare one has no managedFields to compare).
    let TestNs { client, name: ns } = TestNs::bare("evargo").await;
    let applied: ServiceAccount = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "labels": {"app.kubernetes.io/instance": "my-app"}}
    }))
    .unwrap();
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch(
            "default",
            &kube::api::PatchParams::apply("argocd-controller"),
            &kube::api::Patch::Apply(&applied),
        )
        .await
        .unwrap();
    Run::sync().args(["-n", &ns]).run().assert_code(0);
    let owners =
        |fields: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry>,
         field: &str| {
            let mut m: Vec<String> = fields
                .into_iter()
                .filter(|f| {
                    f.fields_v1
                        .as_ref()
                        .is_some_and(|v| v.0.get(field).is_some())
                })
                .filter_map(|f| f.manager)
                .collect();
            m.sort();
            m.dedup();
            m
        };
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .get("default")
        .await
        .unwrap();
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    let sa_managers = owners(sa.metadata.managed_fields.unwrap(), "f:imagePullSecrets");
    let secret_managers = owners(secret.metadata.managed_fields.unwrap(), "f:data");
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let snippet = readme
        .split("\n### Argo CD\n")
        .nth(1)
        .and_then(|s| s.split("```yaml").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README: the Argo CD snippet");
    let docs: serde_json::Value = serde_yaml::from_str(snippet).unwrap();
    let named = |kind: &str| -> Vec<String> {
        docs["spec"]["ignoreDifferences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in the snippet"))["managedFieldsManagers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(named("ServiceAccount"), sa_managers);
    assert_eq!(named("Secret"), secret_managers);
}
