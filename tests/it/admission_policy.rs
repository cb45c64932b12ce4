//! deploy/admission-policy.yaml, proven with the CronJob ServiceAccount's real token against the
//! real server: every attack RBAC still allows is refused with the policy's message, the tool's
//! own sync, status, prune, uninstall and --force still work through it, and without it a stolen
//! token mints a token for another ServiceAccount (the token controller runs beside v1.36.3,
//! scripts/testenv.sh). On a server without the API (1.20.2) the same RBAC works without it.
//! With deploy/argocd, the token writes the Argo CD repo-creds Secrets of `sync
//! --argocd-namespace` in Argo CD's namespace, exactly as the tool shapes them, and reads or
//! writes nothing else there.
//!
//! `prune --uninstall` acts on every namespace, so the tests here take one lock and never run at
//! the same time as each other (cargo runs test binaries one after another).

use crate::common;

use std::time::{Duration, Instant};

use common::install::*;
use common::*;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

// The policy's messages (deploy/admission-policy.yaml, deploy/allow-force).
const WRONG_TYPE: &str = "ecr-refresh writes only Secrets of type kubernetes.io/dockerconfigjson";
const NO_LABEL: &str =
    "ecr-refresh writes only Secrets labelled app.kubernetes.io/managed-by=ecr-refresh";
const TOKEN_ANNOTATION: &str = "never sets kubernetes.io/service-account.* annotations";
const DATA_KEYS: &str = "holds exactly one data key, .dockerconfigjson";
const NOT_OURS: &str =
    "ecr-refresh changes or deletes only Secrets labelled app.kubernetes.io/managed-by=ecr-refresh";
const FORCE_DELETE: &str =
    "--force deletes someone else's Secret only to replace one of another type";
const SA_AUTOMOUNT: &str = "may not change a ServiceAccount's automountServiceAccountToken";
const SA_ANNOTATION: &str = "may change only the annotation ecr-refresh/linked";
const SA_ENTRIES: &str = "may add or remove only its own imagePullSecrets entry";
const SA_LINKED: &str = "only its own Secret's name in the annotation ecr-refresh/linked";
const FINALIZERS: &str = "ecr-refresh never adds or removes a Secret's finalizers";
const OWNER_REFERENCES: &str =
    "ecr-refresh never adds, changes or removes a Secret's owner references";
const IMMUTABLE: &str = "ecr-refresh never sets immutable on a Secret";
const SA_MANAGED_FIELDS: &str = "ecr-refresh may not rewrite a ServiceAccount's managedFields";
const FORCE_KEEPS: &str =
    "--force takes over someone else's Secret only by replacing its .dockerconfigjson";

const REPO_CREDS_SHAPE: &str = "an Argo CD repo-creds Secret written by ecr-refresh is labelled argocd.argoproj.io/secret-type=repo-creds and holds exactly the data keys enableOCI (true), password, type (helm), url and username (AWS)";
const ARGOCD_LABEL: &str =
    "ecr-refresh sets the label argocd.argoproj.io/secret-type only on an Argo CD repo-creds Secret";
const REPO_CREDS_URL: &str = "an Argo CD repo-creds Secret written by ecr-refresh is named ecr-refresh.<host>, and its url is that ECR registry host and a slash";

const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
const DOCKER_TYPE: &str = "kubernetes.io/dockerconfigjson";

/// The install under test: deploy/ with these components, under this test's own names, and a
/// client holding its ServiceAccount's real token (TokenRequest), as the CronJob's pod has.
struct Install {
    id: String,
    kubeconfig: std::path::PathBuf,
    sa: Client,
    _dir: tempfile::TempDir,
}

async fn install(prefix: &str, components: &[&str]) -> Install {
    install_objects(prefix, &render_deploy(components)).await
}

/// [`install`] of rendered objects (changed by the test).
async fn install_objects(prefix: &str, objects: &[serde_json::Value]) -> Install {
    let id = unique(prefix);
    apply_objects_renamed(objects, &id);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &id);
    let sa = client_for(&kubeconfig).await;
    Install {
        id,
        kubeconfig,
        sa,
        _dir: dir,
    }
}

/// The suite held exclusive (the policies bind cluster-wide) and an admin client, on a server
/// with admission policies. On one without them (before 1.30) these tests have nothing to
/// prove; 1.30 or newer must have them.
async fn policy_server() -> Option<(tokio::sync::RwLockWriteGuard<'static, ()>, Client)> {
    let lock = suite::exclusive().await;
    let client = admin().await;
    if serves_admission_policies(&client).await {
        return Some((lock, client));
    }
    let minor: u32 = client
        .apiserver_version()
        .await
        .unwrap()
        .minor
        .trim_end_matches('+')
        .parse()
        .unwrap();
    assert!(minor < 30, "Kubernetes 1.{minor} must serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies");
    eprintln!("Kubernetes 1.{minor}: no admission policies; tested without them in the_same_rbac_works_without_the_policy");
    None
}

fn secret(
    type_: &str,
    labelled: bool,
    annotations: serde_json::Value,
    data: serde_json::Value,
) -> serde_json::Value {
    let labels = if labelled {
        json!({"app.kubernetes.io/managed-by": "ecr-refresh"})
    } else {
        json!({})
    };
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "awsecr-cred", "labels": labels, "annotations": annotations},
        "type": type_, "data": data,
    })
}

/// base64 of `{"auths":{}}`, a valid docker config.
fn docker_data() -> serde_json::Value {
    json!({".dockerconfigjson": "eyJhdXRocyI6e319"})
}

/// The Secret a stolen token would write to get a token for `victim` filled in.
fn token_minting(victim: &str) -> serde_json::Value {
    secret(
        TOKEN_TYPE,
        false,
        json!({"kubernetes.io/service-account.name": victim}),
        json!({}),
    )
}

fn apply_params(dry_run: bool) -> PatchParams {
    PatchParams {
        dry_run,
        ..PatchParams::apply("attacker")
    }
}

/// The request was refused by the policy `policy` (of this install), with `message`.
#[track_caller]
fn assert_denied<T: std::fmt::Debug>(
    result: Result<T, kube::Error>,
    install: &Install,
    policy: &str,
    message: &str,
) {
    let name = format!("ValidatingAdmissionPolicy '{}-{policy}'", install.id);
    match result {
        Err(kube::Error::Api(s))
            if s.code == 403 && s.message.contains(&name) && s.message.contains(message) => {}
        other => panic!("expected a 403 from {name} saying {message:?}, got {other:?}"),
    }
}

/// Policies take effect a moment after they are created: retry a dry-run request until the
/// policy refuses it with `message`.
async fn wait_until_denied<T, F, Fut>(what: &str, message: &str, attempt: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match attempt().await {
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains(message) => return,
            _ if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            other => panic!(
                "{what}: the policy is not in effect after 60s: {:?}",
                other.err()
            ),
        }
    }
}

