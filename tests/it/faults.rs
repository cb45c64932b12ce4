//! Faults: nothing is lost, every failure is visible, and every run ends in bounded time.

use crate::common;

use std::time::{Duration, Instant};

use common::fake_ecr::FakeEcr;
use common::fault::{Fault, On};
use common::proxy::FaultProxy;
use common::*;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// The Secret writes (server-side applies) in `ns`.
fn secret_patches(ns: &str) -> On {
    Fault::on("PATCH", format!("/api/v1/namespaces/{ns}/secrets/"))
}

#[tokio::test]
async fn retries_429_honouring_retry_after() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("throttled").await;
    let throttled = secret_patches(&ns).first(2).then(|_| Fault::Status {
        code: 429,
        retry_after: Some(1),
    });
    let proxy = FaultProxy::start(throttled).await;
    let started = Instant::now();
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", &ns, "-o", "json"])
        .run();
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
        .filter(|(m, p, _)| secret_patches(&ns).matches(m, p, 0))
        .map(|(_, _, c)| c)
        .collect();
    assert_eq!(codes[..2], [429, 429]);
    assert!(matches!(codes[2], 200 | 201), "{codes:?}");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}

#[tokio::test]
async fn persistent_5xx_gives_up_after_bounded_retries() {
    let _suite = suite::shared().await;
    let (_, _, [bad, good]) = TestNs::group("broken", ["bad", "good"]).await;
    let sa_path = format!("/api/v1/namespaces/{bad}/serviceaccounts/default");
    let proxy = FaultProxy::start(Fault::on("GET", &sa_path).status(503)).await;
    // Named literally, so each ServiceAccount is read with a GET (a glob lists them instead).
    // No Events: the one for the failed link would read the ServiceAccount again, with retries
    // of its own.
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", &bad, "-n", &good, "-o", "json", "--no-events"])
        .run();
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
    out.assert_stderr_contains("giving up after retries");
}

#[tokio::test]
async fn a_hanging_request_is_cut_off_and_the_run_is_bounded() {
    let _suite = suite::shared().await;
    let (client, base, [stuck, fine]) = TestNs::group("hang", ["stuck", "fine"]).await;
    let proxy = FaultProxy::start(secret_patches(&stuck).hang()).await;
    let started = Instant::now();
    let out = Run::sync()
        .through(&proxy)
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
        .run();
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
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("race").await;
    let ns2 = ns.clone();
    let sa_write = Fault::on(
        "!GET",
        format!("/api/v1/namespaces/{ns}/serviceaccounts/default"),
    );
    // Someone else adds their pull secret between our read and our write.
    let race = sa_write.first(1).then(move |_| {
        let ns = ns2.clone();
        Fault::before(|client| async move {
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
        })
    });
    let proxy = FaultProxy::start(race).await;
    Run::sync()
        .through(&proxy)
        .args(["-n", &ns])
        .run()
        .assert_code(0);
    let writes: Vec<u16> = proxy
        .log()
        .into_iter()
        .filter(|(m, p, _)| m != "GET" && p.contains("/serviceaccounts/"))
        .map(|(_, _, c)| c)
        .collect();
    // A failed `test` op of a JSON patch is a 422.
    assert_eq!(
        writes,
        [422, 200],
        "the first write lost the race and was retried"
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["racer", "awsecr-cred"]
    );
}

