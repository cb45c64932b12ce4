//! One module per subcommand, and what they share.

pub(crate) mod oidc;
pub(crate) mod prune;
pub(crate) mod status;
pub(crate) mod sync;

use std::future::Future;
use std::time::Duration;

use std::collections::HashMap;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use tracing::{info, warn};

use crate::cluster::{explain, Cluster, ClusterOptions, Parts, PendingCluster};
use crate::namespaces::{SecretPass, Selection};
use crate::pullsecret;
use crate::report::NamespaceReport;
use crate::serviceaccount::{self, ServiceAccounts, Target};
use crate::shutdown::{Shield, Stop};

/// What every command that works on namespaces needs.
#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    pub(crate) cluster: ClusterOptions,
    pub(crate) selection: Selection,
    /// The Secret, and the ServiceAccounts that use it.
    pub(crate) target: Target,
    pub(crate) pace: Pace,
}

impl RunOptions {
    /// Whether this is the run for --secret-name itself (the first of
    /// [`Self::by_secret_name`]): what is done once per command is done there.
    pub(crate) fn is_first_pass(&self) -> bool {
        self.selection
            .pass
            .as_ref()
            .is_none_or(|p| p.name == p.default)
    }

    /// The command's runs: this one, or with --tenants whose rules name other Secret names, one
    /// per name (the run's own first), each covering the namespaces whose tenant uses it (the
    /// run's own also those no rule takes). Each has its own lists and ledger key.
    pub(crate) fn by_secret_name(&self) -> Vec<RunOptions> {
        let default = &self.target.secret_name;
        let names = match &self.selection.tenants {
            Some(tenants) => tenants.secret_names(default),
            None => return vec![self.clone()],
        };
        if names.len() == 1 {
            return vec![self.clone()];
        }
        names
            .into_iter()
            .map(|name| {
                let mut run = self.clone();
                run.selection.pass = Some(SecretPass {
                    name: name.clone(),
                    default: default.clone(),
                });
                run.target.secret_name = name;
                run
            })
            .collect()
    }

    /// The name of tenant rule `tenant`, with --tenants, for reports.
    pub(crate) fn tenant_name(&self, tenant: Option<usize>) -> Option<String> {
        let tenants = self.selection.tenants.as_ref()?;
        Some(tenants.rules.get(tenant?)?.name.clone())
    }

    /// The ServiceAccounts that use the Secret in a namespace taken by tenant rule `tenant`:
    /// the rule's, when it names them, else the run's.
    pub(crate) fn service_accounts(&self, tenant: Option<usize>) -> ServiceAccounts {
        let named = self
            .selection
            .tenants
            .as_ref()
            .zip(tenant)
            .and_then(|(t, i)| t.rules.get(i)?.service_accounts.clone());
        match named {
            Some(names) => ServiceAccounts::Named(names),
            None => self.target.service_accounts.clone(),
        }
    }
}

/// A report of one run of a command that [`per_secret_name`] merges with the next.
pub(crate) trait Merge: Sized {
    /// This report and a later run's, as one.
    fn merge(self, later: Self) -> Self;
    /// This report, with the fatal error a later run met before it could report.
    fn with_error(self, e: &crate::Error) -> Self;
    /// The run ended on a fatal error: no later run is made.
    fn ended(&self) -> bool;
    /// Each namespace's Secret is `name`, not the run's --secret-name.
    fn name_secret(&mut self, name: &str);
}

