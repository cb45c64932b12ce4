//! What we write: the Secret every namespace should hold, and the ECR fetch that makes it,
//! once, on first use.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use tokio::sync::OnceCell;

use super::judge::Wanted;
use super::{
    EXPIRES_AT_ANNOTATION, MANAGED_BY_LABEL, MANAGED_BY_VALUE, REGISTRIES_ANNOTATION,
    REQUEST_ANNOTATION, SECRET_TYPE,
};
use crate::dockerconfig;
use crate::ecr::token::Login;
use crate::ecr::{EcrClientConfig, RegionCredential, RegistrySpec};
use crate::error::Error;
use crate::sensitive::Sensitive;
use crate::tenants::{Tenant, TENANT_ANNOTATION};

/// The Secret every namespace should hold, built once per run.
pub(crate) struct Desired {
    pub(crate) payload: Sensitive<Vec<u8>>,
    pub(crate) annotations: BTreeMap<String, String>,
    pub(crate) hosts: Vec<String>,
    pub(crate) expires_at: Option<jiff::Timestamp>,
    /// Each host's login and its token's expiry, for formats that hold one host each (Argo
    /// CD's repository credentials, see `argocd`). `Login`'s password prints redacted.
    pub(crate) logins: BTreeMap<String, (Login, Option<jiff::Timestamp>)>,
}

impl Desired {
    pub(crate) fn new(
        credentials: &[RegionCredential],
        request: &str,
        tenant: Option<&str>,
    ) -> Self {
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
        if let Some(tenant) = tenant {
            annotations.insert(TENANT_ANNOTATION.to_string(), tenant.to_string());
        }
        let logins = credentials
            .iter()
            .flat_map(|c| {
                c.hosts
                    .iter()
                    .map(|h| (h.clone(), (c.login.clone(), c.expires_at)))
            })
            .collect();
        Self {
            payload: dockerconfig::build(credentials),
            annotations,
            hosts,
            expires_at,
            logins,
        }
    }

    pub(crate) fn object(&self, name: &str, namespace: &str) -> Secret {
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
}

/// The Secret to write, made on first use: when every Secret is still fresh (--refresh-before),
/// ECR is not called at all, and a failed fetch is met before anything is written.
pub(crate) struct LazyDesired {
    ecr: Arc<EcrClientConfig>,
    registries: Vec<RegistrySpec>,
    /// With --tenants: the tenant's name, and how errors name it (with its role).
    tenant: Option<(String, String)>,
    /// What a current Secret was made from, known before any fetch.
    pub(crate) wanted: Wanted,
    cell: OnceCell<Result<Arc<Desired>, Error>>,
}

impl LazyDesired {
    pub(crate) async fn new(ecr: Arc<EcrClientConfig>, registries: &[RegistrySpec]) -> Self {
        Self {
            wanted: Wanted {
                request: ecr.request_fingerprint(registries).await,
                expected: ecr.expected_hosts(registries),
            },
            registries: registries.to_vec(),
            ecr,
            tenant: None,
            cell: OnceCell::new(),
        }
    }

    /// A tenant's: `ecr` assumes its role. Its name is part of the request, so a namespace
    /// that moves to another tenant is due even when both share a role.
    pub(crate) async fn for_tenant(ecr: Arc<EcrClientConfig>, tenant: &Tenant) -> Self {
        let mut lazy = Self::new(ecr, &tenant.registries).await;
        lazy.wanted.request = format!("tenant={};{}", tenant.name, lazy.wanted.request);
        lazy.tenant = Some((tenant.name.clone(), tenant.describe()));
        lazy
    }

    /// The tenant's name, with --tenants.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.tenant.as_ref().map(|(name, _)| name.as_str())
    }

    /// Fetches the token once; every later call gets the same answer.
    pub(crate) async fn get(&self) -> Result<Arc<Desired>, Error> {
        self.cell
            .get_or_init(|| async {
                let creds = self.ecr.fetch(&self.registries).await;
                let creds = match (creds, &self.tenant) {
                    (Ok(creds), _) => creds,
                    (Err(e), None) => return Err(e),
                    (Err(e), Some((_, described))) => {
                        return Err(Error::TenantToken {
                            tenant: described.clone(),
                            message: e.to_string(),
                        })
                    }
                };
                Ok(Arc::new(Desired::new(
                    &creds,
                    &self.wanted.request,
                    self.tenant(),
                )))
            })
            .await
            .clone()
    }

    /// What the fetch gave, if it was made.
    pub(crate) fn fetched(&self) -> Option<&Result<Arc<Desired>, Error>> {
        self.cell.get()
    }

    pub(crate) fn ecr_calls(&self) -> usize {
        self.ecr.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::desired;

    #[test]
    fn debug_of_desired_payload_is_redacted() {
        let d = desired(10_000);
        assert_eq!(format!("{:?}", d.payload), "(redacted)");
    }
}
