//! The pull Secret: what it should hold, how we recognise ours, and every API call on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::Status;
use serde::Serialize;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use crate::cluster::{explain_write, is_status, Cluster, FIELD_MANAGER};
use crate::dockerconfig;
use crate::ecr::{
    is_registry_host, EcrClientConfig, ExpectedHosts, RegionCredential, RegistrySpec,
};
use crate::error::Error;
use crate::sensitive::Sensitive;
use crate::shutdown::Shield;

pub(crate) const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// Marks the Secrets this tool owns; a Secret without it is never touched unless `--force`.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub(crate) const MANAGED_BY_VALUE: &str = "ecr-refresh";
/// When the token in the Secret expires (RFC 3339).
pub(crate) const EXPIRES_AT_ANNOTATION: &str = "ecr-refresh/expires-at";
/// The registry hosts the Secret covers, comma-separated.
pub(crate) const REGISTRIES_ANNOTATION: &str = "ecr-refresh/registries";
/// What the Secret was made from (region, registries, role): a Secret made from another
/// request is never considered fresh.
pub(crate) const REQUEST_ANNOTATION: &str = "ecr-refresh/request";

/// The Secret every namespace should hold, built once per run.
pub(crate) struct Desired {
    pub(crate) payload: Sensitive<Vec<u8>>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) hosts: Vec<String>,
    pub(crate) expires_at: Option<jiff::Timestamp>,
}

impl Desired {
    pub(crate) fn new(credentials: &[RegionCredential], request: &str) -> Self {
        let expires_at = credentials.iter().filter_map(|c| c.expires_at).min();
        let mut hosts: Vec<String> = credentials
            .iter()
            .flat_map(|c| c.hosts.iter().cloned())
            .collect();
        hosts.sort();
        hosts.dedup();
        let mut annotations = BTreeMap::new();
        if let Some(t) = expires_at {
            annotations.insert(EXPIRES_AT_ANNOTATION.to_string(), t.to_string());
        }
        annotations.insert(REGISTRIES_ANNOTATION.to_string(), hosts.join(","));
        annotations.insert(REQUEST_ANNOTATION.to_string(), request.to_string());
        Self {
            payload: dockerconfig::build(credentials),
            annotations,
            hosts,
            expires_at,
        }
    }

    pub(crate) fn object(&self, name: &str, namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.to_string(),
                    MANAGED_BY_VALUE.to_string(),
                )])),
                annotations: Some(self.annotations.clone()),
                ..Default::default()
            },
            type_: Some(SECRET_TYPE.to_string()),
            data: Some(BTreeMap::from([(
                dockerconfig::DATA_KEY.to_string(),
                ByteString(self.payload.expose().clone()),
            )])),
            ..Default::default()
        }
    }
}

/// How an existing Secret of our name stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Missing,
    /// Exists without our label.
    Foreign,
    /// Ours by label, but not a dockerconfigjson Secret (or someone else's of another type).
    WrongType(String),
    Ours,
}

impl State {
    /// The name `status` reports it by.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            State::Missing => "missing",
            State::Foreign => "foreign",
            State::WrongType(_) => "wrong_type",
            State::Ours => "managed",
        }
    }
}

pub(crate) fn state(existing: Option<&Secret>) -> State {
    match existing {
        None => State::Missing,
        Some(s) if s.type_.as_deref() != Some(SECRET_TYPE) => {
            State::WrongType(s.type_.clone().unwrap_or_default())
        }
        Some(s) if !is_ours(s) => State::Foreign,
        Some(_) => State::Ours,
    }
}

pub(crate) fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY_VALUE)
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

pub(crate) use crate::ecr::token::{is_beyond_token_lifetime, MAX_TOKEN_LIFETIME};

/// The expiry annotation of one of our Secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Expiry {
    Missing,
    /// There, but not an RFC 3339 timestamp (the raw value).
    Garbage(String),
    At(jiff::Timestamp),
}

pub(crate) fn expiry(secret: &Secret) -> Expiry {
    match annotation(secret, EXPIRES_AT_ANNOTATION) {
        None => Expiry::Missing,
        Some(v) => v
            .parse()
            .map_or_else(|_| Expiry::Garbage(v.to_string()), Expiry::At),
    }
}

fn payload(secret: &Secret) -> Option<&[u8]> {
    secret
        .data
        .as_ref()?
        .get(dockerconfig::DATA_KEY)
        .map(|v| v.0.as_slice())
}

/// The registry hosts a Secret's payload holds credentials for; `None` when it is not a complete
/// docker config (every entry with user name, password and auth).
pub(crate) fn hosts(secret: &Secret) -> Option<Vec<String>> {
    dockerconfig::hosts(payload(secret)?)
}

/// The hosts named in the payload, even when its entries are incomplete (for `status`).
pub(crate) fn named_hosts(secret: &Secret) -> Vec<String> {
    payload(secret)
        .and_then(dockerconfig::named_hosts)
        .unwrap_or_default()
}

/// The hosts the registries annotation names.
pub(crate) fn annotated_hosts(secret: &Secret) -> Vec<String> {
    let mut hosts: Vec<String> = annotation(secret, REGISTRIES_ANNOTATION)
        .unwrap_or_default()
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    hosts.sort();
    hosts
}

