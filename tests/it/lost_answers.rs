//! Writes the server carried out but whose answers came too late, and how their retries are
//! reported: the fault proxy forwards the request to the real apiserver, then holds the answer
//! back past `--request-timeout`, so the tool retries a write that already happened.

use crate::common;

use std::time::Duration;

use common::fault::late_first;
use common::proxy::FaultProxy;
use common::*;

/// Longer than the `--request-timeout 1s` the runs below use.
const LATE: Duration = Duration::from_millis(2500);

/// `--force` over a Secret of another type deletes it, then creates ours. When the DELETE is
/// carried out but its answer is late, the retried DELETE finds nothing: that is the delete
/// having worked, and the create must still follow.
#[tokio::test]
async fn a_late_delete_answer_during_a_forced_replace_still_leaves_our_secret() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("latedel").await;
    create_secret(&client, &ns, "awsecr-cred", "Opaque", &[("x", b"y")]).await;
    let path = format!("/api/v1/namespaces/{ns}/secrets/awsecr-cred");
    let proxy = FaultProxy::start(late_first(vec![("DELETE", path)], LATE)).await;
    let out = Run::sync()
        .through(&proxy)
        .args([
            "-n",
            &ns,
            "--force",
            "--request-timeout",
            "1s",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let r = out.json();
    assert_eq!(outcome(&r, &ns)["secret"], "updated", "{r:#}");
    let deletes = proxy.log().iter().filter(|(m, ..)| m == "DELETE").count();
    assert_eq!(deletes, 2, "the DELETE was retried: {:?}", proxy.log());
    let secret = get_secret(&client, &ns, "awsecr-cred")
        .await
        .expect("the namespace has our Secret");
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson")
    );
    assert_eq!(dockerconfig(&secret)["auths"][HOST]["password"], PASSWORD);
}

/// A create whose answer is lost is retried; the server answers the retry with 200, as for
/// an update. The report must still say `created`, and a link whose answer is lost (the retry
/// then meets a changed resourceVersion) must still say `linked`.
#[tokio::test]
async fn retried_writes_are_reported_as_what_they_did() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::listing("lateans", &["theirs"]).await;
    let writes = vec![
        (
            "PATCH",
            format!("/api/v1/namespaces/{ns}/secrets/awsecr-cred"),
        ),
        (
            "PATCH",
            format!("/api/v1/namespaces/{ns}/serviceaccounts/default"),
        ),
    ];
    let proxy = FaultProxy::start(late_first(writes, LATE)).await;
    let out = Run::sync()
        .through(&proxy)
        .args(["-n", &ns, "--request-timeout", "1s", "-o", "json"])
        .run();
    out.assert_code(0);
    let r = out.json();
    let report = outcome(&r, &ns);
    assert_eq!(report["secret"], "created", "{r:#}");
    assert_eq!(report["outcome"], "created", "{r:#}");
    assert_eq!(report["service_accounts"][0]["outcome"], "linked", "{r:#}");
    assert!(r["api_retries"].as_u64().unwrap() >= 2, "{r:#}");
    assert_eq!(r["summary"]["created"], 1, "{r:#}");
    let stored = get_sa(&client, &ns, "default").await;
    assert_eq!(pull_secret_names(&stored), ["theirs", "awsecr-cred"]);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}
