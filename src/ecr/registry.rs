//! What ECR registries and regions look like, checked locally so a typo fails before any call.
//!
//! One grammar for registry hosts ([`RegistryHost`]) serves `--registry`, the `proxyEndpoint`
//! ECR answers with, the freshness check and `status`. It is the host pattern that the AWS
//! credential helper (awslabs/amazon-ecr-credential-helper, `ecr-login/api/client.go`,
//! `ecrPattern`) and the kubelet's credential provider (kubernetes/cloud-provider-aws,
//! `cmd/ecr-credential-provider/main.go`, `ecrPrivateHostPattern`) share:
//! `^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.<region>\.(amazonaws\.(com(\.cn)?|eu)|on\.(aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$`,
//! narrowed to the hosts AWS documents (AWS General Reference, "Amazon ECR endpoints and
//! quotas", docs.aws.amazon.com/general/latest/gr/ecr.html; ECR User Guide, "Making requests to
//! Amazon ECR registries", docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-requests.html):
//! `dkr.ecr` only under the region's own partition suffix, and `dkr-ecr` (dual-stack) only under
//! `on.aws` or, in China, `on.amazonwebservices.com.cn`; lowercase only.

use std::fmt;
use std::str::FromStr;

/// An AWS partition: its regions share the DNS suffixes of their registry hosts. Names,
/// suffixes and region prefixes are those of the AWS SDKs' partitions.json (aws/aws-sdk-go-v2,
/// `internal/endpoints/awsrulesfn/partitions.json`: `dnsSuffix`, `regionRegex`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Partition {
    Aws,
    China,
    GovCloud,
    Iso,
    IsoB,
    IsoE,
    IsoF,
    /// The AWS European Sovereign Cloud (`eusc-de-east-1`).
    Eusc,
}

impl Partition {
    /// By region prefix (partitions.json `regionRegex`); any other region is in `aws`, as the
    /// SDKs assume for a region they do not know.
    fn of(region: &str) -> Self {
        const PREFIXES: [(&str, Partition); 7] = [
            ("us-gov-", Partition::GovCloud),
            ("us-iso-", Partition::Iso),
            ("us-isob-", Partition::IsoB),
            ("eu-isoe-", Partition::IsoE),
            ("us-isof-", Partition::IsoF),
            ("cn-", Partition::China),
            ("eusc-", Partition::Eusc),
        ];
        PREFIXES
            .iter()
            .find(|(prefix, _)| region.starts_with(prefix))
            .map_or(Self::Aws, |(_, p)| *p)
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::China => "aws-cn",
            Self::GovCloud => "aws-us-gov",
            Self::Iso => "aws-iso",
            Self::IsoB => "aws-iso-b",
            Self::IsoE => "aws-iso-e",
            Self::IsoF => "aws-iso-f",
            Self::Eusc => "aws-eusc",
        }
    }

    /// The suffix of `<account>.dkr.ecr[-fips].<region>.<suffix>`.
    fn dns_suffix(self) -> &'static str {
        match self {
            Self::Aws | Self::GovCloud => "amazonaws.com",
            Self::China => "amazonaws.com.cn",
            Self::Iso => "c2s.ic.gov",
            Self::IsoB => "sc2s.sgov.gov",
            Self::IsoE => "cloud.adc-e.uk",
            Self::IsoF => "csp.hci.ic.gov",
            Self::Eusc => "amazonaws.eu",
        }
    }

    /// The suffix of the dual-stack `<account>.dkr-ecr[-fips].<region>.<suffix>`, where AWS
    /// has one: `on.aws` (ECR User Guide, "Making requests to Amazon ECR registries"; GovCloud
    /// too, per the General Reference), `on.amazonwebservices.com.cn` in China (the credential
    /// helper's pattern; the EKS AMI's kubelet `matchImages`). The isolated partitions and the
    /// European Sovereign Cloud have none (partitions.json: `supportsDualStack: false`).
    fn dual_stack_suffix(self) -> Option<&'static str> {
        match self {
            Self::Aws | Self::GovCloud => Some("on.aws"),
            Self::China => Some("on.amazonwebservices.com.cn"),
            Self::Iso | Self::IsoB | Self::IsoE | Self::IsoF | Self::Eusc => None,
        }
    }
}

