//! Getting and checking ECR credentials.

mod client;
mod credentials;
mod options;
mod registry;
mod sdk;
pub(crate) mod token;

pub(crate) use client::{EcrClientConfig, EcrProgress};
pub(crate) use options::{AssumeRole, EcrOptions, RoleArn};
pub(crate) use registry::{
    is_registry_host, ExpectedHosts, RegionName, RegistryHost, RegistrySpec,
};
pub(crate) use token::{decode_token, RegionCredential};
