//! AWS credentials, region and role: `credential_process` helpers run as real child
//! processes, STS and ECR that never answer, shared-config profiles, web identity and
//! assume-role, and a region that is missing, empty or wrong.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::fake_ecr::FakeEcr;
use common::fault::Fault;
use common::proxy::FaultProxy;
use common::*;

/// An AWS config whose profile `helper` gets its credentials from `command`.
fn aws_profile(home: &Path, section: &str, command: &Path) {
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[{section}]\nregion = us-east-1\ncredential_process = {}\n",
            command.display()
        ),
    )
    .unwrap();
}

/// A `credential_process` that hangs ends at --timeout, naming the
/// credentials (not ECR), and a SIGTERM stops it at once; its child never outlives the run.
#[tokio::test]
async fn a_hanging_credential_process_ends_at_the_deadline_or_the_first_sigterm() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("credhang").await;
    let home = tempfile::tempdir().unwrap();
    let (helper, pid) = hanging_helper(home.path());
    aws_profile(home.path(), "profile helper", &helper);
    let run = || {
        Run::sync()
            .env("HOME", home.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["-n", &ns, "--profile", "helper", "-o", "json"])
    };
    let (out, took) = timed(run().args(SHORT));
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(
        message.contains("resolving the AWS credentials"),
        "{message}"
    );
    assert!(!message.contains("GetAuthorizationToken"), "{message}");
    assert!(!still_runs(&pid), "the helper's child outlived the run");

    std::fs::remove_file(&pid).unwrap();
    let running = run().start();
    let out = sigterm_once(running, || pid.exists()).await;
    out.assert_code(1);
    assert!(!still_runs(&pid), "the helper's child outlived the run");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// Also reported: a failing `credential_process`'s stderr is not repeated, neither in the
/// error nor in the SDK's warnings (a profile chosen, and the default profile).
#[tokio::test]
async fn credential_process_stderr_is_not_shown() {
    let _suite = suite::shared().await;
    let home = tempfile::tempdir().unwrap();
    let helper = script(home.path(), "helper.sh", "echo HELPERSECRET >&2\nexit 1");
    for (section, args) in [
        ("profile helper", &["--profile", "helper"][..]),
        ("default", &[][..]),
    ] {
        aws_profile(home.path(), section, &helper);
        let out = Run::sync()
            .env("HOME", home.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["-n", "default", "--request-timeout", "2s"])
            .args(args)
            .run();
        out.assert_code(3);
        out.assert_stderr_contains("credential")
            .assert_stderr_lacks("HELPERSECRET");
    }
}

/// Web identity with STS hanging ends at --timeout naming STS, not ECR, or at
/// the first SIGTERM.
#[tokio::test]
async fn web_identity_with_sts_hanging_ends_at_the_deadline_naming_sts() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("stshang").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.sig").unwrap();
    let (sts, reached) = blackhole();
    let run = || {
        Run::sync()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ecr")
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .args(["-n", &ns, "-o", "json"])
    };
    let (out, took) = timed(run().args(SHORT));
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(message.contains("STS"), "{message}");
    assert!(!message.contains("GetAuthorizationToken"), "{message}");

    // The first SIGTERM while STS hangs gives a report at once, well inside a pod's 30 s grace.
    let before = reached();
    let out = sigterm_once(run().start(), || reached() > before).await;
    out.assert_code(1);
    assert_eq!(out.json()["error"]["kind"], "cancelled");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// An ECR that never answers ends the run at --timeout, naming ECR.
#[tokio::test]
async fn an_ecr_that_never_answers_ends_at_the_deadline() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("ecrhang").await;
    let (ecr, _) = blackhole();
    let (out, took) = timed(
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr)
            // Every Secret due, so the token is fetched in setup (as when the lists show one due).
            .args(["-n", &ns, "-o", "json", "--refresh-all"])
            .args(SHORT),
    );
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(message.contains("GetAuthorizationToken"), "{message}");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// A Secret of ours that someone else changed since our last write: the metadata list cannot
/// vouch for it, so it is read in full before any namespace work, and its write found due there.
/// The token is fetched as that named setup step, so an ECR that hangs ends the run at --timeout
/// naming ECR, not as a namespace that did not finish.
#[tokio::test]
async fn a_secret_the_list_cannot_vouch_for_has_its_token_fetched_in_setup() {
    let _suite = suite::shared().await;
    let (client, base, [ns]) = TestNs::group("unvouched", ["a"]).await;
    let glob = format!("{base}-*");
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &glob])
        .run()
        .assert_code(0);
    // Current (valid for 12 h), but changed by another writer: its resourceVersion is no longer
    // the ledger's.
    let label = serde_json::json!({"metadata": {"labels": {"team": "a"}}});
    tamper(&client, &ns, label).await;
    let (blackhole, _) = blackhole();
    let (out, took) = timed(
        Run::sync()
            .env("AWS_ENDPOINT_URL", &blackhole)
            .args(["-n", &glob, "-o", "json"])
            .args(SHORT),
    );
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(message.contains("GetAuthorizationToken"), "{message}");
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        secret
            .metadata
            .labels
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("a"),
        "not written"
    );
}

