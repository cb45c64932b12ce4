//! Where the report goes: stdout, which must be open and take every byte.
//!
//! A program started with stdout closed (`>&-`) never sees it closed: Rust's runtime opens
//! `/dev/null` in its place before `main`, and the report would vanish with exit 0. So the
//! descriptor is looked at earlier still, from `.init_array`, which the C runtime runs before
//! Rust's.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static CHECK_STDOUT: extern "C" fn() = check_stdout;

#[cfg(target_os = "linux")]
extern "C" fn check_stdout() {
    // SAFETY: F_GETFD only reads the flags of descriptor 1; it has no other effect.
    if unsafe { libc::fcntl(libc::STDOUT_FILENO, libc::F_GETFD) } == -1 {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// stdout was closed when the process started.
pub(crate) fn stdout_was_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Writes the report to stdout, all of it or an error: a full disk, a closed pipe.
pub(crate) fn write_report(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}
