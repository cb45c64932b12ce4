//! The install in deploy/ and the README's quick start, against the real apiserver: the
//! CronJob's own command run as rbac.yaml's ServiceAccount, and the quick start step by step.
//! (What needs containers, a static binary or linters stays in scripts/check-packaging.sh.)

use crate::common;

use common::install::*;
use common::*;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};

/// The ecr-refresh container of deploy/cronjob.yaml: its args, and its env entries that have
/// a plain value.
fn cronjob_command() -> (Vec<String>, Vec<(String, String)>) {
    let docs = repo_yaml("deploy/cronjob.yaml");
    let cronjobs: Vec<_> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    assert_eq!(cronjobs.len(), 1, "deploy/cronjob.yaml: one CronJob");
    let pod = &cronjobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let containers: Vec<_> = pod["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter(|c| c["name"] == "ecr-refresh")
        .collect();
    assert_eq!(containers.len(), 1, "one container named ecr-refresh");
    let c = containers[0];
    assert!(
        c.get("command").is_none(),
        "the container sets `command`; this test runs the image's ENTRYPOINT"
    );
    let args = c["args"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a.as_str().expect("args are strings").to_string())
        .collect();
    // envFrom first (the settings ConfigMap in the same file; the Secret is the test's), then
    // env, which wins as in a pod.
    let settings = c["envFrom"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["configMapRef"]["name"].as_str())
        .flat_map(|name| {
            let cm = docs
                .iter()
                .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("envFrom names ConfigMap {name}, not in cronjob.yaml"));
            let data = cm["data"].as_object().cloned().unwrap_or_default();
            data.into_iter()
                .map(|(k, v)| (k, v.as_str().expect("ConfigMap values are strings").into()))
        });
    let env =
        settings
            .chain(
                c["env"].as_array().into_iter().flatten().filter_map(|e| {
                    Some((e["name"].as_str()?.into(), e["value"].as_str()?.into()))
                }),
            )
            .collect();
    (args, env)
}

/// The tool as a pod runs it: of the test environment only PATH, HOME, moto as the ECR
/// endpoint and AWS_EC2_METADATA_DISABLED (no test may ask 169.254.169.254); `env` and the
/// kubeconfig give the rest.
fn as_a_pod(kubeconfig: &std::path::Path, env: &[(String, String)]) -> Run {
    let mut run = Run::bare()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env_remove("ECR_REFRESH_SERVICE_ACCOUNT_WAIT")
        .env("KUBECONFIG", kubeconfig);
    for (k, v) in env {
        run = run.env(k, v);
    }
    run
}

#[track_caller]
fn assert_synced(secret: Option<Secret>, pull_secrets: Vec<String>, ns: &str) {
    let secret = secret.unwrap_or_else(|| panic!("namespace {ns}: Secret awsecr-cred not written"));
    assert_eq!(
        secret.type_.as_deref(),
        Some("kubernetes.io/dockerconfigjson"),
        "{ns}"
    );
    assert!(
        pull_secrets.iter().any(|n| n == "awsecr-cred"),
        "namespace {ns}: ServiceAccount default does not list awsecr-cred: {pull_secrets:?}"
    );
}

#[tokio::test]
async fn the_cronjobs_own_args_and_env_work_with_rbac_yamls_service_account() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let (args, manifest_env) = cronjob_command();
    // rbac.yaml as a cluster admin installs it (under a name of this test's own).
    let id = unique("cronjob-sa");
    apply_renamed(&repo_file("deploy/rbac.yaml"), &id, &[]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &id);
    let (_, [ns1, ns2]) = namespaces(&client, "cron", ["1", "2"]).await;

    // The manifest's args select every namespace; on this shared test server that would touch
    // other tests' namespaces (some without a default ServiceAccount), so two literal names are
    // appended. Everything else is exactly what the CronJob runs.
    let mut env = manifest_env;
    env.extend([
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
    ]);
    let out = as_a_pod(&kubeconfig, &env)
        .args(&args)
        .args(["--namespace", &format!("{ns1},{ns2}")])
        .run();
    out.assert_code(0);
    for ns in [&ns1, &ns2] {
        assert_synced(
            get_secret(&client, ns, "awsecr-cred").await,
            pull_secret_names(&get_sa(&client, ns, "default").await),
            ns,
        );
    }
    let report = the_log_is_json_lines_ending_with_the_report(&out);
    assert_eq!(report["exit_code"], 0, "{report}");
    assert_eq!(report["summary"]["selected"], 2, "{report}");
    assert_eq!(report["error"], serde_json::Value::Null, "{report}");
}

