//! Checks a test makes of the cluster after a run: nothing written, or a token refused.

use kube::Client;

use super::cluster::{get_sa, get_secret, TestNs};
use super::run::Run;

/// Bad input writes nothing: no Secret in `ns`, and its `default` ServiceAccount unchanged.
pub async fn assert_nothing_written(
    client: &Client,
    ns: &str,
    sa_resource_version: &Option<String>,
) {
    assert!(get_secret(client, ns, "awsecr-cred").await.is_none());
    assert_eq!(
        &get_sa(client, ns, "default")
            .await
            .metadata
            .resource_version,
        sa_resource_version
    );
}

/// `sync -n <a new namespace> -o json` against the ECR at `ecr_url` exits 3
/// (`ecr_token_invalid`) with an error naming `expect`, and writes nothing.
pub async fn assert_token_refused(ecr_url: &str, expect: &str) {
    let TestNs { client, name: ns } = TestNs::new("badtoken").await;
    let sa_rv = get_sa(&client, &ns, "default")
        .await
        .metadata
        .resource_version;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", ecr_url)
        .args(["-n", &ns, "-o", "json"])
        .run();
    out.assert_code(3);
    let report = out.json();
    assert_eq!(report["error"]["kind"], "ecr_token_invalid", "{report:#}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(expect),
        "should name {expect:?}: {message}"
    );
    out.assert_stderr_contains(expect);
    assert_nothing_written(&client, &ns, &sa_rv).await;
}