/// The write sends only the list and our record of it (the `ecr-refresh/linked` annotation),
/// as a JSON patch guarded by the resourceVersion we read, so a field that a newer Kubernetes
/// adds to ServiceAccounts (unknown to this build) is never sent back, and so never dropped;
/// other annotations stay.
#[tokio::test]
async fn service_account_write_is_a_guarded_json_patch_of_the_list_only() {
    let _suite = suite::shared().await;
    let client = admin().await;
    // Read one by one (a plain name), and from the cluster-wide list (a glob).
    for listed in [false, true] {
        let base = unique("sapatch");
        let ns = format!("{base}-x");
        create_namespace_listing(&client, &ns, &["theirs"]).await;
        create_sa(&client, &ns, "bare", &[]).await;
        let team = serde_json::json!({"metadata": {"annotations": {"team": "a"}}});
        kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &ns)
            .patch(
                "default",
                &Default::default(),
                &kube::api::Patch::Merge(&team),
            )
            .await
            .unwrap();
        let proxy = FaultProxy::forwarding().await;
        let selection = if listed {
            format!("{base}-*")
        } else {
            ns.clone()
        };
        Run::sync()
            .through(&proxy)
            .args(["-n", &selection, "--service-account", "default,bare"])
            .run()
            .assert_code(0);
        let reads = proxy.log().into_iter().filter(|(m, ..)| m == "GET");
        // One list per name (its later pages, on a server with over 500 namespaces, aside).
        let list = reads
            .filter(|(_, p, _)| p.starts_with("/api/v1/serviceaccounts?"))
            .filter(|(_, p, _)| !p.contains("continue="))
            .count();
        assert_eq!(list, if listed { 2 } else { 0 }, "{:?}", proxy.log());
        assert_patches(&client, &ns, &proxy).await;
    }
}

