//! Shared helpers for the integration tests: they need the real kube-apiserver and moto's
//! server that `scripts/test.sh` starts, and fail loudly without them.
#![allow(dead_code)]

pub mod fake_ecr;
pub mod install;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use k8s_openapi::api::core::v1::{LocalObjectReference, Namespace, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
pub const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
/// The same registry's dual-stack (IPv6) name, which every Secret holds next to `HOST`.
pub const DUAL_STACK_HOST: &str = "123456789012.dkr-ecr.us-east-1.on.aws";
/// What moto answers: base64 of `AWS:<account>-auth-token`.
pub const PASSWORD: &str = "123456789012-auth-token";
pub const AUTH: &str = "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu";

pub struct TestEnv {
    pub kubeconfig: PathBuf,
    pub apiserver: String,
    pub admin_token: String,
    pub ecr_endpoint: String,
    pub run_dir: PathBuf,
}

fn need(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: the integration tests need the real kube-apiserver and ECR emulator. \
             Run them with scripts/test.sh, which installs and starts both."
        )
    })
}

pub fn env() -> TestEnv {
    TestEnv {
        kubeconfig: need("ECR_REFRESH_TEST_KUBECONFIG").into(),
        apiserver: need("ECR_REFRESH_TEST_APISERVER"),
        admin_token: need("ECR_REFRESH_TEST_ADMIN_TOKEN"),
        ecr_endpoint: need("ECR_REFRESH_TEST_ECR_ENDPOINT"),
        run_dir: need("ECR_REFRESH_TEST_RUN_DIR").into(),
    }
}

pub async fn admin() -> Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let kc = Kubeconfig::read_from(env().kubeconfig).expect("read test kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("test kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// A unique namespace name per test and call, so tests can run in parallel.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
        % 1_000_000_000;
    format!("{prefix}-{}-{t}-{n}", std::process::id() % 10_000)
}

pub async fn create_namespace(client: &Client, name: &str, with_default_sa: bool) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    if with_default_sa {
        create_sa(client, name, "default", &[]).await;
    }
}

/// A new namespace (with a `default` ServiceAccount) that one `sync -n` has written.
pub async fn synced_namespace(client: &Client, prefix: &str) -> String {
    let ns = unique(prefix);
    create_namespace(client, &ns, true).await;
    Run::sync()
        .args(["-n", &ns])
        .run_async()
        .await
        .assert_code(0);
    ns
}

/// Namespaces `<unique base>-<suffix>`, each with a `default` ServiceAccount: the base (for a
/// `<base>-*` glob) and the names.
pub async fn namespaces<const N: usize>(
    client: &Client,
    prefix: &str,
    suffixes: [&str; N],
) -> (String, [String; N]) {
    let base = unique(prefix);
    let names = suffixes.map(|s| format!("{base}-{s}"));
    for n in &names {
        create_namespace(client, n, true).await;
    }
    (base, names)
}

