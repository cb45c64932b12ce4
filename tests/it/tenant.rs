//! A namespace tenant who may write Secrets in their own namespace (a real ServiceAccount
//! token, RBAC from a Role there) tampers with our Secret so that it looks as we left it:
//! reusing our field manager's name, forging managedFields, adding a data key. `sync` must
//! not take any of it for ours (the ledger of resourceVersions is what it trusts), and `status`
//! must flag each, in agreement.

use crate::common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::fake_ecr::FakeEcr;
use common::install::*;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;

/// A client for a tenant of `ns`: a ServiceAccount there whose Role may do anything with
/// Secrets in `ns`, and nothing else.
async fn tenant(ns: &str, dir: &std::path::Path) -> Client {
    let manifest = format!(
        r#"apiVersion: v1
kind: ServiceAccount
metadata: {{name: tenant, namespace: {ns}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: tenant, namespace: {ns}}}
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: tenant, namespace: {ns}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: tenant}}
subjects: [{{kind: ServiceAccount, name: tenant, namespace: {ns}}}]
"#
    );
    kubectl(&["apply", "-f", "-"], Some(&manifest));
    let token = kubectl(&["-n", ns, "create", "token", "tenant"], None);
    let path = dir.join(format!("{ns}.kubeconfig"));
    write_kubeconfig(&path, &env().apiserver, token.trim());
    client_for(&path).await
}

/// Patch parameters claiming to be ecr-refresh, as `kubectl --field-manager=ecr-refresh` does.
fn as_ecr_refresh() -> PatchParams {
    PatchParams {
        field_manager: Some("ecr-refresh".into()),
        ..Default::default()
    }
}

/// The data of our Secret in `ns` set to `payload`, by `client`, as field manager `pp`'s.
async fn set_payload(client: &Client, ns: &str, pp: &PatchParams, payload: serde_json::Value) {
    let patch = serde_json::json!({"data": {".dockerconfigjson": payload}});
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch("awsecr-cred", pp, &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("tenant patch in {ns}: {e}"));
}

fn password_of(secret: &Secret) -> String {
    let config = dockerconfig(secret);
    let auths = config["auths"].as_object().cloned().unwrap_or_default();
    auths
        .get(HOST)
        .and_then(|a| a["password"].as_str())
        .unwrap_or("")
        .to_string()
}

/// `status` of the namespaces under `glob`: each one's problems, by name.
async fn problems(glob: &str) -> (RunOutput, serde_json::Value) {
    let out = Run::bare().args(["status", "-n", glob, "-o", "json"]).run();
    let report = out.json();
    (out, report)
}

fn problems_of(report: &serde_json::Value, ns: &str) -> String {
    let n = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == ns)
        .unwrap_or_else(|| panic!("{ns} not in {report:#}"));
    n["problems"].to_string()
}

