//! `ecr-refresh sync` end to end against the real kube-apiserver and moto's ECR server.

pub mod common;

use common::*;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};

#[tokio::test]
async fn creates_then_updates_then_leaves_unchanged() {
    let TestNs { client, name: ns } = TestNs::new("create").await;

    let out = Run::sync().args(["-n", &ns, "-o", "json"]).run();
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), &ns)["outcome"], "created");

    let secret = get_secret(&client, &ns, "awsecr-cred")
        .await
        .expect("secret created");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    let labels = secret.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "ecr-refresh");
    let annotations = secret.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations["ecr-refresh/expires-at"],
        "2015-01-01T00:00:00Z"
    );
    assert_eq!(
        annotations["ecr-refresh/registries"],
        format!("{DUAL_STACK_HOST},{HOST}")
    );
    let auths = &dockerconfig(&secret)["auths"];
    assert_eq!(auths.as_object().unwrap().len(), 2, "{auths}");
    for host in [HOST, DUAL_STACK_HOST] {
        assert_eq!(auths[host]["username"], "AWS");
        assert_eq!(auths[host]["password"], PASSWORD);
        assert_eq!(auths[host]["auth"], AUTH);
    }
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["awsecr-cred"]
    );

    // Someone edits our Secret: the next run puts it back and reports an update.
    let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let mut stale = secret.clone();
    stale.data.as_mut().unwrap().insert(
        ".dockerconfigjson".into(),
        k8s_openapi::ByteString(br#"{"auths":{"old.example":{"auth":"b2xkOm9sZA=="}}}"#.to_vec()),
    );
    api.replace("awsecr-cred", &PostParams::default(), &stale)
        .await
        .unwrap();
    let out = Run::sync().args(["-n", &ns, "-o", "json"]).run();
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), &ns)["outcome"], "updated");
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(dockerconfig(&secret)["auths"][HOST]["password"], PASSWORD);
    assert!(dockerconfig(&secret)["auths"].get("old.example").is_none());

    // Nothing to do: no write at all, so resourceVersions stay.
    after_write_window().await;
    let secret_rv = secret.metadata.resource_version.clone();
    let sa_rv = get_sa(&client, &ns, "default")
        .await
        .metadata
        .resource_version;
    let out = Run::sync().args(["-n", &ns, "-o", "json"]).run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(outcome(&report, &ns)["outcome"], "unchanged");
    assert_eq!(
        outcome(&report, &ns)["service_accounts"][0]["outcome"],
        "already_linked"
    );
    assert_eq!(
        get_secret(&client, &ns, "awsecr-cred")
            .await
            .unwrap()
            .metadata
            .resource_version,
        secret_rv
    );
    assert_eq!(
        get_sa(&client, &ns, "default")
            .await
            .metadata
            .resource_version,
        sa_rv
    );
}

#[tokio::test]
async fn keeps_other_pull_secrets_on_the_service_account() {
    let TestNs { client, name: ns } = TestNs::listing("keep", &["team-registry", "mirror"]).await;

    Run::sync().args(["-n", &ns]).run().assert_code(0);
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["team-registry", "mirror", "awsecr-cred"]
    );
}

#[tokio::test]
async fn include_and_exclude_globs() {
    let client = admin().await;
    let (base, names) = namespaces(&client, "glob", ["app-a", "app-b", "app-c", "other"]).await;
    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-app-*"),
            "-x",
            &format!("{base}-app-b"),
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["summary"]["selected"], 2, "{report:#}");
    for (n, expected) in names.iter().zip([true, false, true, false]) {
        assert_eq!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            expected,
            "{n}"
        );
    }
}

#[tokio::test]
async fn namespace_env_fallback() {
    let TestNs { client, name: ns } = TestNs::new("envflag").await;
    Run::sync()
        .env("ECR_REFRESH_NAMESPACE", &ns)
        .env("ECR_REFRESH_SECRET_NAME", "ecr-pull")
        .run()
        .assert_code(0);
    assert!(get_secret(&client, &ns, "ecr-pull").await.is_some());
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["ecr-pull"]
    );
}

