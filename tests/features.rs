//! Beyond a plain sync: several regions and accounts, assume-role, status, prune, label
//! selectors, opt-out, every ServiceAccount, and the freshness threshold.

mod common;

use std::collections::BTreeMap;

use common::fake_ecr::FakeEcr;
use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn annotate_namespace(
    client: &kube::Client,
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
        .unwrap();
}

#[tokio::test]
async fn several_regions_and_accounts_in_one_secret_against_moto() {
    let client = admin().await;
    let ns = unique("multi");
    create_namespace(&client, &ns, true).await;
    let out = Run::sync()
        .args([
            "-n",
            &ns,
            "--registry",
            "111111111111",
            "--registry",
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com,333333333333.dkr.ecr.eu-west-1.amazonaws.com",
            "-o",
            "json",
        ])
        .run_async()
        .await;
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["ecr_calls"], 2, "one call per region: {report:#}");
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    let auths = dockerconfig(&secret)["auths"].clone();
    let hosts: Vec<&String> = auths.as_object().unwrap().keys().collect();
    assert_eq!(
        hosts,
        [
            "111111111111.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "222222222222.dkr.ecr.eu-west-1.amazonaws.com",
            "333333333333.dkr.ecr.eu-west-1.amazonaws.com",
        ]
    );
    for host in hosts {
        assert_eq!(auths[host]["username"], "AWS", "{host}");
        assert_eq!(auths[host]["password"], PASSWORD, "{host}");
    }
}

#[tokio::test]
async fn exactly_one_token_call_per_region() {
    let client = admin().await;
    let base = unique("perregion");
    let names: Vec<String> = (0..3).map(|i| format!("{base}-{i}")).collect();
    for n in &names {
        create_namespace(&client, n, true).await;
    }
    let ecr = FakeEcr::start(FakeEcr::token_body("pw", now() + 43200, ACCOUNT, REGION)).await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args([
            "-n",
            &format!("{base}-*"),
            "--registry",
            "111111111111,222222222222.dkr.ecr.eu-west-1.amazonaws.com,333333333333.dkr.ecr.ap-south-1.amazonaws.com,444444444444.dkr.ecr.eu-west-1.amazonaws.com",
            "-o",
            "json",
        ])
        .run_async()
        .await;
    out.assert_code(0);
    let mut regions: Vec<String> = ecr.signed().into_iter().map(|(r, _)| r).collect();
    regions.sort();
    assert_eq!(
        regions,
        ["ap-south-1", "eu-west-1", "us-east-1"],
        "three namespaces, three regions, three calls"
    );
    for n in &names {
        let s = get_secret(&client, n, "awsecr-cred").await.unwrap();
        assert_eq!(
            dockerconfig(&s)["auths"].as_object().unwrap().len(),
            5,
            "{n}"
        );
    }
}

#[tokio::test]
async fn assume_role_signs_ecr_calls_with_the_role_credentials() {
    let client = admin().await;
    let ns = unique("assume");
    create_namespace(&client, &ns, true).await;
    // STS goes to moto (AWS_ENDPOINT_URL); ECR to a stand-in that records who signed.
    let ecr = FakeEcr::start(FakeEcr::token_body("pw", now() + 43200, ACCOUNT, REGION)).await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL_ECR", &ecr.url)
        .args([
            "-n",
            &ns,
            "--role-arn",
            "arn:aws:iam::111111111111:role/ecr-pull",
            "--role-session-name",
            "ci-test",
            "--external-id",
            "ext-123",
        ])
        .run_async()
        .await;
    out.assert_code(0);
    let signed = ecr.signed();
    assert_eq!(signed.len(), 1);
    let key = &signed[0].1;
    assert_ne!(
        key, "AKIAIOSFODNN7EXAMPLE",
        "ECR must be called with the assumed role's keys"
    );
    assert!(
        key.starts_with("ASIA"),
        "temporary credentials from STS: {key}"
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());

    // And end to end against moto's ECR too.
    let out = Run::sync()
        .args([
            "-n",
            &ns,
            "--role-arn",
            "arn:aws:iam::111111111111:role/ecr-pull",
        ])
        .run_async()
        .await;
    out.assert_code(0);
}

