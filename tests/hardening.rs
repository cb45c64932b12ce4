//! Hostile and careless input (issue 10): credentials in broken kubeconfigs and in logs, a
//! profile that must win over env keys, brace globs, and durations too large to add to a clock.

mod common;

use common::*;

/// A duration that would overflow the clock is bad input: exit 2 naming the flag, before any
/// connection, and nothing written.
#[tokio::test]
async fn huge_durations_are_rejected_before_anything_runs() {
    let client = admin().await;
    let ns = unique("hugedur");
    create_namespace(&client, &ns, true).await;
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
        assert!(
            out.stderr().contains(flag) && out.stderr().contains("at most 24h"),
            "{args:?}:\n{}",
            out.stderr()
        );
    }
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
    assert_eq!(
        get_sa(&client, &ns, "default")
            .await
            .metadata
            .resource_version,
        sa_before
    );
}

/// `{a,b}` and `[a,b]` hold commas; only the commas between patterns separate values.
#[tokio::test]
async fn brace_and_class_globs_with_commas() {
    let client = admin().await;
    let base = unique("brace");
    let names = ["dev-1", "qa-2", "prod-1", "x-a", "x-c"].map(|s| format!("{base}-{s}"));
    for n in &names {
        create_namespace(&client, n, true).await;
    }
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
