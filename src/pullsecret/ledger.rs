//! The ledger: which resourceVersion our last write of the pull Secret produced in each
//! namespace, kept in a ConfigMap of the tool's own namespace that tenants cannot write.
//!
//! Anyone who may write a Secret can also write its managedFields (names, operations, times)
//! and our label and annotations, so none of those proves that a Secret is as we left it. Its
//! resourceVersion does: the server assigns a new one on every write. A Secret whose
//! resourceVersion is the one the ledger holds is exactly what we wrote; any other was written
//! since by someone else (or by us, with the record lost), and is read in full and rewritten.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use tracing::{debug, warn};

use crate::cluster::{explain, explain_write, is_status, Cluster, FIELD_MANAGER};

/// The ConfigMap's name; one data key per Secret name, each line `<namespace> <resourceVersion>`.
pub(crate) const LEDGER_NAME: &str = "ecr-refresh-state";

/// The API limit on a ConfigMap's data is 1 MiB; stay clear of it (and say so) rather than
/// have every write refused. 10,000 namespaces of 63 characters take about 0.8 MB.
const MAX_BYTES: usize = 1_000_000;

/// Guarded writes that meet a ledger changed since it was read: read, merge and try again.
const WRITE_ATTEMPTS: u32 = 5;

/// What the ledger says of one namespace's Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    /// The ledger could not be read: judge as before, from a full read of the Secret.
    Unknown,
    /// Not recorded: never written by us since the ledger was kept (or the record was lost).
    Never,
    /// The resourceVersion our last write produced.
    At(String),
}

impl Written {
    /// Whether `secret` is exactly what our last write left there.
    pub(crate) fn vouches_for(&self, resource_version: Option<&str>) -> bool {
        matches!(self, Written::At(rv) if Some(rv.as_str()) == resource_version)
    }
}

/// The ledger as read at the start of a pass.
#[derive(Debug)]
pub(crate) struct Ledger {
    namespace: String,
    /// The data key: the Secret's name.
    key: String,
    /// `None`: unreadable.
    entries: Option<BTreeMap<String, String>>,
    /// The ConfigMap's own resourceVersion (`None`: it does not exist yet).
    version: Option<String>,
}

/// Why the ledger could not be read or written, for the report's warnings.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LedgerError {
    #[error("cannot read the ledger ConfigMap {namespace}/{LEDGER_NAME} ({message}); every Secret of ours is read in full and judged by its content, and a changed password is only caught at the next refresh (grant get and patch on it: see rbac.yaml, or set --state-namespace)")]
    Read { namespace: String, message: String },
    #[error("cannot record this pass's writes in the ledger ConfigMap {namespace}/{LEDGER_NAME} ({message}); the next pass reads and rewrites those Secrets")]
    Write { namespace: String, message: String },
}

