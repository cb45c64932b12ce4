//! `oidc publish` and `oidc check` against the real apiserver: the documents written are the
//! ones it serves, rewritten for the public URL; served over real HTTPS (a test CA, port 443 on
//! a loopback address, as IAM requires no port), `check` names each drift.

use crate::common;

use std::path::Path;

use common::oidc::*;
use common::*;
use serde_json::Value;

/// What the apiserver serves at `path`, read with the admin's client.
async fn served(path: &str) -> Value {
    let client = admin().await;
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    client.request::<Value>(req).await.unwrap()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn publish(url: &str, out_dir: &Path) -> Run {
    Run::bare()
        .args([
            "oidc",
            "publish",
            "--issuer-url",
            url,
            "--account-id",
            ACCOUNT_ID,
        ])
        .arg_path("--out-dir", out_dir)
}

trait ArgPath {
    fn arg_path(self, flag: &str, p: &Path) -> Self;
}

impl ArgPath for Run {
    fn arg_path(self, flag: &str, p: &Path) -> Self {
        self.args([std::ffi::OsStr::new(flag), p.as_os_str()])
    }
}

#[tokio::test]
async fn publish_writes_the_live_documents_for_the_public_url() {
    let _suite = suite::shared().await;
    let parent = tempfile::tempdir().unwrap();
    let out_dir = parent.path().join("out");
    let url = format!("https://{}/clusters/test", loopback());
    let out = publish(&url, &out_dir).run();
    out.assert_code(0);

    // Only what it says it writes, and only under --out-dir.
    assert_eq!(files_under(parent.path()).len(), 3);
    assert_eq!(
        files_under(&out_dir),
        [
            "public/.well-known/openid-configuration",
            "public/openid/v1/jwks",
            "trust-policy.json"
        ]
    );
    let live_discovery = served("/.well-known/openid-configuration").await;
    let live_jwks = served("/openid/v1/jwks").await;
    let discovery = read_json(&out_dir.join("public/.well-known/openid-configuration"));
    assert_eq!(discovery["issuer"], url.as_str());
    assert_eq!(discovery["jwks_uri"], format!("{url}/openid/v1/jwks"));
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        live_discovery["id_token_signing_alg_values_supported"]
    );
    // The keys exactly as the apiserver serves them: the kids it signs with.
    assert_eq!(read_json(&out_dir.join("public/openid/v1/jwks")), live_jwks);
    assert!(!live_jwks["keys"].as_array().unwrap().is_empty());

    let id = url.trim_start_matches("https://");
    let policy = read_json(&out_dir.join("trust-policy.json"));
    let st = &policy["Statement"][0];
    assert_eq!(
        st["Principal"]["Federated"],
        format!("arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{id}")
    );
    assert_eq!(
        st["Condition"]["StringEquals"][format!("{id}:sub")],
        "system:serviceaccount:kube-system:ecr-refresh"
    );
    assert_eq!(
        st["Condition"]["StringEquals"][format!("{id}:aud")],
        "sts.amazonaws.com"
    );

    // The cluster's issuer is another one: the flag change, public issuer first.
    let cluster_issuer = live_discovery["issuer"].as_str().unwrap();
    let text = out.stdout();
    let first = text
        .find(&format!("--service-account-issuer={url}\n"))
        .unwrap_or_else(|| panic!("no new issuer flag:\n{text}"));
    let second = text
        .find(&format!("--service-account-issuer={cluster_issuer}\n"))
        .unwrap_or_else(|| panic!("no old issuer flag:\n{text}"));
    assert!(first < second, "{text}");
    for needle in [
        format!("--service-account-jwks-uri={url}/openid/v1/jwks"),
        format!("aws iam create-open-id-connect-provider --url {url} --client-id-list sts.amazonaws.com"),
        format!("file://{}", out_dir.join("trust-policy.json").display()),
        "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly".into(),
    ] {
        assert!(text.contains(&needle), "{needle} missing:\n{text}");
    }
    out.assert_no_secrets();
}

