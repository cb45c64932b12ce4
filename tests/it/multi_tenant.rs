//! `--tenants`: each namespace's Secret holds a token asked as its own tenant's role, against
//! the real apiserver and an STS and ECR stand-in that tie each token to the credentials that
//! asked for it (`common::fake_aws`).

use crate::common;

use common::fake_aws::{password_of, FakeAws};
use common::*;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;

const ROLE_A: &str = "arn:aws:iam::111111111111:role/ecr-pull-team-a";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/ecr-pull-team-b";

/// team-a takes the namespaces labelled team=a, team-b those labelled team=b; both only
/// among `{base}-*`.
fn tenants_file(dir: &std::path::Path, base: &str) -> std::path::PathBuf {
    tenants_file_with(dir, base, ROLE_A)
}

/// [`tenants_file`] with team-a's role `role_a`.
fn tenants_file_with(dir: &std::path::Path, base: &str, role_a: &str) -> std::path::PathBuf {
    let path = dir.join("tenants.yaml");
    let text = format!(
        "# one rule per team\n\
         tenants:\n\
         \x20 - name: team-a\n\
         \x20   namespaces: [\"{base}-*\"]\n\
         \x20   namespaceSelector: team=a\n\
         \x20   roleArn: {role_a}\n\
         \x20 - name: team-b\n\
         \x20   namespaces: [\"{base}-*\"]\n\
         \x20   namespaceSelector: team=b\n\
         \x20   roleArn: {ROLE_B}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn label(client: &Client, ns: &str, team: Option<&str>) {
    let patch = serde_json::json!({"metadata": {"labels": {"team": team}}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

/// The password in namespace `ns`'s Secret, for the registry of `account`.
async fn password(client: &Client, ns: &str, secret: &str, account: &str) -> Option<String> {
    let s = get_secret(client, ns, secret).await?;
    let host = format!("{account}.dkr.ecr.{REGION}.amazonaws.com");
    let config = dockerconfig(&s);
    Some(config["auths"][&host]["password"].as_str()?.to_string())
}

struct Teams {
    client: Client,
    base: String,
    a: [String; 2],
    b: String,
    none: String,
    secret: String,
    dir: tempfile::TempDir,
}

impl Teams {
    async fn new(prefix: &str) -> Self {
        let client = admin().await;
        let base = unique(prefix);
        let a = [format!("{base}-a1"), format!("{base}-a2")];
        let (b, none) = (format!("{base}-b1"), format!("{base}-none"));
        for ns in a.iter().chain([&b, &none]) {
            create_namespace(&client, ns, true).await;
        }
        for ns in &a {
            label(&client, ns, Some("a")).await;
        }
        label(&client, &b, Some("b")).await;
        Self {
            client,
            secret: format!("{base}-cred"),
            base,
            a,
            b,
            none,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn sync(&self, aws: &FakeAws) -> Run {
        let file = tenants_file(self.dir.path(), &self.base);
        self.over(Run::sync().env("AWS_ENDPOINT_URL", &aws.url), &file)
    }

    fn status(&self) -> Run {
        let file = tenants_file(self.dir.path(), &self.base);
        self.over(Run::bare().args(["status"]), &file)
    }

    /// `run` over this test's namespaces and Secret name, with the rules in `file`.
    fn over(&self, run: Run, file: &std::path::Path) -> Run {
        run.args([
            "-n",
            &format!("{}-*", self.base),
            "--secret-name",
            &self.secret,
            "--tenants",
            file.to_str().unwrap(),
            "-o",
            "json",
        ])
    }

    async fn password(&self, ns: &str, account: &str) -> Option<String> {
        password(&self.client, ns, &self.secret, account).await
    }
}

#[tokio::test]
async fn each_namespace_gets_its_tenants_token_and_a_move_flips_it_in_one_pass() {
    let _suite = suite::shared().await;
    let t = Teams::new("tenants").await;
    let aws = FakeAws::start().await;

    // --dry-run: the server admits each tenant's Secret and keeps none.
    let out = t.sync(&aws).args(["--dry-run"]).run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 3, "{:#}", out.json());
    for ns in t.a.iter().chain([&t.b]) {
        assert!(get_secret(&t.client, ns, &t.secret).await.is_none(), "{ns}");
    }
    aws.reset_calls();

    let out = t.sync(&aws).run();
    out.assert_code(0);
    let report = out.json();
    for ns in &t.a {
        assert_eq!(outcome(&report, ns)["outcome"], "created", "{report:#}");
        assert_eq!(outcome(&report, ns)["tenant"], "team-a");
        assert_eq!(
            t.password(ns, "111111111111").await,
            Some(password_of(ROLE_A))
        );
        assert_eq!(
            t.password(ns, "222222222222").await,
            None,
            "team-b's registry"
        );
        let secret = get_secret(&t.client, ns, &t.secret).await.unwrap();
        let annotations = secret.metadata.annotations.unwrap();
        assert_eq!(annotations["ecr-refresh/tenant"], "team-a");
    }
    assert_eq!(outcome(&report, &t.b)["tenant"], "team-b");
    assert_eq!(
        t.password(&t.b, "222222222222").await,
        Some(password_of(ROLE_B))
    );
    // No rule takes it: reported, and nothing written there.
    let none = outcome(&report, &t.none);
    assert_eq!(none["outcome"], "skipped", "{report:#}");
    assert!(
        none["reason"].as_str().unwrap().contains("--tenants"),
        "{none}"
    );
    assert!(get_secret(&t.client, &t.none, &t.secret).await.is_none());
    // Each role assumed once, and ECR asked once with each role's credentials.
    let mut assumed = aws.assumed();
    assumed.sort();
    assert_eq!(assumed, [ROLE_A, ROLE_B]);
    assert_eq!(aws.tokens().len(), 2, "{:?}", aws.tokens());
    out.assert_no_secrets();

    // Nothing due: no STS, no ECR.
    aws.reset_calls();
    let out = t.sync(&aws).run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 3, "{:#}", out.json());
    assert!(aws.assumed().is_empty() && aws.tokens().is_empty());

    let out = t.status().run();
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &t.a[0])["tenant"],
        "team-a",
        "{:#}",
        out.json()
    );

    // a2 moves to team-b: status flags its Secret as team-a's, and JSON names the new tenant.
    label(&t.client, &t.a[1], Some("b")).await;
    let out = t.status().run();
    out.assert_code(1);
    let moved = outcome(&out.json(), &t.a[1]).clone();
    assert_eq!(
        (&moved["tenant"], &moved["healthy"]),
        (&"team-b".into(), &false.into())
    );
    let problems = moved["problems"].to_string();
    assert!(
        problems.contains("written for tenant team-a")
            && problems.contains("belongs to tenant team-b"),
        "{moved:#}"
    );
    assert_eq!(outcome(&out.json(), &t.a[0])["healthy"], true);

    // Then one sync pass: only a2 is due, only team-b's role is assumed, and its Secret now
    // holds team-b's token.
    aws.reset_calls();
    let out = t.sync(&aws).run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(
        outcome(&report, &t.a[1])["outcome"],
        "updated",
        "{report:#}"
    );
    assert_eq!(outcome(&report, &t.a[1])["tenant"], "team-b");
    assert_eq!(report["summary"]["updated"], 1, "{report:#}");
    assert_eq!(aws.assumed(), [ROLE_B]);
    assert_eq!(
        t.password(&t.a[1], "222222222222").await,
        Some(password_of(ROLE_B))
    );
    assert_eq!(t.password(&t.a[1], "111111111111").await, None);
    assert_eq!(
        t.password(&t.a[0], "111111111111").await,
        Some(password_of(ROLE_A))
    );
    t.status().run().assert_code(0);

    // team-a gets another role: its one namespace left is due, and only that role is assumed.
    let role_a2 = "arn:aws:iam::111111111111:role/ecr-pull-team-a-2";
    let file = tenants_file_with(t.dir.path(), &t.base, role_a2);
    aws.reset_calls();
    let sync = Run::sync().env("AWS_ENDPOINT_URL", &aws.url);
    let out = t.over(sync, &file).run();
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &t.a[0])["outcome"],
        "updated",
        "{:#}",
        out.json()
    );
    assert_eq!(out.json()["summary"]["updated"], 1, "{:#}", out.json());
    assert_eq!(aws.assumed(), [role_a2]);
    assert_eq!(
        t.password(&t.a[0], "111111111111").await,
        Some(password_of(role_a2))
    );
    tenants_file(t.dir.path(), &t.base);

    // b1 leaves every tenant: --prune takes our Secret out of it, and leaves the others.
    label(&t.client, &t.b, None).await;
    let out = t.sync(&aws).args(["--prune"]).run();
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &t.b)["outcome"],
        "pruned",
        "{:#}",
        out.json()
    );
    assert!(get_secret(&t.client, &t.b, &t.secret).await.is_none());
    assert!(get_secret(&t.client, &t.a[0], &t.secret).await.is_some());
    for ns in t.a.iter().chain([&t.b, &t.none]) {
        delete_namespace(&t.client, ns).await;
    }
}

