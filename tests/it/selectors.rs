//! Which namespaces a run touches: include and exclude globs, `ECR_REFRESH_NAMESPACE`, label
//! selectors, and terminating namespaces. `--namespace-selector` is checked locally so a typo
//! fails with exit 2; that check must accept exactly what the apiserver accepts, so each
//! selector goes to both, and they must agree.

use crate::common;

use std::str::FromStr;

use common::*;
use ecr_refresh::k8s_grammar::LabelSelector;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ListParams, Patch, PatchParams};

/// (selector, whether the server accepts it): the expectation documents the grammar; the
/// assertion that matters is that the tool and the server agree.
const TABLE: &[(&str, bool)] = &[
    // equality
    ("env=prod", true),
    ("env==prod", true),
    ("env!=prod", true),
    ("env=", true),
    ("env!=", true),
    ("env = prod", true),
    ("  env=prod  ", true),
    ("env=prod,tier!=db", true),
    ("env=prod , tier=db", true),
    ("env=prod,", false),
    (",env=prod", false),
    ("env=prod,,tier=db", false),
    ("=prod", false),
    ("env=prod=x", false),
    ("env=pr od", false),
    ("env===prod", false),
    ("env=!prod", false),
    // existence
    ("env", true),
    ("!env", true),
    ("! env", true),
    ("env,!legacy", true),
    ("!env=prod", false),
    ("!", false),
    ("!!env", false),
    ("!=x", false),
    // sets
    ("env in (a,b)", true),
    ("env in(a,b)", true),
    ("env in ( a , b )", true),
    ("env notin (a,b)", true),
    ("env notin(a)", true),
    ("env in ()", true),
    ("env in (a,)", true),
    ("env in (,a)", true),
    ("env in (a,,b)", true),
    ("env in (a b)", false),
    ("env in a", false),
    ("env in (a", false),
    ("env in", false),
    ("envin (a)", false),
    ("env in ((a))", false),
    ("env in (a),tier notin (b),!legacy,x=y", true),
    ("in in (in)", true),
    ("notin=notin", true),
    ("!in", true),
    ("env in (-a)", false),
    // numeric comparisons
    ("replicas>1", true),
    ("replicas<10", true),
    ("replicas > 1", true),
    ("replicas>0", true),
    ("replicas>007", true),
    ("replicas>9223372036854775807", true),
    ("replicas>9223372036854775808", false),
    ("replicas>-1", false),
    ("replicas>+1", false),
    ("replicas>a", false),
    ("replicas>1.5", false),
    ("replicas>", false),
    ("replicas>=1", false),
    ("replicas<=1", false),
    ("replicas<>1", false),
    ("replicas>1>2", false),
    // keys and values
    ("example.com/owner=team-a", true),
    ("example.com/owner notin (x)", true),
    ("a.b-c_d=e.f-g_h", true),
    ("A=B", true),
    ("Example.com/x=y", false),
    ("/x=y", false),
    ("example.com/=y", false),
    ("a/b/c=d", false),
    ("-x=y", false),
    ("x-=y", false),
    ("x=-y", false),
    ("x=y-", false),
    ("x_y=z", true),
    ("_x=y", false),
    ("x=y_", false),
    ("x=\u{e9}", false),
    ("x:y=z", false),
    ("x=y;z", false),
    ("x=y\tz", false),
    ("x\t=\ty", true),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=b",
        true,
    ),
    (
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=b",
        false,
    ),
    (
        "a=bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        false,
    ),
    // structure
    ("(env=prod)", false),
    ("env=prod)", false),
    ("env prod", false),
    ("Bad Key=x", false),
    ("env in (a),", false),
];

#[tokio::test]
async fn the_local_check_accepts_exactly_what_the_apiserver_accepts() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let api: Api<Namespace> = Api::all(client);
    let mut disagreements = Vec::new();
    for (selector, expected) in TABLE {
        let server = match api
            .list_metadata(&ListParams::default().labels(selector).limit(1))
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 400 => false,
            Err(e) => panic!("{selector:?}: unexpected error {e}"),
        };
        let local = LabelSelector::from_str(selector);
        if local.is_ok() != server {
            disagreements.push(format!(
                "{selector:?}: server {}, ecr-refresh {local:?}",
                if server { "accepts" } else { "rejects" }
            ));
        }
        assert_eq!(
            server, *expected,
            "{selector:?}: the table's expectation is wrong for this server"
        );
    }
    assert!(
        disagreements.is_empty(),
        "the local check and the apiserver disagree:\n{}",
        disagreements.join("\n")
    );
}

/// The two selectors from the report, end to end: accepted, and they select by label.
#[tokio::test]
async fn set_and_numeric_selectors_select_namespaces() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let api: Api<Namespace> = Api::all(client.clone());
    let label = unique("sel").replace('-', "");
    let (a, b) = (
        TestNs::new("sel-a").await.name,
        TestNs::new("sel-b").await.name,
    );
    for (ns, env, replicas) in [(&a, "x", "3"), (&b, "y", "1")] {
        let patch = serde_json::json!({"metadata": {"labels": {
            format!("{label}-env"): env,
            format!("{label}-replicas"): replicas,
        }}});
        api.patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
    }
    for (selector, want) in [
        (format!("{label}-env in(x,z)"), vec![a.clone()]),
        (format!("{label}-replicas>1"), vec![a.clone()]),
        (
            format!("{label}-replicas<2,{label}-env notin (x)"),
            vec![b.clone()],
        ),
    ] {
        let out = Run::sync()
            .args(["--dry-run", "-o", "json", "-l", &selector])
            .run();
        out.assert_code(0);
        let got: Vec<String> = out.json()["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{selector}");
    }
}

