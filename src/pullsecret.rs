//! The pull Secret: what we want it to hold, how we recognise ours, and how we write it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;

use crate::ecr::RegionCredential;
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

/// When the token in one of our Secrets expires, from its annotation.
pub fn expires_at(secret: &Secret) -> Option<jiff::Timestamp> {
    annotation(secret, EXPIRES_AT_ANNOTATION)?.parse().ok()
}

/// The registry hosts a Secret covers, read from its payload.
pub fn hosts(secret: &Secret) -> Vec<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(dockerconfig::DATA_KEY))
        .and_then(|v| dockerconfig::hosts(&v.0))
        .unwrap_or_default()
}

/// Ours, made from the same request, and valid for more than `refresh_before`: no need to
/// fetch a token for it.
pub fn is_fresh(
    secret: &Secret,
    request: &str,
    refresh_before: Duration,
    now: jiff::Timestamp,
) -> bool {
    let Some(expires) = expires_at(secret) else {
        return false;
    };
    let left_secs = expires.as_second() - now.as_second();
    state(Some(secret)) == State::Ours
        && annotation(secret, REQUEST_ANNOTATION) == Some(request)
        && left_secs > i64::try_from(refresh_before.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr::Login;

    fn desired(expires: i64) -> Desired {
        Desired::new(
            &[RegionCredential {
                region: "us-east-1".parse().unwrap(),
                login: Login {
                    username: "AWS".into(),
                    password: Sensitive::new("pw".into()),
                },
                expires_at: Some(jiff::Timestamp::from_second(expires).unwrap()),
                hosts: vec!["b.example".into(), "a.example".into()],
            }],
            "region=us-east-1",
        )
    }

    #[test]
    fn our_object_is_current_and_fresh() {
        let d = desired(10_000);
        let s = d.object("awsecr-cred", "ns");
        assert!(d.is_current(&s));
        assert_eq!(state(Some(&s)), State::Ours);
        assert_eq!(hosts(&s), ["a.example", "b.example"]);
        assert_eq!(
            expires_at(&s),
            Some(jiff::Timestamp::from_second(10_000).unwrap())
        );
        let now = jiff::Timestamp::from_second(10_000 - 3600).unwrap();
        assert!(is_fresh(
            &s,
            "region=us-east-1",
            Duration::from_secs(1800),
            now
        ));
        assert!(!is_fresh(
            &s,
            "region=us-east-1",
            Duration::from_secs(3600),
            now
        ));
        assert!(!is_fresh(
            &s,
            "region=eu-west-1",
            Duration::from_secs(1800),
            now
        ));
        let later = jiff::Timestamp::from_second(20_000).unwrap();
        assert!(!is_fresh(&s, "region=us-east-1", Duration::ZERO, later));
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
