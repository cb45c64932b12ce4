//! Setup, credentials and authentication (issue 19, defects 3, 4, 5, 8, 9 and 12): kubeconfig
//! exec plugins and `credential_process` helpers run as real child processes, STS and ECR
//! that never answer, tokens the HTTP layer cannot carry, and credentials the server takes as
//! anonymous, against the real kube-apiserver.

pub mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::fake_ecr::FakeEcr;
use common::fault::Fault;
use common::proxy::FaultProxy;
use common::*;

/// A kubeconfig for the real apiserver whose user is `user` (YAML, indented for `user:`).
fn kubeconfig(dir: &Path, name: &str, user: &str) -> PathBuf {
    let path = dir.join(name);
    let server = env().apiserver;
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\nusers:\n- name: u\n  user:\n{user}contexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n"
        ),
    )
    .unwrap();
    path
}

/// An executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A kubeconfig user that runs `plugin` with a secret in its args and its env.
fn exec_user(plugin: &Path) -> String {
    format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [\"--client-secret=ARGSECRET\"]\n      env: [{{name: VAULT_TOKEN, value: ENVSECRET}}]\n      interactiveMode: Never\n",
        plugin.display()
    )
}

/// An ExecCredential holding the admin token.
fn admin_credential() -> String {
    format!(
        r#"{{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{{"token":"{}"}}}}"#,
        env().admin_token
    )
}

/// Whether the process whose pid `file` holds still runs (a zombie does not count).
fn still_runs(file: &Path) -> bool {
    let pid = std::fs::read_to_string(file).expect("the helper wrote its pid");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

/// A helper (exec plugin or `credential_process`) that never finishes: it starts a child of
/// its own, writes that child's pid to the file returned, and waits for it.
fn hanging_helper(dir: &Path) -> (PathBuf, PathBuf) {
    let pid = dir.join("pid");
    let body = format!("sleep 20 &\necho $! > {}\nwait", pid.display());
    (script(dir, "hangs.sh", &body), pid)
}

/// Sends SIGTERM once `ready` says the step to interrupt has begun, and expects the run to
/// end within 3 s.
async fn sigterm_once(running: Running, ready: impl Fn() -> bool) -> RunOutput {
    for _ in 0..200 {
        if ready() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ready(), "the step to interrupt never began");
    let signalled = Instant::now();
    running.signal("TERM");
    let out = running.output().await;
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "{}: took {took:?}",
        out.command
    );
    out
}

/// The run's and each request's timeouts, short, for the tests of hanging steps.
const SHORT: [&str; 4] = ["--timeout", "3s", "--request-timeout", "2s"];

/// Runs `run`, and how long it took.
async fn timed(run: Run) -> (RunOutput, Duration) {
    let started = Instant::now();
    let out = run.run_async().await;
    (out, started.elapsed())
}

/// The error of a run that `SHORT` ended: exit `code`, soon after the 3 s (plus start-up),
/// naming the deadline.
fn ended_at_the_deadline(out: &RunOutput, took: Duration, code: i32) -> String {
    out.assert_code(code);
    assert!(
        took < Duration::from_secs(6),
        "{}: took {took:?}",
        out.command
    );
    let message = error_message(out);
    assert!(message.contains("--timeout 3s"), "{message}");
    message
}

/// A TCP server that accepts connections and never answers: an STS or ECR that hangs. Also
/// gives the number of connections so far.
async fn blackhole() -> (String, impl Fn() -> usize) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    (url, move || count.load(Ordering::SeqCst))
}

fn error_message(out: &RunOutput) -> String {
    out.json()["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no error in the report:\n{}", out.command, out.stdout()))
        .to_string()
}

/// Defect 5: a failing exec plugin is named by its path and exit status only: not its env,
/// its args, nor what it printed (here a working token, and a bare one).
#[tokio::test]
async fn exec_plugin_errors_show_only_its_path_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let printed_then_failed = script(
        dir.path(),
        "fails.sh",
        &format!("echo '{}'\nexit 1", admin_credential()),
    );
    let bare = script(dir.path(), "bare.sh", "echo BARETOKENSECRET");
    for (plugin, status) in [
        (&printed_then_failed, "exited with status 1"),
        (&bare, "printed no ExecCredential"),
    ] {
        let config = kubeconfig(dir.path(), "kc", &exec_user(plugin));
        let out = Run::sync()
            .env("KUBECONFIG", &config)
            .args(["-n", "default", "-o", "json"])
            .run_async()
            .await;
        out.assert_code(4);
        let message = error_message(&out);
        assert!(message.contains(&plugin.display().to_string()), "{message}");
        assert!(message.contains(status), "{message}");
        assert!(message.contains("could not authenticate"), "{message}");
        for text in [out.stdout(), out.stderr()] {
            for secret in ["SECRET", env().admin_token.as_str(), "--client"] {
                assert!(
                    !text.contains(secret),
                    "{}: {secret} shown:\n{text}",
                    out.command
                );
            }
        }
    }
}