#[tokio::test]
async fn terminating_namespaces_are_skipped() {
    let client = admin().await;
    let (base, [live, dying]) = namespaces(&client, "term", ["live", "dying"]).await;
    delete_namespace(&client, &dying).await;

    // Found by listing: skipped without a write.
    let out = Run::sync()
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(outcome(&report, &dying)["outcome"], "skipped");
    assert_eq!(
        outcome(&report, &dying)["reason"],
        "namespace is terminating"
    );
    assert_eq!(outcome(&report, &live)["outcome"], "created");
    assert_eq!(report["summary"]["skipped"], 1);

    // Named literally (no listing): the server's refusal is recognised as a skip too.
    let out = Run::sync().args(["-n", &dying, "-o", "json"]).run();
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), &dying)["outcome"], "skipped");
    assert!(get_secret(&client, &dying, "awsecr-cred").await.is_none());
}

/// The server refuses only creates in a terminating namespace, so a Secret and a
/// ServiceAccount already there would be written to; a literal -n must skip it as a glob does.
#[tokio::test]
async fn terminating_namespace_named_literally_is_not_written_to() {
    let TestNs {
        client,
        name: dying,
    } = TestNs::new("dying").await;
    Run::sync().args(["-n", &dying]).run().assert_code(0);
    // Make both writes due: a stale annotation, and the link gone.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &dying);
    let stale = serde_json::json!({"metadata": {"annotations": {"ecr-refresh/request": "stale"}}});
    secrets
        .patch(
            "awsecr-cred",
            &PatchParams::default(),
            &Patch::Merge(&stale),
        )
        .await
        .unwrap();
    let unlink = serde_json::json!({"imagePullSecrets": null});
    Api::<ServiceAccount>::namespaced(client.clone(), &dying)
        .patch("default", &PatchParams::default(), &Patch::Merge(&unlink))
        .await
        .unwrap();
    delete_namespace(&client, &dying).await;
    let before = get_secret(&client, &dying, "awsecr-cred").await.unwrap();

    for selector in [dying.clone(), format!("{dying}*")] {
        let out = Run::sync().args(["-n", &selector, "-o", "json"]).run();
        out.assert_code(0);
        let r = out.json();
        assert_eq!(
            outcome(&r, &dying)["outcome"],
            "skipped",
            "-n {selector}: {r:#}"
        );
        assert_eq!(outcome(&r, &dying)["reason"], "namespace is terminating");
    }
    let after = get_secret(&client, &dying, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(pull_secret_names(&get_sa(&client, &dying, "default").await).is_empty());
}

#[tokio::test]
async fn foreign_secret_is_left_alone_and_the_run_fails() {
    let client = admin().await;
    let (base, [theirs, ours]) = namespaces(&client, "foreign", ["theirs", "ours"]).await;
    let before = create_foreign_secret(&client, &theirs).await;

    let out = Run::sync()
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(1);
    let report = out.json();
    assert_eq!(outcome(&report, &theirs)["outcome"], "failed");
    let error = error_of(&report, &theirs);
    assert!(
        error.contains("not managed by ecr-refresh") && error.contains("--force"),
        "{error}"
    );
    // The other namespace still got done.
    assert_eq!(outcome(&report, &ours)["outcome"], "created");

    let after = get_secret(&client, &theirs, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.data, before.data);
    assert_eq!(after.metadata.labels, before.metadata.labels);
    // Not linked either: the secret there is not ours.
    assert!(pull_secret_names(&get_sa(&client, &theirs, "default").await).is_empty());

    // The human summary names it too.
    let out = Run::sync().args(["-n", &theirs]).run();
    out.assert_code(1);
    out.assert_stdout_contains(&format!("FAILED {theirs}"));

    // --force takes it over.
    let out = Run::sync()
        .args(["-n", &theirs, "--force", "-o", "json"])
        .run();
    out.assert_code(0);
    let taken = get_secret(&client, &theirs, "awsecr-cred").await.unwrap();
    assert_eq!(dockerconfig(&taken)["auths"][HOST]["password"], PASSWORD);
    assert_eq!(
        taken.metadata.labels.unwrap()["app.kubernetes.io/managed-by"],
        "ecr-refresh"
    );
}

#[tokio::test]
async fn dry_run_persists_nothing() {
    let TestNs { client, name: ns } = TestNs::bare("dry").await;
    let sa = create_sa(&client, &ns, "default", &["keep-me"]).await;

    let out = Run::sync()
        .args(["-n", &ns, "--dry-run", "-o", "json"])
        .run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["dry_run"], true);
    assert_eq!(outcome(&report, &ns)["outcome"], "created");
    assert_eq!(
        outcome(&report, &ns)["service_accounts"][0]["outcome"],
        "linked"
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
    let after = get_sa(&client, &ns, "default").await;
    assert_eq!(
        after.metadata.resource_version,
        sa.metadata.resource_version
    );
    assert_eq!(pull_secret_names(&after), ["keep-me"]);
}

#[tokio::test]
async fn missing_service_account_fails_only_that_namespace() {
    let client = admin().await;
    let base = unique("nosa");
    let bare = format!("{base}-bare");
    let ok = format!("{base}-ok");
    create_namespace(&client, &bare, false).await;
    create_namespace(&client, &ok, true).await;

    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-*"),
            "--service-account-wait",
            "1s",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(1);
    let report = out.json();
    let failed = outcome(&report, &bare);
    assert_eq!(failed["outcome"], "failed");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("service account default not found"),
        "{failed}"
    );
    assert_eq!(outcome(&report, &ok)["outcome"], "created");
    assert_eq!(report["summary"]["failed"], 1);
}