/// Why one of our Secrets (or the one in its place) must be written now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    Missing,
    /// `--refresh-all`.
    Asked,
    /// Another field manager changed a field we set, after our last write.
    EditedBy(String),
    /// Made from another request: region, registries, role or credentials changed.
    Request,
    /// The payload is not a complete docker config, or its registries differ from the
    /// annotation or from those asked for.
    Registries,
    /// The expiry annotation is missing, not a timestamp, or further out than a token lasts.
    Expiry,
    /// The token expires within the refresh window, or has expired.
    Expiring,
    /// Not ours, or of the wrong type: only written with --force.
    NotOurs,
}

impl std::fmt::Display for Due {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Due::Missing => f.write_str("missing"),
            Due::Asked => f.write_str("--refresh-all"),
            Due::EditedBy(manager) => write!(f, "edited by {manager}"),
            Due::Request => f.write_str("made for another region, registries, role or credentials"),
            Due::Registries => f.write_str("payload or registries differ"),
            Due::Expiry => f.write_str("expiry annotation missing or not believable"),
            Due::Expiring => f.write_str("token expires within --refresh-before"),
            Due::NotOurs => f.write_str("not ours (--force)"),
        }
    }
}

/// Whether one of our Secrets must be rewritten; `None` when it is current: made from the same
/// request, for exactly the registries asked for, untouched by anyone else since our last
/// write, and valid for more than `refresh_before` (but no longer than an ECR token lasts).
/// Annotations are only believed when they agree with the payload. An expired token is always
/// due, so a stand-in whose tokens expired long ago (moto's) makes every pass write.
#[cfg(test)]
fn due(
    secret: &Secret,
    request: &str,
    expected: &ExpectedHosts,
    refresh_before: Duration,
    now: jiff::Timestamp,
) -> Option<Due> {
    due_given(
        secret,
        hosts(secret),
        request,
        expected,
        refresh_before,
        now,
    )
}

/// [`due`], given the hosts the payload holds credentials for (`None`: no complete payload).
fn due_given(
    secret: &Secret,
    payload_hosts: Option<Vec<String>>,
    request: &str,
    expected: &ExpectedHosts,
    refresh_before: Duration,
    now: jiff::Timestamp,
) -> Option<Due> {
    if let Some(manager) = edited_by(secret) {
        return Some(Due::EditedBy(manager));
    }
    if annotation(secret, REQUEST_ANNOTATION) != Some(request) {
        return Some(Due::Request);
    }
    let agreed =
        payload_hosts.is_some_and(|h| annotated_hosts(secret) == h && expected.matches(&h));
    if !agreed {
        return Some(Due::Registries);
    }
    let Expiry::At(expires) = expiry(secret) else {
        return Some(Due::Expiry);
    };
    if is_beyond_token_lifetime(expires, now) {
        return Some(Due::Expiry);
    }
    let left_secs = expires.as_second() - now.as_second();
    (left_secs <= i64::try_from(refresh_before.as_secs()).unwrap_or(i64::MAX))
        .then_some(Due::Expiring)
}

/// Another field manager that set a field we own (the payload, the type, our label or our
/// annotations) at or after our own last write: a hand edit, or another tool. Compared by time,
/// not by ownership alone, because a field set to the value we hold stays shared with its
/// other manager after our next write: judged by ownership, it would be due on every pass.
fn edited_by(secret: &Secret) -> Option<String> {
    let entries = secret
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    let time = |m: &ManagedFieldsEntry| m.time.as_ref().map(|t| t.0);
    let ours = entries
        .iter()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
        .filter_map(time)
        .max();
    entries
        .iter()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| sets_ours(&f.0)))
        // Without a time of ours (written by someone else entirely) or of theirs, assume the worst.
        .find(|m| match (time(m), ours) {
            (Some(theirs), Some(ours)) => theirs >= ours,
            _ => true,
        })
        .map(|m| {
            m.manager
                .clone()
                .unwrap_or_else(|| "an unnamed field manager".into())
        })
}

/// Whether a managedFields `fieldsV1` set holds the field at `path`.
fn holds(fields: &serde_json::Value, path: &[&str]) -> bool {
    path.iter()
        .try_fold(fields, |v, k| v.get(format!("f:{k}")))
        .is_some()
}

/// Whether our own field manager's entries hold the field at `path`: we set it, and nobody
/// changed or removed it since (an update by another manager takes the field from us, and a
/// removal leaves it to nobody).
fn ours_hold(secret: &Secret, path: &[&str]) -> bool {
    secret
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
        .any(|m| m.fields_v1.as_ref().is_some_and(|f| holds(&f.0, path)))
}

/// Whether a managedFields `fieldsV1` set includes a field we write.
fn sets_ours(fields: &serde_json::Value) -> bool {
    let has = |path: &[&str]| holds(fields, path);
    let our_annotation = fields
        .get("f:metadata")
        .and_then(|m| m.get("f:annotations"))
        .and_then(|a| a.as_object())
        .is_some_and(|a| a.keys().any(|k| k.starts_with("f:ecr-refresh/")));
    has(&["data", dockerconfig::DATA_KEY])
        || has(&["type"])
        || has(&["metadata", "labels", MANAGED_BY_LABEL])
        || our_annotation
}

/// The Secret to write, made on first use: when every Secret is still fresh (--refresh-before),
/// ECR is not called at all, and a failed fetch is met before anything is written.
pub(crate) struct Wanted {
    ecr: EcrClientConfig,
    registries: Vec<RegistrySpec>,
    /// What the Secret is made from, so one made from another request is never fresh.
    pub(crate) request: String,
    pub(crate) expected: ExpectedHosts,
    cell: OnceCell<Result<Arc<Desired>, Error>>,
}

