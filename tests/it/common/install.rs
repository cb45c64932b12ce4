//! Installing the manifests in deploy/ as a cluster admin would (with `kubectl`), and running
//! the tool as the ServiceAccount they create, with exactly the rights they grant.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::env;

/// A file of this repository, e.g. `deploy/rbac.yaml`.
pub fn repo_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The documents of a YAML file of this repository (empty ones dropped), as JSON values.
pub fn repo_yaml(name: &str) -> Vec<serde_json::Value> {
    yaml_documents(&repo_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, serde_yaml::Error> {
    use serde::Deserialize as _;
    serde_yaml::Deserializer::from_str(text)
        .map(serde_json::Value::deserialize)
        .filter(|d| !matches!(d, Ok(serde_json::Value::Null)))
        .collect()
}

/// `kubectl` as the test cluster's admin; panics with its stderr if it fails.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> String {
    try_kubectl(args, stdin).unwrap_or_else(|stderr| panic!("kubectl {args:?}: {stderr}"))
}

/// `kubectl` as the test cluster's admin: its stdout, or its stderr if it failed.
pub fn try_kubectl(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(env().kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Applies a manifest under unique names so tests never share (or break) each other's RBAC:
/// every `name: ecr-refresh` becomes `name: <id>`, and each (from, to) of `extra` is replaced.
pub fn apply_renamed(manifest: &str, id: &str, extra: &[(&str, &str)]) {
    let mut text = manifest.replace("name: ecr-refresh\n", &format!("name: {id}\n"));
    for (from, to) in extra {
        assert!(text.contains(from), "manifest no longer contains {from:?}");
        text = text.replace(from, to);
    }
    kubectl(&["apply", "-f", "-"], Some(&text));
}

/// A kubeconfig (in `dir`) holding only a TokenRequest token for kube-system/<sa>: the tool
/// run with it has exactly the rights RBAC gives that ServiceAccount, as the CronJob's pod has.
pub fn token_kubeconfig(dir: &Path, sa: &str) -> PathBuf {
    let token = kubectl(&["-n", "kube-system", "create", "token", sa], None);
    let path = dir.join(format!("{sa}.kubeconfig"));
    write_kubeconfig(&path, &env().apiserver, token.trim());
    path
}

/// A kubeconfig with one cluster (the test server's self-signed certificate is not checked)
/// and one bearer token.
pub fn write_kubeconfig(path: &Path, server: &str, token: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
}

/// A client that holds what `kubeconfig` holds (e.g. one ServiceAccount's token).
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// What `kubectl kustomize` renders for deploy/ with these of its components (folders under
/// deploy/, e.g. `allow-delete`), the way a kustomization of the user's own includes them.
pub fn render_deploy(components: &[&str]) -> Vec<serde_json::Value> {
    let dir = tempfile::Builder::new()
        .prefix("kustomization")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    // kustomize takes relative paths only: climb from the folder to / first.
    let up = "../".repeat(dir.path().components().count() - 1);
    let deploy = format!(
        "{up}{}",
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .display()
            .to_string()
            .trim_start_matches('/')
    );
    let components: Vec<String> = components.iter().map(|c| format!("{deploy}/{c}")).collect();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        format!(
            "resources: [{deploy}]\ncomponents: [{}]\n",
            components.join(", ")
        ),
    )
    .unwrap();
    let rendered = kubectl(&["kustomize", dir.path().to_str().unwrap()], None);
    yaml_documents(&rendered).expect("kubectl kustomize output is YAML")
}

/// Installs rendered objects (but no CronJob) under names of this test's own, like
/// [`apply_renamed`]: every name that starts with `ecr-refresh`, and every reference to one,
/// starts with `id` instead, and the admission policies match `id`'s ServiceAccount.
pub fn apply_objects_renamed(objects: &[serde_json::Value], id: &str) {
    let rename = |v: &mut serde_json::Value, from: &str, to: &str| {
        if let Some(s) = v.as_str().filter(|s| s.contains(from)) {
            *v = s.replacen(from, to, 1).into();
        }
    };
    let username = format!(":{id}'");
    let mut items = Vec::new();
    for object in objects.iter().filter(|o| o["kind"] != "CronJob") {
        let mut o = object.clone();
        for path in ["/metadata/name", "/spec/policyName", "/roleRef/name"] {
            if let Some(v) = o
                .pointer_mut(path)
                .filter(|v| v.as_str().is_some_and(|s| s.starts_with("ecr-refresh")))
            {
                rename(v, "ecr-refresh", id);
            }
        }
        for subject in o
            .pointer_mut("/subjects")
            .and_then(|s| s.as_array_mut())
            .into_iter()
            .flatten()
        {
            rename(&mut subject["name"], "ecr-refresh", id);
        }
        for condition in o
            .pointer_mut("/spec/matchConditions")
            .and_then(|c| c.as_array_mut())
            .into_iter()
            .flatten()
        {
            rename(&mut condition["expression"], ":ecr-refresh'", &username);
        }
        items.push(o);
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
}

/// The server has admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies (Kubernetes 1.30+).
pub async fn serves_admission_policies(client: &kube::Client) -> bool {
    client
        .list_api_group_resources("admissionregistration.k8s.io/v1")
        .await
        .is_ok_and(|r| {
            r.resources
                .iter()
                .any(|r| r.name == "validatingadmissionpolicies")
        })
}