/// Two JSON patches, each guarded by the version read, that add our entry and our record.
async fn assert_patches(client: &kube::Client, ns: &str, proxy: &FaultProxy) {
    let writes: Vec<_> = proxy
        .sent()
        .into_iter()
        .filter(|r| r.method != "GET" && r.path.contains("/serviceaccounts/"))
        .collect();
    assert_eq!(writes.len(), 2, "{writes:#?}");
    for w in &writes {
        assert_eq!(w.method, "PATCH", "{w:#?}");
        assert_eq!(w.content_type, "application/json-patch+json", "{w:#?}");
        let ops: Vec<serde_json::Value> = serde_json::from_str(&w.body).unwrap();
        let sa = w.path.split('/').nth(6).unwrap().split('?').next().unwrap();
        let rv = get_sa(client, ns, sa).await.metadata.resource_version;
        assert_eq!(ops[0]["op"], "test", "{w:#?}");
        assert_eq!(ops[0]["path"], "/metadata/resourceVersion", "{w:#?}");
        assert_ne!(
            ops[0]["value"].as_str(),
            rv.as_deref(),
            "guarded by the version read"
        );
        let expected = if sa == "bare" {
            [
                serde_json::json!({"op": "add", "path": "/imagePullSecrets", "value": [{"name": "awsecr-cred"}]}),
                serde_json::json!({"op": "add", "path": "/metadata/annotations", "value": {"ecr-refresh/linked": "awsecr-cred"}}),
            ]
        } else {
            [
                serde_json::json!({"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "awsecr-cred"}}),
                serde_json::json!({"op": "add", "path": "/metadata/annotations/ecr-refresh~1linked", "value": "awsecr-cred"}),
            ]
        };
        assert_eq!(ops[1..], expected, "{w:#?}");
    }
    let annotations = get_sa(client, ns, "default").await.metadata.annotations;
    assert_eq!(
        annotations.unwrap_or_default(),
        [("ecr-refresh/linked", "awsecr-cred"), ("team", "a")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into()
    );
    assert_eq!(
        pull_secret_names(&get_sa(client, ns, "default").await),
        ["theirs", "awsecr-cred"]
    );
    assert_eq!(
        pull_secret_names(&get_sa(client, ns, "bare").await),
        ["awsecr-cred"]
    );
}

/// A 422 that is not a failed `test` op (the object did not change) is reported at once with
/// the server's words, not retried as a conflict.
#[tokio::test]
async fn a_real_refusal_of_the_service_account_patch_is_not_retried() {
    let _suite = suite::shared().await;
    let TestNs { name: ns, .. } = TestNs::new("sarefused").await;
    let sa_patches = Fault::on("PATCH", format!("/api/v1/namespaces/{ns}/serviceaccounts/"));
    let proxy = FaultProxy::start(sa_patches.status(422)).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", &ns, "-o", "json"])
        .run();
    out.assert_code(1);
    let err = error_of(&out.json(), &ns).to_string();
    assert!(err.contains("injected 422"), "{err}");
    let patches = proxy
        .log()
        .into_iter()
        .filter(|(m, p, _)| m == "PATCH" && p.contains("/serviceaccounts/"))
        .count();
    assert_eq!(patches, 1);
}

async fn assert_bad_ecr_answer_writes_nothing(body: String, expect: &str) {
    let ecr = FakeEcr::start(body).await;
    assert_token_refused(&ecr.url, expect).await;
    assert_eq!(ecr.calls(), 1);
}

#[tokio::test]
async fn ecr_without_authorization_data_writes_nothing() {
    let _suite = suite::shared().await;
    assert_bad_ecr_answer_writes_nothing(
        r#"{"authorizationData":[]}"#.into(),
        "no authorization data",
    )
    .await;
}

#[tokio::test]
async fn malformed_ecr_token_writes_nothing() {
    let _suite = suite::shared().await;
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
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("ecrhang").await;
    let (url, _) = blackhole();
    let started = Instant::now();
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &url)
        .args(["-n", &ns, "--request-timeout", "1s"])
        .run();
    out.assert_code(3);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    out.assert_stderr_contains_any(&["ECR did not answer in time", "could not reach ECR"]);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn ecr_refusing_the_credentials_writes_nothing() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::synced("ecrdenied").await;
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
        .run();
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
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("opaque").await;
    let before = create_secret(
        &client,
        &ns,
        "awsecr-cred",
        "Opaque",
        &[("token", b"theirs")],
    )
    .await;

    let out = Run::sync().args(["-n", &ns, "-o", "json"]).run();
    out.assert_code(1);
    let err = error_of(&out.json(), &ns).to_string();
    assert!(
        err.contains("type \"Opaque\"") && err.contains("--force"),
        "{err}"
    );
    let same = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        same.metadata.resource_version,
        before.metadata.resource_version
    );

    let out = Run::sync().args(["-n", &ns, "--force", "-o", "json"]).run();
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

/// A proxy on which the first Secret write in each of `namespaces` hangs (after --force has
/// deleted the old Secret, so the namespace is between its delete and its create).
async fn hang_first_create_in(namespaces: Vec<String>) -> FaultProxy {
    // Only the forced apply (the create after the delete): the first apply, without force, is
    // refused before the delete because the Opaque Secret is not ours.
    let creates = Fault::any(
        namespaces
            .iter()
            .map(|ns| ("PATCH", format!("/api/v1/namespaces/{ns}/secrets/"))),
    );
    FaultProxy::start(creates.with_query("force=true").first(1).hang()).await
}

/// `count` namespaces `<base>-NNN`, each with a `default` ServiceAccount and an Opaque
/// `awsecr-cred`: `sync --force` replaces each by a delete and a create.
async fn namespaces_with_opaque_secrets(
    client: &kube::Client,
    base: &str,
    count: usize,
) -> Vec<String> {
    use futures::StreamExt as _;
    let names: Vec<String> = (0..count).map(|i| format!("{base}-{i:03}")).collect();
    futures::stream::iter(names.clone())
        .for_each_concurrent(8, |ns| async move {
            create_namespace(client, &ns, true).await;
            create_secret(client, &ns, "awsecr-cred", "Opaque", &[("x", b"theirs")]).await;
        })
        .await;
    names
}

fn is_secret_delete(method: &str, path: &str, ns: &str) -> bool {
    method == "DELETE" && path.starts_with(&format!("/api/v1/namespaces/{ns}/secrets/"))
}

#[tokio::test]
async fn sigterm_finishes_the_namespaces_in_flight_and_prints_the_report() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let base = unique("sigterm");
    let names = namespaces_with_opaque_secrets(&client, &base, 40).await;
    // The first create in each of the first five namespaces hangs until the request timeout, so
    // at the signal all five (= --concurrency) are between their delete and their create.
    let stuck: Vec<String> = names[..5].to_vec();
    let proxy = hang_first_create_in(stuck.clone()).await;
    let running = Run::sync()
        .through(&proxy)
        .args([
            "-n",
            &format!("{base}-*"),
            "--force",
            "--concurrency",
            "5",
            "--request-timeout",
            "2s",
            "-o",
            "json",
        ])
        .start();
    // Signal once every stuck namespace has lost its old Secret.
    let started = Instant::now();
    while !stuck.iter().all(|ns| {
        proxy
            .log()
            .iter()
            .any(|(m, p, code)| is_secret_delete(m, p, ns) && *code == 200)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "deletes never happened: {:?}",
            proxy.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.signal("TERM");
    let out = running.output().await;

    out.assert_code(1);
    let report = out.json();
    assert_eq!(report["error"]["kind"], "cancelled", "{report:#}");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGTERM"),
        "{report:#}"
    );
    assert_eq!(report["namespaces"].as_array().unwrap().len(), names.len());
    // Every namespace still has a Secret: the in-flight ones the new one, the others their own.
    for ns in &names {
        let secret = get_secret(&client, ns, "awsecr-cred")
            .await
            .unwrap_or_else(|| panic!("{ns} lost its Secret:\n{}", out.stderr()));
        let r = outcome(&report, ns);
        if stuck.contains(ns) {
            assert_eq!(r["outcome"], "updated", "{r}");
        }
        match r["outcome"].as_str().unwrap() {
            "updated" => assert_eq!(
                secret.type_.as_deref(),
                Some("kubernetes.io/dockerconfigjson"),
                "{ns}"
            ),
            "failed" => {
                assert!(
                    r["error"].as_str().unwrap().contains("stopped by SIGTERM"),
                    "{r}"
                );
                assert_eq!(secret.type_.as_deref(), Some("Opaque"), "{ns}");
            }
            other => panic!("{ns}: unexpected outcome {other}"),
        }
    }
    let failed = report["summary"]["failed"].as_u64().unwrap();
    assert!(failed > 0, "the signal came mid-run");
    // The error counts exactly the namespaces the signal left undone.
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(": {failed} namespaces were not done")),
        "{message}"
    );
}