/// An empty selector is the one deliberate difference: the server takes it as "everything",
/// which on a command line is far more likely an unset variable.
#[test]
fn an_empty_selector_is_refused() {
    let _suite = suite::shared_blocking();
    for s in ["", "   "] {
        let err = LabelSelector::from_str(s).unwrap_err();
        assert!(err.contains("empty label selector"), "{err}");
    }
}

#[tokio::test]
async fn namespace_selector_combines_with_globs() {
    let _suite = suite::shared().await;
    let (client, base, [prod, dev, other]) =
        TestNs::group("labels", ["prod", "dev", "other"]).await;
    annotate_namespace(&client, &prod, &[("env", "prod")], &[]).await;
    annotate_namespace(&client, &dev, &[("env", "dev")], &[]).await;
    annotate_namespace(&client, &other, &[("env", "prod")], &[]).await;
    // `other` is labelled prod too but excluded by the glob.
    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-p*"),
            "-n",
            &format!("{base}-d*"),
            "-l",
            "env in (prod)",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["selected"], 1);
    assert!(get_secret(&client, &prod, "awsecr-cred").await.is_some());
    assert!(get_secret(&client, &dev, "awsecr-cred").await.is_none());
    assert!(get_secret(&client, &other, "awsecr-cred").await.is_none());
}

#[tokio::test]
async fn include_and_exclude_globs() {
    let _suite = suite::shared().await;
    let (client, base, names) = TestNs::group("glob", ["app-a", "app-b", "app-c", "other"]).await;
    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-app-*"),
            "-x",
            &format!("{base}-app-b"),
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["summary"]["selected"], 2, "{report:#}");
    for (n, expected) in names.iter().zip([true, false, true, false]) {
        assert_eq!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            expected,
            "{n}"
        );
    }
}

#[tokio::test]
async fn namespace_env_fallback() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("envflag").await;
    Run::sync()
        .env("ECR_REFRESH_NAMESPACE", &ns)
        .env("ECR_REFRESH_SECRET_NAME", "ecr-pull")
        .run()
        .assert_code(0);
    assert!(get_secret(&client, &ns, "ecr-pull").await.is_some());
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["ecr-pull"]
    );
}

#[tokio::test]
async fn terminating_namespaces_are_skipped() {
    let _suite = suite::shared().await;
    let (client, base, [live, dying]) = TestNs::group("term", ["live", "dying"]).await;
    delete_namespace(&client, &dying).await;

    // Found by listing: skipped without a write.
    let out = Run::sync()
        .args(["-n", &format!("{base}-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(outcome(&report, &dying)["outcome"], "skipped");
    assert_eq!(
        outcome(&report, &dying)["reason"],
        "namespace is terminating"
    );
    assert_eq!(outcome(&report, &live)["outcome"], "created");
    assert_eq!(report["summary"]["skipped"], 1);

    // Named literally (no listing): the server's refusal is recognised as a skip too.
    let out = Run::sync().args(["-n", &dying, "-o", "json"]).run();
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), &dying)["outcome"], "skipped");
    assert!(get_secret(&client, &dying, "awsecr-cred").await.is_none());
}

/// The server refuses only creates in a terminating namespace, so a Secret and a
/// ServiceAccount already there would be written to; a literal -n must skip it as a glob does.
#[tokio::test]
async fn terminating_namespace_named_literally_is_not_written_to() {
    let _suite = suite::shared().await;
    let TestNs {
        client,
        name: dying,
    } = TestNs::new("dying").await;
    Run::sync().args(["-n", &dying]).run().assert_code(0);
    // Make both writes due: a stale annotation, and the link gone.
    make_due(&client, &dying).await;
    let unlink = serde_json::json!({"imagePullSecrets": null});
    Api::<ServiceAccount>::namespaced(client.clone(), &dying)
        .patch("default", &PatchParams::default(), &Patch::Merge(&unlink))
        .await
        .unwrap();
    delete_namespace(&client, &dying).await;
    let before = get_secret(&client, &dying, "awsecr-cred").await.unwrap();

    for selector in [dying.clone(), format!("{dying}*")] {
        let out = Run::sync().args(["-n", &selector, "-o", "json"]).run();
        out.assert_code(0);
        let r = out.json();
        assert_eq!(
            outcome(&r, &dying)["outcome"],
            "skipped",
            "-n {selector}: {r:#}"
        );
        assert_eq!(outcome(&r, &dying)["reason"], "namespace is terminating");
    }
    let after = get_secret(&client, &dying, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert!(pull_secret_names(&get_sa(&client, &dying, "default").await).is_empty());
}
