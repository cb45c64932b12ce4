//! The flags of the services besides the cluster: ECR, and the Pushgateway.

use clap::Args;

use super::values::{parse_instance, PushgatewayUrl, SessionName};
use crate::ecr::{RegionName, RegistrySpec, RoleArn};

/// Where and as whom to ask ECR. `EcrClientConfig::load` reads these as parsed.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// Extra ECR registry: a 12-digit account ID (in the default region) or a registry host
    /// of any region and partition, such as 123456789012.dkr.ecr.eu-west-1.amazonaws.com, its
    /// FIPS (dkr.ecr-fips) or dual-stack (dkr-ecr[-fips].<region>.on.aws) name, China's
    /// amazonaws.com.cn / on.amazonwebservices.com.cn, c2s.ic.gov, sc2s.sgov.gov,
    /// cloud.adc-e.uk, csp.hci.ic.gov or amazonaws.eu; repeatable or comma-separated. The
    /// caller's own registry in the default region is always included; one token is fetched
    /// per region. Every registry is written under its dual-stack (IPv6) name too where its
    /// partition has one, always: the same token works there, it costs no call, and an image
    /// named by either host then pulls. ECR Public (public.ecr.aws) is not supported
    #[arg(
        long = "registry",
        env = "ECR_REFRESH_REGISTRY",
        value_delimiter = ',',
        value_name = "ACCOUNT_OR_HOST"
    )]
    pub(crate) registries: Vec<RegistrySpec>,

    /// AWS region, of any partition (us-east-1, us-gov-west-1, cn-north-1, us-iso-east-1,
    /// eusc-de-east-1, ...); it decides the registry hosts' suffix [default: AWS_REGION,
    /// AWS_DEFAULT_REGION, then the profile's region]
    #[arg(long, env = "ECR_REFRESH_REGION", value_name = "REGION")]
    pub(crate) region: Option<RegionName>,

    /// AWS shared-config profile [default: AWS_PROFILE, then `default`]
    #[arg(long, env = "ECR_REFRESH_PROFILE", value_name = "NAME")]
    pub(crate) profile: Option<String>,

    /// IAM role to assume (through STS) with the credentials the chain finds: the
    /// cross-account pattern
    #[arg(long, env = "ECR_REFRESH_ROLE_ARN", value_name = "ARN")]
    pub(crate) role_arn: Option<RoleArn>,

    /// Session name for --role-arn, shown in CloudTrail
    #[arg(
        long,
        env = "ECR_REFRESH_ROLE_SESSION_NAME",
        default_value = "ecr-refresh",
        value_name = "NAME",
        requires = "role_arn"
    )]
    pub(crate) role_session_name: SessionName,

    /// External ID the role's trust policy requires
    #[arg(long, env = "ECR_REFRESH_EXTERNAL_ID", value_name = "ID", requires = "role_arn")]
    pub(crate) external_id: Option<String>,
}

/// Where to push the run's metrics.
#[derive(Clone, Debug, Args)]
pub struct PushArgs {
    /// Push the run's metrics to this Prometheus Pushgateway at the end of every run, failed or
    /// not (e.g. http://pushgateway.monitoring:9091). A failed push is logged and does not
    /// change the exit code
    #[arg(
        help_heading = "Metrics",
        long,
        env = "ECR_REFRESH_PUSHGATEWAY",
        value_name = "URL",
        value_parser = PushgatewayUrl
    )]
    pub(crate) pushgateway: Option<http::Uri>,

    /// The `instance` label of the pushed group (job="ecr-refresh") [default: the kube context,
    /// or `in-cluster` in a pod without a kubeconfig; with neither, the push is skipped]
    #[arg(
        help_heading = "Metrics",
        long,
        env = "ECR_REFRESH_PUSHGATEWAY_INSTANCE",
        value_name = "NAME",
        requires = "pushgateway",
        value_parser = parse_instance
    )]
    pub(crate) pushgateway_instance: Option<String>,
}
