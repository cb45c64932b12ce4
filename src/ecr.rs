//! Getting and checking ECR credentials: registry and region parsing, the token call, decoding.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};
use aws_sdk_ecr::error::SdkError;
use base64::Engine as _;
use tracing::{debug, info, warn};

use crate::error::{chain, Error, Result};
use crate::sensitive::Sensitive;

/// An AWS region name such as `eu-west-1`, checked for shape so a typo fails before any call.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RegionName(String);

impl RegionName {
    pub fn as_str(&self) -> &str {
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
pub enum RegistrySpec {
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
pub fn registry_host(account: &str, region: &RegionName) -> String {
    format!("{account}.dkr.ecr.{region}.{}", region.dns_suffix())
}

/// The hosts a token is written for, as far as they are known before asking ECR: every
/// requested one, plus the caller's own registry in the default region, whose account only
/// ECR's answer names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedHosts {
    pub requested: Vec<String>,
    pub default_region: RegionName,
}

impl ExpectedHosts {
    /// `hosts` (from a Secret's payload) are exactly these: every requested host, and at most
    /// one other, which must be an ECR registry of the default region.
    pub fn matches(&self, hosts: &[String]) -> bool {
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

/// Who credentials belong to, for the freshness fingerprint, without any call. A long-term key
/// (no session token) is its own identity: a short hash of the key id (not secret, but no need
/// to spread it). Temporary credentials get a new key id every session, so for them the account
/// that owns them, which AWS encodes in the key id; if it cannot be decoded, the key hash again
/// (fresh only within that session: safe, only costly).
pub fn identity_of(access_key_id: &str, temporary: bool) -> String {
    match account_of_key(access_key_id).filter(|_| temporary) {
        Some(account) => format!("account:{account}"),
        None => {
            use sha2::Digest as _;
            let digest = sha2::Sha256::digest(access_key_id.as_bytes());
            let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
            format!("key:{hex}")
        }
    }
}

/// The account id in an access key id: base32 after the 4-letter prefix (AKIA, ASIA, ...), then
/// bits 7..47 of the first 6 bytes.
fn account_of_key(key_id: &str) -> Option<u64> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let body = key_id.get(4..)?.as_bytes();
    if body.len() < 10 {
        return None;
    }
    // 10 base32 characters are 50 bits: more than the 48 needed.
    let mut bits: u64 = 0;
    for c in &body[..10] {
        let v = ALPHABET.iter().position(|a| a == c)? as u64;
        bits = (bits << 5) | v;
    }
    let first_six_bytes = bits >> 2;
    Some((first_six_bytes & 0x7fff_ffff_ff80) >> 7)
}

/// Resolves the credential chain once and hands out the same credentials until they are about
/// to expire, so the freshness fingerprint and the token call cost one resolution, not two.
#[derive(Debug)]
struct ResolveOnce {
    inner: aws_credential_types::provider::SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<aws_credential_types::Credentials>>,
}

impl aws_credential_types::provider::ProvideCredentials for ResolveOnce {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let mut cached = self.cached.lock().await;
            let soon = std::time::SystemTime::now() + Duration::from_secs(300);
            if let Some(c) = cached
                .as_ref()
                .filter(|c| c.expiry().is_none_or(|e| e > soon))
            {
                return Ok(c.clone());
            }
            let fresh = self.inner.provide_credentials().await?;
            *cached = Some(fresh.clone());
            Ok(fresh)
        })
    }
}

/// Why an authorization token could not be used. Never carries the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the authorization token is empty")]
    Empty,
    #[error("the authorization token is not valid base64")]
    NotBase64,
    #[error("the decoded authorization token is not UTF-8 text")]
    NotUtf8,
    #[error("the decoded authorization token has no ':' between user name and password")]
    NoSeparator,
    #[error("the decoded authorization token has an empty user name")]
    EmptyUser,
    #[error("the decoded authorization token has an empty password")]
    EmptyPassword,
    #[error("the decoded authorization token contains control characters")]
    ControlCharacter,
}

