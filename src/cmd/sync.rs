//! `sync`: write a current pull Secret into every selected namespace and link it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{bounded, list_secrets, prune, setup, stopped, RunOptions};
use crate::cluster::Cluster;
use crate::ecr::{EcrClientConfig, EcrOptions};
use crate::error::Result;
use crate::namespaces::{self, Action, Planned, Scope, Skip};
use crate::pullsecret::{self, Found, LazyDesired, Policy, SecretError, SecretOutcome, Secrets};
use crate::report::{NamespaceReport, Outcome, RunReport};
use crate::serviceaccount::{self, ServiceAccountOutcome};
use crate::shutdown::{Shield, Stop};
use crate::stuckpods::{self, ByNamespace, PodAction};

/// Everything `sync` needs, already validated.
#[derive(Clone, Debug)]
pub(crate) struct SyncOptions {
    pub(crate) run: RunOptions,
    pub(crate) aws: EcrOptions,
    /// Take over, or replace, a Secret of our name that is not ours.
    pub(crate) force: bool,
    pub(crate) dry_run: bool,
    pub(crate) service_account_wait: Duration,
    /// Rewrite a Secret of ours whose token has this little left.
    pub(crate) refresh_before: Duration,
    /// Rewrite every Secret of ours now.
    pub(crate) refresh_all: bool,
    /// Also prune the namespaces the selection leaves out.
    pub(crate) prune: bool,
    /// Delete the pods that only a replacement can heal (see `stuckpods`).
    pub(crate) delete_stuck_pods: bool,
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    opts: &'a SyncOptions,
    lazy: &'a LazyDesired,
    /// `get` on a namespace was refused once already (warned about once per run).
    namespace_get_refused: AtomicBool,
    /// ServiceAccounts already read by a cluster-wide list, by (namespace, name).
    accounts: Mutex<HashMap<(String, String), serviceaccount::Listed>>,
    /// With --delete-stuck-pods: the pods waiting on a pull without our Secret.
    stuck: Mutex<ByNamespace>,
    /// Our Secret as listed, by namespace; `None` when it was not listed (read each instead).
    /// `None` for a namespace whose Secret the list showed but could not judge.
    secrets: Option<Mutex<HashMap<String, Option<Found>>>>,
    /// The earliest expiry among the Secrets of ours this pass left in place.
    earliest_held: Mutex<Option<jiff::Timestamp>>,
}

impl Ctx<'_> {
    fn known_account(&self, ns: &str, name: &str) -> Option<serviceaccount::Listed> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.remove(&(ns.to_string(), name.to_string()))
    }

    /// The Secret of `ns` as listed (a namespace the list did not show has none); `None` when
    /// it must be read on its own: not listed, or its metadata could not tell.
    fn known_secret(&self, ns: &str) -> Option<Found> {
        let secrets = self.secrets.as_ref()?;
        let mut secrets = secrets.lock().unwrap_or_else(|e| e.into_inner());
        let missing = || {
            Some(Found::of(
                None,
                self.lazy,
                self.policy(),
                jiff::Timestamp::now(),
            ))
        };
        secrets.remove(ns).unwrap_or_else(missing)
    }

    fn policy(&self) -> Policy {
        policy(self.opts)
    }

    fn held_expiry(&self, expires: Option<jiff::Timestamp>) {
        let mut earliest = self.earliest_held.lock().unwrap_or_else(|e| e.into_inner());
        *earliest = earliest.into_iter().chain(expires).min();
    }
}

fn policy(opts: &SyncOptions) -> Policy {
    Policy {
        force: opts.force,
        dry_run: opts.dry_run,
        refresh_before: opts.refresh_before,
        refresh_all: opts.refresh_all,
    }
}

/// With --delete-stuck-pods, the pods to look at, read before anything is written: without the
/// permission the run fails at once (exit 4).
async fn list_stuck(cluster: &Cluster, opts: &SyncOptions) -> Result<ByNamespace> {
    if !opts.delete_stuck_pods {
        return Ok(ByNamespace::new());
    }
    let selection = &opts.run.selection;
    let literal = selection.literal_names();
    stuckpods::find(
        cluster,
        &opts.run.target.secret_name,
        literal.as_deref(),
        |ns| selection.matches(ns),
    )
    .await
    .map_err(|message| crate::Error::ListPods { message })
}

