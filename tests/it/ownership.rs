//! Whose Secret it is, is decided by our label `app.kubernetes.io/managed-by=ecr-refresh`, before
//! anything is written: a Secret of our name without it is never overwritten or relabelled
//! without --force, however it was made, and `sync`, `sync --refresh-before`, `status` and
//! `prune` all agree. moto's token is always due, so every pass would write.

use crate::common;

use common::install::kubectl;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;

/// Every command leaves the unlabelled Secret in `ns` exactly as it was, and says why.
async fn nobody_takes_it(client: &Client, ns: &str, other: &str) {
    let before = get_secret(client, ns, "awsecr-cred").await.unwrap();
    for extra in [&[][..], &["--refresh-before", "1h"][..]] {
        let out = Run::sync().args(["-n", ns, "-o", "json"]).args(extra).run();
        out.assert_code(1);
        let error = error_of(&out.json(), ns).to_string();
        assert!(
            error.contains("not managed by ecr-refresh") && error.contains("--force"),
            "{extra:?}: {error}"
        );
    }
    let out = Run::bare().args(["status", "-n", ns, "-o", "json"]).run();
    let report = out.json();
    let problems = outcome(&report, ns)["problems"].to_string();
    assert!(
        problems.contains("not managed by ecr-refresh"),
        "{report:#}"
    );
    // Prune (a dry run: it decides as a real one, and leaves other tests' namespaces alone)
    // would take ecr-refresh out of every namespace but `other`: not out of this one.
    let out = Run::bare()
        .args(["prune", "-n", other, "--dry-run", "-o", "json"])
        .run();
    out.assert_code(0);
    let listed = out.json()["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["name"] == ns);
    assert!(!listed, "prune would touch {ns}: {:#}", out.json());
    let after = get_secret(client, ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version, before.metadata.resource_version,
        "not written"
    );
    let labels = after.metadata.labels.unwrap_or_default();
    assert!(!labels.contains_key("app.kubernetes.io/managed-by"));
}

#[tokio::test]
async fn a_secret_whose_label_was_removed_is_not_taken_back_without_force() {
    let _suite = suite::shared().await;
    let (client, _, [ns, other]) = TestNs::group("unlabelled", ["taken", "other"]).await;
    Run::sync().args(["-n", &ns]).run().assert_code(0);
    kubectl(
        &[
            "-n",
            &ns,
            "label",
            "secret",
            "awsecr-cred",
            "app.kubernetes.io/managed-by-",
        ],
        None,
    );
    nobody_takes_it(&client, &ns, &other).await;
    // --force takes it over, as the message says.
    let out = Run::sync().args(["-n", &ns, "--force", "-o", "json"]).run();
    out.assert_code(0);
    let labels = get_secret(&client, &ns, "awsecr-cred")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "ecr-refresh");
}

#[tokio::test]
async fn a_foreign_secret_applied_with_our_field_manager_keeps_its_payload() {
    let _suite = suite::shared().await;
    let (client, _, [ns, other]) = TestNs::group("ourmanager", ["theirs", "other"]).await;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "awsecr-cred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": k8s_openapi::ByteString(FOREIGN_PAYLOAD.to_vec())},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "awsecr-cred",
            &PatchParams::apply("ecr-refresh"),
            &Patch::Apply(&secret),
        )
        .await
        .unwrap();
    nobody_takes_it(&client, &ns, &other).await;
    let after = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.data.unwrap()[".dockerconfigjson"].0,
        FOREIGN_PAYLOAD.to_vec()
    );
}

#[tokio::test]
async fn a_byte_identical_unlabelled_copy_is_not_adopted() {
    let _suite = suite::shared().await;
    let (client, _, [source, ns, other]) =
        TestNs::group("identical", ["source", "copy", "other"]).await;
    Run::sync().args(["-n", &source]).run().assert_code(0);
    // The same type, payload and annotations as ours, made by someone else without our label.
    let ours = get_secret(&client, &source, "awsecr-cred").await.unwrap();
    let copy = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("awsecr-cred".into()),
            annotations: ours.metadata.annotations.clone(),
            ..Default::default()
        },
        type_: ours.type_.clone(),
        data: ours.data.clone(),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&Default::default(), &copy)
        .await
        .unwrap();
    nobody_takes_it(&client, &ns, &other).await;
}

#[tokio::test]
async fn foreign_secret_is_left_alone_and_the_run_fails() {
    let _suite = suite::shared().await;
    let (client, base, [theirs, ours]) = TestNs::group("foreign", ["theirs", "ours"]).await;
    let before = create_foreign_secret(&client, &theirs).await;

    let out = Run::sync()
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(1);
    let report = out.json();
    assert_eq!(outcome(&report, &theirs)["outcome"], "failed");
    let error = error_of(&report, &theirs);
    assert!(
        error.contains("not managed by ecr-refresh") && error.contains("--force"),
        "{error}"
    );
    // The other namespace still got done.
    assert_eq!(outcome(&report, &ours)["outcome"], "created");

    let after = get_secret(&client, &theirs, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.data, before.data);
    assert_eq!(after.metadata.labels, before.metadata.labels);
    // Not linked either: the secret there is not ours.
    assert!(pull_secret_names(&get_sa(&client, &theirs, "default").await).is_empty());

    // The human summary names it too.
    let out = Run::sync().args(["-n", &theirs]).run();
    out.assert_code(1);
    out.assert_stdout_contains(&format!("FAILED {theirs}"));

    // --force takes it over.
    let out = Run::sync()
        .args(["-n", &theirs, "--force", "-o", "json"])
        .run();
    out.assert_code(0);
    let taken = get_secret(&client, &theirs, "awsecr-cred").await.unwrap();
    assert_eq!(dockerconfig(&taken)["auths"][HOST]["password"], PASSWORD);
    assert_eq!(
        taken.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "ecr-refresh"
    );
}