/// A decoded registry credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: Sensitive<String>,
}

/// Decodes ECR's `authorizationToken`: base64 of `user:password`, split on the first `:` only
/// (the password may itself contain colons).
pub fn decode_token(token: &str) -> Result<Login, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| TokenError::NotBase64)?;
    let text = String::from_utf8(bytes).map_err(|_| TokenError::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(TokenError::NoSeparator)?;
    if user.is_empty() {
        return Err(TokenError::EmptyUser);
    }
    if password.is_empty() {
        return Err(TokenError::EmptyPassword);
    }
    if text.chars().any(char::is_control) {
        return Err(TokenError::ControlCharacter);
    }
    Ok(Login {
        username: user.to_string(),
        password: Sensitive::new(password.to_string()),
    })
}

/// One region's credential and the registry hosts it is written for.
#[derive(Clone, Debug)]
pub struct RegionCredential {
    pub region: RegionName,
    pub login: Login,
    pub expires_at: Option<jiff::Timestamp>,
    pub hosts: Vec<String>,
}

/// Where and as whom to ask ECR, from the command line.
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    pub region: Option<RegionName>,
    pub profile: Option<String>,
    pub registries: Vec<RegistrySpec>,
    pub role_arn: Option<String>,
    pub role_session_name: String,
    pub external_id: Option<String>,
}

/// Everything needed to fetch tokens, resolved locally before any network call.
pub struct EcrClientConfig {
    sdk: SdkConfig,
    default_region: RegionName,
    role_arn: Option<String>,
    /// GetAuthorizationToken calls made (one per region).
    pub calls: std::sync::atomic::AtomicUsize,
}

