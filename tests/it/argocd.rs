//! `--argocd-namespace`: Argo CD's repository credentials for OCI Helm charts in ECR, one per
//! registry host, written only when due (counted by the server's answers through a proxy),
//! never over someone else's, checked by `status`, removed by `prune`.

use crate::common;

use common::fake_ecr::FakeEcr;
use common::proxy::FaultProxy;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;

const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
const DUAL: &str = "123456789012.dkr-ecr.us-east-1.on.aws";

fn name_for(host: &str) -> String {
    format!("ecr-refresh.{host}")
}

/// An Argo CD namespace and a team namespace to select.
async fn setup(prefix: &str) -> (kube::Client, String, String) {
    let (client, _base, [argo, team]) = TestNs::group(prefix, ["argo", "team"]).await;
    (client, argo, team)
}

fn text(s: &Secret, key: &str) -> String {
    let data = s.data.as_ref().expect("data");
    String::from_utf8(data[key].0.clone()).unwrap()
}

/// The report's entry for `name`.
fn entry<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["argocd"]["secrets"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .unwrap_or_else(|| panic!("no argocd entry {name} in {report:#}"))
}

/// `status -n team --argocd-namespace argo -o json`, exiting `code`: its report.
fn status(team: &str, argo: &str, code: i32) -> serde_json::Value {
    let out = Run::bare()
        .args([
            "status",
            "-n",
            team,
            "--argocd-namespace",
            argo,
            "-o",
            "json",
        ])
        .run();
    out.assert_code(code);
    out.json()
}

/// `status`'s entry for the Secret `name`.
fn status_of(st: &serde_json::Value, name: &str) -> serde_json::Value {
    st["argocd"]["secrets"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name))
        .cloned()
        .unwrap_or_else(|| panic!("no argocd entry {name} in {st:#}"))
}