/// Runs `one` once per Secret name (see [`RunOptions::by_secret_name`]), one after the other
/// within one --timeout, and merges their reports. Stops after a fatal error or a signal.
pub(crate) async fn per_secret_name<R, F, Fut>(
    run: &RunOptions,
    stop: &Stop,
    mut one: F,
) -> crate::Result<R>
where
    R: Merge,
    F: FnMut(RunOptions) -> Fut,
    Fut: Future<Output = crate::Result<R>>,
{
    let deadline = tokio::time::Instant::now() + run.pace.timeout;
    let default = run.target.secret_name.clone();
    let mut merged: Option<R> = None;
    for mut pass in run.by_secret_name() {
        pass.pace.deadline = Some(deadline);
        let name = pass.target.secret_name.clone();
        let report = match (one(pass).await, merged.take()) {
            (Ok(mut report), earlier) => {
                if name != default {
                    report.name_secret(&name);
                }
                match earlier {
                    Some(earlier) => earlier.merge(report),
                    None => report,
                }
            }
            (Err(e), None) => return Err(e),
            (Err(e), Some(earlier)) => earlier.with_error(&e),
        };
        let ended = report.ended() || stop.requested().is_some();
        merged = Some(report);
        if ended {
            break;
        }
    }
    Ok(merged.expect("by_secret_name gives at least one run"))
}

/// How many namespaces at once, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    pub(crate) concurrency: usize,
    /// The whole run's deadline, from its start.
    pub(crate) timeout: Duration,
    /// Set when a command runs once per Secret name: the one deadline they share.
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl Pace {
    /// The run's limits, its deadline counted from now: call it when the run starts.
    pub(crate) fn start<'a>(&self, stop: &'a Stop) -> Limits<'a> {
        Limits {
            deadline: self
                .deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + self.timeout),
            timeout: self.timeout,
            stop,
        }
    }
}

/// How long namespaces already in flight may take to finish after SIGTERM/SIGINT: well inside
/// the 30 s a pod gets by default (`terminationGracePeriodSeconds`) before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(10);

/// When namespace work is cut short: at the run deadline, or on a signal.
#[derive(Clone, Copy)]
pub(crate) struct Limits<'a> {
    pub(crate) deadline: tokio::time::Instant,
    /// `--timeout` as given, for messages.
    pub(crate) timeout: Duration,
    pub(crate) stop: &'a Stop,
}

impl Limits<'_> {
    /// Why a namespace was cut short, for its report.
    pub(crate) fn message(&self, cut: Cut) -> String {
        match cut {
            Cut::Deadline => format!(
                "did not finish before the run deadline (--timeout {})",
                humantime::format_duration(self.timeout)
            ),
            Cut::Stopped(signal) => format!("not done: the run was stopped by {signal}"),
        }
    }

    /// The report of a namespace cut short: failed, and counted as undone after a signal.
    pub(crate) fn cut_short(&self, name: &str, cut: Cut) -> NamespaceReport {
        let mut report = NamespaceReport::failed(name, self.message(cut));
        report.undone = matches!(cut, Cut::Stopped(_));
        report
    }
}

/// The report's error after a signal: how many namespaces were left undone.
pub(crate) fn stopped(signal: &str, report: &crate::report::RunReport) -> crate::Error {
    let undone = report.namespaces.iter().filter(|n| n.undone).count();
    crate::Error::Cancelled {
        reason: format!(
            "{signal} received: {undone} namespaces were not done (listed as failed); run it again"
        ),
    }
}

/// Why a namespace's work was cut short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The run's `--timeout` passed.
    Deadline,
    /// A signal asked the run to stop: the namespace was not started, or was still running
    /// when [`STOP_GRACE`] ran out.
    Stopped(&'static str),
}

/// An item of [`bounded`] work: a namespace, known by its name.
pub(crate) trait Named {
    fn name(&self) -> &str;
}

impl Named for crate::namespaces::Planned {
    fn name(&self) -> &str {
        &self.name
    }
}