impl EcrClientConfig {
    /// Resolves region and credential sources the way the AWS CLI does, but never asks the EC2
    /// metadata service for a region: off AWS that call only hangs until it times out.
    pub async fn load(aws: &AwsOptions, request_timeout: Duration) -> Result<Self> {
        let region = aws.region.as_ref();
        let profile = selected_profile(aws.profile.as_deref()).await?;
        let profile = profile.as_deref();
        let mut profile_region = aws_config::profile::region::ProfileFileRegionProvider::builder();
        if let Some(p) = profile {
            profile_region = profile_region.profile_name(p);
        }
        let region_chain =
            RegionProviderChain::first_try(region.map(|r| Region::new(r.as_str().to_string())))
                .or_else(aws_config::environment::region::EnvironmentVariableRegionProvider::new())
                .or_else(profile_region.build());
        // Resolved here, before the loader: given no region, the SDK's credential chain would
        // go and ask the EC2 metadata service for one.
        let found = region_chain.region().await.ok_or(Error::NoRegion)?;
        let default_region: RegionName =
            found
                .as_ref()
                .parse()
                .map_err(|reason| Error::InvalidInput {
                    flag: "--region",
                    value: found.to_string(),
                    reason,
                })?;
        let retry = RetryConfig::standard().with_max_attempts(3);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(request_timeout)
            .operation_attempt_timeout(request_timeout)
            .operation_timeout(request_timeout * 4)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .region(found.clone())
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone());
        if let Some(p) = profile {
            // A profile the user chose wins over AWS_ACCESS_KEY_ID & co., as with the AWS CLI's
            // --profile; the SDK's default chain would take the env keys first.
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
        let mut sdk = loader.load().await;
        if let (None, Some(chain)) = (&aws.role_arn, sdk.credentials_provider()) {
            sdk = sdk
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(ResolveOnce {
                        inner: chain,
                        cached: Default::default(),
                    }),
                )
                .build();
        }
        if let Some(role) = &aws.role_arn {
            // Cross-account: the chain's credentials are only used to call sts:AssumeRole.
            let mut builder = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name(&aws.role_session_name)
                .configure(&sdk);
            if let Some(id) = &aws.external_id {
                builder = builder.external_id(id);
            }
            let provider = builder.build().await;
            sdk = sdk
                .into_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(provider),
                )
                .build();
        }
        Ok(Self {
            sdk,
            default_region,
            role_arn: aws.role_arn.clone(),
            calls: Default::default(),
        })
    }

    /// A stable description of what a token is requested for, and by whom; Secrets made from
    /// another request are never considered fresh.
    pub async fn request_fingerprint(&self, registries: &[RegistrySpec]) -> String {
        let mut regs: Vec<String> = registries.iter().map(ToString::to_string).collect();
        regs.sort();
        regs.dedup();
        format!(
            "region={};registries={};role={};identity={}",
            self.default_region,
            regs.join(","),
            self.role_arn.as_deref().unwrap_or(""),
            self.identity().await
        )
    }

    /// With --role-arn the role names the account, and resolving it would cost an STS call:
    /// nothing more is needed. Otherwise the chain's credentials, resolved once for the run
    /// (see [`ResolveOnce`]); for static keys that is a local read.
    async fn identity(&self) -> String {
        use aws_credential_types::provider::ProvideCredentials as _;
        if self.role_arn.is_some() {
            return String::new();
        }
        let Some(provider) = self.sdk.credentials_provider() else {
            return "none".into();
        };
        match provider.provide_credentials().await {
            Ok(c) => identity_of(c.access_key_id(), c.session_token().is_some()),
            // Then nothing is fresh, and the token call reports what is wrong.
            Err(e) => {
                debug!(error = %chain(&e), "could not resolve AWS credentials for the fingerprint");
                "unknown".into()
            }
        }
    }

    /// What a Secret's payload must hold to be fresh, see [`ExpectedHosts::matches`].
    pub fn expected_hosts(&self, registries: &[RegistrySpec]) -> ExpectedHosts {
        let mut requested: Vec<String> = self.plan(registries).into_values().flatten().collect();
        requested.sort();
        requested.dedup();
        ExpectedHosts {
            requested,
            default_region: self.default_region.clone(),
        }
    }

    pub fn default_region(&self) -> &RegionName {
        &self.default_region
    }

    /// Groups the requested registries by region. The default region is always present: its
    /// token's own registry is always written.
    pub fn plan(&self, registries: &[RegistrySpec]) -> BTreeMap<RegionName, Vec<String>> {
        let mut plan: BTreeMap<RegionName, Vec<String>> = BTreeMap::new();
        plan.entry(self.default_region.clone()).or_default();
        for spec in registries {
            let (region, host) = match spec {
                RegistrySpec::Account(id) => (
                    self.default_region.clone(),
                    registry_host(id, &self.default_region),
                ),
                RegistrySpec::Host { host, region } => (region.clone(), host.clone()),
            };
            let hosts = plan.entry(region).or_default();
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        plan
    }

    /// Calls GetAuthorizationToken once per region. Any failure fails the whole fetch, so a
    /// Secret is never written with only some of its registries.
    pub async fn fetch(&self, registries: &[RegistrySpec]) -> Result<Vec<RegionCredential>> {
        let plan = self.plan(registries);
        let calls = plan.into_iter().map(|(region, hosts)| async move {
            let is_default = region == self.default_region;
            self.fetch_region(region, hosts, is_default).await
        });
        futures::future::try_join_all(calls).await
    }

    async fn fetch_region(
        &self,
        region: RegionName,
        mut hosts: Vec<String>,
        include_own_registry: bool,
    ) -> Result<RegionCredential> {
        let conf = aws_sdk_ecr::config::Builder::from(&self.sdk)
            .region(Region::new(region.as_str().to_string()))
            .build();
        let client = aws_sdk_ecr::Client::from_conf(conf);
        debug!(%region, "requesting ECR authorization token");
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| Error::EcrToken {
                region: region.to_string(),
                message: describe_sdk_error(&e),
            })?;
        let bad = |reason: String| Error::EcrTokenInvalid {
            region: region.to_string(),
            reason,
        };
        let data = out
            .authorization_data()
            .first()
            .ok_or_else(|| bad("ECR returned no authorization data".into()))?;
        let token = data
            .authorization_token()
            .ok_or_else(|| bad("ECR returned no authorization token".into()))?;
        let login = decode_token(token).map_err(|e| bad(e.to_string()))?;
        if include_own_registry {
            let endpoint = data
                .proxy_endpoint()
                .ok_or_else(|| bad("ECR returned no proxy endpoint".into()))?;
            let own = endpoint_host(endpoint).ok_or_else(|| {
                bad(format!(
                    "ECR returned an unusable proxy endpoint {endpoint:?}"
                ))
            })?;
            if !hosts.contains(&own) {
                hosts.insert(0, own);
            }
        }
        let expires_at = data
            .expires_at()
            .and_then(|t| jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok());
        match expires_at {
            Some(t) if t <= jiff::Timestamp::now() => {
                warn!(%region, expires_at = %t, "ECR returned a token that has already expired")
            }
            Some(t) => info!(%region, expires_at = %t, "got ECR authorization token"),
            None => warn!(%region, "ECR returned a token with no expiry"),
        }
        Ok(RegionCredential {
            region,
            login,
            expires_at,
            hosts,
        })
    }
}

