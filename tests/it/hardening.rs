//! Hostile and careless input: credentials in broken kubeconfigs and in logs, a
//! profile that must win over env keys, brace globs, and durations too large to add to a clock.

use crate::common;

use common::fake_ecr::FakeEcr;
use common::*;

/// A duration that would overflow the clock is bad input: exit 2 naming the flag, before any
/// connection, and nothing written.
#[tokio::test]
async fn huge_durations_are_rejected_before_anything_runs() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("hugedur").await;
    let sa_before = get_sa(&client, &ns, "default")
        .await
        .metadata
        .resource_version;
    for (args, flag) in [
        (&["sync", "--timeout", "500000000000y"][..], "--timeout"),
        (&["status", "--timeout", "500000000000y"][..], "--timeout"),
        (&["prune", "--timeout", "500000000000y"][..], "--timeout"),
        (
            &[
                "sync",
                "--timeout",
                "200000000000y",
                "--request-timeout",
                "200000000000y",
            ][..],
            "--timeout",
        ),
        (
            &["sync", "--service-account-wait", "500000000000y"][..],
            "--service-account-wait",
        ),
        (
            &["sync", "--request-timeout", "25h"][..],
            "--request-timeout",
        ),
    ] {
        let out = Run::bare().args(args).args(["-n", &ns]).run();
        out.assert_code(2);
        out.assert_stderr_contains(flag)
            .assert_stderr_contains("at most 24h");
    }
    assert_nothing_written(&client, &ns, &sa_before).await;
}

/// `{a,b}` and `[a,b]` hold commas; only the commas between patterns separate values.
#[tokio::test]
async fn brace_and_class_globs_with_commas() {
    let _suite = suite::shared().await;
    let suffixes = ["dev-1", "qa-2", "prod-1", "x-a", "x-c"];
    let (client, base, names) = TestNs::group("brace", suffixes).await;
    let selected = |out: &RunOutput| -> Vec<String> {
        out.assert_code(0);
        let mut v: Vec<String> = out.json()["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let out = Run::sync()
        .args(["-o", "json", "-n"])
        .args([format!("{base}-{{dev,qa}}-*,{base}-x-[a,b]")])
        .run();
    assert_eq!(
        selected(&out),
        [&names[0], &names[1], &names[3]].map(|s| s.to_string())
    );
    let out = Run::sync()
        .args(["--dry-run", "-o", "json"])
        .env("ECR_REFRESH_NAMESPACE", format!("{base}-{{dev,qa}}-[0-9]"))
        .run();
    assert_eq!(
        selected(&out),
        [&names[0], &names[1]].map(|s| s.to_string())
    );
    for (n, written) in names.iter().zip([true, true, false, true, false]) {
        assert_eq!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            written,
            "{n}"
        );
    }
}

/// The bearer token of the kubeconfigs below; it must never be printed.
const KUBE_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.SECRET";

/// A kubeconfig whose line 18 is indented one space too far, right below the token.
fn broken_kubeconfig() -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
contexts:
- name: c
  context:
    cluster: c
    user: u
current-context: c
users:
- name: u
  user:
    token: {KUBE_TOKEN}
     extra: oops
"
    )
}

#[track_caller]
fn assert_no_kube_token(out: &RunOutput) {
    for (name, text) in [("stdout", out.stdout()), ("stderr", out.stderr())] {
        assert!(
            !text.contains("SECRET"),
            "{name} quotes the kubeconfig:\n{text}"
        );
    }
}

#[tokio::test]
async fn a_broken_kubeconfig_is_reported_without_its_content() {
    let _suite = suite::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, broken_kubeconfig()).unwrap();
    std::fs::create_dir_all(dir.path().join(".kube")).unwrap();
    std::fs::write(dir.path().join(".kube/config"), broken_kubeconfig()).unwrap();

    // --kubeconfig, KUBECONFIG, and ~/.kube/config (found by inference).
    let runs = [
        Run::bare().args(["status", "--kubeconfig"]).args([&path]),
        Run::bare().env("KUBECONFIG", &path).args(["status"]),
        Run::bare()
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .args(["status"]),
    ];
    for run in runs {
        let out = run.args(["-o", "json"]).run();
        out.assert_code(2);
        assert_no_kube_token(&out);
        let message = out.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains("yaml: line 18, column 11: mapping values are not allowed"),
            "{message}"
        );
        out.assert_stderr_contains("line 18");
    }
    // The JSON log format carries the same message.
    let out = Run::bare()
        .args(["status", "--log-format", "json", "--kubeconfig"])
        .args([&path])
        .run();
    out.assert_code(2);
    assert_no_kube_token(&out);
}

