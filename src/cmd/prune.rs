//! `prune`: take ecr-refresh out of namespaces that are no longer selected (or opted out).
//! Only a Secret carrying our label is deleted, and only our entry leaves a ServiceAccount.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use tracing::{info, warn};

use super::{bounded, stopped, unless_stopped, Cut, Limits, Target};
use crate::cluster::{explain, Cluster, ClusterOptions};
use crate::error::{Error, Result};
use crate::namespaces::{self, Selection, Target as Namespace};
use crate::pullsecret::{self, State};
use crate::report::{NamespaceReport, SecretOutcome, ServiceAccountOutcome, SyncReport};
use crate::serviceaccount;
use crate::shutdown::Stop;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub cluster: ClusterOptions,
    /// What stays; everything else is pruned.
    pub selection: Selection,
    pub target: Target,
    pub dry_run: bool,
    /// Also take our entry out of ServiceAccounts where our Secret is already gone.
    pub uninstall: bool,
    pub concurrency: usize,
    pub timeout: Duration,
}

pub async fn run(opts: &PruneOptions, stop: &Stop) -> Result<SyncReport> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let cluster = Cluster::new(&opts.cluster).await?;
    let to_prune = unless_stopped(stop, async {
        cluster.check_access().await?;
        Ok(partition(&cluster, &opts.selection).await?.1)
    })
    .await?;
    let mut report = SyncReport::new("prune", opts.target.secret_name.clone(), opts.dry_run);
    let limits = Limits {
        deadline,
        timeout: opts.timeout,
        stop,
    };
    report.namespaces = prune_all(
        &cluster,
        &opts.target,
        to_prune,
        opts.dry_run,
        opts.uninstall,
        opts.concurrency,
        limits,
    )
    .await;
    report.namespaces.sort_by(|a, b| a.name.cmp(&b.name));
    report.finish(cluster.stats(), started);
    if let Some(signal) = stop.requested() {
        report.abort(&stopped(signal, &report));
    }
    Ok(report)
}

/// Lists every namespace once and splits them with [`split`]. Only a label selector needs a
/// second, filtered listing.
pub async fn partition(
    cluster: &Cluster,
    selection: &Selection,
) -> Result<(Vec<Namespace>, Vec<Namespace>)> {
    let all = namespaces::list(cluster, None).await?;
    let selected = if selection.label_selector.is_some() {
        namespaces::resolve(cluster, selection).await?
    } else if let Some(names) = selection.literal_names() {
        let by_name: std::collections::HashMap<&str, &Namespace> =
            all.iter().map(|t| (t.name.as_str(), t)).collect();
        names
            .into_iter()
            .map(|n| {
                by_name
                    .get(n.as_str())
                    .map_or_else(|| Namespace::named(n.clone()), |t| (*t).clone())
            })
            .collect()
    } else {
        all.iter()
            .filter(|t| selection.matches(&t.name))
            .cloned()
            .collect()
    };
    refuse_empty_selection(selection, &all, &selected)?;
    Ok(split(all, selected))
}

/// Prune removes us from every namespace the selection does not match, so a `-n` typo or a
/// label selector that matches nothing would prune everything. Excludes alone only ever narrow
/// "all", so `-x '*'` (and `--uninstall`) still mean what they say.
fn refuse_empty_selection(
    selection: &Selection,
    all: &[Namespace],
    selected: &[Namespace],
) -> Result<()> {
    let exists: std::collections::HashSet<&str> = all.iter().map(|t| t.name.as_str()).collect();
    if selected.iter().any(|t| exists.contains(t.name.as_str())) {
        return Ok(());
    }
    let (flag, value) = if let Some(sel) = &selection.label_selector {
        ("--namespace-selector", sel.as_str().to_string())
    } else if !selection.include.is_empty() {
        let globs: Vec<&str> = selection.include.iter().map(|p| p.as_str()).collect();
        ("--namespace", globs.join(","))
    } else {
        return Ok(());
    };
    Err(Error::InvalidInput {
        flag,
        value,
        reason: "matches no namespace, so pruning would remove ecr-refresh from every namespace; \
                 nothing was written (check the spelling, or use `prune --uninstall` to remove it everywhere)"
            .into(),
    })
}

/// Splits namespaces into those to sync (selected, not opted out) and those to prune (the
/// rest, plus the opted-out ones). Terminating namespaces are never pruned.
pub fn split(all: Vec<Namespace>, selected: Vec<Namespace>) -> (Vec<Namespace>, Vec<Namespace>) {
    let keep: std::collections::HashSet<&str> = selected
        .iter()
        .filter(|t| !t.opted_out)
        .map(|t| t.name.as_str())
        .collect();
    let to_prune = all
        .iter()
        .filter(|t| !keep.contains(t.name.as_str()) && !t.terminating)
        .cloned()
        .collect();
    let to_sync = selected.into_iter().filter(|t| !t.opted_out).collect();
    (to_sync, to_prune)
}