impl Wanted {
    pub(crate) async fn new(ecr: EcrClientConfig, registries: &[RegistrySpec]) -> Self {
        Self {
            request: ecr.request_fingerprint(registries).await,
            expected: ecr.expected_hosts(registries),
            registries: registries.to_vec(),
            ecr,
            cell: OnceCell::new(),
        }
    }

    /// Fetches the token once; every later call gets the same answer.
    pub(crate) async fn get(&self) -> Result<Arc<Desired>, Error> {
        self.cell
            .get_or_init(|| async {
                let creds = self.ecr.fetch(&self.registries).await?;
                Ok(Arc::new(Desired::new(&creds, &self.request)))
            })
            .await
            .clone()
    }

    /// What the fetch gave, if it was made.
    pub(crate) fn fetched(&self) -> Option<&Result<Arc<Desired>, Error>> {
        self.cell.get()
    }

    pub(crate) fn ecr_calls(&self) -> usize {
        self.ecr.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// How `sync` may treat the Secret it finds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Take over someone else's Secret, or replace one of the wrong type.
    pub(crate) force: bool,
    pub(crate) dry_run: bool,
    /// Leave a current Secret of ours alone while it is valid for longer than this.
    pub(crate) refresh_before: Duration,
    /// Rewrite every Secret of ours with a new token, due or not.
    pub(crate) refresh_all: bool,
}

/// What `sync` needs to remember of the Secret it found in a namespace: whose it is, whether
/// a write is due, and which object it was (for conditional writes). Small, because a
/// cluster-wide list holds one per namespace for the whole pass.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    pub(crate) state: State,
    /// `None`: current, nothing to write.
    pub(crate) due: Option<Due>,
    /// When the token in it expires, if it is ours and says so.
    pub(crate) expires_at: Option<jiff::Timestamp>,
    /// uid and resourceVersion only.
    seen: ObjectMeta,
}

impl Found {
    pub(crate) fn of(
        existing: Option<&Secret>,
        wanted: &Wanted,
        policy: Policy,
        now: jiff::Timestamp,
    ) -> Self {
        Self::judged(existing, hosts, wanted, policy, now)
    }

    /// How a Secret stands, judged from its metadata alone (a metadata-only list carries no
    /// type and no payload), or `None` when the metadata cannot tell: then it must be read in
    /// full. It tells for a Secret labelled ours whose type our own field manager holds (the
    /// type cannot change, and we only ever write ours) when another manager edited one of
    /// our fields at or after our last write ([`edited_by`]: due, as the full read judges it
    /// too), or else when our manager still holds every field we write: then the payload is
    /// the one our last write checked and wrote together with the annotations. A field
    /// removed by someone else is held by nobody, so it is read in full.
    pub(crate) fn of_metadata(
        secret: &Secret,
        wanted: &Wanted,
        policy: Policy,
        now: jiff::Timestamp,
    ) -> Option<Self> {
        if !is_ours(secret) || !ours_hold(secret, &["type"]) {
            return None;
        }
        let held = [
            &["data", dockerconfig::DATA_KEY][..],
            &["metadata", "labels", MANAGED_BY_LABEL],
            &["metadata", "annotations", REQUEST_ANNOTATION],
            &["metadata", "annotations", REGISTRIES_ANNOTATION],
        ];
        let untouched = || held.iter().all(|path| ours_hold(secret, path));
        if edited_by(secret).is_none() && !untouched() {
            return None;
        }
        let typed = Secret {
            type_: Some(SECRET_TYPE.to_string()),
            ..secret.clone()
        };
        let hosts = |s: &Secret| Some(annotated_hosts(s));
        Some(Self::judged(Some(&typed), hosts, wanted, policy, now))
    }

    fn judged(
        existing: Option<&Secret>,
        payload_hosts: impl FnOnce(&Secret) -> Option<Vec<String>>,
        wanted: &Wanted,
        policy: Policy,
        now: jiff::Timestamp,
    ) -> Self {
        let state = state(existing);
        let due = match (&state, existing) {
            (State::Missing, _) => Some(Due::Missing),
            (State::Ours, _) if policy.refresh_all => Some(Due::Asked),
            (State::Ours, Some(s)) => due_given(
                s,
                payload_hosts(s),
                &wanted.request,
                &wanted.expected,
                policy.refresh_before,
                now,
            ),
            _ => Some(Due::NotOurs),
        };
        let seen = existing.map_or_else(ObjectMeta::default, |s| ObjectMeta {
            uid: s.metadata.uid.clone(),
            resource_version: s.metadata.resource_version.clone(),
            ..ObjectMeta::default()
        });
        let expires_at = match existing.map(expiry) {
            Some(Expiry::At(t)) if state == State::Ours => Some(t),
            _ => None,
        };
        Self {
            state,
            due,
            expires_at,
            seen,
        }
    }
}

impl Found {
    /// Whether `sync` will write it: due, and ours to write (or taken over with --force).
    pub(crate) fn writes(&self, policy: Policy) -> bool {
        self.due.is_some() && (matches!(self.state, State::Missing | State::Ours) || policy.force)
    }
}