/// A cluster-wide ServiceAccount list that hangs ends the run at --timeout
/// (not every namespace "did not finish"), and the token fetched meanwhile is counted, in the
/// report and in the pushed metric.
#[tokio::test]
async fn a_hanging_service_account_list_ends_at_the_deadline_and_counts_ecr_calls() {
    let _suite = suite::shared().await;
    let (_, base, _) = TestNs::group("salist", ["a", "b"]).await;
    let list = Fault::on("GET", "/api/v1/serviceaccounts");
    let proxy = FaultProxy::start(list.hang()).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    let (gateway, pushed) = pushgateway();
    let (out, took) = timed(
        Run::sync()
            .through(&proxy)
            .env("AWS_ENDPOINT_URL", &ecr.url)
            // With --refresh-all the token is fetched while the lists run.
            .args(["-n", &format!("{base}-*"), "--refresh-all"])
            .args(["--pushgateway", &gateway, "-o", "json"])
            .args(SHORT),
    );
    let message = ended_at_the_deadline(&out, took, 4);
    let report = out.json();
    assert!(message.contains("listing service accounts"), "{message}");
    assert_eq!(ecr.calls(), 1);
    assert_eq!(report["ecr_calls"], 1, "{report:#}");
    let body = pushed.lock().unwrap().join("\n");
    assert!(body.contains("ecr_refresh_last_run_ecr_calls 1"), "{body}");
}

/// A Pushgateway stand-in that keeps every body pushed to it.
fn pushgateway() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt as _;
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let url = common::standin::serve(bodies.clone(), |kept, req| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        kept.lock()
            .unwrap()
            .push(String::from_utf8_lossy(&body).into_owned());
        hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()))
    });
    (url, bodies)
}

/// `sync --prune` with a selection that matches nothing exits 2 without calling
/// ECR, and says so.
#[tokio::test]
async fn an_empty_prune_selection_calls_no_ecr() {
    let _suite = suite::shared().await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    let (gateway, pushed) = pushgateway();
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["--prune", "-n", &format!("{}-typo-*", unique("none"))])
        .args(["--pushgateway", &gateway, "-o", "json"])
        .run();
    out.assert_code(2);
    assert_eq!(ecr.calls(), 0, "ECR was called");
    assert_eq!(out.json()["ecr_calls"], 0);
    let body = pushed.lock().unwrap().join("\n");
    assert!(body.contains("ecr_refresh_last_run_ecr_calls 0"), "{body}");
}

/// An empty AWS_REGION is unset (the profile's region holds), and a wrong one is
/// reported under its own name, not as a --region never passed.
#[tokio::test]
async fn an_empty_aws_region_is_unset_and_a_bad_one_is_named() {
    let _suite = suite::shared().await;
    let ns = TestNs::new("region").await.name;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = eu-west-1\n",
    )
    .unwrap();
    let run = |region: &str| {
        Run::sync()
            .env("HOME", home.path())
            .env("AWS_REGION", region)
            .args(["-n", &ns, "-o", "json"])
            .run()
    };
    let out = run("");
    out.assert_code(0);
    let registries = out.json()["registries"].to_string();
    assert!(
        registries.contains("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
            && !registries.contains("us-east-1"),
        "{registries}"
    );
    let out = run("mars");
    out.assert_code(2);
    out.assert_stderr_contains(r#"invalid AWS_REGION "mars""#)
        .assert_stderr_lacks("--region");
}

#[tokio::test]
async fn assume_role_signs_ecr_calls_with_the_role_credentials() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("assume").await;
    // STS goes to moto (AWS_ENDPOINT_URL); ECR to a stand-in that records who signed.
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
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
        .run();
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
        .run();
    out.assert_code(0);
}