/// Defects 3 and 5: a working plugin runs once per run (kube ran it twice), and its token is
/// used: the sync works.
#[tokio::test]
async fn a_working_exec_plugin_runs_once() {
    let TestNs { client, name: ns } = TestNs::new("execok").await;
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let plugin = script(
        dir.path(),
        "ok.sh",
        &format!(
            "echo run >> {}\necho '{}'",
            runs.display(),
            admin_credential()
        ),
    );
    let config = kubeconfig(dir.path(), "kc", &exec_user(&plugin));
    let out = Run::sync()
        .env("KUBECONFIG", &config)
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(0);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
}

/// Defects 3 and 4: a plugin that hangs is stopped at --timeout, the error names it, the run
/// reports its real duration, and the plugin's own child does not outlive the run.
#[tokio::test]
async fn a_hanging_exec_plugin_ends_at_the_deadline_and_dies_with_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, pid) = hanging_helper(dir.path());
    let config = kubeconfig(dir.path(), "kc", &exec_user(&plugin));
    let (out, took) = timed(
        Run::sync()
            .env("KUBECONFIG", &config)
            .args(["-n", "default"])
            .args(["-o", "json"])
            .args(SHORT),
    )
    .await;
    let message = ended_at_the_deadline(&out, took, 4);
    assert!(message.contains("exec plugin"), "{message}");
    let duration = out.json()["duration_seconds"].as_f64().unwrap();
    assert!(duration >= 2.5, "duration_seconds {duration}");
    assert!(!still_runs(&pid), "the plugin's child outlived the run");
}

/// Defect 3: the first SIGTERM stops a run whose plugin hangs, with a report, and the
/// plugin's child goes with it.
#[tokio::test]
async fn sigterm_stops_a_run_waiting_for_its_exec_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin, pid) = hanging_helper(dir.path());
    let config = kubeconfig(dir.path(), "kc", &exec_user(&plugin));
    let running = Run::sync()
        .env("KUBECONFIG", &config)
        .args(["-n", "default", "-o", "json"])
        .start();
    let out = sigterm_once(running, || pid.exists()).await;
    out.assert_code(1);
    assert_eq!(out.json()["error"]["kind"], "cancelled");
    assert!(!still_runs(&pid), "the plugin's child outlived the run");

    // `status` ends at once on a signal, as before, but not without its helpers.
    std::fs::remove_file(&pid).unwrap();
    let running = Run::bare()
        .env("KUBECONFIG", &config)
        .args(["status", "-n", "default"])
        .start();
    let out = sigterm_once(running, || pid.exists()).await;
    assert_eq!(out.output.status.code(), Some(143), "{}", out.stderr());
    assert!(!still_runs(&pid), "the plugin's child outlived status");
}

/// An AWS config whose profile `helper` gets its credentials from `command`.
fn aws_profile(home: &Path, section: &str, command: &Path) {
    std::fs::create_dir_all(home.join(".aws")).unwrap();
    std::fs::write(
        home.join(".aws/config"),
        format!(
            "[{section}]\nregion = us-east-1\ncredential_process = {}\n",
            command.display()
        ),
    )
    .unwrap();
}

