//! What a pass costs the API server, counted by the server itself (`apiserver_request_total`
//! on /metrics, diffed around a run, as scripts/bench/bench.py does). The tests here run one
//! at a time, so the counts are theirs alone. Steady passes use the rotating ECR stand-in
//! (tests/it/common/fake_ecr.rs): moto's token expired in 2015, so with it every pass is due.

use crate::common;

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::fake_aws;
use common::fake_ecr::FakeEcr;
use common::install::*;
use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;

/// Requests to namespaces, secrets and serviceaccounts, by verb ("APPLY secrets", "LIST
/// serviceaccounts"), and the reads and writes of the ledger ConfigMap ("GET configmaps").
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

    /// The ledger: one read a pass, and one write when anything was written.
    fn ledger(&self) -> u64 {
        self.of("GET configmaps") + self.of("APPLY configmaps") + self.of("PATCH configmaps")
    }

    /// Events of any API group (events.k8s.io/v1 and core/v1 share the resource): the list of
    /// ours, and each one written.
    fn events(&self) -> u64 {
        self.0
            .iter()
            .filter(|(k, _)| k.ends_with(" events"))
            .map(|(_, v)| v)
            .sum()
    }

    fn lists(&self) -> u64 {
        ["namespaces", "secrets", "serviceaccounts"]
            .iter()
            .map(|r| self.of(&format!("LIST {r}")))
            .sum()
    }

    /// No write, no read of a single object: only lists, and the one read of the ledger.
    fn assert_only_lists(&self, bound: u64) {
        assert_eq!(self.of("GET configmaps"), 1, "{self:?}");
        assert_eq!(self.total(), self.lists() + 1, "{self:?}");
        assert!(
            self.lists() <= bound,
            "{} lists > {bound}: {self:?}",
            self.lists()
        );
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
        // Of ConfigMaps, only what the tool does to its ledger (a token controller may be
        // creating kube-root-ca.crt in new namespaces).
        let ledger_verb = ["GET", "APPLY", "PATCH"].contains(&label("verb").as_str());
        let counted = ["namespaces", "secrets", "serviceaccounts", "events"]
            .contains(&resource.as_str())
            || (resource == "configmaps" && ledger_verb);
        if !counted || !label("subresource").is_empty() || label("verb") == "WATCH" {
            continue;
        }
        *out.entry(format!("{} {resource}", label("verb")))
            .or_default() += value.trim().parse::<f64>().unwrap();
    }
    out
}

async fn counted(client: &Client, run: Run) -> (RunOutput, Counts) {
    ledger_exists(client).await;
    let before = scrape(client).await;
    let out = run.run();
    let after = scrape(client).await;
    let counts = after
        .into_iter()
        .map(|(k, v)| {
            let d = v - before.get(&k).copied().unwrap_or(0.0);
            (k, d as u64)
        })
        .filter(|(_, d)| *d > 0)
        // The apiserver's own bootstrap controller reads namespace `default` every 10 s or so;
        // the tool reads namespaces one by one only when they are named literally.
        .filter(|(k, _)| k != "GET namespaces")
        .collect();
    (out, Counts(counts))
}

/// The ledger made before a count, so that the count never includes the extra read of a pass
/// that finds none and must look again before creating it.
async fn ledger_exists(client: &Client) {
    let api = Api::<ConfigMap>::namespaced(client.clone(), "kube-system");
    let ledger = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("ecr-refresh-state".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ledger).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("create the ledger: {e}"),
    }
}

/// At most 3 list requests per 500 namespaces: one paged list each of namespaces, our Secrets
/// and the ServiceAccounts, however many namespaces this (shared) server holds.
async fn list_bound(client: &Client) -> u64 {
    let all = Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .len() as u64;
    3 * all.div_ceil(500)
}