#[tokio::test]
async fn a_password_in_the_server_url_is_masked() {
    let _suite = suite::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    // A closed port: the run fails with exit 4 and names the server.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://admin:SECRET@127.0.0.1:{port}
contexts:
- name: c
  context: {{cluster: c, user: u}}
current-context: c
users:
- name: u
  user: {{token: abc}}
"
        ),
    )
    .unwrap();
    for format in ["text", "json"] {
        let out = Run::bare()
            .args(["status", "--request-timeout", "1s", "-o", format])
            .args(["--log-format", format, "--kubeconfig"])
            .args([&path])
            .run();
        out.assert_code(4);
        assert_no_kube_token(&out);
        out.assert_stderr_contains(&format!("https://admin:***@127.0.0.1:{port}"));
    }
}

/// Span and field directives must not lift the AWS SDK above debug: its trace level prints the
/// whole GetAuthorizationToken response.
#[tokio::test]
async fn no_rust_log_directive_lets_the_sdk_print_the_token() {
    let _suite = suite::shared().await;
    let ns = TestNs::new("sdkcap").await.name;
    for directive in [
        "[ECR.GetAuthorizationToken]=trace",
        "[{rpc.service=ECR}]=trace",
        "[{rpc.method=GetAuthorizationToken}]=trace",
        "trace",
    ] {
        for format in ["text", "json"] {
            let out = Run::sync()
                .env("RUST_LOG", directive)
                .args(["-n", &ns, "--log-format", format])
                .run();
            out.assert_code(0);
            out.assert_no_secrets();
            // The directive took effect: the SDK's own debug lines inside the call are there.
            out.assert_stderr_contains("deserialize_nonstreaming");
        }
    }
}

/// `--profile` (and `AWS_PROFILE`) win over AWS_ACCESS_KEY_ID in the environment, and a
/// profile that does not exist is bad input, not a quiet fall-back to other credentials.
#[tokio::test]
async fn an_explicit_profile_wins_over_env_keys_and_must_exist() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("profwin").await;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/credentials"),
        "[other]\naws_access_key_id = AKIAOTHERPROFILE0000\naws_secret_access_key = other-secret\n",
    )
    .unwrap();
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;

    let sync = || {
        Run::sync()
            .env("HOME", home.path())
            .env("AWS_ENDPOINT_URL_ECR", &ecr.url)
            // Every run fetches a token, due or not: which keys sign the call is the point.
            .args(["-n", &ns, "--refresh-all"])
    };
    // Run::sync() sets AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE.
    sync().args(["--profile", "other"]).run().assert_code(0);
    sync().env("AWS_PROFILE", "other").run().assert_code(0);
    sync()
        .env("ECR_REFRESH_PROFILE", "other")
        .run()
        .assert_code(0);
    let keys: Vec<String> = ecr.signed().into_iter().map(|(_, key)| key).collect();
    assert_eq!(keys, ["AKIAOTHERPROFILE0000"; 3]);
    // Without a profile the env keys are used, as before.
    sync().run().assert_code(0);
    assert_eq!(ecr.signed()[3].1, "AKIAIOSFODNN7EXAMPLE");

    let calls = ecr.calls();
    let other = TestNs::new("profnope").await.name;
    for (args, envs, flag) in [
        (&["--profile", "nope"][..], &[][..], "--profile"),
        (&[][..], &[("AWS_PROFILE", "nope")][..], "AWS_PROFILE"),
    ] {
        let mut run = Run::sync()
            .env("HOME", home.path())
            .env("AWS_ENDPOINT_URL_ECR", &ecr.url)
            .args(["-n", &other])
            .args(args);
        for (k, v) in envs {
            run = run.env(k, v);
        }
        let out = run.run();
        out.assert_code(2);
        out.assert_stderr_contains(&format!("invalid {flag} \"nope\""));
        out.assert_stderr_contains("no such profile");
    }
    assert_eq!(ecr.calls(), calls, "ECR was asked with an unknown profile");
    assert!(get_secret(&client, &other, "awsecr-cred").await.is_none());
}