/// Runs `work` on every item, `concurrency` at a time. Whatever has not finished by `deadline`
/// gets `late(item, Cut::Deadline)` instead, so a run never outlives its --timeout. Once a stop
/// is requested no item is started, and those in flight get [`STOP_GRACE`] to finish. Neither
/// cut splits a section the work holds its [`Shield`] for. Each result ticks the progress line
/// (shown only at a terminal, see `progress`).
pub(crate) async fn bounded<I, R, F, Fut>(
    items: Vec<I>,
    concurrency: usize,
    limits: Limits<'_>,
    work: F,
    late: impl Fn(&str, Cut) -> R,
) -> Vec<R>
where
    F: Fn(I, Shield) -> Fut,
    Fut: Future<Output = R>,
    I: Named,
    R: crate::progress::Tally,
{
    let Limits { deadline, stop, .. } = limits;
    let work = &work;
    let late = &late;
    let mut progress = crate::progress::Progress::start(items.len());
    futures::stream::iter(items)
        .map(|item| async move {
            if let Some(signal) = stop.requested() {
                return late(item.name(), Cut::Stopped(signal));
            }
            // Only the name is kept for a cut: the item itself (a namespace's share of the
            // reads) goes to the work.
            let name = item.name().to_string();
            let shield = Shield::default();
            let mut work = std::pin::pin!(work(item, shield.clone()));
            let cut = tokio::select! {
                r = &mut work => return r,
                () = tokio::time::sleep_until(deadline) => Cut::Deadline,
                signal = async {
                    let signal = stop.wait().await;
                    tokio::time::sleep(STOP_GRACE).await;
                    signal
                } => Cut::Stopped(signal),
            };
            // Cut now, unless the work is inside its shield: then let that section end first.
            tokio::select! {
                biased;
                _free = shield.hold() => late(&name, cut),
                r = &mut work => r,
            }
        })
        .buffer_unordered(concurrency)
        .inspect(|r| progress.tick(r))
        .collect()
        .await
}

/// Reads the ServiceAccounts to link with one cluster-wide list per name, not one GET per
/// namespace. Not when every namespace is named literally (a GET each is cheaper than listing
/// the whole cluster), nor when listing is refused: then each one is read on its own. By
/// namespace, then by name.
pub(crate) async fn list_accounts(
    cluster: &Cluster,
    run: &RunOptions,
) -> HashMap<String, HashMap<String, serviceaccount::Listed>> {
    let mut known: HashMap<String, HashMap<String, _>> = HashMap::new();
    let ServiceAccounts::Named(names) = &run.target.service_accounts else {
        return known;
    };
    if run.selection.literal_names().is_some() {
        return known;
    }
    // With --tenants, also the ServiceAccounts the rules name.
    let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
    if let Some(tenants) = &run.selection.tenants {
        names.extend(tenants.service_account_names());
        names.sort_unstable();
        names.dedup();
    }
    for name in names {
        match serviceaccount::list_everywhere(cluster, name, |ns| run.selection.matches(ns)).await {
            Ok(found) => {
                for (ns, account) in found {
                    known
                        .entry(ns)
                        .or_default()
                        .insert(name.to_string(), account);
                }
            }
            Err(e) => info!(
                service_account = %name,
                error = %explain(&e),
                "cannot list service accounts cluster-wide; reading them one namespace at a time"
            ),
        }
    }
    known
}

/// Reads our Secret in every selected namespace with one cluster-wide list (by name), judging
/// each by `judge` as it arrives. Not when every namespace is named literally (a GET each is
/// cheaper), nor when listing is refused: then each one is read on its own, after one warning.
pub(crate) async fn list_secrets<T>(
    cluster: &Cluster,
    run: &RunOptions,
    parts: Parts,
    judge: impl Fn(&Secret) -> T,
) -> Option<HashMap<String, T>> {
    if run.selection.literal_names().is_some() {
        return None;
    }
    let name = &run.target.secret_name;
    let wanted = |ns: &str| run.selection.matches(ns);
    match pullsecret::list_everywhere(cluster, name, parts, wanted, judge).await {
        Ok(found) => Some(found),
        // The RBAC hint only for a refusal: a list that fails to parse needs no grant.
        Err(e) if crate::cluster::is_status(&e, |s| s.is_forbidden()) => {
            warn!(secret = %name, error = %explain(&e), "cannot list secrets cluster-wide; reading them one namespace at a time (grant `list` on secrets with resourceNames [{name}], see rbac.yaml)");
            None
        }
        Err(e) => {
            warn!(secret = %name, error = %explain(&e), "cannot list secrets cluster-wide; reading them one namespace at a time");
            None
        }
    }
}

