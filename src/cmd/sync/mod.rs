//! `sync`: write a current pull Secret into every selected namespace and link it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tracing::{debug, info, warn};

mod namespace;
mod tokens;

use super::{bounded, list_secrets, prune, setup, stopped, Limits, RunOptions};
use crate::argocd;
use crate::cluster::{Cluster, Parts};
use crate::ecr::{EcrClientConfig, EcrOptions, EcrProgress};
use crate::error::Result;
use crate::events::{self, EventOptions};
use crate::namespaces::{self, Action, Planned, Scope};
use crate::pullsecret::{Found, Ledger, LedgerError, Policy, SecretOutcome, Secrets};
use crate::report::RunReport;
use crate::serviceaccount::{self, Unlink};
use crate::shutdown::Stop;
use crate::stuckpods::{self, ByNamespace};
use namespace::{sync_namespace, Ctx, NamespaceInput, Seen, Writes};
use tokens::Tokens;

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
    /// Where the ledger of our writes is (see `pullsecret::Ledger`).
    pub(crate) state_namespace: String,
    pub(crate) events: EventOptions,
    /// Also keep Argo CD's repository credentials there (see `argocd`).
    pub(crate) argocd_namespace: Option<String>,
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

/// Runs one pass (with --tenants whose rules name other Secret names, one per name). Errors
/// returned here are fatal and come before any write; a fatal error met later (no ECR token, a
/// signal, the deadline during setup) is recorded in the report, with what the run had cost by
/// then.
pub(crate) async fn run(opts: &SyncOptions, stop: &Stop) -> Result<RunReport> {
    super::per_secret_name(&opts.run, stop, |run| async move {
        let opts = SyncOptions {
            run,
            ..opts.clone()
        };
        run_one(&opts, stop).await
    })
    .await
}

/// [`run`], for one Secret name.
async fn run_one(opts: &SyncOptions, stop: &Stop) -> Result<RunReport> {
    let started = Instant::now();
    let limits = opts.run.pace.start(stop);
    // Local work first, so bad input fails before any network call.
    let ecr = EcrClientConfig::load(&opts.aws, opts.run.cluster.request_timeout);
    let ecr = setup(&limits, ecr, EcrClientConfig::unread).await?;
    let cluster = super::connect(&opts.run.cluster, &limits).await?;
    let pass = Pass {
        opts,
        cluster: &cluster,
        limits,
        progress: ecr.progress(),
        started,
    };
    let report = RunReport::new("sync", opts.run.target.secret_name.clone(), opts.dry_run);
    let reads = match pass.read(ecr).await {
        Ok(reads) => reads,
        Err(e) => return Ok(pass.failed(report, &e)),
    };
    if reads.plan.is_empty() {
        warn!("no namespace matches the selection; nothing to do");
        return Ok(pass.ended(report));
    }
    Ok(pass.write(report, reads, stop).await)
}

/// What the steps of one pass share.
struct Pass<'a> {
    opts: &'a SyncOptions,
    cluster: &'a Cluster,
    limits: Limits<'a>,
    progress: EcrProgress,
    started: Instant,
}

/// What the reads before any write found (see [`Pass::read`]).
struct Reads {
    plan: Vec<Planned>,
    /// The ServiceAccounts the cluster-wide lists found, by namespace, then by name.
    accounts: HashMap<String, HashMap<String, serviceaccount::Listed>>,
    stuck: ByNamespace,
    tokens: Tokens,
    /// With --tenants: the rule that takes each namespace the plan keeps.
    tenant_of: HashMap<String, usize>,
    /// Our Secrets as listed and judged; `None` when they could not be listed.
    secrets: Option<HashMap<String, Option<Found>>>,
    /// What our last writes produced, and why it could not be read, if so.
    ledger: (Ledger, Option<LedgerError>),
}

