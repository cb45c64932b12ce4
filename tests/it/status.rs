//! `ecr-refresh status`: what it reports for each namespace (missing, foreign, expiring,
//! healthy, unlinked) and the exit code that follows, judged from what the server stores.

use crate::common;

use common::fake_ecr::FakeEcr;
use common::*;

#[tokio::test]
async fn status_reports_missing_foreign_expiring_and_healthy() {
    let _suite = suite::shared().await;
    let (client, base, [missing, foreign, expiring, healthy, unlinked]) = TestNs::group(
        "status",
        ["missing", "foreign", "expiring", "healthy", "unlinked"],
    )
    .await;
    create_foreign_secret_with(&client, &foreign, br#"{"auths":{}}"#).await;
    let ecr = FakeEcr::start(FakeEcr::token_body("pw", now() + 1800, ACCOUNT, REGION)).await;
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &expiring])
        .run()
        .assert_code(0);
    ecr.set_body(FakeEcr::valid_for_12h("pw"));
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &healthy])
        .run()
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
        .run();

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
    let out = status("").run();
    out.assert_code(1);
    let r = out.json();
    let state = |ns: &str| outcome(&r, ns).clone();
    assert_eq!(state(&missing)["secret"], "missing");
    assert_eq!(state(&missing)["healthy"], false);
    assert_eq!(state(&foreign)["secret"], "foreign");
    assert_eq!(state(&foreign)["healthy"], false);
    assert_eq!(state(&healthy)["healthy"], true, "{:#}", state(&healthy));
    assert_eq!(
        state(&healthy)["registries"],
        serde_json::json!([DUAL_STACK_HOST, HOST])
    );
    assert!(state(&healthy)["remaining_seconds"].as_i64().unwrap() > 40000);
    assert_eq!(state(&healthy)["service_accounts"][0]["state"], "linked");
    assert_eq!(state(&expiring)["healthy"], true);
    assert_eq!(state(&unlinked)["secret"], "managed");
    assert_eq!(state(&unlinked)["service_accounts"][0]["state"], "unlinked");
    assert_eq!(r["summary"]["unhealthy"], 3);

    // With --min-remaining 1h, the expiring one is unhealthy too.
    let out = status("1h").run();
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
        .run();
    out.assert_code(0);
    out.assert_stdout_contains(&format!("ok        {healthy}"));
}
