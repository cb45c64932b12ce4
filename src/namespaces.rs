//! Which namespaces a run touches, and what it does in each: the selection (include/exclude
//! globs, a label selector) becomes a plan of namespaces to sync, skip or prune.

use std::fmt;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use crate::cluster::{explain, explain_write, is_status, Cluster};
use crate::error::{Error, Result};
use crate::k8s_grammar::{LabelSelector, NamespacePattern};
use crate::tenants::Tenants;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Page size for listing namespaces: memory stays flat however many the cluster has.
const LIST_PAGE: u32 = 500;

/// Include and exclude patterns, and an optional label selector. No include means every
/// namespace; exclude always wins.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selection {
    pub(crate) include: Vec<NamespacePattern>,
    pub(crate) exclude: Vec<NamespacePattern>,
    pub(crate) label_selector: Option<LabelSelector>,
    /// Selects no namespace at all: what `prune --uninstall` keeps.
    pub(crate) nothing: bool,
    /// With --tenants: each selected namespace's rule; one no rule takes is left alone.
    pub(crate) tenants: Option<Arc<Tenants>>,
    /// With rules that name other Secret names: the one name this run of the command covers.
    pub(crate) pass: Option<SecretPass>,
}

/// One Secret name of a command run once per name (see `cmd::RunOptions::by_secret_name`).
#[derive(Clone, Debug)]
pub(crate) struct SecretPass {
    /// The name this run covers.
    pub(crate) name: String,
    /// The run's --secret-name: that of tenants that name none, and of the namespaces no rule
    /// takes.
    pub(crate) default: String,
}

impl Selection {
    /// No namespace: prune with it removes ecr-refresh from every namespace.
    pub(crate) fn none() -> Self {
        Self {
            nothing: true,
            ..Self::default()
        }
    }

    pub(crate) fn matches(&self, name: &str) -> bool {
        !self.nothing
            && (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }

    /// When every include is a literal name, the targets are known without listing
    /// namespaces, so the tool needs no cluster-wide permission.
    pub(crate) fn literal_names(&self) -> Option<Vec<String>> {
        let labels_needed = self.tenants.as_ref().is_some_and(|t| t.needs_labels());
        if self.include.is_empty() || self.label_selector.is_some() || self.nothing || labels_needed
        {
            return None;
        }
        let mut names: Vec<String> = self
            .include
            .iter()
            .map(|p| p.literal().map(str::to_string))
            .collect::<Option<_>>()?;
        names.sort();
        names.dedup();
        names.retain(|n| self.matches(n));
        Some(names)
    }

    /// The flag and value that selected nothing, for the error; None when only excludes (or
    /// `--uninstall`) narrowed "every namespace", which means what it says.
    fn culprit(&self) -> Option<(&'static str, String)> {
        if let Some(sel) = &self.label_selector {
            Some(("--namespace-selector", sel.as_str().to_string()))
        } else if !self.include.is_empty() {
            let globs: Vec<&str> = self.include.iter().map(|p| p.as_str()).collect();
            Some(("--namespace", globs.join(",")))
        } else {
            None
        }
    }
}

/// Set to "true" on a namespace to keep ecr-refresh out of it: sync skips it and prune cleans it.
pub(crate) const OPT_OUT_ANNOTATION: &str = "ecr-refresh/opt-out";

/// A namespace's entry, as listed (or as named on the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    name: String,
    terminating: bool,
    opted_out: bool,
    /// Came from a listing, so `terminating` and `opted_out` are known.
    listed: bool,
    /// With --tenants: the rule that takes it, if any.
    tenant: Option<usize>,
}

impl Entry {
    /// Named with -n, so not listed: its labels are not known (no rule looks at them then,
    /// see [`Selection::literal_names`]).
    fn named(name: String, selection: &Selection) -> Self {
        let tenant = selection
            .tenants
            .as_ref()
            .and_then(|t| t.of(&name, &BTreeMap::new()));
        Self {
            name,
            terminating: false,
            opted_out: false,
            listed: false,
            tenant,
        }
    }

    /// Left alone: --tenants is given and no rule takes it.
    fn untenanted(&self, selection: &Selection) -> bool {
        selection.tenants.is_some() && self.tenant.is_none()
    }