#[tokio::test]
async fn sigint_before_any_namespace_writes_nothing_and_reports() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("sigint").await;
    // The credentials check hangs, so the signal arrives before any namespace is touched.
    let review = Fault::on(
        "*",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    );
    let proxy = FaultProxy::start(review.hang()).await;
    let running = Run::sync()
        .through(&proxy)
        .args(["-n", &ns, "--request-timeout", "20s", "-o", "json"])
        .start();
    tokio::time::sleep(Duration::from_millis(800)).await;
    running.signal("INT");
    let out = running.output().await;
    out.assert_code(1);
    let report = out.json();
    assert_eq!(report["error"]["kind"], "cancelled", "{report:#}");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn run_deadline_never_splits_a_delete_from_its_create() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let base = unique("split");
    let names = namespaces_with_opaque_secrets(&client, &base, 3).await;
    // Each first create hangs; its retry only goes out after --timeout has passed.
    let proxy = hang_first_create_in(names.clone()).await;
    let out = Run::sync()
        .through(&proxy)
        .args([
            "-n",
            &format!("{base}-*"),
            "--force",
            "--timeout",
            "2s",
            "--request-timeout",
            "1800ms",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(1);
    let report = out.json();
    let log = proxy.log();
    for ns in &names {
        assert!(
            log.iter()
                .any(|(m, p, code)| is_secret_delete(m, p, ns) && *code == 200),
            "{ns}: the old Secret was never deleted, so nothing was tested: {log:?}"
        );
        let secret = get_secret(&client, ns, "awsecr-cred")
            .await
            .unwrap_or_else(|| panic!("{ns} lost its Secret: {report:#}"));
        assert_eq!(
            secret.type_.as_deref(),
            Some("kubernetes.io/dockerconfigjson")
        );
        // The ServiceAccount was not reached before the deadline: still reported as not done.
        assert!(error_of(&report, ns).contains("--timeout 2s"), "{report:#}");
    }
}

#[tokio::test]
async fn a_full_quota_is_reported_as_quota_not_rbac() {
    let _suite = suite::shared().await;
    use k8s_openapi::api::core::v1::ResourceQuota;
    use kube::api::{Patch, PatchParams};
    let TestNs { client, name: ns } = TestNs::new("quota").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
    let q: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "q"},
        "spec": {"hard": {"secrets": "0"}}
    }))
    .unwrap();
    quotas.create(&PostParams::default(), &q).await.unwrap();
    // No controller-manager computes the status, so set it as it would.
    let status =
        serde_json::json!({"status": {"hard": {"secrets": "0"}, "used": {"secrets": "0"}}});
    quotas
        .patch_status("q", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let out = Run::sync().args(["-n", &ns, "-o", "json"]).run();
    out.assert_code(1);
    let err = error_of(&out.json(), &ns).to_string();
    assert!(err.contains("exceeded quota"), "{err}");
    assert!(err.contains("ResourceQuota"), "{err}");
    assert!(
        !err.contains("rbac.yaml") && !err.contains("grant"),
        "{err}"
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// With --refresh-before, a namespace whose Secret is fresh needs no token, so it can be
/// linked before ECR turns out to be unreachable: its result stays in the report, and the exit
/// code does not claim that nothing was written.
#[tokio::test]
async fn ecr_failure_after_some_writes_keeps_the_results_and_exits_1() {
    let _suite = suite::shared().await;
    let (client, base, [fresh]) = TestNs::group("partial", ["fresh"]).await;
    let empty = format!("{base}-empty");
    let ecr = FakeEcr::start(FakeEcr::token_body("pw", now() + 6 * 3600, ACCOUNT, REGION)).await;
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &fresh])
        .run()
        .assert_code(0);
    // Someone unlinks it; a new namespace appears; ECR becomes unreachable.
    Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(client.clone(), &fresh)
        .patch(
            "default",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({"imagePullSecrets": null})),
        )
        .await
        .unwrap();
    create_namespace(&client, &empty, true).await;
    let sync = |output: &str| {
        Run::sync()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .args([
                "-n",
                &fresh,
                "-n",
                &empty,
                "--refresh-before",
                "1h",
                "-o",
                output,
            ])
    };

    let out = sync("json").run();
    out.assert_code(1);
    let r = out.json();
    assert_eq!(r["error"]["kind"], "ecr_token", "{r:#}");
    assert_eq!(r["exit_code"], 1);
    assert_eq!(outcome(&r, &fresh)["outcome"], "updated", "{r:#}");
    assert_eq!(
        outcome(&r, &fresh)["service_accounts"][0]["outcome"],
        "linked"
    );
    assert_eq!(outcome(&r, &empty)["outcome"], "failed", "{r:#}");
    assert_eq!(
        pull_secret_names(&get_sa(&client, &fresh, "default").await),
        ["awsecr-cred"]
    );
    assert!(get_secret(&client, &empty, "awsecr-cred").await.is_none());

    // Now nothing needs writing but the Secret ECR cannot provide: exit 3, and the report (text
    // too) still lists both namespaces.
    let out = sync("json").run();
    out.assert_code(3);
    let r = out.json();
    assert_eq!(outcome(&r, &fresh)["outcome"], "unchanged", "{r:#}");
    assert_eq!(outcome(&r, &empty)["outcome"], "failed", "{r:#}");
    let out = sync("text").run();
    out.assert_code(3);
    out.assert_stdout_contains(&format!("FAILED {empty}: no ECR token"));
    out.assert_stderr_contains("cannot get an ECR authorization token");
}