/// The password our Secret in `ns` holds.
async fn password(client: &Client, ns: &str) -> String {
    let s = get_secret(client, ns, "awsecr-cred").await.expect("secret");
    dockerconfig(&s)["auths"][HOST]["password"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Outcome of each namespace of a JSON report, by name.
fn outcomes(report: &serde_json::Value) -> Vec<(String, String)> {
    report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().into(),
                n["outcome"].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_pass_with_nothing_due_only_lists_and_never_calls_ecr() {
    let _suite = suite::exclusive().await;
    let (client, base, names) = TestNs::group("quiet", ["a", "b", "c", "d"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", glob.as_str(), "-o", "json"])
    };
    let bound = list_bound(&client).await;

    // First pass: a write and a ServiceAccount patch per namespace, read in lists only.
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 4);
    assert_eq!(c.secret_writes(), 4, "{c:?}");
    assert_eq!(c.of("PATCH serviceaccounts"), 4, "{c:?}");
    assert_eq!(c.ledger(), 2, "the ledger read, and written once: {c:?}");
    assert_eq!(
        c.events(),
        1 + 4,
        "one list of our Warnings (a recovery to tell?), and a SecretCreated per namespace: {c:?}"
    );
    assert_eq!(
        c.total(),
        c.lists() + 8 + 2 + c.events(),
        "no single reads: {c:?}"
    );
    assert_eq!(ecr.calls(), 1);

    // Nothing due, though ECR would now hand out a new token: no write, no ECR call, no read
    // of a single object.
    ecr.set_body(FakeEcr::valid_for_12h("two"));
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 4);
    assert_eq!(out.json()["ecr_calls"], 0);
    c.assert_only_lists(bound);
    assert_eq!(ecr.calls(), 1, "ECR is called only when a write is due");
    for n in &names {
        assert_eq!(password(&client, n).await, "one");
    }

    // `status` reads the same lists, and finds all healthy.
    let status = Run::bare().args(["status", "-n", glob.as_str(), "-o", "json"]);
    let (out, c) = counted(&client, status).await;
    out.assert_code(0);
    c.assert_only_lists(bound);

    // --refresh-all: the documented way to rewrite everything now.
    let (out, c) = counted(&client, sync().args(["--refresh-all"])).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["updated"], 4);
    assert_eq!(c.secret_writes(), 4, "{c:?}");
    assert_eq!(
        c.events(),
        1,
        "a pass that wrote lists our Warnings once (is there a recovery to tell?): {c:?}"
    );
    assert_eq!(c.total(), c.lists() + 4 + 2 + 1, "{c:?}");
    assert_eq!(ecr.calls(), 2);
    for n in &names {
        assert_eq!(password(&client, n).await, "two");
    }
}

/// One pass with `args` in which exactly the namespaces in `due` are written (and
/// `patched` ServiceAccounts linked): the count of writes, patches and ECR calls, and nothing
/// read but lists, the ledger, and the `changed` Secrets someone else wrote since our last
/// write (read in full before they are rewritten).
async fn pass_writes_exactly(
    client: &Client,
    ecr: &FakeEcr,
    run: Run,
    (due, changed): (&[(&str, &str)], u64),
    patched: u64,
    told: u64,
) -> serde_json::Value {
    let calls = ecr.calls();
    let (out, c) = counted(client, run).await;
    out.assert_code(0);
    let report = out.json();
    assert_eq!(c.secret_writes(), due.len() as u64, "{c:?} {report:#}");
    assert_eq!(c.of("PATCH serviceaccounts"), patched, "{c:?}");
    assert_eq!(c.of("GET secrets"), changed, "{c:?}");
    let ledger = if due.is_empty() { 1 } else { 2 };
    assert_eq!(c.ledger(), ledger, "{c:?}");
    // A pass that refreshed a Secret or linked a ServiceAccount lists our Warnings once (is
    // there a recovery to tell?), and a SecretCreated is sent for each Secret created (under a
    // fixed name: one made again within the hour is answered 409).
    let listed = patched > 0 || due.iter().any(|(_, o)| *o == "updated");
    let events = u64::from(listed) + told;
    assert_eq!(c.events(), events, "{c:?}");
    let single = due.len() as u64 + patched + changed + ledger + events;
    assert_eq!(c.total(), c.lists() + single, "{c:?}");
    assert_eq!(ecr.calls() - calls, usize::from(!due.is_empty()));
    for (ns, expected) in due {
        assert_eq!(
            outcome(&report, ns)["outcome"],
            *expected,
            "{ns}: {report:#}"
        );
    }
    let written = report["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["outcome"] != "unchanged")
        .count();
    assert_eq!(written, due.len(), "{report:#}");
    report
}

#[tokio::test]
async fn each_due_namespace_costs_exactly_its_own_write() {
    let _suite = suite::exclusive().await;
    let (client, base, [plain, tampered, deleted, expiring]) =
        TestNs::group("due", ["plain", "tampered", "deleted", "expiring"]).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .args(["-n", glob.as_str(), "-o", "json"])
    };
    sync().run().assert_code(0);
    ecr.set_body(FakeEcr::valid_for_12h("two"));

    // A new namespace: its Secret and its ServiceAccount patch, nothing else.
    let new = format!("{base}-new");
    create_namespace(&client, &new, true).await;
    pass_writes_exactly(&client, &ecr, sync(), (&[(&new, "created")], 0), 1, 1).await;

    // A hand edit of the payload (another field manager).
    let api: Api<Secret> = Api::namespaced(client.clone(), &tampered);
    let mut hand = api.get("awsecr-cred").await.unwrap();
    hand.data.as_mut().unwrap().insert(
        ".dockerconfigjson".into(),
        k8s_openapi::ByteString(FOREIGN_PAYLOAD.to_vec()),
    );
    api.replace("awsecr-cred", &PostParams::default(), &hand)
        .await
        .unwrap();
    pass_writes_exactly(&client, &ecr, sync(), (&[(&tampered, "updated")], 1), 0, 0).await;
    assert_eq!(password(&client, &tampered).await, "two");

    // A deleted Secret.
    Api::<Secret>::namespaced(client.clone(), &deleted)
        .delete("awsecr-cred", &DeleteParams::default())
        .await
        .unwrap();
    pass_writes_exactly(&client, &ecr, sync(), (&[(&deleted, "created")], 0), 0, 1).await;

    // A Secret inside the refresh window: written from a token with 2 h left.
    let soon = jiff::Timestamp::now().as_second() + 2 * 3600;
    ecr.set_body(FakeEcr::token_body("short", soon, ACCOUNT, REGION));
    Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["-n", expiring.as_str(), "--refresh-all"])
        .run()
        .assert_code(0);
    assert_eq!(password(&client, &expiring).await, "short");
    ecr.set_body(FakeEcr::valid_for_12h("three"));
    pass_writes_exactly(&client, &ecr, sync(), (&[(&expiring, "updated")], 0), 0, 0).await;
    assert_eq!(password(&client, &expiring).await, "three");
    // Inside a wider window it would be due again; with the default it is not.
    pass_writes_exactly(&client, &ecr, sync(), (&[], 0), 0, 0).await;

    // A changed registry list, then changed credentials: every Secret, once.
    let all: Vec<(&str, &str)> = [&deleted, &expiring, &new, &plain, &tampered]
        .iter()
        .map(|n| (n.as_str(), "updated"))
        .collect();
    let with_registry = || sync().args(["--registry", ACCOUNT]);
    pass_writes_exactly(&client, &ecr, with_registry(), (&all, 0), 0, 0).await;
    pass_writes_exactly(&client, &ecr, with_registry(), (&[], 0), 0, 0).await;
    let other_key = || sync().env("AWS_ACCESS_KEY_ID", "AKIAI44QH8DHBEXAMPLE");
    pass_writes_exactly(&client, &ecr, other_key(), (&all, 0), 0, 0).await;
    pass_writes_exactly(&client, &ecr, other_key(), (&[], 0), 0, 0).await;
}

