//! One namespace of a `sync` pass: its Secret made current, linked, and the pods it heals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing::{debug, info, warn};

use super::{policy, SyncOptions};
use crate::cluster::Cluster;
use crate::namespaces::{self, Action, Planned, Skip};
use crate::pullsecret::{
    self, Ensured, Found, LazyDesired, Ledger, Policy, SecretError, SecretOutcome, Secrets,
};
use crate::report::{NamespaceReport, Outcome};
use crate::serviceaccount::{self, ServiceAccountOutcome};
use crate::shutdown::Shield;
use crate::stuckpods::{self, ByNamespace, Deletion, PodAction};

/// What every namespace of the pass shares: the lists, taken out namespace by namespace.
pub(super) struct Ctx<'a> {
    cluster: &'a Cluster,
    opts: &'a SyncOptions,
    lazy: &'a LazyDesired,
    ledger: &'a Ledger,
    /// What this pass's writes produced, by namespace: the ledger's new entries.
    written: Mutex<BTreeMap<String, String>>,
    /// Secrets from which someone else's data keys were removed, for the report.
    repaired: Mutex<Vec<String>>,
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

impl<'a> Ctx<'a> {
    pub(super) fn new(
        cluster: &'a Cluster,
        opts: &'a SyncOptions,
        (lazy, ledger): (&'a LazyDesired, &'a Ledger),
        accounts: HashMap<(String, String), serviceaccount::Listed>,
        stuck: ByNamespace,
        secrets: Option<HashMap<String, Option<Found>>>,
    ) -> Self {
        Self {
            cluster,
            opts,
            lazy,
            ledger,
            written: Mutex::default(),
            repaired: Mutex::default(),
            namespace_get_refused: AtomicBool::new(false),
            accounts: Mutex::new(accounts),
            stuck: Mutex::new(stuck),
            secrets: secrets.map(Mutex::new),
            earliest_held: Mutex::new(None),
        }
    }

    /// The earliest expiry held, the ledger's new entries, and the repairs to report.
    pub(super) fn into_results(
        self,
    ) -> (
        Option<jiff::Timestamp>,
        BTreeMap<String, String>,
        Vec<String>,
    ) {
        fn take<T>(m: Mutex<T>) -> T {
            m.into_inner().unwrap_or_else(|e| e.into_inner())
        }
        (
            take(self.earliest_held),
            take(self.written),
            take(self.repaired),
        )
    }