/// Our Secret in every namespace that has one (and `wanted` accepts), judged by `judge` as
/// each page arrives (see [`Cluster::list_named`]). With `metadata_only`, the list carries no
/// type and no payload (see [`Found::of_metadata`]): a tenth of the bytes of whole Secrets.
pub(crate) async fn list_everywhere<T>(
    cluster: &Cluster,
    name: &str,
    metadata_only: bool,
    wanted: impl Fn(&str) -> bool,
    judge: impl Fn(&Secret) -> T,
) -> Result<std::collections::HashMap<String, T>, kube::Error> {
    let mut found = std::collections::HashMap::new();
    let mut each = |s: Secret| {
        if let Some(ns) = s.metadata.namespace.as_deref().filter(|ns| wanted(ns)) {
            found.insert(ns.to_string(), judge(&s));
        }
    };
    if metadata_only {
        let meta = |m: kube::core::PartialObjectMeta<Secret>| Secret {
            metadata: m.metadata,
            ..Secret::default()
        };
        cluster
            .list_named_metadata("list secrets", name, |m| each(meta(m)))
            .await?;
    } else {
        cluster.list_named("list secrets", name, each).await?;
    }
    Ok(found)
}

/// What happened to the Secret in one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Outcome {
    Created,
    Updated,
    Unchanged,
    Deleted,
}

/// A call on the Secret, for messages.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Read,
    Write,
    Replace,
    Delete,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Read => "reading",
            Op::Write => "writing",
            Op::Replace => "replacing (wrong type)",
            Op::Delete => "deleting",
        })
    }
}

/// Why the Secret of one namespace was not made current. Messages name the object and say
/// what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SecretError {
    /// Not a failure: a terminating namespace refuses creates, and is skipped.
    #[error("namespace is terminating")]
    Terminating,
    #[error("namespace does not exist")]
    NamespaceNotFound,
    #[error("secret {secret} exists and is not managed by ecr-refresh (no label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}); left unchanged (use --force to take it over)")]
    NotOurs { secret: String },
    #[error("secret {secret} exists with type {found:?}, not {SECRET_TYPE}; left unchanged (use --force to replace it)")]
    WrongType { secret: String, found: String },
    #[error("no ECR token, so nothing was written: {0}")]
    Token(Error),
    /// Not a failure: it changed since it was read, and is read again (see `ensure`).
    #[error("secret changed since it was read")]
    Changed,
    /// Refused or failed otherwise; a 403 says whether RBAC or a quota refused it.
    #[error("{op} secret {secret}: {message}")]
    Call {
        op: Op,
        secret: String,
        message: String,
    },
}

/// What one write did, told from the answer alone.
enum Applied {
    Created,
    Updated,
    /// The apply changed nothing (our last change to it is older than the answer).
    Unchanged,
}

/// Conditional writes that meet a Secret changed since it was read: read it again and decide
/// again, this many times.
const WRITE_ATTEMPTS: u32 = 3;

/// Every API call on the pull Secret of one namespace.
pub(crate) struct Secrets<'a> {
    cluster: &'a Cluster,
    api: Api<Secret>,
    ns: &'a str,
    name: &'a str,
}

impl<'a> Secrets<'a> {
    pub(crate) fn new(cluster: &'a Cluster, ns: &'a str, name: &'a str) -> Self {
        Self {
            cluster,
            api: Api::namespaced(cluster.client(), ns),
            ns,
            name,
        }
    }

    fn error(&self, op: Op, e: &kube::Error) -> SecretError {
        let terminating =
            |s: &Status| s.is_forbidden() && s.message.contains("because it is being terminated");
        let namespace_missing = |s: &Status| {
            s.is_not_found() && s.details.as_ref().is_some_and(|d| d.kind == "namespaces")
        };
        if is_status(e, terminating) {
            SecretError::Terminating
        } else if is_status(e, namespace_missing) {
            SecretError::NamespaceNotFound
        } else {
            SecretError::Call {
                op,
                secret: self.name.to_string(),
                message: explain_write(e),
            }
        }
    }

    fn not_ours(&self) -> SecretError {
        SecretError::NotOurs {
            secret: self.name.to_string(),
        }
    }

    pub(crate) async fn get(&self) -> Result<Option<Secret>, SecretError> {
        self.cluster
            .call("get secret", || self.api.get_opt(self.name))
            .await
            .map_err(|e| self.error(Op::Read, &e))
    }

    /// How the Secret stands now, read on its own (when the cluster-wide list was not made).
    pub(crate) async fn find(&self, wanted: &Wanted, policy: Policy) -> Result<Found, SecretError> {
        let existing = self.get().await?;
        Ok(Found::of(
            existing.as_ref(),
            wanted,
            policy,
            jiff::Timestamp::now(),
        ))
    }

    /// Makes the Secret hold what `wanted` gives, if a write is due. `found` is how it stood
    /// when listed or read. Whose it is, is decided by our label before anything is written, and every write is conditional on what was read (a
    /// create, or an apply with the resourceVersion read): a Secret that changed since is read
    /// again and judged again.
    pub(crate) async fn ensure(
        &self,
        wanted: &Wanted,
        policy: Policy,
        mut found: Found,
        shield: &Shield,
    ) -> Result<Outcome, SecretError> {
        for attempt in 1..=WRITE_ATTEMPTS {
            if let Some(outcome) = self.write_if_due(wanted, policy, &found, shield).await? {
                return Ok(outcome);
            }
            debug!(
                namespace = self.ns,
                attempt, "secret changed since it was read; reading it again"
            );
            found = self.find(wanted, policy).await?;
        }
        Err(SecretError::Call {
            op: Op::Write,
            secret: self.name.to_string(),
            message: format!("it kept changing under us ({WRITE_ATTEMPTS} conflicts in a row); the next run will retry"),
        })
    }

