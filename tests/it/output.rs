//! What the tool prints: the JSON report's documented schema; no token at any log level, and
//! no password from a URL in a log line or a refusal; and a report that cannot be written is
//! an error, not exit 0.

use crate::common;

use common::*;

/// The Pushgateway URL's password comes from a flag or from `ECR_REFRESH_PUSHGATEWAY` (pod
/// logs); the refusal names the flag and shows the URL masked.
#[tokio::test]
async fn a_pushgateway_password_is_masked_in_the_refusal() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("pgwpass").await;
    let url = "https://admin:PUSHPASSWORD@pushgateway.example:9091";
    for run in [
        Run::sync().args(["-n", &ns, "--pushgateway", url]),
        Run::sync()
            .args(["-n", &ns])
            .env("ECR_REFRESH_PUSHGATEWAY", url),
    ] {
        let out = run.run();
        out.assert_code(2)
            .assert_stderr_lacks("PUSHPASSWORD")
            .assert_stderr_lacks("admin:")
            .assert_stderr_contains(
                "invalid value 'https://***@pushgateway.example:9091' for '--pushgateway <URL>'",
            )
            .assert_stderr_contains("credentials in the URL are not supported");
    }
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// `RUST_LOG=debug` turns on the HTTP client's connection-pool lines (`pooling idle connection
/// for ("https", user:password@host)`) and the AWS SDK's endpoint lines: a password in the
/// kubeconfig's server URL or in `AWS_ENDPOINT_URL_ECR` is printed as `***` there too, and at
/// `trace`.
#[tokio::test]
async fn passwords_in_server_urls_are_masked_at_debug_and_trace_level() {
    let _suite = suite::shared().await;
    let env = env();
    let ns = TestNs::new("debugpw").await.name;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("config");
    let original = std::fs::read_to_string(&env.kubeconfig).unwrap();
    let with_password =
        original.replace("server: https://", "server: https://kubeuser:KUBEPASSWORD@");
    assert_ne!(original, with_password);
    std::fs::write(&kubeconfig, with_password).unwrap();
    let ecr = env
        .ecr_endpoint
        .replace("http://", "http://awsuser:AWSPASSWORD@");
    for (level, format) in [("debug", "text"), ("debug", "json"), ("trace", "text")] {
        let out = Run::sync()
            .env("RUST_LOG", level)
            .env("KUBECONFIG", &kubeconfig)
            .env("AWS_ENDPOINT_URL_ECR", &ecr)
            .args(["-n", &ns, "--log-format", format])
            .run();
        out.assert_code(0);
        out.assert_no_secrets();
        out.assert_stderr_lacks("KUBEPASSWORD")
            .assert_stderr_lacks("AWSPASSWORD")
            // The lines that used to carry them are there, masked.
            .assert_stderr_contains("pooling idle connection")
            .assert_stderr_contains("kubeuser:***@127.0.0.1")
            .assert_stderr_contains("awsuser:***@127.0.0.1");
    }
}

/// `sync -o json >/dev/full` and `sync -o json >&-` used to exit 0 with nothing said. A full
/// disk is found when writing: exit 1 and a message. A closed stdout is known at start: exit
/// 2 before anything is written.
#[tokio::test]
async fn a_report_that_cannot_be_written_is_an_error() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("lostreport").await;
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };

    let out = Run::sync()
        .args(["-n", &ns, "-o", "json"])
        .stdout_to(full())
        .run();
    out.assert_code(1)
        .assert_stderr_contains("cannot write the report to stdout");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
    // A run that failed keeps its own code.
    let out = Run::sync()
        .args(["-n", &ns, "-o", "json", "--kubeconfig", "/nope"])
        .stdout_to(full())
        .run();
    out.assert_code(2)
        .assert_stderr_contains("cannot write the report to stdout");

    let other = TestNs::new("closedout").await.name;
    for args in [
        &["sync", "-n", &other, "-o", "json"][..],
        &["prune", "-x", &other, "--dry-run"][..],
        &["status", "-n", &other],
        &["completions", "bash"],
        &["man"],
        &[
            "oidc",
            "check",
            "--issuer-url",
            "https://oidc.example.com/c",
        ],
    ] {
        let out = Run::bare().args(args).stdout_closed().run();
        out.assert_code(2)
            .assert_stderr_contains("stdout is closed");
    }
    assert!(get_secret(&client, &other, "awsecr-cred").await.is_none());
    // The same run with stdout open works.
    Run::sync().args(["-n", &other]).run().assert_code(0);
}

#[tokio::test]
async fn json_report_matches_the_documented_schema() {
    let _suite = suite::shared().await;
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
    let _suite = suite::shared().await;
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
