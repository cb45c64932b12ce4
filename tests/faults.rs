//! Faults: nothing is lost, every failure is visible, and every run ends in bounded time.

mod common;

use std::time::{Duration, Instant};

use common::fake_ecr::FakeEcr;
use common::proxy::{Fault, FaultProxy};
use common::*;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

fn is_secret_patch(method: &str, path: &str, ns: &str) -> bool {
    method == "PATCH" && path.starts_with(&format!("/api/v1/namespaces/{ns}/secrets/"))
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let client = admin().await;
    let ns = unique("throttled");
    create_namespace(&client, &ns, true).await;
    let ns2 = ns.clone();
    let proxy = FaultProxy::start(client.clone(), move |m, p, n| {
        if is_secret_patch(m, p, &ns2) && n < 2 {
            Fault::Status {
                code: 429,
                retry_after: Some(1),
            }
        } else {
            Fault::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Run::sync()
        .env("KUBECONFIG", proxy.kubeconfig(dir.path()))
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(0);
    // Two Retry-After: 1 waits.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let report = out.json();
    assert_eq!(outcome(&report, &ns)["outcome"], "created");
    assert_eq!(report["api_retries"], 2);
    assert_eq!(
        out.stderr()
            .matches("transient API error, retrying")
            .count(),
        2,
        "{}",
        out.stderr()
    );
    let codes: Vec<u16> = proxy
        .log()
        .into_iter()
        .filter(|(m, p, _)| is_secret_patch(m, p, &ns))
        .map(|(_, _, c)| c)
        .collect();
    assert_eq!(codes[..2], [429, 429]);
    assert!(matches!(codes[2], 200 | 201), "{codes:?}");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_bounded_retries() {
    let client = admin().await;
    let base = unique("broken");
    let (bad, good) = (format!("{base}-bad"), format!("{base}-good"));
    create_namespace(&client, &bad, true).await;
    create_namespace(&client, &good, true).await;
    let sa_path = format!("/api/v1/namespaces/{bad}/serviceaccounts/default");
    let sa_path2 = sa_path.clone();
    let proxy = FaultProxy::start(client.clone(), move |m, p, _| {
        if m == "GET" && p == sa_path2 {
            Fault::Status {
                code: 503,
                retry_after: None,
            }
        } else {
            Fault::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Named literally, so each ServiceAccount is read with a GET (a glob lists them instead).
    let out = Run::sync()
        .env("KUBECONFIG", proxy.kubeconfig(dir.path()))
        .args(["-n", &bad, "-n", &good, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(1);
    let report = out.json();
    let failed = outcome(&report, &bad);
    assert_eq!(failed["outcome"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("503"),
        "{failed}"
    );
    assert_eq!(outcome(&report, &good)["outcome"], "created");
    let attempts = proxy
        .log()
        .iter()
        .filter(|(m, p, _)| m == "GET" && *p == sa_path)
        .count();
    assert_eq!(attempts, 4, "one try and three retries");
    assert!(
        out.stderr().contains("giving up after retries"),
        "{}",
        out.stderr()
    );
}

#[tokio::test]
async fn a_hanging_request_is_cut_off_and_the_run_is_bounded() {
    let client = admin().await;
    let base = unique("hang");
    let (stuck, fine) = (format!("{base}-stuck"), format!("{base}-fine"));
    create_namespace(&client, &stuck, true).await;
    create_namespace(&client, &fine, true).await;
    let stuck2 = stuck.clone();
    let proxy = FaultProxy::start(client.clone(), move |m, p, _| {
        if is_secret_patch(m, p, &stuck2) {
            Fault::Hang
        } else {
            Fault::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = Run::sync()
        .env("KUBECONFIG", proxy.kubeconfig(dir.path()))
        .args([
            "-n",
            &format!("{base}-*"),
            "--request-timeout",
            "1s",
            "--timeout",
            "3s",
            "-o",
            "json",
        ])
        .run_async()
        .await;
    let elapsed = started.elapsed();
    out.assert_code(1);
    // --timeout 3s ends the run even though the retries alone would take longer.
    assert!(elapsed < Duration::from_secs(8), "run took {elapsed:?}");
    let report = out.json();
    let failed = outcome(&report, &stuck);
    assert!(
        failed["error"].as_str().unwrap().contains("--timeout 3s"),
        "{failed}"
    );
    assert_eq!(outcome(&report, &fine)["outcome"], "created");
    assert!(get_secret(&client, &stuck, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn concurrent_service_account_edit_keeps_both_entries() {
    let client = admin().await;
    let ns = unique("race");
    create_namespace(&client, &ns, true).await;
    let (ns2, racer) = (ns.clone(), client.clone());
    let proxy = FaultProxy::start(client.clone(), move |m, p, n| {
        if m == "PUT"
            && p.starts_with(&format!("/api/v1/namespaces/{ns2}/serviceaccounts/default"))
            && n == 0
        {
            // Someone else adds their pull secret between our read and our write.
            let (client, ns) = (racer.clone(), ns2.clone());
            Fault::Before(Box::pin(async move {
                let api: Api<ServiceAccount> = Api::namespaced(client, &ns);
                let mut sa = api.get("default").await.unwrap();
                sa.image_pull_secrets.get_or_insert_with(Vec::new).push(
                    k8s_openapi::api::core::v1::LocalObjectReference {
                        name: "racer".into(),
                    },
                );
                api.replace("default", &PostParams::default(), &sa)
                    .await
                    .unwrap();
            }))
        } else {
            Fault::Forward
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    Run::sync()
        .env("KUBECONFIG", proxy.kubeconfig(dir.path()))
        .args(["-n", &ns])
        .run_async()
        .await
        .assert_code(0);
    let puts: Vec<u16> = proxy
        .log()
        .into_iter()
        .filter(|(m, _, _)| m == "PUT")
        .map(|(_, _, c)| c)
        .collect();
    assert_eq!(
        puts,
        [409, 200],
        "the first write lost the race and was retried"
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["racer", "awsecr-cred"]
    );
}

async fn assert_bad_ecr_answer_writes_nothing(body: String, expect: &str) {
    let client = admin().await;
    let ns = unique("badtoken");
    create_namespace(&client, &ns, true).await;
    let ecr = FakeEcr::start(body).await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(3);
    let report = out.json();
    assert_eq!(report["error"]["kind"], "ecr_token_invalid");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains(expect),
        "{report:#}"
    );
    assert_eq!(ecr.calls(), 1);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
    assert!(pull_secret_names(&get_sa(&client, &ns, "default").await).is_empty());
}

#[tokio::test]
async fn ecr_without_authorization_data_writes_nothing() {
    assert_bad_ecr_answer_writes_nothing(
        r#"{"authorizationData":[]}"#.into(),
        "no authorization data",
    )
    .await;
}

#[tokio::test]
async fn malformed_ecr_token_writes_nothing() {
    let body = r#"{"authorizationData":[{"authorizationToken":"%%%not-base64%%%","expiresAt":4102444800,"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}]}"#;
    assert_bad_ecr_answer_writes_nothing(body.into(), "not valid base64").await;
    use base64::Engine as _;
    let no_colon = base64::engine::general_purpose::STANDARD.encode("AWS-no-separator");
    let body = format!(
        r#"{{"authorizationData":[{{"authorizationToken":"{no_colon}","expiresAt":4102444800,"proxyEndpoint":"https://123456789012.dkr.ecr.us-east-1.amazonaws.com"}}]}}"#
    );
    assert_bad_ecr_answer_writes_nothing(body, "no ':'").await;
}

#[tokio::test]
async fn ecr_that_never_answers_is_cut_off() {
    let client = admin().await;
    let ns = unique("ecrhang");
    create_namespace(&client, &ns, true).await;
    // Accepts connections and never replies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let started = Instant::now();
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &url)
        .args(["-n", &ns, "--request-timeout", "1s"])
        .run_async()
        .await;
    out.assert_code(3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        out.stderr().contains("ECR did not answer in time")
            || out.stderr().contains("could not reach ECR"),
        "{}",
        out.stderr()
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn ecr_refusing_the_credentials_writes_nothing() {
    let client = admin().await;
    let ns = unique("ecrdenied");
    create_namespace(&client, &ns, true).await;
    Run::sync()
        .args(["-n", &ns])
        .run_async()
        .await
        .assert_code(0);
    let before = get_secret(&client, &ns, "awsecr-cred").await.unwrap();

    // A moto of our own with IAM checks on: unknown keys get 403.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let moto = std::env::var("ECR_REFRESH_TEST_MOTO_BIN")
        .expect("ECR_REFRESH_TEST_MOTO_BIN (run scripts/test.sh)");
    let mut server = std::process::Command::new(moto)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &url)
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    let _ = server.kill();
    let _ = server.wait();
    out.assert_code(3);
    let msg = out.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        msg.contains("403") && msg.contains("check the AWS credentials"),
        "{msg}"
    );
    let after = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
}

#[tokio::test]
async fn wrong_type_secret_fails_then_force_replaces_it() {
    let client = admin().await;
    let ns = unique("opaque");
    create_namespace(&client, &ns, true).await;
    let before = create_secret(
        &client,
        &ns,
        "awsecr-cred",
        "Opaque",
        &[("token", b"theirs")],
    )
    .await;

    let out = Run::sync()
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(1);
    let err = outcome(&out.json(), &ns)["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        err.contains("type \"Opaque\"") && err.contains("--force"),
        "{err}"
    );
    let same = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        same.metadata.resource_version,
        before.metadata.resource_version
    );

    let out = Run::sync()
        .args(["-n", &ns, "--force", "-o", "json"])
        .run_async()
        .await;
    out.assert_code(0);
    let replaced = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        replaced.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(dockerconfig(&replaced)["auths"][HOST]["password"], PASSWORD);
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["awsecr-cred"]
    );
}