/// The non-GET requests sent for Secrets in `ns`.
fn writes_in(proxy: &FaultProxy, ns: &str) -> Vec<(String, String)> {
    let prefix = format!("/api/v1/namespaces/{ns}/secrets");
    proxy
        .log()
        .into_iter()
        .filter(|(m, p, _)| m != "GET" && p.starts_with(&prefix))
        .map(|(m, p, _)| (m, p.split('?').next().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn repo_creds_are_written_for_each_host_then_only_when_due() {
    let _suite = suite::shared().await;
    let (client, argo, team) = setup("argo-due").await;
    // Two hours left, so --refresh-before decides.
    let ecr = FakeEcr::start(FakeEcr::token_body(
        "first",
        now() + 2 * 3600,
        ACCOUNT,
        REGION,
    ))
    .await;
    let sync = |refresh: &str, proxy: Option<&FaultProxy>| {
        let run = Run::sync().env("AWS_ENDPOINT_URL", &ecr.url).args([
            "-n",
            team.as_str(),
            "--argocd-namespace",
            argo.as_str(),
            "--refresh-before",
            refresh,
            "-o",
            "json",
        ]);
        match proxy {
            Some(p) => run.through(p),
            None => run,
        }
    };
    let out = sync("1h", None).run();
    out.assert_code(0).assert_no_secrets();
    let report = out.json();
    for host in [HOST, DUAL] {
        let name = name_for(host);
        assert_eq!(entry(&report, &name)["outcome"], "created", "{report:#}");
        let url = format!("{host}/");
        assert_eq!(entry(&report, &name)["url"], url.as_str());
        let s = get_secret(&client, &argo, &name).await.expect("written");
        assert_eq!(s.type_.as_deref(), Some("Opaque"));
        let labels = s.metadata.labels.clone().unwrap();
        assert_eq!(labels["argocd.argoproj.io/secret-type"], "repo-creds");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "ecr-refresh");
        let keys: Vec<&String> = s.data.as_ref().unwrap().keys().collect();
        assert_eq!(keys, ["enableOCI", "password", "type", "url", "username"]);
        let values = ["type", "url", "enableOCI", "username", "password"].map(|k| text(&s, k));
        assert_eq!(values, ["helm", url.as_str(), "true", "AWS", "first"]);
    }
    assert_eq!(ecr.calls(), 1, "one token for the namespaces and Argo CD");

    // Nothing due: nothing is written in Argo CD's namespace, and ECR is not asked.
    let before: Vec<_> = [HOST, DUAL].iter().map(|h| name_for(h)).collect();
    let rvs = |list: Vec<Option<Secret>>| -> Vec<Option<String>> {
        list.into_iter()
            .map(|s| s.and_then(|s| s.metadata.resource_version))
            .collect()
    };
    let read_all = || async {
        let mut all = Vec::new();
        for n in &before {
            all.push(get_secret(&client, &argo, n).await);
        }
        all
    };
    let first = rvs(read_all().await);
    ecr.set_body(FakeEcr::valid_for_12h("second"));
    let quiet = FaultProxy::forwarding().await;
    let out = sync("1h", Some(&quiet)).run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["ecr_calls"], 0, "{report:#}");
    assert_eq!(writes_in(&quiet, &argo), [], "{:?}", quiet.log());
    for n in &before {
        assert_eq!(entry(&report, n)["outcome"], "unchanged", "{report:#}");
    }
    assert_eq!(rvs(read_all().await), first);

    // Expiring (2h left, --refresh-before 3h): exactly the repo-creds Secrets are rewritten,
    // one write each, with the new token.
    let due = FaultProxy::forwarding().await;
    let out = sync("3h", Some(&due)).run();
    out.assert_code(0).assert_no_secrets();
    let report = out.json();
    assert_eq!(report["ecr_calls"], 1, "{report:#}");
    let mut writes = writes_in(&due, &argo);
    writes.sort();
    let mut expected: Vec<(String, String)> = before
        .iter()
        .map(|n| {
            (
                "PATCH".to_string(),
                format!("/api/v1/namespaces/{argo}/secrets/{n}"),
            )
        })
        .collect();
    expected.sort();
    assert_eq!(writes, expected, "{:?}", due.log());
    for n in &before {
        assert_eq!(entry(&report, n)["outcome"], "updated", "{report:#}");
        let s = get_secret(&client, &argo, n).await.unwrap();
        assert_eq!(text(&s, "password"), "second");
    }

    // `status` finds them healthy.
    let st = status(&team, &argo, 0);
    for n in &before {
        let s = status_of(&st, n);
        assert_eq!(
            (&s["secret"], &s["healthy"]),
            (&"ours".into(), &true.into()),
            "{st:#}"
        );
    }
}

#[tokio::test]
async fn a_changed_repo_creds_secret_is_rewritten_and_a_dry_run_writes_nothing() {
    let _suite = suite::shared().await;
    let (client, argo, team) = setup("argo-tamper").await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("good")).await;
    let sync = |extra: &[&str]| {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args([
                "-n",
                team.as_str(),
                "--argocd-namespace",
                argo.as_str(),
                "-o",
                "json",
            ])
            .args(extra)
    };
    // A dry run: reported as created, nothing persisted.
    let out = sync(&["--dry-run"]).run();
    out.assert_code(0);
    assert_eq!(entry(&out.json(), &name_for(HOST))["outcome"], "created");
    assert!(get_secret(&client, &argo, &name_for(HOST)).await.is_none());

    sync(&[]).run().assert_code(0);
    // Someone who may write it keeps our label and annotations and points the password at
    // theirs: the ledger tells, and the next pass puts ours back.
    tamper(
        &client,
        &argo,
        serde_json::json!({"data": {"password": "dGhlaXJz"}}),
    )
    .await;
    let st = status(&team, &argo, 1);
    let tampered = status_of(&st, &name_for(HOST));
    assert!(
        tampered["problems"][0]
            .as_str()
            .unwrap()
            .contains("changed since sync wrote it"),
        "{st:#}"
    );
    let out = sync(&[]).run();
    out.assert_code(0);
    assert_eq!(entry(&out.json(), &name_for(HOST))["outcome"], "updated");
    let s = get_secret(&client, &argo, &name_for(HOST)).await.unwrap();
    assert_eq!(text(&s, "password"), "good");
}

