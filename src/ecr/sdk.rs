//! The AWS SDK's config from [`EcrOptions`]: the region, the profile, the role to assume, and
//! an HTTP client that honours the proxy settings.

use std::time::Duration;

use aws_config::meta::region::ProvideRegion as _;
use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

use super::credentials::ResolveOnce;
use super::{AssumeRole, EcrOptions, RegionName};
use crate::error::{Error, Result};

/// The SDK's config for `region`, with bounded retries and timeouts. A profile the user chose
/// wins over AWS_ACCESS_KEY_ID & co., as with the AWS CLI's --profile; the SDK's default chain
/// would take the env keys first.
pub(super) async fn sdk_config(
    region: &RegionName,
    profile: Option<&str>,
    timeout: Duration,
) -> SdkConfig {
    let found = Region::new(region.as_str().to_string());
    let retry = RetryConfig::standard().with_max_attempts(3);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout * 4)
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .region(found.clone())
        .retry_config(retry.clone())
        .timeout_config(timeouts.clone());
    if let Some(p) = profile {
        let conf = aws_config::provider_config::ProviderConfig::without_region()
            .with_region(Some(found))
            .with_http_client(http_client())
            .with_retry_config(retry)
            .with_timeout_config(timeouts)
            .with_behavior_version(Some(BehaviorVersion::latest()));
        let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .configure(&conf)
            .profile_name(p)
            .build();
        loader = loader.profile_name(p).credentials_provider(credentials);
    }
    loader.load().await
}

/// Cross-account: the chain's credentials are only used to call sts:AssumeRole.
pub(super) async fn assume_role(sdk: SdkConfig, role: &AssumeRole) -> SdkConfig {
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.arn.as_str())
        .session_name(role.session_name.clone())
        .configure(&sdk);
    if let Some(id) = &role.external_id {
        builder = builder.external_id(id);
    }
    let provider = builder.build().await;
    sdk.into_builder()
        .credentials_provider(SharedCredentialsProvider::new(provider))
        .build()
}

/// The credentials resolved once, as their own step (see `credentials`), and reused by the
/// ECR calls.
pub(super) fn resolve_once(sdk: SdkConfig) -> SdkConfig {
    match sdk.credentials_provider() {
        Some(provider) => sdk
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(ResolveOnce::new(provider)))
            .build(),
        None => sdk,
    }
}

/// The region from the flag, `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile, and an
/// error that names the one that is wrong. An empty variable counts as unset.
pub(super) async fn region_of(
    flag: Option<&RegionName>,
    profile: Option<&str>,
) -> Result<RegionName> {
    if let Some(region) = flag {
        return Ok(region.clone());
    }
    let parse = |source: &'static str, value: String| {
        value.parse().map_err(|reason| Error::InvalidInput {
            flag: source,
            value,
            reason,
        })
    };
    for var in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
        if let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return parse(var, value);
        }
    }
    let mut from_profile = aws_config::profile::region::ProfileFileRegionProvider::builder();
    if let Some(p) = profile {
        from_profile = from_profile.profile_name(p);
    }
    match from_profile.build().region().await {
        Some(region) if !region.as_ref().trim().is_empty() => {
            parse("region in the AWS config", region.to_string())
        }
        _ => Err(Error::NoRegion),
    }
}

/// Where the credentials will come from, as a person would say it, for messages.
pub(super) fn credential_source(aws: &EcrOptions, profile: Option<&str>) -> String {
    let set = |var: &str| std::env::var_os(var).is_some_and(|v| !v.is_empty());
    let base = if let Some(p) = profile {
        format!("profile {p:?} (keys, credential_process, SSO or a role)")
    } else if set("AWS_ACCESS_KEY_ID") {
        "the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY keys".into()
    } else if let Some(file) =
        std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").filter(|v| !v.is_empty())
    {
        // The SDK reads the file first, and it may be a FIFO that never answers.
        format!(
            "web identity: the token in AWS_WEB_IDENTITY_TOKEN_FILE {:?}, then STS AssumeRoleWithWebIdentity",
            file.to_string_lossy()
        )
    } else {
        "the default chain: the default profile, SSO, container or EC2 metadata".into()
    };
    match &aws.role {
        Some(role) => format!("STS AssumeRole of {} with {base}", role.arn.as_str()),
        None => base,
    }
}

/// The SDK's default HTTPS client, plus the proxy settings from HTTPS_PROXY, HTTP_PROXY and
/// NO_PROXY (the default client ignores them, and clusters outside AWS are often behind one).
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Connector};
    use aws_smithy_runtime_api::client::http::{http_client_fn, SharedHttpConnector};
    http_client_fn(|settings, components| {
        let mut builder = Connector::builder()
            .connector_settings(settings.clone())
            .proxy_config(ProxyConfig::from_env());
        if let Some(sleep) = components.sleep_impl() {
            builder = builder.sleep_impl(sleep);
        }
        let tls = tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc);
        SharedHttpConnector::new(builder.tls_provider(tls).build())
    })
}
