//! The real binary, run as a user would: a clean environment, the test kubeconfig and moto's
//! endpoint, and its output with assertions that print the command line on failure.

use std::process::{Command, Output};

use super::env::{env, AUTH, PASSWORD, REGION};
use super::proxy;

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

    /// Runs the binary to its end. It blocks the test's thread: the stand-in servers a run talks
    /// to have a runtime of their own (`standin.rs`), so this is the one way, in any test.
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
