//! Least privilege, proven with a real ServiceAccount token: the tool runs with exactly the
//! rights in rbac.yaml (or deploy/namespaced-rbac.yaml) and nothing more.

use crate::common;

use common::install::*;
use common::*;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams};

/// Logged when `get` on a namespace named with -n is refused.
const NO_NAMESPACE_GET: &str = "cannot read namespaces named with -n";

fn forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(s)) if s.code == 403)
}

#[tokio::test]
async fn sync_works_with_exactly_rbac_yaml_and_nothing_more() {
    let _suite = suite::shared().await;
    let id = unique("rbac");
    apply_renamed(&repo_file("deploy/rbac.yaml"), &id, &[]);
    let (client, base, names) = TestNs::group("least", ["0", "1", "2"]).await;
    create_secret(
        &client,
        &names[0],
        "db-password",
        "Opaque",
        &[("password", b"s3cret")],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &id);

    let out = Run::sync()
        .env("KUBECONFIG", &kubeconfig)
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 3);
    for n in &names {
        assert!(get_secret(&client, n, "awsecr-cred").await.is_some());
        assert_eq!(
            pull_secret_names(&get_sa(&client, n, "default").await),
            ["awsecr-cred"]
        );
    }

    // Named literally, a terminating namespace is read (get on namespaces) and skipped, even
    // though its Secret is due for a rewrite.
    let dying = &names[2];
    make_due(&client, dying).await;
    delete_namespace(&client, dying).await;
    let before = get_secret(&client, dying, "awsecr-cred").await.unwrap();
    let out = Run::sync()
        .env("KUBECONFIG", &kubeconfig)
        .args(["-n", dying, "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), dying)["outcome"], "skipped");
    out.assert_stderr_lacks(NO_NAMESPACE_GET);
    let after = get_secret(&client, dying, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // The same token can touch no other Secret.
    let sa = client_for(&kubeconfig).await;
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), &names[0]);
    assert!(
        forbidden(secrets.get("db-password").await),
        "reading another secret"
    );
    assert!(
        forbidden(secrets.list(&ListParams::default()).await),
        "listing secrets"
    );
    let sneaky = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("sneaky".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(
        forbidden(secrets.create(&PostParams::default(), &sneaky).await),
        "creating another secret"
    );
    assert!(
        forbidden(
            secrets
                .delete("awsecr-cred", &DeleteParams::default())
                .await
        ),
        "deleting ours"
    );
    // ServiceAccounts: a list of every `default` is allowed, nothing wider.
    let accounts: Api<ServiceAccount> = Api::all(sa);
    let by_name = |name: &str| ListParams::default().fields(&format!("metadata.name={name}"));
    assert!(accounts.list(&by_name("default")).await.is_ok());
    assert!(
        forbidden(accounts.list(&ListParams::default()).await),
        "listing every service account"
    );
    assert!(
        forbidden(accounts.list(&by_name("ecr-refresh")).await),
        "listing another service account"
    );
}

/// rbac.yaml grants no more than the tool uses, asked as its ServiceAccount itself
/// (SelfSubjectAccessReview, what `kubectl auth can-i` sends).
#[tokio::test]
async fn rbac_yaml_grants_only_what_the_tool_uses() {
    let _suite = suite::shared().await;
    let id = unique("rbac-cani");
    apply_renamed(&repo_file("deploy/rbac.yaml"), &id, &[]);
    let ns = TestNs::new("cani").await.name;
    let dir = tempfile::tempdir().unwrap();
    let sa = client_for(&token_kubeconfig(dir.path(), &id)).await;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(sa);
    // (verb, resource, name, allowed)
    let probes = [
        ("list", "namespaces", "", true),
        ("get", "namespaces", ns.as_str(), true),
        ("get", "secrets", "awsecr-cred", true),
        ("create", "secrets", "awsecr-cred", true),
        ("patch", "secrets", "awsecr-cred", true),
        ("update", "secrets", "awsecr-cred", true),
        ("delete", "secrets", "awsecr-cred", false),
        ("list", "secrets", "", false),
        ("list", "secrets", "awsecr-cred", true),
        ("watch", "secrets", "awsecr-cred", false),
        ("get", "secrets", "other", false),
        ("create", "secrets", "other", false),
        ("get", "serviceaccounts", "default", true),
        ("list", "serviceaccounts", "default", true),
        ("patch", "serviceaccounts", "default", true),
        ("update", "serviceaccounts", "default", false),
        ("patch", "serviceaccounts", "other", false),
        ("create", "serviceaccounts", "", false),
        ("list", "serviceaccounts", "", false),
        ("create", "pods", "", false),
        // Events, of events.k8s.io only (admission-policy.yaml narrows what they say).
        ("list", "events.k8s.io/events", "", true),
        ("create", "events.k8s.io/events", "", true),
        ("patch", "events.k8s.io/events", "", true),
        ("get", "events.k8s.io/events", "", false),
        ("update", "events.k8s.io/events", "", false),
        ("delete", "events.k8s.io/events", "", false),
        ("create", "events", "", false),
    ];
    let mut wrong = Vec::new();
    for (verb, resource, name, want) in probes {
        let (group, resource) = resource.rsplit_once('/').unwrap_or(("", resource));
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    namespace: Some(ns.clone()),
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    name: (!name.is_empty()).then(|| name.into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .expect("SelfSubjectAccessReview")
            .status
            .expect("review status")
            .allowed;
        if answer != want {
            wrong.push(format!(
                "can-i {verb} {resource}/{name}: {answer}, expected {want}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn without_list_on_service_accounts_each_one_is_read() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let id = unique("rbac-nosalist");
    apply_renamed(
        &repo_file("rbac.yaml"),
        &id,
        &[(
            r#"resourceNames: ["default"]
    verbs: ["get", "list", "patch"]"#,
            r#"resourceNames: ["default"]
    verbs: ["get", "patch"]"#,
        )],
    );
    let (base, names) = namespaces(&client, "nosalist", ["0", "1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let out = Run::sync()
        .env("KUBECONFIG", token_kubeconfig(dir.path(), &id))
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 2);
    out.assert_stderr_contains("reading them one namespace at a time");
    for n in &names {
        assert_eq!(
            pull_secret_names(&get_sa(&client, n, "default").await),
            ["awsecr-cred"]
        );
    }
}

#[tokio::test]
async fn a_missing_permission_is_named_in_the_error() {
    let _suite = suite::shared().await;
    let (_, base, [ns]) = TestNs::group("noperm", ["0"]).await;
    let dir = tempfile::tempdir().unwrap();

    // No `patch` on serviceaccounts: the Secret is written, linking fails and says why.
    let id = unique("rbac-nopatch");
    apply_renamed(
        &repo_file("deploy/rbac.yaml"),
        &id,
        &[(
            r#"resourceNames: ["default"]
    verbs: ["get", "list", "patch"]"#,
            r#"resourceNames: ["default"]
    verbs: ["get", "list"]"#,
        )],
    );
    let out = Run::sync()
        .env("KUBECONFIG", token_kubeconfig(dir.path(), &id))
        .args(["-n", &ns, "-o", "json"])
        .run();
    out.assert_code(1);
    let err = error_of(&out.json(), &ns).to_string();
    assert!(
        err.contains(r#"cannot patch resource "serviceaccounts""#) && err.contains("rbac.yaml"),
        "{err}"
    );
    assert!(!err.contains("ApiError"), "no debug noise: {err}");

    // No `list` on namespaces: a glob cannot be resolved, exit 4 with the fix in the message.
    let id = unique("rbac-nolist");
    apply_renamed(
        &repo_file("deploy/rbac.yaml"),
        &id,
        &[(r#"verbs: ["get", "list"]"#, r#"verbs: ["get"]"#)],
    );
    let out = Run::sync()
        .env("KUBECONFIG", token_kubeconfig(dir.path(), &id))
        .args(["-n", &format!("{base}-*")])
        .run();
    out.assert_code(4);
    out.assert_stderr_contains(r#"cannot list resource "namespaces""#);
    out.assert_stderr_contains("name namespaces literally");
}

#[tokio::test]
async fn namespace_scoped_install_needs_no_cluster_wide_rights() {
    let _suite = suite::shared().await;
    let (client, base, [a, b, ungranted]) = TestNs::group("scoped", ["a", "b", "ungranted"]).await;
    // The pair to copy per namespace, and nothing else (rbac.yaml holds the ServiceAccount).
    let mut kinds: Vec<_> = repo_yaml("deploy/namespaced-rbac.yaml")
        .iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["Role", "RoleBinding"]);
    let id = unique("rbac-ns");
    // Only the ServiceAccount and the ledger's Role (in kube-system) from rbac.yaml; no
    // ClusterRole, no ClusterRoleBinding.
    let rbac = repo_file("deploy/rbac.yaml");
    let docs: Vec<&str> = rbac
        .split("\n---\n")
        .filter(|d| {
            ["ServiceAccount", "Role", "RoleBinding"]
                .iter()
                .any(|k| d.contains(&format!("\nkind: {k}\n")))
        })
        .collect();
    assert_eq!(docs.len(), 3, "{docs:?}");
    apply_renamed(&docs.join("\n---\n"), &id, &[]);
    for n in [&a, &b] {
        apply_renamed(
            &repo_file("deploy/namespaced-rbac.yaml"),
            &id,
            &[
                ("namespace: team-a", &format!("namespace: {n}")),
                (
                    r#"resourceNames: ["team-a"]"#,
                    &format!(r#"resourceNames: ["{n}"]"#),
                ),
            ],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &id);

    let out = Run::sync()
        .env("KUBECONFIG", &kubeconfig)
        .args(["-n", &a, "-n", &b, "-o", "json"])
        .run();
    out.assert_code(0);
    for n in [&a, &b] {
        assert!(get_secret(&client, n, "awsecr-cred").await.is_some(), "{n}");
        assert_eq!(
            pull_secret_names(&get_sa(&client, n, "default").await),
            ["awsecr-cred"],
            "{n}"
        );
    }
    // The Role lets the tool read its own namespace (to skip a terminating one).
    out.assert_stderr_lacks(NO_NAMESPACE_GET);
    out.assert_stderr_lacks("cannot read the ledger");

    // A namespace without the Role fails alone, with the missing permission named.
    after_write_window().await;
    let out = Run::sync()
        .env("KUBECONFIG", &kubeconfig)
        .args(["-n", &format!("{a},{b},{ungranted}"), "-o", "json"])
        .run();
    out.assert_code(1);
    let r = out.json();
    assert_eq!(outcome(&r, &a)["outcome"], "unchanged");
    let err = error_of(&r, &ungranted);
    // Read before anything is written: the read is what RBAC refuses.
    assert!(err.contains(r#"cannot get resource "secrets""#), "{err}");
    assert!(get_secret(&client, &ungranted, "awsecr-cred")
        .await
        .is_none());

    // A glob needs a namespace listing, which this install does not grant.
    let out = Run::sync()
        .env("KUBECONFIG", &kubeconfig)
        .args(["-n", &format!("{base}-*")])
        .run();
    out.assert_code(4);
}