#[tokio::test]
async fn publish_refuses_a_url_iam_would_refuse_and_writes_nothing() {
    let _suite = suite::shared().await;
    let parent = tempfile::tempdir().unwrap();
    let out_dir = parent.path().join("out");
    for (url, says) in [
        (
            "http://oidc.example.com/c",
            "is http: IAM fetches the issuer's documents over HTTPS only",
        ),
        ("https://oidc.example.com:8443/c", "has a port (:8443)"),
        ("https://oidc.example.com/c/", "ends with '/'"),
        ("https://oidc.example.com/c?x=1", "has a query"),
    ] {
        publish(url, &out_dir)
            .run()
            .assert_code(2)
            .assert_stderr_contains("--issuer-url")
            .assert_stderr_contains(says);
        assert!(
            !out_dir.exists(),
            "{url}: wrote {:?}",
            files_under(parent.path())
        );
    }
}

/// A cluster that cannot be reached: exit 4, and nothing written.
#[tokio::test]
async fn publish_without_the_cluster_writes_nothing() {
    let _suite = suite::shared().await;
    let parent = tempfile::tempdir().unwrap();
    let out_dir = parent.path().join("out");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    publish("https://oidc.example.com/c", &out_dir)
        .env("KUBECONFIG", &kubeconfig)
        .run()
        .assert_code(4);
    assert!(!out_dir.exists());
}

#[tokio::test]
async fn check_names_each_drift() {
    let _suite = suite::shared().await;
    let ip = loopback();
    let url = format!("https://{ip}/c");
    let ca = TestCa::new(&ip);
    let out_dir = tempfile::tempdir().unwrap();
    publish(&url, out_dir.path()).run().assert_code(0);
    let check = || {
        Run::bare()
            .args(["oidc", "check", "--issuer-url", &url, "-o", "json"])
            .env("SSL_CERT_FILE", ca.path("ca.crt"))
    };
    let kinds = |out: &RunOutput| -> Vec<String> {
        out.json()["drift"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["kind"].as_str().unwrap().to_string())
            .collect()
    };

    // Nothing served yet.
    let out = check().run();
    out.assert_code(1);
    assert_eq!(
        kinds(&out),
        [
            "discovery_unavailable",
            "cluster_issuer",
            "jwks_unavailable"
        ]
    );

    let public = out_dir.path().join("public");
    let _server = HttpsDir::start(&url, &ca, &public);
    // Served as published: only the issuer the test cluster signs with differs (its
    // --service-account-issuer is not the public URL).
    let out = check().run();
    out.assert_code(1);
    assert_eq!(kinds(&out), ["cluster_issuer"], "{}", out.stdout());

    // A signing key rotated and not republished: the published JWKS lacks the live kid.
    let jwks_path = public.join("openid/v1/jwks");
    let mut jwks = read_json(&jwks_path);
    let live_kid = jwks["keys"][0]["kid"].as_str().unwrap().to_string();
    jwks["keys"][0]["kid"] = "retired-key".into();
    std::fs::write(&jwks_path, jwks.to_string()).unwrap();
    let out = Run::bare()
        .args(["oidc", "check", "--issuer-url", &url])
        .env("SSL_CERT_FILE", ca.path("ca.crt"))
        .run();
    out.assert_code(1).assert_stdout_contains(&format!(
        "key_missing: the cluster signs with key \"{live_kid}\", which is not published"
    ));

    // The certificate is checked: without the test CA the documents cannot be read.
    let out = Run::bare()
        .args(["oidc", "check", "--issuer-url", &url, "-o", "json"])
        .run();
    out.assert_code(1);
    assert!(
        out.stdout().contains("certificate") || out.stdout().contains("UnknownIssuer"),
        "{}",
        out.stdout()
    );
}