impl Ledger {
    /// Reads the ledger; an unreadable one is reported and treated as [`Written::Unknown`].
    pub(crate) async fn read(
        cluster: &Cluster,
        namespace: &str,
        secret_name: &str,
    ) -> (Self, Option<LedgerError>) {
        let api: Api<ConfigMap> = Api::namespaced(cluster.client(), namespace);
        let read = cluster
            .call("get ledger", || api.get_opt(LEDGER_NAME))
            .await;
        let mut ledger = Self {
            namespace: namespace.to_string(),
            key: secret_name.to_string(),
            entries: None,
            version: None,
        };
        match read {
            Ok(found) => {
                ledger.version = found
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone());
                ledger.entries = Some(parse(found.as_ref(), secret_name));
                (ledger, None)
            }
            Err(e) => {
                let e = LedgerError::Read {
                    namespace: namespace.to_string(),
                    message: explain(&e),
                };
                warn!("{e}");
                (ledger, Some(e))
            }
        }
    }

    /// A ledger that was not read (tests, and commands that do not keep one).
    #[cfg(test)]
    pub(crate) fn of_entries(entries: Option<BTreeMap<String, String>>) -> Self {
        Self {
            namespace: "kube-system".into(),
            key: "awsecr-cred".into(),
            entries,
            version: None,
        }
    }

    pub(crate) fn of(&self, ns: &str) -> Written {
        match &self.entries {
            None => Written::Unknown,
            Some(e) => e.get(ns).cloned().map_or(Written::Never, Written::At),
        }
    }

    /// Records the resourceVersions this pass's writes produced (namespace -> resourceVersion),
    /// with one server-side apply guarded by the ledger's resourceVersion; a ledger changed
    /// since is read again and merged. Entries for which `gone` is true (the pass saw no
    /// Secret of ours there: a deleted namespace) are dropped, so namespaces that come and go
    /// do not grow the ledger for good. Nothing when the ledger was unreadable or nothing was
    /// written.
    pub(crate) async fn record(
        &self,
        cluster: &Cluster,
        written: BTreeMap<String, String>,
        gone: impl Fn(&str) -> bool,
    ) -> Result<(), LedgerError> {
        if written.is_empty() {
            return Ok(());
        }
        self.apply(cluster, written, gone).await
    }

    /// The names recorded (namespaces for a pull Secret; Secret names for `argocd`'s key).
    pub(crate) fn recorded(&self) -> Vec<String> {
        self.entries
            .iter()
            .flat_map(|e| e.keys().cloned())
            .collect()
    }

    /// Drops the entries `gone` accepts, with nothing written (`prune`, and Secrets `sync`
    /// no longer writes); nothing when none is recorded.
    pub(crate) async fn forget(
        &self,
        cluster: &Cluster,
        gone: impl Fn(&str) -> bool,
    ) -> Result<(), LedgerError> {
        if !self.entries.iter().flat_map(|e| e.keys()).any(|k| gone(k)) {
            return Ok(());
        }
        self.apply(cluster, BTreeMap::new(), gone).await
    }

    /// [`Self::record`]'s write: this ledger's key as merged, guarded, merged again on a
    /// conflict.
    async fn apply(
        &self,
        cluster: &Cluster,
        written: BTreeMap<String, String>,
        gone: impl Fn(&str) -> bool,
    ) -> Result<(), LedgerError> {
        let Some(entries) = &self.entries else {
            return Ok(());
        };
        let api: Api<ConfigMap> = Api::namespaced(cluster.client(), &self.namespace);
        let error = |message: String| LedgerError::Write {
            namespace: self.namespace.clone(),
            message,
        };
        let read = || async {
            let found = cluster
                .call("get ledger", || api.get_opt(LEDGER_NAME))
                .await
                .map_err(|e| error(explain(&e)))?;
            let version = found
                .as_ref()
                .and_then(|c| c.metadata.resource_version.clone());
            Ok::<_, LedgerError>((parse(found.as_ref(), &self.key), version))
        };
        // None there when this pass began: read again first, as it may have been created since
        // and an apply without a resourceVersion is not guarded.
        let mut current = self
            .version
            .clone()
            .map(|version| (entries.clone(), Some(version)));
        for attempt in 1..=WRITE_ATTEMPTS {
            let (entries, version) = match current.take() {
                Some(known) => known,
                None => read().await?,
            };
            let text = render(&merged(entries, &written, &gone));
            if text.len() > MAX_BYTES {
                return Err(error(format!(
                    "{} bytes, over the {MAX_BYTES} a ConfigMap can safely hold",
                    text.len()
                )));
            }
            let ledger = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(LEDGER_NAME.into()),
                    namespace: Some(self.namespace.clone()),
                    resource_version: version,
                    labels: Some(BTreeMap::from([(
                        "app.kubernetes.io/managed-by".into(),
                        "ecr-refresh".into(),
                    )])),
                    ..Default::default()
                },
                data: Some(BTreeMap::from([(self.key.clone(), text)])),
                ..Default::default()
            };
            let manager = manager_of(&self.key);
            let (pp, patch) = (PatchParams::apply(&manager).force(), Patch::Apply(&ledger));
            let applied = cluster
                .call("apply ledger", || api.patch(LEDGER_NAME, &pp, &patch))
                .await;
            match applied {
                Ok(_) => return Ok(()),
                Err(e) if is_status(&e, |s| s.is_conflict()) => {
                    debug!(attempt, "ledger changed since it was read; merging again");
                }
                Err(e) => return Err(error(explain_write(&e))),
            }
        }
        Err(error(format!(
            "it kept changing under us ({WRITE_ATTEMPTS} conflicts in a row)"
        )))
    }
}