/// The name `ecr-refresh` in managedFields proves nothing. Emptied, pointed at
/// another host, or re-created as Opaque under that name: the glob pass (metadata list) reads
/// each in full, rewrites the first two, refuses the third without --force (also with
/// --refresh-all: no write over it, so no 422), and `status` flags all three.
#[tokio::test]
async fn our_field_managers_name_in_a_tenants_hands_passes_nothing_off_as_ours() {
    let _suite = suite::shared().await;
    let (admin, base, [empty, other, opaque, kept]) =
        TestNs::group("forge", ["empty", "other", "opaque", "kept"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", glob.as_str(), "-o", "json"])
    };
    sync().run().assert_code(0);
    let dir = tempfile::tempdir().unwrap();

    let empty_payload = serde_json::Value::String(STANDARD.encode(r#"{"auths":{}}"#));
    set_payload(
        &tenant(&empty, dir.path()).await,
        &empty,
        &as_ecr_refresh(),
        empty_payload,
    )
    .await;
    let evil = serde_json::Value::String(encoded_dockerconfig("evil.example.com", "theirs"));
    set_payload(
        &tenant(&other, dir.path()).await,
        &other,
        &as_ecr_refresh(),
        evil,
    )
    .await;
    // Deleted and made again as Opaque, with our label, annotations and payload.
    let api = Api::<Secret>::namespaced(tenant(&opaque, dir.path()).await, &opaque);
    let ours = api.get("awsecr-cred").await.unwrap();
    api.delete("awsecr-cred", &DeleteParams::default())
        .await
        .unwrap();
    let copy = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("awsecr-cred".into()),
            labels: ours.metadata.labels.clone(),
            annotations: ours.metadata.annotations.clone(),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: ours.data.clone(),
        ..Default::default()
    };
    let pp = PostParams {
        field_manager: Some("ecr-refresh".into()),
        ..Default::default()
    };
    api.create(&pp, &copy).await.unwrap();

    let (out, report) = problems(&glob).await;
    assert_eq!(out.code(), 1, "status must flag them: {report:#}");
    for ns in [&empty, &other, &opaque] {
        assert_ne!(problems_of(&report, ns), "[]", "{ns}: {report:#}");
    }
    assert_eq!(problems_of(&report, &kept), "[]");

    for refresh_all in [true, false] {
        let mut run = sync();
        if refresh_all {
            run = run.args(["--refresh-all", "--dry-run"]);
        }
        let out = run.run();
        out.assert_code(1);
        let report = out.json();
        let error = error_of(&report, &opaque);
        assert!(
            error.contains("not kubernetes.io/dockerconfigjson") && error.contains("--force"),
            "refresh-all {refresh_all}: {error}"
        );
        assert!(!says_422(error), "{error}");
        for ns in [&empty, &other] {
            assert_eq!(
                outcome(&report, ns)["outcome"],
                "updated",
                "{ns}: {report:#}"
            );
        }
    }
    for ns in [&empty, &other] {
        let s = get_secret(&admin, ns, "awsecr-cred").await.unwrap();
        assert_eq!(password_of(&s), "one", "{ns}");
        assert_eq!(dockerconfig(&s)["auths"].as_object().unwrap().len(), 2);
    }
    let s = get_secret(&admin, &opaque, "awsecr-cred").await.unwrap();
    assert_eq!(s.type_.as_deref(), Some("Opaque"), "left as it was");
    let (out, report) = problems(&glob).await;
    assert_eq!(out.code(), 1);
    for ns in [&empty, &other, &kept] {
        assert_eq!(problems_of(&report, ns), "[]", "{ns}: {report:#}");
    }
}

/// The tenant changes the password, then puts the earlier managedFields back, so
/// nothing on record names another manager. The ledger's resourceVersion still tells: the glob
/// pass and a pass by name both rewrite it, and `status` flags it first.
#[tokio::test]
async fn forged_managed_fields_hide_no_edit() {
    let _suite = suite::shared().await;
    let (admin, base, [glob_ns, named]) = TestNs::group("forged", ["glob", "named"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = |ns: &str| {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", ns, "-o", "json"])
    };
    sync(&glob).run().assert_code(0);
    let dir = tempfile::tempdir().unwrap();
    for ns in [&glob_ns, &named] {
        let client = tenant(ns, dir.path()).await;
        let api = Api::<Secret>::namespaced(client.clone(), ns);
        let before = api.get("awsecr-cred").await.unwrap();
        let pp = PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..Default::default()
        };
        // The same hosts, another password: nothing but the password tells.
        let mut config = dockerconfig(&before);
        for entry in config["auths"].as_object_mut().unwrap().values_mut() {
            entry["password"] = "stolen".into();
            entry["auth"] = STANDARD.encode("AWS:stolen").into();
        }
        let payload = serde_json::Value::String(STANDARD.encode(config.to_string()));
        set_payload(&client, ns, &pp, payload).await;
        let fields = serde_json::to_value(&before.metadata.managed_fields).unwrap();
        let back = serde_json::json!({"metadata": {"managedFields": fields}});
        api.patch("awsecr-cred", &PatchParams::default(), &Patch::Merge(&back))
            .await
            .unwrap();
        let forged = api.get("awsecr-cred").await.unwrap();
        assert_eq!(
            forged.metadata.managed_fields, before.metadata.managed_fields,
            "the forgery took"
        );
        assert_eq!(password_of(&forged), "stolen");
    }
    let (out, report) = problems(&glob).await;
    assert_eq!(out.code(), 1, "{report:#}");
    for ns in [&glob_ns, &named] {
        let found = problems_of(&report, ns);
        assert!(found.contains("written by someone else"), "{ns}: {found}");
    }
    // A glob that leaves `named` to the pass by name.
    let only_glob = format!("{base}-g*");
    for (run, ns) in [(sync(&only_glob), &glob_ns), (sync(&named), &named)] {
        let out = run.run();
        out.assert_code(0);
        assert_eq!(outcome(&out.json(), ns)["outcome"], "updated");
        let s = get_secret(&admin, ns, "awsecr-cred").await.unwrap();
        assert_eq!(password_of(&s), "one", "{ns}");
    }
    let (out, report) = problems(&glob).await;
    assert_eq!(out.code(), 0, "{report:#}");
}

/// Without the admission policy (tests/it/admission_policy.rs has it with): a data key
/// the tenant added is flagged by `status`, and the next pass removes it, conditionally, and
/// says so; the payload is rewritten.
#[tokio::test]
async fn a_tenants_data_key_is_flagged_and_removed() {
    let _suite = suite::shared().await;
    let (admin, base, [ns]) = TestNs::group("stray", ["a"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", glob.as_str(), "-o", "json"])
    };
    sync().run().assert_code(0);
    let dir = tempfile::tempdir().unwrap();
    let note = serde_json::json!({"data": {"note": STANDARD.encode("mine")}});
    Api::<Secret>::namespaced(tenant(&ns, dir.path()).await, &ns)
        .patch("awsecr-cred", &as_ecr_refresh(), &Patch::Merge(&note))
        .await
        .unwrap();
    let (out, report) = problems(&glob).await;
    assert_eq!(out.code(), 1, "{report:#}");
    assert!(problems_of(&report, &ns).contains("note"), "{report:#}");

    let out = sync().run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(outcome(&report, &ns)["outcome"], "updated", "{report:#}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains("note") && warnings.contains(&ns),
        "{report:#}"
    );
    let s = get_secret(&admin, &ns, "awsecr-cred").await.unwrap();
    let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
    assert_eq!(keys, [".dockerconfigjson"]);
    let (out, report) = problems(&glob).await;
    assert_eq!(out.code(), 0, "{report:#}");
}
