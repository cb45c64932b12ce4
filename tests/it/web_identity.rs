//! `sync` with no AWS key: the ServiceAccount token of an apiserver whose issuer is a public
//! HTTPS URL, exchanged at an STS stand-in that really verifies it (scripts/oidc/sts_standin.py:
//! signature against the JWKS fetched from the published URL, iss, aud, sub, exp/nbf) for
//! credentials moto issues, which moto's ECR (IAM checks on) requires. Each wrong token is
//! refused with exit 3, a message naming web identity and the reason, and nothing written.

use crate::common;

use std::path::{Path, PathBuf};

use common::oidc::*;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};

const SUBJECT: &str = "system:serviceaccount:kube-system:ecr-refresh";
const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/ecr-refresh";

async fn client_of(cluster: &PublicIssuerCluster) -> kube::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(&cluster.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// `sync -n ns` as the CronJob's pod runs it with the web-identity component: no key, the
/// role's ARN and the token file, STS and ECR at the stand-ins.
fn sync_with_token(
    cluster: &PublicIssuerCluster,
    aws: &AwsStandIns,
    token_file: &std::path::Path,
    ns: &str,
) -> Run {
    Run::sync()
        .args(["-n", ns])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_ENDPOINT_URL", &aws.moto)
        .env("AWS_ENDPOINT_URL_STS", &aws.sts)
        .env("AWS_ROLE_ARN", ROLE_ARN)
        .env("AWS_ROLE_SESSION_NAME", "ecr-refresh")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", token_file)
}

/// A token of `kubectl create token` for kube-system/`sa`, written to a file as the kubelet
/// projects it.
fn token(
    cluster: &PublicIssuerCluster,
    dir: &std::path::Path,
    name: &str,
    sa: &str,
    audience: &str,
) -> std::path::PathBuf {
    let token = cluster.kubectl(&[
        "-n",
        "kube-system",
        "create",
        "token",
        sa,
        "--audience",
        audience,
        "--duration",
        "10m",
    ]);
    let path = dir.join(name);
    std::fs::write(&path, token.trim()).unwrap();
    path
}

/// `oidc publish` for `issuer` into `out_dir`, as the README's keyless steps run it.
fn publish(cluster: &PublicIssuerCluster, issuer: &str, out_dir: &Path) -> Run {
    Run::bare()
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args([
            "oidc",
            "publish",
            "--issuer-url",
            issuer,
            "--account-id",
            ACCOUNT_ID,
        ])
        .args([std::ffi::OsStr::new("--out-dir"), out_dir.as_os_str()])
}

/// Tokens STS must refuse, made in `dir`: what each is, its file, and the reason STS gives.
async fn wrong_tokens(
    cluster: &PublicIssuerCluster,
    dir: &Path,
) -> Vec<(&'static str, PathBuf, &'static str)> {
    // A namespace of the testenv apiserver, whose issuer is https://kubernetes.default.svc.
    let other = TestNs::new("webid-iss").await;
    // Each wrong token: exit 3, web identity and the reason named, nothing written.
    let wrong = [
        (
            "another ServiceAccount",
            token(cluster, dir, "other", "someone-else", "sts.amazonaws.com"),
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        ),
        (
            "a wrong audience",
            token(
                cluster,
                dir,
                "aud",
                "ecr-refresh",
                "https://kubernetes.default.svc",
            ),
            "Incorrect token audience",
        ),
        (
            "another issuer (the testenv apiserver's https://kubernetes.default.svc)",
            {
                let p = dir.join("iss");
                let t = install::kubectl(
                    &[
                        "-n",
                        &other.name,
                        "create",
                        "token",
                        "default",
                        "--audience",
                        "sts.amazonaws.com",
                    ],
                    None,
                );
                std::fs::write(&p, t.trim()).unwrap();
                p
            },
            "No OpenIDConnect provider found in your account for https://kubernetes.default.svc",
        ),
    ];
    // Signed with the cluster's own key, but expired, or not valid yet.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let good = std::fs::read_to_string(token(
        cluster,
        dir,
        "base",
        "ecr-refresh",
        "sts.amazonaws.com",
    ))
    .unwrap();
    let resigned = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let p = dir.join(name);
        std::fs::write(&p, resign(&good, &cluster.signing_key(), edit)).unwrap();
        p
    };
    let expired = resigned("expired", &|c| {
        c["iat"] = (now - 3600).into();
        c["nbf"] = (now - 3600).into();
        c["exp"] = (now - 60).into();
    });
    let early = resigned("early", &|c| c["nbf"] = (now + 3600).into());
    // The attacker's own key, under the kid the cluster publishes.
    let attacker_key = dir.join("attacker.key");
    sh(std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&attacker_key)
        .arg("2048"));
    let forged = dir.join("forged");
    std::fs::write(&forged, resign(&good, &attacker_key, |_| {})).unwrap();
    wrong
        .into_iter()
        .chain([
            ("an expired token", expired, "Token expired"),
            (
                "a token not valid yet",
                early,
                "Token is not valid yet (nbf)",
            ),
            (
                "a token signed with another key",
                forged,
                "Couldn't verify the token's signature",
            ),
        ])
        .collect()
}