/// The profile chosen with `--profile` (or `ECR_REFRESH_PROFILE`), else `AWS_PROFILE`, checked
/// against the shared config and credentials files: naming one that is not there is bad input,
/// not a quiet fall-back to other credentials.
async fn selected_profile(flag_value: Option<&str>) -> Result<Option<String>> {
    let (name, flag) = match flag_value {
        Some(p) => (p.to_string(), "--profile"),
        None => match std::env::var("AWS_PROFILE") {
            Ok(p) if !p.is_empty() => (p, "AWS_PROFILE"),
            _ => return Ok(None),
        },
    };
    let bad = |reason: String| Error::InvalidInput {
        flag,
        value: name.clone(),
        reason,
    };
    #[allow(deprecated)] // ProfileFiles::default() is what the SDK itself reads
    let files = aws_config::profile::profile_file::ProfileFiles::default();
    let profiles = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &files,
        None,
    )
    .await
    .map_err(|e| bad(format!("cannot read the AWS config files: {}", chain(&e))))?;
    if profiles.get_profile(&name).is_none() {
        return Err(bad(
            "no such profile in the AWS config or credentials file (~/.aws/config, ~/.aws/credentials, or AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE); see `aws configure list-profiles`".into(),
        ));
    }
    Ok(Some(name))
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

/// `https://123.dkr.ecr.r.amazonaws.com/` -> `123.dkr.ecr.r.amazonaws.com`
fn endpoint_host(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let host = rest.split('/').next()?.trim();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_ascii_lowercase())
}