    /// Covered by this run of the command: its tenant's Secret name is the pass's (the run's
    /// own name covers the namespaces no rule takes). Always, with one name.
    fn in_pass(&self, selection: &Selection) -> bool {
        let (Some(tenants), Some(pass)) = (&selection.tenants, &selection.pass) else {
            return true;
        };
        match self.tenant {
            Some(i) => tenants.secret_name_of(i, &pass.default) == pass.name,
            None => pass.name == pass.default,
        }
    }
}

/// Why a selected namespace is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    Terminating,
    OptedOut,
    /// No rule of the --tenants file takes it.
    NoTenant,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::Terminating => f.write_str("namespace is terminating"),
            Skip::OptedOut => write!(f, "opted out by annotation {OPT_OUT_ANNOTATION}"),
            Skip::NoTenant => f.write_str("no rule of the --tenants file takes this namespace"),
        }
    }
}

/// What a command does in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Selected: keep our Secret and link here, written by `sync`, checked by `status`. A
    /// namespace named on the command line was not listed, so whether it is terminating is
    /// not known yet.
    Keep {
        listed: bool,
    },
    Skip(Skip),
    /// Not selected (or opted out) and not terminating: take ecr-refresh out (`prune`).
    Prune,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Planned {
    pub(crate) name: String,
    pub(crate) action: Action,
    /// With --tenants: the index of the rule that takes it.
    pub(crate) tenant: Option<usize>,
}

/// Whether the plan also covers the namespaces the selection leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only the selected namespaces (`sync`, `status`): literal names need no listing.
    Selected,
    /// Every namespace: the unselected ones are pruned (`prune`, `sync --prune`).
    Everything,
}

/// Turns the selection into what happens to each namespace, sorted by name. Lists namespaces
/// page by page, once (twice with a label selector and [`Scope::Everything`]).
pub(crate) async fn plan(
    cluster: &Cluster,
    selection: &Selection,
    scope: Scope,
) -> Result<Vec<Planned>> {
    let literal = selection.literal_names();
    if scope == Scope::Selected {
        let selected = match literal {
            Some(names) => names
                .into_iter()
                .map(|n| Entry::named(n, selection))
                .filter(|t| t.in_pass(selection))
                .collect(),
            None => {
                let mut all = list(cluster, selection.label_selector.as_ref(), selection).await?;
                all.retain(|t| selection.matches(&t.name) && t.in_pass(selection));
                all
            }
        };
        return Ok(selected
            .into_iter()
            .map(|t| selected_action(t, selection))
            .collect());
    }
    let all = list(cluster, None, selection).await?;
    let selected: Vec<Entry> = if selection.label_selector.is_some() {
        let mut matching = list(cluster, selection.label_selector.as_ref(), selection).await?;
        matching.retain(|t| selection.matches(&t.name));
        matching
    } else if let Some(names) = literal {
        // A name that does not exist is still planned: sync reports it as failed.
        names
            .into_iter()
            .map(|n| {
                all.iter()
                    .find(|t| t.name == n)
                    .cloned()
                    .unwrap_or_else(|| Entry::named(n, selection))
            })
            .collect()
    } else {
        all.iter()
            .filter(|t| selection.matches(&t.name))
            .cloned()
            .collect()
    };
    refuse_empty(selection, &selected)?;
    Ok(split(all, selected, selection))
}