/// The report line's fields a log pipeline queries (the README's schema).
const REPORT_FIELDS: [&str; 14] = [
    "type",
    "schema_version",
    "command",
    "dry_run",
    "secret_name",
    "registries",
    "token_expires_at",
    "summary",
    "namespaces",
    "ecr_calls",
    "api_requests",
    "duration_seconds",
    "error",
    "exit_code",
];

/// What a pod running the CronJob's args writes, as its log holds it (stdout and stderr): every
/// line is one JSON object, and the last stdout line is the one-line report. Returns the report.
#[track_caller]
fn the_log_is_json_lines_ending_with_the_report(out: &RunOutput) -> serde_json::Value {
    let (stdout, stderr) = (out.stdout(), out.stderr());
    let mut reports = Vec::new();
    for (stream, text) in [("stdout", &stdout), ("stderr", &stderr)] {
        for (n, line) in text.lines().enumerate() {
            let parsed: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{stream} line {} is not JSON ({e}): {line}", n + 1));
            assert!(parsed.is_object(), "{stream} line {}: {line}", n + 1);
            if parsed["type"] == "report" {
                reports.push((stream, parsed));
            }
        }
    }
    assert_eq!(reports.len(), 1, "one report line; stdout: {stdout}");
    let (stream, report) = reports.pop().unwrap();
    assert_eq!(stream, "stdout");
    let last = stdout
        .lines()
        .last()
        .map(serde_json::from_str::<serde_json::Value>);
    assert_eq!(
        last.and_then(Result::ok).as_ref(),
        Some(&report),
        "the report is last"
    );
    for field in REPORT_FIELDS {
        assert!(
            report.get(field).is_some(),
            "report line lacks {field}: {report}"
        );
    }
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["command"], "sync");
    report
}

/// A failed run ends its log with the one-line report too, with the exit code and the error:
/// exit 1 (a namespace failed), 3 (no ECR token) and 4 (the cluster cannot be reached).
#[tokio::test]
async fn the_cronjobs_failed_runs_also_end_with_the_one_line_report() {
    let _suite = suite::shared().await;
    let client = admin().await;
    let (args, mut env) = cronjob_command();
    env.extend([
        ("AWS_ACCESS_KEY_ID".to_string(), "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
    ]);
    let id = unique("cronjob-fail");
    apply_renamed(&repo_file("deploy/rbac.yaml"), &id, &[]);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &id);
    // ns holds someone else's Secret (exit 1); in fresh, a write is due, so ECR is asked (exit 3).
    let (_, [ns, fresh]) = namespaces(&client, "cronfail", ["1", "2"]).await;
    create_foreign_secret(&client, &ns).await;
    // A port that was free a moment ago: nothing listens there (the listener is dropped).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let unreachable = dir.path().join("unreachable.kubeconfig");
    write_kubeconfig(&unreachable, &format!("https://{closed}"), "x");

    let foreign_secret = as_a_pod(&kubeconfig, &env).args(&args).args(["-n", &ns]);
    let no_ecr = as_a_pod(&kubeconfig, &env)
        .args(&args)
        .args(["-n", &fresh])
        .env("AWS_ENDPOINT_URL", format!("http://{closed}"));
    let no_cluster = as_a_pod(&unreachable, &env).args(&args).args(["-n", &ns]);
    for (run, code, kind) in [
        (foreign_secret, 1, serde_json::Value::Null),
        (no_ecr, 3, "ecr_token".into()),
        (no_cluster, 4, "cluster_access".into()),
    ] {
        let out = run.run();
        out.assert_code(code);
        let report = the_log_is_json_lines_ending_with_the_report(&out);
        assert_eq!(report["exit_code"], code, "{report}");
        assert_eq!(report["error"]["kind"], kind, "{report}");
    }
}

/// The README's quick start, step by step, as far as the test server allows: a 1.20 server has
/// no batch/v1 CronJobs (the CronJob is stored as batch/v1beta1 there), and no controllers run,
/// so no pod starts: the Job's pod spec, as the server stores it, is run here instead, as its
/// ServiceAccount, with its env and its envFrom Secret.
/// Step 3 of the README: kubectl apply -k deploy/ (before 1.30: with the component that
/// leaves the admission policy out, as the README says).
async fn apply_deploy(client: &kube::Client) {
    let deploy = format!("{}/deploy", env!("CARGO_MANIFEST_DIR"));
    let batch_v1 = client
        .list_api_group_resources("batch/v1")
        .await
        .expect("discovery of batch/v1");
    if serves_admission_policies(client).await {
        kubectl(&["apply", "-k", &deploy], None);
    } else {
        // What that kustomization renders, with the CronJob as a 1.20 server serves it.
        let docs = render_deploy(&["without-admission-policy"]);
        let cronjobs_v1 = batch_v1.resources.iter().any(|r| r.name == "cronjobs");
        let mut manifest = String::new();
        for mut doc in docs {
            if doc["kind"] == "CronJob" && !cronjobs_v1 {
                doc["apiVersion"] = "batch/v1beta1".into();
            }
            manifest += &format!("---\n{}", serde_yaml::to_string(&doc).unwrap());
        }
        kubectl(&["apply", "-f", "-"], Some(&manifest));
    }
}

