//! Web identity fixtures: loopback addresses of a test's own, a throwaway CA, and the HTTPS
//! server that stands in for wherever the public issuer documents are uploaded.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

pub const ACCOUNT_ID: &str = "123456789012";

/// A loopback address of our own for each server, so tests can each listen on 443.
pub fn loopback() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("127.46.{}.{n}", std::process::id() % 250 + 1)
}

pub fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway CA and a server certificate for `ip`, made with openssl.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(ip: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f);
        sh(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=ecr-refresh test CA",
            ])
            .arg("-keyout")
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.crt")));
        sh(Command::new("openssl")
            .args([
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={ip}"),
            ])
            .arg("-keyout")
            .arg(p("server.key"))
            .arg("-out")
            .arg(p("server.csr")));
        std::fs::write(
            p("ext.cnf"),
            format!("subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n"),
        )
        .unwrap();
        sh(Command::new("openssl")
            .args(["x509", "-req", "-days", "1", "-CAcreateserial"])
            .arg("-in")
            .arg(p("server.csr"))
            .arg("-CA")
            .arg(p("ca.crt"))
            .arg("-CAkey")
            .arg(p("ca.key"))
            .arg("-extfile")
            .arg(p("ext.cnf"))
            .arg("-out")
            .arg(p("server.crt")));
        Self { dir }
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

/// scripts/oidc/serve_https.py serving `dir` at `url` (https://<ip>/<path>, port 443), as
/// `public/` is uploaded to the issuer URL; stopped on drop.
pub struct HttpsDir {
    child: Child,
}

impl HttpsDir {
    pub fn start(url: &str, ca: &TestCa, dir: &Path) -> Self {
        let rest = url.strip_prefix("https://").expect("an https URL");
        let (ip, prefix) = rest
            .split_once('/')
            .map_or((rest, String::new()), |(ip, p)| (ip, format!("/{p}")));
        use std::io::BufRead as _;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc/serve_https.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--bind", ip, "--port", "443"])
            .arg("--cert")
            .arg(ca.path("server.crt"))
            .arg("--key")
            .arg(ca.path("server.key"))
            .arg("--dir")
            .arg(dir)
            .args(["--prefix", &prefix])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "serve_https.py did not start on {ip}:443"
        );
        Self { child }
    }
}