/// Turns an SDK error into one line that says what failed and what to check (no debug dump).
fn describe_sdk_error(
    err: &SdkError<
        aws_sdk_ecr::operation::get_authorization_token::GetAuthorizationTokenError,
        aws_smithy_runtime_api::http::Response,
    >,
) -> String {
    use aws_sdk_ecr::error::ProvideErrorMetadata as _;
    const CREDENTIALS: &str =
        "check the AWS credentials: env keys, --profile/AWS_PROFILE, web identity or SSO";
    match err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = err.code().map(|c| format!(" {c}")).unwrap_or_default();
            let message = err.message().map(|m| format!(": {m}")).unwrap_or_default();
            let hint = if matches!(status, 401 | 403) || code.contains("AccessDenied") || code.contains("Token") {
                "check the AWS credentials and that they allow ecr:GetAuthorizationToken"
            } else {
                "ECR refused the request"
            };
            format!("ECR answered {status}{code}{message} ({hint})")
        }
        SdkError::TimeoutError(_) => {
            format!("ECR did not answer in time: {} (check network access to ECR, and HTTPS_PROXY)", chain(err))
        }
        SdkError::DispatchFailure(d) if d.is_io() || d.is_timeout() => format!(
            "could not reach ECR: {} (check network access to ECR, HTTPS_PROXY, and AWS_ENDPOINT_URL if set)",
            chain(err)
        ),
        _ => format!("{} ({CREDENTIALS})", chain(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn decodes_and_splits_on_first_colon() {
        let login = decode_token(&STANDARD.encode("AWS:pa:ss:word")).unwrap();
        assert_eq!(login.username, "AWS");
        assert_eq!(login.password.expose(), "pa:ss:word");
    }

    #[test]
    fn rejects_bad_tokens() {
        assert_eq!(decode_token(""), Err(TokenError::Empty));
        assert_eq!(decode_token("not base64!"), Err(TokenError::NotBase64));
        assert_eq!(
            decode_token(&STANDARD.encode([0xff, 0xfe, b':', b'a'])),
            Err(TokenError::NotUtf8)
        );
        assert_eq!(
            decode_token(&STANDARD.encode("AWSpassword")),
            Err(TokenError::NoSeparator)
        );
        assert_eq!(
            decode_token(&STANDARD.encode(":password")),
            Err(TokenError::EmptyUser)
        );
        assert_eq!(
            decode_token(&STANDARD.encode("AWS:")),
            Err(TokenError::EmptyPassword)
        );
        assert_eq!(
            decode_token(&STANDARD.encode("AWS:pa\nss")),
            Err(TokenError::ControlCharacter)
        );
    }

    #[test]
    fn token_errors_never_contain_the_token() {
        let token = STANDARD.encode("AWS");
        let err = decode_token(&token).unwrap_err();
        assert!(!err.to_string().contains(&token));
    }

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
        for ok in [
            "us-east-1",
            "us-gov-west-1",
            "cn-north-1",
            "eu-central-2",
            "ap-southeast-7",
        ] {
            assert!(ok.parse::<RegionName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "useast1",
            "us-east-100",
            "europe-west-1",
            "us--1",
        ] {
            assert!(bad.parse::<RegionName>().is_err(), "{bad}");
        }
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
    fn endpoint_hosts() {
        assert_eq!(
            endpoint_host("https://123456789012.dkr.ecr.us-east-1.amazonaws.com").as_deref(),
            Some("123456789012.dkr.ecr.us-east-1.amazonaws.com")
        );
        assert_eq!(endpoint_host("https://"), None);
    }

    #[test]
    fn account_is_read_from_the_access_key_id() {
        // The example from AWS's own key format write-ups.
        assert_eq!(
            account_of_key("ASIAY34FZKBOKMUTVV7A"),
            Some(609_629_065_308)
        );
        assert_eq!(account_of_key("AKIA0"), None);
        assert_eq!(account_of_key("AKIA1111111111111111"), None);
    }

    #[test]
    fn identity_is_the_account_for_temporary_keys_and_a_key_hash_otherwise() {
        assert_eq!(
            identity_of("ASIAY34FZKBOKMUTVV7A", true),
            "account:609629065308"
        );
        let long_term = identity_of("AKIAY34FZKBOKMUTVV7A", false);
        assert!(
            long_term.starts_with("key:") && long_term.len() == 20,
            "{long_term}"
        );
        assert!(!long_term.contains("Y34FZKBOKMUTVV7A"));
        assert_ne!(long_term, identity_of("AKIAY34FZKBOKMUTVV7B", false));
        // Undecodable temporary keys fall back to the hash.
        assert!(identity_of("ASIA1111111111111111", true).starts_with("key:"));
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
