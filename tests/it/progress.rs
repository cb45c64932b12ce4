//! The progress line: shown on a real terminal for text output, and never anywhere else
//! (a pipe, JSON output, JSON logs).

use crate::common;

use common::*;

const CLEAR: &str = "\r\x1b[2K";

/// Three namespaces that sync, and one that does not exist (so fails).
async fn namespaces() -> String {
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(TestNs::new("progress").await.name);
    }
    names.push(unique("progress-missing"));
    names.join(",")
}

#[tokio::test]
async fn a_terminal_shows_progress_and_clears_it() {
    let _suite = suite::shared().await;
    let ns = namespaces().await;
    let out = Run::sync().args(["-n", &ns]).under_pty().run();
    out.assert_code(1);
    let screen = out.stdout();
    let last = screen
        .rfind("namespaces: 4/4 done, 1 failed, ")
        .unwrap_or_else(|| panic!("no final progress line:\n{screen:?}"));
    // Cleared after the last update, before the report is printed.
    let cleared = last
        + screen[last..]
            .find(CLEAR)
            .unwrap_or_else(|| panic!("progress line never cleared:\n{screen:?}"));
    let report = screen
        .find("sync secret awsecr-cred: 4 namespaces")
        .unwrap_or_else(|| panic!("no report:\n{screen:?}"));
    assert!(cleared < report, "{screen:?}");
    // A rate is shown: "<n>.<d>/s".
    assert!(screen[last..cleared].ends_with("/s"), "{screen:?}");
    // Log lines never share a line with it: the progress text is erased before a log line
    // is written, so what the line shows in the end is the log alone.
    for line in screen.lines().filter(|l| l.contains("namespace done")) {
        let shown = line.rsplit(CLEAR).next().unwrap();
        assert!(
            shown.contains("namespace done") && !shown.contains(" done, "),
            "{line:?}"
        );
    }
    out.assert_no_secrets();
}

#[tokio::test]
async fn no_progress_in_a_pipe_or_for_json() {
    let _suite = suite::shared().await;
    let ns = namespaces().await;
    let piped = Run::sync().args(["-n", &ns]).run();
    piped.assert_code(1);
    for (name, text) in [("stdout", piped.stdout()), ("stderr", piped.stderr())] {
        assert!(!text.contains("/4 done"), "{name}: {text}");
        assert!(
            !text.contains('\x1b') && !text.contains('\r'),
            "{name}: {text:?}"
        );
    }
    for args in [&["-o", "json"][..], &["--log-format", "json"][..]] {
        let out = Run::sync().args(["-n", &ns]).args(args).under_pty().run();
        out.assert_code(1);
        let screen = out.stdout();
        assert!(
            screen.contains(&ns[..20]),
            "{args:?}: ran nothing? {screen:?}"
        );
        assert!(!screen.contains("/4 done"), "{args:?}: {screen:?}");
        assert!(!screen.contains(CLEAR), "{args:?}: {screen:?}");
    }
}