/// Namespaces for the probes: `empty` (a `default` ServiceAccount, no Secret) and `foreign`
/// (someone else's dockerconfigjson Secret of our name, and their imagePullSecrets entry);
/// waits until every policy answers.
async fn wait_for_policies(client: &Client, install: &Install, force: bool) -> (String, String) {
    let base = unique("probe");
    let [empty, foreign] = ["empty", "foreign"].map(|s| format!("{base}-{s}"));
    create_namespace(client, &empty, true).await;
    create_namespace_listing(client, &foreign, &["theirs"]).await;
    create_foreign_secret(client, &foreign).await;
    let secrets = |ns: &str| Api::<Secret>::namespaced(install.sa.clone(), ns);
    let opaque = secret("Opaque", true, json!({}), json!({"x": "eA=="}));
    wait_until_denied("ecr-refresh-secrets", WRONG_TYPE, || async {
        secrets(&empty)
            .patch("awsecr-cred", &apply_params(true), &Patch::Apply(&opaque))
            .await
    })
    .await;
    let ours = secret(DOCKER_TYPE, true, json!({}), docker_data());
    if force {
        let dp = DeleteParams {
            dry_run: true,
            ..Default::default()
        };
        wait_until_denied(
            "ecr-refresh-secret-owner (allow-force)",
            FORCE_DELETE,
            || async { secrets(&foreign).delete("awsecr-cred", &dp).await },
        )
        .await;
    } else {
        let mut pp = apply_params(true);
        pp.force = true;
        wait_until_denied("ecr-refresh-secret-owner", NOT_OURS, || async {
            secrets(&foreign)
                .patch("awsecr-cred", &pp, &Patch::Apply(&ours))
                .await
        })
        .await;
    }
    let annotate = json!({"metadata": {"annotations": {"probe": "x"}}});
    let pp = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    wait_until_denied("ecr-refresh-service-accounts", SA_ANNOTATION, || async {
        Api::<ServiceAccount>::namespaced(install.sa.clone(), &empty)
            .patch("default", &pp, &Patch::Merge(&annotate))
            .await
    })
    .await;
    (empty, foreign)
}

/// [`install`], once its admission policies are in effect, with the probe namespaces.
async fn install_with_policies(
    client: &Client,
    prefix: &str,
    components: &[&str],
) -> (Install, String, String) {
    let it = install(prefix, components).await;
    let force = components.contains(&"allow-force");
    let (empty, foreign) = wait_for_policies(client, &it, force).await;
    (it, empty, foreign)
}

/// A token for `victim` in `ns`, once the token controller has filled the Secret.
async fn filled_token(client: &Client, ns: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let token = get_secret(client, ns, "awsecr-cred")
            .await
            .and_then(|s| s.data?.remove("token"))
            .map(|t| String::from_utf8(t.0).unwrap());
        match token {
            Some(t) => return t,
            None if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            None => panic!(
                "the token controller did not fill {ns}/awsecr-cred in 60s: scripts/testenv.sh starts it beside a \
                 kube-apiserver that has kube-controller-manager.xz next to it (ECR_REFRESH_TEST_TOKEN_CONTROLLER={:?})",
                std::env::var("ECR_REFRESH_TEST_TOKEN_CONTROLLER").ok()
            ),
        }
    }
}

/// Who the server says `token` is (SelfSubjectReview, what `kubectl auth whoami` sends).
async fn whoami(token: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stolen.kubeconfig");
    write_kubeconfig(&path, &env().apiserver, token);
    let client = client_for(&path).await;
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review).unwrap())
        .unwrap();
    let answer: serde_json::Value = client.request(request).await.expect("SelfSubjectReview");
    answer["status"]["userInfo"]["username"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn without_the_policy_a_stolen_token_becomes_any_service_account_and_with_it_cannot() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    // rbac.yaml alone: the CronJob's token creates a token Secret for a ServiceAccount of a
    // namespace ecr-refresh never wrote to, and the token controller fills it.
    let rbac_only = install("mint-rbac", &["without-admission-policy"]).await;
    let (_, [open, guarded]) = namespaces(&client, "mint", ["open", "guarded"]).await;
    for ns in [&open, &guarded] {
        create_sa(&client, ns, "victim", &[]).await;
    }
    Api::<Secret>::namespaced(rbac_only.sa.clone(), &open)
        .patch(
            "awsecr-cred",
            &apply_params(false),
            &Patch::Apply(&token_minting("victim")),
        )
        .await
        .expect("without the policy, RBAC lets the CronJob's token create this Secret");
    let stolen = filled_token(&client, &open).await;
    assert_eq!(
        whoami(&stolen).await,
        format!("system:serviceaccount:{open}:victim")
    );
    // A working non-expiring token: not left behind.
    Api::<Secret>::namespaced(client.clone(), &open)
        .delete("awsecr-cred", &DeleteParams::default())
        .await
        .unwrap();

    // The same install with the policy: refused, and nothing is created.
    let (with_policy, ..) = install_with_policies(&client, "mint-policy", &[]).await;
    let attempt = Api::<Secret>::namespaced(with_policy.sa.clone(), &guarded)
        .patch(
            "awsecr-cred",
            &apply_params(false),
            &Patch::Apply(&token_minting("victim")),
        )
        .await;
    assert_denied(attempt, &with_policy, "secrets", WRONG_TYPE);
    assert!(get_secret(&client, &guarded, "awsecr-cred").await.is_none());
    // Of our type and label, the token annotation alone is refused too.
    let disguised = secret(
        DOCKER_TYPE,
        true,
        json!({"kubernetes.io/service-account.name": "victim"}),
        docker_data(),
    );
    let attempt = Api::<Secret>::namespaced(with_policy.sa.clone(), &guarded)
        .patch(
            "awsecr-cred",
            &apply_params(false),
            &Patch::Apply(&disguised),
        )
        .await;
    assert_denied(attempt, &with_policy, "secrets", TOKEN_ANNOTATION);
    assert!(get_secret(&client, &guarded, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn every_attack_rbac_allows_is_denied_with_the_policys_message() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, empty, foreign) = install_with_policies(&client, "attack", &[]).await;
    let secrets = |ns: &str| Api::<Secret>::namespaced(it.sa.clone(), ns);
    let write = |s: serde_json::Value| {
        let api = secrets(&empty);
        async move {
            api.patch("awsecr-cred", &apply_params(false), &Patch::Apply(&s))
                .await
        }
    };

    // Secrets of another type, without our label, or with more data.
    assert_denied(
        write(secret("Opaque", true, json!({}), json!({"x": "eA=="}))).await,
        &it,
        "secrets",
        WRONG_TYPE,
    );
    assert_denied(
        write(secret(DOCKER_TYPE, false, json!({}), docker_data())).await,
        &it,
        "secrets",
        NO_LABEL,
    );
    let mut extra = docker_data();
    extra["extra"] = "eA==".into();
    assert_denied(
        write(secret(DOCKER_TYPE, true, json!({}), extra)).await,
        &it,
        "secrets",
        DATA_KEYS,
    );
    assert!(get_secret(&client, &empty, "awsecr-cred").await.is_none());

    // Someone else's Secret of our name: neither taken over (what --force would do) nor changed.
    let before = get_secret(&client, &foreign, "awsecr-cred").await.unwrap();
    let mut take_over = apply_params(false);
    take_over.force = true;
    let ours = secret(DOCKER_TYPE, true, json!({}), docker_data());
    assert_denied(
        secrets(&foreign)
            .patch("awsecr-cred", &take_over, &Patch::Apply(&ours))
            .await,
        &it,
        "secret-owner",
        NOT_OURS,
    );
    // Relabelled as ours, with another payload: the content is fine, the owner is not.
    let relabel = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "ecr-refresh"}}, "data": docker_data()});
    assert_denied(
        secrets(&foreign)
            .patch(
                "awsecr-cred",
                &PatchParams::default(),
                &Patch::Merge(&relabel),
            )
            .await,
        &it,
        "secret-owner",
        NOT_OURS,
    );
    let after = get_secret(&client, &foreign, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // ServiceAccounts: only our imagePullSecrets entry and our annotation may change.
    let accounts = Api::<ServiceAccount>::namespaced(it.sa.clone(), &foreign);
    let before = get_sa(&client, &foreign, "default").await;
    let merge = |patch: serde_json::Value| {
        let accounts = accounts.clone();
        async move {
            accounts
                .patch("default", &PatchParams::default(), &Patch::Merge(&patch))
                .await
        }
    };
    let workload_identity = json!({"metadata": {"annotations": {"iam.gke.io/gcp-service-account": "admin@project.iam.gserviceaccount.com"}}});
    assert_denied(
        merge(workload_identity).await,
        &it,
        "service-accounts",
        SA_ANNOTATION,
    );
    assert_denied(
        merge(json!({"automountServiceAccountToken": false})).await,
        &it,
        "service-accounts",
        SA_AUTOMOUNT,
    );
    assert_denied(
        merge(json!({"imagePullSecrets": [{"name": "awsecr-cred"}]})).await,
        &it,
        "service-accounts",
        SA_ENTRIES,
    );
    let theirs_linked =
        json!({"metadata": {"annotations": {"ecr-refresh/linked": "awsecr-cred,theirs"}}});
    assert_denied(
        merge(theirs_linked).await,
        &it,
        "service-accounts",
        SA_LINKED,
    );
    let after = get_sa(&client, &foreign, "default").await;
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
}