#[tokio::test]
async fn status_reports_missing_foreign_expiring_and_healthy() {
    let client = admin().await;
    let base = unique("status");
    let [missing, foreign, expiring, healthy, unlinked] =
        ["missing", "foreign", "expiring", "healthy", "unlinked"].map(|s| format!("{base}-{s}"));
    for n in [&missing, &foreign, &expiring, &healthy, &unlinked] {
        create_namespace(&client, n, true).await;
    }
    create_secret(
        &client,
        &foreign,
        "awsecr-cred",
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", br#"{"auths":{}}"#)],
    )
    .await;
    let ecr = FakeEcr::start(FakeEcr::token_body("pw", now() + 1800, ACCOUNT, REGION)).await;
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &expiring])
        .run_async()
        .await
        .assert_code(0);
    ecr.set_body(FakeEcr::token_body("pw", now() + 43200, ACCOUNT, REGION));
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &healthy])
        .run_async()
        .await
        .assert_code(0);
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args([
            "-n",
            &unlinked,
            "--service-account",
            "nobody",
            "--service-account-wait",
            "0s",
        ])
        .run_async()
        .await;

    let status = |min: &str| {
        let mut args = vec![
            "status".to_string(),
            "-n".into(),
            format!("{base}-*"),
            "-o".into(),
            "json".into(),
        ];
        if !min.is_empty() {
            args.extend(["--min-remaining".into(), min.into()]);
        }
        Run::bare().args(args)
    };
    // Without a threshold, the expiring one (30 minutes left) is still healthy.
    let out = status("").run_async().await;
    out.assert_code(1);
    let r = out.json();
    let state = |ns: &str| outcome(&r, ns).clone();
    assert_eq!(state(&missing)["secret"], "missing");
    assert_eq!(state(&missing)["healthy"], false);
    assert_eq!(state(&foreign)["secret"], "foreign");
    assert_eq!(state(&foreign)["healthy"], false);
    assert_eq!(state(&healthy)["healthy"], true, "{:#}", state(&healthy));
    assert_eq!(state(&healthy)["registries"], serde_json::json!([HOST]));
    assert!(state(&healthy)["remaining_seconds"].as_i64().unwrap() > 40000);
    assert_eq!(state(&healthy)["service_accounts"][0]["state"], "linked");
    assert_eq!(state(&expiring)["healthy"], true);
    assert_eq!(state(&unlinked)["secret"], "managed");
    assert_eq!(state(&unlinked)["service_accounts"][0]["state"], "unlinked");
    assert_eq!(r["summary"]["unhealthy"], 3);

    // With --min-remaining 1h, the expiring one is unhealthy too.
    let out = status("1h").run_async().await;
    out.assert_code(1);
    let r = out.json();
    let exp = outcome(&r, &expiring);
    assert_eq!(exp["healthy"], false);
    assert!(
        exp["problems"][0]
            .as_str()
            .unwrap()
            .contains("--min-remaining 1h"),
        "{exp:#}"
    );
    assert_eq!(r["summary"]["unhealthy"], 4);

    // Only the healthy one: exit 0, and the text names it.
    let out = Run::bare()
        .args(["status", "-n", &healthy, "--min-remaining", "1h"])
        .run_async()
        .await;
    out.assert_code(0);
    assert!(
        out.stdout().contains(&format!("ok        {healthy}")),
        "{}",
        out.stdout()
    );
}

#[tokio::test]
async fn namespace_selector_combines_with_globs() {
    let client = admin().await;
    let base = unique("labels");
    let [prod, dev, other] = ["prod", "dev", "other"].map(|s| format!("{base}-{s}"));
    for n in [&prod, &dev, &other] {
        create_namespace(&client, n, true).await;
    }
    annotate_namespace(&client, &prod, &[("env", "prod")], &[]).await;
    annotate_namespace(&client, &dev, &[("env", "dev")], &[]).await;
    annotate_namespace(&client, &other, &[("env", "prod")], &[]).await;
    // `other` is labelled prod too but excluded by the glob.
    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-p*"),
            "-n",
            &format!("{base}-d*"),
            "-l",
            "env in (prod)",
            "-o",
            "json",
        ])
        .run_async()
        .await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["selected"], 1);
    assert!(get_secret(&client, &prod, "awsecr-cred").await.is_some());
    assert!(get_secret(&client, &dev, "awsecr-cred").await.is_none());
    assert!(get_secret(&client, &other, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn all_service_accounts_are_linked() {
    let client = admin().await;
    let ns = unique("allsa");
    create_namespace(&client, &ns, true).await;
    create_sa(&client, &ns, "builder", &["registry-x"]).await;
    create_sa(&client, &ns, "deployer", &[]).await;
    let out = Run::sync()
        .args(["-n", &ns, "--all-service-accounts", "-o", "json"])
        .run_async()
        .await;
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &ns)["service_accounts"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["awsecr-cred"]
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "builder").await),
        ["registry-x", "awsecr-cred"]
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "deployer").await),
        ["awsecr-cred"]
    );
}

