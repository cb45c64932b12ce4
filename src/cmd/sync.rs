//! `sync`: write a current pull Secret into every selected namespace and link it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use super::{bounded, prune, stopped, unless_stopped, Limits, ServiceAccounts, Shield, Target};
use crate::cluster::{explain, explain_write, is_status, Cluster, ClusterOptions};
use crate::ecr::{AwsOptions, EcrClientConfig};
use crate::error::{Error, Result};
use crate::namespaces::{self, Selection, Target as Namespace, OPT_OUT_ANNOTATION};
use crate::pullsecret::{self, Applied, ApplyError, Desired, State, SECRET_TYPE};
use crate::report::{NamespaceReport, SecretOutcome, SyncReport};
use crate::shutdown::Stop;
use crate::{serviceaccount, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE};

/// Everything `sync` needs, already validated.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub cluster: ClusterOptions,
    pub aws: AwsOptions,
    pub selection: Selection,
    pub target: Target,
    pub force: bool,
    pub dry_run: bool,
    pub concurrency: usize,
    pub service_account_wait: Duration,
    pub timeout: Duration,
    pub refresh_before: Option<Duration>,
    pub prune: bool,
}

/// Why one namespace failed. Messages name the object and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("namespace does not exist")]
    NamespaceNotFound,
    #[error("secret {secret} exists and is not managed by ecr-refresh (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); left unchanged (use --force to take it over)")]
    SecretNotOwned { secret: String },
    #[error("secret {secret} exists with type {found:?}, not {SECRET_TYPE}; left unchanged (use --force to replace it)")]
    SecretWrongType { secret: String, found: String },
    #[error("reading the namespace: {message}")]
    GetNamespace { message: String },
    #[error("reading secret {secret}: {message}")]
    GetSecret { secret: String, message: String },
    #[error("writing secret {secret}: {message}")]
    ApplySecret { secret: String, message: String },
    #[error("replacing secret {secret} of the wrong type: {message}")]
    ReplaceSecret { secret: String, message: String },
    #[error("no ECR token, so nothing was written: {0}")]
    Token(Error),
    #[error(transparent)]
    ServiceAccount(#[from] serviceaccount::SaError),
    #[error("did not finish before the run deadline (--timeout {timeout})")]
    Deadline { timeout: String },
}

/// The token is fetched lazily, once, by the first namespace that needs it: when every Secret
/// is still fresh (--refresh-before), ECR is not called at all.
struct Token {
    ecr: EcrClientConfig,
    request: String,
    expected: crate::ecr::ExpectedHosts,
    registries: Vec<crate::ecr::RegistrySpec>,
    cell: OnceCell<Result<Arc<Desired>, Error>>,
}

impl Token {
    async fn get(&self) -> Result<Arc<Desired>, Error> {
        self.cell
            .get_or_init(|| async {
                let creds = self.ecr.fetch(&self.registries).await?;
                Ok(Arc::new(Desired::new(&creds, &self.request)))
            })
            .await
            .clone()
    }
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    opts: &'a SyncOptions,
    token: &'a Token,
    /// `get` on a namespace was refused once already (warned about once per run).
    namespace_get_refused: AtomicBool,
    /// ServiceAccounts already read by a cluster-wide list, by (namespace, name).
    accounts: Mutex<HashMap<(String, String), serviceaccount::Listed>>,
}

impl Ctx<'_> {
    fn known_accounts(&self, ns: &str, name: &str) -> Option<serviceaccount::Listed> {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        accounts.remove(&(ns.to_string(), name.to_string()))
    }
}

/// Reads the ServiceAccounts to link with one cluster-wide list per name, not one GET per
/// namespace. Not when every namespace is named literally (a GET each is cheaper than listing
/// the whole cluster), nor when listing is refused: then each one is read on its own.
async fn list_accounts(
    cluster: &Cluster,
    opts: &SyncOptions,
    targets: &[Namespace],
) -> HashMap<(String, String), serviceaccount::Listed> {
    let mut known = HashMap::new();
    let ServiceAccounts::Named(names) = &opts.target.service_accounts else {
        return known;
    };
    if opts.selection.literal_names().is_some() {
        return known;
    }
    let wanted: HashSet<&str> = targets
        .iter()
        .filter(|t| !t.opted_out && !t.terminating)
        .map(|t| t.name.as_str())
        .collect();
    for name in names {
        match serviceaccount::list_everywhere(cluster, name, |ns| wanted.contains(ns)).await {
            Ok(found) => known.extend(found.into_iter().map(|(ns, sa)| ((ns, name.clone()), sa))),
            Err(e) => info!(
                service_account = %name,
                error = %explain(&e),
                "cannot list service accounts cluster-wide; reading them one namespace at a time"
            ),
        }
    }
    known
}