/// Finalizers, owner references and `immutable` on a Secret: the tool sends none of them, and
/// each would let a stolen token keep a Secret (and its namespace) from being deleted, hand it
/// to the garbage collector, or block every later write.
#[tokio::test]
async fn finalizers_owner_references_and_immutable_are_denied_on_secrets() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, empty, _) = install_with_policies(&client, "meta", &[]).await;
    let secrets = Api::<Secret>::namespaced(it.sa.clone(), &empty);
    let ours = secret(DOCKER_TYPE, true, json!({}), docker_data());
    // Our Secret with one more field: `immutable` at the top, the others in its metadata.
    let with = |field: &str, value: serde_json::Value| {
        let mut s = ours.clone();
        match field {
            "immutable" => s[field] = value,
            _ => s["metadata"][field] = value,
        }
        s
    };
    let hold = || json!(["example.com/hold"]);
    let owner = || json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": "00000000-0000-0000-0000-000000000001"}]);
    let create = |s: serde_json::Value| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch("awsecr-cred", &apply_params(false), &Patch::Apply(&s))
                .await
        }
    };
    // Created with any of them: refused, and nothing is created.
    for (field, value, message) in [
        ("finalizers", hold(), FINALIZERS),
        ("ownerReferences", owner(), OWNER_REFERENCES),
        ("immutable", json!(true), IMMUTABLE),
    ] {
        assert_denied(create(with(field, value)).await, &it, "secrets", message);
    }
    assert!(get_secret(&client, &empty, "awsecr-cred").await.is_none());

    // Added to our Secret: refused, and it stays as it was.
    create(ours.clone()).await.expect("our own Secret");
    let before = get_secret(&client, &empty, "awsecr-cred").await.unwrap();
    let merge = |patch: serde_json::Value| {
        let secrets = secrets.clone();
        async move {
            secrets
                .patch(
                    "awsecr-cred",
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
        }
    };
    for (patch, message) in [
        (json!({"metadata": {"finalizers": hold()}}), FINALIZERS),
        (
            json!({"metadata": {"ownerReferences": owner()}}),
            OWNER_REFERENCES,
        ),
        (json!({"immutable": true}), IMMUTABLE),
    ] {
        assert_denied(merge(patch).await, &it, "secrets", message);
    }
    // Someone else's finalizer on our Secret stays: the token may not remove it either.
    merge_as_admin::<Secret>(
        &client,
        &empty,
        "awsecr-cred",
        json!({"metadata": {"finalizers": hold()}}),
    )
    .await;
    assert_denied(
        merge(json!({"metadata": {"finalizers": null}})).await,
        &it,
        "secrets",
        FINALIZERS,
    );
    let after = get_secret(&client, &empty, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.finalizers,
        Some(vec!["example.com/hold".to_string()])
    );
    assert_eq!(
        after.metadata.owner_references,
        before.metadata.owner_references
    );
    assert_eq!(after.immutable, None);
    // The tool still writes it (a forced apply keeps the admin's finalizer), then it can go.
    create(ours.clone())
        .await
        .expect("our write, finalizer kept");
    merge_as_admin::<Secret>(
        &client,
        &empty,
        "awsecr-cred",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
}

/// A ServiceAccount as a GitOps tool applies it (server-side apply, its own field manager):
/// its workload-identity annotation and the pull Secret it lists.
async fn gitops_service_account(client: &Client, ns: &str) {
    let sa = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default", "annotations": {"iam.gke.io/gcp-service-account": "app@project.iam.gserviceaccount.com"}},
        "imagePullSecrets": [{"name": "theirs"}],
    });
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .patch("default", &PatchParams::apply("gitops"), &Patch::Apply(&sa))
        .await
        .unwrap();
}

/// managedFields say what a later server-side apply removes: the token may not move a GitOps
/// tool's annotation into an entry of its own (the apply that drops it would then leave it),
/// while the server's own bookkeeping for the tool's patches (taking imagePullSecrets over from
/// the GitOps entry) passes.
#[tokio::test]
async fn a_service_accounts_managed_fields_cannot_be_rewritten() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, ..) = install_with_policies(&client, "fields", &[]).await;
    // No `default` ServiceAccount yet: the GitOps apply makes it, so its entry is the only one.
    let ns = unique("fields");
    create_namespace(&client, &ns, false).await;
    gitops_service_account(&client, &ns).await;
    let before = get_sa(&client, &ns, "default").await;
    let gitops = before.metadata.managed_fields.clone().unwrap();
    assert_eq!(gitops.len(), 1, "{gitops:?}");
    // The GitOps entry without the annotation, and the annotation claimed under our name.
    let mut stripped = serde_json::to_value(&gitops[0]).unwrap();
    stripped["fieldsV1"] = json!({"f:imagePullSecrets": {}});
    let mut claimed = serde_json::to_value(&gitops[0]).unwrap();
    claimed["manager"] = "ecr-refresh".into();
    claimed["operation"] = "Update".into();
    claimed["fieldsV1"] =
        json!({"f:metadata": {"f:annotations": {"f:iam.gke.io/gcp-service-account": {}}}});
    let rewrites = [
        json!([{"op": "replace", "path": "/metadata/managedFields", "value": [stripped, claimed]}]),
        // A manager of another name claiming it beside GitOps.
        json!([{"op": "add", "path": "/metadata/managedFields/-", "value": {"manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": claimed["fieldsV1"]}}]),
        // Every entry dropped ([{}] resets managedFields).
        json!([{"op": "replace", "path": "/metadata/managedFields", "value": [{}]}]),
    ];
    for ops in rewrites {
        let attempt = json_patch_sa(&it.sa, &client, &ns, ops).await;
        assert_denied(attempt, &it, "service-accounts", SA_MANAGED_FIELDS);
    }
    let after = get_sa(&client, &ns, "default").await;
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );

    // GitOps still owns its annotation: its next apply without it removes it.
    let dropped = json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "default"},
        "imagePullSecrets": [{"name": "theirs"}],
    });
    Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .patch(
            "default",
            &PatchParams::apply("gitops"),
            &Patch::Apply(&dropped),
        )
        .await
        .unwrap();
    let annotations = get_sa(&client, &ns, "default").await.metadata.annotations;
    assert!(
        !annotations
            .unwrap_or_default()
            .contains_key("iam.gke.io/gcp-service-account"),
        "the GitOps apply left the annotation it dropped"
    );

    // The tool's own link and unlink, which take imagePullSecrets over from the GitOps entry.
    gitops_service_account(&client, &ns).await;
    let link = json!([
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "awsecr-cred"}},
        {"op": "add", "path": "/metadata/annotations/ecr-refresh~1linked", "value": "awsecr-cred"},
    ]);
    json_patch_sa(&it.sa, &client, &ns, link)
        .await
        .expect("link");
    let linked = get_sa(&client, &ns, "default").await;
    let managers: Vec<_> = linked
        .metadata
        .managed_fields
        .unwrap()
        .into_iter()
        .map(|e| (e.manager.unwrap(), e.fields_v1.unwrap().0))
        .collect();
    assert!(
        managers
            .iter()
            .any(|(m, f)| m == "ecr-refresh" && f.get("f:imagePullSecrets").is_some()),
        "the server moved imagePullSecrets to our entry: {managers:?}"
    );
    let unlink = json!([
        {"op": "remove", "path": "/imagePullSecrets/1"},
        {"op": "remove", "path": "/metadata/annotations/ecr-refresh~1linked"},
    ]);
    json_patch_sa(&it.sa, &client, &ns, unlink)
        .await
        .expect("unlink");
    // And sync itself, over the GitOps ServiceAccount.
    let out = run_as(&it, &["sync", "-n", &ns]).await;
    out.assert_code(0);
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["theirs", "awsecr-cred"]
    );
}