#[tokio::test]
async fn a_foreign_secret_is_left_alone_and_reported() {
    let _suite = suite::exclusive().await;
    let (client, base, [ours, theirs]) = TestNs::group("foreign", ["ours", "theirs"]).await;
    let before = create_foreign_secret(&client, &theirs).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let sync = || {
        Run::sync().env("AWS_ENDPOINT_URL", &ecr.url).args([
            "-n",
            &format!("{base}-*"),
            "-o",
            "json",
        ])
    };
    for (pass, writes) in [(1, 1), (2, 0)] {
        let (out, c) = counted(&client, sync()).await;
        out.assert_code(1);
        let report = out.json();
        let error = error_of(&report, &theirs);
        assert!(
            error.contains("not managed by ecr-refresh") && error.contains("--force"),
            "{error}"
        );
        assert_eq!(c.secret_writes(), writes, "pass {pass}: {c:?}");
        assert_eq!(c.of("PATCH serviceaccounts"), writes, "pass {pass}: {c:?}");
        let expected = if pass == 1 { "created" } else { "unchanged" };
        assert_eq!(outcome(&report, &ours)["outcome"], expected);
    }
    let after = get_secret(&client, &theirs, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(pull_secret_names(&get_sa(&client, &theirs, "default").await).is_empty());
}

#[tokio::test]
async fn literal_names_read_each_one_instead_of_listing() {
    let _suite = suite::exclusive().await;
    let (client, _, [a, b]) = TestNs::group("literal", ["a", "b"]).await;
    let (out, c) = counted(&client, Run::sync().args(["-n", &a, "-n", &b])).await;
    out.assert_code(0);
    assert_eq!(c.secret_writes(), 2, "{c:?}");
    assert_eq!(c.of("GET serviceaccounts"), 2, "{c:?}");
    assert_eq!(c.of("GET secrets"), 2, "{c:?}");
    assert_eq!(c.lists(), 0, "{c:?}");
    assert_eq!(c.ledger(), 2, "{c:?}");
    // The list of our Warnings, and a SecretCreated each (it also lists no other resource).
    assert_eq!(c.events(), 1 + 2, "{c:?}");
    assert_eq!(c.total(), 8 + 2 + 3, "{c:?}");
}

/// Two identities made from rbac.yaml: as shipped, and without `list` on our Secret.
fn with_and_without_the_secret_list(prefix: &str) -> (String, String) {
    let granted = unique(prefix);
    apply_renamed(&repo_file("deploy/rbac.yaml"), &granted, &[]);
    let refused = unique(&format!("{prefix}-nolist"));
    apply_renamed(
        &repo_file("deploy/rbac.yaml"),
        &refused,
        &[(
            r#"verbs: ["get", "list", "create", "patch", "update"]"#,
            r#"verbs: ["get", "create", "patch", "update"]"#,
        )],
    );
    (granted, refused)
}

/// With RBAC lacking `list` on our Secret, each one is read on its own: the same results, and
/// one warning for the whole run.
#[tokio::test]
async fn without_the_secret_list_each_one_is_read_with_one_warning() {
    let _suite = suite::exclusive().await;
    let client = admin().await;
    let (granted, refused) = with_and_without_the_secret_list("rbac-seclist");
    let dir = tempfile::tempdir().unwrap();
    let (base, [a, b, theirs]) = namespaces(&client, "nolist", ["a", "b", "theirs"]).await;
    create_foreign_secret(&client, &theirs).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let sync = |id: &str| {
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr.url)
            .env("KUBECONFIG", token_kubeconfig(dir.path(), id))
            .args(["-n", &format!("{base}-*"), "-o", "json"])
    };
    const WARNING: &str = "cannot list secrets cluster-wide";

    // The refused list, first pass and a quiet one; then the same with the list granted.
    let mut seen = Vec::new();
    for (pass, id) in [&refused, &refused, &granted].into_iter().enumerate() {
        let (out, c) = counted(&client, sync(id)).await;
        out.assert_code(1);
        let warnings = out.stderr().matches(WARNING).count();
        // The first pass also tells the owner of `theirs` (an Event about their Secret, read
        // for its uid); the next ones, within the hour, do not.
        let reads = c.of("GET secrets") - u64::from(pass == 0);
        if *id == refused {
            assert_eq!(warnings, 1, "{}", out.stderr());
            out.assert_stderr_contains("grant `list` on secrets");
            assert_eq!(reads, 3, "{c:?}");
        } else {
            // Only the foreign Secret, which the metadata list cannot judge (see below).
            assert_eq!((warnings, reads), (0, 1), "{c:?}");
        }
        seen.push(outcomes(&out.json()));
    }
    let created = [(&a, "created"), (&b, "created"), (&theirs, "failed")];
    let unchanged = [(&a, "unchanged"), (&b, "unchanged"), (&theirs, "failed")];
    let as_owned = |o: [(&String, &str); 3]| -> Vec<(String, String)> {
        o.iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect()
    };
    assert_eq!(
        seen,
        [as_owned(created), as_owned(unchanged), as_owned(unchanged)]
    );
    assert_eq!(ecr.calls(), 1);
}

