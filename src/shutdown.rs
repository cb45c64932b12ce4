//! Stopping a run cleanly on SIGTERM (what a CronJob's `activeDeadlineSeconds` and a pod
//! deletion send) or SIGINT: no new namespace is started, the ones in flight finish, and the
//! report is printed. A second signal exits at once.

use std::sync::Arc;

use tokio::sync::watch;
use tracing::warn;

/// Whether, and by which signal, the run was asked to stop.
#[derive(Clone, Debug)]
pub(crate) struct Stop {
    rx: watch::Receiver<Option<&'static str>>,
}

impl Stop {
    /// A stop that never comes.
    pub(crate) fn never() -> Self {
        let (_, rx) = watch::channel(None);
        Self { rx }
    }

    /// A stop already requested by `signal`.
    #[cfg(test)]
    pub(crate) fn requested_by(signal: &'static str) -> Self {
        let (_, rx) = watch::channel(Some(signal));
        Self { rx }
    }

    /// The signal that asked the run to stop, if one did.
    pub(crate) fn requested(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Resolves when a stop is asked for; never, if no one can ask.
    pub(crate) async fn wait(&self) -> &'static str {
        let mut rx = self.rx.clone();
        let signal = rx.wait_for(Option::is_some).await.ok().and_then(|v| *v);
        match signal {
            Some(s) => s,
            None => std::future::pending().await,
        }
    }
}

/// Listens for SIGTERM and SIGINT from now on. Must be called inside the runtime.
pub(crate) fn on_signals() -> std::io::Result<Stop> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            let (name, code) = tokio::select! {
                _ = term.recv() => ("SIGTERM", 143),
                _ = int.recv() => ("SIGINT", 130),
            };
            if stopping {
                warn!(
                    signal = name,
                    "second signal: exiting now, without a report"
                );
                crate::children::kill_all();
                std::process::exit(code);
            }
            stopping = true;
            warn!(
                signal = name,
                "stopping: no new namespace is started; those in flight finish, then the report is printed (send it again to exit at once)"
            );
            let _ = tx.send(Some(name));
        }
    });
    Ok(Stop { rx })
}

/// For a command that only reads (`status`): a signal ends it at once, as the default action
/// would, but the helper processes it started (an exec plugin) go first.
pub(crate) fn exit_on_signals() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = term.recv() => 143,
            _ = int.recv() => 130,
        };
        crate::children::kill_all();
        std::process::exit(code);
    });
}

/// Held by a namespace's work across steps that must not be split (a delete and the create
/// that follows it): the run neither times out nor interrupts the work while it is held.
#[derive(Clone, Default)]
pub(crate) struct Shield(Arc<tokio::sync::Mutex<()>>);

impl Shield {
    pub(crate) async fn hold(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.0.clone().lock_owned().await
    }
}

/// Runs `work` on a thread of its own, driven by this runtime, for work that may block in a
/// plain file read (a FIFO, a slow `<(…)`, a device). Such a read cannot be cancelled, and on a
/// runtime thread it would hold up the deadline and the signal handling with it. Dropping the
/// returned future abandons the work: it is dropped at its next await, and a read that never
/// returns keeps only its own thread, which ends with the process.
pub(crate) async fn detached<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let (mut tx, rx) = tokio::sync::oneshot::channel();
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("ecr-refresh-read".into())
        .spawn(move || {
            runtime.block_on(async move {
                let done = tokio::select! {
                    r = work => Some(r),
                    () = tx.closed() => None,
                };
                if let Some(r) = done {
                    let _ = tx.send(r);
                }
            });
        })
        .expect("cannot start a thread");
    rx.await.expect("the detached work panicked")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_stays_unrequested() {
        let stop = Stop::never();
        assert_eq!(stop.requested(), None);
        let waited = tokio::time::timeout(std::time::Duration::from_millis(20), stop.wait()).await;
        assert!(waited.is_err());
        let stop = Stop::requested_by("SIGTERM");
        assert_eq!(stop.requested(), Some("SIGTERM"));
        assert_eq!(stop.wait().await, "SIGTERM");
    }

    #[tokio::test]
    async fn detached_work_blocked_in_a_read_can_be_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // No writer ever opens it, so the read blocks its thread for good.
        let read = detached(async move { std::fs::read(fifo) });
        let waited = tokio::time::timeout(std::time::Duration::from_millis(200), read).await;
        assert!(waited.is_err(), "the read returned: {waited:?}");
        assert_eq!(detached(async { 7 }).await, 7);
    }
}
