//! The ECR client: SDK setup from the flags, and one GetAuthorizationToken call per region.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{Region, SdkConfig};
use aws_sdk_ecr::error::SdkError;
use aws_sdk_ecr::types::AuthorizationData;
use tokio::sync::OnceCell;
use tracing::{debug, info, warn};

use super::credentials::{
    describe_config_files, identity_of, refuse_endless_config_files, selected_profile,
};
use super::registry::endpoint_registry;
use super::sdk::{assume_role, credential_source, region_of, resolve_once, sdk_config};
use super::token::is_beyond_token_lifetime;
use super::{
    decode_token, AssumeRole, EcrOptions, ExpectedHosts, RegionCredential, RegionName,
    RegistryHost, RegistrySpec, RoleArn,
};
use crate::error::{chain, Error, Result};

/// Everything needed to fetch tokens, resolved locally before any network call.
pub(crate) struct EcrClientConfig {
    sdk: SdkConfig,
    default_region: RegionName,
    role_arn: Option<RoleArn>,
    /// GetAuthorizationToken calls made (one per region).
    pub(crate) calls: Arc<AtomicUsize>,
    /// What the fetch is waiting for, for a deadline that passes during it.
    phase: Arc<Mutex<String>>,
    /// Where the credentials come from, for messages.
    source: String,
    /// Each region's answer, asked once however many tenants share this role.
    regions: Mutex<BTreeMap<RegionName, Arc<OnceCell<Result<RegionToken>>>>>,
}

/// What GetAuthorizationToken answered in one region.
#[derive(Clone)]
struct RegionToken {
    login: super::token::Login,
    expires_at: Option<jiff::Timestamp>,
    /// The caller's own registry there, or why ECR's answer names none we can use (that only
    /// matters in the default region, where it is written).
    own: std::result::Result<RegistryHost, String>,
}

/// A view of a fetch that outlives it: the calls it made, and the step it was in.
#[derive(Clone)]
pub(crate) struct EcrProgress {
    calls: Arc<AtomicUsize>,
    phase: Arc<Mutex<String>>,
    region: String,
}

impl EcrProgress {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::Relaxed)
    }

    /// The error for a deadline that passed during the fetch, naming the step that hung.
    pub(crate) fn hung(&self, deadline: String) -> Error {
        let phase = self.phase.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Error::EcrToken {
            region: self.region.clone(),
            message: format!("{deadline} while {phase}; nothing was written"),
        }
    }
}

impl EcrClientConfig {
    /// Resolves region and credential sources the way the AWS CLI does, but never asks the EC2
    /// metadata service for a region: off AWS that call only hangs until it times out. The SDK
    /// reads the shared config files with blocking reads, so this runs on a thread of its own
    /// (see `detached`): a FIFO that never answers holds only that thread.
    pub(crate) async fn load(aws: &EcrOptions, request_timeout: Duration) -> Result<Self> {
        let aws = aws.clone();
        crate::shutdown::detached(async move { Self::load_here(&aws, request_timeout).await }).await
    }

    /// The error for a deadline that passed while [`EcrClientConfig::load`] was reading.
    pub(crate) fn unread(deadline: String) -> Error {
        Error::ReadAwsConfig {
            files: describe_config_files(),
            message: format!("{deadline} while reading them; nothing was written"),
        }
    }

    async fn load_here(aws: &EcrOptions, request_timeout: Duration) -> Result<Self> {
        refuse_endless_config_files()?;
        let profile = selected_profile(aws.profile.as_deref()).await?;
        let profile = profile.as_deref();
        // Resolved here, before the loader: given no region, the SDK's credential chain would
        // go and ask the EC2 metadata service for one.
        let default_region = region_of(aws.region.as_ref(), profile).await?;
        let sdk = sdk_config(&default_region, profile, request_timeout).await;
        let sdk = match &aws.role {
            Some(role) => assume_role(sdk, role).await,
            None => sdk,
        };
        let sdk = resolve_once(sdk);
        let source = credential_source(aws, profile);
        Ok(Self {
            sdk,
            default_region,
            role_arn: aws.role.as_ref().map(|r| r.arn.clone()),
            calls: Default::default(),
            phase: Arc::new(Mutex::new(format!(
                "resolving the AWS credentials ({source})"
            ))),
            source,
            regions: Mutex::default(),
        })
    }

