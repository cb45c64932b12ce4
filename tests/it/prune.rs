//! `prune` and `sync --prune`. Prune acts on every namespace outside the selection, so these
//! tests hold the suite exclusive: no other test runs meanwhile.

use crate::common;

use common::*;

#[tokio::test]
async fn prune_removes_exactly_the_dropped_namespaces() {
    let _suite = suite::exclusive().await;
    let client = admin().await;
    let base = unique("prune");
    let names: Vec<String> = ["keep-a", "keep-b", "drop-a", "drop-b"]
        .iter()
        .map(|s| format!("{base}-{s}"))
        .collect();
    for n in &names {
        create_namespace_listing(&client, n, &["someone-elses"]).await;
    }
    Run::sync()
        .args(["-n", &format!("{base}-*")])
        .run()
        .assert_code(0);
    // A foreign Secret of our name in a dropped namespace must survive (we never owned it).
    let foreign_ns = format!("{base}-drop-foreign");
    create_namespace(&client, &foreign_ns, true).await;
    let foreign = create_foreign_secret_with(&client, &foreign_ns, br#"{"auths":{}}"#).await;

    // Dry run first: nothing changes.
    let out = Run::bare()
        .args([
            "prune",
            "-x",
            &format!("{base}-drop-*"),
            "--dry-run",
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    let r = out.json();
    let pruned: Vec<&str> = r["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["outcome"] == "pruned")
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(pruned, [names[2].as_str(), names[3].as_str()]);
    for n in &names {
        assert!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            "dry run deleted in {n}"
        );
    }

    let out = Run::bare()
        .args(["prune", "-x", &format!("{base}-drop-*"), "-o", "json"])
        .run();
    out.assert_code(0);
    for (n, kept) in names.iter().zip([true, true, false, false]) {
        assert_eq!(
            get_secret(&client, n, "awsecr-cred").await.is_some(),
            kept,
            "{n}"
        );
        let expected: &[&str] = if kept {
            &["someone-elses", "awsecr-cred"]
        } else {
            &["someone-elses"]
        };
        assert_eq!(
            pull_secret_names(&get_sa(&client, n, "default").await),
            expected,
            "{n}"
        );
    }
    let after = get_secret(&client, &foreign_ns, "awsecr-cred")
        .await
        .unwrap();
    assert_eq!(
        after.metadata.resource_version,
        foreign.metadata.resource_version
    );
    // Each dropped namespace's owners are told, on its ServiceAccount (the Secret is gone).
    for (n, kept) in names.iter().zip([true, true, false, false]) {
        let removed: Vec<_> = our_events(&client, n)
            .await
            .into_values()
            .filter(|e| e.reason.as_deref() == Some("SecretRemoved"))
            .map(|e| {
                let r = e.regarding.as_ref().unwrap();
                (
                    e.type_.clone().unwrap(),
                    r.kind.clone().unwrap(),
                    r.name.clone().unwrap(),
                )
            })
            .collect();
        let expected = if kept {
            vec![]
        } else {
            vec![(
                "Warning".to_string(),
                "ServiceAccount".to_string(),
                "default".to_string(),
            )]
        };
        assert_eq!(removed, expected, "{n}");
    }
}

#[tokio::test]
async fn sync_prune_and_opt_out() {
    let _suite = suite::exclusive().await;
    let (client, base, [stays, leaves]) = TestNs::group("optout", ["stays", "leaves"]).await;
    Run::sync()
        .args(["-n", &format!("{base}-*")])
        .run()
        .assert_code(0);

    annotate_namespace(&client, &leaves, &[], &[("ecr-refresh/opt-out", "true")]).await;
    after_write_window().await;
    // `sync --prune` over just this test's namespaces (exclude everything else from pruning by
    // excluding nothing of ours): the opted-out one is skipped by sync and cleaned by prune.
    let out = Run::sync()
        .args([
            "-n",
            &format!("{base}-*"),
            "--prune",
            "-o",
            "json",
            "-x",
            "nothing-matches-this",
        ])
        .env("ECR_REFRESH_TIMEOUT", "2m")
        .run();
    out.assert_code(0);
    let r = out.json();
    assert_eq!(outcome(&r, &stays)["outcome"], "unchanged");
    assert_eq!(outcome(&r, &leaves)["outcome"], "pruned");
    assert!(get_secret(&client, &leaves, "awsecr-cred").await.is_none());
    assert!(pull_secret_names(&get_sa(&client, &leaves, "default").await).is_empty());
    assert!(get_secret(&client, &stays, "awsecr-cred").await.is_some());
}

/// Uninstall takes our entry out wherever it is, also where our Secret is already gone; an
/// entry next to someone else's Secret of that name is theirs and stays.
#[tokio::test]
async fn uninstall_removes_our_entry_where_the_secret_is_already_gone() {
    let _suite = suite::exclusive().await;
    let client = admin().await;
    let base = unique("uninstall");
    let [gone, foreign] = ["gone", "foreign"].map(|s| format!("{base}-{s}"));
    create_namespace_listing(&client, &gone, &["theirs", "awsecr-cred"]).await;
    create_namespace_listing(&client, &foreign, &["awsecr-cred"]).await;
    create_foreign_secret_with(&client, &foreign, br#"{"auths":{}}"#).await;

    let out = Run::bare()
        .args(["prune", "--uninstall", "--dry-run", "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(
        pull_secret_names(&get_sa(&client, &gone, "default").await),
        ["theirs", "awsecr-cred"],
        "a dry run changes nothing"
    );

    let out = Run::bare()
        .args(["prune", "--uninstall", "-o", "json"])
        .run();
    out.assert_code(0);
    let r = out.json();
    let report = outcome(&r, &gone);
    assert_eq!(report["outcome"], "pruned", "{report:#}");
    assert_eq!(report["secret"], serde_json::Value::Null, "{report:#}");
    assert_eq!(report["service_accounts"][0]["outcome"], "unlinked");
    assert_eq!(
        pull_secret_names(&get_sa(&client, &gone, "default").await),
        ["theirs"]
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &foreign, "default").await),
        ["awsecr-cred"]
    );
    assert!(
        !r["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == foreign.as_str()),
        "{r:#}"
    );
}

#[tokio::test]
async fn prune_refuses_a_selection_that_matches_no_namespace() {
    let _suite = suite::exclusive().await;
    let TestNs { client, name: ns } = TestNs::synced("typo").await;
    let before = get_secret(&client, &ns, "awsecr-cred").await.unwrap();

    // A typo would otherwise prune every namespace; --dry-run keeps a regression harmless.
    for (args, flag) in [
        (
            vec!["sync", "--prune", "-n", "no-such-namespace-xyz"],
            "--namespace",
        ),
        (vec!["sync", "--prune", "-n", "no-such-*"], "--namespace"),
        (vec!["prune", "-n", "no-such-namespace-xyz"], "--namespace"),
        (
            vec!["prune", "-l", "no-such-label=x"],
            "--namespace-selector",
        ),
    ] {
        let out = Run::bare()
            .args(&args)
            .args(["--dry-run", "-o", "json"])
            .run();
        out.assert_code(2);
        let r = out.json();
        assert_eq!(r["error"]["kind"], "invalid_input", "{args:?}: {r:#}");
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(flag) && msg.contains("matches no namespace"),
            "{args:?}: {msg}"
        );
        assert!(
            r["namespaces"].as_array().unwrap().is_empty(),
            "{args:?}: {r:#}"
        );
    }
    let after = get_secret(&client, &ns, "awsecr-cred").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        ["awsecr-cred"]
    );

    // Excludes alone only narrow "all": uninstalling still works (dry run here).
    let out = Run::bare()
        .args(["prune", "--uninstall", "--dry-run", "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(outcome(&out.json(), &ns)["outcome"], "pruned");
}

/// The annotation that records the entries ecr-refresh added itself.
const LINKED: &str = "ecr-refresh/linked";

fn linked_annotation(sa: &k8s_openapi::api::core::v1::ServiceAccount) -> Option<String> {
    sa.metadata.annotations.as_ref()?.get(LINKED).cloned()
}

/// An `awsecr-cred` entry someone added by hand (or that a version which
/// kept no record added) is reported `already_linked` and is theirs: prune of an opted-out
/// namespace leaves it; only `--uninstall` takes it out. Our own entry is recorded in
/// `ecr-refresh/linked` and leaves with its record.
#[tokio::test]
async fn prune_leaves_an_entry_it_did_not_add() {
    let _suite = suite::exclusive().await;
    let client = admin().await;
    let base = unique("byhand");
    let [hand, ours] = ["hand", "ours"].map(|s| format!("{base}-{s}"));
    create_namespace_listing(&client, &hand, &["theirs", "awsecr-cred"]).await;
    create_namespace_listing(&client, &ours, &["theirs"]).await;

    let out = Run::sync()
        .args(["-n", &hand, "-n", &ours, "-o", "json"])
        .run();
    out.assert_code(0);
    let r = out.json();
    let sa_outcome = |ns: &str| outcome(&r, ns)["service_accounts"][0]["outcome"].clone();
    assert_eq!(sa_outcome(&hand), "already_linked", "{r:#}");
    assert_eq!(sa_outcome(&ours), "linked", "{r:#}");
    let (hand_sa, ours_sa) = (
        get_sa(&client, &hand, "default").await,
        get_sa(&client, &ours, "default").await,
    );
    assert_eq!(pull_secret_names(&ours_sa), ["theirs", "awsecr-cred"]);

    for ns in [&hand, &ours] {
        annotate_namespace(&client, ns, &[], &[("ecr-refresh/opt-out", "true")]).await;
    }
    let out = Run::bare().args(["prune", "-o", "json"]).run();
    out.assert_code(0);
    let r = out.json();
    for ns in [&hand, &ours] {
        assert_eq!(outcome(&r, ns)["outcome"], "pruned", "{r:#}");
        assert!(
            get_secret(&client, ns, "awsecr-cred").await.is_none(),
            "{ns}"
        );
    }
    assert_eq!(
        pull_secret_names(&get_sa(&client, &hand, "default").await),
        ["theirs", "awsecr-cred"],
        "prune removed an entry added by hand"
    );
    let sa_outcome = |ns: &str| outcome(&r, ns)["service_accounts"][0]["outcome"].clone();
    assert_eq!(sa_outcome(&hand), "not_ours", "{r:#}");
    assert_eq!(sa_outcome(&ours), "unlinked", "{r:#}");
    // What sync recorded, and prune took away with the entry.
    assert_eq!(
        linked_annotation(&hand_sa),
        None,
        "an entry by hand is not claimed"
    );
    assert_eq!(linked_annotation(&ours_sa).as_deref(), Some("awsecr-cred"));
    let ours_sa = get_sa(&client, &ours, "default").await;
    assert_eq!(pull_secret_names(&ours_sa), ["theirs"]);
    assert_eq!(
        linked_annotation(&ours_sa),
        None,
        "the record leaves with the entry"
    );

    // Uninstalling removes every entry naming our Secret, recorded or not.
    let out = Run::bare()
        .args(["prune", "--uninstall", "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &hand)["service_accounts"][0]["outcome"],
        "unlinked"
    );
    let hand_sa = get_sa(&client, &hand, "default").await;
    assert_eq!(pull_secret_names(&hand_sa), ["theirs"]);
}

/// A late answer in prune: the DELETE is carried out but its answer comes after
/// `--request-timeout`; the retried DELETE finds nothing, which means it worked. The same for
/// the unlink before it, which is reported `unlinked`, not `not_linked`.
#[tokio::test]
async fn a_late_delete_answer_in_prune_is_still_a_prune() {
    let _suite = suite::exclusive().await;
    use common::fault::late_first;
    use common::proxy::FaultProxy;
    let TestNs { client, name: ns } = TestNs::synced("prunelate").await;
    // The unlink before the delete too: its retry meets a changed resourceVersion.
    let writes = vec![
        (
            "DELETE",
            format!("/api/v1/namespaces/{ns}/secrets/awsecr-cred"),
        ),
        (
            "PATCH",
            format!("/api/v1/namespaces/{ns}/serviceaccounts/default"),
        ),
    ];
    let late = std::time::Duration::from_millis(2500);
    let proxy = FaultProxy::start(late_first(writes, late)).await;
    let out = Run::bare()
        .through(&proxy)
        .args(["prune", "-x", &ns, "--request-timeout", "1s", "-o", "json"])
        .run();
    out.assert_code(0);
    let r = out.json();
    assert_eq!(outcome(&r, &ns)["outcome"], "pruned", "{r:#}");
    assert_eq!(outcome(&r, &ns)["secret"], "deleted", "{r:#}");
    let unlinked = &outcome(&r, &ns)["service_accounts"][0]["outcome"];
    assert_eq!(unlinked, "unlinked", "{r:#}");
    assert_eq!(
        proxy.log().iter().filter(|(m, ..)| m == "DELETE").count(),
        2,
        "the DELETE was retried: {:?}",
        proxy.log()
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
    assert!(pull_secret_names(&get_sa(&client, &ns, "default").await).is_empty());
}
