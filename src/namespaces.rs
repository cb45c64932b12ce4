//! Which namespaces a run touches: include/exclude globs, and listing the cluster's namespaces.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use crate::cluster::{explain, Cluster};
use crate::error::{Error, Result};
use crate::k8s_grammar::{LabelSelector, NamespacePattern};

/// Page size for listing namespaces: memory stays flat however many the cluster has.
const LIST_PAGE: u32 = 500;

/// Include and exclude patterns, and an optional label selector. No include means every
/// namespace; exclude always wins.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    pub include: Vec<NamespacePattern>,
    pub exclude: Vec<NamespacePattern>,
    pub label_selector: Option<LabelSelector>,
}

impl Selection {
    pub fn matches(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| p.matches(name)))
            && !self.exclude.iter().any(|p| p.matches(name))
    }

    /// When every include is a literal name, the targets are known without listing
    /// namespaces, so the tool needs no cluster-wide permission.
    pub fn literal_names(&self) -> Option<Vec<String>> {
        if self.include.is_empty() || self.label_selector.is_some() {
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
}

/// Set to "true" on a namespace to keep ecr-refresh out of it: sync skips it and prune cleans it.
pub const OPT_OUT_ANNOTATION: &str = "ecr-refresh/opt-out";

/// A namespace as listed (or as named on the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    /// Known from the listing; for a literal name `sync` reads the namespace before writing.
    pub terminating: bool,
    /// Carries the opt-out annotation (only known from a listing).
    pub opted_out: bool,
    /// Came from a listing, so `terminating` and `opted_out` are known.
    pub listed: bool,
}

impl Target {
    /// A namespace named on the command line, not (yet) looked up.
    pub fn named(name: String) -> Self {
        Self {
            name,
            terminating: false,
            opted_out: false,
            listed: false,
        }
    }
}

/// Resolves the selection to targets, listing namespaces page by page only when needed.
pub async fn resolve(cluster: &Cluster, selection: &Selection) -> Result<Vec<Target>> {
    if let Some(names) = selection.literal_names() {
        return Ok(names.into_iter().map(Target::named).collect());
    }
    let mut all = list(cluster, selection.label_selector.as_ref()).await?;
    all.retain(|t| selection.matches(&t.name));
    Ok(all)
}

/// Every namespace (matching the label selector, if any), sorted by name.
pub async fn list(
    cluster: &Cluster,
    label_selector: Option<&LabelSelector>,
) -> Result<Vec<Target>> {
    let api: Api<Namespace> = Api::all(cluster.client());
    let mut targets = Vec::new();
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
            targets.push(Target {
                name,
                terminating: meta.deletion_timestamp.is_some(),
                opted_out,
                listed: true,
            });
        }
        continue_token = page.metadata.continue_.filter(|t| !t.is_empty());
        if continue_token.is_none() {
            break;
        }
    }
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(include: &[&str], exclude: &[&str]) -> Selection {
        Selection {
            include: include.iter().map(|p| p.parse().unwrap()).collect(),
            exclude: exclude.iter().map(|p| p.parse().unwrap()).collect(),
            label_selector: None,
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