/// Our Secret in `ns` deleted and made again by someone else (as field manager `manager`),
/// with our label and `type_`.
async fn recreate(client: &Client, ns: &str, type_: &str, from: &Secret, manager: Option<&str>) {
    let api = Api::<Secret>::namespaced(client.clone(), ns);
    api.delete("awsecr-cred", &DeleteParams::default())
        .await
        .unwrap();
    let copy = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("awsecr-cred".into()),
            labels: from.metadata.labels.clone(),
            annotations: from.metadata.annotations.clone(),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: from.data.clone(),
        ..Default::default()
    };
    let pp = PostParams {
        field_manager: manager.map(str::to_string),
        ..Default::default()
    };
    api.create(&pp, &copy).await.unwrap();
}

/// Someone else's write to our Secret in `ns` under our own field manager's name.
async fn tamper_as_us(client: &Client, ns: &str, patch: serde_json::Value) {
    let pp = PatchParams {
        field_manager: Some("ecr-refresh".into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .patch("awsecr-cred", &pp, &Patch::Merge(&patch))
        .await
        .unwrap_or_else(|e| panic!("tamper with {ns}: {e}"));
}

/// Touches our Secret in each case's namespace (named by `ns`) as its name says, after a first
/// pass wrote them all: by another manager, under our own manager's name, recreated, deleted,
/// with managedFields stripped or put back.
async fn tamper_each_way(client: &Client, ns: &impl Fn(&str) -> String) {
    let ours = get_secret(client, &ns("current"), "awsecr-cred")
        .await
        .unwrap();
    let foreign_data = serde_json::json!({".dockerconfigjson": STANDARD.encode(FOREIGN_PAYLOAD)});

    tamper(
        client,
        &ns("payload"),
        serde_json::json!({"data": foreign_data}),
    )
    .await;
    let later = "2099-01-01T00:00:00Z";
    let expiry =
        serde_json::json!({"metadata": {"annotations": {"ecr-refresh/expires-at": later}}});
    tamper(client, &ns("expiry"), expiry).await;
    let noregs = serde_json::json!({"metadata": {"annotations": {"ecr-refresh/registries": null}}});
    tamper(client, &ns("noregs"), noregs).await;
    let unlabel =
        serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}});
    tamper(client, &ns("unlabelled"), unlabel).await;
    // A single empty entry strips managedFields entirely: then no manager is on record.
    let strip = serde_json::json!({"metadata": {"managedFields": [{}]}});
    tamper(client, &ns("stripped"), strip.clone()).await;
    let mut strip_edit = strip;
    strip_edit["data"] = foreign_data;
    tamper(client, &ns("stripedit"), strip_edit).await;
    for case in ["stripped", "stripedit"] {
        let s = get_secret(client, &ns(case), "awsecr-cred").await.unwrap();
        assert!(s.metadata.managed_fields.unwrap_or_default().is_empty());
    }
    recreate(
        client,
        &ns("recreated"),
        "kubernetes.io/dockerconfigjson",
        &ours,
        None,
    )
    .await;
    recreate(client, &ns("opaque"), "Opaque", &ours, None).await;
    Api::<Secret>::namespaced(client.clone(), &ns("missing"))
        .delete("awsecr-cred", &DeleteParams::default())
        .await
        .unwrap();
    // Edits under our field manager's name: the name proves nothing.
    let empty = STANDARD.encode(r#"{"auths":{}}"#);
    let empty = serde_json::json!({"data": {".dockerconfigjson": empty}});
    tamper_as_us(client, &ns("asusempty"), empty).await;
    let host = encoded_dockerconfig("evil.example.com", "x");
    let host = serde_json::json!({"data": {".dockerconfigjson": host}});
    tamper_as_us(client, &ns("asushost"), host).await;
    recreate(
        client,
        &ns("asusopaque"),
        "Opaque",
        &ours,
        Some("ecr-refresh"),
    )
    .await;
    // Another password, then the managedFields from before put back to hide the edit.
    let before = get_secret(client, &ns("forged"), "awsecr-cred")
        .await
        .unwrap();
    let mut config = dockerconfig(&before);
    for entry in config["auths"].as_object_mut().unwrap().values_mut() {
        entry["password"] = "stolen".into();
        entry["auth"] = STANDARD.encode("AWS:stolen").into();
    }
    let stolen =
        serde_json::json!({"data": {".dockerconfigjson": STANDARD.encode(config.to_string())}});
    tamper(client, &ns("forged"), stolen).await;
    let fields = serde_json::to_value(&before.metadata.managed_fields).unwrap();
    tamper(
        client,
        &ns("forged"),
        serde_json::json!({"metadata": {"managedFields": fields}}),
    )
    .await;
    let forged = get_secret(client, &ns("forged"), "awsecr-cred")
        .await
        .unwrap();
    assert_eq!(
        forged.metadata.managed_fields,
        before.metadata.managed_fields
    );
    // A data key of someone else's, added under our field manager's name.
    let note = serde_json::json!({"data": {"note": STANDARD.encode("mine")}});
    tamper_as_us(client, &ns("note"), note).await;
}