    /// Leaves the Secret, refuses it, or writes it; `None` when it changed since `found`.
    async fn write_if_due(
        &self,
        wanted: &Wanted,
        policy: Policy,
        found: &Found,
        shield: &Shield,
    ) -> Result<Option<Outcome>, SecretError> {
        match &found.state {
            State::Foreign if !policy.force => return Err(self.not_ours()),
            State::WrongType(found) if !policy.force => {
                return Err(SecretError::WrongType {
                    secret: self.name.to_string(),
                    found: found.clone(),
                });
            }
            _ => {}
        }
        let Some(due) = &found.due else {
            debug!(namespace = self.ns, "secret is current");
            return Ok(Some(Outcome::Unchanged));
        };
        // Everything below writes, so get the token first: a failed fetch writes nothing.
        let desired = wanted.get().await.map_err(SecretError::Token)?;
        debug!(namespace = self.ns, reason = %due, "secret is due");
        // Held from a delete to its create, so neither --timeout nor a signal leaves the
        // namespace without a Secret in between.
        let mut _unsplit = None;
        if let State::WrongType(found_type) = &found.state {
            // The server refuses to change a Secret's type in place: delete exactly the object
            // we saw, then create ours.
            _unsplit = Some(shield.hold().await);
            warn!(namespace = self.ns, secret = self.name, found = %found_type, "--force: replacing secret of the wrong type");
            match self
                .delete_seen(&found.seen, Op::Replace, policy.dry_run)
                .await
            {
                Err(SecretError::Changed) => return Ok(None),
                other => other?,
            }
            if policy.dry_run {
                // The delete did not persist, so a dry-run create would still meet the old one.
                return Ok(Some(Outcome::Updated));
            }
        }
        let mut secret = desired.object(self.name, self.ns);
        // None there (or just deleted): an apply without force creates it, and conflicts with
        // one that someone else made since (a POST would be surer, but RBAC cannot allow a
        // create by name); with --force it is taken anyway. Ours, or taken over with --force:
        // forced, so fields someone else edited come back, but only if it is still the object
        // we judged.
        let force = policy.force || found.state == State::Ours;
        if matches!(found.state, State::Ours | State::Foreign) {
            secret.metadata.resource_version = found.seen.resource_version.clone();
        }
        let written = self.apply(&secret, force, policy.dry_run).await;
        let outcome = match written {
            Err(SecretError::Changed) => return Ok(None),
            Err(e) => return Err(e),
            Ok(Applied::Unchanged) => {
                debug!(namespace = self.ns, "secret is current");
                return Ok(Some(Outcome::Unchanged));
            }
            // A Secret of the wrong type replaced: there was one before.
            Ok(Applied::Created) if found.state != State::Missing => Outcome::Updated,
            Ok(Applied::Created) => Outcome::Created,
            Ok(Applied::Updated) => Outcome::Updated,
        };
        info!(namespace = self.ns, secret = self.name, outcome = ?outcome, reason = %due, dry_run = policy.dry_run, "secret written");
        Ok(Some(outcome))
    }

    /// A conflict on a conditional write means the Secret changed since it was read.
    fn write_error(&self, e: &kube::Error) -> SecretError {
        if is_status(e, |s| s.is_conflict()) {
            SecretError::Changed
        } else {
            self.error(Op::Write, e)
        }
    }

    /// Deletes our Secret as `seen` (uid + resourceVersion preconditions), so a Secret
    /// changed or replaced since is left alone.
    pub(crate) async fn delete(&self, seen: &Secret, dry_run: bool) -> Result<(), SecretError> {
        self.delete_seen(&seen.metadata, Op::Delete, dry_run).await
    }

