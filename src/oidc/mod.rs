//! Keyless AWS access: the cluster's ServiceAccount issuer, published where IAM can fetch it, so
//! the CronJob's projected token is exchanged with STS AssumeRoleWithWebIdentity and no AWS key
//! is stored in the cluster.
//!
//! The judgement is here, on plain values: the public URL's rules, the documents rewritten for
//! it, and the drift between what is published and what the cluster signs with. `fetch` does
//! the HTTPS, `iam` writes the steps, and `cmd::oidc` runs them.

pub(crate) mod fetch;
pub(crate) mod iam;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Where IAM fetches the discovery document, under the issuer URL.
pub(crate) const DISCOVERY_PATH: &str = ".well-known/openid-configuration";
/// Where the published JWKS lives under the issuer URL (the apiserver's own path).
pub(crate) const JWKS_PATH: &str = "openid/v1/jwks";
/// The audience STS requires in the token, and the IAM provider's client id.
pub(crate) const AUDIENCE: &str = "sts.amazonaws.com";

/// A public issuer URL as IAM accepts it and `iss` must spell it: `https://host[/path]`, no
/// port, no query or fragment, no trailing slash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IssuerUrl(String);

impl IssuerUrl {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// `host/path`: how IAM names the provider (its ARN) and the condition keys.
    pub(crate) fn provider_id(&self) -> &str {
        &self.0["https://".len()..]
    }

    /// The URL of a document under the issuer (`path` without a leading slash).
    pub(crate) fn join(&self, path: &str) -> String {
        format!("{}/{path}", self.0)
    }
}

impl fmt::Display for IssuerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for IssuerUrl {
    type Err = String;

    /// Each refusal says what is wrong and what to write instead.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.chars().any(char::is_whitespace) {
            return Err("contains whitespace".into());
        }
        let Some(rest) = s.strip_prefix("https://") else {
            return Err(match s.split_once("://") {
                Some(("http", rest)) => format!(
                    "is http: IAM fetches the issuer's documents over HTTPS only; serve them over HTTPS and use https://{rest}"
                ),
                Some((scheme, _)) => format!("has the scheme {scheme:?}: it must be https://"),
                None => "must be an https:// URL, e.g. https://oidc.example.com/my-cluster".into(),
            });
        };
        if let Some((before, _)) = s.split_once('#') {
            return Err(format!(
                "has a fragment (#...): IAM and the token's iss claim take no fragment; use {before}"
            ));
        }
        if let Some((before, _)) = s.split_once('?') {
            return Err(format!(
                "has a query (?...): IAM and the token's iss claim take no query; use {before}"
            ));
        }
        let (authority, path) = match rest.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (rest, None),
        };
        if authority.is_empty() {
            return Err("has no host, e.g. https://oidc.example.com/my-cluster".into());
        }
        if authority.contains('@') {
            return Err("has user information (user@): a public issuer URL takes none".into());
        }
        // `[::1]` is a host; a colon after the host (or after `]`) starts a port.
        let host_end = authority.rfind(']').map_or(0, |i| i + 1);
        if let Some(i) = authority[host_end..].find(':') {
            let host = &authority[..host_end + i];
            let path = path.map(|p| format!("/{p}")).unwrap_or_default();
            return Err(format!(
                "has a port ({}): IAM accepts only an issuer on the default HTTPS port 443, written without a port; serve it on 443 and use https://{host}{path}",
                &authority[host_end + i..]
            ));
        }
        if let Some(p) = path {
            if p.is_empty() || p.ends_with('/') {
                let trimmed = s.trim_end_matches('/');
                return Err(format!(
                    "ends with '/': the iss claim must equal the provider URL character for character, and IAM registers it without a trailing slash; use {trimmed} (and the same in --service-account-issuer)"
                ));
            }
            if p.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
            {
                return Err("has an empty, '.' or '..' path segment".into());
            }
        }
        if s.parse::<http::Uri>().is_err() {
            return Err("is not a valid URL".into());
        }
        Ok(Self(s.to_string()))
    }
}

/// One signing key as a JWKS lists it, compared on what verifies a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) kid: String,
    /// kty, n, e (RSA) or crv, x, y (EC): what a verifier uses.
    material: BTreeMap<String, String>,
}

/// The keys of a JWKS document, or why it is not one.
pub(crate) fn keys_of(jwks: &Value) -> Result<Vec<Key>, String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    keys.iter()
        .map(|k| {
            let kid = k
                .get("kid")
                .and_then(Value::as_str)
                .ok_or("a key without \"kid\"")?;
            let material = ["kty", "n", "e", "crv", "x", "y"]
                .into_iter()
                .filter_map(|f| Some((f.to_string(), k.get(f)?.as_str()?.to_string())))
                .collect();
            Ok(Key {
                kid: kid.to_string(),
                material,
            })
        })
        .collect()
}

/// The issuer a discovery document names, or why it names none.
pub(crate) fn issuer_of(discovery: &Value) -> Result<&str, String> {
    discovery
        .get("issuer")
        .and_then(Value::as_str)
        .ok_or_else(|| "no \"issuer\"".to_string())
}