/// Merges `labels` and `annotations` into a namespace's metadata.
pub async fn annotate_namespace(
    client: &Client,
    ns: &str,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) {
    let to_map = |kv: &[(&str, &str)]| {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    let patch = serde_json::json!({"metadata": {"labels": to_map(labels), "annotations": to_map(annotations)}});
    Api::<Namespace>::all(client.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch namespace");
}

/// No controller-manager runs on the test server, so ServiceAccounts are made by hand.
pub async fn create_sa(
    client: &Client,
    ns: &str,
    name: &str,
    pull_secrets: &[&str],
) -> ServiceAccount {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        image_pull_secrets: (!pull_secrets.is_empty()).then(|| {
            pull_secrets
                .iter()
                .map(|n| LocalObjectReference {
                    name: n.to_string(),
                })
                .collect()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .expect("create service account")
}

/// What a foreign Secret of our name holds: someone else's docker config.
pub const FOREIGN_PAYLOAD: &[u8] = br#"{"auths":{"registry.example":{"auth":"dXNlcjpwYXNz"}}}"#;

/// Someone else's `awsecr-cred` (no label of ours), made the way `kubectl create secret` would.
pub async fn create_foreign_secret(client: &Client, ns: &str) -> Secret {
    create_secret(
        client,
        ns,
        "awsecr-cred",
        "kubernetes.io/dockerconfigjson",
        &[(".dockerconfigjson", FOREIGN_PAYLOAD)],
    )
    .await
}

/// Bad input writes nothing: no Secret in `ns`, and its `default` ServiceAccount unchanged.
pub async fn assert_nothing_written(
    client: &Client,
    ns: &str,
    sa_resource_version: &Option<String>,
) {
    assert!(get_secret(client, ns, "awsecr-cred").await.is_none());
    assert_eq!(
        &get_sa(client, ns, "default")
            .await
            .metadata
            .resource_version,
        sa_resource_version
    );
}

/// `sync -n <a new namespace> -o json` against the ECR at `ecr_url` exits 3
/// (`ecr_token_invalid`) with an error naming `expect`, and writes nothing.
pub async fn assert_token_refused(client: &Client, ecr_url: &str, expect: &str) {
    let ns = unique("badtoken");
    create_namespace(client, &ns, true).await;
    let sa_rv = get_sa(client, &ns, "default")
        .await
        .metadata
        .resource_version;
    let out = Run::sync()
        .env("AWS_ENDPOINT_URL", ecr_url)
        .args(["-n", &ns, "-o", "json"])
        .run_async()
        .await;
    out.assert_code(3);
    let report = out.json();
    assert_eq!(report["error"]["kind"], "ecr_token_invalid", "{report:#}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(expect),
        "should name {expect:?}: {message}"
    );
    out.assert_stderr_contains(expect);
    assert_nothing_written(client, &ns, &sa_rv).await;
}

pub async fn create_secret(
    client: &Client,
    ns: &str,
    name: &str,
    type_: &str,
    data: &[(&str, &[u8])],
) -> Secret {
    let s = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some(type_.into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret")
}

pub async fn get_secret(client: &Client, ns: &str, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("get secret")
}

pub async fn get_sa(client: &Client, ns: &str, name: &str) -> ServiceAccount {
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .expect("get service account")
}

pub fn pull_secret_names(sa: &ServiceAccount) -> Vec<String> {
    sa.image_pull_secrets
        .iter()
        .flatten()
        .map(|r| r.name.clone())
        .collect()
}

/// Deletes a namespace. With no controller-manager it stays Terminating forever, which the
/// terminating-namespace test relies on.
pub async fn delete_namespace(client: &Client, name: &str) {
    Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
        .expect("delete namespace");
}

/// The decoded `.dockerconfigjson` of a Secret.
pub fn dockerconfig(secret: &Secret) -> serde_json::Value {
    let data = secret.data.as_ref().expect("secret data");
    serde_json::from_slice(&data[".dockerconfigjson"].0).expect("dockerconfigjson is JSON")
}

/// Runs the real binary with a clean environment: the test kubeconfig and moto's endpoint.
pub struct Run {
    cmd: Command,
    /// HOME, and where `through` writes its kubeconfig; removed when the run is over.
    dir: tempfile::TempDir,
    /// What the test set, for failure messages: the variables it changed, and the arguments.
    shown_env: Vec<String>,
    shown_args: Vec<String>,
}

impl Run {
    /// `ecr-refresh sync` with the test environment.
    pub fn sync() -> Self {
        Self::bare().args(["sync"])
    }

    /// The binary with the test environment and no subcommand.
    pub fn bare() -> Self {
        let env = env();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecr-refresh"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // An empty HOME: no ~/.aws or ~/.kube of the person running the tests.
            .env("HOME", dir.path())
            .env("KUBECONFIG", &env.kubeconfig)
            .env("AWS_ENDPOINT_URL", &env.ecr_endpoint)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "test-secret-key")
            .env("AWS_REGION", REGION)
            // Never ask 169.254.169.254 for credentials from a test.
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Short, via the env fallback, so a test can still pass the flag.
            .env("ECR_REFRESH_SERVICE_ACCOUNT_WAIT", "2s");
        Self {
            cmd,
            dir,
            shown_env: Vec::new(),
            shown_args: vec!["ecr-refresh".into()],
        }
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for arg in args {
            self.shown_args
                .push(arg.as_ref().to_string_lossy().into_owned());
            self.cmd.arg(arg);
        }
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.shown_env
            .push(format!("{k}={}", v.as_ref().to_string_lossy()));
        self.cmd.env(k, v);
        self
    }

    pub fn env_remove(mut self, k: &str) -> Self {
        self.shown_env.push(format!("-u {k}"));
        self.cmd.env_remove(k);
        self
    }

    /// The command line as the test wrote it, e.g. `RUST_LOG=trace ecr-refresh sync -n x`.
    fn command_line(&self) -> String {
        self.shown_env
            .iter()
            .chain(&self.shown_args)
            .cloned()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Talks to the cluster through `proxy`: a kubeconfig pointing at it, in this run's folder.
    pub fn through(self, proxy: &proxy::FaultProxy) -> Self {
        let kubeconfig = proxy.kubeconfig(self.dir.path());
        self.env("KUBECONFIG", kubeconfig)
    }

    /// Runs under a real pseudo-terminal (util-linux `script`): stdin, stdout and stderr are
    /// the terminal, and stdout of the result is everything the terminal showed.
    pub fn under_pty(self) -> Self {
        let quote =
            |s: &std::ffi::OsStr| format!("'{}'", s.to_string_lossy().replace('\'', r"'\''"));
        let line = std::iter::once(quote(self.cmd.get_program()))
            .chain(self.cmd.get_args().map(quote))
            .collect::<Vec<_>>()
            .join(" ");
        // -e: exit with the command's code; /dev/null: no typescript file.
        let args = ["-q", "-e", "-c", &line, "/dev/null"].map(std::ffi::OsString::from);
        self.wrapped("script", args, "(under a pseudo-terminal)")
    }

    /// Sends stdout to `file` (for example /dev/full) instead of capturing it.
    pub fn stdout_to(mut self, file: std::fs::File) -> Self {
        self.shown_args.push("(stdout to a file)".into());
        self.cmd.stdout(file);
        self
    }

    /// Starts the binary with stdout closed, as `ecr-refresh ... >&-` in a shell does.
    pub fn stdout_closed(self) -> Self {
        let args: Vec<std::ffi::OsString> = ["-c", r#"exec "$@" >&-"#, "sh"]
            .map(Into::into)
            .into_iter()
            .chain(std::iter::once(self.cmd.get_program().to_owned()))
            .chain(self.cmd.get_args().map(ToOwned::to_owned))
            .collect();
        self.wrapped("sh", args, ">&-")
    }

    /// The same run, started through `program` with `args`, in the same environment.
    fn wrapped(
        self,
        program: &str,
        args: impl IntoIterator<Item = std::ffi::OsString>,
        note: &str,
    ) -> Self {
        let mut cmd = Command::new(program);
        cmd.env_clear();
        for (k, v) in self.cmd.get_envs() {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.args(args);
        let mut shown_args = self.shown_args;
        shown_args.push(note.into());
        Self {
            cmd,
            dir: self.dir,
            shown_env: self.shown_env,
            shown_args,
        }
    }

    /// Runs off the async runtime, so servers the test runs in-process (proxy, fake ECR) keep
    /// answering while the binary waits on them.
    pub async fn run_async(self) -> RunOutput {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .expect("join")
    }

    /// Starts the binary with stdout and stderr piped (and read at once, off the runtime), for
    /// a test that signals it mid-run.
    pub fn start(mut self) -> Running {
        let child = self
            .cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start ecr-refresh");
        Running {
            pid: child.id(),
            output: tokio::task::spawn_blocking(move || child.wait_with_output()),
            command: self.command_line(),
            _dir: self.dir,
        }
    }

    pub fn run(mut self) -> RunOutput {
        let output = self.cmd.output().expect("run ecr-refresh");
        RunOutput {
            output,
            command: self.command_line(),
        }
    }
}

/// A run started with [`Run::start`].
pub struct Running {
    pub pid: u32,
    output: tokio::task::JoinHandle<std::io::Result<Output>>,
    command: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Sends `signal` (a name `kill` knows: TERM, INT, ...).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}: {status}", self.pid);
    }

    pub async fn output(self) -> RunOutput {
        RunOutput {
            output: self
                .output
                .await
                .expect("join")
                .expect("wait for ecr-refresh"),
            command: self.command,
        }
    }
}

pub struct RunOutput {
    pub output: Output,
    /// The command line as the test wrote it, with the variables it set.
    pub command: String,
}

impl RunOutput {
    pub fn code(&self) -> i32 {
        self.output.status.code().expect("exit code")
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.output.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.command,
                self.stdout(),
                self.stderr()
            )
        })
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            code,
            "{}: unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.stdout(),
            self.stderr()
        );
        self
    }
    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Self {
        self.assert_in("stderr", &self.stderr(), needle, true)
    }
    /// At least one of `needles` (for a message that has more than one right wording).
    #[track_caller]
    pub fn assert_stderr_contains_any(&self, needles: &[&str]) -> &Self {
        let stderr = self.stderr();
        assert!(
            needles.iter().any(|n| stderr.contains(n)),
            "{}: stderr contains none of {needles:?}\nstderr:\n{stderr}",
            self.command
        );
        self
    }
    #[track_caller]
    pub fn assert_stderr_lacks(&self, needle: &str) -> &Self {
        self.assert_in("stderr", &self.stderr(), needle, false)
    }
    #[track_caller]
    pub fn assert_stdout_contains(&self, needle: &str) -> &Self {
        self.assert_in("stdout", &self.stdout(), needle, true)
    }
    #[track_caller]
    fn assert_in(&self, name: &str, text: &str, needle: &str, wanted: bool) -> &Self {
        assert!(
            text.contains(needle) == wanted,
            "{}: {name} {} {needle:?}\n{name}:\n{text}",
            self.command,
            if wanted {
                "does not contain"
            } else {
                "contains"
            },
        );
        self
    }
    /// Neither the password, the `auth` value nor the raw token appear anywhere.
    #[track_caller]
    pub fn assert_no_secrets(&self) {
        for (name, text) in [("stdout", self.stdout()), ("stderr", self.stderr())] {
            for secret in [PASSWORD, AUTH] {
                assert!(
                    !text.contains(secret),
                    "{}: {name} leaks a secret:\n{text}",
                    self.command
                );
            }
        }
    }
}

/// The outcome of one namespace in a JSON report.
/// Why namespace `ns` failed, from a JSON report.
pub fn error_of<'a>(report: &'a serde_json::Value, ns: &str) -> &'a str {
    outcome(report, ns)["error"]
        .as_str()
        .unwrap_or_else(|| panic!("namespace {ns} has no error: {report:#}"))
}

pub fn outcome<'a>(report: &'a serde_json::Value, ns: &str) -> &'a serde_json::Value {
    report["namespaces"]
        .as_array()
        .expect("namespaces array")
        .iter()
        .find(|n| n["name"] == ns)
        .unwrap_or_else(|| panic!("namespace {ns} not in report: {report:#}"))
}

/// Waits until the tool can tell "unchanged" from a write just before: it reports "unchanged"
/// only when its last write to a Secret is more than about 1 s older than the server's answer
/// (both in whole seconds), so a pass right after a write reports an update.
pub async fn after_write_window() {
    let into = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_millis();
    tokio::time::sleep(std::time::Duration::from_millis(u64::from(2050 - into))).await;
}