    async fn delete_seen(
        &self,
        seen: &ObjectMeta,
        op: Op,
        dry_run: bool,
    ) -> Result<(), SecretError> {
        let dp = DeleteParams {
            dry_run,
            preconditions: Some(Preconditions {
                uid: seen.uid.clone(),
                resource_version: seen.resource_version.clone(),
            }),
            ..Default::default()
        };
        let sent = AtomicU32::new(0);
        let result = self
            .cluster
            .call("delete secret", || {
                sent.fetch_add(1, Ordering::Relaxed);
                self.api.delete(self.name, &dp)
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            // An earlier attempt whose answer was lost deleted it: that is success.
            Err(e)
                if sent.load(Ordering::Relaxed) > 1
                    && is_status(&e, |s| self.secret_not_found(s)) =>
            {
                debug!(
                    namespace = self.ns,
                    secret = self.name,
                    "a retried delete found it gone"
                );
                Ok(())
            }
            Err(e) => Err(match op {
                Op::Replace => self.write_error(&e),
                _ => self.error(op, &e),
            }),
        }
    }

    /// A 404 about our Secret itself, not about its namespace.
    fn secret_not_found(&self, s: &Status) -> bool {
        s.is_not_found() && s.details.as_ref().is_none_or(|d| d.kind == "secrets")
    }

    /// Server-side apply of `secret`. Forced, it is conditional on the resourceVersion it
    /// carries (409 if the Secret changed since). Without force the server creates it (201),
    /// or refuses (409) if anyone else set fields to other values. Sent raw: kube's
    /// `Api::patch` hides the status code and the Date header, which tell an apply that
    /// changed nothing.
    async fn apply(
        &self,
        secret: &Secret,
        force: bool,
        dry_run: bool,
    ) -> Result<Applied, SecretError> {
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.force = force;
        pp.dry_run = dry_run;
        let client = self.cluster.client();
        // A retried apply may follow one that was applied but whose answer was lost: then the
        // server's answer to the retry says "200, unchanged", and only the clock tells.
        let (started, sent) = (std::time::Instant::now(), AtomicU32::new(0));
        let answer = self
            .cluster
            .call("apply secret", || async {
                sent.fetch_add(1, Ordering::Relaxed);
                let request = kube::core::Request::new(self.api.resource_url())
                    .patch(self.name, &pp, &Patch::Apply(secret))
                    .map_err(kube::Error::BuildRequest)?;
                let response = client.send(request.map(kube::client::Body::from)).await?;
                let code = response.status().as_u16();
                let date = response
                    .headers()
                    .get("date")
                    .and_then(|v| v.to_str().ok())
                    .and_then(http_date);
                let body = response.into_body().collect_bytes().await?;
                if code >= 400 {
                    return Err(api_error(code, &body));
                }
                let stored: Secret =
                    serde_json::from_slice(&body).map_err(kube::Error::SerdeError)?;
                Ok((code, date, stored))
            })
            .await;
        let (took, retried) = (started.elapsed(), sent.load(Ordering::Relaxed) > 1);
        match answer {
            Ok((201, ..)) => Ok(Applied::Created),
            Ok((_, date, stored)) if retried && created_within(&stored, date, took) => {
                Ok(Applied::Created)
            }
            Ok((_, date, stored)) if unchanged(&stored, date, took) => Ok(Applied::Unchanged),
            Ok(_) => Ok(Applied::Updated),
            Err(e) => Err(self.write_error(&e)),
        }
    }
}

/// What `status` finds wrong with one of our Secrets, and what it holds.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// The hosts the payload names.
    pub(crate) registries: Vec<String>,
    pub(crate) expires_at: Option<jiff::Timestamp>,
    pub(crate) problems: Vec<String>,
}

/// Checks one of our Secrets: a complete docker config for ECR registries only, naming the
/// same hosts as its annotation, with a believable expiry at least `min_remaining` away.
pub(crate) fn health(secret: &Secret, now: jiff::Timestamp, min_remaining: Duration) -> Health {
    let registries = named_hosts(secret);
    let mut problems = payload_problems(secret, &registries);
    let mut expires_at = None;
    match expiry(secret) {
        Expiry::Missing => problems.push("secret has no expiry annotation".into()),
        Expiry::Garbage(v) => problems.push(format!(
            "annotation {EXPIRES_AT_ANNOTATION} is {v:?}, not an RFC 3339 timestamp"
        )),
        Expiry::At(t) if is_beyond_token_lifetime(t, now) => {
            expires_at = Some(t);
            problems.push(format!(
                "annotation {EXPIRES_AT_ANNOTATION} says {t}, further out than an ECR token lasts (12h)"
            ));
        }
        Expiry::At(t) => {
            expires_at = Some(t);
            let left = t.as_second() - now.as_second();
            if left <= 0 {
                problems.push(format!("token expired at {t}"));
            } else if (left as u64) < min_remaining.as_secs() {
                problems.push(format!(
                    "token expires in {}, sooner than --min-remaining {}",
                    humantime::format_duration(Duration::from_secs(left as u64)),
                    humantime::format_duration(min_remaining)
                ));
            }
        }
    }
    Health {
        registries,
        expires_at,
        problems,
    }
}

fn payload_problems(secret: &Secret, named: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if hosts(secret).is_none() {
        problems.push(
            "payload is not a complete docker config (auths with username, password and auth)"
                .into(),
        );
    }
    if named.is_empty() {
        problems.push("payload names no registry".into());
    }
    let foreign: Vec<&str> = named
        .iter()
        .filter(|h| !is_registry_host(h))
        .map(String::as_str)
        .collect();
    if !foreign.is_empty() {
        problems.push(format!(
            "payload holds credentials for hosts that are not ECR registries: {}",
            foreign.join(", ")
        ));
    }
    let annotated = annotated_hosts(secret);
    if annotated != named {
        problems.push(format!(
            "payload registries ({}) differ from annotation {REGISTRIES_ANNOTATION} ({})",
            named.join(", "),
            annotated.join(", ")
        ));
    }
    problems
}

/// The server keeps our field manager's timestamp when an apply changes nothing, and sets it
/// while handling a request that does. Both it and the answer's Date header are in whole
/// seconds of the server's clock, and a write by this request is stamped at most `took` before
/// the Date, so only a gap of more than `took` + 1 s proves the apply changed nothing. A pass
/// within about 2 s of the last write therefore reports an update.
fn unchanged(stored: &Secret, date: Option<jiff::Timestamp>, took: Duration) -> bool {
    let ours = stored.metadata.managed_fields.iter().flatten().find(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
    });
    match (ours.and_then(|m| m.time.as_ref()), date) {
        (Some(changed), Some(now)) => {
            (now.as_second() - changed.0.as_second()) as f64 > took.as_secs_f64() + 1.0
        }
        _ => false,
    }
}

