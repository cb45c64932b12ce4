//! What a pass costs the API server, counted by the server itself (`apiserver_request_total`
//! on /metrics, diffed around a run, as scripts/bench/bench.py does). The tests here run one
//! at a time, so the counts are theirs alone.

mod common;

use std::collections::HashMap;

use common::fake_ecr::FakeEcr;
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::Client;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Requests to secrets and serviceaccounts, by verb ("APPLY secrets", "LIST serviceaccounts").
#[derive(Debug)]
struct Counts(HashMap<String, u64>);

impl Counts {
    fn of(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }

    /// Server-side applies (this server counts them as APPLY; older ones as PATCH).
    fn secret_writes(&self) -> u64 {
        self.of("APPLY secrets") + self.of("PATCH secrets")
    }

    fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

async fn scrape(client: &Client) -> HashMap<String, f64> {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.expect("GET /metrics");
    let mut out = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let label = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        let resource = label("resource");
        // WATCH is left out: the tool never watches, and on the v1.36.3 leg the token
        // controller's informers re-open their watches at random times.
        if !["secrets", "serviceaccounts"].contains(&resource.as_str())
            || !label("subresource").is_empty()
            || label("verb") == "WATCH"
        {
            continue;
        }
        *out.entry(format!("{} {resource}", label("verb")))
            .or_default() += value.trim().parse::<f64>().unwrap();
    }
    out
}

async fn counted(client: &Client, run: Run) -> (RunOutput, Counts) {
    let before = scrape(client).await;
    let out = run.run_async().await;
    let after = scrape(client).await;
    let counts = after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d as u64)
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    (out, Counts(counts))
}

/// How many 500-item pages the tool's cluster-wide list of `default` ServiceAccounts takes.
async fn list_pages_of_default_service_accounts(client: &kube::Client) -> u64 {
    let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = kube::Api::all(client.clone());
    let lp = kube::api::ListParams::default().fields("metadata.name=default");
    let n = api
        .list_metadata(&lp)
        .await
        .expect("list service accounts")
        .items
        .len() as u64;
    n.div_ceil(500).max(1)
}

#[tokio::test]
async fn first_steady_and_rotating_passes_cost_one_request_per_namespace_and_a_list() {
    let _one_at_a_time = SERIAL.lock().await;
    let client = admin().await;
    let base = unique("cost");
    let names: Vec<String> = (0..3).map(|i| format!("{base}-{i}")).collect();
    for n in &names {
        create_namespace(&client, n, true).await;
    }
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", glob.as_str(), "-o", "json"])
    };

    // First pass: the write, the ServiceAccount patch, and one list of every `default` (a page
    // per 500 of them in the cluster: a server reused by many runs holds more than 500).
    let pages = list_pages_of_default_service_accounts(&client).await;
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 3);
    assert_eq!(c.secret_writes(), 3, "{c:?}");
    assert_eq!(c.of("PATCH serviceaccounts"), 3, "{c:?}");
    assert_eq!(c.of("LIST serviceaccounts"), pages, "{c:?}");
    assert_eq!(
        c.total(),
        3 + 3 + pages,
        "nothing else: no reads first {c:?}"
    );

    // Steady, same token: one apply each, which changes nothing.
    after_write_window().await;
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 3);
    assert_eq!(c.secret_writes(), 3, "{c:?}");
    assert_eq!(c.of("LIST serviceaccounts"), pages, "{c:?}");
    assert_eq!(c.total(), 3 + pages, "{c:?}");

    // Steady with a new token, as real ECR hands out on every call: still one apply each.
    ecr.set_body(FakeEcr::valid_for_12h("two"));
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["updated"], 3);
    assert_eq!(c.secret_writes(), 3, "{c:?}");
    assert_eq!(c.total(), 3 + pages, "{c:?}");
    for n in &names {
        let s = get_secret(&client, n, "awsecr-cred").await.unwrap();
        assert_eq!(dockerconfig(&s)["auths"][HOST]["password"], "two");
        assert_eq!(
            pull_secret_names(&get_sa(&client, n, "default").await),
            ["awsecr-cred"]
        );
    }
}

#[tokio::test]
async fn literal_names_read_each_service_account_instead_of_listing() {
    let _one_at_a_time = SERIAL.lock().await;
    let client = admin().await;
    let (_, [a, b]) = namespaces(&client, "literal", ["a", "b"]).await;
    let (out, c) = counted(&client, Run::sync().args(["-n", &a, "-n", &b])).await;
    out.assert_code(0);
    assert_eq!(c.secret_writes(), 2, "{c:?}");
    assert_eq!(c.of("GET serviceaccounts"), 2, "{c:?}");
    assert_eq!(c.of("LIST serviceaccounts"), 0, "{c:?}");
    assert_eq!(c.of("GET secrets"), 0, "{c:?}");
}

#[tokio::test]
async fn a_refused_apply_is_read_once_foreign_stays_and_a_hand_edit_is_taken_back() {
    let _one_at_a_time = SERIAL.lock().await;
    let client = admin().await;
    let base = unique("refused");
    let [plain, edited, theirs] = ["plain", "edited", "theirs"].map(|s| format!("{base}-{s}"));
    for n in [&plain, &edited] {
        create_namespace(&client, n, true).await;
    }
    let glob = format!("{base}-*");
    Run::sync()
        .args(["-n", &glob])
        .run_async()
        .await
        .assert_code(0);

    // Someone else's Secret of our name, and a hand edit of ours (another field manager).
    create_namespace(&client, &theirs, true).await;
    let before = create_foreign_secret(&client, &theirs).await;
    let api: Api<Secret> = Api::namespaced(client.clone(), &edited);
    let mut hand = api.get("awsecr-cred").await.unwrap();
    hand.data.as_mut().unwrap().insert(
        ".dockerconfigjson".into(),
        k8s_openapi::ByteString(FOREIGN_PAYLOAD.to_vec()),
    );
    api.replace("awsecr-cred", &PostParams::default(), &hand)
        .await
        .unwrap();
    after_write_window().await;

    let (out, c) = counted(&client, Run::sync().args(["-n", &glob, "-o", "json"])).await;
    out.assert_code(1);
    let report = out.json();
    assert_eq!(outcome(&report, &theirs)["outcome"], "failed");
    let error = error_of(&report, &theirs);
    assert!(
        error.contains("not managed by ecr-refresh") && error.contains("--force"),
        "{error}"
    );
    assert_eq!(outcome(&report, &edited)["outcome"], "updated");
    assert_eq!(outcome(&report, &plain)["outcome"], "unchanged");
    // One apply each, a read for each refusal, and the forced apply that takes ours back.
    assert_eq!(c.of("GET secrets"), 2, "{c:?}");
    assert_eq!(c.secret_writes(), 3 + 1, "{c:?}");

    // Theirs: byte for byte as it was.
    let after = get_secret(&client, &theirs, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(after.data, before.data);
    assert_eq!(after.metadata.labels, before.metadata.labels);
    assert_eq!(after.metadata.annotations, before.metadata.annotations);
    assert_eq!(after.type_, before.type_);
    assert!(pull_secret_names(&get_sa(&client, &theirs, "default").await).is_empty());
    // Ours: back to the token, and our field manager owns the data again.
    let back = get_secret(&client, &edited, "awsecr-cred").await.unwrap();
    assert_eq!(dockerconfig(&back)["auths"][HOST]["password"], PASSWORD);
    assert!(dockerconfig(&back)["auths"]
        .get("registry.example")
        .is_none());
}