/// Prunes each namespace; only namespaces where something was removed, or that failed, are
/// reported. With `uninstall`, our ServiceAccount entry goes even where our Secret is gone.
#[allow(clippy::too_many_arguments)]
pub async fn prune_all(
    cluster: &Cluster,
    target: &Target,
    namespaces: Vec<Namespace>,
    dry_run: bool,
    uninstall: bool,
    concurrency: usize,
    limits: Limits<'_>,
) -> Vec<NamespaceReport> {
    let late =
        |ns: &Namespace, cut: Cut| Some(NamespaceReport::failed(&ns.name, limits.message(cut)));
    bounded(
        namespaces,
        concurrency,
        limits,
        |ns, _shield| prune_namespace(cluster, target, ns, dry_run, uninstall),
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
    ns: Namespace,
    dry_run: bool,
    uninstall: bool,
) -> Option<NamespaceReport> {
    let ns = ns.name.as_str();
    let name = target.secret_name.as_str();
    let api: Api<Secret> = Api::namespaced(cluster.client(), ns);
    let existing = match cluster.call("get secret", || api.get_opt(name)).await {
        Ok(s) => s,
        Err(e) => {
            return Some(NamespaceReport::failed(
                ns,
                format!("reading secret {name}: {}", explain(&e)),
            ))
        }
    };
    // Someone else's: nothing to do, and nothing of anyone else's is touched (an entry naming
    // their Secret is theirs). Not there: only an uninstall still looks for our entry.
    let secret = match pullsecret::state(existing.as_ref()) {
        State::Ours => existing,
        State::Missing if uninstall => None,
        _ => return None,
    };
    let mut report = NamespaceReport::new(ns, SecretOutcome::Deleted);
    if secret.is_none() {
        report.secret = None;
    }
    let accounts = match target.service_accounts(cluster, ns).await {
        Ok(a) => a,
        Err(e) => return Some(NamespaceReport::failed(ns, e.to_string())),
    };
    // Unlink first: a ServiceAccount never points at a Secret we already deleted.
    for sa in &accounts {
        match serviceaccount::unlink(cluster, ns, sa, name, dry_run).await {
            Ok(outcome) => report.link(sa, outcome),
            Err(e) => report.fail_service_account(sa, e.to_string()),
        }
    }
    let Some(secret) = secret else {
        let unlinked = report.service_accounts.iter().any(|s| {
            s.outcome != ServiceAccountOutcome::NotLinked
                && s.outcome != ServiceAccountOutcome::Missing
        });
        if unlinked {
            info!(
                namespace = ns,
                dry_run, "unlinked a secret that was already gone"
            );
        }
        return unlinked.then_some(report);
    };
    if report.error.is_some() {
        warn!(
            namespace = ns,
            "not deleting the secret: a ServiceAccount could not be unlinked"
        );
        return Some(report);
    }
    let dp = DeleteParams {
        dry_run,
        preconditions: Some(Preconditions {
            uid: secret.metadata.uid.clone(),
            resource_version: secret.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    if let Err(e) = cluster
        .call("delete secret", || api.delete(name, &dp))
        .await
    {
        return Some(NamespaceReport::failed(
            ns,
            format!("deleting secret {name}: {}", explain(&e)),
        ));
    }
    info!(namespace = ns, secret = name, dry_run, "pruned");
    Some(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(name: &str, terminating: bool, opted_out: bool) -> Namespace {
        Namespace {
            name: name.into(),
            terminating,
            opted_out,
            listed: true,
        }
    }

    #[test]
    fn split_prunes_the_unselected_and_the_opted_out_but_never_the_terminating() {
        let all = vec![
            ns("a", false, false),
            ns("b", false, true),
            ns("c", false, false),
            ns("d", true, false),
        ];
        let selected = vec![all[0].clone(), all[1].clone()];
        let (sync, prune) = split(all, selected);
        let names = |v: &[Namespace]| v.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&sync), ["a"]);
        assert_eq!(names(&prune), ["b", "c"]);
    }

    #[test]
    fn a_selection_that_matches_nothing_is_refused_unless_it_only_excludes() {
        let all = vec![ns("a", false, false), ns("b", true, false)];
        let sel = |include: &[&str], exclude: &[&str]| Selection {
            include: include.iter().map(|p| p.parse().unwrap()).collect(),
            exclude: exclude.iter().map(|p| p.parse().unwrap()).collect(),
            label_selector: None,
        };
        let typo = refuse_empty_selection(
            &sel(&["typo"], &[]),
            &all,
            &[Namespace::named("typo".into())],
        );
        assert!(
            matches!(&typo, Err(Error::InvalidInput { flag: "--namespace", value, .. }) if value == "typo"),
            "{typo:?}"
        );
        // A terminating namespace exists, so it counts as matched.
        assert!(refuse_empty_selection(&sel(&["b"], &[]), &all, &all[1..]).is_ok());
        // --uninstall is "exclude everything".
        assert!(refuse_empty_selection(&sel(&[], &["*"]), &all, &[]).is_ok());
    }
}