/// Created while our attempts were under way (`took`, on the server's clock as in
/// [`unchanged`]): an earlier attempt made it. Anyone else's would have made our apply conflict.
fn created_within(stored: &Secret, date: Option<jiff::Timestamp>, took: Duration) -> bool {
    match (stored.metadata.creation_timestamp.as_ref(), date) {
        (Some(created), Some(now)) => {
            (now.as_second() - created.0.as_second()) as f64 <= took.as_secs_f64() + 1.0
        }
        _ => false,
    }
}

fn http_date(value: &str) -> Option<jiff::Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()
}

/// An error answer as kube would report it: the server's Status, or one made from the body.
fn api_error(code: u16, body: &[u8]) -> kube::Error {
    let status = serde_json::from_slice::<Status>(body).unwrap_or_else(|_| {
        Status::failure(String::from_utf8_lossy(body).trim(), "").with_code(code)
    });
    kube::Error::Api(status.boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::token::Login;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn desired(expires: i64) -> Desired {
        Desired::new(
            &[RegionCredential {
                login: Login {
                    username: "AWS".into(),
                    password: Sensitive::new("pw".into()),
                },
                expires_at: Some(jiff::Timestamp::from_second(expires).unwrap()),
                hosts: own_names(),
            }],
            "region=us-east-1",
        )
    }

    /// Both names of the caller's own registry, as a Secret holds them.
    fn own_names() -> Vec<String> {
        let names =
            crate::ecr::RegistryHost::standard("123456789012", &"us-east-1".parse().unwrap())
                .names();
        assert_eq!(names[0], HOST);
        names
    }

    fn expected(requested: &[&str]) -> ExpectedHosts {
        ExpectedHosts {
            requested: requested.iter().map(|h| h.to_string()).collect(),
            default_region: "us-east-1".parse().unwrap(),
        }
    }

    #[test]
    fn our_object_is_current_and_fresh() {
        let d = desired(10_000);
        let s = d.object("awsecr-cred", "ns");
        let any = expected(&[]);
        assert_eq!(state(Some(&s)), State::Ours);
        let mut sorted = own_names();
        sorted.sort();
        assert_eq!(hosts(&s).unwrap(), sorted);
        assert_eq!(
            expiry(&s),
            Expiry::At(jiff::Timestamp::from_second(10_000).unwrap())
        );
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let fresh = |request, expect: &ExpectedHosts, refresh| {
            due(&s, request, expect, Duration::from_secs(refresh), now).is_none()
        };
        assert!(fresh("region=us-east-1", &any, 1800));
        let both = own_names();
        let both: Vec<&str> = both.iter().map(String::as_str).collect();
        assert!(fresh("region=us-east-1", &expected(&both), 1800));
        assert!(!fresh("region=us-east-1", &any, 3600));
        assert!(!fresh("region=eu-west-1", &any, 1800));
        // A requested registry the payload lacks.
        let other = "210987654321.dkr.ecr.us-east-1.amazonaws.com";
        assert!(!fresh("region=us-east-1", &expected(&[other]), 1800));
        let later = jiff::Timestamp::from_second(20_000).unwrap();
        assert_eq!(
            due(&s, "region=us-east-1", &any, Duration::ZERO, later),
            Some(Due::Expiring)
        );
        assert_eq!(
            due(&s, "region=eu-west-1", &any, Duration::ZERO, now),
            Some(Due::Request)
        );
    }

    #[test]
    fn annotations_are_not_trusted() {
        let d = desired(10_000);
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let fresh = |s: &Secret| {
            due(
                s,
                "region=us-east-1",
                &expected(&[]),
                Duration::from_secs(60),
                now,
            )
            .is_none()
        };
        let annotate = |k: &str, v: &str| {
            let mut s = d.object("awsecr-cred", "ns");
            s.metadata
                .annotations
                .as_mut()
                .unwrap()
                .insert(k.into(), v.into());
            s
        };
        // Further out than an ECR token lasts.
        let far = annotate(EXPIRES_AT_ANNOTATION, "2999-01-01T00:00:00Z");
        assert!(!fresh(&far));
        let twelve_hours = jiff::Timestamp::from_second(now.as_second() + 12 * 3600).unwrap();
        assert!(fresh(&annotate(
            EXPIRES_AT_ANNOTATION,
            &twelve_hours.to_string()
        )));
        // Garbage is garbage, not missing.
        let garbage = annotate(EXPIRES_AT_ANNOTATION, "soon");
        assert_eq!(expiry(&garbage), Expiry::Garbage("soon".into()));
        assert!(!fresh(&garbage));
        // The annotation disagrees with the payload.
        assert!(!fresh(&annotate(REGISTRIES_ANNOTATION, "evil.example.com")));
        // A payload for a host that is not an ECR registry of the region.
        let mut evil = annotate(REGISTRIES_ANNOTATION, "evil.example.com");
        let payload = br#"{"auths":{"evil.example.com":{"username":"AWS","password":"x","auth":"QVdTOng="}}}"#;
        evil.data
            .as_mut()
            .unwrap()
            .insert(dockerconfig::DATA_KEY.into(), ByteString(payload.to_vec()));
        assert_eq!(hosts(&evil).unwrap(), ["evil.example.com"]);
        assert!(!fresh(&evil));
        // An incomplete payload.
        evil.data.as_mut().unwrap().insert(
            dockerconfig::DATA_KEY.into(),
            ByteString(br#"{"auths":{"evil.example.com":{"auth":"QVdTOng="}}}"#.to_vec()),
        );
        assert_eq!(hosts(&evil), None);
        assert_eq!(named_hosts(&evil), ["evil.example.com"]);
    }

    #[test]
    fn states() {
        let d = desired(10_000);
        let mut s = d.object("awsecr-cred", "ns");
        assert_eq!(state(None), State::Missing);
        s.metadata.labels = None;
        assert_eq!(state(Some(&s)), State::Foreign);
        s.type_ = Some("Opaque".into());
        assert_eq!(state(Some(&s)), State::WrongType("Opaque".into()));
    }

    #[test]
    fn an_edit_by_another_manager_after_ours_is_due_until_we_write_again() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
        let entry = |manager: &str, at: &str, fields: serde_json::Value| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Update".into()),
            time: Some(Time(at.parse().unwrap())),
            fields_v1: Some(FieldsV1(fields)),
            ..Default::default()
        };
        let ours = || {
            entry(
                FIELD_MANAGER,
                "2026-11-27T03:00:00Z",
                serde_json::json!({"f:data": {"f:.dockerconfigjson": {}}}),
            )
        };
        let d = desired(10_000);
        let mut s = d.object("awsecr-cred", "ns");
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let judged = |s: &Secret| due(s, "region=us-east-1", &expected(&[]), Duration::ZERO, now);
        let fields = [
            serde_json::json!({"f:data": {".": {}, "f:.dockerconfigjson": {}}}),
            serde_json::json!({"f:type": {}}),
            serde_json::json!({"f:metadata": {"f:labels": {"f:app.kubernetes.io/managed-by": {}}}}),
            serde_json::json!({"f:metadata": {"f:annotations": {"f:ecr-refresh/expires-at": {}}}}),
        ];
        for f in fields {
            for at in ["2026-11-27T03:00:00Z", "2026-11-27T04:00:00Z"] {
                s.metadata.managed_fields =
                    Some(vec![ours(), entry("kubectl-edit", at, f.clone())]);
                assert_eq!(
                    judged(&s),
                    Some(Due::EditedBy("kubectl-edit".into())),
                    "{f} {at}"
                );
            }
            // Before our last write: taken back already (a field left shared is not an edit).
            s.metadata.managed_fields = Some(vec![
                ours(),
                entry("kubectl-edit", "2026-11-27T02:59:59Z", f.clone()),
            ]);
            assert_eq!(judged(&s), None, "{f}");
            // Nothing of ours: someone else wrote all of it.
            s.metadata.managed_fields =
                Some(vec![entry("kubectl-create", "2026-11-27T02:00:00Z", f)]);
            assert_eq!(judged(&s), Some(Due::EditedBy("kubectl-create".into())));
        }
        // Fields that are not ours (another label, another annotation) are no edit of ours.
        let theirs = serde_json::json!({"f:metadata": {"f:labels": {"f:team": {}}, "f:annotations": {"f:note": {}}}});
        s.metadata.managed_fields = Some(vec![
            ours(),
            entry("kubectl-label", "2026-11-27T04:00:00Z", theirs),
        ]);
        assert_eq!(judged(&s), None);
    }

    #[test]
    fn unchanged_only_when_our_last_change_is_clearly_older_than_the_answer() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};
        let date = http_date("Fri, 27 Nov 2026 03:08:02 GMT");
        assert_eq!(date, Some("2026-11-27T03:08:02Z".parse().unwrap()));
        let entry = |manager: &str, at: &str| ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            time: Some(Time(at.parse().unwrap())),
            ..Default::default()
        };
        let mut s = desired(10_000).object("awsecr-cred", "ns");
        let fast = Duration::from_millis(20);
        s.metadata.managed_fields = Some(vec![
            entry("kubectl", "2026-11-27T03:08:02Z"),
            entry(FIELD_MANAGER, "2026-11-27T02:08:02Z"),
        ]);
        assert!(unchanged(&s, date, fast));
        assert!(!unchanged(&s, None, fast));
        // Stamped in this second or the one before: possibly by this very request.
        for at in ["2026-11-27T03:08:02Z", "2026-11-27T03:08:01Z"] {
            s.metadata.managed_fields = Some(vec![entry(FIELD_MANAGER, at)]);
            assert!(!unchanged(&s, date, fast), "{at}");
        }
        s.metadata.managed_fields = Some(vec![entry(FIELD_MANAGER, "2026-11-27T03:08:00Z")]);
        assert!(unchanged(&s, date, fast));
        // A slow answer widens the window.
        assert!(!unchanged(&s, date, Duration::from_millis(1500)));
        s.metadata.managed_fields = None;
        assert!(!unchanged(&s, date, fast));
    }

    #[test]
    fn error_answers_become_api_errors() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"Apply failed with 1 conflict","reason":"Conflict","code":409}"#;
        assert!(is_status(&api_error(409, body), |s| s.is_conflict()));
        let e = api_error(502, b"<html>bad gateway</html>");
        assert!(is_status(&e, |s| s.code == 502 && s.message.contains("bad gateway")));
    }

    #[test]
    fn debug_of_desired_payload_is_redacted() {
        let d = desired(10_000);
        assert_eq!(format!("{:?}", d.payload), "(redacted)");
    }
}