#[tokio::test]
async fn refresh_before_leaves_fresh_secrets_alone() {
    let client = admin().await;
    let base = unique("fresh");
    let [a, b, late] = ["a", "b", "late"].map(|s| format!("{base}-{s}"));
    create_namespace(&client, &a, true).await;
    create_namespace(&client, &b, true).await;
    let glob = format!("{base}-*");
    let rv = |s: &k8s_openapi::api::core::v1::Secret| s.metadata.resource_version.clone();
    // Tokens with 2 hours left.
    let ecr = FakeEcr::start(FakeEcr::token_body(
        "first",
        now() + 2 * 3600,
        ACCOUNT,
        REGION,
    ))
    .await;
    let sync = |refresh: &str| {
        Run::sync().env("AWS_ENDPOINT_URL", &ecr.url).args([
            "-n",
            glob.as_str(),
            "--refresh-before",
            refresh,
            "-o",
            "json",
        ])
    };
    sync("1h").run_async().await.assert_code(0);
    assert_eq!(ecr.calls(), 1);
    let a_rv = rv(&get_secret(&client, &a, "awsecr-cred").await.unwrap());

    // Still fresh (2h > 1h): no ECR call, no write.
    ecr.set_body(FakeEcr::token_body(
        "second",
        now() + 12 * 3600,
        ACCOUNT,
        REGION,
    ));
    let out = sync("1h").run_async().await;
    out.assert_code(0);
    assert_eq!(
        ecr.calls(),
        1,
        "no token needed while every Secret is fresh"
    );
    assert_eq!(out.json()["ecr_calls"], 0);
    assert_eq!(outcome(&out.json(), &a)["outcome"], "unchanged");
    assert_eq!(
        rv(&get_secret(&client, &a, "awsecr-cred").await.unwrap()),
        a_rv
    );

    // A new namespace is filled on the next run; the fresh ones stay as they are.
    create_namespace(&client, &late, true).await;
    sync("1h").run_async().await.assert_code(0);
    assert_eq!(ecr.calls(), 2);
    let late_secret = get_secret(&client, &late, "awsecr-cred").await.unwrap();
    assert_eq!(
        dockerconfig(&late_secret)["auths"][HOST]["password"],
        "second"
    );
    assert_eq!(
        rv(&get_secret(&client, &a, "awsecr-cred").await.unwrap()),
        a_rv
    );

    // With a 3h window the 2h-old-token Secrets are stale and rewritten; the new one is not.
    let late_rv = rv(&late_secret);
    sync("3h").run_async().await.assert_code(0);
    let a_secret = get_secret(&client, &a, "awsecr-cred").await.unwrap();
    assert_ne!(rv(&a_secret), a_rv);
    assert_eq!(dockerconfig(&a_secret)["auths"][HOST]["password"], "second");
    assert_eq!(
        rv(&get_secret(&client, &late, "awsecr-cred").await.unwrap()),
        late_rv
    );
}

/// A real forward proxy on loopback sees both the ECR call and the Kubernetes calls; NO_PROXY
/// sends them around it.
#[tokio::test]
async fn proxy_variables_are_honoured() {
    let client = admin().await;
    let ns = unique("proxy");
    create_namespace(&client, &ns, true).await;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("tinyproxy.log");
    let conf = dir.path().join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        ),
    )
    .unwrap();
    let mut proxy = std::process::Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tinyproxy (installed by scripts/testenv.sh install)");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let proxy_url = format!("http://127.0.0.1:{port}");
    let env = env();
    let ecr_hostport = env.ecr_endpoint.trim_start_matches("http://").to_string();
    let api_hostport = env.apiserver.trim_start_matches("https://").to_string();
    let requests = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Request (file descriptor"))
            .map(str::to_string)
            .collect()
    };

    let out = Run::sync()
        .env("HTTPS_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .args(["-n", &ns])
        .run_async()
        .await;
    let seen = requests();
    out.assert_code(0);
    assert!(
        seen.iter()
            .any(|l| l.contains("POST") && l.contains(&ecr_hostport)),
        "ECR call not proxied: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("CONNECT") && l.contains(&api_hostport)),
        "Kubernetes calls not proxied: {seen:#?}"
    );

    let before = seen.len();
    let out = Run::sync()
        .env("HTTPS_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .env("NO_PROXY", "127.0.0.1")
        .args(["-n", &ns])
        .run_async()
        .await;
    let _ = proxy.kill();
    let _ = proxy.wait();
    out.assert_code(0);
    assert_eq!(
        requests().len(),
        before,
        "NO_PROXY must bypass the proxy: {:#?}",
        &requests()[before..]
    );
}

/// With --refresh-before, a namespace whose Secret is fresh needs no token, so it can be
/// linked before ECR turns out to be unreachable: its result stays in the report, and the exit
/// code does not claim that nothing was written.
#[tokio::test]
async fn ecr_failure_after_some_writes_keeps_the_results_and_exits_1() {
    let client = admin().await;
    let base = unique("partial");
    let [fresh, empty] = ["fresh", "empty"].map(|s| format!("{base}-{s}"));
    create_namespace(&client, &fresh, true).await;
    let ecr = FakeEcr::start(FakeEcr::token_body("pw", now() + 6 * 3600, ACCOUNT, REGION)).await;
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &fresh])
        .run_async()
        .await
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

    let out = sync("json").run_async().await;
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
    let out = sync("json").run_async().await;
    out.assert_code(3);
    let r = out.json();
    assert_eq!(outcome(&r, &fresh)["outcome"], "unchanged", "{r:#}");
    assert_eq!(outcome(&r, &empty)["outcome"], "failed", "{r:#}");
    let out = sync("text").run_async().await;
    out.assert_code(3);
    assert!(
        out.stdout()
            .contains(&format!("FAILED {empty}: no ECR token")),
        "{}",
        out.stdout()
    );
    assert!(
        out.stderr()
            .contains("cannot get an ECR authorization token"),
        "{}",
        out.stderr()
    );
}
