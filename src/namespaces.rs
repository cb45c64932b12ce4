//! Which namespaces a run touches: include/exclude globs, and listing the cluster's namespaces.

use std::fmt;
use std::str::FromStr;

use globset::{Glob, GlobMatcher};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

use crate::cluster::{explain, Cluster};
use crate::error::{Error, Result};

/// Page size for listing namespaces: memory stays flat however many the cluster has.
const LIST_PAGE: u32 = 500;

/// A namespace name or a glob (`*`, `?`, `[a-z]`, `{a,b}`) over namespace names.
#[derive(Clone)]
pub struct NamespacePattern {
    raw: String,
    glob: Option<GlobMatcher>,
}

impl NamespacePattern {
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// A pattern with no glob characters names exactly one namespace.
    pub fn literal(&self) -> Option<&str> {
        self.glob.is_none().then_some(self.raw.as_str())
    }

    pub fn matches(&self, name: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(name),
            None => self.raw == name,
        }
    }
}

impl fmt::Debug for NamespacePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

const GLOB_CHARS: &[char] = &['*', '?', '[', ']', '{', '}', '\\', '!', ','];

impl FromStr for NamespacePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err("empty namespace pattern".into());
        }
        if !s.contains(GLOB_CHARS) {
            validate_dns_label(s)?;
            return Ok(Self {
                raw: s.to_string(),
                glob: None,
            });
        }
        if let Some(c) = s.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || GLOB_CHARS.contains(c))
        }) {
            return Err(format!(
                "{c:?} can never match: namespace names hold only lowercase letters, digits and '-'"
            ));
        }
        let glob = Glob::new(s).map_err(|e| format!("invalid glob: {}", e.kind()))?;
        Ok(Self {
            raw: s.to_string(),
            glob: Some(glob.compile_matcher()),
        })
    }
}

/// RFC 1123 label: what Kubernetes accepts as a namespace or ServiceAccount name.
pub fn validate_dns_label(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit".into())
    }
}

/// RFC 1123 subdomain: what Kubernetes accepts as a Secret name.
pub fn validate_dns_subdomain(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err("not a valid Kubernetes name: use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit".into())
    }
}

/// A Kubernetes label selector (`env=prod,tier!=db,team in (a,b),!legacy`), checked for
/// syntax locally so a typo fails with exit 2 instead of a server error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector(String);

impl LabelSelector {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LabelSelector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty label selector".into());
        }
        for req in split_requirements(s)? {
            check_requirement(req.trim())?;
        }
        Ok(Self(s.to_string()))
    }
}

/// Splits on commas outside parentheses.
fn split_requirements(s: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        if !(0..=1).contains(&depth) {
            return Err("unbalanced parentheses".into());
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn check_requirement(req: &str) -> Result<(), String> {
    if req.is_empty() {
        return Err("empty requirement (stray comma?)".into());
    }
    if let Some(key) = req.strip_prefix('!') {
        return check_label_key(key.trim());
    }
    for op in [" notin ", " in "] {
        if let Some((key, set)) = req.split_once(op) {
            check_label_key(key.trim())?;
            let set = set.trim();
            let inner = set
                .strip_prefix('(')
                .and_then(|v| v.strip_suffix(')'))
                .ok_or_else(|| format!("{req:?}: expected a list in parentheses after{op}"))?;
            return inner
                .split(',')
                .try_for_each(|v| check_label_value(v.trim()));
        }
    }
    for op in ["!=", "==", "="] {
        if let Some((key, value)) = req.split_once(op) {
            check_label_key(key.trim())?;
            return check_label_value(value.trim());
        }
    }
    check_label_key(req)
}

fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        validate_dns_subdomain(p)
            .map_err(|_| format!("label key prefix {p:?} is not a DNS subdomain"))?;
    }
    if name.is_empty() || name.len() > 63 || !is_label_text(name) {
        return Err(format!(
            "label key {key:?} is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_text(value)) {
        Ok(())
    } else {
        Err(format!(
            "label value {value:?} is invalid: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

fn is_label_text(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

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
    fn label_selectors() {
        for ok in [
            "env=prod",
            "env==prod,tier!=db",
            "team in (a, b),!legacy",
            "example.com/owner notin (x)",
            "managed",
            "env=",
        ] {
            assert!(ok.parse::<LabelSelector>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "env=prod,",
            "team in a,b",
            "team in (a",
            "Bad Key=x",
            "env=-x-",
            "a/b/c=d",
            "=x",
        ] {
            assert!(bad.parse::<LabelSelector>().is_err(), "{bad}");
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

    #[test]
    fn rejects_bad_patterns() {
        for bad in ["", "[abc", "Team-A", "team_a", "a/b", "-lead", "{a,b"] {
            assert!(
                bad.parse::<NamespacePattern>().is_err(),
                "{bad} should be rejected"
            );
        }
        let err = "team_*".parse::<NamespacePattern>().unwrap_err();
        assert!(err.contains("'_'"), "{err}");
    }

    #[test]
    fn names() {
        assert!(validate_dns_subdomain("awsecr-cred").is_ok());
        assert!(validate_dns_subdomain("ecr.pull-secret").is_ok());
        for bad in ["", "Bad", "a_b", "a..b", "-a", &"a".repeat(254)] {
            assert!(validate_dns_subdomain(bad).is_err(), "{bad}");
        }
        assert!(validate_dns_label("default").is_ok());
        assert!(validate_dns_label("a.b").is_err());
    }
}
