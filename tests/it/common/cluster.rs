//! Kubernetes fixtures: an admin client, namespaces of a test's own, and the objects tests
//! make and read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::env::env;
use super::run::Run;

pub async fn admin() -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(env().kubeconfig).expect("read test kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("test kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// A unique namespace name per test and call, so tests can run in parallel.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    format!("{prefix}-{}-{t}-{n}", std::process::id() % 10_000)
}

pub async fn create_namespace(client: &Client, name: &str, with_default_sa: bool) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    if with_default_sa {
        create_sa(client, name, "default", &[]).await;
    }
}

/// A namespace of one test's own, under a unique name, and the admin client that made it:
/// `let TestNs { client, name: ns } = TestNs::new("prefix").await;`.
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

impl TestNs {
    /// With a `default` ServiceAccount, as the controller-manager would make (none runs here).
    pub async fn new(prefix: &str) -> Self {
        Self::make(prefix, true).await
    }

    /// Without a `default` ServiceAccount: the test makes its own, or none.
    pub async fn bare(prefix: &str) -> Self {
        Self::make(prefix, false).await
    }

    /// With a `default` ServiceAccount that already lists `pull_secrets` (someone else's).
    pub async fn listing(prefix: &str, pull_secrets: &[&str]) -> Self {
        let ns = Self::bare(prefix).await;
        create_sa(&ns.client, &ns.name, "default", pull_secrets).await;
        ns
    }

    /// Namespaces `<unique base>-<suffix>`, each with a `default` ServiceAccount, and the admin
    /// client: `let (client, base, [a, b]) = TestNs::group("prefix", ["a", "b"]).await;`.
    pub async fn group<const N: usize>(
        prefix: &str,
        suffixes: [&str; N],
    ) -> (Client, String, [String; N]) {
        let client = admin().await;
        let (base, names) = namespaces(&client, prefix, suffixes).await;
        (client, base, names)
    }

    /// With a `default` ServiceAccount, and written by one `sync -n`.
    pub async fn synced(prefix: &str) -> Self {
        let ns = Self::new(prefix).await;
        Run::sync().args(["-n", &ns.name]).run().assert_code(0);
        ns
    }

    async fn make(prefix: &str, with_default_sa: bool) -> Self {
        let client = admin().await;
        let name = unique(prefix);
        create_namespace(&client, &name, with_default_sa).await;
        Self { client, name }
    }
}

/// Namespaces `<unique base>-<suffix>`, each with a `default` ServiceAccount: the base (for a
/// `<base>-*` glob) and the names.
pub async fn namespaces<const N: usize>(
    client: &Client,
    prefix: &str,
    suffixes: [&str; N],
) -> (String, [String; N]) {
    let base = unique(prefix);
    let names = suffixes.map(|s| format!("{base}-{s}"));
    for n in &names {
        create_namespace(client, n, true).await;
    }
    (base, names)
}

/// A namespace whose `default` ServiceAccount already lists `pull_secrets` (someone else's).
pub async fn create_namespace_listing(client: &Client, name: &str, pull_secrets: &[&str]) {
    create_namespace(client, name, false).await;
    create_sa(client, name, "default", pull_secrets).await;
}

/// Merges `labels` and `annotations` into a namespace's metadata.
pub async fn annotate_namespace(
    client: &Client,
    ns: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let to_map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let patch = serde_json::json!({"metadata": {"labels": to_map(labels), "annotations": to_map(annotations)}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch namespace");
}

/// No controller-manager runs on the test server, so ServiceAccounts are made by hand.
pub async fn create_sa(
    client: &Client,
    ns: &str,
    name: &str,
    pull_secrets: &[&str],
) -> ServiceAccount {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
            pull_secrets
                .iter()
                .map(|n| LocalObjectReference {
                    name: n.to_string(),
                })
                .collect()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account")
}

/// What a foreign Secret of our name holds: someone else's docker config.
pub const FOREIGN_PAYLOAD: &[u8] = br#"{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}"#;

/// Someone else's `awsecr-cred` (no label of ours), made the way `kubectl create secret` would.
pub async fn create_foreign_secret(client: &Client, ns: &str) -> Secret {
    create_foreign_secret_with(client, ns, FOREIGN_PAYLOAD).await
}

/// Someone else's `awsecr-cred` of our type, holding `payload` as its docker config.
pub async fn create_foreign_secret_with(client: &Client, ns: &str, payload: &[u8]) -> Secret {
    create_secret(
        client,
        ns,
        "awsecr-cred",
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", payload)],
    )
    .await
}

/// Makes our Secret in `ns` due for a rewrite: its `ecr-refresh/request` annotation no longer
/// matches what the tool would ask for.
pub async fn make_due(client: &Client, ns: &str) {
    let stale = serde_json::json!({"metadata": {"annotations": {"ecr-refresh/request": "stale"}}});
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "awsecr-cred",
            &PatchParams::default(),
            &Patch::Merge(&stale),
        )
        .await
        .unwrap();
}

pub async fn create_secret(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    data: &[(&str, &[u8])],
) -> Secret {
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret")
}

pub async fn get_secret(client: &Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get secret")
}

/// Someone else's write to our Secret in `ns`, as a JSON merge patch (another field manager:
/// the admin's).
pub async fn tamper(client: &Client, ns: &str, patch: serde_json::Value) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            "awsecr-cred",
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .unwrap_or_else(|e| panic!("tamper with {ns}: {e}"));
}

/// ecr-refresh's Events in `ns` (by their label), by name.
pub async fn our_events(
    client: &Client,
    ns: &str,
) -> BTreeMap<String, k8s_openapi::api::events::v1::Event> {
    Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/managed-by=ecr-refresh"))
        .await
        .expect("list our events")
        .items
        .into_iter()
        .map(|e| (e.metadata.name.clone().unwrap(), e))
        .collect()
}

pub async fn get_sa(client: &Client, ns: &str, name: &str) -> ServiceAccount {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get service account")
}

pub fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

/// Deletes a namespace. With no controller-manager it stays Terminating forever, which the
/// terminating-namespace test relies on.
pub async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

/// A `.dockerconfigjson` for one registry host, base64-encoded as a Secret's data holds it
/// (what a tenant or someone else writes over ours in the tamper tests).
pub fn encoded_dockerconfig(host: &str, password: &str) -> String {
    use base64::Engine as _;
    let b64 = &base64::engine::general_purpose::STANDARD;
    let auth = b64.encode(format!("AWS:{password}"));
    let json = serde_json::json!({"auths": {host: {"username": "AWS", "password": password, "auth": auth}}});
    b64.encode(json.to_string())
}

/// The decoded `.dockerconfigjson` of a Secret.
pub fn dockerconfig(secret: &Secret) -> serde_json::Value {
    let data = secret.data.as_ref().expect("secret data");
    serde_json::from_slice(&data[".dockerconfigjson"].0).expect("dockerconfigjson is JSON")
}