/// allow-force + allow-delete: labelling someone else's Secret ours while keeping their
/// payload is refused, so the delete that would follow still meets their Secret and is refused
/// too; `sync --force` (which writes a new token) still takes it over.
#[tokio::test]
async fn labelling_someone_elses_secret_ours_then_deleting_it_is_denied_with_allow_force() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, _, foreign) =
        install_with_policies(&client, "relabel", &["allow-delete", "allow-force"]).await;
    let secrets = Api::<Secret>::namespaced(it.sa.clone(), &foreign);
    let label = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "ecr-refresh"}}});
    assert_denied(
        secrets
            .patch(
                "awsecr-cred",
                &PatchParams::default(),
                &Patch::Merge(&label),
            )
            .await,
        &it,
        "secret-owner",
        FORCE_KEEPS,
    );
    // The same label as a forced apply of their own payload.
    let mut theirs_relabelled = secret(DOCKER_TYPE, true, json!({}), json!({}));
    theirs_relabelled["data"][".dockerconfigjson"] =
        base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, FOREIGN_PAYLOAD)
            .into();
    let mut take_over = apply_params(false);
    take_over.force = true;
    assert_denied(
        secrets
            .patch("awsecr-cred", &take_over, &Patch::Apply(&theirs_relabelled))
            .await,
        &it,
        "secret-owner",
        FORCE_KEEPS,
    );
    assert_denied(
        secrets
            .delete("awsecr-cred", &DeleteParams::default())
            .await,
        &it,
        "secret-owner",
        FORCE_DELETE,
    );
    let kept = get_secret(&client, &foreign, "awsecr-cred").await.unwrap();
    assert_eq!(kept.data.unwrap()[".dockerconfigjson"].0, FOREIGN_PAYLOAD);

    // sync --force replaces the payload with a token: taken over.
    let out = run_as(&it, &["sync", "-n", &foreign, "--force"]).await;
    out.assert_code(0);
    let taken = get_secret(&client, &foreign, "awsecr-cred").await;
    assert_ours(taken.clone(), &foreign);
    assert_ne!(
        taken.unwrap().data.unwrap()[".dockerconfigjson"].0,
        FOREIGN_PAYLOAD
    );
}

#[tokio::test]
async fn deleting_someone_elses_secret_is_denied_even_with_delete_granted() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let ns = TestNs::new("delete-foreign").await.name;
    create_foreign_secret(&client, &ns).await;

    let (delete_only, ..) = install_with_policies(&client, "delete", &["allow-delete"]).await;
    let attempt = Api::<Secret>::namespaced(delete_only.sa.clone(), &ns)
        .delete("awsecr-cred", &DeleteParams::default())
        .await;
    assert_denied(attempt, &delete_only, "secret-owner", NOT_OURS);

    // --force allowed: still no delete of someone else's Secret of our type (it is taken over).
    let (with_force, ..) =
        install_with_policies(&client, "delete-force", &["allow-delete", "allow-force"]).await;
    let attempt = Api::<Secret>::namespaced(with_force.sa.clone(), &ns)
        .delete("awsecr-cred", &DeleteParams::default())
        .await;
    assert_denied(attempt, &with_force, "secret-owner", FORCE_DELETE);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());

    // Nor one of Argo CD's, of another type: sync --force never replaces those.
    let argo = TestNs::new("delete-argo").await.name;
    let mut theirs = create_secret(&client, &argo, "awsecr-cred", "Opaque", &[("url", b"x")]).await;
    theirs.metadata.labels = Some(
        [(
            "argocd.argoproj.io/secret-type".to_string(),
            "repository".to_string(),
        )]
        .into(),
    );
    Api::<Secret>::namespaced(client.clone(), &argo)
        .replace("awsecr-cred", &PostParams::default(), &theirs)
        .await
        .unwrap();
    let attempt = Api::<Secret>::namespaced(with_force.sa.clone(), &argo)
        .delete("awsecr-cred", &DeleteParams::default())
        .await;
    assert_denied(attempt, &with_force, "secret-owner", FORCE_DELETE);
    assert!(get_secret(&client, &argo, "awsecr-cred").await.is_some());
}

/// A JSON patch of `ns/default`, sent as the tool sends it (src/serviceaccount/): guarded by
/// a `test` of the resourceVersion just read.
async fn json_patch_sa(
    sa: &Client,
    admin: &Client,
    ns: &str,
    ops: serde_json::Value,
) -> Result<serde_json::Value, kube::Error> {
    let rv = get_sa(admin, ns, "default")
        .await
        .metadata
        .resource_version
        .unwrap();
    let mut patch = vec![json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv})];
    patch.extend(ops.as_array().unwrap().iter().cloned());
    let request = http::Request::patch(format!(
        "/api/v1/namespaces/{ns}/serviceaccounts/default?fieldManager=ecr-refresh"
    ))
    .header("content-type", "application/json-patch+json")
    .body(serde_json::to_vec(&patch).unwrap())
    .unwrap();
    sa.request(request).await
}

/// Linking and unlinking as the tool does, with the annotation ecr-refresh/linked it records
/// its entry in (added to the annotations, or as the first one), is allowed.
#[tokio::test]
async fn the_tools_link_and_unlink_patches_pass() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, empty, _) = install_with_policies(&client, "patches", &[]).await;
    let ns = TestNs::listing("patches", &["theirs"]).await.name;
    let note = json!({"metadata": {"annotations": {"team": "a"}}});
    merge_as_admin::<ServiceAccount>(&client, &ns, "default", note).await;
    let link = json!([
        {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "awsecr-cred"}},
        {"op": "add", "path": "/metadata/annotations/ecr-refresh~1linked", "value": "awsecr-cred"},
    ]);
    json_patch_sa(&it.sa, &client, &ns, link)
        .await
        .expect("link");
    let first = json!([
        {"op": "add", "path": "/imagePullSecrets", "value": [{"name": "awsecr-cred"}]},
        {"op": "add", "path": "/metadata/annotations", "value": {"ecr-refresh/linked": "awsecr-cred"}},
    ]);
    json_patch_sa(&it.sa, &client, &empty, first)
        .await
        .expect("link the first entry");
    let sa = get_sa(&client, &ns, "default").await;
    assert_eq!(pull_secret_names(&sa), ["theirs", "awsecr-cred"]);
    let unlink = json!([
        {"op": "remove", "path": "/imagePullSecrets/1"},
        {"op": "remove", "path": "/metadata/annotations/ecr-refresh~1linked"},
    ]);
    json_patch_sa(&it.sa, &client, &ns, unlink)
        .await
        .expect("unlink");
    let unlink_last = json!([
        {"op": "remove", "path": "/imagePullSecrets"},
        {"op": "remove", "path": "/metadata/annotations"},
    ]);
    json_patch_sa(&it.sa, &client, &empty, unlink_last)
        .await
        .expect("unlink the last entry");
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["theirs"]
    );
    assert!(get_sa(&client, &empty, "default")
        .await
        .image_pull_secrets
        .is_none());
}