/// Runs one pass. Errors returned here are fatal and come before any write; a fatal error met
/// later (no ECR token, a signal) is recorded in the report next to the namespace results.
pub async fn run(opts: &SyncOptions, stop: &Stop) -> Result<SyncReport> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    // Local work first, so bad input fails before any network call.
    let ecr = EcrClientConfig::load(&opts.aws, opts.cluster.request_timeout).await?;
    let cluster = Cluster::new(&opts.cluster).await?;
    let (targets, to_prune) = unless_stopped(stop, async {
        cluster.check_access().await?;
        if opts.prune {
            prune::partition(&cluster, &opts.selection).await
        } else {
            Ok((
                namespaces::resolve(&cluster, &opts.selection).await?,
                Vec::new(),
            ))
        }
    })
    .await?;
    let mut report = SyncReport::new("sync", opts.target.secret_name.clone(), opts.dry_run);
    if targets.is_empty() && to_prune.is_empty() {
        warn!("no namespace matches the selection; nothing to do");
        report.finish(cluster.stats(), started);
        return Ok(report);
    }
    info!(namespaces = targets.len(), "selected namespaces");

    let token = Token {
        request: ecr.request_fingerprint(&opts.aws.registries).await,
        expected: ecr.expected_hosts(&opts.aws.registries),
        registries: opts.aws.registries.clone(),
        ecr,
        cell: OnceCell::new(),
    };
    let ctx = Ctx {
        cluster: &cluster,
        opts,
        token: &token,
        namespace_get_refused: AtomicBool::new(false),
        accounts: Mutex::new(list_accounts(&cluster, opts, &targets).await),
    };
    let limits = Limits {
        deadline,
        timeout: opts.timeout,
        stop,
    };
    report.namespaces = bounded(
        targets,
        opts.concurrency,
        limits,
        |ns, shield| sync_namespace(&ctx, ns, shield),
        |ns, cut| NamespaceReport::failed(&ns.name, limits.message(cut)),
    )
    .await;
    let token_error = match token.cell.get() {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    // No token, or asked to stop: prune nothing (that is never urgent).
    if opts.prune && token_error.is_none() && stop.requested().is_none() {
        let pruned = prune::prune_all(
            &cluster,
            &opts.target,
            to_prune,
            opts.dry_run,
            false,
            opts.concurrency,
            limits,
        )
        .await;
        report.namespaces.extend(pruned);
    }
    if let Some(Ok(desired)) = token.cell.get() {
        report.registries = desired.hosts.clone();
        report.token_expires_at = desired.expires_at;
    }
    report.ecr_calls = token.ecr.calls.load(Ordering::Relaxed);
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

async fn sync_namespace(ctx: &Ctx<'_>, target: Namespace, shield: Shield) -> NamespaceReport {
    let ns = target.name.as_str();
    if target.opted_out {
        info!(namespace = ns, "skipped: opted out");
        return NamespaceReport::skipped(
            ns,
            &format!("opted out by annotation {OPT_OUT_ANNOTATION}"),
        );
    }
    // A terminating namespace refuses only creates, so a literal name is looked up first:
    // otherwise an existing Secret or ServiceAccount there would still be written.
    let terminating = if target.listed {
        target.terminating
    } else {
        match read_namespace(ctx, ns).await {
            Ok(t) => t,
            Err(e) => {
                warn!(namespace = ns, error = %e, "namespace failed");
                return NamespaceReport::failed(ns, e.to_string());
            }
        }
    };
    if terminating {
        info!(namespace = ns, "skipped: namespace is terminating");
        return NamespaceReport::skipped(ns, "namespace is terminating");
    }
    let secret = match ensure_secret(ctx, ns, &shield).await {
        Ok(outcome) => outcome,
        Err(Step::Terminating) => {
            info!(namespace = ns, "skipped: namespace is terminating");
            return NamespaceReport::skipped(ns, "namespace is terminating");
        }
        Err(Step::Failed(e)) => {
            // A failed token fetch is reported once, as the run's fatal error.
            if matches!(e, NamespaceError::Token(_)) {
                debug!(namespace = ns, "stopped: no ECR token");
            } else {
                warn!(namespace = ns, error = %e, "namespace failed");
            }
            return NamespaceReport::failed(ns, e.to_string());
        }
    };
    let mut report = NamespaceReport::new(ns, secret);
    let accounts = match ctx.opts.target.service_accounts(ctx.cluster, ns).await {
        Ok(names) => names,
        Err(e) => {
            report.fail_service_account("*", e.to_string());
            return report;
        }
    };
    // One that was listed and is gone by now is reported, not waited for.
    let if_missing = match ctx.opts.target.service_accounts {
        ServiceAccounts::All => serviceaccount::IfMissing::Report,
        ServiceAccounts::Named(_) => serviceaccount::IfMissing::Wait(ctx.opts.service_account_wait),
    };
    for sa in &accounts {
        let secret_name = &ctx.opts.target.secret_name;
        match serviceaccount::link(
            ctx.cluster,
            ns,
            sa,
            secret_name,
            if_missing,
            ctx.opts.dry_run,
            ctx.known_accounts(ns, sa),
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
    info!(namespace = ns, outcome = ?report.outcome, "namespace done");
    report
}

/// Whether a namespace named on the command line is terminating. Without `get` on namespaces
/// (RBAC from before this check) it is assumed live, as before, with one warning per run.
async fn read_namespace(ctx: &Ctx<'_>, ns: &str) -> Result<bool, NamespaceError> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.cluster.client());
    match ctx.cluster.call("get namespace", || api.get_opt(ns)).await {
        Ok(Some(n)) => Ok(n.metadata.deletion_timestamp.is_some()),
        Ok(None) => Err(NamespaceError::NamespaceNotFound),
        Err(e) if is_status(&e, |s| s.is_forbidden()) => {
            if !ctx.namespace_get_refused.swap(true, Ordering::Relaxed) {
                warn!(error = %explain(&e), "cannot read namespaces named with -n, so a terminating one is not recognised before writing; grant `get` on namespaces (see rbac.yaml)");
            }
            Ok(false)
        }
        Err(e) => Err(NamespaceError::GetNamespace {
            message: explain_write(&e),
        }),
    }
}

enum Step {
    Terminating,
    Failed(NamespaceError),
}

impl From<NamespaceError> for Step {
    fn from(e: NamespaceError) -> Self {
        Step::Failed(e)
    }
}

fn is_terminating(err: &kube::Error) -> bool {
    is_status(err, |s| {
        s.is_forbidden() && s.message.contains("because it is being terminated")
    })
}

fn is_namespace_missing(err: &kube::Error) -> bool {
    is_status(err, |s| {
        s.is_not_found() && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
    })
}

async fn ensure_secret(ctx: &Ctx<'_>, ns: &str, shield: &Shield) -> Result<SecretOutcome, Step> {
    let name = ctx.opts.target.secret_name.as_str();
    let api: Api<Secret> = Api::namespaced(ctx.cluster.client(), ns);
    let read_error = |e: kube::Error| NamespaceError::GetSecret {
        secret: name.to_string(),
        message: explain_write(&e),
    };
    // Apply first: the server tells missing, ours and someone else's apart, so a pass costs one
    // request here. Only a refused apply is followed by a read, and the checks below. Deciding
    // whether to write at all (--refresh-before) needs the read first.
    if ctx.opts.refresh_before.is_none() {
        let desired = ctx.token.get().await.map_err(NamespaceError::Token)?;
        let secret = desired.object(name, ns);
        let outcome = match pullsecret::apply(ctx.cluster, &api, &secret, ctx.opts.dry_run).await {
            Ok(Applied::Created) => SecretOutcome::Created,
            Ok(Applied::Updated) => SecretOutcome::Updated,
            Ok(Applied::Unchanged) => {
                debug!(namespace = ns, "secret is current");
                return Ok(SecretOutcome::Unchanged);
            }
            Ok(Applied::Refused(existing)) => {
                return ensure_from(ctx, ns, &api, existing.map(|s| *s), shield).await
            }
            Err(ApplyError::Apply(e)) => return Err(apply_error(name, e)),
            Err(ApplyError::Read(e)) => return Err(read_error(e).into()),
        };
        info!(namespace = ns, secret = name, outcome = ?outcome, dry_run = ctx.opts.dry_run, "secret written");
        return Ok(outcome);
    }
    let existing = ctx
        .cluster
        .call("get secret", || api.get_opt(name))
        .await
        .map_err(read_error)?;
    ensure_from(ctx, ns, &api, existing, shield).await
}

/// Given what the Secret holds (read because --refresh-before needs it, or because an apply
/// was refused): leave it, take it back, take it over (--force), or refuse.
async fn ensure_from(
    ctx: &Ctx<'_>,
    ns: &str,
    api: &Api<Secret>,
    existing: Option<Secret>,
    shield: &Shield,
) -> Result<SecretOutcome, Step> {
    let name = ctx.opts.target.secret_name.as_str();
    let state = pullsecret::state(existing.as_ref());
    match &state {
        State::Foreign if !ctx.opts.force => {
            return Err(NamespaceError::SecretNotOwned {
                secret: name.to_string(),
            }
            .into());
        }
        State::WrongType(found) if !ctx.opts.force => {
            return Err(NamespaceError::SecretWrongType {
                secret: name.to_string(),
                found: found.clone(),
            }
            .into());
        }
        State::Ours => {
            if let (Some(refresh), Some(s)) = (ctx.opts.refresh_before, &existing) {
                let now = jiff::Timestamp::now();
                if pullsecret::is_fresh(s, &ctx.token.request, &ctx.token.expected, refresh, now) {
                    debug!(namespace = ns, "secret is fresh");
                    return Ok(SecretOutcome::Unchanged);
                }
            }
        }
        _ => {}
    }
    // Everything below writes, so get the token first: a failed fetch writes nothing.
    let desired = ctx.token.get().await.map_err(NamespaceError::Token)?;
    if let Some(s) = &existing {
        if desired.is_current(s) {
            debug!(namespace = ns, "secret is current");
            return Ok(SecretOutcome::Unchanged);
        }
    }
    // Held from a delete to its create, so neither --timeout nor a signal leaves the
    // namespace without a Secret in between.
    let mut _unsplit = None;
    if let (State::WrongType(found), Some(s)) = (&state, &existing) {
        // The server refuses to change a Secret's type in place: delete exactly the object we
        // saw (uid + resourceVersion preconditions), then create ours.
        _unsplit = Some(shield.hold().await);
        warn!(namespace = ns, secret = name, found = %found, "--force: replacing secret of the wrong type");
        let dp = DeleteParams {
            dry_run: ctx.opts.dry_run,
            preconditions: Some(Preconditions {
                uid: s.metadata.uid.clone(),
                resource_version: s.metadata.resource_version.clone(),
            }),
            ..Default::default()
        };
        ctx.cluster
            .call("delete secret", || api.delete(name, &dp))
            .await
            .map_err(|e| NamespaceError::ReplaceSecret {
                secret: name.to_string(),
                message: explain_write(&e),
            })?;
        if ctx.opts.dry_run {
            // The delete did not persist, so a dry-run apply would still meet the old type.
            return Ok(SecretOutcome::Updated);
        }
    }
    let outcome = if state == State::Missing {
        SecretOutcome::Created
    } else {
        SecretOutcome::Updated
    };
    let mut pp = PatchParams::apply(FIELD_MANAGER);
    // Ours (or taken over with --force): take back fields that someone else edited. A missing
    // one is applied without force, so a foreign Secret created since our read conflicts.
    pp.force = ctx.opts.force || state == State::Ours;
    pp.dry_run = ctx.opts.dry_run;
    let secret = desired.object(name, ns);
    let patch = Patch::Apply(&secret);
    ctx.cluster
        .call("apply secret", || api.patch(name, &pp, &patch))
        .await
        .map_err(|e| apply_error(name, e))?;
    info!(namespace = ns, secret = name, outcome = ?outcome, dry_run = ctx.opts.dry_run, "secret written");
    Ok(outcome)
}

fn apply_error(name: &str, e: kube::Error) -> Step {
    if is_terminating(&e) {
        Step::Terminating
    } else if is_namespace_missing(&e) {
        Step::Failed(NamespaceError::NamespaceNotFound)
    } else if is_status(&e, |s| s.is_conflict()) {
        // Someone else created or claimed it since we looked.
        Step::Failed(NamespaceError::SecretNotOwned {
            secret: name.to_string(),
        })
    } else {
        Step::Failed(NamespaceError::ApplySecret {
            secret: name.to_string(),
            message: explain_write(&e),
        })
    }
}
