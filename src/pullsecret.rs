//! The pull Secret: what we want it to hold, how we recognise ours, and how we write it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use crate::ecr::{ExpectedHosts, RegionCredential};
use crate::sensitive::Sensitive;
use crate::{
    dockerconfig, EXPIRES_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, REGISTRIES_ANNOTATION,
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
    fn debug_of_desired_payload_is_redacted() {
        let d = desired(10_000);
        assert_eq!(format!("{:?}", d.payload), "(redacted)");
    }
}