#[tokio::test]
async fn sync_and_status_work_through_the_policy() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, ..) = install_with_policies(&client, "through", &[]).await;
    let base = unique("through");
    let [a, b] = ["a", "b"].map(|s| format!("{base}-{s}"));
    create_namespace(&client, &a, true).await;
    create_namespace_listing(&client, &b, &["theirs"]).await;
    // An ECR that rotates its token, as the real one does, valid for 12 hours.
    let ecr =
        common::fake_ecr::FakeEcr::start(common::fake_ecr::FakeEcr::valid_for_12h("first")).await;
    let sync = || {
        Run::sync()
            .env("KUBECONFIG", &it.kubeconfig)
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", &format!("{base}-*"), "-o", "json"])
    };
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 2, "{}", out.stdout());
    assert_eq!(
        pull_secret_names(&get_sa(&client, &b, "default").await),
        ["theirs", "awsecr-cred"]
    );
    // Its Events pass the events policy too: a SecretCreated each, and no warning.
    assert!(out.json().get("warnings").is_none(), "{}", out.stdout());
    for ns in [&a, &b] {
        let events = our_events(&client, ns).await;
        let reasons: Vec<_> = events.values().map(|e| e.reason.clone()).collect();
        assert_eq!(reasons, [Some("SecretCreated".to_string())], "{ns}");
    }
    // Nothing due: nothing written. Then --refresh-all rewrites both with the new token.
    ecr.set_body(common::fake_ecr::FakeEcr::valid_for_12h("second"));
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 2, "{}", out.stdout());
    // Someone else's Argo CD label on our Secret does not keep our next write out.
    let label = json!({"metadata": {"labels": {"argocd.argoproj.io/secret-type": "repository"}}});
    merge_as_admin::<Secret>(&client, &a, "awsecr-cred", label).await;
    let out = sync().args(["--refresh-all"]).run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["updated"], 2, "{}", out.stdout());
    let written = dockerconfig(&get_secret(&client, &a, "awsecr-cred").await.unwrap());
    assert_eq!(written["auths"][HOST]["password"], "second");
    let out = Run::bare()
        .env("KUBECONFIG", &it.kubeconfig)
        .args(["status", "-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["healthy"], 2, "{}", out.stdout());
}

/// A data key a tenant adds to our Secret made every later write of ours
/// fail with the policy's 403 ("exactly one data key"), for good, while `status` said healthy.
/// Now `status` flags it, and the next pass (due or not: the Secret changed since our last
/// write) removes the key with a conditional JSON patch the policy admits, says so, and
/// writes; later passes stay quiet.
#[tokio::test]
async fn a_data_key_added_by_a_tenant_is_removed_through_the_policy() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, ..) = install_with_policies(&client, "strays", &[]).await;
    let base = unique("strays");
    let ns = format!("{base}-a");
    create_namespace(&client, &ns, true).await;
    let ecr =
        common::fake_ecr::FakeEcr::start(common::fake_ecr::FakeEcr::valid_for_12h("first")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync()
            .env("KUBECONFIG", &it.kubeconfig)
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", glob.as_str(), "-o", "json"])
    };
    sync().run().assert_code(0);
    merge_as_admin::<Secret>(
        &client,
        &ns,
        "awsecr-cred",
        json!({"data": {"note": "bWluZQ=="}}),
    )
    .await;
    let status = || {
        Run::bare()
            .env("KUBECONFIG", &it.kubeconfig)
            .args(["status", "-n", glob.as_str(), "-o", "json"])
            .run()
    };
    let out = status();
    out.assert_code(1);
    assert!(out.stdout().contains("note"), "{}", out.stdout());
    ecr.set_body(common::fake_ecr::FakeEcr::valid_for_12h("second"));
    let out = sync().args(["--refresh-all"]).run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(outcome(&report, &ns)["outcome"], "updated", "{report:#}");
    assert!(
        report["warnings"].to_string().contains("note"),
        "{report:#}"
    );
    let s = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        s.data.as_ref().unwrap().keys().collect::<Vec<_>>(),
        [".dockerconfigjson"]
    );
    assert_eq!(dockerconfig(&s)["auths"][HOST]["password"], "second");
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 1, "{}", out.stdout());
    status().assert_code(0);
}

/// `run` as the install's ServiceAccount: `sync`/`prune` args plus `-o json`.
async fn run_as(it: &Install, args: &[&str]) -> RunOutput {
    Run::bare()
        .env("KUBECONFIG", &it.kubeconfig)
        .args(args)
        .args(["-o", "json"])
        .run()
}

/// Someone else's Secret of our name but another type, and one of ours by label of another type.
async fn wrong_type_secrets(client: &Client, theirs: &str, ours: &str) {
    create_secret(
        client,
        theirs,
        "awsecr-cred",
        "Opaque",
        &[("password", b"theirs")],
    )
    .await;
    create_secret(client, ours, "awsecr-cred", "Opaque", &[("x", b"x")]).await;
    let label = json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": "ecr-refresh"}}});
    merge_as_admin::<Secret>(client, ours, "awsecr-cred", label).await;
}

/// Sets up someone else's object: a merge patch as the cluster admin.
async fn merge_as_admin<K>(client: &Client, ns: &str, name: &str, patch: serde_json::Value)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[track_caller]
fn assert_ours(secret: Option<Secret>, ns: &str) {
    let s = secret.unwrap_or_else(|| panic!("{ns}: no Secret"));
    assert_eq!(s.type_.as_deref(), Some(DOCKER_TYPE), "{ns}");
    assert_eq!(
        s.metadata.labels.unwrap_or_default()["app.kubernetes.io/managed-by"],
        "ecr-refresh",
        "{ns}"
    );
}

/// `sync --force`, `prune` and `prune --uninstall` through the policy, with the components
/// that grant what they need (deploy/allow-delete, deploy/allow-force).
#[tokio::test]
async fn prune_uninstall_and_force_work_through_the_policy_with_the_components() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (base, [keep, drop, theirs_wrong, ours_wrong, theirs]) = namespaces(
        &client,
        "comp",
        ["keep", "drop", "theirs-wrong", "ours-wrong", "theirs"],
    )
    .await;
    wrong_type_secrets(&client, &theirs_wrong, &ours_wrong).await;
    create_foreign_secret(&client, &theirs).await;

    // allow-delete alone: our own Secret of the wrong type is replaced, someone else's is not.
    let (delete_only, ..) = install_with_policies(&client, "comp-delete", &["allow-delete"]).await;
    let out = run_as(
        &delete_only,
        &[
            "sync",
            "-n",
            &format!("{ours_wrong},{theirs_wrong}"),
            "--force",
        ],
    )
    .await;
    out.assert_code(1);
    let r = out.json();
    assert_eq!(outcome(&r, &ours_wrong)["outcome"], "updated", "{r:#}");
    assert!(error_of(&r, &theirs_wrong).contains(NOT_OURS), "{r:#}");
    assert_eq!(
        get_secret(&client, &theirs_wrong, "awsecr-cred")
            .await
            .unwrap()
            .type_
            .as_deref(),
        Some("Opaque")
    );

    // With allow-force: someone else's Secret is replaced (another type) or taken over (ours).
    let (it, ..) =
        install_with_policies(&client, "comp-force", &["allow-delete", "allow-force"]).await;
    let out = run_as(
        &it,
        &[
            "sync",
            "-n",
            &format!("{keep},{drop},{theirs_wrong},{theirs}"),
            "--force",
        ],
    )
    .await;
    out.assert_code(0);
    for ns in [&keep, &drop, &theirs_wrong, &theirs] {
        assert_ours(get_secret(&client, ns, "awsecr-cred").await, ns);
    }

    // prune: `drop` is no longer selected.
    let out = run_as(&it, &["prune", "-x", &drop]).await;
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), &drop)["outcome"], "pruned");
    assert!(get_secret(&client, &drop, "awsecr-cred").await.is_none());
    assert!(pull_secret_names(&get_sa(&client, &drop, "default").await).is_empty());
    assert!(get_secret(&client, &keep, "awsecr-cred").await.is_some());

    // prune --uninstall: gone everywhere.
    let out = run_as(&it, &["prune", "--uninstall"]).await;
    out.assert_code(0);
    for ns in [&keep, &theirs_wrong, &ours_wrong, &theirs] {
        assert!(
            get_secret(&client, ns, "awsecr-cred").await.is_none(),
            "{ns}"
        );
        assert!(
            pull_secret_names(&get_sa(&client, ns, "default").await).is_empty(),
            "{ns}"
        );
    }
    let _ = base;
}

