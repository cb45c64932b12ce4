//! Reaching the cluster: kubeconfig exec plugins run as real child processes,
//! contexts, HTTP proxies, missing files, tokens the HTTP layer cannot carry, and credentials
//! the server takes as anonymous, against the real kube-apiserver.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// A failing exec plugin is named by its path and exit status only: not its env,
/// its args, nor what it printed (here a working token, and a bare one).
#[tokio::test]
async fn exec_plugin_errors_show_only_its_path_and_status() {
    let _suite = suite::shared().await;
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
            .run();
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

/// A working plugin runs once per run (kube ran it twice), and its token is
/// used: the sync works.
#[tokio::test]
async fn a_working_exec_plugin_runs_once() {
    let _suite = suite::shared().await;
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
        .run();
    out.assert_code(0);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
    assert_eq!(std::fs::read_to_string(&runs).unwrap().lines().count(), 1);
}

/// A plugin that hangs is stopped at --timeout, the error names it, the run
/// reports its real duration, and the plugin's own child does not outlive the run.
#[tokio::test]
async fn a_hanging_exec_plugin_ends_at_the_deadline_and_dies_with_the_run() {
    let _suite = suite::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let (plugin, pid) = hanging_helper(dir.path());
    let config = kubeconfig(dir.path(), "kc", &exec_user(&plugin));
    let (out, took) = timed(
        Run::sync()
            .env("KUBECONFIG", &config)
            .args(["-n", "default"])
            .args(["-o", "json"])
            .args(SHORT),
    );
    let message = ended_at_the_deadline(&out, took, 4);
    assert!(message.contains("exec plugin"), "{message}");
    let duration = out.json()["duration_seconds"].as_f64().unwrap();
    assert!(duration >= 2.5, "duration_seconds {duration}");
    assert!(!still_runs(&pid), "the plugin's child outlived the run");
}

/// The first SIGTERM stops a run whose plugin hangs, with a report, and the
/// plugin's child goes with it.
#[tokio::test]
async fn sigterm_stops_a_run_waiting_for_its_exec_plugin() {
    let _suite = suite::shared().await;
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

/// A token ending in a newline (a `token: |` block, a token file as kubectl reads
/// it) is trimmed and works; one with a newline inside is refused as bad input. No abort.
#[tokio::test]
async fn tokens_with_newlines_never_abort() {
    let _suite = suite::shared().await;
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
            .run();
        out.assert_code(0);
    }
    let inside = kubeconfig(dir.path(), "inside", "    token: \"abc\\ndef\"\n");
    let out = Run::sync()
        .env("KUBECONFIG", &inside)
        .args(["-n", &ns, "-o", "json"])
        .run();
    out.assert_code(2);
    assert_eq!(out.json()["error"]["kind"], "kubeconfig");
    assert!(
        error_message(&out).contains("token"),
        "{}",
        error_message(&out)
    );
}

/// Credentials the server ignores (basic auth, an empty user) are not taken for a
/// sign-in: exit 4, "could not authenticate", and no advice to grant `system:anonymous` rights.
#[tokio::test]
async fn anonymous_credentials_cannot_authenticate() {
    let _suite = suite::shared().await;
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
            .run();
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
    let _suite = suite::shared().await;
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
            .run();
        out.assert_code(2);
        assert_eq!(out.json()["error"]["kind"], "kubeconfig");
        assert!(
            error_message(&out).contains(file),
            "{}",
            error_message(&out)
        );
    }
}

/// --context picks a context that is not the current one, as kubectl does.
#[tokio::test]
async fn context_flag_selects_a_non_current_context() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("context").await;
    let env = env();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: dead\n  cluster:\n    server: https://127.0.0.1:1\n- name: live\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {}\ncontexts:\n- name: dead\n  context: {{cluster: dead, user: admin}}\n- name: live\n  context: {{cluster: live, user: admin}}\ncurrent-context: dead\n",
            env.apiserver, env.admin_token
        ),
    )
    .unwrap();
    let out = Run::sync()
        .env("KUBECONFIG", &path)
        .args(["-n", &ns, "--request-timeout", "2s"])
        .run();
    out.assert_code(4);
    out.assert_stderr_contains("context \"dead\"");
    Run::sync()
        .args([
            "--kubeconfig",
            path.to_str().unwrap(),
            "--context",
            "live",
            "-n",
            &ns,
        ])
        .run()
        .assert_code(0);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}

