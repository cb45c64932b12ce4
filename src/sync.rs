//! One `sync` pass: fetch the token once, then write the Secret and link it in every namespace.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LocalObjectReference, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde::Serialize;
use tracing::{debug, info, warn};

use crate::cluster::{explain, is_status, Cluster, ClusterOptions};
use crate::ecr::{EcrClientConfig, RegionCredential, RegionName, RegistrySpec};
use crate::error::Result;
use crate::namespaces::{self, Selection, Target};
use crate::report::{NamespaceReport, ServiceAccountOutcome, ServiceAccountReport, SyncReport};
use crate::sensitive::Sensitive;
use crate::{
    dockerconfig, EXPIRES_AT_ANNOTATION, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
};

pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Optimistic-concurrency retries when someone else edits a ServiceAccount at the same time.
const SA_CONFLICT_RETRIES: u32 = 5;
const SA_POLL: Duration = Duration::from_millis(500);

/// Everything `sync` needs, already validated.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    pub cluster: ClusterOptions,
    pub region: Option<RegionName>,
    pub profile: Option<String>,
    pub registries: Vec<RegistrySpec>,
    pub selection: Selection,
    pub secret_name: String,
    pub service_accounts: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    pub concurrency: usize,
    pub service_account_wait: Duration,
    pub timeout: Duration,
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
    #[error("reading secret {secret}: {message}")]
    GetSecret { secret: String, message: String },
    #[error("writing secret {secret}: {message}")]
    ApplySecret { secret: String, message: String },
    #[error("replacing secret {secret} of the wrong type: {message}")]
    ReplaceSecret { secret: String, message: String },
    #[error("service account {service_account} not found after waiting {waited}; create it, or choose others with --service-account")]
    ServiceAccountMissing {
        service_account: String,
        waited: String,
    },
    #[error("reading service account {service_account}: {message}")]
    GetServiceAccount {
        service_account: String,
        message: String,
    },
    #[error("updating service account {service_account}: {message}")]
    UpdateServiceAccount {
        service_account: String,
        message: String,
    },
    #[error("did not finish before the run deadline (--timeout {timeout})")]
    Deadline { timeout: String },
}

/// What happened to the Secret in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretOutcome {
    Created,
    Updated,
    Unchanged,
}

/// The desired Secret, built once per run and shared by every namespace.
struct Desired {
    payload: Sensitive<Vec<u8>>,
    annotations: BTreeMap<String, String>,
}

struct Ctx<'a> {
    cluster: &'a Cluster,
    opts: &'a SyncOptions,
    desired: &'a Desired,
}

/// Runs one pass. Errors returned here are fatal (nothing was written); per-namespace failures
/// are in the report.
pub async fn run(opts: &SyncOptions) -> Result<SyncReport> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    // Local work first, so bad input fails before any network call.
    let ecr = EcrClientConfig::load(
        opts.region.as_ref(),
        opts.profile.as_deref(),
        opts.cluster.request_timeout,
    )
    .await?;
    let cluster = Cluster::new(&opts.cluster).await?;
    cluster.check_access().await?;
    let targets = namespaces::resolve(&cluster, &opts.selection).await?;
    let mut report = SyncReport::new(opts.secret_name.clone(), opts.dry_run);
    if targets.is_empty() {
        warn!("no namespace matches the selection; nothing to do");
        report.finish(cluster.stats(), started);
        return Ok(report);
    }
    info!(namespaces = targets.len(), "selected namespaces");

    let credentials = ecr.fetch(&opts.registries).await?;
    report.ecr_calls = credentials.len();
    let desired = desired_secret(&credentials);
    report.registries = credentials
        .iter()
        .flat_map(|c| c.hosts.iter().cloned())
        .collect();
    report.registries.sort();
    report.token_expires_at = credentials.iter().filter_map(|c| c.expires_at).min();

    let ctx = Ctx {
        cluster: &cluster,
        opts,
        desired: &desired,
    };
    let timeout = humantime::format_duration(opts.timeout).to_string();
    let ctx = &ctx;
    let timeout = &timeout;
    report.namespaces = futures::stream::iter(targets)
        .map(|target| async move {
            match tokio::time::timeout_at(deadline, sync_namespace(ctx, &target)).await {
                Ok(r) => r,
                Err(_) => NamespaceReport::failed(
                    &target.name,
                    NamespaceError::Deadline {
                        timeout: timeout.clone(),
                    }
                    .to_string(),
                ),
            }
        })
        .buffer_unordered(opts.concurrency)
        .collect()
        .await;
    report.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    report.finish(cluster.stats(), started);
    Ok(report)
}

