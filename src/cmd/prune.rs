//! `prune`: take ecr-refresh out of namespaces that are no longer selected (or opted out).
//! Only a Secret carrying our label is deleted, and only an entry recorded as ours (the
//! `ecr-refresh/linked` annotation) leaves a ServiceAccount, or with `--uninstall` any entry
//! naming our Secret.

use std::time::Instant;

use tracing::{info, warn};

use super::{bounded, connect, setup, stopped, Cut, Limits, RunOptions};
use crate::argocd;
use crate::bornlinked;
use crate::cluster::Cluster;
use crate::error::Result;
use crate::events::{self, EventOptions};
use crate::namespaces::{self, Action, Planned, Scope};
use crate::pullsecret::{self, SecretOutcome, Secrets, State};
use crate::report::{NamespaceReport, RunReport};
use crate::serviceaccount::{self, ServiceAccountOutcome, Target, Unlink};
use crate::shutdown::Stop;

#[derive(Clone, Debug)]
pub(crate) struct PruneOptions {
    pub(crate) run: RunOptions,
    pub(crate) dry_run: bool,
    /// Also take our entry out of ServiceAccounts where our Secret is already gone.
    pub(crate) uninstall: bool,
    pub(crate) events: EventOptions,
    /// Also remove our Argo CD Secrets there (see `argocd`).
    pub(crate) argocd_namespace: Option<String>,
    /// Where the ledger is: it names our Argo CD Secrets.
    pub(crate) state_namespace: String,
}

/// Prunes (with --tenants whose rules name other Secret names, each name in turn).
pub(crate) async fn run(opts: &PruneOptions, stop: &Stop) -> Result<RunReport> {
    super::per_secret_name(&opts.run, stop, |run| async move {
        let opts = PruneOptions {
            run,
            ..opts.clone()
        };
        run_one(&opts, stop).await
    })
    .await
}

/// [`run`], for one Secret name.
async fn run_one(opts: &PruneOptions, stop: &Stop) -> Result<RunReport> {
    let started = Instant::now();
    let limits = opts.run.pace.start(stop);
    let cluster = connect(&opts.run.cluster, &limits).await?;
    let mut report = RunReport::new("prune", opts.run.target.secret_name.clone(), opts.dry_run);
    let listing = namespaces::plan(&cluster, &opts.run.selection, Scope::Everything);
    let plan = match setup(&limits, listing, cluster.hung("listing namespaces")).await {
        Ok(plan) => plan,
        Err(e) => {
            report.finish(cluster.stats(), started, Some(&e));
            return Ok(report);
        }
    };
    let to_prune = plan
        .into_iter()
        .filter(|p| p.action == Action::Prune)
        .collect();
    report.namespaces = prune_all(
        &cluster,
        &opts.run,
        to_prune,
        opts.dry_run,
        if opts.uninstall {
            Unlink::Any
        } else {
            Unlink::Recorded
        },
        limits,
    )
    .await;
    report.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    // Told to the owners of the namespaces left out; not on an uninstall (it removes all).
    let tell = opts.events.enabled && !opts.dry_run && !opts.uninstall;
    if tell && stop.requested().is_none() {
        let secret = &opts.run.target.secret_name;
        let at_once = opts.run.pace.concurrency;
        if let Err(e) = events::record(&cluster, &report, secret, &opts.events, at_once).await {
            report.warnings.push(e);
        }
    }
    if let Some(ns) = opts.argocd_namespace.as_deref() {
        if opts.run.is_first_pass() && stop.requested().is_none() {
            let done = argocd::prune(&cluster, ns, &opts.state_namespace, opts.dry_run).await;
            report.add_argocd(done);
        }
    }
    // New namespaces would still be born listing our Secret: say so, do not delete it here.
    if opts.uninstall {
        let policy = bornlinked::state(&cluster).await;
        let warning = bornlinked::uninstall_warning(&policy, &opts.run.target.secret_name);
        if let Some(w) = warning {
            warn!("{w}");
            report.warnings.push(w);
        }
    }
    let stopped = stop.requested().map(|signal| stopped(signal, &report));
    report.finish(cluster.stats(), started, stopped.as_ref());
    Ok(report)
}