/// Runs one pass. Errors returned here are fatal and come before any write; a fatal error met
/// later (no ECR token, a signal, the deadline during setup) is recorded in the report, with
/// what the run had cost by then.
pub(crate) async fn run(opts: &SyncOptions, stop: &Stop) -> Result<RunReport> {
    let started = Instant::now();
    let limits = opts.run.pace.start(stop);
    // Local work first, so bad input fails before any network call.
    let ecr = EcrClientConfig::load(&opts.aws, opts.run.cluster.request_timeout).await?;
    let cluster = super::connect(&opts.run.cluster, &limits).await?;
    let mut report = RunReport::new("sync", opts.run.target.secret_name.clone(), opts.dry_run);
    let progress = ecr.progress();
    let fail = |mut report: RunReport, e: &crate::Error| {
        report.ecr_calls = progress.calls();
        report.finish(cluster.stats(), started);
        report.abort(e);
        Ok(report)
    };
    let scope = if opts.prune {
        Scope::Everything
    } else {
        Scope::Selected
    };
    // Reads only: the namespaces, the ServiceAccounts to link (and stuck pods), and the AWS
    // credentials; with --refresh-all (every namespace needs it) the token too. Otherwise ECR
    // is called only once a write is due. A failed fetch is remembered and reported by the
    // namespaces, so nothing is written.
    let listing = namespaces::plan(&cluster, &opts.run.selection, scope);
    let listing = setup(&limits, listing, cluster.hung("listing namespaces"));
    let accounts = async {
        let (accounts, stuck) = tokio::join!(
            super::list_accounts(&cluster, &opts.run),
            list_stuck(&cluster, opts)
        );
        Ok((accounts, stuck?))
    };
    let accounts = setup(&limits, accounts, cluster.hung("listing service accounts"));
    // Beside them, our Secrets, judged from their metadata as they arrive: where a write is due.
    let token = async {
        let lazy = LazyDesired::new(ecr, &opts.aws.registries).await;
        let now = jiff::Timestamp::now();
        let judge = |s: &_| Found::of_metadata(s, &lazy, policy(opts), now);
        let secrets = async { Ok(list_secrets(&cluster, &opts.run, true, judge).await) };
        let secrets = setup(&limits, secrets, cluster.hung("listing secrets"));
        let fetch = async {
            if opts.refresh_all {
                let _ = lazy.get().await;
            }
        };
        let (secrets, ()) = tokio::join!(secrets, fetch);
        Ok((lazy, secrets?))
    };
    let token = setup(&limits, token, |m| progress.hung(m));
    let (plan, accounts, lazy) = if opts.prune {
        // Here a selection that matches nothing is bad input (exit 2): know that before
        // calling AWS. Otherwise the token is fetched while the namespaces are listed.
        match listing.await {
            Ok(plan) => {
                let (accounts, lazy) = tokio::join!(accounts, token);
                (Ok(plan), accounts, lazy)
            }
            Err(e) => return fail(report, &e),
        }
    } else {
        tokio::join!(listing, accounts, token)
    };
    let (plan, (mut accounts, stuck), (lazy, mut secrets)) = match (plan, accounts, lazy) {
        (Ok(plan), Ok(accounts), Ok(lazy)) => (plan, accounts, lazy),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return fail(report, &e),
    };
    if plan.is_empty() {
        warn!("no namespace matches the selection; nothing to do");
        report.ecr_calls = progress.calls();
        report.finish(cluster.stats(), started);
        return Ok(report);
    }
    let (to_prune, to_sync): (Vec<Planned>, Vec<Planned>) =
        plan.into_iter().partition(|p| p.action == Action::Prune);
    info!(namespaces = to_sync.len(), "selected namespaces");
    let synced: HashSet<&str> = to_sync
        .iter()
        .filter(|p| matches!(p.action, Action::Keep { .. }))
        .map(|p| p.name.as_str())
        .collect();
    accounts.retain(|(ns, _), _| synced.contains(ns.as_str()));
    if let Some(secrets) = secrets.as_mut() {
        secrets.retain(|ns, _| synced.contains(ns.as_str()));
        // The lists show a write is due: fetch the token now, as a named setup step, so an ECR
        // that hangs ends the run at --timeout naming ECR, not as namespaces that did not finish.
        let policy = policy(opts);
        let due = synced.iter().any(|ns| {
            secrets
                .get(*ns)
                .is_none_or(|f| f.as_ref().is_some_and(|f| f.writes(policy)))
        });
        if due {
            let token = async {
                let _ = lazy.get().await;
                Ok(())
            };
            if let Err(e) = setup(&limits, token, |m| progress.hung(m)).await {
                return fail(report, &e);
            }
        }
    }
    let ctx = Ctx {
        cluster: &cluster,
        opts,
        lazy: &lazy,
        namespace_get_refused: AtomicBool::new(false),
        accounts: Mutex::new(accounts),
        stuck: Mutex::new(stuck),
        secrets: secrets.map(Mutex::new),
        earliest_held: Mutex::new(None),
    };
    report.namespaces = bounded(
        to_sync,
        opts.run.pace.concurrency,
        limits,
        |ns, shield| sync_namespace(&ctx, ns, shield),
        |ns, cut| NamespaceReport::failed(&ns.name, limits.message(cut)),
    )
    .await;
    let token_error = match lazy.fetched() {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    // No token, or asked to stop: prune nothing (that is never urgent).
    if opts.prune && token_error.is_none() && stop.requested().is_none() {
        let pruned =
            prune::prune_all(&cluster, &opts.run, to_prune, opts.dry_run, false, limits).await;
        report.namespaces.extend(pruned);
    }
    // The earliest expiry among our Secrets now: those left in place, and the new token if any
    // was written with it.
    let wrote = report.namespaces.iter().any(|n| {
        matches!(
            n.secret,
            Some(SecretOutcome::Created | SecretOutcome::Updated)
        )
    });
    let mut earliest = ctx
        .earliest_held
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(Ok(desired)) = lazy.fetched() {
        report.registries = desired.hosts.clone();
        if wrote {
            earliest = earliest.into_iter().chain(desired.expires_at).min();
        }
    }
    report.token_expires_at = earliest;
    report.ecr_calls = lazy.ecr_calls();
    report.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    report.finish(cluster.stats(), started);
    // Namespaces done before the failure (fresh Secrets, links) keep their results.
    if let Some(e) = token_error {
        report.abort(&e);
    } else if let Some(signal) = stop.requested() {
        report.abort(&stopped(signal, &report));
    }
    Ok(report)
}

fn skipped(ns: &str, why: Skip) -> NamespaceReport {
    info!(namespace = ns, "skipped: {why}");
    NamespaceReport::skipped(ns, &why.to_string())
}

async fn sync_namespace(ctx: &Ctx<'_>, planned: Planned, shield: Shield) -> NamespaceReport {
    let ns = planned.name.as_str();
    if let Action::Skip(why) = planned.action {
        return skipped(ns, why);
    }
    // Named on the command line, so not listed: look it up before writing.
    if !matches!(planned.action, Action::Keep { listed: true }) {
        match namespaces::is_terminating(ctx.cluster, ns).await {
            Ok(Some(true)) => return skipped(ns, Skip::Terminating),
            Ok(Some(false)) => {}
            Ok(None) => {
                if !ctx.namespace_get_refused.swap(true, Ordering::Relaxed) {
                    warn!("cannot read namespaces named with -n, so a terminating one is not recognised before writing; grant `get` on namespaces (see rbac.yaml)");
                }
            }
            Err(e) => {
                warn!(namespace = ns, error = %e, "namespace failed");
                return NamespaceReport::failed(ns, e.to_string());
            }
        }
    }
    let secrets = Secrets::new(ctx.cluster, ns, &ctx.opts.run.target.secret_name);
    let found = match ctx.known_secret(ns) {
        Some(found) => Ok(found),
        None => secrets.find(ctx.lazy, ctx.policy()).await,
    };
    let held = found.as_ref().ok().and_then(|f| f.expires_at);
    let result = match found {
        Ok(found) => secrets.ensure(ctx.lazy, ctx.policy(), found, &shield).await,
        Err(e) => Err(e),
    };
    // What this namespace's Secret holds after the pass, unless it was written (then the new
    // token's expiry counts).
    if !matches!(result, Ok(SecretOutcome::Created | SecretOutcome::Updated)) {
        ctx.held_expiry(held);
    }
    let secret = match result {
        Ok(outcome) => outcome,
        Err(SecretError::Terminating) => return skipped(ns, Skip::Terminating),
        Err(e) => {
            // A failed token fetch is reported once, as the run's fatal error.
            if matches!(e, SecretError::Token(_)) {
                debug!(namespace = ns, "stopped: no ECR token");
            } else {
                warn!(namespace = ns, error = %e, "namespace failed");
            }
            return NamespaceReport::failed(ns, e.to_string());
        }
    };
    let mut report = NamespaceReport::new(ns, secret);
    let service_accounts = &ctx.opts.run.target.service_accounts;
    let accounts = match service_accounts.names(ctx.cluster, ns).await {
        Ok(names) => names,
        Err(e) => {
            report.fail_service_account("*", e.to_string());
            return report;
        }
    };
    let if_missing = service_accounts.if_missing(ctx.opts.service_account_wait);
    for sa in &accounts {
        match serviceaccount::link(
            ctx.cluster,
            ns,
            sa,
            &ctx.opts.run.target.secret_name,
            if_missing,
            ctx.opts.dry_run,
            ctx.known_account(ns, sa),
        )
        .await
        {
            Ok(outcome) => report.link(sa, outcome),
            Err(e) => {
                warn!(namespace = ns, service_account = %sa, error = %e, "linking failed");
                report.fail_service_account(sa, e.to_string());
            }
        }
    }
    heal_stuck(ctx, ns, &mut report).await;
    info!(namespace = ns, outcome = ?report.outcome, "namespace done");
    report
}

/// With --delete-stuck-pods, once the namespace is done: deletes each pod stuck on a host our
/// Secret covers whose replacement gets the Secret (its ServiceAccount was linked in this run);
/// the others are reported as left, with why.
async fn heal_stuck(ctx: &Ctx<'_>, ns: &str, report: &mut NamespaceReport) {
    let pods = {
        let mut stuck = ctx.stuck.lock().unwrap_or_else(|e| e.into_inner());
        stuck.remove(ns).unwrap_or_default()
    };
    if pods.is_empty() || report.outcome == Outcome::Failed {
        return;
    }
    let secret = ctx.opts.run.target.secret_name.as_str();
    let hosts = match ctx.lazy.fetched() {
        Some(Ok(desired)) => desired.hosts.clone(),
        // Not fetched (nothing was due): the hosts the Secret holds.
        _ => match Secrets::new(ctx.cluster, ns, secret).get().await {
            Ok(Some(s)) => pullsecret::annotated_hosts(&s),
            Ok(None) => return,
            Err(e) => return report.fail(e.to_string()),
        },
    };
    for pod in &pods {
        let linked = report.service_accounts.iter().any(|s| {
            s.name == pod.service_account()
                && matches!(
                    s.outcome,
                    ServiceAccountOutcome::Linked | ServiceAccountOutcome::AlreadyLinked
                )
        });
        let Some(mut stuck) = pod.report(secret, &hosts, linked) else {
            continue;
        };
        stuck.action = PodAction::Left;
        if pod.verdict(secret, linked).is_ok() {
            match stuckpods::delete(ctx.cluster, ns, pod, ctx.opts.dry_run).await {
                Ok(true) => {
                    info!(namespace = ns, pod = %stuck.name, dry_run = ctx.opts.dry_run, "deleted stuck pod");
                    stuck.action = PodAction::Deleted;
                }
                Ok(false) => {
                    stuck.why = "replaced by another pod of that name since it was listed (uid precondition); not deleted".into();
                }
                Err(e) => {
                    warn!(namespace = ns, pod = %stuck.name, error = %e, "deleting stuck pod failed");
                    report.fail(e);
                }
            }
        }
        report.stuck_pods.push(stuck);
    }
}