fn desired_secret(credentials: &[RegionCredential]) -> Desired {
    let mut annotations = BTreeMap::new();
    if let Some(t) = credentials.iter().filter_map(|c| c.expires_at).min() {
        annotations.insert(EXPIRES_AT_ANNOTATION.to_string(), t.to_string());
    }
    let mut hosts: Vec<&str> = credentials
        .iter()
        .flat_map(|c| c.hosts.iter().map(String::as_str))
        .collect();
    hosts.sort_unstable();
    annotations.insert(REGISTRIES_ANNOTATION.to_string(), hosts.join(","));
    Desired {
        payload: dockerconfig::build(credentials),
        annotations,
    }
}

async fn sync_namespace(ctx: &Ctx<'_>, target: &Target) -> NamespaceReport {
    let ns = target.name.as_str();
    if target.terminating {
        info!(namespace = ns, "skipped: namespace is terminating");
        return NamespaceReport::skipped(ns, "namespace is terminating");
    }
    let secret = match ensure_secret(ctx, ns).await {
        Ok(outcome) => outcome,
        Err(Step::Terminating) => {
            info!(namespace = ns, "skipped: namespace is terminating");
            return NamespaceReport::skipped(ns, "namespace is terminating");
        }
        Err(Step::Failed(e)) => {
            warn!(namespace = ns, error = %e, "namespace failed");
            return NamespaceReport::failed(ns, e.to_string());
        }
    };
    let mut report = NamespaceReport::new(ns, secret);
    for sa in &ctx.opts.service_accounts {
        match link_service_account(ctx, ns, sa).await {
            Ok(outcome) => report.service_accounts.push(ServiceAccountReport {
                name: sa.clone(),
                outcome,
                error: None,
            }),
            Err(e) => {
                warn!(namespace = ns, service_account = %sa, error = %e, "linking failed");
                report.fail_service_account(sa, e.to_string());
            }
        }
    }
    info!(namespace = ns, outcome = ?report.outcome, "namespace done");
    report
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

/// Adds a hint for permission errors; the server's message already names the verb and resource.
fn explain_write(err: &kube::Error) -> String {
    let msg = explain(err);
    if is_status(err, |s| s.is_forbidden()) {
        format!("{msg} (grant the missing permission; see rbac.yaml)")
    } else {
        msg
    }
}

fn is_owned(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

fn is_current(existing: &Secret, desired: &Desired) -> bool {
    existing.type_.as_deref() == Some(SECRET_TYPE)
        && is_owned(existing)
        && existing
            .data
            .as_ref()
            .and_then(|d| d.get(dockerconfig::DATA_KEY))
            .is_some_and(|v| v.0 == *desired.payload.expose())
        && desired.annotations.iter().all(|(k, v)| {
            existing
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(k))
                == Some(v)
        })
}

fn secret_object(ctx: &Ctx<'_>, ns: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(ctx.opts.secret_name.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            annotations: Some(ctx.desired.annotations.clone()),
            ..Default::default()
        },
        type_: Some(SECRET_TYPE.to_string()),
        data: Some(BTreeMap::from([(
            dockerconfig::DATA_KEY.to_string(),
            ByteString(ctx.desired.payload.expose().clone()),
        )])),
        ..Default::default()
    }
}