/// Without the admission API (before 1.30) deploy/ leaves the policy out with a component, and
/// the same RBAC does the same work; on a newer server it works that way too.
#[tokio::test]
async fn the_same_rbac_works_without_the_policy() {
    let _suite = suite::exclusive().await;
    let client = admin().await;
    let kinds = |objects: &[serde_json::Value]| {
        let mut k: Vec<String> = objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        k.sort();
        k
    };
    let without = render_deploy(&["without-admission-policy", "allow-delete"]);
    let mut expected: Vec<serde_json::Value> = render_deploy(&["allow-delete"])
        .into_iter()
        .filter(|o| {
            !o["apiVersion"]
                .as_str()
                .unwrap()
                .starts_with("admissionregistration.k8s.io/")
        })
        .collect();
    assert_eq!(kinds(&without), kinds(&expected));
    expected.retain(|o| o["kind"] == "ClusterRole");
    assert!(expected.len() == 2, "{expected:#?}");
    if !serves_admission_policies(&client).await {
        // Why the component exists: this server refuses the policy itself.
        let err = try_kubectl(
            &["apply", "--dry-run=server", "-f", "-"],
            Some(&repo_file("deploy/admission-policy.yaml")),
        )
        .expect_err("a server without admissionregistration.k8s.io/v1 policies");
        assert!(
            err.contains("could not find the requested resource")
                || err.contains("no matches for kind"),
            "{err}"
        );
    }

    let it = install("no-policy", &["without-admission-policy", "allow-delete"]).await;
    let (_, [ns, dropped, wrong]) =
        namespaces(&client, "no-policy", ["ns", "dropped", "wrong"]).await;
    create_secret(&client, &wrong, "awsecr-cred", "Opaque", &[("x", b"x")]).await;
    let out = run_as(&it, &["sync", "-n", &format!("{ns},{dropped}")]).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 2);
    let out = run_as(&it, &["sync", "-n", &wrong, "--force"]).await;
    out.assert_code(0);
    assert_ours(get_secret(&client, &wrong, "awsecr-cred").await, &wrong);
    let out = run_as(&it, &["prune", "-x", &dropped]).await;
    out.assert_code(0);
    assert!(get_secret(&client, &dropped, "awsecr-cred").await.is_none());
    assert_ours(get_secret(&client, &ns, "awsecr-cred").await, &ns);
}

/// The CronJob's token may write only ecr-refresh's own Events (its reportingController and
/// label), about a Secret, ServiceAccount or Pod of the Event's namespace: an Event forged in
/// another controller's name, or about another kind of object, is refused.
#[tokio::test]
async fn a_forged_event_is_denied() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (it, empty, _) = install_with_policies(&client, "pol-ev", &[]).await;
    let events = Api::<Event>::namespaced(it.sa.clone(), &empty);
    let event = |controller: &str, kind: &str, namespace: &str, labelled: bool| -> Event {
        let labels = if labelled {
            json!({"app.kubernetes.io/managed-by": "ecr-refresh"})
        } else {
            json!({})
        };
        serde_json::from_value(json!({
            "metadata": {"generateName": "probe-", "labels": labels},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": controller,
            "reportingInstance": "probe",
            "action": "Sync",
            "reason": "Probe",
            "type": "Warning",
            "note": "probe",
            "regarding": {"apiVersion": "v1", "kind": kind, "namespace": namespace, "name": "default"}
        }))
        .unwrap()
    };
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    // Its own, as sync writes them: admitted.
    for kind in ["Secret", "ServiceAccount", "Pod"] {
        events
            .create(&pp, &event("ecr-refresh", kind, &empty, true))
            .await
            .unwrap_or_else(|e| panic!("our Event about a {kind}: {e}"));
    }
    let forged = event("kubelet", "Pod", &empty, true);
    wait_until_denied(
        "ecr-refresh-events",
        "reportingController is ecr-refresh",
        || events.create(&pp, &forged),
    )
    .await;
    let cases = [
        (
            event("kubelet", "Pod", &empty, true),
            "reportingController is ecr-refresh",
        ),
        (
            event("ecr-refresh", "Pod", &empty, false),
            "labelled app.kubernetes.io/managed-by",
        ),
        (
            event("ecr-refresh", "ConfigMap", &empty, true),
            "only about a Secret, ServiceAccount or Pod",
        ),
    ];
    for (forged, message) in cases {
        assert_denied(events.create(&pp, &forged).await, &it, "events", message);
    }
    // RBAC alone: no core/v1 Events (the policy would refuse them too).
    let core = Api::<k8s_openapi::api::core::v1::Event>::namespaced(it.sa.clone(), &empty);
    let plain: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "metadata": {"generateName": "probe-"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": empty, "name": "x"},
        "reason": "Probe", "message": "probe", "type": "Warning"
    }))
    .unwrap();
    match core.create(&pp, &plain).await {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("a core/v1 Event must be refused: {other:?}"),
    }
}

/// What deploy/argocd renders, with Argo CD in namespace `argocd` (one of the test's own): its
/// Role and RoleBinding there, the settings naming it, and the policy's argocdNamespace
/// `'<argocd>'`, or `''` as without the component when not `configured`.
fn argocd_objects(argocd: &str, configured: bool) -> Vec<serde_json::Value> {
    let mut objects = render_deploy(&["argocd"]);
    let mut moved = Vec::new();
    for o in &mut objects {
        if o["metadata"]["namespace"] == "argocd" {
            o["metadata"]["namespace"] = argocd.into();
            moved.push(o["kind"].as_str().unwrap().to_string());
        }
        if let Some(v) = o.pointer_mut("/data/ECR_REFRESH_ARGOCD_NAMESPACE") {
            *v = argocd.into();
            moved.push("settings".into());
        }
        let variables = o
            .pointer_mut("/spec/variables")
            .and_then(|v| v.as_array_mut());
        for v in variables.into_iter().flatten() {
            if v["name"] == "argocdNamespace" && v["expression"] == "'argocd'" {
                let ns = if configured { argocd } else { "" };
                v["expression"] = format!("'{ns}'").into();
                moved.push("argocdNamespace".into());
            }
        }
    }
    moved.sort();
    assert_eq!(
        moved,
        ["Role", "RoleBinding", "argocdNamespace", "settings"],
        "deploy/argocd names namespace argocd in its Role, RoleBinding, settings and policy variable"
    );
    objects
}

/// [`install`] of deploy/ with deploy/argocd (see [`argocd_objects`]), once its policies are in
/// effect.
async fn install_argocd(client: &Client, prefix: &str, argocd: &str, configured: bool) -> Install {
    let it = install_objects(prefix, &argocd_objects(argocd, configured)).await;
    wait_for_policies(client, &it, false).await;
    it
}

/// deploy/argocd's Role and RoleBinding for `it` once more, in `ns`, over Secrets `names`: RBAC
/// allowing there what it allows in Argo CD's namespace, so that only the policy stands in the
/// way.
fn grant_argocd_rbac(it: &Install, ns: &str, names: &[&str]) {
    let rbac: Vec<_> = argocd_objects(ns, true)
        .into_iter()
        .filter(|o| o["metadata"]["name"] == "ecr-refresh-argocd")
        .map(|mut o| {
            o["metadata"]["name"] = "ecr-refresh-argocd-more".into();
            match o.pointer_mut("/roleRef/name") {
                Some(role) => *role = "ecr-refresh-argocd-more".into(),
                None => o["rules"][0]["resourceNames"] = json!(names),
            }
            o
        })
        .collect();
    assert_eq!(rbac.len(), 2);
    apply_objects_renamed(&rbac, &it.id);
}