/// `tamper` for the repo-creds Secret of HOST.
async fn tamper(client: &kube::Client, ns: &str, patch: serde_json::Value) {
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch(
            &name_for(HOST),
            &Default::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
}

/// Someone else's repo-creds Secret for the same URL, under our name.
async fn create_theirs(client: &kube::Client, ns: &str) -> Secret {
    let data: BTreeMap<String, ByteString> = [
        ("type", "helm"),
        ("url", &format!("{HOST}/")),
        ("enableOCI", "true"),
        ("username", "AWS"),
        ("password", "theirs"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
    .collect();
    let s = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name_for(HOST)),
            labels: Some(BTreeMap::from([(
                "argocd.argoproj.io/secret-type".to_string(),
                "repo-creds".to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_foreign_repo_creds_secret_for_the_same_url_is_left_alone_and_reported() {
    let _suite = suite::shared().await;
    let (client, argo, team) = setup("argo-foreign").await;
    let theirs = create_theirs(&client, &argo).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("ours")).await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &team, "--argocd-namespace", &argo, "-o", "json"])
        .run();
    out.assert_code(1);
    let report = out.json();
    let foreign = entry(&report, &name_for(HOST));
    assert_eq!(foreign["outcome"], "failed", "{report:#}");
    assert!(
        foreign["error"].as_str().unwrap().contains("is not ours"),
        "{report:#}"
    );
    // The other host's is ours and written; the namespace is synced too.
    assert_eq!(entry(&report, &name_for(DUAL))["outcome"], "created");
    assert_eq!(outcome(&report, &team)["outcome"], "created");
    let after = get_secret(&client, &argo, &name_for(HOST)).await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        theirs.metadata.resource_version
    );
    assert_eq!(text(&after, "password"), "theirs");

    // `status` says whose it is.
    let st = status(&team, &argo, 1);
    let s = status_of(&st, &name_for(HOST));
    assert_eq!(s["secret"], "foreign", "{st:#}");
    assert_eq!(s["healthy"], false);
}

/// Exclusive: prune looks at every namespace (with -A it removes nothing from them).
#[tokio::test]
async fn prune_removes_only_ours() {
    let _suite = suite::exclusive().await;
    let (client, argo, team) = setup("argo-prune").await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("ours")).await;
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", &team, "--argocd-namespace", &argo])
        .run()
        .assert_code(0);
    // Someone else's repo-creds Secret beside ours, and one of ours taken over since (our
    // label removed): both stay.
    let api = Api::<Secret>::namespaced(client.clone(), &argo);
    api.delete(&name_for(HOST), &Default::default())
        .await
        .unwrap();
    let mut other = create_theirs(&client, &argo).await;
    other.metadata.name = Some("their-creds".into());
    other.metadata.resource_version = None;
    other.metadata.uid = None;
    other.metadata.creation_timestamp = None;
    other.metadata.managed_fields = None;
    api.create(&PostParams::default(), &other).await.unwrap();

    let prune = |extra: &[&str]| {
        Run::bare()
            .args(["prune", "-A", "--argocd-namespace", &argo, "-o", "json"])
            .args(extra)
            .run()
    };
    let out = prune(&["--dry-run"]);
    out.assert_code(0);
    assert_eq!(entry(&out.json(), &name_for(DUAL))["outcome"], "pruned");
    assert!(get_secret(&client, &argo, &name_for(DUAL)).await.is_some());

    let out = prune(&[]);
    out.assert_code(0);
    let report = out.json();
    assert_eq!(entry(&report, &name_for(DUAL))["outcome"], "pruned");
    assert_eq!(entry(&report, &name_for(HOST))["outcome"], "skipped");
    assert!(get_secret(&client, &argo, &name_for(DUAL)).await.is_none());
    let kept = get_secret(&client, &argo, &name_for(HOST)).await.unwrap();
    assert_eq!(text(&kept, "password"), "theirs");
    assert!(get_secret(&client, &argo, "their-creds").await.is_some());
    // The team's pull Secret stays: every namespace is still selected.
    assert!(get_secret(&client, &team, "awsecr-cred").await.is_some());

    // Forgotten: a second prune has nothing of ours to look at.
    let out = prune(&[]);
    out.assert_code(0);
    assert_eq!(
        out.json()["argocd"]["secrets"].as_array().map(Vec::len),
        Some(0),
        "{:#}",
        out.json()
    );
}

/// An apiserver that never answers for Argo CD's Secrets: the run still ends at --timeout,
/// the namespaces done, Argo CD's part failed and saying why.
#[tokio::test]
async fn a_hanging_argocd_namespace_ends_at_the_deadline() {
    let _suite = suite::shared().await;
    let (client, argo, team) = setup("argo-hang").await;
    let proxy = FaultProxy::start(
        common::fault::Fault::on("*", format!("/api/v1/namespaces/{argo}/secrets")).hang(),
    )
    .await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    let (out, took) = timed(
        Run::sync()
            .through(&proxy)
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", &team, "--argocd-namespace", &argo, "-o", "json"])
            .args(["--request-timeout", "1s", "--timeout", "3s"]),
    );
    out.assert_code(1);
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
    let report = out.json();
    assert_eq!(outcome(&report, &team)["outcome"], "created", "{report:#}");
    let error = report["argocd"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("--timeout 3s"), "{report:#}");
    assert!(get_secret(&client, &argo, &name_for(HOST)).await.is_none());
}
