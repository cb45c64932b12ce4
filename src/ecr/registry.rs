//! What ECR registries and regions look like, checked locally so a typo fails before any call.

use std::fmt;
use std::str::FromStr;

/// An AWS region name such as `eu-west-1`, checked for shape so a typo fails before any call.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RegionName(String);

impl RegionName {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The DNS suffix of ECR registry hosts in this region.
    fn dns_suffix(&self) -> &'static str {
        if self.0.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        }
    }
}

impl fmt::Display for RegionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RegionName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // <partition letters>-<words>-<number>: us-east-1, us-gov-west-1, cn-north-1, eu-isoe-west-1.
        let parts: Vec<&str> = s.split('-').collect();
        let ok = parts.len() >= 3
            && parts[0].len() == 2
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && parts[parts.len() - 1].len() <= 2
            && !parts[parts.len() - 1].is_empty()
            && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("not an AWS region name; expected something like us-east-1 or eu-central-2".into())
        }
    }
}

/// What `--registry` accepts: a bare account ID (a registry in the default region) or a full
/// ECR registry host, which carries its own region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RegistrySpec {
    Account(String),
    Host { host: String, region: RegionName },
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

impl FromStr for RegistrySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HINT: &str = "expected a 12-digit AWS account ID or an ECR registry host such as \
                            123456789012.dkr.ecr.eu-west-1.amazonaws.com";
        let trimmed = s.trim();
        let host = trimmed
            .strip_prefix("https://")
            .unwrap_or(trimmed)
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if is_account_id(&host) {
            return Ok(Self::Account(host));
        }
        let labels: Vec<&str> = host.split('.').collect();
        let valid_shape = labels.len() >= 6
            && is_account_id(labels[0])
            && labels[1] == "dkr"
            && matches!(labels[2], "ecr" | "ecr-fips")
            && matches!(
                &labels[4..],
                ["amazonaws", "com"] | ["amazonaws", "com", "cn"]
            );
        if !valid_shape {
            return Err(HINT.into());
        }
        let region: RegionName = labels[3]
            .parse()
            .map_err(|e| format!("region {:?} in the host is {e}", labels[3]))?;
        if (labels.len() == 7) != region.as_str().starts_with("cn-") {
            return Err(format!(
                "{HINT}; China regions (cn-*) use amazonaws.com.cn, all others amazonaws.com"
            ));
        }
        Ok(Self::Host { host, region })
    }
}

impl fmt::Display for RegistrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(id) => f.write_str(id),
            Self::Host { host, .. } => f.write_str(host),
        }
    }
}

/// The registry host for an account in a region.
pub(crate) fn registry_host(account: &str, region: &RegionName) -> String {
    format!("{account}.dkr.ecr.{region}.{}", region.dns_suffix())
}

/// The hosts a token is written for, as far as they are known before asking ECR: every
/// requested one, plus the caller's own registry in the default region, whose account only
/// ECR's answer names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExpectedHosts {
    pub(crate) requested: Vec<String>,
    pub(crate) default_region: RegionName,
}

impl ExpectedHosts {
    /// `hosts` (from a Secret's payload) are exactly these: every requested host, and at most
    /// one other, which must be an ECR registry of the default region.
    pub(crate) fn matches(&self, hosts: &[String]) -> bool {
        let own_suffix = registry_host("", &self.default_region);
        let others: Vec<&String> = hosts
            .iter()
            .filter(|h| !self.requested.contains(h))
            .collect();
        self.requested.iter().all(|r| hosts.contains(r))
            && others.len() <= 1
            && others
                .iter()
                .all(|h| h.strip_suffix(&own_suffix).is_some_and(is_account_id))
    }
}

/// `https://123.dkr.ecr.r.amazonaws.com/` -> `123.dkr.ecr.r.amazonaws.com`
pub(super) fn endpoint_host(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let host = rest.split('/').next()?.trim();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registries() {
        assert_eq!(
            "123456789012".parse(),
            Ok(RegistrySpec::Account("123456789012".into()))
        );
        let host: RegistrySpec = "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/"
            .parse()
            .unwrap();
        assert_eq!(
            host,
            RegistrySpec::Host {
                host: "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
                region: "eu-west-1".parse().unwrap()
            }
        );
        assert!("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"
            .parse::<RegistrySpec>()
            .is_ok());
        assert!("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
            .parse::<RegistrySpec>()
            .is_ok());
        for bad in [
            "12345",
            "1234567890123",
            "docker.io",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            "123456789012.dkr.ecr.nowhere.amazonaws.com",
            "abcdefghijkl.dkr.ecr.eu-west-1.amazonaws.com",
        ] {
            assert!(
                bad.parse::<RegistrySpec>().is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn parses_regions() {
        crate::testing::assert_parses::<RegionName>(
            &[
                "us-east-1",
                "us-gov-west-1",
                "cn-north-1",
                "eu-central-2",
                "ap-southeast-7",
            ],
            &[
                "",
                "us-east",
                "US-EAST-1",
                "useast1",
                "us-east-100",
                "europe-west-1",
                "us--1",
            ],
        );
    }

    #[test]
    fn registry_hosts_by_partition() {
        assert_eq!(
            registry_host("123456789012", &"cn-north-1".parse().unwrap()),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(
            registry_host("123456789012", &"us-east-1".parse().unwrap()),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        );
    }

    #[test]
    pub(super) fn endpoint_hosts() {
        assert_eq!(
            endpoint_host("https://123456789012.dkr.ecr.us-east-1.amazonaws.com").as_deref(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com")
        );
        assert_eq!(endpoint_host("https://"), None);
    }

    #[test]
    fn expected_hosts_allow_only_the_requested_and_one_own_registry() {
        let e = ExpectedHosts {
            requested: vec!["210987654321.dkr.ecr.eu-west-1.amazonaws.com".into()],
            default_region: "us-east-1".parse().unwrap(),
        };
        let own = "123456789012.dkr.ecr.us-east-1.amazonaws.com".to_string();
        let req = e.requested[0].clone();
        assert!(e.matches(&[own.clone(), req.clone()]));
        assert!(
            !e.matches(std::slice::from_ref(&own)),
            "a requested one is missing"
        );
        assert!(!e.matches(&["evil.example.com".into(), req.clone()]));
        assert!(!e.matches(&[
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com".into(),
            req.clone()
        ]));
        assert!(!e.matches(&[
            own,
            "111111111111.dkr.ecr.us-east-1.amazonaws.com".into(),
            req
        ]));
    }
}