#[tokio::test]
async fn a_refused_role_fails_only_its_tenants_namespaces() {
    let _suite = suite::shared().await;
    let t = Teams::new("tenants-refused").await;
    let aws = FakeAws::start().await;
    aws.refuse(ROLE_A, true);

    let out = t.sync(&aws).run();
    out.assert_code(3);
    let report = out.json();
    for ns in &t.a {
        assert_eq!(outcome(&report, ns)["outcome"], "failed", "{report:#}");
        let error = error_of(&report, ns);
        assert!(
            error.contains("team-a") && error.contains(ROLE_A),
            "{error}"
        );
        assert!(get_secret(&t.client, ns, &t.secret).await.is_none());
    }
    // team-b is done all the same.
    assert_eq!(outcome(&report, &t.b)["outcome"], "created", "{report:#}");
    assert_eq!(
        t.password(&t.b, "222222222222").await,
        Some(password_of(ROLE_B))
    );
    let failed = report["failed_tenants"].as_array().expect("failed_tenants");
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["tenant"], "team-a");
    assert!(failed[0]["error"].as_str().unwrap().contains(ROLE_A));
    out.assert_no_secrets();

    // Once allowed, the next pass writes team-a's and leaves team-b's alone.
    aws.refuse(ROLE_A, false);
    aws.reset_calls();
    let out = t.sync(&aws).run();
    out.assert_code(0);
    assert_eq!(aws.assumed(), [ROLE_A]);
    assert_eq!(out.json()["summary"]["created"], 2, "{:#}", out.json());
    for ns in t.a.iter().chain([&t.b, &t.none]) {
        delete_namespace(&t.client, ns).await;
    }
}

