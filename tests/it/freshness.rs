//! When a write is due (`--refresh-before`): fresh Secrets are left alone, a new namespace is
//! filled, and the judgement trusts only the payload, never an annotation anyone could edit.

use crate::common;

use base64::Engine as _;
use common::fake_ecr::FakeEcr;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};

#[tokio::test]
async fn refresh_before_leaves_fresh_secrets_alone() {
    let _suite = suite::shared().await;
    let (client, base, [a, _]) = TestNs::group("fresh", ["a", "b"]).await;
    let late = format!("{base}-late");
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
    sync("1h").run().assert_code(0);
    assert_eq!(ecr.calls(), 1);
    let a_rv = rv(&get_secret(&client, &a, "awsecr-cred").await.unwrap());

    // Still fresh (2h > 1h): no ECR call, no write.
    ecr.set_body(FakeEcr::valid_for_12h("second"));
    let out = sync("1h").run();
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
    sync("1h").run().assert_code(0);
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
    sync("3h").run().assert_code(0);
    let a_secret = get_secret(&client, &a, "awsecr-cred").await.unwrap();
    assert_ne!(rv(&a_secret), a_rv);
    assert_eq!(dockerconfig(&a_secret)["auths"][HOST]["password"], "second");
    assert_eq!(
        rv(&get_secret(&client, &late, "awsecr-cred").await.unwrap()),
        late_rv
    );
}

/// Annotations are only believed when they make sense: an expiry further out than an ECR token
/// lasts, or a payload for hosts other than the requested registries, is not fresh, and
/// `status` says what is wrong with it.
#[tokio::test]
async fn refresh_before_and_status_do_not_trust_annotations() {
    let _suite = suite::shared().await;
    let (client, base, [far, evil, garbage]) =
        TestNs::group("distrust", ["far", "evil", "garbage"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("real")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync().env("AWS_ENDPOINT_URL", &ecr.url).args([
            "-n",
            glob.as_str(),
            "--refresh-before",
            "1h",
            "-o",
            "json",
        ])
    };
    sync().run().assert_code(0);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &far);
    secrets
        .patch(
            "awsecr-cred",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "ecr-refresh/expires-at": "2999-01-01T00:00:00Z"}}})),
        )
        .await
        .unwrap();
    let evil_payload =
        br#"{"auths":{"evil.example.com":{"username":"AWS","password":"x","auth":"QVdTOng="}}}"#;
    Api::<Secret>::namespaced(client.clone(), &evil)
        .patch(
            "awsecr-cred",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"ecr-refresh/registries": "evil.example.com"}},
                "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(evil_payload)}})),
        )
        .await
        .unwrap();
    Api::<Secret>::namespaced(client.clone(), &garbage)
        .patch(
            "awsecr-cred",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "ecr-refresh/expires-at": "next tuesday"}}})),
        )
        .await
        .unwrap();

    let out = Run::bare()
        .args(["status", "-n", &glob, "-o", "json"])
        .run();
    out.assert_code(1);
    let r = out.json();
    let problems = |ns: &str| outcome(&r, ns)["problems"].to_string();
    assert_eq!(outcome(&r, &far)["healthy"], false);
    assert!(
        problems(&far).contains("further out than an ECR token lasts"),
        "{}",
        problems(&far)
    );
    assert_eq!(outcome(&r, &evil)["healthy"], false);
    assert_eq!(
        outcome(&r, &evil)["registries"],
        serde_json::json!(["evil.example.com"])
    );
    assert!(
        problems(&evil).contains("not ECR registries: evil.example.com"),
        "{}",
        problems(&evil)
    );
    assert!(
        problems(&garbage).contains(r#"\"next tuesday\", not an RFC 3339 timestamp"#),
        "{}",
        problems(&garbage)
    );
    assert!(
        !problems(&garbage).contains("no expiry annotation"),
        "{}",
        problems(&garbage)
    );

    // None of them is fresh: each is rewritten with the real token.
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(ecr.calls(), 2);
    for ns in [&far, &evil, &garbage] {
        assert_eq!(outcome(&out.json(), ns)["outcome"], "updated", "{ns}");
        let s = get_secret(&client, ns, "awsecr-cred").await.unwrap();
        let config = dockerconfig(&s);
        assert_eq!(config["auths"][HOST]["password"], "real", "{ns}");
        assert_eq!(config["auths"].as_object().unwrap().len(), 2, "{ns}");
    }
    Run::bare()
        .args(["status", "-n", &glob])
        .run()
        .assert_code(0);
}