/// The cluster's discovery document as the public URL serves it: same keys and algorithms,
/// `issuer` and `jwks_uri` under the public URL.
pub(crate) fn public_discovery(live: &Value, url: &IssuerUrl) -> Value {
    let mut doc = live.clone();
    if let Some(map) = doc.as_object_mut() {
        map.insert("issuer".into(), Value::String(url.as_str().into()));
        map.insert("jwks_uri".into(), Value::String(url.join(JWKS_PATH)));
    }
    doc
}

/// One way the published documents differ from what the cluster signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Drift {
    /// The discovery document could not be fetched or read.
    DiscoveryUnavailable { url: String, reason: String },
    /// The published `issuer` is not the URL it is served at: IAM refuses the provider.
    PublishedIssuer { published: String },
    /// The cluster issues tokens with another `iss`: STS refuses them.
    ClusterIssuer { cluster: String },
    /// The JWKS could not be fetched or read.
    JwksUnavailable { url: String, reason: String },
    /// A key the cluster signs with is not published: tokens signed with it are refused.
    KeyMissing { kid: String },
    /// A key is published under the cluster's kid with other material.
    KeyDiffers { kid: String },
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DiscoveryUnavailable { url, reason } => {
                write!(f, "the discovery document {url} cannot be read: {reason}")
            }
            Self::PublishedIssuer { published } => write!(
                f,
                "the published discovery document names issuer {published:?}, not the URL it is served at"
            ),
            Self::ClusterIssuer { cluster } => write!(
                f,
                "the cluster issues tokens with iss {cluster:?}: make the public URL the first --service-account-issuer of the apiserver"
            ),
            Self::JwksUnavailable { url, reason } => {
                write!(f, "the JWKS {url} cannot be read: {reason}")
            }
            Self::KeyMissing { kid } => write!(
                f,
                "the cluster signs with key {kid:?}, which is not published (a signing-key rotation not republished?): run `ecr-refresh oidc publish` and upload again"
            ),
            Self::KeyDiffers { kid } => write!(
                f,
                "key {kid:?} is published with other material than the cluster's: run `ecr-refresh oidc publish` and upload again"
            ),
        }
    }
}

impl Drift {
    /// A short stable name for JSON output and alerts.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::DiscoveryUnavailable { .. } => "discovery_unavailable",
            Self::PublishedIssuer { .. } => "published_issuer",
            Self::ClusterIssuer { .. } => "cluster_issuer",
            Self::JwksUnavailable { .. } => "jwks_unavailable",
            Self::KeyMissing { .. } => "key_missing",
            Self::KeyDiffers { .. } => "key_differs",
        }
    }
}

/// How the cluster's issuer relates to the public URL, which decides the apiserver change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum IssuerChange {
    /// The cluster already issues tokens with the public URL.
    AlreadyPublic,
    /// Only a trailing slash apart: iss would never match.
    TrailingSlash { cluster: String },
    /// Another issuer: the public one goes first, the old one second.
    Add { cluster: String },
}

pub(crate) fn issuer_change(cluster: &str, url: &IssuerUrl) -> IssuerChange {
    if cluster == url.as_str() {
        IssuerChange::AlreadyPublic
    } else if cluster.trim_end_matches('/') == url.as_str() {
        IssuerChange::TrailingSlash {
            cluster: cluster.into(),
        }
    } else {
        IssuerChange::Add {
            cluster: cluster.into(),
        }
    }
}