#[tokio::test]
async fn service_account_created_while_waiting_is_linked() {
    let TestNs { client, name: ns } = TestNs::bare("late-sa").await;
    let child = Run::sync().args(["-n", &ns, "--service-account-wait", "20s"]);
    let handle = std::thread::spawn(move || child.run());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    create_sa(&client, &ns, "default", &[]).await;
    let out = tokio::task::spawn_blocking(move || handle.join().unwrap())
        .await
        .unwrap();
    out.assert_code(0);
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["awsecr-cred"]
    );
}

#[tokio::test]
async fn ecr_unreachable_writes_nothing() {
    let client = admin().await;
    let (base, [existing, fresh]) = namespaces(&client, "noecr", ["existing", "fresh"]).await;
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
async fn invalid_glob_exits_2_before_any_call() {
    // Both servers point at closed ports: any call would turn into exit 3 or 4, not 2.
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .args(["-n", "team-[a"])
        .run();
    out.assert_code(2);
    out.assert_stderr_contains("--namespace");
    assert!(out.stdout().is_empty());
}

#[tokio::test]
async fn cluster_unreachable_or_unauthorized_exits_4_before_ecr() {
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

#[tokio::test]
async fn json_report_matches_the_documented_schema() {
    let ns = TestNs::new("schema").await.name;
    let out = Run::sync().args(["-n", &ns, "-o", "json"]).run();
    out.assert_code(0);
    let r = out.json();
    assert_eq!(r["schema_version"], 1);
    assert_eq!(r["command"], "sync");
    assert_eq!(r["dry_run"], false);
    assert_eq!(r["secret_name"], "awsecr-cred");
    assert_eq!(r["registries"], serde_json::json!([DUAL_STACK_HOST, HOST]));
    assert_eq!(r["token_expires_at"], "2015-01-01T00:00:00Z");
    assert_eq!(r["ecr_calls"], 1);
    assert!(r["api_requests"].as_u64().unwrap() >= 4, "{r:#}");
    assert!(r["api_retries"].is_u64());
    assert!(r["duration_seconds"].is_f64());
    assert!(r["error"].is_null());
    assert_eq!(r["exit_code"], 0);
    for key in [
        "selected",
        "created",
        "updated",
        "unchanged",
        "skipped",
        "failed",
    ] {
        assert!(r["summary"][key].is_u64(), "summary.{key}");
    }
    let n = outcome(&r, &ns);
    assert_eq!(n["outcome"], "created");
    assert_eq!(n["secret"], "created");
    assert_eq!(
        n["service_accounts"],
        serde_json::json!([{"name": "default", "outcome": "linked"}])
    );
}

#[tokio::test]
async fn secrets_never_reach_output_even_at_trace() {
    let ns = TestNs::new("leak").await.name;
    for format in ["text", "json"] {
        let out = Run::sync()
            .env("RUST_LOG", "debug,ecr_refresh=trace")
            .args(["-n", &ns, "--log-format", format, "-o", format])
            .run();
        out.assert_code(0);
        out.assert_stderr_contains_any(&["secret written", "secret is current"]);
        out.assert_no_secrets();
    }
    // Failure paths print errors; they must not leak either.
    let out = Run::sync()
        .env("RUST_LOG", "trace")
        .args([
            "-n",
            &ns,
            "--secret-name",
            "x",
            "--service-account",
            "missing",
            "--service-account-wait",
            "0s",
        ])
        .run();
    out.assert_code(1);
    out.assert_no_secrets();
}

/// Off AWS the EC2 metadata service does not exist; without a region the tool must say so
/// instead of asking it (the SDK's default chain would).
#[tokio::test]
async fn no_region_fails_fast_without_asking_instance_metadata() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let imds = format!("http://{}", listener.local_addr().unwrap());
    let out = Run::sync()
        .env_remove("AWS_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .args(["-n", "anything"])
        .run_async()
        .await;
    out.assert_code(2);
    out.assert_stderr_contains("no AWS region configured: pass --region");
    assert!(
        listener.accept().is_err(),
        "the metadata endpoint was contacted"
    );
}

/// The credential chain as people use it from a laptop: a named profile in ~/.aws, with the
/// region taken from that profile.
#[tokio::test]
async fn profile_credentials_and_region_from_the_shared_config() {
    let ns = TestNs::new("profile").await.name;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[ecr]\naws_access_key_id = AKIAPROFILEEXAMPLE00\naws_secret_access_key = profile-secret\n",
    )
    .unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[profile ecr]\nregion = eu-west-1\n",
    )
    .unwrap();
    let out = Run::sync()
        .env("HOME", home.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .args(["-n", &ns, "--profile", "ecr", "-o", "json"])
        .run_async()
        .await;
    out.assert_code(0);
    // moto signs the proxy endpoint with the region the request was signed for.
    assert_eq!(
        out.json()["registries"],
        serde_json::json!([
            "123456789012.dkr-ecr.eu-west-1.on.aws",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        ])
    );

    // Without the profile there are no credentials at all: exit 3, with a hint.
    let out = Run::sync()
        .env("HOME", home.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["-n", &ns, "--request-timeout", "2s"])
        .run_async()
        .await;
    out.assert_code(3);
    out.assert_stderr_contains("check the AWS credentials");
}

/// Web identity (OIDC federation, which works off AWS): a token file and a role ARN, exchanged
/// at STS (moto) for the credentials that call ECR.
#[tokio::test]
async fn web_identity_credentials() {
    let ns = TestNs::new("webid").await.name;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6a3ViZS1zeXN0ZW06ZWNyLXJlZnJlc2gifQ.c2ln").unwrap();
    let ecr =
        common::fake_ecr::FakeEcr::start(common::fake_ecr::FakeEcr::valid_for_12h("pw")).await;
    let out = Run::sync()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
        .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ecr-refresh")
        .env("AWS_ENDPOINT_URL_ECR", &ecr.url)
        .args(["-n", &ns])
        .run_async()
        .await;
    out.assert_code(0);
    let signed = ecr.signed();
    assert_eq!(signed.len(), 1);
    assert!(
        signed[0].1.starts_with("ASIA"),
        "ECR called with STS credentials: {signed:?}"
    );
}

/// --context picks a context that is not the current one, as kubectl does.
#[tokio::test]
async fn context_flag_selects_a_non_current_context() {
    let TestNs { client, name: ns } = TestNs::new("context").await;
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\n- name: live\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: dead\n  context: {{cluster: dead, user: admin}}\n- name: live\n  context: {{cluster: live, user: admin}}\ncurrent-context: dead\n",
            env.apiserver, env.admin_token
        ),
    )
    .unwrap();
    let out = Run::sync()
        .env("KUBECONFIG", &path)
        .args(["-n", &ns, "--request-timeout", "2s"])
        .run_async()
        .await;
    out.assert_code(4);
    out.assert_stderr_contains("context \"dead\"");
    Run::sync()
        .args([
            "--kubeconfig",
            path.to_str().unwrap(),
            "--context",
            "live",
            "-n",
            &ns,
        ])
        .run_async()
        .await
        .assert_code(0);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}