/// Prunes each namespace; only namespaces where something was removed, or that failed, are
/// reported. With [`Unlink::Any`], our ServiceAccount entry goes even where our Secret is gone.
pub(crate) async fn prune_all(
    cluster: &Cluster,
    run: &RunOptions,
    namespaces: Vec<Planned>,
    dry_run: bool,
    which: Unlink,
    limits: Limits<'_>,
) -> Vec<NamespaceReport> {
    let late = |ns: &str, cut: Cut| Some(limits.cut_short(ns, cut));
    bounded(
        namespaces,
        run.pace.concurrency,
        limits,
        |ns, _shield| prune_namespace(cluster, &run.target, ns, dry_run, which),
        late,
    )
    .await
    .into_iter()
    .flatten()
    .collect()
}

async fn prune_namespace(
    cluster: &Cluster,
    target: &Target,
    planned: Planned,
    dry_run: bool,
    which: Unlink,
) -> Option<NamespaceReport> {
    let ns = planned.name.as_str();
    let name = target.secret_name.as_str();
    let secrets = Secrets::new(cluster, ns, name);
    let existing = match secrets.get().await {
        Ok(s) => s,
        Err(e) => return Some(NamespaceReport::failed(ns, e.to_string())),
    };
    // Someone else's: nothing to do, and nothing of anyone else's is touched (an entry naming
    // their Secret is theirs). Not there: only an uninstall still looks for our entry.
    let secret = match pullsecret::state(existing.as_ref()) {
        State::Ours => existing,
        State::Missing if which == Unlink::Any => None,
        _ => return None,
    };
    let mut report = NamespaceReport::new(ns, SecretOutcome::Deleted);
    if secret.is_none() {
        report.secret = None;
    }
    // Unlink first: a ServiceAccount never points at a Secret we already deleted.
    if let Err(e) = unlink_all(cluster, target, &mut report, which, dry_run).await {
        return Some(NamespaceReport::failed(ns, e));
    }
    let Some(secret) = secret else {
        return unlinked_only(report, dry_run);
    };
    if report.error.is_some() {
        warn!(
            namespace = ns,
            "not deleting the secret: a ServiceAccount could not be unlinked"
        );
        return Some(report);
    }
    if let Err(e) = secrets.delete(&secret, dry_run).await {
        return Some(NamespaceReport::failed(ns, e.to_string()));
    }
    info!(namespace = ns, secret = name, dry_run, "pruned");
    Some(report)
}

/// Takes our entry out of each chosen ServiceAccount of the report's namespace, and says how
/// each went in the report. `Err`: they could not be listed.
async fn unlink_all(
    cluster: &Cluster,
    target: &Target,
    report: &mut NamespaceReport,
    which: Unlink,
    dry_run: bool,
) -> Result<(), String> {
    let ns = report.name.clone();
    let name = target.secret_name.as_str();
    let accounts = target
        .service_accounts
        .names(cluster, &ns)
        .await
        .map_err(|e| e.to_string())?;
    for sa in &accounts {
        match serviceaccount::unlink(cluster, &ns, sa, name, which, dry_run).await {
            Ok(outcome) => report.link(sa, outcome),
            Err(e) => report.fail_service_account(sa, e.to_string()),
        }
    }
    Ok(())
}

/// Our Secret was already gone: the namespace is reported only if an entry was taken out.
fn unlinked_only(report: NamespaceReport, dry_run: bool) -> Option<NamespaceReport> {
    let unlinked = report.service_accounts.iter().any(|s| {
        !matches!(
            s.outcome,
            ServiceAccountOutcome::NotLinked
                | ServiceAccountOutcome::NotOurs
                | ServiceAccountOutcome::Missing
        )
    });
    if unlinked {
        info!(
            namespace = report.name.as_str(),
            dry_run, "unlinked a secret that was already gone"
        );
    }
    unlinked.then_some(report)
}