/// Step 4 of the README: kubectl create job --from=cronjob/ecr-refresh. kubectl asks for
/// batch/v1 CronJobs, which a 1.20 server lacks, so there the Job is made from the stored
/// jobTemplate the same way.
fn create_job_from_cronjob(job: &str) {
    let from = [
        "-n",
        "kube-system",
        "create",
        "job",
        "--from=cronjob/ecr-refresh",
        job,
    ];
    if try_kubectl(&from, None).is_err() {
        let cronjob: serde_json::Value = serde_json::from_str(&kubectl(
            &[
                "-n",
                "kube-system",
                "get",
                "cronjob.v1beta1.batch",
                "ecr-refresh",
                "-o",
                "json",
            ],
            None,
        ))
        .unwrap();
        let manual = serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job, "namespace": "kube-system",
                         "annotations": {"cronjob.kubernetes.io/instantiate": "manual"}},
            "spec": cronjob["spec"]["jobTemplate"]["spec"],
        });
        kubectl(&["create", "-f", "-"], Some(&manual.to_string()));
    }
}

#[tokio::test]
async fn the_readme_quick_start() {
    let _suite = suite::exclusive().await;
    let TestNs { client, name: ns } = TestNs::new("quickstart").await;

    // Step 2: the credentials Secret, with the README's command.
    kubectl(
        &[
            "-n",
            "kube-system",
            "delete",
            "secret",
            "ecr-refresh-aws",
            "--ignore-not-found",
        ],
        None,
    );
    kubectl(
        &[
            "-n",
            "kube-system",
            "create",
            "secret",
            "generic",
            "ecr-refresh-aws",
            "--from-literal=AWS_ACCESS_KEY_ID=test",
            "--from-literal=AWS_SECRET_ACCESS_KEY=test",
        ],
        None,
    );

    apply_deploy(&client).await;
    let job = unique("ecr-refresh-first-run");
    create_job_from_cronjob(&job);

    // What the kubelet would run: the Job's container, as the server stores it.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "kube-system");
    let pod = jobs
        .get(&job)
        .await
        .expect("the Job")
        .spec
        .expect("Job spec")
        .template
        .spec
        .expect("pod spec");
    let sa = pod
        .service_account_name
        .clone()
        .unwrap_or_else(|| "default".into());
    let container = pod
        .containers
        .iter()
        .find(|c| c.name == "ecr-refresh")
        .expect("container ecr-refresh");
    let mut env: Vec<(String, String)> = Vec::new();
    for from in container.env_from.iter().flatten() {
        let Some(secret) = &from.secret_ref else {
            continue;
        };
        let data = Api::<Secret>::namespaced(client.clone(), "kube-system")
            .get(&secret.name)
            .await
            .expect("the Job's envFrom Secret")
            .data
            .unwrap_or_default();
        env.extend(
            data.into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).unwrap())),
        );
    }
    assert!(
        !env.is_empty(),
        "the Job's envFrom Secret gave no AWS credentials"
    );
    env.extend(
        container
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?))),
    );
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = token_kubeconfig(dir.path(), &sa);
    // The shared test server holds other tests' namespaces; scope the run to ours through the
    // env fallback, leaving the Job's args exactly as they are. ECR is moto.
    env.push(("ECR_REFRESH_NAMESPACE".into(), ns.clone()));
    as_a_pod(&kubeconfig, &env)
        .args(container.args.iter().flatten())
        .run()
        .assert_code(0);

    // Step 5: the checks the README shows.
    assert_synced(
        get_secret(&client, &ns, "awsecr-cred").await,
        pull_secret_names(&get_sa(&client, &ns, "default").await),
        &ns,
    );
    // Background, as kubectl deletes: no finalizer left for a garbage collector that is not running.
    jobs.delete(&job, &DeleteParams::background())
        .await
        .unwrap();
}