#[tokio::test]
async fn a_bad_tenants_file_exits_2_naming_file_line_and_key_before_any_call() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("tenants-bad").await;
    let aws = FakeAws::start().await;
    let sa = get_sa(&client, &ns, "default")
        .await
        .metadata
        .resource_version;
    let dir = tempfile::tempdir().unwrap();
    let role = "roleArn: arn:aws:iam::111111111111:role/x";
    let cases = [
        (
            "tenants:\n  - name: a\n    namespaces: [x\n",
            "line 3",
            "",
            "unclosed",
        ),
        (
            &*format!("tenants:\n  - name: a\n    namespaces: [x]\n    {role}\n    registry: x\n"),
            "line 5",
            "",
            "unknown field `registry`",
        ),
        (
            &*format!("tenants:\n  - name: a\n    {role}\n"),
            "line 2",
            "namespaces",
            "names no namespaces",
        ),
        (
            "tenants:\n  - name: a\n    namespaces: [x]\n    roleArn: arn:aws:iam::1:role/x\n",
            "line 4",
            "roleArn of tenant \"a\"",
            "IAM role ARN",
        ),
    ];
    for (text, line, key, says) in cases {
        let file = dir.path().join("tenants.yaml");
        std::fs::write(&file, text).unwrap();
        let out = Run::sync()
            .env("AWS_ENDPOINT_URL", &aws.url)
            .env("ECR_REFRESH_TENANTS", &file)
            .args(["-n", &ns])
            .run();
        out.assert_code(2)
            .assert_stderr_contains(file.to_str().unwrap())
            .assert_stderr_contains(line)
            .assert_stderr_contains(key)
            .assert_stderr_contains(says)
            .assert_stderr_contains("nothing was written");
        assert_nothing_written(&client, &ns, &sa).await;
    }
    // --registry is the tenants' to set.
    let file = dir.path().join("tenants.yaml");
    std::fs::write(
        &file,
        format!("tenants:\n  - name: a\n    namespaces: [x]\n    {role}\n"),
    )
    .unwrap();
    Run::sync()
        .args([
            "-n",
            &ns,
            "--tenants",
            file.to_str().unwrap(),
            "--registry",
            "333333333333",
        ])
        .run()
        .assert_code(2)
        .assert_stderr_contains("--registry");
    assert!(aws.assumed().is_empty() && aws.tokens().is_empty());
    delete_namespace(&client, &ns).await;
}