#[tokio::test]
async fn sync_with_web_identity_and_every_refusal() {
    let _suite = suite::shared().await;
    let ip = loopback();
    let issuer = format!("https://{ip}/cluster");
    let ca = TestCa::new(&ip);
    let mut cluster = PublicIssuerCluster::start(&issuer);
    let client = client_of(&cluster).await;
    for sa in ["ecr-refresh", "someone-else"] {
        create_sa(&client, "kube-system", sa, &[]).await;
    }
    let ns = unique("webid");
    create_namespace(&client, &ns, true).await;

    // The README's keyless steps: publish, upload (here: serve), check.
    let out_dir = tempfile::tempdir().unwrap();
    publish(&cluster, &issuer, out_dir.path())
        .run()
        .assert_code(0)
        .assert_stdout_contains("The cluster already issues tokens with this issuer");
    let _served = HttpsDir::start(&issuer, &ca, &out_dir.path().join("public"));
    let kubeconfig = cluster.kubeconfig.clone();
    let check = || {
        Run::bare()
            .env("KUBECONFIG", &kubeconfig)
            .env("SSL_CERT_FILE", ca.path("ca.crt"))
            .args(["oidc", "check", "--issuer-url", &issuer])
    };
    check().run().assert_code(0).assert_stdout_contains("ok: ");

    let aws = AwsStandIns::start(&issuer, SUBJECT, &ca);
    let tokens = tempfile::tempdir().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);

    // ECR refuses what STS did not issue: a static key moto never made.
    let out = sync_with_token(&cluster, &aws, &tokens.path().join("none"), &ns)
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env_remove("AWS_ROLE_ARN")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "not-issued")
        .run();
    out.assert_code(3);
    assert!(secrets.get_opt("awsecr-cred").await.unwrap().is_none());

    let wrong = wrong_tokens(&cluster, tokens.path()).await;
    for (what, file, reason) in wrong {
        let out = sync_with_token(&cluster, &aws, &file, &ns).run();
        out.assert_code(3)
            .assert_stderr_contains("web identity")
            .assert_stderr_contains(reason);
        eprintln!("{what}: {}", out.stderr().trim());
        out.assert_no_secrets();
        assert!(
            secrets.get_opt("awsecr-cred").await.unwrap().is_none(),
            "{what}: a Secret was written"
        );
    }

    // The right token: synced, with no key anywhere.
    let good = token(
        &cluster,
        tokens.path(),
        "good",
        "ecr-refresh",
        "sts.amazonaws.com",
    );
    sync_with_token(&cluster, &aws, &good, &ns)
        .run()
        .assert_code(0);
    let secret = secrets.get("awsecr-cred").await.expect("the Secret");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    secrets
        .delete("awsecr-cred", &Default::default())
        .await
        .unwrap();

    // A signing key rotated and not republished: STS cannot find the new kid, and `check`
    // says so.
    cluster.rotate_key();
    let rotated = token(
        &cluster,
        tokens.path(),
        "rotated",
        "ecr-refresh",
        "sts.amazonaws.com",
    );
    let out = sync_with_token(&cluster, &aws, &rotated, &ns).run();
    out.assert_code(3)
        .assert_stderr_contains("web identity")
        .assert_stderr_contains("Couldn't retrieve verification key from your identity provider");
    assert!(secrets.get_opt("awsecr-cred").await.unwrap().is_none());
    check()
        .run()
        .assert_code(1)
        .assert_stdout_contains("key_missing: the cluster signs with key");

    // Republished: both fine again.
    publish(&cluster, &issuer, out_dir.path())
        .run()
        .assert_code(0);
    check().run().assert_code(0);
    sync_with_token(&cluster, &aws, &rotated, &ns)
        .run()
        .assert_code(0);
}

/// deploy/web-identity as `kubectl apply -k` renders it: the key Secret's envFrom is gone, the
/// role, the token file and a short-lived STS token are there, and nothing else changed.
#[test]
fn the_web_identity_component_swaps_the_key_for_a_token() {
    let _suite = suite::shared_blocking();
    let plain = install::render_deploy(&[]);
    let keyless = install::render_deploy(&["web-identity"]);
    let is_cronjob = |d: &&serde_json::Value| d["kind"] == "CronJob";
    let others = |docs: &[serde_json::Value]| -> Vec<serde_json::Value> {
        docs.iter().filter(|d| !is_cronjob(d)).cloned().collect()
    };
    assert_eq!(others(&plain), others(&keyless), "only the CronJob changes");
    let cronjob = keyless.iter().find(is_cronjob).expect("the CronJob");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let text = serde_json::to_string(&keyless).unwrap();
    assert!(!text.contains("AWS_ACCESS_KEY_ID"), "{text}");
    assert!(
        !text.contains("ecr-refresh-aws"),
        "the key Secret is still referenced"
    );
    let env_from = c["envFrom"].as_array().unwrap();
    assert_eq!(env_from.len(), 1, "{env_from:?}");
    assert_eq!(env_from[0]["configMapRef"]["name"], "ecr-refresh");
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("no env {name}"))
            .to_string()
    };
    assert_eq!(env("AWS_ROLE_ARN"), ROLE_ARN);
    let token_file = env("AWS_WEB_IDENTITY_TOKEN_FILE");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "aws-token")
        .expect("the token volume mounted");
    let dir = mount["mountPath"].as_str().unwrap();
    let source = &pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "aws-token")
        .expect("the token volume")["projected"]["sources"][0]["serviceAccountToken"];
    assert_eq!(
        token_file,
        format!("{dir}/{}", source["path"].as_str().unwrap())
    );
    assert_eq!(source["audience"], "sts.amazonaws.com");
    let expiry = source["expirationSeconds"].as_i64().unwrap();
    assert!((600..=3600).contains(&expiry), "{expiry}");
    // Everything else in the container as it was.
    let plain_c = &plain.iter().find(is_cronjob).unwrap()["spec"]["jobTemplate"]["spec"]
        ["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], plain_c["args"]);
    assert_eq!(c["securityContext"], plain_c["securityContext"]);
}
