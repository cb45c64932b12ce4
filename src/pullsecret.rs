//! The pull Secret: what we want it to hold, how we recognise ours, and how we write it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams};
use kube::core::Status;

use crate::cluster::{is_status, Cluster};
use crate::ecr::{ExpectedHosts, RegionCredential};
use crate::sensitive::Sensitive;
use crate::{
    dockerconfig, EXPIRES_AT_ANNOTATION, FIELD_MANAGER, MANAGED_BY_LABEL, MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
};

pub const SECRET_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// What the Secret was made from (region, registries, role): a Secret made from another
/// request is never considered fresh.
pub const REQUEST_ANNOTATION: &str = "ecr-refresh/request";

/// The Secret every namespace should hold, built once per run.
pub struct Desired {
    pub payload: Sensitive<Vec<u8>>,
    pub annotations: BTreeMap<String, String>,
    pub hosts: Vec<String>,
    pub expires_at: Option<jiff::Timestamp>,
}

impl Desired {
    pub fn new(credentials: &[RegionCredential], request: &str) -> Self {
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

    pub fn object(&self, name: &str, namespace: &str) -> Secret {
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
    pub fn is_current(&self, existing: &Secret) -> bool {
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
pub enum State {
    Missing,
    /// Exists without our label.
    Foreign,
    /// Ours by label, but not a dockerconfigjson Secret (or someone else's of another type).
    WrongType(String),
    Ours,
}

pub fn state(existing: Option<&Secret>) -> State {
    match existing {
        None => State::Missing,
        Some(s) if s.type_.as_deref() != Some(SECRET_TYPE) => {
            State::WrongType(s.type_.clone().unwrap_or_default())
        }
        Some(s) if !is_ours(s) => State::Foreign,
        Some(_) => State::Ours,
    }
}

pub fn is_ours(secret: &Secret) -> bool {
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

/// ECR tokens last 12 hours: an expiry further out than this (plus some clock skew between ECR
/// and us) was not copied from an ECR answer.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The expiry annotation of one of our Secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expiry {
    Missing,
    /// There, but not an RFC 3339 timestamp (the raw value).
    Garbage(String),
    At(jiff::Timestamp),
}

pub fn expiry(secret: &Secret) -> Expiry {
    match annotation(secret, EXPIRES_AT_ANNOTATION) {
        None => Expiry::Missing,
        Some(v) => v
            .parse()
            .map_or_else(|_| Expiry::Garbage(v.to_string()), Expiry::At),
    }
}

/// When the token in one of our Secrets expires, from its annotation.
pub fn expires_at(secret: &Secret) -> Option<jiff::Timestamp> {
    match expiry(secret) {
        Expiry::At(t) => Some(t),
        _ => None,
    }
}

/// Further out than any ECR token lasts.
pub fn is_beyond_token_lifetime(expires: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    expires.as_second() - now.as_second() > (MAX_TOKEN_LIFETIME + CLOCK_SKEW).as_secs() as i64
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
pub fn hosts(secret: &Secret) -> Option<Vec<String>> {
    dockerconfig::hosts(payload(secret)?)
}

/// The hosts named in the payload, even when its entries are incomplete (for `status`).
pub fn named_hosts(secret: &Secret) -> Vec<String> {
    payload(secret)
        .and_then(dockerconfig::named_hosts)
        .unwrap_or_default()
}

/// The hosts the registries annotation names.
pub fn annotated_hosts(secret: &Secret) -> Vec<String> {
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
pub fn is_fresh(
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

/// What one server-side apply of our Secret did, told from the answer alone.
#[derive(Debug)]
pub enum Applied {
    Created,
    Updated,
    /// The apply changed nothing (our last change to it is older than the answer).
    Unchanged,
    /// Refused: someone else owns fields we would change (409), or the type differs (422).
    /// Holds what the server has now, read once (None: deleted since).
    Refused(Option<Box<Secret>>),
}

#[derive(Debug)]
pub enum ApplyError {
    Apply(kube::Error),
    /// Reading the Secret after a refused apply failed.
    Read(kube::Error),
}

/// Applies `secret` without `force` and without reading first: the server creates it (201),
/// updates it if only our field manager wrote it (200), or refuses (409) if anyone else
/// wrote fields we set. Only then is it read, once, so the caller can tell foreign from
/// hand-edited. One request per namespace in the common case.
pub async fn apply(
    cluster: &Cluster,
    api: &Api<Secret>,
    secret: &Secret,
    dry_run: bool,
) -> Result<Applied, ApplyError> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let mut pp = PatchParams::apply(FIELD_MANAGER);
    pp.dry_run = dry_run;
    let client = cluster.client();
    // Sent raw: kube's Api::patch hides the status code (201 vs 200) and the Date header.
    let answer = cluster
        .call("apply secret", || async {
            let request = kube::core::Request::new(api.resource_url())
                .patch(name, &pp, &Patch::Apply(secret))
                .map_err(kube::Error::BuildRequest)?;
            let sent = std::time::Instant::now();
            let response = client.send(request.map(kube::client::Body::from)).await?;
            let took = sent.elapsed();
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
            let stored: Secret = serde_json::from_slice(&body).map_err(kube::Error::SerdeError)?;
            Ok((code, date, took, stored))
        })
        .await;
    let refused = match answer {
        Ok((201, ..)) => return Ok(Applied::Created),
        Ok((_, date, took, stored)) if unchanged(&stored, date, took) => {
            return Ok(Applied::Unchanged)
        }
        Ok(_) => return Ok(Applied::Updated),
        Err(e) if is_status(&e, |s| s.is_conflict() || s.is_invalid()) => e,
        Err(e) => return Err(ApplyError::Apply(e)),
    };
    let existing = cluster
        .call("get secret", || api.get_opt(name))
        .await
        .map_err(ApplyError::Read)?;
    // A 422 is only ours to sort out when it is about the type; anything else is the answer.
    if is_status(&refused, |s| s.is_invalid())
        && !matches!(state(existing.as_ref()), State::WrongType(_))
    {
        return Err(ApplyError::Apply(refused));
    }
    Ok(Applied::Refused(existing.map(Box::new)))
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
    use crate::ecr::Login;

    const HOST: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";

    fn desired(expires: i64) -> Desired {
        Desired::new(
            &[RegionCredential {
                region: "us-east-1".parse().unwrap(),
                login: Login {
                    username: "AWS".into(),
                    password: Sensitive::new("pw".into()),
                },
                expires_at: Some(jiff::Timestamp::from_second(expires).unwrap()),
                hosts: vec![HOST.into()],
            }],
            "region=us-east-1",
        )
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
        assert_eq!(hosts(&s).unwrap(), [HOST]);
        assert_eq!(
            expires_at(&s),
            Some(jiff::Timestamp::from_second(10_000).unwrap())
        );
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        let fresh = |request, expect: &ExpectedHosts, refresh| {
            is_fresh(&s, request, expect, Duration::from_secs(refresh), now)
        };
        assert!(fresh("region=us-east-1", &any, 1800));
        assert!(fresh("region=us-east-1", &expected(&[HOST]), 1800));
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
