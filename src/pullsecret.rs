//! The pull Secret: what it should hold, how we recognise ours, and every API call on it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
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

    /// The Secret already holds exactly this; writing would change nothing.
    pub(crate) fn is_current(&self, existing: &Secret) -> bool {
        is_ours(existing)
            && existing.type_.as_deref() == Some(SECRET_TYPE)
            && existing
                .data
                .as_ref()
                .and_then(|d| d.get(dockerconfig::DATA_KEY))
                .is_some_and(|v| v.0 == *self.payload.expose())
            && self
                .annotations
                .iter()
                .all(|(k, v)| annotation(existing, k) == Some(v.as_str()))
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

/// Ours, made from the same request, for exactly the registries asked for, and valid for more
/// than `refresh_before` (but no longer than an ECR token lasts): no need to fetch a token for
/// it. Annotations are only believed when they agree with the payload.
pub(crate) fn is_fresh(
    secret: &Secret,
    request: &str,
    expected: &ExpectedHosts,
    refresh_before: Duration,
    now: jiff::Timestamp,
) -> bool {
    let Expiry::At(expires) = expiry(secret) else {
        return false;
    };
    let Some(hosts) = hosts(secret) else {
        return false;
    };
    let left_secs = expires.as_second() - now.as_second();
    state(Some(secret)) == State::Ours
        && annotation(secret, REQUEST_ANNOTATION) == Some(request)
        && left_secs > i64::try_from(refresh_before.as_secs()).unwrap_or(i64::MAX)
        && !is_beyond_token_lifetime(expires, now)
        && annotated_hosts(secret) == hosts
        && expected.matches(&hosts)
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
    /// Leave a Secret of ours alone while it is valid for longer than this.
    pub(crate) refresh_before: Option<Duration>,
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
    /// Refused or failed otherwise; a 403 says whether RBAC or a quota refused it.
    #[error("{op} secret {secret}: {message}")]
    Call {
        op: Op,
        secret: String,
        message: String,
    },
}

/// What one server-side apply did, told from the answer alone.
enum Applied {
    Created,
    Updated,
    /// The apply changed nothing (our last change to it is older than the answer).
    Unchanged,
    /// Refused: someone else owns fields we would change (409), or the type differs (422).
    Refused(kube::Error),
}

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
        } else if matches!(op, Op::Write) && is_status(e, |s| s.is_conflict()) {
            // Someone else created or claimed it since we looked.
            self.not_ours()
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

    /// Makes the Secret hold what `wanted` gives. Without --refresh-before this is one apply,
    /// with no read first: the server tells missing, ours and someone else's apart. Only a
    /// refused apply is followed by a read. Deciding whether to write at all needs the read.
    pub(crate) async fn ensure(
        &self,
        wanted: &Wanted,
        policy: Policy,
        shield: &Shield,
    ) -> Result<Outcome, SecretError> {
        if policy.refresh_before.is_some() {
            let existing = self.get().await?;
            return self.ensure_from(wanted, policy, existing, shield).await;
        }
        let desired = wanted.get().await.map_err(SecretError::Token)?;
        let secret = desired.object(self.name, self.ns);
        let outcome = match self.apply(&secret, false, policy.dry_run).await? {
            Applied::Created => Outcome::Created,
            Applied::Updated => Outcome::Updated,
            Applied::Unchanged => {
                debug!(namespace = self.ns, "secret is current");
                return Ok(Outcome::Unchanged);
            }
            Applied::Refused(refused) => {
                let existing = self.get().await?;
                // A 422 is only ours to sort out when it is about the type.
                if is_status(&refused, |s| s.is_invalid())
                    && !matches!(state(existing.as_ref()), State::WrongType(_))
                {
                    return Err(self.error(Op::Write, &refused));
                }
                return self.ensure_from(wanted, policy, existing, shield).await;
            }
        };
        self.written(outcome, policy);
        Ok(outcome)
    }

    /// Given what the Secret holds: leave it, take it back, take it over (--force), or refuse.
    async fn ensure_from(
        &self,
        wanted: &Wanted,
        policy: Policy,
        existing: Option<Secret>,
        shield: &Shield,
    ) -> Result<Outcome, SecretError> {
        let state = state(existing.as_ref());
        match &state {
            State::Foreign if !policy.force => return Err(self.not_ours()),
            State::WrongType(found) if !policy.force => {
                return Err(SecretError::WrongType {
                    secret: self.name.to_string(),
                    found: found.clone(),
                });
            }
            State::Ours => {
                if let (Some(refresh), Some(s)) = (policy.refresh_before, &existing) {
                    let now = jiff::Timestamp::now();
                    if is_fresh(s, &wanted.request, &wanted.expected, refresh, now) {
                        debug!(namespace = self.ns, "secret is fresh");
                        return Ok(Outcome::Unchanged);
                    }
                }
            }
            _ => {}
        }
        // Everything below writes, so get the token first: a failed fetch writes nothing.
        let desired = wanted.get().await.map_err(SecretError::Token)?;
        if existing.as_ref().is_some_and(|s| desired.is_current(s)) {
            debug!(namespace = self.ns, "secret is current");
            return Ok(Outcome::Unchanged);
        }
        // Held from a delete to its create, so neither --timeout nor a signal leaves the
        // namespace without a Secret in between.
        let mut _unsplit = None;
        if let (State::WrongType(found), Some(s)) = (&state, &existing) {
            // The server refuses to change a Secret's type in place: delete exactly the object
            // we saw, then create ours.
            _unsplit = Some(shield.hold().await);
            warn!(namespace = self.ns, secret = self.name, found = %found, "--force: replacing secret of the wrong type");
            self.delete_seen(s, Op::Replace, policy.dry_run).await?;
            if policy.dry_run {
                // The delete did not persist, so a dry-run apply would still meet the old type.
                return Ok(Outcome::Updated);
            }
        }
        let outcome = if state == State::Missing {
            Outcome::Created
        } else {
            Outcome::Updated
        };
        // Ours (or taken over with --force): take back fields that someone else edited. A
        // missing one is applied without force, so a foreign Secret created since our read
        // conflicts.
        let force = policy.force || state == State::Ours;
        let secret = desired.object(self.name, self.ns);
        if let Applied::Refused(e) = self.apply(&secret, force, policy.dry_run).await? {
            return Err(self.error(Op::Write, &e));
        }
        self.written(outcome, policy);
        Ok(outcome)
    }

    fn written(&self, outcome: Outcome, policy: Policy) {
        info!(namespace = self.ns, secret = self.name, outcome = ?outcome, dry_run = policy.dry_run, "secret written");
    }

    /// Deletes our Secret as `seen` (uid + resourceVersion preconditions), so a Secret
    /// changed or replaced since is left alone.
    pub(crate) async fn delete(&self, seen: &Secret, dry_run: bool) -> Result<(), SecretError> {
        self.delete_seen(seen, Op::Delete, dry_run).await
    }

    async fn delete_seen(&self, seen: &Secret, op: Op, dry_run: bool) -> Result<(), SecretError> {
        let dp = DeleteParams {
            dry_run,
            preconditions: Some(Preconditions {
                uid: seen.metadata.uid.clone(),
                resource_version: seen.metadata.resource_version.clone(),
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
            Err(e) => Err(self.error(op, &e)),
        }
    }

    /// A 404 about our Secret itself, not about its namespace.
    fn secret_not_found(&self, s: &Status) -> bool {
        s.is_not_found() && s.details.as_ref().is_none_or(|d| d.kind == "secrets")
    }

    /// Server-side apply of `secret`. Without `force` the server creates it (201), updates it
    /// if only our field manager wrote it (200), or refuses (409) if anyone else wrote fields
    /// we set. Sent raw: kube's `Api::patch` hides the status code and the Date header.
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
            Err(e) if is_status(&e, |s| s.is_conflict() || s.is_invalid()) => {
                Ok(Applied::Refused(e))
            }
            Err(e) => Err(self.error(Op::Write, &e)),
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
        assert!(d.is_current(&s));
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
            is_fresh(&s, request, expect, Duration::from_secs(refresh), now)
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
        assert!(!is_fresh(
            &s,
            "region=us-east-1",
            &any,
            Duration::ZERO,
            later
        ));
    }

    #[test]
    fn annotations_are_not_trusted() {
        let d = desired(10_000);
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let fresh = |s: &Secret| {
            is_fresh(
                s,
                "region=us-east-1",
                &expected(&[]),
                Duration::from_secs(60),
                now,
            )
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
        assert!(!d.is_current(&s));
        s.type_ = Some("Opaque".into());
        assert_eq!(state(Some(&s)), State::WrongType("Opaque".into()));
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