/// A real forward proxy on loopback sees both the ECR call and the Kubernetes calls; NO_PROXY
/// sends them around it.
#[tokio::test]
async fn proxy_variables_are_honoured() {
    let _suite = suite::shared().await;
    let ns = TestNs::new("proxy").await.name;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("tinyproxy.log");
    let conf = dir.path().join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n",
            log.display()
        ),
    )
    .unwrap();
    let mut proxy = std::process::Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tinyproxy (installed by scripts/testenv.sh install)");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let proxy_url = format!("http://127.0.0.1:{port}");
    let env = env();
    let ecr_hostport = env.ecr_endpoint.trim_start_matches("http://").to_string();
    let api_hostport = env.apiserver.trim_start_matches("https://").to_string();
    let requests = || -> Vec<String> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("Request (file descriptor"))
            .map(str::to_string)
            .collect()
    };

    let out = Run::sync()
        .env("HTTPS_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .args(["-n", &ns])
        .run();
    let seen = requests();
    out.assert_code(0);
    assert!(
        seen.iter()
            .any(|l| l.contains("POST") && l.contains(&ecr_hostport)),
        "ECR call not proxied: {seen:#?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("CONNECT") && l.contains(&api_hostport)),
        "Kubernetes calls not proxied: {seen:#?}"
    );

    let before = seen.len();
    let out = Run::sync()
        .env("HTTPS_PROXY", &proxy_url)
        .env("HTTP_PROXY", &proxy_url)
        .env("NO_PROXY", "127.0.0.1")
        .args(["-n", &ns])
        .run();
    let _ = proxy.kill();
    let _ = proxy.wait();
    out.assert_code(0);
    assert_eq!(
        requests().len(),
        before,
        "NO_PROXY must bypass the proxy: {:#?}",
        &requests()[before..]
    );
}

/// A kubeconfig that is a FIFO nobody writes (a `<(…)` that hangs) ends
/// the run at --timeout with an error naming the file (it was blamed on "checking the
/// credentials", or ran on past the deadline), and a SIGTERM stops it at once.
#[tokio::test]
async fn a_kubeconfig_fifo_that_never_answers_ends_at_the_deadline_or_sigterm() {
    let _suite = suite::shared().await;
    let dir = tempfile::tempdir().unwrap();
    let config = fifo(dir.path(), "kc");
    let run = || {
        Run::sync()
            .args(["--kubeconfig".as_ref(), config.as_os_str()])
            .args(["-n", "default", "-o", "json"])
    };
    let (out, took) = timed(run().args(SHORT));
    let message = ended_at_the_deadline(&out, took, 4);
    assert_eq!(out.json()["error"]["kind"], "cluster_access");
    assert!(
        message.contains(&format!("kubeconfig {:?}", config.display().to_string())),
        "{message}"
    );
    assert!(!message.contains("checking the credentials"), "{message}");

    let out = sigterm_after(run().start(), Duration::from_millis(500)).await;
    out.assert_code(1);
    assert_eq!(out.json()["error"]["kind"], "cancelled");
}

/// A kubeconfig FIFO that answers in time (`KUBECONFIG=<(…)`, here after 1 s) still
/// works: it is read once.
#[tokio::test]
async fn a_kubeconfig_fifo_that_answers_in_time_works() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("kcfifo").await;
    let dir = tempfile::tempdir().unwrap();
    let token = format!("    token: {}\n", env().admin_token);
    let plain = kubeconfig(dir.path(), "plain", &token);
    let config = fifo(dir.path(), "kc");
    feed_fifo(
        &config,
        std::fs::read(plain).unwrap(),
        Duration::from_secs(1),
    );
    let out = Run::sync()
        .env("KUBECONFIG", &config)
        .args(["-n", &ns, "-o", "json"])
        .args(SHORT)
        .run();
    out.assert_code(0);
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}

/// A user's tokenFile that is a FIFO nobody writes ends the run at --timeout naming
/// it; one that answers once, in time, works (kube would read it a second time, and block).
#[tokio::test]
async fn a_token_file_fifo_ends_at_the_deadline_or_is_read_once() {
    let _suite = suite::shared().await;
    let TestNs { client, name: ns } = TestNs::new("tokfifo").await;
    let dir = tempfile::tempdir().unwrap();
    let token = fifo(dir.path(), "token");
    let user = format!("    tokenFile: {}\n", token.display());
    let config = kubeconfig(dir.path(), "kc", &user);
    let run = || {
        Run::sync()
            .env("KUBECONFIG", &config)
            .args(["-n", &ns, "-o", "json"])
            .args(SHORT)
    };
    let (out, took) = timed(run());
    let message = ended_at_the_deadline(&out, took, 4);
    assert!(
        message.contains(&format!("tokenFile {:?}", token.display().to_string())),
        "{message}"
    );
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_none());

    // No newline: the token as read is what kube would read again.
    feed_fifo(
        &token,
        env().admin_token.clone(),
        Duration::from_millis(500),
    );
    let out = run().run();
    out.assert_code(0);
    out.assert_no_secrets();
    assert!(get_secret(&client, &ns, "awsecr-cred").await.is_some());
}
