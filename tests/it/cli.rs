//! The command line as a user meets it: `--help`, and bad input that must fail with exit 2,
//! name the flag, and leave the cluster untouched.

use crate::common;

use std::process::Command;

use common::*;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ecr-refresh"))
        .env_clear()
        .args(args)
        .output()
        .expect("run ecr-refresh");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

/// `--help` is part of the interface: changes to it show up in review. Regenerate with
/// `UPDATE_SNAPSHOTS=1 cargo test --test it cli::`.
#[test]
fn help_snapshots() {
    let _suite = suite::shared_blocking();
    for (args, file) in [
        (&["--help"][..], "help.txt"),
        (&["sync", "--help"][..], "sync-help.txt"),
        (&["oidc", "publish", "--help"][..], "oidc-publish-help.txt"),
        (&["oidc", "check", "--help"][..], "oidc-check-help.txt"),
    ] {
        let actual = help(args);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(file);
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(
            actual, expected,
            "--help changed; if intended, run UPDATE_SNAPSHOTS=1 cargo test --test it cli::"
        );
    }
}

#[test]
fn help_documents_every_env_variable_and_exit_code() {
    let _suite = suite::shared_blocking();
    let text = help(&["sync", "--help"]);
    for var in [
        "ECR_REFRESH_KUBECONFIG",
        "ECR_REFRESH_CONTEXT",
        "ECR_REFRESH_NAMESPACE",
        "ECR_REFRESH_EXCLUDE_NAMESPACE",
        "ECR_REFRESH_SECRET_NAME",
        "ECR_REFRESH_SERVICE_ACCOUNT",
        "ECR_REFRESH_REGISTRY",
        "ECR_REFRESH_REGION",
        "ECR_REFRESH_DRY_RUN",
        "ECR_REFRESH_OUTPUT",
    ] {
        assert!(text.contains(var), "{var} missing from --help");
    }
    for code in ["0  ", "1  ", "2  ", "3  ", "4  "] {
        assert!(
            text.contains(&format!("\n  {code}")),
            "exit code {code} missing"
        );
    }
}

/// Each bad input: exit 2, a message naming the flag (or variable), nothing written.
#[tokio::test]
async fn bad_input_is_rejected_and_nothing_is_written() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("badinput").await;
    let sa_before = get_sa(&client, &ns, "default")
        .await
        .metadata
        .resource_version;

    // (args, env overrides, what the message must name)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["-n", "[oops"], &[], "--namespace"),
        (&["-x", "Team_A"], &[], "--exclude-namespace"),
        (&["--secret-name", "Not_A_Name"], &[], "--secret-name"),
        (&["--registry", "docker.io/library"], &[], "--registry"),
        (&["--registry", "12345"], &[], "--registry"),
        // Look-alikes of ECR hosts: only dkr-ecr exists under on.aws, hosts are
        // lowercase, and an isolated-partition region has its own suffix.
        (
            &["--registry", "123456789012.dkr.ecr.us-east-1.on.aws"],
            &[],
            "--registry",
        ),
        (
            &["--registry", "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM"],
            &[],
            "--registry",
        ),
        (
            &[
                "--registry",
                "123456789012.dkr.ecr.us-iso-east-1.amazonaws.com",
            ],
            &[],
            "--registry",
        ),
        (&["--region", "mars-north-1x"], &[], "--region"),
        (&["--concurrency", "0"], &[], "--concurrency"),
        (&["--concurrency", "-4"], &[], "--concurrency"),
        (
            &["--request-timeout", "ten seconds"],
            &[],
            "--request-timeout",
        ),
        (&["--timeout", "0s"], &[], "--timeout"),
        (
            &["--request-timeout", "2m", "--timeout", "1m"],
            &[],
            "--request-timeout",
        ),
        (&["-A"], &[], "--all-namespaces"),
        (&["--kubeconfig", "/does/not/exist"], &[], "--kubeconfig"),
        (&[], &[("KUBECONFIG", "/does/not/exist")], "KUBECONFIG"),
        (&["--context", "no-such-context"], &[], "--context"),
        (&[], &[("ECR_REFRESH_CONCURRENCY", "many")], "--concurrency"),
        (&[], &[("AWS_REGION", "")], "region"),
    ];
    for (args, envs, needle) in cases {
        let mut run = Run::sync().args(["-n", ns.as_str()]).args(args.iter());
        for (k, v) in *envs {
            run = if v.is_empty() {
                run.env_remove(k)
            } else {
                run.env(k, v)
            };
        }
        let out = run.run();
        out.assert_code(2).assert_stderr_contains(needle);
    }
    assert_nothing_written(&client, &ns, &sa_before).await;
}

#[tokio::test]
async fn invalid_glob_exits_2_before_any_call() {
    let _suite = suite::shared().await;
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