/// RBAC takes a moment too: retry a dry-run apply of `s` until RBAC no longer refuses it
/// (whatever the policy then says).
async fn wait_until_granted(it: &Install, ns: &str, s: &serde_json::Value) {
    let name = s["metadata"]["name"].as_str().unwrap();
    let secrets = Api::<Secret>::namespaced(it.sa.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match secrets
            .patch(name, &apply_params(true), &Patch::Apply(s))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 403 && e.message.contains("cannot patch") => {
                assert!(
                    Instant::now() < deadline,
                    "{ns}/{name}: RBAC still refuses it after 60s: {e:?}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            _ => return,
        }
    }
}

/// The Secret `sync --argocd-namespace` writes for `host` (src/argocd.rs): an Argo CD
/// repository-credentials template named for the host, with `password` as the token.
fn repo_creds(host: &str, password: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {
            "name": format!("ecr-refresh.{host}"),
            "labels": {
                "app.kubernetes.io/managed-by": "ecr-refresh",
                "argocd.argoproj.io/secret-type": "repo-creds",
            },
            "annotations": {
                "ecr-refresh/expires-at": "2030-01-01T12:00:00Z",
                "ecr-refresh/registries": host,
                "ecr-refresh/request": "probe",
            },
        },
        "type": "Opaque",
        "data": {
            "enableOCI": b64("true"), "password": b64(password), "type": b64("helm"),
            "url": b64(&format!("{host}/")), "username": b64("AWS"),
        },
    })
}

/// `repo_creds(HOST, ..)` with one change at a JSON `pointer`: `value`, or removed if null.
fn repo_creds_but(pointer: &str, value: serde_json::Value) -> serde_json::Value {
    let mut s = repo_creds(HOST, "token");
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let key = key.replace("~1", "/");
    let parent = s.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    match value {
        serde_json::Value::Null => parent.remove(&key),
        v => parent.insert(key, v),
    };
    s
}

/// A Secret data value: base64 of `s`.
fn b64(s: &str) -> serde_json::Value {
    base64::engine::Engine::encode(&base64::engine::general_purpose::STANDARD, s).into()
}

/// A server-side apply of `s` (under its own name) as the install's ServiceAccount.
async fn apply_as(
    it: &Install,
    ns: &str,
    s: &serde_json::Value,
    manager: &str,
) -> Result<Secret, kube::Error> {
    let name = s["metadata"]["name"].as_str().unwrap();
    Api::<Secret>::namespaced(it.sa.clone(), ns)
        .patch(name, &PatchParams::apply(manager), &Patch::Apply(s))
        .await
}

/// The request was refused by RBAC (not by a policy): `verb` is not granted on that Secret.
#[track_caller]
fn assert_rbac_denied<T: std::fmt::Debug>(result: Result<T, kube::Error>, verb: &str) {
    let wanted = format!("cannot {verb} resource \"secrets\"");
    match result {
        Err(kube::Error::Api(s))
            if s.code == 403
                && s.message.contains(&wanted)
                && !s.message.contains("ValidatingAdmissionPolicy") => {}
        other => panic!("expected RBAC's 403 ({wanted}), got {other:?}"),
    }
}

/// The real `sync --argocd-namespace` as the CronJob's identity through deploy/argocd: its
/// repo-creds Secrets pass the policy, created, left alone when nothing is due and rewritten
/// with --refresh-all; `status` reads them with the same rights.
#[tokio::test]
async fn sync_keeps_argocds_secrets_through_deploy_argocd() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let argocd = TestNs::new("argocd-sync").await.name;
    let team = TestNs::new("argocd-team").await.name;
    let it = install_argocd(&client, "argosync", &argocd, true).await;
    let ecr =
        common::fake_ecr::FakeEcr::start(common::fake_ecr::FakeEcr::valid_for_12h("first")).await;
    let sync = || {
        Run::sync()
            .env("KUBECONFIG", &it.kubeconfig)
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", &team, "--argocd-namespace", &argocd, "-o", "json"])
    };
    let outcomes = |report: &serde_json::Value| -> Vec<String> {
        report["argocd"]["secrets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                format!(
                    "{} {}",
                    s["name"].as_str().unwrap(),
                    s["outcome"].as_str().unwrap()
                )
            })
            .collect()
    };
    let both = |outcome: &str| -> Vec<String> {
        [DUAL_STACK_HOST, HOST]
            .map(|h| format!("ecr-refresh.{h} {outcome}"))
            .to_vec()
    };
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(outcomes(&out.json()), both("created"), "{}", out.stdout());
    assert!(out.json().get("warnings").is_none(), "{}", out.stdout());
    ecr.set_body(common::fake_ecr::FakeEcr::valid_for_12h("second"));
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(outcomes(&out.json()), both("unchanged"), "{}", out.stdout());
    let out = sync().args(["--refresh-all"]).run();
    out.assert_code(0);
    assert_eq!(outcomes(&out.json()), both("updated"), "{}", out.stdout());
    let stored = get_secret(&client, &argocd, &format!("ecr-refresh.{HOST}"))
        .await
        .unwrap();
    assert_eq!(stored.data.unwrap()["password"].0, b"second");
    let out = Run::bare()
        .env("KUBECONFIG", &it.kubeconfig)
        .args([
            "status",
            "-n",
            &team,
            "--argocd-namespace",
            &argocd,
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let healthy: Vec<_> = out.json()["argocd"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["healthy"].clone())
        .collect();
    assert_eq!(healthy, [true, true], "{}", out.stdout());

    // A registry whose names deploy/argocd does not list (now written, with --refresh-all):
    // RBAC's 403, and the report says which name to add where.
    let other = "210987654321";
    ecr.set_body(common::fake_ecr::FakeEcr::token_body(
        "third",
        common::now() + 12 * 3600,
        other,
        "us-east-1",
    ));
    let out = sync().args(["--refresh-all"]).run();
    out.assert_code(1);
    let name = format!("ecr-refresh.{other}.dkr.ecr.us-east-1.amazonaws.com");
    let failed = out.json()["argocd"]["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{}", out.stdout()));
    assert_eq!(failed["outcome"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("403")
            && error.contains(&format!(
                "add {name} to the resourceNames of deploy/argocd's Role"
            )),
        "{error}"
    );
}

/// The names of the Secrets in `ns`, as the admin lists them.
async fn secret_names(client: &Client, ns: &str) -> Vec<String> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect()
}