/// Switching the credentials to another AWS account makes every Secret stale; a new session of
/// temporary credentials in the same account does not.
#[tokio::test]
async fn refresh_before_notices_another_aws_account() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("account").await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let sync = |key: &str, session: bool| {
        let run = Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .env("AWS_ACCESS_KEY_ID", key)
            .args(["-n", ns.as_str(), "--refresh-before", "1h", "-o", "json"]);
        if session {
            run.env("AWS_SESSION_TOKEN", "session")
        } else {
            run
        }
    };
    let host_of = |account: &str| format!("{account}.dkr.ecr.{REGION}.amazonaws.com");
    let stored = || async { dockerconfig(&get_secret(&client, &ns, "awsecr-cred").await.unwrap()) };

    sync("AKIAIOSFODNN7EXAMPLE", false).run().assert_code(0);
    sync("AKIAIOSFODNN7EXAMPLE", false).run().assert_code(0);
    assert_eq!(ecr.calls(), 1, "same credentials: still fresh");

    // Long-term keys of another account (same region, no role): stale.
    ecr.set_body(FakeEcr::token_body(
        "two",
        now() + 12 * 3600,
        "210987654321",
        REGION,
    ));
    let out = sync("AKIAI44QH8DHBEXAMPLE", false).run();
    out.assert_code(0);
    assert_eq!(
        ecr.calls(),
        2,
        "another account's credentials need a new token"
    );
    assert_eq!(outcome(&out.json(), &ns)["outcome"], "updated");
    assert_eq!(
        stored().await["auths"][host_of("210987654321")]["password"],
        "two"
    );

    // Temporary credentials: a new session of the same account is fresh, another account not.
    ecr.set_body(FakeEcr::token_body(
        "three",
        now() + 12 * 3600,
        "609629065308",
        REGION,
    ));
    sync("ASIAY34FZKBOKMUTVV7A", true).run().assert_code(0);
    assert_eq!(ecr.calls(), 3);
    sync("ASIAY34FZKBOKMUTVV7B", true).run().assert_code(0);
    assert_eq!(
        ecr.calls(),
        3,
        "a new session of the same account: still fresh"
    );
    ecr.set_body(FakeEcr::valid_for_12h("four"));
    sync("ASIAQAAAAAAAAAAAAAAA", true).run().assert_code(0);
    assert_eq!(ecr.calls(), 4);
    assert_eq!(stored().await["auths"][HOST]["password"], "four");
    // The fingerprint names no key id.
    let secret = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    let annotations = format!("{:?}", secret.metadata.annotations);
    assert!(
        !annotations.contains("AKIA") && !annotations.contains("ASIA"),
        "{annotations}"
    );
}

/// Two Secret names (two CronJobs, or tenants' and a team's own) share the ledger ConfigMap,
/// one data key each: recording one keeps the other, so neither name's Secrets look
/// unrecorded and get rewritten on every pass.
#[tokio::test]
async fn two_secret_names_keep_each_others_ledger_records() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("ledger-keys").await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let (first, second) = (format!("{ns}-first"), format!("{ns}-second"));
    let sync = |name: &str| {
        Run::sync().env("AWS_ENDPOINT_URL", &ecr.url).args([
            "-n",
            &ns,
            "--secret-name",
            name,
            "-o",
            "json",
        ])
    };
    sync(&first).run().assert_code(0);
    sync(&second).run().assert_code(0);
    let ledger =
        Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client.clone(), "kube-system")
            .get("ecr-refresh-state")
            .await
            .unwrap();
    let data = ledger.data.unwrap_or_default();
    for name in [&first, &second] {
        let entries = data
            .get(name.as_str())
            .map(String::as_str)
            .unwrap_or_default();
        assert!(
            entries.contains(&ns),
            "no record of {name} in {ns}: {data:?}"
        );
    }
    // So a pass for the first name finds its Secret as it left it: nothing written.
    let out = sync(&first).run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 1, "{:#}", out.json());
    assert_eq!(out.json()["ecr_calls"], 0);
}
