//! One namespace of a `sync` pass: its Secret made current, linked, and the pods it heals.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tracing::{debug, info, warn};

use super::tokens::Tokens;
use super::{policy, SyncOptions};
use crate::cluster::Cluster;
use crate::namespaces::{self, Action, Planned, Skip};
use crate::pullsecret::{
    self, Ensured, Found, LazyDesired, Ledger, Policy, SecretError, SecretOutcome, Secrets,
};
use crate::report::{NamespaceReport, Outcome, SecretTrouble};
use crate::serviceaccount::{self, ServiceAccountOutcome};
use crate::shutdown::Shield;
use crate::stuckpods::{self, Deletion, PodAction};

/// One namespace's share of the reads made before any write: its Secret as seen, the
/// ServiceAccounts the cluster-wide lists found there, and its stuck pods. Handed to the
/// namespace's task by value: no task reads another's.
#[derive(Debug)]
pub(super) struct NamespaceInput {
    pub(super) planned: Planned,
    pub(super) secret: Seen,
    /// By ServiceAccount name; one not here is read on its own.
    pub(super) accounts: HashMap<String, serviceaccount::Listed>,
    /// With --delete-stuck-pods: the pods waiting on a pull without our Secret.
    pub(super) stuck: Vec<stuckpods::Candidate>,
}

impl crate::cmd::Named for NamespaceInput {
    fn name(&self) -> &str {
        &self.planned.name
    }
}

/// Our Secret in a namespace, as the reads before any write saw it.
#[derive(Debug)]
pub(super) enum Seen {
    /// No cluster-wide list was made (every -n a plain name, or the list refused): read it in
    /// the namespace.
    NotListed,
    /// The list covered the namespace and showed none.
    Absent,
    /// Judged: from the metadata the ledger vouches for, or read in full before any write.
    Judged(Box<Found>),
    /// Listed, but the metadata could not vouch for it and reading it in full failed: read it
    /// again in the namespace, which reports why if that fails too.
    Unread,
}

impl Seen {
    /// From the cluster-wide list (`None`: not made), for the namespace `ns`.
    pub(super) fn of(listed: Option<&mut HashMap<String, Option<Found>>>, ns: &str) -> Self {
        match listed.map(|l| l.remove(ns)) {
            None => Seen::NotListed,
            Some(None) => Seen::Absent,
            Some(Some(None)) => Seen::Unread,
            Some(Some(Some(found))) => Seen::Judged(Box::new(found)),
        }
    }
}

/// What this pass's writes produced: the ledger's new entries (namespace to resourceVersion),
/// and the Secrets someone else's data keys were removed from.
#[derive(Default)]
pub(super) struct Writes {
    pub(super) written: BTreeMap<String, String>,
    pub(super) repaired: Vec<String>,
}

/// What every namespace of the pass shares, read-only but for one sink: the writes, recorded
/// the moment each is answered, so a namespace cut short afterwards (the deadline, a signal)
/// still reaches the ledger.
pub(super) struct Ctx<'a> {
    cluster: &'a Cluster,
    opts: &'a SyncOptions,
    tokens: &'a Tokens,
    ledger: &'a Ledger,
    writes: Mutex<Writes>,
    /// `get` on a namespace was refused once already (warned about once per run).
    namespace_get_refused: AtomicBool,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        cluster: &'a Cluster,
        opts: &'a SyncOptions,
        tokens: &'a Tokens,
        ledger: &'a Ledger,
    ) -> Self {
        Self {
            cluster,
            opts,
            tokens,
            ledger,
            writes: Mutex::default(),
            namespace_get_refused: AtomicBool::new(false),
        }
    }

    pub(super) fn into_writes(self) -> Writes {
        self.writes.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Remembers what the write in `ns` produced.
    fn wrote(&self, ns: &str, ensured: &Ensured) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rv) = &ensured.resource_version {
            writes.written.insert(ns.to_string(), rv.clone());
        }
        if !ensured.removed.is_empty() {
            writes.repaired.push(format!(
                "namespace {ns}: removed data keys ecr-refresh does not write from secret {} ({}); the admission policy refuses every write while they are there",
                self.opts.run.target.secret_name,
                ensured.removed.join(", ")
            ));
        }
    }

    fn policy(&self) -> Policy {
        policy(self.opts)
    }
}

fn skipped(ns: &str, why: Skip) -> NamespaceReport {
    info!(namespace = ns, "skipped: {why}");
    NamespaceReport::skipped(ns, &why.to_string())
}

pub(super) async fn sync_namespace(
    ctx: &Ctx<'_>,
    input: NamespaceInput,
    shield: Shield,
) -> NamespaceReport {
    let NamespaceInput {
        planned,
        secret,
        mut accounts,
        stuck,
    } = input;
    let ns = planned.name.as_str();
    let tenant = ctx.opts.run.tenant_name(planned.tenant);
    let mut report = sync_taken(
        ctx,
        planned.action,
        ns,
        planned.tenant,
        secret,
        &mut accounts,
        stuck,
        shield,
    )
    .await;
    report.tenant = tenant;
    report
}