/// Prune removes us from every namespace the selection leaves out, so a `-n` typo or a label
/// selector that matches nothing would prune everything.
fn refuse_empty(selection: &Selection, selected: &[Entry]) -> Result<()> {
    // Listed means it exists (a terminating one counts).
    if selected.iter().any(|t| t.listed) {
        return Ok(());
    }
    let Some((flag, value)) = selection.culprit() else {
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

fn selected_action(t: Entry, selection: &Selection) -> Planned {
    let action = if t.terminating {
        Action::Skip(Skip::Terminating)
    } else if t.opted_out {
        Action::Skip(Skip::OptedOut)
    } else if t.untenanted(selection) {
        Action::Skip(Skip::NoTenant)
    } else {
        Action::Keep { listed: t.listed }
    };
    Planned {
        name: t.name,
        action,
        tenant: t.tenant,
    }
}

/// Selected, not opted out and (with --tenants) taken by a rule whose Secret name this pass
/// covers: synced (a terminating one is skipped). Everything else that is not terminating is
/// pruned (of this pass's Secret name).
fn split(all: Vec<Entry>, selected: Vec<Entry>, selection: &Selection) -> Vec<Planned> {
    let kept = |t: &Entry| !t.opted_out && !t.untenanted(selection) && t.in_pass(selection);
    let kept_names: std::collections::HashSet<&str> = selected
        .iter()
        .filter(|t| kept(t))
        .map(|t| t.name.as_str())
        .collect();
    let pruned = all
        .iter()
        .filter(|t| !kept_names.contains(t.name.as_str()) && !t.terminating)
        .map(|t| Planned {
            name: t.name.clone(),
            action: Action::Prune,
            tenant: None,
        });
    let mut plan: Vec<Planned> = pruned.collect();
    let kept: Vec<Entry> = selected.into_iter().filter(|t| kept(t)).collect();
    plan.extend(kept.into_iter().map(|t| selected_action(t, selection)));
    plan.sort_by(|a, b| a.name.cmp(&b.name));
    plan
}

/// Whether a namespace named on the command line is terminating. A terminating namespace
/// refuses only creates, so an existing Secret or ServiceAccount there would still be written.
/// `None`: not allowed to read namespaces (RBAC from before this check).
pub(crate) async fn is_terminating(
    cluster: &Cluster,
    ns: &str,
) -> Result<Option<bool>, NamespaceError> {
    let api: Api<Namespace> = Api::all(cluster.client());
    match cluster.call("get namespace", || api.get_opt(ns)).await {
        Ok(Some(n)) => Ok(Some(n.metadata.deletion_timestamp.is_some())),
        Ok(None) => Err(NamespaceError::NotFound),
        Err(e) if is_status(&e, |s| s.is_forbidden()) => Ok(None),
        Err(e) => Err(NamespaceError::Get {
            message: explain_write(&e),
        }),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum NamespaceError {
    #[error("namespace does not exist")]
    NotFound,
    #[error("reading the namespace: {message}")]
    Get { message: String },
}

/// Every namespace (matching the label selector, if any), sorted by name, each with the tenant
/// rule that takes it.
async fn list(
    cluster: &Cluster,
    label_selector: Option<&LabelSelector>,
    selection: &Selection,
) -> Result<Vec<Entry>> {
    let api: Api<Namespace> = Api::all(cluster.client());
    let mut found = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(LIST_PAGE);
        if let Some(sel) = label_selector {
            lp = lp.labels(sel.as_str());
        }
        if let Some(token) = &continue_token {
            lp = lp.continue_token(token);
        }
        let page = cluster
            .call("list namespaces", || api.list_metadata(&lp))
            .await
            .map_err(|e| Error::ListNamespaces {
                message: explain(&e),
            })?;
        for ns in page.items {
            let meta = ns.metadata;
            let Some(name) = meta.name else { continue };
            let opted_out = meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(OPT_OUT_ANNOTATION))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let tenant = selection.tenants.as_ref().and_then(|t| {
                let none = BTreeMap::new();
                t.of(&name, meta.labels.as_ref().unwrap_or(&none))
            });
            found.push(Entry {
                name,
                terminating: meta.deletion_timestamp.is_some(),
                opted_out,
                listed: true,
                tenant,
            });
        }
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            break;
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, terminating: bool, opted_out: bool) -> Entry {
        Entry {
            name: name.into(),
            terminating,
            opted_out,
            listed: true,
            tenant: None,
        }
    }

    #[test]
    fn split_prunes_the_unselected_and_the_opted_out_but_never_the_terminating() {
        let all = vec![
            found("a", false, false),
            found("b", false, true),
            found("c", false, false),
            found("d", true, false),
        ];
        let selected = vec![all[0].clone(), all[1].clone()];
        let plan = split(all, selected, &Selection::default());
        let names = |pick: fn(&Action) -> bool| {
            plan.iter()
                .filter(|p| pick(&p.action))
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(|a| matches!(a, Action::Keep { .. })), ["a"]);
        assert_eq!(names(|a| *a == Action::Prune), ["b", "c"]);
        assert_eq!(
            plan.len(),
            3,
            "the terminating unselected one is left out: {plan:?}"
        );
    }

    #[test]
    fn a_selection_that_matches_nothing_is_refused_unless_it_only_excludes() {
        let typo = sel(&["typo"], &[]);
        let typo = refuse_empty(&typo, &[Entry::named("typo".into(), &typo)]);
        assert!(
            matches!(&typo, Err(Error::InvalidInput { flag: "--namespace", value, .. }) if value == "typo"),
            "{typo:?}"
        );
        // A terminating namespace exists, so it counts as matched.
        assert!(refuse_empty(&sel(&["b"], &[]), &[found("b", true, false)]).is_ok());
        // Excluding everything, and --uninstall, mean what they say.
        assert!(refuse_empty(&sel(&[], &["*"]), &[]).is_ok());
        assert!(refuse_empty(&Selection::none(), &[]).is_ok());
        assert!(!Selection::none().matches("a"));
        assert_eq!(Selection::none().literal_names(), None);
    }

    #[test]
    fn with_tenants_a_namespace_no_rule_takes_is_skipped_or_pruned() {
        let tenants = crate::tenants::Tenants::parse(
            "t.yaml",
            "tenants:\n  - name: a\n    namespaces: [team-a-*]\n    roleArn: arn:aws:iam::111111111111:role/a\n",
            "s",
        )
        .unwrap();
        let selection = Selection {
            tenants: Some(Arc::new(tenants)),
            ..Selection::default()
        };
        let entry = |name: &str| {
            let mut e = found(name, false, false);
            e.tenant = selection
                .tenants
                .as_ref()
                .unwrap()
                .of(name, &BTreeMap::new());
            e
        };
        let kept = selected_action(entry("team-a-web"), &selection);
        assert_eq!(
            (kept.action, kept.tenant),
            (Action::Keep { listed: true }, Some(0))
        );
        let left = selected_action(entry("web"), &selection);
        assert_eq!(left.action, Action::Skip(Skip::NoTenant));
        // With --prune, the one no rule takes is pruned like a de-selected one.
        let all = vec![entry("team-a-web"), entry("web")];
        let plan = split(all.clone(), all, &selection);
        let actions: Vec<_> = plan.iter().map(|p| (p.name.as_str(), p.action)).collect();
        assert_eq!(
            actions,
            [
                ("team-a-web", Action::Keep { listed: true }),
                ("web", Action::Prune)
            ]
        );
        // A rule's names are placed without listing; labels need a listing.
        assert_eq!(Entry::named("team-a-x".into(), &selection).tenant, Some(0));
        let named = Selection {
            include: vec!["team-a-x".parse().unwrap()],
            ..selection.clone()
        };
        assert_eq!(named.literal_names(), Some(vec!["team-a-x".to_string()]));
    }

    fn sel(include: &[&str], exclude: &[&str]) -> Selection {
        Selection {
            include: include.iter().map(|p| p.parse().unwrap()).collect(),
            exclude: exclude.iter().map(|p| p.parse().unwrap()).collect(),
            ..Selection::default()
        }
    }

    #[test]
    fn a_label_selector_needs_a_listing() {
        let mut s = sel(&["a"], &[]);
        s.label_selector = Some("env=prod".parse().unwrap());
        assert_eq!(s.literal_names(), None);
    }

    #[test]
    fn globs_include_and_exclude() {
        let s = sel(&["team-*", "prod"], &["team-b*"]);
        assert!(s.matches("team-a"));
        assert!(s.matches("prod"));
        assert!(!s.matches("team-b"));
        assert!(!s.matches("team-bravo"));
        assert!(!s.matches("kube-system"));
        assert!(!s.matches("production"));
    }

    #[test]
    fn empty_include_means_all_but_excluded() {
        let s = sel(&[], &["kube-*"]);
        assert!(s.matches("default"));
        assert!(!s.matches("kube-system"));
    }

    #[test]
    fn glob_syntax() {
        let s = sel(&["app-?", "{dev,qa}-[0-9]"], &[]);
        assert!(s.matches("app-1"));
        assert!(!s.matches("app-12"));
        assert!(s.matches("qa-3"));
        assert!(!s.matches("qa-x"));
    }

    #[test]
    fn literal_names_skip_listing() {
        assert_eq!(
            sel(&["b", "a", "b"], &[]).literal_names(),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            sel(&["a", "b"], &["b"]).literal_names(),
            Some(vec!["a".into()])
        );
        assert_eq!(sel(&["a", "b-*"], &[]).literal_names(), None);
        assert_eq!(sel(&[], &[]).literal_names(), None);
    }
}