    /// The client of a tenant's role: `role` assumed with this client's credentials (resolved
    /// once for every tenant), in this client's region. Nothing is called here: STS only once
    /// the tenant's token is fetched.
    pub(crate) async fn assuming(&self, role: &AssumeRole) -> Self {
        let sdk = resolve_once(assume_role(self.sdk.clone(), role).await);
        let source = format!(
            "STS AssumeRole of {} with {}",
            role.arn.as_str(),
            self.source
        );
        Self {
            role_arn: Some(role.arn.clone()),
            source,
            ..self.sharing(sdk)
        }
    }

    /// The region ECR is asked in by default.
    pub(crate) fn region(&self) -> &RegionName {
        &self.default_region
    }

    /// The same credentials (a role assumed once serves every region), asking ECR in `region`.
    pub(crate) fn in_region(&self, region: &RegionName) -> Self {
        let sdk = self
            .sdk
            .clone()
            .into_builder()
            .region(Region::new(region.as_str().to_string()))
            .build();
        Self {
            default_region: region.clone(),
            ..self.sharing(sdk)
        }
    }

    /// This client with `sdk`: the same call count and phase (one run's), its own region cache.
    fn sharing(&self, sdk: SdkConfig) -> Self {
        Self {
            sdk,
            default_region: self.default_region.clone(),
            role_arn: self.role_arn.clone(),
            calls: self.calls.clone(),
            phase: self.phase.clone(),
            source: self.source.clone(),
            regions: Mutex::default(),
        }
    }

    pub(crate) fn progress(&self) -> EcrProgress {
        EcrProgress {
            calls: self.calls.clone(),
            phase: self.phase.clone(),
            region: self.default_region.to_string(),
        }
    }

    fn enter(&self, phase: String) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = phase;
    }

    /// Resolves the credentials, as a step of its own so that a helper or STS that fails or
    /// hangs is named as such, not blamed on ECR.
    async fn credentials(&self) -> Result<Option<aws_credential_types::Credentials>> {
        use aws_credential_types::provider::ProvideCredentials as _;
        let Some(provider) = self.sdk.credentials_provider() else {
            return Ok(None);
        };
        self.enter(format!("resolving the AWS credentials ({})", self.source));
        let credentials = provider.provide_credentials().await.map_err(|e| Error::EcrToken {
            region: self.default_region.to_string(),
            message: format!(
                "could not get AWS credentials from {}: {} (check the AWS credentials: env keys, --profile/AWS_PROFILE, web identity or SSO)",
                self.source,
                without_helper_output(&chain(&e))
            ),
        })?;
        Ok(Some(credentials))
    }

    /// A stable description of what a token is requested for, and by whom; Secrets made from
    /// another request are never considered fresh.
    pub(crate) async fn request_fingerprint(&self, registries: &[RegistrySpec]) -> String {
        let mut regs: Vec<String> = registries.iter().map(ToString::to_string).collect();
        regs.sort();
        regs.dedup();
        format!(
            "region={};registries={};role={};identity={}",
            self.default_region,
            regs.join(","),
            self.role_arn.as_ref().map_or("", RoleArn::as_str),
            self.identity().await
        )
    }

    /// With --role-arn the role names the account, and resolving it would cost an STS call:
    /// nothing more is needed. Otherwise the chain's credentials, resolved once for the run
    /// (see [`ResolveOnce`]); for static keys that is a local read.
    async fn identity(&self) -> String {
        if self.role_arn.is_some() {
            return String::new();
        }
        match self.credentials().await {
            Ok(Some(c)) => identity_of(c.access_key_id(), c.session_token().is_some()),
            Ok(None) => "none".into(),
            // Then nothing is fresh, and the token call reports what is wrong.
            Err(e) => {
                debug!(error = %e, "could not resolve AWS credentials for the fingerprint");
                "unknown".into()
            }
        }
    }

    /// What a Secret's payload must hold to be fresh, see [`ExpectedHosts::matches`].
    pub(crate) fn expected_hosts(&self, registries: &[RegistrySpec]) -> ExpectedHosts {
        let mut requested: Vec<String> =
            self.by_region(registries).into_values().flatten().collect();
        requested.sort();
        requested.dedup();
        ExpectedHosts {
            requested,
            default_region: self.default_region.clone(),
        }
    }

    /// Groups the names of the requested registries by region. The default region is always
    /// present: its token's own registry is always written.
    pub(crate) fn by_region(
        &self,
        registries: &[RegistrySpec],
    ) -> BTreeMap<RegionName, Vec<String>> {
        let mut plan: BTreeMap<RegionName, Vec<String>> = BTreeMap::new();
        plan.entry(self.default_region.clone()).or_default();
        for spec in registries {
            let registry = match spec {
                RegistrySpec::Account(id) => RegistryHost::standard(id, &self.default_region),
                RegistrySpec::Host(host) => host.clone(),
            };
            add_names(
                plan.entry(registry.region().clone()).or_default(),
                &registry,
            );
        }
        plan
    }

    /// Calls GetAuthorizationToken once per region. Any failure fails the whole fetch, so a
    /// Secret is never written with only some of its registries.
    pub(crate) async fn fetch(&self, registries: &[RegistrySpec]) -> Result<Vec<RegionCredential>> {
        self.credentials().await?;
        let plan = self.by_region(registries);
        let regions: Vec<String> = plan.keys().map(ToString::to_string).collect();
        self.enter(format!(
            "waiting for ECR GetAuthorizationToken in {}",
            regions.join(", ")
        ));
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
        let cell = {
            let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
            regions.entry(region.clone()).or_default().clone()
        };
        let token = cell
            .get_or_init(|| self.ask_region(region.clone()))
            .await
            .clone()?;
        if include_own_registry {
            let bad = |reason| Error::EcrTokenInvalid {
                region: region.to_string(),
                reason,
            };
            add_names(&mut hosts, token.own.as_ref().map_err(|e| bad(e.clone()))?);
        }
        Ok(RegionCredential {
            login: token.login,
            expires_at: token.expires_at,
            hosts,
        })
    }

    /// One GetAuthorizationToken call in `region`.
    async fn ask_region(&self, region: RegionName) -> Result<RegionToken> {
        let conf = aws_sdk_ecr::config::Builder::from(&self.sdk)
            .region(Region::new(region.as_str().to_string()))
            .build();
        let client = aws_sdk_ecr::Client::from_conf(conf);
        debug!(%region, "requesting ECR authorization token");
        self.calls.fetch_add(1, Ordering::Relaxed);
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
        let own = own_registry(data, &region);
        let expires_at = expiry(data, &region).map_err(bad)?;
        Ok(RegionToken {
            login,
            expires_at,
            own,
        })
    }
}

