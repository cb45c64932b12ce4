//! Flag values with rules of their own. clap parses each through `FromStr`, so a bad value fails
//! at parse time, with the flag named, before anything runs.

use std::str::FromStr;
use std::time::Duration;

use crate::k8s_grammar::validate_dns_subdomain;

/// The longest duration any flag takes. A CronJob pass never needs more, and a bound keeps
/// deadline arithmetic (`now + timeout`, `timeout * 4`) far from overflow. Messages say "24h".
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// A duration such as 30s, 2m or 1h30m, at most [`MAX_DURATION`]. With `NONZERO`, zero is
/// refused too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DurationArg<const NONZERO: bool = false>(Duration);

/// A timeout: zero would fail every request.
pub(crate) type Timeout = DurationArg<true>;

impl<const NONZERO: bool> DurationArg<NONZERO> {
    pub(crate) fn get(self) -> Duration {
        self.0
    }
}

impl<const NONZERO: bool> FromStr for DurationArg<NONZERO> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s)
            .map_err(|e| format!("{e}; expected a duration such as 30s, 2m or 1h30m"))?;
        if d > MAX_DURATION {
            return Err("must be at most 24h".into());
        }
        if NONZERO && d.is_zero() {
            return Err("must be longer than zero".into());
        }
        Ok(Self(d))
    }
}

/// How many namespaces to process at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Concurrency(usize);

impl Concurrency {
    const MAX: usize = 1024;

    pub(crate) fn get(self) -> usize {
        self.0
    }
}

impl FromStr for Concurrency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<i64>() {
            Ok(n) if (1..=Self::MAX as i64).contains(&n) => Ok(Self(n as usize)),
            _ => Err(format!("must be a whole number from 1 to {}", Self::MAX)),
        }
    }
}

/// An IAM role ARN: `arn:<partition>:iam::<12 digits>:role/<path/name>`.
#[derive(Clone, Debug)]
pub(crate) struct RoleArn(String);

impl RoleArn {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RoleArn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        let ok = parts.len() == 6
            && parts[0] == "arn"
            && parts[1].starts_with("aws")
            && parts[2] == "iam"
            && parts[3].is_empty()
            && parts[4].len() == 12
            && parts[4].bytes().all(|b| b.is_ascii_digit())
            && parts[5]
                .strip_prefix("role/")
                .is_some_and(|n| !n.is_empty());
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("expected an IAM role ARN such as arn:aws:iam::123456789012:role/ecr-pull".into())
        }
    }
}

/// An STS role session name, as AssumeRole accepts it.
#[derive(Clone, Debug)]
pub(crate) struct SessionName(String);

impl From<SessionName> for String {
    fn from(name: SessionName) -> Self {
        name.0
    }
}

impl FromStr for SessionName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (2..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=,.@-_".contains(&b));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err("use 2 to 64 letters, digits or =,.@-_".into())
        }
    }
}

/// A Secret or ServiceAccount name. A checked `String` rather than a newtype: `crate::run`
/// hands the Secret name to the reports, which hold it as a `String`.
pub(crate) fn object_name(s: &str) -> Result<String, String> {
    validate_dns_subdomain(s)?;
    Ok(s.to_string())
}