/// [`sync_namespace`], once the namespace's tenant (if any) is known.
#[allow(clippy::too_many_arguments)]
async fn sync_taken(
    ctx: &Ctx<'_>,
    action: Action,
    ns: &str,
    tenant: Option<usize>,
    secret: Seen,
    accounts: &mut HashMap<String, serviceaccount::Listed>,
    stuck: Vec<stuckpods::Candidate>,
    shield: Shield,
) -> NamespaceReport {
    if let Action::Skip(why) = action {
        return skipped(ns, why);
    }
    let lazy = ctx.tokens.of(tenant);
    // Named on the command line, so not listed: look it up before writing.
    if !matches!(action, Action::Keep { listed: true }) {
        if let Some(report) = unless_terminating(ctx, ns).await {
            return report;
        }
    }
    let mut report = match make_current(ctx, lazy, ns, secret, &shield).await {
        Ok(report) => report,
        Err(report) => return report,
    };
    if link_all(ctx, tenant, ns, &mut report, accounts).await {
        heal_stuck(ctx, lazy, ns, &mut report, stuck).await;
        info!(namespace = ns, outcome = ?report.outcome, "namespace done");
    }
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

/// Makes the namespace's Secret current, as seen or read, and starts the namespace's report;
/// `Err` when that fails (or it turns out to be terminating). Either report holds the expiry of
/// the Secret of ours left in place (`held`), unless it was written (then the new token's
/// expiry counts).
async fn make_current(
    ctx: &Ctx<'_>,
    lazy: &LazyDesired,
    ns: &str,
    seen: Seen,
    shield: &Shield,
) -> Result<NamespaceReport, NamespaceReport> {
    let secrets = Secrets::new(ctx.cluster, ns, &ctx.opts.run.target.secret_name);
    let written = ctx.ledger.of(ns);
    let wanted = &lazy.wanted;
    let found = match seen {
        Seen::Judged(found) => Ok(*found),
        Seen::Absent => Ok(Found::of(
            None,
            &written,
            wanted,
            ctx.policy(),
            jiff::Timestamp::now(),
        )),
        Seen::NotListed | Seen::Unread => secrets.find(&written, wanted, ctx.policy()).await,
    };
    let held = found.as_ref().ok().and_then(|f| f.expires_at);
    let result = match found {
        Ok(found) => {
            let ensured = secrets
                .ensure(&written, lazy, ctx.policy(), found, shield)
                .await;
            if let Ok(ensured) = &ensured {
                ctx.wrote(ns, ensured);
            }
            ensured.map(|e| (e.outcome, e.uid))
        }
        Err(e) => Err(e),
    };
    let mut report = match result {
        Ok((outcome, uid)) => {
            let mut report = NamespaceReport::new(ns, outcome);
            report.secret_uid = uid;
            let written = matches!(outcome, SecretOutcome::Created | SecretOutcome::Updated);
            report.held = held.filter(|_| !written);
            return Ok(report);
        }
        Err(SecretError::Terminating) => skipped(ns, Skip::Terminating),
        Err(e) => {
            // A failed token fetch is reported once, as the run's fatal error.
            if matches!(e, SecretError::Token(_)) {
                debug!(namespace = ns, "stopped: no ECR token");
            } else {
                warn!(namespace = ns, error = %e, "namespace failed");
            }
            let mut report = NamespaceReport::failed(ns, e.to_string());
            report.secret_trouble = match e {
                SecretError::NotOurs { .. } | SecretError::WrongType { .. } => {
                    Some(SecretTrouble::NameTaken(e.to_string()))
                }
                SecretError::Call { .. } => Some(SecretTrouble::NotWritten(e.to_string())),
                _ => None,
            };
            report
        }
    };
    report.held = held;
    Err(report)
}

/// Links the Secret in each chosen ServiceAccount, into `report`; `false` when they could not
/// be listed.
async fn link_all(
    ctx: &Ctx<'_>,
    tenant: Option<usize>,
    ns: &str,
    report: &mut NamespaceReport,
    listed: &mut HashMap<String, serviceaccount::Listed>,
) -> bool {
    let service_accounts = &ctx.opts.run.service_accounts(tenant);
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
            listed.remove(sa),
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
async fn heal_stuck(
    ctx: &Ctx<'_>,
    lazy: &LazyDesired,
    ns: &str,
    report: &mut NamespaceReport,
    pods: Vec<stuckpods::Candidate>,
) {
    if pods.is_empty() || report.outcome == Outcome::Failed {
        return;
    }
    let secret = ctx.opts.run.target.secret_name.as_str();
    let hosts = match lazy.fetched() {
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