impl Drop for HttpsDir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback (bound, then released for the server that takes it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, child: &mut Child, log: &Path, mut ready: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "{what} not ready in 90s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A kube-apiserver of the test's own (the testenv's binary, on the testenv's etcd under its
/// own prefix) whose ServiceAccount issuer is a public URL: tokens it issues carry that `iss`,
/// as on a cluster set up with `oidc publish`'s flag change. Killed on drop.
pub struct PublicIssuerCluster {
    pub issuer: String,
    pub kubeconfig: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    prefix: String,
    token: String,
    child: Child,
}

impl PublicIssuerCluster {
    pub fn start(issuer: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("certs")).unwrap();
        let token = format!("admin-{}", std::process::id());
        std::fs::write(
            dir.path().join("tokens.csv"),
            format!("{token},admin,admin-uid,\"system:masters\"\n"),
        )
        .unwrap();
        let port = free_port();
        let prefix = format!("/{}", super::unique("public-issuer"));
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!("apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: admin, user: {{token: {token}}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: admin}}}}]\ncurrent-context: c\n"),
        )
        .unwrap();
        let mut me = Self {
            issuer: issuer.into(),
            kubeconfig,
            port,
            prefix,
            token,
            child: Command::new("true").spawn().unwrap(),
            dir,
        };
        me.rotate_key();
        me
    }

    /// (Re)starts the apiserver with a new signing key, the old public keys still accepted:
    /// a signing-key rotation.
    pub fn rotate_key(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        let n = std::fs::read_dir(d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".key")
            })
            .count();
        let key = d.join(format!("sa{n}.key"));
        sh(Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&key)
            .arg("2048"));
        let mut args = vec![
            format!(
                "--etcd-servers={}",
                super::env::need("ECR_REFRESH_TEST_ETCD")
            ),
            format!("--etcd-prefix={}", self.prefix),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", self.port),
            format!("--cert-dir={}", d.join("certs").display()),
            format!("--token-auth-file={}", d.join("tokens.csv").display()),
            "--authorization-mode=RBAC".into(),
            format!("--service-account-issuer={}", self.issuer),
            format!("--service-account-jwks-uri={}/openid/v1/jwks", self.issuer),
            format!("--service-account-signing-key-file={}", key.display()),
            "--api-audiences=https://kubernetes.default.svc".into(),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
        ];
        // Every key so far verifies: tokens issued before the rotation stay valid.
        for i in 0..=n {
            args.push(format!(
                "--service-account-key-file={}",
                d.join(format!("sa{i}.key")).display()
            ));
        }
        let log = d.join("apiserver.log");
        self.child = Command::new(super::env::need("ECR_REFRESH_TEST_APISERVER_BIN"))
            .args(&args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("kube-apiserver");
        let (port, token) = (self.port, self.token.clone());
        wait_until(
            "kube-apiserver (public issuer)",
            &mut self.child,
            &log,
            || {
                Command::new("curl")
                    .args(["-skf", "-H", &format!("Authorization: Bearer {token}")])
                    .arg(format!("https://127.0.0.1:{port}/readyz"))
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
    }

    /// The private key the apiserver signs tokens with now.
    pub fn signing_key(&self) -> PathBuf {
        let n = std::fs::read_dir(self.dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".key")
            })
            .count();
        self.dir.path().join(format!("sa{}.key", n - 1))
    }

    /// kubectl as this cluster's admin; panics with its stderr if it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl");
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for PublicIssuerCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's server of a test's own (IAM checks get turned on, which the shared one must not
/// have), and the STS stand-in in front of its STS (scripts/oidc/sts_standin.py), which
/// trusts `subject`'s tokens from the provider at `issuer`. Both killed on drop.
pub struct AwsStandIns {
    pub moto: String,
    pub sts: String,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl AwsStandIns {
    pub fn start(issuer: &str, subject: &str, ca: &TestCa) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let moto_bin = PathBuf::from(super::env::need("ECR_REFRESH_TEST_MOTO_BIN"));
        let (moto_port, sts_port) = (free_port(), free_port());
        let moto_log = dir.path().join("moto.log");
        let mut moto = Command::new(&moto_bin)
            .args(["-H", "127.0.0.1", "-p", &moto_port.to_string()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&moto_log).unwrap())
            .spawn()
            .expect("moto_server");
        let moto_url = format!("http://127.0.0.1:{moto_port}");
        wait_until("moto", &mut moto, &moto_log, || {
            std::net::TcpStream::connect(("127.0.0.1", moto_port)).is_ok()
        });
        let python = moto_bin.parent().unwrap().join("python");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/oidc/sts_standin.py");
        let log = dir.path().join("sts.log");
        let mut sts = Command::new(python)
            .arg(script)
            .args(["--port", &sts_port.to_string(), "--moto", &moto_url])
            .args(["--provider-url", issuer, "--subject", subject])
            .arg("--ca-file")
            .arg(ca.path("ca.crt"))
            .args(["--setup-role", "ecr-refresh"])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sts_standin.py");
        let mut line = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(sts.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "sts_standin.py: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self {
            moto: moto_url,
            sts: format!("http://127.0.0.1:{sts_port}"),
            children: vec![moto, sts],
            _dir: dir,
        }
    }
}

impl Drop for AwsStandIns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `token` with its claims changed by `edit` and signed again, RS256, with `key` (a PEM file):
/// what only the holder of the cluster's signing key could make.
pub fn resign(token: &str, key: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine as _;
    let mut parts = token.trim().split('.');
    let header = parts.next().unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts.next().unwrap()).unwrap()).unwrap();
    edit(&mut claims);
    let input = format!("{header}.{}", B64.encode(claims.to_string()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("input"), &input).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .arg(dir.path().join("input"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("{input}.{}", B64.encode(out.stdout))
}