/// An AWS region name such as `eu-west-1`, checked for shape so a typo fails before any call.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RegionName(String);

impl RegionName {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn partition(&self) -> Partition {
        Partition::of(&self.0)
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
        // <partition letters>-<words>-<number>: us-east-1, us-gov-west-1, cn-north-1,
        // eu-isoe-west-1, eusc-de-east-1.
        let parts: Vec<&str> = s.split('-').collect();
        let (first, last) = (parts[0], parts[parts.len() - 1]);
        let ok = parts.len() >= 3
            && (first.len() == 2 || first == "eusc")
            && parts[..parts.len() - 1]
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
            && (1..=2).contains(&last.len())
            && last.bytes().all(|b| b.is_ascii_digit());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("not an AWS region name; expected something like us-east-1 or eu-central-2".into())
        }
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

const HOST_HINT: &str = "expected a 12-digit AWS account ID or an ECR registry host such as \
                         123456789012.dkr.ecr.eu-west-1.amazonaws.com";

/// One ECR private registry under one of its names: `<account>.dkr.ecr.<region>.<suffix>`, its
/// FIPS name (`dkr.ecr-fips`), or its dual-stack names (`dkr-ecr`, `dkr-ecr-fips`). Parsing is
/// the only way to make one with a dual-stack name, so the partition always has that suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegistryHost {
    account: String,
    region: RegionName,
    fips: bool,
    dual_stack: bool,
}

impl RegistryHost {
    /// The standard (IPv4) name of an account's registry in a region.
    pub(crate) fn standard(account: &str, region: &RegionName) -> Self {
        Self {
            account: account.to_string(),
            region: region.clone(),
            fips: false,
            dual_stack: false,
        }
    }

    pub(crate) fn region(&self) -> &RegionName {
        &self.region
    }

    /// Every name of this registry that the Secret holds: the IPv4 one, and the dual-stack one
    /// where the partition has it. One token serves both (AWS's ECS agent relies on that), and
    /// the kubelet only sends a credential whose `auths` key is the image's host.
    pub(crate) fn names(&self) -> Vec<String> {
        let named = |dual_stack| Self {
            dual_stack,
            ..self.clone()
        };
        let mut names = vec![named(false).to_string()];
        if self.region.partition().dual_stack_suffix().is_some() {
            names.push(named(true).to_string());
        }
        names
    }

    /// What the hosts of this region look like, for messages.
    fn forms(region: &RegionName) -> String {
        let partition = region.partition();
        let v4 = format!("<account>.dkr.ecr.{region}.{}", partition.dns_suffix());
        match partition.dual_stack_suffix() {
            Some(ds) => format!("{v4} or <account>.dkr-ecr.{region}.{ds}"),
            None => format!(
                "{v4} (partition {} has no dual-stack hosts)",
                partition.name()
            ),
        }
    }
}

impl fmt::Display for RegistryHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let partition = self.region.partition();
        let (label, suffix) = match partition.dual_stack_suffix() {
            Some(ds) if self.dual_stack => ("dkr-ecr", ds),
            _ => ("dkr.ecr", partition.dns_suffix()),
        };
        let fips = if self.fips { "-fips" } else { "" };
        write!(f, "{}.{label}{fips}.{}.{suffix}", self.account, self.region)
    }
}

impl FromStr for RegistryHost {
    type Err = String;

    /// The one grammar (see the module comment): a bare host, lowercase, nothing around it.
    fn from_str(host: &str) -> Result<Self, Self::Err> {
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!("{HOST_HINT}; registry hosts are lowercase"));
        }
        let (account, rest) = host.split_once('.').ok_or(HOST_HINT)?;
        if !is_account_id(account) {
            return Err(HOST_HINT.into());
        }
        let (dual_stack, fips, rest) = match rest.split_once('.') {
            Some(("dkr", rest)) => match rest.split_once('.') {
                Some(("ecr", rest)) => (false, false, rest),
                Some(("ecr-fips", rest)) => (false, true, rest),
                _ => return Err(HOST_HINT.into()),
            },
            Some(("dkr-ecr", rest)) => (true, false, rest),
            Some(("dkr-ecr-fips", rest)) => (true, true, rest),
            _ => return Err(HOST_HINT.into()),
        };
        let (region, suffix) = rest.split_once('.').ok_or(HOST_HINT)?;
        let region: RegionName = region
            .parse()
            .map_err(|e| format!("region {region:?} in the host is {e}"))?;
        let partition = region.partition();
        let wanted = if dual_stack {
            partition.dual_stack_suffix()
        } else {
            Some(partition.dns_suffix())
        };
        if wanted != Some(suffix) {
            return Err(format!(
                "{host} is not an ECR registry host: in {region} they are {}",
                Self::forms(&region)
            ));
        }
        Ok(Self {
            account: account.to_string(),
            region,
            fips,
            dual_stack,
        })
    }
}