/// Sync judges our Secrets from a metadata-only list (no payload, no type). Every way of
/// touching a Secret is judged exactly as a full read of it judges it (the per-namespace reads
/// made when the list is refused): the same outcome, the same error, with and without --force;
/// and `status` calls healthy exactly those the pass leaves unchanged. The metadata vouches
/// only for a Secret whose resourceVersion is the one the ledger recorded for our last write:
/// anything written since, by anyone (under our field manager's name, with managedFields put
/// back, with a key added), is read in full, one GET each, and rewritten.
#[tokio::test]
async fn the_metadata_list_judges_every_tampered_secret_as_a_full_read_does() {
    let _suite = suite::exclusive().await;
    let (granted, refused) = with_and_without_the_secret_list("rbac-meta");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "current",
        "payload",
        "expiry",
        "noregs",
        "unlabelled",
        "stripped",
        "stripedit",
        "recreated",
        "opaque",
        "foreign",
        "missing",
        "asusempty",
        "asushost",
        "asusopaque",
        "forged",
        "note",
    ];
    let (client, base, names) = TestNs::group("meta", cases).await;
    let ns = |case: &str| names[cases.iter().position(|c| *c == case).unwrap()].clone();
    create_foreign_secret(&client, &ns("foreign")).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("one")).await;
    let glob = format!("{base}-*");
    let sync = |id: Option<&str>| {
        let run =
            Run::sync()
                .env("AWS_ENDPOINT_URL", &ecr.url)
                .args(["-n", glob.as_str(), "-o", "json"]);
        match id {
            Some(id) => run.env("KUBECONFIG", token_kubeconfig(dir.path(), id)),
            None => run,
        }
    };
    sync(None).run().assert_code(1);
    tamper_each_way(&client, &ns).await;

    let expected: HashMap<&str, &str> = HashMap::from([
        ("current", "unchanged"),
        ("payload", "updated"),
        ("expiry", "updated"),
        ("noregs", "updated"),
        ("unlabelled", "failed"),
        ("stripped", "updated"),
        ("stripedit", "updated"),
        ("recreated", "updated"),
        ("opaque", "failed"),
        ("foreign", "failed"),
        ("missing", "created"),
        ("asusempty", "updated"),
        ("asushost", "updated"),
        ("asusopaque", "failed"),
        ("forged", "updated"),
        ("note", "updated"),
    ]);
    // Only what our last write left is vouched for; a missing Secret is not listed.
    let vouched = ["current", "missing"];
    let opaque = ["opaque", "asusopaque"];
    for force in [false, true] {
        let mut seen = Vec::new();
        for id in [&granted, &refused] {
            let mut run = sync(Some(id)).args(["--dry-run"]);
            if force {
                run = run.args(["--force"]);
            }
            let (out, c) = counted(&client, run).await;
            let report = out.json();
            let judged: Vec<(String, String, String)> = cases
                .iter()
                .map(|case| {
                    let n = outcome(&report, &ns(case));
                    // The same but for who asked.
                    let error = n["error"]
                        .as_str()
                        .unwrap_or_default()
                        .replace(id.as_str(), "ID");
                    (
                        case.to_string(),
                        n["outcome"].as_str().unwrap().into(),
                        error,
                    )
                })
                .collect();
            for (case, outcome, error) in &judged {
                // rbac.yaml grants no delete, which replacing a Secret of another type needs.
                let want = match expected[case.as_str()] {
                    "failed" if force && !opaque.contains(&case.as_str()) => "updated",
                    other => other,
                };
                assert_eq!(outcome, want, "{case} (force {force}, {id}): {report:#}");
                assert!(!says_422(error), "{case}: {error}");
            }
            let reads = if *id == granted {
                cases.len() - vouched.len()
            } else {
                cases.len()
            };
            assert_eq!(c.of("GET secrets"), reads as u64, "{id}: {c:?}");
            seen.push(judged);
        }
        assert_eq!(
            seen[0], seen[1],
            "metadata list against full reads (force {force})"
        );
    }
    // `status` calls healthy exactly what sync leaves unchanged.
    let out = Run::bare()
        .args(["status", "-n", glob.as_str(), "-o", "json"])
        .run();
    out.assert_code(1);
    let report = out.json();
    for case in cases {
        let n = report["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == ns(case).as_str())
            .unwrap();
        assert_eq!(
            n["healthy"] == true,
            expected[case] == "unchanged",
            "{case}: {n:#}"
        );
    }
}