/// Published documents (each fetched, or why not) against the cluster's issuer and keys.
pub(crate) fn drift(
    url: &IssuerUrl,
    cluster_issuer: &str,
    cluster_keys: &[Key],
    published_issuer: Result<&str, Drift>,
    published_keys: Result<&[Key], Drift>,
) -> Vec<Drift> {
    let mut found = Vec::new();
    match published_issuer {
        Ok(p) if p == url.as_str() => {}
        Ok(p) => found.push(Drift::PublishedIssuer {
            published: p.into(),
        }),
        Err(d) => found.push(d),
    }
    if cluster_issuer != url.as_str() {
        found.push(Drift::ClusterIssuer {
            cluster: cluster_issuer.into(),
        });
    }
    match published_keys {
        Ok(published) => {
            for key in cluster_keys {
                match published.iter().find(|p| p.kid == key.kid) {
                    None => found.push(Drift::KeyMissing {
                        kid: key.kid.clone(),
                    }),
                    Some(p) if p != key => found.push(Drift::KeyDiffers {
                        kid: key.kid.clone(),
                    }),
                    Some(_) => {}
                }
            }
        }
        Err(d) => found.push(d),
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(s: &str) -> Result<IssuerUrl, String> {
        s.parse()
    }

    #[test]
    fn good_urls_are_kept_as_written() {
        for s in [
            "https://oidc.example.com",
            "https://oidc.example.com/my-cluster",
            "https://my-bucket.s3.eu-west-1.amazonaws.com/clusters/prod",
            "https://127.0.46.1/c",
        ] {
            assert_eq!(url(s).unwrap().as_str(), s);
        }
        let u = url("https://oidc.example.com/c").unwrap();
        assert_eq!(u.provider_id(), "oidc.example.com/c");
        assert_eq!(
            u.join(DISCOVERY_PATH),
            "https://oidc.example.com/c/.well-known/openid-configuration"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong_and_what_to_write() {
        for (s, says) in [
            (
                "http://oidc.example.com/c",
                "is http: IAM fetches the issuer's documents over HTTPS only; serve them over HTTPS and use https://oidc.example.com/c",
            ),
            ("oidc.example.com", "must be an https:// URL"),
            ("ftp://x/c", "has the scheme \"ftp\""),
            (
                "https://oidc.example.com:8443/c",
                "has a port (:8443): IAM accepts only an issuer on the default HTTPS port 443, written without a port; serve it on 443 and use https://oidc.example.com/c",
            ),
            ("https://oidc.example.com:443", "has a port (:443)"),
            ("https://[::1]:443/c", "use https://[::1]/c"),
            (
                "https://oidc.example.com/c/",
                "ends with '/': the iss claim must equal the provider URL character for character, and IAM registers it without a trailing slash; use https://oidc.example.com/c",
            ),
            ("https://oidc.example.com/", "use https://oidc.example.com "),
            (
                "https://oidc.example.com/c?x=1",
                "has a query (?...): IAM and the token's iss claim take no query; use https://oidc.example.com/c",
            ),
            (
                "https://oidc.example.com/c#f",
                "has a fragment (#...): IAM and the token's iss claim take no fragment; use https://oidc.example.com/c",
            ),
            ("https://", "has no host"),
            ("https://u@oidc.example.com", "user information"),
            ("https://x/a//b", "empty, '.' or '..' path segment"),
            ("https://x/a/../b", "empty, '.' or '..' path segment"),
            ("https://x/ c", "whitespace"),
        ] {
            let err = url(s).unwrap_err();
            assert!(err.contains(says.trim_end()), "{s}: {err}");
        }
    }

    fn rsa(kid: &str, n: &str) -> Value {
        json!({"use": "sig", "kty": "RSA", "kid": kid, "alg": "RS256", "n": n, "e": "AQAB"})
    }

    #[test]
    fn the_public_discovery_document_points_at_the_public_url() {
        let live = json!({
            "issuer": "https://kubernetes.default.svc",
            "jwks_uri": "https://10.0.0.1:6443/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"]
        });
        let u = url("https://oidc.example.com/c").unwrap();
        let doc = public_discovery(&live, &u);
        assert_eq!(doc["issuer"], "https://oidc.example.com/c");
        assert_eq!(doc["jwks_uri"], "https://oidc.example.com/c/openid/v1/jwks");
        assert_eq!(
            doc["id_token_signing_alg_values_supported"],
            json!(["RS256"])
        );
    }

    #[test]
    fn drift_names_each_difference() {
        let u = url("https://oidc.example.com/c").unwrap();
        let live = keys_of(&json!({"keys": [rsa("a", "n1"), rsa("b", "n2")]})).unwrap();
        let same = drift(&u, u.as_str(), &live, Ok(u.as_str()), Ok(&live));
        assert_eq!(same, []);
        // Rotated: the cluster signs with b, only a is published; a stale extra key is fine.
        let published = keys_of(&json!({"keys": [rsa("a", "n1"), rsa("old", "n0")]})).unwrap();
        assert_eq!(
            drift(&u, u.as_str(), &live, Ok(u.as_str()), Ok(&published)),
            [Drift::KeyMissing { kid: "b".into() }]
        );
        let changed = keys_of(&json!({"keys": [rsa("a", "n1"), rsa("b", "other")]})).unwrap();
        assert_eq!(
            drift(&u, u.as_str(), &live, Ok(u.as_str()), Ok(&changed)),
            [Drift::KeyDiffers { kid: "b".into() }]
        );
        let d = drift(
            &u,
            "https://kubernetes.default.svc",
            &live,
            Ok("https://oidc.example.com/c/"),
            Ok(&live),
        );
        assert_eq!(
            d,
            [
                Drift::PublishedIssuer {
                    published: "https://oidc.example.com/c/".into()
                },
                Drift::ClusterIssuer {
                    cluster: "https://kubernetes.default.svc".into()
                }
            ]
        );
    }

    #[test]
    fn a_jwks_without_kids_is_refused() {
        assert!(keys_of(&json!({"keys": [{"kty": "RSA"}]})).is_err());
        assert!(keys_of(&json!({})).is_err());
    }

    #[test]
    fn issuer_change_tells_a_trailing_slash_apart() {
        let u = url("https://oidc.example.com/c").unwrap();
        assert_eq!(issuer_change(u.as_str(), &u), IssuerChange::AlreadyPublic);
        assert!(matches!(
            issuer_change("https://oidc.example.com/c/", &u),
            IssuerChange::TrailingSlash { .. }
        ));
        assert!(matches!(
            issuer_change("https://kubernetes.default.svc", &u),
            IssuerChange::Add { .. }
        ));
    }
}