impl Pass<'_> {
    /// Reads only: the namespaces, the ServiceAccounts to link (and stuck pods), the AWS
    /// credentials and our Secrets; with --refresh-all (every namespace needs it) the token
    /// too. Otherwise ECR is called only once a write is due. A failed fetch is remembered and
    /// reported by the namespaces, so nothing is written.
    async fn read(&self, ecr: EcrClientConfig) -> Result<Reads> {
        let (opts, cluster, limits) = (self.opts, self.cluster, &self.limits);
        let scope = if opts.prune {
            Scope::Everything
        } else {
            Scope::Selected
        };
        let listing = namespaces::plan(cluster, &opts.run.selection, scope);
        let listing = setup(limits, listing, cluster.hung("listing namespaces"));
        let accounts = async { Ok(super::list_accounts(cluster, &opts.run).await) };
        let accounts = setup(limits, accounts, cluster.hung("listing service accounts"));
        let stuck = list_stuck(cluster, opts);
        let stuck = setup(
            limits,
            stuck,
            cluster.hung("listing pods (--delete-stuck-pods)"),
        );
        let accounts = async {
            let (accounts, stuck) = tokio::join!(accounts, stuck);
            Ok((accounts?, stuck?))
        };
        let hung = |m| self.progress.hung(m);
        let (plan, accounts, token, tenant_of) =
            if opts.prune || opts.run.selection.tenants.is_some() {
                // With --prune a selection that matches nothing is bad input (exit 2): know that
                // before calling AWS. With --tenants our Secrets are judged by each namespace's
                // tenant, known from the listing. Otherwise the lists run side by side.
                let plan = listing.await?;
                let tenant_of: HashMap<String, usize> = plan
                    .iter()
                    .filter_map(|p| Some((p.name.clone(), p.tenant?)))
                    .collect();
                let token = setup(limits, self.token_and_secrets(ecr, &tenant_of), hung);
                let (accounts, token) = tokio::join!(accounts, token);
                (Ok(plan), accounts, token, tenant_of)
            } else {
                let none = HashMap::new();
                let token = setup(limits, self.token_and_secrets(ecr, &none), hung);
                let (plan, accounts, token) = tokio::join!(listing, accounts, token);
                (plan, accounts, token, none)
            };
        // The first failure in this order is the one reported.
        let plan = plan?;
        let ((accounts, stuck), (tokens, secrets, ledger)) = (accounts?, token?);
        Ok(Reads {
            plan,
            accounts,
            stuck,
            tokens,
            tenant_of,
            secrets,
            ledger,
        })
    }

    /// The tokens as needed, and beside them the ledger and our Secrets, judged from their
    /// metadata as they arrive (by the tenant `tenant_of` names): where a write is due.
    async fn token_and_secrets(
        &self,
        ecr: EcrClientConfig,
        tenant_of: &HashMap<String, usize>,
    ) -> Result<(
        Tokens,
        Option<HashMap<String, Option<Found>>>,
        (Ledger, Option<LedgerError>),
    )> {
        let (opts, cluster) = (self.opts, self.cluster);
        let tenants = opts.run.selection.tenants.as_deref();
        let argocd = opts.argocd_namespace.is_some() && opts.run.is_first_pass();
        let tokens = Tokens::new(ecr, tenants, &opts.aws.registries, argocd).await;
        let now = jiff::Timestamp::now();
        let secrets = async {
            let secret = &opts.run.target.secret_name;
            let (ledger, unread) = Ledger::read(cluster, &opts.state_namespace, secret).await;
            let judge = |s: &k8s_openapi::api::core::v1::Secret| {
                let ns = s.metadata.namespace.as_deref().unwrap_or_default();
                let written = ledger.of(ns);
                let wanted = &tokens.of(tenant_of.get(ns).copied()).wanted;
                Found::of_metadata(s, &written, wanted, policy(opts), now)
            };
            let listed = list_secrets(cluster, &opts.run, Parts::Metadata, judge).await;
            Ok((listed, (ledger, unread)))
        };
        let secrets = setup(&self.limits, secrets, cluster.hung("listing secrets"));
        let fetch = async {
            // Every namespace is due: without --tenants the one token is fetched beside the
            // lists; a tenant's only once its namespaces are known to be there.
            if opts.refresh_all && tenants.is_none() {
                let _ = tokens.of(None).get().await;
            }
        };
        let (secrets, ()) = tokio::join!(secrets, fetch);
        let (secrets, ledger) = secrets?;
        Ok((tokens, secrets, ledger))
    }

    /// Syncs the selected namespaces, then prunes the others with --prune.
    async fn write(&self, mut report: RunReport, reads: Reads, stop: &Stop) -> RunReport {
        let Reads {
            plan,
            mut accounts,
            mut stuck,
            tokens,
            tenant_of,
            mut secrets,
            ledger: (ledger, unread),
        } = reads;
        report.warnings.extend(unread.map(|e| e.to_string()));
        let (to_prune, to_sync): (Vec<Planned>, Vec<Planned>) =
            plan.into_iter().partition(|p| p.action == Action::Prune);
        info!(namespaces = to_sync.len(), "selected namespaces");
        let synced: HashSet<&str> = to_sync
            .iter()
            .filter(|p| matches!(p.action, Action::Keep { .. }))
            .map(|p| p.name.as_str())
            .collect();
        // Where the cluster-wide list saw no Secret of ours in a namespace it covers, a ledger
        // entry is left from a deleted namespace (or Secret): dropped when the ledger is written.
        let listed: Option<HashSet<String>> = secrets.as_ref().map(|s| s.keys().cloned().collect());
        let selection = &self.opts.run.selection;
        let gone = |ns: &str| {
            listed
                .as_ref()
                .is_some_and(|l| selection.matches(ns) && !l.contains(ns))
        };
        if let Some(secrets) = secrets.as_mut() {
            secrets.retain(|ns, _| synced.contains(ns.as_str()));
            let judged = match self
                .read_unvouched(&tokens, &tenant_of, &ledger, secrets)
                .await
            {
                Ok(()) => {
                    self.fetch_if_due(&tokens, &tenant_of, secrets, &synced)
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = judged {
                return self.failed(report, &e);
            }
        }
        let inputs: Vec<NamespaceInput> = to_sync
            .into_iter()
            .map(|planned| NamespaceInput {
                secret: Seen::of(secrets.as_mut(), &planned.name),
                accounts: accounts.remove(&planned.name).unwrap_or_default(),
                stuck: stuck.remove(&planned.name).unwrap_or_default(),
                planned,
            })
            .collect();
        let ctx = Ctx::new(self.cluster, self.opts, &tokens, &ledger);
        let limits = self.limits;
        let done = bounded(
            inputs,
            self.opts.run.pace.concurrency,
            limits,
            |input, shield| sync_namespace(&ctx, input, shield),
            |name, cut| limits.cut_short(name, cut),
        )
        .await;
        let earliest_held = done.iter().filter_map(|n| n.held).min();
        report.namespaces = done;
        let Writes { written, repaired } = ctx.into_writes();
        report.warnings.extend(repaired);
        if let Err(e) = ledger.record(self.cluster, written, gone).await {
            warn!("{e}");
            report.warnings.push(e.to_string());
        }
        self.argocd(&mut report, &tokens, stop).await;
        self.finish(report, &tokens, earliest_held, to_prune, stop)
            .await
    }

    /// With --argocd-namespace (once, in the run for --secret-name): Argo CD's repository
    /// credentials, from the run's own token. Not after a signal, or when that token failed
    /// (the run's error already says why).
    async fn argocd(&self, report: &mut RunReport, tokens: &Tokens, stop: &Stop) {
        let Some(ns) = self.opts.argocd_namespace.as_deref() else {
            return;
        };
        if !self.opts.run.is_first_pass() || stop.requested().is_some() || tokens.fatal().is_some()
        {
            return;
        }
        let policy = argocd::SyncPolicy {
            dry_run: self.opts.dry_run,
            refresh_before: self.opts.refresh_before,
            refresh_all: self.opts.refresh_all,
        };
        let state = &self.opts.state_namespace;
        let done = argocd::sync(self.cluster, ns, state, tokens.own(), policy);
        // Within --timeout like the namespaces: each write is one apply, so cutting it short
        // leaves no Secret half-made (the next pass judges again).
        let done = tokio::time::timeout_at(self.limits.deadline, done)
            .await
            .unwrap_or_else(|_| {
                argocd::ArgoCdReport::cut_short(ns, self.limits.message(super::Cut::Deadline))
            });
        report.add_argocd(done);
    }

    /// The Secrets the metadata list showed but could not vouch for (changed since our last
    /// write, or no ledger), read in full and judged as a setup step, so that whether the token
    /// is needed is known before any namespace work. One that cannot be read is left to its
    /// namespace, which reads it again and reports why.
    async fn read_unvouched(
        &self,
        tokens: &Tokens,
        tenant_of: &HashMap<String, usize>,
        ledger: &Ledger,
        secrets: &mut HashMap<String, Option<Found>>,
    ) -> Result<()> {
        let unvouched: Vec<String> = secrets
            .iter()
            .filter(|(_, found)| found.is_none())
            .map(|(ns, _)| ns.clone())
            .collect();
        if unvouched.is_empty() {
            return Ok(());
        }
        let (cluster, policy) = (self.cluster, policy(self.opts));
        let name = self.opts.run.target.secret_name.as_str();
        let reads = futures::stream::iter(unvouched)
            .map(|ns| async move {
                let written = ledger.of(&ns);
                let wanted = &tokens.of(tenant_of.get(ns.as_str()).copied()).wanted;
                let found = Secrets::new(cluster, &ns, name)
                    .find(&written, wanted, policy)
                    .await;
                (ns, found)
            })
            .buffer_unordered(self.opts.run.pace.concurrency)
            .collect::<Vec<_>>();
        let reads = async { Ok(reads.await) };
        let hung = cluster.hung("reading secrets the list could not vouch for");
        for (ns, found) in setup(&self.limits, reads, hung).await? {
            match found {
                Ok(found) => {
                    secrets.insert(ns, Some(found));
                }
                Err(e) => debug!(namespace = %ns, error = %e, "secret left to its namespace"),
            }
        }
        Ok(())
    }

    /// The lists show a write is due: fetch the token now (each due tenant's, side by side),
    /// as a named setup step, so an ECR that hangs ends the run at --timeout naming ECR, not
    /// as namespaces that did not finish.
    async fn fetch_if_due(
        &self,
        tokens: &Tokens,
        tenant_of: &HashMap<String, usize>,
        secrets: &HashMap<String, Option<Found>>,
        synced: &HashSet<&str>,
    ) -> Result<()> {
        let policy = policy(self.opts);
        let mut due: Vec<&crate::pullsecret::LazyDesired> = Vec::new();
        for ns in synced {
            let writes = secrets
                .get(*ns)
                .is_none_or(|f| f.as_ref().is_some_and(|f| f.writes(policy)));
            let lazy = tokens.of(tenant_of.get(*ns).copied());
            if writes && !due.iter().any(|d| std::ptr::eq(*d, lazy)) {
                due.push(lazy);
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let token = async {
            futures::future::join_all(due.iter().map(|l| l.get())).await;
            Ok(())
        };
        setup(&self.limits, token, |m| self.progress.hung(m)).await
    }

    /// Prunes (with --prune) unless the token failed or a signal came, and completes the
    /// report: the token's expiry and registries, the cost, and the fatal error if any.
    async fn finish(
        &self,
        mut report: RunReport,
        tokens: &Tokens,
        earliest_held: Option<jiff::Timestamp>,
        to_prune: Vec<Planned>,
        stop: &Stop,
    ) -> RunReport {
        let opts = self.opts;
        let token_error = tokens.fatal();
        for (tenant, e) in tokens.failed_tenants() {
            report.failed_tenants.push(crate::report::FailedTenant {
                tenant,
                error: e.to_string(),
            });
        }
        // No token, or asked to stop: prune nothing (that is never urgent).
        if opts.prune && token_error.is_none() && stop.requested().is_none() {
            let pruned = prune::prune_all(
                self.cluster,
                &opts.run,
                to_prune,
                opts.dry_run,
                Unlink::Recorded,
                self.limits,
            )
            .await;
            report.namespaces.extend(pruned);
        }
        // Told to the namespaces' owners; never in a dry run, nor when asked to stop.
        if opts.events.enabled && !opts.dry_run && stop.requested().is_none() {
            let secret = &opts.run.target.secret_name;
            let at_once = opts.run.pace.concurrency;
            let told = events::record(self.cluster, &report, secret, &opts.events, at_once).await;
            if let Err(e) = told {
                report.warnings.push(e);
            }
        }
        token_expiry(&mut report, tokens, earliest_held);
        report.ecr_calls = tokens.ecr_calls();
        report.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        // Namespaces done before the failure (fresh Secrets, links) keep their results.
        let fatal = token_error.or_else(|| stop.requested().map(|s| stopped(s, &report)));
        report.finish(self.cluster.stats(), self.started, fatal.as_ref());
        report
    }

    /// The report of a pass that ended before any namespace was done.
    fn ended(&self, mut report: RunReport) -> RunReport {
        report.ecr_calls = self.progress.calls();
        report.finish(self.cluster.stats(), self.started, None);
        report
    }

    /// [`Self::ended`], on a fatal error.
    fn failed(&self, mut report: RunReport, e: &crate::Error) -> RunReport {
        report.ecr_calls = self.progress.calls();
        report.finish(self.cluster.stats(), self.started, Some(e));
        report
    }
}

/// The earliest expiry among our Secrets now: those left in place, and the new token if any
/// was written with it; and the registries the new token covers.
fn token_expiry(report: &mut RunReport, tokens: &Tokens, held: Option<jiff::Timestamp>) {
    let wrote = report.namespaces.iter().any(|n| {
        matches!(
            n.secret,
            Some(SecretOutcome::Created | SecretOutcome::Updated)
        )
    });
    let mut earliest = held;
    let mut registries: Vec<String> = Vec::new();
    for desired in tokens.fetched() {
        registries.extend(desired.hosts.iter().cloned());
        if wrote {
            earliest = earliest.into_iter().chain(desired.expires_at).min();
        }
    }
    registries.sort();
    registries.dedup();
    report.registries = registries;
    report.token_expires_at = earliest;
}