/// The caller's own registry, from the proxy endpoint ECR answered with. Checked as `status`
/// checks the Secret, so what is written is never "not ECR".
fn own_registry(data: &AuthorizationData, region: &RegionName) -> Result<RegistryHost, String> {
    let endpoint = data
        .proxy_endpoint()
        .ok_or_else(|| "ECR returned no proxy endpoint".to_string())?;
    let unusable = |why: String| format!("proxy endpoint {endpoint:?}: {why}");
    let own = endpoint_registry(endpoint).map_err(unusable)?;
    if own.region() != region {
        return Err(unusable(format!(
            "its host {own} is a registry of {}, not of {region}",
            own.region()
        )));
    }
    Ok(own)
}

/// When the token expires, if ECR says; refused when no ECR token lasts that long (`status`
/// would call the Secret broken).
fn expiry(
    data: &AuthorizationData,
    region: &RegionName,
) -> Result<Option<jiff::Timestamp>, String> {
    let expires_at = data
        .expires_at()
        .and_then(|t| jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok());
    match expires_at {
        Some(t) if is_beyond_token_lifetime(t, jiff::Timestamp::now()) => {
            return Err(format!(
                "it expires at {t}, further out than an ECR token lasts (12h)"
            ))
        }
        Some(t) if t <= jiff::Timestamp::now() => {
            warn!(%region, expires_at = %t, "ECR returned a token that has already expired")
        }
        Some(t) => info!(%region, expires_at = %t, "got ECR authorization token"),
        None => warn!(%region, "ECR returned a token with no expiry"),
    }
    Ok(expires_at)
}

/// Adds every name of `registry` to `hosts`, once.
fn add_names(hosts: &mut Vec<String>, registry: &RegistryHost) {
    for name in registry.names() {
        if !hosts.contains(&name) {
            hosts.push(name);
        }
    }
}

/// The SDK quotes a failed `credential_process`'s stderr in its error; a helper may print
/// anything there, a secret included, so it is cut off (run the helper to see it).
fn without_helper_output(message: &str) -> String {
    match message.split_once(". Stderr:") {
        Some((before, _)) => format!("{before} (its stderr is not shown)"),
        None => message.to_string(),
    }
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
        _ => format!("{} ({CREDENTIALS})", without_helper_output(&chain(err))),
    }
}