/// What `--registry` accepts: a bare account ID (a registry in the default region) or an ECR
/// registry host under any of its names, optionally as an `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RegistrySpec {
    Account(String),
    Host(RegistryHost),
}

impl FromStr for RegistrySpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let host = trimmed
            .strip_prefix("https://")
            .unwrap_or(trimmed)
            .trim_end_matches('/');
        if is_account_id(host) {
            return Ok(Self::Account(host.to_string()));
        }
        host.parse().map(Self::Host)
    }
}

impl fmt::Display for RegistrySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(id) => f.write_str(id),
            Self::Host(host) => host.fmt(f),
        }
    }
}

/// The hosts a token is written for, as far as they are known before asking ECR: every name of
/// every requested registry, plus the caller's own registry in the default region, whose
/// account only ECR's answer names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExpectedHosts {
    pub(crate) requested: Vec<String>,
    pub(crate) default_region: RegionName,
}

impl ExpectedHosts {
    /// `hosts` (from a Secret's payload) are exactly these: every requested host, and at most
    /// the names of one other registry, which must be in the default region.
    pub(crate) fn matches(&self, hosts: &[String]) -> bool {
        let others: Vec<&str> = hosts
            .iter()
            .filter(|h| !self.requested.contains(h))
            .map(String::as_str)
            .collect();
        self.requested.iter().all(|r| hosts.contains(r))
            && (others.is_empty() || self.is_own_registry(others))
    }

    /// `hosts` are all the names of one registry of the default region, and nothing else.
    fn is_own_registry(&self, mut hosts: Vec<&str>) -> bool {
        let Ok(own) = hosts[0].parse::<RegistryHost>() else {
            return false;
        };
        let mut names = own.names();
        names.sort();
        hosts.sort();
        own.region == self.default_region && names == hosts
    }
}

/// Is `host` an ECR registry host? The check `status` makes of every host in a Secret.
pub(crate) fn is_registry_host(host: &str) -> bool {
    host.parse::<RegistryHost>().is_ok()
}