/// Defects 3 and 4: a `credential_process` that hangs ends at --timeout, naming the
/// credentials (not ECR), and a SIGTERM stops it at once; its child never outlives the run.
#[tokio::test]
async fn a_hanging_credential_process_ends_at_the_deadline_or_the_first_sigterm() {
    let TestNs { client, name: ns } = TestNs::new("credhang").await;
    let home = tempfile::tempdir().unwrap();
    let (helper, pid) = hanging_helper(home.path());
    aws_profile(home.path(), "profile helper", &helper);
    let run = || {
        Run::sync()
            .env("HOME", home.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["-n", &ns, "--profile", "helper", "-o", "json"])
    };
    let (out, took) = timed(run().args(SHORT)).await;
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(
        message.contains("resolving the AWS credentials"),
        "{message}"
    );
    assert!(!message.contains("GetAuthorizationToken"), "{message}");
    assert!(!still_runs(&pid), "the helper's child outlived the run");

    std::fs::remove_file(&pid).unwrap();
    let running = run().start();
    let out = sigterm_once(running, || pid.exists()).await;
    out.assert_code(1);
    assert!(!still_runs(&pid), "the helper's child outlived the run");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// Also reported: a failing `credential_process`'s stderr is not repeated, neither in the
/// error nor in the SDK's warnings (a profile chosen, and the default profile).
#[tokio::test]
async fn credential_process_stderr_is_not_shown() {
    let home = tempfile::tempdir().unwrap();
    let helper = script(home.path(), "helper.sh", "echo HELPERSECRET >&2\nexit 1");
    for (section, args) in [
        ("profile helper", &["--profile", "helper"][..]),
        ("default", &[][..]),
    ] {
        aws_profile(home.path(), section, &helper);
        let out = Run::sync()
            .env("HOME", home.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .args(["-n", "default", "--request-timeout", "2s"])
            .args(args)
            .run_async()
            .await;
        out.assert_code(3);
        out.assert_stderr_contains("credential")
            .assert_stderr_lacks("HELPERSECRET");
    }
}

/// Defects 3 and 4: web identity with STS hanging ends at --timeout naming STS, not ECR, or at
/// the first SIGTERM.
#[tokio::test]
async fn web_identity_with_sts_hanging_ends_at_the_deadline_naming_sts() {
    let TestNs { client, name: ns } = TestNs::new("stshang").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.e30.sig").unwrap();
    let (sts, reached) = blackhole().await;
    let run = || {
        Run::sync()
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
            .env("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ecr")
            .env("AWS_ENDPOINT_URL_STS", &sts)
            .args(["-n", &ns, "-o", "json"])
    };
    let (out, took) = timed(run().args(SHORT)).await;
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(message.contains("STS"), "{message}");
    assert!(!message.contains("GetAuthorizationToken"), "{message}");

    // The first SIGTERM while STS hangs gives a report at once, well inside a pod's 30 s grace.
    let before = reached();
    let out = sigterm_once(run().start(), || reached() > before).await;
    out.assert_code(1);
    assert_eq!(out.json()["error"]["kind"], "cancelled");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// Defect 4: an ECR that never answers ends the run at --timeout, naming ECR.
#[tokio::test]
async fn an_ecr_that_never_answers_ends_at_the_deadline() {
    let TestNs { client, name: ns } = TestNs::new("ecrhang").await;
    let (ecr, _) = blackhole().await;
    let (out, took) = timed(
        Run::sync()
            .env("AWS_ENDPOINT_URL", &ecr)
            // Every Secret due, so the token is fetched in setup (as when the lists show one due).
            .args(["-n", &ns, "-o", "json", "--refresh-all"])
            .args(SHORT),
    )
    .await;
    let message = ended_at_the_deadline(&out, took, 3);
    assert!(message.contains("GetAuthorizationToken"), "{message}");
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// Defects 4 and 12: a cluster-wide ServiceAccount list that hangs ends the run at --timeout
/// (not every namespace "did not finish"), and the token fetched meanwhile is counted, in the
/// report and in the pushed metric.
#[tokio::test]
async fn a_hanging_service_account_list_ends_at_the_deadline_and_counts_ecr_calls() {
    let client = admin().await;
    let (base, _) = namespaces(&client, "salist", ["a", "b"]).await;
    let list = Fault::on("GET", "/api/v1/serviceaccounts");
    let proxy = FaultProxy::start(client.clone(), list.hang()).await;
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    let (gateway, pushed) = pushgateway().await;
    let (out, took) = timed(
        Run::sync()
            .through(&proxy)
            .env("AWS_ENDPOINT_URL", &ecr.url)
            // With --refresh-all the token is fetched while the lists run.
            .args(["-n", &format!("{base}-*"), "--refresh-all"])
            .args(["--pushgateway", &gateway, "-o", "json"])
            .args(SHORT),
    )
    .await;
    let message = ended_at_the_deadline(&out, took, 4);
    let report = out.json();
    assert!(message.contains("listing service accounts"), "{message}");
    assert_eq!(ecr.calls(), 1);
    assert_eq!(report["ecr_calls"], 1, "{report:#}");
    let body = pushed.lock().unwrap().join("\n");
    assert!(body.contains("ecr_refresh_last_run_ecr_calls 1"), "{body}");
}

/// A Pushgateway stand-in that keeps every body pushed to it.
async fn pushgateway() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use http_body_util::BodyExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = bodies.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let kept = kept.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            kept.lock()
                                .unwrap()
                                .push(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, bodies)
}

/// Defect 12: `sync --prune` with a selection that matches nothing exits 2 without calling
/// ECR, and says so.
#[tokio::test]
async fn an_empty_prune_selection_calls_no_ecr() {
    let ecr = FakeEcr::start(FakeEcr::valid_for_12h("pw")).await;
    let (gateway, pushed) = pushgateway().await;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", &ecr.url)
        .args(["--prune", "-n", &format!("{}-typo-*", unique("none"))])
        .args(["--pushgateway", &gateway, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(2);
    assert_eq!(ecr.calls(), 0, "ECR was called");
    assert_eq!(out.json()["ecr_calls"], 0);
    let body = pushed.lock().unwrap().join("\n");
    assert!(body.contains("ecr_refresh_last_run_ecr_calls 0"), "{body}");
}

/// Defect 12: an empty AWS_REGION is unset (the profile's region holds), and a wrong one is
/// reported under its own name, not as a --region never passed.
#[tokio::test]
async fn an_empty_aws_region_is_unset_and_a_bad_one_is_named() {
    let ns = TestNs::new("region").await.name;
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".aws")).unwrap();
    std::fs::write(
        home.path().join(".aws/config"),
        "[default]\nregion = eu-west-1\n",
    )
    .unwrap();
    let run = |region: &str| {
        Run::sync()
            .env("HOME", home.path())
            .env("AWS_REGION", region)
            .args(["-n", &ns, "-o", "json"])
            .run()
    };
    let out = run("");
    out.assert_code(0);
    let registries = out.json()["registries"].to_string();
    assert!(
        registries.contains("123456789012.dkr.ecr.eu-west-1.amazonaws.com")
            && !registries.contains("us-east-1"),
        "{registries}"
    );
    let out = run("mars");
    out.assert_code(2);
    out.assert_stderr_contains(r#"invalid AWS_REGION "mars""#)
        .assert_stderr_lacks("--region");
}

/// Defect 8: a token ending in a newline (a `token: |` block, a token file as kubectl reads
/// it) is trimmed and works; one with a newline inside is refused as bad input. No abort.
#[tokio::test]
async fn tokens_with_newlines_never_abort() {
    let ns = TestNs::new("newline").await.name;
    let dir = tempfile::tempdir().unwrap();
    let admin_token = env().admin_token;
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{admin_token}\n")).unwrap();
    let block = kubeconfig(
        dir.path(),
        "block",
        &format!("    token: |\n      {admin_token}\n"),
    );
    let token_file = kubeconfig(
        dir.path(),
        "file",
        &format!("    tokenFile: {}\n", file.display()),
    );
    for config in [&block, &token_file] {
        let out = Run::sync()
            .env("KUBECONFIG", config)
            .args(["-n", &ns, "-o", "json"])
            .run_async()
            .await;
        out.assert_code(0);
    }
    let inside = kubeconfig(dir.path(), "inside", "    token: \"abc\\ndef\"\n");
    let out = Run::sync()
        .env("KUBECONFIG", &inside)
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(2);
    assert_eq!(out.json()["error"]["kind"], "kubeconfig");
    assert!(
        error_message(&out).contains("token"),
        "{}",
        error_message(&out)
    );
}

/// Defect 9: credentials the server ignores (basic auth, an empty user) are not taken for a
/// sign-in: exit 4, "could not authenticate", and no advice to grant `system:anonymous` rights.
#[tokio::test]
async fn anonymous_credentials_cannot_authenticate() {
    let TestNs { client, name: ns } = TestNs::new("anon").await;
    let dir = tempfile::tempdir().unwrap();
    for (name, user) in [
        ("basic", "    username: admin\n    password: hunter2\n"),
        ("empty", "    {}\n"),
    ] {
        let config = kubeconfig(dir.path(), name, user);
        let out = Run::sync()
            .env("KUBECONFIG", &config)
            .args(["-n", &ns, "-o", "json"])
            .run_async()
            .await;
        out.assert_code(4);
        let message = error_message(&out);
        assert!(message.contains("could not authenticate"), "{message}");
        assert!(message.contains("system:anonymous"), "{message}");
        for text in [out.stdout(), out.stderr()] {
            assert!(
                !text.contains("rbac.yaml") && !text.contains("grant"),
                "{text}"
            );
            assert!(!text.contains("hunter2"), "{text}");
        }
    }
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());
}

/// Also reported: a kubeconfig naming a file that is not there is a kubeconfig problem, exit
/// 2 naming the file, like every other kubeconfig problem.
#[tokio::test]
async fn missing_files_named_by_the_kubeconfig_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    for (name, user, file) in [
        (
            "tokenfile",
            "    tokenFile: /nonexistent/token\n",
            "/nonexistent/token",
        ),
        (
            "cert",
            "    client-certificate: /nonexistent/cert.pem\n    client-key: /nonexistent/key.pem\n",
            "/nonexistent/cert.pem",
        ),
    ] {
        let config = kubeconfig(dir.path(), name, user);
        let out = Run::sync()
            .env("KUBECONFIG", &config)
            .args(["-n", "default", "-o", "json"])
            .run_async()
            .await;
        out.assert_code(2);
        assert_eq!(out.json()["error"]["kind"], "kubeconfig");
        assert!(
            error_message(&out).contains(file),
            "{}",
            error_message(&out)
        );
    }
}