/// deploy/tenants as `kubectl apply -k` renders it: the CronJob reads the ConfigMap's rules
/// where it mounts them, and those shipped rules work as they stand (team-a's namespaces get
/// team-a's token).
#[tokio::test]
async fn the_shipped_tenants_component_mounts_rules_that_sync_takes() {
    let _suite = suite::shared().await;
    let objects = install::render_deploy(&["tenants"]);
    let rules = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "ecr-refresh-tenants")
        .expect("the tenants ConfigMap")["data"]["tenants.yaml"]
        .as_str()
        .unwrap()
        .to_string();
    let pod = &objects.iter().find(|o| o["kind"] == "CronJob").unwrap()["spec"]["jobTemplate"]
        ["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let path = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "ECR_REFRESH_TENANTS")
        .expect("ECR_REFRESH_TENANTS")["value"]
        .as_str()
        .unwrap();
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "tenants")
        .expect("the tenants mount");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "tenants")
        .expect("the tenants volume");
    assert_eq!(volume["configMap"]["name"], "ecr-refresh-tenants");
    assert_eq!(
        path,
        format!("{}/tenants.yaml", mount["mountPath"].as_str().unwrap()),
        "ECR_REFRESH_TENANTS names the mounted key"
    );

    let client = admin().await;
    let ns = unique("team-a");
    create_namespace(&client, &ns, true).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.yaml");
    std::fs::write(&file, rules).unwrap();
    let aws = FakeAws::start().await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &aws.url)
        .env("ECR_REFRESH_TENANTS", &file)
        .args(["-n", &ns, "-o", "json"])
        .run();
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &ns)["tenant"],
        "team-a",
        "{:#}",
        out.json()
    );
    let team_a = "arn:aws:iam::111111111111:role/ecr-pull-team-a";
    assert_eq!(
        password(&client, &ns, "awsecr-cred", "111111111111").await,
        Some(password_of(team_a))
    );
    assert_eq!(aws.assumed(), [team_a]);
    delete_namespace(&client, &ns).await;
}

/// Tenants that share a role assume it once per pass; ECR is asked once per role and region,
/// and each tenant's Secret holds its own region's registry.
#[tokio::test]
async fn tenants_sharing_a_role_assume_it_once_and_ask_ecr_once_per_region() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let base = unique("tenants-shared");
    let names = ["x1", "x2", "y1", "z1"].map(|s| format!("{base}-{s}"));
    for ns in &names {
        create_namespace(&client, ns, true).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.yaml");
    // x and y: one role, one region; z: the same role in eu-west-1.
    std::fs::write(
        &file,
        format!(
            "tenants:\n\
             \x20 - {{name: x, namespaces: [\"{base}-x*\"], roleArn: {ROLE_A}}}\n\
             \x20 - {{name: y, namespaces: [\"{base}-y*\"], roleArn: {ROLE_A}, region: {REGION}}}\n\
             \x20 - {{name: z, namespaces: [\"{base}-z*\"], roleArn: {ROLE_A}, region: eu-west-1}}\n"
        ),
    )
    .unwrap();
    let aws = FakeAws::start().await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &aws.url)
        .args([
            "-n",
            &format!("{base}-*"),
            "--tenants",
            file.to_str().unwrap(),
            "-o",
            "json",
        ])
        .run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["created"], 4, "{:#}", out.json());
    assert_eq!(
        aws.assumed(),
        [ROLE_A],
        "one AssumeRole for the three tenants"
    );
    let mut regions: Vec<String> = aws.tokens().into_iter().map(|(_, region)| region).collect();
    regions.sort();
    assert_eq!(regions, ["eu-west-1", REGION], "one ECR call per region");
    let z = get_secret(&client, &names[3], "awsecr-cred").await.unwrap();
    let hosts = dockerconfig(&z)["auths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert!(
        hosts.contains(&"111111111111.dkr.ecr.eu-west-1.amazonaws.com".to_string()),
        "{hosts:?}"
    );
    for ns in &names {
        delete_namespace(&client, ns).await;
    }
}