/// The registry a `proxyEndpoint` names: `https://<registry host>` and nothing else (no user
/// name, port or path), as ECR answers, e.g. `https://123456789012.dkr.ecr.us-east-1.amazonaws.com`.
/// The reason it is unusable otherwise names the host.
pub(super) fn endpoint_registry(endpoint: &str) -> Result<RegistryHost, String> {
    let rest = match endpoint.split_once("://") {
        None => endpoint,
        Some(("https", rest)) => rest,
        Some((scheme, _)) => return Err(format!("its scheme is {scheme}, not https")),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let tail = &rest[authority.len()..];
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((user, host)) => (Some(user), host),
        None => (None, authority),
    };
    // [v6]:port, host:port or host
    let (host, port) = match host_port.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((v6, port)) => (&host_port[..v6.len() + 2], port.strip_prefix(':')),
        None => match host_port.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("it names no host".into());
    }
    let registry: RegistryHost = host
        .parse()
        .map_err(|e| format!("its host {host} is not an ECR registry host ({e})"))?;
    if userinfo.is_some() {
        return Err(format!("it has a user name before its host {host}"));
    }
    if let Some(port) = port {
        return Err(format!(
            "its host {host} has a port (:{port}); ECR registries have none"
        ));
    }
    if !tail.is_empty() && tail != "/" {
        return Err(format!("it has a path after its host {host} ({tail})"));
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Sources the rows cite.
    const HELPER: &str = "awslabs/amazon-ecr-credential-helper ecr-login/api/client.go ecrPattern";
    const KUBELET: &str =
        "kubernetes/cloud-provider-aws cmd/ecr-credential-provider/main.go ecrPrivateHostPattern";
    const GR: &str = "docs.aws.amazon.com/general/latest/gr/ecr.html (Amazon ECR endpoints)";
    const UG: &str = "docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-requests.html (IPv6)";
    const PARTITIONS: &str = "aws/aws-sdk-go-v2 internal/endpoints/awsrulesfn/partitions.json";
    const LOOKALIKE: &str = "a look-alike, refused";

    /// One row per form and partition: the host, the region it names (None: refused), and
    /// where the form comes from.
    const HOSTS: &[(&str, Option<&str>, &str)] = &[
        // aws: IPv4, FIPS, dual-stack, dual-stack FIPS.
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            Some("us-east-1"),
            GR,
        ),
        (
            "123456789012.dkr.ecr-fips.us-east-2.amazonaws.com",
            Some("us-east-2"),
            GR,
        ),
        (
            "123456789012.dkr-ecr.us-west-2.on.aws",
            Some("us-west-2"),
            UG,
        ),
        (
            "123456789012.dkr-ecr-fips.us-east-1.on.aws",
            Some("us-east-1"),
            GR,
        ),
        (
            "123456789012.dkr.ecr.ap-southeast-7.amazonaws.com",
            Some("ap-southeast-7"),
            HELPER,
        ),
        // aws-us-gov
        (
            "123456789012.dkr.ecr.us-gov-west-1.amazonaws.com",
            Some("us-gov-west-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-east-1.amazonaws.com",
            Some("us-gov-east-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
            Some("us-gov-west-1"),
            HELPER,
        ),
        // aws-cn
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            Some("cn-north-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
            Some("cn-northwest-1"),
            HELPER,
        ),
        // The isolated partitions and the European Sovereign Cloud.
        (
            "123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov",
            Some("us-iso-east-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov",
            Some("us-isob-east-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk",
            Some("eu-isoe-west-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
            Some("us-isof-south-1"),
            KUBELET,
        ),
        (
            "123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu",
            Some("eusc-de-east-1"),
            HELPER,
        ),
        // Refused: only dkr-ecr exists under on.aws, only dkr.ecr under amazonaws.com.
        ("123456789012.dkr.ecr.us-east-1.on.aws", None, UG),
        ("123456789012.dkr-ecr.us-east-1.amazonaws.com", None, GR),
        (
            "123456789012.dkr.ecr.cn-north-1.on.amazonwebservices.com.cn",
            None,
            HELPER,
        ),
        // Refused: a suffix of another partition, or dual-stack where the partition has none.
        (
            "123456789012.dkr.ecr.us-iso-east-1.amazonaws.com",
            None,
            PARTITIONS,
        ),
        (
            "123456789012.dkr.ecr.us-east-1.c2s.ic.gov",
            None,
            PARTITIONS,
        ),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com.cn",
            None,
            PARTITIONS,
        ),
        (
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com",
            None,
            PARTITIONS,
        ),
        (
            "123456789012.dkr-ecr.us-iso-east-1.on.aws",
            None,
            PARTITIONS,
        ),
        (
            "123456789012.dkr-ecr.eusc-de-east-1.on.aws",
            None,
            PARTITIONS,
        ),
        // Refused: wrong label count, account, case, region.
        ("123456789012.dkr.ecr.amazonaws.com", None, LOOKALIKE),
        (
            "123456789012.dkr.ecr.us-east-1.x.amazonaws.com",
            None,
            LOOKALIKE,
        ),
        ("123456789012.ecr.us-east-1.amazonaws.com", None, LOOKALIKE),
        (
            "x.123456789012.dkr.ecr.us-east-1.amazonaws.com",
            None,
            LOOKALIKE,
        ),
        (
            "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
            None,
            LOOKALIKE,
        ),
        (
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            None,
            LOOKALIKE,
        ),
        ("abcdefghijkl.dkr.ecr.eu-west-1.amazonaws.com", None, HELPER),
        (
            "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM",
            None,
            LOOKALIKE,
        ),
        (
            "123456789012.dkr.ecr.US-EAST-1.amazonaws.com",
            None,
            LOOKALIKE,
        ),
        (
            "123456789012.dkr.ecr.nowhere.amazonaws.com",
            None,
            LOOKALIKE,
        ),
        (
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.",
            None,
            LOOKALIKE,
        ),
        (
            "public.ecr.aws",
            None,
            "ECR Public is out of scope (README)",
        ),
        ("docker.io", None, LOOKALIKE),
        ("", None, LOOKALIKE),
    ];

    #[test]
    fn registry_host_forms() {
        for (host, region, source) in HOSTS {
            let parsed = host.parse::<RegistryHost>();
            match region {
                Some(region) => {
                    let h = parsed.unwrap_or_else(|e| panic!("{host} ({source}): {e}"));
                    assert_eq!(h.region().as_str(), *region, "{host} ({source})");
                    assert_eq!(h.to_string(), *host, "{host} prints as it parses");
                    assert!(is_registry_host(host));
                    // The same grammar for --registry and a proxyEndpoint.
                    let spec: RegistrySpec = format!("https://{host}/").parse().unwrap();
                    assert_eq!(spec, RegistrySpec::Host(h.clone()), "{host}");
                    assert_eq!(endpoint_registry(&format!("https://{host}")), Ok(h));
                }
                None => {
                    assert!(parsed.is_err(), "{host} should be refused ({source})");
                    assert!(host.parse::<RegistrySpec>().is_err(), "{host} ({source})");
                    assert!(endpoint_registry(&format!("https://{host}")).is_err());
                }
            }
        }
    }

    /// The hosts a bare account ID maps to in each partition (the first is ECR's
    /// `proxyEndpoint` form), with the dual-stack twin where there is one, and the source.
    const BARE_ACCOUNT_NAMES: &[(&str, &[&str], &str)] = &[
        (
            "us-east-1",
            &[
                "1.dkr.ecr.us-east-1.amazonaws.com",
                "1.dkr-ecr.us-east-1.on.aws",
            ],
            UG,
        ),
        (
            "us-gov-west-1",
            &[
                "1.dkr.ecr.us-gov-west-1.amazonaws.com",
                "1.dkr-ecr.us-gov-west-1.on.aws",
            ],
            GR,
        ),
        (
            "cn-north-1",
            &[
                "1.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "1.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
            ],
            HELPER,
        ),
        (
            "us-iso-east-1",
            &["1.dkr.ecr.us-iso-east-1.c2s.ic.gov"],
            PARTITIONS,
        ),
        (
            "us-isob-east-1",
            &["1.dkr.ecr.us-isob-east-1.sc2s.sgov.gov"],
            PARTITIONS,
        ),
        (
            "eu-isoe-west-1",
            &["1.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk"],
            PARTITIONS,
        ),
        (
            "us-isof-south-1",
            &["1.dkr.ecr.us-isof-south-1.csp.hci.ic.gov"],
            PARTITIONS,
        ),
        (
            "eusc-de-east-1",
            &["1.dkr.ecr.eusc-de-east-1.amazonaws.eu"],
            PARTITIONS,
        ),
    ];

    /// The hosts a bare account ID maps to in each partition (the first is ECR's
    /// `proxyEndpoint` form), with the dual-stack twin where there is one.
    #[test]
    fn bare_account_names_in_every_partition() {
        for (region, names, source) in BARE_ACCOUNT_NAMES {
            let region: RegionName = region.parse().unwrap();
            let names: Vec<String> = names
                .iter()
                .map(|n| n.replacen('1', "123456789012", 1))
                .collect();
            assert_eq!(
                RegistryHost::standard("123456789012", &region).names(),
                names,
                "{source}"
            );
        }
        // Every name of a registry gives the same names, FIPS kept.
        let fips: RegistryHost = "123456789012.dkr-ecr-fips.us-east-1.on.aws"
            .parse()
            .unwrap();
        assert_eq!(
            fips.names(),
            [
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                "123456789012.dkr-ecr-fips.us-east-1.on.aws"
            ]
        );
    }

    #[test]
    fn registry_specs() {
        assert_eq!(
            "123456789012".parse(),
            Ok(RegistrySpec::Account("123456789012".into()))
        );
        for bad in ["12345", "1234567890123", "docker.io", "https://"] {
            assert!(bad.parse::<RegistrySpec>().is_err(), "{bad}");
        }
        let err = "123456789012.dkr.ecr.us-east-1.on.aws"
            .parse::<RegistrySpec>()
            .unwrap_err();
        assert!(err.contains("<account>.dkr-ecr.us-east-1.on.aws"), "{err}");
        let err = "123456789012.dkr-ecr.us-iso-east-1.on.aws"
            .parse::<RegistrySpec>()
            .unwrap_err();
        assert!(err.contains("aws-iso has no dual-stack hosts"), "{err}");
        let err = "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM"
            .parse::<RegistrySpec>()
            .unwrap_err();
        assert!(err.contains("lowercase"), "{err}");
    }

    #[test]
    fn regions_of_every_partition() {
        crate::testing::assert_parses::<RegionName>(
            &[
                "us-east-1",
                "us-gov-west-1",
                "cn-north-1",
                "eu-central-2",
                "ap-southeast-7",
                "us-iso-east-1",
                "us-isob-east-1",
                "eu-isoe-west-1",
                "us-isof-south-1",
                "eusc-de-east-1",
            ],
            &[
                "",
                "us-east",
                "US-EAST-1",
                "useast1",
                "us-east-100",
                "europe-west-1",
                "us--1",
                "euscx-de-east-1",
            ],
        );
        let partition = |r: &str| r.parse::<RegionName>().unwrap().partition().name();
        assert_eq!(partition("us-east-1"), "aws");
        assert_eq!(partition("eu-isoe-west-1"), "aws-iso-e");
        assert_eq!(partition("us-isob-east-1"), "aws-iso-b");
        assert_eq!(partition("us-isof-south-1"), "aws-iso-f");
        assert_eq!(partition("eusc-de-east-1"), "aws-eusc");
    }

    /// Endpoints whose host is not a registry, or that carry more than a
    /// host, are refused with the host named.
    #[test]
    fn proxy_endpoints() {
        let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
        for ok in [
            format!("https://{host}"),
            format!("https://{host}/"),
            host.to_string(),
        ] {
            assert_eq!(endpoint_registry(&ok).unwrap().to_string(), host, "{ok}");
        }
        let cases = [
            (
                format!("https://{host}@evil.example.com"),
                "its host evil.example.com is not",
            ),
            (
                "evil.example.com".into(),
                "its host evil.example.com is not",
            ),
            (":443".into(), "names no host"),
            ("https://".into(), "names no host"),
            ("[::1]:5000".into(), "its host [::1] is not"),
            (format!("https://user@{host}"), "user name before its host"),
            (format!("https://{host}:443"), "has a port (:443)"),
            (format!("https://{host}/v2/"), "has a path"),
            (format!("https://{host}?x"), "has a path"),
            (format!("http://{host}"), "scheme is http"),
        ];
        for (endpoint, want) in cases {
            let err = endpoint_registry(&endpoint).unwrap_err();
            assert!(err.contains(want), "{endpoint}: {err}");
        }
    }

    #[test]
    fn expected_hosts_allow_only_the_requested_and_one_own_registry() {
        let e = ExpectedHosts {
            requested: RegistryHost::standard("210987654321", &"eu-west-1".parse().unwrap())
                .names(),
            default_region: "us-east-1".parse().unwrap(),
        };
        let own = RegistryHost::standard("123456789012", &e.default_region).names();
        let with = |extra: &[String]| [e.requested.clone(), extra.to_vec()].concat();
        assert!(e.matches(&with(&own)));
        assert!(
            e.matches(&e.requested),
            "the own registry may be among the requested"
        );
        assert!(!e.matches(&own), "a requested one is missing");
        assert!(
            !e.matches(&with(&own[..1])),
            "the own registry without its dual-stack name"
        );
        assert!(!e.matches(&with(&["evil.example.com".into()])));
        let other_region = RegistryHost::standard("123456789012", &"eu-west-1".parse().unwrap());
        assert!(!e.matches(&with(&other_region.names())));
        let second = RegistryHost::standard("111111111111", &e.default_region).names();
        assert!(!e.matches(&with(&[own, second].concat())));
        // A FIPS own registry is one registry too.
        let fips: RegistryHost = "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"
            .parse()
            .unwrap();
        assert!(e.matches(&with(&fips.names())));
    }
}