/// deploy/argocd: the CronJob's token writes the repo-creds Secrets `sync --argocd-namespace`
/// writes (both names of the registry), by server-side apply, created and then updated, and our
/// pull Secret there as everywhere; it reads nothing else in Argo CD's namespace: not
/// argocd-secret, not a list of its Secrets, and deletes nothing (`delete` is opt-in).
#[tokio::test]
async fn the_repo_creds_secrets_are_written_and_nothing_else_in_argocds_namespace_is_read() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let argocd = TestNs::new("argocd").await.name;
    create_secret(
        &client,
        &argocd,
        "argocd-secret",
        "Opaque",
        &[("server.secretkey", b"theirs")],
    )
    .await;
    let it = install_argocd(&client, "argocd", &argocd, true).await;
    for host in [HOST, DUAL_STACK_HOST] {
        let name = format!("ecr-refresh.{host}");
        assert!(get_secret(&client, &argocd, &name).await.is_none());
        for token in ["first", "second"] {
            apply_as(&it, &argocd, &repo_creds(host, token), "ecr-refresh")
                .await
                .unwrap_or_else(|e| panic!("{name} with token {token}: {e}"));
        }
        let stored = get_secret(&client, &argocd, &name).await.unwrap();
        assert_eq!(stored.type_.as_deref(), Some("Opaque"));
        let data = stored.data.unwrap();
        assert_eq!(data["password"].0, b"second");
        assert_eq!(data["url"].0, format!("{host}/").as_bytes());
    }
    let ours = secret(DOCKER_TYPE, true, json!({}), docker_data());
    apply_as(&it, &argocd, &ours, "ecr-refresh")
        .await
        .expect("our pull Secret in Argo CD's namespace");

    let secrets = Api::<Secret>::namespaced(it.sa.clone(), &argocd);
    let name = format!("ecr-refresh.{HOST}");
    secrets
        .get(&name)
        .await
        .expect("GET of a repo-creds Secret");
    assert_rbac_denied(secrets.get("argocd-secret").await, "get");
    assert_rbac_denied(secrets.list(&Default::default()).await, "list");
    assert_rbac_denied(
        secrets.delete(&name, &DeleteParams::default()).await,
        "delete",
    );
    // Nor a repo-creds Secret under a name deploy/argocd does not list.
    let github = repo_creds("github.com", "token");
    assert_rbac_denied(apply_as(&it, &argocd, &github, "attacker").await, "patch");
    let mut names = secret_names(&client, &argocd).await;
    names.sort();
    assert_eq!(
        names,
        [
            "argocd-secret".to_string(),
            "awsecr-cred".into(),
            format!("ecr-refresh.{DUAL_STACK_HOST}"),
            name,
        ]
    );
}

/// With Argo CD's namespace configured, every variation RBAC allows on the repo-creds Secret is
/// refused with the policy's message, and nothing is written.
#[tokio::test]
async fn every_other_repo_creds_secret_is_denied_with_the_policys_message() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (_, [argocd, other]) = namespaces(&client, "argocd-attack", ["argocd", "other"]).await;
    let it = install_argocd(&client, "argocd-attack", &argocd, true).await;
    // RBAC allows the same names in another namespace, and (a user's mistake) a name that is
    // no ECR registry's in Argo CD's: only the policy refuses these.
    let ecr_name = format!("ecr-refresh.{HOST}");
    grant_argocd_rbac(&it, &other, &[&ecr_name]);
    grant_argocd_rbac(&it, &argocd, &["ecr-refresh.github.com"]);
    for (ns, s) in [
        (&other, repo_creds(HOST, "token")),
        (&argocd, repo_creds("github.com", "token")),
    ] {
        wait_until_granted(&it, ns, &s).await;
    }
    let token_typed = {
        let mut s = repo_creds_but("/type", TOKEN_TYPE.into());
        s["metadata"]["annotations"]["kubernetes.io/service-account.name"] = "default".into();
        s
    };
    let mut our_name = repo_creds(HOST, "token");
    our_name["metadata"]["name"] = "awsecr-cred".into();
    let mut pull_secret_named = secret(DOCKER_TYPE, true, json!({}), docker_data());
    pull_secret_named["metadata"]["name"] = ecr_name.clone().into();
    let mut cluster_labelled = secret(DOCKER_TYPE, true, json!({}), docker_data());
    cluster_labelled["metadata"]["labels"]["argocd.argoproj.io/secret-type"] = "cluster".into();
    let cases = [
        (
            "a pull Secret under the repo-creds name",
            &argocd,
            pull_secret_named,
            WRONG_TYPE,
        ),
        (
            "a key more (project)",
            &argocd,
            repo_creds_but("/data/project", b64("default")),
            REPO_CREDS_SHAPE,
        ),
        (
            "type git",
            &argocd,
            repo_creds_but("/data/type", b64("git")),
            REPO_CREDS_SHAPE,
        ),
        (
            "username other than AWS",
            &argocd,
            repo_creds_but("/data/username", b64("admin")),
            REPO_CREDS_SHAPE,
        ),
        (
            "enableOCI false",
            &argocd,
            repo_creds_but("/data/enableOCI", b64("false")),
            REPO_CREDS_SHAPE,
        ),
        (
            "enableOCI missing",
            &argocd,
            repo_creds_but("/data/enableOCI", serde_json::Value::Null),
            REPO_CREDS_SHAPE,
        ),
        (
            "labelled repository (not repo-creds)",
            &argocd,
            repo_creds_but(
                "/metadata/labels/argocd.argoproj.io~1secret-type",
                "repository".into(),
            ),
            REPO_CREDS_SHAPE,
        ),
        (
            "url github.com/victim",
            &argocd,
            repo_creds_but("/data/url", b64("github.com/victim")),
            REPO_CREDS_URL,
        ),
        (
            "url of another registry than its name's",
            &argocd,
            repo_creds_but(
                "/data/url",
                b64("210987654321.dkr.ecr.us-east-1.amazonaws.com"),
            ),
            REPO_CREDS_URL,
        ),
        (
            // Argo CD matches a template's url as a plain prefix: <host> also prefixes
            // <host>.attacker.example/chart, which would get the token.
            "url the host without its slash",
            &argocd,
            repo_creds_but("/data/url", b64(HOST)),
            REPO_CREDS_URL,
        ),
        (
            "url with a scheme",
            &argocd,
            repo_creds_but("/data/url", b64(&format!("https://{HOST}"))),
            REPO_CREDS_URL,
        ),
        (
            "named for a host that is not ECR's, url that host",
            &argocd,
            repo_creds("github.com", "token"),
            REPO_CREDS_URL,
        ),
        (
            "under our pull Secret's name",
            &argocd,
            our_name.clone(),
            REPO_CREDS_URL,
        ),
        (
            "of type service-account-token",
            &argocd,
            token_typed,
            WRONG_TYPE,
        ),
        (
            "the exact shape in another namespace",
            &other,
            repo_creds(HOST, "token"),
            WRONG_TYPE,
        ),
        (
            "under our pull Secret's name in another namespace",
            &other,
            our_name,
            WRONG_TYPE,
        ),
        (
            "our pull Secret labelled as an Argo CD cluster",
            &other,
            cluster_labelled,
            ARGOCD_LABEL,
        ),
    ];
    for (what, ns, s, message) in cases {
        eprintln!("attack: {what} (in {ns})");
        assert_denied(
            apply_as(&it, ns, &s, "attacker").await,
            &it,
            "secrets",
            message,
        );
    }
    assert_eq!(secret_names(&client, &argocd).await, Vec::<String>::new());
    assert_eq!(secret_names(&client, &other).await, Vec::<String>::new());
}

/// Without Argo CD's namespace (the policy's argocdNamespace `''`, as deploy/ ships it) the
/// repo-creds shape is refused everywhere, even where RBAC grants its name.
#[tokio::test]
async fn without_argocds_namespace_the_repo_creds_secret_is_denied_everywhere() {
    let Some((_suite, client)) = policy_server().await else {
        return;
    };
    let (_, [argocd, other]) = namespaces(&client, "argocd-off", ["argocd", "other"]).await;
    let it = install_argocd(&client, "argocd-off", &argocd, false).await;
    let mut our_name = repo_creds(HOST, "token");
    our_name["metadata"]["name"] = "awsecr-cred".into();
    for (ns, s) in [
        (&argocd, repo_creds(HOST, "token")),
        (&argocd, our_name.clone()),
        (&other, our_name),
    ] {
        assert_denied(
            apply_as(&it, ns, &s, "ecr-refresh").await,
            &it,
            "secrets",
            WRONG_TYPE,
        );
    }
    assert_eq!(secret_names(&client, &argocd).await, Vec::<String>::new());
    assert_eq!(secret_names(&client, &other).await, Vec::<String>::new());
}