/// With --tenants, as counted by the server: a first pass writes each namespace once, a quiet
/// pass only lists (no STS, no ECR), and a pass where only team-b is due writes only its
/// namespace and assumes only team-b's role.
#[tokio::test]
async fn tenants_cost_the_same_lists_and_only_the_due_tenants_role() {
    let _suite = suite::exclusive().await;
    let (client, base, names) = TestNs::group("quiet-tenants", ["a1", "a2", "b1"]).await;
    let aws = fake_aws::FakeAws::start().await;
    let (role_a, role_b) = (
        "arn:aws:iam::123456789012:role/team-a",
        "arn:aws:iam::123456789012:role/team-b",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.yaml");
    std::fs::write(
        &file,
        format!(
            "tenants:\n  - name: team-a\n    namespaces: [\"{base}-a*\"]\n    roleArn: {role_a}\n  - name: team-b\n    namespaces: [\"{base}-b*\"]\n    roleArn: {role_b}\n"
        ),
    )
    .unwrap();
    let glob = format!("{base}-*");
    let sync = || {
        Run::sync().env("AWS_ENDPOINT_URL", &aws.url).args([
            "-n",
            glob.as_str(),
            "--tenants",
            file.to_str().unwrap(),
            "-o",
            "json",
        ])
    };
    let bound = list_bound(&client).await;

    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 3, "{:#}", out.json());
    assert_eq!(c.secret_writes(), 3, "{c:?}");
    assert_eq!(c.of("PATCH serviceaccounts"), 3, "{c:?}");
    assert_eq!(
        c.events(),
        1 + 3,
        "our Warnings listed, a SecretCreated each: {c:?}"
    );
    assert_eq!(c.total(), c.lists() + 6 + 2 + 4, "no single reads: {c:?}");
    assert_eq!(
        aws.tokens().len(),
        2,
        "one ECR call per role: {:?}",
        aws.tokens()
    );

    // Nothing due: only lists, and neither STS nor ECR.
    aws.reset_calls();
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 3);
    c.assert_only_lists(bound);
    assert!(aws.assumed().is_empty() && aws.tokens().is_empty());

    // Only b1 is due (its Secret was deleted): its write, team-b's role and token, no more.
    Api::<Secret>::namespaced(client.clone(), &names[2])
        .delete("awsecr-cred", &DeleteParams::default())
        .await
        .unwrap();
    let (out, c) = counted(&client, sync()).await;
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 1, "{:#}", out.json());
    assert_eq!(c.secret_writes(), 1, "{c:?}");
    assert_eq!(aws.assumed(), [role_b]);
    assert_eq!(aws.tokens().len(), 1);
    // A SecretCreated sent (answered 409: the first pass's is there); nothing to list.
    assert_eq!(c.events(), 1, "{c:?}");
    assert_eq!(c.total(), c.lists() + 1 + 2 + 1, "{c:?}");
    assert_eq!(
        password(&client, &names[2]).await,
        fake_aws::password_of(role_b)
    );
    assert_eq!(
        password(&client, &names[0]).await,
        fake_aws::password_of(role_a)
    );
}