/// Off AWS the EC2 metadata service does not exist; without a region the tool must say so
/// instead of asking it (the SDK's default chain would).
#[tokio::test]
async fn no_region_fails_fast_without_asking_instance_metadata() {
    let _suite = suite::shared().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let imds = format!("http://{}", listener.local_addr().unwrap());
    let out = Run::sync()
        .env_remove("AWS_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds)
        .args(["-n", "anything"])
        .run();
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
    let _suite = suite::shared().await;
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
        .run();
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
        .run();
    out.assert_code(3);
    out.assert_stderr_contains("check the AWS credentials");
}

/// Web identity (OIDC federation, which works off AWS): a token file and a role ARN, exchanged
/// at STS (moto) for the credentials that call ECR.
#[tokio::test]
async fn web_identity_credentials() {
    let _suite = suite::shared().await;
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
        .run();
    out.assert_code(0);
    let signed = ecr.signed();
    assert_eq!(signed.len(), 1);
    assert!(
        signed[0].1.starts_with("ASIA"),
        "ECR called with STS credentials: {signed:?}"
    );
}

/// An AWS_CONFIG_FILE that is a FIFO nobody writes ends the run at
/// --timeout naming the file (exit 3, as for the AWS credentials), and a SIGTERM stops it at
/// once; nothing is written.
#[tokio::test]
async fn an_aws_config_fifo_that_never_answers_ends_at_the_deadline_or_sigterm() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("awscfgfifo").await;
    let dir = tempfile::tempdir().unwrap();
    let config = fifo(dir.path(), "config");
    let run = || {
        Run::sync()
            .env("AWS_CONFIG_FILE", &config)
            .args(["-n", &ns, "-o", "json"])
    };
    let (out, took) = timed(run().args(SHORT));
    let message = ended_at_the_deadline(&out, took, 3);
    assert_eq!(out.json()["error"]["kind"], "ecr_token");
    assert!(
        message.contains(&format!(
            "{:?} (AWS_CONFIG_FILE)",
            config.display().to_string()
        )),
        "{message}"
    );

    let out = sigterm_after(run().start(), Duration::from_millis(500)).await;
    out.assert_code(1);
    assert_eq!(out.json()["error"]["kind"], "cancelled");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// An AWS_WEB_IDENTITY_TOKEN_FILE that is a FIFO nobody writes (the SDK reads it
/// with a blocking read) ends the run at --timeout naming the file; STS is never reached.
#[tokio::test]
async fn a_web_identity_token_fifo_that_never_answers_ends_at_the_deadline() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("wififo").await;
    let dir = tempfile::tempdir().unwrap();
    let token = fifo(dir.path(), "token");
    let (sts, reached) = blackhole();
    let (out, took) = timed(
        Run::sync()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ecr")
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .args(["-n", &ns, "-o", "json"])
            .args(SHORT),
    );
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(
        message.contains(&format!(
            "AWS_WEB_IDENTITY_TOKEN_FILE {:?}",
            token.display().to_string()
        )),
        "{message}"
    );
    assert_eq!(reached(), 0, "STS was called without the token");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// An AWS config file the SDK cannot use is named as such, not as "no such
/// profile": a device with no end (`/dev/zero`, which the SDK would read until memory runs
/// out), with a profile named or not, and a file that is not UTF-8 (read as empty).
#[tokio::test]
async fn an_unusable_aws_config_file_is_named_not_no_such_profile() {
    let _suite = suite::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("config");
    std::fs::write(&binary, b"[profile p]\nregion = \xff\xfe\n").unwrap();
    let cases = [
        ("/dev/zero".as_ref(), &["--profile", "p"][..], "1 MiB"),
        ("/dev/zero".as_ref(), &[][..], "1 MiB"),
        (binary.as_path(), &["--profile", "p"][..], "not UTF-8"),
    ];
    for (file, args, why) in cases {
        let out = Run::sync()
            .env("AWS_CONFIG_FILE", file)
            .args(["-n", "default", "-o", "json"])
            .args(args)
            .args(SHORT)
            .run();
        out.assert_code(2);
        let message = error_message(&out);
        let named = format!("AWS_CONFIG_FILE {:?}", file.display().to_string());
        assert!(message.contains(&named), "{message}");
        assert!(message.contains(why), "{message}");
        assert!(!message.contains("no such profile"), "{message}");
    }
}