    /// Remembers what the write in `ns` produced.
    fn wrote(&self, ns: &str, ensured: &Ensured) {
        if let Some(rv) = &ensured.resource_version {
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.insert(ns.to_string(), rv.clone());
        }
        if !ensured.removed.is_empty() {
            let mut repaired = self.repaired.lock().unwrap_or_else(|e| e.into_inner());
            repaired.push(format!(
                "namespace {ns}: removed data keys ecr-refresh does not write from secret {} ({}); the admission policy refuses every write while they are there",
                self.opts.run.target.secret_name,
                ensured.removed.join(", ")
            ));
        }
    }

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
                &self.ledger.of(ns),
                &self.lazy.wanted,
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

fn skipped(ns: &str, why: Skip) -> NamespaceReport {
    info!(namespace = ns, "skipped: {why}");
    NamespaceReport::skipped(ns, &why.to_string())
}

pub(super) async fn sync_namespace(
    ctx: &Ctx<'_>,
    planned: Planned,
    shield: Shield,
) -> NamespaceReport {
    let ns = planned.name.as_str();
    if let Action::Skip(why) = planned.action {
        return skipped(ns, why);
    }
    // Named on the command line, so not listed: look it up before writing.
    if !matches!(planned.action, Action::Keep { listed: true }) {
        if let Some(report) = unless_terminating(ctx, ns).await {
            return report;
        }
    }
    let secret = match make_current(ctx, ns, &shield).await {
        Ok(outcome) => outcome,
        Err(report) => return report,
    };
    let mut report = NamespaceReport::new(ns, secret);
    if !link_all(ctx, ns, &mut report).await {
        return report;
    }
    heal_stuck(ctx, ns, &mut report).await;
    info!(namespace = ns, outcome = ?report.outcome, "namespace done");
    report
}

/// A namespace that was not listed: skipped if it is terminating, failed if it cannot be told
/// for another reason than RBAC (then it is written, with one warning per run).
async fn unless_terminating(ctx: &Ctx<'_>, ns: &str) -> Option<NamespaceReport> {
    match namespaces::is_terminating(ctx.cluster, ns).await {
        Ok(Some(true)) => Some(skipped(ns, Skip::Terminating)),
        Ok(Some(false)) => None,
        Ok(None) => {
            if !ctx.namespace_get_refused.swap(true, Ordering::Relaxed) {
                warn!("cannot read namespaces named with -n, so a terminating one is not recognised before writing; grant `get` on namespaces (see rbac.yaml)");
            }
            None
        }
        Err(e) => {
            warn!(namespace = ns, error = %e, "namespace failed");
            Some(NamespaceReport::failed(ns, e.to_string()))
        }
    }
}

/// Makes the namespace's Secret current, as listed or read; `Err` is the namespace's report
/// when that fails (or it turns out to be terminating).
async fn make_current(
    ctx: &Ctx<'_>,
    ns: &str,
    shield: &Shield,
) -> Result<SecretOutcome, NamespaceReport> {
    let secrets = Secrets::new(ctx.cluster, ns, &ctx.opts.run.target.secret_name);
    let written = ctx.ledger.of(ns);
    let found = match ctx.known_secret(ns) {
        Some(found) => Ok(found),
        None => secrets.find(&written, &ctx.lazy.wanted, ctx.policy()).await,
    };
    let held = found.as_ref().ok().and_then(|f| f.expires_at);
    let result = match found {
        Ok(found) => {
            let ensured = secrets
                .ensure(&written, ctx.lazy, ctx.policy(), found, shield)
                .await;
            if let Ok(ensured) = &ensured {
                ctx.wrote(ns, ensured);
            }
            ensured.map(|e| e.outcome)
        }
        Err(e) => Err(e),
    };
    // What this namespace's Secret holds after the pass, unless it was written (then the new
    // token's expiry counts).
    if !matches!(result, Ok(SecretOutcome::Created | SecretOutcome::Updated)) {
        ctx.held_expiry(held);
    }
    result.map_err(|e| match e {
        SecretError::Terminating => skipped(ns, Skip::Terminating),
        e => {
            // A failed token fetch is reported once, as the run's fatal error.
            if matches!(e, SecretError::Token(_)) {
                debug!(namespace = ns, "stopped: no ECR token");
            } else {
                warn!(namespace = ns, error = %e, "namespace failed");
            }
            NamespaceReport::failed(ns, e.to_string())
        }
    })
}

/// Links the Secret in each chosen ServiceAccount, into `report`; `false` when they could not
/// be listed.
async fn link_all(ctx: &Ctx<'_>, ns: &str, report: &mut NamespaceReport) -> bool {
    let service_accounts = &ctx.opts.run.target.service_accounts;
    let accounts = match service_accounts.names(ctx.cluster, ns).await {
        Ok(names) => names,
        Err(e) => {
            report.fail_service_account("*", e.to_string());
            return false;
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
    true
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
            let ours = stuckpods::Ours {
                secret,
                hosts: &hosts,
                linked,
            };
            match stuckpods::delete(ctx.cluster, ns, pod, &ours, ctx.opts.dry_run).await {
                Ok(Deletion::Deleted) => {
                    info!(namespace = ns, pod = %stuck.name, dry_run = ctx.opts.dry_run, "deleted stuck pod");
                    stuck.action = PodAction::Deleted;
                }
                Ok(Deletion::Spared(why)) => stuck.why = why,
                Err(e) => {
                    warn!(namespace = ns, pod = %stuck.name, error = %e, "deleting stuck pod failed");
                    report.fail(e);
                }
            }
        }
        report.stuck_pods.push(stuck);
    }
}