/// A tenant with a Secret name of its own: its namespaces get that Secret (linked, checked by
/// status, recorded under its own ledger key), the others the run's; a namespace that moves to
/// it gets the new name, and --prune takes the old one out of it.
#[tokio::test]
async fn a_tenant_with_its_own_secret_name() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let base = unique("tenants-names");
    let (a, c) = (format!("{base}-a"), format!("{base}-c"));
    for ns in [&a, &c] {
        create_namespace(&client, ns, true).await;
    }
    label(&client, &a, Some("a")).await;
    label(&client, &c, Some("c")).await;
    let (ours, theirs) = (format!("{base}-cred"), format!("{base}-c-cred"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.yaml");
    std::fs::write(
        &file,
        format!(
            "tenants:\n\
             \x20 - {{name: team-a, namespaceSelector: team=a, roleArn: {ROLE_A}}}\n\
             \x20 - {{name: team-c, namespaceSelector: team=c, roleArn: {ROLE_B}, secretName: {theirs}}}\n"
        ),
    )
    .unwrap();
    let aws = FakeAws::start().await;
    let run = |command: Run| {
        command.args([
            "-n",
            &format!("{base}-*"),
            "--secret-name",
            &ours,
            "--tenants",
            file.to_str().unwrap(),
            "-o",
            "json",
        ])
    };
    let sync = || run(Run::sync().env("AWS_ENDPOINT_URL", &aws.url));

    let out = sync().run();
    out.assert_code(0);
    let report = out.json();
    assert_eq!(report["summary"]["created"], 2, "{report:#}");
    assert_eq!(
        outcome(&report, &c)["secret_name"],
        theirs.as_str(),
        "{report:#}"
    );
    assert!(
        outcome(&report, &a).get("secret_name").is_none(),
        "{report:#}"
    );
    assert_eq!(
        password(&client, &c, &theirs, "222222222222").await,
        Some(password_of(ROLE_B))
    );
    assert!(get_secret(&client, &c, &ours).await.is_none());
    assert!(get_secret(&client, &a, &theirs).await.is_none());
    assert_eq!(
        pull_secret_names(&get_sa(&client, &c, "default").await),
        [theirs.as_str()]
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &a, "default").await),
        [ours.as_str()]
    );

    let out = run(Run::bare().args(["status"])).run();
    out.assert_code(0);
    assert_eq!(
        outcome(&out.json(), &c)["secret_name"],
        theirs.as_str(),
        "{:#}",
        out.json()
    );
    assert_eq!(out.json()["summary"]["healthy"], 2, "{:#}", out.json());

    // Nothing due under either name: each name's ledger record holds.
    aws.reset_calls();
    let out = sync().run();
    out.assert_code(0);
    assert_eq!(out.json()["summary"]["unchanged"], 2, "{:#}", out.json());
    assert!(aws.assumed().is_empty() && aws.tokens().is_empty());

    // a moves to team-c: it gets team-c's name, and --prune takes ours out (Secret and link).
    label(&client, &a, Some("c")).await;
    let out = sync().args(["--prune"]).run();
    out.assert_code(0);
    assert_eq!(
        password(&client, &a, &theirs, "222222222222").await,
        Some(password_of(ROLE_B))
    );
    assert!(
        get_secret(&client, &a, &ours).await.is_none(),
        "{:#}",
        out.json()
    );
    assert_eq!(
        pull_secret_names(&get_sa(&client, &a, "default").await),
        [theirs.as_str()]
    );
    for ns in [&a, &c] {
        delete_namespace(&client, ns).await;
    }
}
