//! How we judge what is there: whose the Secret is, what it holds, and whether a write is due.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

use super::ledger::Written;
use super::{
    is_beyond_token_lifetime, EXPIRES_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION, REQUEST_ANNOTATION, SECRET_TYPE,
};
use crate::cluster::FIELD_MANAGER;
use crate::dockerconfig;
use crate::ecr::ExpectedHosts;

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

pub(crate) fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

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

/// What `status` finds wrong with a Secret's expiry annotation (the pull Secret's, Argo CD's):
/// missing, not a timestamp, further out than a token lasts, past, or within `min_remaining`.
/// Also the expiry, where there is a believable one.
pub(crate) fn expiry_problem(
    secret: &Secret,
    now: jiff::Timestamp,
    min_remaining: std::time::Duration,
) -> (Option<jiff::Timestamp>, Option<String>) {
    match expiry(secret) {
        Expiry::Missing => (None, Some("secret has no expiry annotation".into())),
        Expiry::Garbage(v) => (
            None,
            Some(format!(
                "annotation {EXPIRES_AT_ANNOTATION} is {v:?}, not an RFC 3339 timestamp"
            )),
        ),
        Expiry::At(t) if crate::ecr::token::is_beyond_token_lifetime(t, now) => (
            Some(t),
            Some(format!(
                "annotation {EXPIRES_AT_ANNOTATION} says {t}, further out than an ECR token lasts (12h)"
            )),
        ),
        Expiry::At(t) => {
            let left = t.as_second() - now.as_second();
            let problem = if left <= 0 {
                Some(format!("token expired at {t}"))
            } else if (left as u64) < min_remaining.as_secs() {
                Some(format!(
                    "token expires in {}, sooner than --min-remaining {}",
                    humantime::format_duration(std::time::Duration::from_secs(left as u64)),
                    humantime::format_duration(min_remaining)
                ))
            } else {
                None
            };
            (Some(t), problem)
        }
    }
}

fn payload(secret: &Secret) -> Option<&[u8]> {
    secret
        .data
        .as_ref()?
        .get(dockerconfig::DATA_KEY)
        .map(|v| v.0.as_slice())
}