/// The field manager of one data key. An apply drops every field its manager owned and left
/// out, so with one manager for all keys, recording one Secret name would drop every other
/// name's records (each of its Secrets then rewritten on every pass). An apply, not a patch:
/// it can create the ConfigMap, which RBAC grants by name only to a PATCH.
fn manager_of(key: &str) -> String {
    // Field manager names are at most 128 bytes; Secret names up to 253.
    if key.len() <= 100 {
        return format!("{FIELD_MANAGER}-ledger-{key}");
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(key.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{FIELD_MANAGER}-ledger-{hex}")
}

/// The ledger after a pass: its entries without those `gone`, with this pass's writes.
fn merged(
    mut entries: BTreeMap<String, String>,
    written: &BTreeMap<String, String>,
    gone: impl Fn(&str) -> bool,
) -> BTreeMap<String, String> {
    entries.retain(|ns, _| !gone(ns));
    entries.extend(written.iter().map(|(k, v)| (k.clone(), v.clone())));
    entries
}

/// The entries under `key`; a line that is not `<namespace> <resourceVersion>` is left out
/// (its Secret is then read in full and rewritten).
fn parse(found: Option<&ConfigMap>, key: &str) -> BTreeMap<String, String> {
    let text = found
        .and_then(|c| c.data.as_ref())
        .and_then(|d| d.get(key))
        .map(String::as_str)
        .unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let (ns, rv) = line.split_once(' ')?;
            (!ns.is_empty() && !rv.is_empty() && !rv.contains(' '))
                .then(|| (ns.to_string(), rv.to_string()))
        })
        .collect()
}

fn render(entries: &BTreeMap<String, String>) -> String {
    entries
        .iter()
        .map(|(ns, rv)| format!("{ns} {rv}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gone_namespaces_are_dropped_and_writes_win() {
        let entries = BTreeMap::from([
            ("kept".to_string(), "1".to_string()),
            ("gone".to_string(), "2".to_string()),
            ("rewritten".to_string(), "3".to_string()),
        ]);
        let written = BTreeMap::from([
            ("rewritten".to_string(), "30".to_string()),
            ("new".to_string(), "40".to_string()),
        ]);
        let after = merged(entries, &written, |ns| ns == "gone" || ns == "new");
        assert_eq!(
            after,
            BTreeMap::from([
                ("kept".to_string(), "1".to_string()),
                ("new".to_string(), "40".to_string()),
                ("rewritten".to_string(), "30".to_string()),
            ])
        );
    }

    #[test]
    fn entries_round_trip_and_garbage_is_left_out() {
        let entries = BTreeMap::from([("a".into(), "12".into()), ("b-2".into(), "7".into())]);
        let cm = |text: String| ConfigMap {
            data: Some(BTreeMap::from([("awsecr-cred".into(), text)])),
            ..Default::default()
        };
        assert_eq!(parse(Some(&cm(render(&entries))), "awsecr-cred"), entries);
        assert!(parse(Some(&cm(render(&entries))), "other").is_empty());
        let garbage = "a 12\nnospace\n 3\nc 1 2\nd 9\n".to_string();
        let got = parse(Some(&cm(garbage)), "awsecr-cred");
        assert_eq!(got.keys().collect::<Vec<_>>(), ["a", "d"]);
        assert!(parse(None, "awsecr-cred").is_empty());
    }

    #[test]
    fn only_the_recorded_version_is_vouched_for() {
        let ledger = Ledger::of_entries(Some(BTreeMap::from([("a".into(), "12".into())])));
        assert_eq!(ledger.of("a"), Written::At("12".into()));
        assert_eq!(ledger.of("b"), Written::Never);
        assert!(ledger.of("a").vouches_for(Some("12")));
        assert!(!ledger.of("a").vouches_for(Some("13")));
        assert!(!ledger.of("b").vouches_for(Some("12")));
        assert!(!Ledger::of_entries(None).of("a").vouches_for(Some("12")));
    }

    #[test]
    fn ten_thousand_long_namespaces_fit() {
        let entries: BTreeMap<String, String> = (0..10_000)
            .map(|i| (format!("{i:0>63}"), "1234567890123".to_string()))
            .collect();
        assert!(render(&entries).len() < MAX_BYTES);
    }
}
