//! Where and as whom to ask ECR, as plain settings: the command line fills them in.

use std::str::FromStr;

use super::{RegionName, RegistrySpec};

/// Where and as whom to ask ECR. [`super::EcrClientConfig::load`] reads these as given.
#[derive(Clone, Debug)]
pub(crate) struct EcrOptions {
    /// Extra registries, besides the caller's own in the default region.
    pub(crate) registries: Vec<RegistrySpec>,
    /// The default region; `None`: AWS_REGION, AWS_DEFAULT_REGION, then the profile's.
    pub(crate) region: Option<RegionName>,
    /// The shared-config profile; `None`: AWS_PROFILE, then `default`.
    pub(crate) profile: Option<String>,
    /// The role to assume with the credentials the chain finds (cross-account).
    pub(crate) role: Option<AssumeRole>,
}

/// An STS AssumeRole: the role, the session name CloudTrail shows, and the trust policy's
/// external ID.
#[derive(Clone, Debug)]
pub(crate) struct AssumeRole {
    pub(crate) arn: RoleArn,
    pub(crate) session_name: String,
    pub(crate) external_id: Option<String>,
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
