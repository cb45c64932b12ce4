//! Completions and man pages as a user meets them: a real interactive bash (in tmux) loads the
//! script and completes a subcommand, and `man -l` renders the pages. bash, tmux and man-db
//! must be installed (scripts/testenv.sh install does); without them these tests fail.

use std::path::Path;

use crate::common::suite;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ecr-refresh");

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is not installed; scripts/testenv.sh install installs it (apt: bash tmux man-db groff-base)"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tmux server of our own (own socket, no config), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn send(&self, keys: &[&str]) {
        run(self.cmd().args(["send-keys", "-t", "t", "--"]).args(keys));
    }

    fn screen(&self) -> String {
        let out = run(self.cmd().args(["capture-pane", "-p", "-t", "t"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `want`; panics with the screen if it never does.
    fn wait_for(&self, want: &str) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(want) {
                return screen;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the screen never showed {want:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
fn bash_completes_a_subcommand() {
    let _suite = suite::shared_blocking();
    need("bash");
    need("tmux");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ecr-refresh.bash");
    let out = run(Command::new(BIN).args(["completions", "bash"]));
    std::fs::write(&script, &out.stdout).unwrap();
    // The binary under its own name, first on PATH, as an installed one would be.
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.join("ecr-refresh")).unwrap();

    let tmux = Tmux {
        socket: format!("ecr-refresh-test-{}", std::process::id()),
    };
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    run(tmux.cmd().args([
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "200",
        "-y",
        "20",
        "env",
        &format!("PATH={path}"),
        "PS1=bash> ",
        "bash",
        "--norc",
        "--noprofile",
        "-i",
    ]));
    tmux.wait_for("bash>");
    tmux.send(&[&format!("source {}", script.display()), "Enter"]);
    tmux.send(&["echo loaded-$(complete -p ecr-refresh | wc -l)", "Enter"]);
    tmux.wait_for("loaded-1");

    tmux.send(&["clear", "Enter"]);
    tmux.send(&["ecr-refresh sy", "Tab"]);
    let screen = tmux.wait_for("ecr-refresh sync");
    assert!(
        !screen.contains("ecr-refresh sy\n"),
        "not completed:\n{screen}"
    );

    // Flags too, after the subcommand.
    tmux.send(&["--refresh-b", "Tab"]);
    tmux.wait_for("ecr-refresh sync --refresh-before");
}

fn man_render(page: &Path) -> (String, String) {
    let out = run(Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LC_ALL", "C.UTF-8"));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn man_renders_the_pages() {
    let _suite = suite::shared_blocking();
    need("man");
    let dir = tempfile::tempdir().unwrap();
    for (args, title, wants) in [
        (
            &["man"][..],
            "ecr-refresh(1)",
            &[
                "NAME",
                "ecr-refresh - Keeps Amazon ECR pull secrets fresh",
                "SYNOPSIS",
                "ecr-refresh-sync(1)",
                "Exit codes",
            ][..],
        ),
        (
            &["man", "sync"][..],
            "ecr-refresh-sync(1)",
            &[
                "--refresh-before <DURATION>",
                "ECR_REFRESH_REFRESH_BEFORE",
                "--namespace",
            ][..],
        ),
        (
            &["man", "completions"][..],
            "ecr-refresh-completions(1)",
            &["powershell"][..],
        ),
        (
            &["man", "oidc"][..],
            "ecr-refresh-oidc(1)",
            &["ecr-refresh-oidc-publish(1)", "ecr-refresh-oidc-check(1)"][..],
        ),
    ] {
        let page = dir.path().join("page.1");
        let out = run(Command::new(BIN).args(args));
        std::fs::write(&page, &out.stdout).unwrap();
        let (text, warnings) = man_render(&page);
        // Justified text: compare with runs of spaces collapsed.
        let text = text
            .split(' ')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(text.contains(title), "{args:?}: no {title}:\n{text}");
        for want in wants {
            assert!(text.contains(want), "{args:?}: no {want:?}:\n{text}");
        }
        assert!(
            warnings.trim().is_empty(),
            "{args:?}: groff warnings:\n{warnings}"
        );
    }
}