/// The data keys of a Secret besides our payload's: someone else's, which server-side apply
/// keeps, and which make the admission policy refuse our every write.
pub(crate) fn stray_keys(secret: &Secret) -> Vec<String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| *k != dockerconfig::DATA_KEY)
        .cloned()
        .collect()
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
    /// Written since our last write: its resourceVersion is not the one the ledger holds.
    Changed,
    /// The ledger has no record of our writing it.
    Unrecorded,
    /// Holds data keys besides ours (removed before the write).
    StrayKeys(Vec<String>),
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
            Due::Changed => f.write_str("written by someone else since ecr-refresh last wrote it"),
            Due::Unrecorded => f.write_str("not recorded as written by ecr-refresh"),
            Due::StrayKeys(keys) => write!(
                f,
                "holds data keys ecr-refresh does not write ({})",
                keys.join(", ")
            ),
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
/// write (the ledger's resourceVersion, `written`, when it could be read), and valid for more than `refresh_before` (but no longer than an ECR token lasts).
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
        &Written::Unknown,
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
    written: &Written,
    request: &str,
    expected: &ExpectedHosts,
    refresh_before: Duration,
    now: jiff::Timestamp,
) -> Option<Due> {
    // Exactly what we wrote: nobody edited it since, whatever its managedFields claim.
    if !written.vouches_for(secret.metadata.resource_version.as_deref()) {
        if let Some(manager) = edited_by(secret) {
            return Some(Due::EditedBy(manager));
        }
        match written {
            Written::Unknown => {}
            Written::Never => return Some(Due::Unrecorded),
            Written::At(_) => return Some(Due::Changed),
        }
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

/// What a current Secret was made from, a plain value known before any token is fetched (so
/// judgement needs no ECR client): the request (region, registries, role, credentials), so
/// one made from another is never current, and the registry hosts it must hold.
#[derive(Clone, Debug)]
pub(crate) struct Wanted {
    pub(crate) request: String,
    pub(crate) expected: ExpectedHosts,
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
    pub(super) seen: ObjectMeta,
    /// Data keys besides ours, removed before a write (see [`stray_keys`]).
    pub(crate) strays: Vec<String>,
}

impl Found {
    /// How a Secret read in full stands; `written` is the ledger's word on it.
    pub(crate) fn of(
        existing: Option<&Secret>,
        written: &Written,
        wanted: &Wanted,
        policy: Policy,
        now: jiff::Timestamp,
    ) -> Self {
        let strays = existing.map(stray_keys).unwrap_or_default();
        Self::judged(
            state(existing),
            existing,
            hosts,
            written,
            strays,
            (wanted, policy, now),
        )
    }

    /// How a Secret stands, judged from its metadata alone (a metadata-only list carries no
    /// type and no payload), or `None` when the metadata cannot tell: then it must be read in
    /// full. It tells only for a Secret the ledger vouches for: its resourceVersion is the one
    /// our last write produced, so type, payload, data keys and annotations are all as that
    /// write checked and wrote them. Names in managedFields, our label and our annotations
    /// prove nothing: whoever may write the Secret may write them too.
    pub(crate) fn of_metadata(
        secret: &Secret,
        written: &Written,
        wanted: &Wanted,
        policy: Policy,
        now: jiff::Timestamp,
    ) -> Option<Self> {
        if !is_ours(secret) || !written.vouches_for(secret.metadata.resource_version.as_deref()) {
            return None;
        }
        let hosts = |s: &Secret| Some(annotated_hosts(s));
        Some(Self::judged(
            State::Ours,
            Some(secret),
            hosts,
            written,
            Vec::new(),
            (wanted, policy, now),
        ))
    }

    /// How `existing`, whose state is `state`, stands.
    fn judged(
        state: State,
        existing: Option<&Secret>,
        payload_hosts: impl FnOnce(&Secret) -> Option<Vec<String>>,
        written: &Written,
        strays: Vec<String>,
        (wanted, policy, now): (&Wanted, Policy, jiff::Timestamp),
    ) -> Self {
        let due = match (&state, existing) {
            (State::Missing, _) => Some(Due::Missing),
            // Before --refresh-all: the write must remove them first.
            (State::Ours, _) if !strays.is_empty() => Some(Due::StrayKeys(strays.clone())),
            (State::Ours, _) if policy.refresh_all => Some(Due::Asked),
            (State::Ours, Some(s)) => due_given(
                s,
                payload_hosts(s),
                written,
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
            strays,
        }
    }
}

/// What `sync` does with the Secret it found: the Secret step of a namespace's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretStep {
    /// Current: nothing to write.
    Leave,
    /// Someone else's, or of another type, and no --force: nothing is written.
    Refuse,
    /// None there: create it (an apply that conflicts with one made since).
    Create,
    /// Ours, or someone else's taken over with --force: apply over exactly the version read,
    /// after removing data keys that are not ours.
    Apply,
    /// Of another type, with --force: delete exactly the object read, then create ours.
    Replace,
}

impl SecretStep {
    /// Whether the step writes, and so needs the token.
    pub(crate) fn writes(self) -> bool {
        matches!(self, Self::Create | Self::Apply | Self::Replace)
    }
}

impl Found {
    /// The step `sync` takes: refused unless ours (or --force), left when current.
    pub(crate) fn step(&self, policy: Policy) -> SecretStep {
        match (&self.state, &self.due) {
            (State::Foreign | State::WrongType(_), _) if !policy.force => SecretStep::Refuse,
            (_, None) => SecretStep::Leave,
            (State::Missing, Some(_)) => SecretStep::Create,
            (State::WrongType(_), Some(_)) => SecretStep::Replace,
            (State::Ours | State::Foreign, Some(_)) => SecretStep::Apply,
        }
    }

    /// Whether `sync` will write it: due, and ours to write (or taken over with --force).
    pub(crate) fn writes(&self, policy: Policy) -> bool {
        self.step(policy).writes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{desired, expected, own_names};
    use super::*;
    use k8s_openapi::ByteString;

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
    fn the_ledger_vouches_for_exactly_the_version_we_wrote_whatever_managed_fields_say() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
        let d = desired(10_000);
        let mut s = d.object("awsecr-cred", "ns");
        s.metadata.resource_version = Some("12".into());
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let judged = |s: &Secret, w: &Written| {
            let (request, any) = ("region=us-east-1", expected(&[]));
            due_given(s, hosts(s), w, request, &any, Duration::ZERO, now)
        };
        let at = |rv: &str| Written::At(rv.into());
        assert_eq!(judged(&s, &at("12")), None);
        assert_eq!(judged(&s, &at("11")), Some(Due::Changed));
        assert_eq!(judged(&s, &Written::Never), Some(Due::Unrecorded));
        // Unreadable: judged by content and managedFields, as before the ledger.
        assert_eq!(judged(&s, &Written::Unknown), None);
        // A claimed edit: believed only where the ledger does not vouch.
        s.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("kubectl-edit".into()),
            operation: Some("Update".into()),
            time: Some(Time("2026-11-27T04:00:00Z".parse().unwrap())),
            fields_v1: Some(FieldsV1(serde_json::json!({"f:type": {}}))),
            ..Default::default()
        }]);
        assert_eq!(judged(&s, &at("12")), None);
        assert_eq!(
            judged(&s, &at("11")),
            Some(Due::EditedBy("kubectl-edit".into()))
        );
        assert!(at("12").vouches_for(Some("12")) && !Written::Unknown.vouches_for(Some("12")));
    }

    #[test]
    fn stray_data_keys_are_everything_but_ours() {
        let mut s = desired(10_000).object("awsecr-cred", "ns");
        assert!(stray_keys(&s).is_empty());
        let data = s.data.as_mut().unwrap();
        data.insert("note".into(), ByteString(b"hi".to_vec()));
        data.insert("a/b".into(), ByteString(Vec::new()));
        assert_eq!(stray_keys(&s), ["a/b", "note"]);
        s.data = None;
        assert!(stray_keys(&s).is_empty());
    }

    /// Every way of touching one of our Secrets that `tests/it/requests.rs` makes on a real server,
    /// as plain data: the metadata alone (no type, no payload) vouches only for the exact version
    /// the ledger recorded, and wherever it vouches it judges as a full read does. Judged with
    /// the ledger's record, without one (`Never`) and unreadable (`Unknown`).
    #[test]
    fn the_metadata_vouches_only_for_our_last_write_and_then_judges_as_a_full_read() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, Time};
        let d = desired(10_000);
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let wanted = Wanted {
            request: "region=us-east-1".into(),
            expected: expected(&[]),
        };
        let policy = |force, refresh_all| Policy {
            force,
            dry_run: false,
            refresh_before: Duration::from_secs(60),
            refresh_all,
        };
        let ours = || {
            let mut s = d.object("awsecr-cred", "ns");
            s.metadata.uid = Some("u1".into());
            s.metadata.resource_version = Some("12".into());
            s.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                manager: Some(FIELD_MANAGER.into()),
                operation: Some("Apply".into()),
                time: Some(Time("2026-11-27T03:00:00Z".parse().unwrap())),
                fields_v1: Some(FieldsV1(
                    serde_json::json!({"f:data": {"f:.dockerconfigjson": {}}}),
                )),
                ..Default::default()
            }]);
            s
        };
        // Any write by anyone gives a new resourceVersion.
        let touched = |edit: &dyn Fn(&mut Secret)| {
            let mut s = ours();
            edit(&mut s);
            s.metadata.resource_version = Some("13".into());
            Some(s)
        };
        let payload = |s: &mut Secret, json: &str| {
            s.data.get_or_insert_with(Default::default).insert(
                dockerconfig::DATA_KEY.into(),
                ByteString(json.as_bytes().to_vec()),
            );
        };
        let annotate = |s: &mut Secret, k: &str, v: Option<&str>| {
            let a = s.metadata.annotations.get_or_insert_with(Default::default);
            match v {
                Some(v) => a.insert(k.into(), v.into()),
                None => a.remove(k),
            };
        };
        let foreign =
            r#"{"auths":{"evil.example.com":{"username":"u","password":"p","auth":"dTpw"}}}"#;
        let stolen = {
            let hosts = own_names();
            let entry = r#"{"username":"AWS","password":"stolen","auth":"QVdTOnN0b2xlbg=="}"#;
            let auths: Vec<String> = hosts.iter().map(|h| format!(r#""{h}":{entry}"#)).collect();
            format!(r#"{{"auths":{{{}}}}}"#, auths.join(","))
        };
        let unlabel = |s: &mut Secret| s.metadata.labels = None;
        // Full read with the ledger's record (At "12"), with none (Never) and unreadable (Unknown).
        type Row<'a> = (&'a str, Option<Secret>, [Option<Due>; 3]);
        let changed = || [Some(Due::Changed), Some(Due::Unrecorded)];
        let row = |name, s, unknown: Option<Due>| -> Row {
            let [a, b] = changed();
            (name, s, [a, b, unknown])
        };
        let not_ours = || [Some(Due::NotOurs), Some(Due::NotOurs), Some(Due::NotOurs)];
        let cases: Vec<Row> = vec![
            ("current", Some(ours()), [None, Some(Due::Unrecorded), None]),
            row(
                "payload",
                touched(&|s| payload(s, foreign)),
                Some(Due::Registries),
            ),
            row(
                "expiry",
                touched(&|s| annotate(s, EXPIRES_AT_ANNOTATION, Some("2099-01-01T00:00:00Z"))),
                Some(Due::Expiry),
            ),
            row(
                "noregs",
                touched(&|s| annotate(s, REGISTRIES_ANNOTATION, None)),
                Some(Due::Registries),
            ),
            ("unlabelled", touched(&unlabel), not_ours()),
            (
                "stripped",
                touched(&|s| s.metadata.managed_fields = None),
                {
                    let [a, b] = changed();
                    // Without a manager on record nothing tells it from ours: judged by content.
                    [a, b, None]
                },
            ),
            row(
                "stripedit",
                touched(&|s| {
                    s.metadata.managed_fields = None;
                    payload(s, foreign);
                }),
                Some(Due::Registries),
            ),
            (
                "recreated",
                touched(&|s| s.metadata.uid = Some("u2".into())),
                {
                    let [a, b] = changed();
                    [a, b, None]
                },
            ),
            (
                "opaque",
                touched(&|s| s.type_ = Some("Opaque".into())),
                not_ours(),
            ),
            (
                "foreign",
                touched(&|s| {
                    unlabel(s);
                    payload(s, foreign);
                }),
                not_ours(),
            ),
            (
                "missing",
                None,
                [Some(Due::Missing), Some(Due::Missing), Some(Due::Missing)],
            ),
            row(
                "asusempty",
                touched(&|s| payload(s, r#"{"auths":{}}"#)),
                Some(Due::Registries),
            ),
            // The password changed and the managedFields put back: only the ledger tells.
            ("forged", touched(&|s| payload(s, &stolen)), {
                let [a, b] = changed();
                [a, b, None]
            }),
            (
                "note",
                touched(&|s| {
                    s.data
                        .as_mut()
                        .unwrap()
                        .insert("note".into(), ByteString(b"hi".to_vec()));
                }),
                {
                    let strays = Some(Due::StrayKeys(vec!["note".into()]));
                    [strays.clone(), strays.clone(), strays]
                },
            ),
        ];
        let ledgers = [Written::At("12".into()), Written::Never, Written::Unknown];
        for (name, secret, dues) in &cases {
            for (written, want) in ledgers.iter().zip(dues) {
                let full = Found::of(secret.as_ref(), written, &wanted, policy(false, false), now);
                assert_eq!(&full.due, want, "{name}, {written:?}");
                // --force writes whatever is due; without it, only ours or a missing one.
                let ours_to_write = matches!(full.state, State::Ours | State::Missing);
                assert_eq!(
                    full.writes(policy(false, false)),
                    want.is_some() && ours_to_write,
                    "{name}"
                );
                assert_eq!(full.writes(policy(true, false)), want.is_some(), "{name}");
                let Some(s) = secret else { continue };
                // What a metadata-only list carries.
                let meta = Secret {
                    metadata: s.metadata.clone(),
                    ..Default::default()
                };
                for refresh_all in [false, true] {
                    let p = policy(false, refresh_all);
                    let listed = Found::of_metadata(&meta, written, &wanted, p, now);
                    let vouched = *name == "current" && matches!(written, Written::At(_));
                    assert_eq!(listed.is_some(), vouched, "{name}, {written:?}");
                    let Some(listed) = listed else { continue };
                    let full = Found::of(Some(s), written, &wanted, p, now);
                    assert_eq!(
                        (&listed.state, &listed.due, listed.expires_at, &listed.seen),
                        (&full.state, &full.due, full.expires_at, &full.seen),
                        "{name}, refresh_all {refresh_all}"
                    );
                }
            }
        }
        // The current one, judged at later times from the metadata: due once within the window.
        let meta = Secret {
            metadata: ours().metadata,
            ..Default::default()
        };
        let at = |secs| {
            let when = jiff::Timestamp::from_second(secs).unwrap();
            Found::of_metadata(&meta, &ledgers[0], &wanted, policy(false, false), when)
                .unwrap()
                .due
        };
        assert_eq!(at(10_000 - 61), None);
        assert_eq!(at(10_000 - 60), Some(Due::Expiring));
        // Made from another request.
        let other = Wanted {
            request: "region=eu-west-1".into(),
            ..wanted.clone()
        };
        let listed = Found::of_metadata(&meta, &ledgers[0], &other, policy(false, false), now);
        assert_eq!(listed.unwrap().due, Some(Due::Request));
    }

    /// The Secret step over every state, due or not, with and without --force: what is not
    /// ours is refused unless forced, whatever it holds; and only a write needs the token.
    #[test]
    fn the_secret_step_of_every_state() {
        use SecretStep::{Apply, Create, Leave, Refuse, Replace};
        let policy = |force| Policy {
            force,
            dry_run: false,
            refresh_before: Duration::ZERO,
            refresh_all: false,
        };
        let found = |state: State, due: Option<Due>| Found {
            state,
            due,
            expires_at: None,
            seen: ObjectMeta::default(),
            strays: Vec::new(),
        };
        let opaque = || State::WrongType("Opaque".into());
        // (state, due, without --force, with --force)
        let table = [
            (State::Missing, Some(Due::Missing), Create, Create),
            (State::Ours, None, Leave, Leave),
            (State::Ours, Some(Due::Expiring), Apply, Apply),
            (
                State::Ours,
                Some(Due::StrayKeys(vec!["k".into()])),
                Apply,
                Apply,
            ),
            (State::Foreign, Some(Due::NotOurs), Refuse, Apply),
            (State::Foreign, None, Refuse, Leave),
            (opaque(), Some(Due::NotOurs), Refuse, Replace),
            (opaque(), None, Refuse, Leave),
        ];
        for (state, due, unforced, forced) in table {
            let f = found(state.clone(), due.clone());
            assert_eq!(f.step(policy(false)), unforced, "{state:?} {due:?}");
            assert_eq!(f.step(policy(true)), forced, "{state:?} {due:?} --force");
            for (force, step) in [(false, unforced), (true, forced)] {
                let writes = matches!(step, Create | Apply | Replace);
                assert_eq!(f.writes(policy(force)), writes, "{state:?} {due:?}");
            }
        }
    }
}
