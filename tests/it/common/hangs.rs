//! Helpers that hang (a script, a server that never answers) and the checks that a run ends
//! at its deadline, or at a signal, anyway.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::run::{Run, RunOutput, Running};

/// The run's and each request's timeouts, short, for the tests of hanging steps.
pub const SHORT: [&str; 4] = ["--timeout", "3s", "--request-timeout", "2s"];

/// An executable shell script.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A FIFO at `dir/name`: a file that blocks its reader until someone writes, as a `<(…)` that
/// hangs does.
pub fn fifo(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    assert!(made.expect("mkfifo runs").success(), "mkfifo {path:?}");
    path
}

/// Writes `content` into the FIFO at `path` once, `after` from now, as a slow `<(…)` that
/// answers in time.
pub fn feed_fifo(path: &Path, content: impl Into<Vec<u8>>, after: Duration) {
    use std::io::Write as _;
    let (path, content) = (path.to_path_buf(), content.into());
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let mut writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all(&content).unwrap();
    });
}

/// Whether the process whose pid `file` holds still runs (a zombie does not count).
pub fn still_runs(file: &Path) -> bool {
    let pid = std::fs::read_to_string(file).expect("the helper wrote its pid");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ")
}

/// A helper (exec plugin or `credential_process`) that never finishes: it starts a child of
/// its own, writes that child's pid to the file returned, and waits for it.
pub fn hanging_helper(dir: &Path) -> (PathBuf, PathBuf) {
    let pid = dir.join("pid");
    let body = format!("sleep 20 &\necho $! > {}\nwait", pid.display());
    (script(dir, "hangs.sh", &body), pid)
}

/// Sends SIGTERM once `ready` says the step to interrupt has begun, and expects the run to
/// end within 3 s.
pub async fn sigterm_once(running: Running, ready: impl Fn() -> bool) -> RunOutput {
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

/// Sends SIGTERM once the run has had `after` to reach a step that shows no sign of its own
/// (a blocked read), and expects the run to end within 3 s.
pub async fn sigterm_after(running: Running, after: Duration) -> RunOutput {
    let started = Instant::now();
    sigterm_once(running, || started.elapsed() >= after).await
}

/// Runs `run`, and how long it took.
pub fn timed(run: Run) -> (RunOutput, Duration) {
    let started = Instant::now();
    let out = run.run();
    (out, started.elapsed())
}

/// The error of a run that `SHORT` ended: exit `code`, soon after the 3 s (plus start-up),
/// naming the deadline.
pub fn ended_at_the_deadline(out: &RunOutput, took: Duration, code: i32) -> String {
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

pub fn error_message(out: &RunOutput) -> String {
    out.json()["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: no error in the report:\n{}", out.command, out.stdout()))
        .to_string()
}