#[tokio::test]
async fn ecr_unreachable_writes_nothing() {
    let _suite = suite::shared().await;
    let (client, base, [existing, fresh]) = TestNs::group("noecr", ["existing", "fresh"]).await;
    Run::sync().args(["-n", &existing]).run().assert_code(0);
    let before = get_secret(&client, &existing, "awsecr-cred").await.unwrap();

    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .args([
            "-n",
            &format!("{base}-*"),
            "--request-timeout",
            "2s",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(3);
    let report = out.json();
    assert_eq!(report["error"]["kind"], "ecr_token");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("us-east-1"),
        "{report:#}"
    );
    out.assert_stderr_contains("could not reach ECR");

    let after = get_secret(&client, &existing, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.data, before.data);
    assert!(get_secret(&client, &fresh, "awsecr-cred").await.is_none());
    assert!(pull_secret_names(&get_sa(&client, &fresh, "default").await).is_empty());
}

#[tokio::test]
async fn cluster_unreachable_or_unauthorized_exits_4_before_ecr() {
    let _suite = suite::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, server: &str, token: &str| {
        let path = dir.path().join(name);
        common::install::write_kubeconfig(&path, server, token);
        path
    };
    let env = env();
    let closed = write("closed", "https://127.0.0.1:1", "x");
    let badtoken = write("badtoken", &env.apiserver, "not-a-valid-token");
    for (kubeconfig, expect) in [(closed, "127.0.0.1:1"), (badtoken, "401")] {
        // ECR points at a closed port too: exit 4 (not 3) shows the cluster was checked first.
        let out = Run::sync()
            .env("KUBECONFIG", &kubeconfig)
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
            .args(["--request-timeout", "2s", "-o", "json"])
            .run();
        out.assert_code(4);
        let report = out.json();
        assert_eq!(report["error"]["kind"], "cluster_access");
        assert!(
            report["error"]["message"]
                .as_str()
                .unwrap()
                .contains(expect),
            "{report:#}"
        );
    }
}

/// A pod list (--delete-stuck-pods) that never answers is named at the deadline
/// as the pod list, not as "listing service accounts".
#[tokio::test]
async fn a_hanging_pod_list_is_named_at_the_deadline() {
    let _suite = suite::shared().await;
    let (_, base, _) = TestNs::group("podhang", ["a"]).await;
    let pods = Fault::on("GET", "/api/v1/pods");
    let proxy = FaultProxy::start(pods.hang()).await;
    let (out, took) = timed(
        Run::sync()
            .through(&proxy)
            .args(["-n", &format!("{base}-*"), "--delete-stuck-pods"])
            .args(["-o", "json"])
            .args(SHORT),
    );
    let message = ended_at_the_deadline(&out, took, 4);
    assert!(message.contains("listing pods"), "{message}");
    assert!(!message.contains("service accounts"), "{message}");
}

/// A Secret list that fails to parse is not met with advice to grant `list` on
/// secrets (only a refusal is; see tests/it/requests.rs); each namespace is read instead.
#[tokio::test]
async fn a_secret_list_that_fails_to_parse_gets_no_rbac_hint() {
    let _suite = suite::shared().await;
    let (client, base, [a]) = TestNs::group("badlist", ["a"]).await;
    let list = Fault::on("GET", "/api/v1/secrets").then(|_| Fault::Garbage);
    let proxy = FaultProxy::start(list).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    out.assert_stderr_contains("cannot list secrets cluster-wide")
        .assert_stderr_lacks("grant `list`");
    assert!(get_secret(&client, &a, "awsecr-cred").await.is_some());
}