async fn ensure_secret(ctx: &Ctx<'_>, ns: &str) -> Result<SecretOutcome, Step> {
    let name = ctx.opts.secret_name.as_str();
    let api: Api<Secret> = Api::namespaced(ctx.cluster.client(), ns);
    let existing = ctx
        .cluster
        .call("get secret", || api.get_opt(name))
        .await
        .map_err(|e| NamespaceError::GetSecret {
            secret: name.to_string(),
            message: explain_write(&e),
        })?;
    let mut force = ctx.opts.force;
    let outcome = match &existing {
        None => SecretOutcome::Created,
        Some(s) if s.type_.as_deref() != Some(SECRET_TYPE) => {
            let found = s.type_.clone().unwrap_or_default();
            if !ctx.opts.force {
                return Err(NamespaceError::SecretWrongType {
                    secret: name.to_string(),
                    found,
                }
                .into());
            }
            // The server refuses to change a Secret's type in place: delete exactly the object
            // we saw (uid + resourceVersion preconditions), then create ours.
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
                // The delete did not persist, so a dry-run apply would hit the old type.
                return Ok(SecretOutcome::Updated);
            }
            SecretOutcome::Updated
        }
        Some(s) if !is_owned(s) && !ctx.opts.force => {
            return Err(NamespaceError::SecretNotOwned {
                secret: name.to_string(),
            }
            .into())
        }
        Some(s) if is_current(s, ctx.desired) => {
            debug!(namespace = ns, "secret is current");
            return Ok(SecretOutcome::Unchanged);
        }
        Some(s) => {
            // Ours: take back fields that someone else edited.
            force |= is_owned(s);
            SecretOutcome::Updated
        }
    };
    let mut pp = PatchParams::apply(FIELD_MANAGER);
    pp.force = force;
    pp.dry_run = ctx.opts.dry_run;
    let secret = secret_object(ctx, ns);
    let patch = Patch::Apply(&secret);
    ctx.cluster
        .call("apply secret", || api.patch(name, &pp, &patch))
        .await
        .map_err(|e| {
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
        })?;
    info!(namespace = ns, secret = name, outcome = ?outcome, dry_run = ctx.opts.dry_run, "secret written");
    Ok(outcome)
}

/// Adds our Secret to `imagePullSecrets`, keeping every other entry. The list is atomic, so
/// apply or a merge patch would replace it: read, append, and update with the read
/// resourceVersion, retrying on conflict.
async fn link_service_account(
    ctx: &Ctx<'_>,
    ns: &str,
    sa_name: &str,
) -> Result<ServiceAccountOutcome, NamespaceError> {
    let secret = ctx.opts.secret_name.as_str();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.cluster.client(), ns);
    let wait_until = Instant::now() + ctx.opts.service_account_wait;
    let get_err = |e: kube::Error| NamespaceError::GetServiceAccount {
        service_account: sa_name.to_string(),
        message: explain_write(&e),
    };
    for attempt in 1..=SA_CONFLICT_RETRIES {
        let mut sa = loop {
            match ctx
                .cluster
                .call("get service account", || api.get_opt(sa_name))
                .await
            {
                Ok(Some(sa)) => break sa,
                Ok(None) if Instant::now() < wait_until => {
                    debug!(
                        namespace = ns,
                        service_account = sa_name,
                        "waiting for service account"
                    );
                    tokio::time::sleep(SA_POLL).await;
                }
                Ok(None) => {
                    return Err(NamespaceError::ServiceAccountMissing {
                        service_account: sa_name.to_string(),
                        waited: humantime::format_duration(ctx.opts.service_account_wait)
                            .to_string(),
                    })
                }
                Err(e) => return Err(get_err(e)),
            }
        };
        let refs = sa.image_pull_secrets.get_or_insert_with(Vec::new);
        if refs.iter().any(|r| r.name == secret) {
            return Ok(ServiceAccountOutcome::AlreadyLinked);
        }
        refs.push(LocalObjectReference {
            name: secret.to_string(),
        });
        let pp = PostParams {
            dry_run: ctx.opts.dry_run,
            field_manager: Some(FIELD_MANAGER.to_string()),
        };
        match ctx
            .cluster
            .call("update service account", || api.replace(sa_name, &pp, &sa))
            .await
        {
            Ok(_) => {
                info!(
                    namespace = ns,
                    service_account = sa_name,
                    dry_run = ctx.opts.dry_run,
                    "linked pull secret"
                );
                return Ok(ServiceAccountOutcome::Linked);
            }
            Err(e) if is_status(&e, |s| s.is_conflict()) => {
                debug!(
                    namespace = ns,
                    service_account = sa_name,
                    attempt,
                    "service account changed meanwhile; re-reading"
                );
            }
            Err(e) => {
                return Err(NamespaceError::UpdateServiceAccount {
                    service_account: sa_name.to_string(),
                    message: explain_write(&e),
                })
            }
        }
    }
    Err(NamespaceError::UpdateServiceAccount {
        service_account: sa_name.to_string(),
        message: format!("it kept changing under us ({SA_CONFLICT_RETRIES} conflicts in a row); the next run will retry"),
    })
}
