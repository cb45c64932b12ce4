//! Whose token each namespace gets: one for the whole run, or with --tenants one per tenant
//! rule, each asked as the tenant's role. Every token is fetched on first use only.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ecr::EcrClientConfig;
use crate::error::Error;
use crate::pullsecret::{Desired, LazyDesired};
use crate::tenants::Tenants;

pub(super) struct Tokens {
    /// One per tenant rule, in the file's order; or the run's one.
    lazies: Vec<LazyDesired>,
    tenanted: bool,
    /// With --tenants and --argocd-namespace: the run's own, for Argo CD, which serves every
    /// team (without --tenants that is `lazies[0]`).
    own: Option<LazyDesired>,
}

impl Tokens {
    /// The run's token, or each tenant's. Tenants that share a role share its credentials, so
    /// the role is assumed once; those that also share a region share its client, so ECR is
    /// asked there once.
    pub(super) async fn new(
        base: EcrClientConfig,
        tenants: Option<&Tenants>,
        registries: &[crate::ecr::RegistrySpec],
        argocd: bool,
    ) -> Self {
        let Some(tenants) = tenants else {
            return Self {
                lazies: vec![LazyDesired::new(Arc::new(base), registries).await],
                tenanted: false,
                own: None,
            };
        };
        type Role = (String, Option<String>);
        let mut roles: HashMap<Role, Arc<EcrClientConfig>> = HashMap::new();
        let mut clients: HashMap<(Role, Option<String>), Arc<EcrClientConfig>> = HashMap::new();
        let mut lazies = Vec::with_capacity(tenants.rules.len());
        for tenant in &tenants.rules {
            let role: Role = (
                tenant.role.arn.as_str().to_string(),
                tenant.role.external_id.clone(),
            );
            let assumed = match roles.get(&role) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(base.assuming(&tenant.role).await);
                    roles.insert(role.clone(), c.clone());
                    c
                }
            };
            // No region: the run's, where the role was assumed.
            let region = tenant.region.as_ref().filter(|r| *r != assumed.region());
            let key = (role, region.map(|r| r.as_str().to_string()));
            let client = clients
                .entry(key)
                .or_insert_with(|| match region {
                    Some(r) => Arc::new(assumed.in_region(r)),
                    None => assumed,
                })
                .clone();
            lazies.push(LazyDesired::for_tenant(client, tenant).await);
        }
        let own = match argocd {
            true => Some(LazyDesired::new(Arc::new(base), registries).await),
            false => None,
        };
        Self {
            lazies,
            tenanted: true,
            own,
        }
    }

    /// The run's own token (not a tenant's), for Argo CD.
    pub(super) fn own(&self) -> &LazyDesired {
        self.own.as_ref().unwrap_or(&self.lazies[0])
    }

    /// The token of a namespace taken by tenant rule `tenant` (`None` without --tenants).
    pub(super) fn of(&self, tenant: Option<usize>) -> &LazyDesired {
        &self.lazies[tenant.filter(|_| self.tenanted).unwrap_or(0)]
    }

    /// Without --tenants, a failed fetch ends the run (nothing else can be written); with
    /// them, only that tenant's namespaces fail (see [`Self::failed_tenants`]).
    pub(super) fn fatal(&self) -> Option<Error> {
        if self.tenanted {
            return None;
        }
        match self.lazies[0].fetched() {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// With --tenants, the tenants whose token failed, and why.
    pub(super) fn failed_tenants(&self) -> Vec<(String, Error)> {
        if !self.tenanted {
            return Vec::new();
        }
        self.lazies
            .iter()
            .filter_map(|l| match l.fetched() {
                Some(Err(e)) => Some((l.tenant().unwrap_or_default().to_string(), e.clone())),
                _ => None,
            })
            .collect()
    }

    /// The tokens fetched and usable.
    pub(super) fn fetched(&self) -> impl Iterator<Item = &Arc<Desired>> {
        self.lazies
            .iter()
            .chain(&self.own)
            .filter_map(|l| match l.fetched() {
                Some(Ok(d)) => Some(d),
                _ => None,
            })
    }

    /// GetAuthorizationToken calls made, by every tenant (they share one counter).
    pub(super) fn ecr_calls(&self) -> usize {
        self.lazies[0].ecr_calls()
    }
}