/// Runs a step that comes before any namespace and writes nothing (connecting, listing, the
/// token), under the run's deadline and stop handling: a signal abandons it, and so does the
/// deadline, with `hung` naming the step (its error and exit code are the step's own). A
/// child process the step started is killed when it is abandoned (see `children`).
pub(crate) async fn setup<T>(
    limits: &Limits<'_>,
    step: impl Future<Output = crate::Result<T>>,
    hung: impl FnOnce(String) -> crate::Error,
) -> crate::Result<T> {
    tokio::select! {
        // A step that gives up at the same instant says more than the deadline does.
        biased;
        r = step => r,
        signal = limits.stop.wait() => Err(crate::Error::Cancelled {
            reason: format!("{signal} received before any namespace was processed; nothing was written"),
        }),
        () = tokio::time::sleep_until(limits.deadline) => Err(hung(format!(
            "the run deadline (--timeout {}) passed",
            humantime::format_duration(limits.timeout)
        ))),
    }
}

/// Connects to the cluster (running the kubeconfig's exec plugin, if any) and checks that it
/// knows who we are, as setup steps.
pub(crate) async fn connect(opts: &ClusterOptions, limits: &Limits<'_>) -> crate::Result<Cluster> {
    let unread = PendingCluster::unread(opts);
    let pending = setup(limits, PendingCluster::load(opts), unread).await?;
    let hung = pending.hung_connecting();
    let cluster = setup(limits, pending.connect(), hung).await?;
    let hung = cluster.hung("checking the credentials");
    setup(limits, cluster.check_access(), hung).await?;
    Ok(cluster)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    // What these tests return stands in for a namespace report; the progress line counts it.
    impl crate::progress::Tally for Result<(), Cut> {
        fn failed(&self) -> bool {
            self.is_err()
        }
    }
    impl crate::progress::Tally for () {
        fn failed(&self) -> bool {
            false
        }
    }

    impl Named for &str {
        fn name(&self) -> &str {
            self
        }
    }

    fn limits(stop: &Stop, deadline_ms: u64) -> Limits<'_> {
        Limits {
            deadline: tokio::time::Instant::now() + Duration::from_millis(deadline_ms),
            timeout: Duration::from_millis(deadline_ms),
            stop,
        }
    }

    #[tokio::test]
    async fn the_deadline_waits_for_a_shielded_section_then_cuts() {
        let finished = AtomicUsize::new(0);
        let stop = Stop::never();
        let got = bounded(
            vec!["a"],
            1,
            limits(&stop, 30),
            |_, shield| async {
                let shield = shield;
                {
                    let _held = shield.hold().await;
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            },
            |_, cut| Err(cut),
        )
        .await;
        assert_eq!(got, [Err(Cut::Deadline)]);
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the section ran to its end"
        );
    }

    #[tokio::test]
    async fn nothing_starts_once_a_stop_is_requested() {
        let started = AtomicUsize::new(0);
        let stop = Stop::requested_by("SIGINT");
        let got = bounded(
            vec!["a", "b", "c"],
            2,
            limits(&stop, 60_000),
            |_, _| async {
                started.fetch_add(1, Ordering::SeqCst);
            },
            |_, cut| assert_eq!(cut, Cut::Stopped("SIGINT")),
        )
        .await;
        assert_eq!(got.len(), 3);
        assert_eq!(started.load(Ordering::SeqCst), 0);
        assert_eq!(
            limits(&stop, 1000).message(Cut::Stopped("SIGINT")),
            "not done: the run was stopped by SIGINT"
        );
    }
}
