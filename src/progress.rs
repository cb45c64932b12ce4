//! A progress line on stderr while namespaces are processed: done / total, failures so far and
//! the rate. Only for people at a terminal: it is off unless [`enable`] was called (text output,
//! text logs, stderr a terminal), so pipes, JSON and the CronJob see exactly what they did before.
//!
//! Log lines go through [`Stderr`], which takes the progress line away before a log line is
//! written and draws it again after, so the two never share a line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The line on screen, if any; the lock also keeps log lines and redraws apart.
static SHOWN: Mutex<Option<String>> = Mutex::new(None);

/// Redraw at most this often; the last item is always drawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
/// Moves to the start of the line and erases it.
const CLEAR: &str = "\r\x1b[2K";

/// Turns the progress line on for this process.
pub(crate) fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether a progress line belongs on this stderr: a person is watching, and nothing parses it.
pub(crate) fn wanted(stderr_is_terminal: bool, text_output: bool, text_logs: bool) -> bool {
    stderr_is_terminal && text_output && text_logs
}

/// What the progress line needs to know about one finished item.
pub(crate) trait Tally {
    fn failed(&self) -> bool;
}

impl Tally for crate::report::NamespaceReport {
    fn failed(&self) -> bool {
        self.outcome == crate::report::Outcome::Failed
    }
}

/// prune's "nothing to do here" is done, not failed.
impl<T: Tally> Tally for Option<T> {
    fn failed(&self) -> bool {
        self.as_ref().is_some_and(Tally::failed)
    }
}

/// One pass over `total` items. Does nothing when progress is off.
pub(crate) struct Progress {
    on: bool,
    total: usize,
    done: usize,
    failed: usize,
    started: Instant,
    drawn: Option<Instant>,
}

impl Progress {
    pub(crate) fn start(total: usize) -> Self {
        Self {
            on: ENABLED.load(Ordering::Relaxed) && total > 0,
            total,
            done: 0,
            failed: 0,
            started: Instant::now(),
            drawn: None,
        }
    }

    pub(crate) fn tick(&mut self, item: &impl Tally) {
        if !self.on {
            return;
        }
        self.done += 1;
        self.failed += usize::from(item.failed());
        let due = self.drawn.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
        if due || self.done == self.total {
            self.drawn = Some(Instant::now());
            show(Some(line(
                self.done,
                self.total,
                self.failed,
                self.started.elapsed(),
            )));
        }
    }
}

impl Drop for Progress {
    /// Cleared at the end, so the report starts on a clean line.
    fn drop(&mut self) {
        if self.on {
            show(None);
        }
    }
}

/// The text of the line, e.g. `namespaces: 120/3000 done, 2 failed, 85.3/s`.
pub(crate) fn line(done: usize, total: usize, failed: usize, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    format!("namespaces: {done}/{total} done, {failed} failed, {rate:.1}/s")
}

fn show(new: Option<String>) {
    let mut shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
    let mut err = std::io::stderr().lock();
    let _ = match &new {
        Some(text) => write!(err, "{CLEAR}{text}"),
        None if shown.is_some() => write!(err, "{CLEAR}"),
        None => Ok(()),
    };
    let _ = err.flush();
    *shown = new;
}

/// stderr for the log subscriber: each log line is written with the progress line taken away
/// and drawn again after it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stderr;

pub(crate) struct StderrGuard {
    shown: std::sync::MutexGuard<'static, Option<String>>,
    err: std::io::StderrLock<'static>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Stderr {
    type Writer = StderrGuard;

    fn make_writer(&'a self) -> StderrGuard {
        let shown = SHOWN.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        if shown.is_some() {
            let _ = write!(err, "{CLEAR}");
        }
        StderrGuard { shown, err }
    }
}

impl Write for StderrGuard {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.err.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.err.flush()
    }
}

impl Drop for StderrGuard {
    fn drop(&mut self) {
        if let Some(text) = self.shown.as_deref() {
            let _ = write!(self.err, "{text}");
        }
        let _ = self.err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_counts_and_rate() {
        assert_eq!(
            line(120, 3000, 2, Duration::from_secs(2)),
            "namespaces: 120/3000 done, 2 failed, 60.0/s"
        );
        assert_eq!(
            line(0, 5, 0, Duration::ZERO),
            "namespaces: 0/5 done, 0 failed, 0.0/s"
        );
    }

    #[test]
    fn only_for_text_at_a_terminal() {
        assert!(wanted(true, true, true));
        assert!(!wanted(false, true, true));
        assert!(!wanted(true, false, true));
        assert!(!wanted(true, true, false));
    }

    #[test]
    fn off_unless_enabled() {
        // Unit tests never call enable(), so a pass counts nothing and draws nothing.
        let mut p = Progress::start(3);
        struct Failed;
        impl Tally for Failed {
            fn failed(&self) -> bool {
                true
            }
        }
        p.tick(&Failed);
        assert!(!p.on);
        assert_eq!((p.done, p.failed), (0, 0));
    }
}
